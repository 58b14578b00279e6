/* RAM blocks: each backend, share and prealloc, the guest layout, bad options. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "system/ram.h"

#define MIB (1ULL << 20)
#define GIB (1ULL << 30)

static char *tmpdir;

static RAMBlock *new_block(RamBackendOptions *o)
{
    Error *err = NULL;
    RAMBlock *rb = ram_block_new("test.ram", o, &err);
    if (!rb) {
        g_error("ram_block_new: %s", error_get_pretty(err));
    }
    return rb;
}

static void expect_error(RamBackendOptions *o, const char *needle)
{
    Error *err = NULL;
    RAMBlock *rb = ram_block_new("test.ram", o, &err);
    g_assert_null(rb);
    g_assert_nonnull(err);
    if (!strstr(error_get_pretty(err), needle)) {
        g_error("message '%s' lacks '%s'", error_get_pretty(err), needle);
    }
    error_free(err);
}

/* The block is usable memory and 2 MiB aligned (huge pages need it). */
static void check_usable(RAMBlock *rb)
{
    g_assert_nonnull(rb->host);
    g_assert_cmpuint((uintptr_t)rb->host % (2 * MIB), ==, 0);
    rb->host[0] = 0x5a;
    rb->host[rb->used_length - 1] = 0xa5;
    g_assert_cmpuint(rb->host[0], ==, 0x5a);
    g_assert_cmpuint(rb->host[rb->used_length - 1], ==, 0xa5);
}

static void test_anon(void)
{
    RamBackendOptions o = { .kind = RAM_BACKEND_RAM, .size = 8 * MIB };
    RAMBlock *rb = new_block(&o);
    check_usable(rb);
    g_assert_cmpint(rb->fd, ==, -1);
    g_assert_cmpuint(rb->page_size, ==, 4096);
    g_assert_false(rb->shared);
    g_assert_cmpuint(rb->used_length, ==, 8 * MIB);
    ram_block_free(rb);
}

/* Whether a write through the mapping is visible through the fd. */
static bool write_reaches_fd(RAMBlock *rb)
{
    memcpy(rb->host + 4096, "amber", 5);
    char buf[5] = { 0 };
    g_assert_cmpint(pread(rb->fd, buf, 5, 4096), ==, 5);
    return memcmp(buf, "amber", 5) == 0;
}

static void test_memfd_shared(void)
{
    RamBackendOptions o = { .kind = RAM_BACKEND_MEMFD, .id = "m", .size = 4 * MIB,
                            .share = true };
    RAMBlock *rb = new_block(&o);
    check_usable(rb);
    g_assert_cmpint(rb->fd, >=, 0);
    g_assert_true(rb->shared);
    g_assert_true(write_reaches_fd(rb));
    ram_block_free(rb);
}

static void test_memfd_private(void)
{
    RamBackendOptions o = { .kind = RAM_BACKEND_MEMFD, .id = "m", .size = 4 * MIB,
                            .share = false };
    RAMBlock *rb = new_block(&o);
    check_usable(rb);
    g_assert_false(write_reaches_fd(rb));
    ram_block_free(rb);
}

static int count_entries(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    int n = 0;
    while (g_dir_read_name(d)) {
        n++;
    }
    g_dir_close(d);
    return n;
}

/* mem-path a directory: an unlinked file in it, as QEMU does. */
static void test_file_dir(void)
{
    g_autofree char *dir = g_build_filename(tmpdir, "dir", NULL);
    g_mkdir(dir, 0700);
    RamBackendOptions o = { .kind = RAM_BACKEND_FILE, .id = "f", .size = 4 * MIB,
                            .mem_path = dir, .share = true };
    RAMBlock *rb = new_block(&o);
    check_usable(rb);
    g_assert_cmpint(count_entries(dir), ==, 0);
    g_assert_true(write_reaches_fd(rb));
    ram_block_free(rb);
    g_rmdir(dir);
}

