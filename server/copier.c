/* nbdshadow: background hydration (see copier.h for the policy).
 *
 * Locking: c->lock guards every field below "lock" in struct copier;
 * c->wake is broadcast whenever the window, the pause state, the rate
 * or stopping change, and on every tick; it is signalled once per range
 * queued and per transfer ended (any worker can take any job, so one
 * woken is enough).  So when clients turn idle the extra idle-time
 * workers start at the next tick (twice a second).  Workers copy without
 * the lock; the copy itself is serialised against clients by the
 * volume's range locks (copyop.c).
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "copier.h"
#include "copyop.h"
#include "lockutil.h"
#include "log.h"
#include "pacer.h"

#define QUEUE_CAP 4096          /* queued ranges per priority */
#define PREDICTED_CAP 256       /* fresh predictions displace stale ones */
#define MAX_PAUSE_MS 50.0       /* the most a congested copier waits */
#define MAX_EXTENTS 512         /* origin extents examined per transfer */
#define ERROR_BACKOFF_MAX 5.0   /* seconds */
/* Predictions may start while the bucket's debt is below one transfer
 * plus this many seconds of the rate; the sweep waits until it is paid
 * off (pick_job). */
#define PREDICTED_BORROW 0.25

struct range {
  uint64_t first, count;
  double queued_at;             /* monotonic s */
};

struct range_queue {
  struct range v[QUEUE_CAP];
  size_t head, len;
};

struct worker {
  struct copier *c;
  struct origin *origin;
  pthread_t thread;
  bool started;
  unsigned errors_in_a_row;
};

struct copier {
  struct copier_config cfg;
  struct volume *v;
  uint64_t transfer_blocks;
  unsigned nr_threads;          /* workers[]: the larger worker count */

  pthread_mutex_t lock;
  pthread_cond_t wake;
  pthread_cond_t stop_cond;     /* broadcast when stopping is set */
  bool stopping, paused, synced_reported;
  struct range_queue queue[COPY_PRIO_LEVELS];
  uint64_t cursor;              /* the sweep's next block */
  unsigned window, active;
  double transfer_bytes;        /* of a whole transfer */
  double pause_ms;
  double latency_floor_us, last_latency_us;
  struct pacer pacer;           /* the sweep yields to shadow reads */
  double sweep_ready_at;        /* monotonic s: the next sweep start */
  uint64_t rate;
  double tokens, tokens_time;   /* token bucket, bytes */
  struct copier_stats stats;

  /* Requested ranges that failed, with the sweep off (after_error). */
  struct range_queue retry;
  double retry_at;              /* take none before (monotonic s) */
  unsigned retry_failures;      /* failed attempts in a row */
  bool retry_probing;           /* one is on trial: the others wait */

  struct worker workers[];
};

/* An absolute CLOCK_REALTIME deadline s seconds from now. */
static void
deadline_after (struct timespec *ts, double s)
{
  clock_gettime (CLOCK_REALTIME, ts);
  ts->tv_sec += (time_t) s;
  ts->tv_nsec += (long) ((s - (time_t) s) * 1e9);
  if (ts->tv_nsec >= 1000000000) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000;
  }
}

/* Wait s seconds, or until the copier stops.  Workers rest here after
 * an error (up to ERROR_BACKOFF_MAX) and after a sweep transfer while
 * the copier backs off, outside their transfer slot, and copier_stop (a
 * cutover waits for it) need not wait for them.  Not on c->wake: a
 * resting worker must not swallow a signal meant for an idle one.
 * Caller holds no lock.
 */
static void
rest (struct copier *c, double s)
{
  struct timespec deadline;

  if (s <= 0)
    return;
  deadline_after (&deadline, s);
  mutex_lock (&c->lock);
  while (!c->stopping &&
         !cond_timedwait (&c->stop_cond, &c->lock, &deadline))
    ;
  mutex_unlock (&c->lock);
}

/* ---------------------------------------------------------------------- */
/* Queues. */

