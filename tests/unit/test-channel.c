/*
 * Migration channels: URI parsing, exec:, file:, fd:, unix:, tcp:, and the
 * messages a user sees when something is wrong.
 */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "migration/channel.h"
#include "migration/qemu-file.h"
#include "test-helpers.h"

static char *tmpdir;

static char *tmp_path(const char *name)
{
    return g_build_filename(tmpdir, name, NULL);
}


/* ---- parsing ---------------------------------------------------------------- */

static void test_parse_good(void)
{
    ChannelAddress a;

    g_assert_true(channel_parse_uri("exec:cat > /tmp/x", &a, NULL));
    g_assert_cmpint(a.kind, ==, CHANNEL_EXEC);
    g_assert_cmpstr(a.command, ==, "cat > /tmp/x");
    channel_address_clear(&a);

    g_assert_true(channel_parse_uri("file:/tmp/vm.snap,offset=0x1000", &a, NULL));
    g_assert_cmpint(a.kind, ==, CHANNEL_FILE);
    g_assert_cmpstr(a.path, ==, "/tmp/vm.snap");
    g_assert_true(a.has_offset);
    g_assert_cmpuint(a.offset, ==, 4096);
    channel_address_clear(&a);

    g_assert_true(channel_parse_uri("file:/tmp/a,b", &a, NULL));
    g_assert_cmpstr(a.path, ==, "/tmp/a,b");
    g_assert_false(a.has_offset);
    channel_address_clear(&a);

    g_assert_true(channel_parse_uri("tcp:0:4444", &a, NULL));
    g_assert_cmpint(a.kind, ==, CHANNEL_TCP);
    g_assert_cmpstr(a.host, ==, "0");
    g_assert_cmpuint(a.port, ==, 4444);
    channel_address_clear(&a);

    g_assert_true(channel_parse_uri("tcp:[::1]:4444", &a, NULL));
    g_assert_cmpstr(a.host, ==, "::1");
    g_assert_cmpuint(a.port, ==, 4444);
    channel_address_clear(&a);

    g_assert_true(channel_parse_uri("tcp:localhost:0", &a, NULL));
    g_assert_cmpstr(a.host, ==, "localhost");
    g_assert_cmpuint(a.port, ==, 0);
    channel_address_clear(&a);

    g_assert_true(channel_parse_uri("unix:/run/x.sock", &a, NULL));
    g_assert_cmpint(a.kind, ==, CHANNEL_UNIX);
    g_assert_cmpstr(a.path, ==, "/run/x.sock");
    channel_address_clear(&a);

    g_assert_true(channel_parse_uri("fd:migfd", &a, NULL));
    g_assert_cmpint(a.kind, ==, CHANNEL_FD);
    g_assert_cmpstr(a.fd_name, ==, "migfd");
    channel_address_clear(&a);
}

static void test_parse_bad(void)
{
    static const struct {
        const char *uri;
        const char *msg;
    } cases[] = {
        { "foo:bar", "unknown migration URI scheme 'foo'" },
        { "vm.snap", "invalid migration URI 'vm.snap'" },
        { ":x", "invalid migration URI" },
        { "tcp:host:abc", "invalid port 'abc'" },
        { "tcp:host:70000", "invalid port '70000'" },
        { "tcp:host:", "invalid port ''" },
        { "tcp:host:-1", "invalid port '-1'" },
        { "tcp:::1:4444", "brackets" },
        { "tcp:[::1", "expected tcp:[IPV6]:PORT" },
        { "tcp:4444", "expected tcp:HOST:PORT" },
        { "file:", "missing file path" },
        { "file:/x,offset=-1", "invalid offset '-1'" },
        { "file:/x,offset=12k", "invalid offset '12k'" },
        { "exec:", "nothing after 'exec:'" },
        { "unix:", "nothing after 'unix:'" },
        { "fd:", "nothing after 'fd:'" },
    };

    for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++) {
        ChannelAddress a;
        Error *err = NULL;

        g_assert_false(channel_parse_uri(cases[i].uri, &a, &err));
        assert_error_contains(&err, cases[i].msg);
        /* Opening says the same, on both sides. */
        g_assert_null(channel_open_outgoing(cases[i].uri, NULL, NULL, &err));
        assert_error_contains(&err, cases[i].msg);
        g_assert_null(channel_open_incoming(cases[i].uri, NULL, NULL, &err));
        assert_error_contains(&err, cases[i].msg);
    }
}

