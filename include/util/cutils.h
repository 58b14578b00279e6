/* Small helpers on memory buffers. */
#ifndef AMBER_UTIL_CUTILS_H
#define AMBER_UTIL_CUTILS_H

#include <stdbool.h>
#include <stddef.h>

/*
 * True when all len bytes of buf are zero.  buf is 8-byte aligned and len a
 * multiple of 64 (pages are): the test then runs a word at a time.
 */
bool buffer_is_zero(const void *buf, size_t len);

#endif
