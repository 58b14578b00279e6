/*
 * Migration channels: URI parsing, exec:, file: and fd:.  unix: and tcp:
 * live in channel-socket.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib.h>

#include "migration/channel.h"

extern char **environ;

#define URI_SCHEMES "exec:, file:, fd:, unix: or tcp:"

const char *channel_kind_name(ChannelKind kind)
{
    static const char *const names[] = {
        [CHANNEL_EXEC] = "exec", [CHANNEL_FILE] = "file", [CHANNEL_FD] = "fd",
        [CHANNEL_UNIX] = "unix", [CHANNEL_TCP] = "tcp",
    };
    return names[kind];
}

void channel_address_clear(ChannelAddress *addr)
{
    g_free(addr->command);
    g_free(addr->path);
    g_free(addr->fd_name);
    g_free(addr->host);
    memset(addr, 0, sizeof(*addr));
}

/* ---- parsing ------------------------------------------------------------- */

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;

    if (!g_ascii_isdigit(*s)) {
        return false;       /* also refuses "-1", which strtoull would wrap */
    }
    errno = 0;
    *out = strtoull(s, &end, 0);
    return errno == 0 && *end == '\0';
}

/* PATH[,offset=N]; the last ",offset=" wins so a path may contain commas. */
static bool parse_file(const char *rest, const char *uri, ChannelAddress *addr,
                       Error **errp)
{
    const char *opt = g_strrstr(rest, ",offset=");

    if (opt) {
        const char *num = opt + strlen(",offset=");

        if (!parse_u64(num, &addr->offset) || addr->offset > INT64_MAX) {
            error_setg(errp, "invalid offset '%s' in '%s': expected a number of bytes",
                       num, uri);
            return false;
        }
        addr->has_offset = true;
        addr->path = g_strndup(rest, opt - rest);
    } else {
        addr->path = g_strdup(rest);
    }
    if (!*addr->path) {
        error_setg(errp, "'%s': missing file path (file:PATH[,offset=N])", uri);
        return false;
    }
    return true;
}

static bool parse_port(const char *s, const char *uri, uint16_t *port, Error **errp)
{
    uint64_t v;

    if (!*s || strspn(s, "0123456789") != strlen(s) || !parse_u64(s, &v) || v > 65535) {
        error_setg(errp, "invalid port '%s' in '%s': expected a number from 0 to 65535",
                   s, uri);
        return false;
    }
    *port = v;
    return true;
}

/* HOST:PORT, [IPV6]:PORT, :PORT or 0:PORT. */
static bool parse_tcp(const char *rest, const char *uri, ChannelAddress *addr,
                      Error **errp)
{
    const char *colon;

    if (rest[0] == '[') {
        const char *close = strchr(rest, ']');

        if (!close || close[1] != ':') {
            error_setg(errp, "invalid address in '%s': expected tcp:[IPV6]:PORT", uri);
            return false;
        }
        addr->host = g_strndup(rest + 1, close - rest - 1);
        colon = close + 1;
    } else {
        colon = strrchr(rest, ':');
        if (!colon) {
            error_setg(errp, "invalid address in '%s': expected tcp:HOST:PORT", uri);
            return false;
        }
        addr->host = g_strndup(rest, colon - rest);
        if (strchr(addr->host, ':')) {
            error_setg(errp, "invalid address in '%s': write IPv6 addresses in "
                       "brackets, tcp:[::1]:PORT", uri);
            return false;
        }
    }
    return parse_port(colon + 1, uri, &addr->port, errp);
}

static bool parse_scheme(const char *scheme, const char *rest, const char *uri,
                         ChannelAddress *addr, Error **errp)
{
    if (!strcmp(scheme, "file")) {
        addr->kind = CHANNEL_FILE;
        return parse_file(rest, uri, addr, errp);
    }
    if (!strcmp(scheme, "tcp")) {
        addr->kind = CHANNEL_TCP;
        return parse_tcp(rest, uri, addr, errp);
    }
    if (!*rest) {
        error_setg(errp, "'%s': nothing after '%s:'", uri, scheme);
        return false;
    }
    if (!strcmp(scheme, "exec")) {
        addr->kind = CHANNEL_EXEC;
        addr->command = g_strdup(rest);
    } else if (!strcmp(scheme, "fd")) {
        addr->kind = CHANNEL_FD;
        addr->fd_name = g_strdup(rest);
    } else if (!strcmp(scheme, "unix")) {
        addr->kind = CHANNEL_UNIX;
        addr->path = g_strdup(rest);
    } else {
        error_setg(errp, "unknown migration URI scheme '%s' in '%s' (expected "
                   URI_SCHEMES ")", scheme, uri);
        return false;
    }
    return true;
}