static bool
queue_push (struct range_queue *q, uint64_t first, uint64_t count,
            double now)
{
  if (q->len == QUEUE_CAP)
    return false;
  q->v[(q->head + q->len) % QUEUE_CAP] = (struct range) { first, count, now };
  q->len++;
  return true;
}

static bool
queue_pop (struct range_queue *q, struct range *out)
{
  if (q->len == 0)
    return false;
  *out = q->v[q->head];
  q->head = (q->head + 1) % QUEUE_CAP;
  q->len--;
  return true;
}

bool
copier_request (struct copier *c, enum copy_priority prio, uint64_t first,
                uint64_t count)
{
  uint64_t end = first + count;
  unsigned queued = 0;
  bool all_queued = true;
  double now = monotonic_s ();

  if (end > c->v->res->nr_blocks)
    end = c->v->res->nr_blocks;
  mutex_lock (&c->lock);
  /* Queue in transfer-sized pieces so that one big request does not hold
   * a worker (and its range locks) for long.
   */
  for (; first < end; first += c->transfer_blocks) {
    uint64_t n = end - first < c->transfer_blocks ?
      end - first : c->transfer_blocks;

    struct range stale;

    /* A prediction not served soon is no longer one: drop the oldest. */
    if (prio == COPY_PRIO_PREDICTED &&
        c->queue[prio].len >= PREDICTED_CAP &&
        queue_pop (&c->queue[prio], &stale))
      c->stats.requests_dropped++;
    if (queue_push (&c->queue[prio], first, n, now)) {
      c->stats.requests_queued++;
      queued++;
    }
    else {
      c->stats.requests_dropped++;
      all_queued = false;
    }
  }
  /* One worker per new range: the predictor requests a few blocks at a
   * time, hundreds of times a second, and waking every idle worker for
   * each (16 of them, all but one going back to sleep) cost the clients'
   * shadow reads ~20% at p50 on two CPUs (bench/e2e seq).
   */
  if (queued == 1)
    cond_signal (&c->wake);
  else if (queued > 1)
    cond_broadcast (&c->wake);
  mutex_unlock (&c->lock);
  return all_queued;
}

/* A unit of work a worker picks. */
enum job_kind { JOB_NONE, JOB_RANGE, JOB_SWEEP };

struct job {
  enum job_kind kind;
  enum copy_kind copy_kind;
  enum copy_priority prio;      /* JOB_RANGE: the queue it came from */
  uint64_t first, count;
  double queued_at;             /* JOB_RANGE: monotonic s */
  bool rate_limited;
  bool retry;                   /* from c->retry */
  bool probe;                   /* ... tried alone after failures */
};

/* ---------------------------------------------------------------------- */
/* Bandwidth. */

/* Refill the bucket.  May rate-limited work start now?  If not, *wait
 * says how long the bucket stays in debt.  Caller holds c->lock.
 */
static bool
tokens_available (struct copier *c, double *wait)
{
  double now, burst;

  if (c->rate == 0)
    return true;
  now = monotonic_s ();
  burst = c->rate * 0.25;
  c->tokens += (now - c->tokens_time) * c->rate;
  if (c->tokens > burst)
    c->tokens = burst;
  c->tokens_time = now;
  if (c->tokens >= 0)
    return true;
  *wait = -c->tokens / c->rate;
  return false;
}

/* The debt below which predictions may still start.  The sweep starts
 * only out of debt, so it leaves at most one transfer's worth;
 * predictions may go beyond that by PREDICTED_BORROW (and the last one
 * to start by its own size, at most a transfer).
 */
static double
borrow_limit (const struct copier *c)
{
  return c->transfer_bytes + (double) c->rate * PREDICTED_BORROW;
}

/* May a prediction start on borrowed tokens?  If not, *wait says how
 * long until one may.  Caller holds c->lock and has just refilled the
 * bucket (tokens_available).
 */
static bool
predictions_may_borrow (const struct copier *c, double *wait)
{
  double over = -c->tokens - borrow_limit (c);

  if (over < 0)
    return true;
  *wait = over / c->rate + 0.001;
  return false;
}

