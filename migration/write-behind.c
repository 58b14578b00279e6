/* Write-behind for streams written to regular files: see the header. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migration/write-behind.h"

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
}

void write_behind_wrote(WriteBehind *wb, size_t n)
{
    if (wb->fd < 0) {
        return;
    }
    wb->written += n;
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

            sync_file_range(wb->fd, prev, WB_WINDOW, SYNC_FILE_RANGE_WAIT_BEFORE |
                            SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
            posix_fadvise(wb->fd, prev, WB_WINDOW, POSIX_FADV_DONTNEED);
        }
        wb->kicked += WB_WINDOW;
    }
}
