/* lstm-model.c: per-stream LSTM inference as a sequence model. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "lstm-infer.h"
#include "lstm-model.h"
#include "streams.h"
#include "tokenizer.h"

_Static_assert (PRED_SIZE_CLASSES == PRED_LSTM_SIZE_CLASSES,
                "the LSTM has an embedding row per request size class");

struct lctx {
  float h[PRED_LSTM_MAX_HIDDEN], c[PRED_LSTM_MAX_HIDDEN];
  unsigned size_class;          /* a rollout's steps: the stream's last */
  uint64_t serial;              /* == model's probs_serial if probs are ours */
};

struct lstm_model {
  struct pred_model base;
  struct pred_lstm_model_config cfg;
  const struct pred_lstm_infer *F;      /* current snapshot (trainer-owned) */
  struct pred_lstm_trainer *trainer;
  unsigned nstreams, H, V;
  float *state;                 /* [nstreams][2H]: h then c */
  uint8_t *size_class;          /* [nstreams]: of the last access */
  float *probs;                 /* [V] */
  float *z;                     /* [4H] */
  uint64_t probs_serial, serial_next;
  struct lctx scratch[2];
};

static void
refresh (struct lstm_model *L)
{
  const struct pred_lstm_infer *f = pred_lstm_trainer_fetch (L->trainer);
  if (f) {
    L->F = f;
    L->probs_serial = 0;
  }
}

static void
lm_observe (struct pred_model *m, const struct pred_event *ev)
{
  struct lstm_model *L = (struct lstm_model *) m;
  unsigned H = L->H;
  float *st = L->state + (size_t) ev->stream * 2 * H;

  if (ev->new_stream) {
    if (ev->parent >= 0 && (unsigned) ev->parent != ev->stream)
      memcpy (st, L->state + (size_t) ev->parent * 2 * H, 2 * H * sizeof *st);
    else if (ev->parent < 0)
      memset (st, 0, 2 * H * sizeof *st);
  }
  unsigned sc = L->cfg.size_input ? ev->size_class : 0;
  uint32_t in = pred_lstm_input (ev->token, sc);

  L->size_class[ev->stream] = (uint8_t) sc;
  pred_lstm_infer_step (L->F, st, st + H, in, st, st + H, L->z);
  L->probs_serial = 0;
  if (L->cfg.learn)
    pred_lstm_trainer_feed (L->trainer, ev->stream, ev->new_stream, ev->parent,
                            in, ev->recycled);
  refresh (L);
}

static void
lm_ctx_init (struct pred_model *m, unsigned stream, void *vctx)
{
  struct lstm_model *L = (struct lstm_model *) m;
  struct lctx *c = vctx;
  const float *st = L->state + (size_t) stream * 2 * L->H;
  memcpy (c->h, st, L->H * sizeof (float));
  memcpy (c->c, st + L->H, L->H * sizeof (float));
  c->size_class = L->size_class[stream];
  c->serial = 0;
}

static void
lm_ctx_advance (struct pred_model *m, void *vctx, uint32_t tok)
{
  struct lstm_model *L = (struct lstm_model *) m;
  struct lctx *c = vctx;
  /* The next request's size is not known: most are as large as the
   * stream's last. */
  pred_lstm_infer_step (L->F, c->h, c->c, pred_lstm_input (tok, c->size_class),
                        c->h, c->c, L->z);
  c->serial = 0;
}

static void
ensure_probs (struct lstm_model *L, struct lctx *c)
{
  if (c->serial != 0 && c->serial == L->probs_serial)
    return;
  pred_lstm_infer_output (L->F, c->h, L->probs);
  c->serial = ++L->serial_next;
  L->probs_serial = c->serial;
}

