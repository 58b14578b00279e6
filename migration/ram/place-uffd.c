/*
 * The placement of RAM that vCPUs may already be running on, its missing
 * pages registered with userfaultfd (postcopy, and a lazy restore): a vCPU
 * that touches a page not placed yet blocks in the kernel until the page
 * arrives, and every page goes in whole and at once with UFFDIO_COPY (or
 * UFFDIO_ZEROPAGE), which also wakes the vCPUs waiting on it.  Never a
 * plain write: a vCPU could see a page half written.
 *
 * Exactly once: the kernel refuses to place over a page that is there
 * (EEXIST), so whichever of two placements of a page comes first wins and
 * the later one changes nothing.  The `placed` bitmap tells the fault
 * path which pages need no request.
 *
 * Huge pages (hugetlbfs, a hugetlb memfd): the kernel places them whole or
 * not at all, so a block's unit is its page size.  The stream still
 * carries 4 KiB pages; a RamUffdStage gathers those of one huge page, in
 * order, and places the huge page when its last arrives (the source sends
 * each huge page's pages together: postcopy/source.c).  UFFDIO_ZEROPAGE
 * does not exist for hugetlbfs: a zero huge page is copied from zeros.
 *
 * Threads: the loader places through the RamPlacementOps, from its own
 * stage; any other thread (a fault handler that fetched a page itself, the
 * preempt channel's reader) uses ram_uffd_place_page()/_range() with a
 * buffer of its own, or a stage of its own.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include <glib.h>

#include "migration/ram.h"
#include "util/bitmap.h"
#include "util/stat.h"
#include "util/uffd.h"

struct RamUffd {
    RamBlockList *ram;
    int uffd;
    bool registered[AMBER_MAX_RAM_BLOCKS];
    bool minor[AMBER_MAX_RAM_BLOCKS];               /* registered MINOR too */
    unsigned long *placed[AMBER_MAX_RAM_BLOCKS];    /* atomic bits, 4 KiB pages */
    RamUffdStage *stage;                            /* the loader's */
    const uint8_t *zeros_src;                       /* a huge page of zeros, or NULL */
    size_t zeros_len;
    uint64_t copies, zeros, already;                /* stats */
    void (*placed_hook)(void *opaque, int b, uint64_t page);
    void *placed_opaque;
};

struct RamUffdStage {
    RamUffd *u;
    uint8_t *small;                 /* a 4 KiB page */
    uint8_t *buf;                   /* as big as the largest huge page, or NULL */
    size_t len;
    int b;                          /* the huge page being gathered, b < 0: none */
    uint64_t first, next;           /* its first 4 KiB page, the next one due */
};

/* The largest huge page of any block (what a stage or a zero page must hold), or 0. */
static size_t largest_huge_page(const RamBlockList *ram)
{
    size_t len = 0;

    for (int i = 0; i < ram->nblocks; i++) {
        if (ram_block_host_pages(ram->blocks[i]) > 1) {
            len = MAX(len, ram->blocks[i]->page_size);
        }
    }
    return len;
}

/* Features a block's registration needs beyond anonymous memory's. */
static uint64_t block_features(const RAMBlock *rb)
{
    if (rb->hugetlbfs) {
        return UFFD_FEATURE_MISSING_HUGETLBFS;
    }
    if (rb->fd < 0) {
        return 0;
    }
    return UFFD_FEATURE_MISSING_SHMEM;
}

/* Why rb cannot take missing-page faults here, or NULL. */
static const char *unsupported(const RAMBlock *rb)
{
    if (ram_block_host_pages(rb) > 1 && !rb->hugetlbfs) {
        return "its pages are larger than 4 KiB but not huge pages";
    }
    if (rb->fd >= 0 && !rb->shared) {
        return "a private file mapping cannot take missing-page faults";
    }
    return NULL;
}

bool ram_uffd_usable(RamBlockList *ram, Error **errp)
{
    uint64_t want = 0, have;

    for (int i = 0; i < ram->nblocks; i++) {
        const RAMBlock *rb = ram->blocks[i];
        const char *why = unsupported(rb);

        if (why) {
            error_setg(errp, "RAM block '%s' (%s) cannot be placed on demand: %s",
                       rb->idstr, ram_backend_kind_name(rb->kind), why);
            return false;
        }
        want |= block_features(rb);
    }
    if (!uffd_query_features(&have, errp)) {
        return false;
    }
    return uffd_check_features(want, have, "missing-page faults on shared memory or huge "
                               "pages", errp);
}

static RamUffd *ram_uffd_create(RamBlockList *ram, uint64_t features, bool minor,
                                Error **errp);

