/*
 * mapped-ram without KVM: RAM saved with the capability into a file comes
 * back byte for byte, eagerly (1 and 4 threads, anonymous and memfd, two
 * blocks, with and without O_DIRECT) and lazily, with threads that read and
 * write the RAM while its pages are still in the file, as vCPUs would.
 * The layout is QEMU's: pages at 1 MiB-aligned offsets, zero pages as
 * holes.  A damaged image is refused with a message before a page is
 * loaded; an image cut short under a lazy restore fails it and places
 * nothing wrong.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <glib.h>

#include "migration/bg-engine.h"
#include "migration/lazy-restore.h"
#include "migration/mapped-ram.h"
#include "test-ram-helpers.h"
#include "util/bitmap.h"
#include "util/cutils.h"
#include "util/uffd.h"

#define MAIN_SIZE   (8u << 20)
#define ROM_SIZE    (1u << 20)
#define PAGE        RAM_PAGE_SIZE

typedef TestBlocks Blocks;

static void blocks_new(Blocks *b, RamBackendKind kind)
{
    test_blocks_new(b, kind, MAIN_SIZE, ROM_SIZE);
}

static void blocks_free(Blocks *b)
{
    test_blocks_free(b);
}

/* Page p of a block holds its number; every third page is zero, some never touched. */
static void fill(RAMBlock *rb, unsigned salt)
{
    uint64_t npages = rb->used_length / PAGE;

    for (uint64_t p = 0; p < npages; p++) {
        uint64_t v = p * 1000 + salt;

        if (p % 3 == 0 || (p / 64) % 5 == 4) {
            continue;
        }
        for (unsigned i = 0; i < PAGE; i += 8) {
            memcpy(rb->host + p * PAGE + i, &v, sizeof(v));
        }
    }
    /* Written and cleared again: zero, though populated. */
    memset(rb->host + 3 * PAGE, 0, PAGE);
}

static uint64_t data_pages(RAMBlock *rb)
{
    uint64_t n = 0;

    for (uint64_t p = 0; p < rb->used_length / PAGE; p++) {
        n += !buffer_is_zero(rb->host + p * PAGE, PAGE);
    }
    return n;
}

static char *tmp_image(void)
{
    return test_tmp_image("amber-mapped");
}

/* A stopped save of l into path with mapped-ram; returns the RAM counters. */
static void save(RamBlockList *l, const char *path, int threads, bool direct, RamCounters *c)
{
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    MappedRamWriter *w = mapped_ram_writer_new(fd, l, threads, direct, &error_abort);
    MigrationIO io;
    QEMUFile *f;

    g_assert_cmpint(fd, >=, 0);
    f = test_fd_file(&io, fd, true, path);
    test_save_into(l, f, &(TestSave){ .mapped = w }, c);
    g_assert_cmpint(test_fd_close(&io, f), ==, 0);
    mapped_ram_writer_free(w);
    close(fd);
}

typedef enum LoadMode { LOAD_EAGER, LOAD_LAZY, LOAD_MAP } LoadMode;

/*
 * Load path into l with mapped-ram (lazy: only the headers and bitmaps,
 * which *ls keeps for the caller; map: x-zero-copy-restore).  NULL on
 * success, else the message.
 */
static char *load(RamBlockList *l, const char *path, int threads, LoadMode mode, int *fd_out,
                  RamLoader **ls_out)
{
    SaveStateRegistry *r = savevm_registry_new();
    RamLoader *ls = ram_loader_new_memcpy(l);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    MigrationIO io;
    QEMUFile *f = test_fd_file(&io, fd, false, path);
    SaveVMLoader *sl = savevm_loader_new(r, f, NULL);
    Error *err = NULL;
    char *msg = NULL, *json = NULL;
    bool ok;

    g_assert_true(ram_loader_register(ls, r, &error_abort));
    ok = savevm_loader_read_header(sl, &err);
    if (ok && savevm_loader_has_capability(sl, MAPPED_RAM_CAPABILITY)) {
        ram_loader_set_map_image(ls, mode == LOAD_MAP);
        ok = ram_loader_set_mapped(ls, fd, threads, mode == LOAD_LAZY, &err);
    }
    ok = ok && savevm_loader_run(sl, &err) == SAVEVM_LOAD_EOF &&
         savevm_loader_read_vmdesc(sl, &json, &err) && ram_loader_complete(ls, &err);
    if (!ok) {
        msg = g_strdup(error_get_pretty(err));
        error_free(err);
    }
    g_free(json);
    savevm_loader_free(sl);
    test_fd_close(&io, f);
    savevm_registry_free(r);
    if (ls_out && !msg) {
        *ls_out = ls;
        *fd_out = fd;
    } else {
        ram_loader_free(ls);
        close(fd);
    }
    return msg;
}

