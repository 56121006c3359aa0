/* candlist.c: bounded, de-duplicated list of candidate blocks and the
 * generic sequence-model rollout (model.h). */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "model.h"

int
pred_candlist_init (struct pred_candlist *cl, unsigned cap, uint64_t limit)
{
  memset (cl, 0, sizeof *cl);
  cl->cap = cap ? cap : 1;
  cl->limit = limit;
  cl->hsize = 4;
  while (cl->hsize < 2 * cl->cap)
    cl->hsize <<= 1;
  cl->c = malloc (cl->cap * sizeof *cl->c);
  cl->hash = calloc (cl->hsize, sizeof *cl->hash);
  if (!cl->c || !cl->hash) {
    pred_candlist_free (cl);
    return -1;
  }
  cl->gen = 1;
  return 0;
}

void
pred_candlist_free (struct pred_candlist *cl)
{
  free (cl->c);
  free (cl->hash);
  cl->c = NULL;
  cl->hash = NULL;
}

void
pred_candlist_reset (struct pred_candlist *cl)
{
  if (++cl->gen == 0) {
    memset (cl->hash, 0, cl->hsize * sizeof *cl->hash);
    cl->gen = 1;
  }
  cl->n = 0;
}

static inline unsigned
slot_of (const struct pred_candlist *cl, uint64_t block)
{
  return (unsigned) ((block * UINT64_C (0x9E3779B97F4A7C15)) >> 40) & (cl->hsize - 1);
}

bool
pred_candlist_add (struct pred_candlist *cl, uint64_t block, double p)
{
  unsigned h;

  if (cl->limit && block >= cl->limit)
    return false;
  if (block >= (UINT64_C (1) << 62))
    return false;
  for (h = slot_of (cl, block); cl->hash[h].gen == cl->gen;
       h = (h + 1) & (cl->hsize - 1)) {
    if (cl->hash[h].block == block) {
      unsigned i = cl->hash[h].idx;
      if (i >= cl->n || cl->c[i].block != block)      /* moved by a sort */
        for (i = 0; i < cl->n && cl->c[i].block != block; i++)
          ;
      if (i < cl->n && p > cl->c[i].p)
        cl->c[i].p = p;
      return true;
    }
  }
  if (cl->n >= cl->cap)
    return false;
  cl->hash[h].block = block;
  cl->hash[h].idx = cl->n;
  cl->hash[h].gen = cl->gen;
  cl->c[cl->n].block = block;
  cl->c[cl->n].p = p;
  cl->n++;
  return true;
}

bool
pred_candlist_contains (const struct pred_candlist *cl, uint64_t block)
{
  for (unsigned h = slot_of (cl, block); cl->hash[h].gen == cl->gen;
       h = (h + 1) & (cl->hsize - 1))
    if (cl->hash[h].block == block)
      return true;
  return false;
}

void
pred_candlist_sort (struct pred_candlist *cl)
{
  /* Insertion sort: lists are short and mostly ordered already (path
   * probabilities decrease along a rollout).  Stable. */
  for (unsigned i = 1; i < cl->n; i++) {
    struct pred_cand x = cl->c[i];
    unsigned j = i;
    while (j > 0 && cl->c[j - 1].p < x.p) {
      cl->c[j] = cl->c[j - 1];
      j--;
    }
    cl->c[j] = x;
  }
}

void
pred_topk_dense (const double *p, unsigned n, unsigned k,
                 struct pred_tokdist *out)
{
  if (k > PRED_TOPK_MAX)
    k = PRED_TOPK_MAX;
  out->n = 0;
  for (unsigned i = 0; i < n; i++) {
    double x = p[i];
    if (out->n == k && x <= out->p[k - 1])
      continue;
    unsigned j = out->n < k ? out->n++ : k - 1;
    while (j > 0 && out->p[j - 1] < x) {
      out->p[j] = out->p[j - 1];
      out->tok[j] = out->tok[j - 1];
      j--;
    }
    out->p[j] = x;
    out->tok[j] = i;
  }
}

void
pred_rollout (struct pred_model *m, const struct pred_event *ev,
              const struct pred_rollout_cfg *cfg, struct pred_candlist *out,
              void *ctx_scratch)
{
  const struct pred_tokmodel_ops *t = m->ops->tok;
  const struct pred_vocab *v = m->vocab;
  struct pred_tokdist d;
  uint64_t ref = ev->block + ev->nblocks;
  unsigned len = ev->nblocks < cfg->max_len ? ev->nblocks : cfg->max_len;
  unsigned alts = cfg->alts < 1 ? 1 : cfg->alts;
  double path = 1.0;

  if (len < 1)
    len = 1;
  t->ctx_init (m, ev->stream, ctx_scratch);
  for (unsigned step = 0; step < cfg->depth; step++) {
    t->dist (m, ctx_scratch, alts, &d);
    if (d.n == 0)
      break;
    for (unsigned j = 0; j < d.n; j++) {
      double q = path * d.p[j];
      if (d.tok[j] == PRED_VOCAB_OOV || q < cfg->min_p)
        continue;
      uint64_t b = ref + (uint64_t) pred_vocab_delta (v, d.tok[j]);
      for (unsigned k = 0; k < len; k++)
        pred_candlist_add (out, b + k, q);
    }
    if (d.tok[0] == PRED_VOCAB_OOV)
      break;
    path *= d.p[0];
    if (path < cfg->min_p)
      break;
    ref = ref + (uint64_t) pred_vocab_delta (v, d.tok[0]) + len;
    if (step + 1 < cfg->depth)
      t->ctx_advance (m, ctx_scratch, d.tok[0]);
  }
}
