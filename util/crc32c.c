/*
 * CRC-32C (include/util/crc32c.h): the crc32 instruction of SSE4.2 where
 * the CPU has it, else a table a byte at a time.  Both keep the running
 * value inverted between calls, so a CRC can be built up in pieces.
 */
#include <stdbool.h>
#include <string.h>

#include "util/crc32c.h"

#define CRC32C_POLY_REFLECTED 0x82f63b78u

static uint32_t table[256];
static bool have_sse42;

/* Before main(): no thread can race the table's construction. */
__attribute__((constructor)) static void crc32c_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;

        for (int k = 0; k < 8; k++) {
            c = c & 1 ? (c >> 1) ^ CRC32C_POLY_REFLECTED : c >> 1;
        }
        table[i] = c;
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    have_sse42 = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t crc32c_table(uint32_t c, const uint8_t *p, size_t len)
{
    while (len--) {
        c = table[(c ^ *p++) & 0xff] ^ (c >> 8);
    }
    return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t c, const uint8_t *p, size_t len)
{
    uint64_t c64 = c;

    while (len && ((uintptr_t)p & 7)) {
        c64 = __builtin_ia32_crc32qi((uint32_t)c64, *p++);
        len--;
    }
    for (; len >= 8; len -= 8, p += 8) {
        uint64_t v;

        memcpy(&v, p, 8);
        c64 = __builtin_ia32_crc32di(c64, v);
    }
    while (len--) {
        c64 = __builtin_ia32_crc32qi((uint32_t)c64, *p++);
    }
    return (uint32_t)c64;
}
#endif

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
    uint32_t c = ~crc;

#if defined(__x86_64__)
    if (have_sse42) {
        return ~crc32c_sse42(c, buf, len);
    }
#endif
    return ~crc32c_table(c, buf, len);
}

uint32_t crc32c_portable(uint32_t crc, const void *buf, size_t len)
{
    return ~crc32c_table(~crc, buf, len);
}
