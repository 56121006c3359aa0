/* nbdshadow: access to the origin, independent of nbdkit.
 *
 * The origin is whatever nbdkit plugin sits under the filter.  The filter
 * wraps a per-connection (or, for the copier, a shared) nbdkit_next
 * context in these operations, so that server/ needs no nbdkit headers
 * and can be tested against a fake origin.
 *
 * Every operation returns 0, or -1 with *err set to an errno.
 */

#ifndef NBDSHADOW_ORIGIN_H
#define NBDSHADOW_ORIGIN_H

#include <stdbool.h>
#include <stdint.h>

#define ORIGIN_FLAG_FUA 1
#define ORIGIN_FLAG_MAY_TRIM 2

/* Extent types as in NBD base:allocation and nbdkit. */
#define EXTENT_HOLE 1
#define EXTENT_ZERO 2

typedef void (*origin_extent_fn) (void *opaque, uint64_t offset,
                                  uint64_t length, uint32_t type);

struct origin_ops {
  int (*pread) (void *ctx, void *buf, uint32_t count, uint64_t offset,
                int *err);
  int (*pwrite) (void *ctx, const void *buf, uint32_t count, uint64_t offset,
                 uint32_t flags, int *err);
  int (*zero) (void *ctx, uint32_t count, uint64_t offset, uint32_t flags,
               int *err);
  int (*trim) (void *ctx, uint32_t count, uint64_t offset, uint32_t flags,
               int *err);
  int (*flush) (void *ctx, int *err);
  /* Report consecutive extents starting at offset; may stop early. */
  int (*extents) (void *ctx, uint32_t count, uint64_t offset, bool req_one,
                  origin_extent_fn fn, void *opaque, int *err);
};

struct origin {
  const struct origin_ops *ops;
  void *ctx;
  bool can_write, can_zero, can_trim, can_flush, can_extents;
};

#endif /* NBDSHADOW_ORIGIN_H */
