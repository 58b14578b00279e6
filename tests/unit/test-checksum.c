/*
 * x-checksum: CRC-32C itself, the stream's running checksum, and images
 * in which every single flipped byte that a loader reads must be caught,
 * while a flip where no loader reads changes nothing loaded.
 */
#include <fcntl.h>
#include <pthread.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "migration/lazy-restore.h"
#include "migration/mapped-ram.h"
#include "migration/qemu-file.h"
#include "system/machine.h"
#include "test-ram-helpers.h"
#include "util/bitmap.h"
#include "util/crc32c.h"
#include "util/cutils.h"

#define PAGE        RAM_PAGE_SIZE
/*
 * Bytes flipped: every one in the plain build, which is the claim; every
 * 11th under the sanitizers, which are 10-50x slower here and look for
 * memory errors on the way, not for detection.
 */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define STRIDE      11
#else
#define STRIDE      1
#endif
#define MAIN_SIZE   (256u << 10)
#define ROM_SIZE    (64u << 10)

/* Published check values of CRC-32C (RFC 3720, B.4, and the common "123456789"). */
static void test_crc32c_vectors(void)
{
    uint8_t buf[32];

    g_assert_cmphex(crc32c(0, "123456789", 9), ==, 0xe3069283);
    g_assert_cmphex(crc32c_portable(0, "123456789", 9), ==, 0xe3069283);
    memset(buf, 0, sizeof(buf));
    g_assert_cmphex(crc32c(0, buf, sizeof(buf)), ==, 0x8a9136aa);
    memset(buf, 0xff, sizeof(buf));
    g_assert_cmphex(crc32c(0, buf, sizeof(buf)), ==, 0x62a8ab43);
    for (int i = 0; i < 32; i++) {
        buf[i] = i;
    }
    g_assert_cmphex(crc32c(0, buf, sizeof(buf)), ==, 0x46dd794e);
    g_assert_cmphex(crc32c(0, NULL, 0), ==, 0);
}

/* In pieces, at every alignment, as in one call; the portable path agrees. */
static void test_crc32c_pieces(void)
{
    g_autofree uint8_t *buf = g_malloc(4096 + 16);
    uint32_t whole;

    for (int i = 0; i < 4096 + 16; i++) {
        buf[i] = g_test_rand_int();
    }
    for (int off = 0; off < 16; off++) {
        whole = crc32c(0, buf + off, 4096);
        g_assert_cmphex(crc32c_portable(0, buf + off, 4096), ==, whole);
        for (int cut = 0; cut <= 4096; cut += 1 + cut / 3) {
            g_assert_cmphex(crc32c(crc32c(0, buf + off, cut), buf + off + cut, 4096 - cut),
                            ==, whole);
        }
    }
}

/* A checkpoint covers the bytes since the one before, skipped ones included. */
static void test_qemu_file_crc(void)
{
    QEMUFile *out = qemu_file_new_mem_output("out");
    const uint8_t *data;
    size_t len;
    QEMUFile *in;
    Error *err = NULL;
    g_autofree uint8_t *copy = NULL;

    qemu_file_crc_start(out);
    qemu_put_be64(out, 0x1122334455667788ULL);
    qemu_put_buffer(out, "abc", 3);
    qemu_put_crc(out);
    qemu_put_byte(out, 7);
    qemu_put_crc(out);
    data = qemu_file_mem_data(out, &len);
    g_assert_cmpuint(len, ==, 8 + 3 + 4 + 1 + 4);
    g_assert_cmphex(be32_at(data + 11), ==, crc32c(0, data, 11));
    g_assert_cmphex(be32_at(data + 16), ==, crc32c(0, data + 15, 1));

    in = qemu_file_new_mem_input(data, len, "in");
    qemu_file_crc_start(in);
    g_assert_true(qemu_file_skip(in, 11, "head"));
    g_assert_true(qemu_get_crc(in, "head", &error_abort));
    g_assert_cmpint(qemu_peek_byte(in, 0), ==, 7);      /* peeking sums nothing */
    g_assert_cmpuint(qemu_get_byte(in, "byte"), ==, 7);
    g_assert_true(qemu_get_crc(in, "byte", &error_abort));
    qemu_fclose(in);

    copy = g_memdup2(data, len);
    copy[9] ^= 0x10;
    in = qemu_file_new_mem_input(copy, len, "in");
    qemu_file_crc_start(in);
    qemu_file_skip(in, 11, "head");
    g_assert_false(qemu_get_crc(in, "the head", &err));
    assert_error_contains(&err, "checksum mismatch after the head at stream offset 11");
    qemu_fclose(in);
    qemu_fclose(out);
}

