/* nbdshadow: what a lost shadow connection leaves behind (engine-int.h).
 *
 * Writes in flight on it.  Issuing a write again is safe only once the
 * lost copy can no longer land: a server whose connection broke may
 * still be executing a write it received on it (a stalled disk, a
 * retrying storage client), and if the retry completed, our caller
 * released its range lock and a newer write to the same blocks
 * completed too, the old copy landing last would silently bring back
 * old data.  So a write that was in flight on
 * a lost connection is "held": its io completes no sooner than
 * cfg.retry_hold seconds after the loss, and until then the caller's
 * range lock (or the client waiting for its reply) keeps anything newer
 * from reaching those blocks.  The lost copy, if it lands meanwhile,
 * carries the same data as the retry.  No protocol message tells when a
 * server is done with a dead connection's requests, so the hold is a
 * bound the operator chooses (shadow-retry-hold); reads, flushes and
 * requests the server refused with ESHUTDOWN are not held.
 *
 * Updates it acknowledged but had not flushed: the server may have lost
 * them (a crash, a power cut), so they are written again, in order,
 * before anything else goes to that shadow (wlog.h says more).  "In
 * order" matters only where two overlap: up to REPLAY_MAX entries are
 * in flight at once, and an entry waits while it overlaps one of them,
 * so that a shadow across a network is not paid one round trip per
 * logged update (bench/bench-replay.sh: 9x faster at 2 ms a write).
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "engine-int.h"
#include "log.h"

/* s was in flight on a connection that was lost: the server may still
 * execute it, so its io must not complete before the hold (see the top).
 */
bool
loss_hold_write (struct sub *s)
{
  struct engine *e = s->sh->e;
  double until = monotonic_now () + e->cfg.retry_hold;

  if (!op_updates (s->io->op) || e->cfg.retry_hold <= 0)
    return false;
  if (until > s->io->hold_until)
    s->io->hold_until = until;
  return true;
}

/* ---------------------------------------------------------------------- */
/* The unflushed write log (wlog.h) and its replay. */

static uint64_t
log_cap (const struct engine *e)
{
  return e->cfg.log_cap ? e->cfg.log_cap : LOG_CAP_DEFAULT;
}

/* s completed successfully.  Updates enter the log; a flush drops what
 * it covers.  Returns the error the sub ends with (a flush fails if
 * writes it should cover were lost beyond repair).
 */
int
loss_note_success (struct sub *s)
{
  struct shadow *sh = s->sh;
  struct shadow_io *io = s->io;

  /* A shadow that cannot flush is durable on each write (the filter
   * warned at start-up otherwise): nothing to log.
   */
  if (!sh->info.can_flush)
    return 0;
  if (op_updates (io->op)) {
    struct wlog_data *shared = io->op == SHADOW_WRITE ? io->log_data : NULL;
    const char *data = NULL;

    if (io->op == SHADOW_WRITE)
      data = shared ? io->log_base + (s->buf - (char *) io->buf) : s->buf;
    if (wlog_append (&sh->log, io->op, io->flags, s->offset, s->count,
                     shared, data) == -1) {
      shadow_error ("shadow %s: out of memory logging the %s of %" PRIu64
                    " bytes at %" PRIu64 ": it cannot be written again if "
                    "the shadow loses it before the next flush",
                    sh->info.uri, engine_op_name (io->op), s->count,
                    s->offset);
      if (sh->log_gap == 0)
        sh->log_gap = sh->log.last_seq;  /* the seq it consumed */
    }
    return 0;
  }
  if (io->op != SHADOW_FLUSH)
    return 0;
  if (!sh->replaying)           /* the replay walks the log */
    wlog_trim (&sh->log, s->covers);
  if (sh->log_gap != 0 && s->covers >= sh->log_gap)
    sh->log_gap = 0;
  if (sh->poisoned && s != sh->log_flush) { /* a caller's flush */
    shadow_error ("shadow %s: flush reported as failed: updates the shadow "
                  "acknowledged may have been lost with a connection and "
                  "could not be written again; restart the filter (what "
                  "was not committed is copied again)", sh->info.uri);
    return EIO;
  }
  return 0;
}

