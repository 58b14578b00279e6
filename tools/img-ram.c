/*
 * amber-img: the `ram` section.
 *
 * Each RAM section goes to the RAM loader of -incoming (migration/ram/
 * load.c), loading into scratch memory shaped like the stream's blocks;
 * then the same bytes are walked again here for what the loader does not
 * keep: pages by kind per block, pages sent twice, and the pages
 * extract-ram writes out.
 *
 * A mapped-ram stream (include/migration/mapped-ram.h) carries no page
 * records: each block's header in the block list says where its bitmap
 * and pages are, and the stream goes on after the pages.  The loader
 * checks the headers and bitmaps (mapped_ram_get_header/_read_bitmap) and
 * refuses any page record.  It runs in its lazy mode, which leaves the
 * pages in the file: reading them all into scratch memory at once would
 * take as much memory as the guest had, and the header checks have
 * already placed every page inside the file.  The bitmaps give the counts
 * (present pages are normal, the rest zero), and extract-ram reads the
 * present pages from their places.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "img.h"
#include "migration/mapped-ram.h"
#include "migration/ram.h"
#include "system/ram.h"
#include "util/bitmap.h"
#include "util/cutils.h"

#define PAGE                SAVEVM_PAGE_SIZE

/* RAM records (include/migration/ram.h): flags in the low bits of a be64. */
#define RAM_VERSION         RAM_SECTION_VERSION
#define RAM_FLAG_ZERO       RAM_SAVE_FLAG_ZERO
#define RAM_FLAG_MEM_SIZE   RAM_SAVE_FLAG_MEM_SIZE
#define RAM_FLAG_PAGE       RAM_SAVE_FLAG_PAGE
#define RAM_FLAG_EOS        RAM_SAVE_FLAG_EOS
#define RAM_FLAG_CONTINUE   RAM_SAVE_FLAG_CONTINUE
#define RAM_FLAGS_KNOWN     (RAM_FLAG_ZERO | RAM_FLAG_MEM_SIZE | RAM_FLAG_PAGE | \
                             RAM_FLAG_EOS | RAM_FLAG_CONTINUE)

/* Limits on what a hostile stream can make us allocate. */
#define IMG_MAX_BLOCKS      AMBER_MAX_RAM_BLOCKS
#define IMG_MAX_RAM         (1ULL << 40)

/* extract-ram writes runs of consecutive pages at most this long. */
#define EXTRACT_RUN_BYTES   (1u << 20)

#define PHYSMEM_NAME        "physmem.raw"

typedef struct ImgBlock {
    char idstr[256];
    uint64_t length;
    uint64_t zero_pages;
    uint64_t normal_pages;
    unsigned long *seen;            /* pages the stream has carried */
    int fd;                         /* extract-ram: its raw file, else -1 */
    RAMBlock rb;                    /* scratch memory the RAM loader fills */
    /* mapped-ram: where the file keeps its bitmap and pages */
    uint64_t bitmap_offset;
    uint64_t pages_offset;
} ImgBlock;

typedef struct Extract {
    char *dir;
    int phys_fd;
    uint64_t phys_size;
    RAMBlock map_blocks[AMBER_MAX_RAM_BLOCKS];
    RamBlockList map;               /* where each block sits in guest-physical space */
    GPtrArray *created;             /* paths, removed again if the stream is bad */
    uint8_t *run;                   /* consecutive pages waiting to be written */
    ImgBlock *run_block;
    uint64_t run_offset;
    size_t run_len;
} Extract;

struct ImgRam {
    Img *img;
    GPtrArray *blocks;              /* of ImgBlock *, in stream order */
    uint64_t total;
    unsigned sections;              /* START, PARTs, END seen */
    bool ended;
    ImgBlock *last_block;           /* for CONTINUE records */
    uint64_t list_len;              /* bytes of the block list after MEM_SIZE */
    uint64_t list_end;              /* file offset just past the block list */
    uint64_t base;                  /* file offset of the payload walked now */
    RamBlockList scratch;           /* the blocks, for the RAM loader */
    SaveStateRegistry *registry;
    RamLoader *loader;
    SaveStateEntry *entry;          /* the loader's "ram" entry */
    Extract *ex;
};

