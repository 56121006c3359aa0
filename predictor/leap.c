/* leap.c: Leap's majority-trend prefetcher baseline (baselines.h). */
#include <config.h>

#include <stdlib.h>

#include "baselines.h"

#define HIST 32

struct leap {
  struct pred_model base;
  unsigned max, max_len;
  int64_t hist[HIST];           /* ring of global start-to-start deltas */
  unsigned nhist, pos;
  bool have_last;
  uint64_t last;
  unsigned window;
  /* Last prefetch: base + k * trend for k in 1..n */
  uint64_t pf_base;
  int64_t pf_trend;
  unsigned pf_n;
  int64_t trend;                /* current trend, 0 = none */
};

/* Majority of the w most recent deltas, or 0. */
static int64_t
majority (const struct leap *l, unsigned w)
{
  int64_t cand = 0;
  unsigned cnt = 0, n = 0;
  for (unsigned i = 0; i < w; i++) {
    int64_t d = l->hist[(l->pos + HIST - 1 - i) % HIST];
    if (cnt == 0) {
      cand = d;
      cnt = 1;
    }
    else if (d == cand)
      cnt++;
    else
      cnt--;
  }
  for (unsigned i = 0; i < w; i++)
    n += l->hist[(l->pos + HIST - 1 - i) % HIST] == cand;
  return 2 * n > w ? cand : 0;
}

static void
leap_observe (struct pred_model *m, const struct pred_event *ev)
{
  struct leap *l = (struct leap *) m;

  /* Was the last prefetch useful? */
  if (l->pf_n && l->pf_trend) {
    int64_t off = (int64_t) (ev->block - l->pf_base);
    bool hit = off % l->pf_trend == 0 && off / l->pf_trend >= 1 &&
      off / l->pf_trend <= (int64_t) l->pf_n;
    if (hit)
      l->window = l->window * 2 > l->max ? l->max : l->window * 2;
    else
      l->window = l->window / 2 ? l->window / 2 : 1;
  }
  if (l->have_last) {
    l->hist[l->pos] = (int64_t) (ev->block - l->last);
    l->pos = (l->pos + 1) % HIST;
    if (l->nhist < HIST)
      l->nhist++;
  }
  l->have_last = true;
  l->last = ev->block;

  l->trend = 0;
  for (unsigned w = 4; w <= HIST && w <= l->nhist; w *= 2) {
    int64_t t = majority (l, w);
    if (t != 0) {
      l->trend = t;
      break;
    }
  }
}

static void
leap_predict (struct pred_model *m, const struct pred_event *ev,
              struct pred_candlist *out)
{
  struct leap *l = (struct leap *) m;
  unsigned len = ev->nblocks < l->max_len ? ev->nblocks : l->max_len;

  l->pf_n = 0;
  if (!l->trend)
    return;
  l->pf_base = ev->block;
  l->pf_trend = l->trend;
  l->pf_n = l->window;
  for (unsigned k = 1; k <= l->window; k++) {
    uint64_t b = ev->block + (uint64_t) (l->trend * (int64_t) k);
    for (unsigned j = 0; j < len; j++)
      pred_candlist_add (out, b + j, 1.0);
  }
}

static size_t
leap_memory (const struct pred_model *m)
{
  return sizeof (struct leap);
}

static void
leap_destroy (struct pred_model *m)
{
  free (m);
}

static const struct pred_model_ops leap_ops = {
  .name = "leap",
  .observe = leap_observe,
  .predict = leap_predict,
  .memory = leap_memory,
  .destroy = leap_destroy,
};

struct pred_model *
pred_leap_new (unsigned max_window, unsigned max_len)
{
  struct leap *l = calloc (1, sizeof *l);
  if (!l)
    return NULL;
  l->base.ops = &leap_ops;
  l->max = max_window < 1 ? 1 : max_window;
  l->max_len = max_len < 1 ? 1 : max_len;
  l->window = 4 < l->max ? 4 : l->max;
  return &l->base;
}