/* The shadow's wake-up timer: a replay or a log flush waits for a time. */
void
loss_replay_timer_cb (struct ev_loop *loop, ev_timer *w, int revents)
{
  /* Nothing: prepare_cb, which runs next, calls loss_replay_step and
   * loss_maybe_flush_log.
   */
}

static void
arm_replay_timer (struct shadow *sh, double at)
{
  double wait = at - monotonic_now ();

  ev_timer_stop (sh->e->loop, &sh->replay_timer);
  ev_timer_set (&sh->replay_timer, wait > 0 ? wait : 0, 0);
  ev_timer_start (sh->e->loop, &sh->replay_timer);
}

static void
set_poisoned (struct shadow *sh)
{
  sh->poisoned = true;
  atomic_store_explicit (&sh->counters.updates_lost, true,
                         memory_order_relaxed);
}

/* The shadow keeps failing to take the log back (a replay write or our
 * flush fails for longer than a lost connection may last): stop holding
 * everything else back.  What the log held may be lost, so every
 * caller's flush fails from now on, and the commit never records it.
 */
static void
give_up_log (struct shadow *sh, const char *what)
{
  shadow_error ("shadow %s: %s kept failing for %g s: giving up on %" PRIu64
                " acknowledged updates; from now on every flush fails",
                sh->info.uri, what, sh->e->cfg.reconnect_timeout,
                sh->log.entries);
  set_poisoned (sh);
  sh->replaying = false;
  sh->replay_drain = false;
  sh->replay_next = NULL;
  sh->replay_failed = NULL;
  sh->replay_retrying = NULL;
  sh->failing_since = 0;
  wlog_free (&sh->log);
}

/* Has the shadow been failing since before the allowed time?  Starts
 * the clock on a first failure.
 */
static bool
failing_too_long (struct shadow *sh, double now)
{
  if (sh->failing_since == 0)
    sh->failing_since = now;
  return now - sh->failing_since > sh->e->cfg.reconnect_timeout;
}

static void
log_flush_done (struct shadow_io *io)
{
  struct shadow *sh = io->opaque;
  double now = monotonic_now ();

  sh->log_flush = NULL;         /* freed by finish_sub */
  if (io->err == 0)
    sh->failing_since = 0;
  else if (!sh->replaying && failing_too_long (sh, now))
    give_up_log (sh, "flushing");
  else
    sh->log_flush_retry_at = now + LOG_RETRY;
  free (io);
}

/* The log holds more than its cap: flush early to trim it. */
void
loss_maybe_flush_log (struct shadow *sh)
{
  struct engine *e = sh->e;
  struct shadow_io *io;
  struct subq q;

  if (!sh->info.can_flush || sh->log.bytes < log_cap (e) ||
      sh->log_flush != NULL)
    return;
  if (monotonic_now () < sh->log_flush_retry_at) {
    arm_replay_timer (sh, sh->log_flush_retry_at);  /* wakes the loop */
    return;
  }
  io = calloc (1, sizeof *io);
  if (io == NULL)
    return;                     /* writes wait (loss_log_full); tried again */
  *io = (struct shadow_io) {
    .op = SHADOW_FLUSH, .target = (int) (sh - e->shadows),
    .priority = SHADOW_PRIO_CLIENT, .done = log_flush_done, .opaque = sh,
  };
  subq_init (&q);
  if (engine_split_onto (io, sh, false, &q) != 1) {
    free (io);
    return;
  }
  shadow_debug ("shadow %s: %" PRIu64 " bytes of unflushed updates: "
                "flushing early", sh->info.uri, sh->log.bytes);
  io->pending = 1;
  sh->log_flush = subq_pop (&q);
  subq_push_front (&sh->queue[SHADOW_PRIO_CLIENT], sh->log_flush);
}

/* The log is full and an update waits at the head of q: put our flush
 * first if it is queued behind.  Returns whether it moved.
 */
bool
loss_log_flush_first (struct shadow *sh, struct subq *q)
{
  struct sub *f = sh->log_flush;

  if (f == NULL || f->conn != NULL || q->head == f ||
      !subq_remove (&sh->queue[SHADOW_PRIO_CLIENT], f))
    return false;
  subq_push_front (q, f);
  return true;
}