/* ---- extract-ram output --------------------------------------------------------- */

static bool write_all(int fd, const uint8_t *buf, size_t len, uint64_t off, const char *path,
                      Error **errp)
{
    if (!pwrite_full(fd, buf, len, off)) {
        error_setg_errno(errp, errno, "cannot write '%s'", path);
        return false;
    }
    return true;
}

static int create_output(Extract *ex, const char *name, uint64_t size, Error **errp)
{
    char *path = g_build_filename(ex->dir, name, NULL);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    if (fd < 0) {
        error_setg_errno(errp, errno, "cannot create '%s'", path);
        g_free(path);
        return -1;
    }
    g_ptr_array_add(ex->created, path);
    /* Sized up front and never written where the guest had zeroes: sparse. */
    if (ftruncate(fd, size) < 0) {
        error_setg_errno(errp, errno, "cannot size '%s' to %" PRIu64 " bytes", path, size);
        close(fd);
        return -1;
    }
    return fd;
}

/* A block's file name: its idstr, made safe to use as one path component. */
static char *block_file_name(const char *idstr)
{
    char *name = g_strdup(idstr);

    g_strdelimit(name, "/", '_');
    if (name[0] == '.') {
        name[0] = '_';
    }
    return name;
}

/*
 * Once the block list is known: one file per block, and the blocks laid
 * out in guest-physical space exactly as the machine maps them
 * (ram_map_guest: low RAM below 3 GiB, the rest from 4 GiB).
 */
static bool extract_open(ImgRam *ram, Error **errp)
{
    Extract *ex = ram->ex;
    g_autoptr(GHashTable) names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);

    if (ram->blocks->len > AMBER_MAX_RAM_BLOCKS) {
        error_setg(errp, "%u RAM blocks: a guest-physical dump can place at most %d",
                   ram->blocks->len, AMBER_MAX_RAM_BLOCKS);
        return false;
    }
    for (guint i = 0; i < ram->blocks->len; i++) {
        ImgBlock *b = ram->blocks->pdata[i];
        RAMBlock *rb = &ex->map_blocks[i];
        char *name = block_file_name(b->idstr);

        if (!strcmp(name, PHYSMEM_NAME) || g_hash_table_contains(names, name)) {
            error_setg(errp, "RAM block '%s' would be written to '%s', which is taken",
                       b->idstr, name);
            g_free(name);
            return false;
        }
        g_hash_table_add(names, name);
        b->fd = create_output(ex, name, b->length, errp);
        if (b->fd < 0) {
            return false;
        }
        g_strlcpy(rb->idstr, b->idstr, sizeof(rb->idstr));
        rb->used_length = rb->max_length = b->length;
        rb->page_size = PAGE;
        rb->fd = -1;
        if (!ram_map_guest(&ex->map, rb, errp)) {
            error_prepend(errp, "cannot lay out RAM block '%s' in guest memory: ", b->idstr);
            return false;
        }
    }
    for (int i = 0; i < ex->map.nregions; i++) {
        ex->phys_size = MAX(ex->phys_size, ex->map.regions[i].gpa + ex->map.regions[i].size);
    }
    ex->phys_fd = create_output(ex, PHYSMEM_NAME, ex->phys_size, errp);
    return ex->phys_fd >= 0;
}

/* Write the pending run to its block's file and to its guest-physical place. */
static bool extract_flush(ImgRam *ram, Error **errp)
{
    Extract *ex = ram->ex;
    ImgBlock *b = ex->run_block;
    uint64_t start = ex->run_offset, end = start + ex->run_len;
    g_autofree char *phys = NULL;

    if (!ex->run_len) {
        return true;
    }
    ex->run_len = 0;
    if (!write_all(b->fd, ex->run, end - start, start, b->idstr, errp)) {
        return false;
    }
    phys = g_build_filename(ex->dir, PHYSMEM_NAME, NULL);
    for (int i = 0; i < ex->map.nregions; i++) {
        const MemRegion *r = &ex->map.regions[i];
        uint64_t lo = MAX(start, r->offset), hi = MIN(end, r->offset + r->size);

        if (strcmp(r->block->idstr, b->idstr) || lo >= hi) {
            continue;
        }
        if (!write_all(ex->phys_fd, ex->run + (lo - start), hi - lo, r->gpa + (lo - r->offset),
                       phys, errp)) {
            return false;
        }
    }
    return true;
}

