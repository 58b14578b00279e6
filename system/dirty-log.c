/*
 * The dirty log of writes amber makes itself into guest RAM.
 *
 * The accelerator logs what the guest writes; it cannot see amber's own
 * stores through the host mapping (machine_write_phys, the guest image a
 * reset reloads).  While a live migration runs, those stores set bits here
 * (one per 4 KiB page of each RAM block), and the migration merges them
 * with the accelerator's log at each sync.
 *
 * Any thread may mark.  The bitmaps are allocated at the first start and
 * kept until the machine is destroyed, so a writer that saw the log on
 * just before a stop still writes into valid memory; a stale bit only
 * makes a page go out once more.
 */
#include <string.h>

#include "machine-int.h"
#include "util/bitmap.h"

#define SOFT_PAGE_SIZE 4096ULL

static size_t block_npages(const RAMBlock *rb)
{
    return rb->used_length / SOFT_PAGE_SIZE;
}

void machine_soft_dirty_start(Machine *m)
{
    for (int i = 0; i < m->ram.nblocks; i++) {
        size_t n = block_npages(m->ram.blocks[i]);

        if (!m->soft_dirty[i]) {
            m->soft_dirty[i] = bitmap_new(n);
        } else {
            bitmap_clear_atomic(m->soft_dirty[i], 0, n);
        }
    }
    /* Release: a writer that sees the log on also sees the bitmaps. */
    __atomic_store_n(&m->soft_dirty_on, 1, __ATOMIC_RELEASE);
}

void machine_soft_dirty_stop(Machine *m)
{
    __atomic_store_n(&m->soft_dirty_on, 0, __ATOMIC_RELEASE);
}

void machine_soft_dirty_free(Machine *m)
{
    for (int i = 0; i < AMBER_MAX_RAM_BLOCKS; i++) {
        bitmap_free(m->soft_dirty[i]);
        m->soft_dirty[i] = NULL;
    }
}

static int block_index(Machine *m, const RAMBlock *rb)
{
    for (int i = 0; i < m->ram.nblocks; i++) {
        if (m->ram.blocks[i] == rb) {
            return i;
        }
    }
    return -1;
}

void machine_mark_dirty(Machine *m, uint64_t gpa, uint64_t len)
{
    if (!len || !__atomic_load_n(&m->soft_dirty_on, __ATOMIC_ACQUIRE)) {
        return;
    }
    for (int i = 0; i < m->ram.nregions; i++) {
        const MemRegion *r = &m->ram.regions[i];
        uint64_t start = MAX(gpa, r->gpa), end = MIN(gpa + len, r->gpa + r->size);
        int b = block_index(m, r->block);

        if (start >= end || b < 0) {
            continue;
        }
        start = start - r->gpa + r->offset;
        end = end - r->gpa + r->offset;
        bitmap_set_atomic(m->soft_dirty[b], start / SOFT_PAGE_SIZE,
                          (end - 1) / SOFT_PAGE_SIZE - start / SOFT_PAGE_SIZE + 1);
    }
}

void machine_mark_all_dirty(Machine *m)
{
    if (!__atomic_load_n(&m->soft_dirty_on, __ATOMIC_ACQUIRE)) {
        return;
    }
    for (int i = 0; i < m->ram.nblocks; i++) {
        bitmap_set_atomic(m->soft_dirty[i], 0, block_npages(m->ram.blocks[i]));
    }
}

size_t machine_soft_dirty_take(Machine *m, int block, size_t start, size_t nr,
                               unsigned long *dst)
{
    if (block < 0 || block >= m->ram.nblocks || !m->soft_dirty[block]) {
        memset(dst, 0, BITS_TO_LONGS(nr) * sizeof(unsigned long));
        return 0;
    }
    return bitmap_take_range_atomic(dst, m->soft_dirty[block], start, nr);
}
