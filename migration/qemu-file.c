/*
 * The migration stream: buffered writer/reader with a sticky error.
 * See include/migration/qemu-file.h for the rules.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <glib.h>

#include "migration/qemu-file.h"
#include "util/crc32c.h"

/*
 * 512 KiB: one write per 512 KiB of stream.  With QEMU's 32 KiB a 1 GiB
 * snapshot was 32768 writes, and the saver's syscalls and page-cache
 * calls were what the faulting vCPUs waited on (bench: busy guest time
 * lost 0.53-1.39 s with 32 KiB, 0.26-0.45 s with 512 KiB, same run).
 */
#define IO_BUF_SIZE (512 * 1024)
#define MAX_IOV 64
#define RATE_WINDOW_US 100000       /* accounting window, as QEMU's BUFFER_DELAY */

struct QEMUFile {
    const QEMUFileOps *ops;
    void *opaque;
    char *name;
    bool writable;

    uint8_t *buf;
    size_t buf_index;       /* output: bytes used; input: read position */
    size_t buf_size;        /* input: bytes valid in buf */
    bool eof;               /* input: the source said end of file */
    /*
     * Memory input: buf is the caller's bytes, the whole stream, read in
     * place (never written: eof is set, so nothing refills it).  Copying
     * an image through a 512 KiB buffer cost amber-img a fault and a copy
     * of every page it skimmed, and a buffer per file opened.
     */
    bool borrowed;
    struct iovec iov[MAX_IOV];
    int iovcnt;

    uint64_t pos;           /* bytes accepted (output) or consumed (input) */
    uint64_t flushed;
    uint64_t external;      /* qemu_file_count_external() */
    bool crc_on;            /* x-checksum: bytes go into crc */
    uint32_t crc;           /* CRC-32C of the bytes since the last checkpoint */

    Error *err;
    int err_no;             /* negative errno */

    uint64_t rate_limit;    /* bytes/s, 0 = unlimited */
    int64_t window_start;
    uint64_t window_used;
    QEMUFileClock clock;
    void *clock_opaque;
};

static int64_t default_clock(void *opaque)
{
    return g_get_monotonic_time();
}

static QEMUFile *qemu_file_new_unbuffered(const QEMUFileOps *ops, void *opaque,
                                          const char *name, bool writable)
{
    QEMUFile *f = g_new0(QEMUFile, 1);

    f->ops = ops;
    f->opaque = opaque;
    f->name = g_strdup(name ? name : "migration stream");
    f->writable = writable;
    f->clock = default_clock;
    return f;
}

static QEMUFile *qemu_file_new(const QEMUFileOps *ops, void *opaque,
                               const char *name, bool writable)
{
    QEMUFile *f = qemu_file_new_unbuffered(ops, opaque, name, writable);

    f->buf = g_malloc(IO_BUF_SIZE);
    return f;
}

QEMUFile *qemu_file_new_output(const QEMUFileOps *ops, void *opaque, const char *name)
{
    return qemu_file_new(ops, opaque, name, true);
}

QEMUFile *qemu_file_new_input(const QEMUFileOps *ops, void *opaque, const char *name)
{
    return qemu_file_new(ops, opaque, name, false);
}

/* ---- sticky error ------------------------------------------------------ */

void qemu_file_set_error_obj(QEMUFile *f, int err, Error *e)
{
    if (f->err) {
        error_free(e);
        return;
    }
    f->err = e;
    f->err_no = err < 0 ? err : (err > 0 ? -err : -EIO);
}

void qemu_file_set_error(QEMUFile *f, int err, const char *fmt, ...)
{
    Error *e = NULL;
    va_list ap;
    char *msg;

    if (f->err) {
        return;
    }
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    error_setg(&e, "%s", msg);
    g_free(msg);
    qemu_file_set_error_obj(f, err, e);
}

int qemu_file_get_error(QEMUFile *f)
{
    return f->err ? f->err_no : 0;
}

const Error *qemu_file_error(QEMUFile *f)
{
    return f->err;
}

