/*
 * Postcopy, private to migration/: the source's switch and page service
 * (source.c) and the destination's listen, faults and placement (dest.c).
 * The stream and its messages: docs/devel/postcopy.md and
 * include/migration/postcopy-messages.h.
 *
 * Source, with the postcopy-ram capability over a socket:
 *   head     header, configuration, OPEN_RETURN_PATH, PING, POSTCOPY_ADVISE,
 *            then the `ram` START as precopy; a thread reads the return path
 *   precopy  passes as a live migration, until `migrate-start-postcopy`
 *            (once the first pass is out) or convergence (then it ends as
 *            precopy)
 *   switch   stop, last dirty sync: the pages still marked are sent again;
 *            POSTCOPY_RAM_DISCARD lists them, PACKAGED carries LISTEN, the
 *            device sections and RUN; status postcopy-active
 *   pages    requested pages first, each alone and flushed, then the push
 *            from the requested page's neighbourhood on; every page once
 *   end      END, EOF, VMDESCRIPTION; the destination's SHUT completes it
 * A failure before the package is out leaves the source as a failed
 * precopy does (running); after it the source is postcopy-paused, stopped,
 * its memory intact: the guest may already run on the destination.
 */
#ifndef AMBER_MIGRATION_POSTCOPY_POSTCOPY_H
#define AMBER_MIGRATION_POSTCOPY_POSTCOPY_H

#include "../migration-int.h"
#include "migration/dirty.h"

/* The PING after POSTCOPY_ADVISE: its PONG says the destination took the advice. */
#define POSTCOPY_PING_ADVISED       1

/* ---- source (source.c) --------------------------------------------------------------- */

typedef struct PostcopySource PostcopySource;

/* qmp_migrate, main thread: ms->postcopy when the capability is on. */
void postcopy_source_prepare(MigrationState *ms);
void postcopy_source_free(MigrationState *ms);
/* `migrate-start-postcopy` was given (any thread). */
bool postcopy_switch_requested(MigrationState *ms);
/* The package is going out: the source can no longer take the guest back. */
bool postcopy_switched(MigrationState *ms);
/*
 * Migration thread, channel open: start reading the return path; with
 * postcopy-preempt, open the second channel.
 */
bool postcopy_source_start(MigrationState *ms, Error **errp);
/* Before the guest stops for the switch: the second channel is taken (preempt). */
bool postcopy_source_ready(MigrationState *ms, Error **errp);
/* The head of the stream, with postcopy's commands before the START sections. */
bool postcopy_save_head(MigrationState *ms, SaveStateRegistry *r, QEMUFile *f,
                        Error **errp);
/*
 * The VM is stopped and `todo` (precopy's dirty pages, logging off) holds
 * the pages to send again: the switch, the postcopy phase and the end.
 */
bool postcopy_complete(MigrationState *ms, SaveStateRegistry *r, QEMUFile *f,
                       MachineStateImage *img, RamDirty *todo, Error **errp);
/* migrate_cancel or exit: wake the thread's waits. */
void postcopy_source_cancel(MigrationState *ms);
/* `migrate` with resume=true (main thread): go on over a new connection to uri. */
void postcopy_source_resume(MigrationState *ms, const char *uri, Error **errp);
/* `migrate-pause` on the source: false when there is no postcopy to pause. */
bool postcopy_source_pause(MigrationState *ms, Error **errp);
/*
 * Every exit path of the migration thread: stop the return-path reader.
 * When it failed first (a bad message, the destination's error), its
 * error replaces *errp: it is the cause.
 */
void postcopy_source_end(MigrationState *ms, Error **errp);
void postcopy_source_info(MigrationState *ms, MigrationInfo *info);

/* ---- destination (dest.c) ------------------------------------------------------------ */

typedef struct PostcopyDest PostcopyDest;

typedef struct PostcopyDestOps {
    /* LISTEN: RAM now takes faults (status postcopy-active). */
    void (*listening)(void *opaque);
    /* RUN: the device state is loaded; apply it and start the guest (main loop). */
    bool (*run)(void *opaque, Error **errp);
    /* POSTCOPY_RESUME after a recovery: postcopy-active again. */
    void (*resumed)(void *opaque);
} PostcopyDestOps;

/*
 * The incoming side's postcopy, for a stream read from fd (a socket, whose
 * other direction becomes the return path once asked).  r holds the
 * device entries the package loads into.
 */
PostcopyDest *postcopy_dest_new(MigrationState *ms, Machine *m, RamLoader *ram,
                                SaveStateRegistry *r, int fd, int cancel_fd,
                                const PostcopyDestOps *ops, void *opaque);
