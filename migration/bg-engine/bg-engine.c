/*
 * Background snapshot engine (see include/migration/bg-engine.h
 * and docs/devel/background-snapshot.md).
 *
 * Every host page of every block has three bits:
 *  - skip:  unpopulated at the instant (built by arm(), read-only after);
 *  - saved: someone owns the capture of the page's old contents; won by an
 *           atomic test-and-set, by the saver or a fault thread, never both;
 *  - done:  the owner finished capturing (copied into the pool, given to
 *           the sink, or nothing to copy because of skip).
 * A page may be unprotected only once it is done.  Either side may lift the
 * protection of a page the other side has done (merging ranges saves
 * ioctls), but never of a page that is saved and not done: its owner is
 * still copying, and a write let through now would tear the copy.
 */
#include "migration/bg-engine.h"
#include "migration/huge-repair.h"
#include "migration/ram.h"
#include "util/bitmap.h"
#include "util/cutils.h"
#include "util/stat.h"
#include "util/trace.h"
#include "util/uffd.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <glib.h>

#define FAULT_MSGS_PER_READ 32
#define BG_REPAIR_AFTER_STOP_US 250000

typedef struct BgBlock {
    RAMBlock *rb;
    uint8_t *host;
    uint64_t len;               /* used_length rounded up to page_size */
    size_t page_size;
    size_t npages;
    size_t unit;                /* pages per claim unit, a power of two */
    unsigned long *owned;       /* per unit: a fault thread or the saver took it */
    unsigned long *saved;
    unsigned long *done;
    unsigned long *skip;
    HugeRepair repair;          /* huge pages that units smaller than 2 MiB split */
    bool registered;
} BgBlock;

/* A fault copy waiting for the saver. */
typedef struct BgQueued {
    int block;
    size_t page;
    int slot;
} BgQueued;

typedef struct BgFaultThread {
    BgSnapshot *s;
    pthread_t tid;
    bool started;
    size_t *claimed;            /* pages of the unit this thread captured */
    int *slots;                 /* pool slots reserved for the unit */
} BgFaultThread;

/* Where the saver is, between the steps of run. */
typedef struct BgRun {
    bool started, ended;
    int block;                  /* the scan's position: block ... */
    size_t pos;                 /* ... and host page in it */
    uint64_t t0;
    pid_t tid;                  /* the saver's thread, boosted while it runs */
    int nice_was;
} BgRun;

struct BgSnapshot {
    BgSnapshotConfig cfg;
    BgBlock *blocks;
    int nblocks;
    BgSnapshotPutPage sink;
    BgSnapshotPace pace;        /* may be NULL */
    void *opaque;

    int uffd;
    int stop_fd;                /* eventfd: makes the fault threads return */
    int pagemap_fd;
    uint64_t features;          /* the kernel's, after the test mask */
    bool wp_unpopulated;
    bool armed;
    BgFaultThread *threads;
    int nthreads;
    BgRun run;

    /* Copy pool and queue; everything below is under lock. */
    pthread_mutex_t lock;
    pthread_cond_t cond;        /* slot freed, copy queued, stop or failure */
    size_t slot_size;
    int nslots;
    uint8_t *pool;
    size_t pool_map_bytes;      /* mapped; nslots may use less (automatic size) */
    int *free_slots;
    int nfree;
    BgQueued *queue;            /* ring of nslots entries */
    int qhead, qlen;
    int in_use;                 /* slots reserved by fault threads or queued */
    Error *failure;             /* first fault-thread error */

    int stopping;               /* atomic: disarm in progress */
    int cancelled;              /* atomic */
    int failed;                 /* atomic: failure is set */

    /* statistics, atomic */
    uint64_t st_normal, st_zero, st_skipped, st_bytes;
    uint64_t st_faults, st_fault_pages, st_unprotects, st_stalls;
    uint64_t st_protects;           /* protect ioctls at arm */
    uint64_t st_pool_hw;
    uint64_t st_pause_us, st_run_us, st_stall_max;
    uint64_t st_hist[BG_STALL_BUCKETS];
};

/*
 * Flags and published values (cancelled, failed, the stats' maxima) go
 * with acquire/release; plain counters are util/stat.h's stat_add().
 */
#define ATOMIC_GET(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define ATOMIC_SET(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

void bg_snapshot_config_default(BgSnapshotConfig *cfg)
{
    *cfg = (BgSnapshotConfig) {
        .pool_bytes = 0,                /* sized at the instant */
        .chunk_bytes = 2 << 20,
        .batch_bytes = 2 << 20,
        .fault_threads = 1,
        .use_wp_unpopulated = true,
        .boost_nice = -10,
    };
}

/* --- support check --- */

bool bg_snapshot_kernel_features(uint64_t *features, Error **errp)
{
    const char *mask_str = getenv(BG_SNAPSHOT_FEATURES_MASK_ENV);
    uint64_t have, mask = UINT64_MAX;

    if (!uffd_query_features(&have, errp)) {
        return false;
    }
    if (mask_str && *mask_str) {
        char *end;

        errno = 0;
        mask = strtoull(mask_str, &end, 0);
        if (errno || *end) {
            error_setg(errp, "%s=%s is not a number",
                       BG_SNAPSHOT_FEATURES_MASK_ENV, mask_str);
            return false;
        }
    }
    *features = have & mask;
    return true;
}

static bool block_is_shmem_like(const RAMBlock *rb)
{
    return rb->fd >= 0 || rb->kind != RAM_BACKEND_RAM || rb->hugetlbfs;
}

