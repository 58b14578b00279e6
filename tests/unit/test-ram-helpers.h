/* RAM blocks and `ram` streams for the tests of the RAM section. */
#ifndef AMBER_TESTS_UNIT_TEST_RAM_HELPERS_H
#define AMBER_TESTS_UNIT_TEST_RAM_HELPERS_H

#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "migration/ram.h"
#include "migration/savers.h"
#include "test-helpers.h"

/* A block "pc.ram" of size bytes (memfd ones shared), or the test ends. */
static inline RAMBlock *test_ram_block(RamBackendKind kind, uint64_t size)
{
    RamBackendOptions o = { .kind = kind, .size = size, .share = kind == RAM_BACKEND_MEMFD };
    Error *err = NULL;
    RAMBlock *rb = ram_block_new("pc.ram", &o, &err);

    if (!rb) {
        g_error("ram_block_new: %s", error_get_pretty(err));
    }
    return rb;
}

/* Two blocks of one VM, "pc.ram" and a smaller "pc.rom", and their list. */
typedef struct TestBlocks {
    RAMBlock *rb[2];
    RamBlockList l;
} TestBlocks;

static inline void test_blocks_new(TestBlocks *b, RamBackendKind kind, uint64_t main_size,
                                   uint64_t rom_size)
{
    b->rb[0] = test_ram_block(kind, main_size);
    b->rb[1] = test_ram_block(kind, rom_size);
    g_strlcpy(b->rb[1]->idstr, "pc.rom", sizeof(b->rb[1]->idstr));
    b->l = (RamBlockList){ .blocks = { b->rb[0], b->rb[1] }, .nblocks = 2 };
}

static inline void test_blocks_free(TestBlocks *b)
{
    ram_block_free(b->rb[0]);
    ram_block_free(b->rb[1]);
}

/* A new empty file in the temporary directory, named after prefix; g_free the path. */
static inline char *test_tmp_image(const char *prefix)
{
    g_autofree char *name = g_strdup_printf("%s-XXXXXX", prefix);
    char *path = g_build_filename(g_get_tmp_dir(), name, NULL);
    int fd = g_mkstemp(path);

    g_assert_cmpint(fd, >=, 0);
    close(fd);
    return path;
}

/* Where pc.ram's pages start in the mapped-ram image at path (from its header). */
static inline uint64_t test_image_pages_offset(const char *path)
{
    g_autofree uint8_t *file = NULL;
    const uint8_t *at;
    uint64_t off;
    gsize len;

    g_assert_true(g_file_get_contents(path, (char **)&file, &len, NULL));
    /* idlen, idstr, used_length, then the header: version, page size, bitmap, pages. */
    at = memmem(file, len, "\x06pc.ram", 7);
    g_assert_nonnull(at);
    memcpy(&off, at + 7 + 8 + 4 + 8 + 8, 8);
    return GUINT64_FROM_BE(off);
}

/* What a test's stopped save writes besides the `ram` section's pages. */
typedef struct TestSave {
    MappedRamWriter *mapped;        /* mapped-ram: the pages go through it */
    bool checksum;                  /* x-checksum */
    bool postcopy;                  /* postcopy-ram's block list (huge pages' page sizes) */
    /* More sections: registers them, returns their states (freed after the save). */
    GPtrArray *(*devices)(SaveStateRegistry *r);
} TestSave;

/* A stopped save of the blocks of l into f; c (may be NULL) gets the RAM counters. */
static inline void test_save_into(RamBlockList *l, QEMUFile *f, const TestSave *o,
                                  RamCounters *c)
{
    SaveStateRegistry *r = savevm_registry_new();
    RamSaver *rs = ram_saver_new(l);
    RamStopped *st = ram_stopped_new();
    GPtrArray *states = NULL;
    int ret;

    ram_saver_set_mapped(rs, o->mapped);
    ram_saver_set_postcopy(rs, o->postcopy);
    g_assert_true(ram_stopped_register(st, rs, r, &error_abort));
    if (o->devices) {
        states = o->devices(r);
    }
    g_assert_true(savevm_save_head(r, f, savevm_stream_caps(o->mapped != NULL, o->checksum),
                                   &error_abort));
    while ((ret = savevm_save_iterate(r, f, &error_abort)) == 0) {
    }
    g_assert_cmpint(ret, ==, 1);
    g_assert_true(savevm_save_complete(r, f, &error_abort));
    g_assert_true(savevm_save_tail(r, f, &error_abort));
    if (c) {
        ram_saver_counters(rs, c);
    }
    if (states) {
        g_ptr_array_unref(states);
    }
    ram_stopped_free(st);
    ram_saver_free(rs);
    savevm_registry_free(r);
}

/* The stream of such a save, in memory. */
static inline GBytes *test_save_mem(RamBlockList *l, const TestSave *o, RamCounters *c)
{
    QEMUFile *f = qemu_file_new_mem_output("mem");
    const uint8_t *data;
    size_t len;
    GBytes *out;

    test_save_into(l, f, o, c);
    data = qemu_file_mem_data(f, &len);
    out = g_bytes_new(data, len);
    qemu_fclose(f);
    return out;
}

/* The stream of a stopped save of the blocks of l; c (may be NULL) gets its counters. */
static inline GBytes *test_ram_save(RamBlockList *l, RamCounters *c)
{
    return test_save_mem(l, &(TestSave){ 0 }, c);
}

#endif