RamUffd *ram_uffd_new(RamBlockList *ram, Error **errp)
{
    return ram_uffd_create(ram, 0, false, errp);
}

RamUffd *ram_uffd_new_features(RamBlockList *ram, uint64_t features, Error **errp)
{
    return ram_uffd_create(ram, features, false, errp);
}

RamUffd *ram_uffd_new_minor(RamBlockList *ram, Error **errp)
{
    uint64_t have;
    bool minor = false;

    if (!uffd_query_features(&have, errp)) {
        return NULL;
    }
    for (int i = 0; i < ram->nblocks; i++) {
        minor |= ram->blocks[i]->fd >= 0;
    }
    /* Without the feature, shared blocks are placed by copy as anonymous ones are. */
    minor &= !!(have & UFFD_FEATURE_MINOR_SHMEM);
    return ram_uffd_create(ram, minor ? UFFD_FEATURE_MINOR_SHMEM : 0, minor, errp);
}

void ram_uffd_set_placed_hook(RamUffd *u, void (*placed)(void *opaque, int b, uint64_t page),
                              void *opaque)
{
    u->placed_hook = placed;
    u->placed_opaque = opaque;
}

static RamUffd *ram_uffd_create(RamBlockList *ram, uint64_t features, bool minor,
                                Error **errp)
{
    RamUffd *u = g_new0(RamUffd, 1);

    u->ram = ram;
    u->uffd = -1;
    for (int i = 0; i < ram->nblocks; i++) {
        const char *why = unsupported(ram->blocks[i]);

        if (why) {
            error_setg(errp, "RAM block '%s' cannot be placed on demand: %s",
                       ram->blocks[i]->idstr, why);
            goto fail;
        }
        features |= block_features(ram->blocks[i]);
    }
    u->uffd = uffd_create(features, errp);
    if (u->uffd < 0) {
        goto fail;
    }
    for (int i = 0; i < ram->nblocks; i++) {
        RAMBlock *rb = ram->blocks[i];
        bool m = minor && rb->fd >= 0;
        uint64_t ioctls = 0;

        if (!uffd_register(u->uffd, rb->host, rb->used_length,
                           UFFDIO_REGISTER_MODE_MISSING | (m ? UFFDIO_REGISTER_MODE_MINOR : 0),
                           &ioctls, errp)) {
            error_prepend(errp, "RAM block '%s' cannot be placed on demand: ", rb->idstr);
            goto fail;
        }
        u->registered[i] = true;
        u->minor[i] = m && (ioctls & (1ULL << _UFFDIO_CONTINUE));
        u->placed[i] = bitmap_new(rb->used_length / RAM_PAGE_SIZE);
    }
    u->zeros_len = largest_huge_page(ram);
    if (u->zeros_len) {
        /* Never written: every read of it is the kernel's zero page, nothing allocated. */
        void *z = mmap(NULL, u->zeros_len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS |
                       MAP_NORESERVE, -1, 0);

        if (z == MAP_FAILED) {
            error_setg_errno(errp, errno, "cannot map a zero huge page");
            goto fail;
        }
        u->zeros_src = z;
    }
    u->stage = ram_uffd_stage_new(u, errp);
    if (!u->stage) {
        goto fail;
    }
    return u;

fail:
    ram_uffd_free(u);
    return NULL;
}

void ram_uffd_free(RamUffd *u)
{
    if (!u) {
        return;
    }
    for (int i = 0; i < u->ram->nblocks; i++) {
        RAMBlock *rb = u->ram->blocks[i];

        /* Unregistering wakes whoever still waits: they then see zero pages. */
        if (u->registered[i]) {
            uffd_unregister(u->uffd, rb->host, rb->used_length, NULL);
        }
        bitmap_free(u->placed[i]);
    }
    if (u->uffd >= 0) {
        close(u->uffd);
    }
    if (u->zeros_src) {
        munmap((void *)u->zeros_src, u->zeros_len);
    }
    ram_uffd_stage_free(u->stage);
    g_free(u);
}

int ram_uffd_fd(RamUffd *u)
{
    return u->uffd;
}

bool ram_uffd_find(RamUffd *u, uint64_t addr, int *b, uint64_t *page)
{
    for (int i = 0; i < u->ram->nblocks; i++) {
        const RAMBlock *rb = u->ram->blocks[i];

        if (addr >= (uintptr_t)rb->host && addr - (uintptr_t)rb->host < rb->used_length) {
            *b = i;
            *page = (addr - (uintptr_t)rb->host) / RAM_PAGE_SIZE;
            return true;
        }
    }
    return false;
}

bool ram_uffd_placed(RamUffd *u, int b, uint64_t page)
{
    return test_bit_atomic(page, u->placed[b]);
}

