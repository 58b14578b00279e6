/*
 * Dirty pages of guest RAM for a live migration (include/migration/dirty.h).
 *
 * The accelerator's log works per memory region (a KVM memory slot), the
 * migration per RAM block: a region maps pages [offset, offset + size) of
 * its block, so region page i is block page offset / 4096 + i.  Regions
 * start on 64-page boundaries of their block, so the region's log words
 * line up with the block's bitmap words.
 */
#include <inttypes.h>
#include <string.h>

#include <glib.h>

#include "accel/accel.h"
#include "migration/dirty.h"
#include "util/bitmap.h"
#include "util/trace.h"

typedef struct DirtyBlock {
    RAMBlock *rb;
    uint64_t npages;
    unsigned long *map;             /* pages still to send */
} DirtyBlock;

struct RamDirty {
    Machine *m;
    const AccelOps *ops;
    AccelState *accel;
    RamBlockList *ram;
    DirtyBlock blocks[AMBER_MAX_RAM_BLOCKS];
    int nblocks;
    uint64_t pending;               /* marked pages, atomic (read by query-migrate) */
    bool logging;
    unsigned long *tmp;             /* one log, as big as the largest block */
};

static int block_of(RamDirty *d, const RAMBlock *rb)
{
    for (int i = 0; i < d->nblocks; i++) {
        if (d->blocks[i].rb == rb) {
            return i;
        }
    }
    return -1;
}

RamDirty *ram_dirty_new(Machine *m, Error **errp)
{
    RamDirty *d = g_new0(RamDirty, 1);
    uint64_t largest = 1;

    d->m = m;
    d->ops = machine_accel_ops(m);
    d->accel = machine_accel(m);
    d->ram = machine_ram(m);
    d->nblocks = d->ram->nblocks;
    for (int i = 0; i < d->nblocks; i++) {
        DirtyBlock *b = &d->blocks[i];

        b->rb = d->ram->blocks[i];
        b->npages = b->rb->used_length / RAM_DIRTY_PAGE_SIZE;
        b->map = bitmap_new(b->npages);
        bitmap_set(b->map, 0, b->npages);
        d->pending += b->npages;
        largest = MAX(largest, b->npages);
    }
    d->tmp = bitmap_new(largest);
    for (int i = 0; i < d->ram->nregions; i++) {
        const MemRegion *r = &d->ram->regions[i];

        if (r->offset % (BITS_PER_LONG * RAM_DIRTY_PAGE_SIZE) ||
            r->size % RAM_DIRTY_PAGE_SIZE || block_of(d, r->block) < 0) {
            error_setg(errp, "memory region at 0x%" PRIx64 " of block '%s' cannot be "
                       "dirty-logged: it must start on a 256 KiB boundary of its block",
                       r->gpa, r->block->idstr);
            ram_dirty_free(d);
            return NULL;
        }
    }
    return d;
}

void ram_dirty_free(RamDirty *d)
{
    if (!d) {
        return;
    }
    ram_dirty_stop(d);
    for (int i = 0; i < d->nblocks; i++) {
        bitmap_free(d->blocks[i].map);
    }
    bitmap_free(d->tmp);
    g_free(d);
}

bool ram_dirty_start(RamDirty *d, Error **errp)
{
    if (d->logging) {
        return true;
    }
    if (!d->ops->dirty_log_start) {
        error_setg(errp, "the %s accelerator cannot log dirty pages: live migration "
                   "needs it", d->ops->name);
        return false;
    }
    /* Amber's own writes first: none may fall between the two starts unseen. */
    machine_soft_dirty_start(d->m);
    if (!d->ops->dirty_log_start(d->accel, errp)) {
        machine_soft_dirty_stop(d->m);
        error_prepend(errp, "cannot start dirty page logging: ");
        return false;
    }
    d->logging = true;
    trace(migration_dirty_start, "blocks=%d", d->nblocks);
    return true;
}

void ram_dirty_stop(RamDirty *d)
{
    if (!d->logging) {
        return;
    }
    d->ops->dirty_log_stop(d->accel);
    machine_soft_dirty_stop(d->m);
    d->logging = false;
    trace(migration_dirty_stop, "pending=%" PRIu64, ram_dirty_pending(d));
}

bool ram_dirty_logging(RamDirty *d)
{
    return d->logging;
}

uint64_t ram_dirty_pending(RamDirty *d)
{
    return __atomic_load_n(&d->pending, __ATOMIC_RELAXED);
}

static void pending_add(RamDirty *d, int64_t n)
{
    __atomic_add_fetch(&d->pending, (uint64_t)n, __ATOMIC_RELAXED);
}

/* Mask of the bits of word i that lie inside n bits. */
static unsigned long word_mask(uint64_t i, uint64_t n)
{
    uint64_t left = n - i * BITS_PER_LONG;

    return left >= BITS_PER_LONG ? ~0UL : (1UL << left) - 1;
}

/* OR n bits of log into block b from page base (a multiple of 64). */
static uint64_t merge(RamDirty *d, DirtyBlock *b, uint64_t base, uint64_t n,
                      const unsigned long *log)
{
    unsigned long *map = b->map + base / BITS_PER_LONG;
    uint64_t logged = 0, added = 0;

    for (uint64_t i = 0; i < BITS_TO_LONGS(n); i++) {
        unsigned long w = log[i] & word_mask(i, n);

        logged += __builtin_popcountl(w);
        added += __builtin_popcountl(w & ~map[i]);
        map[i] |= w;
    }
    pending_add(d, added);
    return logged;
}

