/* hybrid.c: accuracy-weighted mixture of two sequence models. */
#include <config.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hybrid.h"
#include "streams.h"

#define SCORE_K 8
#define NBUCKET 4
#define LL_FLOOR 1e-3

/* Buckets of the fast model's confidence (its top-1 probability). */
static unsigned
bucket_of (const struct pred_tokdist *f)
{
  double c = f->n ? f->p[0] : 0;
  return c < 0.5 ? 0 : c < 0.8 ? 1 : c < 0.95 ? 2 : 3;
}

struct stored {
  bool valid;
  unsigned bucket;
  struct pred_tokdist f, s, mix;
};

struct hctx {
  unsigned step;
  double wf;                    /* fast weight at this step */
  int score_stream;             /* stream whose step-0 dists are stored, or -1 */
  void *cf, *cs;
};

struct hybrid {
  struct pred_model base;
  struct pred_hybrid_config cfg;
  struct pred_model *fast, *slow;
  struct stored *st;            /* [nstreams] */
  double acc_f, acc_s;          /* over all accesses (reported) */
  double ll_f, ll_s;            /* recent log-likelihood, all accesses */
  double bll_f[NBUCKET], bll_s[NBUCKET];        /* per confidence bucket */
  uint64_t scored, hits_f, hits_s, hits_m;
  /* Rollout scratch: our context and the two models' contexts. */
  struct hctx ctx;
  void *scratch_f, *scratch_s;
};

/* The fast model's weight, from the two models' recent mean
 * log-likelihood of what actually came next: the posterior of a
 * Bayesian mixture over about `sharpness` recent accesses, i.e.
 * 1 / (1 + exp (-sharpness * (ll_f - ll_s))).  A model that is clearly
 * better takes nearly all the weight, so its probabilities reach the
 * rollout and the prefetch threshold undiluted; models that do equally
 * well share it.  (Weights proportional to the squared accuracy, as
 * before, left a 0.6-accurate LSTM 28% of the mixture next to a
 * 0.95-accurate n-gram, and every lookahead path lost that much
 * probability against the prefetch threshold.)
 */
static double
weight_of (double ll_f, double ll_s, double sharpness)
{
  double x = sharpness * (ll_f - ll_s);

  if (x > 40)
    return 1;
  if (x < -40)
    return 0;
  return 1 / (1 + exp (-x));
}

/* Overall weight of the fast model (reported). */
static double
weight_fast (const struct hybrid *h)
{
  return weight_of (h->ll_f, h->ll_s, h->cfg.sharpness);
}

/* Weight of the fast model when its confidence falls in bucket b. */
static double
weight_fast_in (const struct hybrid *h, unsigned b)
{
  return weight_of (h->bll_f[b], h->bll_s[b], h->cfg.sharpness);
}

/* log p, with p floored: a token outside a model's top list counts as
 * very unlikely, not impossible.
 */
static double
log_floor (double p)
{
  return log (p > LL_FLOOR ? p : LL_FLOOR);
}

static double
dist_p (const struct pred_tokdist *d, uint32_t tok)
{
  for (unsigned i = 0; i < d->n; i++)
    if (d->tok[i] == tok)
      return d->p[i];
  return 0;
}

/* What the fast model's list d gave tok, as a share of a total of at
 * most 1.  A calibrated n-gram (ngram.c, calibrate) lifts estimates
 * without taking mass from the others, so its list can sum past 1;
 * scored as it is, it would win the log-likelihood comparison by
 * inflation alone and tilt the mixture towards itself.  (Witten-Bell
 * lists are doubles and sum to 1 within 1e-15, so without calibration
 * nothing changes.  The LSTM's are floats and proper: not scaled.)
 */
static double
fast_share (const struct pred_tokdist *d, uint32_t tok)
{
  double sum = 0;

  for (unsigned i = 0; i < d->n; i++)
    sum += d->p[i];
  if (sum <= 1 + 1e-9)
    return dist_p (d, tok);
  return dist_p (d, tok) / sum;
}

