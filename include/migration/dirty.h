/*
 * Dirty pages of guest RAM for a live migration: which pages still have to
 * be sent, fed by the accelerator's dirty log of guest writes and the
 * machine's log of amber's own writes.
 *
 * One bitmap per RAM block, one bit per 4 KiB page, owned by the thread
 * that migrates.  It starts full (nothing sent yet).  Then:
 *
 *   ram_dirty_start      logging on (KVM: KVM_MEM_LOG_DIRTY_PAGES with
 *                        MANUAL_DIRTY_LOG_PROTECT2 and INITIALLY_SET, so
 *                        nothing is write-protected up front)
 *   ram_dirty_take       before sending pages: take their bits and re-arm
 *                        the logs for exactly those pages (KVM_CLEAR_DIRTY_LOG
 *                        write-protects them); the caller copies the pages
 *                        after this, so a write that races with the copy is
 *                        logged again
 *   ram_dirty_sync       between passes: OR the logs into the bitmaps
 *   ram_dirty_stop       logging off; on every exit path
 *
 * Re-arming only the pages about to be sent matters: clearing a page the
 * guest wrote after the last sync but that is not being sent would lose
 * that write.
 */
#ifndef AMBER_MIGRATION_DIRTY_H
#define AMBER_MIGRATION_DIRTY_H

#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"
#include "system/machine.h"

#define RAM_DIRTY_PAGE_SIZE 4096ULL

typedef struct RamDirty RamDirty;

/*
 * Bitmaps for m's blocks, every page dirty.  Fails when a memory region
 * does not start on a 64-page boundary of its block (the log's clear
 * works on 64-page words).
 */
RamDirty *ram_dirty_new(Machine *m, Error **errp);
/* Stops logging if it is on. */
void ram_dirty_free(RamDirty *d);

bool ram_dirty_start(RamDirty *d, Error **errp);
/* Idempotent. */
void ram_dirty_stop(RamDirty *d);
bool ram_dirty_logging(RamDirty *d);

/*
 * Merge both logs into the bitmaps.  *logged receives how many pages the
 * logs reported (written since the last sync), may be NULL.
 */
bool ram_dirty_sync(RamDirty *d, uint64_t *logged, Error **errp);
/* Pages marked and not taken yet. */
uint64_t ram_dirty_pending(RamDirty *d);

/* Pages of block b; the first marked page >= page of block b (npages if none). */
uint64_t ram_dirty_block_pages(RamDirty *d, int b);
uint64_t ram_dirty_next(RamDirty *d, int b, uint64_t page);
/*
 * Take the marks of pages [start, start + n) of block b into bits (bit i
 * is page start + i) and re-arm the logs for those pages.  start must be a
 * multiple of 64, and n too unless the range ends the block.
 */
bool ram_dirty_take(RamDirty *d, int b, uint64_t start, uint64_t n, unsigned long *bits,
                    Error **errp);
/* Give back marks of taken pages that were not sent after all. */
void ram_dirty_put_back(RamDirty *d, int b, uint64_t start, uint64_t n,
                        const unsigned long *bits);
/* The first page >= page of block b that is not marked (npages if none). */
uint64_t ram_dirty_next_clear(RamDirty *d, int b, uint64_t page);
/*
 * Replace the marks of block b with the pages NOT set in `have` (a
 * bitmap of the block's pages): postcopy recovery, where the destination
 * says which pages it holds.
 */
void ram_dirty_mark_missing(RamDirty *d, int b, const unsigned long *have);
/*
 * Mark every page of each group of `unit` pages of block b (a huge page)
 * of which any page is marked: what cannot be placed in parts goes whole.
 */
void ram_dirty_widen(RamDirty *d, int b, uint64_t unit);
/* Whether page of block b is marked (tests). */
bool ram_dirty_test(RamDirty *d, int b, uint64_t page);

#endif
