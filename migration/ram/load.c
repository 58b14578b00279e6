/*
 * The `ram` section, destination side: every record checked against this
 * VM's blocks, then its page handed to the placement.
 *
 * The stream is hostile.  Before a page is placed the loader has checked
 * that the block list came first and matches this VM (names and sizes),
 * that the record's flags are known and combined as the format allows,
 * that its block exists (or CONTINUE has one to continue), and that the
 * offset lies inside the block.
 *
 * A page may have no record at all: a background snapshot does not send
 * pages that were never populated at its instant.  Such a page is zero in
 * the saved guest, so at the end it is placed as a zero page.  A stream cut
 * short is still refused: by the framing (EOF, footers).
 */
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>

#include <glib.h>

#include "migration/mapped-ram.h"
#include "migration/ram.h"
#include "util/bitmap.h"
#include "util/stat.h"

#define RAM_FLAGS_MASK      (RAM_PAGE_SIZE - 1)
#define RAM_KNOWN_FLAGS     (RAM_SAVE_FLAG_ZERO | RAM_SAVE_FLAG_MEM_SIZE | \
                             RAM_SAVE_FLAG_PAGE | RAM_SAVE_FLAG_EOS | \
                             RAM_SAVE_FLAG_CONTINUE)

typedef struct RamLoadBlock {
    RAMBlock *rb;
    int index;                      /* in the RamBlockList, for the placement */
    bool listed;                    /* named in the stream's block list */
    unsigned long *received;        /* pages the stream gave */
} RamLoadBlock;

struct RamLoader {
    RamBlockList *ram;
    RamLoadBlock blocks[AMBER_MAX_RAM_BLOCKS];
    const RamPlacementOps *place;
    void *place_opaque;
    bool setup_done;
    RamLoadBlock *last;             /* block of the previous record (CONTINUE) */
    RamCounters c;
    bool direct;                    /* the memcpy placement: pages may be read into RAM */
    bool postcopy;                  /* the block list has huge pages' page sizes */
    /* mapped-ram: pages are read from their places in the file, not from records */
    int mapped_fd;                  /* -1: not a mapped-ram stream */
    int mapped_threads;
    bool mapped_lazy;               /* leave the pages to a lazy restore */
    bool mapped_map;                /* map the pages (x-zero-copy-restore) */
    uint64_t file_size;
    MappedRamBlock mapped[AMBER_MAX_RAM_BLOCKS];
};

RamLoader *ram_loader_new(RamBlockList *ram, const RamPlacementOps *ops, void *opaque)
{
    RamLoader *ls = g_new0(RamLoader, 1);

    ls->ram = ram;
    ls->place = ops;
    ls->place_opaque = opaque;
    ls->mapped_fd = -1;
    for (int i = 0; i < ram->nblocks; i++) {
        ls->blocks[i].rb = ram->blocks[i];
        ls->blocks[i].index = i;
    }
    ls->c.total_bytes = ram_list_total_bytes(ram);
    return ls;
}

RamLoader *ram_loader_new_memcpy(RamBlockList *ram)
{
    const RamPlacementOps *ops;
    void *opaque;

    RamLoader *ls;

    ram_placement_memcpy(ram, &ops, &opaque);
    ls = ram_loader_new(ram, ops, opaque);
    ls->direct = true;
    return ls;
}

bool ram_loader_set_mapped(RamLoader *ls, int fd, int threads, bool lazy, Error **errp)
{
    struct stat st;

    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        error_setg(errp, "a mapped-ram stream must be read from a file (file:, or fd: of "
                   "a regular file): its pages are at fixed places in it");
        return false;
    }
    if (!lazy && !ls->direct) {
        error_setg(errp, "a mapped-ram stream loads only into RAM no vCPU has run on");
        return false;
    }
    ls->mapped_fd = fd;
    ls->mapped_threads = threads;
    ls->mapped_lazy = lazy;
    ls->file_size = st.st_size;
    return true;
}

