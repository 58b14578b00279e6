/*
 * Background snapshot engine: saves guest RAM as it was at one instant
 * (the arm) while the guest keeps running, using userfaultfd write-protect.
 *
 * Life cycle, as the migration thread drives it:
 *
 *     bg_snapshot_check(blocks, n, NULL, errp)      setup, guest running
 *     ctx = bg_snapshot_new(blocks, n, &cfg, sink, opaque, errp)
 *     ...vCPUs parked, device state saved...
 *     bg_snapshot_arm(ctx, errp)                     the snapshot instant
 *     ...vCPUs resumed...
 *     ok = bg_snapshot_run(ctx, errp)                the saver, same thread
 *          (or bg_snapshot_run_step() until it returns 1 or -1)
 *     bg_snapshot_disarm(ctx)                        every path, ok or not
 *     bg_snapshot_get_stats(ctx, &stats)
 *     bg_snapshot_free(ctx)
 *
 * bg_snapshot_cancel() may be called from any thread while ctx exists.
 *
 * The sink gets each 4 KiB page of the snapshot exactly once, from the
 * thread that calls bg_snapshot_run() only.  data is NULL for a page of
 * zeros; otherwise it is valid only during the call (the sink copies it).
 * Pages that were never populated at the instant (never touched, or mapped
 * to the shared zero page, or holes of a memfd/file) are not given to the
 * sink at all: the restore side starts from zeroed RAM.
 */
#ifndef AMBER_MIGRATION_BG_ENGINE_H
#define AMBER_MIGRATION_BG_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "system/ram.h"
#include "util/error.h"

/* The unit of the sink: a target page, as the QEVM "ram" records use. */
#define BG_SNAPSHOT_PAGE_SIZE 4096

/*
 * Test knob: a hexadecimal or decimal mask ANDed with the kernel's
 * userfaultfd features before any decision is made, so tests can simulate
 * a kernel without, say, WP_UNPOPULATED (0x1dfff clears bit 13).
 */
#define BG_SNAPSHOT_FEATURES_MASK_ENV "AMBER_TEST_UFFD_FEATURES_MASK"

typedef bool (*BgSnapshotPutPage)(void *opaque, RAMBlock *block,
                                  uint64_t offset, const uint8_t *data,
                                  Error **errp);
/*
 * A rate limit for the scan (same opaque as the sink): how many
 * microseconds the scan should wait before its next batch, 0 to go on.
 * The sink must not wait on such a limit itself: it is called in the
 * middle of a scan batch, while the batch's remaining pages are still
 * write-protected, and a guest write to any of them would wait as long as
 * the sink does.  run() asks after each batch that gave the sink pages,
 * with none of them protected, and while told to wait it goes on saving the
 * fault copies as they are queued: writers waiting for pool room never wait
 * for the limit.
 */
typedef uint64_t (*BgSnapshotPace)(void *opaque);

/*
 * The automatic copy pool (pool_bytes 0): this share of the RAM holding
 * data at the instant, within these bounds (see size_auto_pool()).
 */
#define BG_POOL_AUTO_SHARE 64
#define BG_POOL_AUTO_MIN (4u << 20)
#define BG_POOL_AUTO_MAX (64u << 20)

typedef struct BgSnapshotConfig {
    size_t pool_bytes;          /* copy pool of the fault threads; 0: automatic */
    /*
     * The claim unit: an aligned range one owner (a fault thread or the
     * saver) captures and unprotects whole; at most the pool's slots.
     */
    size_t chunk_bytes;
    size_t batch_bytes;         /* the saver's scan step, rounded up to whole units */
    int fault_threads;
    bool use_wp_unpopulated;    /* when the kernel has it */
    /*
     * Nice value for the fault threads and, during run(), the saver (0:
     * leave it).  They compete with the vCPUs for the host's cores, and
     * every moment they are not scheduled is a moment a vCPU waits on a
     * fault or the guest works under protection.
     */
    int boost_nice;
} BgSnapshotConfig;

/* The defaults (see docs/devel/background-snapshot.md for the measurements). */
void bg_snapshot_config_default(BgSnapshotConfig *cfg);