static bool
predictions_queued (const struct copier *c)
{
  return c->queue[COPY_PRIO_PREDICTED].len > 0 ||
    c->queue[COPY_PRIO_HOT].len > 0;
}

/* Spend n bytes (negative: give them back).  A job pays for all its
 * bytes when it is picked, under c->lock: paying later, when the data
 * moves, would let every worker pick a transfer on the same positive
 * balance and overshoot the cap by the window.  The bucket may go into
 * debt: the next pick waits it off, so a pause or a lower rate takes
 * effect at the next transfer.  Caller holds c->lock.
 */
static void
spend_tokens (struct copier *c, int64_t n)
{
  if (c->rate > 0)
    c->tokens -= n;
}

/* A picked job that moves fewer bytes than it paid for (zero ranges
 * become write-zeroes, blocks already resident are skipped, a copy is
 * cut short for a client) gets the difference back.
 */
static void
refund_tokens (struct copier *c, const struct job *job, uint64_t bytes)
{
  double before;

  if (!job->rate_limited || bytes == 0)
    return;
  mutex_lock (&c->lock);
  before = c->tokens;
  spend_tokens (c, -(int64_t) bytes);
  /* Workers waiting out the debt (or, for predictions, the part beyond
   * the borrow limit) may go now, not at their deadline.
   */
  if (c->rate > 0 &&
      ((before < 0 && c->tokens >= 0) ||
       (before <= -borrow_limit (c) && c->tokens > -borrow_limit (c))))
    cond_broadcast (&c->wake);
  mutex_unlock (&c->lock);
}

void
copier_set_rate (struct copier *c, uint64_t rate)
{
  mutex_lock (&c->lock);
  c->rate = rate;
  c->tokens = 0;
  c->tokens_time = monotonic_s ();
  cond_broadcast (&c->wake);
  mutex_unlock (&c->lock);
}

/* ---------------------------------------------------------------------- */
/* Choosing work.  Caller holds c->lock. */

/* The sweep's next run of absent blocks, at most a transfer long. */
static bool
claim_sweep (struct copier *c, struct job *job)
{
  struct residency *r = c->v->res;
  uint64_t a = residency_next_absent (r, c->cursor);
  uint64_t b;
  bool resident;

  if (a >= r->nr_blocks && c->cursor > 0)
    a = residency_next_absent (r, 0);   /* wrap: skipped or failed blocks */
  if (a >= r->nr_blocks)
    return false;
  b = residency_run_end (r, a, r->nr_blocks, &resident);
  if (b - a > c->transfer_blocks)
    b = a + c->transfer_blocks;
  c->cursor = b;
  *job = (struct job) { .kind = JOB_SWEEP, .copy_kind = COPY_BACKGROUND,
                        .first = a, .count = b - a, .rate_limited = true };
  return true;
}

/* A failed requested range, if one is due.  After a failure only one is
 * tried at a time (a probe): while the shadow or origin is still broken
 * that costs one failed transfer per backoff, not one per range.  Not
 * due yet: *wait says how long.
 */
static bool
claim_retry (struct copier *c, struct job *job, double *wait)
{
  struct range rg;
  double now;

  if (c->retry.len == 0 || c->retry_probing)
    return false;
  now = monotonic_s ();
  if (now < c->retry_at) {
    *wait = c->retry_at - now;
    return false;
  }
  if (!queue_pop (&c->retry, &rg))
    return false;
  c->retry_probing = c->retry_failures > 0;
  *job = (struct job) { .kind = JOB_RANGE, .copy_kind = COPY_ON_DEMAND,
                        .prio = COPY_PRIO_REQUESTED, .retry = true,
                        .probe = c->retry_probing,
                        .first = rg.first, .count = rg.count,
                        .rate_limited = true };
  return true;
}

/* Transfers that may run at once: the window while clients are active,
 * every worker while they are idle.  Caller holds c->lock.
 */
