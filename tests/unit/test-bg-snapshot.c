/*
 * Background snapshot engine: the image must equal the memory as it was at
 * the arm, byte for byte, while writer threads keep writing.
 *
 * Writers play the vCPUs of the built-in guest's wave workload: each owns a
 * partition and writes its pages in order, pass after pass, stamping the
 * first and last 8 bytes of each page and a progress record in page 0.  The
 * test parks them (flag + condition: the vCPUs are paused), copies the
 * whole region as the reference, arms, resumes them, runs the saver into an
 * in-memory image and compares.  Tables over memory type x WP_UNPOPULATED
 * x engine knobs; a kernel or filesystem without a feature is a skip.
 *
 * "test-bg-snapshot --soak N [--seed S]" runs N snapshots, each with a
 * memory type, write-protect mode, pool, unit, batch, fault threads and
 * stepping drawn at random (from S: a failure names it, to rerun): most
 * run to the end and are checked as the equality tests check theirs, one
 * in ten is cancelled and one in ten meets a sink error, checked as those
 * tests check theirs.  It prints its counts (`make soak`).
 *
 * "test-bg-snapshot --bench [--chunk=KiB] [--batch=KiB] [--pool=KiB]
 * [--threads=N] [--populate] [--thp] [--mib=N] [--mbps=N]" measures the writer
 * throughput kept during a snapshot of 256 MiB hammered by 2 threads.
 */
#include "migration/bg-engine.h"
#include "migration/ram.h"
#include "test-helpers.h"
#include "util/bitmap.h"
#include "util/uffd.h"

#include <inttypes.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <glib.h>

#define PAGE BG_SNAPSHOT_PAGE_SIZE
#define MAX_WRITERS 8

typedef enum MemType {
    MEM_ANON,
    MEM_ANON_THP,
    MEM_MEMFD,
    MEM_SHM_FILE,
} MemType;

static const char *mem_name(MemType t)
{
    static const char *names[] = { "anon", "anon-thp", "memfd", "shm-file" };
    return names[t];
}

/* ---------------------------------------------------------------- memory */

typedef struct TestMem {
    RAMBlock rb;
    size_t len;
} TestMem;

