/*
 * Lazy restore from a mapped-ram image (see include/migration/lazy-restore.h).
 *
 * Two threads place pages into RAM registered for missing-page faults:
 *
 *   fault thread   reads the userfaultfd; for each fault, the page a vCPU
 *                  waits for: a pread of 4 KiB at its offset and a
 *                  UFFDIO_COPY (or a zero page), nothing else first.  It
 *                  then points the loader at that page.
 *   loader thread  fills the rest a 1 MiB chunk at a time: runs of present
 *                  pages with one pread and one UFFDIO_COPY each, runs of
 *                  zero pages with one UFFDIO_ZEROPAGE.  Between chunks it
 *                  looks at the latest fault and jumps to its chunk if that
 *                  is not filled yet, then goes on from there (a guest that
 *                  touched a page soon touches its neighbours).
 *
 * Whichever thread reaches a page first places it; the other finds it
 * there (EEXIST) and changes nothing.
 *
 * A shared memfd block registered for minor faults too (where the kernel
 * can) takes its data pages another way: pread straight into its page
 * cache through a second mapping, then UFFDIO_CONTINUE maps them into the
 * guest's.  That is one copy fewer than pread into a buffer plus
 * UFFDIO_COPY.  The kernel does not guard the second mapping, so a thread
 * writes a page there only after claiming it (an atomic bit): a page the
 * guest may already have written is never written again.  Why a fault does not read its whole
 * chunk: the vCPU waits for the read, and 4 KiB comes back several times
 * faster than 1 MiB from a cold file; the chunk follows from the loader.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>

#include <glib.h>

#include "migration/lazy-restore.h"
#include "migration/ram.h"
#include "util/bitmap.h"
#include "util/stat.h"
#include "util/trace.h"
#include "util/uffd.h"

#define CHUNK_PAGES     256             /* 1 MiB: the loader's unit */
#define FAULT_BATCH     16
#define NO_HINT         UINT64_MAX

typedef struct LazyBlock {
    const RAMBlock *rb;
    MappedRamBlock mb;              /* bitmap shared with the caller's, not owned */
    uint64_t nchunks;
    unsigned long *filled;          /* chunks the loader has done (loader only) */
    uint8_t *cache;                 /* minor: the block's file mapped a second time */
    unsigned long *claimed;         /* minor: atomic, data pages being or been written */
} LazyBlock;

struct LazyRestore {
    RamBlockList *ram;
    int fd;
    RamUffd *u;
    LazyBlock blocks[AMBER_MAX_RAM_BLOCKS];
    int stop_fd;                    /* eventfd: the threads end */
    GThread *fault_thread, *loader_thread;
    uint64_t hint;                  /* atomic: block << 56 | page of the latest fault */
    const uint64_t *bandwidth;      /* atomic read: the loader's limit, bytes/s, 0: none */

    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;                      /* every page placed */
    bool stopped;                   /* lazy_restore_stop(): the owner is going */
    Error *err;                     /* the first failure */

    /* counters, atomics */
    uint64_t data_pages, cache_pages, zero_pages, bytes_read, faults, fault_ns;
    uint64_t loader_bytes;          /* read by the loader (what the limit holds) */
    uint64_t latency_hist[LAZY_LATENCY_BUCKETS];
};

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The first failure wins; the owner's wait() returns it. */
static void fail(LazyRestore *lr, Error *err)
{
    pthread_mutex_lock(&lr->lock);
    if (!lr->err) {
        error_report("lazy restore: %s", error_get_pretty(err));
        lr->err = err;
        pthread_cond_broadcast(&lr->cond);
    } else {
        error_free(err);
    }
    pthread_mutex_unlock(&lr->lock);
}

static bool failed(LazyRestore *lr)
{
    bool f;

    pthread_mutex_lock(&lr->lock);
    f = lr->err != NULL;
    pthread_mutex_unlock(&lr->lock);
    return f;
}

static bool stopping(LazyRestore *lr)
{
    struct pollfd p = { .fd = lr->stop_fd, .events = POLLIN };

    return poll(&p, 1, 0) > 0;
}

