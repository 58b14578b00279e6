/*
 * The userfaultfd placement (postcopy's and a lazy restore's): readers
 * touch pages of registered RAM while the stream loads; a page they fault
 * on is fetched and placed at once by a fault thread, ahead of the stream,
 * as a postcopy request would be.  Every reader must see each page whole
 * and as saved, every page must be placed exactly once, and a block that
 * cannot take missing-page faults is refused with its name.  Huge pages
 * (a hugetlb memfd, when huge pages are reserved) go in whole: the stream's
 * 4 KiB pages gather in a stage until the huge page is complete.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <glib.h>

#include "test-ram-helpers.h"
#include "util/cutils.h"
#include "util/uffd.h"

#define UFFD_BLOCK_SIZE (4u << 20)
#define NPAGES (UFFD_BLOCK_SIZE / RAM_PAGE_SIZE)
#define NREADERS 2
#define HUGE 512                /* 4 KiB pages in a 2 MiB huge page */
/* Not a backend kind: a memfd of huge pages. */
#define KIND_HUGETLB 100

/* Why huge-page blocks cannot be tested here, or NULL. */
static const char *no_huge_pages(uint64_t need)
{
    g_autofree char *s = NULL;
    const char *at;

    if (!g_file_get_contents("/proc/meminfo", &s, NULL, NULL) ||
        !strstr(s, "Hugepagesize:       2048 kB")) {
        return "the default huge page size is not 2 MiB";
    }
    if (!(at = strstr(s, "HugePages_Free:")) ||
        g_ascii_strtoull(at + strlen("HugePages_Free:"), NULL, 10) < need) {
        return "not enough free 2 MiB huge pages (echo 8 > /proc/sys/vm/nr_hugepages)";
    }
    return NULL;
}

static RAMBlock *new_block(int kind)
{
    RamBackendOptions o = { .kind = RAM_BACKEND_MEMFD, .size = UFFD_BLOCK_SIZE,
                            .share = true, .hugetlb = true };

    return kind == KIND_HUGETLB ? ram_block_new("pc.ram", &o, &error_abort)
                                : test_ram_block(kind, UFFD_BLOCK_SIZE);
}

/* Every third page zero, the rest stamped with their number. */
static void fill(RAMBlock *rb)
{
    for (uint64_t p = 0; p < NPAGES; p++) {
        if (p % 3) {
            for (unsigned i = 0; i < RAM_PAGE_SIZE; i += 8) {
                memcpy(rb->host + p * RAM_PAGE_SIZE + i, &p, sizeof(p));
            }
        }
    }
}

static GBytes *save(RAMBlock *rb)
{
    RamBlockList l = { .blocks = { rb }, .nblocks = 1 };

    return test_ram_save(&l, NULL);
}

typedef struct Run {
    RamUffd *u;
    RAMBlock *src, *dst;
    uint64_t first_read;        /* readers touch pages from here on */
    int stop;                   /* atomic */
    uint64_t served;            /* pages the fault thread placed */
    uint64_t bad;               /* pages a reader saw wrong */
} Run;

