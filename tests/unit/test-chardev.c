/*
 * Chardev backends: spec errors, file output, unix server and client,
 * fd passing, pseudo-terminals, and that a slow or absent peer never
 * blocks a writer; what query-chardev says of each.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "chardev/char.h"

typedef struct Events {
    int opened, closed;
    GString *data;
} Events;

static void ev_read(void *opaque, const uint8_t *buf, size_t len)
{
    Events *e = opaque;
    g_string_append_len(e->data, (const char *)buf, len);
}

static void ev_opened(void *opaque)
{
    ((Events *)opaque)->opened++;
}

static void ev_closed(void *opaque)
{
    ((Events *)opaque)->closed++;
}

static const ChardevHandlers ev_handlers = {
    .read = ev_read, .opened = ev_opened, .closed = ev_closed,
};

/* Run the main loop until cond holds or 5 s pass. */
#define LOOP_UNTIL(cond)                                                    \
    do {                                                                    \
        gint64 end_ = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;          \
        while (!(cond) && g_get_monotonic_time() < end_) {                  \
            g_main_context_iteration(NULL, FALSE);                          \
            g_usleep(1000);                                                 \
        }                                                                   \
        g_assert_true(cond);                                                \
    } while (0)

static char *tmpdir;

static char *tmp_path(const char *name)
{
    return g_build_filename(tmpdir, name, NULL);
}

/* syntax_error: chardev_check_spec() catches it without opening anything. */
static void expect_error_kind(const char *spec, const char *needle, bool syntax_error)
{
    Error *err = NULL;
    Chardev *chr = chardev_new(spec, &err);

    g_assert_null(chr);
    g_assert_nonnull(err);
    if (!strstr(error_get_pretty(err), needle)) {
        g_error("spec '%s': message '%s' lacks '%s'", spec, error_get_pretty(err), needle);
    }
    error_free(err);
    g_assert_true(chardev_check_spec(spec, NULL, NULL) == !syntax_error);
}

static void expect_error(const char *spec, const char *needle)
{
    expect_error_kind(spec, needle, true);
}

static void test_bad_specs(void)
{
    expect_error("foo:bar", "unknown chardev backend 'foo'");
    expect_error("tcp:localhost:4444", "unknown chardev backend 'tcp'");
    expect_error("", "empty chardev spec");
    expect_error("file:", "file: needs a path");
    expect_error("unix:", "needs a socket path");
    expect_error("unix:/tmp/x,color=red", "unknown unix socket option 'color'");
    expect_error("unix:/tmp/x,server=maybe", "server=maybe: expected on or off");
    expect_error("unix:/tmp/x,wait=off", "wait= only applies");
    expect_error("stdio:x", "takes no argument");
    expect_error_kind("file:/nonexistent-dir/x/y", "cannot open '/nonexistent-dir/x/y'",
                      false);

    bool is_stdio = false;
    g_assert_true(chardev_check_spec("stdio", &is_stdio, NULL));
    g_assert_true(is_stdio);
    g_assert_true(chardev_check_spec("unix:/tmp/s,server=on,wait=off", &is_stdio, NULL));
    g_assert_false(is_stdio);
}

static void test_null(void)
{
    Chardev *chr = chardev_new("null", &error_abort);

    g_assert_true(chardev_write(chr, "x", 1));
    g_assert_false(chardev_is_connected(chr));
    g_assert_cmpint(chardev_take_fd(chr), ==, -1);
    g_assert_cmpstr(chardev_spec(chr), ==, "null");
    chardev_free(chr);
}

static void test_file_truncates(void)
{
    g_autofree char *path = tmp_path("out.txt");
    g_autofree char *spec = g_strdup_printf("file:%s", path);
    g_autofree char *contents = NULL;

    g_assert_true(g_file_set_contents(path, "old contents\n", -1, NULL));
    Chardev *chr = chardev_new(spec, &error_abort);
    g_assert_true(chardev_is_connected(chr));
    g_assert_true(chardev_write(chr, "hello\n", 6));
    chardev_free(chr);
    g_assert_true(g_file_get_contents(path, &contents, NULL, NULL));
    g_assert_cmpstr(contents, ==, "hello\n");
}

