/* Write-behind for streams written to regular files: see the header. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migration/write-behind.h"

/* Keep at least half a WB_PREALLOC of allocated blocks ahead of the writer. */
static void reserve_ahead(WriteBehind *wb)
{
    while (!wb->no_prealloc && wb->written + WB_PREALLOC / 2 >= wb->reserved) {
        /*
         * A refusal (no support, no space) only ends the advance booking:
         * the writes themselves report a full disk, as they would anyway.
         */
        if (fallocate(wb->fd, FALLOC_FL_KEEP_SIZE, wb->base + wb->reserved,
                      WB_PREALLOC) < 0) {
            wb->no_prealloc = true;
            break;
        }
        wb->reserved += WB_PREALLOC;
    }
}

void write_behind_init(WriteBehind *wb, int fd)
{
    struct stat st;
    off_t pos;

    *wb = (WriteBehind){ .fd = -1 };
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        return;
    }
    pos = lseek(fd, 0, SEEK_CUR);
    if (pos < 0) {
        return;
    }
    wb->fd = fd;
    wb->base = pos;
    reserve_ahead(wb);
}

void write_behind_wrote(WriteBehind *wb, size_t n)
{
    if (wb->fd < 0) {
        return;
    }
    wb->written += n;
    reserve_ahead(wb);
    if (wb->kicked < WB_START) {
        /* Plain writes up to WB_START: count them as if kicked. */
        uint64_t whole = wb->written / WB_WINDOW * WB_WINDOW;

        wb->kicked = whole < WB_START ? whole : WB_START;
    }
    while (wb->written - wb->kicked >= WB_WINDOW) {
        off_t win = wb->base + wb->kicked;

        /* Errors are only lost advice: the writes themselves report theirs. */
        sync_file_range(wb->fd, win, WB_WINDOW, SYNC_FILE_RANGE_WRITE);
        if (wb->kicked >= WB_START + WB_LAG) {
            off_t prev = win - WB_LAG;

            /*
             * Waiting reports a failed writeback, and consumes it: the file's
             * closing fsync would not see it again.  Keep it for the stream.
             */
            if (sync_file_range(wb->fd, prev, WB_WINDOW, SYNC_FILE_RANGE_WAIT_BEFORE |
                                SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) < 0 &&
                errno != EINTR && !wb->err) {
                wb->err = errno;
            }
            posix_fadvise(wb->fd, prev, WB_WINDOW, POSIX_FADV_DONTNEED);
        }
        wb->kicked += WB_WINDOW;
    }
}

void write_behind_finish(WriteBehind *wb)
{
    struct stat st;

    /*
     * Truncating to the current size frees the blocks allocated past it
     * (a refused or partial fallocate may have left some too).
     */
    if (wb->fd >= 0 && (wb->reserved || wb->no_prealloc) &&
        fstat(wb->fd, &st) == 0 && ftruncate(wb->fd, st.st_size) < 0) {
        /* Only space stays held; the image is whole. */
    }
    wb->fd = -1;
}
