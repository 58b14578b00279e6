/*
 * The `ram` section without KVM: a block saved and loaded into another
 * one of the same size must come back byte for byte (anonymous and memfd
 * memory, untouched pages included), and a loader given a damaged or
 * mismatched stream must refuse it with a message, never crash.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <glib.h>

#include "test-ram-helpers.h"

#define BLOCK_SIZE (2u << 20)

static RAMBlock *new_block(RamBackendKind kind, uint64_t size)
{
    return test_ram_block(kind, size);
}

/* Some pages with data, one written then cleared, the rest never touched. */
static void fill(RAMBlock *rb)
{
    for (uint64_t off = 0; off < rb->used_length; off += 3 * RAM_PAGE_SIZE) {
        memset(rb->host + off, (int)(off / RAM_PAGE_SIZE) | 1, 100);
    }
    memset(rb->host + RAM_PAGE_SIZE, 0xee, RAM_PAGE_SIZE);
    memset(rb->host + RAM_PAGE_SIZE, 0, RAM_PAGE_SIZE);
}

static GBytes *save(RAMBlock *rb, RamCounters *c)
{
    RamBlockList l = { .blocks = { rb }, .nblocks = 1 };

    return test_ram_save(&l, c);
}

/* Load [buf, buf+len) into rb as postcopy's loader would or not; NULL, or the message. */
static char *load_postcopy(RAMBlock *rb, const void *buf, size_t len, bool postcopy)
{
    RamBlockList l = { .blocks = { rb }, .nblocks = 1 };
    SaveStateRegistry *r = savevm_registry_new();
    RamLoader *ls = ram_loader_new_memcpy(&l);
    QEMUFile *f = qemu_file_new_mem_input(buf, len, "mem");
    Error *err = NULL;
    char *msg = NULL;

    if (postcopy) {
        ram_loader_set_postcopy(ls);
    }
    g_assert_true(ram_loader_register(ls, r, &err));
    if (!savevm_load(r, f, NULL, NULL, &err) || !ram_loader_complete(ls, &err)) {
        msg = g_strdup(error_get_pretty(err));
        error_free(err);
    }
    qemu_fclose(f);
    ram_loader_free(ls);
    savevm_registry_free(r);
    return msg;
}

/* Load [buf, buf+len) into rb; NULL on success, else the message (g_free). */
static char *load(RAMBlock *rb, const void *buf, size_t len)
{
    return load_postcopy(rb, buf, len, false);
}

/* Save src and load the stream into dst: dst must then hold what src does. */
static void round_trip(RAMBlock *src, RAMBlock *dst, RamCounters *c)
{
    GBytes *s = save(src, c);
    g_autofree char *msg = load(dst, g_bytes_get_data(s, NULL), g_bytes_get_size(s));

    g_assert_null(msg);
    g_assert_cmpint(memcmp(src->host, dst->host, src->used_length), ==, 0);
    g_bytes_unref(s);
}

static void test_round_trip(gconstpointer data)
{
    RamBackendKind kind = GPOINTER_TO_INT(data);
    RAMBlock *src = new_block(kind, BLOCK_SIZE), *dst = new_block(kind, BLOCK_SIZE);
    uint64_t npages = BLOCK_SIZE / RAM_PAGE_SIZE, data_pages = (npages + 2) / 3;
    RamCounters c;

    fill(src);
    /* The destination had something written before: ZERO must clear it. */
    memset(dst->host + 2 * RAM_PAGE_SIZE, 0x55, RAM_PAGE_SIZE);
    round_trip(src, dst, &c);
    g_assert_cmpuint(c.total_bytes, ==, BLOCK_SIZE);
    g_assert_cmpuint(c.scanned_pages, ==, npages);
    g_assert_cmpuint(c.normal_pages, ==, data_pages);
    g_assert_cmpuint(c.zero_pages, ==, npages - data_pages);
    ram_block_free(src);
    ram_block_free(dst);
}

