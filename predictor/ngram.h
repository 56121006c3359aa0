/* ngram.h: n-gram model over per-stream delta tokens, orders 1..4 with
 * Witten-Bell backoff; Markov-1 is the same table at order 1 without
 * backoff.
 *
 * Why it exists: it learns a pattern the first time it repeats and
 * answers in well under a microsecond, which the LSTM cannot.  It is
 * both a policy of its own and the fast half of the hybrid.
 *
 * Estimate (smooth = true): P0(x) = (c(x) + 1) / (N + V) over the
 * decayed unigram counts, then for k = 1 .. available order, if the
 * context of length k was seen:
 *     Pk(x) = (ck(x) + Tk * Pk-1(x)) / (Nk + Tk)
 * (Tk distinct followers, Nk their count), up to the order k* whose
 * estimate gave the tokens that actually came next the highest recent
 * log-likelihood (a moving average over about 50 accesses; another
 * order must lead the current one by 0.05 nats to take over; order 1
 * answers first): a first-order stream is not answered from longer
 * contexts seen only a few times.  smooth = false (Markov-1):
 * P(x) = c1(x) / N1, nothing if the context is unseen.
 *
 * calibrate (smooth only; the predictor asks for it by default,
 * predictor.h): an estimate p is lifted to
 * min (1, p * (h + 2 m) / (q + 2 m)), where q and h are the decayed sums
 * of the top token's estimate and of its hits over past predictions
 * whose top estimate fell in p's tenth of [0, 1], and m is that tenth's
 * middle; only if that is a lift and reaches 0.1.  Every token of a
 * distribution is scaled by its own tenth's ratio (learnt on top
 * tokens), so the order may change and the values no longer sum to one
 * (Witten-Bell is under-confident where a context has many rare
 * followers; see ngram.c, calibrate).
 *
 * Bounds: `capacity` contexts (rounded up to a multiple of 8) in a
 * set-associative table of 8-way buckets; a new context replaces the
 * least used, longest idle way of its bucket.  Each context keeps its 6
 * most frequent followers (counts halved past 255).  Memory is fixed at
 * creation: 40 bytes per context + 8 bytes per stream + 4 per token +
 * a 256-entry cache of next-token distributions (about 50 KiB), which
 * makes a lookahead along a known path cost a few table probes a step.
 */
#ifndef NBDSHADOW_PRED_NGRAM_H
#define NBDSHADOW_PRED_NGRAM_H

#include "model.h"

#define PRED_NGRAM_MAX_ORDER 4

struct pred_ngram_config {
  unsigned max_order;           /* 1 .. 4 */
  unsigned capacity;            /* contexts */
  bool smooth;                  /* Witten-Bell backoff to unigram */
  /* smooth only: lift estimates to the hit rate of past top predictions
   * of about the same probability (ngram.c, calibrate). */
  bool calibrate;
  /* smooth only: every context is also counted with the size class of
   * the stream's last request (pred_size_class), and those estimates
   * compete with the plain ones in the order selection: tokens are
   * deltas from a request's end, the same for an 8 KiB and a 32 KiB
   * read, yet how often the next request follows may differ with the
   * size.  Twice the contexts in the same capacity. */
  bool size_context;
  unsigned nstreams;            /* stream slots of the tokenizer */
  struct pred_rollout_cfg rollout;
};

/* NULL on allocation failure.  vocab must outlive the model. */
struct pred_model *pred_ngram_new (const struct pred_ngram_config *cfg,
                                   const struct pred_vocab *vocab);

/* Statistics for tests and the facade. */
struct pred_ngram_stats {
  unsigned capacity, used;
  uint64_t inserts, evictions;
  uint64_t cache_hits, cache_misses;    /* distribution cache */
  unsigned order;                       /* the order answering now */
  uint64_t order_changes;               /* times it or sized changed */
  bool sized;                           /* its contexts have the size class */
  bool size_context;                    /* cfg.size_context (with smooth) */
};
void pred_ngram_stats (const struct pred_model *m, struct pred_ngram_stats *st);

#endif
