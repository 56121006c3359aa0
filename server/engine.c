/* nbdshadow: the shadow connections and the engine thread (engine.h).
 *
 * Life of a request:
 *
 *   worker thread                     engine thread (libev loop)
 *   -------------                     --------------------------
 *   engine_submit(io)
 *     lock; append io to incoming;
 *     unlock; ev_async_send  ------>  prepare: split each incoming io into
 *                                       commands ("subs") per shadow and
 *                                       per max_request, queue them by
 *                                       priority; issue what the in-flight
 *                                       caps allow; re-arm each socket's
 *                                       ev_io for nbd_aio_get_direction
 *                                     io ready: nbd_aio_notify_read/write
 *                                       -> libnbd completion callback only
 *                                          records the sub on conn->completed
 *                                     after notify (no libnbd lock held):
 *                                       finish subs; the io completes when
 *                                       its last sub does: io->done, or wake
 *                                       the engine_run waiter
 *
 * A completion callback runs with the handle's lock held, so it must not
 * call nbd_* on that handle; deferring the real work until after notify
 * also lets done callbacks submit new work freely.
 *
 * libnbd reaches every completion callback exactly once, also when the
 * connection dies (then with an error) or at nbd_close.  When a
 * connection is dead, failed subs go back to the front of their queue
 * and are issued again after the reconnect: every command we send
 * (read, write, zero, trim, flush, block status) is idempotent.
 *
 * A lost connection leaves two things behind, which engine-loss.c
 * handles: writes that were in flight on it (held before they complete)
 * and updates the shadow acknowledged but had not flushed (written
 * again before anything else).
 *
 * A shadow that advertises multi-conn may have several connections
 * (engine_config.connections).  Its commands wait in the shadow's queue,
 * not a connection's; the first ready connection is left to clients
 * and copies go to the others (pick_conn says why); a connection that
 * dies puts its commands back at the front of the shadow's queue, where
 * the others pick them up.  A flush goes to any one connection:
 * multi-conn means it covers the writes completed on all of them.
 *
 * Locking: e->lock guards e->incoming and e->stopping (written by any
 * thread).  Everything else in struct engine, struct shadow and struct
 * shadow_conn belongs to the engine thread, except the counters, which
 * are relaxed atomics read by status.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>
#include <libnbd.h>

#include "engine.h"
#include "engine-int.h"
#include "lockutil.h"
#include "log.h"

static void conn_connect (struct shadow_conn *c);
static struct shadow *pick_any (struct engine *e);
static void finish_sub (struct sub *s, int err);

/* ---------------------------------------------------------------------- */
/* Small helpers. */

static double
elapsed_us (const struct timespec *since)
{
  struct timespec now;

  clock_gettime (CLOCK_MONOTONIC, &now);
  return (now.tv_sec - since->tv_sec) * 1e6 +
    (now.tv_nsec - since->tv_nsec) / 1e3;
}

const char *
engine_op_name (enum shadow_op op)
{
  switch (op) {
  case SHADOW_READ: return "read";
  case SHADOW_WRITE: return "write";
  case SHADOW_ZERO: return "zero";
  case SHADOW_TRIM: return "trim";
  case SHADOW_FLUSH: return "flush";
  case SHADOW_BLOCK_STATUS: return "block status";
  }
  return "?";
}

/* ---------------------------------------------------------------------- */
/* Connecting and probing. */

