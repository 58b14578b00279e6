/*
 * The `ram` section, source side: the one writer of its bytes (see
 * include/migration/ram.h).  The section's handlers write the block list
 * and end every payload with EOS; in between, the page source picks the
 * pages and this file turns each into a record and counts it.
 */
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "migration/mapped-ram.h"
#include "migration/ram.h"
#include "util/cutils.h"
#include "util/stat.h"

struct RamSaver {
    RamBlockList *ram;
    const RamPageSourceOps *ops;
    void *opaque;
    const RAMBlock *last;           /* block of the previous record (CONTINUE) */
    RamCounters c;                  /* updated with atomics */
    MappedRamWriter *mapped;        /* mapped-ram: pages go to their places */
    bool postcopy;                  /* huge pages' page sizes in the block list */
};

uint64_t ram_list_total_bytes(const RamBlockList *ram)
{
    uint64_t total = 0;

    for (int i = 0; i < ram->nblocks; i++) {
        total += ram->blocks[i]->used_length;
    }
    return total;
}

uint64_t ram_list_page_summary(const RamBlockList *ram)
{
    uint64_t summary = 0;

    for (int i = 0; i < ram->nblocks; i++) {
        summary |= ram_block_host_pages(ram->blocks[i]) * RAM_PAGE_SIZE;
    }
    return summary ? summary : RAM_PAGE_SIZE;
}

RamSaver *ram_saver_new(RamBlockList *ram)
{
    RamSaver *rs = g_new0(RamSaver, 1);

    rs->ram = ram;
    rs->c.total_bytes = ram_list_total_bytes(ram);
    return rs;
}

void ram_saver_free(RamSaver *rs)
{
    g_free(rs);
}

void ram_saver_set_source(RamSaver *rs, const RamPageSourceOps *ops, void *opaque)
{
    rs->ops = ops;
    rs->opaque = opaque;
}

void ram_saver_set_mapped(RamSaver *rs, MappedRamWriter *w)
{
    rs->mapped = w;
}

void ram_saver_set_postcopy(RamSaver *rs, bool on)
{
    rs->postcopy = on;
}

void ram_saver_restart(RamSaver *rs)
{
    rs->last = NULL;
}

RamBlockList *ram_saver_blocks(RamSaver *rs)
{
    return rs->ram;
}

void ram_saver_counters(RamSaver *rs, RamCounters *out)
{
    out->total_bytes = rs->c.total_bytes;
    out->scanned_pages = stat_get(&rs->c.scanned_pages);
    out->zero_pages = stat_get(&rs->c.zero_pages);
    out->normal_pages = stat_get(&rs->c.normal_pages);
    out->passes = stat_get(&rs->c.passes);
}

uint64_t ram_saver_new_pass(RamSaver *rs)
{
    stat_add(&rs->c.passes, 1);
    return stat_get(&rs->c.passes);
}

/* ---- records --------------------------------------------------------------------- */

static void put_idstr(QEMUFile *f, const RAMBlock *rb)
{
    qemu_put_byte(f, strlen(rb->idstr));
    qemu_put_buffer(f, rb->idstr, strlen(rb->idstr));
}

/* mapped-ram: the page goes to its place in the file, not into the stream. */
static void put_mapped(RamSaver *rs, QEMUFile *f, const RAMBlock *rb, uint64_t offset,
                       const uint8_t *data, bool nocopy)
{
    int b = 0;

    while (rs->ram->blocks[b] != rb) {
        b++;
    }
    if (mapped_ram_writer_failed(rs->mapped)) {
        Error *err = NULL;

        /* The stream's sticky error stops the page source at its next check. */
        mapped_ram_writer_flush(rs->mapped, &err);
        qemu_file_set_error_obj(f, -EIO, err);
        return;
    }
    mapped_ram_writer_put(rs->mapped, b, offset / RAM_PAGE_SIZE, data, nocopy);
    if (data) {
        qemu_file_count_external(f, RAM_PAGE_SIZE);
    }
}