bool qemu_file_check(QEMUFile *f, Error **errp)
{
    if (!f->err) {
        return true;
    }
    error_propagate(errp, error_copy(f->err));
    return false;
}

/* ---- output ------------------------------------------------------------ */

/* Drop the first n bytes of the queued iovecs (after a short write). */
static void iov_consume(QEMUFile *f, size_t n)
{
    int i = 0;

    while (i < f->iovcnt && n >= f->iov[i].iov_len) {
        n -= f->iov[i].iov_len;
        i++;
    }
    if (i < f->iovcnt) {
        f->iov[i].iov_base = (uint8_t *)f->iov[i].iov_base + n;
        f->iov[i].iov_len -= n;
    }
    memmove(f->iov, f->iov + i, (f->iovcnt - i) * sizeof(f->iov[0]));
    f->iovcnt -= i;
}

void qemu_fflush(QEMUFile *f)
{
    if (!f->writable) {
        return;
    }
    while (!f->err && f->iovcnt > 0) {
        Error *e = NULL;
        ssize_t n = f->ops->writev(f->opaque, f->iov, f->iovcnt, &e);

        if (n < 0) {
            error_prepend(&e, "write to %s failed: ", f->name);
            qemu_file_set_error_obj(f, -EIO, e);
            break;
        }
        if (n == 0) {
            qemu_file_set_error(f, -EIO, "write to %s made no progress", f->name);
            break;
        }
        f->flushed += n;
        iov_consume(f, n);
    }
    /* After an error the queue is dropped: nothing more will be written. */
    f->iovcnt = 0;
    f->buf_index = 0;
}

static void add_iov(QEMUFile *f, const uint8_t *base, size_t len)
{
    struct iovec *last = f->iovcnt ? &f->iov[f->iovcnt - 1] : NULL;

    if (last && (uint8_t *)last->iov_base + last->iov_len == base) {
        last->iov_len += len;
        return;
    }
    f->iov[f->iovcnt].iov_base = (void *)base;
    f->iov[f->iovcnt].iov_len = len;
    f->iovcnt++;
}

static void account(QEMUFile *f, const uint8_t *p, size_t len)
{
    if (f->crc_on) {
        f->crc = crc32c(f->crc, p, len);
    }
    f->pos += len;
    f->window_used += len;
}

void qemu_put_buffer(QEMUFile *f, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    g_assert(f->writable);
    while (len > 0 && !f->err) {
        size_t n;

        if (f->buf_index == IO_BUF_SIZE || f->iovcnt == MAX_IOV) {
            qemu_fflush(f);
            continue;
        }
        n = MIN(len, IO_BUF_SIZE - f->buf_index);
        memcpy(f->buf + f->buf_index, p, n);
        add_iov(f, f->buf + f->buf_index, n);
        /* Summed from the copy: a running guest may change p meanwhile. */
        account(f, f->buf + f->buf_index, n);
        f->buf_index += n;
        p += n;
        len -= n;
    }
}

void qemu_put_buffer_nocopy(QEMUFile *f, const void *buf, size_t len)
{
    g_assert(f->writable);
    if (f->err || len == 0) {
        return;
    }
    if (f->iovcnt == MAX_IOV) {
        qemu_fflush(f);
        if (f->err) {
            return;
        }
    }
    add_iov(f, buf, len);
    account(f, buf, len);
}

void qemu_put_byte(QEMUFile *f, uint8_t v)
{
    qemu_put_buffer(f, &v, 1);
}

void qemu_put_be16(QEMUFile *f, uint16_t v)
{
    uint8_t b[2] = { v >> 8, v };

    qemu_put_buffer(f, b, sizeof(b));
}

void qemu_put_be32(QEMUFile *f, uint32_t v)
{
    uint8_t b[4] = { v >> 24, v >> 16, v >> 8, v };

    qemu_put_buffer(f, b, sizeof(b));
}

void qemu_put_be64(QEMUFile *f, uint64_t v)
{
    qemu_put_be32(f, v >> 32);
    qemu_put_be32(f, (uint32_t)v);
}

uint64_t qemu_file_transferred(QEMUFile *f)
{
    return f->pos + f->external;
}