void ram_loader_set_map_image(RamLoader *ls, bool map)
{
    ls->mapped_map = map;
}

const MappedRamBlock *ram_loader_mapped_block(RamLoader *ls, int b)
{
    return ls->mapped_fd >= 0 && ls->blocks[b].listed ? &ls->mapped[b] : NULL;
}

void ram_loader_free(RamLoader *ls)
{
    if (!ls) {
        return;
    }
    for (int i = 0; i < ls->ram->nblocks; i++) {
        bitmap_free(ls->blocks[i].received);
        mapped_ram_block_clear(&ls->mapped[i]);
    }
    if (ls->place->free) {
        ls->place->free(ls->place_opaque);
    }
    g_free(ls);
}

void ram_loader_counters(RamLoader *ls, RamCounters *out)
{
    out->total_bytes = ls->c.total_bytes;
    out->scanned_pages = stat_get(&ls->c.scanned_pages);
    out->zero_pages = stat_get(&ls->c.zero_pages);
    out->normal_pages = stat_get(&ls->c.normal_pages);
    out->passes = ls->setup_done ? 1 : 0;
}

static RamLoadBlock *find_block(RamLoader *ls, const char *idstr)
{
    for (int i = 0; i < ls->ram->nblocks; i++) {
        if (!strcmp(ls->blocks[i].rb->idstr, idstr)) {
            return &ls->blocks[i];
        }
    }
    return NULL;
}

/* "'pc.ram'", or "none" when the VM has no RAM (cannot happen, but say so). */
static char *block_names(RamLoader *ls)
{
    GString *s = g_string_new(NULL);

    for (int i = 0; i < ls->ram->nblocks; i++) {
        g_string_append_printf(s, "%s'%s'", i ? ", " : "", ls->blocks[i].rb->idstr);
    }
    if (!s->len) {
        g_string_append(s, "none");
    }
    return g_string_free(s, FALSE);
}

/* A block name (u8 length, bytes), escaped for messages on failure. */
static bool read_idstr(QEMUFile *f, char name[256], Error **errp)
{
    uint8_t len = qemu_get_byte(f, "ram block name length");

    qemu_get_buffer(f, name, len, "ram block name");
    name[len] = '\0';
    if (!qemu_file_check(f, errp)) {
        return false;
    }
    if (len == 0 || strlen(name) != len) {
        error_setg(errp, "invalid block name of %u bytes", len);
        return false;
    }
    return true;
}

static bool prepare_block(RamLoader *ls, RamLoadBlock *b, Error **errp)
{
    b->received = bitmap_new(b->rb->used_length / RAM_PAGE_SIZE);
    return !ls->place->prepare_block ||
           ls->place->prepare_block(ls->place_opaque, b->index, errp);
}

/*
 * mapped-ram: block b's header, its bitmap, and (unless a lazy restore
 * takes them) its pages; then the stream goes on after its pages.
 */
static bool load_mapped_block(RamLoader *ls, QEMUFile *f, RamLoadBlock *b, Error **errp)
{
    MappedRamBlock *mb = &ls->mapped[b->index];
    const RAMBlock *rb = b->rb;
    uint64_t present;
    int mapped = 0;

    if (!mapped_ram_get_header(f, rb->idstr, rb->used_length, ls->file_size, mb, errp) ||
        !mapped_ram_read_bitmap(ls->mapped_fd, rb->idstr, mb, errp)) {
        return false;
    }
    present = bitmap_count_range(mb->bitmap, 0, mb->npages);
    if (ls->mapped_map && !ls->mapped_lazy) {
        mapped = mapped_ram_map_block(ls->ram->blocks[b->index], ls->mapped_fd, mb, errp);
        if (mapped < 0) {
            return false;
        }
    }
    if (mapped > 0) {
        /* Every page is the file's now, zero pages included (holes). */
        bitmap_set(b->received, 0, mb->npages);
        stat_add(&ls->c.normal_pages, present);
        stat_add(&ls->c.zero_pages, mb->npages - present);
    } else if (!ls->mapped_lazy) {
        if (!mapped_ram_load_eager(ls->mapped_fd, rb, mb, ls->mapped_threads, errp)) {
            return false;
        }
        /* The rest are zero pages: ram_loader_complete() places them. */
        bitmap_or(b->received, b->received, mb->bitmap, mb->npages);
        stat_add(&ls->c.normal_pages, present);
        stat_add(&ls->c.scanned_pages, present);
    }
    return qemu_file_seek(f, mb->pages_offset + rb->used_length, errp);
}

