/*
 * userfaultfd UAPI newer than the distribution's headers (Debian 12 ships
 * 6.1).  Values follow include/uapi/linux/userfaultfd.h of Linux 6.8+.
 * Every constant is guarded so that newer system headers win; each struct
 * is guarded by the ioctl number that arrived with it.
 */
#ifndef AMBER_UAPI_COMPAT_USERFAULTFD_H
#define AMBER_UAPI_COMPAT_USERFAULTFD_H

#include <linux/types.h>
#include <linux/ioctl.h>
#include <linux/userfaultfd.h>

/* Features (struct uffdio_api.features). */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED     (1 << 13)   /* 6.4 */
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON             (1 << 14)   /* 6.6 */
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC           (1 << 15)   /* 6.7 */
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE               (1 << 16)   /* 6.8 */
#endif

/* UFFDIO_CONTINUE can map the page write-protected (6.4). */
#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP         ((__u64)1 << 1)
#endif

/* UFFDIO_POISON: install poison markers over a range (6.6). */
#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON                  (0x08)
struct uffdio_poison {
    struct uffdio_range range;
    __u64 mode;
    __s64 updated;      /* written by the kernel: bytes poisoned or -errno */
};
#endif
#ifndef UFFDIO_POISON_MODE_DONTWAKE
#define UFFDIO_POISON_MODE_DONTWAKE     ((__u64)1 << 0)
#endif
#ifndef UFFDIO_POISON
#define UFFDIO_POISON   _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif

/* UFFDIO_MOVE: move pages into a registered range (6.8). */
#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE                    (0x05)
struct uffdio_move {
    __u64 dst;
    __u64 src;
    __u64 len;
    __u64 mode;
    __s64 move;         /* written by the kernel: bytes moved or -errno */
};
#endif
#ifndef UFFDIO_MOVE_MODE_DONTWAKE
#define UFFDIO_MOVE_MODE_DONTWAKE       ((__u64)1 << 0)
#endif
#ifndef UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
#endif
#ifndef UFFDIO_MOVE
#define UFFDIO_MOVE     _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif

/* /dev/userfaultfd (6.1 has it; kept for older headers). */
#ifndef USERFAULTFD_IOC
#define USERFAULTFD_IOC                 0xAA
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW             _IO(USERFAULTFD_IOC, 0x00)
#endif

#endif
