/* rng.h: a small deterministic pseudo-random generator (xoshiro256**).
 *
 * Why it exists: every random choice in the predictor (weight
 * initialisation, replay sampling, synthetic workloads) must be
 * reproducible from a seed, identically on every machine and libc, so
 * that tests and benchmarks give the same figures run after run.  rand()
 * and random() give neither.
 */
#ifndef NBDSHADOW_PRED_RNG_H
#define NBDSHADOW_PRED_RNG_H

#include <stdint.h>

struct pred_rng {
  uint64_t s[4];
};

/* Seed the generator (any value, including 0, is a valid seed). */
void pred_rng_seed (struct pred_rng *r, uint64_t seed);
/* Next 64 random bits. */
uint64_t pred_rng_next (struct pred_rng *r);
/* Uniform double in [0, 1). */
double pred_rng_uniform (struct pred_rng *r);
/* Uniform integer in [0, n), n > 0 (no modulo bias worth noting for n < 2^32). */
uint64_t pred_rng_below (struct pred_rng *r, uint64_t n);
/* Standard normal variate (Box-Muller). */
double pred_rng_normal (struct pred_rng *r);

#endif
