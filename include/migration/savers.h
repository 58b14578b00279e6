/*
 * The page sources of the `ram` section that need no migration state (see
 * include/migration/ram.h for the interface).  Precopy and the background
 * snapshot are sources too; they live beside the migration thread
 * (migration/savers/precopy.h, background.h).
 */
#ifndef AMBER_MIGRATION_SAVERS_H
#define AMBER_MIGRATION_SAVERS_H

#include "migration/ram.h"

/*
 * The stopped save: every page of every block once, in order.  The guest
 * must not run while pages are written: they are queued without a copy
 * and must not change before the stream is flushed.  Free the source after
 * the stream is written (the saver does not own it).
 */
typedef struct RamStopped RamStopped;

RamStopped *ram_stopped_new(void);
void ram_stopped_free(RamStopped *st);
/* Register rs, fed by st, in r. */
bool ram_stopped_register(RamStopped *st, RamSaver *rs, SaveStateRegistry *r,
                          Error **errp);

#endif
