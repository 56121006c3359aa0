/* lstm-infer.c: float32 LSTM inference kernels (see lstm-infer.h). */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "lstm-infer.h"

/* Run-time selection of an AVX2+FMA build of the hot kernels. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
  defined(__has_attribute)
#if __has_attribute (target_clones)
#define HOT __attribute__ ((target_clones ("arch=x86-64-v3", "default")))
#endif
#endif
#ifndef HOT
#define HOT
#endif

int
pred_lstm_infer_alloc (struct pred_lstm_infer *f, unsigned V, unsigned E,
                       unsigned H)
{
  memset (f, 0, sizeof *f);
  f->V = V;
  f->E = E;
  f->H = H;
  f->xproj = calloc ((size_t) V * 4 * H, sizeof (float));
  f->wht = calloc ((size_t) H * 4 * H, sizeof (float));
  f->wyt = calloc ((size_t) H * V, sizeof (float));
  f->by = calloc (V, sizeof (float));
  if (!f->xproj || !f->wht || !f->wyt || !f->by) {
    pred_lstm_infer_free (f);
    return -1;
  }
  return 0;
}

void
pred_lstm_infer_free (struct pred_lstm_infer *f)
{
  free (f->xproj);
  free (f->wht);
  free (f->wyt);
  free (f->by);
  f->xproj = f->wht = f->wyt = f->by = NULL;
}

size_t
pred_lstm_infer_memory (const struct pred_lstm_infer *f)
{
  return sizeof *f + ((size_t) f->V * 4 * f->H + (size_t) f->H * 4 * f->H +
                      (size_t) f->H * f->V + f->V) * sizeof (float);
}

void
pred_lstm_infer_build (struct pred_lstm_infer *f, const struct pred_lstm_params *p)
{
  unsigned V = p->V, E = p->E, H = p->H, G = 4 * H;

  for (unsigned v = 0; v < V; v++) {
    const double *e = p->emb + (size_t) v * E;
    float *x = f->xproj + (size_t) v * G;
    for (unsigned r = 0; r < G; r++) {
      const double *w = p->wx + (size_t) r * E;
      double s = p->b[r];
      for (unsigned j = 0; j < E; j++)
        s += w[j] * e[j];
      x[r] = (float) s;
    }
  }
  for (unsigned r = 0; r < G; r++)
    for (unsigned j = 0; j < H; j++)
      f->wht[(size_t) j * G + r] = (float) p->wh[(size_t) r * H + j];
  for (unsigned v = 0; v < V; v++)
    for (unsigned j = 0; j < H; j++)
      f->wyt[(size_t) j * V + v] = (float) p->wy[(size_t) v * H + j];
  for (unsigned v = 0; v < V; v++)
    f->by[v] = (float) p->by[v];
}

/* exp(x) for an array, x clamped to [-87, 88].  Cody-Waite reduction to
 * 2^n * exp(r), |r| <= ln2/2, degree-6 polynomial. */
static inline float
exp_one (float x)
{
  union { float f; int32_t i; } u;
  x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
  float t = x * 1.44269504f;
  int32_t n = (int32_t) (t + (t >= 0 ? 0.5f : -0.5f));
  float r = x - (float) n * 0.693145752f;
  r = r - (float) n * 1.42860677e-06f;
  float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f + r *
            (0.0416666679f + r * (0.00833333377f + r * 0.00138888892f)))));
  u.i = (n + 127) << 23;
  return p * u.f;
}

HOT static void
vexp (float *restrict x, unsigned n)
{
  for (unsigned i = 0; i < n; i++)
    x[i] = exp_one (x[i]);
}

HOT void
pred_lstm_infer_step (const struct pred_lstm_infer *f, const float *h,
                      const float *c, uint32_t tok, float *h2, float *c2,
                      float *restrict z)
{
  unsigned H = f->H, G = 4 * H;
  if (tok >= f->V)
    tok = 0;
  memcpy (z, f->xproj + (size_t) tok * G, G * sizeof *z);
  for (unsigned j = 0; j < H; j++) {
    const float *restrict w = f->wht + (size_t) j * G;
    float hj = h[j];
    for (unsigned r = 0; r < G; r++)
      z[r] += w[r] * hj;
  }
  /* sigmoid(x) = 1 / (1 + exp(-x)); tanh(x) = 2 sigmoid(2x) - 1 */
  for (unsigned r = 0; r < G; r++)
    z[r] = (r >= 2 * H && r < 3 * H) ? -2.0f * z[r] : -z[r];
  vexp (z, G);
  for (unsigned r = 0; r < G; r++)
    z[r] = 1.0f / (1.0f + z[r]);
  for (unsigned r = 2 * H; r < 3 * H; r++)
    z[r] = 2.0f * z[r] - 1.0f;
  /* Cell and hidden state; tanh(c) through the same exp. */
  float tc[PRED_LSTM_MAX_HIDDEN];
  for (unsigned r = 0; r < H; r++) {
    float cn = z[H + r] * c[r] + z[r] * z[2 * H + r];
    c2[r] = cn;
    tc[r] = -2.0f * cn;
  }
  vexp (tc, H);
  for (unsigned r = 0; r < H; r++)
    h2[r] = z[3 * H + r] * (2.0f / (1.0f + tc[r]) - 1.0f);
}

HOT void
pred_lstm_infer_output (const struct pred_lstm_infer *f, const float *h,
                        float *restrict probs)
{
  unsigned V = f->V, H = f->H;
  float mx, sum = 0;

  memcpy (probs, f->by, V * sizeof *probs);
  for (unsigned j = 0; j < H; j++) {
    const float *restrict w = f->wyt + (size_t) j * V;
    float hj = h[j];
    for (unsigned v = 0; v < V; v++)
      probs[v] += w[v] * hj;
  }
  mx = probs[0];
  for (unsigned v = 1; v < V; v++)
    mx = probs[v] > mx ? probs[v] : mx;
  for (unsigned v = 0; v < V; v++)
    probs[v] -= mx;
  vexp (probs, V);
  for (unsigned v = 0; v < V; v++)
    sum += probs[v];
  float inv = 1.0f / sum;
  for (unsigned v = 0; v < V; v++)
    probs[v] *= inv;
}