static void
hy_observe (struct pred_model *m, const struct pred_event *ev)
{
  struct hybrid *h = (struct hybrid *) m;
  int s = ev->new_stream ? ev->parent : ev->stream;

  if (s >= 0 && (unsigned) s < h->cfg.nstreams && h->st[s].valid) {
    struct stored *x = &h->st[s];
    double a = h->cfg.ema;
    double pf = dist_p (&x->f, ev->token), ps = dist_p (&x->s, ev->token);
    double lf = log_floor (fast_share (&x->f, ev->token));
    double ls = log_floor (ps);
    h->acc_f = (1 - a) * h->acc_f + a * pf;
    h->acc_s = (1 - a) * h->acc_s + a * ps;
    h->ll_f = (1 - a) * h->ll_f + a * lf;
    h->ll_s = (1 - a) * h->ll_s + a * ls;
    h->bll_f[x->bucket] = (1 - a) * h->bll_f[x->bucket] + a * lf;
    h->bll_s[x->bucket] = (1 - a) * h->bll_s[x->bucket] + a * ls;
    h->scored++;
    h->hits_f += x->f.n && x->f.tok[0] == ev->token;
    h->hits_s += x->s.n && x->s.tok[0] == ev->token;
    h->hits_m += x->mix.n && x->mix.tok[0] == ev->token;
    x->valid = false;
  }
  if (ev->new_stream && ev->stream < h->cfg.nstreams)
    h->st[ev->stream].valid = false;
}

static void
hy_ctx_init (struct pred_model *m, unsigned stream, void *vctx)
{
  struct hybrid *h = (struct hybrid *) m;
  struct hctx *c = vctx;
  c->step = 0;
  c->wf = weight_fast (h);
  c->score_stream = stream < h->cfg.nstreams ? (int) stream : -1;
  c->cf = h->scratch_f;
  c->cs = h->scratch_s;
  h->fast->ops->tok->ctx_init (h->fast, stream, c->cf);
  if (h->cfg.slow_depth > 0)
    h->slow->ops->tok->ctx_init (h->slow, stream, c->cs);
}

static void
hy_ctx_advance (struct pred_model *m, void *vctx, uint32_t tok)
{
  struct hybrid *h = (struct hybrid *) m;
  struct hctx *c = vctx;
  c->step++;
  h->fast->ops->tok->ctx_advance (h->fast, c->cf, tok);
  if (c->step < h->cfg.slow_depth)
    h->slow->ops->tok->ctx_advance (h->slow, c->cs, tok);
}

static void
hy_dist (struct pred_model *m, void *vctx, unsigned k, struct pred_tokdist *out)
{
  struct hybrid *h = (struct hybrid *) m;
  struct hctx *c = vctx;
  const struct pred_tokmodel_ops *F = h->fast->ops->tok, *S = h->slow->ops->tok;
  struct pred_tokdist df, ds;
  uint32_t u[2 * SCORE_K];
  unsigned nu = 0;
  double wf;

  if (c->step >= h->cfg.slow_depth) {
    F->dist (h->fast, c->cf, k, out);
    return;
  }
  F->dist (h->fast, c->cf, SCORE_K, &df);
  S->dist (h->slow, c->cs, SCORE_K, &ds);
  wf = c->wf = weight_fast_in (h, bucket_of (&df));
  for (unsigned i = 0; i < df.n; i++)
    u[nu++] = df.tok[i];
  for (unsigned i = 0; i < ds.n; i++) {
    unsigned j;
    for (j = 0; j < df.n && df.tok[j] != ds.tok[i]; j++)
      ;
    if (j == df.n)
      u[nu++] = ds.tok[i];
  }
  if (k > PRED_TOPK_MAX)
    k = PRED_TOPK_MAX;
  out->n = 0;
  for (unsigned i = 0; i < nu; i++) {
    /* The fast model's probability is in df for its own top tokens. */
    double pf = i < df.n ? df.p[i] : F->prob (h->fast, c->cf, u[i]);
    double p = wf * pf + (1 - wf) * S->prob (h->slow, c->cs, u[i]);
    if (out->n == k && p <= out->p[k - 1])
      continue;
    unsigned j = out->n < k ? out->n++ : k - 1;
    while (j > 0 && out->p[j - 1] < p) {
      out->p[j] = out->p[j - 1];
      out->tok[j] = out->tok[j - 1];
      j--;
    }
    out->p[j] = p;
    out->tok[j] = u[i];
  }
  if (c->step == 0 && c->score_stream >= 0) {
    struct stored *x = &h->st[c->score_stream];
    x->f = df;
    x->s = ds;
    x->mix = *out;
    x->bucket = bucket_of (&df);
    x->valid = true;
  }
}

