/*
 * The process: parse the command line, set up logging, detach if asked,
 * build the machine and the monitors, and run the GLib main loop until a
 * quit (monitor, signal, guest) ends it.
 *
 * Order matters in two places.  Everything that can reject the command
 * line runs before anything is created (log file, pid file, KVM).  And
 * -daemonize forks before the machine exists: a KVM VM belongs to the
 * address space that created it, and vCPU threads do not survive fork().
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <glib-unix.h>

#include "chardev/char.h"
#include "hw/serial.h"
#include "migration/migration.h"
#include "monitor/monitor.h"
#include "system/amber.h"
#include "system/cli.h"
#include "util/log.h"
#include "util/trace.h"

typedef struct Vl Vl;

typedef struct VlSignal {
    Vl *vl;
    int signo;
    guint source;
} VlSignal;

struct Vl {
    CliOptions *cli;
    Amber *s;
    int daemon_fd;              /* child end of the -daemonize status pipe, or -1 */
    int pidfile_fd;
    VlSignal signals[3];
};

/* ---- before anything is created ------------------------------------------------ */

/* -trace patterns: true with *done set when the user only asked for the list. */
static bool apply_trace(CliOptions *cli, bool *done, Error **errp)
{
    *done = false;
    for (guint i = 0; i < cli->trace->len; i++) {
        const char *pattern = cli->trace->pdata[i];
        if (!strcmp(pattern, "help")) {
            trace_list(stdout);
            *done = true;
            return true;
        }
        if (!trace_enable(pattern, errp)) {
            error_prepend(errp, "-trace %s: ", pattern);
            return false;
        }
    }
    return true;
}

/* -incoming URI|defer: a URI that cannot be parsed fails before KVM is opened. */
static bool check_incoming(CliOptions *cli, Error **errp)
{
    return !cli->incoming || migration_incoming_check_uri(cli->incoming, errp);
}

/* ---- -daemonize and -pidfile ------------------------------------------------------ */

/*
 * Fork; the parent waits for the child to report that the VM is up (one
 * byte 0) and exits 0, or exits 1 if the child fails first (it has printed
 * why on the stderr both share).
 */
static bool daemonize_start(Vl *vl, Error **errp)
{
    int fds[2];

    if (pipe2(fds, O_CLOEXEC) < 0) {
        error_setg_errno(errp, errno, "-daemonize: cannot create a pipe");
        return false;
    }
    pid_t pid = fork();
    if (pid < 0) {
        error_setg_errno(errp, errno, "-daemonize: cannot fork");
        return false;
    }
    if (pid > 0) {
        char status = 1;
        close(fds[1]);
        while (read(fds[0], &status, 1) < 0 && errno == EINTR) {
        }
        _exit(status == 0 ? 0 : 1);
    }
    close(fds[0]);
    setsid();
    vl->daemon_fd = fds[1];
    return true;
}

/* The VM is up: release the waiting parent and let go of the terminal. */
static void daemonize_finish(Vl *vl)
{
    char ok = 0;
    int null = open("/dev/null", O_RDWR);

    if (vl->daemon_fd < 0) {
        return;
    }
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        close(null);
    }
    if (write(vl->daemon_fd, &ok, 1) != 1) {
        /* The parent is gone; nobody is left to tell. */
    }
    close(vl->daemon_fd);
    vl->daemon_fd = -1;
}

static bool write_pidfile(Vl *vl, const char *path, Error **errp)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

    if (fd < 0) {
        error_setg_errno(errp, errno, "-pidfile %s: cannot open", path);
        return false;
    }
    /* The lock, held until exit, tells a second amber the file is in use. */
    if (lockf(fd, F_TLOCK, 0) < 0) {
        error_setg(errp, "-pidfile %s: the file is locked by another running amber", path);
        close(fd);
        return false;
    }
    if (ftruncate(fd, 0) < 0 || dprintf(fd, "%d\n", (int)getpid()) < 0) {
        error_setg_errno(errp, errno, "-pidfile %s: cannot write", path);
        close(fd);
        return false;
    }
    vl->pidfile_fd = fd;
    return true;
}

