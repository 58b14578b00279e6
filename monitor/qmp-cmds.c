/*
 * QMP command handlers of the monitor and the machine's run control.  The
 * schema (qapi/ modules) declares them; HMP calls the same functions.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <unistd.h>

#include "migration/migration.h"
#include "monitor-int.h"
#include "qapi-commands.h"
#include "qapi-config.h"
#include "qapi-events.h"
#include "qapi-introspect.h"
#include "util/cutils.h"
#include "util/main-loop.h"

static Machine *need_machine(Amber *s, Error **errp)
{
    if (!s->machine && s->machine_none) {
        error_setg(errp, "Machine 'none' runs no guest");
    } else if (!s->machine) {
        error_setg(errp, "The machine is not created yet");
    }
    return s->machine;
}

VersionInfo *qmp_query_version(Amber *s, Error **errp)
{
    VersionInfo *info = g_new0(VersionInfo, 1);

    info->qemu = g_new0(VersionTriple, 1);
    info->qemu->major = QMP_QEMU_VERSION_MAJOR;
    info->qemu->minor = QMP_QEMU_VERSION_MINOR;
    info->qemu->micro = QMP_QEMU_VERSION_MICRO;
    info->package = g_strdup("amber-" AMBER_VERSION);
    return info;
}

EventInfoList *qmp_query_events(Amber *s, Error **errp)
{
    EventInfoList *head = NULL, **tail = &head;

    for (const char *const *name = qapi_event_names; *name; name++) {
        *tail = g_new0(EventInfoList, 1);
        (*tail)->value = g_new0(EventInfo, 1);
        (*tail)->value->name = g_strdup(*name);
        tail = &(*tail)->next;
    }
    return head;
}

/* The schema text is generated at build time; parse it per request (rare). */
anyList *qmp_query_qmp_schema(Amber *s, Error **errp)
{
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GError) gerr = NULL;
    anyList *head = NULL, **tail = &head;
    JsonArray *a;

    if (!json_parser_load_from_data(parser, qapi_introspect_json, -1, &gerr)) {
        error_setg(errp, "the built-in schema does not parse: %s", gerr->message);
        return NULL;
    }
    a = json_node_get_array(json_parser_get_root(parser));
    for (guint i = 0; i < json_array_get_length(a); i++) {
        *tail = g_new0(anyList, 1);
        (*tail)->value = json_node_copy(json_array_get_element(a, i));
        tail = &(*tail)->next;
    }
    return head;
}

CommandInfoList *qmp_query_commands(Amber *s, Error **errp)
{
    CommandInfoList *head = NULL, **tail = &head;

    for (const QmpCommand *c = qmp_command_table; c->name; c++) {
        *tail = g_new0(CommandInfoList, 1);
        (*tail)->value = g_new0(CommandInfo, 1);
        (*tail)->value->name = g_strdup(c->name);
        tail = &(*tail)->next;
    }
    return head;
}

static gboolean quit_idle(gpointer opaque)
{
    amber_request_quit(opaque, SHUTDOWN_CAUSE_HOST_QMP_QUIT, 0);
    return G_SOURCE_REMOVE;
}

void qmp_quit(Amber *s, Error **errp)
{
    /* From the main loop, so the reply goes out before SHUTDOWN, as in QEMU. */
    main_loop_call_soon(quit_idle, s);
}

StatusInfo *qmp_query_status(Amber *s, Error **errp)
{
    Machine *m = s->machine_none ? NULL : need_machine(s, errp);
    StatusInfo *info;

    if (!m && s->machine_none) {
        /* QEMU's none machine never leaves prelaunch: it has nothing to run. */
        info = g_new0(StatusInfo, 1);
        info->status = RUN_STATE_PRELAUNCH;
        return info;
    }
    if (!m) {
        return NULL;
    }
    info = g_new0(StatusInfo, 1);
    info->status = machine_runstate(m);
    info->running = runstate_is_running(info->status);
    info->singlestep = false;
    return info;
}

