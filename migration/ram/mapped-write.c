/*
 * mapped-ram's writer (see include/migration/mapped-ram.h): pages put one
 * at a time become runs of consecutive pages, and a few threads write each
 * run at its place in the file.
 *
 * Why runs and threads: one pwrite per 4 KiB page would cost a syscall per
 * page and keep one queue at the device; a run of up to 1 MiB is one write,
 * and `multifd-channels` threads keep that many in flight.  Copied pages
 * (a background snapshot's, whose source may change once put returns) are
 * staged in a bounded set of aligned run buffers: when all are in flight,
 * put waits for a write to finish, so memory stays bounded.  Pages of a
 * stopped guest go straight from guest RAM (nocopy).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "migration/mapped-ram.h"
#include "util/bitmap.h"
#include "util/crc32c.h"
#include "util/cutils.h"

/* Pages per write at most: 1 MiB. */
#define RUN_PAGES           256
#define RUN_BYTES           (RUN_PAGES * MAPPED_RAM_PAGE_SIZE)
/* Copy buffers per writing thread: one being written, one filling. */
#define BUFS_PER_THREAD     2

typedef struct Run {
    int b;
    uint64_t first;
    uint64_t n;
    uint8_t *buf;                   /* a copy buffer (RUN_BYTES), or NULL: ... */
    const uint8_t *src;             /* ... the pages where they are (nocopy) */
} Run;

struct MappedRamWriter {
    int fd;                         /* the stream's: bitmaps */
    int data_fd;                    /* pages: fd, or the file again with O_DIRECT */
    RamBlockList *ram;
    MappedRamBlock blocks[AMBER_MAX_RAM_BLOCKS];

    Run *cur;                       /* the run being put together (producer only) */

    pthread_mutex_t lock;
    pthread_cond_t cond;
    GQueue queue;                   /* Run * waiting for a thread */
    GSList *free_bufs;
    int nbufs, max_bufs;
    int inflight;                   /* runs queued or being written */
    bool stop;
    bool failed;                    /* atomic: err is set */
    Error *err;
    uint64_t bytes;                 /* atomic */

    int nthreads;
    GThread *threads[MAPPED_RAM_MAX_THREADS];
};

static bool pwrite_all(int fd, const uint8_t *p, uint64_t len, uint64_t off, Error **errp)
{
    if (!pwrite_full(fd, p, len, off)) {
        error_setg_errno(errp, errno,
                         "mapped-ram: cannot write %" PRIu64 " bytes at offset %" PRIu64,
                         len, off);
        return false;
    }
    return true;
}

/* Record the first failure; later ones are consequences. */
static void set_error(MappedRamWriter *w, Error *err)
{
    if (!w->err) {
        w->err = err;
        __atomic_store_n(&w->failed, true, __ATOMIC_RELEASE);
    } else {
        error_free(err);
    }
}

/*
 * x-checksum: each page's CRC, taken by the thread that writes it from the
 * bytes it writes (threads fill distinct entries of the table).
 */
static void sum_run(MappedRamWriter *w, const Run *r)
{
    uint32_t *sums = w->blocks[r->b].sums;
    const uint8_t *p = r->buf ? r->buf : r->src;

    for (uint64_t i = 0; sums && i < r->n; i++) {
        sums[r->first + i] = crc32c(0, p + i * MAPPED_RAM_PAGE_SIZE, MAPPED_RAM_PAGE_SIZE);
    }
}

