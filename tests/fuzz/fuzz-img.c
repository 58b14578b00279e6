/*
 * amber-img's reader: a file that claims to be a saved VM, read by the
 * tool's own code (tools/amber-img.c, tools/img-ram.c, built into this
 * target with its main renamed) through `verify`, and for a file that
 * passes it `info --json`, `info` and `extract-ram`, which must pass too: QEVM
 * framing, the VMDESCRIPTION that steps it over device sections, the
 * `ram` section plain or mapped-ram (headers, bitmaps, and with
 * x-checksum the checksums and tables).  Any bytes must end in OK or one
 * error, never a crash, a leak or a read outside the file.
 *
 * An input is the file, or a sparse description of it.  mapped-ram puts
 * each RAM block's pages at a 1 MiB boundary, so even a tiny image is
 * over 2 MiB, nearly all holes: as plain bytes it is longer than
 * libFuzzer's default -max_len allows (1 MiB), which cuts off the pages
 * and everything after them, and every run copies all of it.  An
 * input that begins with SPARSE_MARK is a list of segments instead:
 *
 *   SPARSE_MARK le32 offset bytes...   SPARSE_MARK le32 offset bytes...
 *
 * Each segment's bytes (up to the next mark or the end of the input) are
 * written at its offset, in order, so a later segment wins where two
 * overlap.  The file ends where the furthest segment ends (an empty one
 * leaves a hole at the end); holes read as zeros.  A segment that starts
 * past SPARSE_MAX_FILE is dropped and one that crosses it is cut, so a
 * mutated offset cannot make a huge file.  Marks rather than lengths
 * delimit the segments because libFuzzer often inserts or erases bytes:
 * that changes one segment and leaves the others where they were.  Any
 * input without the mark is the file as it is.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <glib.h>

#include "fuzz.h"
#include "migration/mapped-ram.h"
#include "migration/migration-io.h"
#include "migration/ram.h"
#include "migration/savers.h"
#include "system/machine.h"
#include "../unit/test-helpers.h"

#define SPARSE_MARK         "\xf0SPARSE\x0f"
#define SPARSE_MARK_LEN     (sizeof(SPARSE_MARK) - 1)
#define SPARSE_OFFSET_LEN   4
/*
 * Room for a few blocks at 1 MiB boundaries.  The tool reads through holes
 * too (it searches up to 16 MiB back for the VMDESCRIPTION), so every MiB
 * more slows each input that reaches it.
 */
#define SPARSE_MAX_FILE     (4u << 20)
/* The seeds' zero runs this long become holes; shorter ones stay as bytes. */
#define SPARSE_MIN_HOLE     4096
/* The memfd's page: one byte written makes all of it data. */
#define SPARSE_PAGE         4096

int amber_img_main(int argc, char **argv);

/* One memfd for every input: the tool opens and maps it by its /proc path. */
static int input_fd(char path[64])
{
    static int fd = -1;

    if (fd < 0) {
        fd = memfd_create("fuzz-img", MFD_CLOEXEC);
        g_assert_cmpint(fd, >=, 0);
    }
    snprintf(path, 64, "/proc/self/fd/%d", fd);
    return fd;
}

