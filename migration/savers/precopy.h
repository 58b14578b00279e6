/*
 * Live migration (precopy): the guest runs while RAM is sent in passes,
 * then stops for a short final pass and the device state.  Private to
 * migration/: the `ram` section's page source that sends what the dirty
 * page tracking of include/migration/dirty.h marks, and the loop of the
 * migration thread (migration.c) that decides when to stop.
 *
 * Outgoing over a socket (unix:, tcp:, or fd: naming a socket), unless
 * background-snapshot is on:
 *   setup:   the `ram` START section (block list); dirty logging starts,
 *            every page is marked (pass 1, MIGRATION_PASS 1)
 *   live:    PART sections send marked pages, each 64-page chunk re-armed
 *            in the log just before its pages are copied; at the end of a
 *            pass the logs are synced (MIGRATION_PASS n) and the expected
 *            downtime (pages left / measured bandwidth) is compared with
 *            downtime-limit; a load that never fits keeps iterating
 *   stopped: the usual finish-migrate stop, a last sync, the END section
 *            with every page still marked, then devices and EOF.
 * Dirty logging stops on every exit path (precopy_end).
 *
 * To a file or a pipe (file:, exec:) the VM is stopped first and RAM is
 * written once, as before: a saved image holds each page once, at the
 * instant of the stop.
 */
#ifndef AMBER_MIGRATION_SAVERS_PRECOPY_H
#define AMBER_MIGRATION_SAVERS_PRECOPY_H

#include "../migration-int.h"
#include "migration/dirty.h"

typedef struct Precopy Precopy;

/* qmp_migrate, main thread: ms->precopy for the new migration. */
void precopy_prepare(MigrationState *ms);
/* The thread has ended (or never ran): free ms->precopy. */
void precopy_free(MigrationState *ms);
/* Migration thread, channel open: whether this migration is live. */
bool precopy_wanted(MigrationState *ms);
/* Register ms->ram's section in r, fed by the dirty pages (precopy_wanted said yes). */
bool precopy_register(MigrationState *ms, SaveStateRegistry *r, Error **errp);
bool precopy_live(MigrationState *ms);
/*
 * Migration thread, after the setup phase: passes until the rest fits
 * downtime-limit, or until a postcopy switch is asked (*to_postcopy), or
 * cancel / error.  Returns true at once when not live.
 */
bool precopy_iterate(MigrationState *ms, SaveStateRegistry *r, QEMUFile *f,
                     bool *to_postcopy, Error **errp);
/*
 * The VM is stopped for the postcopy switch: the last sync (a pass event),
 * logging off.  Returns the dirty pages, which postcopy then sends (owned
 * by ms->precopy still).
 */
RamDirty *precopy_final_sync(MigrationState *ms, Error **errp);
/* Migration thread, on every exit path: stop dirty logging. */
void precopy_end(MigrationState *ms);
/* query-migrate: counters of the live passes, dirty rate, expected downtime. */
void precopy_info(MigrationState *ms, MigrationInfo *info);

#endif
