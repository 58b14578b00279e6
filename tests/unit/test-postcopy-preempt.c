/*
 * postcopy-preempt's channel, destination side: page records read by a
 * thread of their own and placed into RAM registered for missing-page
 * faults.  Good records land whole and the channel's end is the end; a
 * hostile record (unknown flags, a block this VM lacks, an offset past the
 * block, CONTINUE with nothing before, a zero page's fill byte, a record
 * cut short) is an error that names it, places nothing wrong, and shuts the
 * main stream down so that the load stops too.  On huge pages (where some
 * are reserved) a huge page's records go in together when its last comes;
 * a record without those of its huge page before it is refused.
 */
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <glib.h>

#include "test-ram-helpers.h"
#include "../../migration/postcopy/postcopy.h"

#define BLOCK_SIZE (1u << 20)

typedef struct Fixture {
    RAMBlock *rb;
    RamBlockList ram;
    RamUffd *u;
    int cancel_fd;
    int stream[2];              /* [0] the "main stream" the reader shuts down on error */
} Fixture;

static void fixture_init_block(Fixture *fx, RAMBlock *rb)
{
    fx->rb = rb;
    fx->ram = (RamBlockList){ .blocks = { fx->rb }, .nblocks = 1 };
    fx->u = ram_uffd_new(&fx->ram, &error_abort);
    fx->cancel_fd = migration_cancel_fd_new(&error_abort);
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, fx->stream), ==, 0);
}

static void fixture_init(Fixture *fx)
{
    fixture_init_block(fx, test_ram_block(RAM_BACKEND_RAM, BLOCK_SIZE));
}

/* Two 2 MiB huge pages of a hugetlb memfd; false when the host has none free. */
static bool fixture_init_huge(Fixture *fx)
{
    RamBackendOptions o = { .kind = RAM_BACKEND_MEMFD, .size = 4u << 20, .share = true,
                            .hugetlb = true };
    RAMBlock *rb = ram_block_new("pc.ram", &o, NULL);

    /* Mapping reserves them: a block made means its huge pages exist. */
    if (!rb) {
        return false;
    }
    fixture_init_block(fx, rb);
    return true;
}

static void fixture_free(Fixture *fx)
{
    ram_uffd_free(fx->u);
    ram_block_free(fx->rb);
    close(fx->cancel_fd);
    close(fx->stream[0]);
    close(fx->stream[1]);
}

/* Feed bytes to a reader and wait for the channel's end; its verdict. */
static bool run_reader(Fixture *fx, const void *bytes, size_t len, Error **errp)
{
    int sv[2];
    Channel *ch;
    PreemptReader *r;
    bool ok;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
    ch = channel_new(sv[0], CHANNEL_UNIX, false, "unix:preempt");
    r = preempt_reader_start(ch, fx->u, &fx->ram, fx->stream[0], fx->cancel_fd,
                             &error_abort);
    g_assert_cmpint(write(sv[1], bytes, len), ==, (ssize_t)len);
    close(sv[1]);
    ok = preempt_reader_finish(r, errp);
    preempt_reader_free(r);
    return ok;
}

/* Records written the way the source writes them. */
static GBytes *records(Fixture *fx, const uint64_t *pages, size_t n, bool zero_last)
{
    RamSaver *rs = ram_saver_new(&fx->ram);
    QEMUFile *f = qemu_file_new_mem_output("records");
    uint8_t page[RAM_PAGE_SIZE];
    const uint8_t *data;
    size_t len;
    GBytes *out;

    for (size_t i = 0; i < n; i++) {
        memset(page, 0x40 + (int)i, sizeof(page));
        ram_saver_put_page(rs, f, fx->rb, pages[i] * RAM_PAGE_SIZE,
                           zero_last && i == n - 1 ? NULL : page, false);
        qemu_put_be64(f, RAM_SAVE_FLAG_EOS);
    }
    data = qemu_file_mem_data(f, &len);
    out = g_bytes_new(data, len);
    qemu_fclose(f);
    ram_saver_free(rs);
    return out;
}

static void test_good(void)
{
    Fixture fx;
    const uint64_t pages[] = { 3, 4, 200 };
    g_autoptr(GBytes) b = NULL;
    size_t len;
    const void *p;
    Error *err = NULL;

    fixture_init(&fx);
    b = records(&fx, pages, G_N_ELEMENTS(pages), true);
    p = g_bytes_get_data(b, &len);
    g_assert_true(run_reader(&fx, p, len, &err));
    g_assert_null(err);
    for (size_t i = 0; i < G_N_ELEMENTS(pages); i++) {
        const uint8_t *host = fx.rb->host + pages[i] * RAM_PAGE_SIZE;
        uint8_t want = i == G_N_ELEMENTS(pages) - 1 ? 0 : 0x40 + i;

        g_assert_true(ram_uffd_placed(fx.u, 0, pages[i]));
        g_assert_cmpint(host[0], ==, want);
        g_assert_cmpint(host[RAM_PAGE_SIZE - 1], ==, want);
    }
    g_assert_false(ram_uffd_placed(fx.u, 0, 5));
    fixture_free(&fx);
}