static uint32_t le32_at(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* One segment, clipped at SPARSE_MAX_FILE; *end is how far the file reaches. */
static void put_segment(int fd, uint32_t off, const uint8_t *p, size_t len, uint64_t *end)
{
    if (off >= SPARSE_MAX_FILE) {
        return;
    }
    len = MIN(len, SPARSE_MAX_FILE - off);
    g_assert_true(len == 0 || pwrite(fd, p, len, off) == (ssize_t)len);
    *end = MAX(*end, (uint64_t)off + len);
}

/* Makes the empty fd the file an input stands for. */
static void input_to_file(int fd, const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *stop = data + size;
    uint64_t end = 0;

    if (size < SPARSE_MARK_LEN || memcmp(data, SPARSE_MARK, SPARSE_MARK_LEN)) {
        g_assert_true(size == 0 || pwrite(fd, data, size, 0) == (ssize_t)size);
        return;
    }
    while (p < stop) {
        const uint8_t *seg = p + SPARSE_MARK_LEN;
        const uint8_t *next = memmem(seg, stop - seg, SPARSE_MARK, SPARSE_MARK_LEN);

        p = next ? next : stop;
        /* A segment too short to hold its offset stands for nothing. */
        if (p - seg >= SPARSE_OFFSET_LEN) {
            put_segment(fd, le32_at(seg), seg + SPARSE_OFFSET_LEN,
                        p - seg - SPARSE_OFFSET_LEN, &end);
        }
    }
    g_assert_cmpint(ftruncate(fd, end), ==, 0);
}

static char *extract_path;

static void empty_dir(const char *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const char *name;

    g_assert_nonnull(d);
    while ((name = g_dir_read_name(d))) {
        g_autofree char *file = g_build_filename(dir, name, NULL);

        g_assert_cmpint(unlink(file), ==, 0);
    }
}

static void remove_extract_dir(void)
{
    empty_dir(extract_path);
    rmdir(extract_path);
}

/*
 * Where extract-ram writes, once per process and gone at its exit: in
 * memory when the host has /dev/shm (block files are as long as the image
 * says, sparse).
 */
static char *extract_dir(void)
{
    if (!extract_path) {
        extract_path = g_strdup(g_file_test("/dev/shm", G_FILE_TEST_IS_DIR)
                                ? "/dev/shm/fuzz-img-XXXXXX" : "/tmp/fuzz-img-XXXXXX");
        g_assert_nonnull(g_mkdtemp(extract_path));
        atexit(remove_extract_dir);
    }
    return extract_path;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = input_fd(path);
    char *dir = extract_dir();
    char *verify[] = { "amber-img", "verify", path, NULL };
    char *info[] = { "amber-img", "info", "--json", path, NULL };
    char *text[] = { "amber-img", "info", path, NULL };
    char *extract[] = { "amber-img", "extract-ram", path, dir, NULL };

    g_assert_cmpint(ftruncate(fd, 0), ==, 0);
    input_to_file(fd, data, size);
    /* What verify accepts, the other commands read to the end as well. */
    if (amber_img_main(3, verify) == 0) {
        g_assert_cmpint(amber_img_main(4, info), ==, 0);
        g_assert_cmpint(amber_img_main(3, text), ==, 0);
        g_assert_cmpint(amber_img_main(4, extract), ==, 0);
        empty_dir(dir);
    }
    return 0;
}

/* ---- seeds: images saved by amber's own writers ---------------------------------------- */

static RamBlockList *ram_list(uint64_t main_size)
{
    static RamBlockList list;
    RamBackendOptions o = { .kind = RAM_BACKEND_RAM, .size = main_size };

    for (int i = 0; i < list.nblocks; i++) {
        ram_block_free(list.blocks[i]);
    }
    list.blocks[0] = ram_block_new("pc.ram", &o, &error_abort);
    o.size = 16u << 10;
    list.blocks[1] = ram_block_new("pc.rom", &o, &error_abort);
    list.nblocks = 2;
    /* Some pages of data, a zero one that was written, most never touched. */
    for (int b = 0; b < 2; b++) {
        for (uint64_t off = 0; off < list.blocks[b]->used_length; off += 5 * RAM_PAGE_SIZE) {
            memset(list.blocks[b]->host + off, 0x31 + b, 100);
        }
    }
    return &list;
}

/* A stopped save with every device type and two vCPUs, into fd (a file) or memory. */
static GBytes *image(RamBlockList *l, bool mapped, bool sum)
{
    SaveStateRegistry *r = savevm_registry_new();
    RamSaver *rs = ram_saver_new(l);
    RamStopped *st = ram_stopped_new();
    GPtrArray *states = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) kvm = NULL;
    int fd = memfd_create("seed", MFD_CLOEXEC);
    MappedRamWriter *w = NULL;
    const DeviceInfo *info;
    g_autofree char *bytes = NULL;
    MigrationIO io;
    QEMUFile *f;
    off_t size;
    int ret;

    f = test_fd_file(&io, fd, true, "seed");
    if (mapped) {
        w = mapped_ram_writer_new(fd, l, 2, false, &error_abort);
        ram_saver_set_mapped(rs, w);
    }
    g_assert_true(ram_stopped_register(st, rs, r, &error_abort));
    for (int i = 0; (info = device_type_nth(i)); i++) {
        if (info->vmsd) {
            void *state = g_malloc0(info->state_size);

            g_ptr_array_add(states, state);
            g_assert_nonnull(savevm_register_vmsd(r, info->name, 0, info->vmsd, state, NULL));
        }
    }
    /* The vCPUs' subsections are what the tool steps over by the VMDESCRIPTION alone. */
    kvm = fuzz_register_kvm_sections(r, true);
    g_assert_true(savevm_save_head(r, f, savevm_stream_caps(mapped, sum), &error_abort));
    while ((ret = savevm_save_iterate(r, f, &error_abort)) == 0) {
    }
    g_assert_cmpint(ret, ==, 1);
    g_assert_true(savevm_save_complete(r, f, &error_abort));
    g_assert_true(savevm_save_tail(r, f, &error_abort));
    g_assert_cmpint(test_fd_close(&io, f), ==, 0);
    mapped_ram_writer_free(w);
    size = lseek(fd, 0, SEEK_END);
    bytes = g_malloc(size);
    g_assert_cmpint(pread(fd, bytes, size, 0), ==, size);
    close(fd);
    g_ptr_array_unref(states);
    ram_stopped_free(st);
    ram_saver_free(rs);
    savevm_registry_free(r);
    return g_bytes_new(bytes, size);
}