static void
lm_dist (struct pred_model *m, void *vctx, unsigned k, struct pred_tokdist *out)
{
  struct lstm_model *L = (struct lstm_model *) m;
  unsigned n = m->vocab->n;     /* only ids handed out can be predicted */

  ensure_probs (L, vctx);
  if (k > PRED_TOPK_MAX)
    k = PRED_TOPK_MAX;
  out->n = 0;
  for (unsigned i = 0; i < n; i++) {
    double x = L->probs[i];
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

static double
lm_prob (struct pred_model *m, void *vctx, uint32_t tok)
{
  struct lstm_model *L = (struct lstm_model *) m;
  ensure_probs (L, vctx);
  return tok < L->V ? L->probs[tok] : 0;
}

static void
lm_predict (struct pred_model *m, const struct pred_event *ev,
            struct pred_candlist *out)
{
  struct lstm_model *L = (struct lstm_model *) m;
  pred_rollout (m, ev, &L->cfg.rollout, out, L->scratch);
}

static size_t
lm_memory (const struct pred_model *m)
{
  const struct lstm_model *L = (const struct lstm_model *) m;
  return sizeof *L +
    ((size_t) L->nstreams * 2 * L->H + L->V + 4 * L->H) * sizeof (float) +
    L->nstreams * sizeof *L->size_class +
    pred_lstm_trainer_memory (L->trainer);
}

static void
lm_destroy (struct pred_model *m)
{
  struct lstm_model *L = (struct lstm_model *) m;
  pred_lstm_trainer_free (L->trainer);
  free (L->state);
  free (L->size_class);
  free (L->probs);
  free (L->z);
  free (L);
}

static const struct pred_tokmodel_ops lm_tok_ops = {
  .ctx_size = sizeof (struct lctx),
  .ctx_init = lm_ctx_init,
  .ctx_advance = lm_ctx_advance,
  .dist = lm_dist,
  .prob = lm_prob,
};

static const struct pred_model_ops lm_ops = {
  .name = "lstm",
  .observe = lm_observe,
  .predict = lm_predict,
  .memory = lm_memory,
  .destroy = lm_destroy,
  .tok = &lm_tok_ops,
};

struct pred_model *
pred_lstm_model_new (const struct pred_lstm_model_config *cfg,
                     const struct pred_vocab *vocab,
                     const struct pred_lstm_params *init)
{
  struct lstm_model *L;
  const struct pred_lstm_config *lc = &cfg->trainer.lstm;

  if (pred_lstm_config_check (lc) || lc->vocab != vocab->cap)
    return NULL;
  if (init && (init->V != lc->vocab || init->E != lc->embed || init->H != lc->hidden))
    return NULL;
  L = calloc (1, sizeof *L);
  if (!L)
    return NULL;
  L->base.ops = &lm_ops;
  L->base.vocab = vocab;
  L->cfg = *cfg;
  L->H = lc->hidden;
  L->V = lc->vocab;
  L->nstreams = cfg->trainer.nstreams < 1 ? 1
    : cfg->trainer.nstreams > PRED_STREAMS_MAX ? PRED_STREAMS_MAX
    : cfg->trainer.nstreams;
  L->cfg.trainer.nstreams = L->nstreams;
  L->trainer = pred_lstm_trainer_new (&L->cfg.trainer, init);
  L->state = calloc ((size_t) L->nstreams * 2 * L->H, sizeof (float));
  L->size_class = calloc (L->nstreams, sizeof *L->size_class);
  L->probs = calloc (lc->vocab, sizeof (float));
  L->z = calloc (4 * L->H, sizeof (float));
  if (!L->trainer || !L->state || !L->size_class || !L->probs || !L->z) {
    lm_destroy (&L->base);
    return NULL;
  }
  L->F = pred_lstm_trainer_fetch (L->trainer);
  return &L->base;
}

struct pred_lstm_trainer *
pred_lstm_model_trainer (struct pred_model *m)
{
  return ((struct lstm_model *) m)->trainer;
}

const struct pred_lstm_infer *
pred_lstm_model_snapshot (const struct pred_model *m)
{
  return ((const struct lstm_model *) m)->F;
}

void
pred_lstm_model_set_learn (struct pred_model *m, bool learn)
{
  ((struct lstm_model *) m)->cfg.learn = learn;
}
