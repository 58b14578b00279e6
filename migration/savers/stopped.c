/*
 * The stopped save's page source: one pass over every page of every block
 * in order, with the guest stopped.  Pages are queued straight from guest
 * memory (the stream does not copy them), and which pages hold data is
 * asked of the kernel once per block, when the scan enters it: a page
 * never populated goes out as ZERO without being read.
 */
#include <inttypes.h>
#include <unistd.h>

#include <glib.h>

#include "migration/savers.h"
#include "util/bitmap.h"
#include "util/trace.h"
#include "util/uffd.h"

/* Pages per PART section: bounds the time between two cancel checks. */
#define STOPPED_PART_PAGES      16384
/* Pages between two rate-limit checks. */
#define STOPPED_RATE_CHECK_PAGES 64

struct RamStopped {
    RamBlockList *ram;
    int block;                      /* scan position: block index ... */
    uint64_t offset;                /* ... and byte offset in it */
    unsigned long *populated;       /* of the current block; NULL: not yet asked */
};

RamStopped *ram_stopped_new(void)
{
    return g_new0(RamStopped, 1);
}

void ram_stopped_free(RamStopped *st)
{
    if (st) {
        bitmap_free(st->populated);
        g_free(st);
    }
}

static unsigned long *block_populated(const RAMBlock *rb)
{
    uint64_t npages = rb->used_length / RAM_PAGE_SIZE;
    unsigned long *map = bitmap_new(npages);
    int fd = pagemap_open(0, NULL);
    bool ok = ram_populated(rb, fd, RAM_PAGE_SIZE, 0, npages, map);

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

static bool stopped_setup(void *opaque, RamSaver *rs, QEMUFile *f, Error **errp)
{
    RamStopped *st = opaque;

    st->ram = ram_saver_blocks(rs);
    st->block = 0;
    st->offset = 0;
    ram_saver_new_pass(rs);
    return true;
}

/* Move the scan to the next block. */
static void next_block(RamStopped *st)
{
    bitmap_free(st->populated);
    st->populated = NULL;
    st->offset = 0;
    st->block++;
}

/*
 * Up to max_pages pages, stopping early when the rate limit is reached.
 * Returns 1 when every page has been written, 0 when some remain.
 */
static int save_pages(RamStopped *st, RamSaver *rs, QEMUFile *f, uint64_t max_pages)
{
    uint64_t done = 0;

    while (st->block < st->ram->nblocks) {
        const RAMBlock *rb = st->ram->blocks[st->block];

        if (st->offset >= rb->used_length) {
            next_block(st);
            continue;
        }
        if (!st->populated) {
            st->populated = block_populated(rb);
        }
        if (done >= max_pages || qemu_file_get_error(f) ||
            (done % STOPPED_RATE_CHECK_PAGES == 0 && done &&
             qemu_file_rate_limit_exceeded(f))) {
            return 0;
        }
        /* The guest is stopped: the page stays as it is until the flush. */
        ram_saver_put_guest_page(rs, f, rb, st->offset,
                                 test_bit(st->offset / RAM_PAGE_SIZE, st->populated),
                                 true);
        st->offset += RAM_PAGE_SIZE;
        done++;
    }
    return 1;
}

static int stopped_fill(void *opaque, RamSaver *rs, QEMUFile *f, uint64_t max_pages,
                        bool final, Error **errp)
{
    RamStopped *st = opaque;
    int ret;

    if (!final) {
        return save_pages(st, rs, f, max_pages);
    }
    /* Whatever iterate left (nothing when it returned 1), within the limit. */
    while ((ret = save_pages(st, rs, f, max_pages)) == 0 && !qemu_file_get_error(f)) {
        qemu_file_rate_limit_wait(f);
    }
    return qemu_file_check(f, errp) ? ret : -1;
}

static const RamPageSourceOps stopped_ops = {
    .part_pages = STOPPED_PART_PAGES,
    .setup = stopped_setup,
    .fill = stopped_fill,
};

bool ram_stopped_register(RamStopped *st, RamSaver *rs, SaveStateRegistry *r,
                          Error **errp)
{
    return ram_saver_register(rs, r, &stopped_ops, st, errp);
}