static void test_size_mismatch(void)
{
    RAMBlock *src = new_block(RAM_BACKEND_RAM, BLOCK_SIZE);
    RAMBlock *dst = new_block(RAM_BACKEND_RAM, 2 * BLOCK_SIZE);
    RamCounters c;
    GBytes *s;
    char *msg;

    fill(src);
    s = save(src, &c);
    msg = load(dst, g_bytes_get_data(s, NULL), g_bytes_get_size(s));
    g_assert_nonnull(msg);
    g_assert_nonnull(strstr(msg, "block 'pc.ram' is 2097152 bytes in the stream but "
                                 "4194304 bytes here"));
    g_free(msg);
    g_bytes_unref(s);
    ram_block_free(src);
    ram_block_free(dst);
}

/*
 * A private file mapping (memory-backend-file, share=off): the file holds
 * some pages, and the guest's writes are private copies that only the page
 * tables know of.  Both must be saved.
 */
static void test_private_file(void)
{
    char path[] = "/tmp/amber-ram-private-XXXXXX";
    int fd = mkstemp(path);
    uint8_t page[RAM_PAGE_SIZE];
    RamBackendOptions o = { .kind = RAM_BACKEND_FILE, .size = BLOCK_SIZE,
                            .share = false, .mem_path = path };
    Error *err = NULL;
    RAMBlock *src, *dst;
    RamCounters c;

    g_assert_cmpint(fd, >=, 0);
    memset(page, 0x11, sizeof(page));
    for (int i = 0; i < 4; i++) {
        g_assert_cmpint(pwrite(fd, page, sizeof(page), i * RAM_PAGE_SIZE), ==, sizeof(page));
    }
    close(fd);
    src = ram_block_new("pc.ram", &o, &err);
    g_assert_nonnull(src);
    memset(src->host + RAM_PAGE_SIZE, 0x22, 64);           /* a copy of a file page */
    memset(src->host + 10 * RAM_PAGE_SIZE, 0x33, 64);      /* copies over file holes */
    memset(src->host + 200 * RAM_PAGE_SIZE, 0x44, 64);
    dst = new_block(RAM_BACKEND_RAM, BLOCK_SIZE);
    round_trip(src, dst, &c);
    g_assert_cmpuint(c.normal_pages, ==, 6);
    ram_block_free(src);
    ram_block_free(dst);
    unlink(path);
}

/* Replace the first occurrence of needle (same length) and expect msg_part. */
static void expect_patched(GBytes *s, const char *needle, size_t nlen,
                           const char *repl, const char *msg_part)
{
    size_t len = g_bytes_get_size(s);
    g_autofree uint8_t *buf = g_memdup2(g_bytes_get_data(s, NULL), len);
    uint8_t *p = memmem(buf, len, needle, nlen);
    RAMBlock *dst = new_block(RAM_BACKEND_RAM, BLOCK_SIZE);
    g_autofree char *msg = NULL;

    g_assert_nonnull(p);
    memcpy(p, repl, nlen);
    msg = load(dst, buf, len);
    g_assert_nonnull(msg);
    if (!strstr(msg, msg_part)) {
        g_error("expected '%s' in '%s'", msg_part, msg);
    }
    ram_block_free(dst);
}

