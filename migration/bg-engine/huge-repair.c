/* Huge-page repair after partial unprotects (see the header). */
#include "migration/huge-repair.h"
#include "util/bitmap.h"
#include "util/trace.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <glib.h>

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25        /* Linux 6.1 */
#endif

void huge_repair_init(HugeRepair *h, uint8_t *host, size_t npages,
                      size_t page_size, bool anon)
{
    memset(h, 0, sizeof(*h));
    h->host = host;
    if (!anon || page_size != 4096 || (uintptr_t)host % HUGE_REPAIR_REGION) {
        return;
    }
    h->region = HUGE_REPAIR_REGION / page_size;
    h->nregions = npages / h->region;       /* a partial tail is never huge */
    h->unprotected = g_new0(uint32_t, h->nregions);
    h->split = bitmap_new(h->nregions);
    h->queue = g_new(size_t, h->nregions);
}

void huge_repair_start(HugeRepair *h, size_t unit, const unsigned long *skip)
{
    h->skip = skip;
    if (unit >= h->region || h->region % unit) {
        h->region = 0;              /* nothing gets split */
        return;
    }
    h->units = h->region / unit;
}

void huge_repair_free(HugeRepair *h)
{
    g_free(h->unprotected);
    bitmap_free(h->split);
    g_free(h->queue);
    memset(h, 0, sizeof(*h));
}

/* The region holding page, if repair is on and the region is a whole one. */
static bool region_of(const HugeRepair *h, size_t page, size_t *r)
{
    if (!h->region) {
        return false;
    }
    *r = page / h->region;
    return *r < h->nregions;
}

void huge_repair_unit_done(HugeRepair *h, size_t page)
{
    size_t r;

    if (region_of(h, page, &r)) {
        __atomic_fetch_add(&h->unprotected[r], 1, __ATOMIC_RELEASE);
    }
}

void huge_repair_fault_split(HugeRepair *h, size_t page)
{
    size_t r;

    if (region_of(h, page, &r)) {
        set_bit_atomic(r, h->split);
    }
}

/*
 * Only regions full of data: MADV_COLLAPSE fills the holes of a partly
 * populated region, and a snapshot must not grow the guest.
 */
static bool region_whole(const HugeRepair *h, size_t r)
{
    return find_next_bit(h->skip, (r + 1) * h->region, r * h->region) >=
           (r + 1) * h->region;
}

void huge_repair_note_split(HugeRepair *h, size_t page)
{
    size_t r;

    if (!region_of(h, page, &r) || (h->qtail && h->queue[h->qtail - 1] == r)) {
        return;
    }
    clear_bit_atomic(r, h->split);          /* the queue has it now */
    if (region_whole(h, r)) {
        h->queue[h->qtail++] = r;
    }
}

static void collapse(HugeRepair *h, size_t r)
{
    int ret = madvise(h->host + r * HUGE_REPAIR_REGION, HUGE_REPAIR_REGION,
                      MADV_COLLAPSE);

    if (ret == 0) {
        __atomic_fetch_add(&h->collapsed, 1, __ATOMIC_RELAXED);
    } else if (errno == EINVAL || errno == EPERM) {
        h->refused = true;          /* no THP here (or MADV_NOHUGEPAGE) */
    } else if (errno == EAGAIN) {
        /*
         * A page of the region was busy (a vCPU faulting it in, say): try
         * once more at the end.  The slots before qhead are free for that.
         */
        h->queue[h->nretry++] = r;
    }
    /* Otherwise (ENOMEM: no huge page free) it stays split, as after a
     * split the kernel made itself. */
    trace(bgs_collapse, "region=%zu ret=%d errno=%d", r, ret, ret ? errno : 0);
}

void huge_repair_run(HugeRepair *h, bool all)
{
    size_t retry, i;

    while (h->qhead < h->qtail) {
        size_t r = h->queue[h->qhead];

        if (!all && __atomic_load_n(&h->unprotected[r], __ATOMIC_ACQUIRE) <
                    h->units) {
            break;
        }
        h->qhead++;
        if (!h->refused) {
            collapse(h, r);
        }
    }
    if (all) {
        /*
         * From 0, a region busy again is put back at an index already
         * read (so the queue cannot overflow), then forgotten: once more
         * is enough.
         */
        retry = h->nretry;
        h->nretry = 0;
        for (i = 0; i < retry && !h->refused; i++) {
            collapse(h, h->queue[i]);
        }
        h->nretry = 0;
    }
}

static bool past(uint64_t deadline_us)
{
    return (uint64_t)g_get_monotonic_time() >= deadline_us;
}

void huge_repair_leftovers(HugeRepair *h, uint64_t deadline_us)
{
    size_t r;

    if (!h->region) {
        return;
    }
    while (h->qhead < h->qtail && !h->refused && !past(deadline_us)) {
        collapse(h, h->queue[h->qhead++]);
    }
    for (r = find_next_bit(h->split, h->nregions, 0);
         r < h->nregions && !h->refused && !past(deadline_us);
         r = find_next_bit(h->split, h->nregions, r + 1)) {
        clear_bit(r, h->split);
        if (region_whole(h, r)) {
            collapse(h, r);
        }
    }
    h->nretry = 0;
}
