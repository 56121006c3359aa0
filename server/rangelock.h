/* nbdshadow: block-range locks.
 *
 * A copy (on-read, prefetch, background) must never overwrite newer client
 * data.  nbdkit's cow filter gets this wrong: it updates its bitmap after
 * dropping its lock, so a stale origin read can land on top of a client
 * write.  Here every operation that may write a block which is not yet
 * resident holds that block's range lock from its decision ("this block is
 * absent") until the block is marked resident:
 *
 *  - client writes/zeroes touching an absent block wait for the lock;
 *  - the copier's copies wait for it too; a client read's copy only tries
 *    it and, when it is busy, hands the range to the copier (copyop.h).
 *
 * Blocks never go back from resident to absent, so once a holder sees a
 * block resident under the lock, no copy can touch it any more and writes
 * to it need no lock at all.
 *
 * Held ranges are few (one per in-flight request), so they live in a
 * plain list scanned under one mutex.
 */

#ifndef NBDSHADOW_RANGELOCK_H
#define NBDSHADOW_RANGELOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* One held range.  Owned by the holder (on its stack or inside an async
 * operation) for as long as the lock is held.
 */
struct range_hold {
  uint64_t first, end;          /* blocks [first, end) */
  struct range_hold *next;
};

struct rangelock {
  pthread_mutex_t lock;         /* guards held */
  pthread_cond_t released;      /* broadcast on every release */
  struct range_hold *held;
};

extern int rangelock_init (struct rangelock *rl);
extern void rangelock_destroy (struct rangelock *rl);

/* Wait until no held range overlaps blocks [first, first+count), then
 * hold it.
 */
extern void rangelock_acquire (struct rangelock *rl, struct range_hold *h,
                               uint64_t first, uint64_t count);

/* Hold [first, first+count) only if nothing overlaps it now. */
extern bool rangelock_try (struct rangelock *rl, struct range_hold *h,
                           uint64_t first, uint64_t count);

extern void rangelock_release (struct rangelock *rl, struct range_hold *h);

/* Hold only [h->first, end) of h from now on (h->first < end <= h->end):
 * a holder that will not touch the rest of its range lets others have
 * it at once.
 */
extern void rangelock_shrink (struct rangelock *rl, struct range_hold *h,
                              uint64_t end);

#endif /* NBDSHADOW_RANGELOCK_H */