uint64_t qemu_file_flushed(QEMUFile *f)
{
    return f->flushed;
}

/* ---- rate limit -------------------------------------------------------- */

void qemu_file_set_clock(QEMUFile *f, QEMUFileClock clock, void *opaque)
{
    f->clock = clock ? clock : default_clock;
    f->clock_opaque = opaque;
    f->window_start = f->clock(f->clock_opaque);
    f->window_used = 0;
}

void qemu_file_set_rate_limit(QEMUFile *f, uint64_t bytes_per_sec)
{
    f->rate_limit = bytes_per_sec;
    f->window_start = f->clock(f->clock_opaque);
    f->window_used = 0;
}

uint64_t qemu_file_get_rate_limit(QEMUFile *f)
{
    return f->rate_limit;
}

static uint64_t window_budget(QEMUFile *f)
{
    return MAX(f->rate_limit / (1000000 / RATE_WINDOW_US), 1);
}

/*
 * Start a new window once the current one is over.  What a producer put
 * beyond a window's budget (it checks between units of work, and a unit
 * may be bigger than the budget) is carried into the windows that follow,
 * so that over time the stream keeps to the limit.
 */
static void rate_window_update(QEMUFile *f)
{
    int64_t now = f->clock(f->clock_opaque);
    uint64_t windows, paid;

    if (now - f->window_start < RATE_WINDOW_US) {
        return;
    }
    windows = (now - f->window_start) / RATE_WINDOW_US;
    paid = f->rate_limit ? window_budget(f) * windows : f->window_used;
    f->window_used = f->window_used > paid ? f->window_used - paid : 0;
    f->window_start = f->window_used ? f->window_start + windows * RATE_WINDOW_US : now;
}

uint64_t qemu_file_rate_limit_used(QEMUFile *f)
{
    rate_window_update(f);
    return f->window_used;
}

bool qemu_file_rate_limit_exceeded(QEMUFile *f)
{
    uint64_t budget;

    if (f->err) {
        return true;        /* stop producing: nothing will go out anyway */
    }
    if (!f->rate_limit) {
        return false;
    }
    rate_window_update(f);
    budget = window_budget(f);
    return f->window_used >= budget;
}

int64_t qemu_file_rate_limit_delay_us(QEMUFile *f)
{
    int64_t left;

    if (f->err || !qemu_file_rate_limit_exceeded(f)) {
        return 0;
    }
    left = f->window_start + RATE_WINDOW_US - f->clock(f->clock_opaque);
    return MAX(left, 0);
}

void qemu_file_rate_limit_wait(QEMUFile *f)
{
    int64_t us = qemu_file_rate_limit_delay_us(f);

    if (us > 0) {
        g_usleep(us);
    }
}

/* ---- input ------------------------------------------------------------- */

/* Read more bytes after those buffered; false at end of file or on error. */
static bool fill_buffer(QEMUFile *f)
{
    Error *e = NULL;
    ssize_t n;

    if (f->err || f->eof) {
        return false;
    }
    if (f->buf_index > 0) {
        memmove(f->buf, f->buf + f->buf_index, f->buf_size - f->buf_index);
        f->buf_size -= f->buf_index;
        f->buf_index = 0;
    }
    if (f->buf_size == IO_BUF_SIZE) {
        return false;
    }
    n = f->ops->read(f->opaque, f->buf + f->buf_size, IO_BUF_SIZE - f->buf_size, &e);
    if (n < 0) {
        error_prepend(&e, "read from %s failed: ", f->name);
        qemu_file_set_error_obj(f, -EIO, e);
        return false;
    }
    if (n == 0) {
        f->eof = true;
        return false;
    }
    f->buf_size += n;
    return true;
}

static void set_eof_error(QEMUFile *f, uint64_t at, const char *what)
{
    qemu_file_set_error(f, -EIO, "unexpected end of stream at offset %" PRIu64
                        " reading %s", at, what ? what : "data");
}

