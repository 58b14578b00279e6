/*
 * userfaultfd and PAGEMAP_SCAN wrappers (see include/util/uffd.h).
 */
#include "util/uffd.h"
#include "util/trace.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <glib.h>

static const struct {
    uint64_t bit;
    const char *name;
} uffd_feature_names[] = {
    { UFFD_FEATURE_PAGEFAULT_FLAG_WP, "PAGEFAULT_FLAG_WP" },
    { UFFD_FEATURE_EVENT_FORK, "EVENT_FORK" },
    { UFFD_FEATURE_EVENT_REMAP, "EVENT_REMAP" },
    { UFFD_FEATURE_EVENT_REMOVE, "EVENT_REMOVE" },
    { UFFD_FEATURE_MISSING_HUGETLBFS, "MISSING_HUGETLBFS" },
    { UFFD_FEATURE_MISSING_SHMEM, "MISSING_SHMEM" },
    { UFFD_FEATURE_EVENT_UNMAP, "EVENT_UNMAP" },
    { UFFD_FEATURE_SIGBUS, "SIGBUS" },
    { UFFD_FEATURE_THREAD_ID, "THREAD_ID" },
    { UFFD_FEATURE_MINOR_HUGETLBFS, "MINOR_HUGETLBFS" },
    { UFFD_FEATURE_MINOR_SHMEM, "MINOR_SHMEM" },
    { UFFD_FEATURE_EXACT_ADDRESS, "EXACT_ADDRESS" },
    { UFFD_FEATURE_WP_HUGETLBFS_SHMEM, "WP_HUGETLBFS_SHMEM" },
    { UFFD_FEATURE_WP_UNPOPULATED, "WP_UNPOPULATED" },
    { UFFD_FEATURE_POISON, "POISON" },
    { UFFD_FEATURE_WP_ASYNC, "WP_ASYNC" },
    { UFFD_FEATURE_MOVE, "MOVE" },
};

const char *uffd_feature_name(uint64_t feature_bit)
{
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(uffd_feature_names); i++) {
        if (uffd_feature_names[i].bit == feature_bit) {
            return uffd_feature_names[i].name;
        }
    }
    return NULL;
}

char *uffd_features_to_str(uint64_t features)
{
    GString *s = g_string_new(NULL);
    int bit;

    for (bit = 0; bit < 64; bit++) {
        const char *name;

        if (!(features & (1ULL << bit))) {
            continue;
        }
        name = uffd_feature_name(1ULL << bit);
        if (s->len) {
            g_string_append(s, ", ");
        }
        if (name) {
            g_string_append(s, name);
        } else {
            g_string_append_printf(s, "bit %d", bit);
        }
    }
    return g_string_free(s, FALSE);
}

bool uffd_check_features(uint64_t want, uint64_t have, const char *what,
                         Error **errp)
{
    uint64_t missing = want & ~have;
    char *names;

    if (!missing) {
        return true;
    }
    names = uffd_features_to_str(missing);
    error_setg(errp, "%s%suserfaultfd lacks %s (this kernel is too old "
               "or built without it)", what ? what : "", what ? ": " : "",
               names);
    g_free(names);
    return false;
}

/*
 * Prefer /dev/userfaultfd: its access is granted by file mode, so it can
 * trap kernel faults (KVM's) without CAP_SYS_PTRACE.  Fall back to the
 * system call, which needs the capability or the sysctl.
 */
int uffd_open(Error **errp)
{
    const int flags = O_CLOEXEC | O_NONBLOCK;
    int dev_errno, fd, devfd;

    devfd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (devfd >= 0) {
        fd = ioctl(devfd, USERFAULTFD_IOC_NEW, flags);
        dev_errno = errno;
        close(devfd);
        if (fd >= 0) {
            return fd;
        }
    } else {
        dev_errno = errno;
    }
    fd = syscall(SYS_userfaultfd, flags);
    if (fd >= 0) {
        return fd;
    }
    error_setg_errno(errp, errno, "cannot create a userfaultfd (/dev/userfaultfd: "
                     "%s; it needs access to /dev/userfaultfd, CAP_SYS_PTRACE "
                     "or vm.unprivileged_userfaultfd=1)", g_strerror(dev_errno));
    return -1;
}