/* The features a uffd for these blocks asks for. */
static uint64_t wanted_features(RAMBlock *const *blocks, int nblocks)
{
    uint64_t want = UFFD_FEATURE_PAGEFAULT_FLAG_WP;
    int i;

    for (i = 0; i < nblocks; i++) {
        if (block_is_shmem_like(blocks[i])) {
            want |= UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
        }
    }
    return want;
}

static bool check_features(RAMBlock *const *blocks, int nblocks,
                           uint64_t have, Error **errp)
{
    int i;

    if (!uffd_check_features(UFFD_FEATURE_PAGEFAULT_FLAG_WP, have,
                             "background-snapshot", errp)) {
        return false;
    }
    for (i = 0; i < nblocks; i++) {
        if (block_is_shmem_like(blocks[i]) &&
            !(have & UFFD_FEATURE_WP_HUGETLBFS_SHMEM)) {
            error_setg(errp, "background-snapshot: RAM block '%s' (%s) needs "
                       "userfaultfd WP_HUGETLBFS_SHMEM (Linux 5.19+); use "
                       "memory-backend-ram or a newer kernel",
                       blocks[i]->idstr, ram_backend_kind_name(blocks[i]->kind));
            return false;
        }
    }
    return true;
}

static uint64_t block_len(const RAMBlock *rb)
{
    uint64_t ps = rb->page_size ? rb->page_size : BG_SNAPSHOT_PAGE_SIZE;

    return (rb->used_length + ps - 1) / ps * ps;
}

/* Register rb in WP mode on fd; say which block and what the kernel said. */
static bool register_block(int fd, RAMBlock *rb, Error **errp)
{
    uint64_t ioctls = 0;
    Error *err = NULL;

    if (!uffd_register(fd, rb->host, block_len(rb), UFFDIO_REGISTER_MODE_WP,
                       &ioctls, &err)) {
        error_setg(errp, "background-snapshot: RAM block '%s' (%s) cannot be "
                   "write-protected: %s", rb->idstr,
                   ram_backend_kind_name(rb->kind), error_get_pretty(err));
        error_free(err);
        return false;
    }
    if (!(ioctls & (1ULL << _UFFDIO_WRITEPROTECT))) {
        uffd_unregister(fd, rb->host, block_len(rb), NULL);
        error_setg(errp, "background-snapshot: RAM block '%s' (%s) registers "
                   "but the kernel offers no UFFDIO_WRITEPROTECT on it",
                   rb->idstr, ram_backend_kind_name(rb->kind));
        return false;
    }
    return true;
}

bool bg_snapshot_check(RAMBlock *const *blocks, int nblocks,
                       uint64_t *features, Error **errp)
{
    uint64_t have;
    bool ok = true;
    int fd, i;

    if (!bg_snapshot_kernel_features(&have, errp) ||
        !check_features(blocks, nblocks, have, errp)) {
        return false;
    }
    fd = uffd_create(wanted_features(blocks, nblocks), errp);
    if (fd < 0) {
        return false;
    }
    for (i = 0; i < nblocks && ok; i++) {
        ok = register_block(fd, blocks[i], errp);
        if (ok) {
            uffd_unregister(fd, blocks[i]->host, block_len(blocks[i]), NULL);
        }
    }
    close(fd);
    if (ok && features) {
        *features = have;
    }
    return ok;
}

/* --- small helpers --- */

/* Longest single wait in pace_scan(): a cancel is noticed at least this often. */
#define PACE_WAIT_MAX_US 100000

static uint64_t now_us(void)
{
    return g_get_monotonic_time();
}

static BgBlock *find_block(BgSnapshot *s, uint64_t addr, int *index)
{
    int i;

    for (i = 0; i < s->nblocks; i++) {
        BgBlock *b = &s->blocks[i];

        if (addr >= (uintptr_t)b->host && addr < (uintptr_t)b->host + b->len) {
            *index = i;
            return b;
        }
    }
    return NULL;
}

static void note_failure(BgSnapshot *s, Error *err);

/* Lift protection from [first, end) of b: one call, waking its writers. */
static bool unprotect_range(BgSnapshot *s, BgBlock *b, size_t first, size_t end)
{
    Error *err = NULL;

    if (first == end) {
        return true;
    }
    stat_add(&s->st_unprotects, 1);
    if (!uffd_unprotect(s->uffd, b->host + first * b->page_size,
                        (end - first) * b->page_size, true, &err)) {
        note_failure(s, err);
        return false;
    }
    return true;
}

/*
 * Lift protection from the runs of done pages in [first, end) (wakes the
 * writers blocked there).  Pages not done are left alone: their owner is
 * still copying them, or nobody owns them yet.
 */
static void unprotect_done_runs(BgSnapshot *s, BgBlock *b, size_t first,
                                size_t end)
{
    size_t i = first;

    while (i < end) {
        size_t run;

        while (i < end && !test_bit_atomic(i, b->done)) {
            i++;
        }
        run = i;
        while (i < end && test_bit_atomic(i, b->done)) {
            i++;
        }
        if (run == i || !unprotect_range(s, b, run, i)) {
            break;
        }
    }
}

/* Lift every protection, wake everyone; owners' copies be damned. */
static void unprotect_all(BgSnapshot *s)
{
    int i;

    for (i = 0; i < s->nblocks; i++) {
        BgBlock *b = &s->blocks[i];
        Error *err = NULL;

        if (b->registered && !uffd_unprotect(s->uffd, b->host, b->len, true,
                                             &err)) {
            /* Nothing better to do than say so: the block stays protected. */
            error_prepend(&err, "RAM block '%s' may still be write-protected: ",
                          b->rb->idstr);
            error_report_err(err);
        }
    }
}