/*
 * Fill pages [first, first + n) of block b with op (from data for a copy):
 * one ioctl when none of them is there yet, else around those that are.
 * On huge pages, whole ones: first and n are multiples of the block's unit,
 * and zeros are copied (hugetlbfs has no UFFDIO_ZEROPAGE).  Returns how
 * many 4 KiB pages this call placed, or -1 with errp.
 */
static int64_t fill_range(RamUffd *u, int b, UffdFill op, uint64_t first, uint64_t n,
                          const uint8_t *data, Error **errp)
{
    RAMBlock *rb = u->ram->blocks[b];
    uint64_t unit = ram_block_host_pages(rb);
    bool huge_zero = op == UFFD_FILL_ZERO && rb->hugetlbfs;
    int64_t placed = 0;
    uint64_t i = 0;

    if (first % unit || n % unit) {
        error_setg(errp, "RAM block '%s': pages 0x%" PRIx64 "+0x%" PRIx64 " are not whole "
                   "huge pages of 0x%zx bytes", rb->idstr, (uint64_t)(first * RAM_PAGE_SIZE),
                   (uint64_t)(n * RAM_PAGE_SIZE), rb->page_size);
        return -1;
    }
    while (i < n) {
        uint64_t filled, k;
        /* Zeros come from one huge page of them: a huge page per call. */
        uint64_t len = huge_zero ? unit : n - i;
        int r = uffd_fill(u->uffd, huge_zero ? UFFD_FILL_COPY : op,
                          rb->host + (first + i) * RAM_PAGE_SIZE,
                          huge_zero ? u->zeros_src : data ? data + i * RAM_PAGE_SIZE : NULL,
                          len * RAM_PAGE_SIZE, true, &filled, errp);

        if (r < 0) {
            error_prepend(errp, "RAM block '%s' pages 0x%" PRIx64 "+0x%" PRIx64 ": ",
                          rb->idstr, (uint64_t)((first + i) * RAM_PAGE_SIZE),
                          (uint64_t)((n - i) * RAM_PAGE_SIZE));
            return -1;
        }
        k = filled / RAM_PAGE_SIZE;
        stat_add(op == UFFD_FILL_ZERO ? &u->zeros : &u->copies, k);
        bitmap_set_atomic(u->placed[b], first + i, k);
        for (uint64_t j = 0; u->placed_hook && j < k; j++) {
            u->placed_hook(u->placed_opaque, b, first + i + j);
        }
        placed += k;
        i += k;
        if (r == 0) {
            /* This page was there (the other path won): what is there stays. */
            stat_add(&u->already, 1);
            bitmap_set_atomic(u->placed[b], first + i, unit);
            i += unit;
        }
    }
    return placed;
}

bool ram_uffd_place_page(RamUffd *u, int b, uint64_t page, const uint8_t *data,
                         Error **errp)
{
    return fill_range(u, b, data ? UFFD_FILL_COPY : UFFD_FILL_ZERO, page, 1, data, errp) >= 0;
}

int64_t ram_uffd_place_range(RamUffd *u, int b, uint64_t first, uint64_t n,
                             const uint8_t *data, Error **errp)
{
    return fill_range(u, b, data ? UFFD_FILL_COPY : UFFD_FILL_ZERO, first, n, data, errp);
}

bool ram_uffd_minor(RamUffd *u, int b)
{
    return u->minor[b];
}

int64_t ram_uffd_continue_range(RamUffd *u, int b, uint64_t first, uint64_t n, Error **errp)
{
    return fill_range(u, b, UFFD_FILL_CONTINUE, first, n, NULL, errp);
}

uint64_t ram_uffd_count_placed(RamUffd *u)
{
    uint64_t n = 0;

    for (int i = 0; i < u->ram->nblocks; i++) {
        size_t words = BITS_TO_LONGS(u->ram->blocks[i]->used_length / RAM_PAGE_SIZE);

        /* Other threads set bits meanwhile: whole words, read atomically. */
        for (size_t w = 0; w < words; w++) {
            n += __builtin_popcountl(__atomic_load_n(&u->placed[i][w], __ATOMIC_RELAXED));
        }
    }
    return n;
}

void ram_uffd_stats(RamUffd *u, uint64_t *copies, uint64_t *zeros, uint64_t *already)
{
    *copies = stat_get(&u->copies);
    *zeros = stat_get(&u->zeros);
    *already = stat_get(&u->already);
}

/* ---- stages: 4 KiB pages of the stream gathered into huge pages ------------------ */