bool ram_dirty_sync(RamDirty *d, uint64_t *logged, Error **errp)
{
    uint64_t total = 0;

    for (int i = 0; d->logging && i < d->ram->nregions; i++) {
        const MemRegion *r = &d->ram->regions[i];
        DirtyBlock *b = &d->blocks[block_of(d, r->block)];
        uint64_t n = r->size / RAM_DIRTY_PAGE_SIZE;

        memset(d->tmp, 0, BITS_TO_LONGS(n) * sizeof(unsigned long));
        if (!d->ops->dirty_log_sync(d->accel, r, d->tmp, errp)) {
            return false;
        }
        total += merge(d, b, r->offset / RAM_DIRTY_PAGE_SIZE, n, d->tmp);
    }
    for (int i = 0; d->logging && i < d->nblocks; i++) {
        DirtyBlock *b = &d->blocks[i];

        machine_soft_dirty_take(d->m, i, 0, b->npages, d->tmp);
        total += merge(d, b, 0, b->npages, d->tmp);
    }
    trace(migration_dirty_sync, "logged=%" PRIu64 " pending=%" PRIu64, total,
          ram_dirty_pending(d));
    if (logged) {
        *logged = total;
    }
    return true;
}

uint64_t ram_dirty_block_pages(RamDirty *d, int b)
{
    return d->blocks[b].npages;
}

uint64_t ram_dirty_next(RamDirty *d, int b, uint64_t page)
{
    return find_next_bit(d->blocks[b].map, d->blocks[b].npages, page);
}

uint64_t ram_dirty_next_clear(RamDirty *d, int b, uint64_t page)
{
    return find_next_zero_bit(d->blocks[b].map, d->blocks[b].npages, page);
}

void ram_dirty_mark_missing(RamDirty *d, int b, const unsigned long *have)
{
    DirtyBlock *blk = &d->blocks[b];
    uint64_t before = bitmap_count_range(blk->map, 0, blk->npages), after;

    bitmap_complement(blk->map, have, blk->npages);
    after = bitmap_count_range(blk->map, 0, blk->npages);
    pending_add(d, (int64_t)after - (int64_t)before);
}

void ram_dirty_widen(RamDirty *d, int b, uint64_t unit)
{
    DirtyBlock *blk = &d->blocks[b];

    for (uint64_t p = unit > 1 ? find_next_bit(blk->map, blk->npages, 0) : blk->npages;
         p < blk->npages; p = find_next_bit(blk->map, blk->npages, p)) {
        uint64_t first = p - p % unit, n = MIN(unit, blk->npages - first);

        pending_add(d, n - bitmap_count_range(blk->map, first, n));
        bitmap_set(blk->map, first, n);
        p = first + n;
    }
}

bool ram_dirty_test(RamDirty *d, int b, uint64_t page)
{
    return page < d->blocks[b].npages && test_bit(page, d->blocks[b].map);
}

/* Re-arm the accelerator's log for the pages set in bits (range of block b). */
static bool rearm(RamDirty *d, int b, uint64_t start, uint64_t n,
                  const unsigned long *bits, Error **errp)
{
    for (int i = 0; i < d->ram->nregions; i++) {
        const MemRegion *r = &d->ram->regions[i];
        uint64_t base = r->offset / RAM_DIRTY_PAGE_SIZE;
        uint64_t lo = MAX(start, base);
        uint64_t hi = MIN(start + n, base + r->size / RAM_DIRTY_PAGE_SIZE);

        if (r->block != d->blocks[b].rb || lo >= hi) {
            continue;
        }
        /* lo is start or base, both multiples of 64: whole words of bits. */
        if (!d->ops->dirty_log_clear(d->accel, r, lo - base, hi - lo,
                                     bits + (lo - start) / BITS_PER_LONG, errp)) {
            return false;
        }
    }
    return true;
}

bool ram_dirty_take(RamDirty *d, int b, uint64_t start, uint64_t n, unsigned long *bits,
                    Error **errp)
{
    DirtyBlock *blk = &d->blocks[b];
    unsigned long *map = blk->map + start / BITS_PER_LONG;
    uint64_t taken = 0;

    g_assert(start % BITS_PER_LONG == 0 && start + n <= blk->npages);
    for (uint64_t i = 0; i < BITS_TO_LONGS(n); i++) {
        unsigned long mask = word_mask(i, n);

        bits[i] = map[i] & mask;
        map[i] &= ~mask;
        taken += __builtin_popcountl(bits[i]);
    }
    pending_add(d, -(int64_t)taken);
    if (!taken || !d->logging) {
        return true;
    }
    if (!rearm(d, b, start, n, bits, errp)) {
        /* Not re-armed: the pages must go out again later, so keep them marked. */
        ram_dirty_put_back(d, b, start, n, bits);
        return false;
    }
    return true;
}

void ram_dirty_put_back(RamDirty *d, int b, uint64_t start, uint64_t n,
                        const unsigned long *bits)
{
    merge(d, &d->blocks[b], start, n, bits);
}
