/* workload.h: synthetic access streams with known structure.
 *
 * Why it exists: two real traces are not enough to judge a predictor
 * (and tuning to them would be cheating).  These generators produce the
 * classic shapes, each seeded and reproducible, as native-format
 * accesses:
 *
 *  sequential   one reader moving forward unit by unit; every ~2000
 *               requests it jumps to a random place (a new file).
 *  strided      reads every `stride`-th unit; jumps likewise.
 *  interleaved  `streams` sequential readers, a random one issuing each
 *               request (each jumps with probability 1/1000).
 *  zipf         independent reads, unit popularity Zipf(`zipf_s`) over
 *               the volume (ranks scattered by a fixed permutation): no
 *               order to learn, only popularity.
 *  boot         a boot-like sequence: a fixed template of `template_len`
 *               accesses (sequential runs of 1..20 units separated by
 *               jumps) replayed over and over, each time in the next
 *               image of a volume holding clones of the same image back
 *               to back (as many clones as replays, at least 8) (a LUN of cloned VM disks booting one after the
 *               other); with probability `noise` a random read is
 *               inserted and with probability noise/2 a step is skipped.
 *
 * A unit is `request_size` bytes (requests are unit-aligned).  Requests
 * arrive as a Poisson process of `rate` per second.  With
 * `write_share` > 0 that share of requests are writes.
 */
#ifndef NBDSHADOW_PRED_WORKLOAD_H
#define NBDSHADOW_PRED_WORKLOAD_H

#include <stdint.h>

#include "access.h"

enum pred_workload_kind {
  PRED_WL_SEQUENTIAL,
  PRED_WL_STRIDED,
  PRED_WL_INTERLEAVED,
  PRED_WL_ZIPF,
  PRED_WL_BOOT,
  PRED_WL__COUNT
};

struct pred_workload_config {
  enum pred_workload_kind kind;
  uint64_t requests;            /* default 20000 */
  uint64_t volume;              /* bytes, default 4 GiB */
  uint32_t request_size;        /* bytes, default 64 KiB */
  double rate;                  /* requests per second, default 500 */
  double write_share;           /* default 0 */
  uint64_t seed;                /* default 1 */
  unsigned streams;             /* interleaved: default 4 */
  unsigned stride;              /* strided: default 4 units */
  double zipf_s;                /* zipf: default 0.9 */
  unsigned template_len;        /* boot: default 400 accesses */
  double noise;                 /* boot: default 0.1 */
};

void pred_workload_config_default (struct pred_workload_config *c);
/* "sequential", "strided", "interleaved", "zipf", "boot"; -1 if unknown. */
int pred_workload_parse (const char *name);
const char *pred_workload_name (enum pred_workload_kind k);

/* Calls sink for each access in order; stops early (returning its
 * value) if sink returns non-zero.  Returns 0, or -1 if c is invalid. */
typedef int (*pred_workload_sink) (void *opaque, const struct pred_access *a);
int pred_workload_generate (const struct pred_workload_config *c,
                            pred_workload_sink sink, void *opaque);

#endif
