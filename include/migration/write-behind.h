/*
 * Write-behind for a background snapshot written to a regular file through
 * the page cache.  The first WB_START bytes go plainly: the cache absorbs them at
 * memory speed.  From there on, every WB_WINDOW bytes, writeback of the
 * window just written is started, and the window WB_LAG behind it is
 * waited for and dropped from the cache.
 *
 * Why: a multi-GiB image written plainly piles up dirty pages until the
 * kernel throttles the writer, and every byte lands in a freshly
 * allocated cache page.  Measured on the 2-core development host, 4 GiB
 * in 1 MiB writes: 6-12 s and as much CPU plainly, 2.1-2.4 s and 1.3-1.8 s
 * of CPU with write-behind (the freed pages are reused while still hot);
 * a background snapshot of a 4 GiB guest took 9-12 s plainly, 4.8-5 s
 * with it.  But from the first byte it made a 1 GiB snapshot slower
 * (1.0-1.45 s against 0.67-0.9 s: the writer then waits on the disk),
 * hence WB_START.  The image is the same; past WB_START it does not stay
 * cached.
 *
 * Preallocation: blocks are allocated WB_PREALLOC at a time ahead of the
 * writer (fallocate, FALLOC_FL_KEEP_SIZE: the file's size still says what
 * was written), and write_behind_finish() gives back what was not used.
 * A buffered write into a file's new blocks otherwise pays the file
 * system's delayed allocation page by page: measured on ext4 here, 1 GiB
 * in 512 KiB writes went at 0.9-6.1 GB/s plainly, 8.8-10.2 GB/s into
 * preallocated blocks.  The saver writes at that pace, and under a write
 * storm the guest's faults wait for the saver.
 */
#ifndef AMBER_MIGRATION_WRITE_BEHIND_H
#define AMBER_MIGRATION_WRITE_BEHIND_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define WB_START (1ull << 30)
#define WB_WINDOW (8u << 20)
/*
 * How far behind the writer a window is waited for and dropped: far
 * enough that its writeback, started back then, is normally done (the
 * writer does not wait on the disk's latency), near enough that the
 * cache pages recycled stay few and hot.
 */
#define WB_LAG (64u << 20)
#define WB_PREALLOC (64u << 20)

typedef struct WriteBehind {
    int fd;                 /* -1: not a regular file, nothing to do */
    uint64_t base;          /* file offset of the stream's first byte */
    uint64_t written;       /* stream bytes written so far */
    uint64_t kicked;        /* stream bytes whose writeback was started */
    uint64_t reserved;      /* stream bytes with blocks allocated ahead */
    bool no_prealloc;       /* the file system refused: stop asking */
    int err;                /* errno of a writeback that failed, or 0 */
} WriteBehind;

/* Set up for fd at its current position; a no-op unless a regular file. */
void write_behind_init(WriteBehind *wb, int fd);
/*
 * Account n more bytes written; may wait for the disk (that is the
 * throttle).  A writeback that failed meanwhile is left in wb->err: the
 * stream must fail with it, since no later fsync will report it.
 */
void write_behind_wrote(WriteBehind *wb, size_t n);
/*
 * The stream is over (on every path): release the blocks allocated past
 * the end of the file.  The file's contents and size do not change.
 */
void write_behind_finish(WriteBehind *wb);

#endif