/* Read one page's data from the stream into the pending run. */
static bool extract_page(ImgRam *ram, QEMUFile *f, ImgBlock *b, uint64_t offset, Error **errp)
{
    Extract *ex = ram->ex;

    if (ex->run_len && (ex->run_block != b || ex->run_offset + ex->run_len != offset ||
                        ex->run_len == EXTRACT_RUN_BYTES)) {
        if (!extract_flush(ram, errp)) {
            return false;
        }
    }
    if (!ex->run_len) {
        ex->run_block = b;
        ex->run_offset = offset;
    }
    qemu_get_buffer(f, ex->run + ex->run_len, PAGE, "RAM page data");
    ex->run_len += PAGE;
    return qemu_file_check(f, errp);
}

/*
 * mapped-ram: the present pages of b, read from their places run by run
 * into buf (EXTRACT_RUN_BYTES), each checked against its checksum when the
 * image has them, and written out when extracting.
 */
static bool read_mapped(ImgRam *ram, ImgBlock *b, const MappedRamBlock *mb, uint8_t *buf,
                        Error **errp)
{
    Extract *ex = ram->ex;
    uint64_t n = mb->npages, most = EXTRACT_RUN_BYTES / PAGE;

    for (uint64_t i = find_next_bit(mb->bitmap, n, 0); i < n;) {
        uint64_t end = find_next_zero_bit(mb->bitmap, n, i);

        while (i < end) {
            uint64_t k = MIN(end - i, most);

            if (!mapped_ram_read_pages(ram->img->fd, b->idstr, mb, i, k, buf, errp)) {
                return false;
            }
            if (ex) {
                ex->run_block = b;
                ex->run_offset = i * PAGE;
                ex->run_len = k * PAGE;
                if (!extract_flush(ram, errp)) {
                    return false;
                }
            }
            i += k;
        }
        i = find_next_bit(mb->bitmap, n, end);
    }
    return true;
}

void img_ram_extract_to(ImgRam *ram, const char *dir)
{
    Extract *ex = g_new0(Extract, 1);

    ex->dir = g_strdup(dir);
    ex->phys_fd = -1;
    ex->created = g_ptr_array_new_with_free_func(g_free);
    ex->run = g_malloc(EXTRACT_RUN_BYTES);
    ram->ex = ex;
}

void img_ram_extract_done(ImgRam *ram, bool ok)
{
    Extract *ex = ram->ex;

    if (ex->phys_fd >= 0) {
        close(ex->phys_fd);
    }
    for (guint i = 0; i < ram->blocks->len; i++) {
        ImgBlock *b = ram->blocks->pdata[i];

        if (b->fd >= 0) {
            close(b->fd);
            b->fd = -1;
        }
    }
    for (guint i = 0; i < ex->created->len; i++) {
        if (!ok) {
            unlink(ex->created->pdata[i]);
        }
    }
    if (ok) {
        for (guint i = 0; i < ram->blocks->len; i++) {
            ImgBlock *b = ram->blocks->pdata[i];
            g_autofree char *name = block_file_name(b->idstr);

            printf("%s/%s: block '%s', %" PRIu64 " bytes\n", ex->dir, name, b->idstr,
                   b->length);
        }
        printf("%s/%s: guest-physical memory, %" PRIu64 " bytes\n", ex->dir, PHYSMEM_NAME,
               ex->phys_size);
    }
    g_ptr_array_free(ex->created, TRUE);
    g_free(ex->run);
    g_free(ex->dir);
    g_free(ex);
    ram->ex = NULL;
}