/* ---- helpers -------------------------------------------------------------------- */

static void send_bytes(Channel *ch, const char *text)
{
    MigrationIO io;
    QEMUFile *f = test_fd_file(&io, ch->fd, true, ch->uri);

    qemu_put_buffer(f, text, strlen(text));
    g_assert_cmpint(test_fd_close(&io, f), ==, 0);
}

static char *recv_all(Channel *ch)
{
    GString *s = g_string_new(NULL);
    char buf[256];
    ssize_t n;

    while ((n = read(ch->fd, buf, sizeof(buf))) > 0) {
        g_string_append_len(s, buf, n);
    }
    g_assert_cmpint(n, ==, 0);
    return g_string_free(s, false);
}

/* ---- exec: ---------------------------------------------------------------------- */

static void test_exec_round_trip(void)
{
    g_autofree char *out = tmp_path("exec.out");
    g_autofree char *wuri = g_strdup_printf("exec:cat > '%s'", out);
    g_autofree char *ruri = g_strdup_printf("exec:cat '%s'", out);
    g_autofree char *got = NULL;
    Channel *ch;
    Error *err = NULL;

    ch = channel_open_outgoing(wuri, NULL, NULL, &err);
    g_assert_nonnull(ch);
    g_assert_cmpint(ch->child, >, 0);
    send_bytes(ch, "hello through a shell");
    g_assert_true(channel_close(ch, -1, &err));
    g_assert_true(g_file_get_contents(out, &got, NULL, NULL));
    g_assert_cmpstr(got, ==, "hello through a shell");
    g_clear_pointer(&got, g_free);

    ch = channel_open_incoming(ruri, NULL, NULL, &err);
    g_assert_nonnull(ch);
    got = recv_all(ch);
    g_assert_cmpstr(got, ==, "hello through a shell");
    g_assert_true(channel_close(ch, -1, &err));
}

static void test_exec_failing_child(void)
{
    Error *err = NULL;
    Channel *ch = channel_open_outgoing("exec:cat > /dev/null; exit 3", NULL, NULL, &err);

    g_assert_nonnull(ch);
    send_bytes(ch, "data");
    g_assert_false(channel_close(ch, -1, &err));
    assert_error_contains(&err, "failed with exit status 3");

    ch = channel_open_outgoing("exec:kill -TERM $$", NULL, NULL, &err);
    g_assert_nonnull(ch);
    g_assert_false(channel_close(ch, -1, &err));
    assert_error_contains(&err, "killed by signal 15");

    ch = channel_open_incoming("exec:echo partial; exit 1", NULL, NULL, &err);
    g_assert_nonnull(ch);
    g_free(recv_all(ch));
    g_assert_false(channel_close(ch, -1, &err));
    assert_error_contains(&err, "exit status 1");
}

static gpointer signal_later(gpointer fd)
{
    g_usleep(100 * 1000);
    migration_cancel_fd_signal(GPOINTER_TO_INT(fd));
    return NULL;
}

/*
 * A child that does not end after the last byte (a hung ssh) holds the
 * close until a cancel, which kills it; one that ends is waited for as
 * before, cancel descriptor or not.  "trap '' TERM" makes it need SIGKILL.
 */
static void test_exec_close_cancelled(void)
{
    Error *err = NULL;
    int cancel_fd = migration_cancel_fd_new(&error_abort);
    Channel *ch = channel_open_outgoing("exec:cat > /dev/null; exit 0", NULL, NULL, &err);
    GThread *t;
    gint64 start;

    g_assert_nonnull(ch);
    send_bytes(ch, "data");
    g_assert_true(channel_close(ch, cancel_fd, &err));

    for (int ignore_term = 0; ignore_term < 2; ignore_term++) {
        ch = channel_open_outgoing(ignore_term ? "exec:trap '' TERM; exec sleep 60"
                                               : "exec:exec sleep 60", NULL, NULL, &err);
        g_assert_nonnull(ch);
        pid_t child = ch->child;

        t = g_thread_new("cancel", signal_later, GINT_TO_POINTER(cancel_fd));
        start = g_get_monotonic_time();
        g_assert_false(channel_close(ch, cancel_fd, &err));
        assert_error_contains(&err, "exec sleep 60' had not finished");
        g_assert_cmpint(g_get_monotonic_time() - start, <, 30 * G_USEC_PER_SEC);
        g_thread_join(t);
        /* Reaped: nothing of it is left. */
        g_assert_cmpint(kill(child, 0), ==, -1);
        /* Drain the eventfd for the next round. */
        uint64_t v;
        g_assert_cmpint(read(cancel_fd, &v, sizeof(v)), ==, sizeof(v));
    }
    close(cancel_fd);
}

