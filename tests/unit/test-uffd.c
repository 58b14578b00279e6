/*
 * userfaultfd wrappers, tested as a table of (test x memory type) in the
 * manner of Linux's uffd-unit-tests: each test names the memory types it
 * runs on and the features it needs; a kernel without them, or a memory
 * type the kernel refuses, is a skip that says why.
 *
 * Each fault test runs a worker thread that touches a registered page and
 * blocks, and a fault handler thread that reads the event, checks it and
 * resolves it; then the main thread checks the worker's access landed.
 */
#include "util/uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib.h>

#define NPAGES 4
#define EVENT_TIMEOUT_MS 5000

typedef enum {
    MEM_ANON = 1 << 0,
    MEM_MEMFD = 1 << 1,         /* shmem */
    MEM_SHM_FILE = 1 << 2,      /* file on /dev/shm (tmpfs) */
    MEM_DISK_FILE = 1 << 3,     /* file on the build disk */
} MemType;

#define MEM_ALL (MEM_ANON | MEM_MEMFD | MEM_SHM_FILE | MEM_DISK_FILE)
#define MEM_SHMEM (MEM_MEMFD | MEM_SHM_FILE)

static const char *mem_name(MemType t)
{
    switch (t) {
    case MEM_ANON: return "anon";
    case MEM_MEMFD: return "memfd";
    case MEM_SHM_FILE: return "shm-file";
    case MEM_DISK_FILE: return "disk-file";
    }
    return "?";
}

typedef struct Mem {
    MemType type;
    char *base;
    size_t page;
    size_t len;
} Mem;

/* A shared file mapping of len bytes; the file is unlinked at once. */
static void *map_file(const char *dir, size_t len)
{
    char *path = g_build_filename(dir, "amber-uffd-XXXXXX", NULL);
    int fd = g_mkstemp(path);
    void *p = MAP_FAILED;

    g_assert_cmpint(fd, >=, 0);
    unlink(path);
    if (ftruncate(fd, len) == 0) {
        p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    }
    close(fd);
    g_free(path);
    return p;
}

