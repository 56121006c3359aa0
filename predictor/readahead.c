/* readahead.c: Linux-style on-demand readahead baseline (baselines.h). */
#include <config.h>

#include <stdlib.h>

#include "baselines.h"
#include "streams.h"

struct ra_state {
  uint32_t size;                /* current window, 0 = none */
  uint64_t start, end;          /* last window read ahead: [start, end) */
};

struct readahead {
  struct pred_model base;
  unsigned nstreams, max;
  struct ra_state *s;
};

static uint32_t
pow2_up (uint32_t x)
{
  uint32_t r = 1;
  while (r < x)
    r <<= 1;
  return r;
}

/* mm/readahead.c: get_init_ra_size */
static uint32_t
init_size (uint32_t req, uint32_t max)
{
  uint32_t n = pow2_up (req);
  if (n <= max / 32)
    n *= 4;
  else if (n <= max / 4)
    n *= 2;
  else
    n = max;
  return n > max ? max : n;
}

/* mm/readahead.c: get_next_ra_size */
static uint32_t
next_size (uint32_t cur, uint32_t max)
{
  if (cur < max / 16)
    return 4 * cur;
  if (cur <= max / 2)
    return 2 * cur;
  return max;
}

static void
ra_observe (struct pred_model *m, const struct pred_event *ev)
{
  struct readahead *r = (struct readahead *) m;
  struct ra_state *s = &r->s[ev->stream];
  bool seq = !ev->new_stream && ev->delta >= -1 && ev->delta <= 0;
  bool in_window;

  if (ev->new_stream) {
    s->size = 0;
    s->start = s->end = 0;
  }
  in_window = s->size && ev->block >= s->start && ev->block < s->end;
  if (in_window || (seq && s->size))
    s->size = next_size (s->size, r->max);
  else if (seq)
    s->size = init_size (ev->nblocks, r->max);
  else
    s->size = 0;
  if (s->size) {
    s->start = ev->block + ev->nblocks;
    s->end = s->start + s->size;
  }
}

static void
ra_predict (struct pred_model *m, const struct pred_event *ev,
            struct pred_candlist *out)
{
  struct readahead *r = (struct readahead *) m;
  struct ra_state *s = &r->s[ev->stream];
  for (uint64_t b = s->start; s->size && b < s->end; b++)
    if (!pred_candlist_add (out, b, 1.0))
      break;
}

static size_t
ra_memory (const struct pred_model *m)
{
  const struct readahead *r = (const struct readahead *) m;
  return sizeof *r + r->nstreams * sizeof *r->s;
}

static void
ra_destroy (struct pred_model *m)
{
  struct readahead *r = (struct readahead *) m;
  free (r->s);
  free (r);
}

static const struct pred_model_ops ra_ops = {
  .name = "readahead",
  .observe = ra_observe,
  .predict = ra_predict,
  .memory = ra_memory,
  .destroy = ra_destroy,
};

struct pred_model *
pred_readahead_new (unsigned nstreams, unsigned max_window)
{
  struct readahead *r = calloc (1, sizeof *r);
  if (!r)
    return NULL;
  r->base.ops = &ra_ops;
  r->nstreams = nstreams < 1 ? 1 : nstreams > PRED_STREAMS_MAX ? PRED_STREAMS_MAX : nstreams;
  r->max = max_window < 1 ? 1 : max_window;
  r->s = calloc (r->nstreams, sizeof *r->s);
  if (!r->s) {
    free (r);
    return NULL;
  }
  return &r->base;
}
