/*
 * Which pages of a RAM block hold data, asked of the kernel rather than
 * read: SEEK_DATA/SEEK_HOLE on the backing file (memfd, file: that also
 * finds pages swapped out or not mapped here) and PAGEMAP_SCAN on our own
 * mapping (present or swapped pages, less those mapped to the shared zero
 * page).  A page the kernel never populated reads as zero, so a saver can
 * write it as ZERO, or skip it, without touching it: a fresh 4 GiB guest is
 * neither read nor faulted in.
 *
 * A shared file mapping is all in the file.  A private one (share=off) also
 * has the copies the guest wrote, which only the page tables know of, so
 * both are asked and their union taken.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>

#include <linux/fiemap.h>
#include <linux/fs.h>

#include <glib.h>

#include "migration/ram.h"
#include "util/bitmap.h"
#include "util/uffd.h"

#define POPULATED_REGIONS 256
/* Extents per FS_IOC_FIEMAP call. */
#define FIEMAP_EXTENTS    512

/* Set the pages of map covering byte offsets [start, end) from base, rounded outwards. */
static void mark(unsigned long *map, uint64_t page_size, uint64_t n, uint64_t start,
                 uint64_t end)
{
    uint64_t first = start / page_size;
    uint64_t last = MIN((end + page_size - 1) / page_size, n);

    if (last > first) {
        bitmap_set(map, first, last - first);
    }
}

/*
 * The file's extents, hundreds per call: SEEK_DATA/SEEK_HOLE costs two
 * calls per data range, and an image whose zero pages are scattered holes
 * has tens of thousands of ranges per GiB (a 4 GiB image took about 0.5 s
 * that way).  Every extent counts as data, unwritten and delayed ones too
 * (the page cache may hold data over them); only what no extent covers is
 * a hole.  -1: the file system has no FIEMAP (tmpfs, a memfd).
 */
static int by_fiemap(int fd, uint64_t base, uint64_t page_size, uint64_t n,
                     unsigned long *map)
{
    size_t size = sizeof(struct fiemap) + FIEMAP_EXTENTS * sizeof(struct fiemap_extent);
    g_autofree struct fiemap *fm = g_malloc(size);
    uint64_t end = base + n * page_size, pos = base;

    while (pos < end) {
        uint64_t next;
        uint32_t got;

        memset(fm, 0, sizeof(*fm));
        fm->fm_start = pos;
        fm->fm_length = end - pos;
        fm->fm_extent_count = FIEMAP_EXTENTS;
        if (ioctl(fd, FS_IOC_FIEMAP, fm) < 0) {
            return -1;
        }
        got = fm->fm_mapped_extents;
        for (uint32_t i = 0; i < got; i++) {
            const struct fiemap_extent *e = &fm->fm_extents[i];
            uint64_t s = MAX(e->fe_logical, base), t = MIN(e->fe_logical + e->fe_length, end);

            if (t > s) {
                mark(map, page_size, n, s - base, t - base);
            }
        }
        if (got < FIEMAP_EXTENTS ||
            (fm->fm_extents[got - 1].fe_flags & FIEMAP_EXTENT_LAST)) {
            break;
        }
        next = fm->fm_extents[got - 1].fe_logical + fm->fm_extents[got - 1].fe_length;
        if (next <= pos) {
            return -1;          /* no progress: let the seeks say it */
        }
        pos = next;
    }
    return 0;
}

/* SEEK_DATA/SEEK_HOLE: exact, unwritten extents without cached data are holes. */
static bool seek_data_pages(int fd, uint64_t base, uint64_t page_size, uint64_t n,
                            unsigned long *map)
{
    off_t end = base + n * page_size, pos = base;

    while (pos < end) {
        off_t data = lseek(fd, pos, SEEK_DATA);
        off_t hole;

        if (data < 0) {
            return errno == ENXIO;      /* no data after pos: done */
        }
        if (data >= end) {
            break;
        }
        hole = lseek(fd, data, SEEK_HOLE);
        if (hole < 0) {
            return false;
        }
        hole = MIN(hole, end);
        mark(map, page_size, n, data - base, hole - base);
        pos = hole;
    }
    return true;
}

bool file_data_pages(int fd, uint64_t base, uint64_t page_size, uint64_t n,
                     unsigned long *map)
{
    return by_fiemap(fd, base, page_size, n, map) == 0 ||
           seek_data_pages(fd, base, page_size, n, map);
}

/*
 * The backing file's data ranges; false when the file system cannot say.
 * By seeks, not extents: a preallocated (unwritten) range a guest never
 * wrote is a hole to them, and a snapshot skips it instead of reading zeros.
 */
static bool by_seek(const RAMBlock *rb, uint64_t page_size, uint64_t first, uint64_t n,
                    unsigned long *map)
{
    return seek_data_pages(rb->fd, rb->fd_offset + first * page_size, page_size, n, map);
}

/* Present or swapped pages of our mapping that are not the zero page. */
static bool by_pagemap(const RAMBlock *rb, int pagemap_fd, uint64_t page_size,
                       uint64_t first, uint64_t n, unsigned long *map)
{
    static const PagemapQuery q = {
        .any_set = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
        .all_clear = PAGE_IS_PFNZERO,
    };
    uint64_t start = (uintptr_t)rb->host + first * page_size;
    uint64_t end = start + n * page_size, pos = start;
    struct page_region regs[POPULATED_REGIONS];

    while (pos < end) {
        uint64_t walk_end = end;
        ssize_t nr = pagemap_scan(pagemap_fd, pos, end - pos, &q, regs,
                                  G_N_ELEMENTS(regs), &walk_end, NULL);

        if (nr < 0) {
            return false;
        }
        for (ssize_t i = 0; i < nr; i++) {
            mark(map, page_size, n, regs[i].start - start, regs[i].end - start);
        }
        if (walk_end <= pos) {
            break;
        }
        pos = walk_end;
    }
    return true;
}

bool ram_populated(const RAMBlock *rb, int pagemap_fd, uint64_t page_size,
                   uint64_t first, uint64_t n, unsigned long *map)
{
    if (rb->fd >= 0) {
        if (!by_seek(rb, page_size, first, n, map)) {
            return false;
        }
        if (rb->shared) {
            return true;
        }
    }
    return pagemap_fd >= 0 && by_pagemap(rb, pagemap_fd, page_size, first, n, map);
}
