/* nbdshadow: block-range locks (see rangelock.h for why). */

#include <config.h>

#include <assert.h>
#include <errno.h>

#include "rangelock.h"
#include "lockutil.h"

int
rangelock_init (struct rangelock *rl)
{
  int r;

  rl->held = NULL;
  r = pthread_mutex_init (&rl->lock, NULL);
  if (r != 0) {
    errno = r;
    return -1;
  }
  r = pthread_cond_init (&rl->released, NULL);
  if (r != 0) {
    pthread_mutex_destroy (&rl->lock);
    errno = r;
    return -1;
  }
  return 0;
}

void
rangelock_destroy (struct rangelock *rl)
{
  assert (rl->held == NULL);
  pthread_cond_destroy (&rl->released);
  pthread_mutex_destroy (&rl->lock);
}

/* Caller holds rl->lock. */
static bool
overlaps_held (const struct rangelock *rl, uint64_t first, uint64_t end)
{
  const struct range_hold *h;

  for (h = rl->held; h; h = h->next)
    if (first < h->end && h->first < end)
      return true;
  return false;
}

/* Caller holds rl->lock and has checked there is no overlap. */
static void
insert_hold (struct rangelock *rl, struct range_hold *h,
             uint64_t first, uint64_t end)
{
  h->first = first;
  h->end = end;
  h->next = rl->held;
  rl->held = h;
}

void
rangelock_acquire (struct rangelock *rl, struct range_hold *h,
                   uint64_t first, uint64_t count)
{
  uint64_t end = first + count;

  assert (count > 0);
  mutex_lock (&rl->lock);
  while (overlaps_held (rl, first, end))
    cond_wait (&rl->released, &rl->lock);
  insert_hold (rl, h, first, end);
  mutex_unlock (&rl->lock);
}

bool
rangelock_try (struct rangelock *rl, struct range_hold *h,
               uint64_t first, uint64_t count)
{
  uint64_t end = first + count;
  bool got;

  assert (count > 0);
  mutex_lock (&rl->lock);
  got = !overlaps_held (rl, first, end);
  if (got)
    insert_hold (rl, h, first, end);
  mutex_unlock (&rl->lock);
  return got;
}

void
rangelock_release (struct rangelock *rl, struct range_hold *h)
{
  struct range_hold **p;

  mutex_lock (&rl->lock);
  for (p = &rl->held; *p != h; p = &(*p)->next)
    assert (*p != NULL);
  *p = h->next;
  cond_broadcast (&rl->released);
  mutex_unlock (&rl->lock);
}

void
rangelock_shrink (struct rangelock *rl, struct range_hold *h, uint64_t end)
{
  assert (h->first < end && end <= h->end);
  mutex_lock (&rl->lock);
  h->end = end;
  cond_broadcast (&rl->released);
  mutex_unlock (&rl->lock);
}