static gpointer writer_thread(gpointer opaque)
{
    MappedRamWriter *w = opaque;

    pthread_mutex_lock(&w->lock);
    for (;;) {
        Run *r;
        Error *err = NULL;
        bool ok;

        while (!w->stop && g_queue_is_empty(&w->queue)) {
            pthread_cond_wait(&w->cond, &w->lock);
        }
        if (w->stop) {
            break;
        }
        r = g_queue_pop_head(&w->queue);
        pthread_mutex_unlock(&w->lock);

        sum_run(w, r);
        ok = pwrite_all(w->data_fd, r->buf ? r->buf : r->src, r->n * MAPPED_RAM_PAGE_SIZE,
                        w->blocks[r->b].pages_offset + r->first * MAPPED_RAM_PAGE_SIZE,
                        &err);

        pthread_mutex_lock(&w->lock);
        if (ok) {
            __atomic_add_fetch(&w->bytes, r->n * MAPPED_RAM_PAGE_SIZE, __ATOMIC_RELAXED);
        } else {
            set_error(w, err);
        }
        if (r->buf) {
            w->free_bufs = g_slist_prepend(w->free_bufs, r->buf);
        }
        g_free(r);
        w->inflight--;
        pthread_cond_broadcast(&w->cond);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

MappedRamWriter *mapped_ram_writer_new(int fd, RamBlockList *ram, int threads, bool direct,
                                       Error **errp)
{
    MappedRamWriter *w = g_new0(MappedRamWriter, 1);

    w->fd = fd;
    w->data_fd = fd;
    w->ram = ram;
    if (direct) {
        /*
         * O_DIRECT is a flag of the open file, shared by every dup: a new
         * open of the same file gives the pages their own, and the stream
         * keeps its buffered one.
         */
        g_autofree char *path = g_strdup_printf("/proc/self/fd/%d", fd);

        w->data_fd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
        if (w->data_fd < 0) {
            error_setg_errno(errp, errno, "direct-io: cannot open the migration file "
                             "again with O_DIRECT");
            g_free(w);
            return NULL;
        }
    }
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    g_queue_init(&w->queue);
    w->nthreads = CLAMP(threads, 1, MAPPED_RAM_MAX_THREADS);
    w->max_bufs = w->nthreads * BUFS_PER_THREAD + 1;
    for (int i = 0; i < w->nthreads; i++) {
        w->threads[i] = g_thread_new("mapped-write", writer_thread, w);
    }
    return w;
}

void mapped_ram_writer_free(MappedRamWriter *w)
{
    Run *r;

    if (!w) {
        return;
    }
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    for (int i = 0; i < w->nthreads; i++) {
        g_thread_join(w->threads[i]);
    }
    while ((r = g_queue_pop_head(&w->queue))) {
        free(r->buf);
        g_free(r);
    }
    if (w->cur) {
        free(w->cur->buf);
        g_free(w->cur);
    }
    g_slist_free_full(w->free_bufs, free);
    for (int i = 0; i < AMBER_MAX_RAM_BLOCKS; i++) {
        mapped_ram_block_clear(&w->blocks[i]);
    }
    if (w->data_fd != w->fd) {
        close(w->data_fd);
    }
    error_free(w->err);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    g_free(w);
}

bool mapped_ram_writer_put_header(MappedRamWriter *w, QEMUFile *f, int b, Error **errp)
{
    const RAMBlock *rb = w->ram->blocks[b];
    MappedRamBlock *mb = &w->blocks[b];
    int64_t at = qemu_file_tell(f, errp);

    if (at < 0) {
        return false;
    }
    mapped_ram_block_clear(mb);
    mb->npages = rb->used_length / MAPPED_RAM_PAGE_SIZE;
    mb->summed = qemu_file_crc_on(f);
    mb->bitmap_offset = at + MAPPED_RAM_HEADER_SIZE;
    mb->pages_offset = mapped_ram_pages_offset(at, mb->npages, mb->summed);
    mb->bitmap = bitmap_new(mb->npages);
    if (mb->summed) {
        mb->sums = g_new0(uint32_t, mb->npages);
    }
    qemu_put_be32(f, MAPPED_RAM_VERSION);
    qemu_put_be64(f, MAPPED_RAM_PAGE_SIZE);
    qemu_put_be64(f, mb->bitmap_offset);
    qemu_put_be64(f, mb->pages_offset);
    return qemu_file_seek(f, mb->pages_offset + rb->used_length, errp);
}

static void submit(MappedRamWriter *w)
{
    if (!w->cur) {
        return;
    }
    pthread_mutex_lock(&w->lock);
    g_queue_push_tail(&w->queue, w->cur);
    w->inflight++;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    w->cur = NULL;
}

/* A free copy buffer, waiting for a write to finish when all are in flight. */
static uint8_t *get_buf(MappedRamWriter *w)
{
    uint8_t *buf = NULL;

    pthread_mutex_lock(&w->lock);
    while (!w->free_bufs && w->nbufs >= w->max_bufs) {
        pthread_cond_wait(&w->cond, &w->lock);
    }
    if (w->free_bufs) {
        buf = w->free_bufs->data;
        w->free_bufs = g_slist_delete_link(w->free_bufs, w->free_bufs);
    } else {
        void *p;

        /* Aligned for O_DIRECT. */
        if (posix_memalign(&p, MAPPED_RAM_PAGE_SIZE, RUN_BYTES)) {
            g_error("mapped-ram: out of memory for a write buffer");
        }
        buf = p;
        w->nbufs++;
    }
    pthread_mutex_unlock(&w->lock);
    return buf;
}

void mapped_ram_writer_put(MappedRamWriter *w, int b, uint64_t page, const uint8_t *data,
                           bool nocopy)
{
    Run *r = w->cur;

    if (!data) {
        /* A hole in the file: its bit is all a zero page needs. */
        clear_bit(page, w->blocks[b].bitmap);
        if (w->blocks[b].sums) {
            w->blocks[b].sums[page] = 0;
        }
        return;
    }
    set_bit(page, w->blocks[b].bitmap);
    if (r && r->b == b && page == r->first + r->n && r->n < RUN_PAGES &&
        (r->buf ? !nocopy : nocopy && data == r->src + r->n * MAPPED_RAM_PAGE_SIZE)) {
        if (r->buf) {
            memcpy(r->buf + r->n * MAPPED_RAM_PAGE_SIZE, data, MAPPED_RAM_PAGE_SIZE);
        }
        r->n++;
        return;
    }
    submit(w);
    r = g_new0(Run, 1);
    r->b = b;
    r->first = page;
    r->n = 1;
    if (nocopy) {
        r->src = data;
    } else {
        r->buf = get_buf(w);
        memcpy(r->buf, data, MAPPED_RAM_PAGE_SIZE);
    }
    w->cur = r;
}

bool mapped_ram_writer_flush(MappedRamWriter *w, Error **errp)
{
    bool ok;

    submit(w);
    pthread_mutex_lock(&w->lock);
    while (w->inflight > 0) {
        pthread_cond_wait(&w->cond, &w->lock);
    }
    ok = !w->err;
    if (!ok) {
        error_propagate(errp, error_copy(w->err));
    }
    pthread_mutex_unlock(&w->lock);
    return ok;
}

bool mapped_ram_writer_finish(MappedRamWriter *w, Error **errp)
{
    if (!mapped_ram_writer_flush(w, errp)) {
        return false;
    }
    for (int b = 0; b < w->ram->nblocks; b++) {
        const MappedRamBlock *mb = &w->blocks[b];
        uint64_t bytes = mapped_ram_bitmap_bytes(mb->npages);
        uint64_t total = bytes + (mb->summed ? mapped_ram_sums_bytes(mb->npages) : 0);
        g_autofree uint8_t *out = NULL;
        unsigned long *le;

        if (!mb->bitmap) {
            continue;
        }
        /* The bitmap and, with x-checksum, its table: one write. */
        out = g_malloc(total);
        le = (unsigned long *)out;
        for (size_t i = 0; i < bytes / sizeof(*le); i++) {
            le[i] = GUINT64_TO_LE(mb->bitmap[i]);
        }
        if (mb->summed) {
            uint32_t *t = (uint32_t *)(out + bytes);

            t[0] = GUINT32_TO_LE(crc32c(0, out, bytes));
            for (uint64_t i = 0; i < mb->npages; i++) {
                t[1 + i] = GUINT32_TO_LE(mb->sums[i]);
            }
        }
        if (!pwrite_all(w->fd, out, total, mb->bitmap_offset, errp)) {
            error_prepend(errp, "block '%s' page bitmap: ", w->ram->blocks[b]->idstr);
            return false;
        }
    }
    return true;
}

bool mapped_ram_writer_failed(MappedRamWriter *w)
{
    return __atomic_load_n(&w->failed, __ATOMIC_ACQUIRE);
}

uint64_t mapped_ram_writer_bytes(MappedRamWriter *w)
{
    return __atomic_load_n(&w->bytes, __ATOMIC_RELAXED);
}
