/* vocab.c: delta -> token id with doorkeeper admission (see vocab.h). */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "vocab.h"

static inline uint64_t
mix64 (uint64_t x)
{
  x ^= x >> 33;
  x *= UINT64_C (0xff51afd7ed558ccd);
  x ^= x >> 33;
  x *= UINT64_C (0xc4ceb9fe1a85ec53);
  x ^= x >> 33;
  return x;
}

int
pred_vocab_init (struct pred_vocab *v, unsigned cap)
{
  memset (v, 0, sizeof *v);
  if (cap < 2)
    cap = 2;
  if (cap > PRED_VOCAB_MAX)
    cap = PRED_VOCAB_MAX;
  v->cap = cap;
  v->n = 1;
  v->hsize = 4;
  while (v->hsize < 2 * cap)
    v->hsize <<= 1;
  v->delta = calloc (cap, sizeof *v->delta);
  v->count = calloc (cap, sizeof *v->count);
  v->hash = malloc (v->hsize * sizeof *v->hash);
  if (!v->delta || !v->count || !v->hash) {
    pred_vocab_free (v);
    return -1;
  }
  for (unsigned i = 0; i < v->hsize; i++)
    v->hash[i] = -1;
  return 0;
}

void
pred_vocab_free (struct pred_vocab *v)
{
  free (v->delta);
  free (v->count);
  free (v->hash);
  v->delta = NULL;
  v->count = NULL;
  v->hash = NULL;
}

size_t
pred_vocab_memory (const struct pred_vocab *v)
{
  return sizeof *v + v->cap * (sizeof *v->delta + sizeof *v->count) +
    v->hsize * sizeof *v->hash;
}

static unsigned
slot_of (const struct pred_vocab *v, int64_t delta)
{
  return mix64 ((uint64_t) delta) & (v->hsize - 1);
}

uint32_t
pred_vocab_lookup (const struct pred_vocab *v, int64_t delta)
{
  for (unsigned h = slot_of (v, delta);; h = (h + 1) & (v->hsize - 1)) {
    int32_t id = v->hash[h];
    if (id < 0)
      return PRED_VOCAB_OOV;
    if (v->delta[id] == delta)
      return id;
  }
}

static void
hash_insert (struct pred_vocab *v, int64_t delta, uint32_t id)
{
  unsigned h = slot_of (v, delta);
  while (v->hash[h] >= 0)
    h = (h + 1) & (v->hsize - 1);
  v->hash[h] = id;
}

/* Linear-probing deletion by backward shift. */
static void
hash_remove (struct pred_vocab *v, int64_t delta)
{
  unsigned mask = v->hsize - 1, i, j;
  for (i = slot_of (v, delta);; i = (i + 1) & mask) {
    if (v->hash[i] < 0)
      return;
    if (v->delta[v->hash[i]] == delta)
      break;
  }
  v->hash[i] = -1;
  for (j = (i + 1) & mask; v->hash[j] >= 0; j = (j + 1) & mask) {
    unsigned k = slot_of (v, v->delta[v->hash[j]]);
    /* Move j to i if k is cyclically outside (i, j]. */
    if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
      v->hash[i] = v->hash[j];
      v->hash[j] = -1;
      i = j;
    }
  }
}

uint32_t
pred_vocab_observe (struct pred_vocab *v, int64_t delta, int32_t *recycled)
{
  uint32_t id = pred_vocab_lookup (v, delta);

  *recycled = -1;
  v->observed++;
  if (v->observed % (16 * (uint64_t) v->cap) == 0)
    for (unsigned i = 1; i < v->n; i++)
      v->count[i] >>= 1;

  if (id != PRED_VOCAB_OOV) {
    if (v->count[id] < UINT32_MAX)
      v->count[id]++;
    return id;
  }

  /* Doorkeeper: admit on the second sighting. */
  unsigned d = mix64 ((uint64_t) delta * 3 + 1) & (PRED_VOCAB_DOOR - 1);
  if (!v->door_used[d] || v->door[d] != delta) {
    v->door[d] = delta;
    v->door_used[d] = true;
    return PRED_VOCAB_OOV;
  }
  v->door_used[d] = false;

  if (v->n < v->cap)
    id = v->n++;
  else {
    uint32_t victim = 1;
    for (unsigned i = 2; i < v->n; i++)
      if (v->count[i] < v->count[victim])
        victim = i;
    if (v->count[victim] > 1) {
      v->refused++;
      return PRED_VOCAB_OOV;
    }
    hash_remove (v, v->delta[victim]);
    id = victim;
    *recycled = id;
    v->recycled++;
  }
  v->admitted++;
  v->delta[id] = delta;
  v->count[id] = 1;
  hash_insert (v, delta, id);
  return id;
}

int
pred_vocab_set (struct pred_vocab *v, const int64_t *deltas, unsigned n)
{
  if (n + 1 > v->cap)
    return -1;
  for (unsigned i = 0; i < v->hsize; i++)
    v->hash[i] = -1;
  v->n = 1;
  for (unsigned i = 0; i < n; i++) {
    if (pred_vocab_lookup (v, deltas[i]) != PRED_VOCAB_OOV)
      return -1;
    v->delta[v->n] = deltas[i];
    v->count[v->n] = 2;
    hash_insert (v, deltas[i], v->n);
    v->n++;
  }
  return 0;
}
