/* nbdshadow: which blocks of the volume are on the shadow (residency.h). */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "residency.h"
#include "lockutil.h"

struct residency *
residency_new (uint64_t size, uint32_t block_size)
{
  struct residency *r;
  int err;

  assert (block_size > 0 && (block_size & (block_size - 1)) == 0);
  if (size == 0 || size > INT64_MAX) {
    errno = EINVAL;
    return NULL;
  }

  r = calloc (1, sizeof *r);
  if (r == NULL)
    return NULL;
  r->size = size;
  r->block_size = block_size;
  r->block_shift = __builtin_ctz (block_size);
  r->nr_blocks = (size >> r->block_shift) + ((size & (block_size - 1)) != 0);

  err = pthread_mutex_init (&r->lock, NULL);
  if (err != 0) {
    free (r);
    errno = err;
    return NULL;
  }
  r->resident = blockset_new (r->nr_blocks);
  r->written = blockset_new (r->nr_blocks);
  if (r->resident == NULL || r->written == NULL) {
    err = errno;
    residency_free (r);
    errno = err;
    return NULL;
  }
  return r;
}

void
residency_free (struct residency *r)
{
  if (r == NULL)
    return;
  if (r->resident)
    blockset_free (r->resident);
  if (r->written)
    blockset_free (r->written);
  mark_list_free (&r->pending);
  pthread_mutex_destroy (&r->lock);
  free (r);
}

uint32_t
residency_block_bytes (const struct residency *r, uint64_t blk)
{
  uint64_t start = residency_block_offset (r, blk);

  assert (blk < r->nr_blocks);
  if (r->size - start < r->block_size)
    return r->size - start;
  return r->block_size;
}

bool
residency_is_resident (struct residency *r, uint64_t blk)
{
  bool ret;

  mutex_lock (&r->lock);
  ret = blockset_test (r->resident, blk);
  mutex_unlock (&r->lock);
  return ret;
}

bool
residency_is_written (struct residency *r, uint64_t blk)
{
  bool ret;

  mutex_lock (&r->lock);
  ret = blockset_test (r->written, blk);
  mutex_unlock (&r->lock);
  return ret;
}

bool
residency_any_absent (struct residency *r, uint64_t first, uint64_t count)
{
  bool ret;

  mutex_lock (&r->lock);
  ret = blockset_next_clear (r->resident, first) < first + count;
  mutex_unlock (&r->lock);
  return ret;
}

bool
residency_any_unwritten (struct residency *r, uint64_t first, uint64_t count)
{
  uint64_t end = first + count, blk = first;
  bool ret = false;

  mutex_lock (&r->lock);
  /* Walk the resident runs; in each, look for an unwritten block. */
  while (!ret && blk < end) {
    uint64_t run = blockset_next_set (r->resident, blk), run_end;

    if (run >= end)
      break;
    run_end = blockset_next_clear (r->resident, run);
    if (run_end > end)
      run_end = end;
    ret = blockset_next_clear (r->written, run) < run_end;
    blk = run_end;
  }
  mutex_unlock (&r->lock);
  return ret;
}

uint64_t
residency_run_end (struct residency *r, uint64_t blk, uint64_t limit,
                   bool *resident)
{
  uint64_t end;

  assert (blk < limit && limit <= r->nr_blocks);
  mutex_lock (&r->lock);
  *resident = blockset_test (r->resident, blk);
  if (*resident)
    end = blockset_next_clear (r->resident, blk);
  else
    end = blockset_next_set (r->resident, blk);
  mutex_unlock (&r->lock);
  return end < limit ? end : limit;
}

uint64_t
residency_written_run_end (struct residency *r, uint64_t blk, uint64_t limit,
                           bool *written)
{
  uint64_t end;

  assert (blk < limit && limit <= r->nr_blocks);
  mutex_lock (&r->lock);
  *written = blockset_test (r->written, blk);
  if (*written)
    end = blockset_next_clear (r->written, blk);
  else
    end = blockset_next_set (r->written, blk);
  mutex_unlock (&r->lock);
  return end < limit ? end : limit;
}

uint64_t
residency_next_absent (struct residency *r, uint64_t from)
{
  uint64_t ret;

  if (from >= r->nr_blocks)
    return r->nr_blocks;
  mutex_lock (&r->lock);
  ret = blockset_next_clear (r->resident, from);
  mutex_unlock (&r->lock);
  return ret;
}

