/*
 * RAM blocks: host mappings for guest memory and their backends.
 *
 * Every block is mapped so that its host address is 2 MiB aligned: KVM can
 * only back a guest page with a huge page when the low 21 bits of the guest
 * physical and host virtual addresses agree.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <glib.h>

#include "system/ram.h"

#define HUGETLBFS_MAGIC_NR 0x958458f6
#define RAM_ALIGN (2ULL << 20)

const char *ram_backend_kind_name(RamBackendKind kind)
{
    switch (kind) {
    case RAM_BACKEND_MEMFD:
        return "memory-backend-memfd";
    case RAM_BACKEND_FILE:
        return "memory-backend-file";
    case RAM_BACKEND_RAM:
    default:
        return "memory-backend-ram";
    }
}

/* "memory-backend-file 'mem0'" or "pc.ram" when the block has no backend id. */
static char *backend_label(const char *idstr, const RamBackendOptions *o)
{
    if (o->id) {
        return g_strdup_printf("%s '%s'", ram_backend_kind_name(o->kind), o->id);
    }
    return g_strdup_printf("%s '%s'", ram_backend_kind_name(o->kind), idstr);
}

/*
 * Reserve size bytes of address space at an `align` boundary (RAM_ALIGN, or
 * a bigger huge page: the kernel maps 1 GiB pages only at 1 GiB).  The fd
 * backends then map their file over the reservation with MAP_FIXED.
 */
static void *reserve_aligned(const char *label, uint64_t size, uint64_t align, Error **errp)
{
    uint64_t total = size + align;
    uint8_t *p = mmap(NULL, total, PROT_NONE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        error_setg_errno(errp, errno, "%s: cannot reserve %" PRIu64 " bytes of address "
                         "space", label, size);
        return NULL;
    }
    uint8_t *a = (uint8_t *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
    if (a > p) {
        munmap(p, a - p);
    }
    uint8_t *end = p + total;
    if (end > a + size) {
        munmap(a + size, end - (a + size));
    }
    return a;
}

static uint64_t hugetlb_default_page_size(void)
{
    g_autofree char *text = NULL;
    if (!g_file_get_contents("/proc/meminfo", &text, NULL, NULL)) {
        return 2ULL << 20;
    }
    const char *p = strstr(text, "Hugepagesize:");
    uint64_t kib = p ? g_ascii_strtoull(p + strlen("Hugepagesize:"), NULL, 10) : 0;
    return kib ? kib << 10 : 2ULL << 20;
}

/* Page size of the filesystem behind fd: the huge page size on hugetlbfs. */
static bool fd_page_size(int fd, size_t *page_size, bool *hugetlbfs, Error **errp)
{
    struct statfs fs;
    if (fstatfs(fd, &fs) < 0) {
        error_setg_errno(errp, errno, "statfs failed");
        return false;
    }
    *hugetlbfs = (uint32_t)fs.f_type == HUGETLBFS_MAGIC_NR;
    *page_size = *hugetlbfs ? (size_t)fs.f_bsize : (size_t)getpagesize();
    return true;
}

static int open_mem_path(const char *label, const char *path, Error **errp)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        /* As QEMU does: an unlinked temporary file in the directory. */
        g_autofree char *tmpl = g_strdup_printf("%s/amber_back_mem.XXXXXX", path);
        int fd = mkostemp(tmpl, O_CLOEXEC);
        if (fd < 0) {
            error_setg_errno(errp, errno, "%s: cannot create a file in '%s'", label, path);
            return -1;
        }
        unlink(tmpl);
        return fd;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        error_setg_errno(errp, errno, "%s: cannot create '%s'", label, path);
    }
    return fd;
}

#ifndef MFD_HUGE_SHIFT
#define MFD_HUGE_SHIFT 26       /* linux/memfd.h, which clashes with glibc's <sys/mman.h> */
#endif