/* mem-path a file: created, sized, and with share=on it holds guest writes. */
static void test_file_path(void)
{
    g_autofree char *path = g_build_filename(tmpdir, "guest.mem", NULL);
    RamBackendOptions o = { .kind = RAM_BACKEND_FILE, .id = "f", .size = 2 * MIB,
                            .mem_path = path, .share = true };
    RAMBlock *rb = new_block(&o);
    check_usable(rb);
    memcpy(rb->host + 100, "persist", 7);
    ram_block_free(rb);
    g_autofree char *contents = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(path, &contents, &len, NULL));
    g_assert_cmpuint(len, ==, 2 * MIB);
    g_assert_cmpmem(contents + 100, 7, "persist", 7);
    g_unlink(path);
}

static void test_prealloc(void)
{
    RamBackendOptions o = { .kind = RAM_BACKEND_RAM, .size = 4 * MIB, .prealloc = true };
    RAMBlock *rb = new_block(&o);
    size_t pages = rb->max_length / 4096;
    g_autofree unsigned char *vec = g_malloc(pages);
    g_assert_cmpint(mincore(rb->host, rb->max_length, vec), ==, 0);
    for (size_t i = 0; i < pages; i++) {
        g_assert_cmpuint(vec[i] & 1, ==, 1);    /* resident before any guest access */
    }
    ram_block_free(rb);
}

static bool huge_pages_reserved(void)
{
    g_autofree char *s = NULL;
    return g_file_get_contents("/proc/sys/vm/nr_hugepages", &s, NULL, NULL) &&
           g_ascii_strtoull(s, NULL, 10) > 0;
}

static void test_hugetlb(void)
{
    if (!huge_pages_reserved()) {
        g_test_skip("no huge pages reserved (/proc/sys/vm/nr_hugepages is 0)");
        return;
    }
    RamBackendOptions o = { .kind = RAM_BACKEND_MEMFD, .id = "h", .size = 2 * MIB,
                            .share = true, .hugetlb = true, .prealloc = true };
    RAMBlock *rb = new_block(&o);
    check_usable(rb);
    g_assert_true(rb->hugetlbfs);
    g_assert_cmpuint(rb->page_size, >=, 2 * MIB);
    ram_block_free(rb);
}

/* hugetlbsize= picks the pool (libvirt writes it with every hugetlb memfd). */
static void test_hugetlbsize(void)
{
    RamBackendOptions odd = { .kind = RAM_BACKEND_MEMFD, .id = "h", .size = 512 * MIB,
                              .share = true, .hugetlb = true, .hugetlbsize = 512 * MIB };

    expect_error(&odd, "memory-backend-memfd 'h': hugetlbsize=536870912: this host has no "
                 "huge pages of that size (/sys/kernel/mm/hugepages/hugepages-524288kB)");
    if (!huge_pages_reserved() ||
        access("/sys/kernel/mm/hugepages/hugepages-2048kB", F_OK) != 0) {
        g_test_skip("no 2 MiB huge pages reserved (/proc/sys/vm/nr_hugepages is 0)");
        return;
    }
    RamBackendOptions o = { .kind = RAM_BACKEND_MEMFD, .id = "h", .size = 4 * MIB,
                            .share = true, .hugetlb = true, .hugetlbsize = 2 * MIB,
                            .prealloc = true };
    RAMBlock *rb = new_block(&o);
    check_usable(rb);
    g_assert_true(rb->hugetlbfs);
    g_assert_cmpuint(rb->page_size, ==, 2 * MIB);
    ram_block_free(rb);
}

/* The size check comes before any huge page is needed, so it runs everywhere. */
static void test_hugetlb_size_multiple(void)
{
    int fd = memfd_create("probe", MFD_HUGETLB);
    if (fd < 0) {
        g_test_skip("the kernel has no hugetlb memfd support");
        return;
    }
    close(fd);
    RamBackendOptions o = { .kind = RAM_BACKEND_MEMFD, .id = "h", .size = 3 * MIB,
                            .share = true, .hugetlb = true };
    expect_error(&o, "memory-backend-memfd 'h': size 3145728 is not a multiple of the "
                 "huge page size");
}