/* ---- a small VM: two blocks and every device type ------------------------------------ */

typedef TestBlocks Vm;

static void vm_new(Vm *v, RamBackendKind kind)
{
    test_blocks_new(v, kind, MAIN_SIZE, ROM_SIZE);
}

static void vm_free(Vm *v)
{
    test_blocks_free(v);
}

/* A few data pages, one written and zeroed again, the rest never touched. */
static void vm_fill(Vm *v)
{
    static const unsigned main_pages[] = { 1, 6, 40 };

    for (size_t i = 0; i < G_N_ELEMENTS(main_pages); i++) {
        for (unsigned k = 0; k < PAGE; k++) {
            v->rb[0]->host[main_pages[i] * PAGE + k] = (uint8_t)(k * 31 + i * 7 + 1);
        }
    }
    memset(v->rb[1]->host + 2 * PAGE, 0x5a, PAGE);
    memset(v->rb[0]->host + 9 * PAGE, 0, PAGE);
}

static bool vm_same(Vm *a, Vm *b)
{
    for (int i = 0; i < 2; i++) {
        if (memcmp(a->rb[i]->host, b->rb[i]->host, a->rb[i]->used_length)) {
            return false;
        }
    }
    return true;
}

/* Every device type's state description, over states that are not all zero. */
static GPtrArray *register_devices(SaveStateRegistry *r)
{
    GPtrArray *states = g_ptr_array_new_with_free_func(g_free);
    const DeviceInfo *info;

    for (int i = 0; (info = device_type_nth(i)); i++) {
        uint8_t *state;

        if (!info->vmsd) {
            continue;
        }
        state = g_malloc0(info->state_size);
        g_ptr_array_add(states, state);
        g_assert_nonnull(savevm_register_vmsd(r, info->name, 0, info->vmsd, state, NULL));
    }
    return states;
}

/* A stopped save of v with every device type, checksummed or not. */
static GBytes *save_mem(Vm *v, bool sum)
{
    return test_save_mem(&v->l, &(TestSave){ .checksum = sum, .devices = register_devices },
                         NULL);
}

static char *tmp_image(void)
{
    return test_tmp_image("amber-checksum");
}

/* A mapped-ram image of v at path. */
static void save_file(Vm *v, const char *path, bool sum)
{
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    MappedRamWriter *w = mapped_ram_writer_new(fd, &v->l, 2, false, &error_abort);
    MigrationIO io;
    QEMUFile *f = test_fd_file(&io, fd, true, path);

    test_save_into(&v->l, f, &(TestSave){ .mapped = w, .checksum = sum,
                                          .devices = register_devices }, NULL);
    g_assert_cmpint(test_fd_close(&io, f), ==, 0);
    mapped_ram_writer_free(w);
    close(fd);
}

typedef enum Mode { LOAD_PLAIN, LOAD_EAGER, LOAD_MAP, LOAD_LAZY } Mode;

/*
 * Load f into dst (a mapped-ram image from fd); NULL on success, else the
 * message.  LOAD_LAZY leaves the pages to the caller, with the loader in
 * *ls_out.
 */
static char *load_from(Vm *dst, QEMUFile *f, int fd, Mode mode, bool require,
                       RamLoader **ls_out)
{
    SaveStateRegistry *r = savevm_registry_new();
    RamLoader *ls = ram_loader_new_memcpy(&dst->l);
    SaveVMLoadOptions opts = { .require_checksum = require };
    SaveVMLoader *sl = savevm_loader_new(r, f, &opts);
    GPtrArray *states;
    Error *err = NULL;
    char *msg = NULL, *json = NULL;
    bool ok;

    g_assert_true(ram_loader_register(ls, r, &error_abort));
    states = register_devices(r);
    ok = savevm_loader_read_header(sl, &err);
    if (ok && savevm_loader_has_capability(sl, MAPPED_RAM_CAPABILITY)) {
        ram_loader_set_map_image(ls, mode == LOAD_MAP);
        ok = ram_loader_set_mapped(ls, fd, 1, mode == LOAD_LAZY, &err);
    }
    ok = ok && savevm_loader_run(sl, &err) == SAVEVM_LOAD_EOF &&
         savevm_loader_read_vmdesc(sl, &json, &err) && ram_loader_complete(ls, &err);
    if (!ok) {
        msg = g_strdup(error_get_pretty(err));
        error_free(err);
    }
    g_free(json);
    savevm_loader_free(sl);
    g_ptr_array_unref(states);
    savevm_registry_free(r);
    if (ok && ls_out) {
        *ls_out = ls;
    } else {
        ram_loader_free(ls);
    }
    return msg;
}