bool channel_uri_reconnects(const char *uri, const char *what, Error **errp)
{
    ChannelAddress addr;
    bool socket;

    if (!channel_parse_uri(uri, &addr, errp)) {
        return false;
    }
    socket = addr.kind == CHANNEL_UNIX || addr.kind == CHANNEL_TCP;
    channel_address_clear(&addr);
    if (!socket) {
        error_setg(errp, "%s needs a unix: or tcp: URI, not '%s'", what, uri);
    }
    return socket;
}

bool channel_parse_uri(const char *uri, ChannelAddress *addr, Error **errp)
{
    const char *colon = uri ? strchr(uri, ':') : NULL;
    g_autofree char *scheme = NULL;

    memset(addr, 0, sizeof(*addr));
    if (!colon || colon == uri) {
        error_setg(errp, "invalid migration URI '%s': expected " URI_SCHEMES
                   " followed by an address", uri ? uri : "");
        return false;
    }
    scheme = g_strndup(uri, colon - uri);
    if (!parse_scheme(scheme, colon + 1, uri, addr, errp)) {
        channel_address_clear(addr);
        return false;
    }
    return true;
}

/* ---- common -------------------------------------------------------------- */

Channel *channel_new(int fd, ChannelKind kind, bool outgoing, const char *uri)
{
    Channel *ch = g_new0(Channel, 1);

    ch->fd = fd;
    ch->kind = kind;
    ch->outgoing = outgoing;
    ch->uri = g_strdup(uri);
    ch->child = -1;
    return ch;
}

static void channel_free(Channel *ch)
{
    g_free(ch->uri);
    g_free(ch->command);
    g_free(ch->path);
    g_free(ch);
}

/* ---- exec: --------------------------------------------------------------- */

static bool spawn_shell(const char *command, int child_fd, int target, pid_t *pid,
                        Error **errp)
{
    char *argv[] = { "sh", "-c", (char *)command, NULL };
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, deflt;
    int err;

    /* The child starts with default SIGPIPE handling and no blocked signals,
     * whatever this process has set for itself. */
    sigemptyset(&none);
    sigemptyset(&deflt);
    sigaddset(&deflt, SIGPIPE);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &deflt);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, child_fd, target);
    err = posix_spawn(pid, "/bin/sh", &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (err) {
        error_setg_errno(errp, err, "cannot run /bin/sh for exec command '%s'", command);
        return false;
    }
    return true;
}

static Channel *exec_open(const ChannelAddress *addr, const char *uri, bool outgoing,
                          Error **errp)
{
    int p[2];
    int ours, theirs;
    pid_t pid;
    Channel *ch;

    if (pipe2(p, O_CLOEXEC) < 0) {
        error_setg_errno(errp, errno, "cannot create a pipe for '%s'", uri);
        return NULL;
    }
    /* p[0] is the read end: the child reads it when we send. */
    ours = outgoing ? p[1] : p[0];
    theirs = outgoing ? p[0] : p[1];
    if (!spawn_shell(addr->command, theirs, outgoing ? 0 : 1, &pid, errp)) {
        close(p[0]);
        close(p[1]);
        return NULL;
    }
    close(theirs);
    ch = channel_new(ours, CHANNEL_EXEC, outgoing, uri);
    ch->child = pid;
    ch->command = g_strdup(addr->command);
    return ch;
}

/* A child given SIGTERM this long before SIGKILL. */
#define EXEC_TERM_WAIT_MS 1000

/*
 * Until the child exits, or cancel_fd (if any) is signalled.  True: it
 * exited (waitpid will not block).  False: cancelled.  Without a pidfd
 * (an old kernel) the wait cannot be cancelled.
 */
static bool exec_exited(pid_t pid, int cancel_fd, int timeout_ms)
{
    int pidfd = cancel_fd >= 0 || timeout_ms >= 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
    struct pollfd p[2] = { { .fd = pidfd, .events = POLLIN },
                           { .fd = cancel_fd, .events = POLLIN } };
    int n;

    if (pidfd < 0) {
        return true;
    }
    do {
        n = poll(p, cancel_fd >= 0 ? 2 : 1, timeout_ms);
    } while (n < 0 && errno == EINTR);
    close(pidfd);
    return n > 0 && (p[0].revents & POLLIN);
}

/*
 * The child's exit status; a cancel (a child that does not end: a hung
 * ssh, a full remote disk) kills it instead, SIGTERM then SIGKILL.
 */
