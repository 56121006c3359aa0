/* nbdshadow: a pool of large buffers (bufpool.h). */

#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

/* Under AddressSanitizer idle buffers are poisoned past their link: a
 * use after bufpool_put is reported as it would be after free, and a
 * buffer put back while poisoned was put back twice.
 */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION ((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION ((p), (n))
#define IS_POISONED(p) __asan_address_is_poisoned (p)
#else
#define POISON(p, n) ((void) (p), (void) (n))
#define UNPOISON(p, n) ((void) (p), (void) (n))
#define IS_POISONED(p) ((void) (p), 0)
#endif

#include "bufpool.h"
#include "lockutil.h"

#define NR_CLASSES 11           /* 64 KiB << 0 .. 64 KiB << 10 = 64 MiB */

/* An idle buffer: its first bytes link it into its class's list. */
struct idle_buf {
  struct idle_buf *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* Guarded by lock: */
static struct idle_buf *idle[NR_CLASSES];   /* LIFO: the warmest first */
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

static void
free_list (struct idle_buf *b)
{
  while (b != NULL) {
    struct idle_buf *next = b->next;

    free (b);
    b = next;
  }
}

void *
bufpool_get (size_t size, size_t *cap)
{
  int k = class_of (size);
  struct idle_buf *b = NULL;
  void *p;

  if (k >= 0) {
    mutex_lock (&lock);
    if (limit > 0) {
      taken_since_tick = true;
      b = idle[k];
      if (b != NULL) {
        idle[k] = b->next;
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
    UNPOISON ((char *) b + sizeof *b, class_cap (k) - sizeof *b);
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
  struct idle_buf *b = p;

  if (p == NULL)
    return;
  if (k >= 0 && IS_POISONED ((char *) p + sizeof *b)) {
    fprintf (stderr, "nbdshadow: bufpool: buffer %p of %zu bytes put back "
             "twice\n", p, cap);
    abort ();
  }
  if (k >= 0) {
    mutex_lock (&lock);
    if (idle_bytes + cap <= limit) {
      b->next = idle[k];
      idle[k] = b;
      idle_bytes += cap;
      POISON ((char *) b + sizeof *b, cap - sizeof *b);
      b = NULL;
    }
    mutex_unlock (&lock);
  }
  free (b);
}

/* Detach every idle list (lock held); the caller frees them unlocked. */
static void
take_all (struct idle_buf *out[NR_CLASSES])
{
  unsigned k;

  for (k = 0; k < NR_CLASSES; k++) {
    out[k] = idle[k];
    idle[k] = NULL;
  }
  idle_bytes = 0;
}

static void
free_all (struct idle_buf *lists[NR_CLASSES])
{
  unsigned k;

  for (k = 0; k < NR_CLASSES; k++)
    free_list (lists[k]);
}

void
bufpool_tick (void)
{
  struct idle_buf *lists[NR_CLASSES] = { NULL };

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
  struct idle_buf *lists[NR_CLASSES] = { NULL };

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
  struct idle_buf *lists[NR_CLASSES];

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
