/* lstm.h: a one-layer LSTM language model over delta tokens, in plain C.
 *
 * Why it exists: the n-gram cannot see further back than 4 tokens; an
 * LSTM's cell state can (a sequential run of unknown length ending in a
 * known jump, a repeated layout with long runs).  This file is only the
 * mathematics -- forward step, truncated back-propagation through time,
 * Adam / RMSprop, gradient clipping -- with no threads and no I/O, so it
 * can be checked against finite differences in isolation.
 *
 * Network, per step t with input token x_t of size class s_t:
 *     e   = Emb[x_t] + SizeEmb[s_t]                (E; SizeEmb[0] = 0)
 *     z   = Wx e + Wh h_{t-1} + b                  (4H, gates i f g o)
 *     i,f,o = sigmoid(z_i, z_f, z_o), g = tanh(z_g)
 *     c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)
 *     p_t = softmax(Wy h_t + by)                   (V)
 * Loss of a chunk x_0..x_T (T steps): mean over t < T of -log p_t[x_{t+1}].
 * Initialisation: uniform(+-1/sqrt(H)) for Wx Wh Wy, uniform(+-0.1) for
 * Emb, zero biases except the forget gate's, which is 1; SizeEmb zero
 * (the sizes start with no say and earn one by training).
 *
 * Why the size: tokens are deltas from a request's end, the same for an
 * 8 KiB and a 32 KiB read, yet where the next request goes may depend on
 * the size (web search: 82% of 32 KiB reads are followed within 64 KiB,
 * 40% of 8 KiB ones; bench/results-predictor.md).
 *
 * All arithmetic is double precision.  Parameters live in one contiguous
 * array (pred_lstm_params.w) in the order Emb, Wx, Wh, b, Wy, by, SizeEmb,
 * all row-major: that array is what the model file stores.
 */
#ifndef NBDSHADOW_PRED_LSTM_H
#define NBDSHADOW_PRED_LSTM_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

#define PRED_LSTM_MAX_VOCAB 4096
#define PRED_LSTM_MAX_EMBED 128
#define PRED_LSTM_MAX_HIDDEN 128
#define PRED_LSTM_MAX_BPTT 128

/* An input is a token with, in its top bits, the size class of the
 * request that produced it (tokenizer.h pred_size_class).  Targets are
 * tokens alone (the size bits of tok[t + 1] are ignored): the model
 * predicts where the next request goes, not its size.  A plain token is
 * an input of class 0, and class 0 (4 KiB or less) has no embedding of
 * its own; and the size rows learn only from chunks whose inputs differ
 * in size (pred_lstm_backward leaves them out of a chunk of one size:
 * there a row would only be a second gate bias, which Adam moves at its
 * full step size -- a model with such a row stopped short of a pattern
 * it learnt without it, tests/test-predict-lstm.c known chunks).  So a
 * stream of one size trains exactly as before sizes were inputs.
 */
#define PRED_LSTM_SIZE_CLASSES 8
#define PRED_LSTM_SIZE_SHIFT 28

static inline uint32_t
pred_lstm_input (uint32_t tok, unsigned size_class)
{
  return tok | (uint32_t) (size_class & (PRED_LSTM_SIZE_CLASSES - 1))
    << PRED_LSTM_SIZE_SHIFT;
}

static inline uint32_t
pred_lstm_input_token (uint32_t in)
{
  return in & ((UINT32_C (1) << PRED_LSTM_SIZE_SHIFT) - 1);
}

static inline unsigned
pred_lstm_input_size (uint32_t in)
{
  return (in >> PRED_LSTM_SIZE_SHIFT) & (PRED_LSTM_SIZE_CLASSES - 1);
}

enum pred_lstm_optimizer { PRED_LSTM_ADAM = 0, PRED_LSTM_RMSPROP = 1 };

struct pred_lstm_config {
  unsigned vocab;               /* V, 2 .. 4096 */
  unsigned embed;               /* E, 1 .. 128 */
  unsigned hidden;              /* H, 1 .. 128 */
  unsigned bptt;                /* truncation: steps per chunk, 1 .. 128 */
  enum pred_lstm_optimizer optimizer;
  double lr;                    /* learning rate */
  double clip;                  /* max global gradient norm, 0 = none */
  double beta1, beta2, eps;     /* Adam (beta2 is RMSprop's decay) */
  uint64_t seed;
};

/* Fill *c with the defaults (V 256, E 16, H 32, bptt 16, Adam 0.005,
 * clip 5, betas 0.9 0.999, eps 1e-8, seed 1). */
