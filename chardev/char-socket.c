/*
 * unix: chardevs.  A server listens on PATH (mode 0600) and serves one
 * client at a time: while a client is connected the listening socket is
 * not watched, so the next one waits in the backlog until the first
 * leaves.  A client connects once and stays disconnected after EOF.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <glib-unix.h>

#include "char-internal.h"

static void fill_addr(struct sockaddr_un *sa, const char *path)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    g_strlcpy(sa->sun_path, path, sizeof(sa->sun_path));
}

/* Out of descriptors or memory: accept again after this long. */
#define ACCEPT_RETRY_MS 100

static gboolean accept_retry(gpointer opaque)
{
    Chardev *chr = opaque;

    chr->listen_watch = 0;
    chardev_unix_peer_gone(chr);
    return G_SOURCE_REMOVE;
}

static gboolean on_accept(gint fd, GIOCondition cond, gpointer opaque)
{
    Chardev *chr = opaque;
    int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

    if (cfd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                    errno == ENOMEM)) {
        /*
         * The client stays in the backlog and the socket readable: watched,
         * it would spin the main loop until a descriptor is free.
         */
        chr->listen_watch = g_timeout_add(ACCEPT_RETRY_MS, accept_retry, chr);
        return G_SOURCE_REMOVE;
    }
    if (cfd < 0) {
        return G_SOURCE_CONTINUE;   /* the client gave up already, or EINTR */
    }
    chr->listen_watch = 0;
    chardev_peer_arrived(chr, cfd, true);
    return G_SOURCE_REMOVE;
}

void chardev_unix_peer_gone(Chardev *chr)
{
    if (chr->listen_fd >= 0 && !chr->listen_watch) {
        chr->listen_watch = g_unix_fd_add(chr->listen_fd, G_IO_IN, on_accept, chr);
    }
}

/* Remove a stale socket left by an earlier run, but never anything else. */
static bool clear_path(const char *path, Error **errp)
{
    struct stat st;

    if (lstat(path, &st) < 0) {
        return true;
    }
    if (!S_ISSOCK(st.st_mode)) {
        error_setg(errp, "'%s' exists and is not a socket", path);
        return false;
    }
    if (unlink(path) < 0) {
        error_setg_errno(errp, errno, "cannot remove the old socket '%s'", path);
        return false;
    }
    return true;
}

static bool wait_for_client(Chardev *chr)
{
    struct pollfd pfd = { .fd = chr->listen_fd, .events = POLLIN };

    fprintf(stderr, "amber: waiting for a connection on %s\n",
            chr->cfg.path ? chr->cfg.path : chr->spec);
    for (;;) {
        if (poll(&pfd, 1, -1) < 0 && errno != EINTR) {
            return false;
        }
        int cfd = accept4(chr->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd >= 0) {
            chardev_attach_peer(chr, cfd, cfd, true);
            return true;
        }
    }
}

static bool open_server(Chardev *chr, Error **errp)
{
    struct sockaddr_un sa;
    const char *path = chr->cfg.path;

    if (!clear_path(path, errp)) {
        return false;
    }
    chr->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (chr->listen_fd < 0) {
        error_setg_errno(errp, errno, "cannot create a unix socket");
        return false;
    }
    fill_addr(&sa, path);
    if (bind(chr->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        error_setg_errno(errp, errno, "cannot bind unix socket '%s'", path);
        return false;
    }
    chr->unlink_path = g_canonicalize_filename(path, NULL);
    /* Before listen(): nobody can connect while the mode is still wider. */
    if (chmod(path, 0600) < 0 || listen(chr->listen_fd, 1) < 0) {
        error_setg_errno(errp, errno, "cannot listen on unix socket '%s'", path);
        return false;
    }
    if (chr->cfg.wait && !wait_for_client(chr)) {
        error_setg_errno(errp, errno, "waiting for a client on '%s' failed", path);
        return false;
    }
    if (chr->in_fd < 0) {
        chardev_unix_peer_gone(chr);
    }
    return true;
}

static bool open_client(Chardev *chr, Error **errp)
{
    struct sockaddr_un sa;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        error_setg_errno(errp, errno, "cannot create a unix socket");
        return false;
    }
    fill_addr(&sa, chr->cfg.path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        error_setg_errno(errp, errno, "cannot connect to unix socket '%s'", chr->cfg.path);
        close(fd);
        return false;
    }
    g_unix_set_fd_nonblocking(fd, TRUE, NULL);
    chardev_attach_peer(chr, fd, fd, true);
    return true;
}

bool chardev_check_listening_fd(int fd, Error **errp)
{
    int listening = 0;
    socklen_t len = sizeof(listening);
    struct stat st;

    if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode)) {
        error_setg(errp, "descriptor %d is not an open socket", fd);
        return false;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 || !listening) {
        error_setg(errp, "socket %d is not listening (server=on needs a listening socket)",
                   fd);
        return false;
    }
    return true;
}

/* fd:N: adopt a socket that is already listening; amber closes it at the end. */
static bool open_passed(Chardev *chr, Error **errp)
{
    int fd = chr->cfg.fd;

    if (!chardev_check_listening_fd(fd, errp)) {
        error_prepend(errp, "fd:%d: ", fd);
        return false;
    }
    if (!g_unix_set_fd_nonblocking(fd, TRUE, NULL) || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        error_setg_errno(errp, errno, "fd:%d: cannot set up the socket", fd);
        return false;
    }
    chr->listen_fd = fd;
    if (chr->cfg.wait && !wait_for_client(chr)) {
        error_setg_errno(errp, errno, "waiting for a client on fd %d failed", fd);
        return false;
    }
    if (chr->in_fd < 0) {
        chardev_unix_peer_gone(chr);
    }
    return true;
}

bool chardev_unix_open(Chardev *chr, Error **errp)
{
    if (chr->cfg.fd >= 0) {
        return open_passed(chr, errp);
    }
    return chr->cfg.server ? open_server(chr, errp) : open_client(chr, errp);
}

void chardev_unix_close(Chardev *chr)
{
    if (chr->listen_watch) {
        g_source_remove(chr->listen_watch);
        chr->listen_watch = 0;
    }
    if (chr->listen_fd >= 0) {
        close(chr->listen_fd);
        chr->listen_fd = -1;
    }
    if (chr->unlink_path) {
        unlink(chr->unlink_path);
        g_free(chr->unlink_path);
        chr->unlink_path = NULL;
    }
}

ssize_t chardev_unix_recv(Chardev *chr, uint8_t *buf, size_t len)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * CHARDEV_MAX_FDS)];
        struct cmsghdr align;
    } control;
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1,
        .msg_control = control.buf, .msg_controllen = sizeof(control.buf),
    };
    ssize_t n = recvmsg(chr->in_fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);

    if (n <= 0) {
        return n;
    }
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int nfds = MIN((c->cmsg_len - CMSG_LEN(0)) / sizeof(int), CHARDEV_MAX_FDS);
            int fds[CHARDEV_MAX_FDS];
            memcpy(fds, CMSG_DATA(c), nfds * sizeof(int));
            chardev_keep_received_fds(chr, fds, nfds);
        }
    }
    return n;
}
