/* nbdshadow: an nbdkit_next context as an origin (origin_next.h).
 *
 * Capabilities the plugin lacks are emulated here, so that server/ can
 * call every operation: zero by writing zeroes, trim and flush as no-ops
 * (both are advisory or meaningless without support).
 */

#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "origin_next.h"

#define ZERO_CHUNK (1024 * 1024)

static int
next_pread (void *ctx, void *buf, uint32_t count, uint64_t offset, int *err)
{
  nbdkit_next *next = ctx;

  return next->pread (next, buf, count, offset, 0, err);
}

static int
next_pwrite (void *ctx, const void *buf, uint32_t count, uint64_t offset,
             uint32_t flags, int *err)
{
  nbdkit_next *next = ctx;
  uint32_t f = 0;

  if ((flags & ORIGIN_FLAG_FUA) && next->can_fua (next) != NBDKIT_FUA_NONE)
    f |= NBDKIT_FLAG_FUA;
  return next->pwrite (next, buf, count, offset, f, err);
}

static int
zero_by_writing (nbdkit_next *next, uint32_t count, uint64_t offset,
                 int *err)
{
  char *zeroes = calloc (1, count < ZERO_CHUNK ? count : ZERO_CHUNK);

  if (zeroes == NULL) {
    *err = ENOMEM;
    return -1;
  }
  while (count > 0) {
    uint32_t n = count < ZERO_CHUNK ? count : ZERO_CHUNK;

    if (next->pwrite (next, zeroes, n, offset, 0, err) == -1) {
      free (zeroes);
      return -1;
    }
    count -= n;
    offset += n;
  }
  free (zeroes);
  return 0;
}

static int
next_zero (void *ctx, uint32_t count, uint64_t offset, uint32_t flags,
           int *err)
{
  nbdkit_next *next = ctx;

  if (next->can_zero (next) <= NBDKIT_ZERO_NONE)
    return zero_by_writing (next, count, offset, err);
  return next->zero (next, count, offset,
                     flags & ORIGIN_FLAG_MAY_TRIM ? NBDKIT_FLAG_MAY_TRIM : 0,
                     err);
}

static int
next_trim (void *ctx, uint32_t count, uint64_t offset, uint32_t flags,
           int *err)
{
  nbdkit_next *next = ctx;

  if (next->can_trim (next) != 1)
    return 0;
  return next->trim (next, count, offset, 0, err);
}

static int
next_flush (void *ctx, int *err)
{
  nbdkit_next *next = ctx;

  if (next->can_flush (next) != 1)
    return 0;
  return next->flush (next, 0, err);
}

static int
next_extents (void *ctx, uint32_t count, uint64_t offset, bool req_one,
              origin_extent_fn fn, void *opaque, int *err)
{
  nbdkit_next *next = ctx;
  struct nbdkit_extents *exts;
  size_t i, n;

  exts = nbdkit_extents_new (offset, offset + count);
  if (exts == NULL) {
    *err = errno;
    return -1;
  }
  if (next->extents (next, count, offset, req_one ? NBDKIT_FLAG_REQ_ONE : 0,
                     exts, err) == -1) {
    nbdkit_extents_free (exts);
    return -1;
  }
  n = nbdkit_extents_count (exts);
  for (i = 0; i < n; ++i) {
    struct nbdkit_extent e = nbdkit_get_extent (exts, i);

    fn (opaque, e.offset, e.length, e.type);
  }
  nbdkit_extents_free (exts);
  return 0;
}

static const struct origin_ops next_ops = {
  .pread = next_pread,
  .pwrite = next_pwrite,
  .zero = next_zero,
  .trim = next_trim,
  .flush = next_flush,
  .extents = next_extents,
};

int
origin_from_next (struct origin *o, nbdkit_next *next)
{
  int w = next->can_write (next);
  int z = next->can_zero (next);
  int t = next->can_trim (next);
  int f = next->can_flush (next);
  int x = next->can_extents (next);

  if (w == -1 || z == -1 || t == -1 || f == -1 || x == -1)
    return -1;                  /* nbdkit already reported */
  o->ops = &next_ops;
  o->ctx = next;
  o->can_write = w;
  o->can_zero = z > NBDKIT_ZERO_NONE;
  o->can_trim = t;
  o->can_flush = f;
  o->can_extents = x;
  return 0;
}
