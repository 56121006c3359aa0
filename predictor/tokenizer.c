/* tokenizer.c: accesses -> events with stream and delta token. */
#include <config.h>

#include <string.h>

#include "tokenizer.h"

int
pred_tokenizer_init (struct pred_tokenizer *t, uint32_t block_size,
                     uint64_t nr_blocks, unsigned nstreams, unsigned vocab_cap,
                     uint32_t fwd, uint32_t back)
{
  memset (t, 0, sizeof *t);
  t->block_shift = 0;
  while (((uint64_t) 1 << t->block_shift) < block_size)
    t->block_shift++;
  t->nr_blocks = nr_blocks;
  pred_streams_init (&t->streams, nstreams, fwd, back);
  return pred_vocab_init (&t->vocab, vocab_cap);
}

void
pred_tokenizer_free (struct pred_tokenizer *t)
{
  pred_vocab_free (&t->vocab);
}

bool
pred_tokenizer_feed (struct pred_tokenizer *t, const struct pred_access *a,
                     struct pred_event *ev)
{
  struct pred_stream_match m;
  uint64_t first, last;

  if (a->op == PRED_OP_FLUSH || a->length == 0)
    return false;
  first = a->offset >> t->block_shift;
  last = (a->offset + a->length - 1) >> t->block_shift;
  if (t->nr_blocks) {
    if (first >= t->nr_blocks)
      return false;
    if (last >= t->nr_blocks)
      last = t->nr_blocks - 1;
  }

  memset (ev, 0, sizeof *ev);
  ev->seq = t->seq++;
  ev->time_us = a->time_us;
  ev->op = a->op;
  ev->block = first;
  ev->nblocks = (uint32_t) (last - first + 1 > UINT32_MAX ? UINT32_MAX
                            : last - first + 1);
  ev->size_class = pred_size_class (a->length);
  /* Same blocks as some stream's previous access: a repeat.  The stream
   * is kept as it is (only its recency is refreshed). */
  int rep = pred_streams_find_repeat (&t->streams, first, last);
  if (rep >= 0) {
    ev->repeat = true;
    pred_streams_touch (&t->streams, rep);
    m.slot = rep;
    m.is_new = false;
    m.parent = -1;
    m.ref = t->streams.s[rep].next;
    m.have_ref = true;
  }
  else
    pred_streams_assign (&t->streams, first, ev->nblocks, &m);
  ev->stream = m.slot;
  ev->new_stream = m.is_new;
  ev->parent = m.parent;
  ev->have_ref = m.have_ref;
  ev->ref = m.ref;
  ev->gdelta = t->have_prev ? (int64_t) (first - t->prev_block) : 0;
  t->prev_block = first;
  t->have_prev = true;
  if (m.have_ref) {
    ev->delta = (int64_t) (first - m.ref);
    if (ev->repeat) {
      ev->token = pred_vocab_lookup (&t->vocab, ev->delta);
      ev->recycled = -1;
    }
    else
      ev->token = pred_vocab_observe (&t->vocab, ev->delta, &ev->recycled);
  }
  else {
    ev->delta = 0;
    ev->token = PRED_VOCAB_OOV;
    ev->recycled = -1;
  }
  return true;
}