static bool uffd_api(int fd, uint64_t features, uint64_t *out_features,
                     Error **errp)
{
    struct uffdio_api api = { .api = UFFD_API, .features = features };

    if (ioctl(fd, UFFDIO_API, &api) < 0) {
        error_setg_errno(errp, errno, "userfaultfd API handshake failed");
        return false;
    }
    if (out_features) {
        *out_features = api.features;
    }
    return true;
}

bool uffd_query_features(uint64_t *features, Error **errp)
{
    int fd = uffd_open(errp);
    bool ok;

    if (fd < 0) {
        return false;
    }
    /* The handshake can be done once per fd: this one is thrown away. */
    ok = uffd_api(fd, 0, features, errp);
    close(fd);
    return ok;
}

int uffd_create(uint64_t features, Error **errp)
{
    uint64_t have;
    int fd;

    if (!uffd_query_features(&have, errp) ||
        !uffd_check_features(features, have, NULL, errp)) {
        return -1;
    }
    fd = uffd_open(errp);
    if (fd < 0) {
        return -1;
    }
    if (!uffd_api(fd, features, NULL, errp)) {
        close(fd);
        return -1;
    }
    trace(uffd_create, "fd=%d features=0x%" PRIx64, fd, features);
    return fd;
}

/*
 * EAGAIN from the range ioctls means the address space was changing
 * (a fork or mremap event is being delivered): the operation did not
 * happen, or happened for a prefix, and is to be retried.  The bound only
 * guards against a kernel that keeps saying it.
 */
#define UFFD_EAGAIN_RETRIES 10000

static struct uffdio_range uffd_range(void *addr, size_t len)
{
    return (struct uffdio_range){ .start = (uintptr_t)addr, .len = len };
}

bool uffd_register(int fd, void *addr, size_t len, uint64_t mode,
                   uint64_t *ioctls, Error **errp)
{
    struct uffdio_register reg = { .range = uffd_range(addr, len), .mode = mode };

    if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0) {
        error_setg_errno(errp, errno, "cannot register %p+0x%zx with "
                         "userfaultfd (mode%s%s%s)", addr, len,
                         mode & UFFDIO_REGISTER_MODE_MISSING ? " MISSING" : "",
                         mode & UFFDIO_REGISTER_MODE_WP ? " WP" : "",
                         mode & UFFDIO_REGISTER_MODE_MINOR ? " MINOR" : "");
        return false;
    }
    trace(uffd_register, "fd=%d addr=%p len=0x%zx mode=0x%" PRIx64
          " ioctls=0x%" PRIx64, fd, addr, len, mode, (uint64_t)reg.ioctls);
    if (ioctls) {
        *ioctls = reg.ioctls;
    }
    return true;
}

bool uffd_unregister(int fd, void *addr, size_t len, Error **errp)
{
    struct uffdio_range range = uffd_range(addr, len);

    if (ioctl(fd, UFFDIO_UNREGISTER, &range) < 0) {
        error_setg_errno(errp, errno, "cannot unregister %p+0x%zx from "
                         "userfaultfd", addr, len);
        return false;
    }
    return true;
}

static bool uffd_writeprotect(int fd, void *addr, size_t len, uint64_t mode,
                              Error **errp)
{
    struct uffdio_writeprotect wp = { .range = uffd_range(addr, len), .mode = mode };
    int r, tries = 0;

    do {
        r = ioctl(fd, UFFDIO_WRITEPROTECT, &wp);
    } while (r < 0 && errno == EAGAIN && ++tries < UFFD_EAGAIN_RETRIES);
    if (r < 0) {
        error_setg_errno(errp, errno, "cannot %s %p+0x%zx",
                         mode & UFFDIO_WRITEPROTECT_MODE_WP ?
                         "write-protect" : "unprotect", addr, len);
        return false;
    }
    return true;
}

bool uffd_protect(int fd, void *addr, size_t len, Error **errp)
{
    trace(uffd_protect, "fd=%d addr=%p len=0x%zx", fd, addr, len);
    return uffd_writeprotect(fd, addr, len, UFFDIO_WRITEPROTECT_MODE_WP, errp);
}

bool uffd_unprotect(int fd, void *addr, size_t len, bool wake, Error **errp)
{
    trace(uffd_unprotect, "fd=%d addr=%p len=0x%zx wake=%d", fd, addr, len, wake);
    return uffd_writeprotect(fd, addr, len,
                             wake ? 0 : UFFDIO_WRITEPROTECT_MODE_DONTWAKE, errp);
}


