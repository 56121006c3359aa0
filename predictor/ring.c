/* ring.c: Vyukov bounded MPSC queue with an eventfd doorbell (ring.h). */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include "ring.h"

struct cell {
  _Atomic uint64_t seq;
  struct pred_access a;
};

struct pred_ring {
  size_t mask;
  struct cell *cells;
  int efd;
  /* Producers' side, on its own cache line. */
  alignas (64) _Atomic uint64_t tail;
  _Atomic uint64_t dropped;
  /* Consumer's side. */
  alignas (64) _Atomic uint64_t head;   /* written by the consumer only */
  _Atomic int sleeping;
};

struct pred_ring *
pred_ring_new (size_t capacity)
{
  size_t n = 2;
  struct pred_ring *r;

  if (capacity > (size_t) 1 << 24) {
    errno = EINVAL;
    return NULL;
  }
  while (n < capacity)
    n <<= 1;
  r = aligned_alloc (64, sizeof *r);
  if (!r)
    return NULL;
  memset (r, 0, sizeof *r);
  r->cells = calloc (n, sizeof *r->cells);
  if (!r->cells) {
    free (r);
    return NULL;
  }
  r->efd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (r->efd == -1) {
    int e = errno;
    free (r->cells);
    free (r);
    errno = e;
    return NULL;
  }
  r->mask = n - 1;
  for (size_t i = 0; i < n; i++)
    atomic_init (&r->cells[i].seq, i);
  atomic_init (&r->tail, 0);
  atomic_init (&r->head, 0);
  atomic_init (&r->dropped, 0);
  atomic_init (&r->sleeping, 0);
  return r;
}

void
pred_ring_free (struct pred_ring *r)
{
  if (!r)
    return;
  close (r->efd);
  free (r->cells);
  free (r);
}

static void
ring_bell (struct pred_ring *r)
{
  uint64_t one = 1;
  ssize_t n = write (r->efd, &one, sizeof one);   /* EAGAIN is fine */
  (void) n;
}

bool
pred_ring_push (struct pred_ring *r, const struct pred_access *a)
{
  uint64_t pos = atomic_load_explicit (&r->tail, memory_order_relaxed);
  struct cell *c;

  for (;;) {
    c = &r->cells[pos & r->mask];
    uint64_t seq = atomic_load_explicit (&c->seq, memory_order_acquire);
    int64_t diff = (int64_t) (seq - pos);
    if (diff == 0) {
      if (atomic_compare_exchange_weak_explicit (&r->tail, &pos, pos + 1,
                                                 memory_order_relaxed,
                                                 memory_order_relaxed))
        break;
      /* pos was reloaded by the failed CAS */
    }
    else if (diff < 0) {
      /* The consumer has not freed this cell yet: full. */
      atomic_fetch_add_explicit (&r->dropped, 1, memory_order_relaxed);
      return false;
    }
    else
      pos = atomic_load_explicit (&r->tail, memory_order_relaxed);
  }
  c->a = *a;
  atomic_store_explicit (&c->seq, pos + 1, memory_order_release);

  /* Dekker pairing with pred_ring_wait: publish, then look at the flag. */
  atomic_thread_fence (memory_order_seq_cst);
  if (atomic_load_explicit (&r->sleeping, memory_order_relaxed))
    ring_bell (r);
  return true;
}

static bool
ring_ready (struct pred_ring *r)
{
  uint64_t pos = atomic_load_explicit (&r->head, memory_order_relaxed);
  struct cell *c = &r->cells[pos & r->mask];
  return atomic_load_explicit (&c->seq, memory_order_acquire) == pos + 1;
}

bool
pred_ring_pop (struct pred_ring *r, struct pred_access *a)
{
  uint64_t pos = atomic_load_explicit (&r->head, memory_order_relaxed);
  struct cell *c = &r->cells[pos & r->mask];

  if (atomic_load_explicit (&c->seq, memory_order_acquire) != pos + 1)
    return false;
  *a = c->a;
  atomic_store_explicit (&c->seq, pos + r->mask + 1, memory_order_release);
  atomic_store_explicit (&r->head, pos + 1, memory_order_relaxed);
  return true;
}

void
pred_ring_wait (struct pred_ring *r, int timeout_ms)
{
  struct pollfd pfd = { .fd = r->efd, .events = POLLIN };
  uint64_t v;

  atomic_store_explicit (&r->sleeping, 1, memory_order_relaxed);
  atomic_thread_fence (memory_order_seq_cst);
  if (!ring_ready (r))
    (void) poll (&pfd, 1, timeout_ms);
  atomic_store_explicit (&r->sleeping, 0, memory_order_relaxed);
  /* Drain the doorbell. */
  ssize_t n = read (r->efd, &v, sizeof v);
  (void) n;
}

void
pred_ring_wake (struct pred_ring *r)
{
  ring_bell (r);
}

void
pred_ring_stats (struct pred_ring *r, struct pred_ring_stats *st)
{
  uint64_t tail = atomic_load_explicit (&r->tail, memory_order_relaxed);
  st->pushed = tail;
  st->dropped = atomic_load_explicit (&r->dropped, memory_order_relaxed);
  st->popped = atomic_load_explicit (&r->head, memory_order_relaxed);
  st->capacity = r->mask + 1;
}
