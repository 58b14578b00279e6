/*
 * PAGEMAP_SCAN (Linux 6.7+): an ioctl on /proc/PID/pagemap that reports
 * ranges of pages by category (present, written since write-protect, ...).
 * Values follow include/uapi/linux/fs.h and
 * Documentation/admin-guide/mm/pagemap.rst.  Debian 12's 6.1 headers lack
 * all of it; each constant is guarded so newer system headers win, and the
 * structs are guarded by the ioctl that arrived with them.
 */
#ifndef AMBER_UAPI_COMPAT_FS_H
#define AMBER_UAPI_COMPAT_FS_H

#include <linux/types.h>
#include <linux/ioctl.h>
#include <linux/fs.h>

#ifndef PROCFS_IOCTL_MAGIC
#define PROCFS_IOCTL_MAGIC              'f'
#endif

#ifndef PAGEMAP_SCAN
/* One output record: [start, end) whose pages share these categories. */
struct page_region {
    __u64 start;
    __u64 end;
    __u64 categories;
};

struct pm_scan_arg {
    __u64 size;                 /* sizeof(struct pm_scan_arg) */
    __u64 flags;                /* PM_SCAN_* */
    __u64 start;
    __u64 end;
    __u64 walk_end;             /* written by the kernel: where it stopped */
    __u64 vec;                  /* struct page_region array */
    __u64 vec_len;
    __u64 max_pages;            /* 0: no limit */
    __u64 category_inverted;    /* categories that match when clear */
    __u64 category_mask;        /* all of these must match */
    __u64 category_anyof_mask;  /* at least one of these must match */
    __u64 return_mask;          /* categories reported in page_region */
};

#define PAGEMAP_SCAN    _IOWR(PROCFS_IOCTL_MAGIC, 16, struct pm_scan_arg)
#endif

/* Categories (masks of pm_scan_arg, page_region.categories). */
#ifndef PAGE_IS_WPALLOWED
#define PAGE_IS_WPALLOWED       (1 << 0)
#endif
#ifndef PAGE_IS_WRITTEN
#define PAGE_IS_WRITTEN         (1 << 1)
#endif
#ifndef PAGE_IS_FILE
#define PAGE_IS_FILE            (1 << 2)
#endif
#ifndef PAGE_IS_PRESENT
#define PAGE_IS_PRESENT         (1 << 3)
#endif
#ifndef PAGE_IS_SWAPPED
#define PAGE_IS_SWAPPED         (1 << 4)
#endif
#ifndef PAGE_IS_PFNZERO
#define PAGE_IS_PFNZERO         (1 << 5)
#endif
#ifndef PAGE_IS_HUGE
#define PAGE_IS_HUGE            (1 << 6)
#endif
#ifndef PAGE_IS_SOFT_DIRTY
#define PAGE_IS_SOFT_DIRTY      (1 << 7)
#endif
#ifndef PAGE_IS_GUARD
#define PAGE_IS_GUARD           (1 << 8)    /* 6.15 */
#endif

/* pm_scan_arg.flags */
#ifndef PM_SCAN_WP_MATCHING
#define PM_SCAN_WP_MATCHING     (1 << 0)    /* write-protect what matched */
#endif
#ifndef PM_SCAN_CHECK_WPASYNC
#define PM_SCAN_CHECK_WPASYNC   (1 << 1)    /* fail on non-WP_ASYNC vmas */
#endif

#endif
