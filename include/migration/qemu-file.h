/*
 * The migration stream: a buffered writer or reader over QEMUFileOps (a
 * channel's descriptor through include/migration/migration-io.h, or
 * memory), big-endian helpers, byte counters, a rate limit and a
 * sticky error.
 *
 * Sticky error: the first failure (a write error, a short read, a caller's
 * qemu_file_set_error) is kept; from then on every put is a no-op and every
 * get returns zeroes.  Code that produces or consumes a stream therefore
 * does not test each call: it checks qemu_file_check() at checkpoints (end
 * of a section, end of a pass) and gives up there.
 *
 * Readers never trust the stream: every get checks that the bytes exist
 * and, when they do not, sets the sticky error naming what was being read
 * ("unexpected end of stream at offset 17 reading section id").
 *
 * A QEMUFile never closes the descriptor it was given: the channel that
 * opened it does (see migration/channel.h), because closing can itself
 * fail (fsync, an exec child's exit status).
 */
#ifndef AMBER_MIGRATION_QEMU_FILE_H
#define AMBER_MIGRATION_QEMU_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "util/error.h"

typedef struct QEMUFile QEMUFile;

/*
 * Where the bytes go or come from.  writev returns the bytes written (may
 * be short) or -1 with *errp set; read returns the bytes read, 0 at end of
 * file, or -1 with *errp set.
 */
typedef struct QEMUFileOps {
    ssize_t (*writev)(void *opaque, const struct iovec *iov, int iovcnt, Error **errp);
    ssize_t (*read)(void *opaque, uint8_t *buf, size_t len, Error **errp);
    void (*release)(void *opaque);      /* optional, at qemu_fclose */
    /*
     * Optional, for descriptors that can seek (a regular file): lseek's
     * contract, returning the new absolute offset or -1 with *errp set.
     */
    int64_t (*seek)(void *opaque, int64_t offset, int whence, Error **errp);
} QEMUFileOps;

/* `name` is used in messages ("write to exec:cat failed: ..."). */
QEMUFile *qemu_file_new_output(const QEMUFileOps *ops, void *opaque, const char *name);
QEMUFile *qemu_file_new_input(const QEMUFileOps *ops, void *opaque, const char *name);
/* Output into a growing memory buffer; see qemu_file_mem_data(). */
QEMUFile *qemu_file_new_mem_output(const char *name);
/* Input from [buf, buf+len); the caller keeps buf alive until qemu_fclose. */
QEMUFile *qemu_file_new_mem_input(const void *buf, size_t len, const char *name);

/*
 * Flush (output) and free.  Returns 0, or the sticky error as a negative
 * errno value (-EIO when the error carried none).  NULL is a no-op.
 */
int qemu_fclose(QEMUFile *f);
/* Write out what is buffered; the outcome is in the sticky error. */
void qemu_fflush(QEMUFile *f);
/* Bytes written so far by a memory output (flushes first).  NULL on error. */
const uint8_t *qemu_file_mem_data(QEMUFile *f, size_t *len);

/* ---- sticky error ------------------------------------------------------ */