/* ---- the block list ------------------------------------------------------------- */

static ImgBlock *find_block(ImgRam *ram, const char *idstr)
{
    for (guint i = 0; i < ram->blocks->len; i++) {
        ImgBlock *b = ram->blocks->pdata[i];

        if (!strcmp(b->idstr, idstr)) {
            return b;
        }
    }
    return NULL;
}

/* u8 len, idstr (1..255 bytes, no NUL) into buf[256]. */
static bool read_idstr(QEMUFile *f, char *buf, const char *what, Error **errp)
{
    uint8_t len = qemu_get_byte(f, what);

    qemu_get_buffer(f, buf, len, what);
    buf[len] = '\0';
    if (!qemu_file_check(f, errp)) {
        return false;
    }
    if (len == 0 || strlen(buf) != len) {
        error_setg(errp, "invalid %s of %u bytes", what, len);
        return false;
    }
    return true;
}

/*
 * The block list opens the setup payload: be64 (total | MEM_SIZE), then
 * per block idstr and be64 length until the total is used up.  Read here
 * first because the RAM loader needs memory shaped like those blocks.
 * With mapped-ram each length is followed by the block's header, and the
 * list goes on after its pages: the header is checked by the code the
 * loader uses before its offsets are followed.
 */
static bool ram_read_blocks(ImgRam *ram, QEMUFile *f, Error **errp)
{
    uint64_t at = qemu_file_pos(f), list_start = at + 8;
    uint64_t word = qemu_get_be64(f, "RAM block list");
    uint64_t total = word & ~(uint64_t)(PAGE - 1), left = total;

    if (!qemu_file_check(f, errp)) {
        return false;
    }
    if ((word & (PAGE - 1)) != RAM_FLAG_MEM_SIZE) {
        error_setg(errp, "RAM record at offset %" PRIu64 ": the setup section must start "
                   "with the block list (MEM_SIZE), got flags 0x%x", at,
                   (unsigned)(word & (PAGE - 1)));
        return false;
    }
    if (total == 0 || total > IMG_MAX_RAM) {
        error_setg(errp, "RAM size %" PRIu64 " bytes is out of range (1 page to %llu GiB)",
                   total, IMG_MAX_RAM >> 30);
        return false;
    }
    while (left) {
        ImgBlock *b = g_new0(ImgBlock, 1);
        g_autofree char *safe = NULL;

        b->fd = -1;
        g_ptr_array_add(ram->blocks, b);
        if (!read_idstr(f, b->idstr, "RAM block name", errp)) {
            return false;
        }
        b->length = qemu_get_be64(f, "RAM block length");
        if (!qemu_file_check(f, errp)) {
            return false;
        }
        safe = g_strescape(b->idstr, NULL);
        if (ram->blocks->len > IMG_MAX_BLOCKS) {
            error_setg(errp, "more than %d RAM blocks", IMG_MAX_BLOCKS);
            return false;
        }
        if (find_block(ram, b->idstr) != b) {
            error_setg(errp, "RAM block '%s' is listed twice", safe);
            return false;
        }
        if (b->length == 0 || b->length % PAGE || b->length > left) {
            error_setg(errp, "RAM block '%s': invalid length %" PRIu64 " (expected a "
                       "multiple of %d, at most the %" PRIu64 " bytes left of the RAM size)",
                       safe, b->length, PAGE, left);
            return false;
        }
        left -= b->length;
        b->seen = bitmap_new(b->length / PAGE);
        if (ram->img->mapped_ram) {
            MappedRamBlock mb;

            if (!mapped_ram_get_header(f, safe, b->length, ram->img->size, &mb, errp) ||
                !qemu_file_seek(f, mb.pages_offset + b->length, errp)) {
                return false;
            }
        }
    }
    ram->total = total;
    ram->list_end = qemu_file_pos(f);
    ram->list_len = ram->list_end - list_start;
    return true;
}

/*
 * Scratch memory for the RAM loader: reserved, not committed, and given
 * back after every section (drop_page_cache), so a large image does not
 * have to fit in memory.  Fresh anonymous memory reads as zero, which is
 * what the loader assumes of a VM that never ran.
 */