/* New updates wait while the log is twice its cap (a flush is due). */
bool
loss_log_full (const struct shadow *sh)
{
  return sh->log.bytes >= 2 * log_cap (sh->e);
}

/* The connection was lost: write the log again before anything else.
 * A replay already under way starts over from the head, once what it
 * has in flight is done (replay_drain).
 */
void
loss_start_replay (struct shadow *sh)
{
  if (sh->log_gap != 0) {
    shadow_error ("shadow %s: writes acknowledged before the connection was "
                  "lost were not all logged (out of memory): if the shadow "
                  "lost them they are gone; the next flush fails",
                  sh->info.uri);
    set_poisoned (sh);
    sh->log_gap = 0;
  }
  if (sh->log.head == NULL)
    return;
  if (!sh->replaying) {
    shadow_notice ("shadow %s: writing again %" PRIu64 " update%s (%" PRIu64
                   " bytes) it acknowledged but had not flushed when the "
                   "connection was lost", sh->info.uri, sh->log.entries,
                   sh->log.entries == 1 ? "" : "s", sh->log.bytes);
    atomic_fetch_add_explicit (&sh->counters.replays, 1,
                               memory_order_relaxed);
  }
  sh->replaying = true;
  sh->replay_round++;           /* what the last round has in flight no
                                   longer moves this one */
  sh->replay_drain = true;
  sh->replay_next = sh->log.head;
  sh->replay_failed = NULL;
  sh->replay_retrying = NULL;
}

/* A replay command: the sub and the io it carries, freed together. */
struct replay_cmd {
  struct sub sub;               /* first: loss_replay_completed frees it */
  struct shadow_io io;
  unsigned slot;                /* in sh->replay_ranges */
  unsigned round;               /* sh->replay_round when issued */
};

/* Does en overlap a replay command in flight?  Entries may be written
 * again in any order among themselves only if they are disjoint: of
 * two overlapping ones the later must land last.
 */
static bool
overlaps_replay_in_flight (const struct shadow *sh,
                           const struct wlog_entry *en)
{
  unsigned i;

  for (i = 0; i < REPLAY_MAX; i++) {
    const struct replay_range *r = &sh->replay_ranges[i];

    if (r->used && en->offset < r->offset + r->count &&
        r->offset < en->offset + en->count)
      return true;
  }
  return false;
}

/* The next entry to issue, skipping trims the shadow cannot do. */
static struct wlog_entry *
next_replay_entry (struct shadow *sh)
{
  struct wlog_entry *en;

  while ((en = sh->replay_next) != NULL &&
         en->op == SHADOW_TRIM && !sh->info.can_trim)
    sh->replay_next = en->next;          /* advisory: nothing to redo */
  return en;
}

/* Issue entry en on c and move replay_next past it.  The command may
 * complete (and be freed) before this returns.  Returns 0; 1 if out of
 * memory (tried again at the next step); -1 if the connection turned out
 * to be dead (then nothing was issued).
 */
static int
issue_replay (struct shadow *sh, struct shadow_conn *c, struct wlog_entry *en)
{
  struct replay_cmd *r;
  unsigned slot;

  for (slot = 0; sh->replay_ranges[slot].used; slot++)
    ;                           /* replay_in_flight < REPLAY_MAX: one free */
  assert (slot < REPLAY_MAX);
  if ((r = calloc (1, sizeof *r)) == NULL) {
    shadow_error ("shadow %s: out of memory writing again the %s of %"
                  PRIu64 " bytes at %" PRIu64 ": trying again in %g s",
                  sh->info.uri, engine_op_name (en->op), en->count,
                  en->offset, LOG_RETRY);
    return 1;
  }
  r->io = (struct shadow_io) {
    .op = en->op, .flags = en->flags, .offset = en->offset,
    .count = en->count, .priority = SHADOW_PRIO_CLIENT,
  };
  r->slot = slot;
  r->round = sh->replay_round;
  r->sub.io = &r->io;
  r->sub.sh = sh;
  r->sub.offset = en->offset;
  r->sub.count = en->count;
  /* Only read from: the log's copy stays until the replay is over. */
  r->sub.buf = en->op == SHADOW_WRITE ? (char *) en->data : NULL;
  r->sub.replay = en;
  clock_gettime (CLOCK_MONOTONIC, &r->sub.started);
  /* Before issuing: a command refused at once completes inside. */
  sh->replay_ranges[slot] = (struct replay_range) {
    .offset = en->offset, .count = en->count, .used = true,
  };
  sh->replay_in_flight++;
  sh->replay_next = en->next;
  if (engine_issue_sub (&r->sub, c) == -1) {
    sh->replay_ranges[slot].used = false;
    sh->replay_in_flight--;
    sh->replay_next = en;
    free (r);
    return -1;
  }
  return 0;
}