/*
 * Data pages [first, first + n) of a minor block: those this thread claims
 * are read into the page cache and mapped; the others are another
 * thread's, which maps them (waking whoever waits on them).
 */
static bool place_cached(LazyRestore *lr, int b, uint64_t first, uint64_t n, Error **errp)
{
    LazyBlock *lb = &lr->blocks[b];
    uint64_t i = first, end = first + n;

    while (i < end) {
        uint64_t start;
        int64_t placed;

        while (i < end && test_and_set_bit_atomic(i, lb->claimed)) {
            i++;
        }
        if (i == end) {
            break;
        }
        start = i++;
        while (i < end && !test_and_set_bit_atomic(i, lb->claimed)) {
            i++;
        }
        if (!mapped_ram_read_pages(lr->fd, lb->rb->idstr, &lb->mb, start, i - start,
                                   lb->cache + start * MAPPED_RAM_PAGE_SIZE, errp)) {
            /*
             * Drop what the short read left in the page cache: once
             * unregistered, the guest must not find half a page there.
             * The pages stay claimed, so nobody maps them.
             */
            if (fallocate(lb->rb->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                          lb->rb->fd_offset + start * MAPPED_RAM_PAGE_SIZE,
                          (i - start) * MAPPED_RAM_PAGE_SIZE) < 0) {
                warn_report("lazy restore: cannot drop pages of RAM block '%s': %s",
                            lb->rb->idstr, strerror(errno));
            }
            return false;
        }
        stat_add(&lr->bytes_read, (i - start) * MAPPED_RAM_PAGE_SIZE);
        placed = ram_uffd_continue_range(lr->u, b, start, i - start, errp);
        if (placed < 0) {
            return false;
        }
        stat_add(&lr->data_pages, placed);
        stat_add(&lr->cache_pages, placed);
    }
    return true;
}

/*
 * Place pages [first, first + n) of block b, which the image says are all
 * present (data) or all zero; buf holds n pages for data.
 */
static bool place_run(LazyRestore *lr, int b, uint64_t first, uint64_t n, bool data,
                      uint8_t *buf, Error **errp)
{
    LazyBlock *lb = &lr->blocks[b];
    int64_t placed;

    if (data && lb->cache) {
        return place_cached(lr, b, first, n, errp);
    }
    if (data) {
        if (!mapped_ram_read_pages(lr->fd, lb->rb->idstr, &lb->mb, first, n, buf, errp)) {
            return false;
        }
        stat_add(&lr->bytes_read, n * MAPPED_RAM_PAGE_SIZE);
    }
    placed = ram_uffd_place_range(lr->u, b, first, n, data ? buf : NULL, errp);
    if (placed < 0) {
        return false;
    }
    stat_add(data ? &lr->data_pages : &lr->zero_pages, placed);
    return true;
}

/* ---- the fault thread ------------------------------------------------------------------ */

static void note_latency(LazyRestore *lr, int64_t ns)
{
    uint64_t us = ns / 1000;
    int bucket = 0;

    while (us > 1 && bucket < LAZY_LATENCY_BUCKETS - 1) {
        us >>= 1;
        bucket++;
    }
    stat_add(&lr->latency_hist[bucket], 1);
    stat_add(&lr->fault_ns, ns);
    stat_add(&lr->faults, 1);
}

static void serve_fault(LazyRestore *lr, uint64_t addr, uint8_t *buf)
{
    int64_t t0 = now_ns();
    Error *err = NULL;
    uint64_t page;
    int b;

    if (!ram_uffd_find(lr->u, addr, &b, &page)) {
        warn_report("lazy restore: fault at 0x%" PRIx64 " outside guest RAM", addr);
        return;
    }
    if (ram_uffd_placed(lr->u, b, page)) {
        return;         /* placed since the fault was raised, which woke it */
    }
    __atomic_store_n(&lr->hint, (uint64_t)b << 56 | page, __ATOMIC_RELAXED);
    if (!place_run(lr, b, page, 1, test_bit(page, lr->blocks[b].mb.bitmap), buf, &err)) {
        /* The vCPU keeps waiting: the owner pauses the guest. */
        fail(lr, err);
        return;
    }
    note_latency(lr, now_ns() - t0);
}

