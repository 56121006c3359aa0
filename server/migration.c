/* nbdshadow: the orchestrator (see migration.h).
 *
 * Threads and locks:
 *  - The orchestrator thread handles events that must not run on the
 *    thread that noticed them: "every block is resident" (raised on a
 *    copier worker, which cutover may have to join) and verify requests.
 *  - m->lock guards the short-lived fields: events, verify progress, the
 *    copier pointer, flags.  It is never held while waiting for I/O or
 *    joining threads.
 *  - m->cutover_lock serialises cutovers; only cutover takes it.
 * Lock order: m->lock before the copier's own lock (migration_tick).
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "copier.h"
#include "copyop.h"
#include "lockutil.h"
#include "log.h"
#include "migration.h"

#define VERIFY_CHUNK (4 * 1024 * 1024)

enum verify_state {
  VERIFY_IDLE,
  VERIFY_RUNNING,
  VERIFY_DONE,
  VERIFY_FAILED,
};

struct migration {
  struct migration_config cfg;
  struct volume *v;
  pthread_t thread;
  pthread_mutex_t cutover_lock;

  pthread_mutex_t lock;         /* guards everything below */
  pthread_cond_t wake;
  bool stopping;
  bool synced_event;            /* a copier worker saw every block resident */
  bool verify_requested, verify_then_cutover, cutting_over;
  struct copier *copier;        /* NULL after cutover */
  enum verify_state verify_state;
  bool verified;
  uint64_t verify_checked, verify_total, verify_mismatches, verify_recopied;
  char verify_message[256];
};

static char *
msgf (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));

static char *
msgf (const char *fmt, ...)
{
  va_list args;
  char *s;

  va_start (args, fmt);
  if (vasprintf (&s, fmt, args) == -1)
    s = NULL;
  va_end (args);
  return s;
}