/* hugetlbsize=: a size the kernel has a pool for, or an error naming it. */
static bool host_has_huge_page_size(const char *label, uint64_t size, Error **errp)
{
    g_autofree char *dir = g_strdup_printf("/sys/kernel/mm/hugepages/hugepages-%" PRIu64
                                           "kB", size >> 10);

    if (access(dir, F_OK) == 0) {
        return true;
    }
    error_setg(errp, "%s: hugetlbsize=%" PRIu64 ": this host has no huge pages of that "
               "size (%s)", label, size, dir);
    return false;
}

static int open_backend_fd(RAMBlock *rb, const char *label, const RamBackendOptions *o,
                           Error **errp)
{
    int fd;
    if (o->kind == RAM_BACKEND_MEMFD) {
        unsigned flags = MFD_CLOEXEC | (o->hugetlb ? MFD_HUGETLB : 0);

        if (o->hugetlb && o->hugetlbsize) {
            if (!host_has_huge_page_size(label, o->hugetlbsize, errp)) {
                return -1;
            }
            /* memfd_create(2) takes the size as its log2 in the flags. */
            flags |= (unsigned)__builtin_ctzll(o->hugetlbsize) << MFD_HUGE_SHIFT;
        }
        fd = memfd_create(rb->idstr, flags);
        if (fd < 0) {
            error_setg_errno(errp, errno, "%s: memfd_create failed", label);
        }
    } else {
        if (!o->mem_path || !*o->mem_path) {
            error_setg(errp, "%s: mem-path is required", label);
            return -1;
        }
        fd = open_mem_path(label, o->mem_path, errp);
    }
    return fd;
}

static bool map_fd_backend(RAMBlock *rb, const char *label, const RamBackendOptions *o,
                           Error **errp)
{
    rb->fd = open_backend_fd(rb, label, o, errp);
    if (rb->fd < 0) {
        return false;
    }
    if (!fd_page_size(rb->fd, &rb->page_size, &rb->hugetlbfs, errp)) {
        error_prepend(errp, "%s: ", label);
        return false;
    }
    if (o->kind == RAM_BACKEND_MEMFD && o->hugetlb) {
        if (!rb->hugetlbfs) {
            rb->page_size = o->hugetlbsize ? o->hugetlbsize : hugetlb_default_page_size();
        }
        rb->hugetlbfs = true;
    }
    if (o->size % rb->page_size) {
        error_setg(errp, "%s: size %" PRIu64 " is not a multiple of the huge page size "
                   "%zu", label, o->size, rb->page_size);
        return false;
    }
    struct stat st;
    if (fstat(rb->fd, &st) == 0 && (uint64_t)st.st_size < o->size &&
        ftruncate(rb->fd, o->size) < 0) {
        error_setg_errno(errp, errno, "%s: cannot size the backing file to %" PRIu64
                         " bytes", label, o->size);
        return false;
    }
    uint8_t *a = reserve_aligned(label, o->size, MAX(RAM_ALIGN, rb->page_size), errp);
    if (!a) {
        return false;
    }
    int flags = (rb->shared ? MAP_SHARED : MAP_PRIVATE) | MAP_FIXED;
    if (mmap(a, o->size, PROT_READ | PROT_WRITE, flags, rb->fd, 0) == MAP_FAILED) {
        error_setg_errno(errp, errno, "%s: cannot map %" PRIu64 " bytes", label, o->size);
        munmap(a, o->size);
        return false;
    }
    rb->host = a;
    return true;
}