static void test_huge(void)
{
    enum { HUGE = 512 };
    uint64_t pages[HUGE];
    g_autoptr(GBytes) whole = NULL, alone = NULL, part = NULL;
    const void *p;
    Error *err = NULL;
    Fixture fx;
    size_t len;

    if (!fixture_init_huge(&fx)) {
        g_test_skip("no free 2 MiB huge pages (echo 8 > /proc/sys/vm/nr_hugepages)");
        return;
    }
    /* The second huge page, in order, its last page zero: in whole. */
    for (size_t i = 0; i < HUGE; i++) {
        pages[i] = HUGE + i;
    }
    whole = records(&fx, pages, HUGE, true);
    p = g_bytes_get_data(whole, &len);
    g_assert_true(run_reader(&fx, p, len, &error_abort));
    for (size_t i = 0; i < HUGE; i++) {
        const uint8_t *host = fx.rb->host + pages[i] * RAM_PAGE_SIZE;

        g_assert_true(ram_uffd_placed(fx.u, 0, pages[i]));
        g_assert_cmpint(host[RAM_PAGE_SIZE - 1], ==, i == HUGE - 1 ? 0 : (0x40 + i) & 0xff);
    }
    /* One page of the first huge page, alone: refused, and that huge page stays out. */
    pages[0] = 5;
    alone = records(&fx, pages, 1, false);
    p = g_bytes_get_data(alone, &len);
    g_assert_false(run_reader(&fx, p, len, &err));
    assert_error_contains(&err, "page 0x5000 came without the pages of its huge page");
    g_assert_false(ram_uffd_placed(fx.u, 0, 0));
    /* The channel's end in the middle of a huge page: refused, nothing placed. */
    for (size_t i = 0; i < 10; i++) {
        pages[i] = i;
    }
    part = records(&fx, pages, 10, false);
    p = g_bytes_get_data(part, &len);
    g_assert_false(run_reader(&fx, p, len, &err));
    assert_error_contains(&err, "the huge page at 0x0 came only in part (10 of its pages)");
    g_assert_false(ram_uffd_placed(fx.u, 0, 0));
    fixture_free(&fx);
}

typedef struct Bad {
    const char *name;
    const uint8_t *bytes;
    size_t len;
    const char *words;
} Bad;

static void test_bad(gconstpointer data)
{
    const Bad *bad = data;
    Fixture fx;
    Error *err = NULL;
    char c;

    fixture_init(&fx);
    g_assert_false(run_reader(&fx, bad->bytes, bad->len, &err));
    g_assert_nonnull(err);
    if (!strstr(error_get_pretty(err), bad->words)) {
        g_error("%s: '%s' lacks '%s'", bad->name, error_get_pretty(err), bad->words);
    }
    g_assert_nonnull(strstr(error_get_pretty(err), "postcopy-preempt channel"));
    error_free(err);
    /* The main stream was shut down: its peer reads the end. */
    g_assert_cmpint(read(fx.stream[1], &c, 1), ==, 0);
    /* Nothing was placed. */
    for (uint64_t p = 0; p < BLOCK_SIZE / RAM_PAGE_SIZE; p++) {
        g_assert_false(ram_uffd_placed(fx.u, 0, p));
    }
    fixture_free(&fx);
}

/* be64 word, then the rest. */
#define W(v) (uint8_t)((uint64_t)(v) >> 56), (uint8_t)((uint64_t)(v) >> 48), \
    (uint8_t)((uint64_t)(v) >> 40), (uint8_t)((uint64_t)(v) >> 32),          \
    (uint8_t)((uint64_t)(v) >> 24), (uint8_t)((uint64_t)(v) >> 16),          \
    (uint8_t)((uint64_t)(v) >> 8), (uint8_t)(v)

static const uint8_t bad_flags[] = { W(0x1000 | 0x40) };
static const uint8_t bad_mem_size[] = { W(0x1000 | RAM_SAVE_FLAG_MEM_SIZE) };
static const uint8_t bad_block[] = { W(RAM_SAVE_FLAG_ZERO), 4, 'n', 'o', 'p', 'e', 0 };
static const uint8_t bad_offset[] = { W((uint64_t)BLOCK_SIZE | RAM_SAVE_FLAG_ZERO), 6,
                                      'p', 'c', '.', 'r', 'a', 'm', 0 };
static const uint8_t bad_continue[] = { W(RAM_SAVE_FLAG_ZERO | RAM_SAVE_FLAG_CONTINUE), 0 };
static const uint8_t bad_fill[] = { W(RAM_SAVE_FLAG_ZERO), 6, 'p', 'c', '.', 'r', 'a', 'm',
                                    7 };
static const uint8_t bad_short[] = { W(RAM_SAVE_FLAG_PAGE), 6, 'p', 'c', '.', 'r', 'a', 'm',
                                     1, 2, 3 };
static const uint8_t bad_word[] = { 0, 0, 0 };

static const Bad bads[] = {
    { "flags", bad_flags, sizeof(bad_flags), "flags 0x40" },
    { "mem-size", bad_mem_size, sizeof(bad_mem_size), "only pages go here" },
    { "block", bad_block, sizeof(bad_block), "block 'nope'" },
    { "offset", bad_offset, sizeof(bad_offset), "is beyond block 'pc.ram'" },
    { "continue", bad_continue, sizeof(bad_continue), "CONTINUE record with no block" },
    { "fill", bad_fill, sizeof(bad_fill), "fill byte 0x07" },
    { "short-page", bad_short, sizeof(bad_short), "unexpected end" },
    { "short-word", bad_word, sizeof(bad_word), "unexpected end" },
};

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/postcopy-preempt/good", test_good);
    g_test_add_func("/postcopy-preempt/huge", test_huge);
    for (size_t i = 0; i < G_N_ELEMENTS(bads); i++) {
        g_autofree char *path = g_strdup_printf("/postcopy-preempt/bad/%s", bads[i].name);

        g_test_add_data_func(path, &bads[i], test_bad);
    }
    return g_test_run();
}