void qmp_stop(Amber *s, Error **errp)
{
    Machine *m = need_machine(s, errp);

    /* Not running: only the state changes (prelaunch -> paused), no event. */
    if (m && machine_runstate(m) == RUN_STATE_INMIGRATE) {
        /* As QEMU: the loaded guest will stay paused; no vCPU runs before. */
        migration_incoming_set_autostart(s, false);
    } else if (m) {
        amber_vm_stop(s, RUN_STATE_PAUSED, errp);
    }
}

void qmp_cont(Amber *s, Error **errp)
{
    Machine *m = need_machine(s, errp);
    RunState rs;

    if (!m) {
        return;
    }
    rs = machine_runstate(m);
    if (rs == RUN_STATE_INTERNAL_ERROR || rs == RUN_STATE_SHUTDOWN) {
        error_setg(errp, "Resetting the Virtual Machine is required");
        return;
    }
    if (rs == RUN_STATE_INMIGRATE) {
        /* As QEMU documents: the guest starts once the stream is loaded. */
        migration_incoming_set_autostart(s, true);
        return;
    }
    if (rs == RUN_STATE_FINISH_MIGRATE) {
        error_setg(errp, "Migration is not finalized yet");
        return;
    }
    if (rs != RUN_STATE_RUNNING) {
        amber_vm_start(s, errp);
    }
}

void qmp_system_reset(Amber *s, Error **errp)
{
    if (need_machine(s, errp)) {
        amber_system_reset(s, errp);
    }
}

NameInfo *qmp_query_name(Amber *s, Error **errp)
{
    NameInfo *info = g_new0(NameInfo, 1);
    const char *name = s->machine ? machine_options(s->machine)->name : s->name;

    if (name) {
        info->has_name = true;
        info->name = g_strdup(name);
    }
    return info;
}

CpuInfoFastList *qmp_query_cpus_fast(Amber *s, Error **errp)
{
    Machine *m = need_machine(s, errp);
    CpuInfoFastList *head = NULL, **tail = &head;

    if (!m) {
        return NULL;
    }
    for (int i = 0; i < machine_ncpus(m); i++) {
        CpuInfoFast *c = g_new0(CpuInfoFast, 1);

        c->cpu_index = i;
        c->qom_path = g_strdup_printf("/machine/unattached/device[%d]", i);
        c->thread_id = cpu_thread_id(machine_cpu(m, i));
        /* -smp N is N sockets of one core, one thread each, as QEMU lays it out. */
        c->props = g_new0(CpuInstanceProperties, 1);
        c->props->socket_id = i;
        c->target = g_strdup("x86_64");
        *tail = g_new0(CpuInfoFastList, 1);
        (*tail)->value = c;
        tail = &(*tail)->next;
    }
    return head;
}

void qmp_pmemsave(Amber *s, int64_t val, int64_t size, const char *filename,
                  Error **errp)
{
    Machine *m = need_machine(s, errp);
    const uint64_t chunk = 1024 * 1024;
    g_autofree uint8_t *buf = NULL;
    uint64_t addr = val, left = size;
    int fd;

    if (!m) {
        return;
    }
    if (val < 0 || size < 0 || (uint64_t)val + (uint64_t)size < (uint64_t)val) {
        error_setg(errp, "Invalid range: address 0x%" PRIx64 " size %" PRId64,
                   (uint64_t)val, size);
        return;
    }
    /* Check the whole range before creating the file: no partial dumps. */
    for (uint64_t a = addr; a < addr + left; a += MIN(chunk, addr + left - a)) {
        if (!machine_gpa_to_hva(m, a, MIN(chunk, addr + left - a))) {
            error_setg(errp, "Guest-physical range 0x%" PRIx64 "..0x%" PRIx64
                       " is not all RAM", addr, addr + left - 1);
            return;
        }
    }
    fd = open(filename, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Could not open '%s'", filename);
        return;
    }
    buf = g_malloc(MIN(chunk, MAX(left, 1)));
    while (left) {
        uint64_t n = MIN(chunk, left);

        if (!machine_read_phys(m, addr, buf, n, errp)) {
            break;
        }
        if (!write_full(fd, buf, n)) {
            error_setg_errno(errp, errno, "Could not write to '%s'", filename);
            break;
        }
        addr += n;
        left -= n;
    }
    close(fd);
}
