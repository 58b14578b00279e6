/*
 * O_DIRECT stream writer: two aligned buffers, one filling while a
 * thread writes the other (see include/migration/direct-io.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <glib.h>

#include "migration/direct-io.h"

/* Per buffer: big enough that a syscall per buffer costs nothing. */
#define DIRECT_BUF_SIZE (1u << 20)

struct DirectWriter {
    int fd;
    uint8_t *buf[2];
    int cur;                    /* the buffer being filled */
    size_t fill;                /* bytes in buf[cur] */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* Under lock: */
    bool busy;                  /* the thread owns buf[!cur] */
    size_t busy_len;
    int err;                    /* errno of the first failed write */
    bool quit;
};

bool direct_io_enable(int fd, const char *what, Error **errp)
{
    off_t pos = lseek(fd, 0, SEEK_CUR);
    int fl = fcntl(fd, F_GETFL);

    if (pos < 0 || fl < 0) {
        error_setg_errno(errp, errno, "direct-io: cannot inspect '%s'", what);
        return false;
    }
    if (pos % DIRECT_IO_ALIGN) {
        error_setg(errp, "direct-io: '%s' must start at a multiple of %d bytes, "
                   "not at offset %lld", what, DIRECT_IO_ALIGN, (long long)pos);
        return false;
    }
    if (fcntl(fd, F_SETFL, fl | O_DIRECT) < 0) {
        error_setg_errno(errp, errno, "direct-io: the file system of '%s' does not "
                         "take O_DIRECT", what);
        return false;
    }
    return true;
}

/* Write all of [p, p+len); 0 or an errno value. */
static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return errno;
        }
        if (n == 0) {
            return ENOSPC;
        }
        if (n % DIRECT_IO_ALIGN) {
            /* A short write off the alignment: go on without O_DIRECT. */
            int fl = fcntl(fd, F_GETFL);

            if (fl >= 0) {
                fcntl(fd, F_SETFL, fl & ~O_DIRECT);
            }
        }
        p += n;
        len -= n;
    }
    return 0;
}

static void *writer_thread(void *opaque)
{
    DirectWriter *w = opaque;

    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->busy && !w->quit) {
            pthread_cond_wait(&w->cond, &w->lock);
        }
        if (!w->busy) {
            break;
        }
        const uint8_t *p = w->buf[!w->cur];
        size_t len = w->busy_len;
        int skip = w->err;

        pthread_mutex_unlock(&w->lock);
        int err = skip ? 0 : write_all(w->fd, p, len);
        pthread_mutex_lock(&w->lock);
        if (err && !w->err) {
            w->err = err;
        }
        w->busy = false;
        pthread_cond_broadcast(&w->cond);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* Wait for the thread's buffer; the first error, 0 if none. */
static int wait_idle(DirectWriter *w)
{
    int err;

    pthread_mutex_lock(&w->lock);
    while (w->busy) {
        pthread_cond_wait(&w->cond, &w->lock);
    }
    err = w->err;
    pthread_mutex_unlock(&w->lock);
    return err;
}

/* Hand the full buffer to the thread and start filling the other. */
static int submit(DirectWriter *w)
{
    int err = wait_idle(w);

    if (err) {
        return err;
    }
    pthread_mutex_lock(&w->lock);
    w->busy = true;
    w->busy_len = w->fill;
    w->cur = !w->cur;
    w->fill = 0;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

DirectWriter *direct_writer_new(int fd, Error **errp)
{
    DirectWriter *w = g_new0(DirectWriter, 1);
    int i, err;

    w->fd = fd;
    for (i = 0; i < 2; i++) {
        err = posix_memalign((void **)&w->buf[i], DIRECT_IO_ALIGN, DIRECT_BUF_SIZE);
        if (err) {
            error_setg_errno(errp, err, "direct-io: cannot allocate a buffer");
            w->buf[i] = NULL;
            direct_writer_free(w);
            return NULL;
        }
    }
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    err = pthread_create(&w->thread, NULL, writer_thread, w);
    if (err) {
        error_setg_errno(errp, err, "direct-io: cannot start the writer thread");
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->cond);
        free(w->buf[0]);
        free(w->buf[1]);
        g_free(w);
        return NULL;
    }
    return w;
}

ssize_t direct_writer_writev(DirectWriter *w, const struct iovec *iov, int iovcnt,
                             Error **errp)
{
    size_t total = 0;
    int i, err = 0;

    for (i = 0; i < iovcnt && !err; i++) {
        const uint8_t *p = iov[i].iov_base;
        size_t len = iov[i].iov_len;

        while (len && !err) {
            size_t n = MIN(len, DIRECT_BUF_SIZE - w->fill);

            memcpy(w->buf[w->cur] + w->fill, p, n);
            w->fill += n;
            p += n;
            len -= n;
            total += n;
            if (w->fill == DIRECT_BUF_SIZE) {
                err = submit(w);
            }
        }
    }
    if (err) {
        error_setg(errp, "%s", g_strerror(err));
        return -1;
    }
    return total;
}

bool direct_writer_finish(DirectWriter *w, Error **errp)
{
    size_t aligned = w->fill - w->fill % DIRECT_IO_ALIGN;
    int err = wait_idle(w), fl;

    if (!err) {
        err = write_all(w->fd, w->buf[w->cur], aligned);
    }
    fl = fcntl(w->fd, F_GETFL);
    if (!err && fl >= 0 && fcntl(w->fd, F_SETFL, fl & ~O_DIRECT) < 0) {
        err = errno;
    }
    if (!err) {
        err = write_all(w->fd, w->buf[w->cur] + aligned, w->fill - aligned);
    }
    w->fill = 0;
    if (err) {
        error_setg(errp, "%s", g_strerror(err));
        return false;
    }
    return true;
}

void direct_writer_free(DirectWriter *w)
{
    if (!w) {
        return;
    }
    if (w->buf[0] && w->buf[1]) {
        pthread_mutex_lock(&w->lock);
        w->quit = true;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->cond);
    }
    free(w->buf[0]);
    free(w->buf[1]);
    g_free(w);
}
