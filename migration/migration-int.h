/* Migration internals shared by migration.c, incoming.c, options.c and the HMP words. */
#ifndef AMBER_MIGRATION_MIGRATION_INT_H
#define AMBER_MIGRATION_MIGRATION_INT_H

#include <glib.h>
#include <pthread.h>

#include "migration/channel.h"
#include "migration/direct-io.h"
#include "migration/write-behind.h"
#include "migration/migration.h"
#include "migration/qemu-file.h"
#include "migration/ram.h"
#include "migration/savevm.h"
#include "system/machine-state.h"
#include "qapi-types.h"

typedef struct MigrationIncoming MigrationIncoming;

/*
 * The descriptor side of a stream: blocking semantics for the stream,
 * but every wait also watches cancel_fd, so a cancel (or exit) ends a
 * write to a stalled pipe or a read from a silent peer at once.
 */
typedef struct MigrationIO {
    int fd;
    int cancel_fd;              /* eventfd; readable once cancelled */
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

typedef struct MainCall MainCall;

struct MigrationState {
    Amber *s;
    MigrationOptions opts;
    pthread_mutex_t lock;                /* error, call, shutting_down */
    pthread_cond_t cond;
    bool shutting_down;
    MainCall *call;             /* the thread's request to the main loop */
    guint call_source;

    /* outgoing; status and times are atomics written by the thread */
    int status;                 /* MigrationStatus */
    GThread *thread;
    Channel *ch;                /* opened by the handler or the thread */
    char *uri;
    int cancel_fd;
    bool cancel;
    Error *error;
    RamSaveState *ram;
    RunState old_runstate;
    bool stopped;               /* we stopped the VM */
    bool succeeded;             /* the whole stream went out */
    int64_t start_us, setup_end_us, stop_us, end_us;
    uint64_t bytes;             /* stream bytes so far */
    uint64_t bytes_at_stop;
    struct BgMigration *bg;     /* background snapshot (snapshot.c), or NULL */
    struct Precopy *precopy;    /* live migration (precopy.c), or NULL */

    MigrationIncoming *incoming;
};

void migration_set_status(MigrationState *ms, int *status, int new_status);
/* old -> new only if the status is still old; false otherwise. */
bool migration_change_status(MigrationState *ms, int *status, int old_status,
                             int new_status);
int migration_get_status(const int *status);
int64_t migration_now_us(void);
/* max-bandwidth, which the user may change at any time, onto f's limiter. */
void migration_apply_rate_limit(MigrationState *ms, QEMUFile *f);
/* migration_shutdown() has begun. */
bool migration_exiting(MigrationState *ms);

/* incoming.c */
void migration_incoming_free(MigrationIncoming *mis);
/* Status of the incoming side, MIGRATION_STATUS_NONE when there is none. */
int migration_incoming_status(MigrationState *ms);
bool migration_incoming_running(MigrationState *ms);
void migration_incoming_shutdown(MigrationState *ms);
void migration_incoming_info(MigrationState *ms, MigrationInfo *info);

#endif