static bool ram_loader_setup(ImgRam *ram, Error **errp)
{
    Img *img = ram->img;

    for (guint i = 0; i < ram->blocks->len; i++) {
        ImgBlock *b = ram->blocks->pdata[i];
        void *p = mmap(NULL, b->length, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

        if (p == MAP_FAILED) {
            error_setg_errno(errp, errno, "cannot reserve %" PRIu64 " bytes of memory for "
                             "RAM block '%s'", b->length, b->idstr);
            return false;
        }
        b->rb.host = p;
        g_strlcpy(b->rb.idstr, b->idstr, sizeof(b->rb.idstr));
        b->rb.used_length = b->rb.max_length = b->length;
        b->rb.page_size = PAGE;
        b->rb.fd = -1;
        ram->scratch.blocks[ram->scratch.nblocks++] = &b->rb;
    }
    ram->loader = ram_loader_new_memcpy(&ram->scratch);
    ram->registry = savevm_registry_new();
    if (!ram_loader_register(ram->loader, ram->registry, errp)) {
        return false;
    }
    ram->entry = savevm_find(ram->registry, RAM_SECTION_NAME, 0);
    /* Lazy: the bitmaps say all the counts need; the pages stay in the file. */
    return !img->mapped_ram || ram_loader_set_mapped(ram->loader, img->fd, 1, true, errp);
}

static void drop_page_cache(ImgRam *ram)
{
    for (guint i = 0; i < ram->blocks->len; i++) {
        ImgBlock *b = ram->blocks->pdata[i];

        if (b->rb.host) {
            madvise(b->rb.host, b->length, MADV_DONTNEED);
        }
    }
}

/*
 * The first byte of [from, to) of the image that is not zero, or to.  The
 * file's holes are zero without looking (reading one through the mapping
 * faults in pages of zeros, up to a MiB before a block's pages); its data
 * is compared a page at a time, and only a page that differs byte by byte.
 */
static uint64_t img_first_nonzero(Img *img, uint64_t from, uint64_t to)
{
    static const uint8_t zeros[PAGE];
    uint64_t npages = (to - from + PAGE - 1) / PAGE;
    g_autofree unsigned long *data = bitmap_new(MAX(npages, 1));

    if (from >= to) {
        return to;
    }
    if (!file_data_pages(img->fd, from, PAGE, npages, data)) {
        bitmap_set(data, 0, npages);
    }
    for (uint64_t i = find_next_bit(data, npages, 0); i < npages;
         i = find_next_bit(data, npages, i + 1)) {
        uint64_t lo = from + i * PAGE, hi = MIN(lo + PAGE, to);

        if (memcmp(img->data + lo, zeros, hi - lo)) {
            while (!img->data[lo]) {
                lo++;
            }
            return lo;
        }
    }
    return to;
}

/*
 * verify, x-checksum: every present page against its checksum, and every
 * byte no loader reads (the gap after the checksum table, the holes) zero,
 * so that no byte of the image can change unnoticed.
 */
static bool verify_mapped(ImgRam *ram, ImgBlock *b, const MappedRamBlock *mb, Error **errp)
{
    uint64_t gap = mb->bitmap_offset + mapped_ram_bitmap_bytes(mb->npages) +
                   mapped_ram_sums_bytes(mb->npages);
    g_autofree uint8_t *buf = g_malloc(EXTRACT_RUN_BYTES);
    uint64_t bad = 0;
    int r;

    gap = img_first_nonzero(ram->img, gap, mb->pages_offset);
    if (gap < mb->pages_offset) {
        error_setg(errp, "RAM block '%s': byte %" PRIu64 " between its checksum table "
                   "and its pages is not zero: the image is corrupt", b->idstr, gap);
        return false;
    }
    if (!read_mapped(ram, b, mb, buf, errp)) {
        return false;
    }
    r = mapped_ram_holes_are_zero(ram->img->fd, mb, &bad, errp);
    if (r == 0) {
        error_setg(errp, "RAM block '%s': page %" PRIu64 " is a hole in the bitmap but holds "
                   "data in the file: the image is corrupt", b->idstr, bad);
    }
    return r > 0;
}

/*
 * mapped-ram, once the loader has read the block list: the pages each
 * bitmap marks are in the file (normal), the rest are zero.
 */
static bool ram_mapped_blocks(ImgRam *ram, Error **errp)
{
    for (guint i = 0; i < ram->blocks->len; i++) {
        ImgBlock *b = ram->blocks->pdata[i];
        const MappedRamBlock *mb = ram_loader_mapped_block(ram->loader, i);

        if (!mb || !mb->bitmap) {
            error_setg(errp, "RAM block '%s' has no mapped-ram header", b->idstr);
            return false;
        }
        b->bitmap_offset = mb->bitmap_offset;
        b->pages_offset = mb->pages_offset;
        b->normal_pages = bitmap_count_range(mb->bitmap, 0, mb->npages);
        b->zero_pages = mb->npages - b->normal_pages;
        bitmap_set(b->seen, 0, mb->npages);
        if (ram->ex && !read_mapped(ram, b, mb, ram->ex->run, errp)) {
            return false;
        }
        if (ram->img->verify && mb->sums && !ram->ex && !verify_mapped(ram, b, mb, errp)) {
            return false;
        }
    }
    return true;
}

/* ---- page records ----------------------------------------------------------------- */

static bool ram_read_page(ImgRam *ram, QEMUFile *f, uint64_t at, uint64_t offset,
                          unsigned flags, Error **errp)
{
    char idstr[256];
    ImgBlock *b = ram->last_block;
    uint64_t page;

    if (flags & RAM_FLAG_CONTINUE) {
        if (!b) {
            error_setg(errp, "RAM record at offset %" PRIu64 ": CONTINUE with no earlier "
                       "block", at);
            return false;
        }
    } else {
        if (!read_idstr(f, idstr, "RAM block name", errp)) {
            return false;
        }
        b = find_block(ram, idstr);
        if (!b) {
            g_autofree char *safe = g_strescape(idstr, NULL);

            error_setg(errp, "RAM record at offset %" PRIu64 ": unknown RAM block '%s'",
                       at, safe);
            return false;
        }
        ram->last_block = b;
    }
    if (offset > b->length - PAGE) {
        error_setg(errp, "RAM record at offset %" PRIu64 ": page offset 0x%" PRIx64
                   " lies outside block '%s' (0x%" PRIx64 " bytes)", at, offset, b->idstr,
                   b->length);
        return false;
    }
    /* -incoming would take the later copy; a saved VM has no reason to repeat one. */
    page = offset / PAGE;
    if (test_bit(page, b->seen)) {
        error_setg(errp, "RAM record at offset %" PRIu64 ": page 0x%" PRIx64 " of block '%s' "
                   "appears twice", at, offset, b->idstr);
        return false;
    }
    set_bit(page, b->seen);
    if (flags & RAM_FLAG_ZERO) {
        qemu_file_skip(f, 1, "zero page fill byte");
        b->zero_pages++;
    } else {
        b->normal_pages++;
        if (ram->ex && !extract_page(ram, f, b, offset, errp)) {
            return false;
        }
        if (!ram->ex) {
            qemu_file_skip(f, PAGE, "RAM page data");
        }
    }
    /* x-checksum: the record's checksum, which the loader has checked. */
    if (ram->img->checksum) {
        qemu_file_skip(f, 4, "page record checksum");
    }
    return qemu_file_check(f, errp);
}

/*
 * Walk a RAM payload the loader has accepted, for the accounting.  The
 * checks repeated here (flags, blocks, offsets) keep this walk safe on its
 * own.
 */
static bool ram_walk_records(ImgRam *ram, QEMUFile *f, bool setup, Error **errp)
{
    for (bool first = true;; first = false) {
        uint64_t at = ram->base + qemu_file_pos(f);
        uint64_t word = qemu_get_be64(f, "RAM record header");
        uint64_t addr = word & ~(uint64_t)(PAGE - 1);
        unsigned flags = word & (PAGE - 1);
        unsigned kind = flags & (RAM_FLAG_ZERO | RAM_FLAG_PAGE);

        if (!qemu_file_check(f, errp)) {
            return false;
        }
        if (flags & ~RAM_FLAGS_KNOWN) {
            error_setg(errp, "RAM record at offset %" PRIu64 ": unknown flags 0x%x", at,
                       flags & ~RAM_FLAGS_KNOWN);
            return false;
        }
        if (flags == RAM_FLAG_EOS && !addr) {
            return true;
        }
        if (flags == RAM_FLAG_MEM_SIZE && setup && first) {
            /* mapped-ram: the list spans the blocks' pages; step over them, unread. */
            if (ram->img->mapped_ram) {
                if (!qemu_file_seek(f, ram->list_end - ram->base, errp)) {
                    return false;
                }
            } else {
                qemu_file_skip(f, ram->list_len, "RAM block list");
            }
            continue;
        }
        if ((kind != RAM_FLAG_ZERO && kind != RAM_FLAG_PAGE) ||
            (flags & ~(kind | RAM_FLAG_CONTINUE))) {
            error_setg(errp, "RAM record at offset %" PRIu64 ": flags 0x%x, expected a "
                       "ZERO (0x02) or PAGE (0x08) record", at, flags);
            return false;
        }
        if (ram->img->mapped_ram) {
            /* The loader refuses these first; this walk does not rely on it. */
            error_setg(errp, "RAM record at offset %" PRIu64 ": a page record in a "
                       "mapped-ram stream", at);
            return false;
        }
        if (!ram_read_page(ram, f, at, addr, flags, errp)) {
            return false;
        }
    }
}

/* Walk [start, end) of the file, which the loader has just accepted. */
static bool ram_walk(ImgRam *ram, uint64_t start, uint64_t end, bool setup, Error **errp)
{
    Img *img = ram->img;
    QEMUFile *walk = qemu_file_new_mem_input(img->data + start, end - start, img->path);
    bool ok;

    ram->base = start;
    ok = ram_walk_records(ram, walk, setup, errp) && (!ram->ex || extract_flush(ram, errp));
    qemu_fclose(walk);
    return ok && (!setup || !img->mapped_ram || ram_mapped_blocks(ram, errp));
}

/* Before the loader sees the setup payload at start (near the file's start). */
static bool ram_setup(ImgRam *ram, uint64_t start, Error **errp)
{
    Img *img = ram->img;
    QEMUFile *walk = qemu_file_new_mem_input(img->data, img->size, img->path);
    bool ok;

    /* Offsets in messages are the file's: read from 0 and step to start. */
    ram->base = 0;
    ok = qemu_file_skip(walk, start, "RAM setup") && ram_read_blocks(ram, walk, errp) &&
         ram_loader_setup(ram, errp) && (!ram->ex || extract_open(ram, errp));
    qemu_fclose(walk);
    return ok;
}

static bool ram_load(QEMUFile *f, void *opaque, int version_id, Error **errp)
{
    ImgRam *ram = opaque;
    bool setup = ram->sections++ == 0;
    ImgSection *s = img_section_begin(ram->img, f, RAM_SECTION_NAME, 0, setup);
    uint64_t start = qemu_file_pos(f);

    if (setup && !ram_setup(ram, start, errp)) {
        return false;
    }
    /* The checks -incoming makes, on the stream itself. */
    if (!ram->entry->ops->load_state(f, ram->entry->opaque, version_id, errp)) {
        return false;
    }
    drop_page_cache(ram);
    img_section_end(s, f);
    if (!ram_walk(ram, start, qemu_file_pos(f), setup, errp)) {
        return false;
    }
    if (s->type == QEMU_VM_SECTION_END) {
        ram->ended = true;
    }
    return true;
}

/* START is accepted only for entries that can save: this one never does. */
static bool no_setup(QEMUFile *f, void *opaque, Error **errp)
{
    error_setg(errp, "amber-img does not write streams");
    return false;
}

static const SaveStateHandlers ram_ops = {
    .save_setup = no_setup,
    .load_state = ram_load,
};

/* ---- the rest of amber-img's view ---------------------------------------------- */

ImgRam *img_ram_new(Img *img)
{
    ImgRam *ram = g_new0(ImgRam, 1);

    ram->img = img;
    ram->blocks = g_ptr_array_new();
    return ram;
}

void img_ram_free(ImgRam *ram)
{
    if (ram->registry) {
        savevm_registry_free(ram->registry);
    }
    ram_loader_free(ram->loader);
    for (guint i = 0; i < ram->blocks->len; i++) {
        ImgBlock *b = ram->blocks->pdata[i];

        if (b->fd >= 0) {
            close(b->fd);
        }
        if (b->rb.host) {
            munmap(b->rb.host, b->length);
        }
        bitmap_free(b->seen);
        g_free(b);
    }
    g_ptr_array_free(ram->blocks, TRUE);
    g_free(ram);
}

bool img_ram_register(ImgRam *ram, SaveStateRegistry *r, Error **errp)
{
    return savevm_register(r, RAM_SECTION_NAME, 0, RAM_VERSION, &ram_ops, ram, errp) != NULL;
}

bool img_ram_ended(ImgRam *ram)
{
    return ram->ended;
}

bool img_ram_check_end(ImgRam *ram, Error **errp)
{
    if (!ram->sections) {
        error_setg(errp, "the stream has no RAM section");
        return false;
    }
    if (!ram->ended) {
        error_setg(errp, "the RAM section never ends (no END section before EOF)");
        return false;
    }
    return ram_loader_complete(ram->loader, errp);
}

static uint64_t block_absent(const ImgBlock *b)
{
    return b->length / PAGE - b->zero_pages - b->normal_pages;
}

void img_ram_info_text(ImgRam *ram)
{
    bool mapped = ram->img->mapped_ram;

    printf("\nRAM: %" PRIu64 " bytes in %u block(s)\n  %-16s %14s %10s %10s %10s",
           ram->total, ram->blocks->len, "block", "bytes", "zero", "normal", "absent");
    if (mapped) {
        printf(" %14s %14s", "bitmap at", "pages at");
    }
    printf("\n");
    for (guint i = 0; i < ram->blocks->len; i++) {
        ImgBlock *b = ram->blocks->pdata[i];
        g_autofree char *safe = g_strescape(b->idstr, NULL);

        printf("  %-16s %14" PRIu64 " %10" PRIu64 " %10" PRIu64 " %10" PRIu64, safe,
               b->length, b->zero_pages, b->normal_pages, block_absent(b));
        if (mapped) {
            printf(" %14" PRIu64 " %14" PRIu64, b->bitmap_offset, b->pages_offset);
        }
        printf("\n");
    }
}

void img_ram_info_json(ImgRam *ram, JsonBuilder *b)
{
    json_builder_set_member_name(b, "ram");
    json_builder_begin_object(b);
    img_json_int(b, "total", ram->total);
    json_builder_set_member_name(b, "blocks");
    json_builder_begin_array(b);
    for (guint i = 0; i < ram->blocks->len; i++) {
        ImgBlock *blk = ram->blocks->pdata[i];

        json_builder_begin_object(b);
        img_json_str(b, "name", blk->idstr);
        img_json_int(b, "size", blk->length);
        json_builder_set_member_name(b, "pages");
        json_builder_begin_object(b);
        img_json_int(b, "zero", blk->zero_pages);
        img_json_int(b, "normal", blk->normal_pages);
        img_json_int(b, "absent", block_absent(blk));
        json_builder_end_object(b);
        if (ram->img->mapped_ram) {
            json_builder_set_member_name(b, "mapped");
            json_builder_begin_object(b);
            img_json_int(b, "bitmap_offset", blk->bitmap_offset);
            img_json_int(b, "pages_offset", blk->pages_offset);
            json_builder_end_object(b);
        }
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
}
