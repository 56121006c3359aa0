/* lstm.c: LSTM forward, BPTT, Adam/RMSprop, clipping (see lstm.h). */
#include <config.h>

#include <assert.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "hot.h"
#include "lstm.h"

void
pred_lstm_config_default (struct pred_lstm_config *c)
{
  memset (c, 0, sizeof *c);
  c->vocab = 256;
  c->embed = 16;
  c->hidden = 32;
  c->bptt = 16;
  c->optimizer = PRED_LSTM_ADAM;
  c->lr = 0.005;
  c->clip = 5.0;
  c->beta1 = 0.9;
  c->beta2 = 0.999;
  c->eps = 1e-8;
  c->seed = 1;
}

const char *
pred_lstm_config_check (const struct pred_lstm_config *c)
{
  if (c->vocab < 2 || c->vocab > PRED_LSTM_MAX_VOCAB)
    return "vocabulary size must be 2 .. 4096";
  if (c->embed < 1 || c->embed > PRED_LSTM_MAX_EMBED)
    return "embedding size must be 1 .. 128";
  if (c->hidden < 1 || c->hidden > PRED_LSTM_MAX_HIDDEN)
    return "hidden size must be 1 .. 128";
  if (c->bptt < 1 || c->bptt > PRED_LSTM_MAX_BPTT)
    return "bptt length must be 1 .. 128";
  if (c->optimizer != PRED_LSTM_ADAM && c->optimizer != PRED_LSTM_RMSPROP)
    return "optimizer must be adam or rmsprop";
  if (!(c->lr > 0 && c->lr < 1))
    return "learning rate must be in (0, 1)";
  if (!(c->clip >= 0))
    return "clip must be >= 0";
  if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 > 0 && c->beta2 < 1))
    return "betas must be in [0, 1)";
  if (!(c->eps > 0))
    return "eps must be > 0";
  return NULL;
}

static void
params_views (struct pred_lstm_params *p)
{
  unsigned V = p->V, E = p->E, H = p->H;
  p->emb = p->w;
  p->wx = p->emb + (size_t) V * E;
  p->wh = p->wx + (size_t) 4 * H * E;
  p->b = p->wh + (size_t) 4 * H * H;
  p->wy = p->b + (size_t) 4 * H;
  p->by = p->wy + (size_t) V * H;
  p->semb = p->by + V;
}

int
pred_lstm_params_alloc (struct pred_lstm_params *p,
                        unsigned V, unsigned E, unsigned H)
{
  p->V = V;
  p->E = E;
  p->H = H;
  p->n = (size_t) V * E + (size_t) 4 * H * E + (size_t) 4 * H * H +
    4 * H + (size_t) V * H + V + (size_t) PRED_LSTM_SIZE_CLASSES * E;
  p->w = calloc (p->n, sizeof *p->w);
  if (!p->w)
    return -1;
  params_views (p);
  return 0;
}

void
pred_lstm_params_free (struct pred_lstm_params *p)
{
  free (p->w);
  p->w = NULL;
}

static double
urand (struct pred_rng *rng, double a)
{
  return (2.0 * pred_rng_uniform (rng) - 1.0) * a;
}

void
pred_lstm_params_init (struct pred_lstm_params *p, struct pred_rng *rng)
{
  unsigned V = p->V, E = p->E, H = p->H;
  double a = 1.0 / sqrt ((double) H);

  for (size_t i = 0; i < (size_t) V * E; i++)
    p->emb[i] = urand (rng, 0.1);
  for (size_t i = 0; i < (size_t) 4 * H * E; i++)
    p->wx[i] = urand (rng, a);
  for (size_t i = 0; i < (size_t) 4 * H * H; i++)
    p->wh[i] = urand (rng, a);
  for (unsigned i = 0; i < 4 * H; i++)
    p->b[i] = (i >= H && i < 2 * H) ? 1.0 : 0.0;       /* forget bias 1 */
  for (size_t i = 0; i < (size_t) V * H; i++)
    p->wy[i] = urand (rng, a);
  for (unsigned i = 0; i < V; i++)
    p->by[i] = 0;
  for (size_t i = 0; i < (size_t) PRED_LSTM_SIZE_CLASSES * E; i++)
    p->semb[i] = 0;
}

void
pred_lstm_params_copy (struct pred_lstm_params *dst,
                       const struct pred_lstm_params *src)
{
  memcpy (dst->w, src->w, src->n * sizeof *src->w);
}

void
pred_lstm_params_reset_token (struct pred_lstm_params *p, uint32_t tok,
                              struct pred_rng *rng)
{
  double mean = 0;
  if (tok >= p->V)
    return;
  for (unsigned j = 0; j < p->E; j++)
    p->emb[(size_t) tok * p->E + j] = rng ? urand (rng, 0.1) : 0;
  for (unsigned j = 0; j < p->H; j++)
    p->wy[(size_t) tok * p->H + j] = 0;
  /* A fresh token starts as likely as an average one. */
  for (unsigned v = 0; v < p->V; v++)
    mean += p->by[v];
  p->by[tok] = mean / p->V;
}