static void test_bad_options(void)
{
    RamBackendOptions nopath = { .kind = RAM_BACKEND_FILE, .id = "mem0", .size = 2 * MIB };
    expect_error(&nopath, "memory-backend-file 'mem0': mem-path is required");

    RamBackendOptions badpath = { .kind = RAM_BACKEND_FILE, .id = "mem0", .size = 2 * MIB,
                                  .mem_path = "/nonexistent-amber/x/y" };
    expect_error(&badpath, "cannot create '/nonexistent-amber/x/y': No such file or "
                 "directory");

    RamBackendOptions zero = { .kind = RAM_BACKEND_MEMFD, .id = "z", .size = 0 };
    expect_error(&zero, "memory-backend-memfd 'z': size must be greater than 0");

    RamBackendOptions huge = { .kind = RAM_BACKEND_RAM, .id = "big", .size = 1ULL << 62 };
    expect_error(&huge, "memory-backend-ram 'big'");
}

/* A 5 GiB guest: 3 GiB below the PCI hole, the other 2 GiB from 4 GiB. */
static void test_layout_across_hole(void)
{
    RamBackendOptions o = { .kind = RAM_BACKEND_RAM, .size = 5 * GIB };
    RAMBlock *rb = new_block(&o);       /* NORESERVE: costs address space only */
    RamBlockList l = { 0 };
    g_assert_true(ram_map_guest(&l, rb, NULL));
    g_assert_cmpint(l.nregions, ==, 2);
    g_assert_cmpuint(l.regions[0].gpa, ==, 0);
    g_assert_cmpuint(l.regions[0].size, ==, 3 * GIB);
    g_assert_cmpuint(l.regions[1].gpa, ==, 4 * GIB);
    g_assert_cmpuint(l.regions[1].size, ==, 2 * GIB);
    g_assert_cmpuint(l.regions[1].offset, ==, 3 * GIB);
    g_assert_true(ram_gpa_to_hva(&l, 0, 4096) == rb->host);
    g_assert_true(ram_gpa_to_hva(&l, 4 * GIB, 4096) == rb->host + 3 * GIB);
    g_assert_true(ram_gpa_to_hva(&l, 6 * GIB - 4096, 4096) == rb->host + 5 * GIB - 4096);
    g_assert_null(ram_gpa_to_hva(&l, 3 * GIB, 1));             /* the hole */
    g_assert_null(ram_gpa_to_hva(&l, 3 * GIB - 4096, 8192));   /* runs into it */
    g_assert_null(ram_gpa_to_hva(&l, 6 * GIB, 1));             /* past the end */
    g_assert_true(ram_block_by_name(&l, "test.ram") == rb);
    g_assert_null(ram_block_by_name(&l, "other"));
    ram_block_list_clear(&l);
    g_assert_cmpint(l.nblocks, ==, 0);
}

static void test_layout_small(void)
{
    RamBackendOptions o = { .kind = RAM_BACKEND_RAM, .size = 64 * MIB };
    RamBlockList l = { 0 };
    g_assert_true(ram_map_guest(&l, new_block(&o), NULL));
    g_assert_cmpint(l.nregions, ==, 1);
    g_assert_cmpuint(l.regions[0].size, ==, 64 * MIB);
    ram_block_list_clear(&l);
}