static void test_exec_missing_command(void)
{
    Error *err = NULL;
    Channel *ch = channel_open_outgoing("exec:amber-no-such-command-here", NULL, NULL, &err);
    MigrationIO io;
    QEMUFile *f;
    g_autofree uint8_t *big = g_malloc0(1 << 20);

    g_assert_nonnull(ch);
    /* Writing into it fails (EPIPE) rather than killing us. */
    f = test_fd_file(&io, ch->fd, true, ch->uri);
    qemu_put_buffer(f, big, 1 << 20);
    g_assert_cmpint(test_fd_close(&io, f), <, 0);
    g_assert_false(channel_close(ch, -1, &err));
    assert_error_contains(&err, "exec command 'amber-no-such-command-here' failed: "
                          "command not found (exit status 127)");
}

/* ---- file: -------------------------------------------------------------------- */

static void test_file_offset(void)
{
    g_autofree char *path = tmp_path("snap.bin");
    g_autofree char *uri = g_strdup_printf("file:%s", path);
    g_autofree char *uri_off = g_strdup_printf("file:%s,offset=4096", path);
    g_autofree char *uri_far = g_strdup_printf("file:%s,offset=999999", path);
    g_autofree char *got = NULL;
    g_autofree char *contents = NULL;
    gsize len;
    Channel *ch;
    Error *err = NULL;

    ch = channel_open_outgoing(uri, NULL, NULL, &err);
    g_assert_nonnull(ch);
    send_bytes(ch, "header");
    g_assert_true(channel_close(ch, -1, &err));

    /* With an offset: no truncation, bytes land at the offset. */
    ch = channel_open_outgoing(uri_off, NULL, NULL, &err);
    g_assert_nonnull(ch);
    send_bytes(ch, "stream");
    g_assert_true(channel_close(ch, -1, &err));
    g_assert_true(g_file_get_contents(path, &contents, &len, NULL));
    g_assert_cmpuint(len, ==, 4096 + 6);
    g_assert_cmpmem(contents, 6, "header", 6);
    g_assert_cmpmem(contents + 4096, 6, "stream", 6);

    ch = channel_open_incoming(uri_off, NULL, NULL, &err);
    g_assert_nonnull(ch);
    got = recv_all(ch);
    g_assert_cmpstr(got, ==, "stream");
    g_assert_true(channel_close(ch, -1, &err));

    g_assert_null(channel_open_incoming(uri_far, NULL, NULL, &err));
    assert_error_contains(&err, "offset 999999 is beyond the end");

    /* Without an offset the file is truncated. */
    ch = channel_open_outgoing(uri, NULL, NULL, &err);
    send_bytes(ch, "x");
    g_assert_true(channel_close(ch, -1, &err));
    g_clear_pointer(&contents, g_free);
    g_assert_true(g_file_get_contents(path, &contents, &len, NULL));
    g_assert_cmpuint(len, ==, 1);
}

static void test_file_errors(void)
{
    Error *err = NULL;
    g_autofree char *missing = tmp_path("no-such-file");
    g_autofree char *uri = g_strdup_printf("file:%s", missing);

    g_assert_null(channel_open_outgoing("file:/nonexistent-dir/vm.snap", NULL, NULL, &err));
    assert_error_contains(&err, "cannot open '/nonexistent-dir/vm.snap' for writing: "
                          "No such file or directory");
    g_assert_null(channel_open_outgoing(tmpdir, NULL, NULL, &err));     /* no scheme */
    assert_error_contains(&err, "invalid migration URI");
    g_assert_null(channel_open_incoming(uri, NULL, NULL, &err));
    assert_error_contains(&err, "for reading: No such file or directory");
}

