/*
 * ramio: how fast RAM goes to a file and back, through the real saver,
 * loader, mapped-ram writer and readers, lazy restore and zero-copy map,
 * with no guest (tests/bench/ramio.py runs it, on hosts with or without
 * /dev/kvm).
 *
 *   ramio --mib N [--data-pct P] [--threads T]... [--cold-cache] [--idle S] DIR
 *
 * One anonymous block of N MiB, P % of its pages data (the rest never
 * touched), is saved as a stopped guest is: a plain stream (one writer),
 * then mapped-ram with each T writing threads.  Each image is loaded back
 * into a new block (first touch of its memory included, as in a restore):
 * plain and mapped-ram eagerly with T threads, lazily (ready: the moment
 * vCPUs could run; complete: every page placed), and zero-copy (ready:
 * mapped; then one read of every page).  Every load is compared with the
 * source, outside the timing.  Each save starts with no dirty page cache
 * and is synced before the load (that time reported, not counted).  --cold-cache drops the image from the page
 * cache before each load (reads then come from the device); --idle S
 * waits S seconds before each timed step, long enough on hosts that hand
 * idle memory back to their hypervisor for the next first touch to be
 * cold.  Prints one JSON object.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "migration/lazy-restore.h"
#include "migration/mapped-ram.h"
#include "migration/migration-io.h"
#include "migration/ram.h"
#include "migration/savers.h"
#include "migration/savevm.h"

#define PAGE        RAM_PAGE_SIZE
#define MAX_THREADS 8

typedef struct Options {
    uint64_t mib;
    unsigned data_pct;
    int threads[MAX_THREADS];
    int nthreads;
    bool cold_cache;
    unsigned idle_s;
    const char *dir;
} Options;

typedef enum Mode { LOAD_EAGER, LOAD_LAZY, LOAD_MAP } Mode;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, Error *err)
{
    fprintf(stderr, "ramio: %s: %s\n", what, err ? error_get_pretty(err) : g_strerror(errno));
    exit(1);
}

static RAMBlock *block_new(uint64_t size)
{
    RamBackendOptions o = { .kind = RAM_BACKEND_RAM, .size = size };
    Error *err = NULL;
    RAMBlock *rb = ram_block_new("pc.ram", &o, &err);

    if (!rb) {
        die("RAM", err);
    }
    return rb;
}

/* Page p is data for data_pct % of the pages, spread evenly. */
static void fill(RAMBlock *rb, unsigned data_pct)
{
    for (uint64_t p = 0; p < rb->used_length / PAGE; p++) {
        if ((p * 7919) % 100 >= data_pct) {
            continue;
        }
        for (unsigned i = 0; i < PAGE; i += 8) {
            uint64_t v = (p << 20) ^ i ^ 0xa5a5a5a500000000ULL;

            memcpy(rb->host + p * PAGE + i, &v, sizeof(v));
        }
    }
}

static void pause_idle(const Options *o)
{
    if (o->idle_s) {
        sleep(o->idle_s);
    }
}

/*
 * A stopped save of ram to path (threads 0: the plain stream); seconds
 * until the stream is closed.  Each starts with no dirty page cache (the
 * kernel would otherwise throttle it for its predecessor's writeback) and
 * ends synced, *sync_s the time that took, so loads do not race writeback.
 */
static double save(RamBlockList *ram, const char *path, int threads, double *sync_s)
{
    SaveStateRegistry *r = savevm_registry_new();
    RamSaver *rs = ram_saver_new(ram);
    RamStopped *st = ram_stopped_new();
    MappedRamWriter *w = NULL;
    Error *err = NULL;
    MigrationIO io;
    QEMUFile *f;
    double t0, t;
    int fd, ret;

    unlink(path);
    sync();
    t0 = now_s();
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        die(path, NULL);
    }
    if (threads) {
        w = mapped_ram_writer_new(fd, ram, threads, false, &err);
        if (!w) {
            die("writer", err);
        }
        ram_saver_set_mapped(rs, w);
    }
    if (!migration_io_init(&io, fd, -1, &err)) {
        die("io", err);
    }
    f = migration_io_output(&io, path);
    if (!ram_stopped_register(st, rs, r, &err) ||
        !savevm_save_head(r, f, savevm_stream_caps(threads > 0, false), &err)) {
        die("save", err);
    }
    while ((ret = savevm_save_iterate(r, f, &err)) == 0) {
    }
    if (ret < 0 || !savevm_save_complete(r, f, &err) || !savevm_save_tail(r, f, &err)) {
        die("save", err);
    }
    if (qemu_fclose(f) < 0) {
        die("save: close", NULL);
    }
    t = now_s() - t0;
    if (fsync(fd) < 0) {
        die("save: fsync", NULL);
    }
    *sync_s = now_s() - t0 - t;
    migration_io_restore(&io);
    mapped_ram_writer_free(w);
    ram_stopped_free(st);
    ram_saver_free(rs);
    savevm_registry_free(r);
    close(fd);
    return t;
}