static bool map_anon_backend(RAMBlock *rb, const char *label, const RamBackendOptions *o,
                             Error **errp)
{
    uint8_t *a = reserve_aligned(label, o->size, RAM_ALIGN, errp);
    if (!a) {
        return false;
    }
    int flags = (rb->shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS | MAP_NORESERVE |
                MAP_FIXED;
    if (mmap(a, o->size, PROT_READ | PROT_WRITE, flags, -1, 0) == MAP_FAILED) {
        error_setg_errno(errp, errno, "%s: cannot map %" PRIu64 " bytes", label, o->size);
        munmap(a, o->size);
        return false;
    }
    /* THP is "madvise" on typical hosts: ask for it, ignore a refusal. */
    madvise(a, o->size, MADV_HUGEPAGE);
    rb->host = a;
    rb->page_size = getpagesize();
    return true;
}

/* Touch every page so the guest never faults them in (prealloc=on). */
static bool prealloc_block(RAMBlock *rb, const char *label, Error **errp)
{
    if (madvise(rb->host, rb->max_length, MADV_POPULATE_WRITE) == 0) {
        return true;
    }
    int err = errno;
    if (err == ENOMEM || err == EFAULT || err == EHWPOISON) {
        error_setg_errno(errp, err, "%s: cannot preallocate %" PRIu64 " bytes%s", label,
                         rb->max_length,
                         rb->hugetlbfs ? " (are enough huge pages reserved?)" : "");
        return false;
    }
    if (rb->hugetlbfs) {
        /* Touching an unreserved huge page would SIGBUS: refuse instead. */
        error_setg_errno(errp, err, "%s: cannot preallocate huge pages", label);
        return false;
    }
    /* Kernels before 5.14 lack MADV_POPULATE_WRITE: write one byte per page. */
    for (uint64_t off = 0; off < rb->max_length; off += rb->page_size) {
        volatile uint8_t *p = rb->host + off;
        *p = *p;
    }
    return true;
}

RAMBlock *ram_block_new(const char *idstr, const RamBackendOptions *opts, Error **errp)
{
    RamBackendOptions def = { .kind = RAM_BACKEND_RAM };
    const RamBackendOptions *o = opts ? opts : &def;
    g_autofree char *label = backend_label(idstr, o);

    if (o->size == 0) {
        error_setg(errp, "%s: size must be greater than 0", label);
        return NULL;
    }
    RAMBlock *rb = g_new0(RAMBlock, 1);
    g_strlcpy(rb->idstr, idstr, sizeof(rb->idstr));
    rb->fd = -1;
    rb->kind = o->kind;
    rb->shared = o->share;
    rb->used_length = o->size;
    rb->max_length = o->size;

    bool ok = o->kind == RAM_BACKEND_RAM ? map_anon_backend(rb, label, o, errp)
                                         : map_fd_backend(rb, label, o, errp);
    if (ok && o->prealloc) {
        ok = prealloc_block(rb, label, errp);
    }
    /* A core dump of amber then leaves the guest's memory out (its secrets, its size). */
    if (ok && o->dump == RAM_DUMP_OFF && madvise(rb->host, rb->max_length, MADV_DONTDUMP) < 0) {
        error_setg_errno(errp, errno, "%s: cannot keep it out of core dumps", label);
        ok = false;
    }
    if (!ok) {
        ram_block_free(rb);
        return NULL;
    }
    return rb;
}

void ram_block_free(RAMBlock *rb)
{
    if (!rb) {
        return;
    }
    if (rb->host) {
        munmap(rb->host, rb->max_length);
    }
    if (rb->fd >= 0) {
        close(rb->fd);
    }
    g_free(rb);
}

void ram_block_list_clear(RamBlockList *l)
{
    for (int i = 0; i < l->nblocks; i++) {
        ram_block_free(l->blocks[i]);
    }
    memset(l, 0, sizeof(*l));
}

static bool add_region(RamBlockList *l, RAMBlock *rb, uint64_t gpa, uint64_t size,
                       uint64_t offset, Error **errp)
{
    if (l->nregions >= AMBER_MAX_MEM_REGIONS) {
        error_setg(errp, "too many guest memory regions (at most %d)", AMBER_MAX_MEM_REGIONS);
        return false;
    }
    l->regions[l->nregions++] = (MemRegion) {
        .gpa = gpa, .size = size, .block = rb, .offset = offset, .slot = -1,
    };
    return true;
}

bool ram_map_guest(RamBlockList *l, RAMBlock *rb, Error **errp)
{
    if (l->nblocks >= AMBER_MAX_RAM_BLOCKS) {
        error_setg(errp, "too many RAM blocks (at most %d)", AMBER_MAX_RAM_BLOCKS);
        return false;
    }
    uint64_t cursor = 0;
    for (int i = 0; i < l->nregions; i++) {
        cursor = MAX(cursor, l->regions[i].gpa + l->regions[i].size);
    }
    int saved = l->nregions;
    uint64_t off = 0, left = rb->used_length;
    if (cursor < AMBER_LOWMEM_LIMIT) {
        uint64_t low = MIN(left, AMBER_LOWMEM_LIMIT - cursor);
        if (!add_region(l, rb, cursor, low, 0, errp)) {
            return false;
        }
        off = low;
        left -= low;
        cursor = AMBER_HIGHMEM_START;
    }
    if (left && !add_region(l, rb, MAX(cursor, AMBER_HIGHMEM_START), left, off, errp)) {
        l->nregions = saved;
        return false;
    }
    l->blocks[l->nblocks++] = rb;
    return true;
}

int ram_block_index(const RamBlockList *l, const char *idstr)
{
    for (int i = 0; i < l->nblocks; i++) {
        if (strcmp(l->blocks[i]->idstr, idstr) == 0) {
            return i;
        }
    }
    return -1;
}

RAMBlock *ram_block_by_name(RamBlockList *l, const char *idstr)
{
    int i = ram_block_index(l, idstr);

    return i < 0 ? NULL : l->blocks[i];
}

void *ram_gpa_to_hva(RamBlockList *l, uint64_t gpa, uint64_t len)
{
    for (int i = 0; i < l->nregions; i++) {
        MemRegion *r = &l->regions[i];
        if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa)) {
            return r->block->host + r->offset + (gpa - r->gpa);
        }
    }
    return NULL;
}

