/*
 * The `ram` section (QEMU's RAM section, version 4).
 *
 * START payload: be64 (total bytes | MEM_SIZE), then per block u8 idlen,
 * idstr, be64 used_length, then be64 EOS.  Every PART/END payload is a run
 * of page records ended by be64 EOS:
 *
 *   be64 (offset in block | flags)  [u8 idlen, idstr unless CONTINUE]
 *   then 4096 bytes (PAGE) or one byte 0 (ZERO)
 *
 * Saving is one pass over every page of every block in order (the VM is
 * stopped): pages never populated and all-zero pages go out as ZERO
 * without being copied, the rest as PAGE, queued straight from guest
 * memory (the stream does not copy them).  Loading checks every record
 * against this VM's blocks.  A page with no record (a background snapshot
 * skips pages never populated at its instant) is zero after the load.
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

/* ---- saving ------------------------------------------------------------------ */

/*
 * Writes page records of a `ram` PART/END payload (DESIGN: ZERO or PAGE,
 * the block's idstr unless CONTINUE).  Every saver (stopped, precopy,
 * background snapshot) goes through it.  `last` is the block of the
 * previous record; reset it to NULL at the start of each section.
 */
typedef struct RamRecordWriter {
    const RAMBlock *last;
} RamRecordWriter;

/*
 * data NULL: a ZERO record.  nocopy: the stream keeps a pointer to data
 * until its next flush (only while the page cannot change).
 */
void ram_record_put(RamRecordWriter *w, QEMUFile *f, const RAMBlock *rb,
                    uint64_t offset, const uint8_t *data, bool nocopy);

/*
 * Sets bit i of map for each page first+i of [first, first + n) that may
 * hold data: the backing file's data ranges (memfd, file), or the present
 * and swapped pages of our mapping through pagemap_fd (anonymous).  False
 * when that cannot be told: the caller then treats every page as data.
 */
bool ram_block_populated(const RAMBlock *rb, int pagemap_fd, uint64_t first,
                         uint64_t n, unsigned long *map);

typedef struct RamSaveState RamSaveState;

/*
 * Save the blocks of `ram`.  The guest must not run while pages are
 * written: they are queued without a copy and must not change before the
 * stream is flushed.
 */
RamSaveState *ram_save_new(RamBlockList *ram);
void ram_save_free(RamSaveState *rs);
/* Register the iterative `ram` entry (instance 0, version 4) in r. */
bool ram_save_register(RamSaveState *rs, SaveStateRegistry *r, Error **errp);
void ram_save_counters(RamSaveState *rs, RamCounters *out);
/*
 * One page record of a `ram` PART/END payload, for writers that pick the
 * pages themselves (a background snapshot): data NULL is a ZERO record,
 * else the 4096 bytes are copied into the stream at once (the guest may
 * change the page right after).  Counted like the pass's own records.
 */
void ram_save_put_page(RamSaveState *rs, QEMUFile *f, const RAMBlock *rb,
                       uint64_t offset, const uint8_t *data);

/* ---- loading ----------------------------------------------------------------- */

typedef struct RamLoadState RamLoadState;

/* Load into the blocks of `ram`, which no vCPU may have run on yet. */
RamLoadState *ram_load_new(RamBlockList *ram);
void ram_load_free(RamLoadState *ls);
bool ram_load_register(RamLoadState *ls, SaveStateRegistry *r, Error **errp);
/*
 * After the stream's EOF: true when the block list came and named every
 * block; pages that had no record are then made zero.
 */
bool ram_load_complete(RamLoadState *ls, Error **errp);
void ram_load_counters(RamLoadState *ls, RamCounters *out);

#endif