static void assert_same(RamBlockList *a, RamBlockList *b)
{
    for (int i = 0; i < a->nblocks; i++) {
        for (uint64_t p = 0; p < a->blocks[i]->used_length / PAGE; p++) {
            if (memcmp(a->blocks[i]->host + p * PAGE, b->blocks[i]->host + p * PAGE, PAGE)) {
                g_error("block %s page %" G_GUINT64_FORMAT " differs", a->blocks[i]->idstr, p);
            }
        }
    }
}

/* ---- eager --------------------------------------------------------------------------- */

typedef struct EagerCase {
    RamBackendKind kind;
    int threads;
    bool direct;
} EagerCase;

static void test_eager(gconstpointer data)
{
    const EagerCase *ec = data;
    g_autofree char *path = tmp_image();
    Blocks src, dst;
    RamCounters c;
    struct stat st;
    char *msg;

    blocks_new(&src, ec->kind);
    blocks_new(&dst, ec->kind);
    fill(src.rb[0], 1);
    fill(src.rb[1], 2);
    /* The destination holds something already: a zero page must clear it. */
    memset(dst.rb[0]->host + 3 * PAGE, 0x55, PAGE);
    save(&src.l, path, ec->threads, ec->direct, &c);
    g_assert_cmpuint(c.normal_pages, ==, data_pages(src.rb[0]) + data_pages(src.rb[1]));
    g_assert_cmpuint(c.scanned_pages, ==, (MAIN_SIZE + ROM_SIZE) / PAGE);
    /* Zero pages are holes: the file holds little more than the data. */
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpuint(st.st_size, >=, MAIN_SIZE + ROM_SIZE);
    g_assert_cmpuint((uint64_t)st.st_blocks * 512, <, (c.normal_pages + 64) * PAGE + (1 << 20));
    msg = load(&dst.l, path, ec->threads, LOAD_EAGER, NULL, NULL);
    g_assert_null(msg);
    assert_same(&src.l, &dst.l);
    unlink(path);
    blocks_free(&src);
    blocks_free(&dst);
}

/* QEMU's layout, read back by hand: header after the block's length, pages 1 MiB aligned. */
static void test_layout(void)
{
    g_autofree char *path = tmp_image();
    g_autofree uint8_t *file = NULL;
    gsize len;
    Blocks src;
    const uint8_t *at;
    uint64_t bitmap_offset, pages_offset, word;
    uint32_t version;

    blocks_new(&src, RAM_BACKEND_RAM);
    fill(src.rb[0], 1);
    save(&src.l, path, 2, false, NULL);
    g_assert_true(g_file_get_contents(path, (char **)&file, &len, NULL));
    at = memmem(file, len, "\x06pc.ram", 7);
    g_assert_nonnull(at);
    at += 7 + 8;
    memcpy(&version, at, 4);
    memcpy(&bitmap_offset, at + 12, 8);
    memcpy(&pages_offset, at + 20, 8);
    g_assert_cmpuint(GUINT32_FROM_BE(version), ==, 1);
    bitmap_offset = GUINT64_FROM_BE(bitmap_offset);
    pages_offset = GUINT64_FROM_BE(pages_offset);
    g_assert_cmpuint(bitmap_offset, ==, at + MAPPED_RAM_HEADER_SIZE - file);
    g_assert_cmpuint(pages_offset % MAPPED_RAM_ALIGN, ==, 0);
    /* Page 1 is present, page 3 zero; the bitmap is little-endian words. */
    memcpy(&word, file + bitmap_offset, 8);
    word = GUINT64_FROM_LE(word);
    g_assert_true(word & 2);
    g_assert_false(word & 8);
    g_assert_cmpint(memcmp(file + pages_offset + PAGE, src.rb[0]->host + PAGE, PAGE), ==, 0);
    /* The next block's name follows the pages. */
    g_assert_cmpint(memcmp(file + pages_offset + MAIN_SIZE, "\x06pc.rom", 7), ==, 0);
    unlink(path);
    blocks_free(&src);
}

/* ---- hostile images ------------------------------------------------------------------- */