static inline double
sigm (double x)
{
  return 1.0 / (1.0 + exp (-x));
}

static inline double
dot (const double *restrict a, const double *restrict b, unsigned n)
{
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  unsigned i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; i++)
    s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}

/* The input embedding of in (pred_lstm_input) into e[E]. */
static inline void
embed (const struct pred_lstm_params *p, uint32_t in, double *e)
{
  uint32_t x = pred_lstm_input_token (in);
  unsigned sc = pred_lstm_input_size (in);
  const double *ex = p->emb + (size_t) (x < p->V ? x : 0) * p->E;
  const double *es = p->semb + (size_t) sc * p->E;

  for (unsigned j = 0; j < p->E; j++)
    e[j] = sc > 0 ? ex[j] + es[j] : ex[j];
}

/* The target token of input in: its size is not predicted. */
static inline uint32_t
target (const struct pred_lstm_params *p, uint32_t in)
{
  uint32_t y = pred_lstm_input_token (in);
  return y < p->V ? y : 0;
}

/* Gates (post-activation) into z[4H] for input embedding e and h. */
static inline void
gates (const struct pred_lstm_params *p, const double *e, const double *h,
       double *z)
{
  unsigned E = p->E, H = p->H;
  for (unsigned r = 0; r < 4 * H; r++)
    z[r] = p->b[r] + dot (p->wx + (size_t) r * E, e, E) +
      dot (p->wh + (size_t) r * H, h, H);
  for (unsigned r = 0; r < H; r++) {
    z[r] = sigm (z[r]);                 /* i */
    z[H + r] = sigm (z[H + r]);         /* f */
    z[2 * H + r] = tanh (z[2 * H + r]); /* g */
    z[3 * H + r] = sigm (z[3 * H + r]); /* o */
  }
}

void
pred_lstm_step (const struct pred_lstm_params *p,
                const double *h, const double *c, uint32_t tok,
                double *h2, double *c2, double *z)
{
  unsigned H = p->H;
  double e[PRED_LSTM_MAX_EMBED];

  embed (p, tok, e);
  gates (p, e, h, z);
  for (unsigned r = 0; r < H; r++) {
    double cn = z[H + r] * c[r] + z[r] * z[2 * H + r];
    c2[r] = cn;
    h2[r] = z[3 * H + r] * tanh (cn);
  }
}

void
pred_lstm_output (const struct pred_lstm_params *p, const double *h,
                  double *probs)
{
  unsigned V = p->V, H = p->H;
  double mx = -INFINITY, sum = 0;
  for (unsigned v = 0; v < V; v++) {
    double l = p->by[v] + dot (p->wy + (size_t) v * H, h, H);
    probs[v] = l;
    if (l > mx)
      mx = l;
  }
  for (unsigned v = 0; v < V; v++) {
    probs[v] = exp (probs[v] - mx);
    sum += probs[v];
  }
  for (unsigned v = 0; v < V; v++)
    probs[v] /= sum;
}

double
pred_lstm_forward (const struct pred_lstm_params *p, const uint32_t *tok,
                   unsigned T, const double *h0, const double *c0,
                   double *hT, double *cT, double *s)
{
  unsigned H = p->H;
  double *h = s, *c = s + H, *z = s + 2 * H, *probs = s + 6 * H;
  double loss = 0;

  for (unsigned r = 0; r < H; r++) {
    h[r] = h0 ? h0[r] : 0;
    c[r] = c0 ? c0[r] : 0;
  }
  for (unsigned t = 0; t < T; t++) {
    pred_lstm_step (p, h, c, tok[t], h, c, z);
    pred_lstm_output (p, h, probs);
    uint32_t y = target (p, tok[t + 1]);
    loss -= log (probs[y] > 1e-300 ? probs[y] : 1e-300);
  }
  if (hT)
    memcpy (hT, h, H * sizeof *h);
  if (cT)
    memcpy (cT, c, H * sizeof *c);
  return loss / T;
}

double
pred_lstm_loss (const struct pred_lstm_params *p, const uint32_t *tok,
                unsigned T, const double *h0, const double *c0, double *s)
{
  return pred_lstm_forward (p, tok, T, h0, c0, NULL, NULL, s);
}

/* Per-step BPTT record layout inside k->buf. */
static size_t
step_size (const struct pred_lstm_config *c)
{
  /* z (4H), c (H), h (H), tanh c (H), probs (V) */
  return 7 * (size_t) c->hidden + c->vocab;
}