static void test_hostile(void)
{
    RAMBlock *src = new_block(RAM_BACKEND_RAM, BLOCK_SIZE);
    RamCounters c;
    GBytes *s;

    fill(src);
    s = save(src, &c);
    /* The block name in the list and in the first record. */
    expect_patched(s, "\x06pc.ram", 7, "\x06pc.rom", "block 'pc.rom' of the stream does "
                   "not exist in this VM (it has 'pc.ram')");
    /* The first page record: offset 0 | PAGE, then the block name. */
    expect_patched(s, "\0\0\0\0\0\0\0\x08\x06pc.ram", 15,
                   "\0\0\0\0\0\0\0\x48\x06pc.ram", "unknown flags 0x40");
    expect_patched(s, "\0\0\0\0\0\0\0\x08\x06pc.ram", 15,
                   "\0\0\0\0\0\0\0\x0a\x06pc.ram", "invalid flag combination 0xa");
    expect_patched(s, "\0\0\0\0\0\0\0\x08\x06pc.ram", 15,
                   "\0\0\0\0\x01\0\0\x08\x06pc.ram", "offset 0x1000000 is beyond block");
    /* The block list record itself, turned into a page record. */
    expect_patched(s, "\0\0\0\0\0\x20\0\x04", 8, "\0\0\0\0\0\x20\0\x08",
                   "before the block list");
    /* The first ZERO record (page 1, CONTINUE): its fill byte. */
    expect_patched(s, "\0\0\0\0\0\0\x10\x22\0", 9, "\0\0\0\0\0\0\x10\x22\x07",
                   "has fill byte 0x07 (must be 0)");
    /* Cut anywhere: always refused, never a crash. */
    for (size_t cut = 0; cut < g_bytes_get_size(s); cut += 997) {
        RAMBlock *dst = new_block(RAM_BACKEND_RAM, BLOCK_SIZE);
        g_autofree char *msg = load(dst, g_bytes_get_data(s, NULL), cut);

        g_assert_nonnull(msg);
        ram_block_free(dst);
    }
    g_bytes_unref(s);
    ram_block_free(src);
}

/* ---- the stopped save's bytes, pinned -------------------------------------------- */

/*
 * The same blocks must give the same stream, to the byte, whatever the code
 * that writes it looks like inside.  The blocks are built the same way
 * every time (no guest, no clock): two blocks, so records switch blocks and
 * use CONTINUE; pages with data, pages written then cleared, pages never
 * touched, a memfd hole; the first block is big enough for several PARTs.
 * The hashes are those of the streams as saved when they were pinned; a
 * change of the format must change them here, on purpose.
 */
static const char *const pinned_sha256[] = {
    [RAM_BACKEND_RAM] = "c38ce3973901737fc6cd9a6c29df2445075bdb018abf5264413897534d6a763a",
    [RAM_BACKEND_MEMFD] = "2cf7f0ebee6dfe94e939de1bae9a87e21d94e8371e71e5daead140bab9f1f2fc",
};

static void pin_fill(RAMBlock *rb, unsigned seed)
{
    uint64_t npages = MIN(rb->used_length / RAM_PAGE_SIZE, 2048);

    for (uint64_t p = 0; p < npages; p += 1 + p % 5) {
        uint8_t *host = rb->host + p * RAM_PAGE_SIZE;

        if (p % 3 == 0) {
            memset(host, 0xa5, RAM_PAGE_SIZE);      /* written, then cleared */
            memset(host, 0, RAM_PAGE_SIZE);
        } else {
            for (unsigned i = 0; i < RAM_PAGE_SIZE; i += 64) {
                host[i] = (uint8_t)(p * 31 + i + seed);
            }
        }
    }
    /* One page far out, past the first PART of the big block. */
    if (rb->used_length > (80u << 20) - RAM_PAGE_SIZE) {
        memset(rb->host + (70u << 20), 0x3c, 100);
    }
}

static void test_stream_pinned(gconstpointer data)
{
    RamBackendKind kind = GPOINTER_TO_INT(data);
    RamBackendOptions o1 = { .kind = kind, .size = 80u << 20,
                             .share = kind == RAM_BACKEND_MEMFD };
    RamBackendOptions o2 = { .kind = RAM_BACKEND_RAM, .size = 3u << 20 };
    Error *err = NULL;
    RAMBlock *a = ram_block_new("pc.ram", &o1, &err);
    RAMBlock *b = ram_block_new("pc.ram1", &o2, &err);
    RamBlockList l = { .blocks = { a, b }, .nblocks = 2 };
    g_autofree char *sum = NULL;
    RamCounters c;
    GBytes *s;

    g_assert_nonnull(a);
    g_assert_nonnull(b);
    pin_fill(a, 1);
    pin_fill(b, 2);
    if (a->fd >= 0) {
        /* A hole in the middle of the data: its pages read as zero. */
        g_assert_cmpint(fallocate(a->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                  a->fd_offset + 64 * RAM_PAGE_SIZE,
                                  32 * RAM_PAGE_SIZE), ==, 0);
    }
    s = test_ram_save(&l, &c);
    sum = g_compute_checksum_for_bytes(G_CHECKSUM_SHA256, s);
    g_test_message("ram stream %zu bytes, sha256 %s", g_bytes_get_size(s), sum);
    g_assert_cmpstr(sum, ==, pinned_sha256[kind]);
    g_bytes_unref(s);
    ram_block_free(a);
    ram_block_free(b);
}

