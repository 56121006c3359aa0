/* streams.c: bounded table of sequential streams (see streams.h). */
#include <config.h>

#include <string.h>

#include "streams.h"

void
pred_streams_init (struct pred_streams *st, unsigned nslots,
                   uint32_t fwd, uint32_t back)
{
  memset (st, 0, sizeof *st);
  if (nslots < 1)
    nslots = 1;
  if (nslots > PRED_STREAMS_MAX)
    nslots = PRED_STREAMS_MAX;
  st->nslots = nslots;
  st->fwd = fwd;
  st->back = back;
  st->last_slot = -1;
}

int
pred_streams_match (const struct pred_streams *st, uint64_t block)
{
  int best = -1;
  uint64_t best_dist = UINT64_MAX;

  for (unsigned i = 0; i < st->nslots; i++) {
    const struct pred_stream *s = &st->s[i];
    if (!s->used)
      continue;
    uint64_t lo = s->next >= st->back ? s->next - st->back : 0;
    uint64_t hi = s->next + st->fwd;
    if (block < lo || block > hi)
      continue;
    /* Streams run forward: any forward match beats a backward one. */
    uint64_t d = block >= s->next ? block - s->next
      : (uint64_t) st->fwd + 1 + (s->next - block);
    if (d < best_dist ||
        (d == best_dist && s->last_seq > st->s[best].last_seq)) {
      best = i;
      best_dist = d;
    }
  }
  return best;
}

void
pred_streams_assign (struct pred_streams *st, uint64_t block, uint32_t nblocks,
                     struct pred_stream_match *m)
{
  int best = pred_streams_match (st, block), victim = -1;
  uint64_t seq = st->seq++;

  if (best >= 0) {
    m->slot = best;
    m->is_new = false;
    m->parent = -1;
    m->ref = st->s[best].next;
    m->have_ref = true;
  }
  else {
    /* A free slot, else the least recently used. */
    for (unsigned i = 0; i < st->nslots; i++) {
      if (!st->s[i].used) {
        victim = i;
        break;
      }
      if (victim < 0 || st->s[i].last_seq < st->s[victim].last_seq)
        victim = i;
    }
    m->slot = victim;
    m->is_new = true;
    m->parent = st->last_slot;
    if (st->last_slot >= 0) {
      m->ref = st->s[st->last_slot].next;
      m->have_ref = true;
    }
    else {
      m->ref = 0;
      m->have_ref = false;
    }
    memset (&st->s[victim], 0, sizeof st->s[victim]);
    st->s[victim].used = true;
    st->s[victim].born_seq = seq;
  }

  struct pred_stream *s = &st->s[m->slot];
  s->next = block + nblocks;
  s->last_block = block;
  s->last_seq = seq;
  s->accesses++;
  st->last_slot = m->slot;
}

unsigned
pred_streams_active (const struct pred_streams *st, uint64_t window)
{
  unsigned n = 0;
  for (unsigned i = 0; i < st->nslots; i++)
    if (st->s[i].used && st->seq - st->s[i].last_seq <= window)
      n++;
  return n;
}

int
pred_streams_find_repeat (const struct pred_streams *st, uint64_t first,
                          uint64_t last)
{
  int m = pred_streams_match (st, first);
  if (m >= 0 && first >= st->s[m].last_block && last < st->s[m].next)
    return m;
  return -1;
}

void
pred_streams_touch (struct pred_streams *st, unsigned slot)
{
  st->s[slot].last_seq = st->seq++;
  st->s[slot].accesses++;
  st->last_slot = slot;
}