int
pred_lstm_core_init (struct pred_lstm_core *k, const struct pred_lstm_config *cfg,
                     const struct pred_lstm_params *init)
{
  unsigned V = cfg->vocab, E = cfg->embed, H = cfg->hidden;

  memset (k, 0, sizeof *k);
  k->cfg = *cfg;
  pred_rng_seed (&k->rng, cfg->seed);
  if (pred_lstm_params_alloc (&k->P, V, E, H) < 0 ||
      pred_lstm_params_alloc (&k->G, V, E, H) < 0 ||
      pred_lstm_params_alloc (&k->M, V, E, H) < 0 ||
      pred_lstm_params_alloc (&k->S, V, E, H) < 0)
    goto fail;
  /* Steps plus scratch: dh, dc, dz, dy, dx, h0, c0. */
  k->buf = malloc ((step_size (cfg) * cfg->bptt + 8 * (size_t) H + V + E) *
                   sizeof *k->buf);
  if (!k->buf)
    goto fail;
  if (init)
    pred_lstm_params_copy (&k->P, init);
  else
    pred_lstm_params_init (&k->P, &k->rng);
  return 0;
 fail:
  pred_lstm_core_free (k);
  return -1;
}

void
pred_lstm_core_free (struct pred_lstm_core *k)
{
  pred_lstm_params_free (&k->P);
  pred_lstm_params_free (&k->G);
  pred_lstm_params_free (&k->M);
  pred_lstm_params_free (&k->S);
  free (k->buf);
  k->buf = NULL;
}

PRED_HOT double
pred_lstm_forward_record (struct pred_lstm_core *k, const uint32_t *tok,
                          unsigned T, const double *h0, const double *c0,
                          double *hT, double *cT, double *worst)
{
  const struct pred_lstm_params *P = &k->P;
  unsigned H = P->H;
  size_t ss = step_size (&k->cfg);
  double *scr = k->buf + ss * k->cfg.bptt;
  double *hz = scr + 6 * H, *cz = scr + 7 * H;
  double loss = 0, max = 0;

  if (T > k->cfg.bptt)
    T = k->cfg.bptt;
  k->recorded = T;
  for (unsigned r = 0; r < H; r++) {
    hz[r] = h0 ? h0[r] : 0;
    cz[r] = c0 ? c0[r] : 0;
  }

  /* Forward, keeping what backward needs. */
  for (unsigned t = 0; t < T; t++) {
    double *s = k->buf + ss * t;
    double *z = s, *c = s + 4 * H, *h = s + 5 * H, *tc = s + 6 * H,
      *probs = s + 7 * H;
    const double *hp = t ? k->buf + ss * (t - 1) + 5 * H : hz;
    const double *cp = t ? k->buf + ss * (t - 1) + 4 * H : cz;
    uint32_t y = target (P, tok[t + 1]);
    double e[PRED_LSTM_MAX_EMBED];

    embed (P, tok[t], e);
    gates (P, e, hp, z);
    for (unsigned r = 0; r < H; r++) {
      c[r] = z[H + r] * cp[r] + z[r] * z[2 * H + r];
      tc[r] = tanh (c[r]);
      h[r] = z[3 * H + r] * tc[r];
    }
    pred_lstm_output (P, h, probs);
    double l = -log (probs[y] > 1e-300 ? probs[y] : 1e-300);
    loss += l;
    if (l > max)
      max = l;
  }
  if (hT)
    memcpy (hT, k->buf + ss * (T - 1) + 5 * H, H * sizeof *hT);
  if (cT)
    memcpy (cT, k->buf + ss * (T - 1) + 4 * H, H * sizeof *cT);
  if (worst)
    *worst = max;
  return loss * (1.0 / T);
}