/* Serves each missing-page fault at once from src, as a postcopy request would be. */
static void *fault_fn(void *opaque)
{
    Run *run = opaque;
    int fd = ram_uffd_fd(run->u);
    struct uffd_msg msgs[16];

    while (!__atomic_load_n(&run->stop, __ATOMIC_ACQUIRE)) {
        int n;

        if (uffd_wait(fd, 20, &error_abort) <= 0) {
            continue;
        }
        n = uffd_read_events(fd, msgs, G_N_ELEMENTS(msgs), &error_abort);
        for (int i = 0; i < n; i++) {
            uint64_t page;
            int b;

            uint64_t unit = ram_block_host_pages(run->dst);

            g_assert_cmpint(msgs[i].event, ==, UFFD_EVENT_PAGEFAULT);
            g_assert_true(ram_uffd_find(run->u, msgs[i].arg.pagefault.address, &b, &page));
            page -= page % unit;
            if (unit > 1 && !ram_uffd_placed(run->u, b, page)) {
                /* A huge page: whole, as a postcopy request for it is. */
                g_assert_cmpint(ram_uffd_place_range(run->u, b, page, unit,
                                                     run->src->host + page * RAM_PAGE_SIZE,
                                                     &error_abort), >=, 0);
                run->served += unit;
            } else if (!ram_uffd_placed(run->u, b, page)) {
                uint8_t buf[RAM_PAGE_SIZE];

                memcpy(buf, run->src->host + page * RAM_PAGE_SIZE, RAM_PAGE_SIZE);
                g_assert_true(ram_uffd_place_page(run->u, b, page,
                                                  buffer_is_zero(buf, sizeof(buf)) ? NULL
                                                                                   : buf,
                                                  &error_abort));
                run->served++;
            } else {
                /* Placed meanwhile: the copy woke it, or will; make sure. */
                uffd_wake(fd, run->dst->host + page * RAM_PAGE_SIZE, unit * RAM_PAGE_SIZE,
                          &error_abort);
            }
        }
    }
    return NULL;
}

/* Reads pages in a random order while they arrive: each must be whole. */
static void *reader_fn(void *opaque)
{
    Run *run = opaque;
    GRand *rand = g_rand_new();

    for (int i = 0; i < 400; i++) {
        uint64_t p = g_rand_int_range(rand, run->first_read, NPAGES);

        if (memcmp(run->dst->host + p * RAM_PAGE_SIZE, run->src->host + p * RAM_PAGE_SIZE,
                   RAM_PAGE_SIZE)) {
            __atomic_add_fetch(&run->bad, 1, __ATOMIC_RELAXED);
        }
    }
    g_rand_free(rand);
    return NULL;
}

static void test_load_while_reading(gconstpointer data)
{
    int kind = GPOINTER_TO_INT(data);
    bool huge = kind == KIND_HUGETLB;
    Run run;
    RamBlockList l;
    const RamPlacementOps *ops;
    SaveStateRegistry *r = savevm_registry_new();
    GThread *fault, *readers[NREADERS];
    uint64_t copies, zeros, already;
    Error *err = NULL;
    RamLoader *ls;
    QEMUFile *f;
    GBytes *s;
    void *opaque;

    if (huge && no_huge_pages(UFFD_BLOCK_SIZE / (HUGE * RAM_PAGE_SIZE))) {
        g_test_skip(no_huge_pages(UFFD_BLOCK_SIZE / (HUGE * RAM_PAGE_SIZE)));
        savevm_registry_free(r);
        return;
    }
    /* The saved pages come from ordinary memory: only the destination has huge pages. */
    run = (Run){ .src = new_block(huge ? RAM_BACKEND_RAM : kind), .dst = new_block(kind),
                 /* Huge pages: the first comes from the stream, the second by a fault. */
                 .first_read = huge ? HUGE : 0 };
    l = (RamBlockList){ .blocks = { run.dst }, .nblocks = 1 };
    fill(run.src);
    s = save(run.src);
    run.u = ram_uffd_new(&l, &err);
    if (!run.u) {
        g_test_skip(error_get_pretty(err));
        error_free(err);
        goto out;
    }
    fault = g_thread_new("fault", fault_fn, &run);
    for (int i = 0; i < NREADERS; i++) {
        readers[i] = g_thread_new("reader", reader_fn, &run);
    }
    g_usleep(2000);             /* let the readers fault ahead of the stream */
    ram_uffd_placement(run.u, &ops, &opaque);
    ls = ram_loader_new(&l, ops, opaque);
    g_assert_true(ram_loader_register(ls, r, &error_abort));
    f = qemu_file_new_mem_input(g_bytes_get_data(s, NULL), g_bytes_get_size(s), "mem");
    g_assert_true(savevm_load(r, f, NULL, NULL, &error_abort));
    g_assert_true(ram_loader_complete(ls, &error_abort));
    for (int i = 0; i < NREADERS; i++) {
        g_thread_join(readers[i]);
    }
    __atomic_store_n(&run.stop, 1, __ATOMIC_RELEASE);
    g_thread_join(fault);

    g_assert_cmpuint(run.bad, ==, 0);
    g_assert_cmpint(memcmp(run.src->host, run.dst->host, UFFD_BLOCK_SIZE), ==, 0);
    /* Each page placed once; the stream's copies of served pages changed nothing. */
    ram_uffd_stats(run.u, &copies, &zeros, &already);
    g_assert_cmpuint(copies + zeros, ==, NPAGES);
    /* Huge pages: every one holds data, so each went in by one copy. */
    g_assert_cmpuint(zeros, ==, huge ? 0 : (NPAGES + 2) / 3);
    if (huge) {
        g_assert_cmpuint(run.served, <, NPAGES);
    }
    g_test_message("pages served by faults: %" G_GUINT64_FORMAT ", found placed: %"
                   G_GUINT64_FORMAT, run.served, already);
    qemu_fclose(f);
    ram_loader_free(ls);
    ram_uffd_free(run.u);
out:
    g_bytes_unref(s);
    savevm_registry_free(r);
    ram_block_free(run.src);
    ram_block_free(run.dst);
}

