/* Migration internals shared by migration.c, incoming.c, options.c and the HMP words. */
#ifndef AMBER_MIGRATION_MIGRATION_INT_H
#define AMBER_MIGRATION_MIGRATION_INT_H

#include <glib.h>
#include <pthread.h>

#include "migration/channel.h"
#include "migration/migration-io.h"
#include "migration/migration.h"
#include "migration/qemu-file.h"
#include "migration/ram.h"
#include "migration/savevm.h"
#include "system/machine-state.h"
#include "qapi-types.h"

typedef struct MigrationIncoming MigrationIncoming;

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
    RamSaver *ram;              /* the `ram` section and its counters */
    RunState old_runstate;
    bool stopped;               /* we stopped the VM */
    bool succeeded;             /* the whole stream went out */
    int64_t start_us, setup_end_us, stop_us, end_us;
    uint64_t bytes;             /* stream bytes so far */
    uint64_t bytes_base;        /* atomic: bytes of streams given up (postcopy recovery) */
    uint64_t bytes_at_stop;
    struct BgMigration *bg;     /* background snapshot (savers/background.c), or NULL */
    struct Precopy *precopy;    /* live migration (savers/precopy.c), or NULL */
    struct PostcopySource *postcopy; /* with postcopy-ram (postcopy/source.c), or NULL */
    struct MappedRamWriter *mapped; /* mapped-ram: where the pages go, or NULL */
    bool mapped_save;           /* this migration was started with mapped-ram */

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

/* The outgoing thread's helpers, shared by its savers. */
/* Stream bytes so far into query-migrate's `transferred`. */
void migration_publish_bytes(MigrationState *ms, QEMUFile *f);
/* migrate_cancel (or exit) asked: true, with "migration cancelled" in errp. */
bool migration_cancelled(MigrationState *ms, Error **errp);
/*
 * One PART of every iterative entry, then progress and a cancel check;
 * with wait_limit, max-bandwidth is applied and waited out.  1 when every
 * entry is done, 0 when more remains, -1 on error or cancel.
 */
int migration_save_iterate(MigrationState *ms, SaveStateRegistry *r, QEMUFile *f,
                           bool wait_limit, Error **errp);

/* incoming.c */
void migration_incoming_free(MigrationIncoming *mis);
/* Status of the incoming side, MIGRATION_STATUS_NONE when there is none. */
int migration_incoming_status(MigrationState *ms);
bool migration_incoming_running(MigrationState *ms);
/*
 * An incoming postcopy or lazy restore failed once the guest ran here,
 * before every page came: the pages missing would be saved as zeros.
 */
bool migration_incoming_pages_missing(MigrationState *ms);
void migration_incoming_shutdown(MigrationState *ms);
void migration_incoming_info(MigrationState *ms, MigrationInfo *info);
/* migrate-pause on a destination in postcopy: false when there is none. */
bool migration_incoming_pause(MigrationState *ms);

#endif