void pred_lstm_config_default (struct pred_lstm_config *c);
/* NULL if valid, else a static message naming the bad field. */
const char *pred_lstm_config_check (const struct pred_lstm_config *c);

struct pred_lstm_params {
  unsigned V, E, H;
  size_t n;                     /* number of doubles in w */
  double *w;
  double *emb, *wx, *wh, *b, *wy, *by;  /* views into w */
  double *semb;                 /* SizeEmb, the last PRED_LSTM_SIZE_CLASSES
                                   x E doubles of w */
};

int pred_lstm_params_alloc (struct pred_lstm_params *p,
                            unsigned V, unsigned E, unsigned H);
void pred_lstm_params_free (struct pred_lstm_params *p);
void pred_lstm_params_init (struct pred_lstm_params *p, struct pred_rng *rng);
/* Same shapes required. */
void pred_lstm_params_copy (struct pred_lstm_params *dst,
                            const struct pred_lstm_params *src);
/* Re-initialise what concerns token tok (its embedding row, its output
 * row and bias) after the vocabulary gave its id to another delta. */
void pred_lstm_params_reset_token (struct pred_lstm_params *p, uint32_t tok,
                                   struct pred_rng *rng);

/* Inference: one step from (h, c) with input tok (pred_lstm_input) into
 * (h2, c2).
 * h2/c2 may alias h/c.  scratch: 4H doubles. */
void pred_lstm_step (const struct pred_lstm_params *p,
                     const double *h, const double *c, uint32_t tok,
                     double *h2, double *c2, double *scratch);
/* Softmax output for state h into probs[V]. */
void pred_lstm_output (const struct pred_lstm_params *p, const double *h,
                       double *probs);

/* Training state: parameters, gradient, optimizer moments, BPTT scratch.
 * The gradient is the loss's, except that SizeEmb gets none from a
 * chunk whose inputs all have one size class (see above). */
struct pred_lstm_core {
  struct pred_lstm_config cfg;
  struct pred_lstm_params P, G, M, S;   /* params, grad, 1st and 2nd moments */
  uint64_t t;                   /* optimizer steps done */
  struct pred_rng rng;
  double *buf;                  /* BPTT activations */
  unsigned recorded;            /* steps buf holds (forward_record) */
  double last_grad_norm;
};

/* init may be NULL (random init from cfg->seed) or parameters of the
 * same shape to start from.  0 ok, -1 on allocation failure. */
int pred_lstm_core_init (struct pred_lstm_core *k,
                         const struct pred_lstm_config *cfg,
                         const struct pred_lstm_params *init);
void pred_lstm_core_free (struct pred_lstm_core *k);

/* Forward and backward over tok[0..T] (T steps, 1 <= T <= bptt) from
 * state (h0, c0) (NULL = zeros).  Sets G to the gradient of the mean loss
 * (G is overwritten, not accumulated); returns the mean loss.  If hT/cT
 * are not NULL they receive the state after the T steps. */
double pred_lstm_forward_backward (struct pred_lstm_core *k,
                                   const uint32_t *tok, unsigned T,
                                   const double *h0, const double *c0,
                                   double *hT, double *cT);
/* The two halves of pred_lstm_forward_backward, for a caller that
 * decides from the forward pass whether to train at all (the trainer's
 * known chunks): forward_record runs the forward pass keeping what the
 * backward pass needs and returns the mean loss (the worst step's in
 * *worst unless NULL); backward then sets G from that record, for the
 * same tok, with no forward pass in between. */
double pred_lstm_forward_record (struct pred_lstm_core *k,
                                 const uint32_t *tok, unsigned T,
                                 const double *h0, const double *c0,
                                 double *hT, double *cT, double *worst);
void pred_lstm_backward (struct pred_lstm_core *k, const uint32_t *tok);
/* Clip G to cfg.clip and apply one optimizer step to P. */
void pred_lstm_apply (struct pred_lstm_core *k);
/* Forward only over tok[0..T] from (h0, c0) (NULL = zeros), from the
 * parameters alone (no training core): the mean loss, and the state
 * after the T steps in hT/cT unless NULL.  scratch: 6H + V doubles. */
double pred_lstm_forward (const struct pred_lstm_params *p,
                          const uint32_t *tok, unsigned T,
                          const double *h0, const double *c0,
                          double *hT, double *cT, double *scratch);
/* Mean loss of a chunk with parameters p, no gradient (for checks).
 * scratch: 6H + V doubles. */
double pred_lstm_loss (const struct pred_lstm_params *p,
                       const uint32_t *tok, unsigned T,
                       const double *h0, const double *c0, double *scratch);

#endif