/* A new handle configured the same way for the probe and the engine. */
static struct nbd_handle *
new_handle (const char *uri)
{
  struct nbd_handle *nbd = nbd_create ();

  if (nbd == NULL) {
    shadow_error ("shadow %s: %s", uri, nbd_get_error ());
    return NULL;
  }
  if (nbd_add_meta_context (nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1 ||
      nbd_set_handle_name (nbd, "shadow") == -1) {
    shadow_error ("shadow %s: %s", uri, nbd_get_error ());
    nbd_close (nbd);
    return NULL;
  }
  return nbd;
}

/* Read size and capabilities from a connected handle. */
static int
read_info (struct nbd_handle *nbd, struct shadow_info *info)
{
  int64_t max;

  info->size = nbd_get_size (nbd);
  if (info->size == -1) {
    shadow_error ("shadow %s: cannot get size: %s", info->uri,
                  nbd_get_error ());
    return -1;
  }
  info->can_flush = nbd_can_flush (nbd) == 1;
  info->can_fua = nbd_can_fua (nbd) == 1;
  info->can_zero = nbd_can_zero (nbd) == 1;
  info->can_trim = nbd_can_trim (nbd) == 1;
  info->can_multi_conn = nbd_can_multi_conn (nbd) == 1;
  info->can_block_status =
    nbd_can_meta_context (nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
  if (nbd_is_read_only (nbd) == 1) {
    shadow_error ("shadow %s: the export is read-only", info->uri);
    return -1;
  }
  max = nbd_get_block_size (nbd, LIBNBD_SIZE_MAXIMUM);
  info->max_request = DATA_CHUNK_MAX;
  if (max > 0 && max < DATA_CHUNK_MAX)
    info->max_request = max;
  return 0;
}

/* nbd_connect_uri, but giving up after timeout seconds: the blocking
 * call waits for a server that accepts and never greets for ever, and
 * the probe runs in .get_ready, before nbdkit serves anything.  The
 * error, if any, is in nbd_get_error, or *timed_out is set.
 */
static int
connect_within (struct nbd_handle *nbd, const char *uri, double timeout,
                bool *timed_out)
{
  double deadline = monotonic_now () + timeout;

  *timed_out = false;
  if (nbd_aio_connect_uri (nbd, uri) == -1)
    return -1;
  while (!nbd_aio_is_ready (nbd)) {
    double left = deadline - monotonic_now ();
    int r;

    if (nbd_aio_is_dead (nbd) || nbd_aio_is_closed (nbd))
      return -1;
    if (left <= 0) {
      *timed_out = true;
      return -1;
    }
    r = nbd_poll (nbd, (int) ceil (fmin (left, 3600) * 1000));
    if (r == -1)
      return -1;
  }
  return 0;
}

/* engine_config.connect_timeout, or its default. */
static double
connect_timeout_of (const struct engine_config *cfg)
{
  return cfg->connect_timeout > 0 ? cfg->connect_timeout : CONNECT_TIMEOUT;
}

int
engine_probe (const struct engine_config *cfg, struct shadow_info *info)
{
  double timeout = connect_timeout_of (cfg);
  size_t i;

  for (i = 0; i < cfg->nr_shadows; ++i) {
    struct nbd_handle *nbd;
    bool timed_out;
    int r;

    memset (&info[i], 0, sizeof info[i]);
    info[i].uri = cfg->uris[i];
    nbd = new_handle (cfg->uris[i]);
    if (nbd == NULL)
      return -1;
    if (connect_within (nbd, cfg->uris[i], timeout, &timed_out) == -1) {
      if (timed_out)
        shadow_error ("shadow %s: cannot connect: no handshake within %g s "
                      "(the server did not answer)", cfg->uris[i], timeout);
      else
        shadow_error ("shadow %s: cannot connect: %s", cfg->uris[i],
                      nbd_get_error () ?: "the connection closed during "
                      "the handshake");
      nbd_close (nbd);
      return -1;
    }
    r = read_info (nbd, &info[i]);
    nbd_shutdown (nbd, 0);
    nbd_close (nbd);
    if (r == -1)
      return -1;
  }
  return 0;
}

/* Start an asynchronous (re)connection.  On an immediate failure the
 * connection goes down again and the retry timer takes over.
 */
static void
conn_connect (struct shadow_conn *c)
{
  assert (c->nbd == NULL);
  c->nbd = new_handle (c->sh->info.uri);
  if (c->nbd == NULL) {
    engine_conn_down (c, "cannot create handle");
    return;
  }
  c->state = CONN_CONNECTING;
  if (nbd_aio_connect_uri (c->nbd, c->sh->info.uri) == -1) {
    engine_conn_down (c, nbd_get_error ());
    return;
  }
  ev_timer_stop (c->sh->e->loop, &c->handshake);
  ev_timer_set (&c->handshake, c->handshake_timeout, 0);
  ev_timer_start (c->sh->e->loop, &c->handshake);
  /* prepare() arms the ev_io once the socket exists. */
}

/* The server took the connection but has not finished the handshake in
 * time: treat it as a failed attempt, so that the usual paths (retry
 * with backoff, give up an extra connection at start-up, fail start-up
 * or the queued commands after their timeouts) apply.
 */
static void
handshake_timeout_cb (struct ev_loop *loop, ev_timer *w, int revents)
{
  struct shadow_conn *c = w->data;
  char why[64];

  snprintf (why, sizeof why, "no handshake within %g s",
            c->handshake_timeout);
  /* engine_conn_down says nothing of a reconnect attempt that fails. */
  if (c->ever_ready && !c->silence_said) {
    shadow_notice ("shadow %s: the server took a reconnect but gave %s; "
                   "retrying", c->sh->info.uri, why);
    c->silence_said = true;
  }
  c->handshake_timeout = fmin (c->handshake_timeout * 2,
                               fmax (HANDSHAKE_TIMEOUT_MAX,
                                     c->sh->e->cfg.handshake_timeout));
  shadow_debug ("shadow %s: %s; the next attempt waits up to %g s",
                c->sh->info.uri, why, c->handshake_timeout);
  engine_conn_down (c, why);
}

static void
startup_report (struct engine *e, bool ok)
{
  mutex_lock (&e->start_lock);
  if (ok)
    e->nr_ready++;
  else
    e->start_failed = true;
  cond_broadcast (&e->start_cond);
  mutex_unlock (&e->start_lock);
}

/* A connection that can never work (the export is not the one we
 * probed) at start-up: fail the start instead of retrying.
 */
static void
conn_refuse_at_start (struct shadow_conn *c)
{
  struct engine *e = c->sh->e;

  ev_io_stop (e->loop, &c->io);
  ev_timer_stop (e->loop, &c->handshake);
  nbd_close (c->nbd);
  c->nbd = NULL;
  c->state = CONN_DOWN;
  startup_report (e, false);
}

/* What queued and logged commands were split for (zero chunks, request
 * sizes) and what the log's durability needs (flush) must still hold on
 * a new connection.  Returns what shrank, or NULL.
 */
static const char *
capabilities_shrank (const struct shadow_info *was,
                     const struct shadow_info *now)
{
  if (was->can_flush && !now->can_flush)
    return "flush";
  if (was->can_zero && !now->can_zero)
    return "write zeroes";
  if (now->max_request < was->max_request)
    return "maximum request size";
  return NULL;
}

/* The export c reached is not one the filter may use (what says how).
 * Where fatal_at_start, that fails the start while start-up waits for
 * c (it cannot be the export we probed); otherwise, and always after
 * start-up (a reconnect, or a connection given up at start-up and
 * retried since), the connection goes down and is tried again with
 * backoff until the export is as it was.  Each refusal is said when it
 * first shows in an outage, not at every attempt.
 */
static bool shadow_ready (const struct shadow *sh);

static void
conn_refuse (struct shadow_conn *c, const char *what, bool fatal_at_start)
{
  struct shadow *sh = c->sh;

  if (fatal_at_start && !c->ever_ready && !c->given_up) {
    shadow_error ("shadow %s: %s", sh->info.uri, what);
    conn_refuse_at_start (c);
    return;
  }
  if (strcmp (sh->refused, what) != 0) {
    if (shadow_ready (sh))      /* another connection serves */
      shadow_error ("shadow %s: %s: not using this connection",
                    sh->info.uri, what);
    else
      shadow_error ("shadow %s: %s: not using it (requests wait, and fail "
                    "after %g s)", sh->info.uri, what,
                    sh->e->cfg.reconnect_timeout);
    snprintf (sh->refused, sizeof sh->refused, "%s", what);
  }
  engine_conn_down (c, "wrong export");
}

/* The handshake finished: check the export is still the one we probed. */
static void
conn_became_ready (struct shadow_conn *c)
{
  struct shadow *sh = c->sh;
  struct shadow_info info = { .uri = sh->info.uri };
  struct engine *e = sh->e;
  const char *shrank;
  char what[128];

  if (read_info (c->nbd, &info) == -1) {
    engine_conn_down (c, "bad export");
    return;
  }
  if (e->cfg.expected_size >= 0 && info.size != e->cfg.expected_size) {
    snprintf (what, sizeof what, "size %" PRIi64 " differs from the "
              "origin's %" PRIi64, info.size, e->cfg.expected_size);
    conn_refuse (c, what, true);
    return;
  }
  /* Several connections are safe only under multi-conn's promise that a
   * flush on one covers writes completed on the others.
   */
  if (sh->nr_conns > 1 && !info.can_multi_conn) {
    snprintf (what, sizeof what, "the export no longer advertises "
              "multi-conn, which its %zu connections need", sh->nr_conns);
    conn_refuse (c, what, true);
    return;
  }
  /* Against the last handshake's, which at start-up may be another
   * connection's: not a reason to fail the start by itself.
   */
  if (sh->info_known && (shrank = capabilities_shrank (&sh->info, &info))) {
    snprintf (what, sizeof what, "no longer offers the %s it had", shrank);
    conn_refuse (c, what, false);
    return;
  }
  sh->refused[0] = '\0';
  /* Written once per shadow, at its first handshake, which engine_start
   * waits for (start_lock orders it before submitters read it).
   */
  if (!sh->info_known && info.can_flush)
    e->logged_shadows |= 1u << (sh - e->shadows);
  sh->info = info;
  sh->info_known = true;
  ev_timer_stop (e->loop, &c->handshake);
  c->handshake_timeout = e->cfg.handshake_timeout;
  c->silence_said = false;
  c->state = CONN_READY;
  c->backoff = BACKOFF_MIN;
  c->down_since = 0;
  sh->down_since = 0;
  atomic_fetch_add_explicit (&sh->counters.connected, 1,
                             memory_order_relaxed);
  if (c->ever_ready) {
    atomic_fetch_add_explicit (&sh->counters.reconnects, 1,
                               memory_order_relaxed);
    shadow_notice ("shadow %s: reconnected", sh->info.uri);
  }
  else {
    c->ever_ready = true;
    if (!c->given_up)
      startup_report (e, true);
    else                        /* start-up counted it already */
      shadow_notice ("shadow %s: the connection given up at start-up is "
                     "up", sh->info.uri);
  }
}

static bool
shadow_ready (const struct shadow *sh)
{
  return atomic_load_explicit (&sh->counters.connected,
                               memory_order_relaxed) > 0;
}

/* Has the shadow had no ready connection for longer than allowed? */
static bool
shadow_gone (const struct shadow *sh)
{
  return !shadow_ready (sh) && sh->down_since > 0 &&
    ev_now (sh->e->loop) - sh->down_since > sh->e->cfg.reconnect_timeout;
}

/* Fail every queued sub of sh with err (the shadow stayed away too long). */
static void
fail_queued (struct shadow *sh, int err)
{
  struct sub *s;
  int p;

  for (p = 0; p < 2; ++p)
    while ((s = subq_pop (&sh->queue[p])) != NULL)
      finish_sub (s, err);
}

static void
retry_cb (struct ev_loop *loop, ev_timer *w, int revents)
{
  struct shadow_conn *c = w->data;

  if (shadow_gone (c->sh))
    fail_queued (c->sh, EIO);
  conn_connect (c);
}

/* Requeue a sub that failed because its connection died: another
 * connection of the shadow issues it again; reads that any shadow can
 * serve move to the best one.
 */
static void
requeue_sub (struct sub *s)
{
  atomic_fetch_add_explicit (&s->sh->counters.retries, 1,
                             memory_order_relaxed);
  if (s->any)
    s->sh = pick_any (s->sh->e);
  s->conn = NULL;
  s->err = 0;
  subq_push_front (&s->sh->queue[s->io->priority], s);
}


/* Drain the completed list.  dead: failures are caused by the lost
 * connection and are retried (and held, if they update the shadow).
 * ESHUTDOWN is what a server says to the requests in flight when it is
 * stopping, meaning it will not run them: retried, not held.
 */
static size_t
process_completed (struct shadow_conn *c, bool dead)
{
  struct sub *s;
  size_t held = 0;

  while ((s = subq_pop (&c->completed)) != NULL) {
    c->in_flight--;
    c->sh->in_flight--;
    if (s->io->priority == SHADOW_PRIO_COPY) {
      c->copy_in_flight--;
      c->sh->copy_in_flight--;
    }
    if (s->replay)
      loss_replay_completed (s, dead && s->err != 0);
    else if (s->err == ESHUTDOWN)    /* refused, so never executed */
      requeue_sub (s);
    else if (s->err != 0 && dead) {
      held += loss_hold_write (s);
      requeue_sub (s);
    }
    else
      finish_sub (s, s->err == 0 ? loss_note_success (s) : s->err);
  }
  return held;
}

/* A connection that failed at start-up while another of its shadow was
 * up: the server advertises multi-conn yet takes fewer connections than
 * shadow-connections asked for (nbdkit's limit filter refuses them; a
 * server may also leave them unanswered).
 * Going on with those it took beats failing the start after
 * CONNECT_TIMEOUT, now that the default asks for two.  Start-up stops
 * waiting for it; it is retried quietly every GIVEN_UP_RETRY seconds
 * (the failure may also have been passing), and joins the others if it
 * ever comes up.
 */
static void
conn_give_up (struct shadow_conn *c, const char *why)
{
  struct shadow *sh = c->sh;
  struct engine *e = sh->e;

  if (!c->given_up) {
    unsigned up = atomic_load_explicit (&sh->counters.connected,
                                        memory_order_relaxed);

    c->given_up = true;
    shadow_notice ("shadow %s: going on with %u of %zu connections: "
                   "another failed (%s) while %s up (the server may take "
                   "fewer than shadow-connections); retrying it every "
                   "%g s", sh->info.uri, up, sh->nr_conns,
                   why ? why : "unknown error",
                   up == 1 ? "one was" : "others were", GIVEN_UP_RETRY);
    mutex_lock (&e->start_lock);
    e->nr_given_up++;
    cond_broadcast (&e->start_cond);
    mutex_unlock (&e->start_lock);
  }
  ev_timer_set (&c->retry, GIVEN_UP_RETRY, 0);
  ev_timer_start (e->loop, &c->retry);
}

/* The connection is gone (or never came up): close the handle, retry its
 * commands after a reconnect, schedule the reconnect.
 */
void
engine_conn_down (struct shadow_conn *c, const char *why)
{
  struct shadow *sh = c->sh;
  struct engine *e = sh->e;
  double now = ev_now (e->loop);
  bool was_ready = c->state == CONN_READY;
  size_t held;

  if (c->state == CONN_READY || (!c->ever_ready && !c->given_up))
    shadow_error ("shadow %s: connection lost: %s", sh->info.uri,
                  why ? why : "unknown error");
  if (c->state == CONN_READY)
    atomic_fetch_sub_explicit (&sh->counters.connected, 1,
                               memory_order_relaxed);
  ev_io_stop (e->loop, &c->io);
  ev_timer_stop (e->loop, &c->handshake);
  c->state = CONN_DOWN;         /* before requeueing: pick_any skips it */
  if (!shadow_ready (sh) && sh->down_since == 0)
    sh->down_since = now;
  if (c->nbd) {
    nbd_close (c->nbd);         /* fires the remaining completions */
    c->nbd = NULL;
  }
  held = process_completed (c, true);
  assert (c->in_flight == 0 && c->copy_in_flight == 0);
  /* Only a connection that was up can have carried updates the server
   * lost.  A reconnect that fails again (an extra connection the server
   * keeps refusing) says nothing new about the data, and restarting the
   * replay from the head at each attempt would never let a long one
   * finish: the attempts come at most 2 s apart, and nothing else is
   * sent to the shadow while it replays.
   */
  if (was_ready)
    loss_start_replay (sh);
  if (held > 0)
    shadow_notice ("shadow %s: %zu write command%s in flight on the lost "
                   "connection will be retried and complete no sooner "
                   "than %g s from now (shadow-retry-hold)", sh->info.uri,
                   held, held == 1 ? "" : "s", e->cfg.retry_hold);

  if (!c->ever_ready && (c->given_up || shadow_ready (sh))) {
    conn_give_up (c, why);
    return;
  }
  if (!c->ever_ready && now - c->down_since > e->cfg.connect_timeout &&
      c->down_since > 0) {
    shadow_error ("shadow %s: no connection within %g s", sh->info.uri,
                  e->cfg.connect_timeout);
    startup_report (e, false);
    return;
  }
  if (c->down_since == 0)
    c->down_since = now;
  ev_timer_set (&c->retry, c->backoff, 0);
  ev_timer_start (e->loop, &c->retry);
  c->backoff = c->backoff * 2 < BACKOFF_MAX ? c->backoff * 2 : BACKOFF_MAX;
}

/* ---------------------------------------------------------------------- */
/* Completing. */

static void
wake_waiter (struct engine_waiter *w)
{
  mutex_lock (&w->lock);
  w->done = true;
  cond_signal (&w->cond);
  mutex_unlock (&w->lock);
}

void
engine_deliver_io (struct shadow_io *io)
{
  wlog_data_put (io->log_data);
  io->log_data = NULL;
  if (io->done)
    io->done (io);
  else
    wake_waiter (io->waiter);
}

static void
finish_sub (struct sub *s, int err)
{
  struct shadow_io *io = s->io;
  struct engine *e = s->sh->e;

  if (s->replay) {              /* not a caller's io (issue errors) */
    s->err = err;
    loss_replay_completed (s, false);
    return;
  }
  if (err != 0) {
    atomic_fetch_add_explicit (&s->sh->counters.errors, 1,
                               memory_order_relaxed);
    shadow_error ("shadow %s: %s of %" PRIu64 " bytes at %" PRIu64
                  " failed: %s", s->sh->info.uri, engine_op_name (io->op),
                  s->count, s->offset, strerror (err));
    if (io->err == 0)
      io->err = err;
  }
  free (s);
  assert (io->pending > 0);
  if (--io->pending > 0)
    return;
  loss_complete_io (e, io);
}

static int
completion_cb (void *opaque, int *error)
{
  struct sub *s = opaque;
  struct shadow_counters *k = &s->sh->counters;
  double lat = elapsed_us (&s->started);
  double old = atomic_load_explicit (&k->latency_ewma_us,
                                     memory_order_relaxed);

  /* Only record: we are inside libnbd's handle lock (see the top). */
  s->err = *error;
  atomic_store_explicit (&k->latency_ewma_us,
                         old == 0 ? lat : old * 0.9 + lat * 0.1,
                         memory_order_relaxed);
  subq_push (&s->conn->completed, s);
  return 1;
}

static int
extent_cb (void *opaque, const char *metacontext, uint64_t offset,
           uint32_t *entries, size_t nr_entries, int *error)
{
  struct sub *s = opaque;
  struct shadow_io *io = s->io;
  uint64_t end = s->offset + s->count;
  size_t i;

  if (strcmp (metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0)
    return 0;
  /* The callback does not touch libnbd, so it may run under its lock. */
  for (i = 0; i + 1 < nr_entries && offset < end; i += 2) {
    uint64_t len = entries[i];

    if (len > end - offset)
      len = end - offset;
    io->extent_fn (io->opaque, offset, len, entries[i + 1]);
    offset += len;
  }
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Issuing. */

/* Tests (engine_config.drop_conn_at): drop a ready connection of the
 * first shadow other than the one the write went to.  The delay puts
 * the replay well after that write, so that without waiting for it the
 * replay's older copy of the range would land last.
 */
static void
drop_conn_cb (struct ev_loop *loop, ev_timer *w, int revents)
{
  struct engine *e = w->data;
  struct shadow *sh = &e->shadows[0];
  size_t i;

  for (i = 0; i < sh->nr_conns; ++i)
    if (&sh->conns[i] != e->drop_spare && sh->conns[i].state == CONN_READY) {
      engine_conn_down (&sh->conns[i], "dropped by -D shadow.drop_conn_at");
      return;
    }
}

/* Issue one sub on connection c (ready).  Returns 0 if it is in flight
 * or already finished, -1 if the connection is dead.
 */
int
engine_issue_sub (struct sub *s, struct shadow_conn *c)
{
  struct shadow *sh = s->sh;
  struct shadow_io *io = s->io;
  nbd_completion_callback cb = { .callback = completion_cb, .user_data = s };
  int64_t cookie;

  s->conn = c;
  switch (io->op) {
  case SHADOW_READ:
    cookie = nbd_aio_pread (c->nbd, s->buf, s->count, s->offset, cb, 0);
    break;
  case SHADOW_WRITE:
    cookie = nbd_aio_pwrite (c->nbd, s->buf, s->count, s->offset, cb, 0);
    break;
  case SHADOW_ZERO:
    if (sh->info.can_zero)
      cookie = nbd_aio_zero (c->nbd, s->count, s->offset, cb,
                             io->flags & SHADOW_FLAG_MAY_TRIM ?
                             0 : LIBNBD_CMD_FLAG_NO_HOLE);
    else
      cookie = nbd_aio_pwrite (c->nbd, sh->e->zero_buf, s->count, s->offset,
                               cb, 0);
    break;
  case SHADOW_TRIM:
    if (!sh->info.can_trim) {      /* trim is advisory */
      finish_sub (s, 0);
      return 0;
    }
    cookie = nbd_aio_trim (c->nbd, s->count, s->offset, cb, 0);
    break;
  case SHADOW_FLUSH:
    if (!sh->info.can_flush) {     /* said at start-up (see the filter) */
      finish_sub (s, 0);
      return 0;
    }
    s->covers = sh->log.last_seq;
    cookie = nbd_aio_flush (c->nbd, cb, 0);
    break;
  case SHADOW_BLOCK_STATUS:
    if (!sh->info.can_block_status) {
      io->extent_fn (io->opaque, s->offset, s->count, 0);
      finish_sub (s, 0);
      return 0;
    }
    cookie = nbd_aio_block_status (c->nbd, s->count, s->offset,
                                   (nbd_extent_callback) {
                                     .callback = extent_cb, .user_data = s },
                                   cb, 0);
    break;
  default:
    abort ();
  }

  if (cookie == -1) {
    int err = nbd_get_errno ();

    if (nbd_aio_is_dead (c->nbd) || nbd_aio_is_closed (c->nbd))
      return -1;
    shadow_error ("shadow %s: %s: %s", sh->info.uri, engine_op_name (io->op),
                  nbd_get_error ());
    finish_sub (s, err ? err : EIO);
    return 0;
  }
  c->in_flight++;
  sh->in_flight++;
  if (io->priority == SHADOW_PRIO_COPY) {
    c->copy_in_flight++;
    sh->copy_in_flight++;
  }
  if (io->op == SHADOW_WRITE && sh->e->cfg.drop_conn_at != 0 &&
      s->offset == sh->e->cfg.drop_conn_at && sh == &sh->e->shadows[0] &&
      ++sh->e->drop_conn_seen == 2) {
    sh->e->drop_spare = c;
    ev_timer_set (&sh->e->drop_timer, DROP_CONN_DELAY, 0);
    ev_timer_start (sh->e->loop, &sh->e->drop_timer);
  }
  atomic_fetch_add_explicit (&sh->counters.commands, 1, memory_order_relaxed);
  if (io->op == SHADOW_READ)
    atomic_fetch_add_explicit (&sh->counters.bytes_read, s->count,
                               memory_order_relaxed);
  else if (io->op == SHADOW_WRITE)
    atomic_fetch_add_explicit (&sh->counters.bytes_written, s->count,
                               memory_order_relaxed);
  return 0;
}

/* The ready connection of sh with the fewest commands in flight: the
 * server then receives as many streams as there are connections.
 */
struct shadow_conn *
engine_least_busy_conn (struct shadow *sh)
{
  struct shadow_conn *best = NULL;
  size_t i;

  for (i = 0; i < sh->nr_conns; ++i) {
    struct shadow_conn *c = &sh->conns[i];

    if (c->state == CONN_READY &&
        (best == NULL || c->in_flight < best->in_flight))
      best = c;
  }
  return best;
}

/* The connection a sub of the given priority goes to.  A server reads
 * a connection's requests in order, payloads included, so a client read
 * sent after the copier's writes (2 MiB each while clients are active)
 * waits until the server has taken all of them in.  With two
 * connections or more the first ready one is left to clients: copies go
 * to the others, and client commands to the connection with the fewest
 * copies in flight (then the fewest commands).  With one, all share it.
 * On bench/e2e's inter workload (four sequential readers beside the
 * sweep) that took a fifth off the clients' time beyond a quarter
 * millisecond and 39% off their reads over a millisecond
 * (bench/e2e/RESULTS.md, "A connection for clients").
 */
static struct shadow_conn *
pick_conn (struct shadow *sh, enum shadow_priority prio)
{
  struct shadow_conn *best = NULL, *clients = NULL;
  size_t i;

  for (i = 0; i < sh->nr_conns; ++i) {
    struct shadow_conn *c = &sh->conns[i];

    if (c->state != CONN_READY)
      continue;
    if (prio == SHADOW_PRIO_COPY) {
      if (clients == NULL)
        clients = c;            /* kept for clients, unless alone */
      else if (best == NULL || c->in_flight < best->in_flight)
        best = c;
    }
    else if (best == NULL || c->copy_in_flight < best->copy_in_flight ||
             (c->copy_in_flight == best->copy_in_flight &&
              c->in_flight < best->in_flight))
      best = c;
  }
  return best ? best : clients;
}

/* Issue queued subs of sh, client traffic first, within the caps. */
static void
issue_queued (struct shadow *sh)
{
  struct engine *e = sh->e;

  if (sh->replaying && !loss_replay_step (sh))
    return;
  loss_maybe_flush_log (sh);
  while (sh->in_flight < e->cfg.max_in_flight) {
    struct subq *q = &sh->queue[SHADOW_PRIO_CLIENT];
    struct shadow_conn *c;
    struct sub *s;

    if (q->len == 0) {
      if (sh->copy_in_flight >= e->cfg.max_copy_in_flight)
        break;
      q = &sh->queue[SHADOW_PRIO_COPY];
    }
    if (q->len == 0 || (c = pick_conn (sh, q->head->io->priority)) == NULL)
      break;
    if (sh->replaying)          /* a connection was lost meanwhile */
      break;
    if (op_updates (q->head->io->op) && loss_log_full (sh)) {
      if (loss_log_flush_first (sh, q))
        continue;
      break;                    /* until the log's flush trims it */
    }
    s = subq_pop (q);
    clock_gettime (CLOCK_MONOTONIC, &s->started);
    if (engine_issue_sub (s, c) == -1) {
      s->conn = NULL;
      subq_push_front (q, s);
      engine_conn_down (c, nbd_get_error ());
    }
    /* libnbd may queue a command and only then find the connection
     * dead (the completion with an error is then already recorded):
     * nothing would wake us for this handle again.
     */
    else if (nbd_aio_is_dead (c->nbd) || nbd_aio_is_closed (c->nbd))
      engine_conn_down (c, nbd_get_error ());
  }
}

/* The ready shadow with the lowest smoothed latency, or the first one. */
static struct shadow *
pick_any (struct engine *e)
{
  struct shadow *best = NULL;
  double best_lat = 0;
  size_t i;

  for (i = 0; i < e->nr_shadows; ++i) {
    struct shadow *sh = &e->shadows[i];
    double lat = atomic_load_explicit (&sh->counters.latency_ewma_us,
                                       memory_order_relaxed);

    lat += sh->in_flight * 10.0;  /* a little weight for queue depth */
    if (shadow_ready (sh) && (best == NULL || lat < best_lat)) {
      best = sh;
      best_lat = lat;
    }
  }
  return best ? best : &e->shadows[0];
}

static size_t
chunk_limit (const struct shadow *sh, const struct shadow_io *io)
{
  switch (io->op) {
  case SHADOW_READ:
  case SHADOW_WRITE: {
    /* Whole, up to the server's limit, unless told otherwise: 256 KiB
     * commands made hydration 20-30% faster, but clients of a
     * sequential workload then waited 33% longer (results-migrate.md),
     * so only idle-time copies ask for them (io->max_command).
     */
    uint32_t limit = sh->info.max_request;
    uint32_t want = sh->e->cfg.max_data_request;

    if (want > 0)               /* fixed, for benchmarks */
      return want < limit ? want : limit;
    if (io->max_command > 0 && io->max_command < limit)
      limit = io->max_command;
    return limit;
  }
  case SHADOW_ZERO:
    return sh->info.can_zero ? NODATA_CHUNK_MAX : ZERO_BUF_SIZE;
  case SHADOW_FLUSH:
    return UINT32_MAX;
  default:
    return NODATA_CHUNK_MAX;
  }
}

/* Split io into subs for shadow sh.  Returns the number queued, or -1 if
 * out of memory (after queueing some: the caller fails the rest).
 */
int
engine_split_onto (struct shadow_io *io, struct shadow *sh, bool any,
            struct subq *out)
{
  uint64_t limit = chunk_limit (sh, io);
  uint64_t off = 0;
  int n = 0;

  do {
    uint64_t len = io->count - off;
    struct sub *s;

    if (len > limit)
      len = limit;
    s = calloc (1, sizeof *s);
    if (s == NULL)
      return -1;
    s->io = io;
    s->sh = sh;
    s->offset = io->offset + off;
    s->count = len;
    s->any = any;
    if (io->buf)
      s->buf = (char *) io->buf + off;
    subq_push (out, s);
    n++;
    off += len;
    /* Block status answers the first chunk only: that is enough. */
  } while (off < io->count && io->op != SHADOW_BLOCK_STATUS &&
           io->op != SHADOW_FLUSH);
  return n;
}

/* Turn one incoming io into subs on the shadows' queues. */
static void
expand_io (struct engine *e, struct shadow_io *io)
{
  struct subq subs;
  struct sub *s;
  size_t i;
  bool oom = false;

  subq_init (&subs);
  io->err = 0;
  if (io->target == SHADOW_ALL) {
    for (i = 0; i < e->nr_shadows && !oom; ++i)
      oom = engine_split_onto (io, &e->shadows[i], false, &subs) == -1;
  }
  else if (io->target == SHADOW_ANY)
    oom = engine_split_onto (io, pick_any (e), true, &subs) == -1;
  else {
    assert (io->target >= 0 && (size_t) io->target < e->nr_shadows);
    oom = engine_split_onto (io, &e->shadows[io->target], false, &subs) == -1;
  }

  if (oom) {
    shadow_error ("shadow %s of %" PRIu64 " bytes at %" PRIu64
                  ": out of memory", engine_op_name (io->op), io->count,
                  io->offset);
    while ((s = subq_pop (&subs)) != NULL)
      free (s);
    io->err = ENOMEM;
    io->pending = 1;
    engine_deliver_io (io);
    return;
  }

  io->pending = subs.len;
  while ((s = subq_pop (&subs)) != NULL) {
    /* A shadow that has been away too long fails at once. */
    if (shadow_gone (s->sh)) {
      finish_sub (s, EIO);
      continue;
    }
    subq_push (&s->sh->queue[io->priority], s);
  }
}

/* ---------------------------------------------------------------------- */
/* The loop. */

static void
tick_cb (struct ev_loop *loop, ev_timer *w, int revents)
{
  struct engine *e = w->data;
  engine_tick_fn fn;
  void *opaque;

  mutex_lock (&e->lock);
  fn = e->tick_fn;
  opaque = e->tick_opaque;
  mutex_unlock (&e->lock);
  if (fn)
    fn (opaque, ev_now (loop));
}

static void
drain_incoming (struct engine *e)
{
  struct shadow_io **batch;
  size_t n, i;

  mutex_lock (&e->lock);
  if (e->new_tick) {
    e->new_tick = false;
    ev_timer_stop (e->loop, &e->tick);
    if (e->tick_fn) {
      ev_timer_set (&e->tick, e->tick_interval, e->tick_interval);
      ev_timer_start (e->loop, &e->tick);
    }
  }
  batch = e->incoming;
  n = e->incoming_len;
  e->incoming = NULL;
  e->incoming_len = e->incoming_cap = 0;
  mutex_unlock (&e->lock);

  for (i = 0; i < n; ++i)
    expand_io (e, batch[i]);
  free (batch);
}

/* Re-arm c's ev_io for the direction libnbd wants next. */
static void
rearm_io (struct shadow_conn *c)
{
  struct engine *e = c->sh->e;
  int fd, dir, events = 0;

  if (c->nbd == NULL)
    return;
  fd = nbd_aio_get_fd (c->nbd);
  if (fd == -1)
    return;
  dir = nbd_aio_get_direction (c->nbd);
  if (dir & LIBNBD_AIO_DIRECTION_READ)
    events |= EV_READ;
  if (dir & LIBNBD_AIO_DIRECTION_WRITE)
    events |= EV_WRITE;
  if (ev_is_active (&c->io) && c->io.fd == fd && (c->io.events &
      (EV_READ | EV_WRITE)) == events)
    return;
  ev_io_stop (e->loop, &c->io);
  if (events) {
    ev_io_set (&c->io, fd, events);
    ev_io_start (e->loop, &c->io);
  }
}

/* After libnbd ran: notice state changes, finish completed subs.  why:
 * what the failing notify said, if one failed.
 */
static void
after_notify (struct shadow_conn *c, const char *why)
{
  if (nbd_aio_is_dead (c->nbd) || nbd_aio_is_closed (c->nbd)) {
    if (why == NULL || *why == '\0')
      why = nbd_aio_is_closed (c->nbd) ?
        "the server closed the connection" : nbd_get_error ();
    engine_conn_down (c, why);
    return;
  }
  if (c->state == CONN_CONNECTING && nbd_aio_is_ready (c->nbd))
    conn_became_ready (c);
  process_completed (c, false);
}

static void
io_cb (struct ev_loop *loop, ev_io *w, int revents)
{
  struct shadow_conn *c = w->data;

  char why[256] = "";

  if (c->nbd == NULL)
    return;
  /* Errors surface as a dead handle, which after_notify handles; keep
   * libnbd's message before other calls replace it.
   */
  if ((revents & EV_READ) && nbd_aio_notify_read (c->nbd) == -1)
    snprintf (why, sizeof why, "%s", nbd_get_error () ?: "");
  if ((revents & EV_WRITE) &&
      !nbd_aio_is_dead (c->nbd) && !nbd_aio_is_closed (c->nbd) &&
      nbd_aio_notify_write (c->nbd) == -1)
    snprintf (why, sizeof why, "%s", nbd_get_error () ?: "");
  after_notify (c, why);
}

static void
prepare_cb (struct ev_loop *loop, ev_prepare *w, int revents)
{
  struct engine *e = w->data;
  size_t i;

  drain_incoming (e);
  for (i = 0; i < e->nr_shadows; ++i)
    issue_queued (&e->shadows[i]);
  for (i = 0; i < e->nr_conns; ++i)
    rearm_io (&e->conns[i]);
}

static void
wake_cb (struct ev_loop *loop, ev_async *w, int revents)
{
  struct engine *e = w->data;
  bool stop;

  mutex_lock (&e->lock);
  stop = e->stopping;
  mutex_unlock (&e->lock);
  if (stop)
    ev_break (loop, EVBREAK_ALL);
  /* Otherwise prepare_cb does the work before the next poll. */
}

static void *
engine_thread (void *arg)
{
  struct engine *e = arg;

  thread_name ("shadow-engine");
  ev_run (e->loop, 0);
  return NULL;
}

/* ---------------------------------------------------------------------- */
/* Public API. */

/* Connections for shadow i: several only if it advertised multi-conn. */
static size_t
conns_for (const struct engine_config *cfg, size_t i)
{
  if (cfg->connections <= 1 || cfg->probed == NULL ||
      !cfg->probed[i].can_multi_conn)
    return 1;
  return cfg->connections;
}

static struct engine *
engine_alloc (const struct engine_config *cfg)
{
  struct engine *e;
  size_t i, j, nr_conns = 0;

  for (i = 0; i < cfg->nr_shadows; ++i)
    nr_conns += conns_for (cfg, i);
  e = calloc (1, sizeof *e + nr_conns * sizeof e->conns[0]);
  if (e == NULL)
    return NULL;
  e->cfg = *cfg;
  e->cfg.probed = NULL;         /* the caller's: do not keep it */
  e->nr_shadows = cfg->nr_shadows;
  e->nr_conns = nr_conns;
  if (e->cfg.max_in_flight == 0)
    e->cfg.max_in_flight = 64;
  if (e->cfg.max_copy_in_flight == 0 ||
      e->cfg.max_copy_in_flight > e->cfg.max_in_flight)
    e->cfg.max_copy_in_flight = e->cfg.max_in_flight / 2;
  if (e->cfg.reconnect_timeout <= 0)
    e->cfg.reconnect_timeout = 60;
  e->cfg.connect_timeout = connect_timeout_of (cfg);
  if (e->cfg.handshake_timeout <= 0)
    e->cfg.handshake_timeout = HANDSHAKE_TIMEOUT;
  pthread_mutex_init (&e->lock, NULL);
  pthread_mutex_init (&e->start_lock, NULL);
  pthread_cond_init (&e->start_cond, NULL);
  nr_conns = 0;
  for (i = 0; i < e->nr_shadows; ++i) {
    struct shadow *sh = &e->shadows[i];

    sh->e = e;
    sh->info.uri = cfg->uris[i];
    subq_init (&sh->queue[0]);
    subq_init (&sh->queue[1]);
    wlog_init (&sh->log, (unsigned) i);
    sh->log.fail_seq = cfg->fail_log_append;
    sh->replay_depth = cfg->replay_depth >= 1 &&
      cfg->replay_depth <= REPLAY_MAX ? cfg->replay_depth : REPLAY_MAX;
    sh->nr_conns = conns_for (cfg, i);
    sh->conns = &e->conns[nr_conns];
    nr_conns += sh->nr_conns;
    for (j = 0; j < sh->nr_conns; ++j) {
      struct shadow_conn *c = &sh->conns[j];

      c->sh = sh;
      c->backoff = BACKOFF_MIN;
      c->handshake_timeout = e->cfg.handshake_timeout;
      c->state = CONN_DOWN;
      subq_init (&c->completed);
    }
  }
  return e;
}

static void
engine_free (struct engine *e)
{
  size_t i;

  for (i = 0; i < e->nr_shadows; ++i)
    wlog_free (&e->shadows[i].log);
  if (e->loop)
    ev_loop_destroy (e->loop);
  free (e->zero_buf);
  free (e->incoming);
  pthread_cond_destroy (&e->start_cond);
  pthread_mutex_destroy (&e->start_lock);
  pthread_mutex_destroy (&e->lock);
  free (e);
}

/* Wait until every connection is up (or given up) or one failed. */
static bool
wait_started (struct engine *e)
{
  bool ok;

  mutex_lock (&e->start_lock);
  while (!e->start_failed && e->nr_ready + e->nr_given_up < e->nr_conns)
    cond_wait (&e->start_cond, &e->start_lock);
  ok = !e->start_failed;
  mutex_unlock (&e->start_lock);
  return ok;
}

struct engine *
engine_start (const struct engine_config *cfg)
{
  struct engine *e;
  size_t i;
  int r;

  assert (cfg->nr_shadows > 0 && cfg->nr_shadows <= ENGINE_MAX_SHADOWS);
  e = engine_alloc (cfg);
  if (e == NULL) {
    shadow_error ("engine: out of memory");
    return NULL;
  }
  e->zero_buf = calloc (1, ZERO_BUF_SIZE);
  /* Not the default loop: it would reap nbdkit's children (--run). */
  e->loop = ev_loop_new (EVFLAG_AUTO | EVFLAG_NOSIGMASK);
  if (e->zero_buf == NULL || e->loop == NULL) {
    shadow_error ("engine: cannot create the event loop");
    engine_free (e);
    return NULL;
  }
  ev_async_init (&e->wake, wake_cb);
  e->wake.data = e;
  ev_async_start (e->loop, &e->wake);
  ev_init (&e->tick, tick_cb);
  e->tick.data = e;
  ev_init (&e->hold_timer, loss_hold_cb);
  e->hold_timer.data = e;
  ev_init (&e->drop_timer, drop_conn_cb);
  e->drop_timer.data = e;
  for (i = 0; i < e->nr_shadows; ++i)
    ev_init (&e->shadows[i].replay_timer, loss_replay_timer_cb);
  ev_prepare_init (&e->prepare, prepare_cb);
  e->prepare.data = e;
  ev_prepare_start (e->loop, &e->prepare);
  for (i = 0; i < e->nr_conns; ++i) {
    struct shadow_conn *c = &e->conns[i];

    ev_init (&c->io, io_cb);
    c->io.data = c;
    ev_init (&c->retry, retry_cb);
    c->retry.data = c;
    ev_init (&c->handshake, handshake_timeout_cb);
    c->handshake.data = c;
    conn_connect (c);
  }

  r = pthread_create (&e->thread, NULL, engine_thread, e);
  if (r != 0) {
    shadow_error ("engine: cannot start thread: %s", strerror (r));
    for (i = 0; i < e->nr_conns; ++i)
      if (e->conns[i].nbd)
        nbd_close (e->conns[i].nbd);
    engine_free (e);
    return NULL;
  }
  e->thread_started = true;

  if (!wait_started (e)) {
    engine_stop (e);
    return NULL;
  }
  return e;
}

void
engine_stop (struct engine *e)
{
  size_t i;
  int r;

  if (e == NULL)
    return;
  if (e->thread_started) {
    mutex_lock (&e->lock);
    e->stopping = true;
    mutex_unlock (&e->lock);
    ev_async_send (e->loop, &e->wake);
    r = pthread_join (e->thread, NULL);
    if (r != 0)
      shadow_error ("engine: cannot join thread: %s", strerror (r));
  }

  /* The thread is gone: finish everything here. */
  e->closing = true;
  drain_incoming (e);
  for (i = 0; i < e->nr_conns; ++i) {
    struct shadow_conn *c = &e->conns[i];

    ev_timer_stop (e->loop, &c->retry);
    ev_timer_stop (e->loop, &c->handshake);
    ev_io_stop (e->loop, &c->io);
    if (c->nbd) {
      if (c->state == CONN_READY)
        (void) nbd_shutdown (c->nbd, 0);
      nbd_close (c->nbd);
      c->nbd = NULL;
    }
    process_completed (c, false);
  }
  ev_timer_stop (e->loop, &e->drop_timer);
  for (i = 0; i < e->nr_shadows; ++i) {
    ev_timer_stop (e->loop, &e->shadows[i].replay_timer);
    fail_queued (&e->shadows[i], ESHUTDOWN);
  }
  /* Their commands succeeded; nothing newer can be sent any more. */
  loss_release_held (e, true);
  engine_free (e);
}

size_t
engine_nr_shadows (const struct engine *e)
{
  return e->nr_shadows;
}

const struct shadow_info *
engine_shadow_info (const struct engine *e, size_t i)
{
  assert (i < e->nr_shadows);
  return &e->shadows[i].info;
}

void
engine_shadow_stats (struct engine *e, size_t i, struct shadow_stats *out)
{
  struct shadow_counters *k = &e->shadows[i].counters;

  assert (i < e->nr_shadows);
  out->connections = e->shadows[i].nr_conns;
  out->commands = atomic_load_explicit (&k->commands, memory_order_relaxed);
  out->bytes_read = atomic_load_explicit (&k->bytes_read,
                                          memory_order_relaxed);
  out->bytes_written = atomic_load_explicit (&k->bytes_written,
                                             memory_order_relaxed);
  out->errors = atomic_load_explicit (&k->errors, memory_order_relaxed);
  out->reconnects = atomic_load_explicit (&k->reconnects,
                                          memory_order_relaxed);
  out->retries = atomic_load_explicit (&k->retries, memory_order_relaxed);
  out->replays = atomic_load_explicit (&k->replays, memory_order_relaxed);
  out->replayed = atomic_load_explicit (&k->replayed, memory_order_relaxed);
  out->updates_lost = atomic_load_explicit (&k->updates_lost,
                                            memory_order_relaxed);
  out->latency_ewma_us = atomic_load_explicit (&k->latency_ewma_us,
                                               memory_order_relaxed);
  out->connections_up = atomic_load_explicit (&k->connected,
                                              memory_order_relaxed);
  out->connected = out->connections_up > 0;
}

bool
engine_all_can_zero (const struct engine *e)
{
  size_t i;

  for (i = 0; i < e->nr_shadows; ++i)
    if (!e->shadows[i].info.can_zero)
      return false;
  return true;
}

bool
engine_all_can_trim (const struct engine *e)
{
  size_t i;

  for (i = 0; i < e->nr_shadows; ++i)
    if (!e->shadows[i].info.can_trim)
      return false;
  return true;
}

/* The shadows io goes to, as a mask of shadow indexes. */
static unsigned
targets (const struct engine *e, const struct shadow_io *io)
{
  if (io->target >= 0)
    return 1u << io->target;
  return (1u << e->nr_shadows) - 1;  /* SHADOW_ALL, SHADOW_ANY */
}

/* Keep io's data for the write log (wlog.h): the caller's buffer, or a
 * copy made here on the caller's thread.  If there is no memory for the
 * copy the engine thread tries again when the write completes.
 */
static void
take_log_data (struct engine *e, struct shadow_io *io)
{
  io->log_data = io->buf_ref;
  io->log_base = io->buf;
  io->buf_ref = NULL;
  if (io->op != SHADOW_WRITE || !(targets (e, io) & e->logged_shadows)) {
    wlog_data_put (io->log_data);         /* nothing to log */
    io->log_data = NULL;
  }
  else if (io->log_data == NULL &&
           (io->log_data = wlog_data_copy (io->buf, io->count)) != NULL)
    io->log_base = io->log_data->bytes;
}

void
engine_submit (struct engine *e, struct shadow_io *io)
{
  bool stopping;

  io->hold_until = 0;
  io->held_next = NULL;
  take_log_data (e, io);
  mutex_lock (&e->lock);
  stopping = e->stopping;
  if (!stopping && e->incoming_len == e->incoming_cap) {
    size_t cap = e->incoming_cap ? e->incoming_cap * 2 : 64;
    struct shadow_io **v = realloc (e->incoming, cap * sizeof *v);

    if (v == NULL) {
      mutex_unlock (&e->lock);
      shadow_error ("shadow %s: out of memory queueing the request",
                    engine_op_name (io->op));
      io->err = ENOMEM;
      goto complete_now;
    }
    e->incoming = v;
    e->incoming_cap = cap;
  }
  if (!stopping)
    e->incoming[e->incoming_len++] = io;
  mutex_unlock (&e->lock);

  if (!stopping) {
    ev_async_send (e->loop, &e->wake);
    return;
  }
  io->err = ESHUTDOWN;
 complete_now:
  io->pending = 0;
  engine_deliver_io (io);
}

int
engine_run (struct engine *e, struct shadow_io *io)
{
  struct engine_waiter w = { .done = false };

  assert (!engine_on_thread (e));
  pthread_mutex_init (&w.lock, NULL);
  pthread_cond_init (&w.cond, NULL);
  io->done = NULL;
  io->waiter = &w;
  engine_submit (e, io);
  mutex_lock (&w.lock);
  while (!w.done)
    cond_wait (&w.cond, &w.lock);
  mutex_unlock (&w.lock);
  pthread_cond_destroy (&w.cond);
  pthread_mutex_destroy (&w.lock);
  if (io->err) {
    errno = io->err;
    return -1;
  }
  return 0;
}

void
engine_set_tick (struct engine *e, engine_tick_fn fn, void *opaque,
                 double interval)
{
  mutex_lock (&e->lock);
  e->tick_fn = fn;
  e->tick_opaque = opaque;
  e->tick_interval = interval;
  e->new_tick = true;
  mutex_unlock (&e->lock);
  ev_async_send (e->loop, &e->wake);
}

bool
engine_on_thread (const struct engine *e)
{
  return e->thread_started && pthread_equal (pthread_self (), e->thread);
}
