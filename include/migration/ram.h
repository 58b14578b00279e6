/*
 * The `ram` section (QEMU's RAM section, version 4), both sides.  One
 * module, migration/ram/, writes and reads every byte of it.
 *
 * START payload: be64 (total bytes | MEM_SIZE), then per block u8 idlen,
 * idstr, be64 used_length, then be64 EOS.  Every PART/END payload is a run
 * of page records ended by be64 EOS:
 *
 *   be64 (offset in block | flags)  [u8 idlen, idstr unless CONTINUE]
 *   then 4096 bytes (PAGE) or one byte 0 (ZERO)
 *
 * Source: a RamSaver is the section's iterative entry.  It writes the block
 * list, every record and every EOS, and keeps the counters behind
 * query-migrate's `ram`.  Which page goes next, and when, is the call of
 * its page source (RamPageSourceOps), of which there are three:
 *
 *   stopped save         every page once, in order (migration/savers/stopped.c)
 *   precopy              the dirty pages, pass after pass (savers/precopy.c)
 *   background snapshot  fault copies first, then the scan (savers/background.c)
 *
 * Destination: a RamLoader checks every record against this VM's blocks and
 * hands each page to a placement (RamPlacementOps): a plain write into RAM
 * no vCPU has run on today, UFFDIO_COPY into registered RAM for postcopy.
 * A page with no record (a background snapshot skips pages never populated
 * at its instant) is zero after the load.
 */
#ifndef AMBER_MIGRATION_RAM_H
#define AMBER_MIGRATION_RAM_H

#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"
#include "system/ram.h"
#include "migration/savevm.h"

#define RAM_SECTION_NAME        "ram"
#define RAM_SECTION_VERSION     4
#define RAM_PAGE_SIZE           4096ULL

/* Record flags, OR-ed into the low bits of the page-aligned be64. */
#define RAM_SAVE_FLAG_ZERO      0x02
#define RAM_SAVE_FLAG_MEM_SIZE  0x04
#define RAM_SAVE_FLAG_PAGE      0x08
#define RAM_SAVE_FLAG_EOS       0x10
#define RAM_SAVE_FLAG_CONTINUE  0x20

/* Counters, readable from any thread while a save or load runs. */
typedef struct RamCounters {
    uint64_t total_bytes;       /* sum of the blocks' used_length */
    uint64_t scanned_pages;     /* pages written (or loaded) so far */
    uint64_t zero_pages;        /* ZERO records */
    uint64_t normal_pages;      /* PAGE records */
    uint64_t passes;            /* passes over RAM begun */
} RamCounters;

/* Sum of the blocks' used_length. */
uint64_t ram_list_total_bytes(const RamBlockList *ram);

/* ---- which pages hold data (migration/ram/populated.c) ------------------------------ */

/*
 * Sets bit i of map for each page first + i of [first, first + n), pages of
 * page_size bytes, that held data: the backing file's data ranges (memfd,
 * file), and the pages of our mapping that are present or swapped but not
 * the shared zero page (anonymous memory, and a private file mapping's
 * copies).  Partly covered pages count as data.  pagemap_fd is from
 * pagemap_open(0).  False when it cannot be told (no pagemap where one is
 * needed, a file system without SEEK_DATA): the caller then treats every
 * page as data.  Ask before write-protecting: afterwards the markers in
 * empty entries read as swapped.
 */
bool ram_populated(const RAMBlock *rb, int pagemap_fd, uint64_t page_size,
                   uint64_t first, uint64_t n, unsigned long *map);
/*
 * Sets bit i of map for each page i of the n pages of page_size bytes at
 * file offset base that may hold data: the file's extents (FIEMAP, with
 * unwritten and delayed ones), or its data ranges (SEEK_DATA/SEEK_HOLE)
 * where it has no FIEMAP; partly covered pages count.  A page left clear
 * reads zero.  False when the file system cannot say.
 */
bool file_data_pages(int fd, uint64_t base, uint64_t page_size, uint64_t n,
                     unsigned long *map);

/* ---- saving (migration/ram/section.c) ------------------------------------------------ */

typedef struct RamSaver RamSaver;

