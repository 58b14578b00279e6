/*
 * RAM save: the `ram` section's block list and one pass over every page.
 *
 * Which pages hold data is asked of the kernel once per block, when the
 * scan enters it (the VM is stopped by then): SEEK_DATA/SEEK_HOLE on the
 * backing file for memfd and file backends (that also finds pages that
 * are swapped out or not mapped here), PAGEMAP_SCAN for anonymous memory
 * (present or swapped).  A page the kernel never populated reads as zero,
 * so it becomes a ZERO record without being touched: a fresh 4 GiB guest
 * is neither read nor faulted in.  When neither query works, every page
 * is read.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "migration/ram.h"
#include "util/bitmap.h"
#include "util/cutils.h"
#include "util/trace.h"
#include "util/uffd.h"

/* Pages per PART section: bounds the time between two cancel checks. */
#define RAM_PAGES_PER_PART      16384
/* Pages between two rate-limit checks. */
#define RAM_RATE_CHECK_PAGES    64

struct RamSaveState {
    RamBlockList *ram;
    int block;                      /* scan position: block index ... */
    uint64_t offset;                /* ... and byte offset in it */
    unsigned long *populated;       /* of the current block; NULL: not yet asked */
    RamRecordWriter w;
    RamCounters c;                  /* updated with atomics */
};

static void counter_add(uint64_t *p, uint64_t n)
{
    __atomic_add_fetch(p, n, __ATOMIC_RELAXED);
}

