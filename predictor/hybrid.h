/* hybrid.h: mixture of a fast and a slow sequence model (n-gram + LSTM).
 *
 * Why it exists: the n-gram learns instantly but sees 4 tokens back; the
 * LSTM sees further but learns slowly and costs more.  The hybrid's next
 * token distribution is
 *     P(x) = wf * Pfast(x) + ws * Pslow(x)
 * with weights from each model's recent record on this access stream:
 * ll = exponential moving average (factor `ema`) of the log of the
 * probability the model gave to the token that actually came next (read
 * from the top 8 it predicted for that stream, floored at 1e-3; a fast
 * model's list that sums past 1, as a calibrated n-gram's can, is first
 * scaled down to 1, so that inflating estimates wins no weight), and
 * wf = 1 / (1 + exp (-sharpness * (ll_fast - ll_slow))): the posterior
 * weight of a Bayesian mixture over about `sharpness` recent accesses.
 * The records are kept per bucket of the fast model's confidence (its
 * top-1 probability: < 0.5, < 0.8, < 0.95, above), and the weights of
 * the bucket the current prediction falls in are used: where the n-gram
 * is sure and right it leads, where its short context is ambiguous the
 * LSTM can take over.
 * Lookahead steps beyond `slow_depth` use the fast model alone, which
 * bounds the per-access cost.  The candidates are those of the mixture's
 * rollout and of the fast model's own (a block on both keeps the higher
 * probability): when the mixture's first token differs from the
 * n-gram's, the two paths part, and on find + md5sum through ext4 the
 * hybrid used to prefetch fewer useful blocks than the n-gram alone
 * (bench/e2e: 1398 against 1446-1479; with the union 1480-1500).
 *
 * The hybrid does not own or observe its two models: whoever owns them
 * (the facade) observes each once per access, and calls the hybrid's
 * observe too (it only scores and reweighs).  All three must share one
 * vocabulary and one tokenizer.
 *
 * Memory: two top-8 lists per stream slot; fixed.
 */
#ifndef NBDSHADOW_PRED_HYBRID_H
#define NBDSHADOW_PRED_HYBRID_H

#include "model.h"

/* Recent accesses' worth of evidence behind the weights (see above). */
#define PRED_HYBRID_SHARPNESS 16.0

struct pred_hybrid_config {
  unsigned nstreams;
  unsigned slow_depth;          /* rollout steps that consult the slow model */
  double ema;                   /* record smoothing, e.g. 0.02 */
  double sharpness;             /* e.g. PRED_HYBRID_SHARPNESS */
  struct pred_rollout_cfg rollout;
};

struct pred_model *pred_hybrid_new (const struct pred_hybrid_config *cfg,
                                    struct pred_model *fast,
                                    struct pred_model *slow);

struct pred_hybrid_state {
  double acc_fast, acc_slow;    /* recent soft accuracy */
  double w_fast, w_slow;        /* current weights */
  uint64_t scored;              /* accesses scored */
  uint64_t hits_fast, hits_slow, hits_mix;      /* top-1 token hits */
  unsigned depth;               /* the rollout's lookahead in accesses */
};
void pred_hybrid_state (const struct pred_model *m, struct pred_hybrid_state *st);

#endif