static void mem_create(Mem *m, MemType type)
{
    void *p = MAP_FAILED;
    int fd;

    m->type = type;
    m->page = sysconf(_SC_PAGESIZE);
    m->len = NPAGES * m->page;
    switch (type) {
    case MEM_ANON:
        p = mmap(NULL, m->len, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        break;
    case MEM_MEMFD:
        fd = memfd_create("amber-uffd-test", MFD_CLOEXEC);
        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(ftruncate(fd, m->len), ==, 0);
        p = mmap(NULL, m->len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        break;
    case MEM_SHM_FILE:
        p = map_file("/dev/shm", m->len);
        break;
    case MEM_DISK_FILE: {
        /* meson runs tests in the build directory, on the project's disk. */
        const char *dir = g_getenv("AMBER_TEST_DISK_DIR");
        char *cwd = g_get_current_dir();

        p = map_file(dir ? dir : cwd, m->len);
        g_free(cwd);
        break;
    }
    }
    g_assert_true(p != MAP_FAILED);
    m->base = p;
}

static void mem_destroy(Mem *m)
{
    munmap(m->base, m->len);
}

static char *page_at(const Mem *m, int i)
{
    return m->base + i * m->page;
}

static void mem_populate(Mem *m)
{
    int i;

    for (i = 0; i < NPAGES; i++) {
        memset(page_at(m, i), 'a' + i, m->page);
    }
}

/* --- fault handler thread --- */

typedef enum { RESOLVE_UNPROTECT, RESOLVE_COPY, RESOLVE_ZEROPAGE } Resolve;

typedef struct Handler {
    int uffd;
    Mem *mem;
    Resolve resolve;
    int expect;                 /* events to serve */
    const char *copy_src;       /* RESOLVE_COPY: page contents */
    struct uffd_msg msgs[8];
    int got;
    int resolved;               /* uffd_copy/zeropage results of 1 */
    char *error;                /* first failure, reported by the main thread */
    pthread_t thread;
} Handler;

static void handler_fail(Handler *h, Error *err, const char *what)
{
    if (!h->error) {
        h->error = g_strdup_printf("%s%s%s", what, err ? ": " : "",
                                   err ? error_get_pretty(err) : "");
    }
    error_free(err);
}

static void handler_resolve(Handler *h, const struct uffd_msg *msg)
{
    void *page = (void *)(uintptr_t)(msg->arg.pagefault.address &
                                     ~(uint64_t)(h->mem->page - 1));
    Error *err = NULL;
    int r = 1;

    switch (h->resolve) {
    case RESOLVE_UNPROTECT:
        if (!uffd_unprotect(h->uffd, page, h->mem->page, true, &err)) {
            handler_fail(h, err, "unprotect");
        }
        return;
    case RESOLVE_COPY:
        r = uffd_copy(h->uffd, page, h->copy_src, h->mem->page, true, &err);
        break;
    case RESOLVE_ZEROPAGE:
        r = uffd_zeropage(h->uffd, page, h->mem->page, true, &err);
        break;
    }
    if (r < 0) {
        handler_fail(h, err, "resolve");
    }
    h->resolved += r == 1;
}

/*
 * Without the expected events, drop the registration: that wakes the
 * blocked worker (and removes write protection), so the test fails
 * instead of hanging.
 */
static void handler_rescue(Handler *h)
{
    uffd_unregister(h->uffd, h->mem->base, h->mem->len, NULL);
}

static void *handler_thread(void *opaque)
{
    Handler *h = opaque;
    Error *err = NULL;

    while (h->got < h->expect) {
        int i, n, r = uffd_wait(h->uffd, EVENT_TIMEOUT_MS, &err);

        if (r <= 0) {
            handler_fail(h, err, r == 0 ? "no userfaultfd event within 5 s" : "wait");
            handler_rescue(h);
            return NULL;
        }
        n = uffd_read_events(h->uffd, &h->msgs[h->got], h->expect - h->got, &err);
        if (n < 0) {
            handler_fail(h, err, "read");
            handler_rescue(h);
            return NULL;
        }
        for (i = 0; i < n; i++) {
            handler_resolve(h, &h->msgs[h->got + i]);
        }
        h->got += n;
    }
    return NULL;
}

static void handler_start(Handler *h)
{
    pthread_create(&h->thread, NULL, handler_thread, h);
}

static void handler_join(Handler *h)
{
    pthread_join(h->thread, NULL);
    if (h->error) {
        g_error("fault handler: %s", h->error);
    }
}

/* --- worker threads --- */

typedef struct Worker {
    volatile char *addr;
    char value;                 /* written, or read back */
    bool write;
    long tid;
    pthread_t thread;
} Worker;

static void *worker_thread(void *opaque)
{
    Worker *w = opaque;

    w->tid = syscall(SYS_gettid);
    if (w->write) {
        *w->addr = w->value;
    } else {
        w->value = *w->addr;
    }
    return NULL;
}

static void worker_start(Worker *w, char *addr, bool write, char value)
{
    w->addr = addr;
    w->write = write;
    w->value = value;
    pthread_create(&w->thread, NULL, worker_thread, w);
}

/* --- the table --- */

typedef struct UffdTest {
    const char *name;
    void (*fn)(Mem *m, int uffd);
    unsigned mem_types;
    uint64_t features;          /* needed on every memory type */
    uint64_t mode;              /* registration mode */
} UffdTest;

typedef struct UffdCase {
    const UffdTest *test;
    MemType mem;
} UffdCase;

static void check_pagefault(const struct uffd_msg *msg, const Mem *m, int page,
                            bool wp, long tid)
{
    g_assert_cmpint(msg->event, ==, UFFD_EVENT_PAGEFAULT);
    g_assert_cmphex(msg->arg.pagefault.address & ~(uint64_t)(m->page - 1), ==,
                    (uintptr_t)page_at(m, page));
    g_assert_cmpint(!!(msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP), ==, wp);
    if (tid) {
        g_assert_cmpint(msg->arg.pagefault.feat.ptid, ==, tid);
    }
}

static void assert_wp_count(const Mem *m, ssize_t want)
{
    Error *err = NULL;
    ssize_t n = pagemap_count_wp(0, (uintptr_t)m->base, m->len, &err);

    if (n < 0) {
        g_error("%s", error_get_pretty(err));
    }
    g_assert_cmpint(n, ==, want);
}

/* One write to a write-protected page: fault, unprotect, the write lands. */
static void run_wp_fault(Mem *m, int uffd, int target)
{
    Handler h = { .uffd = uffd, .mem = m, .resolve = RESOLVE_UNPROTECT, .expect = 1 };
    Worker w = { 0 };
    int i;

    g_assert_true(uffd_protect(uffd, m->base, m->len, &error_abort));
    handler_start(&h);
    worker_start(&w, page_at(m, target) + 100, true, 'Z');
    pthread_join(w.thread, NULL);
    handler_join(&h);

    check_pagefault(&h.msgs[0], m, target, true, w.tid);
    g_assert_true(h.msgs[0].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE);
    g_assert_cmpint(page_at(m, target)[100], ==, 'Z');
    for (i = 0; i < NPAGES; i++) {
        if (i != target) {
            g_assert_cmpint(page_at(m, i)[100], ==, 'a' + i);
        }
    }
}

static void test_wp_fault(Mem *m, int uffd)
{
    mem_populate(m);
    run_wp_fault(m, uffd, 2);
}

/* Never-touched pages are protected too (no populate-by-read needed). */
static void test_wp_unpopulated(Mem *m, int uffd)
{
    Handler h = { .uffd = uffd, .mem = m, .resolve = RESOLVE_UNPROTECT, .expect = 1 };
    Worker w = { 0 };

    g_assert_true(uffd_protect(uffd, m->base, m->len, &error_abort));
    assert_wp_count(m, NPAGES);
    handler_start(&h);
    worker_start(&w, page_at(m, 1), true, 'U');
    pthread_join(w.thread, NULL);
    handler_join(&h);
    check_pagefault(&h.msgs[0], m, 1, true, w.tid);
    g_assert_cmpint(*page_at(m, 1), ==, 'U');
}

/* Several writers block at once; the events are read in batches. */
static void test_wp_multi(Mem *m, int uffd)
{
    Handler h = { .uffd = uffd, .mem = m, .resolve = RESOLVE_UNPROTECT,
                  .expect = NPAGES };
    Worker w[NPAGES] = { { 0 } };
    bool seen[NPAGES] = { false };
    int i;

    mem_populate(m);
    g_assert_true(uffd_protect(uffd, m->base, m->len, &error_abort));
    for (i = 0; i < NPAGES; i++) {
        worker_start(&w[i], page_at(m, i) + 7, true, 'A' + i);
    }
    handler_start(&h);
    for (i = 0; i < NPAGES; i++) {
        pthread_join(w[i].thread, NULL);
    }
    handler_join(&h);
    for (i = 0; i < NPAGES; i++) {
        int p = (h.msgs[i].arg.pagefault.address - (uintptr_t)m->base) / m->page;

        g_assert_cmpint(p, >=, 0);
        g_assert_cmpint(p, <, NPAGES);
        g_assert_false(seen[p]);
        seen[p] = true;
        check_pagefault(&h.msgs[i], m, p, true, w[p].tid);
        g_assert_cmpint(page_at(m, i)[7], ==, 'A' + i);
    }
}

/* PAGEMAP_SCAN sees write-protect bits while armed and none after. */
static void test_pagemap_wp(Mem *m, int uffd)
{
    Error *err = NULL;

    mem_populate(m);
    assert_wp_count(m, 0);
    g_assert_true(uffd_protect(uffd, m->base, m->len, &error_abort));
    assert_wp_count(m, NPAGES);
    g_assert_cmpint(pagemap_any_wp(0, (uintptr_t)m->base, m->len, &err), ==, 1);
    g_assert_true(uffd_unprotect(uffd, page_at(m, 1), 2 * m->page, true, &error_abort));
    assert_wp_count(m, NPAGES - 2);
    g_assert_true(uffd_unprotect(uffd, m->base, m->len, true, &error_abort));
    assert_wp_count(m, 0);
    g_assert_cmpint(pagemap_any_wp(0, (uintptr_t)m->base, m->len, &err), ==, 0);
}

/* A read of a missing page is served by UFFDIO_COPY. */
static void test_missing_copy(Mem *m, int uffd)
{
    char *src = g_malloc(m->page);
    Handler h = { .uffd = uffd, .mem = m, .resolve = RESOLVE_COPY, .expect = 1,
                  .copy_src = src };
    Worker w = { 0 };

    memset(src, 'C', m->page);
    handler_start(&h);
    worker_start(&w, page_at(m, 3) + 5, false, 0);
    pthread_join(w.thread, NULL);
    handler_join(&h);
    check_pagefault(&h.msgs[0], m, 3, false, w.tid);
    g_assert_cmpint(h.resolved, ==, 1);
    g_assert_cmpint(w.value, ==, 'C');
    g_assert_cmpint(page_at(m, 3)[m->page - 1], ==, 'C');
    /* A second copy over a present page is "already there", not an error. */
    g_assert_cmpint(uffd_copy(uffd, page_at(m, 3), src, m->page, true, &error_abort),
                    ==, 0);
    g_free(src);
}

/* A read of a missing page is served by UFFDIO_ZEROPAGE. */
static void test_missing_zeropage(Mem *m, int uffd)
{
    Handler h = { .uffd = uffd, .mem = m, .resolve = RESOLVE_ZEROPAGE, .expect = 1 };
    Worker w = { 0 };

    handler_start(&h);
    worker_start(&w, page_at(m, 0) + 9, false, 'x');
    pthread_join(w.thread, NULL);
    handler_join(&h);
    check_pagefault(&h.msgs[0], m, 0, false, w.tid);
    g_assert_cmpint(h.resolved, ==, 1);
    g_assert_cmpint(w.value, ==, 0);
    g_assert_cmpint(uffd_zeropage(uffd, m->base, m->page, true, &error_abort), ==, 0);
}

/*
 * A fill over a range with a page already there places the pages before
 * it and says so (filled), then "already there"; the pages after it stay
 * missing for the next call.
 */
static void test_fill_partial(Mem *m, int uffd)
{
    char *src = g_malloc(4 * m->page);
    uint64_t filled;

    g_assert_cmpuint(m->len, ==, 4 * m->page);
    memset(src, 'C', 4 * m->page);
    g_assert_cmpint(uffd_fill(uffd, UFFD_FILL_ZERO, page_at(m, 1), NULL, m->page, true,
                              &filled, &error_abort), ==, 1);
    g_assert_cmpuint(filled, ==, m->page);
    g_assert_cmpint(uffd_fill(uffd, UFFD_FILL_COPY, page_at(m, 0), src, 4 * m->page, true,
                              &filled, &error_abort), ==, 0);
    g_assert_cmpuint(filled, ==, m->page);
    g_assert_cmpint(page_at(m, 0)[0], ==, 'C');
    g_assert_cmpint(page_at(m, 1)[0], ==, 0);
    g_assert_cmpint(uffd_fill(uffd, UFFD_FILL_COPY, page_at(m, 2), src, 2 * m->page, true,
                              &filled, &error_abort), ==, 1);
    g_assert_cmpuint(filled, ==, 2 * m->page);
    g_assert_cmpint(page_at(m, 3)[m->page - 1], ==, 'C');
    g_free(src);
}

#define WP_FEATURES (UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_THREAD_ID)

static const UffdTest uffd_tests[] = {
    { "wp-fault", test_wp_fault, MEM_ALL, WP_FEATURES, UFFDIO_REGISTER_MODE_WP },
    { "wp-multi", test_wp_multi, MEM_ANON | MEM_MEMFD, WP_FEATURES,
      UFFDIO_REGISTER_MODE_WP },
    { "wp-unpopulated", test_wp_unpopulated, MEM_ANON | MEM_SHMEM,
      WP_FEATURES | UFFD_FEATURE_WP_UNPOPULATED, UFFDIO_REGISTER_MODE_WP },
    { "pagemap-wp", test_pagemap_wp, MEM_ALL, UFFD_FEATURE_PAGEFAULT_FLAG_WP,
      UFFDIO_REGISTER_MODE_WP },
    { "missing-copy", test_missing_copy, MEM_ANON, UFFD_FEATURE_THREAD_ID,
      UFFDIO_REGISTER_MODE_MISSING },
    { "missing-zeropage", test_missing_zeropage, MEM_ANON, UFFD_FEATURE_THREAD_ID,
      UFFDIO_REGISTER_MODE_MISSING },
    { "fill-partial", test_fill_partial, MEM_ANON | MEM_MEMFD, 0,
      UFFDIO_REGISTER_MODE_MISSING },
};

/* Features a memory type adds: WP and MISSING on shmem need their own. */
static uint64_t mem_features(MemType type, uint64_t mode)
{
    if (type == MEM_ANON) {
        return 0;
    }
    return (mode & UFFDIO_REGISTER_MODE_WP ? UFFD_FEATURE_WP_HUGETLBFS_SHMEM : 0) |
           (mode & UFFDIO_REGISTER_MODE_MISSING ? UFFD_FEATURE_MISSING_SHMEM : 0);
}

/* The ioctls a registration must offer for the test to make sense. */
static uint64_t needed_ioctls(uint64_t mode)
{
    if (mode & UFFDIO_REGISTER_MODE_WP) {
        return 1ULL << _UFFDIO_WRITEPROTECT | 1ULL << _UFFDIO_WAKE;
    }
    return 1ULL << _UFFDIO_COPY | 1ULL << _UFFDIO_ZEROPAGE | 1ULL << _UFFDIO_WAKE;
}

static void skip_error(Error *err, const char *prefix)
{
    char *msg = g_strdup_printf("%s%s", prefix, error_get_pretty(err));

    g_test_skip(msg);
    g_free(msg);
    error_free(err);
}

static void run_case(gconstpointer data)
{
    const UffdCase *c = data;
    const UffdTest *t = c->test;
    uint64_t features = t->features | mem_features(c->mem, t->mode), have, ioctls;
    Error *err = NULL;
    Mem m;
    int uffd;

    if (!uffd_query_features(&have, &err)) {
        skip_error(err, "");
        return;
    }
    if (!uffd_check_features(features, have, t->name, &err)) {
        skip_error(err, "");
        return;
    }
    uffd = uffd_create(features, &error_abort);
    mem_create(&m, c->mem);
    if (!uffd_register(uffd, m.base, m.len, t->mode, &ioctls, &err)) {
        /* e.g. WP on a disk file: the kernel only does anon/shmem/hugetlb. */
        char *why = g_strdup_printf("%s memory: ", mem_name(c->mem));

        skip_error(err, why);
        g_free(why);
    } else {
        g_assert_cmphex(ioctls & needed_ioctls(t->mode), ==, needed_ioctls(t->mode));
        t->fn(&m, uffd);
        g_assert_true(uffd_unregister(uffd, m.base, m.len, &error_abort));
    }
    mem_destroy(&m);
    close(uffd);
}

/* --- tests that need no memory table --- */

static void test_feature_names(void)
{
    Error *err = NULL;
    char *s;

    g_assert_cmpstr(uffd_feature_name(UFFD_FEATURE_WP_HUGETLBFS_SHMEM), ==,
                    "WP_HUGETLBFS_SHMEM");
    g_assert_cmpstr(uffd_feature_name(UFFD_FEATURE_WP_UNPOPULATED), ==, "WP_UNPOPULATED");
    g_assert_cmpstr(uffd_feature_name(UFFD_FEATURE_MOVE), ==, "MOVE");
    g_assert_null(uffd_feature_name(1ULL << 40));
    s = uffd_features_to_str(UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_THREAD_ID |
                             1ULL << 40);
    g_assert_cmpstr(s, ==, "PAGEFAULT_FLAG_WP, THREAD_ID, bit 40");
    g_free(s);

    g_assert_true(uffd_check_features(UFFD_FEATURE_THREAD_ID, 0x1ff, "x", &error_abort));
    g_assert_false(uffd_check_features(UFFD_FEATURE_WP_HUGETLBFS_SHMEM |
                                       UFFD_FEATURE_PAGEFAULT_FLAG_WP,
                                       UFFD_FEATURE_PAGEFAULT_FLAG_WP,
                                       "background-snapshot", &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "background-snapshot: userfaultfd lacks WP_HUGETLBFS_SHMEM "
                    "(this kernel is too old or built without it)");
    error_free(err);
}

/* Asking for a feature no kernel has fails before the handshake, by name. */
static void test_create_unknown_feature(void)
{
    Error *err = NULL;
    uint64_t have;

    if (!uffd_query_features(&have, &err)) {
        skip_error(err, "");
        return;
    }
    g_assert_cmpint(uffd_create(1ULL << 62, &err), ==, -1);
    g_assert_nonnull(strstr(error_get_pretty(err), "lacks bit 62"));
    error_free(err);
}

/* Protect in a child process; read its write-protect bits from here. */
static void test_pagemap_other_pid(void)
{
    int to_child[2], to_parent[2], status;
    Error *err = NULL;
    uint64_t have, addr;
    size_t len = NPAGES * sysconf(_SC_PAGESIZE);
    char cmd;
    pid_t pid;

    if (!uffd_query_features(&have, &err) ||
        !uffd_check_features(UFFD_FEATURE_PAGEFAULT_FLAG_WP, have, NULL, &err)) {
        skip_error(err, "");
        return;
    }
    g_assert_cmpint(pipe(to_child), ==, 0);
    g_assert_cmpint(pipe(to_parent), ==, 0);
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        /* Child: protect, report the address, unprotect on request. */
        char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        int uffd = uffd_create(UFFD_FEATURE_PAGEFAULT_FLAG_WP, NULL);
        uint64_t a = (uintptr_t)p;
        bool ok;

        memset(p, 1, len);
        ok = uffd >= 0 && uffd_register(uffd, p, len, UFFDIO_REGISTER_MODE_WP, NULL, NULL) &&
             uffd_protect(uffd, p, len, NULL);
        a = ok ? a : 0;
        if (write(to_parent[1], &a, sizeof(a)) != sizeof(a) ||
            read(to_child[0], &cmd, 1) != 1) {
            _exit(2);
        }
        ok = uffd_unprotect(uffd, p, len, true, NULL);
        if (write(to_parent[1], &cmd, 1) != 1 || read(to_child[0], &cmd, 1) != 1) {
            _exit(2);
        }
        _exit(ok ? 0 : 1);
    }
    g_assert_cmpint(read(to_parent[0], &addr, sizeof(addr)), ==, sizeof(addr));
    g_assert_cmphex(addr, !=, 0);
    g_assert_cmpint(pagemap_count_wp(pid, addr, len, &error_abort), ==, NPAGES);
    g_assert_cmpint(pagemap_any_wp(pid, addr, len, &error_abort), ==, 1);
    /* The same range in our own address space is not protected. */
    cmd = 'u';
    g_assert_cmpint(write(to_child[1], &cmd, 1), ==, 1);
    g_assert_cmpint(read(to_parent[0], &cmd, 1), ==, 1);
    g_assert_cmpint(pagemap_any_wp(pid, addr, len, &error_abort), ==, 0);
    g_assert_cmpint(write(to_child[1], &cmd, 1), ==, 1);
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    close(to_child[0]);
    close(to_child[1]);
    close(to_parent[0]);
    close(to_parent[1]);
}

static void test_pagemap_bad_pid(void)
{
    Error *err = NULL;

    g_assert_cmpint(pagemap_count_wp(999999999, 0, 4096, &err), ==, -1);
    g_assert_nonnull(strstr(error_get_pretty(err), "/proc/999999999/pagemap"));
    error_free(err);
}

int main(int argc, char **argv)
{
    static const MemType types[] = { MEM_ANON, MEM_MEMFD, MEM_SHM_FILE, MEM_DISK_FILE };
    size_t i, j;

    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/uffd/feature-names", test_feature_names);
    g_test_add_func("/uffd/create-unknown-feature", test_create_unknown_feature);
    g_test_add_func("/uffd/pagemap-other-pid", test_pagemap_other_pid);
    g_test_add_func("/uffd/pagemap-bad-pid", test_pagemap_bad_pid);
    for (i = 0; i < G_N_ELEMENTS(uffd_tests); i++) {
        for (j = 0; j < G_N_ELEMENTS(types); j++) {
            UffdCase *c;
            char *path;

            if (!(uffd_tests[i].mem_types & types[j])) {
                continue;
            }
            c = g_new0(UffdCase, 1);    /* lives until exit */
            c->test = &uffd_tests[i];
            c->mem = types[j];
            path = g_strdup_printf("/uffd/%s/%s", uffd_tests[i].name,
                                   mem_name(types[j]));
            g_test_add_data_func_full(path, c, run_case, g_free);
            g_free(path);
        }
    }
    return g_test_run();
}
