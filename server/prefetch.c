/* nbdshadow: predictive prefetching (see prefetch.h). */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lockutil.h"
#include "log.h"
#include "predictor.h"
#include "prefetch.h"
#include "ring.h"
#include "trace.h"

#define RING_CELLS 65536
#define MIN_DEPTH 2
#define MAX_DEPTH 64
#define HOT_REGIONS 4
#define HOT_MAX_BLOCKS 256      /* per region per second */
#define RECENT_SLOTS 8192       /* recently requested blocks, not repeated */
#define RECENT_SECONDS 2.0
/* New blocks one prediction round may queue.  The copier serves
 * predictions first come, first served: a round that queued a whole
 * lookahead at once (16 blocks for the n-gram, 32 for the hybrid) for a
 * stream that just started made the next block of every other stream
 * wait behind it.  With 8 the lookahead still fills within a few
 * accesses, and bench/e2e's clients stalled less under every predictor
 * (four interleaved readers: n-gram 1.56 -> 0.78 s, hybrid 1.84 -> 0.86
 * s; one reader: 0.90 -> 0.64 s and 0.67 -> 0.52 s; 4 and 16 were no
 * better).
 */
#define ROUND_BLOCKS 8

struct recent {
  uint64_t block_plus_one;
  double time;
};

struct prefetcher {
  struct prefetch_config cfg;
  struct predictor *p;
  struct pred_ring *ring;
  struct pred_trace_writer *trace;

  /* Set by prefetcher_start, constant after. */
  struct volume *v;
  prefetch_request_fn request;
  prefetch_busy_fn busy;
  void *opaque;
  pthread_t thread;
  bool started;
  _Atomic bool stopping;

  unsigned round_blocks;        /* constant after prefetcher_new */

  /* The predictor thread's own. */
  struct recent recent[RECENT_SLOTS];
  struct pred_cand cand[MAX_DEPTH];
  double last_adapt;
  uint64_t prev_used, prev_wasted;
  double precision;             /* smoothed used / (used + wasted) */

  /* Read by stats from any thread. */
  _Atomic uint64_t issued, rounds, batched_rounds, traced;
  _Atomic unsigned depth;
  _Atomic double threshold;
};

/* ---------------------------------------------------------------------- */
/* The I/O path's side: never blocks. */

void
prefetcher_note (void *opaque, int op, uint64_t offset, uint32_t count)
{
  struct prefetcher *pf = opaque;
  struct pred_access a = {
    .time_us = (uint64_t) (monotonic_s () * 1e6),
    .offset = offset, .length = count, .op = op,
  };

  (void) pred_ring_push (pf->ring, &a);  /* full: dropped and counted */
}

/* ---------------------------------------------------------------------- */
/* The predictor thread. */

/* Worth asking for: absent, and not asked for in the last seconds. */
static bool
worth_copying (void *opaque, uint64_t block)
{
  struct prefetcher *pf = opaque;
  struct recent *r = &pf->recent[block % RECENT_SLOTS];

  if (block >= pf->v->res->nr_blocks ||
      residency_is_resident (pf->v->res, block))
    return false;
  return !(r->block_plus_one == block + 1 &&
           monotonic_s () - r->time < RECENT_SECONDS);
}

static void
remember (struct prefetcher *pf, uint64_t first, uint64_t count, double now)
{
  uint64_t b;

  for (b = first; b < first + count; ++b)
    pf->recent[b % RECENT_SLOTS] = (struct recent) { b + 1, now };
}

static void
issue (struct prefetcher *pf, bool hot, uint64_t first, uint64_t count,
       double now)
{
  if (pf->request (pf->opaque, hot, first, count)) {
    remember (pf, first, count, now);
    atomic_fetch_add (&pf->issued, count);
  }
}

/* Queue the candidates of one prediction likely enough, adjacent ones
 * as one range.
 */