/*
 * The kernel's userfaultfd features, after the test mask.  false when no
 * userfaultfd can be created (the message says what access is needed).
 */
bool bg_snapshot_kernel_features(uint64_t *features, Error **errp);

/*
 * Whether the blocks can be snapshotted on this kernel: the features they
 * need, then a trial WP registration of each block.  *features (may be
 * NULL) gets the kernel's features after the mask.
 */
bool bg_snapshot_check(RAMBlock *const *blocks, int nblocks,
                       uint64_t *features, Error **errp);

typedef struct BgSnapshot BgSnapshot;

/* Registers the blocks in write-protect mode (nothing is protected yet). */
BgSnapshot *bg_snapshot_new(RAMBlock *const *blocks, int nblocks,
                            const BgSnapshotConfig *cfg,
                            BgSnapshotPutPage sink, void *opaque,
                            Error **errp);
/* Optional, before run(): see BgSnapshotPace. */
void bg_snapshot_set_pace(BgSnapshot *s, BgSnapshotPace pace);
/*
 * The snapshot instant, called with the vCPUs parked: notes which pages
 * are unpopulated, starts the fault threads and write-protects the pages
 * that held data (unpopulated ones are saved as absent, so they need no
 * protection: see protect_populated()).
 * On failure nothing is left protected.
 */
bool bg_snapshot_arm(BgSnapshot *s, Error **errp);
/*
 * The saver: queued fault copies first, then a linear scan of each block.
 * Returns true once every page is saved; false on cancel or a sink error.
 */
bool bg_snapshot_run(BgSnapshot *s, Error **errp);
/*
 * The same in steps, for a caller that frames the pages in sections: a step
 * gives the sink at least max_pages pages (it ends between two scan
 * batches, where the saver holds no page protected) and returns 0 while
 * pages remain, 1 once every page is saved, -1 on cancel or a sink error.
 * The thread that calls it must be the same for every step; after -1 or 1
 * the run is over.
 */
int bg_snapshot_run_step(BgSnapshot *s, uint64_t max_pages, Error **errp);
/* Ends run() with "cancelled" and lifts every protection at once. */
void bg_snapshot_cancel(BgSnapshot *s);
/*
 * Unprotects everything (waking every blocked writer), then stops the fault
 * threads and unregisters.  Safe to call on any path, more than once.
 */
void bg_snapshot_disarm(BgSnapshot *s);
void bg_snapshot_free(BgSnapshot *s);

/*
 * Whether arm() enabled UFFD_FEATURE_WP_UNPOPULATED.  Since only populated
 * ranges are protected it matters only for the small unpopulated gaps
 * protected along with their neighbours (nothing is populated by reading).
 */
bool bg_snapshot_uses_wp_unpopulated(const BgSnapshot *s);

#define BG_STALL_BUCKETS 24     /* bucket i: stalls in [2^i, 2^(i+1)) us; 0: < 2 us */

typedef struct BgSnapshotStats {
    uint64_t pages_normal;      /* 4 KiB pages given to the sink with data */
    uint64_t pages_zero;        /* given as NULL (zero page) */
    uint64_t pages_skipped;     /* unpopulated at the instant: not given */
    uint64_t bytes;             /* data bytes given to the sink */
    uint64_t faults;            /* write-protect fault messages read */
    uint64_t fault_pages;       /* host pages captured by the fault threads */
    uint64_t unprotects;        /* UFFDIO_WRITEPROTECT calls that lift protection */
    uint64_t huge_pages_restored;   /* split 2 MiB mappings collapsed again */
    uint64_t pool_high_water;   /* bytes of the copy pool in use, at most */
    uint64_t pool_size;         /* bytes of the copy pool (as sized at arm) */
    uint64_t pause_us;          /* duration of arm() */
    uint64_t run_us;            /* duration of run() */
    uint64_t stall_hist[BG_STALL_BUCKETS];
    uint64_t stalls;            /* faults resolved by a fault thread */
    uint64_t stall_p50_us;      /* upper bound of the bucket */
    uint64_t stall_p99_us;
    uint64_t stall_max_us;      /* exact */
} BgSnapshotStats;

void bg_snapshot_get_stats(BgSnapshot *s, BgSnapshotStats *stats);

#endif