RamUffdStage *ram_uffd_stage_new(RamUffd *u, Error **errp)
{
    RamUffdStage *st = g_new0(RamUffdStage, 1);

    st->u = u;
    st->b = -1;
    st->small = g_malloc(RAM_PAGE_SIZE);
    st->len = largest_huge_page(u->ram);
    if (st->len) {
        /* Touched only as pages come: a huge page's worth of memory at most. */
        st->buf = mmap(NULL, st->len, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (st->buf == MAP_FAILED) {
            error_setg_errno(errp, errno, "cannot map %zu bytes to gather a huge page in",
                             st->len);
            st->buf = NULL;
            ram_uffd_stage_free(st);
            return NULL;
        }
    }
    return st;
}

void ram_uffd_stage_free(RamUffdStage *st)
{
    if (st) {
        if (st->buf) {
            munmap(st->buf, st->len);
        }
        g_free(st->small);
        g_free(st);
    }
}

void ram_uffd_stage_reset(RamUffdStage *st)
{
    st->b = -1;
}

bool ram_uffd_stage_idle(RamUffdStage *st, Error **errp)
{
    if (st->b < 0) {
        return true;
    }
    error_setg(errp, "RAM block '%s': the huge page at 0x%" PRIx64 " came only in part "
               "(%" PRIu64 " of its pages)", st->u->ram->blocks[st->b]->idstr,
               (uint64_t)(st->first * RAM_PAGE_SIZE), st->next);
    return false;
}

uint8_t *ram_uffd_stage_buffer(RamUffdStage *st, int b, uint64_t page)
{
    uint64_t unit = ram_block_host_pages(st->u->ram->blocks[b]);

    /* A 4 KiB page never lands in a huge page being gathered. */
    return unit == 1 ? st->small : st->buf + page % unit * RAM_PAGE_SIZE;
}

bool ram_uffd_stage_page(RamUffdStage *st, int b, uint64_t page, bool zero, Error **errp)
{
    RamUffd *u = st->u;
    const RAMBlock *rb = u->ram->blocks[b];
    uint64_t unit = ram_block_host_pages(rb), at = page % unit;
    bool gathering = st->b == b && st->first == page - at;

    if (unit == 1) {
        return ram_uffd_place_page(u, b, page, zero ? NULL : st->small, errp);
    }
    if (!gathering && at != 0 && ram_uffd_placed(u, b, page - at)) {
        /* In whole already (a fault's zero page, the other channel): nothing to gather. */
        return true;
    }
    if (at == 0 && !ram_uffd_stage_idle(st, errp)) {
        /* The source sends a huge page's pages together, so one was cut off. */
        st->b = -1;
        return false;
    }
    if (at == 0) {
        st->b = b;
        st->first = page;
    } else if (!gathering || st->next != at) {
        /* A huge page goes in whole: its pages cannot be placed one by one. */
        error_setg(errp, "RAM block '%s': page 0x%" PRIx64 " came without the pages of its "
                   "huge page before it (0x%zx-byte pages arrive whole and in order)",
                   rb->idstr, (uint64_t)(page * RAM_PAGE_SIZE), rb->page_size);
        st->b = -1;
        return false;
    }
    if (zero) {
        memset(st->buf + at * RAM_PAGE_SIZE, 0, RAM_PAGE_SIZE);
    }
    st->next = at + 1;
    if (st->next < unit) {
        return true;
    }
    st->b = -1;
    /* Placed already (a zero huge page on a fault, say): what is there stays. */
    return ram_uffd_placed(u, b, st->first) ||
           fill_range(u, b, UFFD_FILL_COPY, st->first, unit, st->buf, errp) >= 0;
}

void ram_uffd_reset_stage(RamUffd *u)
{
    ram_uffd_stage_reset(u->stage);
}

/* ---- as the loader's placement ------------------------------------------------------ */

static uint8_t *uffd_buffer(void *opaque, int b, uint64_t page)
{
    RamUffd *u = opaque;

    return ram_uffd_stage_buffer(u->stage, b, page);
}

static bool uffd_place(void *opaque, int b, uint64_t page, bool zero, bool again,
                       Error **errp)
{
    RamUffd *u = opaque;

    /*
     * A page is placed once: a later copy (precopy's resend) cannot change
     * it.  A huge page's pages go to the stage, which knows whether it
     * gathers them and places nothing over what is there.
     */
    if (ram_block_host_pages(u->ram->blocks[b]) == 1 && (again || ram_uffd_placed(u, b, page))) {
        return true;
    }
    return ram_uffd_stage_page(u->stage, b, page, zero, errp);
}

static const RamPlacementOps uffd_ops = {
    .buffer = uffd_buffer,
    .place = uffd_place,
};

void ram_uffd_placement(RamUffd *u, const RamPlacementOps **ops, void **opaque)
{
    *ops = &uffd_ops;
    *opaque = u;
}
