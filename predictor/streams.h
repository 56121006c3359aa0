/* streams.h: detection of interleaved sequential streams.
 *
 * Why it exists: several clients (or threads of one client) reading
 * sequentially at the same time produce an access stream in which no
 * two consecutive accesses are adjacent, although each client's own
 * accesses are.  Deltas between consecutive accesses are then noise;
 * deltas within a stream are the signal.  This table assigns each access
 * to the stream it continues, or starts a new one.
 *
 * An access starting at block b continues stream s when
 *   s.next - back <= b <= s.next + fwd
 * (s.next = the block after s's last access); the closest stream at or
 * ahead of its next block wins, else the closest one behind, the most
 * recently used on ties.  Otherwise it starts a new
 * stream in a free slot or in the least recently used one; the new
 * stream's `parent` is the stream of the previous access, so that a
 * single client jumping around keeps one chain of context.
 *
 * Bounds: exactly `nslots` streams (PRED_STREAMS_MAX at most), fixed at
 * creation; a random flood only recycles slots.
 */
#ifndef NBDSHADOW_PRED_STREAMS_H
#define NBDSHADOW_PRED_STREAMS_H

#include <stdbool.h>
#include <stdint.h>

#define PRED_STREAMS_MAX 256

struct pred_stream {
  uint64_t next;                /* block after the last access */
  uint64_t last_block;          /* first block of the last access */
  uint64_t last_seq;            /* access number of the last use (LRU) */
  uint64_t accesses;            /* accesses assigned since the slot was (re)used */
  uint64_t born_seq;
  bool used;
};

struct pred_streams {
  unsigned nslots;
  uint32_t fwd, back;
  int last_slot;                /* slot of the previous access, -1 at start */
  uint64_t seq;
  struct pred_stream s[PRED_STREAMS_MAX];
};

/* Result of assigning one access. */
struct pred_stream_match {
  unsigned slot;
  bool is_new;
  int parent;                   /* new stream: previous access's slot or -1 */
  uint64_t ref;                 /* block the delta is measured from */
  bool have_ref;                /* false only for the very first access */
};

void pred_streams_init (struct pred_streams *st, unsigned nslots,
                        uint32_t fwd, uint32_t back);
/* Assign the access [block, block + nblocks) and update the table. */
void pred_streams_assign (struct pred_streams *st, uint64_t block,
                          uint32_t nblocks, struct pred_stream_match *m);
/* The slot an access starting at block would continue (no change to
 * the table), or -1 if it would start a new stream. */
int pred_streams_match (const struct pred_streams *st, uint64_t block);
/* The stream an access [first, last] belongs to, if that stream's
 * previous access covered all of it (a repeat); else -1. */
int pred_streams_find_repeat (const struct pred_streams *st, uint64_t first,
                              uint64_t last);
/* Count an access to slot without moving the stream (a repeat). */
void pred_streams_touch (struct pred_streams *st, unsigned slot);
/* Streams used within the last `window` accesses. */
unsigned pred_streams_active (const struct pred_streams *st, uint64_t window);

#endif