/* Save an image, patch len bytes at the header's offset off, return the load's message. */
static char *load_patched(size_t off, const void *bytes, size_t len, bool truncate_pages)
{
    g_autofree char *path = tmp_image();
    g_autofree uint8_t *file = NULL;
    gsize flen;
    Blocks src, dst;
    uint8_t *at;
    char *msg;

    blocks_new(&src, RAM_BACKEND_RAM);
    blocks_new(&dst, RAM_BACKEND_RAM);
    fill(src.rb[0], 1);
    save(&src.l, path, 1, false, NULL);
    g_assert_true(g_file_get_contents(path, (char **)&file, &flen, NULL));
    at = memmem(file, flen, "\x06pc.ram", 7) + 7 + 8;
    if (truncate_pages) {
        uint64_t pages_offset;

        memcpy(&pages_offset, at + 20, 8);
        flen = GUINT64_FROM_BE(pages_offset) + MAIN_SIZE / 2;
    } else {
        memcpy(at + off, bytes, len);
    }
    g_assert_true(g_file_set_contents(path, (char *)file, flen, NULL));
    msg = load(&dst.l, path, 2, LOAD_EAGER, NULL, NULL);
    g_assert_nonnull(msg);
    /* Nothing was loaded. */
    g_assert_true(buffer_is_zero(dst.rb[0]->host, MAIN_SIZE));
    unlink(path);
    blocks_free(&src);
    blocks_free(&dst);
    return msg;
}

static void expect(char *msg, const char *needle)
{
    if (!strstr(msg, needle)) {
        g_error("message '%s' lacks '%s'", msg, needle);
    }
    g_free(msg);
}

static void test_hostile(void)
{
    uint32_t v2 = GUINT32_TO_BE(2);
    uint64_t ps = GUINT64_TO_BE(8192), far = GUINT64_TO_BE(1ULL << 40), odd = GUINT64_TO_BE(7);

    expect(load_patched(0, &v2, 4, false), "mapped-ram header version 2");
    expect(load_patched(4, &ps, 8, false), "mapped-ram page size 8192");
    expect(load_patched(12, &odd, 8, false), "not just after its header");
    expect(load_patched(20, &far, 8, false), "do not fit between its bitmap");
    /* A file cut inside the pages: refused before a vCPU could run. */
    expect(load_patched(0, NULL, 0, true), "do not fit");
}

/* An unknown capability in the configuration; a pipe for a mapped-ram stream. */
static void test_refused(void)
{
    RAMBlock *rb = test_ram_block(RAM_BACKEND_RAM, ROM_SIZE);
    RamBlockList l = { .blocks = { rb }, .nblocks = 1 };
    RamLoader *ls = ram_loader_new_memcpy(&l);
    static const char *const caps[] = { "x-ignore-shared", NULL };
    QEMUFile *f = qemu_file_new_mem_output("mem");
    const uint8_t *data;
    size_t len;
    SaveStateRegistry *r = savevm_registry_new();
    SaveVMLoader *sl;
    QEMUFile *in;
    Error *err = NULL;
    int p[2];

    g_assert_cmpint(pipe(p), ==, 0);
    g_assert_false(ram_loader_set_mapped(ls, p[0], 1, false, &err));
    assert_error_contains(&err, "must be read from a file");
    g_assert_false(mapped_ram_channel_ok(p[1], "fd:pipe", &err));
    assert_error_contains(&err, "'fd:pipe' is not one");
    close(p[0]);
    close(p[1]);

    savevm_put_header(f);
    savevm_put_configuration(f, AMBER_MACHINE_TYPE, caps);
    data = qemu_file_mem_data(f, &len);
    in = qemu_file_new_mem_input(data, len, "mem");
    sl = savevm_loader_new(r, in, NULL);
    g_assert_false(savevm_loader_read_header(sl, &err));
    assert_error_contains(&err, "capability 'x-ignore-shared', which amber cannot load");
    savevm_loader_free(sl);
    qemu_fclose(in);
    qemu_fclose(f);
    savevm_registry_free(r);
    ram_loader_free(ls);
    ram_block_free(rb);
}

/* ---- a background snapshot ---------------------------------------------------------------- */

typedef struct Writers {
    RAMBlock *rb;
    int stop, pause, paused;        /* atomics */
    uint64_t writes;
} Writers;

/*
 * The store a vCPU makes.  Not instrumented under ThreadSanitizer: guest
 * writes happen inside KVM, unseen by it, and are ordered against the
 * snapshot's copies by write protection, which it cannot see either.
 */
__attribute__((no_sanitize("thread"), noinline))
static void guest_store(uint8_t *at, uint64_t v)
{
    *(volatile uint64_t *)at = v;
}

/* As vCPUs: keep writing pages, stopping at the test's word for the instant. */
static void *writer(void *opaque)
{
    Writers *w = opaque;
    GRand *r = g_rand_new();
    uint64_t npages = w->rb->used_length / PAGE;

    while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
        uint64_t p = g_rand_int_range(r, 0, npages), v;

        if (__atomic_load_n(&w->pause, __ATOMIC_ACQUIRE)) {
            __atomic_add_fetch(&w->paused, 1, __ATOMIC_ACQ_REL);
            while (__atomic_load_n(&w->pause, __ATOMIC_ACQUIRE)) {
                g_usleep(100);
            }
            __atomic_sub_fetch(&w->paused, 1, __ATOMIC_ACQ_REL);
        }
        v = __atomic_add_fetch(&w->writes, 1, __ATOMIC_RELAXED);
        guest_store(w->rb->host + p * PAGE + (v % (PAGE / 8)) * 8, v);
    }
    g_rand_free(r);
    return NULL;
}

