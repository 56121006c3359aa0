/* nbdshadow: the unflushed write log of a shadow (wlog.h). */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wlog.h"

void
wlog_init (struct wlog *l)
{
  l->head = NULL;
  l->tail = &l->head;
  l->last_seq = 0;
  l->bytes = 0;
  l->entries = 0;
}

static uint64_t
entry_bytes (const struct wlog_entry *en)
{
  return sizeof *en + (en->op == SHADOW_WRITE ? en->count : 0);
}

int
wlog_append (struct wlog *l, enum shadow_op op, uint32_t flags,
             uint64_t offset, uint64_t count, const void *data)
{
  size_t extra = op == SHADOW_WRITE ? count : 0;
  struct wlog_entry *en;

  assert (op == SHADOW_WRITE || op == SHADOW_ZERO || op == SHADOW_TRIM);
  assert (op != SHADOW_WRITE || data != NULL);
  ++l->last_seq;                /* consumed even on failure (wlog.h) */
  en = malloc (sizeof *en + extra);
  if (en == NULL) {
    errno = ENOMEM;
    return -1;
  }
  en->next = NULL;
  en->seq = l->last_seq;
  en->op = op;
  en->flags = flags;
  en->offset = offset;
  en->count = count;
  if (extra)
    memcpy (en->data, data, extra);
  *l->tail = en;
  l->tail = &en->next;
  l->bytes += entry_bytes (en);
  l->entries++;
  return 0;
}

void
wlog_trim (struct wlog *l, uint64_t upto)
{
  struct wlog_entry *en;

  while ((en = l->head) != NULL && en->seq <= upto) {
    l->head = en->next;
    l->bytes -= entry_bytes (en);
    l->entries--;
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