PRED_HOT void
pred_lstm_backward (struct pred_lstm_core *k, const uint32_t *tok)
{
  const struct pred_lstm_params *P = &k->P;
  struct pred_lstm_params *G = &k->G;
  unsigned V = P->V, E = P->E, H = P->H, T = k->recorded;
  size_t ss = step_size (&k->cfg);
  double *scr = k->buf + ss * k->cfg.bptt;
  double *dh = scr, *dc = scr + H, *dz = scr + 2 * H, *hz = scr + 6 * H,
    *cz = scr + 7 * H, *dy = scr + 8 * H, *dx = dy + V;
  double invT = 1.0 / T;

  assert (T > 0);
  memset (G->w, 0, G->n * sizeof *G->w);
  memset (dh, 0, H * sizeof *dh);
  memset (dc, 0, H * sizeof *dc);
  bool sizes_differ = false;
  for (unsigned t = 1; t < T; t++)
    sizes_differ |= pred_lstm_input_size (tok[t]) !=
      pred_lstm_input_size (tok[0]);
  for (unsigned t = T; t-- > 0;) {
    double *s = k->buf + ss * t;
    double *z = s, *h = s + 5 * H, *tc = s + 6 * H, *probs = s + 7 * H;
    const double *hp = t ? k->buf + ss * (t - 1) + 5 * H : hz;
    const double *cp = t ? k->buf + ss * (t - 1) + 4 * H : cz;
    uint32_t x = target (P, tok[t]), y = target (P, tok[t + 1]);
    unsigned sc = pred_lstm_input_size (tok[t]);
    double e[PRED_LSTM_MAX_EMBED];

    embed (P, tok[t], e);

    /* Output layer. */
    for (unsigned v = 0; v < V; v++)
      dy[v] = probs[v] * invT;
    dy[y] -= invT;
    for (unsigned v = 0; v < V; v++) {
      double g = dy[v];
      double *gw = G->wy + (size_t) v * H;
      const double *pw = P->wy + (size_t) v * H;
      G->by[v] += g;
      for (unsigned r = 0; r < H; r++) {
        gw[r] += g * h[r];
        dh[r] += g * pw[r];
      }
    }
    /* Cell. */
    for (unsigned r = 0; r < H; r++) {
      double i = z[r], f = z[H + r], g = z[2 * H + r], o = z[3 * H + r];
      double dct = dh[r] * o * (1 - tc[r] * tc[r]) + dc[r];
      double dout = dh[r] * tc[r];
      dz[r] = dct * g * i * (1 - i);
      dz[H + r] = dct * cp[r] * f * (1 - f);
      dz[2 * H + r] = dct * i * (1 - g * g);
      dz[3 * H + r] = dout * o * (1 - o);
      dc[r] = dct * f;                  /* to step t-1 */
    }
    /* Gate weights, input and recurrent gradients. */
    memset (dx, 0, E * sizeof *dx);
    memset (dh, 0, H * sizeof *dh);
    for (unsigned q = 0; q < 4 * H; q++) {
      double g = dz[q];
      double *gx = G->wx + (size_t) q * E, *gh = G->wh + (size_t) q * H;
      const double *px = P->wx + (size_t) q * E, *ph = P->wh + (size_t) q * H;
      G->b[q] += g;
      for (unsigned j = 0; j < E; j++) {
        gx[j] += g * e[j];
        dx[j] += g * px[j];
      }
      for (unsigned r = 0; r < H; r++) {
        gh[r] += g * hp[r];
        dh[r] += g * ph[r];
      }
    }
    /* e = Emb[x] + SizeEmb[sc]: both rows take dx -- but class 0 has
     * no row, and a chunk of one size teaches the rows nothing (lstm.h). */
    double *ge = G->emb + (size_t) x * E, *gs = G->semb + (size_t) sc * E;
    for (unsigned j = 0; j < E; j++) {
      ge[j] += dx[j];
      if (sc > 0 && sizes_differ)
        gs[j] += dx[j];
    }
  }
}

double
pred_lstm_forward_backward (struct pred_lstm_core *k, const uint32_t *tok,
                            unsigned T, const double *h0, const double *c0,
                            double *hT, double *cT)
{
  double loss = pred_lstm_forward_record (k, tok, T, h0, c0, hT, cT, NULL);
  pred_lstm_backward (k, tok);
  return loss;
}

PRED_HOT void
pred_lstm_apply (struct pred_lstm_core *k)
{
  struct pred_lstm_params *P = &k->P, *G = &k->G, *M = &k->M, *S = &k->S;
  const struct pred_lstm_config *c = &k->cfg;
  double norm = 0, scale = 1;
  size_t n = P->n;

  for (size_t i = 0; i < n; i++)
    norm += G->w[i] * G->w[i];
  norm = sqrt (norm);
  k->last_grad_norm = norm;
  if (!isfinite (norm))
    return;                     /* never poison the weights */
  if (c->clip > 0 && norm > c->clip)
    scale = c->clip / norm;
  k->t++;

  if (c->optimizer == PRED_LSTM_ADAM) {
    double b1 = c->beta1, b2 = c->beta2;
    double bc1 = 1 - pow (b1, (double) k->t), bc2 = 1 - pow (b2, (double) k->t);
    double lr = c->lr * sqrt (bc2) / bc1;
    for (size_t i = 0; i < n; i++) {
      double g = G->w[i] * scale;
      M->w[i] = b1 * M->w[i] + (1 - b1) * g;
      S->w[i] = b2 * S->w[i] + (1 - b2) * g * g;
      P->w[i] -= lr * M->w[i] / (sqrt (S->w[i]) + c->eps);
    }
  }
  else {
    double d = c->beta2;
    for (size_t i = 0; i < n; i++) {
      double g = G->w[i] * scale;
      S->w[i] = d * S->w[i] + (1 - d) * g * g;
      P->w[i] -= c->lr * g / (sqrt (S->w[i]) + c->eps);
    }
  }
}
