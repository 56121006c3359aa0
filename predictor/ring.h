/* ring.h: lock-free bounded multi-producer single-consumer queue of
 * accesses.
 *
 * Why it exists: nbdkit worker threads must hand every client access to
 * the one predictor thread without ever waiting for it.  A mutex would
 * let a slow predictor stall client I/O; this ring never does.  When it
 * is full the access is dropped and counted: the predictor sees a
 * sampled stream under overload, the client never notices.
 *
 * Algorithm: Dmitry Vyukov's bounded queue (a sequence number per cell).
 * Producers claim a cell with one compare-and-swap on the tail and
 * publish it with a release store; the single consumer needs no atomic
 * read-modify-write at all.
 *
 * Promises:
 *  - pred_ring_push is lock-free and never blocks or sleeps: it returns
 *    false (and counts a drop) at once when the ring is full.  The only
 *    system call it may make is a non-blocking write(2) to an eventfd,
 *    and only when the consumer has announced it is sleeping in
 *    pred_ring_wait.
 *  - Each producer's accesses are popped in the order it pushed them;
 *    nothing is popped twice or lost except the counted drops.
 *  - pushed + dropped == number of push calls; popped <= pushed.
 *
 * Threading: push from any number of threads; pop, wait and the
 * consumer side of everything else from ONE thread at a time.
 * pred_ring_stats may be called from any thread.
 */
#ifndef NBDSHADOW_PRED_RING_H
#define NBDSHADOW_PRED_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "access.h"

struct pred_ring;

/* Create a ring of at least `capacity` cells (rounded up to a power of
 * two, minimum 2, maximum 2^24).  Returns NULL with errno set on error. */
struct pred_ring *pred_ring_new (size_t capacity);
void pred_ring_free (struct pred_ring *r);

/* Producer: enqueue a copy of *a.  true if queued, false if the ring was
 * full (the access is dropped and counted). */
bool pred_ring_push (struct pred_ring *r, const struct pred_access *a);

/* Consumer: dequeue into *a.  false if nothing is ready. */
bool pred_ring_pop (struct pred_ring *r, struct pred_access *a);

/* Consumer: sleep until something may be ready, at most timeout_ms
 * milliseconds (-1: no limit).  Returns at once if the ring is not
 * empty.  Spurious returns are allowed; call pop afterwards. */
void pred_ring_wait (struct pred_ring *r, int timeout_ms);

/* Wake a consumer sleeping in pred_ring_wait (e.g. to make it stop). */
void pred_ring_wake (struct pred_ring *r);

/* Counters since creation (monotonic, approximate while producers run). */
struct pred_ring_stats {
  uint64_t pushed;              /* accepted by push */
  uint64_t dropped;             /* refused by push because the ring was full */
  uint64_t popped;              /* returned by pop */
  size_t capacity;
};
void pred_ring_stats (struct pred_ring *r, struct pred_ring_stats *st);

#endif
