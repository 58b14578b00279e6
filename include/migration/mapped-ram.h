/*
 * mapped-ram: QEMU 9.0's file layout, in which every RAM page has a fixed
 * place in the file instead of a record in the stream.
 *
 * The `ram` section's block list carries, after each block's name and
 * length, a header (all big-endian, 28 bytes, no padding):
 *
 *   be32 version (1)  be64 page_size (4096)  be64 bitmap_offset  be64 pages_offset
 *
 * bitmap_offset is the absolute file offset just after the header; the
 * bitmap there has one bit per page, set for a page whose data is in the
 * file, as an array of little-endian 64-bit words (QEMU writes host
 * `unsigned long`s; x86-64 only).  pages_offset is the next multiple of
 * 1 MiB after the bitmap, so O_DIRECT can read and write the pages; page i
 * of the block is at pages_offset + i * 4096.  The stream goes on (the next
 * block's name, or EOS) at pages_offset + used_length.  A page whose bit
 * is clear is zero: it is never written, so it stays a hole of the file.
 * Bitmaps are written at the end of the section, once every page is out.
 *
 * The configuration section lists the capability ("configuration/
 * capabilities" subsection), so a reader knows before the block list.
 *
 * With x-checksum (the stream's own bytes are summed as always, see
 * CHECKSUM_CAPABILITY) each bitmap is followed by its checksum table:
 * le32 CRC-32C of the bitmap's bytes, then one le32 per page, the CRC-32C
 * of the page's 4096 bytes where its bit is set and 0 where it is clear;
 * pages_offset is the next 1 MiB boundary after the table.  Every page is
 * checked as it is read, before it is placed.
 *
 * Writers: a MappedRamWriter takes the pages a page source puts (any of
 * them: the stopped save, the background snapshot's fault copies and scan)
 * and writes runs of consecutive pages at their offsets from a few threads
 * (`multifd-channels`), with O_DIRECT when asked.  A page is written where
 * it belongs whichever path sends it, so two copies of one page cannot
 * both end up in the image.
 *
 * Readers: mapped_ram_get_header() and mapped_ram_read_bitmap() check what
 * the file says against the VM and the file's size before anything is
 * loaded; mapped_ram_load_eager() reads every present page straight into
 * RAM no vCPU has run on, from a few threads.
 */
#ifndef AMBER_MIGRATION_MAPPED_RAM_H
#define AMBER_MIGRATION_MAPPED_RAM_H

#include <stdbool.h>
#include <stdint.h>

#include "migration/qemu-file.h"
#include "migration/savevm.h"
#include "system/ram.h"
#include "util/error.h"

#define MAPPED_RAM_VERSION          1
#define MAPPED_RAM_ALIGN            (1ULL << 20)
#define MAPPED_RAM_HEADER_SIZE      28
#define MAPPED_RAM_PAGE_SIZE        4096ULL
/* multifd-channels: QEMU's range and default. */
#define MAPPED_RAM_MAX_THREADS      255
#define MAPPED_RAM_DEFAULT_THREADS  2

/* Where one block's bitmap and pages are. */
typedef struct MappedRamBlock {
    uint64_t npages;
    uint64_t bitmap_offset;
    uint64_t pages_offset;
    unsigned long *bitmap;          /* pages present in the file */
    bool summed;                    /* x-checksum: a table follows the bitmap */
    uint32_t *sums;                 /* its per-page CRCs, once read */
} MappedRamBlock;

/* Bytes of a block's bitmap. */
uint64_t mapped_ram_bitmap_bytes(uint64_t npages);
/* Bytes of a block's checksum table (x-checksum). */
uint64_t mapped_ram_sums_bytes(uint64_t npages);
/* Where a block's pages begin, for a header at offset `at`. */
uint64_t mapped_ram_pages_offset(uint64_t at, uint64_t npages, bool summed);

/*
 * Whether fd can hold a mapped-ram image (a regular file); the error names
 * `what` (the URI) and says why not.
 */
bool mapped_ram_channel_ok(int fd, const char *what, Error **errp);

/* direct-io: whether the file system of fd's file takes O_DIRECT (path for messages). */
bool mapped_ram_direct_ok(int fd, const char *path, Error **errp);

