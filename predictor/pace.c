/* pace.c: per-stream access pace (see pace.h). */
#include <config.h>

#include <errno.h>
#include <stdlib.h>

#include "pace.h"

#define GAP_MAX_US 1000000u

int
pred_pace_init (struct pred_pace *pc, unsigned nstreams)
{
  pc->nstreams = nstreams;
  pc->s = calloc (nstreams, sizeof *pc->s);
  return pc->s ? 0 : -1;
}

void
pred_pace_free (struct pred_pace *pc)
{
  free (pc->s);
  pc->s = NULL;
}

void
pred_pace_note (struct pred_pace *pc, unsigned stream, bool new_stream,
                uint64_t time_us)
{
  struct pred_pace_stream *s;

  if (stream >= pc->nstreams)
    return;
  s = &pc->s[stream];
  if (new_stream) {
    s->ngaps = s->next = 0;
    s->seen = false;
  }
  if (s->seen) {
    /* Times come from one clock but through a ring of several threads:
     * an access may carry an earlier stamp than the one before it. */
    uint64_t d = time_us > s->last_us ? time_us - s->last_us : 0;

    s->gap_us[s->next] = d > GAP_MAX_US ? GAP_MAX_US : (uint32_t) d;
    s->next = (s->next + 1) % PRED_PACE_GAPS;
    if (s->ngaps < PRED_PACE_GAPS)
      s->ngaps++;
  }
  s->last_us = time_us;
  s->seen = true;
}

uint32_t
pred_pace_gap (const struct pred_pace *pc, unsigned stream)
{
  const struct pred_pace_stream *s;
  uint32_t g[PRED_PACE_GAPS], m;
  unsigned n, i, j;

  if (stream >= pc->nstreams)
    return 0;
  s = &pc->s[stream];
  n = s->ngaps;
  if (n < 2)
    return 0;
  for (i = 0; i < n; i++) {     /* insertion sort of at most four */
    uint32_t x = s->gap_us[i];

    for (j = i; j > 0 && g[j - 1] > x; j--)
      g[j] = g[j - 1];
    g[j] = x;
  }
  m = n % 2 ? g[n / 2] : (uint32_t) (((uint64_t) g[n / 2 - 1] + g[n / 2]) / 2);
  return m ? m : 1;
}

unsigned
pred_pace_lookahead (const struct pred_pace *pc, unsigned stream,
                     uint64_t horizon_us, unsigned lo, unsigned hi)
{
  uint32_t gap = pred_pace_gap (pc, stream);
  uint64_t n;

  if (gap == 0)
    return hi;
  n = (horizon_us + gap - 1) / gap;
  if (n < lo)
    return lo;
  return n > hi ? hi : (unsigned) n;
}
