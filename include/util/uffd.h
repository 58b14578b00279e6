/*
 * userfaultfd and PAGEMAP_SCAN wrappers.
 *
 * A userfaultfd made here is O_CLOEXEC|O_NONBLOCK and never
 * UFFD_USER_MODE_ONLY: faults taken by KVM on behalf of a vCPU are kernel
 * faults, and a user-mode-only fd turns them into EFAULT from KVM_RUN.
 * Creating one therefore needs /dev/userfaultfd access, CAP_SYS_PTRACE or
 * vm.unprivileged_userfaultfd=1.
 *
 * Every failing call sets *errp with the kernel's errno text.
 */
#ifndef AMBER_UTIL_UFFD_H
#define AMBER_UTIL_UFFD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "uapi-compat/userfaultfd.h"
#include "uapi-compat/fs.h"
#include "util/error.h"

/* --- features --- */
/* "WP_HUGETLBFS_SHMEM" for UFFD_FEATURE_WP_HUGETLBFS_SHMEM; NULL if unknown. */
const char *uffd_feature_name(uint64_t feature_bit);
/* "PAGEFAULT_FLAG_WP, THREAD_ID" (unknown bits as "bit N"); g_free() it. */
char *uffd_features_to_str(uint64_t features);
/* The features this kernel supports (asked on a throwaway fd). */
bool uffd_query_features(uint64_t *features, Error **errp);
/*
 * Fail with "userfaultfd lacks X, Y" when some of the wanted features are
 * not in have.  what says what needed them ("background-snapshot").
 */
bool uffd_check_features(uint64_t want, uint64_t have, const char *what,
                         Error **errp);

/* --- the fd --- */
/* A raw userfaultfd, before the API handshake; -1 on failure. */
int uffd_open(Error **errp);
/*
 * A userfaultfd with the given features enabled: checks them against the
 * kernel's set first, so a missing one is reported by name.  -1 on failure.
 */
int uffd_create(uint64_t features, Error **errp);

/* --- ranges (addr and len page aligned) --- */
/*
 * Register [addr, addr + len) with mode (UFFDIO_REGISTER_MODE_*).  *ioctls
 * (may be NULL) gets the mask of ioctls usable on the range, as bits
 * 1 << _UFFDIO_*.
 */
bool uffd_register(int fd, void *addr, size_t len, uint64_t mode,
                   uint64_t *ioctls, Error **errp);
bool uffd_unregister(int fd, void *addr, size_t len, Error **errp);
/* Write-protect the range. */
bool uffd_protect(int fd, void *addr, size_t len, Error **errp);
/* Remove write protection; wake the threads blocked on it unless !wake. */
bool uffd_unprotect(int fd, void *addr, size_t len, bool wake, Error **errp);
/*
 * Copy len bytes from src into the missing range at dst (wakes waiters
 * unless !wake).  Returns 1 when copied, 0 when a page of the range was already
 * there (EEXIST: an earlier copy or fault won; not an error), -1 on error.
 */
int uffd_copy(int fd, void *dst, const void *src, size_t len, bool wake,
              Error **errp);
/* Map zero pages over the missing range; results as uffd_copy(). */
int uffd_zeropage(int fd, void *addr, size_t len, bool wake, Error **errp);

typedef enum UffdFill {
    UFFD_FILL_COPY,         /* UFFDIO_COPY from src */
    UFFD_FILL_ZERO,         /* UFFDIO_ZEROPAGE */
    UFFD_FILL_CONTINUE,     /* UFFDIO_CONTINUE: map the shared file's page-cache pages
                               (range registered MINOR, every page in the cache) */
} UffdFill;
/*
 * Any of the three over [dst, dst + len), waking waiters unless !wake;
 * results as uffd_copy().  *filled gets the bytes this call placed from
 * dst on: all of len, or those before the page that was there (EEXIST) or
 * before the error.
 */
int uffd_fill(int fd, UffdFill op, void *dst, const void *src, size_t len, bool wake,
              uint64_t *filled, Error **errp);
/* Wake the threads blocked on faults in the range. */
bool uffd_wake(int fd, void *addr, size_t len, Error **errp);

/* --- events --- */
/*
 * Read up to max pending messages without blocking.  Returns how many were
 * read (0: none pending), or -1 on error.
 */
int uffd_read_events(int fd, struct uffd_msg *msgs, int max, Error **errp);
/* uffd_wait_faults() returns this once stop_fd is readable. */
#define UFFD_WAIT_STOPPED   (-2)
/*
 * A fault thread's wait: block until fd has messages or stop_fd (an
 * eventfd the owner writes to end the thread) is readable, then read up to
 * max messages and keep the page faults, in order, at the front of msgs.
 * Returns how many (0: none this time, call again), -1 on error, or
 * UFFD_WAIT_STOPPED.
 */
int uffd_wait_faults(int fd, int stop_fd, struct uffd_msg *msgs, int max, Error **errp);
/*
 * Wait up to timeout_ms (-1: forever) for the fd to become readable.
 * Returns 1 readable, 0 timeout, -1 error (EINTR is retried).
 */
int uffd_wait(int fd, int timeout_ms, Error **errp);

/* --- PAGEMAP_SCAN on /proc/PID/pagemap --- */
/* Open /proc/self/pagemap (pid 0) or /proc/PID/pagemap; -1 on failure. */
int pagemap_open(pid_t pid, Error **errp);

/*
 * Which pages of [start, start + len) to report: all of all_set set, all
 * of all_clear clear, and (if any_set is not 0) at least one of any_set
 * set.  The three masks must be disjoint PAGE_IS_* sets.
 */
typedef struct PagemapQuery {
    uint64_t all_set;
    uint64_t all_clear;
    uint64_t any_set;
} PagemapQuery;

/*
 * Fill regions with the matching runs of pages (categories holds the
 * queried categories of the run).  Stops when regions is full: *walk_end
 * (may be NULL) gets the address where the walk stopped, start + len when
 * it finished.  Returns the number of regions, or -1 (ENOTTY: kernel older
 * than 6.7).
 */
ssize_t pagemap_scan(int pagemap_fd, uint64_t start, uint64_t len,
                     const PagemapQuery *q, struct page_region *regions,
                     size_t max_regions, uint64_t *walk_end, Error **errp);

/*
 * Number of pages of [start, start + len) in process pid (0: ourselves)
 * that are userfaultfd write-protected: present or swapped (a write-protect
 * marker on an unpopulated page reads as swapped) and not written since
 * protection.  -1 on error.
 */
ssize_t pagemap_count_wp(pid_t pid, uint64_t start, uint64_t len, Error **errp);
/* 1 if some page of the range is still write-protected, 0 if none, -1 error. */
int pagemap_any_wp(pid_t pid, uint64_t start, uint64_t len, Error **errp);

#endif
