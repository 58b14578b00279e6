/*
 * Migration channels: a URI becomes a connected file descriptor.
 *
 *   exec:CMD                 /bin/sh -c CMD; outgoing writes to its stdin,
 *                            incoming reads its stdout
 *   file:PATH[,offset=N]     outgoing creates/truncates PATH (no truncation
 *                            with an offset) and writes from N; incoming
 *                            reads from N
 *   fd:NAME                  a descriptor the monitor received (getfd), found
 *                            through ChannelFdLookup; without one, a number
 *                            names an inherited descriptor
 *   unix:PATH                outgoing connects; incoming listens, accepts one
 *   tcp:HOST:PORT            same over TCP; HOST may be a name, an IPv4
 *                            address, [IPv6], 0 or empty (any address); port
 *                            0 on incoming picks a free port
 *
 * Closing is part of success: channel_close() fsyncs a written file and
 * waits for an exec child, and fails when that fails (child exit status
 * non-zero, death by a signal), so the caller reports it.
 */
#ifndef AMBER_MIGRATION_CHANNEL_H
#define AMBER_MIGRATION_CHANNEL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

typedef enum ChannelKind {
    CHANNEL_EXEC,
    CHANNEL_FILE,
    CHANNEL_FD,
    CHANNEL_UNIX,
    CHANNEL_TCP,
} ChannelKind;

/* A parsed URI. */
typedef struct ChannelAddress {
    ChannelKind kind;
    char *command;          /* exec */
    char *path;             /* file, unix */
    uint64_t offset;        /* file */
    bool has_offset;
    char *fd_name;          /* fd */
    char *host;             /* tcp: without brackets; "" = any */
    uint16_t port;          /* tcp */
} ChannelAddress;

/* Fill *addr from uri (free with channel_address_clear). */
bool channel_parse_uri(const char *uri, ChannelAddress *addr, Error **errp);
void channel_address_clear(ChannelAddress *addr);
const char *channel_kind_name(ChannelKind kind);     /* "exec", "file", ... */
/*
 * uri is a unix: or tcp: address, one a peer can connect to again (a
 * postcopy recovery); otherwise false, the error saying `what` needs one.
 */
bool channel_uri_reconnects(const char *uri, const char *what, Error **errp);

/*
 * fd:NAME resolution, provided by the monitor (getfd).  Returns a
 * descriptor the channel then owns, or -1 with *errp set.
 */
typedef int (*ChannelFdLookup)(void *opaque, const char *name, Error **errp);

typedef struct Channel {
    int fd;                 /* connected, blocking */
    ChannelKind kind;
    bool outgoing;
    char *uri;              /* as given, for messages */
    pid_t child;            /* exec: the shell, -1 otherwise */
    char *command;          /* exec: for messages */
    char *path;             /* file: for messages */
    bool fsync_on_close;    /* outgoing file */
    bool direct;            /* outgoing file switched to O_DIRECT (direct-io) */
} Channel;

Channel *channel_open_outgoing(const char *uri, ChannelFdLookup lookup,
                               void *lookup_opaque, Error **errp);
/*
 * The same without fd: names, for a thread that may be cancelled: a
 * unix: or tcp: connect ends when cancel_fd is signalled (ECANCELED).
 */
Channel *channel_connect(const char *uri, int cancel_fd, Error **errp);
/*
 * Incoming side.  unix: and tcp: listen and block until one peer
 * connects; a caller that must keep a main loop running uses
 * channel_listen() and accepts when the listener fd is readable.
 */
Channel *channel_open_incoming(const char *uri, ChannelFdLookup lookup,
                               void *lookup_opaque, Error **errp);

/*
 * An outgoing socket's last act before channel_close(): half-close it and
 * wait, at most timeout_ms or until cancel_fd is signalled, for the peer to
 * close its end.  A peer that died with bytes of the stream unread resets
 * the connection: false, saying so.  A peer that closes, or says nothing
 * in time, is taken at its word (only a reply could tell a destination
 * that read everything and then failed from one that finished).  Anything
 * but a socket: true at once.
 */
bool channel_wait_peer_close(Channel *ch, int cancel_fd, int timeout_ms, Error **errp);

/*
 * Close the descriptor, then: fsync (outgoing file, before the close) and
 * wait for an exec child, which a signal on cancel_fd (-1: none) kills
 * instead.  Returns false with *errp set when any of that failed or was
 * cancelled.  Always frees ch.  NULL is a no-op that succeeds.
 */
bool channel_close(Channel *ch, int cancel_fd, Error **errp);
/* Close without reporting: kill an exec child (SIGTERM) and reap it. */
void channel_abort(Channel *ch);

/* ---- listening (unix:, tcp:) --------------------------------------------- */

typedef struct ChannelListener ChannelListener;

ChannelListener *channel_listen(const char *uri, Error **errp);
/* The listening socket, to watch for readability. */
int channel_listener_fd(ChannelListener *l);
/* Where peers can connect: "tcp:127.0.0.1:41234" with the chosen port. */
const char *channel_listener_uri(ChannelListener *l);
/* The TCP port actually bound (0 for unix:). */
uint16_t channel_listener_port(ChannelListener *l);
/* Accept one peer (blocks). */
Channel *channel_listener_accept(ChannelListener *l, Error **errp);
/* Close the socket; a unix: socket file it created is removed. */
void channel_listener_free(ChannelListener *l);

/* ---- used by channel.c and channel-socket.c --------------------------------- */

Channel *channel_socket_connect(const ChannelAddress *addr, const char *uri, int cancel_fd,
                                Error **errp);
ChannelListener *channel_socket_listen(const ChannelAddress *addr, const char *uri,
                                       Error **errp);
Channel *channel_new(int fd, ChannelKind kind, bool outgoing, const char *uri);

#endif