/* file-append:PATH keeps what is there; filefd:N writes through its own copy of N. */
static void test_file_append_and_fd(void)
{
    g_autofree char *path = tmp_path("append.txt");
    g_autofree char *spec = g_strdup_printf("file-append:%s", path);
    g_autofree char *fd_spec = NULL;
    g_autofree char *contents = NULL;
    Chardev *chr;
    int fd;

    g_assert_true(g_file_set_contents(path, "old\n", -1, NULL));
    chr = chardev_new(spec, &error_abort);
    g_assert_true(chardev_write(chr, "new\n", 4));
    chardev_free(chr);

    fd = open(path, O_WRONLY);
    fd_spec = g_strdup_printf("filefd-append:%d", fd);
    chr = chardev_new(fd_spec, &error_abort);
    g_assert_true(chardev_is_connected(chr));
    g_assert_true(chardev_write(chr, "via fd\n", 7));
    chardev_free(chr);
    g_assert_cmpint(fcntl(fd, F_GETFD), >=, 0);     /* the handed-over one stays open */
    close(fd);
    g_assert_true(g_file_get_contents(path, &contents, NULL, NULL));
    g_assert_cmpstr(contents, ==, "old\nnew\nvia fd\n");

    /* Without append, as a path without append=on: the file is emptied first. */
    g_free(fd_spec);
    g_free(contents);
    fd = open(path, O_WRONLY);
    fd_spec = g_strdup_printf("filefd:%d", fd);
    chr = chardev_new(fd_spec, &error_abort);
    g_assert_true(chardev_write(chr, "only\n", 5));
    chardev_free(chr);
    close(fd);
    g_assert_true(g_file_get_contents(path, &contents, NULL, NULL));
    g_assert_cmpstr(contents, ==, "only\n");

    expect_error("filefd:x", "filefd: needs a descriptor number");
    expect_error("file-append:", "file-append: needs a path");
    expect_error_kind("filefd:987", "cannot use descriptor 987", false);
}

typedef struct WriterArgs {
    Chardev *chr;
    int id;
} WriterArgs;

#define LINES_PER_WRITER 2000

static gpointer writer(gpointer opaque)
{
    WriterArgs *a = opaque;
    for (int i = 0; i < LINES_PER_WRITER; i++) {
        char line[64];
        int n = snprintf(line, sizeof(line), "writer=%d line=%05d ........\n", a->id, i);
        g_assert_true(chardev_write(a->chr, line, n));
    }
    return NULL;
}