/* The block list: be64 total was read; then blocks until it is used up. */
static bool load_block_list(RamLoader *ls, QEMUFile *f, uint64_t total, Error **errp)
{
    if (ls->setup_done) {
        error_setg(errp, "a second block list");
        return false;
    }
    while (total) {
        char name[256];
        g_autofree char *safe = NULL, *have = NULL;
        uint64_t len;
        RamLoadBlock *b;

        if (!read_idstr(f, name, errp)) {
            error_prepend(errp, "block list: ");
            return false;
        }
        len = qemu_get_be64(f, "ram block length");
        if (!qemu_file_check(f, errp)) {
            return false;
        }
        safe = g_strescape(name, NULL);
        b = find_block(ls, name);
        if (!b) {
            have = block_names(ls);
            error_setg(errp, "block '%s' of the stream does not exist in this VM "
                       "(it has %s)", safe, have);
            return false;
        }
        if (b->listed) {
            error_setg(errp, "block '%s' is listed twice", safe);
            return false;
        }
        if (len != b->rb->used_length) {
            error_setg(errp, "block '%s' is %" PRIu64 " bytes in the stream but %" PRIu64
                       " bytes here: start this VM with the same memory size (-m) or "
                       "backend size", safe, len, b->rb->used_length);
            return false;
        }
        if (len > total) {
            error_setg(errp, "block sizes add up to more than the total of the list");
            return false;
        }
        if (ls->postcopy && ram_block_host_pages(b->rb) > 1) {
            uint64_t ps = qemu_get_be64(f, "ram block page size");

            if (!qemu_file_check(f, errp)) {
                return false;
            }
            if (ps != b->rb->page_size) {
                error_setg(errp, "block '%s' has 0x%" PRIx64 "-byte pages in the stream but "
                           "0x%zx-byte pages here: postcopy needs the same huge pages on "
                           "both sides", safe, ps, b->rb->page_size);
                return false;
            }
        }
        b->listed = true;
        total -= len;
        if (!prepare_block(ls, b, errp) ||
            (ls->mapped_fd >= 0 && !load_mapped_block(ls, f, b, errp))) {
            return false;
        }
    }
    ls->setup_done = true;
    return true;
}

/* The block a ZERO/PAGE record names, checked. */
static RamLoadBlock *record_block(RamLoader *ls, QEMUFile *f, uint64_t flags,
                                  Error **errp)
{
    char name[256];
    g_autofree char *safe = NULL;
    RamLoadBlock *b;

    if (flags & RAM_SAVE_FLAG_CONTINUE) {
        if (!ls->last) {
            error_setg(errp, "CONTINUE record with no block before it");
        }
        return ls->last;
    }
    if (!read_idstr(f, name, errp)) {
        return NULL;
    }
    b = find_block(ls, name);
    if (!b || !b->listed) {
        safe = g_strescape(name, NULL);
        error_setg(errp, "record for block '%s', which is not in the block list", safe);
        return NULL;
    }
    ls->last = b;
    return b;
}