static void put_sparse_segment(GByteArray *out, size_t off, const uint8_t *p, size_t len)
{
    uint8_t le[SPARSE_OFFSET_LEN] = {
        (uint8_t)off, (uint8_t)(off >> 8), (uint8_t)(off >> 16), (uint8_t)(off >> 24)
    };

    g_assert_cmpuint(off + len, <=, SPARSE_MAX_FILE);
    g_byte_array_append(out, (const uint8_t *)SPARSE_MARK, SPARSE_MARK_LEN);
    g_byte_array_append(out, le, sizeof(le));
    g_byte_array_append(out, p, len);
}

/*
 * An image as a sparse input: its runs of SPARSE_MIN_HOLE zero bytes or
 * more become holes, or with `written` zeros written one byte a page
 * (that makes the whole page data).  The two differ to the tool: verify
 * of an x-checksum image reads a page the bitmap leaves clear where the
 * file has data (SEEK_DATA), as in a copied image, and skips it in a hole.
 */
static GBytes *to_sparse(GBytes *image, bool written)
{
    GByteArray *out = g_byte_array_new();
    gsize size;
    const uint8_t *d = g_bytes_get_data(image, &size);
    size_t seg = 0, i = 0;

    while (i < size) {
        size_t zeros = i;

        if (d[i]) {
            i++;
            continue;
        }
        while (i < size && !d[i]) {
            i++;
        }
        if (i - zeros >= SPARSE_MIN_HOLE) {
            size_t page = written ? (zeros + SPARSE_PAGE - 1) / SPARSE_PAGE * SPARSE_PAGE : i;

            if (zeros > seg) {
                put_sparse_segment(out, seg, d + seg, zeros - seg);
            }
            for (; page < i; page += SPARSE_PAGE) {
                put_sparse_segment(out, page, d + page, 1);
            }
            seg = i;
        }
    }
    /* The bytes after the last hole, or none at the end of the file to keep its size. */
    put_sparse_segment(out, seg, d + seg, size - seg);
    return g_byte_array_free_to_bytes(out);
}

/*
 * A seed must stand for exactly the image amber wrote (a segment's bytes
 * could hold the mark), and the image must pass verify, or a campaign
 * would start from files the writers never make.
 */
static void check_seed(GBytes *input, GBytes *image)
{
    char path[64];
    int fd = input_fd(path);
    char *verify[] = { "amber-img", "verify", path, NULL };
    gsize size;
    const uint8_t *want = g_bytes_get_data(image, &size);
    g_autofree uint8_t *got = g_malloc(size);

    g_assert_cmpint(ftruncate(fd, 0), ==, 0);
    input_to_file(fd, g_bytes_get_data(input, NULL), g_bytes_get_size(input));
    g_assert_cmpint(lseek(fd, 0, SEEK_END), ==, (off_t)size);
    g_assert_cmpint(pread(fd, got, size, 0), ==, (ssize_t)size);
    g_assert_true(memcmp(got, want, size) == 0);
    g_assert_cmpint(amber_img_main(3, verify), ==, 0);
}

/* How a seed holds its image. */
typedef enum SeedForm {
    SEED_PLAIN,                     /* the bytes as they are */
    SEED_HOLES,                     /* sparse, long zero runs as holes */
    SEED_WRITTEN,                   /* sparse, long zero runs written */
} SeedForm;

static bool seed(const char *dir, const char *name, GBytes *image, SeedForm form)
{
    GBytes *input = form == SEED_PLAIN ? g_bytes_ref(image)
                                       : to_sparse(image, form == SEED_WRITTEN);
    bool ok;

    check_seed(input, image);
    ok = fuzz_seed(dir, name, g_bytes_get_data(input, NULL), g_bytes_get_size(input));
    g_bytes_unref(input);
    g_bytes_unref(image);
    return ok;
}

bool fuzz_write_seeds(const char *dir)
{
    RamBlockList *plain = ram_list(128u << 10);
    RamBlockList *mapped;

    /*
     * Plain streams stay plain: bytes inserted into one shift the rest of
     * it, as in a real stream.  mapped-ram images are sparse, with holes
     * as amber writes them, and with x-checksum also without, as a copy
     * may have none (only verify's checksum pass looks for holes).
     */
    if (!seed(dir, "img-plain", image(plain, false, false), SEED_PLAIN) ||
        !seed(dir, "img-plain-checksum", image(plain, false, true), SEED_PLAIN)) {
        return false;
    }
    mapped = ram_list(64u << 10);
    return seed(dir, "img-mapped", image(mapped, true, false), SEED_HOLES) &&
           seed(dir, "img-mapped-checksum", image(mapped, true, true), SEED_HOLES) &&
           seed(dir, "img-mapped-checksum-written", image(mapped, true, true), SEED_WRITTEN);
}
