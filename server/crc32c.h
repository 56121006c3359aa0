/* nbdshadow: CRC-32C (Castagnoli), for the checksums of the persistent
 * state (state.c).
 *
 * Why CRC-32C and not the zlib CRC: it is what filesystems' journals
 * (ext4, btrfs, XFS) and iSCSI use, it has better error-detection
 * properties at the lengths we check (a few bytes to a few MiB), and
 * detects every 1-, 2- and 3-bit error in records of our sizes.  It is
 * implemented here, table driven, so that server/ needs no library.
 */

#ifndef NBDSHADOW_CRC32C_H
#define NBDSHADOW_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC-32C over buf; start with crc = 0.  The usual
 * pre/post-inversion is done inside, so that
 * shadow_crc32c (shadow_crc32c (0, a, n), b, m) == shadow_crc32c (0, ab, n+m)
 * and shadow_crc32c (0, "123456789", 9) == 0xe3069283.  Thread-safe.
 */
extern uint32_t shadow_crc32c (uint32_t crc, const void *buf, size_t len);

#endif /* NBDSHADOW_CRC32C_H */