/* Concurrent writers (vCPU threads) never interleave inside one write. */
static void test_file_threads(void)
{
    g_autofree char *path = tmp_path("threads.txt");
    g_autofree char *spec = g_strdup_printf("file:%s", path);
    g_autofree char *contents = NULL;
    WriterArgs args[4];
    GThread *th[4];
    Chardev *chr = chardev_new(spec, &error_abort);

    for (int i = 0; i < 4; i++) {
        args[i] = (WriterArgs){ chr, i };
        th[i] = g_thread_new("writer", writer, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        g_thread_join(th[i]);
    }
    chardev_free(chr);

    g_assert_true(g_file_get_contents(path, &contents, NULL, NULL));
    g_auto(GStrv) lines = g_strsplit(contents, "\n", -1);
    int next[4] = { 0 };
    int total = 0;
    for (int i = 0; lines[i] && *lines[i]; i++) {
        int id, n;
        g_assert_cmpint(sscanf(lines[i], "writer=%d line=%d ........", &id, &n), ==, 2);
        g_assert_cmpint(id, >=, 0);
        g_assert_cmpint(id, <, 4);
        g_assert_cmpint(n, ==, next[id]);   /* each writer's lines in order, none lost */
        next[id]++;
        total++;
    }
    g_assert_cmpint(total, ==, 4 * LINES_PER_WRITER);
}

static int connect_unix(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
    g_assert_cmpint(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    return fd;
}

static void read_exactly(int fd, char *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        g_assert_cmpint(n, >, 0);
        got += n;
    }
    buf[len] = 0;
}

static void test_unix_server(void)
{
    g_autofree char *path = tmp_path("srv.sock");
    g_autofree char *spec = g_strdup_printf("unix:%s,server=on,wait=off", path);
    Events ev = { .data = g_string_new("") };
    struct stat st;
    char buf[16];

    Chardev *chr = chardev_new(spec, &error_abort);
    chardev_set_handlers(chr, &ev_handlers, &ev);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_true(S_ISSOCK(st.st_mode));
    g_assert_cmpint(st.st_mode & 0777, ==, 0600);

    /* No client: output is dropped at once. */
    g_assert_false(chardev_is_connected(chr));
    g_assert_true(chardev_write(chr, "lost", 4));

    for (int round = 1; round <= 2; round++) {
        int fd = connect_unix(path);
        LOOP_UNTIL(ev.opened == round);
        g_assert_true(chardev_is_connected(chr));
        g_assert_cmpint(write(fd, "ping", 4), ==, 4);
        LOOP_UNTIL(ev.data->len == 4 * round);
        g_assert_true(chardev_write(chr, "pong", 4));
        read_exactly(fd, buf, 4);
        g_assert_cmpstr(buf, ==, "pong");
        close(fd);
        LOOP_UNTIL(ev.closed == round);
        g_assert_false(chardev_is_connected(chr));
    }
    g_assert_cmpstr(ev.data->str, ==, "pingping");
    chardev_free(chr);
    g_assert_cmpint(access(path, F_OK), ==, -1);    /* unlinked */
    g_string_free(ev.data, TRUE);
}

/* A second client waits until the first has left. */
static void test_unix_one_client(void)
{
    g_autofree char *path = tmp_path("one.sock");
    g_autofree char *spec = g_strdup_printf("unix:%s,server=on,wait=off", path);
    Events ev = { .data = g_string_new("") };
    Chardev *chr = chardev_new(spec, &error_abort);

    chardev_set_handlers(chr, &ev_handlers, &ev);
    int a = connect_unix(path);
    LOOP_UNTIL(ev.opened == 1);
    int b = connect_unix(path);     /* lands in the backlog */
    g_assert_cmpint(write(b, "B", 1), ==, 1);
    for (int i = 0; i < 50; i++) {
        g_main_context_iteration(NULL, FALSE);
    }
    g_assert_cmpint(ev.opened, ==, 1);
    g_assert_cmpstr(ev.data->str, ==, "");
    close(a);
    LOOP_UNTIL(ev.closed == 1 && ev.opened == 2 && ev.data->len == 1);
    g_assert_cmpstr(ev.data->str, ==, "B");
    close(b);
    LOOP_UNTIL(ev.closed == 2);
    chardev_free(chr);
    g_string_free(ev.data, TRUE);
}

static void send_fd(int sock, int fd, const char *byte)
{
    char control[CMSG_SPACE(sizeof(int))] = { 0 };
    struct iovec iov = { .iov_base = (void *)byte, .iov_len = 1 };
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1,
        .msg_control = control, .msg_controllen = sizeof(control),
    };
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    g_assert_cmpint(sendmsg(sock, &msg, 0), ==, 1);
}

static void test_unix_fd_passing(void)
{
    g_autofree char *path = tmp_path("fd.sock");
    g_autofree char *spec = g_strdup_printf("unix:%s,server=on,wait=off", path);
    Events ev = { .data = g_string_new("") };
    Chardev *chr = chardev_new(spec, &error_abort);
    int pipefd[2];
    char buf[8];

    chardev_set_handlers(chr, &ev_handlers, &ev);
    int sock = connect_unix(path);
    LOOP_UNTIL(ev.opened == 1);
    g_assert_cmpint(chardev_take_fd(chr), ==, -1);
    g_assert_cmpint(pipe(pipefd), ==, 0);
    send_fd(sock, pipefd[1], "x");
    close(pipefd[1]);
    LOOP_UNTIL(ev.data->len == 1);

    int got = chardev_take_fd(chr);
    g_assert_cmpint(got, >=, 0);
    g_assert_cmpint(chardev_take_fd(chr), ==, -1);      /* taken once only */
    g_assert_cmpint(write(got, "via-fd", 6), ==, 6);
    close(got);
    read_exactly(pipefd[0], buf, 6);
    g_assert_cmpstr(buf, ==, "via-fd");
    close(pipefd[0]);
    close(sock);
    LOOP_UNTIL(ev.closed == 1);
    chardev_free(chr);
    g_string_free(ev.data, TRUE);
}

