/* nbdshadow: the writes a shadow acknowledged but has not flushed yet.
 *
 * A shadow server may lose acknowledged writes it had not flushed when
 * it crashes or its machine loses power: that is what a flush is for.
 * The filter hides such a crash from its clients (it reconnects and goes
 * on), so it must also undo the loss: after a lost connection the engine
 * writes again, in their order, every write the shadow acknowledged
 * since its last flush, before anything else is sent to it.  Without
 * this, a block copied (or written by a client) just before the crash
 * would read back old data, and the next commit's flush, on the new
 * connection, would make the journal call it durable.
 *
 * The log keeps each acknowledged write, zero and trim of one shadow,
 * with a copy of the data, in the order the shadow completed them.  A
 * flush that succeeds drops the entries completed before it was sent.
 * The engine bounds its size by flushing early (engine-loss.c).
 *
 * The data is kept in a reference-counted buffer (wlog_data) shared by
 * every shadow and every command the write was split into.  The copier
 * reads the origin into such a buffer and hands it over with the write
 * (shadow_io.buf_ref), so its data is never copied; other writes are
 * copied by the thread that submits them (engine_submit), not by the
 * engine thread, which also completes every client read: copying
 * gigabytes there made clients wait (bench/results-migrate.md).  (The
 * engine thread copies only if that copy could not be allocated.)
 *
 * An entry may refer to a few blocks of a large buffer (a copy whose
 * other blocks were zeroes), yet it keeps all of it: so a log is charged
 * for a whole buffer, once, by the first entry that refers to it, and
 * the cap bounds the memory really kept.
 *
 * Buffers of 64 KiB and more come from a pool (bufpool.h) and go back to
 * it: malloc would give such sizes back to the kernel, and faulting
 * fresh pages in for every copy cost more CPU than the copy on some
 * machines.  A pooled buffer is rounded up to its class, and its pages,
 * once used, stay: the log is charged for the whole class
 * (wlog_data_footprint).
 *
 * Locking: the log belongs to the engine thread.  A wlog_data's
 * reference count is atomic (the copier drops its reference on its own
 * thread); its bytes do not change once it is handed over.
 */

#ifndef NBDSHADOW_WLOG_H
#define NBDSHADOW_WLOG_H

#include <stdatomic.h>
#include <stdint.h>

#include "engine.h"

/* A copy of one write's data, shared by the log entries (and the io)
 * that refer to it.
 */
struct wlog_data {
  _Atomic unsigned refs;
  uint64_t size;
  unsigned charged;             /* bit i: log i was charged for it (engine
                                   thread only) */
  size_t cap;                   /* for bufpool_put */
  char bytes[];
};

/* A buffer of size bytes, not initialised, with one reference, or NULL
 * (errno = ENOMEM).
 */
extern struct wlog_data *wlog_data_new (uint64_t size);

/* The same, holding a copy of size bytes from src. */
extern struct wlog_data *wlog_data_copy (const void *src, uint64_t size);

/* The memory d holds: its class in the pool, or its header and data. */
extern uint64_t wlog_data_footprint (const struct wlog_data *d);

/* Take one more reference; returns d. */
extern struct wlog_data *wlog_data_get (struct wlog_data *d);

/* Drop a reference; the last frees it.  NULL is ignored. */
extern void wlog_data_put (struct wlog_data *d);

struct wlog_entry {
  struct wlog_entry *next;
  uint64_t seq;                 /* completion order, from 1 */
  enum shadow_op op;            /* SHADOW_WRITE, SHADOW_ZERO or SHADOW_TRIM */
  uint32_t flags;               /* shadow_io.flags */
  uint64_t offset, count;
  struct wlog_data *shared;     /* SHADOW_WRITE: holds data */
  const char *data;             /* count bytes in shared, for SHADOW_WRITE */
  uint64_t charge;              /* what it adds to wlog.bytes */
};

struct wlog {
  unsigned id;                  /* 0..31, distinct for each log */
  struct wlog_entry *head, **tail;
  uint64_t last_seq;            /* of the newest entry ever appended */
  uint64_t bytes;               /* data kept (whole buffers), plus entry
                                   overheads */
  uint64_t entries;
  /* Tests only: the append that takes this seq fails as if out of
   * memory (0: none), so that tests reach the path of a log with a gap
   * (engine_config.fail_log_append).
   */
  uint64_t fail_seq;
};

extern void wlog_init (struct wlog *l, unsigned id);

/* Append a completed update.  For SHADOW_WRITE, data is its count
 * bytes: inside shared, which the entry then references, or (shared
 * NULL) anywhere, and the log copies them.  Returns 0, or -1 with
 * errno = ENOMEM; a failed append still takes its seq (last_seq), so
 * that the caller can tell which flushes were sent after the update
 * that is missing from the log.
 */
extern int wlog_append (struct wlog *l, enum shadow_op op, uint32_t flags,
                        uint64_t offset, uint64_t count,
                        struct wlog_data *shared, const void *data);

/* A flush sent when last_seq was upto succeeded: drop what it covers. */
extern void wlog_trim (struct wlog *l, uint64_t upto);

extern void wlog_free (struct wlog *l);

#endif /* NBDSHADOW_WLOG_H */