/* ---- fd: ---------------------------------------------------------------------- */

static int lookup_fd(void *opaque, const char *name, Error **errp)
{
    int *fd = opaque;

    if (strcmp(name, "migfd")) {
        error_setg(errp, "no file descriptor named '%s'", name);
        return -1;
    }
    return dup(*fd);
}

static void test_fd(void)
{
    int p[2];
    Error *err = NULL;
    Channel *ch;
    char buf[8] = { 0 };
    g_autofree char *numeric = NULL;

    g_assert_cmpint(pipe(p), ==, 0);
    fcntl(p[1], F_SETFL, O_NONBLOCK);
    ch = channel_open_outgoing("fd:migfd", lookup_fd, &p[1], &err);
    g_assert_nonnull(ch);
    g_assert_cmpint(fcntl(ch->fd, F_GETFL) & O_NONBLOCK, ==, 0);   /* made blocking */
    send_bytes(ch, "via fd");
    g_assert_true(channel_close(ch, -1, &err));
    g_assert_cmpint(read(p[0], buf, sizeof(buf) - 1), ==, 6);
    g_assert_cmpstr(buf, ==, "via fd");

    g_assert_null(channel_open_outgoing("fd:other", lookup_fd, &p[1], &err));
    assert_error_contains(&err, "no file descriptor named 'other'");
    g_assert_null(channel_open_outgoing("fd:other", NULL, NULL, &err));
    assert_error_contains(&err, "fd:other: no descriptor of that name");
    g_assert_null(channel_open_outgoing("fd:999", NULL, NULL, &err));
    assert_error_contains(&err, "not an open file descriptor");

    /* An inherited descriptor by number, as on the command line. */
    numeric = g_strdup_printf("fd:%d", dup(p[1]));
    ch = channel_open_outgoing(numeric, NULL, NULL, &err);
    g_assert_nonnull(ch);
    g_assert_true(channel_close(ch, -1, &err));
    /* ... and from a monitor, which libvirt's restore does (migrate-incoming fd:N). */
    g_free(numeric);
    numeric = g_strdup_printf("fd:%d", dup(p[1]));
    ch = channel_open_incoming(numeric, lookup_fd, &p[1], &err);
    g_assert_nonnull(ch);
    g_assert_true(channel_close(ch, -1, &err));
    g_assert_null(channel_open_incoming("fd:999", lookup_fd, &p[1], &err));
    assert_error_contains(&err, "not an open file descriptor");
    g_assert_null(channel_open_incoming("fd:9x", lookup_fd, &p[1], &err));
    assert_error_contains(&err, "fd:9x: not a descriptor number");
    close(p[0]);
    close(p[1]);
}

/* ---- sockets ------------------------------------------------------------------ */

/* Connect, send, then accept and read: the backlog holds the connection. */
static void socket_round_trip(ChannelListener *l, const char *connect_uri)
{
    Error *err = NULL;
    Channel *out = channel_open_outgoing(connect_uri, NULL, NULL, &err);
    Channel *in;
    g_autofree char *got = NULL;

    if (!out) {
        g_printerr("%s\n", error_get_pretty(err));
    }
    g_assert_nonnull(out);
    send_bytes(out, "over a socket");
    g_assert_true(channel_close(out, -1, &err));
    in = channel_listener_accept(l, &err);
    g_assert_nonnull(in);
    g_assert_false(in->outgoing);
    got = recv_all(in);
    g_assert_cmpstr(got, ==, "over a socket");
    g_assert_true(channel_close(in, -1, &err));
}

static void test_unix(void)
{
    g_autofree char *path = tmp_path("mig.sock");
    g_autofree char *uri = g_strdup_printf("unix:%s", path);
    g_autofree char *file = tmp_path("plain");
    g_autofree char *file_uri = g_strdup_printf("unix:%s", file);
    Error *err = NULL;
    ChannelListener *l = channel_listen(uri, &err);

    g_assert_nonnull(l);
    g_assert_cmpstr(channel_listener_uri(l), ==, uri);
    socket_round_trip(l, uri);
    channel_listener_free(l);
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));     /* cleaned up */

    g_assert_null(channel_open_outgoing(uri, NULL, NULL, &err));
    assert_error_contains(&err, "No such file or directory");
    g_assert_true(g_file_set_contents(file, "x", 1, NULL));
    g_assert_null(channel_listen(file_uri, &err));
    assert_error_contains(&err, "exists and is not a socket");
}