bool qemu_get_buffer(QEMUFile *f, void *buf, size_t len, const char *what)
{
    uint8_t *p = buf;
    uint64_t start = f->pos;
    size_t done = 0;

    g_assert(!f->writable);
    while (done < len && !f->err) {
        size_t avail = f->buf_size - f->buf_index;

        if (avail == 0) {
            if (!fill_buffer(f)) {
                if (!f->err) {
                    set_eof_error(f, start, what);
                }
                break;
            }
            continue;
        }
        avail = MIN(avail, len - done);
        if (f->crc_on) {
            f->crc = crc32c(f->crc, f->buf + f->buf_index, avail);
        }
        if (p) {
            memcpy(p + done, f->buf + f->buf_index, avail);
        }
        f->buf_index += avail;
        f->pos += avail;
        done += avail;
    }
    if (f->err) {
        if (p) {
            memset(p, 0, len);
        }
        return false;
    }
    return true;
}

bool qemu_file_skip(QEMUFile *f, size_t len, const char *what)
{
    return qemu_get_buffer(f, NULL, len, what);
}

uint8_t qemu_get_byte(QEMUFile *f, const char *what)
{
    uint8_t v;

    qemu_get_buffer(f, &v, 1, what);
    return v;
}

uint16_t qemu_get_be16(QEMUFile *f, const char *what)
{
    uint8_t b[2];

    qemu_get_buffer(f, b, sizeof(b), what);
    return (uint16_t)b[0] << 8 | b[1];
}