static unsigned
allowed_at_once (struct copier *c)
{
  if (c->nr_threads > c->window &&
      volume_clients_idle (c->v, VOLUME_CLIENTS_QUIET))
    return c->nr_threads;
  return c->window;
}

/* Must the sweep wait for its pacing (pacer.h)?  Then *wait is at most
 * the time until it may start, or unchanged when the next tick decides.
 * Caller holds c->lock.
 */
static bool
sweep_paced (struct copier *c, double *wait)
{
  double w;

  if (pacer_may_start (&c->pacer, monotonic_s (), c->sweep_ready_at, &w))
    return false;
  if (w > 0 && (*wait == 0 || w < *wait))
    *wait = w;
  return true;
}

/* The next job, or false, with *wait > 0 if rate-limited work must wait
 * that long for the token bucket.  Requested ranges (a client waits for
 * them) ignore pause, window and rate.  Under a rate cap predictions go
 * first: they may start on tokens borrowed ahead (PREDICTED_BORROW),
 * which the sweep and retries then wait off.  A prediction is a read a
 * client is about to make; waiting behind the sweep's debt made it
 * late: with shadow-rate=25M on bench/e2e inter (four readers needing
 * ~26 MB/s of prefetch), the clients' reads took 4-6 s longer in all
 * than without a cap.  Over any stretch of time the cap still holds,
 * give or take two transfers and half a second's worth (the bucket's
 * burst, the borrow limit and the last prediction's size).
 */
static bool
pick_job (struct copier *c, struct job *job, double *wait)
{
  struct range rg;
  bool have_tokens;
  int p;

  *wait = 0;
  if (queue_pop (&c->queue[COPY_PRIO_REQUESTED], &rg)) {
    *job = (struct job) { .kind = JOB_RANGE, .copy_kind = COPY_ON_DEMAND,
                          .prio = COPY_PRIO_REQUESTED,
                          .first = rg.first, .count = rg.count };
    return true;
  }
  if (c->paused || c->active >= allowed_at_once (c))
    return false;
  have_tokens = tokens_available (c, wait);
  if (!have_tokens && predictions_queued (c) &&
      !predictions_may_borrow (c, wait))
    return false;
  if (have_tokens && claim_retry (c, job, wait))
    goto pay;
  for (p = COPY_PRIO_PREDICTED; p < COPY_PRIO_LEVELS; ++p)
    if (queue_pop (&c->queue[p], &rg)) {
      *job = (struct job) {
        .kind = JOB_RANGE, .prio = p, .first = rg.first, .count = rg.count,
        .queued_at = rg.queued_at,
        .copy_kind = COPY_PREFETCH,     /* hot regions are predictions too */
        .rate_limited = true,
      };
      goto pay;
    }
  if (!have_tokens || !c->cfg.background || sweep_paced (c, wait) ||
      !claim_sweep (c, job))
    return false;
  if (c->pacer.gap_ms > 0)
    c->sweep_ready_at = pacer_next_start (&c->pacer, monotonic_s (),
                                          job->count /
                                          (double) c->transfer_blocks);
 pay:
  spend_tokens (c, residency_block_offset (c->v->res, job->count));
  return true;
}

/* Is every block resident, and nobody said so yet?  Then it counts as
 * said.  Caller holds no lock.
 */
static bool
claim_synced_report (struct copier *c)
{
  bool report = false;

  if (residency_count_resident (c->v->res) < c->v->res->nr_blocks)
    return false;
  mutex_lock (&c->lock);
  if (!c->synced_reported)
    report = c->synced_reported = true;
  mutex_unlock (&c->lock);
  return report;
}

/* A floor that follows the best latency seen and slowly forgets it
 * (doubles in about 35 s), so that it tracks a changing origin.
 */
static void
follow_floor (double *floor_us, double mean_us)
{
  if (*floor_us == 0 || mean_us < *floor_us)
    *floor_us = mean_us;
  else
    *floor_us *= 1.01;
}

