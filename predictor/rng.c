/* rng.c: xoshiro256** seeded through splitmix64 (see rng.h for why). */
#include <config.h>

#include <math.h>

#include "rng.h"

static uint64_t
splitmix64 (uint64_t *x)
{
  uint64_t z = (*x += UINT64_C (0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

void
pred_rng_seed (struct pred_rng *r, uint64_t seed)
{
  uint64_t x = seed;
  for (int i = 0; i < 4; i++)
    r->s[i] = splitmix64 (&x);
}

static inline uint64_t
rotl (uint64_t x, int k)
{
  return (x << k) | (x >> (64 - k));
}

uint64_t
pred_rng_next (struct pred_rng *r)
{
  uint64_t *s = r->s;
  const uint64_t result = rotl (s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl (s[3], 45);
  return result;
}

double
pred_rng_uniform (struct pred_rng *r)
{
  return (double) (pred_rng_next (r) >> 11) * 0x1.0p-53;
}

uint64_t
pred_rng_below (struct pred_rng *r, uint64_t n)
{
  return pred_rng_next (r) % n;
}

double
pred_rng_normal (struct pred_rng *r)
{
  double u1 = pred_rng_uniform (r), u2 = pred_rng_uniform (r);
  if (u1 < 1e-300)
    u1 = 1e-300;
  return sqrt (-2.0 * log (u1)) * cos (2.0 * M_PI * u2);
}