static bool load_page(RamLoader *ls, QEMUFile *f, uint64_t addr, uint64_t flags,
                      Error **errp)
{
    RamLoadBlock *b = record_block(ls, f, flags, errp);
    bool zero = flags & RAM_SAVE_FLAG_ZERO;
    uint64_t page;

    if (!b) {
        return false;
    }
    if (ls->mapped_fd >= 0) {
        error_setg(errp, "a page record in a mapped-ram stream (its pages are in the "
                   "file, at their places)");
        return false;
    }
    if (addr >= b->rb->used_length) {
        error_setg(errp, "offset 0x%" PRIx64 " is beyond block '%s' (0x%" PRIx64 " bytes)",
                   addr, b->rb->idstr, b->rb->used_length);
        return false;
    }
    page = addr / RAM_PAGE_SIZE;
    if (zero) {
        uint8_t fill = qemu_get_byte(f, "zero page fill byte");

        if (!qemu_file_check(f, errp)) {
            return false;
        }
        if (fill != 0) {
            error_setg(errp, "zero page at offset 0x%" PRIx64 " of '%s' has fill byte "
                       "0x%02x (must be 0)", addr, b->rb->idstr, fill);
            return false;
        }
    } else if (!qemu_get_buffer(f, ls->place->buffer(ls->place_opaque, b->index, page),
                                RAM_PAGE_SIZE, "ram page")) {
        return qemu_file_check(f, errp);
    }
    /*
     * x-checksum: a page that fails its record's checksum fails the load
     * before it is placed (UFFDIO_COPY) or any vCPU runs (plain reads go
     * straight into RAM no vCPU has run on, and the VM never starts).
     */
    if (qemu_file_crc_on(f) && !qemu_get_crc(f, "a page record", errp)) {
        error_prepend(errp, "page at offset 0x%" PRIx64 " of '%s': ", addr, b->rb->idstr);
        return false;
    }
    /* A live migration may send a page again, zero after data. */
    if (!ls->place->place(ls->place_opaque, b->index, page, zero,
                          test_bit(page, b->received), errp)) {
        return false;
    }
    stat_add(zero ? &ls->c.zero_pages : &ls->c.normal_pages, 1);
    set_bit(page, b->received);
    stat_add(&ls->c.scanned_pages, 1);
    return true;
}

/* Exactly one kind per record; CONTINUE only on pages. */
static bool check_flags(RamLoader *ls, uint64_t flags, uint64_t at, Error **errp)
{
    uint64_t kind = flags & ~(uint64_t)RAM_SAVE_FLAG_CONTINUE;

    if (flags & ~(uint64_t)RAM_KNOWN_FLAGS) {
        error_setg(errp, "unknown flags 0x%" PRIx64 " in the record at stream offset %"
                   PRIu64, flags & ~(uint64_t)RAM_KNOWN_FLAGS, at);
        return false;
    }
    if (kind != RAM_SAVE_FLAG_ZERO && kind != RAM_SAVE_FLAG_PAGE &&
        kind != RAM_SAVE_FLAG_MEM_SIZE && kind != RAM_SAVE_FLAG_EOS) {
        error_setg(errp, "invalid flag combination 0x%" PRIx64 " in the record at stream "
                   "offset %" PRIu64, flags, at);
        return false;
    }
    if ((flags & RAM_SAVE_FLAG_CONTINUE) && kind != RAM_SAVE_FLAG_ZERO &&
        kind != RAM_SAVE_FLAG_PAGE) {
        error_setg(errp, "CONTINUE on a record that is not a page (flags 0x%" PRIx64 ")",
                   flags);
        return false;
    }
    if (!ls->setup_done && kind != RAM_SAVE_FLAG_MEM_SIZE) {
        error_setg(errp, "record with flags 0x%" PRIx64 " before the block list", flags);
        return false;
    }
    return true;
}