static void remove_pidfile(Vl *vl)
{
    if (vl->pidfile_fd >= 0) {
        unlink(vl->cli->pidfile);
        close(vl->pidfile_fd);
        vl->pidfile_fd = -1;
    }
}

/* ---- main loop events ----------------------------------------------------------------- */

static gboolean on_signal(gpointer opaque)
{
    VlSignal *sig = opaque;

    error_report("terminating on signal %d", sig->signo);
    amber_request_quit(sig->vl->s, SHUTDOWN_CAUSE_HOST_SIGNAL, 0);
    return G_SOURCE_CONTINUE;
}

static void install_signals(Vl *vl)
{
    static const int signos[] = { SIGINT, SIGTERM, SIGHUP };

    for (size_t i = 0; i < G_N_ELEMENTS(signos); i++) {
        vl->signals[i] = (VlSignal){ .vl = vl, .signo = signos[i] };
        vl->signals[i].source = g_unix_signal_add(signos[i], on_signal, &vl->signals[i]);
    }
}

static void remove_signals(Vl *vl)
{
    for (size_t i = 0; i < G_N_ELEMENTS(vl->signals); i++) {
        if (vl->signals[i].source) {
            g_source_remove(vl->signals[i].source);
            vl->signals[i].source = 0;
        }
    }
}

/* Requests from vCPU threads, delivered on the main thread by the machine. */
static void on_machine_request(Machine *m, void *opaque)
{
    Vl *vl = opaque;
    Error *err = NULL;
    int code = 0;
    ShutdownCause cause = machine_take_shutdown_request(m, &code);

    trace(vl_machine_request, "shutdown=%s code=%d", shutdown_cause_name(cause), code);

    if (cause == SHUTDOWN_CAUSE_GUEST_PANIC && code == 0) {
        code = 1;               /* the machine printed what went wrong */
    }
    if (cause == SHUTDOWN_CAUSE_GUEST_SHUTDOWN && vl->cli->no_shutdown) {
        amber_guest_shutdown_stop(vl->s, cause);
        return;
    }
    if (cause != SHUTDOWN_CAUSE_NONE) {
        amber_request_quit(vl->s, cause, code);
        return;
    }
    if (machine_take_reset_request(m) && !amber_guest_reset(vl->s, &err)) {
        error_prepend(&err, "guest reset failed: ");
        error_report_err(err);
        amber_request_quit(vl->s, SHUTDOWN_CAUSE_GUEST_PANIC, 1);
    }
}

/* ---- setup and teardown ------------------------------------------------------------------ */

static bool add_monitors(Vl *vl, Error **errp)
{
    for (guint i = 0; i < vl->cli->qmp->len; i++) {
        if (!monitor_add(vl->s, MONITOR_QMP, vl->cli->qmp->pdata[i],
                         vl->cli->qmp_labels->pdata[i], errp)) {
            return false;
        }
    }
    for (guint i = 0; i < vl->cli->hmp->len; i++) {
        if (!monitor_add(vl->s, MONITOR_HMP, vl->cli->hmp->pdata[i],
                         vl->cli->hmp_labels->pdata[i], errp)) {
            return false;
        }
    }
    return true;
}

/* COM1's chardev is the machine's; query-chardev describes it by its label. */
static Chardev *com1_chardev(Vl *vl)
{
    SerialDevice *com1 = vl->s->machine ? machine_find_device(vl->s->machine, "serial") : NULL;

    return com1 ? serial_chardev(com1) : NULL;
}

/*
 * -machine none, as QEMU's none machine: monitors and nothing else, so no
 * KVM either (libvirt probes an emulator this way, on hosts without KVM too).
 */
static bool setup_no_guest(Vl *vl, Error **errp)
{
    vl->s->name = g_strdup(vl->cli->machine->name);
    if (!add_monitors(vl, errp) || !chardev_labels_open_unused(vl->s->chardevs, errp)) {
        return false;
    }
    daemonize_finish(vl);
    return true;
}