/* The image leaves the page cache: the next load reads the device. */
static void drop_cache(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || fsync(fd) < 0 || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) < 0) {
        die(path, NULL);
    }
    close(fd);
}

static void check_same(const RAMBlock *a, const RAMBlock *b, const char *what)
{
    if (memcmp(a->host, b->host, a->used_length)) {
        fprintf(stderr, "ramio: %s: the loaded RAM differs from the saved one\n", what);
        exit(1);
    }
}

typedef struct LoadTimes {
    double ready_s;                 /* vCPUs could run */
    double complete_s;              /* every page in */
} LoadTimes;

/* Load path into a new block (compared with src); times from the open. */
static LoadTimes load(const RAMBlock *src, const char *path, int threads, Mode mode,
                      const char *what)
{
    RAMBlock *rb = block_new(src->used_length);
    RamBlockList ram = { .blocks = { rb }, .nblocks = 1 };
    SaveStateRegistry *r = savevm_registry_new();
    RamLoader *ls = ram_loader_new_memcpy(&ram);
    double t0 = now_s();
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    MigrationIO io;
    QEMUFile *f;
    SaveVMLoader *sl;
    Error *err = NULL;
    char *json = NULL;
    LoadTimes t;

    if (fd < 0) {
        die(path, NULL);
    }
    if (!ram_loader_register(ls, r, &err) || !migration_io_init(&io, fd, -1, &err)) {
        die(what, err);
    }
    f = migration_io_input(&io, path);
    sl = savevm_loader_new(r, f, NULL);
    if (!savevm_loader_read_header(sl, &err)) {
        die(what, err);
    }
    if (savevm_loader_has_capability(sl, MAPPED_RAM_CAPABILITY)) {
        ram_loader_set_map_image(ls, mode == LOAD_MAP);
        if (!ram_loader_set_mapped(ls, fd, threads, mode == LOAD_LAZY, &err)) {
            die(what, err);
        }
    }
    if (savevm_loader_run(sl, &err) != SAVEVM_LOAD_EOF ||
        !savevm_loader_read_vmdesc(sl, &json, &err) || !ram_loader_complete(ls, &err)) {
        die(what, err);
    }
    if (mode == LOAD_LAZY) {
        const MappedRamBlock *mbs[1] = { ram_loader_mapped_block(ls, 0) };
        LazyRestore *lr = lazy_restore_new(&ram, fd, mbs, &err);

        if (!lr) {
            die(what, err);
        }
        lazy_restore_start(lr);
        t.ready_s = now_s() - t0;
        if (!lazy_restore_wait(lr, &err)) {
            die(what, err);
        }
        t.complete_s = now_s() - t0;
        lazy_restore_free(lr);
    } else {
        t.ready_s = now_s() - t0;
        if (mode == LOAD_MAP) {
            volatile uint64_t sum = 0;

            /* The guest's first touch of every page: page-cache faults. */
            for (uint64_t off = 0; off < rb->used_length; off += PAGE) {
                sum += rb->host[off];
            }
        }
        t.complete_s = now_s() - t0;
    }
    check_same(src, rb, what);
    g_free(json);
    savevm_loader_free(sl);
    qemu_fclose(f);
    migration_io_restore(&io);
    ram_loader_free(ls);
    savevm_registry_free(r);
    close(fd);
    ram_block_free(rb);
    return t;
}

static LoadTimes timed_load(const Options *o, const RAMBlock *src, const char *path,
                            int threads, Mode mode, const char *what)
{
    if (o->cold_cache) {
        drop_cache(path);
    }
    pause_idle(o);
    return load(src, path, threads, mode, what);
}