static bool ram_loader_load_state(QEMUFile *f, void *opaque, int version_id, Error **errp)
{
    RamLoader *ls = opaque;

    if (version_id != RAM_SECTION_VERSION) {
        error_setg(errp, "version %d is not supported (only %d)", version_id,
                   RAM_SECTION_VERSION);
        return false;
    }
    for (;;) {
        uint64_t at = qemu_file_pos(f);
        uint64_t v = qemu_get_be64(f, "ram record");
        uint64_t flags = v & RAM_FLAGS_MASK, addr = v & ~RAM_FLAGS_MASK;
        bool ok;

        if (!qemu_file_check(f, errp) || !check_flags(ls, flags, at, errp)) {
            return false;
        }
        switch (flags & ~(uint64_t)RAM_SAVE_FLAG_CONTINUE) {
        case RAM_SAVE_FLAG_EOS:
            return true;
        case RAM_SAVE_FLAG_MEM_SIZE:
            ok = load_block_list(ls, f, addr, errp);
            break;
        default:
            ok = load_page(ls, f, addr, flags, errp);
            break;
        }
        if (!ok) {
            return false;
        }
    }
}

/*
 * The loader only needs load_state, but START is accepted only for
 * iterative entries: give it a save_setup that refuses, to be one.
 */
static bool ram_load_no_save(QEMUFile *f, void *opaque, Error **errp)
{
    error_setg(errp, "this registry loads RAM; it cannot save it");
    return false;
}

static const SaveStateHandlers ram_load_iterative_handlers = {
    .save_setup = ram_load_no_save,
    .load_state = ram_loader_load_state,
};

bool ram_loader_register(RamLoader *ls, SaveStateRegistry *r, Error **errp)
{
    return savevm_register(r, RAM_SECTION_NAME, 0, RAM_SECTION_VERSION,
                           &ram_load_iterative_handlers, ls, errp) != NULL;
}

void ram_loader_set_postcopy(RamLoader *ls)
{
    ls->postcopy = true;
}

bool ram_loader_discard(RamLoader *ls, int b, uint64_t first, uint64_t n)
{
    RamLoadBlock *blk = &ls->blocks[b];
    uint64_t npages = blk->rb->used_length / RAM_PAGE_SIZE;

    if (!blk->received || first > npages || n > npages - first) {
        return false;
    }
    bitmap_clear(blk->received, first, n);
    return true;
}

const unsigned long *ram_loader_received(RamLoader *ls, int b)
{
    return ls->blocks[b].received;
}

void ram_loader_set_placement(RamLoader *ls, const RamPlacementOps *ops, void *opaque)
{
    if (ls->place->free) {
        ls->place->free(ls->place_opaque);
    }
    ls->place = ops;
    ls->place_opaque = opaque;
}

/* Pages with no record were unpopulated when saved: zero here too. */
static bool place_unsent(RamLoader *ls, RamLoadBlock *b, Error **errp)
{
    uint64_t npages = b->rb->used_length / RAM_PAGE_SIZE;

    for (size_t i = find_next_zero_bit(b->received, npages, 0); i < npages;
         i = find_next_zero_bit(b->received, npages, i + 1)) {
        if (!ls->place->place(ls->place_opaque, b->index, i, true, false, errp)) {
            return false;
        }
    }
    return true;
}

bool ram_loader_complete(RamLoader *ls, Error **errp)
{
    if (!ls->setup_done) {
        error_setg(errp, "the stream has no RAM (no 'ram' section with a block list)");
        return false;
    }
    for (int i = 0; i < ls->ram->nblocks; i++) {
        if (!ls->blocks[i].listed) {
            error_setg(errp, "block '%s' of this VM is not in the stream",
                       ls->blocks[i].rb->idstr);
            return false;
        }
    }
    /* A lazy restore places every page itself, once the guest runs. */
    for (int i = 0; i < ls->ram->nblocks && !ls->mapped_lazy; i++) {
        if (!place_unsent(ls, &ls->blocks[i], errp)) {
            return false;
        }
    }
    return true;
}
