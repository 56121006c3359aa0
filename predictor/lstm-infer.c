/* lstm-infer.c: float32 LSTM inference kernels (see lstm-infer.h). */
#include <config.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hot.h"
#include "lstm-infer.h"

#define HOT PRED_HOT

int
pred_lstm_infer_alloc (struct pred_lstm_infer *f, unsigned V, unsigned E,
                       unsigned H)
{
  memset (f, 0, sizeof *f);
  f->V = V;
  f->E = E;
  f->H = H;
  f->xproj = calloc ((size_t) V * 4 * H, sizeof (float));
  f->sproj = calloc ((size_t) PRED_LSTM_SIZE_CLASSES * 4 * H, sizeof (float));
  f->wht = calloc ((size_t) H * 4 * H, sizeof (float));
  f->wyt = calloc ((size_t) H * V, sizeof (float));
  f->by = calloc (V, sizeof (float));
  if (!f->xproj || !f->sproj || !f->wht || !f->wyt || !f->by) {
    pred_lstm_infer_free (f);
    return -1;
  }
  return 0;
}

void
pred_lstm_infer_free (struct pred_lstm_infer *f)
{
  free (f->xproj);
  free (f->sproj);
  free (f->wht);
  free (f->wyt);
  free (f->by);
  f->xproj = f->sproj = f->wht = f->wyt = f->by = NULL;
}