static char *load_mem(Vm *dst, const uint8_t *data, size_t len, bool require)
{
    QEMUFile *f = qemu_file_new_mem_input(data, len, "mem");
    char *msg = load_from(dst, f, -1, LOAD_PLAIN, require, NULL);

    qemu_fclose(f);
    return msg;
}

static char *load_file(Vm *dst, int fd, Mode mode, RamLoader **ls)
{
    MigrationIO io;
    QEMUFile *f;
    char *msg;

    g_assert_cmpint(lseek(fd, 0, SEEK_SET), ==, 0);
    f = test_fd_file(&io, fd, false, "image");
    msg = load_from(dst, f, fd, mode, false, ls);
    test_fd_close(&io, f);
    return msg;
}

/* Changes each bit position in turn, and whole bytes too. */
static uint8_t flip_of(size_t i)
{
    return i % 3 == 2 ? 0xff : 1u << (i % 8);
}

/* ---- the plain stream ---------------------------------------------------------------- */

static void test_stream_flips(void)
{
    Vm src, dst;
    g_autoptr(GBytes) sum = NULL, plain = NULL;
    g_autofree uint8_t *buf = NULL;
    const uint8_t *p;
    size_t len, silent = 0, named = 0;
    char *msg;

    vm_new(&src, RAM_BACKEND_RAM);
    vm_new(&dst, RAM_BACKEND_RAM);
    vm_fill(&src);
    sum = save_mem(&src, true);
    p = g_bytes_get_data(sum, &len);
    g_assert_null(load_mem(&dst, p, len, true));
    g_assert_true(vm_same(&src, &dst));
    buf = g_memdup2(p, len);
    for (size_t i = 0; i < len; i += STRIDE) {
        buf[i] ^= flip_of(i);
        msg = load_mem(&dst, buf, len, false);
        if (!msg) {
            g_error("byte %zu of %zu changed by 0x%02x: the stream loaded", i, len, flip_of(i));
        }
        named += strstr(msg, "checksum") != NULL;
        g_free(msg);
        buf[i] ^= flip_of(i);
    }
    /* Most are caught by their checksum; the rest by a check that comes first. */
    g_test_message("%zu flips of a %zu-byte stream: all refused, %zu by a checksum",
                   (len + STRIDE - 1) / STRIDE, len, named);
    g_assert_cmpuint(named, >, len / STRIDE / 2);

    /* Without checksums, page bytes flip silently: what the checksums are for. */
    plain = save_mem(&src, false);
    g_free(buf);
    p = g_bytes_get_data(plain, &len);
    buf = g_memdup2(p, len);
    for (size_t i = 0; i < len; i += STRIDE) {
        buf[i] ^= flip_of(i);
        msg = load_mem(&dst, buf, len, false);
        silent += !msg;
        g_free(msg);
        buf[i] ^= flip_of(i);
    }
    /* At least the bytes of the four data pages. */
    g_assert_cmpuint(silent, >=, 4 * PAGE / STRIDE - 4);
    vm_free(&src);
    vm_free(&dst);
}

/* Without checksums, a destination that asks for them refuses the stream. */
static void test_stream_required(void)
{
    Vm src, dst;
    g_autoptr(GBytes) plain = NULL;
    char *msg;

    vm_new(&src, RAM_BACKEND_RAM);
    vm_new(&dst, RAM_BACKEND_RAM);
    vm_fill(&src);
    plain = save_mem(&src, false);
    msg = load_mem(&dst, g_bytes_get_data(plain, NULL), g_bytes_get_size(plain), true);
    g_assert_nonnull(msg);
    g_assert_nonnull(strstr(msg, "x-checksum is set, and this stream carries no checksums"));
    g_free(msg);
    g_assert_null(load_mem(&dst, g_bytes_get_data(plain, NULL), g_bytes_get_size(plain),
                           false));
    g_assert_true(vm_same(&src, &dst));
    vm_free(&src);
    vm_free(&dst);
}

