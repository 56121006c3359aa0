/* nbdshadow: a pool of large buffers (bufpool.h). */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "bufpool.h"

/* Under AddressSanitizer idle buffers are poisoned up to their link: a
 * use after bufpool_put is reported as it would be after free (their
 * user's header too: a reference dropped on an idle wlog_data), and a
 * buffer put back while poisoned was put back twice.
 */
#ifdef BUFPOOL_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION ((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION ((p), (n))
#define IS_POISONED(p) __asan_address_is_poisoned (p)
#else
#define POISON(p, n) ((void) (p), (void) (n))
#define UNPOISON(p, n) ((void) (p), (void) (n))
#define IS_POISONED(p) ((void) (p), 0)
#endif

#include "lockutil.h"

#define NR_CLASSES 11           /* 64 KiB << 0 .. 64 KiB << 10 = 64 MiB */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* Guarded by lock: */
static void *idle[NR_CLASSES];  /* LIFO: the warmest first */
static size_t idle_bytes;
static size_t limit = BUFPOOL_DEFAULT_LIMIT;
static bool taken_since_tick;
static uint64_t nr_reused, nr_allocated;

static size_t
class_cap (unsigned k)
{
  return (BUFPOOL_MIN_CLASS << k) + BUFPOOL_HEADROOM;
}

/* The class that holds size bytes, or -1 for none. */
static int
class_of (size_t size)
{
  unsigned k;

  if (size < BUFPOOL_MIN_CLASS)
    return -1;
  for (k = 0; k < NR_CLASSES; k++)
    if (size <= class_cap (k))
      return (int) k;
  return -1;
}

/* An idle buffer's link to the next of its class: in its last bytes,
 * so that its first (its user's header) can stay poisoned.  A class's
 * size is a multiple of 8: the link is aligned.
 */
static void **
link_of (void *p, unsigned k)
{
  return (void **) ((char *) p + class_cap (k) - sizeof (void *));
}

static void
free_list (void *p, unsigned k)
{
  while (p != NULL) {
    void *next = *link_of (p, k);

    free (p);
    p = next;
  }
}

void *
bufpool_get (size_t size, size_t *cap)
{
  int k = class_of (size);
  void *b = NULL, *p;

  if (k >= 0) {
    mutex_lock (&lock);
    if (limit > 0) {
      taken_since_tick = true;
      b = idle[k];
      if (b != NULL) {
        idle[k] = *link_of (b, k);
        idle_bytes -= class_cap (k);
        nr_reused++;
      }
      else
        nr_allocated++;
    }
    else
      k = -1;                   /* the pool is off */
    mutex_unlock (&lock);
  }
  if (b != NULL) {
    UNPOISON (b, class_cap (k) - sizeof (void *));
    *cap = class_cap (k);
    return b;
  }
  p = malloc (k >= 0 ? class_cap (k) : size);
  if (p == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  *cap = k >= 0 ? class_cap (k) : 0;
  return p;
}

void
bufpool_put (void *p, size_t cap)
{
  int k = cap > 0 ? class_of (cap) : -1;

  if (p == NULL)
    return;
  assert (cap == 0 || (k >= 0 && cap == class_cap (k)));
  if (k >= 0 && IS_POISONED (p)) {
    fprintf (stderr, "nbdshadow: bufpool: buffer %p of %zu bytes put back "
             "twice\n", p, cap);
    abort ();
  }
  if (k >= 0) {
    mutex_lock (&lock);
    if (idle_bytes + cap <= limit) {
      *link_of (p, k) = idle[k];
      idle[k] = p;
      idle_bytes += cap;
      POISON (p, cap - sizeof (void *));
      p = NULL;
    }
    mutex_unlock (&lock);
  }
  free (p);
}

/* Detach every idle list (lock held); the caller frees them unlocked. */
static void
take_all (void *out[NR_CLASSES])
{
  unsigned k;

  for (k = 0; k < NR_CLASSES; k++) {
    out[k] = idle[k];
    idle[k] = NULL;
  }
  idle_bytes = 0;
}

static void
free_all (void *lists[NR_CLASSES])
{
  unsigned k;

  for (k = 0; k < NR_CLASSES; k++)
    free_list (lists[k], k);
}

void
bufpool_tick (void)
{
  void *lists[NR_CLASSES] = { NULL };

  mutex_lock (&lock);
  if (!taken_since_tick)
    take_all (lists);
  taken_since_tick = false;
  mutex_unlock (&lock);
  free_all (lists);
}

void
bufpool_set_limit (size_t bytes)
{
  void *lists[NR_CLASSES] = { NULL };

  mutex_lock (&lock);
  limit = bytes;
  if (idle_bytes > limit)
    take_all (lists);
  mutex_unlock (&lock);
  free_all (lists);
}

void
bufpool_drain (void)
{
  void *lists[NR_CLASSES];

  mutex_lock (&lock);
  take_all (lists);
  mutex_unlock (&lock);
  free_all (lists);
}

void
bufpool_stats (struct bufpool_stats *out)
{
  mutex_lock (&lock);
  out->reused = nr_reused;
  out->allocated = nr_allocated;
  out->idle_bytes = idle_bytes;
  out->limit = limit;
  mutex_unlock (&lock);
}