/* Is the copier in the clients' way?  A mean latency of all client
 * requests over twice its floor and 1 ms above it.  The origin's
 * latency is in there: a loose test, for copies crowding the origin's
 * link.  Caller holds c->lock.
 */
static bool
clients_slowed (struct copier *c, double mean)
{
  follow_floor (&c->latency_floor_us, mean);
  return mean > 2 * c->latency_floor_us &&
    mean > c->latency_floor_us + 1000;
}

/* AIMD on the window of concurrent transfers and a pause after each
 * sweep transfer, driven by the clients' latency (clients_slowed), and
 * the sweep's pacing by shadow-served reads (pacer.h).  With no client
 * I/O: full speed.
 * A tick in which a client request was in flight but none ended (one
 * slower than the tick) leaves window, pause and the sweep's gap as they
 * are: going to full speed there flooded the origin just while a client
 * waited.  (A probe under way still ends after its two ticks.)
 */
bool
copier_tick (struct copier *c)
{
  uint64_t n, n_shadow;
  double mean, mean_shadow;
  /* Before the samples are taken: a request ending in between is then
   * counted now (not idle), never taken for idleness with its sample
   * left to the next tick. */
  bool idle = volume_clients_idle (c->v, 0);

  volume_take_client_latency (c->v, &n, &mean);
  volume_take_shadow_read_latency (c->v, &n_shadow, &mean_shadow);
  mutex_lock (&c->lock);
  c->last_latency_us = mean;
  if (n_shadow > 0)
    c->pacer.last_us = mean_shadow;
  if (n == 0 && idle) {
    c->window = c->cfg.nr_workers;
    c->pause_ms = 0;
    pacer_idle (&c->pacer);
  }
  else {
    if (n > 0 && clients_slowed (c, mean)) {
      c->window = c->window > 1 ? c->window / 2 : 1;
      c->pause_ms = fmin (c->pause_ms * 2 + 1, MAX_PAUSE_MS);
    }
    else if (n > 0) {
      if (c->window < c->cfg.nr_workers)
        c->window++;
      c->pause_ms = c->pause_ms < 0.5 ? 0 : c->pause_ms / 2;
    }
    if (c->cfg.shadow_read_feedback)
      pacer_tick (&c->pacer, n, n_shadow, mean_shadow, c->cfg.background);
  }
  cond_broadcast (&c->wake);
  mutex_unlock (&c->lock);
  /* Copy-on-read may copy the last absent block, with the sweep off or
   * done: no worker's job would notice.  The caller reports it (it holds
   * the lock cfg.synced takes).
   */
  return claim_synced_report (c);
}

/* ---------------------------------------------------------------------- */
/* Doing work. */

/* The origin's allocation over one transfer. */
struct extent {
  uint64_t offset, length;
  uint32_t type;
};

struct extent_list {
  struct extent v[MAX_EXTENTS];
  size_t n;
};

static void
collect_extent (void *opaque, uint64_t offset, uint64_t length,
                uint32_t type)
{
  struct extent_list *l = opaque;

  if (l->n < MAX_EXTENTS)
    l->v[l->n++] = (struct extent) { offset, length, type };
}

/* Is every byte of block blk inside zero extents?  ext[] is sorted and
 * contiguous; *i walks forward with blk.
 */
static bool
block_is_zero (struct volume *v, const struct extent *ext, size_t n,
               size_t *i, uint64_t blk)
{
  uint64_t s = residency_block_offset (v->res, blk);
  uint64_t e = s + residency_block_bytes (v->res, blk);

  while (*i < n && ext[*i].offset + ext[*i].length <= s)
    (*i)++;
  for (size_t j = *i; j < n && ext[j].offset < e; ++j) {
    if (!(ext[j].type & EXTENT_ZERO))
      return false;
    if (ext[j].offset + ext[j].length >= e)
      return true;
  }
  return false;                 /* not covered: assume data */
}

/* Copy (or zero) one segment of a job.  *cut_short: volume_copy_blocks
 * stopped early because a client turned up.
 */