typedef struct BgSink {
    MappedRamWriter *w;
    uint8_t *plain;                 /* the same pages as a plain stream would carry */
} BgSink;

static bool bg_put(void *opaque, RAMBlock *rb, uint64_t offset, const uint8_t *data,
                   Error **errp)
{
    BgSink *s = opaque;

    /* The section copies: data may change as soon as this returns. */
    mapped_ram_writer_put(s->w, 0, offset / PAGE, data, false);
    if (data) {
        memcpy(s->plain + offset, data, PAGE);
    }
    return !mapped_ram_writer_failed(s->w);
}

/*
 * The guest writes all through a background snapshot into a mapped-ram
 * file: the file holds the guest at the instant, the same pages the plain
 * stream gets, each page at its place.
 */
static void test_background(void)
{
    g_autofree char *path = tmp_image();
    RAMBlock *rb = test_ram_block(RAM_BACKEND_RAM, MAIN_SIZE);
    RamBlockList l = { .blocks = { rb }, .nblocks = 1 };
    g_autofree uint8_t *ref = g_malloc(MAIN_SIZE), *back = g_malloc0(MAIN_SIZE);
    g_autofree unsigned long *bitmap = bitmap_new(MAIN_SIZE / PAGE);
    Writers ws = { .rb = rb };
    BgSink sink = { .plain = g_malloc0(MAIN_SIZE) };
    uint64_t pages_offset = MAPPED_RAM_ALIGN;
    BgSnapshotConfig cfg;
    pthread_t th[2];
    BgSnapshot *s;
    MigrationIO io;
    QEMUFile *f;
    int fd;

    fill(rb, 1);
    fd = open(path, O_RDWR | O_CLOEXEC);
    sink.w = mapped_ram_writer_new(fd, &l, 2, false, &error_abort);
    f = test_fd_file(&io, fd, true, path);
    g_assert_true(mapped_ram_writer_put_header(sink.w, f, 0, &error_abort));
    g_assert_cmpint(test_fd_close(&io, f), ==, 0);
    for (int i = 0; i < 2; i++) {
        pthread_create(&th[i], NULL, writer, &ws);
    }
    g_usleep(5000);
    /* The instant: writers held, the reference taken, write-protection armed. */
    __atomic_store_n(&ws.pause, 1, __ATOMIC_RELEASE);
    while (__atomic_load_n(&ws.paused, __ATOMIC_ACQUIRE) < 2) {
        g_usleep(100);
    }
    memcpy(ref, rb->host, MAIN_SIZE);
    bg_snapshot_config_default(&cfg);
    cfg.chunk_bytes = 64 << 10;
    s = bg_snapshot_new(&rb, 1, &cfg, bg_put, &sink, &error_abort);
    g_assert_true(bg_snapshot_arm(s, &error_abort));
    __atomic_store_n(&ws.pause, 0, __ATOMIC_RELEASE);
    g_assert_true(bg_snapshot_run(s, &error_abort));
    bg_snapshot_disarm(s);
    bg_snapshot_free(s);
    __atomic_store_n(&ws.stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
    }
    g_assert_true(mapped_ram_writer_finish(sink.w, &error_abort));
    mapped_ram_writer_free(sink.w);

    /* Read it back as a loader would: the bitmap, then each present page. */
    g_assert_cmpint(pread(fd, bitmap, MAIN_SIZE / PAGE / 8, MAPPED_RAM_HEADER_SIZE), ==,
                    MAIN_SIZE / PAGE / 8);
    for (uint64_t p = 0; p < MAIN_SIZE / PAGE; p++) {
        if (GUINT64_FROM_LE(bitmap[p / 64]) & (1ULL << (p % 64))) {
            g_assert_cmpint(pread(fd, back + p * PAGE, PAGE, pages_offset + p * PAGE), ==,
                            PAGE);
        }
    }
    g_assert_cmpuint(ws.writes, >, 0);
    g_assert_cmpint(memcmp(sink.plain, ref, MAIN_SIZE), ==, 0);
    g_assert_cmpint(memcmp(back, ref, MAIN_SIZE), ==, 0);
    g_free(sink.plain);
    close(fd);
    unlink(path);
    ram_block_free(rb);
}

/* ---- lazy ------------------------------------------------------------------------------ */

typedef struct Toucher {
    RAMBlock *src, *dst;
    unsigned seed;
    uint64_t bad;                   /* pages seen wrong */
    uint64_t written;               /* pages this thread wrote */
    uint64_t pages[64];             /* which */
} Toucher;

