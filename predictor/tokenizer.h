/* tokenizer.h: client accesses -> per-stream delta tokens (DESIGN §6).
 *
 * Why it exists: every model sees the same enriched event, computed
 * once: which blocks were touched, which stream the access continues,
 * the delta from where that stream was (or, for a new stream, from where
 * the previous access ended) and its vocabulary token.  Models never
 * redo that work and all agree on what a token means.
 *
 * Deltas are measured from the END of the reference access: a
 * sequential stream is delta 0 whatever its request size, a stride S
 * with requests of L blocks is S - L.
 *
 * Requests smaller than a block make a sequential reader touch the same
 * block several times in a row.  Such an access (within the blocks of
 * its stream's previous access) is flagged `repeat`: it cannot be a
 * first touch, so models skip it and learn the block-level sequence.
 */
#ifndef NBDSHADOW_PRED_TOKENIZER_H
#define NBDSHADOW_PRED_TOKENIZER_H

#include <stdbool.h>
#include <stdint.h>

#include "access.h"
#include "streams.h"
#include "vocab.h"

struct pred_event {
  uint64_t seq;                 /* 0, 1, ... over data accesses */
  uint64_t time_us;
  uint8_t op;
  uint64_t block;               /* first block touched */
  uint32_t nblocks;             /* blocks touched, >= 1 */
  uint8_t size_class;           /* the request's length in bytes, log2
                                   classes (pred_size_class) */
  uint64_t ref;                 /* the block the delta is measured from */
  int64_t delta;                /* block - ref (0 if !have_ref) */
  int64_t gdelta;               /* block - previous access's first block */
  bool have_ref;                /* false for the very first access */
  uint32_t token;               /* vocabulary id of delta, 0 = OOV */
  int32_t recycled;             /* token id whose meaning changed now, or -1 */
  uint16_t stream;              /* stream slot */
  int16_t parent;               /* new stream: slot of the previous access, or -1 */
  bool new_stream;
  bool repeat;                  /* touches only blocks its stream's previous
                                   access touched: no new information for
                                   sequence models (token is not counted
                                   in the vocabulary) */
};

struct pred_tokenizer {
  uint32_t block_shift;         /* log2 block size */
  uint64_t nr_blocks;           /* 0 = unknown (no clamping) */
  struct pred_streams streams;
  struct pred_vocab vocab;
  uint64_t seq;
  uint64_t prev_block;
  bool have_prev;
};

/* Classes of a request's length: <= 4 KiB is 0, <= 8 KiB 1, ... <= 256
 * KiB 6, larger 7.  Bytes, not blocks: with large blocks a
 * web server's 8 KiB and 32 KiB reads touch one block each, yet the
 * larger ones are followed by the next far more often (wsrch-small:
 * 82% of 32 KiB reads against 40% of 8 KiB ones). */
#define PRED_SIZE_CLASSES 8
static inline uint8_t
pred_size_class (uint32_t bytes)
{
  uint8_t c = 0;

  while (c < PRED_SIZE_CLASSES - 1 && bytes > (UINT32_C (4096) << c))
    c++;
  return c;
}

/* block_size must be a power of two.  0 ok, -1 on allocation failure. */
int pred_tokenizer_init (struct pred_tokenizer *t, uint32_t block_size,
                         uint64_t nr_blocks, unsigned nstreams,
                         unsigned vocab_cap, uint32_t fwd, uint32_t back);
void pred_tokenizer_free (struct pred_tokenizer *t);
/* Turn an access into an event.  Returns false (and leaves the state
 * alone) for accesses that touch no block: flushes, zero lengths,
 * accesses beyond nr_blocks. */
bool pred_tokenizer_feed (struct pred_tokenizer *t, const struct pred_access *a,
                          struct pred_event *ev);

#endif
