/* nbdshadow: which blocks of the volume are on the shadow.
 *
 * Per-block state (DESIGN §4): absent, resident (copied from the origin)
 * or resident+written (a client wrote it through the filter).  Verify
 * must skip client-written blocks in shadow-writes=shadow mode, so the
 * two resident kinds are kept apart: two sparse sets, written being a
 * subset of resident.
 *
 * Every mark is also appended to a pending list.  The commit (commit.c)
 * freezes that list, flushes the shadows, and only then makes the marks
 * durable in the journal: this is the one place where residency becomes
 * durable.
 *
 * Blocks never become absent again once resident (rangelock.h relies on
 * it), except by residency_forget, which is for tests and state reset.
 *
 * Locking: r->lock guards both sets and the pending list.  Callers need no
 * lock of their own; the answers may be stale by the time they are used,
 * which the range locks make harmless.
 */

#ifndef NBDSHADOW_RESIDENCY_H
#define NBDSHADOW_RESIDENCY_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blockset.h"

enum mark_kind {
  MARK_COPIED = 1,              /* absent -> resident */
  MARK_WRITTEN = 2,             /* -> resident + written by a client */
};

struct mark {
  uint64_t first, count;        /* blocks */
  enum mark_kind kind;
};

/* A growable list of marks. */
struct mark_list {
  struct mark *v;
  size_t len, cap;
};

struct residency {
  uint64_t size;                /* volume size in bytes */
  uint32_t block_size;          /* power of two */
  unsigned block_shift;
  uint64_t nr_blocks;           /* ceil (size / block_size) */

  pthread_mutex_t lock;         /* guards everything below */
  struct blockset *resident;
  struct blockset *written;
  struct mark_list pending;     /* marks not yet handed to a commit */
};

extern struct residency *residency_new (uint64_t size, uint32_t block_size);
extern void residency_free (struct residency *r);

/* Block arithmetic. */
static inline uint64_t
residency_block_of (const struct residency *r, uint64_t offset)
{
  return offset >> r->block_shift;
}

static inline uint64_t
residency_block_offset (const struct residency *r, uint64_t blk)
{
  return blk << r->block_shift;
}

/* Bytes in block blk (the last block may be partial). */
extern uint32_t residency_block_bytes (const struct residency *r, uint64_t blk);

extern bool residency_is_resident (struct residency *r, uint64_t blk);
extern bool residency_is_written (struct residency *r, uint64_t blk);

/* Is any block of [first, first+count) absent? */
extern bool residency_any_absent (struct residency *r,
                                  uint64_t first, uint64_t count);

/* Is any block of [first, first+count) resident but not written? */
extern bool residency_any_unwritten (struct residency *r,
                                     uint64_t first, uint64_t count);

/* The end of the run of blocks that share blk's state, no further than
 * limit; *resident receives that state.
 */
extern uint64_t residency_run_end (struct residency *r, uint64_t blk,
                                   uint64_t limit, bool *resident);

/* The end of the run of blocks that share blk's written flag, no further
 * than limit; *written receives it.
 */
extern uint64_t residency_written_run_end (struct residency *r, uint64_t blk,
                                           uint64_t limit, bool *written);

/* First absent block >= from, or nr_blocks. */
extern uint64_t residency_next_absent (struct residency *r, uint64_t from);

/* Mark [first, first+count) resident (MARK_COPIED) or resident+written
 * (MARK_WRITTEN), and queue the mark for the next commit.  Returns 0, or
 * -1 with errno (ENOMEM) and the blocks not marked.
 */
extern int residency_mark (struct residency *r, uint64_t first,
                           uint64_t count, enum mark_kind kind);

/* Hand the pending marks to a commit (the list is moved into *out and
 * emptied); residency_unfreeze gives them back after a failed commit.
 */
extern void residency_freeze (struct residency *r, struct mark_list *out);
extern int residency_unfreeze (struct residency *r, struct mark_list *marks);
extern bool residency_has_pending (struct residency *r);

/* Apply marks without queueing them (loading persisted state). */
extern int residency_load_mark (struct residency *r, const struct mark *m);

extern uint64_t residency_count_resident (struct residency *r);
extern uint64_t residency_count_written (struct residency *r);
extern size_t residency_memory (struct residency *r);

/* Call fn on each run of resident (or written, if written_only) blocks. */
extern int residency_foreach_run (struct residency *r, bool written_only,
                                  blockset_run_fn fn, void *opaque);

/* Mark lists. */
extern int mark_list_append (struct mark_list *l, uint64_t first,
                             uint64_t count, enum mark_kind kind);
extern void mark_list_free (struct mark_list *l);

#endif /* NBDSHADOW_RESIDENCY_H */
