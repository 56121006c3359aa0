/* nbdshadow tests: a shadow with a volatile write cache.
 *
 *   nbdkit --filter=.../nbdkit-volatile-filter.so file shadow.img
 *
 * Writes stay in this filter's memory until a flush (or a FUA write)
 * writes them down to the plugin, the way a drive's write cache holds
 * data until a cache flush.  kill -9 of this nbdkit therefore loses every
 * unflushed write: a power cut.  With it the crash tests check that the
 * filter records a block resident only after the shadow flushed it; with
 * a plain file shadow, killing the server would lose nothing (the page
 * cache survives the process) and the order would go untested.
 *
 * volatile-slow-even-ms=N: a write whose first byte is even waits N ms
 * before it applies (outside the lock), so that a test can make an
 * older write land after a newer one that overlaps it, on purpose: a
 * client that rewrites a range with patterns 0x76 then 0x77 gets 0x76
 * last unless the sender waits for the first write before sending the
 * second (the filter's replay of its write log must).
 *
 * Test code: one mutex serialises everything, pages are 4K, found by a
 * small hash table.
 */

#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#define PAGE 4096
#define BUCKETS 4096

struct page {
  uint64_t idx;
  struct page *next;
  char data[PAGE];
};

static unsigned slow_even_ms;           /* set by .config only */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct page *table[BUCKETS];     /* guarded by lock */
static uint64_t nr_pages;               /* guarded by lock */

static struct page **
bucket (uint64_t idx)
{
  return &table[(idx * 0x9E3779B97F4A7C15ULL) >> 52 & (BUCKETS - 1)];
}

static struct page *
find_page (uint64_t idx)
{
  struct page *p;

  for (p = *bucket (idx); p; p = p->next)
    if (p->idx == idx)
      return p;
  return NULL;
}

/* Bytes of page idx inside the export. */
static uint32_t
page_len (nbdkit_next *next, uint64_t idx)
{
  int64_t size = next->get_size (next);
  uint64_t start = idx * PAGE;

  return size - start < PAGE ? size - start : PAGE;
}

/* The cached page, read from the plugin on first use. */
static struct page *
get_page (nbdkit_next *next, uint64_t idx, int *err)
{
  struct page *p = find_page (idx);

  if (p)
    return p;
  p = calloc (1, sizeof *p);
  if (p == NULL) {
    *err = ENOMEM;
    return NULL;
  }
  p->idx = idx;
  if (next->pread (next, p->data, page_len (next, idx), idx * PAGE, 0,
                   err) == -1) {
    free (p);
    return NULL;
  }
  p->next = *bucket (idx);
  *bucket (idx) = p;
  nr_pages++;
  return p;
}

/* Write every cached page down and flush the plugin.  Caller holds lock. */
static int
write_back (nbdkit_next *next, int *err)
{
  size_t b;

  for (b = 0; b < BUCKETS; ++b) {
    while (table[b]) {
      struct page *p = table[b];

      if (next->pwrite (next, p->data, page_len (next, p->idx),
                        p->idx * PAGE, 0, err) == -1)
        return -1;
      table[b] = p->next;
      free (p);
      nr_pages--;
    }
  }
  /* nbdkit wants the context asked before it is flushed. */
  if (next->can_flush (next) != 1)
    return 0;
  return next->flush (next, 0, err);
}

static int
volatile_pread (nbdkit_next *next, void *handle, void *buf, uint32_t count,
                uint64_t offset, uint32_t flags, int *err)
{
  char *out = buf;
  int r;

  pthread_mutex_lock (&lock);
  r = next->pread (next, buf, count, offset, 0, err);
  while (r == 0 && count > 0) {
    uint64_t idx = offset / PAGE, in = offset % PAGE;
    uint32_t n = PAGE - in < count ? PAGE - in : count;
    struct page *p = find_page (idx);

    if (p)
      memcpy (out, p->data + in, n);
    out += n;
    offset += n;
    count -= n;
  }
  pthread_mutex_unlock (&lock);
  return r;
}

static int
volatile_pwrite (nbdkit_next *next, void *handle, const void *buf,
                 uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  const char *in_buf = buf;
  int r = 0;

  if (slow_even_ms > 0 && count > 0 && in_buf[0] % 2 == 0) {
    struct timespec ts = { slow_even_ms / 1000,
                           (long) (slow_even_ms % 1000) * 1000000 };
    while (nanosleep (&ts, &ts) == -1 && errno == EINTR)
      ;
  }
  pthread_mutex_lock (&lock);
  while (count > 0) {
    uint64_t idx = offset / PAGE, in = offset % PAGE;
    uint32_t n = PAGE - in < count ? PAGE - in : count;
    struct page *p = get_page (next, idx, err);

    if (p == NULL) {
      r = -1;
      break;
    }
    memcpy (p->data + in, in_buf, n);
    in_buf += n;
    offset += n;
    count -= n;
  }
  if (r == 0 && (flags & NBDKIT_FLAG_FUA))
    r = write_back (next, err);
  pthread_mutex_unlock (&lock);
  return r;
}

static int
volatile_config (nbdkit_next_config *next, nbdkit_backend *nxdata,
                 const char *key, const char *value)
{
  if (strcmp (key, "volatile-slow-even-ms") == 0) {
    if (nbdkit_parse_unsigned (key, value, &slow_even_ms) == -1)
      return -1;
    return 0;
  }
  return next (nxdata, key, value);
}

static int
volatile_flush (nbdkit_next *next, void *handle, uint32_t flags, int *err)
{
  int r;

  pthread_mutex_lock (&lock);
  r = write_back (next, err);
  pthread_mutex_unlock (&lock);
  return r;
}

static int
volatile_can_fua (nbdkit_next *next, void *handle)
{
  return NBDKIT_FUA_NATIVE;
}

static int
volatile_can_flush (nbdkit_next *next, void *handle)
{
  return 1;
}

static int
volatile_can_zero (nbdkit_next *next, void *handle)
{
  return NBDKIT_ZERO_EMULATE;   /* zeroes arrive as writes */
}

static int
volatile_can_trim (nbdkit_next *next, void *handle)
{
  return 0;
}

static int
volatile_can_extents (nbdkit_next *next, void *handle)
{
  return 0;
}

static int
volatile_can_cache (nbdkit_next *next, void *handle)
{
  return NBDKIT_CACHE_NONE;
}

static int
volatile_can_multi_conn (nbdkit_next *next, void *handle)
{
  return 1;                     /* one cache for every connection */
}

static struct nbdkit_filter filter = {
  .name = "volatile",
  .longname = "nbdshadow test filter: a volatile write cache",
  .config = volatile_config,
  .pread = volatile_pread,
  .pwrite = volatile_pwrite,
  .flush = volatile_flush,
  .can_fua = volatile_can_fua,
  .can_flush = volatile_can_flush,
  .can_zero = volatile_can_zero,
  .can_trim = volatile_can_trim,
  .can_extents = volatile_can_extents,
  .can_cache = volatile_can_cache,
  .can_multi_conn = volatile_can_multi_conn,
};

NBDKIT_REGISTER_FILTER (filter)
