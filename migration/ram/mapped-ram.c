/*
 * mapped-ram, the format and its readers (see include/migration/mapped-ram.h).
 *
 * The file is hostile like any stream: every offset a header gives is
 * checked against the header's own position and the file's size before a
 * byte is read from it, and a bitmap with bits past the block's last page
 * is refused, so a vCPU can never be handed a page from outside its
 * block's region.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <glib.h>

#include "migration/mapped-ram.h"
#include "util/bitmap.h"
#include "util/crc32c.h"
#include "util/cutils.h"

/* The most bytes one read of an eager load asks for. */
#define EAGER_READ_BYTES    (4ULL << 20)

uint64_t mapped_ram_bitmap_bytes(uint64_t npages)
{
    return BITS_TO_LONGS(npages) * sizeof(unsigned long);
}

uint64_t mapped_ram_sums_bytes(uint64_t npages)
{
    return sizeof(uint32_t) * (1 + npages);
}

uint64_t mapped_ram_pages_offset(uint64_t at, uint64_t npages, bool summed)
{
    uint64_t end = at + MAPPED_RAM_HEADER_SIZE + mapped_ram_bitmap_bytes(npages) +
                   (summed ? mapped_ram_sums_bytes(npages) : 0);

    return (end + MAPPED_RAM_ALIGN - 1) / MAPPED_RAM_ALIGN * MAPPED_RAM_ALIGN;
}

void mapped_ram_block_clear(MappedRamBlock *mb)
{
    bitmap_free(mb->bitmap);
    g_free(mb->sums);
    mb->bitmap = NULL;
    mb->sums = NULL;
}

bool mapped_ram_channel_ok(int fd, const char *what, Error **errp)
{
    struct stat st;

    if (fstat(fd, &st) < 0) {
        error_setg_errno(errp, errno, "mapped-ram: cannot examine '%s'", what);
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        error_setg(errp, "mapped-ram gives every page a fixed place in a file: it needs a "
                   "channel that can seek (file:, or fd: of a regular file), and '%s' is "
                   "not one", what);
        return false;
    }
    return true;
}

bool mapped_ram_direct_ok(int fd, const char *path, Error **errp)
{
    g_autofree char *self = g_strdup_printf("/proc/self/fd/%d", fd);
    int dfd = open(self, O_WRONLY | O_DIRECT | O_CLOEXEC);

    if (dfd < 0) {
        error_setg_errno(errp, errno, "direct-io: '%s' cannot be written with O_DIRECT",
                         path ? path : self);
        return false;
    }
    close(dfd);
    return true;
}

/* ---- headers and bitmaps ----------------------------------------------------------- */

bool mapped_ram_get_header(QEMUFile *f, const char *idstr, uint64_t used_length,
                           uint64_t file_size, MappedRamBlock *mb, Error **errp)
{
    int64_t at = qemu_file_tell(f, errp);
    uint32_t version = qemu_get_be32(f, "mapped-ram header version");
    uint64_t page_size = qemu_get_be64(f, "mapped-ram header page size");
    uint64_t bitmap_end;

    mb->bitmap_offset = qemu_get_be64(f, "mapped-ram header bitmap offset");
    mb->pages_offset = qemu_get_be64(f, "mapped-ram header pages offset");
    mb->npages = used_length / MAPPED_RAM_PAGE_SIZE;
    mb->bitmap = NULL;
    mb->sums = NULL;
    mb->summed = qemu_file_crc_on(f);
    if (at < 0 || !qemu_file_check(f, errp)) {
        return false;
    }
    if (version != MAPPED_RAM_VERSION) {
        error_setg(errp, "block '%s': mapped-ram header version %u (only %d is known)",
                   idstr, version, MAPPED_RAM_VERSION);
        return false;
    }
    if (page_size != MAPPED_RAM_PAGE_SIZE) {
        error_setg(errp, "block '%s': mapped-ram page size %" PRIu64 " (this VM's is %llu)",
                   idstr, page_size, MAPPED_RAM_PAGE_SIZE);
        return false;
    }
    bitmap_end = mb->bitmap_offset + mapped_ram_bitmap_bytes(mb->npages) +
                 (mb->summed ? mapped_ram_sums_bytes(mb->npages) : 0);
    if (mb->bitmap_offset != (uint64_t)at + MAPPED_RAM_HEADER_SIZE) {
        error_setg(errp, "block '%s': mapped-ram bitmap at offset %" PRIu64 ", not just "
                   "after its header (%" PRIu64 ")", idstr, mb->bitmap_offset,
                   (uint64_t)at + MAPPED_RAM_HEADER_SIZE);
        return false;
    }
    if (mb->pages_offset < bitmap_end || mb->pages_offset % MAPPED_RAM_PAGE_SIZE ||
        mb->pages_offset > file_size || used_length > file_size - mb->pages_offset) {
        error_setg(errp, "block '%s': mapped-ram pages at offset %" PRIu64 " (%" PRIu64
                   " bytes) do not fit between its bitmap (ending at %" PRIu64 ") and the "
                   "end of the file (%" PRIu64 " bytes)", idstr, mb->pages_offset,
                   used_length, bitmap_end, file_size);
        return false;
    }
    return true;
}