/* ---- size parsing -------------------------------------------------------- */

static int suffix_shift(char c)
{
    switch (g_ascii_toupper(c)) {
    case 'B': return 0;
    case 'K': return 10;
    case 'M': return 20;
    case 'G': return 30;
    case 'T': return 40;
    case 'P': return 50;
    case 'E': return 60;
    default: return -1;
    }
}

static bool parse_size(const char *s, uint64_t *out, int default_shift, Error **errp)
{
    if (!s || !g_ascii_isdigit(*s)) {
        error_setg(errp, "invalid size '%s': expected a number with an optional "
                   "suffix K, M, G or T", s ? s : "");
        return false;
    }
    char *end;
    errno = 0;
    uint64_t whole = g_ascii_strtoull(s, &end, 10);
    if (errno == ERANGE) {
        error_setg(errp, "size '%s' is too large", s);
        return false;
    }
    /* The fraction is digits only: no exponent ("1.6e6e" is not 1.6e6 EiB). */
    double frac = 0, scale = 0.1;
    if (*end == '.') {
        for (end++; g_ascii_isdigit(*end); end++, scale /= 10) {
            frac += (*end - '0') * scale;
        }
    }
    int shift = default_shift;
    if (*end) {
        shift = suffix_shift(*end);
        end++;
        if (shift > 0 && (*end == 'B' || *end == 'b')) {
            end++;          /* "512MB" */
        } else if (shift > 0 && *end == 'i' && end[1] == 'B') {
            end += 2;       /* "512MiB" */
        }
        if (shift < 0 || *end) {
            error_setg(errp, "invalid size '%s': unknown suffix (use K, M, G or T)", s);
            return false;
        }
    }
    if (frac != 0 && shift == 0) {
        error_setg(errp, "invalid size '%s': a fraction needs a suffix", s);
        return false;
    }
    if (shift >= 64 || whole > (UINT64_MAX >> shift)) {
        error_setg(errp, "size '%s' is too large", s);
        return false;
    }
    /*
     * frac < 1, so its bytes are below 1 << shift, but a double rounds: keep
     * them there, or the sum could wrap past UINT64_MAX.
     */
    uint64_t part = shift ? (uint64_t)MIN(frac * (double)(1ULL << shift),
                                          (double)((1ULL << shift) - 1)) : 0;
    *out = (whole << shift) + MIN(part, (1ULL << shift) - 1);
    return true;
}

bool parse_size_mib_default(const char *s, uint64_t *out, Error **errp)
{
    return parse_size(s, out, 20, errp);
}

bool parse_size_bytes(const char *s, uint64_t *out, Error **errp)
{
    return parse_size(s, out, 0, errp);
}