/* A connected peer that never reads: writers must not block. */
static void test_slow_peer(void)
{
    g_autofree char *path = tmp_path("slow.sock");
    g_autofree char *spec = g_strdup_printf("unix:%s,server=on,wait=off", path);
    Events ev = { .data = g_string_new("") };
    Chardev *chr = chardev_new(spec, &error_abort);
    static char block[4096];

    chardev_set_handlers(chr, &ev_handlers, &ev);
    int sock = connect_unix(path);
    LOOP_UNTIL(ev.opened == 1);

    gint64 start = g_get_monotonic_time();
    for (int i = 0; i < 4096; i++) {        /* 16 MiB, far beyond any buffer */
        g_assert_true(chardev_write(chr, block, sizeof(block)));
    }
    g_assert_cmpint(g_get_monotonic_time() - start, <, 2 * G_USEC_PER_SEC);
    g_assert_cmpuint(chardev_dropped_bytes(chr), >, 8 * 1024 * 1024);

    close(sock);
    LOOP_UNTIL(ev.closed == 1);
    chardev_free(chr);
    g_string_free(ev.data, TRUE);
}

/*
 * A peer too slow for the output: each write (a message) arrives whole or
 * not at all, never cut short into the next one.
 */
static void test_slow_peer_whole_messages(void)
{
    g_autofree char *path = tmp_path("whole.sock");
    g_autofree char *spec = g_strdup_printf("unix:%s,server=on,wait=off", path);
    Events ev = { .data = g_string_new("") };
    Chardev *chr = chardev_new(spec, &error_abort);
    GString *all = g_string_new("");
    g_auto(GStrv) lines = NULL;
    char buf[65536];
    int sock, got = 0, n;

    chardev_set_handlers(chr, &ev_handlers, &ev);
    sock = connect_unix(path);
    LOOP_UNTIL(ev.opened == 1);
    /* Messages of 1-3 KiB each, far more than the socket and the queue hold. */
    for (int i = 0; i < 4000; i++) {
        GString *m = g_string_new("");

        g_string_append_printf(m, "<%d:", i);
        for (int k = 0; k < 100 + (i * 37) % 200; k++) {
            g_string_append(m, "0123456789");
        }
        g_string_append_printf(m, ":%d>\n", i);
        g_assert_true(chardev_write(chr, m->str, m->len));
        g_string_free(m, TRUE);
    }
    g_assert_cmpuint(chardev_dropped_bytes(chr), >, 0);
    /* Now the peer reads: what was queued comes out, then nothing. */
    fcntl(sock, F_SETFL, O_NONBLOCK);
    for (int idle = 0; idle < 200; idle++) {
        g_main_context_iteration(NULL, FALSE);
        while ((n = read(sock, buf, sizeof(buf))) > 0) {
            g_string_append_len(all, buf, n);
            idle = 0;
        }
        g_usleep(1000);
    }
    lines = g_strsplit(all->str, "\n", -1);
    for (int i = 0; lines[i] && lines[i][0]; i++) {
        int a = -1, b = -2;
        size_t len = strlen(lines[i]);

        g_assert_cmpint(sscanf(lines[i], "<%d:", &a), ==, 1);
        g_assert_true(len > 4 && lines[i][len - 1] == '>');
        g_assert_cmpint(sscanf(strrchr(lines[i], ':'), ":%d>", &b), ==, 1);
        g_assert_cmpint(a, ==, b);
        g_autofree char *ends = g_strdup_printf("<%d::%d>", a, a);

        g_assert_cmpuint(len, ==, strlen(ends) + 10 * (100 + (a * 37) % 200));
        got++;
    }
    g_assert_cmpint(got, >, 0);
    g_assert_cmpint(got, <, 4000);
    close(sock);
    LOOP_UNTIL(ev.closed == 1);
    chardev_free(chr);
    g_string_free(ev.data, TRUE);
    g_string_free(all, TRUE);
}

