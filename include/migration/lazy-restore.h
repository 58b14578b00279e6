/*
 * Lazy restore: a guest runs from a mapped-ram image while its pages are
 * still in the file (migration/ram/lazy.c).
 *
 * Postcopy whose source is a file: every RAM block is emptied and
 * registered for missing-page faults before any vCPU runs.  A fault
 * thread serves the page a vCPU waits for (one pread at the page's fixed
 * offset, one UFFDIO_COPY, or UFFDIO_ZEROPAGE when the image's bitmap says
 * the page is zero); a loader thread fills every other page in 1 MiB
 * chunks, the chunk of the latest fault first, then on from there, so the
 * guest's working set arrives ahead of the rest.  Each page is placed
 * exactly once (the kernel refuses a second placement), and only after its
 * bytes were read whole: a short read or an I/O error places nothing and
 * is reported, so a vCPU never sees a wrong page.
 *
 * Threads: new() and free() from the owner; the owner waits in wait();
 * info() from any thread.
 */
#ifndef AMBER_MIGRATION_LAZY_RESTORE_H
#define AMBER_MIGRATION_LAZY_RESTORE_H

#include <stdbool.h>
#include <stdint.h>

#include "migration/mapped-ram.h"
#include "system/ram.h"
#include "util/error.h"

typedef struct LazyRestore LazyRestore;

/* Counters for query-migrate. */
typedef struct LazyRestoreStats {
    uint64_t total_pages;
    uint64_t placed_pages;          /* data and zero, by either thread */
    uint64_t data_pages;            /* read from the file */
    uint64_t cache_pages;           /* of those, read into a memfd's page cache and
                                       mapped (UFFDIO_CONTINUE), not copied */
    uint64_t zero_pages;
    uint64_t bytes_read;
    uint64_t faults;                /* served by the fault thread */
    uint64_t fault_ns;              /* their summed service time */
#define LAZY_LATENCY_BUCKETS 24
    uint64_t latency_hist[LAZY_LATENCY_BUCKETS];   /* [2^i, 2^(i+1)) us */
} LazyRestoreStats;

/*
 * Empty and register every block of ram (blocks[b] says where block b's
 * pages are in fd) and start the fault thread; nothing is placed yet.  The
 * error names the block and its backend when one cannot take missing-page
 * faults.  fd stays the caller's and must stay open until free().
 */
LazyRestore *lazy_restore_new(RamBlockList *ram, int fd,
                              const MappedRamBlock *const *blocks, Error **errp);
/*
 * The loader reads at most *bytes_per_sec (read atomically before each
 * chunk; 0: no limit), as max-postcopy-bandwidth holds postcopy's
 * background push: faults are never held back.  Set before start.
 */
void lazy_restore_set_bandwidth(LazyRestore *lr, const uint64_t *bytes_per_sec);
/* Start the loader thread (call once the guest may run). */
void lazy_restore_start(LazyRestore *lr);
/*
 * Block until every page is placed (true; RAM is then plain memory again,
 * unregistered) or a page could not be read (false, with why: the pages
 * that were not placed stay missing, and vCPUs that touch one wait).
 */
bool lazy_restore_wait(LazyRestore *lr, Error **errp);
/*
 * From any thread while the restore lives (amber is exiting): the threads
 * end without placing more, and wait() returns false at once.  Pages not
 * placed stay missing until free().
 */
void lazy_restore_stop(LazyRestore *lr);
/* Stop the threads and unregister (vCPUs still waiting then see zero pages). */
void lazy_restore_free(LazyRestore *lr);
void lazy_restore_stats(LazyRestore *lr, LazyRestoreStats *st);

#endif
