/* model.h: the one interface every prediction model implements.
 *
 * Why it exists: the facade, the simulator and the tests treat
 * readahead, stride, Markov-1, Leap, n-gram, LSTM, hybrid and the oracle
 * alike: show it an access (observe), ask which blocks come next with
 * which probability (predict), ask its memory.  Comparing policies is
 * then a loop, and switching policy live is a pointer change.
 *
 * Sequence models additionally implement pred_tokmodel_ops: a copyable
 * context (what the model knows about one stream), advancing it by a
 * hypothetical token, and the distribution of the next token.  One
 * generic rollout (rollout.c) turns any such model into block
 * candidates several accesses ahead, and the hybrid mixes any two.
 *
 * Threading: a model is used by one thread at a time.
 */
#ifndef NBDSHADOW_PRED_MODEL_H
#define NBDSHADOW_PRED_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

#define PRED_TOPK_MAX 16

/* A candidate block and the model's probability that it is touched
 * within the prediction horizon. */
struct pred_cand {
  uint64_t block;
  double p;
};

/* Bounded list of distinct candidate blocks (the larger p is kept for a
 * repeated block), in insertion order until sorted.  Reset is O(1): hash
 * slots carry the generation they were written in. */
struct pred_candlist_slot {
  uint64_t block;
  uint32_t idx;
  uint32_t gen;
};

struct pred_candlist {
  unsigned n, cap;
  uint64_t limit;               /* blocks >= limit are dropped (0: none) */
  struct pred_cand *c;
  struct pred_candlist_slot *hash;
  unsigned hsize;
  uint32_t gen;
};

int pred_candlist_init (struct pred_candlist *cl, unsigned cap, uint64_t limit);
void pred_candlist_free (struct pred_candlist *cl);
void pred_candlist_reset (struct pred_candlist *cl);
/* false if the list is full or block out of range. */
bool pred_candlist_add (struct pred_candlist *cl, uint64_t block, double p);
/* true if block is in the list. */
bool pred_candlist_contains (const struct pred_candlist *cl, uint64_t block);
/* Sort by p descending, stable (earlier = nearer in the future first). */
void pred_candlist_sort (struct pred_candlist *cl);

/* Top of a distribution over tokens, by decreasing p.  May contain
 * PRED_VOCAB_OOV. */
struct pred_tokdist {
  unsigned n;
  uint32_t tok[PRED_TOPK_MAX];
  double p[PRED_TOPK_MAX];
};

struct pred_model;

struct pred_tokmodel_ops {
  /* Bytes of one context (opaque, copyable with memcpy). */
  size_t ctx_size;
  /* The context of stream slot `stream` as of the last observe. */
  void (*ctx_init) (struct pred_model *m, unsigned stream, void *ctx);
  /* Advance ctx as if tok were observed (nothing is learnt). */
  void (*ctx_advance) (struct pred_model *m, void *ctx, uint32_t tok);
  /* Top k (<= PRED_TOPK_MAX) next tokens. */
  void (*dist) (struct pred_model *m, void *ctx, unsigned k,
                struct pred_tokdist *out);
  /* Probability of one token (call after dist on the same ctx). */
  double (*prob) (struct pred_model *m, void *ctx, uint32_t tok);
};

struct pred_model_ops {
  const char *name;
  void (*observe) (struct pred_model *m, const struct pred_event *ev);
  /* Candidates for the accesses following ev, the last observed event. */
  void (*predict) (struct pred_model *m, const struct pred_event *ev,
                   struct pred_candlist *out);
  size_t (*memory) (const struct pred_model *m);
  void (*destroy) (struct pred_model *m);
  const struct pred_tokmodel_ops *tok;  /* NULL if not a sequence model */
};

struct pred_model {
  const struct pred_model_ops *ops;
  const struct pred_vocab *vocab;       /* sequence models: the shared one */
};

static inline void
pred_model_destroy (struct pred_model *m)
{
  if (m)
    m->ops->destroy (m);
}

/* How far and wide sequence models look ahead. */
struct pred_rollout_cfg {
  unsigned depth;               /* accesses ahead along the likeliest path */
  unsigned alts;                /* tokens considered at each step (1..16) */
  double min_p;                 /* stop below this path probability */
  unsigned max_len;             /* blocks per predicted access, at most */
};

/* Generic lookahead for a sequence model: follow the likeliest token
 * path from ev's stream, emitting the top `alts` alternatives at every
 * step with their path probability.  ctx_scratch holds 2 contexts. */
void pred_rollout (struct pred_model *m, const struct pred_event *ev,
                   const struct pred_rollout_cfg *cfg,
                   struct pred_candlist *out, void *ctx_scratch);

/* Helper: top-k of a dense probability vector p[0..n-1]. */
void pred_topk_dense (const double *p, unsigned n, unsigned k,
                      struct pred_tokdist *out);

#endif