static bool pread_all(int fd, void *buf, uint64_t len, uint64_t off, const char *idstr,
                      const char *what, Error **errp)
{
    ssize_t n = pread_full(fd, buf, len, off);

    if (n < 0) {
        error_setg_errno(errp, errno, "block '%s': cannot read its %s at offset %" PRIu64,
                         idstr, what, off);
        return false;
    }
    if ((uint64_t)n < len) {
        error_setg(errp, "block '%s': the file ends at offset %" PRIu64 ", inside its %s",
                   idstr, off + n, what);
        return false;
    }
    return true;
}

/*
 * The checksum table after the bitmap: the bitmap's own CRC first (over
 * its bytes as in the file), then a page's CRC per page, 0 for a page the
 * bitmap says is a hole, so that every byte of the table is checked.
 */
static bool read_sums(int fd, const char *idstr, MappedRamBlock *mb, uint32_t bitmap_sum,
                      Error **errp)
{
    uint64_t at = mb->bitmap_offset + mapped_ram_bitmap_bytes(mb->npages);
    g_autofree uint32_t *t = g_new(uint32_t, mb->npages);
    uint32_t stored;

    if (!pread_all(fd, &stored, sizeof(stored), at, idstr, "checksum table", errp) ||
        !pread_all(fd, t, mb->npages * sizeof(*t), at + sizeof(stored), idstr,
                   "checksum table", errp)) {
        return false;
    }
    if (bitmap_sum != GUINT32_FROM_LE(stored)) {
        error_setg(errp, "block '%s': the mapped-ram page bitmap fails its checksum: the "
                   "image is corrupt", idstr);
        return false;
    }
    for (uint64_t i = 0; i < mb->npages; i++) {
        t[i] = GUINT32_FROM_LE(t[i]);
        if (t[i] && !test_bit(i, mb->bitmap)) {
            error_setg(errp, "block '%s': the checksum table has an entry for page %"
                       PRIu64 ", which the bitmap says is a hole: the image is corrupt",
                       idstr, i);
            return false;
        }
    }
    mb->sums = g_steal_pointer(&t);
    return true;
}

bool mapped_ram_read_bitmap(int fd, const char *idstr, MappedRamBlock *mb, Error **errp)
{
    uint64_t bytes = mapped_ram_bitmap_bytes(mb->npages);
    uint64_t nbits = bytes * 8;
    uint32_t sum;

    mb->bitmap = bitmap_new(nbits);
    if (!pread_all(fd, mb->bitmap, bytes, mb->bitmap_offset, idstr, "page bitmap", errp)) {
        return false;
    }
    sum = mb->summed ? crc32c(0, mb->bitmap, bytes) : 0;
    for (size_t i = 0; i < BITS_TO_LONGS(nbits); i++) {
        mb->bitmap[i] = GUINT64_FROM_LE(mb->bitmap[i]);
    }
    if (find_next_bit(mb->bitmap, nbits, mb->npages) < nbits) {
        error_setg(errp, "block '%s': the mapped-ram bitmap marks pages past the block's "
                   "%" PRIu64, idstr, mb->npages);
        return false;
    }
    return !mb->summed || read_sums(fd, idstr, mb, sum, errp);
}