size_t
pred_lstm_infer_memory (const struct pred_lstm_infer *f)
{
  return sizeof *f + ((size_t) (f->V + PRED_LSTM_SIZE_CLASSES) * 4 * f->H +
                      (size_t) f->H * 4 * f->H +
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
  /* Class 0 has no embedding (lstm.h): its row stays zero. */
  for (unsigned k = 1; k < PRED_LSTM_SIZE_CLASSES; k++) {
    const double *e = p->semb + (size_t) k * E;
    float *x = f->sproj + (size_t) k * G;
    for (unsigned r = 0; r < G; r++) {
      const double *w = p->wx + (size_t) r * E;
      double s = 0;
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

/* exp(x), x clamped to [-87, 88]: Cody-Waite reduction to 2^n exp(r),
 * |r| <= ln2/2, degree-6 polynomial.  Branch-free (rounding by the
 * 1.5 * 2^23 trick) so that loops over it vectorise. */
static inline float
exp_one (float x)
{
  union { int32_t i; float f; } u;
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  float fn = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
  float r = x - fn * 0.693145752f;
  r = r - fn * 1.42860677e-06f;
  float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f + r *
            (0.0416666679f + r * (0.00833333377f + r * 0.00138888892f)))));
  u.i = ((int32_t) fn + 127) << 23;
  return p * u.f;
}

HOT static void
vexp (float *restrict x, unsigned n)
{
  for (unsigned i = 0; i < n; i++)
    x[i] = exp_one (x[i]);
}

/* y[0..n) = b[0..n) + sum_j W[j][0..n) x[j], W row-major [m][n] (the
 * transpose of the usual layout).  Blocks of 32 outputs stay in
 * accumulators across j, so each weight is loaded once and no partial
 * result goes back to memory; the order of additions is fixed, so the
 * result does not depend on how the compiler vectorises. */
#define BLK 32
typedef float v8f __attribute__ ((vector_size (32)));
typedef float v8fu __attribute__ ((vector_size (32), aligned (4)));

static inline void
matvec_t (float *restrict y, const float *restrict b, const float *restrict W,
          const float *restrict x, unsigned m, unsigned n)
{
  unsigned i = 0;
  for (; i + BLK <= n; i += BLK) {
    v8f a0 = *(const v8fu *) (b + i), a1 = *(const v8fu *) (b + i + 8);
    v8f a2 = *(const v8fu *) (b + i + 16), a3 = *(const v8fu *) (b + i + 24);
    for (unsigned j = 0; j < m; j++) {
      const float *w = W + (size_t) j * n + i;
      v8f xj = (v8f) { 0 } + x[j];
      a0 += *(const v8fu *) w * xj;
      a1 += *(const v8fu *) (w + 8) * xj;
      a2 += *(const v8fu *) (w + 16) * xj;
      a3 += *(const v8fu *) (w + 24) * xj;
    }
    *(v8fu *) (y + i) = a0;
    *(v8fu *) (y + i + 8) = a1;
    *(v8fu *) (y + i + 16) = a2;
    *(v8fu *) (y + i + 24) = a3;
  }
  for (; i < n; i++) {
    float a = b[i];
    for (unsigned j = 0; j < m; j++)
      a += W[(size_t) j * n + i] * x[j];
    y[i] = a;
  }
}

HOT void
pred_lstm_infer_step (const struct pred_lstm_infer *f, const float *h,
                      const float *c, uint32_t tok, float *h2, float *c2,
                      float *restrict z)
{
  unsigned H = f->H, G = 4 * H;
  float hin[PRED_LSTM_MAX_HIDDEN], tc[PRED_LSTM_MAX_HIDDEN];
  float xin[4 * PRED_LSTM_MAX_HIDDEN];
  uint32_t x = pred_lstm_input_token (tok);
  unsigned sc = pred_lstm_input_size (tok);
  const float *xp = f->xproj + (size_t) (x < f->V ? x : 0) * G;

  /* The input half of the gates: the token's and its size's (class 0
   * has none: its row is zero, no need to add it). */
  if (sc > 0) {
    const float *sp = f->sproj + (size_t) sc * G;
    for (unsigned r = 0; r < G; r++)
      xin[r] = xp[r] + sp[r];
    xp = xin;
  }
  memcpy (hin, h, H * sizeof *hin);
  matvec_t (z, xp, f->wht, hin, H, G);
  /* sigmoid(x) = 1 / (1 + exp(-x)); tanh(x) = 2 sigmoid(2x) - 1 */
  for (unsigned r = 0; r < G; r++)
    z[r] = (r >= 2 * H && r < 3 * H) ? -2.0f * z[r] : -z[r];
  vexp (z, G);
  for (unsigned r = 0; r < G; r++)
    z[r] = 1.0f / (1.0f + z[r]);
  for (unsigned r = 2 * H; r < 3 * H; r++)
    z[r] = 2.0f * z[r] - 1.0f;
  /* Cell and hidden state; tanh(c) through the same exp. */
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
  unsigned V = f->V, H = f->H, v;
  float hin[PRED_LSTM_MAX_HIDDEN], part[8], mx, sum;

  memcpy (hin, h, H * sizeof *hin);
  matvec_t (probs, f->by, f->wyt, hin, H, V);
  /* Max and sum by 8 partial results: vectorisable, fixed order. */
  for (unsigned k = 0; k < 8; k++)
    part[k] = -INFINITY;
  for (v = 0; v + 8 <= V; v += 8)
    for (unsigned k = 0; k < 8; k++)
      part[k] = probs[v + k] > part[k] ? probs[v + k] : part[k];
  mx = part[0];
  for (unsigned k = 1; k < 8; k++)
    mx = part[k] > mx ? part[k] : mx;
  for (; v < V; v++)
    mx = probs[v] > mx ? probs[v] : mx;
  for (v = 0; v < V; v++)
    probs[v] -= mx;
  vexp (probs, V);
  for (unsigned k = 0; k < 8; k++)
    part[k] = 0;
  for (v = 0; v + 8 <= V; v += 8)
    for (unsigned k = 0; k < 8; k++)
      part[k] += probs[v + k];
  sum = ((part[0] + part[1]) + (part[2] + part[3])) +
    ((part[4] + part[5]) + (part[6] + part[7]));
  for (; v < V; v++)
    sum += probs[v];
  float inv = 1.0f / sum;
  for (v = 0; v < V; v++)
    probs[v] *= inv;
}
