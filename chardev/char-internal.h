/*
 * Chardev internals shared by the backends (char.c: common code, null,
 * stdio and file; char-socket.c: unix sockets; char-pty.c: pseudo-terminals).
 */
#ifndef AMBER_CHARDEV_CHAR_INTERNAL_H
#define AMBER_CHARDEV_CHAR_INTERNAL_H

#include <glib.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "chardev/char.h"

typedef enum ChardevKind {
    CHARDEV_NULL,
    CHARDEV_STDIO,
    CHARDEV_FILE,
    CHARDEV_UNIX,
    CHARDEV_PTY,
} ChardevKind;

typedef struct ChardevConfig {
    ChardevKind kind;
    char *path;                 /* file: and unix: */
    int fd;                     /* fd:N, a listening socket handed over; filefd:N; else -1 */
    bool append;                /* file-append: */
    bool server;
    bool wait;                  /* server: block in chardev_new until a client comes */
} ChardevConfig;

/*
 * Output the peer has not taken yet is kept up to this size; beyond it
 * bytes are dropped, so a vCPU writing to a stalled peer never waits.
 */
#define CHARDEV_OUT_MAX (64 * 1024)
#define CHARDEV_MAX_FDS 16

struct Chardev {
    ChardevConfig cfg;
    char *spec;
    ChardevHandlers h;
    void *opaque;

    /* Output side: any thread, under lock. */
    pthread_mutex_t lock;
    int out_fd;                 /* -1: no peer, writes are dropped */
    bool out_dead;              /* peer hung up; main loop will disconnect */
    GByteArray *out_buf;
    GSource *out_watch;
    uint64_t dropped;

    /* Input side and connection state: main thread only. */
    int in_fd;
    bool is_socket;
    guint in_watch;
    guint open_idle;
    int listen_fd;
    guint listen_watch;         /* the listening fd's watch, or the timer to add it again */
    char *unlink_path;          /* absolute path of a listening socket */
    int fds[CHARDEV_MAX_FDS];   /* SCM_RIGHTS fds of the last read */
    int nfds;

    int stdout_saved_flags;     /* stdio: restored at free, -1 if untouched */

    int pty_master;             /* pty: the master side, -1 otherwise */
    char *pty_path;             /* pty: its slave, /dev/pts/N */
    guint pty_timer;            /* pty: looking for a user to attach */
};

bool chardev_parse_config(const char *spec, ChardevConfig *cfg, Error **errp);
void chardev_config_clear(ChardevConfig *cfg);

/* Attach a connected fd as the chardev's peer (both directions). */
void chardev_attach_peer(Chardev *chr, int in_fd, int out_fd, bool is_socket);
/* Drop the peer: stop reading, discard pending output, close it. */
void chardev_detach_peer(Chardev *chr);
/* A peer came (a client accepted, a pty's slave opened): attach fd and say so. */
void chardev_peer_arrived(Chardev *chr, int fd, bool is_socket);
/* Run the opened handler from the main loop if a peer is there. */
void chardev_schedule_opened(Chardev *chr);

/* Keep fds that arrived with a read for chardev_take_fd (takes ownership). */
void chardev_keep_received_fds(Chardev *chr, const int *fds, int n);

/* char-socket.c */
bool chardev_unix_open(Chardev *chr, Error **errp);
void chardev_unix_close(Chardev *chr);
/* A peer left: a server starts accepting the next client. */
void chardev_unix_peer_gone(Chardev *chr);
ssize_t chardev_unix_recv(Chardev *chr, uint8_t *buf, size_t len);

/* char-pty.c */
bool chardev_pty_open(Chardev *chr, Error **errp);
void chardev_pty_close(Chardev *chr);
/* The slave closed: watch for the next user. */
void chardev_pty_peer_gone(Chardev *chr);

#endif