/* Move the replay on: issue the next entries, in log order, while they
 * overlap none in flight.  Returns true once it is over (then normal
 * issuing resumes).
 */
bool
loss_replay_step (struct shadow *sh)
{
  struct wlog_entry *en;
  struct shadow_conn *c;
  double now = monotonic_now ();

  /* A (re)start waits until nothing is in flight: neither an earlier
   * round's replay commands nor commands still running on a surviving
   * connection, which complete (and enter the log) before it begins.
   */
  if (sh->replay_drain) {
    if (sh->in_flight > 0)
      return false;
    sh->replay_drain = false;
  }
  if (next_replay_entry (sh) == NULL) {
    if (sh->replay_in_flight > 0 || sh->replay_failed != NULL)
      return false;
    sh->replaying = false;
    sh->failing_since = 0;
    shadow_notice ("shadow %s: acknowledged updates written again",
                   sh->info.uri);
    return true;
  }
  if (now < sh->replay_retry_at) {
    arm_replay_timer (sh, sh->replay_retry_at);
    return false;
  }
  /* A command the connection refuses at once completes inside
   * issue_replay: its failure (replay_failed, or replay_retry_at when
   * nothing else was in flight) ends the loop.
   */
  while (sh->replaying && !sh->replay_drain && sh->replay_failed == NULL &&
         now >= sh->replay_retry_at &&
         sh->replay_in_flight < sh->replay_depth &&
         sh->in_flight < sh->e->cfg.max_in_flight &&
         (en = next_replay_entry (sh)) != NULL &&
         !overlaps_replay_in_flight (sh, en) &&
         (c = engine_least_busy_conn (sh)) != NULL) {
    int r = issue_replay (sh, c, en);

    if (r == 1) {
      sh->replay_retry_at = now + LOG_RETRY;
      break;
    }
    if (r == -1) {
      engine_conn_down (c, nbd_get_error ());
      return false;
    }
    if (c->nbd && (nbd_aio_is_dead (c->nbd) || nbd_aio_is_closed (c->nbd))) {
      engine_conn_down (c, nbd_get_error ());
      return false;
    }
  }
  /* A retry due later (out of memory, a command refused at once): wake
   * the loop for it, as nothing else may.
   */
  if (sh->replaying && now < sh->replay_retry_at)
    arm_replay_timer (sh, sh->replay_retry_at);
  return false;
}

