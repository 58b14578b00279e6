/*
 * The placement of RAM that no vCPU has run on yet (restore, precopy): a
 * page's bytes are read straight into guest memory, as nothing else
 * touches it.
 *
 * ZERO records must not populate memory: the destination's RAM is mostly
 * fresh (never touched, so it reads as zero).  Which pages the machine
 * already wrote (the loaded guest image, a prealloc backend) is asked of
 * mincore once per block, when the block list names it; only those, and
 * pages the stream itself gave before, are cleared.
 */
#include <string.h>
#include <sys/mman.h>

#include <glib.h>

#include "migration/ram.h"
#include "util/cutils.h"

typedef struct MemcpyPlacement {
    RamBlockList *ram;
    uint8_t *resident[AMBER_MAX_RAM_BLOCKS];    /* mincore(): touched before */
} MemcpyPlacement;

static bool memcpy_prepare_block(void *opaque, int b, Error **errp)
{
    MemcpyPlacement *mp = opaque;
    RAMBlock *rb = mp->ram->blocks[b];
    uint64_t npages = rb->used_length / RAM_PAGE_SIZE;

    g_free(mp->resident[b]);
    mp->resident[b] = g_malloc0(npages ? npages : 1);
    if (npages && mincore(rb->host, rb->used_length, mp->resident[b]) < 0) {
        /* Cannot tell: treat every page as touched (cleared when non-zero). */
        memset(mp->resident[b], 1, npages);
    }
    return true;
}

static uint8_t *memcpy_buffer(void *opaque, int b, uint64_t page)
{
    MemcpyPlacement *mp = opaque;

    return mp->ram->blocks[b]->host + page * RAM_PAGE_SIZE;
}

static bool memcpy_place(void *opaque, int b, uint64_t page, bool zero, bool again,
                         Error **errp)
{
    MemcpyPlacement *mp = opaque;
    uint8_t *host = memcpy_buffer(mp, b, page);

    /* The bytes of a data page are in place already: read into the buffer. */
    if (zero && ((mp->resident[b][page] & 1) || again) &&
        !buffer_is_zero(host, RAM_PAGE_SIZE)) {
        memset(host, 0, RAM_PAGE_SIZE);
    }
    return true;
}

static void memcpy_free(void *opaque)
{
    MemcpyPlacement *mp = opaque;

    for (int i = 0; i < AMBER_MAX_RAM_BLOCKS; i++) {
        g_free(mp->resident[i]);
    }
    g_free(mp);
}

static const RamPlacementOps memcpy_ops = {
    .prepare_block = memcpy_prepare_block,
    .buffer = memcpy_buffer,
    .place = memcpy_place,
    .free = memcpy_free,
};

void ram_placement_memcpy(RamBlockList *ram, const RamPlacementOps **ops, void **opaque)
{
    MemcpyPlacement *mp = g_new0(MemcpyPlacement, 1);

    mp->ram = ram;
    *ops = &memcpy_ops;
    *opaque = mp;
}