/*
 * As a vCPU: read random pages (each must be whole and as saved, though it
 * may still be in the file), then write some.
 */
static void *toucher(void *opaque)
{
    Toucher *t = opaque;
    GRand *r = g_rand_new_with_seed(t->seed);
    uint64_t npages = t->src->used_length / PAGE;

    for (int i = 0; i < 200; i++) {
        /* Not a page another thread writes (seeds 1-4 write p % 8 == seed). */
        uint64_t p = g_rand_int_range(r, 0, npages / 8) * 8 + 5 + i % 3;

        if (memcmp(t->dst->host + p * PAGE, t->src->host + p * PAGE, PAGE)) {
            t->bad++;
        }
    }
    for (int i = 0; i < 64; i++) {
        /* Disjoint per thread: page = seed + 8 * k. */
        uint64_t p = (t->seed + 8 * (uint64_t)g_rand_int_range(r, 0, npages / 8)) % npages;

        memset(t->dst->host + p * PAGE + 100, 0xa0 + t->seed, 8);
        t->pages[t->written++] = p;
    }
    g_rand_free(r);
    return NULL;
}

static bool minor_shmem(void)
{
    uint64_t have = 0;

    g_assert_true(uffd_query_features(&have, &error_abort));
    return have & UFFD_FEATURE_MINOR_SHMEM;
}

/* A lazy restore's two sides: the image at path, open in fd, its headers in ls and mbs. */
typedef struct LazyFx {
    char *path;
    int fd;
    Blocks src, dst;
    RamLoader *ls;
    const MappedRamBlock *mbs[2];
} LazyFx;

/*
 * src filled and saved; dst (of the same kind, with something written at
 * creation) loaded lazily up to the pages: the headers and bitmaps read.
 */
static void lazy_setup(LazyFx *fx, RamBackendKind kind)
{
    fx->path = tmp_image();
    fx->fd = -1;
    fx->ls = NULL;
    blocks_new(&fx->src, kind);
    blocks_new(&fx->dst, kind);
    fill(fx->src.rb[0], 1);
    fill(fx->src.rb[1], 2);
    save(&fx->src.l, fx->path, 2, false, NULL);
    /* What the machine wrote at creation must not survive: the image decides. */
    memset(fx->dst.rb[0]->host, 0x77, 16 * PAGE);
    g_assert_null(load(&fx->dst.l, fx->path, 2, LOAD_LAZY, &fx->fd, &fx->ls));
    fx->mbs[0] = ram_loader_mapped_block(fx->ls, 0);
    fx->mbs[1] = ram_loader_mapped_block(fx->ls, 1);
}

static void lazy_teardown(LazyFx *fx)
{
    ram_loader_free(fx->ls);
    close(fx->fd);
    unlink(fx->path);
    g_free(fx->path);
    blocks_free(&fx->src);
    blocks_free(&fx->dst);
}

/* Huge pages: a lazy restore's 1 MiB chunks could not place one whole, so it refuses them. */
static void test_lazy_huge_refused(void)
{
    RAMBlock *rb = test_ram_block(RAM_BACKEND_RAM, 4u << 20);
    RamBlockList l = { .blocks = { rb }, .nblocks = 1 };
    MappedRamBlock mb = { .npages = (4u << 20) / PAGE };
    const MappedRamBlock *mbs[1] = { &mb };
    Error *err = NULL;

    rb->page_size = 2u << 20;       /* stands for huge pages: only the size is looked at */
    g_assert_null(lazy_restore_new(&l, -1, mbs, &err));
    assert_error_contains(&err, "RAM block 'pc.ram' has huge pages, which a lazy restore does "
                          "not place: restore it without postcopy-ram");
    rb->page_size = PAGE;
    ram_block_free(rb);
}