/* Record a phase durably, then make it current. */
static int
enter_phase (struct migration *m, enum phase p)
{
  if (m->cfg.set_phase && m->cfg.set_phase (m->cfg.opaque, p) == -1) {
    shadow_error ("cannot record phase %s: %s", phase_name (p),
                  strerror (errno));
    return -1;
  }
  volume_set_phase (m->v, p);
  shadow_debug ("phase %s", phase_name (p));
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Verify. */

static void
verify_progress (struct migration *m, uint64_t checked, uint64_t mismatches,
                 uint64_t recopied)
{
  mutex_lock (&m->lock);
  m->verify_checked += checked;
  m->verify_mismatches += mismatches;
  m->verify_recopied += recopied;
  mutex_unlock (&m->lock);
}

static int
shadow_read (struct migration *m, int target, void *buf, uint64_t count,
             uint64_t offset)
{
  struct shadow_io io = {
    .op = SHADOW_READ, .target = target, .buf = buf, .count = count,
    .offset = offset, .priority = SHADOW_PRIO_COPY,
  };

  return engine_run (m->cfg.engine, &io);
}

/* Block blk differed between the origin and shadow i.  Under its range
 * lock, and only if no client wrote it meanwhile, compare again and
 * write the origin's bytes to every shadow that still differs.  Returns
 * 1 if it was repaired, 0 if it did not need to be, -1 on error.
 */
static int
repair_block (struct migration *m, uint64_t blk, char *a, char *b)
{
  struct volume *v = m->v;
  uint64_t off = residency_block_offset (v->res, blk);
  uint32_t len = residency_block_bytes (v->res, blk);
  struct range_hold hold;
  size_t i;
  int err, ret = 0;

  rangelock_acquire (&v->locks, &hold, blk, 1);
  if (!v->cfg.writes_both && residency_is_written (v->res, blk))
    goto out;                   /* a client's data now: not ours to judge */
  if (m->cfg.verify_origin->ops->pread (m->cfg.verify_origin->ctx, a, len,
                                        off, &err) == -1) {
    errno = err;
    ret = -1;
    goto out;
  }
  for (i = 0; i < engine_nr_shadows (m->cfg.engine); ++i) {
    struct shadow_io w = {
      .op = SHADOW_WRITE, .target = i, .buf = a, .count = len,
      .offset = off, .priority = SHADOW_PRIO_COPY,
    };

    if (shadow_read (m, i, b, len, off) == -1) {
      ret = -1;
      goto out;
    }
    if (memcmp (a, b, len) == 0)
      continue;
    shadow_error ("verify: block %" PRIu64 " (offset %" PRIu64 ") differs "
                  "on shadow %s: copying it again", blk, off,
                  engine_shadow_info (m->cfg.engine, i)->uri);
    if (engine_run (m->cfg.engine, &w) == -1) {
      ret = -1;
      goto out;
    }
    ret = 1;
  }
 out:
  rangelock_release (&v->locks, &hold);
  return ret;
}

/* Compare blocks [first, end) (all resident, none to skip) on every
 * shadow.  a and b hold VERIFY_CHUNK bytes.
 */
static int
verify_range (struct migration *m, uint64_t first, uint64_t end, char *a,
              char *b)
{
  struct volume *v = m->v;
  uint64_t start = residency_block_offset (v->res, first);
  uint64_t len = residency_block_offset (v->res, end - 1) +
    residency_block_bytes (v->res, end - 1) - start;
  uint64_t mismatches = 0, recopied = 0, blk;
  size_t i;
  int err;

  if (m->cfg.verify_origin->ops->pread (m->cfg.verify_origin->ctx, a, len,
                                        start, &err) == -1) {
    errno = err;
    return -1;
  }
  for (i = 0; i < engine_nr_shadows (m->cfg.engine); ++i) {
    if (shadow_read (m, i, b, len, start) == -1)
      return -1;
    for (blk = first; blk < end; ++blk) {
      uint64_t o = residency_block_offset (v->res, blk) - start;
      uint32_t n = residency_block_bytes (v->res, blk);
      int r;

      if (memcmp (a + o, b + o, n) == 0)
        continue;
      /* The repair reads the block again into the same place. */
      r = repair_block (m, blk, a + o, b + o);
      if (r == -1)
        return -1;
      mismatches += r;
      recopied += r;
    }
  }
  verify_progress (m, end - first, mismatches, recopied);
  return 0;
}

/* Walk the blocks to check: resident, and unwritten unless both mode. */
static int
verify_all (struct migration *m, char *a, char *b)
{
  struct volume *v = m->v;
  uint64_t nr = v->res->nr_blocks, blk = 0;
  uint64_t chunk = VERIFY_CHUNK >> v->res->block_shift;

  if (chunk == 0)
    chunk = 1;
  while (blk < nr) {
    bool resident, written = false;
    uint64_t end = residency_run_end (v->res, blk, nr, &resident);

    if (resident && !v->cfg.writes_both)
      end = residency_written_run_end (v->res, blk, end, &written);
    if (resident && !written) {
      if (end - blk > chunk)
        end = blk + chunk;
      if (verify_range (m, blk, end, a, b) == -1)
        return -1;
    }
    else
      verify_progress (m, end - blk, 0, 0);
    blk = end;
    mutex_lock (&m->lock);
    resident = m->stopping;
    mutex_unlock (&m->lock);
    if (resident) {
      errno = ECANCELED;
      return -1;
    }
  }
  /* Repairs are data: durable before we say "verified". */
  return committer_wait (v->committer);
}

static void
finish_verify (struct migration *m, bool ok, const char *why)
{
  mutex_lock (&m->lock);
  m->verify_state = ok ? VERIFY_DONE : VERIFY_FAILED;
  m->verified = ok;
  if (ok)
    snprintf (m->verify_message, sizeof m->verify_message,
              "%" PRIu64 " blocks checked, %" PRIu64 " differed and were "
              "copied again", m->verify_checked, m->verify_recopied);
  else
    snprintf (m->verify_message, sizeof m->verify_message, "%s", why);
  mutex_unlock (&m->lock);
  if (ok)
    shadow_notice ("verify: %s", m->verify_message);
  else
    shadow_error ("verify: %s", m->verify_message);
}

static void
run_verify (struct migration *m)
{
  char *a = malloc (VERIFY_CHUNK), *b = malloc (VERIFY_CHUNK);
  int r;

  mutex_lock (&m->lock);
  m->verify_state = VERIFY_RUNNING;
  m->verified = false;
  m->verify_checked = m->verify_mismatches = m->verify_recopied = 0;
  m->verify_total = m->v->res->nr_blocks;
  m->verify_message[0] = '\0';
  mutex_unlock (&m->lock);

  if (a == NULL || b == NULL) {
    finish_verify (m, false, "out of memory");
    goto out;
  }
  if (enter_phase (m, PHASE_VERIFYING) == -1) {
    finish_verify (m, false, "cannot record the verifying phase");
    goto out;
  }
  r = verify_all (m, a, b);
  if (r == -1) {
    char why[200];

    snprintf (why, sizeof why, "failed: %s", strerror (errno));
    finish_verify (m, false, why);
  }
  else
    finish_verify (m, true, NULL);
  enter_phase (m, PHASE_SYNCED);
 out:
  free (a);
  free (b);
}

int
migration_verify_start (struct migration *m, char **msg)
{
  enum phase p = volume_phase (m->v);
  int r = 0;

  mutex_lock (&m->lock);
  if (p != PHASE_SYNCED || m->cutting_over) {
    *msg = p == PHASE_COPYING ?
      msgf ("not synced: %" PRIu64 " blocks are still to be copied",
            m->v->res->nr_blocks - residency_count_resident (m->v->res)) :
      msgf ("cannot verify in phase %s", phase_name (p));
    r = -1;
  }
  else if (m->verify_state == VERIFY_RUNNING || m->verify_requested) {
    *msg = msgf ("verify is already running");
    r = -1;
  }
  else {
    m->verify_requested = true;
    m->verify_state = VERIFY_RUNNING;
    cond_broadcast (&m->wake);
  }
  mutex_unlock (&m->lock);
  return r;
}

/* ---------------------------------------------------------------------- */
/* Cutover. */

static struct copier *
take_copier (struct migration *m)
{
  struct copier *c;

  mutex_lock (&m->lock);
  c = m->copier;
  m->copier = NULL;
  mutex_unlock (&m->lock);
  return c;
}

/* With client I/O paused: check, commit, record.  0 or -1 with *msg. */
static int
switch_over (struct migration *m, char **msg)
{
  struct volume *v = m->v;
  uint64_t absent;

  volume_wait_copies (v);
  absent = v->res->nr_blocks - residency_count_resident (v->res);
  if (absent) {
    *msg = msgf ("not synced: %" PRIu64 " blocks are not on the shadow",
                 absent);
    return -1;
  }
  if (committer_wait (v->committer) == -1) {
    *msg = msgf ("commit failed: %s", strerror (errno));
    return -1;
  }
  if (enter_phase (m, PHASE_CUTOVER) == -1) {
    *msg = msgf ("cannot record the cutover phase: %s", strerror (errno));
    return -1;
  }
  return 0;
}

int
migration_cutover (struct migration *m, bool require_verified, char **msg)
{
  enum phase p;
  int r;

  mutex_lock (&m->cutover_lock);
  mutex_lock (&m->lock);
  p = volume_phase (m->v);
  r = -1;
  if (p == PHASE_CUTOVER || p == PHASE_DONE)
    *msg = msgf ("already cut over");
  else if (p != PHASE_SYNCED)
    *msg = p == PHASE_COPYING ?
      msgf ("not synced: %" PRIu64 " blocks are still to be copied",
            m->v->res->nr_blocks - residency_count_resident (m->v->res)) :
      msgf ("cannot cut over while %s", phase_name (p));
  else if (m->verify_state == VERIFY_RUNNING || m->verify_requested)
    *msg = msgf ("verify is running: wait for it to finish");
  else if (require_verified && !m->verified)
    *msg = msgf ("not verified: run verify first");
  else {
    m->cutting_over = true;
    r = 0;
  }
  mutex_unlock (&m->lock);
  if (r == -1) {
    mutex_unlock (&m->cutover_lock);
    return -1;
  }

  shadow_notice ("cutover: pausing client I/O");
  volume_pause_clients (m->v);
  r = switch_over (m, msg);
  volume_resume_clients (m->v);
  if (r == 0) {
    /* Serving from the shadows only: the origin is done with. */
    copier_stop (take_copier (m));
    if (m->cfg.close_origins)
      m->cfg.close_origins (m->cfg.opaque);
    if (enter_phase (m, PHASE_DONE) == -1)
      shadow_error ("cutover complete, but the done phase could not be "
                    "recorded: a restart will say cutover");
    shadow_notice ("cutover complete: serving from the shadow only");
  }
  mutex_lock (&m->lock);
  m->cutting_over = false;
  mutex_unlock (&m->lock);
  mutex_unlock (&m->cutover_lock);
  return r;
}

/* ---------------------------------------------------------------------- */
/* The orchestrator thread. */

static void
on_synced (void *opaque)
{
  struct migration *m = opaque;

  mutex_lock (&m->lock);
  m->synced_event = true;
  cond_broadcast (&m->wake);
  mutex_unlock (&m->lock);
}

static void
handle_synced (struct migration *m)
{
  if (volume_phase (m->v) == PHASE_COPYING &&
      enter_phase (m, PHASE_SYNCED) == 0)
    shadow_notice ("synced: every block is on the shadow");
  if (m->cfg.cutover_auto && volume_phase (m->v) == PHASE_SYNCED) {
    char *msg = NULL;

    if (migration_verify_start (m, &msg) == 0) {
      mutex_lock (&m->lock);
      m->verify_then_cutover = true;
      mutex_unlock (&m->lock);
    }
    else {
      shadow_error ("automatic cutover: %s", msg ? msg : "cannot verify");
      free (msg);
    }
  }
}

static void *
orchestrator_thread (void *arg)
{
  struct migration *m = arg;

  thread_name ("shadow-phases");
  mutex_lock (&m->lock);
  for (;;) {
    while (!m->stopping && !m->synced_event && !m->verify_requested)
      cond_wait (&m->wake, &m->lock);
    if (m->stopping)
      break;
    if (m->synced_event) {
      m->synced_event = false;
      mutex_unlock (&m->lock);
      handle_synced (m);
      mutex_lock (&m->lock);
    }
    if (m->verify_requested) {
      bool then_cutover;

      m->verify_requested = false;
      mutex_unlock (&m->lock);
      run_verify (m);
      mutex_lock (&m->lock);
      then_cutover = m->verify_then_cutover && m->verified && !m->stopping;
      m->verify_then_cutover = false;
      if (then_cutover) {
        char *msg = NULL;

        mutex_unlock (&m->lock);
        if (migration_cutover (m, true, &msg) == -1) {
          shadow_error ("automatic cutover: %s", msg ? msg : "failed");
          free (msg);
        }
        mutex_lock (&m->lock);
      }
    }
  }
  mutex_unlock (&m->lock);
  return NULL;
}

/* ---------------------------------------------------------------------- */
/* Life cycle and control. */

/* The prefetcher's way to the copier (prefetch_request_fn). */
static bool
prefetch_request (void *opaque, bool hot, uint64_t first, uint64_t count)
{
  struct migration *m = opaque;
  bool ok;

  mutex_lock (&m->lock);
  ok = m->copier != NULL;
  if (ok)
    copier_request (m->copier, hot ? COPY_PRIO_HOT : COPY_PRIO_PREDICTED,
                    first, count);
  mutex_unlock (&m->lock);
  return ok;
}

/* A client read's busy or failed copy (volume_set_requeue): on demand,
 * since a client read the blocks.  After cutover there is no copier, and no
 * copy-on-read either.
 */
static bool
requeue_copy (void *opaque, uint64_t first, uint64_t count)
{
  struct migration *m = opaque;
  bool ok;

  mutex_lock (&m->lock);
  ok = m->copier != NULL &&
    copier_request (m->copier, COPY_PRIO_REQUESTED, first, count);
  mutex_unlock (&m->lock);
  return ok;
}

/* How much the copier is backing off for clients, 0..1. */
static double
copier_busy (void *opaque)
{
  struct migration *m = opaque;
  struct copier_stats st;
  double busy = 1;

  mutex_lock (&m->lock);
  if (m->copier) {
    copier_get_stats (m->copier, &st);
    busy = 1.0 - (double) st.window / m->cfg.nr_workers +
      st.pause_ms / 100.0;
  }
  mutex_unlock (&m->lock);
  return busy > 1 ? 1 : busy;
}

struct migration *
migration_start (const struct migration_config *cfg)
{
  struct migration *m = calloc (1, sizeof *m);
  enum phase p = volume_phase (cfg->volume);
  int r;

  if (m == NULL) {
    shadow_error ("migration: out of memory");
    return NULL;
  }
  m->cfg = *cfg;
  m->v = cfg->volume;
  pthread_mutex_init (&m->lock, NULL);
  pthread_mutex_init (&m->cutover_lock, NULL);
  pthread_cond_init (&m->wake, NULL);
  /* A restart in the middle of verify resumes as synced, unverified. */
  if (p == PHASE_VERIFYING)
    volume_set_phase (m->v, PHASE_SYNCED);

  r = pthread_create (&m->thread, NULL, orchestrator_thread, m);
  if (r != 0) {
    shadow_error ("migration: cannot start thread: %s", strerror (r));
    free (m);
    return NULL;
  }
  if (p < PHASE_CUTOVER) {
    struct copier_config cc = {
      .volume = m->v, .origin = cfg->worker_origin,
      .nr_workers = cfg->nr_workers, .nr_idle_workers = cfg->nr_idle_workers,
      .background = cfg->background,
      .rate = cfg->rate, .max_transfer = cfg->max_transfer,
      .shadow_read_feedback = cfg->shadow_read_feedback,
      .synced = on_synced, .opaque = m,
    };

    m->copier = copier_start (&cc);
    if (m->copier)
      volume_set_requeue (m->v, requeue_copy, m);
    if (m->copier == NULL ||
        (cfg->prefetcher &&
         prefetcher_start (cfg->prefetcher, m->v, prefetch_request,
                           copier_busy, m) == -1)) {
      migration_stop (m);
      return NULL;
    }
  }
  return m;
}

void
migration_stop (struct migration *m)
{
  if (m == NULL)
    return;
  volume_set_requeue (m->v, NULL, NULL);
  mutex_lock (&m->lock);
  m->stopping = true;
  cond_broadcast (&m->wake);
  mutex_unlock (&m->lock);
  pthread_join (m->thread, NULL);
  copier_stop (take_copier (m));
  pthread_cond_destroy (&m->wake);
  pthread_mutex_destroy (&m->cutover_lock);
  pthread_mutex_destroy (&m->lock);
  free (m);
}

void
migration_tick (struct migration *m)
{
  volume_sample_rate (m->v, 0);
  mutex_lock (&m->lock);
  if (m->copier && copier_tick (m->copier)) {
    m->synced_event = true;     /* as on_synced, whose lock we hold */
    cond_broadcast (&m->wake);
  }
  mutex_unlock (&m->lock);
}

void
migration_pause (struct migration *m, bool paused)
{
  mutex_lock (&m->lock);
  if (m->copier)
    copier_pause (m->copier, paused);
  mutex_unlock (&m->lock);
}

void
migration_set_rate (struct migration *m, uint64_t rate)
{
  mutex_lock (&m->lock);
  if (m->copier)
    copier_set_rate (m->copier, rate);
  mutex_unlock (&m->lock);
}

int
migration_set_prefetch (struct migration *m, const char *policy, char **msg)
{
  if (m->cfg.prefetcher == NULL) {
    *msg = msgf ("prefetching is not available");
    return -1;
  }
  return prefetcher_set_policy (m->cfg.prefetcher, policy, msg);
}

static const char *
verify_state_name (enum verify_state s)
{
  switch (s) {
  case VERIFY_IDLE: return "idle";
  case VERIFY_RUNNING: return "running";
  case VERIFY_DONE: return "done";
  case VERIFY_FAILED: return "failed";
  }
  return "unknown";
}

void
migration_snapshot (struct migration *m, struct migration_snapshot *out)
{
  memset (out, 0, sizeof *out);
  mutex_lock (&m->lock);
  out->verify_state = verify_state_name (m->verify_state);
  out->verified = m->verified;
  out->verify_checked = m->verify_checked;
  out->verify_total = m->verify_total;
  out->verify_mismatches = m->verify_mismatches;
  out->verify_recopied = m->verify_recopied;
  snprintf (out->verify_message, sizeof out->verify_message, "%s",
            m->verify_message);
  out->have_copier = m->copier != NULL;
  if (m->copier)
    copier_get_stats (m->copier, &out->copier);
  mutex_unlock (&m->lock);
  out->volume = m->v;
  out->cfg = &m->cfg;
}