static double
hy_prob (struct pred_model *m, void *vctx, uint32_t tok)
{
  struct hybrid *h = (struct hybrid *) m;
  struct hctx *c = vctx;
  double pf = h->fast->ops->tok->prob (h->fast, c->cf, tok);
  if (c->step >= h->cfg.slow_depth)
    return pf;
  /* c->wf was set by dist on this context. */
  return c->wf * pf + (1 - c->wf) * h->slow->ops->tok->prob (h->slow, c->cs, tok);
}

static void
hy_predict (struct pred_model *m, const struct pred_event *ev,
            struct pred_candlist *out)
{
  struct hybrid *h = (struct hybrid *) m;
  pred_rollout (m, ev, &h->cfg.rollout, out, &h->ctx);
  /* And the fast model's own path: where the mixture's first tokens
   * differ from the n-gram's, the two rollouts follow different paths,
   * and the n-gram's would be lost.  A block on both keeps the higher
   * probability.
   */
  pred_rollout (h->fast, ev, &h->cfg.rollout, out, h->scratch_f);
}

static size_t
hy_memory (const struct pred_model *m)
{
  const struct hybrid *h = (const struct hybrid *) m;
  return sizeof *h + h->cfg.nstreams * sizeof *h->st +
    h->fast->ops->tok->ctx_size + h->slow->ops->tok->ctx_size;
}

static void
hy_destroy (struct pred_model *m)
{
  struct hybrid *h = (struct hybrid *) m;
  free (h->st);
  free (h->scratch_f);
  free (h->scratch_s);
  free (h);
}

static const struct pred_tokmodel_ops hy_tok_ops = {
  .ctx_size = sizeof (struct hctx),
  .ctx_init = hy_ctx_init,
  .ctx_advance = hy_ctx_advance,
  .dist = hy_dist,
  .prob = hy_prob,
};

static const struct pred_model_ops hy_ops = {
  .name = "hybrid",
  .observe = hy_observe,
  .predict = hy_predict,
  .memory = hy_memory,
  .destroy = hy_destroy,
  .tok = &hy_tok_ops,
};

struct pred_model *
pred_hybrid_new (const struct pred_hybrid_config *cfg,
                 struct pred_model *fast, struct pred_model *slow)
{
  struct hybrid *h;

  if (!fast->ops->tok || !slow->ops->tok || fast->vocab != slow->vocab)
    return NULL;
  h = calloc (1, sizeof *h);
  if (!h)
    return NULL;
  h->base.ops = &hy_ops;
  h->base.vocab = fast->vocab;
  h->cfg = *cfg;
  if (h->cfg.nstreams < 1)
    h->cfg.nstreams = 1;
  if (h->cfg.nstreams > PRED_STREAMS_MAX)
    h->cfg.nstreams = PRED_STREAMS_MAX;
  h->fast = fast;
  h->slow = slow;
  h->acc_f = h->acc_s = 0.01;
  h->ll_f = h->ll_s = log (0.01);       /* no evidence: equal weights */
  for (unsigned b = 0; b < NBUCKET; b++)
    h->bll_f[b] = h->bll_s[b] = log (0.01);
  h->st = calloc (h->cfg.nstreams, sizeof *h->st);
  h->scratch_f = calloc (1, fast->ops->tok->ctx_size);
  h->scratch_s = calloc (1, slow->ops->tok->ctx_size);
  if (!h->st || !h->scratch_f || !h->scratch_s) {
    hy_destroy (&h->base);
    return NULL;
  }
  return &h->base;
}

void
pred_hybrid_state (const struct pred_model *m, struct pred_hybrid_state *st)
{
  const struct hybrid *h = (const struct hybrid *) m;
  st->acc_fast = h->acc_f;
  st->acc_slow = h->acc_s;
  st->w_fast = weight_fast (h);
  st->w_slow = 1 - st->w_fast;
  st->scored = h->scored;
  st->hits_fast = h->hits_f;
  st->hits_slow = h->hits_s;
  st->hits_mix = h->hits_m;
  st->depth = h->cfg.rollout.depth;
}