/* One fill ioctl; *done gets the bytes it reports done (or a negative errno). */
static int uffd_fill_once(int fd, UffdFill op, uint64_t dst, uint64_t src, uint64_t len,
                          bool wake, int64_t *done)
{
    struct uffdio_copy copy = {
        .dst = dst, .src = src, .len = len, .mode = wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE,
    };
    struct uffdio_zeropage zp = {
        .range = { .start = dst, .len = len },
        .mode = wake ? 0 : UFFDIO_ZEROPAGE_MODE_DONTWAKE,
    };
    struct uffdio_continue cont = {
        .range = { .start = dst, .len = len },
        .mode = wake ? 0 : UFFDIO_CONTINUE_MODE_DONTWAKE,
    };
    int r;

    switch (op) {
    case UFFD_FILL_COPY:
        r = ioctl(fd, UFFDIO_COPY, &copy);
        *done = copy.copy;
        break;
    case UFFD_FILL_ZERO:
        r = ioctl(fd, UFFDIO_ZEROPAGE, &zp);
        *done = zp.zeropage;
        break;
    default:
        r = ioctl(fd, UFFDIO_CONTINUE, &cont);
        *done = cont.mapped;
        break;
    }
    return r;
}

/*
 * The kernel stops a fill at the first page that is there already: the
 * pages before it are placed and it says -EAGAIN with their length; the
 * next call then meets the page that is there (EEXIST).
 */
int uffd_fill(int fd, UffdFill op, void *dst, const void *src, size_t len, bool wake,
              uint64_t *filled, Error **errp)
{
    static const char *const what[] = {
        [UFFD_FILL_COPY] = "place page(s)", [UFFD_FILL_ZERO] = "place zero page(s)",
        [UFFD_FILL_CONTINUE] = "map page-cache page(s)",
    };
    uint64_t d = (uintptr_t)dst, s = (uintptr_t)src, left = len;
    int tries = 0;

    *filled = 0;
    while (left) {
        int64_t done;
        int r = uffd_fill_once(fd, op, d, s, left, wake, &done);

        if (r == 0) {
            *filled = len;
            return 1;
        }
        if (errno == EEXIST) {
            return 0;
        }
        if (errno != EAGAIN || ++tries > UFFD_EAGAIN_RETRIES) {
            error_setg_errno(errp, errno, "cannot %s at %p+0x%zx", what[op], dst, len);
            return -1;
        }
        if (done > 0 && (uint64_t)done < left) {
            d += done;
            s += op == UFFD_FILL_COPY ? done : 0;
            left -= done;
            *filled += done;
        }
    }
    return 1;
}

int uffd_copy(int fd, void *dst, const void *src, size_t len, bool wake,
              Error **errp)
{
    uint64_t filled;

    return uffd_fill(fd, UFFD_FILL_COPY, dst, src, len, wake, &filled, errp);
}

int uffd_zeropage(int fd, void *addr, size_t len, bool wake, Error **errp)
{
    uint64_t filled;

    return uffd_fill(fd, UFFD_FILL_ZERO, addr, NULL, len, wake, &filled, errp);
}

int uffd_wait_faults(int fd, int stop_fd, struct uffd_msg *msgs, int max, Error **errp)
{
    struct pollfd p[2] = {
        { .fd = fd, .events = POLLIN },
        { .fd = stop_fd, .events = POLLIN },
    };
    int n, faults = 0;

    while (poll(p, 2, -1) < 0) {
        if (errno != EINTR) {
            error_setg_errno(errp, errno, "poll on the fault descriptor failed");
            return -1;
        }
    }
    if (p[1].revents) {
        return UFFD_WAIT_STOPPED;
    }
    n = uffd_read_events(fd, msgs, max, errp);
    for (int i = 0; i < n; i++) {
        if (msgs[i].event == UFFD_EVENT_PAGEFAULT) {
            msgs[faults++] = msgs[i];
        }
    }
    return n < 0 ? -1 : faults;
}

bool uffd_wake(int fd, void *addr, size_t len, Error **errp)
{
    struct uffdio_range range = uffd_range(addr, len);

    if (ioctl(fd, UFFDIO_WAKE, &range) < 0) {
        error_setg_errno(errp, errno, "cannot wake faults at %p+0x%zx", addr, len);
        return false;
    }
    return true;
}

