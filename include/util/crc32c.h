/*
 * CRC-32C (Castagnoli), the checksum of iSCSI, SCTP and ext4's metadata:
 * x86-64 computes it in hardware (SSE4.2), several GB/s a core.
 */
#ifndef AMBER_UTIL_CRC32C_H
#define AMBER_UTIL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/*
 * The CRC-32C of len bytes of buf, continuing from crc (0 to begin):
 * crc32c(crc32c(0, a, m), b, n) is the CRC of a then b.  The CRC of
 * "123456789" is 0xe3069283.
 */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);
/* The same without the CPU's instruction (tests compare the two). */
uint32_t crc32c_portable(uint32_t crc, const void *buf, size_t len);

#endif
