/* stride.c: per-stream constant-stride prefetcher baseline (baselines.h). */
#include <config.h>

#include <stdlib.h>

#include "baselines.h"
#include "streams.h"

struct st_state {
  bool valid;
  uint64_t last;                /* first block of the last access */
  int64_t stride;
  unsigned conf;                /* consecutive confirmations */
};

struct stride {
  struct pred_model base;
  unsigned nstreams, depth, max_len;
  struct st_state *s;
};

static void
st_observe (struct pred_model *m, const struct pred_event *ev)
{
  struct stride *r = (struct stride *) m;
  struct st_state *s = &r->s[ev->stream];

  if (ev->new_stream) {
    if (ev->parent >= 0 && (unsigned) ev->parent != ev->stream)
      *s = r->s[ev->parent];
    else if (ev->parent < 0)
      s->valid = false;
  }
  if (s->valid) {
    int64_t d = (int64_t) (ev->block - s->last);
    if (d != 0 && d == s->stride)
      s->conf++;
    else {
      s->stride = d;
      s->conf = 1;
    }
  }
  else {
    s->stride = 0;
    s->conf = 0;
  }
  s->valid = true;
  s->last = ev->block;
}

static void
st_predict (struct pred_model *m, const struct pred_event *ev,
            struct pred_candlist *out)
{
  struct stride *r = (struct stride *) m;
  struct st_state *s = &r->s[ev->stream];
  unsigned len = ev->nblocks < r->max_len ? ev->nblocks : r->max_len;

  if (s->conf < 2 || s->stride == 0)
    return;
  for (unsigned k = 1; k <= r->depth; k++) {
    uint64_t b = ev->block + (uint64_t) (s->stride * (int64_t) k);
    for (unsigned j = 0; j < len; j++)
      pred_candlist_add (out, b + j, 1.0);
  }
}

static size_t
st_memory (const struct pred_model *m)
{
  const struct stride *r = (const struct stride *) m;
  return sizeof *r + r->nstreams * sizeof *r->s;
}

static void
st_destroy (struct pred_model *m)
{
  struct stride *r = (struct stride *) m;
  free (r->s);
  free (r);
}

static const struct pred_model_ops st_ops = {
  .name = "stride",
  .observe = st_observe,
  .predict = st_predict,
  .memory = st_memory,
  .destroy = st_destroy,
};

struct pred_model *
pred_stride_new (unsigned nstreams, unsigned depth, unsigned max_len)
{
  struct stride *r = calloc (1, sizeof *r);
  if (!r)
    return NULL;
  r->base.ops = &st_ops;
  r->nstreams = nstreams < 1 ? 1 : nstreams > PRED_STREAMS_MAX ? PRED_STREAMS_MAX : nstreams;
  r->depth = depth < 1 ? 1 : depth;
  r->max_len = max_len < 1 ? 1 : max_len;
  r->s = calloc (r->nstreams, sizeof *r->s);
  if (!r->s) {
    free (r);
    return NULL;
  }
  return &r->base;
}