static int
copy_segment (struct copier *c, struct worker *w, const struct job *job,
              uint64_t first, uint64_t count, bool zero, bool *cut_short,
              uint64_t *copied, int *err)
{
  int64_t r;

  *copied = 0;
  if (zero) {
    mutex_lock (&c->lock);
    c->stats.zero_transfers++;
    mutex_unlock (&c->lock);
    refund_tokens (c, job, residency_block_offset (c->v->res, count));
    return volume_zero_blocks (c->v, first, count, job->copy_kind, err);
  }
  r = volume_copy_blocks (c->v, w->origin, first, count, job->copy_kind,
                          true, cut_short, err);
  if (r == -1)
    return -1;
  *copied = r;
  return 0;
}

/* Copy a job's blocks, turning the origin's zero ranges into
 * write-zeroes instead of reads.
 */
static int
run_job (struct copier *c, struct worker *w, const struct job *job,
         bool *moved, int *err)
{
  struct volume *v = c->v;
  struct extent_list ext = { .n = 0 };
  uint64_t start = residency_block_offset (v->res, job->first);
  uint64_t last = job->first + job->count - 1;
  uint64_t end = residency_block_offset (v->res, last) +
    residency_block_bytes (v->res, last);
  uint64_t blk, seg, copied;
  size_t i = 0;
  bool seg_zero = false, cut = false;

  *moved = false;
  if (!residency_any_absent (v->res, job->first, job->count)) {
    refund_tokens (c, job, residency_block_offset (v->res, job->count));
    return 0;
  }
  if (w->origin->can_extents &&
      w->origin->ops->extents (w->origin->ctx, end - start, start, false,
                               collect_extent, &ext, err) == -1)
    ext.n = 0;                  /* no allocation info: copy it all */

  seg = job->first;
  for (blk = job->first; blk <= last + 1; ++blk) {
    bool z = blk <= last && block_is_zero (v, ext.v, ext.n, &i, blk);

    if (blk == job->first) {
      seg_zero = z;
      continue;
    }
    if (blk == last + 1 || z != seg_zero) {
      if (copy_segment (c, w, job, seg, blk - seg, seg_zero, &cut, &copied,
                        err) == -1)
        return -1;
      if (seg_zero || copied > 0)
        *moved = true;
      if (cut) {                /* a client turned up: the rest waits */
        refund_tokens (c, job, end - residency_block_offset (v->res, seg) -
                       copied);
        return 0;
      }
      seg = blk;
      seg_zero = z;
    }
  }
  return 0;
}

/* Every block is resident: say so once. */
static void
check_synced (struct copier *c)
{
  if (claim_synced_report (c) && c->cfg.synced)
    c->cfg.synced (c->cfg.opaque);
}

/* A job failed: returns how long its worker should rest before the
 * next (the origin or a shadow is in trouble); it rests outside its
 * transfer slot, which held for those seconds would shut predictions
 * out of a window that clients narrowed to one.  The blocks stay
 * absent.  With the sweep on, its next pass copies them; with it off
 * nothing would, so a requested range (a client read those blocks, or
 * asked for them) goes to c->retry, taken again after a backoff that
 * grows with each failed retry (claim_retry): the volume can still
 * reach synced once the trouble ends.  Retries are background work
 * (pause, window and rate apply: no client waits for them).
 * Predictions are not retried: a failed guess is not worth it.
 */
