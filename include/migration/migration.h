/*
 * Migration control: the state of the outgoing and incoming migration of
 * one Amber context (Amber.migration), the migration threads, stats and
 * MIGRATION events.
 *
 * Outgoing (`migrate`): the QMP handler checks the URI and starts a
 * thread that opens the channel, writes header, configuration and the RAM
 * block list, has the main loop stop the VM (finish-migrate), captures
 * the machine state, writes RAM, devices, EOF and VMDESCRIPTION, and
 * closes the channel (fsync / exec exit status).  Success leaves the VM in
 * postmigrate; failure or cancel restores the run state it had.  With the
 * background-snapshot capability the VM stops only for one short pause
 * and keeps running (migration/savers/background.h).
 *
 * Incoming (`-incoming URI`, `-incoming defer` + `migrate-incoming`): the
 * machine is created in inmigrate and never runs until a whole stream has
 * loaded and been applied; a bad stream ends the process with status 1.
 *
 * Threads: handlers run on the main thread.  The migration threads change
 * the run state only through the main loop (as the monitor does), so a
 * monitor command never races them.
 */
#ifndef AMBER_MIGRATION_MIGRATION_H
#define AMBER_MIGRATION_MIGRATION_H

#include <stdbool.h>

#include "util/error.h"
#include "system/amber.h"
#include "migration/options.h"

typedef struct MigrationState MigrationState;

/* The migration state of s, created on first use (main thread). */
MigrationState *migration_state(Amber *s);
MigrationOptions *migration_options(MigrationState *ms);
/* An outgoing or incoming migration has started and not ended. */
bool migration_is_running(MigrationState *ms);
/*
 * The outgoing one has started and not ended (setup, active, cancelling,
 * or postcopy-active / postcopy-paused: a postcopy ends only once every
 * page is on the destination).
 */
bool migration_outgoing_running(MigrationState *ms);
/* Its status (a MigrationStatus), none before the first one. */
int migration_outgoing_status(MigrationState *ms);
/* A status after a postcopy switch and before the end (active, paused, recovering). */
bool migration_status_postcopy(int status);

/* ---- the process (system/vl.c) ------------------------------------------------- */

/* -incoming URI|defer: check the URI before anything is created. */
bool migration_incoming_check_uri(const char *uri, Error **errp);
/*
 * The machine exists and is not started: it is to receive a stream
 * (runstate inmigrate).  Call before machine_start().
 */
void migration_incoming_prepare(Amber *s);
/* After machine_start(): start loading from uri unless it is "defer". */
bool migration_incoming_begin(Amber *s, const char *uri, Error **errp);
/*
 * At exit, before the machine is destroyed: cancel what runs and join
 * the migration threads.
 */
void migration_shutdown(Amber *s);

/* ---- used by the monitor -------------------------------------------------------- */

/*
 * `cont` (on) or `stop` (off) while in inmigrate: whether the guest starts
 * once the stream is loaded, overriding -S, as QEMU documents for cont.
 * The run state stays inmigrate: no vCPU may run from a partial load.
 */
void migration_incoming_set_autostart(Amber *s, bool on);

/* ---- inside migration/ ------------------------------------------------------------ */

/* Emit MIGRATION {status} if the events capability is on (any thread). */
void migration_event_status(MigrationState *ms, int status);
/* Run fn on the main thread and wait for it; false if it failed or the
 * process is shutting down. */
typedef bool (*MigrationMainFn)(Amber *s, void *data, Error **errp);
bool migration_call_main(MigrationState *ms, MigrationMainFn fn, void *data,
                         Error **errp);

#endif