static gpointer fault_thread(gpointer opaque)
{
    LazyRestore *lr = opaque;
    uint8_t *buf = g_malloc(MAPPED_RAM_PAGE_SIZE);

    for (;;) {
        struct uffd_msg msgs[FAULT_BATCH];
        Error *err = NULL;
        int n = uffd_wait_faults(ram_uffd_fd(lr->u), lr->stop_fd, msgs, FAULT_BATCH, &err);

        if (n == UFFD_WAIT_STOPPED) {
            break;
        }
        if (n < 0) {
            fail(lr, err);
            break;
        }
        for (int i = 0; i < n; i++) {
            serve_fault(lr, msgs[i].arg.pagefault.address, buf);
        }
    }
    g_free(buf);
    return NULL;
}

/* ---- the loader thread ----------------------------------------------------------------- */

/* Every page of chunk c of block b that is not there yet. */
static bool fill_chunk(LazyRestore *lr, int b, uint64_t c, uint8_t *buf, Error **errp)
{
    LazyBlock *lb = &lr->blocks[b];
    uint64_t end = MIN((c + 1) * CHUNK_PAGES, lb->mb.npages);
    uint64_t i = c * CHUNK_PAGES;

    while (i < end) {
        bool data = test_bit(i, lb->mb.bitmap);
        uint64_t run_end = data ? find_next_zero_bit(lb->mb.bitmap, end, i)
                                : find_next_bit(lb->mb.bitmap, end, i);

        /* Skip the head of the run that the fault thread placed already. */
        while (i < run_end && ram_uffd_placed(lr->u, b, i)) {
            i++;
        }
        if (i < run_end &&
            !place_run(lr, b, i, run_end - i, data,
                       buf + (i - c * CHUNK_PAGES) * MAPPED_RAM_PAGE_SIZE, errp)) {
            return false;
        }
        i = run_end;
    }
    set_bit(c, lb->filled);
    return true;
}

/* The chunk of the latest fault, if it is not filled yet. */
static bool take_hint(LazyRestore *lr, int *b, uint64_t *c)
{
    uint64_t h = __atomic_exchange_n(&lr->hint, NO_HINT, __ATOMIC_RELAXED);
    int hb = h >> 56;
    uint64_t hc;

    if (h == NO_HINT || hb >= lr->ram->nblocks) {
        return false;
    }
    hc = (h & ((1ULL << 56) - 1)) / CHUNK_PAGES;
    if (hc >= lr->blocks[hb].nchunks || test_bit(hc, lr->blocks[hb].filled)) {
        return false;
    }
    *b = hb;
    *c = hc;
    return true;
}

/*
 * Hold the loader to the bandwidth limit: wait until what it read since
 * start fits it.  In short naps, so a stop is seen at once.
 */
static void pace(LazyRestore *lr, int64_t start_ns, uint64_t loaded)
{
    for (;;) {
        uint64_t bps = lr->bandwidth ? __atomic_load_n(lr->bandwidth, __ATOMIC_RELAXED) : 0;
        int64_t due_ns = bps ? start_ns + (int64_t)(loaded * 1e9 / bps) : 0;
        int64_t wait_ns = due_ns - now_ns();

        if (wait_ns <= 0 || stopping(lr)) {
            return;
        }
        g_usleep(MIN(wait_ns / 1000, 10000));
    }
}

