/*
 * amber-img's reader: a file that claims to be a saved VM, read by the
 * tool's own code (tools/amber-img.c, tools/img-ram.c, built into this
 * target with its main renamed) through `verify` and `info --json`: QEVM
 * framing, the VMDESCRIPTION that steps it over device sections, the
 * `ram` section plain or mapped-ram (headers, bitmaps, and with
 * x-checksum the checksums and tables).  Any bytes must end in OK or one
 * error, never a crash, a leak or a read outside the file.
 */
#include <fcntl.h>
#include <stdio.h>
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = input_fd(path);
    char *verify[] = { "amber-img", "verify", path, NULL };
    char *info[] = { "amber-img", "info", "--json", path, NULL };

    g_assert_cmpint(ftruncate(fd, 0), ==, 0);
    g_assert_true(size == 0 || pwrite(fd, data, size, 0) == (ssize_t)size);
    if (amber_img_main(3, verify) == 0) {
        g_assert_cmpint(amber_img_main(4, info), ==, 0);
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

/* A stopped save with every device type, into fd (a file) or memory. */
static GBytes *image(RamBlockList *l, bool mapped, bool sum)
{
    SaveStateRegistry *r = savevm_registry_new();
    RamSaver *rs = ram_saver_new(l);
    RamStopped *st = ram_stopped_new();
    GPtrArray *states = g_ptr_array_new_with_free_func(g_free);
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

static bool seed(const char *dir, const char *name, GBytes *b)
{
    bool ok = fuzz_seed(dir, name, g_bytes_get_data(b, NULL), g_bytes_get_size(b));

    g_bytes_unref(b);
    return ok;
}

bool fuzz_write_seeds(const char *dir)
{
    /* mapped-ram's pages sit at 1 MiB boundaries: a small first block keeps it near 2 MiB. */
    RamBlockList *plain = ram_list(128u << 10);

    return seed(dir, "img-plain", image(plain, false, false)) &&
           seed(dir, "img-plain-checksum", image(plain, false, true)) &&
           seed(dir, "img-mapped", image(ram_list(64u << 10), true, false)) &&
           seed(dir, "img-mapped-checksum", image(ram_list(64u << 10), true, true));
}
