/* sim.h: a deterministic simulator of a migration under a client trace.
 *
 * Why it exists: what counts in migration is the first touch of a block
 * that is still absent (DESIGN §6).  A model's next-access accuracy says
 * little about that: a prediction of a block already copied is worth
 * nothing, and a right prediction issued too late saves only part of a
 * stall.  This simulator replays a trace against a growing resident set
 * and a bandwidth- and queue-limited copier, and measures what the
 * filter would: reads served by the shadow, stall time, prefetch
 * precision, coverage of first touches, bytes copied.
 *
 * Model (all times in microseconds of trace time, open loop: a stalled
 * client does not delay the trace's later requests):
 *  - The origin link moves one block in xfer = block_size / bandwidth and
 *    each copy also takes `latency`: a copy issued at t starts at
 *    max(t, link_free), holds the link for xfer, and the block is
 *    resident at start + xfer + latency.
 *  - Prefetch and background copies are limited to `queue_depth`
 *    outstanding; client-driven fetches are not (they are the client's
 *    own reads) but share the link, so prefetching delays them.
 *  - Client read of block b: resident -> served by the shadow; being
 *    copied -> waits until it lands; absent -> fetched on demand
 *    (copy-on-read: resident when it lands).  A request's stall is its
 *    slowest block's wait; it is served by the shadow only if every
 *    block was resident on arrival.
 *  - Write / zero / trim covering a whole block: the block becomes
 *    resident at once (its copy, if any, is then moot).  Covering part of
 *    an absent block: the rest is fetched first (a read-modify-write,
 *    counted as a stall and as a first touch that needs data).
 *  - After each access the policy observes it and predicts; its
 *    candidates that are absent, not being copied and at least as likely
 *    as the threshold replace the pending prefetch list, which feeds free
 *    copy slots best first.  The threshold (auto) follows the load:
 *    0.05 + 0.5 u, u the fraction of the link busy with demand and
 *    prefetch copies (moving average over 100 ms; the background sweep
 *    only takes what they leave, so it does not count): an idle link
 *    takes long shots, a saturated one only what is more likely than not
 *    to be used.  Rules (baselines, oracle) give
 *    probability 1 and always pass.  With the
 *    background sweep on, slots left free copy absent blocks in
 *    increasing order (dm-clone's linear hydration).
 *  - Coverage: share of first touches that need data (reads, partial
 *    writes) whose block had been issued by prefetch before the touch.
 *    Precision: share of prefetched blocks touched by a client later in
 *    the trace.
 */
#ifndef NBDSHADOW_PRED_SIM_H
#define NBDSHADOW_PRED_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "access.h"
#include "predictor.h"

struct sim_config {
  uint32_t block_size;          /* bytes, power of two */
  uint64_t nr_blocks;           /* volume; 0 = up to the highest block touched */
  double bandwidth;             /* bytes per second of the origin link */
  double latency_us;            /* per copy */
  unsigned queue_depth;         /* outstanding prefetch + background copies */
  bool background;              /* linear sweep */
  unsigned max_candidates;      /* asked of the policy per access */
  double threshold;             /* issue candidates with p >= this; < 0: auto */
};

void sim_config_default (struct sim_config *c);

/* What the simulator drives: the facade, the oracle, or a test double. */
struct sim_policy {
  const char *name;
  void *opaque;
  void (*observe) (void *opaque, const struct pred_access *a);
  size_t (*predict) (void *opaque, struct pred_cand *out, size_t max,
                     predictor_absent_fn absent, void *absent_opaque);
};

struct sim_result {
  uint64_t accesses;            /* all records */
  uint64_t reads;               /* read requests */
  uint64_t reads_shadow;        /* ... served by the shadow */
  uint64_t read_blocks, read_blocks_resident;
  double stall_us;              /* sum over requests */
  uint64_t stalled;             /* requests that waited */
  uint64_t first_touches;       /* that needed data */
  uint64_t ft_covered;          /* ... prefetched before the touch */
  uint64_t ft_resident;         /* ... resident on arrival, by any means */
  uint64_t pf_issued, pf_used;  /* prefetched blocks; touched later */
  uint64_t copied_demand, copied_prefetch, copied_background;   /* blocks */
  uint64_t policy_ns;           /* observe + predict wall time */
  uint64_t below_threshold;     /* candidates not issued: p < threshold */
  double mean_threshold;        /* average threshold over accesses */
  uint64_t predictions, candidates;
  double duration_us;
  uint64_t nr_blocks;
};

/* Simulate accesses a[0..n) (one device) under policy pol (NULL: no
 * prefetch).  0 ok, -1 on allocation failure. */
int sim_run (const struct sim_config *cfg, const struct pred_access *a,
             size_t n, const struct sim_policy *pol, struct sim_result *r);

/* The oracle for this trace: a policy knowing the future first touches
 * that need data.  Free with sim_oracle_free. */
struct sim_policy *sim_oracle_new (const struct sim_config *cfg,
                                   const struct pred_access *a, size_t n);
void sim_oracle_free (struct sim_policy *p);

/* A policy backed by the facade (predictor.h). */
void sim_policy_from_predictor (struct sim_policy *pol, struct predictor *p,
                                const char *name);

/* Highest block touched + 1. */
uint64_t sim_trace_blocks (const struct pred_access *a, size_t n,
                           uint32_t block_size);

#endif