uint32_t qemu_get_be32(QEMUFile *f, const char *what)
{
    uint8_t b[4];

    qemu_get_buffer(f, b, sizeof(b), what);
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

uint64_t qemu_get_be64(QEMUFile *f, const char *what)
{
    uint8_t b[8];
    uint64_t v = 0;

    qemu_get_buffer(f, b, sizeof(b), what);
    for (int i = 0; i < 8; i++) {
        v = v << 8 | b[i];
    }
    return v;
}

size_t qemu_peek_buffer(QEMUFile *f, void *buf, size_t len, size_t offset)
{
    size_t want = offset + len;
    size_t avail;

    g_assert(!f->writable);
    g_assert(want <= QEMU_FILE_PEEK_MAX);
    while (f->buf_size - f->buf_index < want && fill_buffer(f)) {
        /* keep reading until enough is buffered or the stream ends */
    }
    avail = f->buf_size - f->buf_index;
    if (f->err || avail <= offset) {
        return 0;
    }
    len = MIN(len, avail - offset);
    memcpy(buf, f->buf + f->buf_index + offset, len);
    return len;
}

int qemu_peek_byte(QEMUFile *f, size_t offset)
{
    uint8_t v;

    return qemu_peek_buffer(f, &v, 1, offset) == 1 ? v : -1;
}

int64_t qemu_file_tell(QEMUFile *f, Error **errp)
{
    int64_t at;

    if (f->borrowed) {
        return f->buf_index;
    }
    if (!f->ops->seek) {
        error_setg(errp, "%s cannot seek", f->name);
        return -1;
    }
    if (f->writable) {
        qemu_fflush(f);
        if (!qemu_file_check(f, errp)) {
            return -1;
        }
    }
    at = f->ops->seek(f->opaque, 0, SEEK_CUR, errp);
    if (at < 0) {
        return -1;
    }
    return f->writable ? at : at - (int64_t)(f->buf_size - f->buf_index);
}

bool qemu_file_seek(QEMUFile *f, uint64_t pos, Error **errp)
{
    int64_t old = qemu_file_tell(f, errp);

    if (f->borrowed) {
        if (pos > f->buf_size) {
            error_setg(errp, "offset %" PRIu64 " is outside the stream (%zu bytes)", pos,
                       f->buf_size);
            return false;
        }
        f->buf_index = pos;
        f->pos += (int64_t)pos - old;
        return true;
    }
    if (old < 0 || f->ops->seek(f->opaque, pos, SEEK_SET, errp) < 0) {
        return false;
    }
    if (!f->writable) {
        f->buf_index = f->buf_size = 0;
        f->eof = false;
    }
    /* pos stays the count of stream bytes, which messages give as offsets. */
    f->pos += (int64_t)pos - old;
    return true;
}

void qemu_file_count_external(QEMUFile *f, uint64_t len)
{
    __atomic_add_fetch(&f->external, len, __ATOMIC_RELAXED);
    f->window_used += len;
}

void qemu_file_crc_start(QEMUFile *f)
{
    f->crc_on = true;
    f->crc = 0;
}

void qemu_file_crc_stop(QEMUFile *f)
{
    f->crc_on = false;
}

bool qemu_file_crc_on(QEMUFile *f)
{
    return f->crc_on;
}

void qemu_put_crc(QEMUFile *f)
{
    uint32_t crc = f->crc;

    if (f->crc_on) {
        qemu_put_be32(f, crc);
        f->crc = 0;
    }
}

bool qemu_get_crc(QEMUFile *f, const char *what, Error **errp)
{
    uint32_t want = f->crc;
    uint64_t at = f->pos;
    uint32_t got;

    if (!f->crc_on) {
        /* A caller's slip, not the stream's: say so rather than abort. */
        error_setg(errp, "no checksum is being kept on %s (expected one after %s)", f->name,
                   what);
        return false;
    }
    got = qemu_get_be32(f, what);
    f->crc = 0;
    if (!qemu_file_check(f, errp)) {
        return false;
    }
    if (got != want) {
        error_setg(errp, "checksum mismatch after %s at stream offset %" PRIu64
                   " (stored 0x%08x, computed 0x%08x): the stream is corrupt",
                   what, at, got, want);
        return false;
    }
    return true;
}

uint64_t qemu_file_pos(QEMUFile *f)
{
    return f->pos;
}

const char *qemu_file_name(QEMUFile *f)
{
    return f->name;
}

bool qemu_file_is_writable(QEMUFile *f)
{
    return f->writable;
}

int qemu_fclose(QEMUFile *f)
{
    int ret;

    if (!f) {
        return 0;
    }
    qemu_fflush(f);
    ret = qemu_file_get_error(f);
    if (f->ops->release) {
        f->ops->release(f->opaque);
    }
    error_free(f->err);
    if (!f->borrowed) {
        g_free(f->buf);
    }
    g_free(f->name);
    g_free(f);
    return ret;
}

/* ---- memory ------------------------------------------------------------ */

/* Output: the bytes go into a GByteArray (the opaque). */
static ssize_t mem_writev(void *opaque, const struct iovec *iov, int iovcnt, Error **errp)
{
    GByteArray *out = opaque;
    size_t total = 0;

    for (int i = 0; i < iovcnt; i++) {
        g_byte_array_append(out, iov[i].iov_base, iov[i].iov_len);
        total += iov[i].iov_len;
    }
    return total;
}

static int64_t mem_seek(void *opaque, int64_t offset, int whence, Error **errp)
{
    GByteArray *out = opaque;

    if (whence != SEEK_CUR || offset) {
        error_setg(errp, "a memory output cannot seek");
        return -1;
    }
    return out->len;
}

static void mem_release(void *opaque)
{
    g_byte_array_unref(opaque);
}

static const QEMUFileOps mem_ops = {
    .writev = mem_writev,
    .release = mem_release,
    .seek = mem_seek,
};

/* Input needs no operations: the file is borrowed bytes, read, told and sought in place. */
static const QEMUFileOps mem_input_ops;

QEMUFile *qemu_file_new_mem_output(const char *name)
{
    return qemu_file_new_output(&mem_ops, g_byte_array_new(), name);
}

QEMUFile *qemu_file_new_mem_input(const void *buf, size_t len, const char *name)
{
    QEMUFile *f = qemu_file_new_unbuffered(&mem_input_ops, NULL, name, false);

    f->borrowed = true;
    /* Never written through: see `borrowed`. */
    f->buf = (uint8_t *)buf;
    f->buf_size = len;
    f->eof = true;
    return f;
}

const uint8_t *qemu_file_mem_data(QEMUFile *f, size_t *len)
{
    GByteArray *out = f->opaque;

    g_assert(f->ops == &mem_ops);
    qemu_fflush(f);
    if (f->err) {
        *len = 0;
        return NULL;
    }
    *len = out->len;
    return out->data;
}