/* A postcopy command in a checksummed stream is refused: its bytes would go unchecked. */
static void test_stream_no_postcopy(void)
{
    static const uint8_t advise[16] = { 0 };
    SaveStateRegistry *r = savevm_registry_new();
    QEMUFile *f = qemu_file_new_mem_output("mem");
    const uint8_t *data;
    Vm dst;
    size_t len;
    char *msg;

    vm_new(&dst, RAM_BACKEND_RAM);
    g_assert_true(savevm_save_head(r, f, savevm_stream_caps(false, true), &error_abort));
    savevm_put_command(f, MIG_CMD_POSTCOPY_ADVISE, sizeof(advise), advise);
    savevm_put_eof(f);
    data = qemu_file_mem_data(f, &len);
    msg = load_mem(&dst, data, len, false);
    g_assert_nonnull(msg);
    g_assert_nonnull(strstr(msg, "command POSTCOPY_ADVISE (3) in a stream with checksums "
                                 "(x-checksum), which cannot switch to postcopy"));
    g_free(msg);
    qemu_fclose(f);
    savevm_registry_free(r);
    vm_free(&dst);
}

/* ---- a guest that runs while its pages are copied ------------------------------------ */

typedef struct Copier {
    uint64_t next;                  /* pages put so far, over both blocks */
    Vm *vm;
} Copier;

/* Every page, copied as precopy copies them (the guest may change each at once). */
static int copy_fill(void *opaque, RamSaver *rs, QEMUFile *f, uint64_t max_pages, bool final,
                     Error **errp)
{
    Copier *c = opaque;
    uint64_t main_pages = MAIN_SIZE / PAGE, total = main_pages + ROM_SIZE / PAGE;

    for (uint64_t n = 0; c->next < total && (final || n < max_pages); n++, c->next++) {
        bool rom = c->next >= main_pages;
        RAMBlock *rb = c->vm->rb[rom];

        ram_saver_put_guest_page(rs, f, rb, (c->next - (rom ? main_pages : 0)) * PAGE, true,
                                 false);
    }
    return c->next == total;
}

static const RamPageSourceOps copy_ops = { .part_pages = 64, .fill = copy_fill };

typedef struct Writer {
    Vm *vm;
    bool stop;
} Writer;

static void *guest_writer(void *opaque)
{
    Writer *w = opaque;
    uint64_t i = 0;

    while (!__atomic_load_n(&w->stop, __ATOMIC_RELAXED)) {
        /* Four pages, over and over: each copy of them races a write. */
        uint8_t *p = w->vm->rb[0]->host + PAGE + (i * 8 + i / 4096) % (4 * PAGE);

        __atomic_store_n(p, (uint8_t)i, __ATOMIC_RELAXED);
        i++;
    }
    return NULL;
}

/*
 * Checksums of pages copied from a running guest are of the bytes copied
 * (the guest changes them under the copy): the stream always loads.
 */
static void test_running_guest(void)
{
    Vm src, dst;
    Writer w = { .vm = &src };
    pthread_t th;

#if defined(__SANITIZE_THREAD__)
    /* A vCPU's writes race the copy by design; here a thread TSan sees makes them. */
    g_test_skip("the guest's writes race the copy on purpose, which TSan reports");
    return;
#endif
    vm_new(&src, RAM_BACKEND_RAM);
    vm_new(&dst, RAM_BACKEND_RAM);
    vm_fill(&src);
    memset(src.rb[0]->host, 0x11, MAIN_SIZE);
    pthread_create(&th, NULL, guest_writer, &w);
    for (int round = 0; round < 20; round++) {
        SaveStateRegistry *r = savevm_registry_new();
        RamSaver *rs = ram_saver_new(&src.l);
        QEMUFile *f = qemu_file_new_mem_output("mem");
        Copier c = { .vm = &src };
        const uint8_t *data;
        size_t len;
        char *msg;
        int ret;

        g_assert_true(ram_saver_register(rs, r, &copy_ops, &c, &error_abort));
        g_assert_true(savevm_save_head(r, f, savevm_stream_caps(false, true), &error_abort));
        while ((ret = savevm_save_iterate(r, f, &error_abort)) == 0) {
        }
        g_assert_true(savevm_save_complete(r, f, &error_abort));
        g_assert_true(savevm_save_tail(r, f, &error_abort));
        data = qemu_file_mem_data(f, &len);
        msg = load_mem(&dst, data, len, true);
        if (msg) {
            g_error("round %d: %s", round, msg);
        }
        qemu_fclose(f);
        ram_saver_free(rs);
        savevm_registry_free(r);
    }
    __atomic_store_n(&w.stop, true, __ATOMIC_RELAXED);
    pthread_join(th, NULL);
    vm_free(&src);
    vm_free(&dst);
}

