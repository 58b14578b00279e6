/*
 * Migration channels over sockets: unix: and tcp:, connect and listen.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <unistd.h>
#include <glib.h>

#include "migration/channel.h"

struct ChannelListener {
    int fd;
    ChannelKind kind;
    char *uri;              /* the address peers use, port resolved */
    char *unix_path;        /* socket file we created, removed at free */
    uint16_t port;
};

/*
 * connect(), which a signal on cancel_fd (-1: none) ends with ECANCELED:
 * to a host that drops the SYNs it takes the kernel two minutes to give
 * up, and migrate_cancel or quit must not wait that long.  The socket is
 * blocking again afterwards.  False with errno set.
 */
static bool connect_cancellable(int fd, const struct sockaddr *sa, socklen_t len, int cancel_fd)
{
    int fl = fcntl(fd, F_GETFL);
    int err = 0, n;
    socklen_t elen = sizeof(err);

    if (cancel_fd < 0 || fl < 0) {
        return connect(fd, sa, len) == 0;
    }
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    if (connect(fd, sa, len) < 0) {
        err = errno;
    }
    if (err == EINPROGRESS || err == EAGAIN) {
        struct pollfd p[2] = { { .fd = fd, .events = POLLOUT },
                               { .fd = cancel_fd, .events = POLLIN } };

        do {
            n = poll(p, 2, -1);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            err = errno;
        } else if (p[1].revents & POLLIN) {
            err = ECANCELED;
        } else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0) {
            err = errno;
        }
    }
    fcntl(fd, F_SETFL, fl);
    errno = err;
    return err == 0;
}

/* ---- unix: --------------------------------------------------------------- */

static bool unix_sockaddr(const char *path, struct sockaddr_un *sa, Error **errp)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa->sun_path)) {
        error_setg(errp, "unix socket path '%s' is too long (at most %zu bytes)",
                   path, sizeof(sa->sun_path) - 1);
        return false;
    }
    strcpy(sa->sun_path, path);
    return true;
}

static Channel *unix_connect(const ChannelAddress *addr, const char *uri, int cancel_fd,
                             Error **errp)
{
    struct sockaddr_un sa;
    int fd;

    if (!unix_sockaddr(addr->path, &sa, errp)) {
        return NULL;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error_setg_errno(errp, errno, "cannot create a unix socket");
        return NULL;
    }
    if (!connect_cancellable(fd, (struct sockaddr *)&sa, sizeof(sa), cancel_fd)) {
        error_setg_errno(errp, errno, "cannot connect to %s", uri);
        close(fd);
        return NULL;
    }
    return channel_new(fd, CHANNEL_UNIX, true, uri);
}

static ChannelListener *unix_listen(const ChannelAddress *addr, const char *uri,
                                    Error **errp)
{
    ChannelListener *l;
    struct sockaddr_un sa;
    struct stat st;
    int fd;

    if (!unix_sockaddr(addr->path, &sa, errp)) {
        return NULL;
    }
    /* A stale socket from an earlier run is replaced; anything else is not ours. */
    if (lstat(addr->path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            error_setg(errp, "cannot listen on %s: '%s' exists and is not a socket",
                       uri, addr->path);
            return NULL;
        }
        unlink(addr->path);
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error_setg_errno(errp, errno, "cannot create a unix socket");
        return NULL;
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
        error_setg_errno(errp, errno, "cannot listen on %s", uri);
        close(fd);
        return NULL;
    }
    l = g_new0(ChannelListener, 1);
    l->fd = fd;
    l->kind = CHANNEL_UNIX;
    l->uri = g_strdup_printf("unix:%s", addr->path);
    l->unix_path = g_strdup(addr->path);
    return l;
}

/* ---- tcp: ---------------------------------------------------------------- */

static struct addrinfo *tcp_resolve(const ChannelAddress *addr, const char *uri,
                                    bool passive, Error **errp)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = passive ? AI_PASSIVE : 0,
    };
    struct addrinfo *res = NULL;
    char port[8];
    int r;

    snprintf(port, sizeof(port), "%u", addr->port);
    r = getaddrinfo(*addr->host ? addr->host : NULL, port, &hints, &res);
    if (r != 0) {
        error_setg(errp, "cannot resolve host '%s' in '%s': %s", addr->host, uri,
                   r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
        return NULL;
    }
    return res;
}