/*
 * A page source: decides which page goes next and puts it with
 * ram_saver_put_page() or ram_saver_put_guest_page().  It never writes
 * stream bytes itself.
 */
typedef struct RamPageSourceOps {
    /* Records per PART section at most: bounds the time between two cancel checks. */
    uint64_t part_pages;
    /* After the block list went out (START); NULL: nothing to do. */
    bool (*setup)(void *opaque, RamSaver *rs, QEMUFile *f, Error **errp);
    /*
     * Put up to max_pages pages into f (a source that works in batches may
     * finish the batch it is in).  final: the END section, where every
     * page left goes out.  Returns 1 when every page is out, 0 when some
     * remain (also when a rate limit says stop for now), -1 on error.
     */
    int (*fill)(void *opaque, RamSaver *rs, QEMUFile *f, uint64_t max_pages,
                bool final, Error **errp);
} RamPageSourceOps;

RamSaver *ram_saver_new(RamBlockList *ram);
void ram_saver_free(RamSaver *rs);
/* Register the `ram` entry (instance 0, version 4) in r, fed by the source. */
bool ram_saver_register(RamSaver *rs, SaveStateRegistry *r, const RamPageSourceOps *ops,
                        void *opaque, Error **errp);
/*
 * Another page source from the next PART on (postcopy's, at the switch);
 * the section, its counters and CONTINUE state go on unchanged.
 */
void ram_saver_set_source(RamSaver *rs, const RamPageSourceOps *ops, void *opaque);
/*
 * mapped-ram (include/migration/mapped-ram.h): pages go to their places
 * in the file through w, and the block list carries each block's header.
 * Set before the section's setup; w outlives the saver's use of it.
 */
typedef struct MappedRamWriter MappedRamWriter;
void ram_saver_set_mapped(RamSaver *rs, MappedRamWriter *w);
/* postcopy-ram: the block list gives each huge-page block's page size (ram_loader_set_postcopy()). */
void ram_saver_set_postcopy(RamSaver *rs, bool on);
/* The OR of every block's page size: what postcopy's ADVISE carries and checks. */
uint64_t ram_list_page_summary(const RamBlockList *ram);
/* The stream goes on in a new file (postcopy recovery): the next record names its block. */
void ram_saver_restart(RamSaver *rs);
RamBlockList *ram_saver_blocks(RamSaver *rs);
void ram_saver_counters(RamSaver *rs, RamCounters *out);
/* A new pass over RAM begins (the first one at setup); returns its number. */
uint64_t ram_saver_new_pass(RamSaver *rs);

/*
 * One page record: data NULL is a ZERO record.  nocopy: the stream keeps a
 * pointer to data until its next flush (only while the page cannot
 * change); otherwise the 4096 bytes are copied at once.
 */
void ram_saver_put_page(RamSaver *rs, QEMUFile *f, const RAMBlock *rb, uint64_t offset,
                        const uint8_t *data, bool nocopy);
/*
 * The page at offset of rb, read where it is: a ZERO record when it was
 * not populated (then it is not read at all) or holds only zeros.
 */
void ram_saver_put_guest_page(RamSaver *rs, QEMUFile *f, const RAMBlock *rb,
                              uint64_t offset, bool populated, bool nocopy);

/* ---- loading (migration/ram/load.c) --------------------------------------------------- */

/*
 * Where loaded pages go.  For each record the loader asks buffer() where
 * its 4096 bytes are to be read, then calls place() once they are there;
 * a ZERO record, and at the end every page that had no record, is a
 * place() with zero set and no buffer.  again: the stream gave the page
 * before (a live migration resends pages).  Blocks are indexes into the
 * RamBlockList the loader was made with.
 */
typedef struct RamPlacementOps {
    /* The block list came and names block b: get ready for its pages. */
    bool (*prepare_block)(void *opaque, int b, Error **errp);
    uint8_t *(*buffer)(void *opaque, int b, uint64_t page);
    bool (*place)(void *opaque, int b, uint64_t page, bool zero, bool again,
                  Error **errp);
    void (*free)(void *opaque);
} RamPlacementOps;

