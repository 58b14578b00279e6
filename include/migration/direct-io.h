/*
 * Writing a sequential stream to a file opened with O_DIRECT (the
 * `direct-io` migration parameter).
 *
 * A buffered write copies every byte into page cache pages the kernel
 * must first allocate; for a multi-GiB snapshot that copy costs more CPU
 * than the snapshot itself, CPU the running guest needs, and leaves GiBs
 * of dirty cache behind.  With O_DIRECT the device reads our buffer, so
 * the stream costs one copy into a reused, aligned buffer.
 *
 * O_DIRECT wants the memory, the length and the file offset aligned.  The
 * stream is not (records have 8-byte headers), so bytes are staged in
 * aligned buffers and written out whole by a writer thread while the next
 * buffer fills; only the tail, at the end, goes out buffered.
 */
#ifndef AMBER_MIGRATION_DIRECT_IO_H
#define AMBER_MIGRATION_DIRECT_IO_H

#include <stdbool.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "util/error.h"

/* Alignment asked of O_DIRECT writes: enough for 4Kn devices. */
#define DIRECT_IO_ALIGN 4096

typedef struct DirectWriter DirectWriter;

/*
 * Switch fd (a regular file, positioned at a multiple of DIRECT_IO_ALIGN)
 * to O_DIRECT.  `what` names it in messages.  False with errp when the
 * file system refuses or the position is not aligned; fd is then as it was.
 */
bool direct_io_enable(int fd, const char *what, Error **errp);

/* A writer for fd, which direct_io_enable() switched; NULL with errp. */
DirectWriter *direct_writer_new(int fd, Error **errp);
/* Take all of iov (returns its length) or -1 with errp (an earlier write failed). */
ssize_t direct_writer_writev(DirectWriter *w, const struct iovec *iov, int iovcnt,
                             Error **errp);
/* Write everything staged, the unaligned tail without O_DIRECT. */
bool direct_writer_finish(DirectWriter *w, Error **errp);
/*
 * Stop the thread and free.  A buffer the thread is writing is finished
 * first; bytes still staged are dropped.
 */
void direct_writer_free(DirectWriter *w);

#endif