static void test_lazy(gconstpointer data)
{
    RamBackendKind kind = GPOINTER_TO_INT(data);
    LazyFx fx;
    Toucher t[4];
    pthread_t th[4];
    LazyRestoreStats st;
    LazyRestore *lr;
    Error *err = NULL;

    lazy_setup(&fx, kind);
    lr = lazy_restore_new(&fx.dst.l, fx.fd, fx.mbs, &error_abort);
    /* The "vCPUs" start before the loader: their first pages are faults. */
    for (int i = 0; i < 4; i++) {
        t[i] = (Toucher){ .src = fx.src.rb[0], .dst = fx.dst.rb[0], .seed = i + 1 };
        pthread_create(&th[i], NULL, toucher, &t[i]);
    }
    /*
     * Until the fault thread has served one: on a loaded host (sanitizers,
     * parallel builds) 20 ms could pass before any toucher ran.
     */
    for (int waited = 0; waited < 30000; waited++) {
        lazy_restore_stats(lr, &st);
        if (st.faults) {
            break;
        }
        g_usleep(1000);
    }
    lazy_restore_start(lr);
    g_assert_true(lazy_restore_wait(lr, &err));
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        g_assert_cmpuint(t[i].bad, ==, 0);
    }
    lazy_restore_stats(lr, &st);
    g_assert_cmpuint(st.total_pages, ==, (MAIN_SIZE + ROM_SIZE) / PAGE);
    g_assert_cmpuint(st.placed_pages, ==, st.total_pages);
    g_assert_cmpuint(st.data_pages + st.zero_pages, ==, st.total_pages);
    g_assert_cmpuint(st.faults, >, 0);
    /* memfd: every data page went through its page cache where the kernel can. */
    g_assert_cmpuint(st.cache_pages, ==, kind == RAM_BACKEND_MEMFD && minor_shmem() ?
                     st.data_pages : 0);
    lazy_restore_free(lr);
    /* The guest's writes stay; every other page is as saved. */
    for (int i = 0; i < 4; i++) {
        for (uint64_t k = 0; k < t[i].written; k++) {
            uint8_t *pg = fx.dst.rb[0]->host + t[i].pages[k] * PAGE;
            uint8_t want[8];

            memset(want, 0xa0 + t[i].seed, 8);
            g_assert_cmpint(memcmp(pg + 100, want, 8), ==, 0);
        }
    }
    for (int i = 0; i < 4; i++) {
        for (uint64_t k = 0; k < t[i].written; k++) {
            uint64_t off = t[i].pages[k] * PAGE + 100;

            memcpy(fx.dst.rb[0]->host + off, fx.src.rb[0]->host + off, 8);
        }
    }
    assert_same(&fx.src.l, &fx.dst.l);
    lazy_teardown(&fx);
}

/* The image cut short under a lazy restore: it fails saying so; no page is wrong. */
static void test_lazy_truncated(gconstpointer data)
{
    LazyFx fx;
    LazyRestore *lr;
    LazyRestoreStats st;
    Error *err = NULL;

    lazy_setup(&fx, GPOINTER_TO_INT(data));
    /* Inside a page: a read into a memfd's page cache stops half way through it. */
    g_assert_cmpint(truncate(fx.path, fx.mbs[0]->pages_offset + MAIN_SIZE / 2 + 1000), ==, 0);
    lr = lazy_restore_new(&fx.dst.l, fx.fd, fx.mbs, &error_abort);
    lazy_restore_start(lr);
    g_assert_false(lazy_restore_wait(lr, &err));
    assert_error_contains(&err, "the file ends at offset");
    lazy_restore_stats(lr, &st);
    g_assert_cmpuint(st.placed_pages, <, st.total_pages);
    lazy_restore_free(lr);
    /* What was placed is as saved; the rest reads zero now that it is unregistered. */
    for (uint64_t p = 0; p < MAIN_SIZE / PAGE; p++) {
        const uint8_t *d = fx.dst.rb[0]->host + p * PAGE;

        g_assert_true(!memcmp(d, fx.src.rb[0]->host + p * PAGE, PAGE) ||
                      buffer_is_zero(d, PAGE));
    }
    lazy_teardown(&fx);
}

static gpointer wait_thread(gpointer lr)
{
    Error *err = NULL;
    bool ok = lazy_restore_wait(lr, &err);

    g_assert_false(ok);
    assert_error_contains(&err, "stopped before every page was placed");
    return GINT_TO_POINTER(1);
}

/*
 * Exit during a slow lazy restore (8 KiB/s: minutes for this image): the
 * waiter returns at once when the restore is stopped, and free() ends it.
 */
static void test_lazy_stopped(void)
{
    static const uint64_t slow = 8192;
    LazyFx fx;
    LazyRestore *lr;
    LazyRestoreStats st;
    GThread *waiter;

    lazy_setup(&fx, RAM_BACKEND_RAM);
    lr = lazy_restore_new(&fx.dst.l, fx.fd, fx.mbs, &error_abort);
    lazy_restore_set_bandwidth(lr, &slow);
    lazy_restore_start(lr);
    waiter = g_thread_new("waiter", wait_thread, lr);
    g_usleep(50 * 1000);
    lazy_restore_stop(lr);
    g_assert_cmpint(GPOINTER_TO_INT(g_thread_join(waiter)), ==, 1);
    lazy_restore_stats(lr, &st);
    g_assert_cmpuint(st.placed_pages, <, st.total_pages);
    lazy_restore_free(lr);
    lazy_teardown(&fx);
}

/* ---- zero-copy --------------------------------------------------------------------- */

/*
 * The file's pages that may hold data, as zero-copy's hole check asks for
 * them: written ranges, preallocated (unwritten) ones and data still in
 * the page cache count; only holes stay clear.  Every page of a 4096-page
 * file in runs of each kind, many more runs than one extent query returns.
 */
