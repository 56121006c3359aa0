/* nbdshadow tests: self-describing 512-byte stripes.
 *
 * The race and crash tests write stripes that say which stripe and which
 * write of it they are, so that any later read can be classified: the
 * origin's bytes (write 0), one particular write, or garbage.  Stale data
 * and torn writes are then caught wherever they show up.
 */

#ifndef NBDSHADOW_TEST_STRIPES_H
#define NBDSHADOW_TEST_STRIPES_H

#include <stdint.h>
#include <string.h>

#define STRIPE 512
#define STRIPE_MAGIC 0x52414345u       /* "RACE" */

/* The contents of write number seq (>= 1) of stripe s. */
static inline void
stripe_fill (char *p, uint64_t s, uint32_t seq)
{
  uint32_t hdr[3] = { STRIPE_MAGIC, (uint32_t) s, seq };
  size_t i;

  memcpy (p, hdr, sizeof hdr);
  for (i = sizeof hdr; i < STRIPE; ++i)
    p[i] = (char) (s * 31 + seq * 17 + i);
}

/* Which write of stripe s does p hold?  0 = the origin's bytes
 * (origin_stripe), -1 = neither: garbage.
 */
static inline int64_t
stripe_decode (const char *p, uint64_t s, const char *origin_stripe)
{
  uint32_t hdr[3];
  char expect[STRIPE];

  memcpy (hdr, p, sizeof hdr);
  if (hdr[0] == STRIPE_MAGIC && hdr[1] == (uint32_t) s && hdr[2] > 0) {
    stripe_fill (expect, s, hdr[2]);
    if (memcmp (p, expect, STRIPE) == 0)
      return hdr[2];
  }
  if (memcmp (p, origin_stripe, STRIPE) == 0)
    return 0;
  return -1;
}

#endif /* NBDSHADOW_TEST_STRIPES_H */