static int usage(void)
{
    fprintf(stderr, "usage: ramio --mib N [--data-pct P] [--threads T]... [--cold-cache] "
            "[--idle S] DIR\n");
    return 2;
}

static bool parse(int argc, char **argv, Options *o)
{
    for (int i = 1; i < argc; i++) {
        char *end = NULL;

        if (!strcmp(argv[i], "--mib") && i + 1 < argc) {
            o->mib = g_ascii_strtoull(argv[++i], &end, 10);
        } else if (!strcmp(argv[i], "--data-pct") && i + 1 < argc) {
            o->data_pct = g_ascii_strtoull(argv[++i], &end, 10);
            if (o->data_pct > 100) {
                return false;
            }
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc &&
                   o->nthreads < MAX_THREADS) {
            o->threads[o->nthreads] = g_ascii_strtoull(argv[++i], &end, 10);
            if (o->threads[o->nthreads] < 1 ||
                o->threads[o->nthreads] > MAPPED_RAM_MAX_THREADS) {
                return false;
            }
            o->nthreads++;
        } else if (!strcmp(argv[i], "--idle") && i + 1 < argc) {
            o->idle_s = g_ascii_strtoull(argv[++i], &end, 10);
        } else if (!strcmp(argv[i], "--cold-cache")) {
            o->cold_cache = true;
        } else if (argv[i][0] != '-' && !o->dir) {
            o->dir = argv[i];
        } else {
            return false;
        }
        if (end && *end) {
            return false;
        }
    }
    return o->mib && o->dir;
}

int main(int argc, char **argv)
{
    Options o = { .data_pct = 90 };
    g_autofree char *plain = NULL, *mapped = NULL;
    RamBlockList ram = { .nblocks = 1 };
    RAMBlock *src;
    uint64_t data = 0;
    double save_s, sync_s;
    LoadTimes t;

    if (!parse(argc, argv, &o)) {
        return usage();
    }
    if (!o.nthreads) {
        o.threads[o.nthreads++] = MAPPED_RAM_DEFAULT_THREADS;
    }
    signal(SIGPIPE, SIG_IGN);
    plain = g_build_filename(o.dir, "ramio-plain.img", NULL);
    mapped = g_build_filename(o.dir, "ramio-mapped.img", NULL);
    src = ram.blocks[0] = block_new(o.mib << 20);
    fill(src, o.data_pct);
    for (uint64_t off = 0; off < src->used_length; off += PAGE) {
        data += (off / PAGE * 7919) % 100 < o.data_pct;
    }
    printf("{\"mib\": %" PRIu64 ", \"data_mib\": %.1f, \"cold_cache\": %s, \"idle_s\": %u",
           o.mib, data * PAGE / 1048576.0, o.cold_cache ? "true" : "false", o.idle_s);
    pause_idle(&o);
    save_s = save(&ram, plain, 0, &sync_s);
    printf(", \"plain\": {\"save_s\": %.4f, \"sync_s\": %.4f", save_s, sync_s);
    t = timed_load(&o, src, plain, 1, LOAD_EAGER, "plain load");
    printf(", \"load_s\": %.4f}", t.complete_s);
    unlink(plain);
    printf(", \"mapped\": [");
    for (int i = 0; i < o.nthreads; i++) {
        pause_idle(&o);
        save_s = save(&ram, mapped, o.threads[i], &sync_s);
        printf("%s{\"threads\": %d, \"save_s\": %.4f, \"sync_s\": %.4f", i ? ", " : "",
               o.threads[i], save_s, sync_s);
        t = timed_load(&o, src, mapped, o.threads[i], LOAD_EAGER, "mapped load");
        printf(", \"load_s\": %.4f}", t.complete_s);
        fflush(stdout);
    }
    t = timed_load(&o, src, mapped, 1, LOAD_LAZY, "lazy load");
    printf("], \"lazy\": {\"ready_s\": %.6f, \"complete_s\": %.4f}", t.ready_s,
           t.complete_s);
    t = timed_load(&o, src, mapped, 1, LOAD_MAP, "zero-copy load");
    printf(", \"zero_copy\": {\"ready_s\": %.6f, \"touched_s\": %.4f}}\n", t.ready_s,
           t.complete_s);
    unlink(mapped);
    ram_block_free(src);
    return 0;
}