static void test_file_data_pages(void)
{
    g_autofree char *path = tmp_image();
    g_autofree unsigned long *map = bitmap_new(4096);
    uint8_t page[PAGE];
    int fd = open(path, O_RDWR | O_CLOEXEC);

    memset(page, 0x42, PAGE);
    g_assert_cmpint(ftruncate(fd, 4096 * PAGE), ==, 0);
    for (uint64_t p = 0; p < 4096; p += 3) {
        g_assert_cmpint(pwrite(fd, page, PAGE, p * PAGE), ==, PAGE);
    }
    g_assert_cmpint(fsync(fd), ==, 0);
    /* Preallocated, then written in the cache only: both may read data. */
    g_assert_cmpint(fallocate(fd, 0, 1000 * PAGE, 8 * PAGE), ==, 0);
    g_assert_cmpint(pwrite(fd, page, PAGE, 2001 * PAGE), ==, PAGE);
    g_assert_true(file_data_pages(fd, 0, PAGE, 4096, map));
    for (uint64_t p = 0; p < 4096; p++) {
        bool data = p % 3 == 0 || (p >= 1000 && p < 1008) || p == 2001;

        if (data != test_bit(p, map)) {
            g_error("page %" G_GUINT64_FORMAT ": %s, the map says %s", p,
                    data ? "data" : "a hole", test_bit(p, map) ? "data" : "a hole");
        }
    }
    close(fd);
    unlink(path);
}

/* Bytes of the mapping at host that /proc/self/smaps counts under field. */
static uint64_t smaps_field(const void *host, const char *field)
{
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;
    g_autofree char *head = g_strdup_printf("%" G_GINT64_MODIFIER "x-", (gint64)(uintptr_t)host);
    bool in = false;

    g_assert_true(g_file_get_contents("/proc/self/smaps", &text, NULL, NULL));
    lines = g_strsplit(text, "\n", -1);
    for (char **l = lines; *l; l++) {
        if (g_ascii_isxdigit(**l) && strchr(*l, '-') && strchr(*l, ' ')) {
            in = g_str_has_prefix(*l, head);
        } else if (in && g_str_has_prefix(*l, field) && (*l)[strlen(field)] == ':') {
            return g_ascii_strtoull(*l + strlen(field) + 1, NULL, 10) << 10;
        }
    }
    g_error("no mapping at %p in smaps", host);
}

/*
 * The image's pages become the blocks' memory: equal to the saved RAM,
 * the guest's writes its own (the file unchanged), two restores sharing
 * the file's pages, and a later save of the restored blocks right.
 */
static void test_zero_copy(void)
{
    g_autofree char *path = tmp_image();
    g_autofree char *again = tmp_image();
    g_autofree uint8_t *page = g_malloc(PAGE);
    Blocks src, a, b, c;
    RamCounters rc;
    int fd;

    blocks_new(&src, RAM_BACKEND_RAM);
    blocks_new(&a, RAM_BACKEND_RAM);
    blocks_new(&b, RAM_BACKEND_RAM);
    blocks_new(&c, RAM_BACKEND_RAM);
    fill(src.rb[0], 1);
    fill(src.rb[1], 2);
    save(&src.l, path, 2, false, &rc);
    memset(a.rb[0]->host + 5 * PAGE, 0x66, PAGE);    /* the machine's, before the load */
    g_assert_null(load(&a.l, path, 2, LOAD_MAP, NULL, NULL));
    g_assert_null(load(&b.l, path, 2, LOAD_MAP, NULL, NULL));
    for (int i = 0; i < 2; i++) {
        g_assert_cmpint(a.rb[i]->fd, >=, 0);
        g_assert_false(a.rb[i]->shared);
        g_assert_cmpint(a.rb[i]->kind, ==, RAM_BACKEND_FILE);
    }
    assert_same(&src.l, &a.l);
    assert_same(&src.l, &b.l);
    /* Both restores read every page: the file's pages are shared, none copied. */
    g_assert_cmpuint(smaps_field(a.rb[0]->host, "Anonymous"), ==, 0);
    g_assert_cmpuint(smaps_field(b.rb[0]->host, "Anonymous"), ==, 0);
    g_assert_cmpuint(smaps_field(a.rb[0]->host, "Shared_Clean"), >=,
                     data_pages(src.rb[0]) * PAGE);
    /* A write is a's own: b and the image keep the saved page. */
    memset(a.rb[0]->host + 7 * PAGE, 0xee, PAGE);
    g_assert_cmpuint(smaps_field(a.rb[0]->host, "Anonymous"), ==, PAGE);
    g_assert_cmpint(memcmp(b.rb[0]->host + 7 * PAGE, src.rb[0]->host + 7 * PAGE, PAGE), ==, 0);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    g_assert_cmpint(pread(fd, page, PAGE, test_image_pages_offset(path) + 7 * PAGE), ==,
                    PAGE);
    close(fd);
    g_assert_cmpint(memcmp(page, src.rb[0]->host + 7 * PAGE, PAGE), ==, 0);
    /* Saved again, a is what it holds now: the file's pages and its own. */
    memset(src.rb[0]->host + 7 * PAGE, 0xee, PAGE);
    save(&a.l, again, 2, false, NULL);
    g_assert_null(load(&c.l, again, 2, LOAD_EAGER, NULL, NULL));
    assert_same(&src.l, &c.l);
    unlink(path);
    unlink(again);
    blocks_free(&src);
    blocks_free(&a);
    blocks_free(&b);
    blocks_free(&c);
}