/*
 * postcopy-ram: a huge-page block's page size follows its length in the
 * block list (QEMU's format), and the loader of an advised stream wants
 * the same here.  Ordinary memory stands in for huge pages: only the
 * recorded page size matters to the format.
 */
static void test_postcopy_page_size(void)
{
    /* 4 MiB of 2 MiB pages: the length and the page size differ. */
    RAMBlock *src = new_block(RAM_BACKEND_RAM, 2 * BLOCK_SIZE);
    RAMBlock *dst = new_block(RAM_BACKEND_RAM, 2 * BLOCK_SIZE);
    RamBlockList l = { .blocks = { src }, .nblocks = 1 };
    const uint8_t want[] = { 6, 'p', 'c', '.', 'r', 'a', 'm', 0, 0, 0, 0, 0, 0x40, 0, 0,
                             0, 0, 0, 0, 0, 0x20, 0, 0 };
    GBytes *plain, *pc, *pc_small;
    const uint8_t *d;
    char *msg;
    size_t n;

    fill(src);
    pc_small = test_save_mem(&l, &(TestSave){ .postcopy = true }, NULL);
    src->page_size = dst->page_size = 2u << 20;
    plain = test_ram_save(&l, NULL);
    pc = test_save_mem(&l, &(TestSave){ .postcopy = true }, NULL);
    /* 4 KiB pages, or no postcopy: the block list is as ever; else 8 bytes more. */
    g_assert_cmpuint(g_bytes_get_size(pc_small), ==, g_bytes_get_size(plain));
    g_assert_cmpuint(g_bytes_get_size(pc), ==, g_bytes_get_size(plain) + 8);
    d = g_bytes_get_data(pc, &n);
    g_assert_nonnull(memmem(d, n, want, sizeof(want)));

    g_assert_null(load_postcopy(dst, d, n, true));
    g_assert_cmpint(memcmp(src->host, dst->host, 2 * BLOCK_SIZE), ==, 0);
    dst->page_size = 1u << 30;
    msg = load_postcopy(dst, d, n, true);
    g_assert_cmpstr(msg, ==, "section 'ram' instance 0: block 'pc.ram' has 0x200000-byte "
                    "pages in the stream but 0x40000000-byte pages here: postcopy needs the "
                    "same huge pages on both sides");
    g_free(msg);
    src->page_size = dst->page_size = RAM_PAGE_SIZE;
    g_bytes_unref(plain);
    g_bytes_unref(pc);
    g_bytes_unref(pc_small);
    ram_block_free(src);
    ram_block_free(dst);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_data_func("/migration-ram/round-trip/anon", GINT_TO_POINTER(RAM_BACKEND_RAM),
                         test_round_trip);
    g_test_add_data_func("/migration-ram/round-trip/memfd",
                         GINT_TO_POINTER(RAM_BACKEND_MEMFD), test_round_trip);
    g_test_add_func("/migration-ram/size-mismatch", test_size_mismatch);
    g_test_add_func("/migration-ram/postcopy-page-size", test_postcopy_page_size);
    g_test_add_func("/migration-ram/private-file", test_private_file);
    g_test_add_func("/migration-ram/hostile", test_hostile);
    g_test_add_data_func("/migration-ram/stream-pinned/anon",
                         GINT_TO_POINTER(RAM_BACKEND_RAM), test_stream_pinned);
    g_test_add_data_func("/migration-ram/stream-pinned/memfd",
                         GINT_TO_POINTER(RAM_BACKEND_MEMFD), test_stream_pinned);
    return g_test_run();
}