static void test_tcp(void)
{
    Error *err = NULL;
    ChannelListener *l = channel_listen("tcp:localhost:0", &err);
    g_autofree char *uri = NULL;

    g_assert_nonnull(l);
    g_assert_cmpuint(channel_listener_port(l), >, 0);
    g_assert_true(g_str_has_prefix(channel_listener_uri(l), "tcp:"));
    uri = g_strdup_printf("tcp:localhost:%u", channel_listener_port(l));
    socket_round_trip(l, channel_listener_uri(l));
    socket_round_trip(l, uri);
    channel_listener_free(l);

    l = channel_listen("tcp:0:0", &err);
    g_assert_nonnull(l);
    g_clear_pointer(&uri, g_free);
    uri = g_strdup_printf("tcp:127.0.0.1:%u", channel_listener_port(l));
    socket_round_trip(l, uri);
    channel_listener_free(l);
}

static void test_tcp_ipv6(void)
{
    Error *err = NULL;
    ChannelListener *l = channel_listen("tcp:[::1]:0", &err);
    g_autofree char *uri = NULL;

    if (!l) {
        g_test_skip(error_get_pretty(err));
        error_free(err);
        return;
    }
    uri = g_strdup_printf("tcp:[::1]:%u", channel_listener_port(l));
    g_assert_cmpstr(channel_listener_uri(l), ==, uri);
    socket_round_trip(l, uri);
    channel_listener_free(l);
}

/*
 * A connect that does not complete (a listener whose backlog is full drops
 * the SYNs, as a black-holed host does) ends when cancelled; one that can
 * complete does, cancel descriptor or not.
 */