/* A file that is a FIFO nobody drains: writers must not block (libvirt's log pipe). */
static void test_file_fifo_stalled(void)
{
    g_autofree char *path = tmp_path("log.fifo");
    g_autofree char *spec = g_strdup_printf("file:%s", path);
    static char block[4096];
    Chardev *chr;
    int reader;

    g_assert_cmpint(mkfifo(path, 0600), ==, 0);
    reader = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    g_assert_cmpint(reader, >=, 0);
    chr = chardev_new(spec, &error_abort);
    gint64 start = g_get_monotonic_time();
    for (int i = 0; i < 1024; i++) {        /* 4 MiB against a 64 KiB pipe */
        g_assert_true(chardev_write(chr, block, sizeof(block)));
    }
    g_assert_cmpint(g_get_monotonic_time() - start, <, 2 * G_USEC_PER_SEC);
    g_assert_cmpuint(chardev_dropped_bytes(chr), >, 2 * 1024 * 1024);
    chardev_free(chr);
    close(reader);
}

static gboolean set_flag(gpointer flag)
{
    *(bool *)flag = true;
    return G_SOURCE_REMOVE;
}

/*
 * Out of descriptors when a client comes: the server neither spins on the
 * readable socket nor loses the client; it accepts once one is free.
 */
static void test_accept_out_of_fds(void)
{
    g_autofree char *path = tmp_path("emfile.sock");
    g_autofree char *spec = g_strdup_printf("unix:%s,server=on,wait=off", path);
    Events ev = { .data = g_string_new("") };
    Chardev *chr = chardev_new(spec, &error_abort);
    struct rlimit old, low;
    int next, sock, iterations = 0;
    bool done = false;

    chardev_set_handlers(chr, &ev_handlers, &ev);
    sock = connect_unix(path);                  /* waits in the backlog */
    next = open("/dev/null", O_RDONLY | O_CLOEXEC);
    close(next);
    g_assert_cmpint(getrlimit(RLIMIT_NOFILE, &old), ==, 0);
    low = old;
    low.rlim_cur = next;                        /* no descriptor left for accept() */
    g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &low), ==, 0);
    /* Half a second of the main loop, each iteration waiting for something to do. */
    g_timeout_add(500, set_flag, &done);
    while (!done) {
        g_main_context_iteration(NULL, TRUE);
        iterations++;
    }
    g_assert_cmpint(ev.opened, ==, 0);
    g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &old), ==, 0);
    /* A retry every 100 ms; a watched socket that stays readable: thousands. */
    g_assert_cmpint(iterations, <, 50);
    LOOP_UNTIL(ev.opened == 1);
    close(sock);
    LOOP_UNTIL(ev.closed == 1);
    chardev_free(chr);
    g_string_free(ev.data, TRUE);
}

static void test_unix_client(void)
{
    g_autofree char *path = tmp_path("cli.sock");
    g_autofree char *spec = g_strdup_printf("unix:%s", path);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    Events ev = { .data = g_string_new("") };
    Error *err = NULL;
    char buf[8];

    g_assert_null(chardev_new(spec, &err));
    g_assert_nonnull(strstr(error_get_pretty(err), "cannot connect"));
    error_free(err);

    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
    g_assert_cmpint(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    g_assert_cmpint(listen(lfd, 1), ==, 0);

    Chardev *chr = chardev_new(spec, &error_abort);
    chardev_set_handlers(chr, &ev_handlers, &ev);
    int peer = accept(lfd, NULL, NULL);
    LOOP_UNTIL(ev.opened == 1);
    g_assert_true(chardev_write(chr, "hi", 2));
    read_exactly(peer, buf, 2);
    g_assert_cmpstr(buf, ==, "hi");
    g_assert_cmpint(write(peer, "yo", 2), ==, 2);
    LOOP_UNTIL(ev.data->len == 2);
    close(peer);
    LOOP_UNTIL(ev.closed == 1);
    g_assert_false(chardev_is_connected(chr));
    chardev_free(chr);
    g_assert_cmpint(access(path, F_OK), ==, 0);     /* a client leaves the path alone */
    close(lfd);
    unlink(path);
    g_string_free(ev.data, TRUE);
}

/* A regular file in the way of a server socket is an error, not deleted. */
static void test_unix_path_taken(void)
{
    g_autofree char *path = tmp_path("taken");
    g_autofree char *spec = g_strdup_printf("unix:%s,server=on,wait=off", path);

    g_assert_true(g_file_set_contents(path, "keep", -1, NULL));
    expect_error_kind(spec, "exists and is not a socket", false);
    g_assert_cmpint(access(path, F_OK), ==, 0);
}

static void remove_tmpdir(void)
{
    GDir *d = g_dir_open(tmpdir, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *p = tmp_path(name);
        g_unlink(p);
    }
    if (d) {
        g_dir_close(d);
    }
    g_rmdir(tmpdir);
    g_free(tmpdir);
}

/* ---- pty ---- */

static int open_slave(const char *path)
{
    int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);

    g_assert_cmpint(fd, >=, 0);
    return fd;
}