static bool exec_wait(Channel *ch, int cancel_fd, Error **errp)
{
    bool cancelled = !exec_exited(ch->child, cancel_fd, -1);
    int status;
    pid_t r;

    if (cancelled) {
        kill(ch->child, SIGTERM);
        if (!exec_exited(ch->child, -1, EXEC_TERM_WAIT_MS)) {
            kill(ch->child, SIGKILL);
        }
    }
    do {
        r = waitpid(ch->child, &status, 0);
    } while (r < 0 && errno == EINTR);
    if (cancelled) {
        ch->child = -1;
        error_setg(errp, "cancelled while exec command '%s' had not finished", ch->command);
        return false;
    }
    ch->child = -1;
    if (r < 0) {
        error_setg_errno(errp, errno, "cannot get the exit status of exec command '%s'",
                         ch->command);
        return false;
    }
    if (WIFSIGNALED(status)) {
        error_setg(errp, "exec command '%s' was killed by signal %d (%s)", ch->command,
                   WTERMSIG(status), strsignal(WTERMSIG(status)));
        return false;
    }
    if (WEXITSTATUS(status) == 127) {
        error_setg(errp, "exec command '%s' failed: command not found (exit status 127)",
                   ch->command);
        return false;
    }
    if (WEXITSTATUS(status) != 0) {
        error_setg(errp, "exec command '%s' failed with exit status %d", ch->command,
                   WEXITSTATUS(status));
        return false;
    }
    return true;
}

/* ---- file: --------------------------------------------------------------- */

static Channel *file_open(const ChannelAddress *addr, const char *uri, bool outgoing,
                          Error **errp)
{
    int flags = outgoing ? O_WRONLY | O_CREAT | (addr->has_offset ? 0 : O_TRUNC)
                         : O_RDONLY;
    struct stat st;
    Channel *ch;
    int fd;

    fd = open(addr->path, flags | O_CLOEXEC, 0666);
    if (fd < 0) {
        error_setg_errno(errp, errno, "cannot open '%s' for %s", addr->path,
                         outgoing ? "writing" : "reading");
        return NULL;
    }
    if (!outgoing && addr->has_offset && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        (uint64_t)st.st_size < addr->offset) {
        error_setg(errp, "offset %" PRIu64 " is beyond the end of '%s' (%" PRIu64 " bytes)",
                   addr->offset, addr->path, (uint64_t)st.st_size);
        close(fd);
        return NULL;
    }
    if (addr->has_offset && lseek(fd, addr->offset, SEEK_SET) < 0) {
        error_setg_errno(errp, errno, "cannot seek to offset %" PRIu64 " in '%s'",
                         addr->offset, addr->path);
        close(fd);
        return NULL;
    }
    ch = channel_new(fd, CHANNEL_FILE, outgoing, uri);
    ch->path = g_strdup(addr->path);
    ch->fsync_on_close = outgoing;
    return ch;
}

/* ---- fd: ----------------------------------------------------------------- */

/*
 * QEMU's rule: a name that starts with a digit is the number of a
 * descriptor the process inherited (libvirt restores with
 * `migrate-incoming fd:N` this way; getfd refuses such names), any other
 * is one passed with getfd.
 */
static int fd_resolve(const ChannelAddress *addr, ChannelFdLookup lookup, void *opaque,
                      Error **errp)
{
    uint64_t n;

    if (lookup && !g_ascii_isdigit(addr->fd_name[0])) {
        return lookup(opaque, addr->fd_name, errp);
    }
    if (!parse_u64(addr->fd_name, &n) || n > INT32_MAX) {
        error_setg(errp, g_ascii_isdigit(addr->fd_name[0])
                   ? "fd:%s: not a descriptor number (a name passed with getfd cannot start "
                     "with a digit)"
                   : "fd:%s: no descriptor of that name (pass it with getfd first)",
                   addr->fd_name);
        return -1;
    }
    if (fcntl((int)n, F_GETFD) < 0) {
        error_setg(errp, "fd:%s: not an open file descriptor", addr->fd_name);
        return -1;
    }
    return (int)n;
}

static Channel *fd_open(const ChannelAddress *addr, const char *uri, bool outgoing,
                        ChannelFdLookup lookup, void *opaque, Error **errp)
{
    int fd = fd_resolve(addr, lookup, opaque, errp);
    int fl;

    if (fd < 0) {
        return NULL;
    }
    /* The stream does blocking I/O; a descriptor passed in may not be. */
    fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK)) {
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    }
    return channel_new(fd, CHANNEL_FD, outgoing, uri);
}

/* ---- open / close -------------------------------------------------------- */

