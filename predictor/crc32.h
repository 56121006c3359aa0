/* crc32.h: CRC-32 (IEEE 802.3, the zlib/PNG polynomial).
 *
 * Why it exists: the model file format is checksummed so that a torn or
 * corrupted file is refused instead of silently loading garbage weights;
 * zlib is not a dependency we may take, so the 40 lines live here.
 */
#ifndef NBDSHADOW_PRED_CRC32_H
#define NBDSHADOW_PRED_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC over buf; start with crc = 0.  Equal to zlib's crc32(). */
uint32_t pred_crc32 (uint32_t crc, const void *buf, size_t len);

#endif