/* Bytes the slave can read now (the pty may hand them over a little later). */
static void slave_expect(int fd, const char *want)
{
    g_autoptr(GString) got = g_string_new("");
    gint64 end = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
    char buf[64];

    while (got->len < strlen(want) && g_get_monotonic_time() < end) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0) {
            g_string_append_len(got, buf, n);
        } else {
            g_usleep(1000);
        }
    }
    g_assert_cmpstr(got->str, ==, want);
}

static void test_pty(void)
{
    Events ev = { .data = g_string_new("") };
    Chardev *chr = chardev_new("pty", &error_abort);
    const char *path = chardev_pty_path(chr);
    g_autofree char *name = g_strdup_printf("pty:%s", path);
    g_autofree char *filename = chardev_filename(chr);
    struct termios t;
    char buf[16];
    int fd;

    chardev_set_handlers(chr, &ev_handlers, &ev);
    g_assert_true(g_str_has_prefix(path, "/dev/pts/"));
    g_assert_cmpstr(filename, ==, name);
    g_assert_cmpstr(chardev_spec_type("pty"), ==, "chardev-pty");

    /* Nobody attached: output is dropped, not left for a later reader. */
    for (int i = 0; i < 50; i++) {
        g_main_context_iteration(NULL, FALSE);
        g_usleep(1000);
    }
    g_assert_false(chardev_is_connected(chr));
    g_assert_true(chardev_write(chr, "stale", 5));

    for (int round = 1; round <= 2; round++) {
        fd = open_slave(path);
        LOOP_UNTIL(ev.opened == round);
        g_assert_true(chardev_is_connected(chr));
        g_assert_cmpint(read(fd, buf, sizeof(buf)), ==, -1);    /* nothing stale */
        g_assert_cmpint(errno, ==, EAGAIN);
        /* Raw: no echo, no CR/LF translation either way, no line editing. */
        g_assert_cmpint(tcgetattr(fd, &t), ==, 0);
        g_assert_false(t.c_lflag & (ECHO | ICANON));
        g_assert_true(chardev_write(chr, "a\nb\r\x7f", 5));
        slave_expect(fd, "a\nb\r\x7f");
        g_assert_cmpint(write(fd, "typed\r\n", 7), ==, 7);
        LOOP_UNTIL(ev.data->len == 7 * (gsize)round);
        close(fd);
        LOOP_UNTIL(ev.closed == round);
        g_assert_false(chardev_is_connected(chr));
        g_assert_true(chardev_write(chr, "stale", 5));
    }
    g_assert_cmpstr(ev.data->str, ==, "typed\r\ntyped\r\n");
    chardev_free(chr);
    g_string_free(ev.data, TRUE);
}

/* ---- what query-chardev says ---- */

static char *label_filename(GPtrArray *labels, guint i)
{
    return chardev_label_filename(labels->pdata[i]);
}