/* A replay command completed (dead: its connection was lost). */
void
loss_replay_completed (struct sub *s, bool dead)
{
  struct replay_cmd *r = (struct replay_cmd *) s;
  struct shadow *sh = s->sh;
  double now = monotonic_now ();
  /* Completed as its connection goes down (engine_conn_down marks it
   * down first), even if this command itself succeeded.
   */
  bool conn_lost = dead || (s->conn != NULL && s->conn->state == CONN_DOWN);

  sh->replay_ranges[r->slot].used = false;
  sh->replay_in_flight--;
  if (dead) {
    /* Its lost copy may still land: the restarted replay must not begin
     * (and rewrite later entries) before that can no longer happen.
     */
    if (now + sh->e->cfg.retry_hold > sh->replay_retry_at)
      sh->replay_retry_at = now + sh->e->cfg.retry_hold;
  }
  else if (sh->e->closing)
    ;                           /* cut short by engine_stop */
  else if (s->err != 0) {
    atomic_fetch_add_explicit (&sh->counters.errors, 1, memory_order_relaxed);
    shadow_error ("shadow %s: writing again the %s of %" PRIu64 " bytes at %"
                  PRIu64 " failed: %s", sh->info.uri,
                  engine_op_name (s->io->op), s->count, s->offset,
                  strerror (s->err));
    if (r->round == sh->replay_round) {
      /* From the first failure: not from when the commands issued with
       * it are done, which a slow shadow could put off.
       */
      if (sh->failing_since == 0)
        sh->failing_since = now;
      if (sh->replay_failed == NULL ||
          s->replay->seq < sh->replay_failed->seq)
        sh->replay_failed = s->replay;
    }
  }
  else {
    /* While an entry that failed is being tried again, only its own
     * success stops the clock: disjoint entries issued with it may
     * succeed while it keeps failing, and it must still be given up
     * after shadow-reconnect-timeout.  Its success is progress even if
     * a later entry failed meanwhile: that one's clock then starts when
     * it fails again on its own retry, one round later.
     */
    if (sh->replay_retrying == NULL && sh->replay_failed == NULL)
      sh->failing_since = 0;
    else if (sh->replay_retrying == s->replay) {
      sh->replay_retrying = NULL;
      sh->failing_since = 0;
    }
    atomic_fetch_add_explicit (&sh->counters.replayed, 1,
                               memory_order_relaxed);
  }
  free (r);

  /* After a failure, go on from the oldest failed entry once the others
   * are done: those issued with it were disjoint from it, and it must
   * land before any later entry that overlaps it.  (Giving up frees the
   * log, which commands in flight still read from.)  Not after a lost
   * connection, whose replay starts over (loss_start_replay, after the
   * hold set above), nor while the engine stops.
   */
  if (sh->replay_failed != NULL && sh->replay_in_flight == 0 && !conn_lost &&
      !sh->e->closing) {
    struct wlog_entry *failed = sh->replay_failed;

    sh->replay_failed = NULL;
    if (failing_too_long (sh, now))
      give_up_log (sh, "writing the log again");
    else {
      sh->replay_next = failed;
      sh->replay_retrying = failed;
      if (now + LOG_RETRY > sh->replay_retry_at)
        sh->replay_retry_at = now + LOG_RETRY;
    }
  }
}

/* Arm the hold timer for the earliest held io, or stop it. */
static void
rearm_hold_timer (struct engine *e)
{
  struct shadow_io *io;
  double first = 0;

  ev_timer_stop (e->loop, &e->hold_timer);
  for (io = e->held; io; io = io->held_next)
    if (first == 0 || io->hold_until < first)
      first = io->hold_until;
  if (first > 0) {
    double wait = first - monotonic_now ();

    ev_timer_set (&e->hold_timer, wait > 0 ? wait : 0, 0);
    ev_timer_start (e->loop, &e->hold_timer);
  }
}

/* Complete the held ios whose hold is over (all of them if all). */
void
loss_release_held (struct engine *e, bool all)
{
  struct shadow_io **pp = &e->held, *io, *due = NULL;
  double now = monotonic_now ();

  while ((io = *pp) != NULL) {
    if (all || io->hold_until <= now) {
      *pp = io->held_next;
      io->held_next = due;
      due = io;
    }
    else
      pp = &io->held_next;
  }
  rearm_hold_timer (e);
  /* After unlinking: a done callback may submit (and hold) more. */
  while ((io = due) != NULL) {
    due = io->held_next;
    io->held_next = NULL;
    engine_deliver_io (io);
  }
}

void
loss_hold_cb (struct ev_loop *loop, ev_timer *w, int revents)
{
  loss_release_held (w->data, false);
}

/* The io's last command finished: complete it, or hold it (see top). */
void
loss_complete_io (struct engine *e, struct shadow_io *io)
{
  if (io->hold_until > monotonic_now ()) {
    io->held_next = e->held;
    e->held = io;
    rearm_hold_timer (e);
    return;
  }
  engine_deliver_io (io);
}