/* The first placement of a page wins; a second one changes nothing. */
static void test_exactly_once(void)
{
    RAMBlock *rb = new_block(RAM_BACKEND_RAM);
    RamBlockList l = { .blocks = { rb }, .nblocks = 1 };
    uint8_t a[RAM_PAGE_SIZE], b[RAM_PAGE_SIZE];
    uint64_t copies, zeros, already;
    Error *err = NULL;
    RamUffd *u = ram_uffd_new(&l, &err);

    if (!u) {
        g_test_skip(error_get_pretty(err));
        error_free(err);
        ram_block_free(rb);
        return;
    }
    memset(a, 0xaa, sizeof(a));
    memset(b, 0xbb, sizeof(b));
    g_assert_false(ram_uffd_placed(u, 0, 5));
    g_assert_true(ram_uffd_place_page(u, 0, 5, a, &error_abort));
    g_assert_true(ram_uffd_placed(u, 0, 5));
    g_assert_true(ram_uffd_place_page(u, 0, 5, b, &error_abort));
    g_assert_true(ram_uffd_place_page(u, 0, 5, NULL, &error_abort));
    g_assert_true(ram_uffd_place_page(u, 0, 6, NULL, &error_abort));
    ram_uffd_stats(u, &copies, &zeros, &already);
    g_assert_cmpuint(copies, ==, 1);
    g_assert_cmpuint(zeros, ==, 1);
    g_assert_cmpuint(already, ==, 2);
    g_assert_cmpint(memcmp(rb->host + 5 * RAM_PAGE_SIZE, a, RAM_PAGE_SIZE), ==, 0);
    g_assert_cmpuint(rb->host[6 * RAM_PAGE_SIZE], ==, 0);
    /* Outside every block: not found. */
    {
        uint64_t page;
        int blk;

        g_assert_false(ram_uffd_find(u, (uintptr_t)rb->host + UFFD_BLOCK_SIZE, &blk, &page));
        g_assert_true(ram_uffd_find(u, (uintptr_t)rb->host + 5 * RAM_PAGE_SIZE + 17,
                                    &blk, &page));
        g_assert_cmpint(blk, ==, 0);
        g_assert_cmpuint(page, ==, 5);
    }
    ram_uffd_free(u);
    ram_block_free(rb);
}