static void test_tcp_connect_cancelled(void)
{
    Error *err = NULL;
    int cancel_fd = migration_cancel_fd_new(&error_abort);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    g_autofree char *uri = NULL;
    Channel *first, *ch;
    GThread *t;
    gint64 start;

    g_assert_cmpint(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    g_assert_cmpint(listen(lfd, 0), ==, 0);
    g_assert_cmpint(getsockname(lfd, (struct sockaddr *)&sa, &len), ==, 0);
    uri = g_strdup_printf("tcp:127.0.0.1:%u", ntohs(sa.sin_port));
    first = channel_connect(uri, cancel_fd, &err);     /* fills the backlog */
    g_assert_nonnull(first);

    t = g_thread_new("cancel", signal_later, GINT_TO_POINTER(cancel_fd));
    start = g_get_monotonic_time();
    ch = channel_connect(uri, cancel_fd, &err);
    g_thread_join(t);
    g_assert_null(ch);
    assert_error_contains(&err, "Operation canceled");
    g_assert_cmpint(g_get_monotonic_time() - start, <, 20 * G_USEC_PER_SEC);
    channel_abort(first);
    close(lfd);
    close(cancel_fd);
}

static void test_tcp_refused(void)
{
    Error *err = NULL;
    ChannelListener *l = channel_listen("tcp:127.0.0.1:0", &err);
    g_autofree char *uri = NULL;
    ChannelListener *busy;

    g_assert_nonnull(l);
    uri = g_strdup_printf("tcp:127.0.0.1:%u", channel_listener_port(l));
    busy = channel_listen(uri, &err);           /* the port is taken */
    g_assert_null(busy);
    assert_error_contains(&err, "cannot listen on");
    channel_listener_free(l);
    g_assert_null(channel_open_outgoing(uri, NULL, NULL, &err));
    assert_error_contains(&err, "Connection refused");
    g_assert_null(channel_open_outgoing("tcp:127.0.0.1:0", NULL, NULL, &err));
    assert_error_contains(&err, "invalid port 0");
    g_assert_null(channel_listen("exec:cat", &err));
    assert_error_contains(&err, "only unix: and tcp: channels listen");
}

static void rm_tmpdir(void)
{
    g_autoptr(GDir) d = g_dir_open(tmpdir, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *p = tmp_path(name);

        g_unlink(p);
    }
    g_rmdir(tmpdir);
}

/* A TCP connection on loopback: *out is amber's end (a Channel), the return value the peer's. */
static int tcp_pair(Channel **out)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), c, peer;

    g_assert_cmpint(bind(l, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    g_assert_cmpint(listen(l, 1), ==, 0);
    g_assert_cmpint(getsockname(l, (struct sockaddr *)&sa, &len), ==, 0);
    c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_assert_cmpint(connect(c, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    peer = accept(l, NULL, NULL);
    g_assert_cmpint(peer, >=, 0);
    close(l);
    *out = channel_new(c, CHANNEL_TCP, true, "tcp:127.0.0.1:1");
    return peer;
}

/*
 * The end of a socket save: a peer that read everything and closed is a
 * success; one that closed with bytes unread (it died) resets the
 * connection, a failure that says so; a peer that says nothing is taken at
 * its word after the wait; a file needs no wait.
 */
static void test_wait_peer_close(void)
{
    char buf[4096] = { 0 }, path[] = "/tmp/amber-peer-close-XXXXXX";
    Error *err = NULL;
    Channel *ch;
    int peer, fd;
    gint64 t0;

    /* Read all, then closed. */
    peer = tcp_pair(&ch);
    g_assert_cmpint(write(ch->fd, buf, sizeof(buf)), ==, sizeof(buf));
    g_assert_cmpint(read(peer, buf, sizeof(buf)), ==, sizeof(buf));
    close(peer);
    g_assert_true(channel_wait_peer_close(ch, -1, 10000, &error_abort));
    g_assert_true(channel_close(ch, -1, &error_abort));

    /* Closed with the stream unread: the kernel resets the connection. */
    peer = tcp_pair(&ch);
    g_assert_cmpint(write(ch->fd, buf, sizeof(buf)), ==, sizeof(buf));
    g_usleep(20000);
    close(peer);
    g_assert_false(channel_wait_peer_close(ch, -1, 10000, &err));
    assert_error_contains(&err, "tcp:127.0.0.1:1: the destination did not read the whole "
                          "stream: Connection reset by peer");
    channel_abort(ch);

    /* Silent: the wait ends, and the save stands. */
    peer = tcp_pair(&ch);
    t0 = g_get_monotonic_time();
    g_assert_true(channel_wait_peer_close(ch, -1, 100, &error_abort));
    g_assert_cmpint(g_get_monotonic_time() - t0, >=, 100000);
    g_assert_true(channel_close(ch, -1, &error_abort));
    close(peer);

    /* Not a socket: nothing to wait for. */
    fd = g_mkstemp(path);
    ch = channel_new(fd, CHANNEL_FILE, true, "file:x");
    g_assert_true(channel_wait_peer_close(ch, -1, 10000, &error_abort));
    channel_abort(ch);
    unlink(path);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);       /* as amber's main does */
    int ret;

    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("amber-channel-XXXXXX", NULL);
    g_assert_nonnull(tmpdir);
    g_test_add_func("/channel/parse-good", test_parse_good);
    g_test_add_func("/channel/parse-bad", test_parse_bad);
    g_test_add_func("/channel/exec-round-trip", test_exec_round_trip);
    g_test_add_func("/channel/exec-failing-child", test_exec_failing_child);
    g_test_add_func("/channel/exec-missing-command", test_exec_missing_command);
    g_test_add_func("/channel/exec-close-cancelled", test_exec_close_cancelled);
    g_test_add_func("/channel/file-offset", test_file_offset);
    g_test_add_func("/channel/file-errors", test_file_errors);
    g_test_add_func("/channel/fd", test_fd);
    g_test_add_func("/channel/wait-peer-close", test_wait_peer_close);
    g_test_add_func("/channel/unix", test_unix);
    g_test_add_func("/channel/tcp", test_tcp);
    g_test_add_func("/channel/tcp-ipv6", test_tcp_ipv6);
    g_test_add_func("/channel/tcp-refused", test_tcp_refused);
    g_test_add_func("/channel/tcp-connect-cancelled", test_tcp_connect_cancelled);
    ret = g_test_run();
    rm_tmpdir();
    g_free(tmpdir);
    return ret;
}