static bool setup(Vl *vl, Error **errp)
{
    CliOptions *cli = vl->cli;
    Chardev *com1;

    if (cli->logfile && !log_set_file(cli->logfile, errp)) {
        error_prepend(errp, "-D %s: ", cli->logfile);
        return false;
    }
    if (cli->daemonize && !daemonize_start(vl, errp)) {
        return false;
    }
    if (cli->pidfile && !write_pidfile(vl, cli->pidfile, errp)) {
        return false;
    }
    vl->s = amber_new();
    vl->s->machine_none = cli->machine_none;
    vl->s->kvm_allowed = cli->kvm_allowed;
    vl->s->chardevs = g_steal_pointer(&cli->labels);
    vl->s->serial_id = g_steal_pointer(&cli->serial_id);
    vl->s->objects = cli_objects(cli);
    vl->s->fds = g_steal_pointer(&cli->fds);
    install_signals(vl);
    if (cli->machine_none) {
        return setup_no_guest(vl, errp);
    }
    /* machine_create() owns the options from here, whatever it returns. */
    vl->s->machine = machine_create(cli->machine, errp);
    cli->machine = NULL;
    if (!vl->s->machine) {
        return false;
    }
    machine_set_request_notify(vl->s->machine, on_machine_request, vl);
    if (cli->incoming) {
        migration_incoming_prepare(vl->s);
    }
    com1 = com1_chardev(vl);
    if (com1) {
        chardev_labels_bind(vl->s->chardevs, com1, vl->cli->serial_label);
    }
    if (!add_monitors(vl, errp) || !chardev_labels_open_unused(vl->s->chardevs, errp) ||
        !machine_start(vl->s->machine, errp)) {
        return false;
    }
    if (cli->incoming && !migration_incoming_begin(vl->s, cli->incoming, errp)) {
        return false;
    }
    daemonize_finish(vl);
    return true;
}

static void teardown(Vl *vl)
{
    if (vl->s) {
        remove_signals(vl);
        migration_shutdown(vl->s);
        Chardev *com1 = com1_chardev(vl);

        monitor_cleanup_all(vl->s);
        if (com1) {
            chardev_labels_unbind(vl->s->chardevs, com1);
        }
        machine_destroy(vl->s->machine);
        vl->s->machine = NULL;
        amber_free(vl->s);
        vl->s = NULL;
    }
    remove_pidfile(vl);
    log_close();
}

static int run(CliOptions *cli)
{
    Vl vl = { .cli = cli, .daemon_fd = -1, .pidfile_fd = -1 };
    Error *err = NULL;
    int status = 1;

    if (setup(&vl, &err)) {
        if (!vl.s->quit_requested) {
            g_main_loop_run(vl.s->loop);
        }
        status = vl.s->exit_code;
    } else {
        error_report_err(err);
    }
    teardown(&vl);
    return status;
}

int amber_main(int argc, char **argv)
{
    CliOptions cli;
    Error *err = NULL;
    bool done = false, ok;
    int status = 0;

    /* A peer that goes away shows up as EPIPE on its chardev, not a dead process. */
    signal(SIGPIPE, SIG_IGN);
    ok = cli_parse(argc, argv, &cli, &err);
    /* What came before a bad word counts: `-msg timestamp=on -bogus` says when. */
    error_set_message_prefix(cli.msg_timestamp, cli.msg_guest_name ? cli.machine->name : NULL);
    if (!ok) {
        error_report_err(err);
        status = 1;
    } else if (cli.show_help) {
        cli_print_usage(stdout);
    } else if (cli.show_version) {
        printf("amber version %s\n", cli_version());
    } else if (!apply_trace(&cli, &done, &err) || !check_incoming(&cli, &err)) {
        error_report_err(err);
        status = 1;
    } else if (!done) {
        status = run(&cli);
    }
    cli_options_clear(&cli);
    return status;
}