/* ---- reading ------------------------------------------------------------------------ */

/*
 * The header after block idstr's length, checked: version, page size, the
 * bitmap after the header, the pages after the bitmap and inside a file of
 * file_size bytes.  mb->bitmap is not read yet.
 */
bool mapped_ram_get_header(QEMUFile *f, const char *idstr, uint64_t used_length,
                           uint64_t file_size, MappedRamBlock *mb, Error **errp);
/*
 * Read mb's bitmap from fd (bits past the last page must be clear), and
 * when summed its checksum table (the bitmap's CRC must match, and a
 * clear page's entry be 0).
 */
bool mapped_ram_read_bitmap(int fd, const char *idstr, MappedRamBlock *mb, Error **errp);
/* Free what mapped_ram_read_bitmap() read. */
void mapped_ram_block_clear(MappedRamBlock *mb);
/*
 * Read every present page of block rb into rb->host (memory no vCPU ran
 * on, so plain reads are safe), from `threads` threads in parallel.
 */
bool mapped_ram_load_eager(int fd, const RAMBlock *rb, const MappedRamBlock *mb,
                           int threads, Error **errp);
/*
 * Read n pages from first of mb into buf: false with errp on a short read,
 * or, when summed, on a page whose CRC is not the table's.
 */
bool mapped_ram_read_pages(int fd, const char *idstr, const MappedRamBlock *mb,
                           uint64_t first, uint64_t n, uint8_t *buf, Error **errp);

/*
 * x-zero-copy-restore (migration/ram/mapped-map.c): map block rb's page
 * region of the image in fd privately over its memory; rb becomes a
 * private file mapping of the image (no vCPU may have run).  1: mapped; 0:
 * a page the bitmap says is zero holds data in the file (warned: load the
 * block the ordinary way); -1: rb cannot be mapped (not memory-backend-ram)
 * or an I/O error, with errp.
 */
int mapped_ram_map_block(RAMBlock *rb, int fd, const MappedRamBlock *mb, Error **errp);
/*
 * Whether every page of mb whose bit is clear reads zero in fd: 1 yes, 0
 * no (*bad the first that does not), -1 on an I/O error.
 */
int mapped_ram_holes_are_zero(int fd, const MappedRamBlock *mb, uint64_t *bad, Error **errp);

/* ---- writing ------------------------------------------------------------------------ */

typedef struct MappedRamWriter MappedRamWriter;

/*
 * A writer into fd (a regular file), for the blocks of ram, with `threads`
 * writing threads; direct: the pages go through a second descriptor of the
 * same file opened with O_DIRECT (the stream itself stays buffered).
 */
MappedRamWriter *mapped_ram_writer_new(int fd, RamBlockList *ram, int threads, bool direct,
                                       Error **errp);
/* Stop the threads (dropping what was not written yet) and free. */
void mapped_ram_writer_free(MappedRamWriter *w);
/*
 * Block b's header goes into f here, at f's position: the block's pages
 * then take the file up to the returned offset, where the stream goes on.
 * With f's checksums on (x-checksum), the writer keeps each page's CRC
 * for the block's table.
 */
bool mapped_ram_writer_put_header(MappedRamWriter *w, QEMUFile *f, int b, Error **errp);
/*
 * Page `page` of block b: data NULL is a zero page (no write, its bit
 * cleared).  nocopy: data stays unchanged until mapped_ram_writer_flush();
 * otherwise it is copied before this returns.  From one thread only, and
 * each page at most once per save (the stopped save and the background
 * snapshot's engine give every page one owner): a page's data and its
 * checksum are written by whichever thread takes its run.
 */
void mapped_ram_writer_put(MappedRamWriter *w, int b, uint64_t page, const uint8_t *data,
                           bool nocopy);
/* Wait until every page put is written; false with the first write error. */
bool mapped_ram_writer_flush(MappedRamWriter *w, Error **errp);
/* Flush, then write every block's bitmap. */
bool mapped_ram_writer_finish(MappedRamWriter *w, Error **errp);
/* A write failed (the producer checks between pages). */
bool mapped_ram_writer_failed(MappedRamWriter *w);
/* Page bytes written so far. */
uint64_t mapped_ram_writer_bytes(MappedRamWriter *w);

#endif
