/* oracle.c: the model that knows the future first touches (baselines.h).
 * It is the upper bound every policy is compared with. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "baselines.h"

struct oracle {
  struct pred_model base;
  uint64_t *future, *when;
  size_t n, cur;
  unsigned lookahead;
};

static void
or_observe (struct pred_model *m, const struct pred_event *ev)
{
  struct oracle *o = (struct oracle *) m;
  while (o->cur < o->n && o->when[o->cur] <= ev->seq)
    o->cur++;
}

static void
or_predict (struct pred_model *m, const struct pred_event *ev,
            struct pred_candlist *out)
{
  struct oracle *o = (struct oracle *) m;
  for (size_t i = o->cur; i < o->n && i < o->cur + o->lookahead; i++)
    if (!pred_candlist_add (out, o->future[i], 1.0))
      break;
}

static size_t
or_memory (const struct pred_model *m)
{
  const struct oracle *o = (const struct oracle *) m;
  return sizeof *o + o->n * 2 * sizeof (uint64_t);
}

static void
or_destroy (struct pred_model *m)
{
  struct oracle *o = (struct oracle *) m;
  free (o->future);
  free (o->when);
  free (o);
}

static const struct pred_model_ops or_ops = {
  .name = "oracle",
  .observe = or_observe,
  .predict = or_predict,
  .memory = or_memory,
  .destroy = or_destroy,
};

struct pred_model *
pred_oracle_new (const uint64_t *future, const uint64_t *when, size_t n,
                 unsigned lookahead)
{
  struct oracle *o = calloc (1, sizeof *o);
  if (!o)
    return NULL;
  o->base.ops = &or_ops;
  o->n = n;
  o->lookahead = lookahead < 1 ? 1 : lookahead;
  o->future = malloc ((n ? n : 1) * sizeof *o->future);
  o->when = malloc ((n ? n : 1) * sizeof *o->when);
  if (!o->future || !o->when) {
    or_destroy (&o->base);
    return NULL;
  }
  if (n) {
    memcpy (o->future, future, n * sizeof *future);
    memcpy (o->when, when, n * sizeof *when);
  }
  return &o->base;
}
