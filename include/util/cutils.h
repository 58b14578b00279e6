/* Small helpers on memory buffers and file descriptors. */
#ifndef AMBER_UTIL_CUTILS_H
#define AMBER_UTIL_CUTILS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * True when all len bytes of buf are zero.  buf is 8-byte aligned and len a
 * multiple of 64 (pages are): the test then runs a word at a time.
 */
bool buffer_is_zero(const void *buf, size_t len);

/*
 * pwrite() all len bytes at off, again after EINTR and short writes.
 * False with errno set (ENOSPC when the file takes no more bytes).
 */
bool pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
/* write() all len bytes (a pipe, a socket), again after EINTR and short writes; false on error. */
bool write_full(int fd, const void *buf, size_t len);

/*
 * pread() len bytes at off, again after EINTR and short reads: returns len,
 * fewer where the file ends, or -1 with errno set.
 */
ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off);

/* Big-endian integers in memory (message payloads, mapped images), at any alignment. */
static inline uint32_t be32_at(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t be64_at(const uint8_t *p)
{
    return (uint64_t)be32_at(p) << 32 | be32_at(p + 4);
}

static inline void put_be32_at(uint8_t *p, uint32_t v)
{
    p[0] = v >> 24;
    p[1] = v >> 16;
    p[2] = v >> 8;
    p[3] = v;
}

static inline void put_be64_at(uint8_t *p, uint64_t v)
{
    put_be32_at(p, v >> 32);
    put_be32_at(p + 4, (uint32_t)v);
}

#endif
