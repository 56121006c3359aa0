/* nbdshadow: the background sweep yields to the reads the shadow serves
 * (the why is in pacer.h).
 */
#include <config.h>

#include <math.h>

#include "pacer.h"

/* A probe: the first tick drains, the second is measured. */
static void
probe_tick (struct pacer *p, uint64_t n, double mean_us)
{
  if (p->probe_in-- == PACER_PROBE_TICKS)
    return;
  p->probing = false;
  if (n >= PACER_READS_MIN)
    p->quiet_us = mean_us;
}

void
pacer_tick (struct pacer *p, uint64_t n, double mean_us, bool sweeping)
{
  if (n > 0)
    p->last_us = mean_us;
  if (p->probing) {
    probe_tick (p, n, mean_us);
    return;
  }
  if (p->probe_in == 0 || --p->probe_in == 0) {
    p->probing = sweeping;
    p->probe_in = PACER_PROBE_TICKS;
  }
  if (n >= PACER_READS_MIN && p->quiet_us > 0 &&
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
  p->probe_in = 0;
}

bool
pacer_may_start (const struct pacer *p, double now, double last_start,
                 double *wait)
{
  double ready;

  *wait = 0;
  if (p->probing)
    return false;
  if (p->gap_ms <= 0)
    return true;
  ready = last_start + p->gap_ms / 1000;
  if (now >= ready)
    return true;
  *wait = ready - now;
  return false;
}