int uffd_read_events(int fd, struct uffd_msg *msgs, int max, Error **errp)
{
    ssize_t n;

    if (max <= 0) {
        return 0;
    }
    do {
        n = read(fd, msgs, sizeof(*msgs) * max);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN) {
            return 0;
        }
        error_setg_errno(errp, errno, "cannot read userfaultfd events");
        return -1;
    }
    if (n % sizeof(*msgs)) {
        error_setg(errp, "short userfaultfd read (%zd bytes)", n);
        return -1;
    }
    return n / sizeof(*msgs);
}

int uffd_wait(int fd, int timeout_ms, Error **errp)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    int r;

    do {
        r = poll(&pfd, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        error_setg_errno(errp, errno, "cannot poll userfaultfd");
        return -1;
    }
    if (r > 0 && (pfd.revents & (POLLERR | POLLNVAL))) {
        error_setg(errp, "userfaultfd is in error state (revents 0x%x)",
                   pfd.revents);
        return -1;
    }
    return r > 0;
}

int pagemap_open(pid_t pid, Error **errp)
{
    char path[64];
    int fd;

    if (pid) {
        snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
    } else {
        snprintf(path, sizeof(path), "/proc/self/pagemap");
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        error_setg_errno(errp, errno, "cannot open %s", path);
    }
    return fd;
}

ssize_t pagemap_scan(int pagemap_fd, uint64_t start, uint64_t len,
                     const PagemapQuery *q, struct page_region *regions,
                     size_t max_regions, uint64_t *walk_end, Error **errp)
{
    struct pm_scan_arg arg = {
        .size = sizeof(arg),
        .start = start,
        .end = start + len,
        .vec = (uintptr_t)regions,
        .vec_len = max_regions,
        /* Inverted categories match when clear. */
        .category_inverted = q->all_clear,
        .category_mask = q->all_set | q->all_clear,
        .category_anyof_mask = q->any_set,
        .return_mask = q->all_set | q->all_clear | q->any_set,
    };
    long r;

    r = ioctl(pagemap_fd, PAGEMAP_SCAN, &arg);
    if (r < 0) {
        if (errno == ENOTTY) {
            error_setg(errp, "this kernel lacks PAGEMAP_SCAN (Linux 6.7+)");
        } else {
            error_setg_errno(errp, errno, "PAGEMAP_SCAN of 0x%" PRIx64
                             "+0x%" PRIx64 " failed", start, len);
        }
        return -1;
    }
    if (walk_end) {
        *walk_end = arg.walk_end;
    }
    return r;
}

/* Write-protected: not written since protection, and present or swapped. */
static const PagemapQuery pagemap_wp_query = {
    .all_clear = PAGE_IS_WRITTEN,
    .any_set = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
};

/* Count wp pages; stop at the first if stop_at_first. */
static ssize_t pagemap_wp_walk(pid_t pid, uint64_t start, uint64_t len,
                               bool stop_at_first, Error **errp)
{
    struct page_region regions[64];
    uint64_t pos = start, end = start + len, page = sysconf(_SC_PAGESIZE);
    ssize_t total = 0;
    int fd = pagemap_open(pid, errp);

    if (fd < 0) {
        return -1;
    }
    while (pos < end) {
        uint64_t walk_end;
        ssize_t i, n = pagemap_scan(fd, pos, end - pos, &pagemap_wp_query,
                                    regions, G_N_ELEMENTS(regions), &walk_end,
                                    errp);
        if (n < 0) {
            total = -1;
            break;
        }
        for (i = 0; i < n; i++) {
            total += (regions[i].end - regions[i].start) / page;
        }
        if ((stop_at_first && total) || walk_end <= pos) {
            break;
        }
        pos = walk_end;
    }
    close(fd);
    return total;
}

ssize_t pagemap_count_wp(pid_t pid, uint64_t start, uint64_t len, Error **errp)
{
    return pagemap_wp_walk(pid, start, len, false, errp);
}

int pagemap_any_wp(pid_t pid, uint64_t start, uint64_t len, Error **errp)
{
    ssize_t n = pagemap_wp_walk(pid, start, len, true, errp);

    return n < 0 ? -1 : n > 0;
}