/* A fault thread failed (unprotect, poll, read): remember it, release everyone, stop run(). */
static void note_failure(BgSnapshot *s, Error *err)
{
    pthread_mutex_lock(&s->lock);
    if (!s->failure) {
        s->failure = err;
        err = NULL;
    }
    ATOMIC_SET(&s->failed, 1);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    error_free(err);
    unprotect_all(s);
}

/* --- the copy pool --- */

/*
 * Reserve want slots, waiting until that many are free (backpressure: the
 * fault waits for the saver).  All at once, so that a unit is captured
 * whole; want never exceeds the pool (see unit_pages()).  Returns how
 * many: fewer only when the snapshot is ending.
 */
static int pool_reserve(BgSnapshot *s, int want, int *slots)
{
    int got;

    pthread_mutex_lock(&s->lock);
    while (s->nfree < want && !ATOMIC_GET(&s->stopping) &&
           !ATOMIC_GET(&s->cancelled) && !ATOMIC_GET(&s->failed)) {
        pthread_cond_wait(&s->cond, &s->lock);
    }
    got = MIN(want, s->nfree);
    for (int i = 0; i < got; i++) {
        slots[i] = s->free_slots[--s->nfree];
    }
    s->in_use += got;
    if ((uint64_t)s->in_use * s->slot_size > s->st_pool_hw) {
        ATOMIC_SET(&s->st_pool_hw, (uint64_t)s->in_use * s->slot_size);
    }
    pthread_mutex_unlock(&s->lock);
    return got;
}

