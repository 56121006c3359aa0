/* nbdshadow: the background sweep yields to the reads the shadow serves
 * (the why is in pacer.h).
 */
#include <config.h>

#include <math.h>

#include "pacer.h"

/* A probe's figure may be too high (a transfer that outlasted the
 * drain tick, the burst of prefetching when clients start, a busy
 * host): on bench/e2e inter the first probe read 887 us, the next 592.
 * So a lower figure is taken at once and a higher one by halves: a host
 * that has really slowed is followed within a few probes.
 */
static double
quiet_from (double quiet_us, double probe_us)
{
  if (quiet_us == 0 || probe_us < quiet_us)
    return probe_us;
  return (quiet_us + probe_us) / 2;
}

/* A probe lasts two ticks, whether reads end in them or not: the first
 * drains, the second is measured.
 */
static void
probe_tick (struct pacer *p, uint64_t n, double mean_us)
{
  if (++p->probe_tick < 2)
    return;
  p->probing = false;
  if (n >= PACER_READS_MIN) {
    p->quiet_us = quiet_from (p->quiet_us, mean_us);
    p->probes++;
  }
  /* The first probes come sooner: one alone may have been disturbed. */
  p->probe_in = p->probes >= PACER_EARLY_PROBES ? PACER_PROBE_TICKS
    : PACER_PROBE_TICKS / 4;
}

/* Does this tick's mix of requests allow pacing at all? */
static bool
shadow_reads_dominate (uint64_t n_all, uint64_t n)
{
  return n >= PACER_READS_MIN && n >= PACER_SHADOW_SHARE * n_all;
}

/* Is a probe due after this tick?  Only ticks that could be paced
 * count: holding the sweep costs it 10% of its time, for nothing where
 * it would not be paced (zipf's random reads: 41% resident after 10 s
 * against about 50% unprobed).  The first is due at once.
 */
static bool
probe_due (struct pacer *p, uint64_t n_all, uint64_t n)
{
  if (!shadow_reads_dominate (n_all, n))
    return false;
  if (p->probe_in <= 1)
    return true;
  p->probe_in--;
  return false;
}

void
pacer_tick (struct pacer *p, uint64_t n_all, uint64_t n, double mean_us,
            bool sweeping)
{
  if (p->probing) {
    probe_tick (p, n, mean_us);
    return;
  }
  if (sweeping && probe_due (p, n_all, n)) {
    p->probing = true;
    p->probe_tick = 0;
  }
  if (n == 0)
    return;                     /* no evidence either way */
  if (shadow_reads_dominate (n_all, n) && p->quiet_us > 0 &&
      mean_us > PACER_SLOWDOWN * p->quiet_us + PACER_SLOWDOWN_US) {
    p->gap_ms = p->gap_ms == 0 ? PACER_MIN_GAP_MS
      : fmin (p->gap_ms * 2, PACER_MAX_GAP_MS);
    return;
  }
  p->gap_ms *= 0.75;
  if (p->gap_ms < PACER_MIN_GAP_MS)
    p->gap_ms = 0;
}

void
pacer_idle (struct pacer *p)
{
  p->gap_ms = 0;
  p->probing = false;
}

bool
pacer_may_start (const struct pacer *p, double now, double ready_at,
                 double *wait)
{
  *wait = 0;
  if (p->probing)
    return false;
  if (p->gap_ms <= 0 || now >= ready_at)
    return true;
  *wait = ready_at - now;
  return false;
}

double
pacer_next_start (const struct pacer *p, double now, double share)
{
  return now + p->gap_ms / 1000 * share;
}
