/* vocab.h: the capped vocabulary of block deltas.
 *
 * Why it exists: the sequence models (n-gram, LSTM) predict tokens, not
 * 64-bit deltas.  Most workloads use a few deltas over and over (0 for
 * sequential, the stride, the jumps of a repeated layout); a random flood
 * uses a different one every time.  This maps deltas to at most `cap`
 * token ids, id 0 being "out of vocabulary" (OOV), without letting a
 * flood evict the useful ones.
 *
 * Admission: a delta not in the vocabulary becomes a token only on its
 * second sighting within a small doorkeeper table (1024 entries, direct
 * mapped), so one-off deltas stay OOV.  When the vocabulary is full the
 * least used token is recycled, but only if its decayed use count is at
 * most 1; otherwise the new delta stays OOV.  Counts are halved every
 * 16 * cap observations.
 *
 * Recycling changes the meaning of an id: pred_vocab_observe reports the
 * recycled id so models can forget what they learnt about it.
 *
 * Bounds: cap <= PRED_VOCAB_MAX (ids fit in 12 bits); memory is
 * O(cap) + 8 KiB, fixed at creation.
 */
#ifndef NBDSHADOW_PRED_VOCAB_H
#define NBDSHADOW_PRED_VOCAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PRED_VOCAB_MAX 4096
#define PRED_VOCAB_OOV 0
#define PRED_VOCAB_DOOR 1024

struct pred_vocab {
  unsigned cap;                 /* ids 0 .. cap-1, 0 = OOV */
  unsigned n;                   /* ids in use, including OOV (>= 1) */
  uint64_t observed;
  uint64_t admitted, recycled, refused;
  int64_t *delta;               /* [cap] */
  uint32_t *count;              /* [cap] */
  int32_t *hash;                /* [hsize] id or -1 */
  unsigned hsize;               /* power of two >= 2 * cap */
  int64_t door[PRED_VOCAB_DOOR];
  bool door_used[PRED_VOCAB_DOOR];
};

/* 0 on success, -1 on allocation failure.  cap is clamped to [2, MAX]. */
int pred_vocab_init (struct pred_vocab *v, unsigned cap);
void pred_vocab_free (struct pred_vocab *v);
/* Id of delta without changing anything (OOV if unknown). */
uint32_t pred_vocab_lookup (const struct pred_vocab *v, int64_t delta);
/* Id of delta, admitting it per the policy above.  *recycled is set to
 * the id whose meaning changed, or -1. */
uint32_t pred_vocab_observe (struct pred_vocab *v, int64_t delta,
                             int32_t *recycled);
/* Delta of a valid non-OOV id. */
static inline int64_t
pred_vocab_delta (const struct pred_vocab *v, uint32_t id)
{
  return v->delta[id];
}
/* Replace the whole vocabulary by deltas[0..n-1] as ids 1..n (model load).
 * -1 if n >= cap or a delta repeats. */
int pred_vocab_set (struct pred_vocab *v, const int64_t *deltas, unsigned n);
size_t pred_vocab_memory (const struct pred_vocab *v);

#endif
