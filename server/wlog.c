/* nbdshadow: the unflushed write log of a shadow (wlog.h). */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bufpool.h"
#include "wlog.h"

void
wlog_init (struct wlog *l, unsigned id)
{
  assert (id < 32);
  l->id = id;
  l->head = NULL;
  l->tail = &l->head;
  l->last_seq = 0;
  l->bytes = 0;
  l->entries = 0;
  l->fail_seq = 0;
}

/* A whole number of pages of data fits a pool class. */
_Static_assert (sizeof (struct wlog_data) <= BUFPOOL_HEADROOM,
                "a wlog_data header fits the pool's headroom");

struct wlog_data *
wlog_data_new (uint64_t size)
{
  struct wlog_data *d;
  size_t cap;

  if (size > SIZE_MAX - sizeof *d ||
      (d = bufpool_get (sizeof *d + size, &cap)) == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  d->cap = cap;
  atomic_init (&d->refs, 1);
  d->size = size;
  d->charged = 0;
  return d;
}

uint64_t
wlog_data_footprint (const struct wlog_data *d)
{
  return d->cap > 0 ? d->cap : sizeof *d + d->size;
}

struct wlog_data *
wlog_data_copy (const void *src, uint64_t size)
{
  struct wlog_data *d = wlog_data_new (size);

  if (d != NULL)
    memcpy (d->bytes, src, size);
  return d;
}

struct wlog_data *
wlog_data_get (struct wlog_data *d)
{
  atomic_fetch_add_explicit (&d->refs, 1, memory_order_relaxed);
  return d;
}

/* The last reference may be dropped on another thread than the one that
 * wrote the bytes or took a reference: acquire-release orders them.
 */
void
wlog_data_put (struct wlog_data *d)
{
  if (d != NULL &&
      atomic_fetch_sub_explicit (&d->refs, 1, memory_order_acq_rel) == 1)
    bufpool_put (d, d->cap);
}

int
wlog_append (struct wlog *l, enum shadow_op op, uint32_t flags,
             uint64_t offset, uint64_t count,
             struct wlog_data *shared, const void *data)
{
  struct wlog_entry *en;

  assert (op == SHADOW_WRITE || op == SHADOW_ZERO || op == SHADOW_TRIM);
  assert (op != SHADOW_WRITE || data != NULL);
  assert (shared == NULL ||
          ((const char *) data >= shared->bytes &&
           (const char *) data + count <= shared->bytes + shared->size));
  ++l->last_seq;                /* consumed even on failure (wlog.h) */
  en = l->last_seq == l->fail_seq ? NULL : malloc (sizeof *en);
  if (en == NULL) {
    errno = ENOMEM;
    return -1;
  }
  en->shared = NULL;
  en->data = NULL;
  if (op == SHADOW_WRITE) {
    if (shared != NULL) {
      en->shared = wlog_data_get (shared);
      en->data = data;
    }
    else if ((en->shared = wlog_data_copy (data, count)) == NULL) {
      free (en);
      return -1;
    }
    else
      en->data = en->shared->bytes;
  }
  en->charge = sizeof *en;
  if (en->shared != NULL && !(en->shared->charged & (1u << l->id))) {
    en->shared->charged |= 1u << l->id;
    en->charge += wlog_data_footprint (en->shared);
  }
  en->next = NULL;
  en->seq = l->last_seq;
  en->op = op;
  en->flags = flags;
  en->offset = offset;
  en->count = count;
  *l->tail = en;
  l->tail = &en->next;
  l->bytes += en->charge;
  l->entries++;
  return 0;
}

void
wlog_trim (struct wlog *l, uint64_t upto)
{
  struct wlog_entry *en;

  while ((en = l->head) != NULL && en->seq <= upto) {
    l->head = en->next;
    l->bytes -= en->charge;
    l->entries--;
    wlog_data_put (en->shared);
    free (en);
  }
  if (l->head == NULL)
    l->tail = &l->head;
}

void
wlog_free (struct wlog *l)
{
  wlog_trim (l, UINT64_MAX);
}
