/*
 * Background snapshot as a migration (capability `background-snapshot`):
 * the glue between the migration thread, the machine and the engine of
 * include/migration/bg-engine.h, which is the `ram` section's page source.
 * Private to migration/.
 *
 * Outgoing with the capability on, after header, configuration and RAM
 * block list went out (guest running):
 *   one main-loop call: stop (STOP) -> capture the machine state (plain
 *   copies) -> arm write-protect -> start (RESUME); then on the migration
 *   thread: `ram` PART sections, each one step of the engine's saver, the
 *   END, protection removed, and the device sections (serialised from the
 *   copies), EOF and VMDESCRIPTION.  The source never leaves `running` for
 *   more than the pause and never enters `postmigrate`.
 */
#ifndef AMBER_MIGRATION_SAVERS_BACKGROUND_H
#define AMBER_MIGRATION_SAVERS_BACKGROUND_H

#include "../migration-int.h"

typedef struct BgMigration BgMigration;

/* Capability rule: userfaultfd write-protect usable on m's blocks (m may be NULL). */
bool bg_migration_usable(Machine *m, Error **errp);
/* Check x-background-snapshot-* parameter values (NULL: not given). */
bool bg_migration_check_params(const uint64_t *pool_size, const uint64_t *chunk_size,
                               Error **errp);

/* qmp_migrate, main thread: set ms->bg up when the capability is on. */
void bg_migration_prepare(MigrationState *ms);
/* The thread has ended (or never ran): free ms->bg. */
void bg_migration_free(MigrationState *ms);
/* Migration thread, channel open: the engine feeds ms->ram's section in r. */
bool bg_migration_register(MigrationState *ms, SaveStateRegistry *r, Error **errp);
/*
 * Migration thread, after the setup phase: the pause, the RAM, the device
 * state, EOF and description.  Protection is gone when it returns.
 */
bool bg_migration_save(MigrationState *ms, SaveStateRegistry *r, QEMUFile *f,
                       MachineStateImage *img, Error **errp);
/* migrate_cancel or exit, any thread: release every blocked vCPU now. */
void bg_migration_cancel(MigrationState *ms);
/* query-migrate: the pause as downtime, and x-background-snapshot. */
void bg_migration_info(MigrationState *ms, MigrationInfo *info);

#endif