/*
 * The placement of RAM that no vCPU has run on yet: pages are read
 * straight into it; zero pages are cleared only where the machine already
 * wrote (a loaded guest image, a prealloc backend), so a fresh guest's RAM
 * is not populated by them.
 */
void ram_placement_memcpy(RamBlockList *ram, const RamPlacementOps **ops, void **opaque);

/*
 * The placement of RAM registered for missing-page faults
 * (migration/ram/place-uffd.c), for postcopy and a lazy restore: vCPUs may
 * run before every page is there; one that touches a missing page blocks
 * until it is placed.  Each page goes in whole with UFFDIO_COPY (or
 * UFFDIO_ZEROPAGE), exactly once: a second placement of a page changes
 * nothing.  Anonymous, shared (memfd) and huge-page blocks (a whole huge
 * page at a time); any other is refused at new(), naming the block and why.
 */
typedef struct RamUffd RamUffd;

/*
 * Whether every block of ram can take missing-page faults here (the
 * kernel's features and each backend); the error names the block and its
 * backend.
 */
bool ram_uffd_usable(RamBlockList *ram, Error **errp);
/*
 * Register every block of ram.  Pages already there stay as they are and
 * never fault (postcopy keeps what precopy loaded); the rest fault.
 */
RamUffd *ram_uffd_new(RamBlockList *ram, Error **errp);
/* The same with more userfaultfd features (UFFD_FEATURE_THREAD_ID). */
RamUffd *ram_uffd_new_features(RamBlockList *ram, uint64_t features, Error **errp);
/*
 * The same, with shared file blocks (memfd) also registered for minor
 * faults where the kernel can: their pages can then be written into the
 * file's page cache through another mapping and mapped in with
 * ram_uffd_continue_range(), one copy less than a copy from a buffer.
 */
RamUffd *ram_uffd_new_minor(RamBlockList *ram, Error **errp);
/* Block b was registered for minor faults (ram_uffd_new_minor()). */
bool ram_uffd_minor(RamUffd *u, int b);
/*
 * Map pages [first, first + n) of block b from its page cache, where the
 * caller has just written them (every page in the cache; none mapped yet
 * except pages already placed).  Returns how many this call placed, or -1.
 */
int64_t ram_uffd_continue_range(RamUffd *u, int b, uint64_t first, uint64_t n, Error **errp);
/*
 * Call placed(opaque, b, page) after each page this placement puts in
 * (not after one that was there already), from the placing thread.  Set
 * before any page is placed.
 */
void ram_uffd_set_placed_hook(RamUffd *u, void (*placed)(void *opaque, int b, uint64_t page),
                              void *opaque);
/* Unregisters (waking anyone still blocked: they then see zero pages). */
void ram_uffd_free(RamUffd *u);
/* The userfaultfd, whose MISSING fault messages say which page a vCPU waits on. */
int ram_uffd_fd(RamUffd *u);
/* The block and 4 KiB page of a faulting address; false when it is in none. */
bool ram_uffd_find(RamUffd *u, uint64_t addr, int *b, uint64_t *page);
/* Page of block b was placed (any thread). */
bool ram_uffd_placed(RamUffd *u, int b, uint64_t page);
/*
 * Place one page from data (NULL: zeros), from any thread, with its own
 * buffer; blocks of 4 KiB pages only (huge pages: a range of whole ones).
 */
bool ram_uffd_place_page(RamUffd *u, int b, uint64_t page, const uint8_t *data,
                         Error **errp);
/*
 * Place pages [first, first + n) of block b from data (NULL: zeros) with
 * one ioctl when none is there yet, else one at a time around those that
 * are (a huge page at a time on huge pages, where the range must cover
 * whole ones).  Returns how many 4 KiB pages this call placed, or -1.
 */
int64_t ram_uffd_place_range(RamUffd *u, int b, uint64_t first, uint64_t n,
                             const uint8_t *data, Error **errp);
/*
 * A stage: where the pages of one huge page gather until the last comes,
 * then go in whole (a block of 4 KiB pages places each at once).  One per
 * thread that places stream pages; the loader's placement has its own.
 * A huge page's pages must come in order, with nothing between them; a
 * page of a huge page already placed whole (by a fault, by another stage)
 * and not being gathered here changes nothing.
 */