static double
after_error (struct copier *c, struct worker *w, const struct job *job,
             int err)
{
  double backoff = fmin (0.1 * pow (2, w->errors_in_a_row),
                         ERROR_BACKOFF_MAX);
  bool retry = !c->cfg.background && job->kind == JOB_RANGE &&
    job->prio == COPY_PRIO_REQUESTED;
  bool queued = false;
  double retry_in = 0;

  mutex_lock (&c->lock);
  c->stats.errors++;
  if (retry) {
    queued = queue_push (&c->retry, job->first, job->count, monotonic_s ());
    if (queued)
      c->stats.requests_retried++;
    else
      c->stats.requests_dropped++;
    /* Only a failed probe doubles the backoff; the first failure starts
     * it; other failures (copies under way when the trouble began) leave
     * it alone.
     */
    if (job->probe || c->retry_failures == 0) {
      if (c->retry_failures < 16)
        c->retry_failures++;
      c->retry_at = monotonic_s () +
        fmin (0.1 * pow (2, c->retry_failures - 1), ERROR_BACKOFF_MAX);
    }
    if (job->probe)
      c->retry_probing = false;
    retry_in = fmax (c->retry_at - monotonic_s (), 0);
  }
  mutex_unlock (&c->lock);
  w->errors_in_a_row++;
  if (queued)
    shadow_error ("copier: blocks %" PRIu64 "..%" PRIu64 " not copied: %s "
                  "(left absent, tried again in %.1f s)", job->first,
                  job->first + job->count - 1, strerror (err), retry_in);
  else
    shadow_error ("copier: blocks %" PRIu64 "..%" PRIu64 " not copied: %s "
                  "(left absent, %s)", job->first,
                  job->first + job->count - 1, strerror (err),
                  c->cfg.background ? "the sweep retries them" :
                  retry ? "retry queue full: copied when a client reads them" :
                  "copied when a client reads them");
  return backoff;
}

/* A retry ended without an error.  If it wrote to the shadow, whatever
 * was broken works again, so the other retries may all go now.  If a
 * client had made its blocks resident meanwhile it proves nothing: the
 * next probe may go at once, the backoff stays -- unless no retry is
 * left: the next trouble is a new one, and starts at the shortest
 * backoff, not where this one's ended.
 */
static void
retry_ended (struct copier *c, const struct job *job, bool moved)
{
  mutex_lock (&c->lock);
  if (job->probe)
    c->retry_probing = false;
  if (moved || (c->retry.len == 0 && !c->retry_probing)) {
    c->retry_failures = 0;
    c->retry_at = 0;
    cond_broadcast (&c->wake);
  }
  else if (job->probe) {
    c->retry_at = 0;
    cond_signal (&c->wake);
  }
  mutex_unlock (&c->lock);
}

/* How long predictions take from queued to copied, for the status: a
 * running median, moved 5% up or down by each copy.  The times are
 * heavy-tailed (3 ms to 70 ms within one second of bench/e2e inter,
 * with the window at 1 and predictions queued behind each other); the
 * tail, not this median, is what a prediction must be made early enough
 * to cover (bench/e2e/RESULTS.md, "A lookahead in time").  Only ranges
 * that wrote something to the shadow count (data or zeroes, all of the
 * range or, cut short by a client, part of it): a prediction found
 * resident by the time a worker took it says nothing of the link.
 * Caller holds c->lock.
 */
static void
note_prediction_latency (struct copier *c, double seconds)
{
  double us = seconds * 1e6, *m = &c->stats.prediction_latency_us;

  if (c->stats.predictions_copied++ == 0 || *m <= 0)
    *m = us;
  else if (us > *m)
    *m *= 1.05;
  else if (us < *m)
    *m /= 1.05;
}

static void *
worker_thread (void *arg)
{
  struct worker *w = arg;
  struct copier *c = w->c;

  thread_name ("shadow-copier");
  for (;;) {
    struct job job = { .kind = JOB_NONE };
    double rest_s = 0, wait;
    bool moved = false;
    int err = 0;

    mutex_lock (&c->lock);
    while (!c->stopping && !pick_job (c, &job, &wait)) {
      if (wait > 0) {
        struct timespec deadline;

        deadline_after (&deadline, wait);
        cond_timedwait (&c->wake, &c->lock, &deadline);
      }
      else
        cond_wait (&c->wake, &c->lock);
    }
    if (c->stopping) {
      mutex_unlock (&c->lock);
      break;
    }
    c->active++;
    c->stats.transfers++;
    mutex_unlock (&c->lock);

    if (run_job (c, w, &job, &moved, &err) == -1) {
      rest_s = after_error (c, w, &job, err);
      moved = false;            /* a failed copy times nothing */
    }
    else {
      w->errors_in_a_row = 0;
      if (job.retry)
        retry_ended (c, &job, moved);
    }

    mutex_lock (&c->lock);
    c->active--;
    if (job.kind == JOB_RANGE && job.prio == COPY_PRIO_PREDICTED && moved)
      note_prediction_latency (c, monotonic_s () - job.queued_at);
    if (job.kind == JOB_SWEEP)
      rest_s += c->pause_ms / 1000;
    cond_signal (&c->wake);     /* one slot freed: one worker may take it */
    mutex_unlock (&c->lock);
    check_synced (c);
    rest (c, rest_s);
  }
  return NULL;
}