/* Caller holds r->lock. */
static int
apply_mark (struct residency *r, uint64_t first, uint64_t count,
            enum mark_kind kind)
{
  if (blockset_set_range (r->resident, first, count) == -1)
    return -1;
  if (kind == MARK_WRITTEN &&
      blockset_set_range (r->written, first, count) == -1)
    return -1;
  return 0;
}

int
residency_mark (struct residency *r, uint64_t first, uint64_t count,
                enum mark_kind kind)
{
  int ret;

  assert (first + count <= r->nr_blocks && count > 0);
  mutex_lock (&r->lock);
  /* Nothing new (the common case of rewriting written blocks): no
   * journal entry.
   */
  if (blockset_next_clear (kind == MARK_WRITTEN ? r->written : r->resident,
                           first) >= first + count) {
    mutex_unlock (&r->lock);
    return 0;
  }
  /* Queue first: a mark applied but not queued would never be made
   * durable, while a queued mark whose application failed is only
   * written to the journal after a successful retry of the same blocks.
   */
  ret = mark_list_append (&r->pending, first, count, kind);
  if (ret == 0)
    ret = apply_mark (r, first, count, kind);
  mutex_unlock (&r->lock);
  return ret;
}

int
residency_load_mark (struct residency *r, const struct mark *m)
{
  int ret;

  if (m->first >= r->nr_blocks || m->count > r->nr_blocks - m->first ||
      m->count == 0) {
    errno = ERANGE;
    return -1;
  }
  mutex_lock (&r->lock);
  ret = apply_mark (r, m->first, m->count, m->kind);
  mutex_unlock (&r->lock);
  return ret;
}

void
residency_freeze (struct residency *r, struct mark_list *out)
{
  mutex_lock (&r->lock);
  *out = r->pending;
  memset (&r->pending, 0, sizeof r->pending);
  mutex_unlock (&r->lock);
}

int
residency_unfreeze (struct residency *r, struct mark_list *marks)
{
  size_t i;
  int ret = 0;

  /* Order does not matter: the journal replays marks as a set union. */
  mutex_lock (&r->lock);
  for (i = 0; i < marks->len && ret == 0; ++i)
    ret = mark_list_append (&r->pending, marks->v[i].first,
                            marks->v[i].count, marks->v[i].kind);
  mutex_unlock (&r->lock);
  mark_list_free (marks);
  return ret;
}

bool
residency_has_pending (struct residency *r)
{
  bool ret;

  mutex_lock (&r->lock);
  ret = r->pending.len > 0;
  mutex_unlock (&r->lock);
  return ret;
}

uint64_t
residency_count_resident (struct residency *r)
{
  uint64_t ret;

  mutex_lock (&r->lock);
  ret = blockset_count (r->resident);
  mutex_unlock (&r->lock);
  return ret;
}

uint64_t
residency_count_written (struct residency *r)
{
  uint64_t ret;

  mutex_lock (&r->lock);
  ret = blockset_count (r->written);
  mutex_unlock (&r->lock);
  return ret;
}

size_t
residency_memory (struct residency *r)
{
  size_t ret;

  mutex_lock (&r->lock);
  ret = sizeof *r + blockset_memory (r->resident) +
    blockset_memory (r->written) + r->pending.cap * sizeof (struct mark);
  mutex_unlock (&r->lock);
  return ret;
}

int
residency_foreach_run (struct residency *r, bool written_only,
                       blockset_run_fn fn, void *opaque)
{
  int ret;

  mutex_lock (&r->lock);
  ret = blockset_foreach_run (written_only ? r->written : r->resident,
                              0, r->nr_blocks, fn, opaque);
  mutex_unlock (&r->lock);
  return ret;
}

int
mark_list_append (struct mark_list *l, uint64_t first, uint64_t count,
                  enum mark_kind kind)
{
  struct mark *last = l->len ? &l->v[l->len - 1] : NULL;

  /* Coalesce the common case: a sweep marking consecutive blocks. */
  if (last && last->kind == kind && last->first + last->count == first) {
    last->count += count;
    return 0;
  }
  if (l->len == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 64;
    struct mark *v = realloc (l->v, cap * sizeof *v);

    if (v == NULL)
      return -1;
    l->v = v;
    l->cap = cap;
  }
  l->v[l->len++] = (struct mark) { .first = first, .count = count,
                                   .kind = kind };
  return 0;
}

void
mark_list_free (struct mark_list *l)
{
  free (l->v);
  memset (l, 0, sizeof *l);
}