static void test_parse_sizes(void)
{
    uint64_t v;
    g_assert_true(parse_size_mib_default("512M", &v, NULL));
    g_assert_cmpuint(v, ==, 512 * MIB);
    g_assert_true(parse_size_mib_default("2G", &v, NULL));
    g_assert_cmpuint(v, ==, 2 * GIB);
    g_assert_true(parse_size_mib_default("1024", &v, NULL));
    g_assert_cmpuint(v, ==, 1024 * MIB);
    g_assert_true(parse_size_mib_default("1.5G", &v, NULL));
    g_assert_cmpuint(v, ==, 3 * GIB / 2);
    g_assert_true(parse_size_bytes("4096", &v, NULL));
    g_assert_cmpuint(v, ==, 4096);
    g_assert_true(parse_size_bytes("64k", &v, NULL));
    g_assert_cmpuint(v, ==, 65536);
    g_assert_true(parse_size_bytes("1GiB", &v, NULL));
    g_assert_cmpuint(v, ==, GIB);
    g_assert_true(parse_size_bytes("0.25K", &v, NULL));
    g_assert_cmpuint(v, ==, 256);
    /* The largest sizes: a fraction that rounds up must not wrap past 2^64. */
    g_assert_true(parse_size_bytes("15.99999999999999999999E", &v, NULL));
    g_assert_cmpuint(v, ==, UINT64_MAX);
    g_assert_true(parse_size_bytes("15E", &v, NULL));
    g_assert_cmpuint(v, ==, 15ULL << 60);

    static const struct { const char *in, *msg; } bad[] = {
        { "abc", "invalid size 'abc'" },
        { "", "invalid size ''" },
        { "12X", "invalid size '12X': unknown suffix" },
        { "5Mx", "invalid size '5Mx': unknown suffix" },
        { "99999999999T", "size '99999999999T' is too large" },
        { "-1", "invalid size '-1'" },
        /* An exponent is not part of a size (found by fuzz-hmp: it overflowed). */
        { "14.6e6e", "invalid size '14.6e6e': unknown suffix" },
        { "1.5e3K", "invalid size '1.5e3K': unknown suffix" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        Error *err = NULL;
        g_assert_false(parse_size_mib_default(bad[i].in, &v, &err));
        g_assert_nonnull(strstr(error_get_pretty(err), bad[i].msg));
        error_free(err);
    }
}

/* The VmFlags line of the mapping that holds addr, from /proc/self/smaps. */
static char *vm_flags(const void *addr)
{
    g_autofree char *s = NULL;
    g_auto(GStrv) lines = NULL;
    bool inside = false;

    g_assert_true(g_file_get_contents("/proc/self/smaps", &s, NULL, NULL));
    lines = g_strsplit(s, "\n", -1);
    for (char **l = lines; *l; l++) {
        unsigned long lo, hi;

        /* A mapping's first line is "lo-hi perms ..."; the others are "Key: value". */
        if (sscanf(*l, "%lx-%lx ", &lo, &hi) == 2) {
            inside = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
        } else if (inside && g_str_has_prefix(*l, "VmFlags:")) {
            return g_strdup(*l);
        }
    }
    g_assert_not_reached();
}

/* dump=off keeps the memory out of a core dump of amber (VmFlags "dd"); the default keeps it in. */
static void test_dump(void)
{
    static const struct {
        RamBackendKind kind;
        RamDump dump;
        bool dd;
    } cases[] = {
        { RAM_BACKEND_RAM, RAM_DUMP_DEFAULT, false }, { RAM_BACKEND_RAM, RAM_DUMP_ON, false },
        { RAM_BACKEND_RAM, RAM_DUMP_OFF, true }, { RAM_BACKEND_MEMFD, RAM_DUMP_OFF, true },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        RamBackendOptions o = { .kind = cases[i].kind, .size = 4u << 20,
                                .dump = cases[i].dump };
        RAMBlock *rb = ram_block_new("pc.ram", &o, &error_abort);
        g_autofree char *flags = vm_flags(rb->host);

        g_assert_cmpint(strstr(flags, " dd") != NULL, ==, cases[i].dd);
        ram_block_free(rb);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("amber-ram-XXXXXX", NULL);
    g_test_add_func("/ram/anon", test_anon);
    g_test_add_func("/ram/memfd-shared", test_memfd_shared);
    g_test_add_func("/ram/memfd-private", test_memfd_private);
    g_test_add_func("/ram/file-dir", test_file_dir);
    g_test_add_func("/ram/file-path", test_file_path);
    g_test_add_func("/ram/prealloc", test_prealloc);
    g_test_add_func("/ram/dump", test_dump);
    g_test_add_func("/ram/hugetlb", test_hugetlb);
    g_test_add_func("/ram/hugetlbsize", test_hugetlbsize);
    g_test_add_func("/ram/hugetlb-size-multiple", test_hugetlb_size_multiple);
    g_test_add_func("/ram/bad-options", test_bad_options);
    g_test_add_func("/ram/layout-across-hole", test_layout_across_hole);
    g_test_add_func("/ram/layout-small", test_layout_small);
    g_test_add_func("/ram/parse-sizes", test_parse_sizes);
    int r = g_test_run();
    g_rmdir(tmpdir);
    g_free(tmpdir);
    return r;
}
