/*
 * The migration threads' descriptor I/O (migration/transport/): a QEMUFile
 * over a connected fd with blocking semantics, where every wait also
 * watches cancel_fd, so a cancel (or exit) ends a write to a stalled pipe
 * or a read from a silent peer at once.
 *
 *   MigrationIO io;
 *   migration_io_init(&io, ch->fd, cancel_fd, errp)   fd made non-blocking
 *   f = migration_io_output(&io, name)                or _input
 *   ... qemu_put_* / qemu_get_* ...
 *   qemu_fclose(f); migration_io_restore(&io)         flags given back
 *
 * The process must ignore SIGPIPE, as amber does: a reader that went away
 * is then an EPIPE error of the stream.
 */
#ifndef AMBER_MIGRATION_MIGRATION_IO_H
#define AMBER_MIGRATION_MIGRATION_IO_H

#include <pthread.h>
#include <stdbool.h>

#include "migration/direct-io.h"
#include "migration/qemu-file.h"
#include "migration/write-behind.h"
#include "util/error.h"

typedef struct MigrationIO {
    int fd;
    int cancel_fd;              /* eventfd, readable once cancelled; -1: none */
    int saved_flags;            /* fd's status flags before we set O_NONBLOCK */
    DirectWriter *direct;       /* direct-io: writes go through it */
    WriteBehind wb;             /* otherwise, for a background snapshot to a file */
} MigrationIO;

bool migration_io_init(MigrationIO *io, int fd, int cancel_fd, Error **errp);
/* Give the descriptor its flags back (before the channel closes it). */
void migration_io_restore(MigrationIO *io);
QEMUFile *migration_io_output(MigrationIO *io, const char *name);
QEMUFile *migration_io_input(MigrationIO *io, const char *name);
/* An eventfd for cancel_fd; -1 with errp on failure. */
int migration_cancel_fd_new(Error **errp);
void migration_cancel_fd_signal(int fd);

/*
 * A connection another thread may shut down (migrate-pause, a pause that
 * must not wait on a stalled peer): set once it is open, and set to -1
 * before it is closed, so that a shutdown never reaches a descriptor
 * number that closing made free for another socket.
 */
typedef struct MigrationLink {
    pthread_mutex_t lock;
    int fd;                     /* -1: none */
} MigrationLink;

void migration_link_init(MigrationLink *l);
void migration_link_destroy(MigrationLink *l);
void migration_link_set(MigrationLink *l, int fd);
/* shutdown(SHUT_RDWR) of the connection, if any: its reader and writer fail now. */
void migration_link_shutdown(MigrationLink *l);

#endif