/* Queue n copies and give back the reserved slots that went unused. */
static void pool_commit(BgSnapshot *s, int block, const size_t *pages,
                        const int *slots, int n, int reserved)
{
    int i;

    pthread_mutex_lock(&s->lock);
    for (i = 0; i < n; i++) {
        int tail = (s->qhead + s->qlen) % s->nslots;

        s->queue[tail] = (BgQueued){ block, pages[i], slots[i] };
        s->qlen++;
    }
    for (i = n; i < reserved; i++) {
        s->free_slots[s->nfree++] = slots[i];
    }
    s->in_use -= reserved - n;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* --- the fault threads --- */

static void record_stall(BgSnapshot *s, uint64_t us)
{
    int bucket = 0;
    uint64_t max;

    while (bucket < BG_STALL_BUCKETS - 1 && (us >> (bucket + 1))) {
        bucket++;
    }
    stat_add(&s->st_hist[bucket], 1);
    stat_add(&s->st_stalls, 1);
    max = ATOMIC_GET(&s->st_stall_max);
    while (us > max &&
           !__atomic_compare_exchange_n(&s->st_stall_max, &max, us, false,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

/* Capture page i of a unit this fault thread owns; true if captured. */
static bool fault_claim(BgSnapshot *s, BgBlock *b, size_t i, int *nslots_used,
                        int nslots, BgFaultThread *t, int *nclaimed)
{
    bool skip = test_bit(i, b->skip);

    /* Short of slots only when the snapshot is ending: leave it protected. */
    if (!skip && *nslots_used == nslots) {
        return false;
    }
    if (test_and_set_bit_atomic(i, b->saved)) {
        return false;
    }
    if (skip) {
        stat_add(&s->st_skipped, b->page_size / BG_SNAPSHOT_PAGE_SIZE);
    } else {
        memcpy(s->pool + (size_t)t->slots[*nslots_used] * s->slot_size,
               b->host + i * b->page_size, b->page_size);
        t->claimed[(*nslots_used)++] = i;
        stat_add(&s->st_fault_pages, 1);
    }
    set_bit_atomic(i, b->done);
    (*nclaimed)++;
    return true;
}

/*
 * Serve one write fault: unless the saver or another fault thread owns the
 * unit around it already (that owner lifts the protection and so wakes
 * the writer), take the unit, capture its pages into the pool, lift its
 * protection in one call, then hand the copies to the saver.
 *
 * Whole units, never parts: lifting protection from part of a transparent
 * huge page splits it, and the guest then runs on 4 KiB mappings (more
 * shadow-paging faults) long after the snapshot.
 */
static void handle_fault(BgFaultThread *t, uint64_t addr, uint64_t t0)
{
    BgSnapshot *s = t->s;
    size_t first, end, p, i, need = 0;
    int bi, reserved = 0, used = 0, claimed = 0;
    BgBlock *b = find_block(s, addr, &bi);

    if (!b) {
        return;     /* not ours: cannot happen with our registration */
    }
    p = (addr - (uintptr_t)b->host) / b->page_size;
    first = p - p % b->unit;
    end = MIN(first + b->unit, b->npages);
    /*
     * Slots first, ownership second: a reservation keeps the saver's final
     * drain waiting, so a unit is never owned by a thread it does not wait
     * for.
     */
    if (!test_bit_atomic(p / b->unit, b->owned)) {
        for (i = first; i < end; i++) {
            need += !test_bit(i, b->skip);
        }
        reserved = need ? pool_reserve(s, need, t->slots) : 0;
        if (!test_and_set_bit_atomic(p / b->unit, b->owned)) {
            huge_repair_fault_split(&b->repair, first);
            for (i = first; i < end; i++) {
                fault_claim(s, b, i, &used, reserved, t, &claimed);
            }
            unprotect_done_runs(s, b, first, end);
            huge_repair_unit_done(&b->repair, first);
        }
        pool_commit(s, bi, t->claimed, t->slots, used, reserved);
    }
    if (test_bit_atomic(p, b->done)) {
        record_stall(s, now_us() - t0);
    }
    trace(bgs_fault, "block=%s page=%zu claimed=%d copied=%d",
          b->rb->idstr, p, claimed, used);
}

/*
 * Give thread tid the configured nice value; returns the one it had, for
 * restoring.  Failure (no CAP_SYS_NICE) just leaves it alone.
 */
static int boost_thread(BgSnapshot *s, pid_t tid)
{
    int old;

    errno = 0;
    old = getpriority(PRIO_PROCESS, tid);
    if (s->cfg.boost_nice && !(old == -1 && errno)) {
        setpriority(PRIO_PROCESS, tid, s->cfg.boost_nice);
    }
    return old;
}

static void unboost_thread(BgSnapshot *s, pid_t tid, int old)
{
    if (s->cfg.boost_nice) {
        setpriority(PRIO_PROCESS, tid, old);
    }
}

static void *fault_thread_fn(void *opaque)
{
    BgFaultThread *t = opaque;

    boost_thread(t->s, (pid_t)syscall(SYS_gettid));   /* it ends with the snapshot */
    BgSnapshot *s = t->s;
    struct uffd_msg msgs[FAULT_MSGS_PER_READ];

    while (!ATOMIC_GET(&s->stopping)) {
        struct pollfd pfd[2] = {
            { .fd = s->uffd, .events = POLLIN },
            { .fd = s->stop_fd, .events = POLLIN },
        };
        Error *err = NULL;
        int n, i;

        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            error_setg_errno(&err, errno, "cannot poll userfaultfd");
            note_failure(s, err);
            break;
        }
        if (pfd[1].revents) {
            break;
        }
        n = uffd_read_events(s->uffd, msgs, FAULT_MSGS_PER_READ, &err);
        if (n < 0) {
            note_failure(s, err);
            break;
        }
        for (i = 0; i < n; i++) {
            uint64_t t0 = now_us();

            if (msgs[i].event != UFFD_EVENT_PAGEFAULT) {
                continue;
            }
            stat_add(&s->st_faults, 1);
            handle_fault(t, msgs[i].arg.pagefault.address, t0);
        }
    }
    return NULL;
}

/* --- new / free --- */

/*
 * Pages per claim unit of b: the configured chunk, but at most what the
 * pool holds (a fault reserves a whole unit) and at least one page.
 */
static size_t unit_pages(const BgSnapshot *s, const BgBlock *b)
{
    size_t unit = MAX(1, s->cfg.chunk_bytes / b->page_size);

    while (unit > 1 && unit > (size_t)s->nslots) {       /* a slot per page */
        unit /= 2;
    }
    return unit;
}

static bool block_init(BgSnapshot *s, BgBlock *b, RAMBlock *rb, Error **errp)
{
    b->rb = rb;
    b->host = rb->host;
    b->page_size = rb->page_size ? rb->page_size : BG_SNAPSHOT_PAGE_SIZE;
    b->len = block_len(rb);
    b->npages = b->len / b->page_size;
    if ((uintptr_t)b->host % b->page_size) {
        error_setg(errp, "background-snapshot: RAM block '%s' is not aligned "
                   "to its page size", rb->idstr);
        return false;
    }
    b->saved = bitmap_new(b->npages);
    b->done = bitmap_new(b->npages);
    b->skip = bitmap_new(b->npages);
    huge_repair_init(&b->repair, b->host, b->npages, b->page_size,
                     !block_is_shmem_like(rb));
    if (!register_block(s->uffd, rb, errp)) {
        return false;
    }
    b->registered = true;
    return true;
}

static bool pool_init(BgSnapshot *s, Error **errp)
{
    int i;

    s->slot_size = BG_SNAPSHOT_PAGE_SIZE;
    for (i = 0; i < s->nblocks; i++) {
        s->slot_size = MAX(s->slot_size, s->blocks[i].page_size);
    }
    s->nslots = MAX(1, (s->cfg.pool_bytes ? s->cfg.pool_bytes : BG_POOL_AUTO_MAX) /
                       s->slot_size);
    /* Address space only: a slot costs memory once a fault first uses it. */
    s->pool_map_bytes = (size_t)s->nslots * s->slot_size;
    s->pool = mmap(NULL, s->pool_map_bytes,
                   PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (s->pool == MAP_FAILED) {
        s->pool = NULL;
        error_setg_errno(errp, errno, "cannot allocate the %zu byte copy pool",
                         (size_t)s->nslots * s->slot_size);
        return false;
    }
    s->free_slots = g_new(int, s->nslots);
    s->queue = g_new(BgQueued, s->nslots);
    for (i = 0; i < s->nslots; i++) {
        s->free_slots[i] = i;
    }
    s->nfree = s->nslots;
    return true;
}

BgSnapshot *bg_snapshot_new(RAMBlock *const *blocks, int nblocks,
                            const BgSnapshotConfig *cfg,
                            BgSnapshotPutPage sink, void *opaque,
                            Error **errp)
{
    BgSnapshot *s;
    uint64_t want;
    int i;

    if (nblocks <= 0 || !sink || !cfg || cfg->fault_threads < 1) {
        error_setg(errp, "background-snapshot: needs RAM blocks, a page sink "
                   "and at least one fault thread");
        return NULL;
    }
    s = g_new0(BgSnapshot, 1);
    s->cfg = *cfg;
    s->sink = sink;
    s->opaque = opaque;
    s->uffd = s->stop_fd = s->pagemap_fd = -1;
    pthread_mutex_init(&s->lock, NULL);
    {
        pthread_condattr_t ca;

        /* Monotonic: the saver's timed wait in pace_scan(). */
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&s->cond, &ca);
        pthread_condattr_destroy(&ca);
    }
    s->blocks = g_new0(BgBlock, nblocks);
    s->nblocks = nblocks;
    if (!bg_snapshot_kernel_features(&s->features, errp) ||
        !check_features(blocks, nblocks, s->features, errp)) {
        goto fail;
    }
    want = wanted_features(blocks, nblocks);
    s->wp_unpopulated = cfg->use_wp_unpopulated &&
                        (s->features & UFFD_FEATURE_WP_UNPOPULATED);
    if (s->wp_unpopulated) {
        want |= UFFD_FEATURE_WP_UNPOPULATED;
    }
    s->uffd = uffd_create(want, errp);
    if (s->uffd < 0) {
        goto fail;
    }
    s->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (s->stop_fd < 0) {
        error_setg_errno(errp, errno, "cannot create an eventfd");
        goto fail;
    }
    s->pagemap_fd = pagemap_open(0, errp);
    if (s->pagemap_fd < 0) {
        goto fail;
    }
    for (i = 0; i < nblocks; i++) {
        if (!block_init(s, &s->blocks[i], blocks[i], errp)) {
            goto fail;
        }
    }
    if (!pool_init(s, errp)) {
        goto fail;
    }
    return s;

fail:
    bg_snapshot_free(s);
    return NULL;
}

static void stop_fault_threads(BgSnapshot *s)
{
    uint64_t one = 1;
    int i;

    ATOMIC_SET(&s->stopping, 1);
    if (s->stop_fd >= 0 && write(s->stop_fd, &one, sizeof(one)) < 0) {
        /* The flag still stops them at their next wake-up. */
    }
    pthread_mutex_lock(&s->lock);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    for (i = 0; i < s->nthreads; i++) {
        if (s->threads[i].started) {
            pthread_join(s->threads[i].tid, NULL);
            s->threads[i].started = false;
        }
        g_free(s->threads[i].claimed);
        g_free(s->threads[i].slots);
    }
    g_free(s->threads);
    s->threads = NULL;
    s->nthreads = 0;
}

static void run_end(BgSnapshot *s);

void bg_snapshot_disarm(BgSnapshot *s)
{
    uint64_t deadline;
    int i;

    if (!s) {
        return;
    }
    /* A run left between two steps (cancel, an error of the stream). */
    run_end(s);
    /*
     * Order matters: lift protection first so that no writer stays
     * blocked on a fault nobody will serve, then stop the threads, then
     * unregister (which would also wake writers, but leaves no trace of
     * the markers on unpopulated pages if they were not unprotected).
     */
    pthread_mutex_lock(&s->lock);
    if (s->armed) {
        unprotect_all(s);
    }
    pthread_mutex_unlock(&s->lock);
    stop_fault_threads(s);
    /* Under the lock: a late cancel() must not touch unregistered ranges. */
    pthread_mutex_lock(&s->lock);
    s->armed = false;
    pthread_mutex_unlock(&s->lock);
    for (i = 0; i < s->nblocks; i++) {
        BgBlock *b = &s->blocks[i];

        if (b->registered) {
            uffd_unregister(s->uffd, b->host, b->len, NULL);
            b->registered = false;
        }
    }
    /*
     * A snapshot that ended early leaves the huge pages split that faults
     * hit ahead of the saver (none after a complete one).  Put back what
     * a short while allows; the guest runs on meanwhile.
     */
    deadline = now_us() + BG_REPAIR_AFTER_STOP_US;
    for (i = 0; i < s->nblocks; i++) {
        huge_repair_leftovers(&s->blocks[i].repair, deadline);
    }
}

void bg_snapshot_free(BgSnapshot *s)
{
    int i;

    if (!s) {
        return;
    }
    bg_snapshot_disarm(s);
    for (i = 0; i < s->nblocks; i++) {
        bitmap_free(s->blocks[i].saved);
        bitmap_free(s->blocks[i].done);
        bitmap_free(s->blocks[i].skip);
        bitmap_free(s->blocks[i].owned);
        huge_repair_free(&s->blocks[i].repair);
    }
    if (s->pool) {
        munmap(s->pool, s->pool_map_bytes);
    }
    g_free(s->free_slots);
    g_free(s->queue);
    g_free(s->blocks);
    error_free(s->failure);
    if (s->uffd >= 0) {
        close(s->uffd);
    }
    if (s->stop_fd >= 0) {
        close(s->stop_fd);
    }
    if (s->pagemap_fd >= 0) {
        close(s->pagemap_fd);
    }
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    g_free(s);
}

bool bg_snapshot_uses_wp_unpopulated(const BgSnapshot *s)
{
    return s->wp_unpopulated;
}

/* --- arm --- */

/*
 * Which pages hold nothing at the instant (see ram_populated(): neither
 * file data nor mapped or swapped, or mapped to the shared zero page).
 * Done before protecting, as afterwards the write-protect markers of empty
 * entries read as swapped.  When that cannot be told, every page is
 * treated as data: protected and saved.
 */
static void scan_unpopulated(BgSnapshot *s, BgBlock *b)
{
    bitmap_zero(b->skip, b->npages);
    if (ram_populated(b->rb, s->pagemap_fd, b->page_size, 0, b->npages, b->skip)) {
        bitmap_complement(b->skip, b->skip, b->npages);
    } else {
        trace(bg_snapshot_populated_unknown, "block=%s: every page is data", b->rb->idstr);
        bitmap_zero(b->skip, b->npages);
    }
}

/*
 * Unpopulated runs shorter than this are protected along with their
 * neighbours: one ioctl instead of many, and a fault there costs nothing
 * but the unprotect (the pages are skipped).
 */
#define PROTECT_GAP_PAGES 512

/*
 * Write-protect what held data at the instant, and nothing else.  A page
 * left out is saved as absent (zero at the instant), so whatever the guest
 * writes there later cannot matter: protecting it would only cost a fault
 * and, for the unpopulated pages of a big sparse guest, the page tables
 * that WP_UNPOPULATED markers need (hundreds of ms at 16 GiB).
 */
static bool protect_populated(BgSnapshot *s, BgBlock *b, Error **errp)
{
    size_t start = find_next_zero_bit(b->skip, b->npages, 0);

    while (start < b->npages) {
        size_t end = find_next_bit(b->skip, b->npages, start), next;

        while (end < b->npages) {
            next = find_next_zero_bit(b->skip, b->npages, end);
            if (next >= b->npages || next - end >= PROTECT_GAP_PAGES) {
                break;
            }
            end = find_next_bit(b->skip, b->npages, next);
        }
        stat_add(&s->st_protects, 1);
        if (!uffd_protect(s->uffd, b->host + start * b->page_size,
                          (end - start) * b->page_size, errp)) {
            return false;
        }
        start = end < b->npages ? find_next_zero_bit(b->skip, b->npages, end)
                                : b->npages;
    }
    return true;
}

static bool start_fault_threads(BgSnapshot *s, Error **errp)
{
    size_t max_unit = 1;
    int i, r;

    for (i = 0; i < s->nblocks; i++) {
        max_unit = MAX(max_unit, s->blocks[i].unit);
    }
    s->threads = g_new0(BgFaultThread, s->cfg.fault_threads);
    s->nthreads = s->cfg.fault_threads;
    for (i = 0; i < s->nthreads; i++) {
        BgFaultThread *t = &s->threads[i];

        t->s = s;
        t->claimed = g_new(size_t, max_unit);
        t->slots = g_new(int, max_unit);
        r = pthread_create(&t->tid, NULL, fault_thread_fn, t);
        if (r) {
            error_setg_errno(errp, r, "cannot start a snapshot fault thread");
            return false;
        }
        t->started = true;
        /* A name for top -H, perf and tests/bench/schedtrace.py. */
        g_autofree char *name = g_strdup_printf("bgs/fault%d", i);
        pthread_setname_np(t->tid, name);
    }
    return true;
}

/*
 * The automatic pool: 1/BG_POOL_AUTO_SHARE of the RAM that holds data at
 * the instant, within [BG_POOL_AUTO_MIN, BG_POOL_AUTO_MAX].  What the pool
 * buys is bounded by the stream (once it is full, faults go at the
 * stream's pace however big it is), while its cost, resident memory,
 * matters most to a big, sparsely used guest.  Called under lock.
 */
static void size_auto_pool(BgSnapshot *s)
{
    uint64_t populated = 0, bytes;
    int i;

    for (i = 0; i < s->nblocks; i++) {
        const BgBlock *b = &s->blocks[i];

        populated += (uint64_t)(b->npages - bitmap_count_range(b->skip, 0, b->npages)) *
                     b->page_size;
    }
    bytes = MIN(MAX(populated / BG_POOL_AUTO_SHARE, BG_POOL_AUTO_MIN), BG_POOL_AUTO_MAX);
    s->nslots = MAX(1, MIN((uint64_t)s->nslots, bytes / s->slot_size));
    s->nfree = s->nslots;
    for (i = 0; i < s->nslots; i++) {
        s->free_slots[i] = i;
    }
}

bool bg_snapshot_arm(BgSnapshot *s, Error **errp)
{
    uint64_t t0 = now_us();
    int i;

    if (s->armed || s->stopping) {
        error_setg(errp, "background-snapshot: already armed once");
        return false;
    }
    for (i = 0; i < s->nblocks; i++) {
        scan_unpopulated(s, &s->blocks[i]);
    }
    /* The skip bitmaps are read-only from here: the threads see them whole. */
    pthread_mutex_lock(&s->lock);
    if (!s->cfg.pool_bytes) {
        size_auto_pool(s);
    }
    for (i = 0; i < s->nblocks; i++) {
        BgBlock *b = &s->blocks[i];

        b->unit = unit_pages(s, b);
        b->owned = bitmap_new((b->npages + b->unit - 1) / b->unit);
        huge_repair_start(&b->repair, b->unit, b->skip);
    }
    s->armed = true;
    pthread_mutex_unlock(&s->lock);
    if (!start_fault_threads(s, errp)) {
        goto fail;
    }
    for (i = 0; i < s->nblocks; i++) {
        BgBlock *b = &s->blocks[i];

        if (!protect_populated(s, b, errp)) {
            error_prepend(errp, "background-snapshot: RAM block '%s': ",
                          b->rb->idstr);
            goto fail;
        }
    }
    ATOMIC_SET(&s->st_pause_us, now_us() - t0);
    trace(bgs_arm, "blocks=%d wp_unpopulated=%d ranges=%" PRIu64 " us=%" PRIu64,
          s->nblocks, s->wp_unpopulated, ATOMIC_GET(&s->st_protects), now_us() - t0);
    return true;

fail:
    bg_snapshot_disarm(s);
    return false;
}

/* --- the saver --- */

static bool stop_requested(BgSnapshot *s, Error **errp)
{
    if (ATOMIC_GET(&s->failed)) {
        pthread_mutex_lock(&s->lock);
        error_propagate(errp, error_copy(s->failure));
        pthread_mutex_unlock(&s->lock);
        return true;
    }
    if (ATOMIC_GET(&s->cancelled)) {
        error_setg(errp, "background-snapshot: cancelled");
        return true;
    }
    return false;
}

/* Give one host page (captured, so stable) to the sink, 4 KiB at a time. */
static bool sink_host_page(BgSnapshot *s, BgBlock *b, size_t page,
                           const uint8_t *data, Error **errp)
{
    size_t off;

    for (off = 0; off < b->page_size; off += BG_SNAPSHOT_PAGE_SIZE) {
        const uint8_t *p = data + off;
        bool zero = buffer_is_zero(p, BG_SNAPSHOT_PAGE_SIZE);

        if (!s->sink(s->opaque, b->rb, page * b->page_size + off,
                     zero ? NULL : p, errp)) {
            return false;
        }
        if (zero) {
            stat_add(&s->st_zero, 1);
        } else {
            stat_add(&s->st_normal, 1);
            stat_add(&s->st_bytes, BG_SNAPSHOT_PAGE_SIZE);
        }
    }
    return true;
}

/*
 * Save the queued fault copies.  With until_idle, also wait for the fault
 * threads to finish what they hold, so that nothing is left in flight.
 */
static bool drain_queue(BgSnapshot *s, bool until_idle, Error **errp)
{
    bool ok = true;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (s->qlen && ok) {
            BgQueued q = s->queue[s->qhead];

            s->qhead = (s->qhead + 1) % s->nslots;
            s->qlen--;
            pthread_mutex_unlock(&s->lock);
            ok = !stop_requested(s, errp) &&
                 sink_host_page(s, &s->blocks[q.block], q.page,
                                s->pool + (size_t)q.slot * s->slot_size, errp);
            pthread_mutex_lock(&s->lock);
            s->free_slots[s->nfree++] = q.slot;
            s->in_use--;
            pthread_cond_broadcast(&s->cond);
        }
        if (!ok || !until_idle || s->in_use == 0) {
            break;
        }
        pthread_mutex_unlock(&s->lock);
        if (stop_requested(s, errp)) {
            return false;
        }
        pthread_mutex_lock(&s->lock);
        if (s->qlen == 0 && s->in_use) {
            pthread_cond_wait(&s->cond, &s->lock);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return ok;
}

/* Capture the pages of unit u of b, which the saver owns. */
static bool save_unit(BgSnapshot *s, BgBlock *b, size_t u, Error **errp)
{
    size_t i, end = MIN((u + 1) * b->unit, b->npages);

    for (i = u * b->unit; i < end; i++) {
        if (test_and_set_bit_atomic(i, b->saved)) {
            continue;
        }
        if (test_bit(i, b->skip)) {
            stat_add(&s->st_skipped, b->page_size / BG_SNAPSHOT_PAGE_SIZE);
        } else if (!sink_host_page(s, b, i, b->host + i * b->page_size, errp)) {
            /* Still protected and ours: the guest cannot change it now. */
            return false;
        }
        set_bit_atomic(i, b->done);
    }
    return true;
}

/* Unprotect [first, end), a run of the saver's own units. */
static void unprotect_saver_run(BgSnapshot *s, BgBlock *b, size_t first,
                                size_t end)
{
    size_t p;

    if (unprotect_range(s, b, first, end)) {
        for (p = first; p < end; p += b->unit) {
            huge_repair_unit_done(&b->repair, p);
        }
    }
}

/*
 * Capture the units of [first, end) of b (unit aligned) that no fault
 * thread owns, and unprotect each run of them with one call.  Only the
 * saver's own units: a fault thread's unit may be half copied, and lifting
 * part of it would both expose uncopied pages and split a huge page.
 */
static bool save_batch(BgSnapshot *s, BgBlock *b, size_t first, size_t end,
                       Error **errp)
{
    size_t u, run = first;

    for (u = first / b->unit; u * b->unit < end; u++) {
        if (test_and_set_bit_atomic(u, b->owned)) {
            /* A fault thread has it, so its region's mapping is split. */
            unprotect_saver_run(s, b, run, u * b->unit);
            huge_repair_note_split(&b->repair, u * b->unit);
            run = MIN((u + 1) * b->unit, end);
            continue;
        }
        if (!save_unit(s, b, u, errp)) {
            return false;
        }
    }
    unprotect_saver_run(s, b, run, end);
    return true;
}

/* Pages given to the sink so far, data and zero pages alike. */
static uint64_t pages_given(BgSnapshot *s)
{
    return ATOMIC_GET(&s->st_normal) + ATOMIC_GET(&s->st_zero);
}

void bg_snapshot_set_pace(BgSnapshot *s, BgSnapshotPace pace)
{
    s->pace = pace;
}

/*
 * After a batch of the scan, with none of its pages protected: hold the
 * scan back for as long as the pace asks, but not the fault copies.  They
 * are saved as they are queued, so that faults waiting for pool room are
 * not made to wait out a rate limit too (QEMU likewise serves the pages
 * its writers wait for ahead of the limit).  Their bytes still count
 * against the limit, so the scan waits that much longer.
 */
static bool pace_scan(BgSnapshot *s, Error **errp)
{
    uint64_t us;

    while (s->pace && (us = s->pace(s->opaque)) > 0) {
        struct timespec until;
        uint64_t ns;

        if (!drain_queue(s, false, errp) || stop_requested(s, errp)) {
            return false;
        }
        clock_gettime(CLOCK_MONOTONIC, &until);
        ns = until.tv_nsec + MIN(us, PACE_WAIT_MAX_US) * 1000;
        until.tv_sec += ns / 1000000000;
        until.tv_nsec = ns % 1000000000;
        pthread_mutex_lock(&s->lock);
        if (!s->qlen && !ATOMIC_GET(&s->cancelled) && !ATOMIC_GET(&s->failed)) {
            pthread_cond_timedwait(&s->cond, &s->lock, &until);
        }
        pthread_mutex_unlock(&s->lock);
    }
    return !stop_requested(s, errp);
}

/* The saver's first step: the clock starts and its thread is boosted. */
static void run_begin(BgSnapshot *s)
{
    BgRun *r = &s->run;

    r->started = true;
    r->t0 = now_us();
    r->tid = (pid_t)syscall(SYS_gettid);
    r->nice_was = boost_thread(s, r->tid);
}

/* The saver is done, well or not (also from disarm(), if a step was its last). */
static void run_end(BgSnapshot *s)
{
    BgRun *r = &s->run;

    if (r->started && !r->ended) {
        r->ended = true;
        unboost_thread(s, r->tid, r->nice_was);
        ATOMIC_SET(&s->st_run_us, now_us() - r->t0);
    }
}

/* One batch of the scan at the saver's position, the queued copies first. */
static bool run_batch(BgSnapshot *s, BgBlock *b, size_t batch, Error **errp)
{
    size_t pos = s->run.pos;
    uint64_t given;

    if (!drain_queue(s, false, errp) || stop_requested(s, errp)) {
        return false;
    }
    given = pages_given(s);
    if (!save_batch(s, b, pos, MIN(pos + batch, b->npages), errp)) {
        return false;
    }
    huge_repair_run(&b->repair, false);
    /*
     * Only a batch that wrote something waits: once faults have taken
     * everything, the limit has nothing left to hold back.
     */
    return pages_given(s) == given || pace_scan(s, errp);
}

int bg_snapshot_run_step(BgSnapshot *s, uint64_t max_pages, Error **errp)
{
    BgRun *r = &s->run;
    uint64_t first = pages_given(s);

    if (!s->armed || r->ended) {
        error_setg(errp, "background-snapshot: %s", r->ended ? "run after its end"
                                                            : "run before arm");
        return -1;
    }
    if (!r->started) {
        run_begin(s);
    }
    while (r->block < s->nblocks) {
        BgBlock *b = &s->blocks[r->block];
        size_t batch = MAX(1, s->cfg.batch_bytes / b->page_size);

        batch = (batch + b->unit - 1) / b->unit * b->unit;     /* whole units */
        if (r->pos >= b->npages) {
            r->block++;
            r->pos = 0;
            continue;
        }
        /* Between batches the saver holds no page protected: a good place to stop. */
        if (pages_given(s) - first >= max_pages) {
            return 0;
        }
        if (!run_batch(s, b, batch, errp)) {
            run_end(s);
            return -1;
        }
        r->pos += batch;
    }
    if (!drain_queue(s, true, errp) || stop_requested(s, errp)) {
        run_end(s);
        return -1;
    }
    for (int bi = 0; bi < s->nblocks; bi++) {
        huge_repair_run(&s->blocks[bi].repair, true);   /* every owner is idle */
    }
    run_end(s);
    return 1;
}

bool bg_snapshot_run(BgSnapshot *s, Error **errp)
{
    return bg_snapshot_run_step(s, UINT64_MAX, errp) > 0;
}

void bg_snapshot_cancel(BgSnapshot *s)
{
    ATOMIC_SET(&s->cancelled, 1);
    pthread_mutex_lock(&s->lock);
    pthread_cond_broadcast(&s->cond);
    /*
     * The snapshot is abandoned, so torn copies no longer matter: release
     * the writers now rather than after the saver notices (it may be stuck
     * in the sink on a slow disk).
     */
    if (s->armed) {
        unprotect_all(s);
    }
    pthread_mutex_unlock(&s->lock);
}

/* --- stats --- */

static uint64_t stall_percentile(const uint64_t *hist, uint64_t total,
                                 uint64_t max, double pct)
{
    uint64_t want = (uint64_t)(total * pct + 0.999999), seen = 0;
    int i;

    if (!total) {
        return 0;
    }
    for (i = 0; i < BG_STALL_BUCKETS; i++) {
        seen += hist[i];
        if (seen >= want) {
            return MIN((uint64_t)2 << i, max);
        }
    }
    return max;
}

void bg_snapshot_get_stats(BgSnapshot *s, BgSnapshotStats *st)
{
    uint64_t total = 0;
    int i;

    memset(st, 0, sizeof(*st));
    st->pages_normal = ATOMIC_GET(&s->st_normal);
    st->pages_zero = ATOMIC_GET(&s->st_zero);
    st->pages_skipped = ATOMIC_GET(&s->st_skipped);
    st->bytes = ATOMIC_GET(&s->st_bytes);
    st->faults = ATOMIC_GET(&s->st_faults);
    st->fault_pages = ATOMIC_GET(&s->st_fault_pages);
    st->unprotects = ATOMIC_GET(&s->st_unprotects);
    for (i = 0; i < s->nblocks; i++) {
        st->huge_pages_restored += ATOMIC_GET(&s->blocks[i].repair.collapsed);
    }
    st->pool_high_water = ATOMIC_GET(&s->st_pool_hw);
    pthread_mutex_lock(&s->lock);
    st->pool_size = (uint64_t)s->nslots * s->slot_size;
    pthread_mutex_unlock(&s->lock);
    st->pause_us = ATOMIC_GET(&s->st_pause_us);
    st->run_us = ATOMIC_GET(&s->st_run_us);
    st->stall_max_us = ATOMIC_GET(&s->st_stall_max);
    for (i = 0; i < BG_STALL_BUCKETS; i++) {
        st->stall_hist[i] = ATOMIC_GET(&s->st_hist[i]);
        total += st->stall_hist[i];
    }
    st->stalls = total;
    st->stall_p50_us = stall_percentile(st->stall_hist, total,
                                        st->stall_max_us, 0.50);
    st->stall_p99_us = stall_percentile(st->stall_hist, total,
                                        st->stall_max_us, 0.99);
}