static uint64_t counter_get(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

RamSaveState *ram_save_new(RamBlockList *ram)
{
    RamSaveState *rs = g_new0(RamSaveState, 1);

    rs->ram = ram;
    for (int i = 0; i < ram->nblocks; i++) {
        rs->c.total_bytes += ram->blocks[i]->used_length;
    }
    return rs;
}

void ram_save_free(RamSaveState *rs)
{
    if (rs) {
        bitmap_free(rs->populated);
        g_free(rs);
    }
}

void ram_save_counters(RamSaveState *rs, RamCounters *out)
{
    out->total_bytes = rs->c.total_bytes;
    out->scanned_pages = counter_get(&rs->c.scanned_pages);
    out->zero_pages = counter_get(&rs->c.zero_pages);
    out->normal_pages = counter_get(&rs->c.normal_pages);
    out->passes = counter_get(&rs->c.passes);
}

/* ---- which pages hold data ------------------------------------------------------ */

static uint64_t block_pages(const RAMBlock *rb)
{
    return rb->used_length / RAM_PAGE_SIZE;
}

/*
 * Pages [first, first + n) of rb's backing file that hold data, as bits
 * from `map` bit 0; false when the file system cannot say.
 */
static bool populated_by_seek(const RAMBlock *rb, uint64_t first, uint64_t n,
                              unsigned long *map)
{
    off_t base = rb->fd_offset + first * RAM_PAGE_SIZE;
    off_t end = base + n * RAM_PAGE_SIZE, pos = base;

    while (pos < end) {
        off_t data = lseek(rb->fd, pos, SEEK_DATA);
        off_t hole;

        if (data < 0) {
            return errno == ENXIO;      /* no data after pos: done */
        }
        if (data >= end) {
            break;
        }
        hole = lseek(rb->fd, data, SEEK_HOLE);
        if (hole < 0) {
            return false;
        }
        hole = MIN(hole, end);
        /* Round outwards: a partly written page is a page with data. */
        bitmap_set(map, (data - base) / RAM_PAGE_SIZE,
                   (hole - base + RAM_PAGE_SIZE - 1) / RAM_PAGE_SIZE -
                   (data - base) / RAM_PAGE_SIZE);
        pos = hole;
    }
    return true;
}

/* The same for the present or swapped pages of our own mapping. */
static bool populated_by_pagemap(const RAMBlock *rb, int pagemap_fd, uint64_t first,
                                 uint64_t n, unsigned long *map)
{
    static const PagemapQuery q = { .any_set = PAGE_IS_PRESENT | PAGE_IS_SWAPPED };
    uint64_t start = (uintptr_t)rb->host + first * RAM_PAGE_SIZE;
    uint64_t end = start + n * RAM_PAGE_SIZE, pos = start;
    struct page_region regs[128];

    while (pos < end) {
        uint64_t walk_end = end;
        ssize_t nr = pagemap_scan(pagemap_fd, pos, end - pos, &q, regs,
                                  G_N_ELEMENTS(regs), &walk_end, NULL);

        if (nr < 0) {
            return false;
        }
        for (ssize_t i = 0; i < nr; i++) {
            bitmap_set(map, (regs[i].start - start) / RAM_PAGE_SIZE,
                       (regs[i].end - regs[i].start) / RAM_PAGE_SIZE);
        }
        if (walk_end <= pos) {
            break;
        }
        pos = walk_end;
    }
    return true;
}

bool ram_block_populated(const RAMBlock *rb, int pagemap_fd, uint64_t first,
                         uint64_t n, unsigned long *map)
{
    if (rb->fd >= 0) {
        return populated_by_seek(rb, first, n, map);
    }
    return pagemap_fd >= 0 && populated_by_pagemap(rb, pagemap_fd, first, n, map);
}

static unsigned long *block_populated(const RAMBlock *rb)
{
    uint64_t npages = block_pages(rb);
    unsigned long *map = bitmap_new(npages);
    int fd = rb->fd >= 0 ? -1 : pagemap_open(0, NULL);
    bool ok = ram_block_populated(rb, fd, 0, npages, map);

    if (fd >= 0) {
        close(fd);
    }

    if (!ok) {
        trace(ram_save_populated_unknown, "block=%s: reading every page", rb->idstr);
        bitmap_set(map, 0, npages);
    }
    trace(ram_save_populated, "block=%s populated=%zu of %" PRIu64, rb->idstr,
          bitmap_count_range(map, 0, npages), npages);
    return map;
}

/* ---- records --------------------------------------------------------------------- */

void ram_record_put(RamRecordWriter *w, QEMUFile *f, const RAMBlock *rb,
                    uint64_t offset, const uint8_t *data, bool nocopy)
{
    uint64_t flags = data ? RAM_SAVE_FLAG_PAGE : RAM_SAVE_FLAG_ZERO;

    if (rb == w->last) {
        qemu_put_be64(f, offset | flags | RAM_SAVE_FLAG_CONTINUE);
    } else {
        qemu_put_be64(f, offset | flags);
        qemu_put_byte(f, strlen(rb->idstr));
        qemu_put_buffer(f, rb->idstr, strlen(rb->idstr));
        w->last = rb;
    }
    if (!data) {
        qemu_put_byte(f, 0);
    } else if (nocopy) {
        qemu_put_buffer_nocopy(f, data, RAM_PAGE_SIZE);
    } else {
        qemu_put_buffer(f, data, RAM_PAGE_SIZE);
    }
}

static void count_record(RamSaveState *rs, const uint8_t *data)
{
    counter_add(data ? &rs->c.normal_pages : &rs->c.zero_pages, 1);
    counter_add(&rs->c.scanned_pages, 1);
}

static void save_page(RamSaveState *rs, QEMUFile *f, const RAMBlock *rb, uint64_t offset,
                      bool populated)
{
    const uint8_t *p = rb->host + offset;
    const uint8_t *data = populated && !buffer_is_zero(p, RAM_PAGE_SIZE) ? p : NULL;

    /* The guest is stopped: the page stays as it is until the flush. */
    ram_record_put(&rs->w, f, rb, offset, data, true);
    count_record(rs, data);
}

void ram_save_put_page(RamSaveState *rs, QEMUFile *f, const RAMBlock *rb,
                       uint64_t offset, const uint8_t *data)
{
    ram_record_put(&rs->w, f, rb, offset, data, false);
    count_record(rs, data);
}

/* ---- section handlers -------------------------------------------------------------- */

static bool ram_save_setup(QEMUFile *f, void *opaque, Error **errp)
{
    RamSaveState *rs = opaque;

    qemu_put_be64(f, rs->c.total_bytes | RAM_SAVE_FLAG_MEM_SIZE);
    for (int i = 0; i < rs->ram->nblocks; i++) {
        const RAMBlock *rb = rs->ram->blocks[i];

        qemu_put_byte(f, strlen(rb->idstr));
        qemu_put_buffer(f, rb->idstr, strlen(rb->idstr));
        qemu_put_be64(f, rb->used_length);
    }
    qemu_put_be64(f, RAM_SAVE_FLAG_EOS);
    rs->block = 0;
    rs->offset = 0;
    rs->w.last = NULL;
    counter_add(&rs->c.passes, 1);
    return qemu_file_check(f, errp);
}

/* Move the scan to the next block; false when every block is done. */
static bool next_block(RamSaveState *rs)
{
    bitmap_free(rs->populated);
    rs->populated = NULL;
    rs->offset = 0;
    rs->block++;
    return rs->block < rs->ram->nblocks;
}

/*
 * Up to `max_pages` pages, stopping early when the rate limit is reached.
 * Returns 1 when every page has been written, 0 when some remain.
 */
static int save_pages(RamSaveState *rs, QEMUFile *f, uint64_t max_pages)
{
    uint64_t done = 0;

    while (rs->block < rs->ram->nblocks) {
        const RAMBlock *rb = rs->ram->blocks[rs->block];

        if (rs->offset >= rb->used_length) {
            next_block(rs);
            continue;
        }
        if (!rs->populated) {
            rs->populated = block_populated(rb);
        }
        if (done >= max_pages || qemu_file_get_error(f) ||
            (done % RAM_RATE_CHECK_PAGES == 0 && done &&
             qemu_file_rate_limit_exceeded(f))) {
            return 0;
        }
        save_page(rs, f, rb, rs->offset, test_bit(rs->offset / RAM_PAGE_SIZE,
                                                  rs->populated));
        rs->offset += RAM_PAGE_SIZE;
        done++;
    }
    return 1;
}

static int ram_save_iterate(QEMUFile *f, void *opaque, Error **errp)
{
    RamSaveState *rs = opaque;
    int ret = save_pages(rs, f, RAM_PAGES_PER_PART);

    qemu_put_be64(f, RAM_SAVE_FLAG_EOS);
    return qemu_file_check(f, errp) ? ret : -1;
}

static bool ram_save_complete(QEMUFile *f, void *opaque, Error **errp)
{
    RamSaveState *rs = opaque;

    /* Whatever iterate left (nothing when it returned 1), ignoring the limit. */
    while (save_pages(rs, f, UINT64_MAX) == 0 && !qemu_file_get_error(f)) {
        qemu_file_rate_limit_wait(f);
    }
    qemu_put_be64(f, RAM_SAVE_FLAG_EOS);
    return qemu_file_check(f, errp);
}

static bool ram_save_load_refused(QEMUFile *f, void *opaque, int version_id,
                                  Error **errp)
{
    error_setg(errp, "this registry saves RAM; it cannot load it");
    return false;
}

static const SaveStateHandlers ram_save_handlers = {
    .save_setup = ram_save_setup,
    .save_iterate = ram_save_iterate,
    .save_complete = ram_save_complete,
    .load_state = ram_save_load_refused,
};

bool ram_save_register(RamSaveState *rs, SaveStateRegistry *r, Error **errp)
{
    return savevm_register(r, RAM_SECTION_NAME, 0, RAM_SECTION_VERSION,
                           &ram_save_handlers, rs, errp) != NULL;
}