typedef struct RamUffdStage RamUffdStage;
RamUffdStage *ram_uffd_stage_new(RamUffd *u, Error **errp);
void ram_uffd_stage_free(RamUffdStage *st);
/* Forget a huge page gathered in part (its connection broke; it comes again whole). */
void ram_uffd_stage_reset(RamUffdStage *st);
/* The same for the loader's own stage (postcopy recovery, on the new connection). */
void ram_uffd_reset_stage(RamUffd *u);
/* False, saying which, when a huge page is gathered in part (the end of a channel). */
bool ram_uffd_stage_idle(RamUffdStage *st, Error **errp);
/* Where page `page` of block b is to be read (4 KiB) before ram_uffd_stage_page(). */
uint8_t *ram_uffd_stage_buffer(RamUffdStage *st, int b, uint64_t page);
/* Page `page` is in its buffer (zero: it is a zero page); places what is complete. */
bool ram_uffd_stage_page(RamUffdStage *st, int b, uint64_t page, bool zero, Error **errp);
/* Pages placed so far, over every block (a racy sum for statistics). */
uint64_t ram_uffd_count_placed(RamUffd *u);
/* Pages copied, zero pages mapped, placements that found the page there. */
void ram_uffd_stats(RamUffd *u, uint64_t *copies, uint64_t *zeros, uint64_t *already);
/*
 * The loader's placement over u (u outlives the loader, which does not free
 * it): buffer()/place() from the loader's thread only.
 */
void ram_uffd_placement(RamUffd *u, const RamPlacementOps **ops, void **opaque);

typedef struct RamLoader RamLoader;

/* Load into the blocks of `ram` through the placement (it is freed with the loader). */
RamLoader *ram_loader_new(RamBlockList *ram, const RamPlacementOps *ops, void *opaque);
/* The same with ram_placement_memcpy(). */
RamLoader *ram_loader_new_memcpy(RamBlockList *ram);
void ram_loader_free(RamLoader *ls);
bool ram_loader_register(RamLoader *ls, SaveStateRegistry *r, Error **errp);
/*
 * After the stream's EOF: true when the block list came and named every
 * block; pages that had no record are then placed as zero.
 */
bool ram_loader_complete(RamLoader *ls, Error **errp);
void ram_loader_counters(RamLoader *ls, RamCounters *out);

/*
 * The stream is mapped-ram (its configuration says so): its pages are read
 * from their places in fd, a regular file, by `threads` threads as each
 * block's header comes (the loader must place with memcpy), or not at all
 * when lazy (a lazy restore places them once the guest runs).
 */
bool ram_loader_set_mapped(RamLoader *ls, int fd, int threads, bool lazy, Error **errp);
/*
 * Not lazy: map each block's pages from the file instead of reading them
 * (x-zero-copy-restore; see mapped_ram_map_block()).
 */
void ram_loader_set_map_image(RamLoader *ls, bool map);
/* Block b's place in the file, once the block list named it; NULL otherwise. */
typedef struct MappedRamBlock MappedRamBlock;
const MappedRamBlock *ram_loader_mapped_block(RamLoader *ls, int b);

/* ---- postcopy (the loader's thread, before and at the switch) -------------------- */

/*
 * The stream advised postcopy (before its block list): each block whose
 * pages are larger than 4 KiB is followed there by its page size, which
 * must be this block's (QEMU's format: both sides need the same huge pages).
 */
void ram_loader_set_postcopy(RamLoader *ls);

/*
 * Pages [first, first + n) of block b are to be sent again (postcopy's
 * discard): they count as never received, so their next record is placed
 * as new.  False when the range is not inside the block.
 */
bool ram_loader_discard(RamLoader *ls, int b, uint64_t first, uint64_t n);
/* The pages of block b received so far (a bitmap the loader keeps; read it, don't keep it). */
const unsigned long *ram_loader_received(RamLoader *ls, int b);
/*
 * From now on pages go to this placement (postcopy's LISTEN: from plain
 * writes to UFFDIO_COPY); the old one is freed.
 */
void ram_loader_set_placement(RamLoader *ls, const RamPlacementOps *ops, void *opaque);

#endif
