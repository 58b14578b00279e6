/*
 * mkimage: a saved-VM image made without a guest, for the tests of
 * amber-img on hosts with no /dev/kvm.
 *
 *   mkimage [--mapped] [--checksum] [--threads N] [--rom-size BYTES] OUT.img DUMPDIR
 *
 * Two RAM blocks, "pc.ram" (8 MiB) and "pc.rom" (1 MiB unless --rom-size
 * says otherwise, any whole number of pages), of anonymous memory as a
 * machine gets it, are filled with a fixed pattern and saved as a stopped
 * VM is, by the same saver and page source: a plain stream, or with
 * --mapped a mapped-ram one whose pages are written by N threads (the
 * multifd-channels setting; a plain stream has one writer); --checksum
 * adds x-checksum's checksums to either.  The stream
 * has no device sections.  Each block's bytes go to DUMPDIR/<idstr>.raw,
 * the reference what is read back from the image must equal.
 *
 * The pattern covers what the formats treat differently: pages never
 * touched (not populated at all), pages written and cleared again
 * (populated, zero), pages whose only non-zero byte is their last, and
 * pages of data; and it depends on the block, so two blocks' pages cannot
 * be swapped unseen.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <glib.h>

#include "migration/mapped-ram.h"
#include "migration/migration-io.h"
#include "migration/ram.h"
#include "migration/savers.h"
#include "migration/savevm.h"

#define PAGE        RAM_PAGE_SIZE
#define MAIN_SIZE   (8ULL << 20)
#define ROM_SIZE    (1ULL << 20)

typedef struct Options {
    bool mapped;
    bool checksum;
    int threads;
    uint64_t rom_size;
    const char *out;
    const char *dump_dir;
} Options;

static void fill_page(uint8_t *host, uint64_t p, unsigned salt)
{
    if (p % 3 == 0 || (p / 64) % 5 == 4) {
        return;                                 /* never touched */
    }
    if (p % 7 == 1) {
        memset(host, 0xff, PAGE);               /* populated, then zero again */
        memset(host, 0, PAGE);
        return;
    }
    if (p % 11 == 2) {
        host[PAGE - 1] = (uint8_t)(p | 1);
        return;
    }
    for (unsigned i = 0; i < PAGE; i += 8) {
        uint64_t v = ((uint64_t)salt << 56) ^ (p << 16) ^ i ^ 0x5a5a000000000000ULL;

        memcpy(host + i, &v, sizeof(v));
    }
}

static RAMBlock *block_new(const char *idstr, uint64_t size, unsigned salt, Error **errp)
{
    RamBackendOptions o = { .kind = RAM_BACKEND_RAM, .size = size };
    RAMBlock *rb = ram_block_new(idstr, &o, errp);

    for (uint64_t p = 0; rb && p < size / PAGE; p++) {
        fill_page(rb->host + p * PAGE, p, salt);
    }
    return rb;
}

/* A stopped save of ram into fd, as the migration thread writes one. */
static bool save(RamBlockList *ram, int fd, const Options *o, Error **errp)
{
    SaveStateRegistry *r = savevm_registry_new();
    RamSaver *rs = ram_saver_new(ram);
    RamStopped *st = ram_stopped_new();
    MappedRamWriter *w = NULL;
    MigrationIO io;
    QEMUFile *f = NULL;
    bool ok = false;
    int ret;

    if (o->mapped) {
        w = mapped_ram_writer_new(fd, ram, o->threads, false, errp);
        if (!w) {
            goto out;
        }
        ram_saver_set_mapped(rs, w);
    }
    if (!migration_io_init(&io, fd, -1, errp)) {
        goto out;
    }
    f = migration_io_output(&io, o->out);
    if (!ram_stopped_register(st, rs, r, errp) ||
        !savevm_save_head(r, f, savevm_stream_caps(o->mapped, o->checksum), errp)) {
        goto close;
    }
    while ((ret = savevm_save_iterate(r, f, errp)) == 0) {
    }
    ok = ret > 0 && savevm_save_complete(r, f, errp) && savevm_save_tail(r, f, errp);
close:
    if (qemu_fclose(f) < 0 && ok) {
        error_setg(errp, "cannot write '%s'", o->out);
        ok = false;
    }
    migration_io_restore(&io);
out:
    mapped_ram_writer_free(w);
    ram_stopped_free(st);
    ram_saver_free(rs);
    savevm_registry_free(r);
    return ok;
}

static bool dump(const RAMBlock *rb, const char *dir, Error **errp)
{
    g_autofree char *name = g_strdup_printf("%s.raw", rb->idstr);
    g_autofree char *path = g_build_filename(dir, name, NULL);
    g_autoptr(GError) gerr = NULL;

    if (!g_file_set_contents(path, (const char *)rb->host, rb->used_length, &gerr)) {
        error_setg(errp, "%s", gerr->message);
        return false;
    }
    return true;
}

static bool run(const Options *o, Error **errp)
{
    RamBlockList ram = { 0 };
    bool ok = false;
    int fd = -1;

    ram.blocks[0] = block_new("pc.ram", MAIN_SIZE, 1, errp);
    ram.blocks[1] = ram.blocks[0] ? block_new("pc.rom", o->rom_size, 2, errp) : NULL;
    if (!ram.blocks[1]) {
        goto out;
    }
    ram.nblocks = 2;
    if (g_mkdir_with_parents(o->dump_dir, 0755) < 0) {
        error_setg_errno(errp, errno, "cannot create '%s'", o->dump_dir);
        goto out;
    }
    fd = open(o->out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        error_setg_errno(errp, errno, "cannot create '%s'", o->out);
        goto out;
    }
    ok = save(&ram, fd, o, errp) && dump(ram.blocks[0], o->dump_dir, errp) &&
         dump(ram.blocks[1], o->dump_dir, errp);
out:
    if (fd >= 0) {
        close(fd);
    }
    ram_block_free(ram.blocks[0]);
    ram_block_free(ram.blocks[1]);
    return ok;
}

static int usage(void)
{
    fprintf(stderr, "usage: mkimage [--mapped] [--checksum] [--threads N] [--rom-size BYTES] "
            "OUT.img DUMPDIR\n");
    return 2;
}

int main(int argc, char **argv)
{
    Options o = { .threads = MAPPED_RAM_DEFAULT_THREADS, .rom_size = ROM_SIZE };
    const char *pos[2];
    int npos = 0;
    Error *err = NULL;
    char *end;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mapped")) {
            o.mapped = true;
        } else if (!strcmp(argv[i], "--checksum")) {
            o.checksum = true;
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            long n = strtol(argv[++i], &end, 10);

            if (*end || n < 1 || n > MAPPED_RAM_MAX_THREADS) {
                return usage();
            }
            o.threads = n;
        } else if (!strcmp(argv[i], "--rom-size") && i + 1 < argc) {
            o.rom_size = g_ascii_strtoull(argv[++i], &end, 0);
            if (*end || !o.rom_size || o.rom_size % PAGE) {
                return usage();
            }
        } else if (argv[i][0] == '-' || npos == 2) {
            return usage();
        } else {
            pos[npos++] = argv[i];
        }
    }
    if (npos != 2) {
        return usage();
    }
    o.out = pos[0];
    o.dump_dir = pos[1];
    /* As amber does: a write error is the stream's, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    if (!run(&o, &err)) {
        fprintf(stderr, "mkimage: %s\n", error_get_pretty(err));
        error_free(err);
        return 1;
    }
    return 0;
}