/* 0, or a negative errno value (-EIO when the error carried none). */
int qemu_file_get_error(QEMUFile *f);
/* true when there is no error; otherwise copies it into errp. */
bool qemu_file_check(QEMUFile *f, Error **errp);
/* The error itself, or NULL (owned by f). */
const Error *qemu_file_error(QEMUFile *f);
/* Record an error unless one is already there (the first one wins). */
void qemu_file_set_error(QEMUFile *f, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Same, taking ownership of an Error. */
void qemu_file_set_error_obj(QEMUFile *f, int err, Error *e);

/* ---- writing ----------------------------------------------------------- */

void qemu_put_byte(QEMUFile *f, uint8_t v);
void qemu_put_be16(QEMUFile *f, uint16_t v);
void qemu_put_be32(QEMUFile *f, uint32_t v);
void qemu_put_be64(QEMUFile *f, uint64_t v);
#define qemu_put_u8 qemu_put_byte
/* Copy len bytes into the stream buffer. */
void qemu_put_buffer(QEMUFile *f, const void *buf, size_t len);
/*
 * Queue len bytes without copying them: the caller keeps buf unchanged
 * until the next qemu_fflush() (or qemu_fclose()) returns.  Ordering with
 * copied bytes is preserved.
 */
void qemu_put_buffer_nocopy(QEMUFile *f, const void *buf, size_t len);

/* Bytes accepted by puts (flushed or still buffered). */
uint64_t qemu_file_transferred(QEMUFile *f);
/* Bytes actually handed to the descriptor. */
uint64_t qemu_file_flushed(QEMUFile *f);

/*
 * Rate limit: at most bytes_per_sec (0 = unlimited), accounted per 100 ms
 * window as QEMU does.  The producer asks qemu_file_rate_limit_exceeded()
 * between units of work and, when true, waits qemu_file_rate_limit_delay_us()
 * (or calls qemu_file_rate_limit_wait()) before going on.  Bytes beyond a
 * window's budget count against the windows after it: a producer whose units
 * are bigger than a window's budget waits until they are paid off.
 */
void qemu_file_set_rate_limit(QEMUFile *f, uint64_t bytes_per_sec);
uint64_t qemu_file_get_rate_limit(QEMUFile *f);
bool qemu_file_rate_limit_exceeded(QEMUFile *f);
int64_t qemu_file_rate_limit_delay_us(QEMUFile *f);
void qemu_file_rate_limit_wait(QEMUFile *f);
/* Bytes counted in the current window, with any carried from earlier ones. */
uint64_t qemu_file_rate_limit_used(QEMUFile *f);
/* Replace the monotonic clock (microseconds); for tests.  NULL restores it. */
typedef int64_t (*QEMUFileClock)(void *opaque);
void qemu_file_set_clock(QEMUFile *f, QEMUFileClock clock, void *opaque);

/* ---- reading ----------------------------------------------------------- */

/*
 * Each get names what it reads, for the message when the stream ends
 * early.  After an error they return 0 and leave buffers zeroed.
 */
uint8_t qemu_get_byte(QEMUFile *f, const char *what);
uint16_t qemu_get_be16(QEMUFile *f, const char *what);
uint32_t qemu_get_be32(QEMUFile *f, const char *what);
uint64_t qemu_get_be64(QEMUFile *f, const char *what);
/* All len bytes or an error (buf zero-filled then); returns success. */
bool qemu_get_buffer(QEMUFile *f, void *buf, size_t len, const char *what);
/* Skip len bytes; returns success. */
bool qemu_file_skip(QEMUFile *f, size_t len, const char *what);

/*
 * Look ahead without consuming: the byte at `offset` from the read
 * position, or -1 at end of stream or on error (no error is set: the end
 * may be legitimate there).
 */
int qemu_peek_byte(QEMUFile *f, size_t offset);
/*
 * Copy up to len bytes starting `offset` ahead into buf; returns how many
 * were available (less than len near the end of the stream).  offset+len
 * must not exceed QEMU_FILE_PEEK_MAX.
 */
#define QEMU_FILE_PEEK_MAX 4096
size_t qemu_peek_buffer(QEMUFile *f, void *buf, size_t len, size_t offset);

/*
 * Positioned streams (mapped-ram, which gives RAM pages fixed places in a
 * file and writes the rest of the stream around them).
 *
 * qemu_file_tell: the absolute offset in the underlying file of the next
 * byte to be put or got (output is flushed first); -1 with errp when it
 * cannot seek.  qemu_file_seek: go on putting or getting at absolute
 * offset pos (output is flushed first, input's buffer dropped).
 */
int64_t qemu_file_tell(QEMUFile *f, Error **errp);
bool qemu_file_seek(QEMUFile *f, uint64_t pos, Error **errp);
/*
 * Bytes written around the stream (mapped-ram's pages, by their own
 * writers): they count in qemu_file_transferred() and the rate limit.
 */
void qemu_file_count_external(QEMUFile *f, uint64_t len);

/*
 * Checksums (the x-checksum capability, docs/devel/checksum.md): while on,
 * every byte put or got (skipped ones too, peeked ones not) goes into a
 * running CRC-32C.  qemu_put_crc() writes it as be32 and begins the next
 * run (with checksums off it writes nothing, so writers call it at every
 * checkpoint unconditionally); qemu_get_crc() reads one and compares it with the bytes got since
 * the last, false with errp naming `what` and the offset on a mismatch.
 * Off (the default) nothing is added and the stream is QEMU's.
 * With checksums on, qemu_put_buffer_nocopy()'s bytes are summed when put:
 * they must not change before the flush (as its contract says anyway).
 */
void qemu_file_crc_start(QEMUFile *f);
void qemu_file_crc_stop(QEMUFile *f);
bool qemu_file_crc_on(QEMUFile *f);
void qemu_put_crc(QEMUFile *f);
bool qemu_get_crc(QEMUFile *f, const char *what, Error **errp);

/* Bytes consumed so far (input) or accepted (output). */
uint64_t qemu_file_pos(QEMUFile *f);
const char *qemu_file_name(QEMUFile *f);
bool qemu_file_is_writable(QEMUFile *f);

#endif