static gpointer loader_thread(gpointer opaque)
{
    LazyRestore *lr = opaque;
    uint8_t *buf = g_malloc(CHUNK_PAGES * MAPPED_RAM_PAGE_SIZE);
    int b = 0;
    uint64_t c = 0, left = 0;
    int64_t start_ns = now_ns();
    uint64_t before;
    Error *err = NULL;

    for (int i = 0; i < lr->ram->nblocks; i++) {
        left += lr->blocks[i].nchunks;
    }
    while (left) {
        pace(lr, start_ns, stat_get(&lr->loader_bytes));
        if (stopping(lr) || failed(lr)) {
            goto out;
        }
        /* Jump to the guest's latest fault; the scan goes on from there. */
        take_hint(lr, &b, &c);
        while (b < lr->ram->nblocks && c >= lr->blocks[b].nchunks) {
            b++;
            c = 0;
        }
        if (b == lr->ram->nblocks) {
            b = 0;
            c = 0;
            continue;
        }
        if (test_bit(c, lr->blocks[b].filled)) {
            c = find_next_zero_bit(lr->blocks[b].filled, lr->blocks[b].nchunks, c);
            continue;
        }
        before = stat_get(&lr->bytes_read);
        if (!fill_chunk(lr, b, c, buf, &err)) {
            fail(lr, err);
            goto out;
        }
        /* The fault thread reads meanwhile too: a bound, not an exact count. */
        stat_add(&lr->loader_bytes, stat_get(&lr->bytes_read) - before);
        left--;
        c++;
    }
    trace(lazy_restore_loaded, "data=%" PRIu64 " zero=%" PRIu64 " faults=%" PRIu64,
          stat_get(&lr->data_pages), stat_get(&lr->zero_pages), stat_get(&lr->faults));
    pthread_mutex_lock(&lr->lock);
    lr->done = true;
    pthread_cond_broadcast(&lr->cond);
    pthread_mutex_unlock(&lr->lock);
out:
    g_free(buf);
    return NULL;
}

/* ---- setup and teardown ------------------------------------------------------------------ */

/*
 * What the machine may have written before the image took over (a guest
 * kernel loaded at creation) must go: a page that is there never faults.
 */
static bool empty_block(const RAMBlock *rb, Error **errp)
{
    int ret;

    if (rb->fd >= 0) {
        ret = fallocate(rb->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, rb->fd_offset,
                        rb->used_length);
    } else {
        ret = madvise(rb->host, rb->used_length, MADV_DONTNEED);
    }
    if (ret < 0) {
        error_setg_errno(errp, errno, "cannot empty RAM block '%s' for a lazy restore",
                         rb->idstr);
        return false;
    }
    return true;
}

LazyRestore *lazy_restore_new(RamBlockList *ram, int fd,
                              const MappedRamBlock *const *blocks, Error **errp)
{
    LazyRestore *lr = g_new0(LazyRestore, 1);

    lr->ram = ram;
    lr->fd = fd;
    lr->hint = NO_HINT;
    lr->stop_fd = -1;
    pthread_mutex_init(&lr->lock, NULL);
    pthread_cond_init(&lr->cond, NULL);
    for (int i = 0; i < ram->nblocks; i++) {
        LazyBlock *lb = &lr->blocks[i];

        lb->rb = ram->blocks[i];
        lb->mb = *blocks[i];
        lb->nchunks = (lb->mb.npages + CHUNK_PAGES - 1) / CHUNK_PAGES;
        lb->filled = bitmap_new(lb->nchunks);
    }
    for (int i = 0; i < ram->nblocks; i++) {
        /* Its chunks are 1 MiB: a huge page could not go in whole. */
        if (ram_block_host_pages(ram->blocks[i]) > 1) {
            error_setg(errp, "RAM block '%s' has huge pages, which a lazy restore does not "
                       "place: restore it without postcopy-ram", ram->blocks[i]->idstr);
            goto fail;
        }
    }
    if (!ram_uffd_usable(ram, errp)) {
        goto fail;
    }
    for (int i = 0; i < ram->nblocks; i++) {
        if (!empty_block(ram->blocks[i], errp)) {
            goto fail;
        }
    }
    lr->u = ram_uffd_new_minor(ram, errp);
    if (!lr->u) {
        goto fail;
    }
    for (int i = 0; i < ram->nblocks; i++) {
        LazyBlock *lb = &lr->blocks[i];
        const RAMBlock *rb = lb->rb;
        void *p;

        if (!ram_uffd_minor(lr->u, i)) {
            continue;
        }
        p = mmap(NULL, rb->used_length, PROT_READ | PROT_WRITE, MAP_SHARED, rb->fd,
                 rb->fd_offset);
        if (p == MAP_FAILED) {
            error_setg_errno(errp, errno, "cannot map RAM block '%s' a second time",
                             rb->idstr);
            goto fail;
        }
        lb->cache = p;
        lb->claimed = bitmap_new(lb->mb.npages);
    }
    lr->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (lr->stop_fd < 0) {
        error_setg_errno(errp, errno, "cannot create an eventfd");
        goto fail;
    }
    lr->fault_thread = g_thread_new("lazy-fault", fault_thread, lr);
    return lr;

fail:
    lazy_restore_free(lr);
    return NULL;
}