static void
queue_candidates (struct prefetcher *pf, size_t n)
{
  double threshold = atomic_load (&pf->threshold), now = monotonic_s ();
  size_t i;
  uint64_t first = 0, count = 0;

  for (i = 0; i < n && pf->cand[i].p >= threshold; ++i) {
    uint64_t b = pf->cand[i].block;

    if (count && b == first + count) {
      count++;
      continue;
    }
    if (count)
      issue (pf, false, first, count, now);
    first = b;
    count = 1;
  }
  if (count)
    issue (pf, false, first, count, now);
}

/* Ask the model for the next blocks of every stream the batch just
 * observed touched (at most 8), not only the last access's: when the
 * thread falls behind (two CPUs shared with the servers and the
 * copier), a batch holds accesses of several interleaved readers, and
 * the others went without a round until their next access.
 */
static void
predict_rounds (struct prefetcher *pf)
{
  uint64_t rounds = 0;
  size_t n;

  while (predictor_predict_batch (pf->p, pf->cand, atomic_load (&pf->depth),
                                  worth_copying, pf, &n))
    if (n > 0) {
      queue_candidates (pf, n);
      rounds++;
    }
  if (rounds == 0)
    return;
  if (rounds > 1)
    atomic_fetch_add (&pf->batched_rounds, rounds - 1);
  atomic_fetch_add (&pf->rounds, rounds);       /* after: tests wait on it */
}

/* Queue the absent start of each hot region. */
static void
hot_round (struct prefetcher *pf, double now)
{
  struct pred_region r[HOT_REGIONS];
  size_t n = predictor_hot_regions (pf->p, r, HOT_REGIONS), i;

  for (i = 0; i < n; ++i) {
    uint64_t end = r[i].first_block + r[i].nblocks;
    uint64_t a = residency_next_absent (pf->v->res, r[i].first_block);
    bool resident;
    uint64_t b;

    if (end > pf->v->res->nr_blocks)
      end = pf->v->res->nr_blocks;
    if (a >= end)
      continue;
    b = residency_run_end (pf->v->res, a, end, &resident);
    if (b - a > HOT_MAX_BLOCKS)
      b = a + HOT_MAX_BLOCKS;
    issue (pf, true, a, b - a, now);
  }
}

/* Once a second: measure the precision of recent prefetches and the
 * copier's congestion; set depth and threshold from them.  Precision
 * here is used / (used + wasted): a prefetched block never read is not
 * counted against it (the status's precision, used / copied, counts it),
 * so on read-only workloads the depth stays at ROUND_BLOCKS.  Rounds
 * that followed used / copied stalled wsrch less and fs-tar more (late
 * prefetches look like wrong ones): bench/e2e/RESULTS.md, "Rounds that
 * follow precision".
 */
static void
adapt (struct prefetcher *pf)
{
  uint64_t used = STAT_GET (pf->v->stats.prefetch_used);
  uint64_t wasted = STAT_GET (pf->v->stats.prefetch_wasted);
  uint64_t du = used - pf->prev_used, dw = wasted - pf->prev_wasted;
  double busy = pf->busy (pf->opaque), target;

  pf->prev_used = used;
  pf->prev_wasted = wasted;
  predictor_refresh_stats (pf->p);      /* status sees the last second too */
  if (du + dw > 0)
    pf->precision = 0.7 * pf->precision + 0.3 * ((double) du / (du + dw));
  target = MAX_DEPTH * fmax (pf->precision, 0.1) * (1 - 0.75 * busy);
  atomic_store (&pf->depth, (unsigned) fmax (MIN_DEPTH,
                                             fmin (pf->round_blocks, target)));
  atomic_store (&pf->threshold, 0.05 + 0.5 * busy);
}