/* Stage huge page hp's pages in order, page p holding byte p % 251 + 1 (0 when zero). */
static bool stage_huge(RamUffdStage *st, uint64_t first, uint64_t last, Error **errp)
{
    for (uint64_t p = first; p <= last; p++) {
        bool zero = p % 7 == 0;

        if (!zero) {
            memset(ram_uffd_stage_buffer(st, 0, p), p % 251 + 1, RAM_PAGE_SIZE);
        }
        if (!ram_uffd_stage_page(st, 0, p, zero, errp)) {
            return false;
        }
    }
    return true;
}

/*
 * A huge page goes in when its last page comes, whole; pages out of order
 * are refused; a zero huge page is copied; a range must cover whole huge
 * pages; what is placed stays.
 */
static void test_huge_stage(void)
{
    const char *why = no_huge_pages(UFFD_BLOCK_SIZE / (HUGE * RAM_PAGE_SIZE));
    uint64_t copies, zeros, already, page;
    RamBlockList l;
    RamUffdStage *st;
    Error *err = NULL;
    RAMBlock *rb;
    RamUffd *u;
    int blk;

    if (why) {
        g_test_skip(why);
        return;
    }
    rb = new_block(KIND_HUGETLB);
    l = (RamBlockList){ .blocks = { rb }, .nblocks = 1 };
    g_assert_cmpuint(ram_block_host_pages(rb), ==, HUGE);
    u = ram_uffd_new(&l, &error_abort);
    st = ram_uffd_stage_new(u, &error_abort);

    /* All but the last page: nothing placed yet. */
    g_assert_true(stage_huge(st, 0, HUGE - 2, &error_abort));
    g_assert_false(ram_uffd_placed(u, 0, 0));
    g_assert_true(stage_huge(st, HUGE - 1, HUGE - 1, &error_abort));
    for (uint64_t p = 0; p < HUGE; p++) {
        g_assert_true(ram_uffd_placed(u, 0, p));
        g_assert_cmpuint(rb->host[p * RAM_PAGE_SIZE + 100], ==, p % 7 ? p % 251 + 1 : 0);
    }
    /* The second huge page: a page before the first of it, then a gap. */
    g_assert_false(stage_huge(st, HUGE + 5, HUGE + 5, &err));
    assert_error_contains(&err, "RAM block 'pc.ram': page 0x205000 came without the pages "
                          "of its huge page before it");
    g_assert_true(stage_huge(st, HUGE, HUGE + 1, &error_abort));
    g_assert_false(ram_uffd_stage_page(st, 0, HUGE + 3, false, &err));
    assert_error_contains(&err, "page 0x203000 came without");
    g_assert_false(ram_uffd_placed(u, 0, HUGE));
    /* Not whole huge pages: refused; a zero huge page: copied from zeros. */
    g_assert_false(ram_uffd_place_page(u, 0, HUGE + 3, NULL, &err));
    assert_error_contains(&err, "are not whole huge pages of 0x200000 bytes");
    g_assert_cmpint(ram_uffd_place_range(u, 0, HUGE, HUGE, NULL, &error_abort), ==, HUGE);
    g_assert_true(buffer_is_zero(rb->host + HUGE * RAM_PAGE_SIZE, HUGE * RAM_PAGE_SIZE));
    /* Placed already: a whole huge page staged over it changes nothing. */
    g_assert_true(stage_huge(st, HUGE, 2 * HUGE - 1, &error_abort));
    g_assert_true(buffer_is_zero(rb->host + HUGE * RAM_PAGE_SIZE, HUGE * RAM_PAGE_SIZE));
    ram_uffd_stats(u, &copies, &zeros, &already);
    g_assert_cmpuint(copies, ==, HUGE);
    g_assert_cmpuint(zeros, ==, HUGE);
    /* A page of a huge page placed whole, not being gathered: nothing to do. */
    g_assert_true(ram_uffd_stage_page(st, 0, HUGE + 7, false, &error_abort));
    /* A huge page cut off by the next one's first page, or by the end: refused. */
    g_assert_true(stage_huge(st, 0, 3, &error_abort));
    g_assert_false(ram_uffd_stage_idle(st, &err));
    assert_error_contains(&err, "the huge page at 0x0 came only in part (4 of its pages)");
    g_assert_false(stage_huge(st, HUGE, HUGE, &err));
    assert_error_contains(&err, "the huge page at 0x0 came only in part");
    g_assert_true(ram_uffd_stage_idle(st, &error_abort));
    ram_uffd_stage_free(st);
    ram_uffd_free(u);
    ram_block_free(rb);

    /* A range over a placed huge page places the others and leaves that one. */
    rb = new_block(KIND_HUGETLB);
    l = (RamBlockList){ .blocks = { rb }, .nblocks = 1 };
    u = ram_uffd_new(&l, &error_abort);
    st = ram_uffd_stage_new(u, &error_abort);
    {
        g_autofree uint8_t *a = g_malloc(2 * HUGE * RAM_PAGE_SIZE);

        memset(a, 0xa1, 2 * HUGE * RAM_PAGE_SIZE);
        g_assert_cmpint(ram_uffd_place_range(u, 0, HUGE, HUGE, NULL, &error_abort), ==, HUGE);
        g_assert_cmpint(ram_uffd_place_range(u, 0, 0, 2 * HUGE, a, &error_abort), ==, HUGE);
        ram_uffd_stats(u, &copies, &zeros, &already);
        g_assert_cmpuint(copies, ==, HUGE);
        g_assert_cmpuint(already, ==, 1);
        g_assert_cmpuint(rb->host[HUGE * RAM_PAGE_SIZE - 1], ==, 0xa1);
        g_assert_true(buffer_is_zero(rb->host + HUGE * RAM_PAGE_SIZE, HUGE * RAM_PAGE_SIZE));
    }
    /* Faults name 4 KiB pages; the fault path rounds them to their huge page. */
    g_assert_true(ram_uffd_find(u, (uintptr_t)rb->host + (HUGE + 9) * RAM_PAGE_SIZE, &blk,
                                &page));
    g_assert_cmpuint(page, ==, HUGE + 9);
    ram_uffd_stage_free(st);
    ram_uffd_free(u);
    ram_block_free(rb);
}

