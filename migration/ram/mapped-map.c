/*
 * Zero-copy restore (x-zero-copy-restore): a block's pages in a mapped-ram
 * image become its memory.  The image's page region is mapped privately
 * over the block, so a page is read from the page cache the first time
 * the guest touches it, with no copy and no fault handler of ours, and a
 * page the guest writes becomes a private copy; the file never changes.
 * Every restore of one image shares its page cache.
 *
 * Only a block of private anonymous memory (memory-backend-ram) is
 * mapped: shared memory (memfd, a shared file) would stop being the
 * memory others share, and huge pages need huge-page files.  The block
 * then is a private file mapping (fd, fd_offset, !shared), which is what
 * the savers already know: its data is what the file holds plus what the
 * page tables hold, so a later save reads both.
 *
 * A page the bitmap leaves clear is zero; the layout leaves it a hole, so
 * the mapping reads zero there too.  A file where such a page holds data
 * (a reused file, another writer) cannot be mapped as it is: the block is
 * then loaded the ordinary way.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <unistd.h>
#include <sys/mman.h>

#include <glib.h>

#include "migration/mapped-ram.h"
#include "migration/ram.h"
#include "util/bitmap.h"
#include "util/cutils.h"

/*
 * Only the clear pages inside the file's data ranges are read and looked
 * at: a hole needs no read.
 */
int mapped_ram_holes_are_zero(int fd, const MappedRamBlock *mb, uint64_t *bad, Error **errp)
{
    g_autofree unsigned long *data = bitmap_new(mb->npages);
    g_autofree uint8_t *buf = g_malloc(MAPPED_RAM_PAGE_SIZE);

    if (!file_data_pages(fd, mb->pages_offset, MAPPED_RAM_PAGE_SIZE, mb->npages, data)) {
        error_setg_errno(errp, errno, "cannot find the data of the image");
        return -1;
    }
    for (uint64_t p = find_next_bit(data, mb->npages, 0); p < mb->npages;
         p = find_next_bit(data, mb->npages, p + 1)) {
        uint64_t off = mb->pages_offset + p * MAPPED_RAM_PAGE_SIZE;
        ssize_t n;

        if (test_bit(p, mb->bitmap)) {
            continue;
        }
        n = pread_full(fd, buf, MAPPED_RAM_PAGE_SIZE, off);

        if (n != MAPPED_RAM_PAGE_SIZE) {
            if (n < 0) {
                error_setg_errno(errp, errno, "cannot read the image at offset %" PRIu64, off);
            } else {
                error_setg(errp, "the image ends inside the page at offset %" PRIu64, off);
            }
            return -1;
        }
        if (!buffer_is_zero(buf, MAPPED_RAM_PAGE_SIZE)) {
            *bad = p;
            return 0;
        }
    }
    return 1;
}

int mapped_ram_map_block(RAMBlock *rb, int fd, const MappedRamBlock *mb, Error **errp)
{
    uint64_t bad = 0;
    int dfd, r;

    if (mb->sums) {
        /* Pages mapped unread could not be checked before the guest sees them. */
        warn_report("RAM block '%s': the image has checksums (x-checksum), which only a "
                    "read can check: the block is read and checked, not mapped", rb->idstr);
        return 0;
    }
    if (rb->fd >= 0 || rb->shared || rb->hugetlbfs || rb->kind != RAM_BACKEND_RAM ||
        rb->page_size != MAPPED_RAM_PAGE_SIZE) {
        error_setg(errp, "x-zero-copy-restore maps the image as the guest's private memory, "
                   "which RAM block '%s' (%s%s) cannot be: it needs memory-backend-ram",
                   rb->idstr, ram_backend_kind_name(rb->kind),
                   rb->shared ? ", share=on" : "");
        return -1;
    }
    r = mapped_ram_holes_are_zero(fd, mb, &bad, errp);
    if (r <= 0) {
        if (r == 0) {
            warn_report("RAM block '%s': page 0x%" PRIx64 " is zero in the image's bitmap but "
                        "not in the file: the block is read, not mapped", rb->idstr,
                        (uint64_t)(bad * MAPPED_RAM_PAGE_SIZE));
        }
        return r;
    }
    dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dfd < 0) {
        error_setg_errno(errp, errno, "RAM block '%s': cannot keep the image open", rb->idstr);
        return -1;
    }
    /* No vCPU has run: the old pages go, the accelerator follows the new mapping. */
    if (mmap(rb->host, rb->used_length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, dfd,
             mb->pages_offset) == MAP_FAILED) {
        error_setg_errno(errp, errno, "RAM block '%s': cannot map the image's pages",
                         rb->idstr);
        close(dfd);
        return -1;
    }
    rb->fd = dfd;
    rb->fd_offset = mb->pages_offset;
    rb->kind = RAM_BACKEND_FILE;
    return 1;
}