static Channel *tcp_connect(const ChannelAddress *addr, const char *uri, int cancel_fd,
                            Error **errp)
{
    struct addrinfo *res, *ai;
    int fd = -1, last_errno = 0;

    if (addr->port == 0) {
        error_setg(errp, "invalid port 0 in '%s': a port to connect to is needed", uri);
        return NULL;
    }
    res = tcp_resolve(addr, uri, false, errp);
    if (!res) {
        return NULL;
    }
    /* Try every address the name has (localhost: ::1 then 127.0.0.1). */
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        if (connect_cancellable(fd, ai->ai_addr, ai->ai_addrlen, cancel_fd)) {
            break;
        }
        last_errno = errno;
        close(fd);
        fd = -1;
        if (last_errno == ECANCELED) {
            break;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        error_setg_errno(errp, last_errno, "cannot connect to %s", uri);
        return NULL;
    }
    return channel_new(fd, CHANNEL_TCP, true, uri);
}

/* Bind and listen on the first address that works; returns the socket. */
static int tcp_bind_any(struct addrinfo *res, int *last_errno)
{
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int one = 1;
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);

        if (fd < 0) {
            *last_errno = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1) == 0) {
            return fd;
        }
        *last_errno = errno;
        close(fd);
    }
    return -1;
}

/* "tcp:HOST:PORT" for what the socket is bound to (the chosen port). */
static bool tcp_local_uri(ChannelListener *l, Error **errp)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[NI_MAXHOST], port[NI_MAXSERV];

    if (getsockname(l->fd, (struct sockaddr *)&ss, &len) < 0 ||
        getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        error_setg_errno(errp, errno, "cannot read the address of the listening socket");
        return false;
    }
    l->port = atoi(port);
    l->uri = g_strdup_printf(ss.ss_family == AF_INET6 ? "tcp:[%s]:%s" : "tcp:%s:%s",
                             host, port);
    return true;
}

static ChannelListener *tcp_listen(const ChannelAddress *addr, const char *uri,
                                   Error **errp)
{
    struct addrinfo *res = tcp_resolve(addr, uri, true, errp);
    ChannelListener *l;
    int fd, last_errno = 0;

    if (!res) {
        return NULL;
    }
    fd = tcp_bind_any(res, &last_errno);
    freeaddrinfo(res);
    if (fd < 0) {
        error_setg_errno(errp, last_errno, "cannot listen on %s", uri);
        return NULL;
    }
    l = g_new0(ChannelListener, 1);
    l->fd = fd;
    l->kind = CHANNEL_TCP;
    if (!tcp_local_uri(l, errp)) {
        channel_listener_free(l);
        return NULL;
    }
    return l;
}

/* ---- entry points -------------------------------------------------------- */

Channel *channel_socket_connect(const ChannelAddress *addr, const char *uri, int cancel_fd,
                                Error **errp)
{
    return addr->kind == CHANNEL_UNIX ? unix_connect(addr, uri, cancel_fd, errp)
                                      : tcp_connect(addr, uri, cancel_fd, errp);
}

ChannelListener *channel_socket_listen(const ChannelAddress *addr, const char *uri,
                                       Error **errp)
{
    return addr->kind == CHANNEL_UNIX ? unix_listen(addr, uri, errp)
                                      : tcp_listen(addr, uri, errp);
}

int channel_listener_fd(ChannelListener *l)
{
    return l->fd;
}

const char *channel_listener_uri(ChannelListener *l)
{
    return l->uri;
}

uint16_t channel_listener_port(ChannelListener *l)
{
    return l->port;
}

Channel *channel_listener_accept(ChannelListener *l, Error **errp)
{
    int fd;

    do {
        fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        error_setg_errno(errp, errno, "accepting a connection on %s failed", l->uri);
        return NULL;
    }
    return channel_new(fd, l->kind, false, l->uri);
}

void channel_listener_free(ChannelListener *l)
{
    if (!l) {
        return;
    }
    close(l->fd);
    if (l->unix_path) {
        unlink(l->unix_path);
    }
    g_free(l->unix_path);
    g_free(l->uri);
    g_free(l);
}