bool mapped_ram_read_pages(int fd, const char *idstr, const MappedRamBlock *mb,
                           uint64_t first, uint64_t n, uint8_t *buf, Error **errp)
{
    if (!pread_all(fd, buf, n * MAPPED_RAM_PAGE_SIZE,
                   mb->pages_offset + first * MAPPED_RAM_PAGE_SIZE, idstr, "pages", errp)) {
        return false;
    }
    for (uint64_t i = 0; mb->sums && i < n; i++) {
        uint32_t sum = crc32c(0, buf + i * MAPPED_RAM_PAGE_SIZE, MAPPED_RAM_PAGE_SIZE);

        if (sum != mb->sums[first + i]) {
            error_setg(errp, "block '%s': page %" PRIu64 " (file offset %" PRIu64 ") fails "
                       "its checksum (stored 0x%08x, computed 0x%08x): the image is corrupt",
                       idstr, first + i,
                       (uint64_t)(mb->pages_offset + (first + i) * MAPPED_RAM_PAGE_SIZE),
                       mb->sums[first + i], sum);
            return false;
        }
    }
    return true;
}

/* ---- eager load ------------------------------------------------------------------------ */

typedef struct EagerLoad {
    int fd;
    const RAMBlock *rb;
    const MappedRamBlock *mb;
    uint64_t next;                  /* atomic: the next page to claim a stripe from */
    uint64_t stripe;                /* pages per claim */
    pthread_mutex_t lock;
    Error *err;                     /* the first failure */
} EagerLoad;

/*
 * Threads claim stripes in turn, so each reads nearby runs and all finish
 * together whatever the bitmap's density.
 */
static gpointer eager_thread(gpointer opaque)
{
    EagerLoad *e = opaque;

    for (;;) {
        uint64_t first = __atomic_fetch_add(&e->next, e->stripe, __ATOMIC_RELAXED);
        uint64_t end = MIN(first + e->stripe, e->mb->npages);
        Error *err = NULL;

        if (first >= e->mb->npages || __atomic_load_n(&e->err, __ATOMIC_RELAXED)) {
            return NULL;
        }
        for (uint64_t i = find_next_bit(e->mb->bitmap, end, first); i < end;) {
            uint64_t run_end = find_next_zero_bit(e->mb->bitmap, end, i);

            if (!mapped_ram_read_pages(e->fd, e->rb->idstr, e->mb, i, run_end - i,
                                       e->rb->host + i * MAPPED_RAM_PAGE_SIZE, &err)) {
                pthread_mutex_lock(&e->lock);
                if (!e->err) {
                    __atomic_store_n(&e->err, err, __ATOMIC_RELAXED);
                } else {
                    error_free(err);
                }
                pthread_mutex_unlock(&e->lock);
                return NULL;
            }
            i = find_next_bit(e->mb->bitmap, end, run_end);
        }
    }
}

bool mapped_ram_load_eager(int fd, const RAMBlock *rb, const MappedRamBlock *mb,
                           int threads, Error **errp)
{
    EagerLoad e = {
        .fd = fd, .rb = rb, .mb = mb,
        .stripe = EAGER_READ_BYTES / MAPPED_RAM_PAGE_SIZE,
    };
    GThread *t[MAPPED_RAM_MAX_THREADS];
    int n = CLAMP(threads, 1, MAPPED_RAM_MAX_THREADS);

    pthread_mutex_init(&e.lock, NULL);
    for (int i = 1; i < n; i++) {
        t[i] = g_thread_new("mapped-load", eager_thread, &e);
    }
    eager_thread(&e);
    for (int i = 1; i < n; i++) {
        g_thread_join(t[i]);
    }
    pthread_mutex_destroy(&e.lock);
    if (e.err) {
        error_propagate(errp, e.err);
        return false;
    }
    return true;
}
