/* nbdshadow: persistent residency (shadow-state=DIR), DESIGN §3.4.
 *
 * A proxy that forgets which blocks are on the shadow either copies
 * everything again or, worse, serves stale origin data for blocks that
 * clients already rewrote on the shadow.  So residency is persisted, and
 * persisted in the right order: commit.c makes marks durable here only
 * after every shadow has flushed them.
 *
 * On disk, in DIR:
 *   snapshot   header (magic, format version, origin size, block size,
 *              identity of the shadow set, phase, generation) and the
 *              runs of resident and client-written blocks, with a
 *              checksum; replaced atomically (write, fsync, rename,
 *              fsync DIR)
 *   journal    header (same identity, generation) then append-only
 *              batches, one per commit, each with its own checksum;
 *              a torn or corrupt tail batch is ignored and cut off
 *   lock       flock()ed while a filter uses DIR
 *
 * Three kinds of journal entries:
 *   resident   blocks copied to the shadow (MARK_COPIED)
 *   written    blocks written by a client (MARK_WRITTEN): resident too
 *   intent     "a client is about to write these resident blocks": the
 *              written flag alone, appended and synced BEFORE the client's
 *              data reaches the shadow, so that verify can never revert a
 *              client write that survived a crash.  An intent does not
 *              make a block resident: at load, written = (written and
 *              intent flags) intersected with resident.
 * and the phase.
 *
 * Compaction writes a new snapshot from the durable sets this module
 * keeps (never from the in-memory residency, which holds marks that are
 * not durable yet), then starts an empty journal of the next generation.
 * At every instant DIR holds a valid state: a journal older than the
 * snapshot is ignored, since the snapshot contains all of it.
 *
 * Thread safety: every function takes the state's own mutex.
 */

#ifndef NBDSHADOW_STATE_H
#define NBDSHADOW_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "residency.h"

#define STATE_PHASE_COPYING 0   /* same values as enum phase (volume.h) */

struct state;

/* What the state belongs to.  A state made for another origin size,
 * block size or shadow set is refused.
 */
struct state_identity {
  uint64_t size;
  uint32_t block_size;
  const char *const *uris;      /* the shadow= URIs, in any order */
  size_t nr_uris;
};

/* What loading found, for the start-up message and status. */
struct state_load_info {
  bool created;                 /* DIR had no state: a new one was made */
  int phase;                    /* enum phase */
  uint64_t resident_blocks, written_blocks;
  uint64_t batches_replayed;
  bool torn_tail;               /* a bad tail batch was ignored and cut */
  uint64_t torn_bytes;
};

/* Open (creating DIR and a new state if there is none) and load into r,
 * which must be empty and sized for id.  On any error, report one clear
 * line naming DIR and the problem (corrupt header, mismatched size,
 * block size or shadows, locked by another process, I/O error), leave
 * the files untouched and return NULL with errno: EBUSY (locked), EINVAL
 * (another origin size, block size or shadow set), ENOTSUP (a newer
 * format), EUCLEAN (corrupt), or the failed syscall's.  r may then hold
 * part of the state: discard it.
 *
 * Repairs that a crash explains are made, and only once everything was
 * read and checked: a torn journal tail is cut off, a stale journal (a
 * compaction interrupted after its new snapshot) or a missing one (a
 * creation interrupted) is replaced by an empty one, left over *.tmp
 * files are removed.  The on-disk format and the crash-safety argument
 * are in state.c and nbdshadow-state(5).
 */
extern struct state *state_open (const char *dir,
                                 const struct state_identity *id,
                                 struct residency *r,
                                 struct state_load_info *info);

/* Append the marks of one commit as one batch and fdatasync.  Only
 * called after the shadows flushed them.  0, or -1 with errno.
 *
 * All or nothing as far as the caller can tell: on -1 nothing of m is
 * in the durable sets (a later compaction will not write it), the
 * caller keeps the marks and retries, and the next append first cuts
 * off what the failed one may have left in the journal.  (Should the
 * machine crash before that, the partial batch is a torn tail, and a
 * complete one is harmless: its blocks were flushed.)  Marks outside
 * the volume are refused with EINVAL before anything is written.
 */
extern int state_append_marks (struct state *s, const struct mark_list *m);

/* Append and sync a written-intent for blocks [first, first+count).
 * 0, or -1 with errno.  The flag outlives compaction even for blocks
 * that are not resident yet: if they become resident later, they load
 * as written.
 */
extern int state_append_intent (struct state *s, uint64_t first,
                                uint64_t count);

/* Record the phase (0 copying .. 4 done, enum phase) durably; carried
 * into the snapshot by compaction.  0, or -1 with errno (EINVAL for an
 * unknown phase).
 */
extern int state_set_phase (struct state *s, int phase);

/* Compact if the journal has grown past twice the snapshot (and a
 * minimum size, 1 MiB).  0 if done or not needed, -1 with errno on
 * failure (the old state is still valid then, and appends go on: a
 * compaction that failed after its new snapshot was in place is
 * finished by the next append or call; one that failed before is tried
 * again once the journal has grown by as much again, so that a full
 * disk is not rewritten a snapshot at every commit).  Takes the time of
 * writing the
 * whole snapshot, with the state's mutex held: call it from the
 * committer, after an append, not from a client's path.
 */
extern int state_maybe_compact (struct state *s);

struct state_stats {
  uint64_t journal_bytes, snapshot_bytes;
  uint64_t batches_appended, intents_appended, compactions;
};
extern void state_get_stats (struct state *s, struct state_stats *out);

/* Release the lock, close the files, free. */
extern void state_close (struct state *s);

#endif /* NBDSHADOW_STATE_H */