static void *
predictor_thread (void *arg)
{
  struct prefetcher *pf = arg;
  struct pred_access a;

  thread_name ("shadow-predict");
  while (!atomic_load (&pf->stopping)) {
    bool got = false;
    double now;

    pred_ring_wait (pf->ring, 50);
    while (pred_ring_pop (pf->ring, &a)) {
      predictor_observe (pf->p, &a);
      if (pf->trace && pred_trace_writer_add (pf->trace, &a) == -1) {
        shadow_error ("shadow-trace=%s: %s: no longer recording",
                      pf->cfg.trace_path, strerror (errno));
        pred_trace_writer_close (pf->trace);
        pf->trace = NULL;
      }
      else if (pf->trace)
        atomic_fetch_add (&pf->traced, 1);
      got = true;
    }
    if (got)
      predict_rounds (pf);
    now = monotonic_s ();
    if (now - pf->last_adapt >= 1.0) {
      pf->last_adapt = now;
      adapt (pf);
      /* Hot regions are a prediction too: none with prefetch off. */
      if (predictor_get_policy (pf->p) != PRED_POLICY_OFF)
        hot_round (pf, now);
      if (pf->trace)
        (void) pred_trace_writer_flush (pf->trace);
    }
  }
  return NULL;
}

/* The policies shadow-prefetch offers (the predictor has evaluation
 * baselines besides).
 */
static int
filter_policy (const char *name)
{
  static const char *const names[] =
    { "off", "readahead", "ngram", "lstm", "hybrid" };
  size_t i;

  for (i = 0; i < sizeof names / sizeof names[0]; ++i)
    if (strcmp (name, names[i]) == 0)
      return predictor_policy_parse (name);
  return -1;
}

/* ---------------------------------------------------------------------- */
/* Life cycle. */

struct prefetcher *
prefetcher_new (const struct prefetch_config *cfg, char *err, size_t errlen)
{
  struct prefetcher *pf = calloc (1, sizeof *pf);
  struct predictor_config pc;
  int policy = filter_policy (cfg->policy);

  if (pf == NULL) {
    snprintf (err, errlen, "out of memory");
    return NULL;
  }
  pf->cfg = *cfg;
  predictor_config_default (&pc);
  pc.block_size = cfg->block_size;
  pc.nr_blocks = cfg->nr_blocks;
  pc.policy = policy < 0 ? PRED_POLICY_OFF : policy;
  pc.model_path = cfg->model_path;
  if (cfg->streams)
    pc.streams = cfg->streams;
  if (cfg->hybrid_depth)
    pc.hybrid_depth = cfg->hybrid_depth;
  if (cfg->lstm_cpu_share > 0)
    pc.lstm_cpu_share = cfg->lstm_cpu_share;
  if (cfg->lstm_known_loss != 0)
    pc.lstm_known_loss = cfg->lstm_known_loss > 0 ? cfg->lstm_known_loss : 0;
  if (cfg->ngram_raw)
    pc.ngram_calibrate = false;
  if (cfg->ngram_no_size)
    pc.ngram_size_context = false;
  if (cfg->lstm_no_size)
    pc.lstm_size_input = false;
  pf->p = predictor_new (&pc, err, errlen);
  if (pf->p == NULL)
    goto fail;
  pf->ring = pred_ring_new (RING_CELLS);
  if (pf->ring == NULL) {
    snprintf (err, errlen, "cannot create the access ring: %s",
              strerror (errno));
    goto fail;
  }
  if (cfg->trace_path) {
    char why[256];

    pf->trace = pred_trace_writer_open (cfg->trace_path, false, why,
                                        sizeof why);
    if (pf->trace == NULL) {
      snprintf (err, errlen, "shadow-trace=%s: %s", cfg->trace_path, why);
      goto fail;
    }
  }
  pf->round_blocks = cfg->round_blocks ? cfg->round_blocks : ROUND_BLOCKS;
  if (pf->round_blocks > MAX_DEPTH)
    pf->round_blocks = MAX_DEPTH;
  if (pf->round_blocks < MIN_DEPTH)
    pf->round_blocks = MIN_DEPTH;
  pf->precision = 0.5;
  atomic_init (&pf->depth, pf->round_blocks);
  atomic_init (&pf->threshold, 0.05);
  return pf;

 fail:
  prefetcher_free (pf);
  return NULL;
}