/* ---- mapped-ram ---------------------------------------------------------------------- */

static void flip_at(int fd, uint64_t off, uint8_t x)
{
    uint8_t b;

    g_assert_cmpint(pread(fd, &b, 1, off), ==, 1);
    b ^= x;
    g_assert_cmpint(pwrite(fd, &b, 1, off), ==, 1);
}

/*
 * Every byte a loader reads: all but the gap after each checksum table
 * and the pages the bitmap says are holes.
 */
static bool loader_reads(const MappedRamBlock *mbs[2], uint64_t off)
{
    for (int b = 0; b < 2; b++) {
        const MappedRamBlock *mb = mbs[b];
        uint64_t table_end = mb->bitmap_offset + mapped_ram_bitmap_bytes(mb->npages) +
                             mapped_ram_sums_bytes(mb->npages);

        if (off >= table_end && off < mb->pages_offset) {
            return false;
        }
        if (off >= mb->pages_offset && off < mb->pages_offset + mb->npages * PAGE) {
            return test_bit((off - mb->pages_offset) / PAGE, mb->bitmap);
        }
    }
    return true;
}

static void test_mapped_flips(void)
{
    g_autofree char *path = tmp_image();
    const MappedRamBlock *mbs[2];
    RamLoader *ls = NULL;
    Vm src, dst;
    uint64_t size, checked = 0, ignored = 0;
    int fd;

    vm_new(&src, RAM_BACKEND_RAM);
    vm_new(&dst, RAM_BACKEND_RAM);
    vm_fill(&src);
    save_file(&src, path, true);
    fd = open(path, O_RDWR | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    g_assert_null(load_file(&dst, fd, LOAD_EAGER, NULL));
    g_assert_true(vm_same(&src, &dst));
    /* The layout, as a loader sees it. */
    g_assert_null(load_file(&dst, fd, LOAD_LAZY, &ls));
    mbs[0] = ram_loader_mapped_block(ls, 0);
    mbs[1] = ram_loader_mapped_block(ls, 1);
    g_assert_nonnull(mbs[0]->sums);
    g_assert_cmpuint(mbs[0]->pages_offset, ==,
                     mapped_ram_pages_offset(mbs[0]->bitmap_offset - MAPPED_RAM_HEADER_SIZE,
                                             mbs[0]->npages, true));
    size = lseek(fd, 0, SEEK_END);
    for (uint64_t off = 0; off < size; off += STRIDE) {
        char *msg;

        if (!loader_reads(mbs, off)) {
            /* A few of the bytes nothing reads: they change nothing loaded. */
            if (off % 4093 == 0) {
                flip_at(fd, off, flip_of(off));
                g_assert_null(load_file(&dst, fd, LOAD_EAGER, NULL));
                g_assert_true(vm_same(&src, &dst));
                flip_at(fd, off, flip_of(off));
                ignored++;
            }
            continue;
        }
        flip_at(fd, off, flip_of(off));
        msg = load_file(&dst, fd, LOAD_EAGER, NULL);
        if (!msg) {
            g_error("byte %" PRIu64 " of the image changed by 0x%02x: it loaded", off,
                    flip_of(off));
        }
        g_free(msg);
        flip_at(fd, off, flip_of(off));
        checked++;
    }
    g_test_message("%" PRIu64 " bytes read by a loader: every flip refused; %" PRIu64
                   " bytes nothing reads: loaded unchanged", checked, ignored);
    g_assert_cmpuint(checked, >, 4 * PAGE / STRIDE);
    ram_loader_free(ls);
    close(fd);
    unlink(path);
    vm_free(&src);
    vm_free(&dst);
}

/* Where block b's pages begin in the image (from its header, as a loader reads it). */
static uint64_t pages_offset_of(Vm *dst, int fd, int b)
{
    RamLoader *ls = NULL;
    uint64_t off;

    g_assert_null(load_file(dst, fd, LOAD_LAZY, &ls));
    off = ram_loader_mapped_block(ls, b)->pages_offset;
    ram_loader_free(ls);
    return off;
}

/*
 * A lazy restore meets a corrupt page: it fails naming it, and that page
 * is never placed (it reads zero once unregistered); the others are as
 * saved or not placed yet.
 */
static void test_mapped_lazy(gconstpointer data)
{
    RamBackendKind kind = GPOINTER_TO_INT(data);
    g_autofree char *path = tmp_image();
    const MappedRamBlock *mbs[2];
    RamLoader *ls = NULL;
    LazyRestore *lr;
    Error *err = NULL;
    Vm src, dst;
    int fd;

    vm_new(&src, kind);
    vm_new(&dst, kind);
    vm_fill(&src);
    save_file(&src, path, true);
    fd = open(path, O_RDWR | O_CLOEXEC);
    /* Whole first: every page checks. */
    g_assert_null(load_file(&dst, fd, LOAD_LAZY, &ls));
    mbs[0] = ram_loader_mapped_block(ls, 0);
    mbs[1] = ram_loader_mapped_block(ls, 1);
    lr = lazy_restore_new(&dst.l, fd, mbs, &error_abort);
    lazy_restore_start(lr);
    g_assert_true(lazy_restore_wait(lr, &error_abort));
    lazy_restore_free(lr);
    g_assert_true(vm_same(&src, &dst));
    ram_loader_free(ls);
    vm_free(&dst);

    vm_new(&dst, kind);
    g_assert_null(load_file(&dst, fd, LOAD_LAZY, &ls));
    mbs[0] = ram_loader_mapped_block(ls, 0);
    mbs[1] = ram_loader_mapped_block(ls, 1);
    flip_at(fd, mbs[0]->pages_offset + 6 * PAGE + 4000, 0x80);
    lr = lazy_restore_new(&dst.l, fd, mbs, &error_abort);
    lazy_restore_start(lr);
    g_assert_false(lazy_restore_wait(lr, &err));
    assert_error_contains(&err, "page 6 (file offset");
    lazy_restore_free(lr);
    g_assert_true(buffer_is_zero(dst.rb[0]->host + 6 * PAGE, PAGE));
    for (int b = 0; b < 2; b++) {
        for (uint64_t p = 0; p < dst.rb[b]->used_length / PAGE; p++) {
            const uint8_t *d = dst.rb[b]->host + p * PAGE;

            g_assert_true(!memcmp(d, src.rb[b]->host + p * PAGE, PAGE) ||
                          buffer_is_zero(d, PAGE));
        }
    }
    ram_loader_free(ls);
    close(fd);
    unlink(path);
    vm_free(&src);
    vm_free(&dst);
}

/* Under x-zero-copy-restore a checksummed image is read and checked, not mapped. */
static void test_mapped_zero_copy(void)
{
    g_autofree char *path = tmp_image();
    Vm src, dst;
    char *msg;
    int fd;

    vm_new(&src, RAM_BACKEND_RAM);
    vm_new(&dst, RAM_BACKEND_RAM);
    vm_fill(&src);
    save_file(&src, path, true);
    fd = open(path, O_RDWR | O_CLOEXEC);
    g_assert_null(load_file(&dst, fd, LOAD_MAP, NULL));
    g_assert_true(vm_same(&src, &dst));
    g_assert_cmpint(dst.rb[0]->kind, ==, RAM_BACKEND_RAM);
    g_assert_cmpint(dst.rb[0]->fd, <, 0);
    /* And a corrupt page is caught there too. */
    flip_at(fd, pages_offset_of(&dst, fd, 0) + 6 * PAGE + 17, 0x04);
    msg = load_file(&dst, fd, LOAD_MAP, NULL);
    g_assert_nonnull(msg);
    g_assert_nonnull(strstr(msg, "block 'pc.ram': page 6 (file offset"));
    g_assert_nonnull(strstr(msg, "fails its checksum"));
    g_free(msg);
    close(fd);
    unlink(path);
    vm_free(&src);
    vm_free(&dst);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/checksum/crc32c/vectors", test_crc32c_vectors);
    g_test_add_func("/checksum/crc32c/pieces", test_crc32c_pieces);
    g_test_add_func("/checksum/qemu-file", test_qemu_file_crc);
    g_test_add_func("/checksum/stream/flips", test_stream_flips);
    g_test_add_func("/checksum/stream/required", test_stream_required);
    g_test_add_func("/checksum/stream/running-guest", test_running_guest);
    g_test_add_func("/checksum/stream/no-postcopy", test_stream_no_postcopy);
    g_test_add_func("/checksum/mapped/flips", test_mapped_flips);
    g_test_add_func("/checksum/mapped/zero-copy", test_mapped_zero_copy);
    g_test_add_data_func("/checksum/mapped/lazy/anon", GINT_TO_POINTER(RAM_BACKEND_RAM),
                         test_mapped_lazy);
    g_test_add_data_func("/checksum/mapped/lazy/memfd", GINT_TO_POINTER(RAM_BACKEND_MEMFD),
                         test_mapped_lazy);
    return g_test_run();
}