/* A private file mapping cannot take missing-page faults: refused by name. */
static void test_refused(void)
{
    char path[] = "/tmp/amber-uffd-private-XXXXXX";
    int fd = mkstemp(path);
    RamBackendOptions o = { .kind = RAM_BACKEND_FILE, .size = UFFD_BLOCK_SIZE,
                            .share = false, .mem_path = path };
    Error *err = NULL;
    RAMBlock *rb;
    RamBlockList l;

    g_assert_cmpint(fd, >=, 0);
    close(fd);
    rb = ram_block_new("pc.ram", &o, &error_abort);
    l = (RamBlockList){ .blocks = { rb }, .nblocks = 1 };
    g_assert_null(ram_uffd_new(&l, &err));
    assert_error_contains(&err, "RAM block 'pc.ram' cannot be placed on demand: "
                          "a private file mapping");
    ram_block_free(rb);
    unlink(path);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_data_func("/ram-uffd/load-while-reading/anon",
                         GINT_TO_POINTER(RAM_BACKEND_RAM), test_load_while_reading);
    g_test_add_data_func("/ram-uffd/load-while-reading/memfd",
                         GINT_TO_POINTER(RAM_BACKEND_MEMFD), test_load_while_reading);
    g_test_add_data_func("/ram-uffd/load-while-reading/hugetlb",
                         GINT_TO_POINTER(KIND_HUGETLB), test_load_while_reading);
    g_test_add_func("/ram-uffd/huge-stage", test_huge_stage);
    g_test_add_func("/ram-uffd/exactly-once", test_exactly_once);
    g_test_add_func("/ram-uffd/refused", test_refused);
    return g_test_run();
}