/* unix:/tcp: incoming: where postcopy-preempt's second channel comes from. */
void postcopy_dest_set_listener(PostcopyDest *pd, ChannelListener *l);
/*
 * After the main stream's EOF, before the pages nobody sent are made zero:
 * every page of the second channel is placed.
 */
bool postcopy_dest_drain(PostcopyDest *pd, Error **errp);
/*
 * migrate-pause, from any thread: the second channel's reader fails now
 * (a drain waiting on a source that keeps it open and silent ends).
 * NULL, or no second channel: nothing.
 */
void postcopy_dest_shutdown(PostcopyDest *pd);
/* Stops the fault thread, unregisters RAM (waking any waiter), closes the return path. */
void postcopy_dest_free(PostcopyDest *pd);
/* The loader's command handler (SaveVMCommandFn) for the main stream. */
int postcopy_dest_command(void *opaque, QEMUFile *f, uint16_t cmd, const uint8_t *data,
                          uint16_t len, Error **errp);
/* RUN was handled: the guest may run here, so a failure must not end the process. */
bool postcopy_dest_running(PostcopyDest *pd);
/* After the load thread ended: RAM is still registered, some page may never have come. */
bool postcopy_dest_pages_missing(PostcopyDest *pd);
/* After the stream's EOF: every page placed, unregister, SHUT to the source. */
bool postcopy_dest_finish(PostcopyDest *pd, Error **errp);
/*
 * The stream broke after RUN: give the return path (and the second
 * channel) up; RAM stays registered, the fault thread goes on noting
 * what vCPUs wait for.
 */
void postcopy_dest_pause(PostcopyDest *pd);
/*
 * The source reconnected on fd (accepted from l, where the second channel
 * comes from too with postcopy-preempt): RECV_BITMAP and POSTCOPY_RESUME
 * may come.
 */
bool postcopy_dest_resume(PostcopyDest *pd, int fd, ChannelListener *l, Error **errp);
/*
 * After a failure: tell the source, if the return path still goes.  When
 * the second channel failed first, its error replaces *err: it is the cause.
 */
void postcopy_dest_fail(PostcopyDest *pd, Error **err);
/* query-migrate on the destination: the wait figures (capability postcopy-blocktime). */
void postcopy_dest_info(PostcopyDest *pd, MigrationInfo *info);

/* ---- the postcopy-preempt channel, destination side (preempt.c) ----------------------- */

/* The byte the destination answers on the second channel once it took it. */
#define POSTCOPY_PREEMPT_ACK        0x50
/* How long either side waits for the other's second channel. */
#define POSTCOPY_PREEMPT_WAIT_MS    5000

typedef struct PreemptReader PreemptReader;

/* Accept the second channel on l (waiting up to timeout_ms) and answer it. */
bool preempt_accept(ChannelListener *l, int timeout_ms, Channel **ch, Error **errp);
/*
 * Read page records from ch (which it then owns) and place them into u, on a
 * thread of its own; an error shuts stream_fd down, so the main load stops
 * too.  Waits watch cancel_fd.
 */
PreemptReader *preempt_reader_start(Channel *ch, RamUffd *u, RamBlockList *ram,
                                    int stream_fd, int cancel_fd, Error **errp);
/* Wait for the source to close the channel; its error, if any. */
bool preempt_reader_finish(PreemptReader *r, Error **errp);
/* It failed already (without waiting): true, its error in *errp. */
bool preempt_reader_failed(PreemptReader *r, Error **errp);
/* Give its connection up (a pause): its read ends. */
void preempt_reader_shutdown(PreemptReader *r);
void preempt_reader_free(PreemptReader *r);

/* ---- wait figures of the destination (blocktime.c) -------------------------------- */

typedef struct PostcopyBlocktime PostcopyBlocktime;

/* For m's vCPUs, whose threads exist. */
PostcopyBlocktime *postcopy_blocktime_new(Machine *m);
void postcopy_blocktime_free(PostcopyBlocktime *bt);
/* The fault thread: thread tid waits for page `key`, which must come from the source. */
void postcopy_blocktime_fault(PostcopyBlocktime *bt, uint64_t key, int tid);
/* Any thread: page `key` is placed; whoever waited for it waits no more. */
void postcopy_blocktime_placed(PostcopyBlocktime *bt, uint64_t key);
/* postcopy-blocktime, -vcpu-blocktime, -latency, -latency-dist, -vcpu-latency, -non-vcpu-latency. */
void postcopy_blocktime_info(PostcopyBlocktime *bt, MigrationInfo *info);

#endif
