/*
 * Huge-page repair for background snapshots whose claim unit is smaller
 * than a transparent huge page.
 *
 * Lifting write protection from part of a PMD-mapped huge page splits the
 * mapping into 4 KiB entries.  Under shadow paging a vCPU then takes a
 * fault for every 4 KiB it touches there instead of one per 2 MiB, long
 * after the snapshot.  Small units make each write fault short (a faulting
 * vCPU waits for one small unit's worth of stream, not 2 MiB), so when they
 * are chosen the engine splits on purpose and this module puts the huge
 * pages back (MADV_COLLAPSE) once every unit of a split region has been
 * captured and unprotected.
 *
 * Threads: huge_repair_unit_done() from any unit owner (a fault thread or
 * the saver); everything else from the thread that drives the snapshot.
 */
#ifndef AMBER_MIGRATION_HUGE_REPAIR_H
#define AMBER_MIGRATION_HUGE_REPAIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HUGE_REPAIR_REGION (2u << 20)       /* x86-64 PMD mapping */

typedef struct HugeRepair {
    uint8_t *host;
    size_t region;              /* pages per region; 0: repair is off */
    size_t nregions;
    size_t units;               /* claim units per region (start()) */
    const unsigned long *skip;  /* pages without data at the instant */
    uint32_t *unprotected;      /* per region: units whose owner lifted protection */
    unsigned long *split;       /* per region, atomic: a fault split it, not yet queued */
    size_t *queue;              /* split regions, as the saver met them */
    size_t qhead, qtail;
    size_t nretry;              /* queue[0, nretry): busy once, to retry at the end */
    bool refused;               /* the kernel cannot collapse here: stop asking */
    uint64_t collapsed;         /* atomic */
} HugeRepair;

/*
 * For a block of npages pages of page_size at host; off (every call a
 * no-op) unless the pages are 4 KiB and the memory is private anonymous
 * (anon): shared and hugetlbfs memory is not split this way.
 */
void huge_repair_init(HugeRepair *h, uint8_t *host, size_t npages,
                      size_t page_size, bool anon);
/*
 * At the instant: units of unit pages, skip the block's unpopulated pages
 * (read-only from now on).  Off when a unit is a whole region or more.
 */
void huge_repair_start(HugeRepair *h, size_t unit, const unsigned long *skip);
void huge_repair_free(HugeRepair *h);

/* The owner of the unit holding page has lifted its protection. */
void huge_repair_unit_done(HugeRepair *h, size_t page);

/* A fault thread took the unit holding page (any thread). */
void huge_repair_fault_split(HugeRepair *h, size_t page);

/*
 * The saver met a unit a fault thread owns in the region of page: that
 * region's mapping is split.  Regions are met in ascending order.
 */
void huge_repair_note_split(HugeRepair *h, size_t page);

/*
 * Collapse the queued regions whose units are all unprotected, oldest
 * first, up to the first that is not ready; with all, every queued one
 * (the caller knows no owner is still at work), then once more those
 * that were busy.
 */
void huge_repair_run(HugeRepair *h, bool all);

/*
 * After a snapshot that ended early (cancel, failure), with nothing
 * protected any more: collapse the split regions the saver never reached,
 * until deadline_us (g_get_monotonic_time()) passes; khugepaged gets the rest.
 */
void huge_repair_leftovers(HugeRepair *h, uint64_t deadline_us);

#endif