/*
 * A page the bitmap calls zero holds data in the file: that block is read
 * (the page zero), not mapped.  Shared memory cannot be mapped: refused.
 */
static void test_zero_copy_refused(void)
{
    g_autofree char *path = tmp_image();
    Blocks src, dst, shm;
    uint8_t junk[64];
    char *msg;
    int fd;

    blocks_new(&src, RAM_BACKEND_RAM);
    blocks_new(&dst, RAM_BACKEND_RAM);
    blocks_new(&shm, RAM_BACKEND_MEMFD);
    fill(src.rb[0], 1);
    fill(src.rb[1], 2);
    save(&src.l, path, 1, false, NULL);
    /* Page 0 of pc.ram is zero (fill() skips every third page). */
    fd = open(path, O_WRONLY | O_CLOEXEC);
    memset(junk, 0x5a, sizeof(junk));
    g_assert_cmpint(pwrite(fd, junk, sizeof(junk), test_image_pages_offset(path) + 100),
                    ==, sizeof(junk));
    close(fd);
    g_assert_null(load(&dst.l, path, 2, LOAD_MAP, NULL, NULL));
    g_assert_cmpint(dst.rb[0]->fd, ==, -1);         /* read */
    g_assert_cmpint(dst.rb[1]->fd, >=, 0);          /* mapped */
    assert_same(&src.l, &dst.l);
    msg = load(&shm.l, path, 2, LOAD_MAP, NULL, NULL);
    g_assert_nonnull(strstr(msg, "RAM block 'pc.ram' (memory-backend-memfd, share=on) "
                                 "cannot be: it needs memory-backend-ram"));
    g_free(msg);
    unlink(path);
    blocks_free(&src);
    blocks_free(&dst);
    blocks_free(&shm);
}

int main(int argc, char **argv)
{
    static const EagerCase cases[] = {
        { RAM_BACKEND_RAM, 1, false }, { RAM_BACKEND_RAM, 4, false },
        { RAM_BACKEND_MEMFD, 1, false }, { RAM_BACKEND_MEMFD, 4, false },
        { RAM_BACKEND_RAM, 2, true },
    };

    g_test_init(&argc, &argv, NULL);
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *name = g_strdup_printf(
            "/mapped-ram/eager/%s/threads-%d%s",
            cases[i].kind == RAM_BACKEND_RAM ? "anon" : "memfd", cases[i].threads,
            cases[i].direct ? "/direct-io" : "");

        g_test_add_data_func(name, &cases[i], test_eager);
    }
    g_test_add_func("/mapped-ram/layout", test_layout);
    g_test_add_func("/mapped-ram/hostile", test_hostile);
    g_test_add_func("/mapped-ram/refused", test_refused);
    g_test_add_func("/mapped-ram/background-snapshot", test_background);
    g_test_add_func("/mapped-ram/zero-copy", test_zero_copy);
    g_test_add_func("/mapped-ram/file-data-pages", test_file_data_pages);
    g_test_add_func("/mapped-ram/zero-copy/refused", test_zero_copy_refused);
    g_test_add_data_func("/mapped-ram/lazy/anon", GINT_TO_POINTER(RAM_BACKEND_RAM), test_lazy);
    g_test_add_func("/mapped-ram/lazy/huge-refused", test_lazy_huge_refused);
    g_test_add_func("/mapped-ram/lazy/stopped", test_lazy_stopped);
    g_test_add_data_func("/mapped-ram/lazy/memfd", GINT_TO_POINTER(RAM_BACKEND_MEMFD),
                         test_lazy);
    g_test_add_data_func("/mapped-ram/lazy/truncated/anon", GINT_TO_POINTER(RAM_BACKEND_RAM),
                         test_lazy_truncated);
    g_test_add_data_func("/mapped-ram/lazy/truncated/memfd",
                         GINT_TO_POINTER(RAM_BACKEND_MEMFD), test_lazy_truncated);
    return g_test_run();
}