/* Map len bytes of type t as a RAM block; false with *why on a skip. */
static bool mem_create(TestMem *m, MemType t, size_t len, char **why)
{
    void *p = MAP_FAILED;
    int fd = -1;

    memset(m, 0, sizeof(*m));
    m->len = len;
    if (t == MEM_MEMFD) {
        fd = memfd_create("amber-bgs", MFD_CLOEXEC);
    } else if (t == MEM_SHM_FILE) {
        char path[] = "/dev/shm/amber-bgs-XXXXXX";

        fd = g_mkstemp(path);
        if (fd >= 0) {
            unlink(path);
        }
    }
    if (t == MEM_ANON || t == MEM_ANON_THP) {
        /* 2 MiB aligned, so THP can back it. */
        size_t extra = 2 << 20;
        uint8_t *raw = mmap(NULL, len + extra, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (raw != MAP_FAILED) {
            uint8_t *al = (uint8_t *)(((uintptr_t)raw + extra - 1) & ~(extra - 1));

            if (al > raw) {
                munmap(raw, al - raw);
            }
            munmap(al + len, raw + extra - al);
            p = al;
            madvise(p, len, t == MEM_ANON_THP ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
        }
    } else if (fd >= 0 && ftruncate(fd, len) == 0) {
        p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    }
    if (p == MAP_FAILED) {
        *why = g_strdup_printf("cannot map %s memory: %s", mem_name(t),
                               g_strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return false;
    }
    g_strlcpy(m->rb.idstr, "pc.ram", sizeof(m->rb.idstr));
    m->rb.host = p;
    m->rb.used_length = m->rb.max_length = len;
    m->rb.page_size = PAGE;
    m->rb.fd = fd;
    m->rb.kind = fd >= 0 ? RAM_BACKEND_MEMFD : RAM_BACKEND_RAM;
    m->rb.shared = fd >= 0;
    return true;
}

static void mem_destroy(TestMem *m)
{
    munmap(m->rb.host, m->len);
    if (m->rb.fd >= 0) {
        close(m->rb.fd);
    }
}

/* ------------------------------------------------------------- the wave */

typedef struct Wave Wave;

typedef struct Writer {
    Wave *w;
    int id;
    pthread_t tid;
    uint64_t pages;             /* atomic: pages written */
} Writer;

struct Wave {
    uint8_t *base;
    size_t part_pages;          /* pages per writer partition */
    size_t part_first;          /* first page of partition 0 */
    int nwriters;
    int max_passes;             /* 0: until stopped */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int pause_req;              /* atomic */
    int parked;
    int finished;               /* writers that returned */
    int stop;                   /* atomic */
    Writer writers[MAX_WRITERS];
};

/*
 * The store a vCPU makes.  Not instrumented under ThreadSanitizer: guest
 * writes happen inside KVM, unseen by it, and are ordered against the
 * engine's copies by write protection, which it cannot see either.
 */
__attribute__((no_sanitize("thread"), noinline))
static void guest_store(uint8_t *page, uint64_t stamp, uint64_t *progress,
                        uint64_t pass, uint64_t index)
{
    *(volatile uint64_t *)page = stamp;
    *(volatile uint64_t *)(page + PAGE - 8) = stamp;
    *(volatile uint64_t *)&progress[0] = pass;
    *(volatile uint64_t *)&progress[1] = index;
}

/* A single guest byte flip, uninstrumented for the same reason. */
__attribute__((no_sanitize("thread"), noinline))
static void guest_flip(uint8_t *byte)
{
    *(volatile uint8_t *)byte ^= 0xff;
}

static void writer_park(Wave *w)
{
    pthread_mutex_lock(&w->lock);
    w->parked++;
    pthread_cond_broadcast(&w->cond);
    while (__atomic_load_n(&w->pause_req, __ATOMIC_ACQUIRE)) {
        pthread_cond_wait(&w->cond, &w->lock);
    }
    w->parked--;
    pthread_mutex_unlock(&w->lock);
}

static void writer_loop(Writer *wr);

static void *writer_fn(void *opaque)
{
    Writer *wr = opaque;
    Wave *w = wr->w;

    writer_loop(wr);
    pthread_mutex_lock(&w->lock);
    w->finished++;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static void writer_loop(Writer *wr)
{
    Wave *w = wr->w;
    uint8_t *part = w->base + (w->part_first + wr->id * w->part_pages) * PAGE;
    uint64_t *progress = (uint64_t *)(w->base + wr->id * 64);
    uint64_t pass;

    for (pass = 1; !w->max_passes || pass <= (uint64_t)w->max_passes; pass++) {
        for (size_t i = 0; i < w->part_pages; i++) {
            if (__atomic_load_n(&w->pause_req, __ATOMIC_ACQUIRE)) {
                writer_park(w);
            }
            if (__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
                return;
            }
            guest_store(part + i * PAGE,
                        ((uint64_t)wr->id << 56) | (pass << 32) | i,
                        progress, pass, i);
            __atomic_fetch_add(&wr->pages, 1, __ATOMIC_RELAXED);
        }
    }
}

static void wave_start(Wave *w, uint8_t *base, size_t part_first,
                       size_t part_pages, int nwriters, int max_passes)
{
    memset(w, 0, sizeof(*w));
    w->base = base;
    w->part_first = part_first;
    w->part_pages = part_pages;
    w->nwriters = nwriters;
    w->max_passes = max_passes;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    for (int i = 0; i < nwriters; i++) {
        w->writers[i] = (Writer){ .w = w, .id = i };
        pthread_create(&w->writers[i].tid, NULL, writer_fn, &w->writers[i]);
    }
}

/* Park every writer that is still running ("the vCPUs are paused"). */
static void wave_pause(Wave *w)
{
    pthread_mutex_lock(&w->lock);
    __atomic_store_n(&w->pause_req, 1, __ATOMIC_RELEASE);
    while (w->parked + w->finished < w->nwriters) {
        pthread_cond_wait(&w->cond, &w->lock);
    }
    pthread_mutex_unlock(&w->lock);
}

static void wave_resume(Wave *w)
{
    pthread_mutex_lock(&w->lock);
    __atomic_store_n(&w->pause_req, 0, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static void wave_join(Wave *w, bool stop)
{
    if (stop) {
        __atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
    }
    wave_resume(w);
    for (int i = 0; i < w->nwriters; i++) {
        pthread_join(w->writers[i].tid, NULL);
    }
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
}

static uint64_t wave_pages(Wave *w)
{
    uint64_t n = 0;

    for (int i = 0; i < w->nwriters; i++) {
        n += __atomic_load_n(&w->writers[i].pages, __ATOMIC_RELAXED);
    }
    return n;
}

/* ------------------------------------------------------------ the image */

typedef struct Image {
    RAMBlock *rb;
    uint8_t *buf;
    size_t len;
    unsigned long *seen;
    uint64_t calls;             /* atomic */
    int duplicates;
    int bad_offsets;
    uint64_t fail_after;        /* 0: never; else fail this call (disk full) */
    unsigned slow_us;           /* sleep per page (a slow disk) */
    uint64_t paces;             /* pace calls (run()'s thread only) */
    int pace_violations;        /* ...made with a page it got still protected */
    int holds;                  /* scan batches still to hold back */
    uint64_t hold_calls;        /* im->calls when the current hold began */
    int hold_asks;              /* pace calls in the current hold */
    int holds_released;         /* holds that saw a fault copy saved */
    int holds_stuck;            /* holds that gave up waiting for one */
} Image;

static bool image_put(void *opaque, RAMBlock *rb, uint64_t offset,
                      const uint8_t *data, Error **errp)
{
    Image *im = opaque;
    uint64_t n = __atomic_add_fetch(&im->calls, 1, __ATOMIC_RELAXED);

    if (im->fail_after && n >= im->fail_after) {
        error_setg_errno(errp, ENOSPC, "cannot write the snapshot");
        return false;
    }
    if (rb != im->rb || offset % PAGE || offset >= im->len) {
        im->bad_offsets++;
        return true;
    }
    if (test_bit(offset / PAGE, im->seen)) {
        im->duplicates++;
    }
    set_bit(offset / PAGE, im->seen);
    if (data) {
        memcpy(im->buf + offset, data, PAGE);
    } else {
        memset(im->buf + offset, 0, PAGE);
    }
    if (im->slow_us) {
        g_usleep(im->slow_us);
    }
    return true;
}

static void image_init(Image *im, RAMBlock *rb, size_t len)
{
    memset(im, 0, sizeof(*im));
    im->rb = rb;
    im->len = len;
    im->buf = g_malloc0(len);
    im->seen = bitmap_new(len / PAGE);
}

static void image_free(Image *im)
{
    g_free(im->buf);
    bitmap_free(im->seen);
}

/* Byte-for-byte equality, with the first differing page described. */
static void assert_image_equals(const Image *im, const uint8_t *ref)
{
    for (size_t p = 0; p < im->len / PAGE; p++) {
        const uint8_t *a = im->buf + p * PAGE, *b = ref + p * PAGE;

        if (memcmp(a, b, PAGE)) {
            uint64_t a0, b0, a1, b1;

            memcpy(&a0, a, 8);
            memcpy(&b0, b, 8);
            memcpy(&a1, a + PAGE - 8, 8);
            memcpy(&b1, b + PAGE - 8, 8);
            g_error("page %zu differs: image %016" G_GINT64_MODIFIER "x/%016"
                    G_GINT64_MODIFIER "x, reference %016" G_GINT64_MODIFIER
                    "x/%016" G_GINT64_MODIFIER "x (seen %d)", p, a0, a1, b0,
                    b1, test_bit(p, im->seen));
        }
    }
}

/* ------------------------------------------------------------- helpers */

static bool kernel_can(uint64_t need, MemType t, char **why)
{
    uint64_t have;
    Error *err = NULL;

    if (!bg_snapshot_kernel_features(&have, &err)) {
        *why = g_strdup(error_get_pretty(err));
        error_free(err);
        return false;
    }
    if (t == MEM_MEMFD || t == MEM_SHM_FILE) {
        need |= UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
    }
    if ((need & have) != need) {
        char *names = uffd_features_to_str(need & ~have);

        *why = g_strdup_printf("userfaultfd lacks %s", names);
        g_free(names);
        return false;
    }
    return true;
}

/*
 * Memory of type t that the kernel can write-protect, or the test is
 * skipped with the reason (false: return at once).
 */
static bool wp_mem_or_skip(TestMem *m, MemType t, size_t len)
{
    char *why = NULL;

    if (!kernel_can(UFFD_FEATURE_PAGEFAULT_FLAG_WP, t, &why) ||
        !mem_create(m, t, len, &why)) {
        g_test_skip(why);
        g_free(why);
        return false;
    }
    return true;
}

static void assert_no_wp(TestMem *m)
{
    g_assert_cmpint(pagemap_any_wp(0, (uintptr_t)m->rb.host, m->len, NULL), ==, 0);
}

/* KiB of transparent huge pages backing the mapping that holds addr. */
static uint64_t thp_kib(const void *addr)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[256];
    bool inside = false;
    uint64_t kib = 0;

    g_assert_nonnull(f);
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;

        size_t tok = strcspn(line, " ");

        if (memchr(line, '-', tok) && sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
            inside = lo <= (uintptr_t)addr && (uintptr_t)addr < hi;
        } else if (inside && sscanf(line, "AnonHugePages: %" SCNu64, &kib) == 1) {
            break;
        }
    }
    fclose(f);
    return kib;
}

#define WP_UNPOPULATED_OFF_MASK "0xffffffffffffdfff"   /* clears bit 13 */

/* ----------------------------------------------------- equality tests */

typedef struct EqCase {
    MemType mem;
    bool wp_unpopulated;
    bool tiny_pool;
} EqCase;

/*
 * The reference.  Reading a memfd hole through the mapping would allocate
 * the page and make it populated; pread() returns its zeros without.
 */
static void ref_copy(TestMem *m, uint8_t *ref)
{
    if (m->rb.fd < 0) {
        memcpy(ref, m->rb.host, m->len);
    } else {
        g_assert_cmpint(pread(m->rb.fd, ref, m->len, 0), ==, m->len);
    }
}

#define REGION_MIB 8
#define NWRITERS 4

/*
 * Whether reading a never-written anonymous page maps the shared zero
 * page (most kernels) rather than allocating one (some hosts run without
 * it).  Only then does the reference copy leave untouched pages
 * unpopulated, for the snapshot to skip.
 */
static bool read_maps_zero_page(void)
{
    static int answer = -1;

    if (answer < 0) {
        uint8_t *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        RAMBlock rb = { .host = p, .used_length = PAGE, .fd = -1, .page_size = PAGE };
        unsigned long map = 0;
        int fd = pagemap_open(0, NULL);

        g_assert_true(p != MAP_FAILED);
        (void)*(volatile uint8_t *)p;
        answer = fd >= 0 && ram_populated(&rb, fd, PAGE, 0, 1, &map) && !map;
        if (fd >= 0) {
            close(fd);
        }
        munmap(p, PAGE);
    }
    return answer;
}

/*
 * Region layout (pages): [0] progress records, then NWRITERS partitions,
 * then a tail that is partly read (zero page), partly written with zeros,
 * partly never touched.
 */
static void one_snapshot(const EqCase *c, TestMem *m, int iter)
{
    size_t npages = m->len / PAGE, tail = npages / 8;
    size_t part = (npages - 1 - tail) / NWRITERS;
    uint8_t *base = m->rb.host, *ref = g_malloc(m->len);
    size_t tail_first = 1 + part * NWRITERS;
    BgSnapshotConfig cfg;
    BgSnapshotStats st;
    RAMBlock *blocks[1] = { &m->rb };
    BgSnapshot *s;
    Image im;
    Wave w;
    Error *err = NULL;
    uint64_t thp_before;
    static const size_t chunks[] = { 4 << 10, 64 << 10, 2 << 20, 256 << 10 };
    static const size_t batches[] = { 4 << 10, 256 << 10, 1 << 20 };

    for (size_t i = 0; i < tail / 3; i++) {
        (void)*(volatile uint8_t *)(base + (tail_first + i) * PAGE);
    }
    memset(base + (tail_first + tail / 3) * PAGE, 0, (tail / 3) * PAGE);
    wave_start(&w, base, 1, part, NWRITERS, 0);
    /* Early iterations catch pass 1 with most of it unpopulated. */
    g_usleep(iter % 4 == 0 ? 0 : g_random_int_range(100, 3000));
    wave_pause(&w);
    ref_copy(m, ref);

    bg_snapshot_config_default(&cfg);
    cfg.use_wp_unpopulated = c->wp_unpopulated;
    cfg.fault_threads = 1 + iter % 2;
    cfg.chunk_bytes = chunks[iter % G_N_ELEMENTS(chunks)];
    cfg.batch_bytes = batches[iter % G_N_ELEMENTS(batches)];
    if (c->tiny_pool) {
        cfg.pool_bytes = PAGE;
    }
    thp_before = thp_kib(base);
    image_init(&im, &m->rb, m->len);
    s = bg_snapshot_new(blocks, 1, &cfg, image_put, &im, &error_abort);
    g_assert_cmpint(bg_snapshot_uses_wp_unpopulated(s), ==, c->wp_unpopulated);
    g_assert_true(bg_snapshot_arm(s, &err));
    wave_resume(&w);
    if (iter % 3 == 1) {
        /* In steps, as the migration thread runs it: writers go on in between. */
        int ret;

        while ((ret = bg_snapshot_run_step(s, g_random_int_range(1, 3000), &err)) == 0) {
            g_usleep(g_random_int_range(0, 200));
        }
        g_assert_cmpint(ret, ==, 1);
    } else {
        g_assert_true(bg_snapshot_run(s, &err));
    }
    bg_snapshot_disarm(s);
    assert_no_wp(m);
    /*
     * Whole 2 MiB units are captured and unprotected at once, so no huge
     * page is split (a split one would stay 4 KiB after the snapshot).
     */
    if (cfg.chunk_bytes == 2 << 20 && !c->tiny_pool) {
        g_assert_cmpuint(thp_kib(base), >=, thp_before);
    }
    bg_snapshot_get_stats(s, &st);
    bg_snapshot_free(s);
    wave_join(&w, true);

    g_assert_cmpint(im.duplicates, ==, 0);
    g_assert_cmpint(im.bad_offsets, ==, 0);
    g_assert_cmpuint(bitmap_count_range(im.seen, 0, npages) + st.pages_skipped,
                     ==, npages);
    g_assert_cmpuint(st.pages_normal + st.pages_zero, ==, im.calls);
    /*
     * Never touched: skipped, not read (the image stays small).  Under THP
     * a write populates its whole 2 MiB, so those pages are zero instead.
     */
    g_assert_cmpuint(st.pages_skipped + st.pages_zero, >=, tail - 2 * (tail / 3));
    /* Unless the reference copy populated every page: nothing is left to skip. */
    if (c->mem != MEM_ANON_THP && (m->rb.fd >= 0 || read_maps_zero_page())) {
        g_assert_cmpuint(st.pages_skipped, >=, tail - 2 * (tail / 3));
    }
    if (c->tiny_pool) {
        g_assert_cmpuint(st.pool_high_water, <=, PAGE);
    }
    assert_image_equals(&im, ref);
    if (g_test_verbose()) {
        g_test_message("iter %d: normal %" G_GUINT64_FORMAT " zero %"
                       G_GUINT64_FORMAT " skipped %" G_GUINT64_FORMAT
                       " faults %" G_GUINT64_FORMAT " p99 %" G_GUINT64_FORMAT
                       "us pause %" G_GUINT64_FORMAT "us", iter,
                       st.pages_normal, st.pages_zero, st.pages_skipped,
                       st.faults, st.stall_p99_us, st.pause_us);
    }
    image_free(&im);
    g_free(ref);
}

static void test_equality(gconstpointer opaque)
{
    const EqCase *c = opaque;
    int iters = c->tiny_pool ? 6 : 20;
    char *why = NULL;
    uint64_t need = UFFD_FEATURE_PAGEFAULT_FLAG_WP |
                    (c->wp_unpopulated ? UFFD_FEATURE_WP_UNPOPULATED : 0);

    if (!c->wp_unpopulated) {
        /* Simulate a kernel without it through the documented knob. */
        g_setenv(BG_SNAPSHOT_FEATURES_MASK_ENV, WP_UNPOPULATED_OFF_MASK, TRUE);
    }
    if (!kernel_can(need, c->mem, &why)) {
        g_test_skip(why);
        g_free(why);
        g_unsetenv(BG_SNAPSHOT_FEATURES_MASK_ENV);
        return;
    }
    for (int i = 0; i < iters; i++) {
        TestMem m;

        if (!mem_create(&m, c->mem, REGION_MIB << 20, &why)) {
            g_test_skip(why);
            g_free(why);
            break;
        }
        one_snapshot(c, &m, i);
        mem_destroy(&m);
    }
    g_unsetenv(BG_SNAPSHOT_FEATURES_MASK_ENV);
}

/* ---------------------------------------------- cancel and sink errors */

typedef struct RepairCase {
    size_t chunk;
    bool cancel;                /* before the saver runs: it reaches nothing */
} RepairCase;

/*
 * Units smaller than a huge page split its mapping when a fault lifts the
 * protection of one of them; once every unit of the region is captured
 * the engine collapses it again, so the guest gets its huge pages back,
 * also when the snapshot is cancelled before the saver got there.  With
 * 2 MiB units nothing is split and nothing needs repair.
 */
static const RepairCase repair_cases[] = {
    { 64 << 10, false }, { 4 << 10, false }, { 2 << 20, false }, { 64 << 10, true },
};

static void test_huge_repair(gconstpointer opaque)
{
    const RepairCase *c = opaque;
    size_t chunk = c->chunk, len = 8 << 20, nregions = len >> 21;
    BgSnapshotConfig cfg;
    BgSnapshotStats st;
    RAMBlock *blocks[1];
    BgSnapshot *s;
    TestMem m;
    Image im;
    uint8_t *ref;
    uint64_t thp_before;

    if (!wp_mem_or_skip(&m, MEM_ANON_THP, len)) {
        return;
    }
    for (size_t p = 0; p < len / PAGE; p++) {
        memset(m.rb.host + p * PAGE, (int)(p % 251) + 1, PAGE);
    }
    thp_before = thp_kib(m.rb.host);
    if (thp_before < len >> 10) {
        g_test_skip("no transparent huge pages for this mapping");
        mem_destroy(&m);
        return;
    }
    ref = g_memdup2(m.rb.host, len);
    blocks[0] = &m.rb;
    bg_snapshot_config_default(&cfg);
    cfg.chunk_bytes = chunk;
    cfg.pool_bytes = len;       /* the faults come before the saver drains */
    image_init(&im, &m.rb, len);
    s = bg_snapshot_new(blocks, 1, &cfg, image_put, &im, &error_abort);
    g_assert_true(bg_snapshot_arm(s, &error_abort));
    /* One write in the middle of each region, served before the scan. */
    for (size_t r = 0; r < nregions; r++) {
        guest_flip(m.rb.host + (r << 21) + (1 << 20) + 123);
    }
    if (c->cancel) {
        Error *err = NULL;

        bg_snapshot_cancel(s);
        g_assert_false(bg_snapshot_run(s, &err));
        error_free(err);
    } else {
        g_assert_true(bg_snapshot_run(s, &error_abort));
    }
    bg_snapshot_disarm(s);
    bg_snapshot_get_stats(s, &st);
    bg_snapshot_free(s);

    if (!c->cancel) {
        assert_image_equals(&im, ref);
    }
    assert_no_wp(&m);
    g_assert_cmpuint(st.faults, ==, nregions);
    g_assert_cmpuint(st.huge_pages_restored, ==, chunk < (2 << 20) ? nregions : 0);
    g_assert_cmpuint(thp_kib(m.rb.host), ==, thp_before);
    for (size_t r = 0; r < nregions; r++) {
        g_assert_cmpint(m.rb.host[(r << 21) + (1 << 20) + 123], ==,
                        ref[(r << 21) + (1 << 20) + 123] ^ 0xff);
    }
    image_free(&im);
    g_free(ref);
    mem_destroy(&m);
}

typedef struct Canceller {
    BgSnapshot *s;
    Image *im;
    uint64_t after;
    int run_returned;
} Canceller;

static void *canceller_fn(void *opaque)
{
    Canceller *c = opaque;

    while (__atomic_load_n(&c->im->calls, __ATOMIC_RELAXED) < c->after &&
           !__atomic_load_n(&c->run_returned, __ATOMIC_ACQUIRE)) {
        g_usleep(100);
    }
    bg_snapshot_cancel(c->s);
    return NULL;
}

/*
 * Writers run a fixed number of passes; the snapshot ends early (cancel
 * from another thread, or a sink error).  Every writer must finish, with
 * no protection left.
 */
static void interrupted_run(MemType t, bool cancel)
{
    TestMem m;
    Wave w;
    Image im;
    BgSnapshotConfig cfg;
    RAMBlock *blocks[1];
    BgSnapshot *s;
    Error *err = NULL;
    pthread_t ct;
    Canceller c;
    size_t npages;
    bool ok;

    if (!wp_mem_or_skip(&m, t, 8 << 20)) {
        return;
    }
    npages = m.len / PAGE;
    blocks[0] = &m.rb;
    memset(m.rb.host, 0x5a, m.len);     /* every page has data to save */
    wave_start(&w, m.rb.host, 1, (npages - 1) / 2, 2, 50);
    wave_pause(&w);
    bg_snapshot_config_default(&cfg);
    image_init(&im, &m.rb, m.len);
    im.slow_us = 20;
    if (!cancel) {
        im.fail_after = npages / 4;
    }
    s = bg_snapshot_new(blocks, 1, &cfg, image_put, &im, &error_abort);
    g_assert_true(bg_snapshot_arm(s, &error_abort));
    wave_resume(&w);
    if (cancel) {
        c = (Canceller){ s, &im, npages / 4, 0 };
        pthread_create(&ct, NULL, canceller_fn, &c);
    }
    ok = bg_snapshot_run(s, &err);
    if (cancel) {
        __atomic_store_n(&c.run_returned, 1, __ATOMIC_RELEASE);
        pthread_join(ct, NULL);
    }
    g_assert_false(ok);
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(error_get_pretty(err),
                            cancel ? "cancelled" : g_strerror(ENOSPC)));
    error_free(err);
    bg_snapshot_disarm(s);
    assert_no_wp(&m);
    g_assert_cmpuint(im.calls, <, npages);
    bg_snapshot_free(s);
    /* All writers finish their passes (none is left blocked on a fault). */
    wave_join(&w, false);
    g_assert_cmpuint(wave_pages(&w), ==, 2 * 50 * ((npages - 1) / 2));
    image_free(&im);
    mem_destroy(&m);
}

static void test_cancel(gconstpointer opaque)
{
    interrupted_run(GPOINTER_TO_INT(opaque), true);
}

static void test_sink_error(gconstpointer opaque)
{
    interrupted_run(GPOINTER_TO_INT(opaque), false);
}

/* ------------------------------------------------------------ steps */

/*
 * run in steps: each step gives at least its budget (whole batches), the
 * last one says 1 once every page went out, and the run cannot go on after
 * its end.  Stopping between steps and disarming leaves nothing protected.
 */
static void test_steps(void)
{
    const size_t len = 8u << 20;
    const uint64_t npages = len / PAGE;
    BgSnapshotConfig cfg;
    RAMBlock *blocks[1];
    BgSnapshotStats st;
    Error *err = NULL;
    TestMem m;
    Image im;
    BgSnapshot *s;
    uint64_t given = 0;
    int ret, steps = 0;

    if (!wp_mem_or_skip(&m, MEM_ANON, len)) {
        return;
    }
    blocks[0] = &m.rb;
    memset(m.rb.host, 0x5a, len);
    bg_snapshot_config_default(&cfg);
    cfg.chunk_bytes = 64 << 10;
    cfg.batch_bytes = 1 << 20;                  /* 256 pages a batch */
    image_init(&im, &m.rb, len);
    s = bg_snapshot_new(blocks, 1, &cfg, image_put, &im, &error_abort);
    g_assert_true(bg_snapshot_arm(s, &error_abort));
    while ((ret = bg_snapshot_run_step(s, 300, &error_abort)) == 0) {
        steps++;
        /* 300 pages are two batches: never fewer, never a third. */
        g_assert_cmpuint(im.calls - given, ==, 512);
        given = im.calls;
    }
    g_assert_cmpint(ret, ==, 1);
    g_assert_cmpint(steps, ==, npages / 512 - 1);
    g_assert_cmpuint(im.calls, ==, npages);
    g_assert_cmpint(bg_snapshot_run_step(s, 300, &err), ==, -1);
    assert_error_contains(&err, "run after its end");
    bg_snapshot_disarm(s);
    bg_snapshot_get_stats(s, &st);
    g_assert_cmpuint(st.pages_normal, ==, npages);
    g_assert_cmpint(im.duplicates, ==, 0);
    bg_snapshot_free(s);
    image_free(&im);

    /* Abandoned after one step: disarm lifts the protection of the rest. */
    image_init(&im, &m.rb, len);
    s = bg_snapshot_new(blocks, 1, &cfg, image_put, &im, &error_abort);
    g_assert_true(bg_snapshot_arm(s, &error_abort));
    g_assert_cmpint(bg_snapshot_run_step(s, 1, &error_abort), ==, 0);
    g_assert_cmpuint(im.calls, ==, 256);
    bg_snapshot_disarm(s);
    assert_no_wp(&m);
    bg_snapshot_get_stats(s, &st);
    g_assert_cmpuint(st.run_us, >, 0);
    bg_snapshot_free(s);
    image_free(&im);
    mem_destroy(&m);
}

/* ------------------------------------------------------------ pacing */

/* Checked calls: each walks the pagemap of every page given so far. */
#define PACE_CHECKS 400
/* A hold that sees no fault copy saved in this many asks (1 ms each) is stuck. */
#define HOLD_ASKS_MAX 5000

/*
 * A rate limit: it must only be asked where no page the saver took is still
 * write-protected (every page the sink has had must be writable, or a guest
 * write to it would wait out the limit), and while it holds the scan back
 * the fault copies must still be saved: the first im->holds batches that
 * wrote something are each held until the sink has had one more page.
 */
static uint64_t pace_check(void *opaque)
{
    Image *im = opaque;
    size_t npages = im->len / PAGE, p = 0;

    /* A new ask after a batch (not a repeat within a hold): check it. */
    while (!im->hold_asks && im->paces++ < PACE_CHECKS && p < npages) {
        size_t first = find_next_bit(im->seen, npages, p), end;

        if (first >= npages) {
            break;
        }
        end = find_next_zero_bit(im->seen, npages, first);
        if (pagemap_any_wp(0, (uintptr_t)im->rb->host + first * PAGE,
                           (end - first) * PAGE, &error_abort)) {
            im->pace_violations++;
        }
        p = end;
    }
    if (!im->holds) {
        return 0;
    }
    if (!im->hold_asks++) {
        im->hold_calls = __atomic_load_n(&im->calls, __ATOMIC_RELAXED);
    } else if (__atomic_load_n(&im->calls, __ATOMIC_RELAXED) > im->hold_calls ||
               im->hold_asks > HOLD_ASKS_MAX) {
        im->holds_released += im->hold_asks <= HOLD_ASKS_MAX;
        im->holds_stuck += im->hold_asks > HOLD_ASKS_MAX;
        im->holds--;
        im->hold_asks = 0;
        return 0;
    }
    return 1000;
}

static void test_pace(void)
{
    TestMem m;
    Wave w;
    Image im;
    BgSnapshotConfig cfg;
    RAMBlock *blocks[1];
    BgSnapshot *s;
    size_t npages;
    uint8_t *ref;

    if (!wp_mem_or_skip(&m, MEM_ANON, REGION_MIB << 20)) {
        return;
    }
    npages = m.len / PAGE;
    blocks[0] = &m.rb;
    ref = g_malloc(m.len);
    memset(m.rb.host, 0x5a, m.len);
    wave_start(&w, m.rb.host, 1, (npages - 1) / NWRITERS, NWRITERS, 0);
    g_usleep(1000);
    wave_pause(&w);
    ref_copy(&m, ref);
    bg_snapshot_config_default(&cfg);
    cfg.chunk_bytes = 64 << 10;         /* several units per batch */
    cfg.batch_bytes = 1 << 20;
    cfg.pool_bytes = 256 << 10;         /* full at once: writers wait for room */
    image_init(&im, &m.rb, m.len);
    im.holds = 1;       /* the first batch: writers surely still fault then */
    s = bg_snapshot_new(blocks, 1, &cfg, image_put, &im, &error_abort);
    bg_snapshot_set_pace(s, pace_check);
    g_assert_true(bg_snapshot_arm(s, &error_abort));
    wave_resume(&w);
    g_assert_true(bg_snapshot_run(s, &error_abort));
    bg_snapshot_disarm(s);
    assert_no_wp(&m);
    bg_snapshot_free(s);
    wave_join(&w, true);
    /* Asked after the batches, never with a page protected. */
    g_assert_cmpuint(im.paces, >=, 1);
    g_assert_cmpint(im.pace_violations, ==, 0);
    /* Held back, the scan still let fault copies through. */
    g_assert_cmpint(im.holds_released, ==, 1);
    g_assert_cmpint(im.holds_stuck, ==, 0);
    g_assert_cmpint(im.duplicates, ==, 0);
    assert_image_equals(&im, ref);
    image_free(&im);
    g_free(ref);
    mem_destroy(&m);
}

/* ---------------------------------------------------- support check */

static void test_check_no_wp(void)
{
    TestMem m;
    RAMBlock *blocks[1];
    Error *err = NULL;
    char *why = NULL;

    g_assert_true(mem_create(&m, MEM_ANON, 1 << 20, &why));
    blocks[0] = &m.rb;
    g_setenv(BG_SNAPSHOT_FEATURES_MASK_ENV, "0", TRUE);
    g_assert_false(bg_snapshot_check(blocks, 1, NULL, &err));
    g_unsetenv(BG_SNAPSHOT_FEATURES_MASK_ENV);
    if (strstr(error_get_pretty(err), "cannot create a userfaultfd")) {
        g_test_skip(error_get_pretty(err));
    } else {
        g_assert_nonnull(strstr(error_get_pretty(err), "PAGEFAULT_FLAG_WP"));
    }
    error_free(err);
    mem_destroy(&m);
}

static void test_check_shmem_feature(void)
{
    TestMem anon, shm;
    RAMBlock *blocks[2];
    Error *err = NULL;
    char *why = NULL;

    if (!kernel_can(UFFD_FEATURE_PAGEFAULT_FLAG_WP, MEM_MEMFD, &why)) {
        g_test_skip(why);
        g_free(why);
        return;
    }
    g_assert_true(mem_create(&anon, MEM_ANON, 1 << 20, &why));
    g_assert_true(mem_create(&shm, MEM_MEMFD, 1 << 20, &why));
    g_strlcpy(shm.rb.idstr, "shm.ram", sizeof(shm.rb.idstr));
    blocks[0] = &anon.rb;
    blocks[1] = &shm.rb;
    g_assert_true(bg_snapshot_check(blocks, 2, NULL, &error_abort));
    /* Without WP_HUGETLBFS_SHMEM (bit 12): anon alone passes, memfd fails. */
    g_setenv(BG_SNAPSHOT_FEATURES_MASK_ENV, "0xffffffffffffefff", TRUE);
    g_assert_true(bg_snapshot_check(blocks, 1, NULL, &error_abort));
    g_assert_false(bg_snapshot_check(blocks, 2, NULL, &err));
    g_unsetenv(BG_SNAPSHOT_FEATURES_MASK_ENV);
    g_assert_nonnull(strstr(error_get_pretty(err), "WP_HUGETLBFS_SHMEM"));
    g_assert_nonnull(strstr(error_get_pretty(err), "'shm.ram'"));
    error_free(err);
    mem_destroy(&anon);
    mem_destroy(&shm);
}

/* A file on a disk filesystem cannot be write-protected: say which block. */
static void test_check_disk_file(void)
{
    char path[] = "amber-bgs-disk-XXXXXX";
    RAMBlock rb = { .idstr = "disk.ram", .page_size = PAGE,
                    .kind = RAM_BACKEND_FILE, .shared = true };
    RAMBlock *blocks[1] = { &rb };
    Error *err = NULL;
    char *why = NULL;
    int fd;

    if (!kernel_can(UFFD_FEATURE_PAGEFAULT_FLAG_WP, MEM_MEMFD, &why)) {
        g_test_skip(why);
        g_free(why);
        return;
    }
    fd = g_mkstemp(path);
    g_assert_cmpint(fd, >=, 0);
    unlink(path);
    g_assert_cmpint(ftruncate(fd, 1 << 20), ==, 0);
    rb.host = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    g_assert_true(rb.host != MAP_FAILED);
    rb.used_length = rb.max_length = 1 << 20;
    rb.fd = fd;
    if (bg_snapshot_check(blocks, 1, NULL, &err)) {
        g_test_skip("this directory is on a filesystem that supports "
                    "write-protect (tmpfs?)");
    } else {
        g_assert_nonnull(strstr(error_get_pretty(err), "'disk.ram'"));
        g_assert_nonnull(strstr(error_get_pretty(err), "cannot register"));
        /* The engine refuses the same way. */
        error_free(err);
        err = NULL;
        BgSnapshotConfig cfg;
        bg_snapshot_config_default(&cfg);
        g_assert_null(bg_snapshot_new(blocks, 1, &cfg, image_put, NULL, &err));
        g_assert_nonnull(strstr(error_get_pretty(err), "'disk.ram'"));
    }
    error_free(err);
    munmap(rb.host, 1 << 20);
    close(fd);
}

static void test_bad_input(void)
{
    BgSnapshotConfig cfg;
    Error *err = NULL;

    bg_snapshot_config_default(&cfg);
    g_assert_null(bg_snapshot_new(NULL, 0, &cfg, image_put, NULL, &err));
    g_assert_nonnull(err);
    error_free(err);
    err = NULL;
    g_setenv(BG_SNAPSHOT_FEATURES_MASK_ENV, "lots", TRUE);
    {
        uint64_t f;
        g_assert_false(bg_snapshot_kernel_features(&f, &err));
    }
    g_unsetenv(BG_SNAPSHOT_FEATURES_MASK_ENV);
    if (!strstr(error_get_pretty(err), "cannot create a userfaultfd")) {
        g_assert_nonnull(strstr(error_get_pretty(err), "not a number"));
    }
    error_free(err);
}

/* ------------------------------------------------------------ bench */

/* A stream buffer drained by a disk of bench_mbps MB/s (0: unlimited). */
typedef struct BenchSink {
    uint8_t stream[64 << 10];
    size_t pos;
    uint64_t mbps;
    uint64_t start_us;
    uint64_t bytes;
} BenchSink;

static bool bench_sink(void *opaque, RAMBlock *rb, uint64_t offset,
                       const uint8_t *data, Error **errp)
{
    BenchSink *bs = opaque;
    uint64_t due_us, now = g_get_monotonic_time();

    if (!bs->start_us) {
        bs->start_us = now;
    }
    if (data) {
        memcpy(bs->stream + bs->pos, data, PAGE);
        bs->pos = (bs->pos + PAGE) % sizeof(bs->stream);
        bs->bytes += PAGE;
    }
    if (bs->mbps) {
        due_us = bs->start_us + bs->bytes / bs->mbps;
        if (due_us > now + 1000) {
            g_usleep(due_us - now);
        }
    }
    return true;
}

static size_t arg_size(const char *arg, const char *name, size_t def)
{
    size_t n = strlen(name);

    return strncmp(arg, name, n) == 0 ? strtoull(arg + n, NULL, 0) : def;
}

static int bench(int argc, char **argv)
{
    BgSnapshotConfig cfg;
    BgSnapshotStats st;
    size_t mib = 256;
    bool thp = false;
    TestMem m;
    Wave w;
    RAMBlock *blocks[1];
    BgSnapshot *s;
    char *why = NULL;
    uint64_t t0, n0, base_rate, snap_rate, t_run;
    BenchSink *sink = g_new0(BenchSink, 1);

    bg_snapshot_config_default(&cfg);
    sink->mbps = 1000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        cfg.chunk_bytes = arg_size(a, "--chunk=", cfg.chunk_bytes >> 10) << 10;
        cfg.batch_bytes = arg_size(a, "--batch=", cfg.batch_bytes >> 10) << 10;
        cfg.pool_bytes = arg_size(a, "--pool=", cfg.pool_bytes >> 10) << 10;
        cfg.fault_threads = arg_size(a, "--threads=", cfg.fault_threads);
        mib = arg_size(a, "--mib=", mib);
        sink->mbps = arg_size(a, "--mbps=", sink->mbps);
        thp |= !strcmp(a, "--thp");
        if (!strcmp(a, "--populate")) {
            cfg.use_wp_unpopulated = false;
        }
    }
    if (!mem_create(&m, thp ? MEM_ANON_THP : MEM_ANON, mib << 20, &why)) {
        fprintf(stderr, "%s\n", why);
        return 1;
    }
    blocks[0] = &m.rb;
    memset(m.rb.host, 1, m.len);    /* populated, as a running guest's RAM */
    wave_start(&w, m.rb.host, 1, (m.len / PAGE - 1) / 2, 2, 0);
    g_usleep(200000);
    t0 = g_get_monotonic_time();
    n0 = wave_pages(&w);
    g_usleep(500000);
    base_rate = (wave_pages(&w) - n0) * 1000000 / (g_get_monotonic_time() - t0);

    s = bg_snapshot_new(blocks, 1, &cfg, bench_sink, sink, &error_fatal);
    wave_pause(&w);
    bg_snapshot_arm(s, &error_fatal);
    wave_resume(&w);
    t0 = g_get_monotonic_time();
    n0 = wave_pages(&w);
    bg_snapshot_run(s, &error_fatal);
    t_run = g_get_monotonic_time() - t0;
    snap_rate = (wave_pages(&w) - n0) * 1000000 / MAX(t_run, 1);
    bg_snapshot_disarm(s);
    bg_snapshot_get_stats(s, &st);
    bg_snapshot_free(s);
    wave_join(&w, true);
    printf("chunk=%zuK batch=%zuK pool=%zuK threads=%d %s%s mib=%zu "
           "sink=%" G_GUINT64_FORMAT "MB/s: "
           "writes/s %.1fM -> %.1fM (%.1f%% kept) run %.0f ms pause %.2f ms "
           "faults %" G_GUINT64_FORMAT " fault_pages %" G_GUINT64_FORMAT
           " unprotects %" G_GUINT64_FORMAT " stall p50 %" G_GUINT64_FORMAT
           " p99 %" G_GUINT64_FORMAT " max %" G_GUINT64_FORMAT
           " us pool_hw %" G_GUINT64_FORMAT "K\n",
           cfg.chunk_bytes >> 10, cfg.batch_bytes >> 10, cfg.pool_bytes >> 10,
           cfg.fault_threads, cfg.use_wp_unpopulated ? "wp-unpop" : "populate",
           thp ? " thp" : "", mib, sink->mbps, base_rate / 1e6, snap_rate / 1e6,
           100.0 * snap_rate / MAX(base_rate, 1), t_run / 1e3, st.pause_us / 1e3,
           st.faults, st.fault_pages, st.unprotects, st.stall_p50_us,
           st.stall_p99_us, st.stall_max_us, st.pool_high_water >> 10);
    mem_destroy(&m);
    g_free(sink);
    return 0;
}

/* ------------------------------------------------------------- soak */

static int soak(int argc, char **argv)
{
    static const MemType mems[] = { MEM_ANON, MEM_ANON_THP, MEM_MEMFD, MEM_SHM_FILE };
    uint64_t done[G_N_ELEMENTS(mems)][2] = { { 0 } }, skipped = 0, cancelled = 0, failed = 0;
    uint32_t seed = (uint32_t)g_get_real_time();
    long cycles = 0;
    char *end;

    if (argc < 2 || (cycles = strtol(argv[1], &end, 10)) <= 0 || *end) {
        fprintf(stderr, "usage: test-bg-snapshot --soak N [--seed S]\n");
        return 2;
    }
    if (argc == 4 && !strcmp(argv[2], "--seed")) {
        seed = strtoul(argv[3], NULL, 0);
    }
    printf("soak: %ld background snapshots of %d MiB under %d writers, seed %u\n", cycles,
           REGION_MIB, NWRITERS, seed);
    fflush(stdout);
    g_random_set_seed(seed);
    for (long i = 0; i < cycles; i++) {
        EqCase c = {
            .mem = mems[g_random_int_range(0, G_N_ELEMENTS(mems))],
            .wp_unpopulated = g_random_boolean(),
            .tiny_pool = g_random_int_range(0, 6) == 0,
        };
        uint64_t need = UFFD_FEATURE_PAGEFAULT_FLAG_WP |
                        (c.wp_unpopulated ? UFFD_FEATURE_WP_UNPOPULATED : 0);
        char *why = NULL;
        TestMem m;

        if (c.wp_unpopulated) {
            g_unsetenv(BG_SNAPSHOT_FEATURES_MASK_ENV);
        } else {
            g_setenv(BG_SNAPSHOT_FEATURES_MASK_ENV, WP_UNPOPULATED_OFF_MASK, TRUE);
        }
        int kind = g_random_int_range(0, 10);

        if (!kernel_can(need, c.mem, &why) || !mem_create(&m, c.mem, REGION_MIB << 20, &why)) {
            g_free(why);
            skipped++;
            continue;
        }
        /* An assertion here aborts: the seed above says how to get back. */
        if (kind >= 8) {
            mem_destroy(&m);
            interrupted_run(c.mem, kind == 8);
            if (kind == 8) {
                cancelled++;
            } else {
                failed++;
            }
            continue;
        }
        one_snapshot(&c, &m, g_random_int_range(0, 1 << 20));
        mem_destroy(&m);
        done[c.mem][c.wp_unpopulated]++;
    }
    for (size_t k = 0; k < G_N_ELEMENTS(mems); k++) {
        printf("soak: %-9s wp-unpopulated %4" PRIu64 "  populate %4" PRIu64 "\n",
               mem_name(mems[k]), done[k][1], done[k][0]);
    }
    printf("soak: cancelled %" PRIu64 ", sink errors %" PRIu64 " (every writer finished, "
           "nothing left protected)\n", cancelled, failed);
    printf("soak: %ld cycles, %" PRIu64 " skipped (kernel or memory), 0 violations\n",
           cycles, skipped);
    return 0;
}

/* ------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    static const MemType mems[] = { MEM_ANON, MEM_ANON_THP, MEM_MEMFD, MEM_SHM_FILE };
    static EqCase cases[G_N_ELEMENTS(mems) * 3];
    int n = 0;

    if (argc > 1 && !strcmp(argv[1], "--bench")) {
        return bench(argc - 1, argv + 1);
    }
    if (argc > 1 && !strcmp(argv[1], "--soak")) {
        return soak(argc - 1, argv + 1);
    }
    g_test_init(&argc, &argv, NULL);
    for (size_t i = 0; i < G_N_ELEMENTS(mems); i++) {
        for (int unpop = 1; unpop >= 0; unpop--) {
            char *name = g_strdup_printf("/bg-snapshot/equality/%s/%s",
                                         mem_name(mems[i]),
                                         unpop ? "wp-unpopulated" : "populate");
            cases[n] = (EqCase){ mems[i], unpop, false };
            g_test_add_data_func(name, &cases[n++], test_equality);
            g_free(name);
        }
        {
            char *name = g_strdup_printf("/bg-snapshot/tiny-pool/%s",
                                         mem_name(mems[i]));
            cases[n] = (EqCase){ mems[i], true, true };
            g_test_add_data_func(name, &cases[n++], test_equality);
            g_free(name);
        }
    }
    g_test_add_data_func("/bg-snapshot/cancel/anon", GINT_TO_POINTER(MEM_ANON),
                         test_cancel);
    g_test_add_data_func("/bg-snapshot/cancel/memfd", GINT_TO_POINTER(MEM_MEMFD),
                         test_cancel);
    g_test_add_data_func("/bg-snapshot/sink-error/anon",
                         GINT_TO_POINTER(MEM_ANON), test_sink_error);
    g_test_add_data_func("/bg-snapshot/sink-error/shm-file",
                         GINT_TO_POINTER(MEM_SHM_FILE), test_sink_error);
    g_test_add_data_func("/bg-snapshot/huge-repair/64k", &repair_cases[0],
                         test_huge_repair);
    g_test_add_data_func("/bg-snapshot/huge-repair/4k", &repair_cases[1],
                         test_huge_repair);
    g_test_add_data_func("/bg-snapshot/huge-repair/2m", &repair_cases[2],
                         test_huge_repair);
    g_test_add_data_func("/bg-snapshot/huge-repair/64k-cancel", &repair_cases[3],
                         test_huge_repair);
    g_test_add_func("/bg-snapshot/steps", test_steps);
    g_test_add_func("/bg-snapshot/pace", test_pace);
    g_test_add_func("/bg-snapshot/check/no-wp", test_check_no_wp);
    g_test_add_func("/bg-snapshot/check/shmem-feature", test_check_shmem_feature);
    g_test_add_func("/bg-snapshot/check/disk-file", test_check_disk_file);
    g_test_add_func("/bg-snapshot/bad-input", test_bad_input);
    return g_test_run();
}
