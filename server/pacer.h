/* nbdshadow: the background sweep yields to the reads the shadow serves.
 *
 * On a host with few CPUs the sweep's copies slow the clients' reads of
 * blocks already on the shadow: they take a CPU and the shadow server's
 * attention.  On bench/e2e's sequential reader (two vCPUs, origin at 100
 * MB/s) those reads' 90th percentile went from 0.7 to 2.5 ms while the
 * mean of all client requests, origin reads included, stayed inside the
 * copier's test for congestion (copier.c clients_slowed).  Fewer
 * transfers at once did not help; a lower rate did
 * (bench/e2e/RESULTS.md, "The sweep yields to the reads the shadow
 * serves", 2026-12-02).
 *
 * So the pacer measures the mean latency of client reads served by the
 * shadow alone, each tick (about half a second), against what it is
 * with the sweep held, and sets a gap per whole transfer (2 MiB) of
 * the sweep's, shorter in proportion for a shorter one: none while the
 * reads are near their quiet latency, doubling from PACER_MIN_GAP_MS up
 * to PACER_MAX_GAP_MS while they are well above it, shrinking by a
 * quarter a tick once they are not.  The sweep never stops: at the
 * widest gap it still copies about 4 MB/s.  Ticks in which no read
 * ended leave the gap as it is.  Predictions and requested copies are
 * not paced: they are what keeps those reads on the shadow.  Nor is the
 * sweep while more than a tenth of the clients' requests are something
 * else (mostly reads from the origin), nor held to probe: then the
 * sweep, by making their blocks resident, saves them more than it costs
 * the shadow's reads (zipf random reads, a fifth from the origin,
 * stalled 13% more paced).
 *
 * The quiet latency is measured, not guessed: every PACER_PROBE_TICKS
 * ticks with PACER_READS_MIN shadow reads or more, and at least
 * PACER_SHADOW_SHARE of the requests, (at the first such
 * tick, and the first PACER_EARLY_PROBES a quarter as far apart) the
 * sweep is held for two ticks, the first to let copies under way and
 * their writes drain, the second measured; a lower figure than the
 * last replaces it, a higher one moves it halfway.  A client that reads little is not worth a probe:
 * the sweep is not held for it, nor paced.  A floor of the
 * loaded means would only ever learn the loaded latency under a sweep
 * that never pauses, and the fastest read is no reference either (with
 * no sweep at all the mean was four times the fastest on seq).
 *
 * A struct pacer has no lock of its own: the copier's lock guards it.
 */

#ifndef NBDSHADOW_PACER_H
#define NBDSHADOW_PACER_H

#include <stdbool.h>
#include <stdint.h>

#define PACER_SLOWDOWN 1.25     /* reads slowed: mean > this x quiet ... */
#define PACER_SLOWDOWN_US 50.0  /* ... + this */
#define PACER_READS_MIN 16      /* fewer reads in a tick say nothing */
#define PACER_SHADOW_SHARE 0.9  /* paced only while this share of the
                                   clients' requests is shadow reads */
#define PACER_PROBE_TICKS 20
#define PACER_EARLY_PROBES 3    /* ... each a quarter as far apart */
#define PACER_MIN_GAP_MS 20.0   /* 2 MiB transfers: 100 MB/s */
#define PACER_MAX_GAP_MS 500.0

struct pacer {
  double last_us;               /* mean of the last tick with reads (copier) */
  double quiet_us;              /* from the probes (quiet_from), 0 = none */
  double gap_ms;                /* between sweep starts, 0 = unpaced */
  unsigned probe_in;            /* busy ticks to the next probe */
  unsigned probe_tick;          /* ticks into the probe under way */
  unsigned probes;              /* that measured something */
  bool probing;                 /* the sweep is held */
};

/* One tick with clients active (a request ended in it, or one is still
 * in flight): n_all client requests ended in it, n of them reads served
 * by the shadow alone, of mean latency mean_us.  sweeping: is there a
 * sweep to hold at all?
 */
extern void pacer_tick (struct pacer *p, uint64_t n_all, uint64_t n,
                        double mean_us, bool sweeping);

/* Clients went idle: the sweep runs freely (a probe under way ends). */
extern void pacer_idle (struct pacer *p);

/* May a sweep transfer start at now (seconds), the pacing having set
 * the next start at ready_at (pacer_next_start)?  If not, *wait is the
 * time to wait, or 0 when only the next tick can tell (a probe).
 */
extern bool pacer_may_start (const struct pacer *p, double now,
                             double ready_at, double *wait);

/* When the sweep transfer after one of share (its bytes over a whole
 * transfer's) starting at now may start: the gap spaces bytes, not
 * transfers, so that runs of a block or two between resident ones are
 * not slowed more than whole transfers.
 */
extern double pacer_next_start (const struct pacer *p, double now,
                                double share);

#endif /* NBDSHADOW_PACER_H */