/* ---------------------------------------------------------------------- */
/* Life cycle and control. */

struct copier *
copier_start (const struct copier_config *cfg)
{
  struct copier *c;
  unsigned i;
  int r;

  unsigned nr_threads = cfg->nr_idle_workers > cfg->nr_workers ?
    cfg->nr_idle_workers : cfg->nr_workers;

  c = calloc (1, sizeof *c + nr_threads * sizeof c->workers[0]);
  if (c == NULL) {
    shadow_error ("copier: out of memory");
    return NULL;
  }
  c->cfg = *cfg;
  c->nr_threads = nr_threads;
  c->v = cfg->volume;
  c->transfer_blocks = cfg->max_transfer >> c->v->res->block_shift;
  if (c->transfer_blocks == 0)
    c->transfer_blocks = 1;
  c->transfer_bytes = (double) residency_block_offset (c->v->res,
                                                      c->transfer_blocks);
  c->window = cfg->nr_workers;
  c->rate = cfg->rate;
  c->tokens_time = monotonic_s ();
  pthread_mutex_init (&c->lock, NULL);
  pthread_cond_init (&c->wake, NULL);
  pthread_cond_init (&c->stop_cond, NULL);

  for (i = 0; i < nr_threads; ++i) {
    struct worker *w = &c->workers[i];

    w->c = c;
    w->origin = cfg->origin;
    r = pthread_create (&w->thread, NULL, worker_thread, w);
    if (r != 0) {
      shadow_error ("copier: cannot start worker %u: %s", i, strerror (r));
      copier_stop (c);
      return NULL;
    }
    w->started = true;
  }
  /* A volume loaded fully resident is synced from the start. */
  check_synced (c);
  return c;
}

void
copier_stop (struct copier *c)
{
  unsigned i;

  if (c == NULL)
    return;
  mutex_lock (&c->lock);
  c->stopping = true;
  cond_broadcast (&c->wake);
  cond_broadcast (&c->stop_cond);
  mutex_unlock (&c->lock);
  for (i = 0; i < c->nr_threads; ++i)
    if (c->workers[i].started)
      pthread_join (c->workers[i].thread, NULL);
  pthread_cond_destroy (&c->wake);
  pthread_cond_destroy (&c->stop_cond);
  pthread_mutex_destroy (&c->lock);
  free (c);
}

void
copier_pause (struct copier *c, bool paused)
{
  mutex_lock (&c->lock);
  c->paused = paused;
  cond_broadcast (&c->wake);
  mutex_unlock (&c->lock);
}

void
copier_get_stats (struct copier *c, struct copier_stats *out)
{
  mutex_lock (&c->lock);
  *out = c->stats;
  out->window = c->window;
  out->active = c->active;
  out->pause_ms = c->pause_ms;
  out->client_latency_us = c->last_latency_us;
  out->client_latency_floor_us = c->latency_floor_us;
  out->shadow_read_latency_us = c->pacer.last_us;
  out->shadow_read_quiet_us = c->pacer.quiet_us;
  out->sweep_gap_ms = c->pacer.gap_ms;
  out->paused = c->paused;
  out->rate = c->rate;
  mutex_unlock (&c->lock);
}