static void test_labels(void)
{
    g_autofree char *path = tmp_path("label.sock");
    g_autofree char *spec = g_strdup_printf("unix:%s,server=on,wait=off", path);
    g_autofree char *unix_name = g_strdup_printf("unix:%s,server=on", path);
    g_autofree char *gone_name = g_strdup_printf("disconnected:%s", unix_name);
    g_autoptr(GPtrArray) labels = g_ptr_array_new_with_free_func(chardev_label_free);
    g_autofree char *out_path = tmp_path("stdout.txt");
    g_autofree char *printed = NULL, *want = NULL;
    Chardev *sock, *pty;
    char *s;
    int fd, saved;

    g_ptr_array_add(labels, chardev_label_new("unused", spec, false));
    g_ptr_array_add(labels, chardev_label_new("mon", spec, true));
    g_ptr_array_add(labels, chardev_label_new("serial0", "pty", true));
    g_ptr_array_add(labels, chardev_label_new("log", "null", true));

    /* Before anything is open: sockets are disconnected, a pty has no path yet. */
    s = label_filename(labels, 1);
    g_assert_cmpstr(s, ==, gone_name);
    g_free(s);
    s = label_filename(labels, 2);
    g_assert_cmpstr(s, ==, "pty");
    g_free(s);

    sock = chardev_new(spec, &error_abort);
    pty = chardev_new("pty", &error_abort);
    chardev_labels_bind(labels, sock, "mon");
    /* A pty says where it is on stdout, as QEMU does. */
    fflush(stdout);
    saved = dup(STDOUT_FILENO);
    fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, STDOUT_FILENO);
    close(fd);
    chardev_labels_bind(labels, pty, "serial0");
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    g_assert_true(g_file_get_contents(out_path, &printed, NULL, NULL));
    want = g_strdup_printf("char device redirected to %s (label serial0)\n",
                           chardev_pty_path(pty));
    g_assert_cmpstr(printed, ==, want);

    /* The named label is bound, not another one of the same spec. */
    g_assert_null(((ChardevLabel *)labels->pdata[0])->chr);
    g_assert_true(((ChardevLabel *)labels->pdata[1])->chr == sock);
    s = label_filename(labels, 1);
    g_assert_cmpstr(s, ==, gone_name);
    g_free(s);
    fd = connect_unix(path);
    LOOP_UNTIL(chardev_is_connected(sock));
    s = label_filename(labels, 1);
    g_assert_cmpstr(s, ==, unix_name);
    g_free(s);
    s = label_filename(labels, 0);
    g_assert_cmpstr(s, ==, gone_name);
    g_free(s);
    s = label_filename(labels, 2);
    g_assert_true(g_str_has_prefix(s, "pty:/dev/pts/"));
    g_free(s);
    s = label_filename(labels, 3);
    g_assert_cmpstr(s, ==, "null");
    g_free(s);
    close(fd);
    LOOP_UNTIL(!chardev_is_connected(sock));
    s = label_filename(labels, 1);
    g_assert_cmpstr(s, ==, gone_name);
    g_free(s);

    chardev_labels_unbind(labels, sock);
    chardev_labels_unbind(labels, pty);
    g_assert_null(((ChardevLabel *)labels->pdata[1])->chr);
    g_assert_null(((ChardevLabel *)labels->pdata[2])->chr);
    chardev_free(sock);
    chardev_free(pty);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("amber-chardev-XXXXXX", NULL);
    g_test_add_func("/chardev/bad-specs", test_bad_specs);
    g_test_add_func("/chardev/null", test_null);
    g_test_add_func("/chardev/file-truncates", test_file_truncates);
    g_test_add_func("/chardev/file-threads", test_file_threads);
    g_test_add_func("/chardev/file-append-and-fd", test_file_append_and_fd);
    g_test_add_func("/chardev/unix-server", test_unix_server);
    g_test_add_func("/chardev/unix-one-client", test_unix_one_client);
    g_test_add_func("/chardev/unix-fd-passing", test_unix_fd_passing);
    g_test_add_func("/chardev/slow-peer", test_slow_peer);
    g_test_add_func("/chardev/slow-peer-whole-messages", test_slow_peer_whole_messages);
    g_test_add_func("/chardev/file-fifo-stalled", test_file_fifo_stalled);
    g_test_add_func("/chardev/accept-out-of-fds", test_accept_out_of_fds);
    g_test_add_func("/chardev/unix-client", test_unix_client);
    g_test_add_func("/chardev/unix-path-taken", test_unix_path_taken);
    g_test_add_func("/chardev/pty", test_pty);
    g_test_add_func("/chardev/labels", test_labels);
    int ret = g_test_run();
    remove_tmpdir();
    return ret;
}