static Channel *channel_open(const char *uri, bool outgoing, ChannelFdLookup lookup,
                             void *opaque, int cancel_fd, Error **errp)
{
    ChannelAddress addr;
    Channel *ch = NULL;
    ChannelListener *l;

    if (!channel_parse_uri(uri, &addr, errp)) {
        return NULL;
    }
    switch (addr.kind) {
    case CHANNEL_EXEC:
        ch = exec_open(&addr, uri, outgoing, errp);
        break;
    case CHANNEL_FILE:
        ch = file_open(&addr, uri, outgoing, errp);
        break;
    case CHANNEL_FD:
        ch = fd_open(&addr, uri, outgoing, lookup, opaque, errp);
        break;
    case CHANNEL_UNIX:
    case CHANNEL_TCP:
        if (outgoing) {
            ch = channel_socket_connect(&addr, uri, cancel_fd, errp);
            break;
        }
        l = channel_socket_listen(&addr, uri, errp);
        if (l) {
            ch = channel_listener_accept(l, errp);
            channel_listener_free(l);
        }
        break;
    }
    channel_address_clear(&addr);
    return ch;
}

Channel *channel_open_outgoing(const char *uri, ChannelFdLookup lookup,
                               void *lookup_opaque, Error **errp)
{
    return channel_open(uri, true, lookup, lookup_opaque, -1, errp);
}

Channel *channel_connect(const char *uri, int cancel_fd, Error **errp)
{
    return channel_open(uri, true, NULL, NULL, cancel_fd, errp);
}

Channel *channel_open_incoming(const char *uri, ChannelFdLookup lookup,
                               void *lookup_opaque, Error **errp)
{
    return channel_open(uri, false, lookup, lookup_opaque, -1, errp);
}

ChannelListener *channel_listen(const char *uri, Error **errp)
{
    ChannelAddress addr;
    ChannelListener *l = NULL;

    if (!channel_parse_uri(uri, &addr, errp)) {
        return NULL;
    }
    if (addr.kind == CHANNEL_UNIX || addr.kind == CHANNEL_TCP) {
        l = channel_socket_listen(&addr, uri, errp);
    } else {
        error_setg(errp, "'%s': only unix: and tcp: channels listen", uri);
    }
    channel_address_clear(&addr);
    return l;
}

bool channel_wait_peer_close(Channel *ch, int cancel_fd, int timeout_ms, Error **errp)
{
    int64_t deadline = g_get_monotonic_time() + (int64_t)timeout_ms * 1000;
    struct stat st;
    char buf[4096];

    if (!ch || fstat(ch->fd, &st) < 0 || !S_ISSOCK(st.st_mode)) {
        return true;
    }
    if (shutdown(ch->fd, SHUT_WR) < 0) {
        /* The peer reset the connection already: that, not ENOTCONN, is the news. */
        int e = errno, so = 0;
        socklen_t len = sizeof(so);

        if (getsockopt(ch->fd, SOL_SOCKET, SO_ERROR, &so, &len) == 0 && so) {
            e = so;
        }
        error_setg_errno(errp, e == ENOTCONN ? ECONNRESET : e, "%s: the destination did not "
                         "read the whole stream", ch->uri);
        return false;
    }
    for (;;) {
        struct pollfd p[2] = { { .fd = ch->fd, .events = POLLIN },
                               { .fd = cancel_fd, .events = POLLIN } };
        int64_t left = deadline - g_get_monotonic_time();
        ssize_t n;

        if (left <= 0 || poll(p, cancel_fd >= 0 ? 2 : 1, left / 1000 + 1) == 0 ||
            (p[1].revents & POLLIN)) {
            return true;            /* no word in time, or cancelled after the end */
        }
        n = recv(ch->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0) {
            return true;            /* it read everything and closed */
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            error_setg_errno(errp, errno, "%s: the destination did not read the whole "
                             "stream", ch->uri);
            return false;
        }
    }
}

bool channel_close(Channel *ch, int cancel_fd, Error **errp)
{
    Error *err = NULL;

    if (!ch) {
        return true;
    }
    if (ch->fsync_on_close && fsync(ch->fd) < 0) {
        error_setg_errno(&err, errno, "cannot write '%s' to disk", ch->path);
    }
    if (close(ch->fd) < 0 && !err) {
        error_setg_errno(&err, errno, "closing %s failed", ch->uri);
    }
    /* The child sees end of file only now; then it can finish. */
    if (ch->child > 0) {
        Error *werr = NULL;

        if (!exec_wait(ch, cancel_fd, &werr)) {
            if (err) {
                error_free(werr);
            } else {
                err = werr;
            }
        }
    }
    channel_free(ch);
    if (err) {
        error_propagate(errp, err);
        return false;
    }
    return true;
}

void channel_abort(Channel *ch)
{
    if (!ch) {
        return;
    }
    close(ch->fd);
    if (ch->child > 0) {
        kill(ch->child, SIGTERM);
        while (waitpid(ch->child, NULL, 0) < 0 && errno == EINTR) {
            /* retry */
        }
    }
    channel_free(ch);
}