int
prefetcher_start (struct prefetcher *pf, struct volume *v,
                  prefetch_request_fn request, prefetch_busy_fn busy,
                  void *opaque)
{
  int r;

  pf->v = v;
  pf->request = request;
  pf->busy = busy;
  pf->opaque = opaque;
  pf->last_adapt = monotonic_s ();
  r = pthread_create (&pf->thread, NULL, predictor_thread, pf);
  if (r != 0) {
    shadow_error ("prefetch: cannot start the predictor thread: %s",
                  strerror (r));
    return -1;
  }
  pf->started = true;
  if (predictor_start_training (pf->p) == -1)
    shadow_error ("prefetch: cannot start training: %s (the models keep "
                  "their current weights)", strerror (errno));
  return 0;
}

void
prefetcher_free (struct prefetcher *pf)
{
  if (pf == NULL)
    return;
  if (pf->started) {
    atomic_store (&pf->stopping, true);
    pred_ring_wake (pf->ring);
    pthread_join (pf->thread, NULL);
  }
  if (pf->p) {
    predictor_stop_training (pf->p);
    predictor_free (pf->p);
  }
  if (pf->trace && pred_trace_writer_close (pf->trace) == -1)
    shadow_error ("shadow-trace=%s: writing failed: %s", pf->cfg.trace_path,
                  strerror (errno));
  if (pf->ring)
    pred_ring_free (pf->ring);
  free (pf);
}

int
prefetcher_set_policy (struct prefetcher *pf, const char *name, char **msg)
{
  int policy = filter_policy (name);

  if (policy < 0 || predictor_set_policy (pf->p, policy) == -1) {
    if (asprintf (msg, "unknown prefetch policy '%s': off, readahead, "
                  "ngram, lstm or hybrid", name) == -1)
      *msg = NULL;
    return -1;
  }
  return 0;
}

void
prefetcher_get_stats (struct prefetcher *pf, struct prefetch_stats *out)
{
  struct predictor_stats st;
  struct pred_ring_stats rs;
  int i;

  predictor_get_stats (pf->p, &st);
  pred_ring_stats (pf->ring, &rs);
  memset (out, 0, sizeof *out);
  out->policy = predictor_policy_name (predictor_get_policy (pf->p));
  out->issued = atomic_load (&pf->issued);
  out->rounds = atomic_load (&pf->rounds);
  out->batched_rounds = atomic_load (&pf->batched_rounds);
  out->accesses = rs.popped;
  out->trace_records = atomic_load (&pf->traced);
  out->ring_dropped = rs.dropped;
  out->depth = atomic_load (&pf->depth);
  out->threshold = atomic_load (&pf->threshold);
  out->hybrid_depth = st.hybrid_depth;
  out->memory_bytes = st.memory_bytes;
  if (st.have_trainer) {
    out->have_training = true;
    out->train_chunks = st.trainer.chunks;
    out->train_known = st.trainer.known;
    out->train_replays = st.trainer.replays;
    out->train_skipped = st.trainer.skipped;
    out->train_ns = st.trainer.train_ns;
    out->train_loss = st.trainer.loss;
    out->lstm_size_input = st.lstm_size_input;
  }
  if (st.have_ngram) {
    out->have_ngram = true;
    out->ngram_order = st.ngram.order;
    out->ngram_sized = st.ngram.sized;
    out->ngram_size_context = st.ngram.size_context;
    out->ngram_order_changes = st.ngram.order_changes;
  }
  /* Only the policy's own model is scored (predictor.h): list those that
   * were, and the hybrid's view of its two parts.
   */
  for (i = 0; i < PRED_POLICY__COUNT && out->nr_models < 6; ++i)
    if (st.model[i].exists && st.model[i].scored > 0) {
      out->model[out->nr_models].name = predictor_policy_name (i);
      out->model[out->nr_models].accuracy = st.model[i].recent_accuracy;
      out->nr_models++;
    }
  if (st.model[PRED_POLICY_HYBRID].exists) {
    out->model[out->nr_models].name = "hybrid.ngram";
    out->model[out->nr_models++].accuracy = st.hybrid_acc_ngram;
    out->model[out->nr_models].name = "hybrid.lstm";
    out->model[out->nr_models++].accuracy = st.hybrid_acc_lstm;
  }
}
