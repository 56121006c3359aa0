/* nbdshadow: commits, the one place where residency becomes durable.
 *
 * DESIGN §4: a block may be recorded resident only after its shadow data
 * is durable.  A commit therefore
 *
 *   1. freezes the pending marks (residency_freeze),
 *   2. flushes every shadow,
 *   3. hands the frozen marks to the persistence hook (journal append +
 *      fsync; nothing when the state is volatile),
 *
 * and on any failure gives the marks back so that a later commit retries
 * them.  dm-clone lost data by recording regions before the destination's
 * flush: steps 2 and 3 must never swap.
 *
 * One committer thread runs commits back to back when asked, and at least
 * every interval while marks are pending.  Client FLUSH and FUA call
 * committer_wait, which returns only after a commit that *started* after
 * the call has finished: that commit's flush covers every write completed
 * before the call, and its freeze covers their marks.  Concurrent waiters
 * share commits (group commit).
 */

#ifndef NBDSHADOW_COMMIT_H
#define NBDSHADOW_COMMIT_H

#include <stdint.h>

#include "engine.h"
#include "residency.h"

/* Make marks durable.  Returns 0, or -1 with errno. */
typedef int (*commit_persist_fn) (void *opaque, const struct mark_list *marks);

struct committer;

struct commit_stats {
  uint64_t commits, failures, marks;
  double last_duration_ms;
};

extern struct committer *committer_start (struct residency *r,
                                          struct engine *e,
                                          commit_persist_fn persist,
                                          void *persist_opaque,
                                          double interval,
                                          unsigned test_delay_ms);

/* Wait for a commit that starts after this call.  0, or -1 with errno. */
extern int committer_wait (struct committer *c);

/* Run a final commit if marks are pending, stop the thread, free.
 * Returns the final commit's result.
 */
extern int committer_stop (struct committer *c);

extern void committer_stats (struct committer *c, struct commit_stats *out);

#endif /* NBDSHADOW_COMMIT_H */