void ram_saver_put_page(RamSaver *rs, QEMUFile *f, const RAMBlock *rb, uint64_t offset,
                        const uint8_t *data, bool nocopy)
{
    uint64_t flags = data ? RAM_SAVE_FLAG_PAGE : RAM_SAVE_FLAG_ZERO;

    if (rs->mapped) {
        put_mapped(rs, f, rb, offset, data, nocopy);
    } else if (rb == rs->last) {
        qemu_put_be64(f, offset | flags | RAM_SAVE_FLAG_CONTINUE);
    } else {
        qemu_put_be64(f, offset | flags);
        put_idstr(f, rb);
        rs->last = rb;
    }
    if (rs->mapped) {
        /* Written at its place. */
    } else if (!data) {
        qemu_put_byte(f, 0);
    } else if (nocopy) {
        qemu_put_buffer_nocopy(f, data, RAM_PAGE_SIZE);
    } else {
        qemu_put_buffer(f, data, RAM_PAGE_SIZE);
    }
    if (!rs->mapped) {
        /* x-checksum: the loader checks the record before placing its page. */
        qemu_put_crc(f);
    }
    stat_add(data ? &rs->c.normal_pages : &rs->c.zero_pages, 1);
    stat_add(&rs->c.scanned_pages, 1);
}

void ram_saver_put_guest_page(RamSaver *rs, QEMUFile *f, const RAMBlock *rb,
                              uint64_t offset, bool populated, bool nocopy)
{
    const uint8_t *p = rb->host + offset;

    ram_saver_put_page(rs, f, rb, offset,
                       populated && !buffer_is_zero(p, RAM_PAGE_SIZE) ? p : NULL, nocopy);
}

/* ---- section handlers -------------------------------------------------------------- */

static bool ram_saver_setup(QEMUFile *f, void *opaque, Error **errp)
{
    RamSaver *rs = opaque;

    qemu_put_be64(f, rs->c.total_bytes | RAM_SAVE_FLAG_MEM_SIZE);
    for (int i = 0; i < rs->ram->nblocks; i++) {
        put_idstr(f, rs->ram->blocks[i]);
        qemu_put_be64(f, rs->ram->blocks[i]->used_length);
        if (rs->postcopy && ram_block_host_pages(rs->ram->blocks[i]) > 1) {
            qemu_put_be64(f, rs->ram->blocks[i]->page_size);
        }
        if (rs->mapped && !mapped_ram_writer_put_header(rs->mapped, f, i, errp)) {
            return false;
        }
    }
    qemu_put_be64(f, RAM_SAVE_FLAG_EOS);
    /* CONTINUE may span sections, as QEMU's loader allows; not the setup. */
    rs->last = NULL;
    if (!qemu_file_check(f, errp)) {
        return false;
    }
    return !rs->ops->setup || rs->ops->setup(rs->opaque, rs, f, errp);
}

static int fill(RamSaver *rs, QEMUFile *f, uint64_t max_pages, bool final, Error **errp)
{
    int ret = rs->ops->fill(rs->opaque, rs, f, max_pages, final, errp);

    qemu_put_be64(f, RAM_SAVE_FLAG_EOS);
    if (ret < 0 || !qemu_file_check(f, errp)) {
        return -1;
    }
    return ret;
}

static int ram_saver_iterate(QEMUFile *f, void *opaque, Error **errp)
{
    RamSaver *rs = opaque;

    return fill(rs, f, rs->ops->part_pages, false, errp);
}

static bool ram_saver_complete(QEMUFile *f, void *opaque, Error **errp)
{
    RamSaver *rs = opaque;
    int ret = fill(rs, f, UINT64_MAX, true, errp);

    if (ret == 0) {
        /* A source must empty itself at the end: say so rather than lose pages. */
        error_setg(errp, "RAM pages were left unsent at the end of the section");
    }
    /* Every page is at its place: the bitmaps say which. */
    return ret > 0 && (!rs->mapped || mapped_ram_writer_finish(rs->mapped, errp));
}

static bool ram_saver_load_refused(QEMUFile *f, void *opaque, int version_id,
                                   Error **errp)
{
    error_setg(errp, "this registry saves RAM; it cannot load it");
    return false;
}

static const SaveStateHandlers ram_saver_handlers = {
    .save_setup = ram_saver_setup,
    .save_iterate = ram_saver_iterate,
    .save_complete = ram_saver_complete,
    .load_state = ram_saver_load_refused,
};

bool ram_saver_register(RamSaver *rs, SaveStateRegistry *r, const RamPageSourceOps *ops,
                        void *opaque, Error **errp)
{
    rs->ops = ops;
    rs->opaque = opaque;
    return savevm_register(r, RAM_SECTION_NAME, 0, RAM_SECTION_VERSION,
                           &ram_saver_handlers, rs, errp) != NULL;
}