void lazy_restore_set_bandwidth(LazyRestore *lr, const uint64_t *bytes_per_sec)
{
    lr->bandwidth = bytes_per_sec;
}

void lazy_restore_start(LazyRestore *lr)
{
    lr->loader_thread = g_thread_new("lazy-load", loader_thread, lr);
}

bool lazy_restore_wait(LazyRestore *lr, Error **errp)
{
    bool ok;

    pthread_mutex_lock(&lr->lock);
    while (!lr->done && !lr->err && !lr->stopped) {
        pthread_cond_wait(&lr->cond, &lr->lock);
    }
    ok = lr->done;
    if (!ok && lr->err) {
        error_propagate(errp, error_copy(lr->err));
    } else if (!ok) {
        error_setg(errp, "the restore was stopped before every page was placed");
    }
    pthread_mutex_unlock(&lr->lock);
    return ok;
}

void lazy_restore_stop(LazyRestore *lr)
{
    uint64_t one = 1;

    /* The loader sees it before its next chunk, a paced wait within 10 ms. */
    if (lr->stop_fd >= 0 && write(lr->stop_fd, &one, sizeof(one)) < 0) {
        /* Already signalled enough to overflow: still readable. */
    }
    pthread_mutex_lock(&lr->lock);
    lr->stopped = true;
    pthread_cond_broadcast(&lr->cond);
    pthread_mutex_unlock(&lr->lock);
}

void lazy_restore_free(LazyRestore *lr)
{
    if (!lr) {
        return;
    }
    lazy_restore_stop(lr);
    if (lr->loader_thread) {
        g_thread_join(lr->loader_thread);
    }
    if (lr->fault_thread) {
        g_thread_join(lr->fault_thread);
    }
    /* Every page is placed (or we are giving up): RAM is plain memory again. */
    ram_uffd_free(lr->u);
    for (int i = 0; i < AMBER_MAX_RAM_BLOCKS; i++) {
        LazyBlock *lb = &lr->blocks[i];

        bitmap_free(lb->filled);
        bitmap_free(lb->claimed);
        if (lb->cache) {
            munmap(lb->cache, lb->rb->used_length);
        }
    }
    if (lr->stop_fd >= 0) {
        close(lr->stop_fd);
    }
    error_free(lr->err);
    pthread_mutex_destroy(&lr->lock);
    pthread_cond_destroy(&lr->cond);
    g_free(lr);
}

void lazy_restore_stats(LazyRestore *lr, LazyRestoreStats *st)
{
    memset(st, 0, sizeof(*st));
    for (int i = 0; i < lr->ram->nblocks; i++) {
        st->total_pages += lr->blocks[i].mb.npages;
    }
    st->placed_pages = ram_uffd_count_placed(lr->u);
    st->data_pages = stat_get(&lr->data_pages);
    st->cache_pages = stat_get(&lr->cache_pages);
    st->zero_pages = stat_get(&lr->zero_pages);
    st->bytes_read = stat_get(&lr->bytes_read);
    st->faults = stat_get(&lr->faults);
    st->fault_ns = stat_get(&lr->fault_ns);
    for (int i = 0; i < LAZY_LATENCY_BUCKETS; i++) {
        st->latency_hist[i] = stat_get(&lr->latency_hist[i]);
    }
}
