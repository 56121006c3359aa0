/* predictor.h: the online predictor, as the filter uses it.
 *
 * Why it exists: the filter must not know about tokens, streams, tables
 * or weights.  It hands over client accesses, asks which absent blocks
 * to copy next, switches policy when told, reports statistics, and
 * starts and stops training when its life cycle allows.  Everything else
 * (DESIGN §6) stays behind this header.
 *
 * Typical use by the filter (issue 6):
 *
 *   .config_complete / .get_ready:
 *       predictor_config_default (&c);
 *       c.block_size = ...; c.nr_blocks = ...; c.policy = ...;
 *       c.model_path = shadow-model;              // may be NULL
 *       p = predictor_new (&c, err, sizeof err);  // errors reach the user
 *       ring = pred_ring_new (65536);             // ring.h
 *   nbdkit worker threads, per client request:
 *       pred_ring_push (ring, &access);           // never blocks
 *   .after_fork: start the predictor thread, then
 *       predictor_start_training (p);
 *   predictor thread loop:
 *       while (pred_ring_pop (ring, &a)) predictor_observe (p, &a);
 *       while (predictor_predict_batch (p, cand, N, is_absent, volume, &n))
 *         ... hand cand[0..n) to the scheduler, best first ...
 *       pred_ring_wait (ring, 10);
 *   control socket (any thread): predictor_set_policy, predictor_get_stats
 *   .cleanup: stop the predictor thread, predictor_free (p).
 *
 * Threading contract:
 *  - predictor_observe, predictor_predict, predictor_predict_batch,
 *    predictor_refresh_stats and predictor_save_model: ONE thread (the
 *    predictor thread), never concurrently with each other.
 *  - predictor_set_policy, predictor_get_policy, predictor_get_stats,
 *    predictor_start_training, predictor_stop_training: any thread, any
 *    time between new and free.  set_policy takes effect at the next
 *    observe or predict.
 *  - predictor_new and predictor_free: the owner, with no other call in
 *    progress.  No thread is started by predictor_new: the LSTM trainer
 *    thread starts only in predictor_start_training (callable after
 *    nbdkit forked, and again after a stop).
 *
 * Cost: observe is O(streams) plus the active model's update (n-gram:
 * about 4 table lookups; LSTM: one forward step; training is never done
 * on this thread unless train = PRED_TRAIN_SYNC).  predict is bounded by
 * the rollout depth; see bench/results-predictor.md for measured figures.
 *
 * Memory bounds (all allocated by predictor_new or on the first use of a
 * policy, never grown by traffic; a random flood only recycles slots):
 *  - streams: `streams` slots (default 32, max 256)
 *  - delta vocabulary: `vocab` ids (default 256, max 4096) + 8 KiB
 *  - n-gram: `ngram_capacity` contexts x 40 bytes (default 16384: 640 KiB)
 *  - LSTM: weights, gradient and two Adam moments in double (4 x P
 *    doubles, P = V*E + 4H(E+H+1) + V*(H+1)), three single-precision
 *    inference snapshots (V*4H + 4H*H + H*V + V floats each), a 1 MiB
 *    feed queue, 2H floats per stream slot: with V 256, E 16, H 32 about
 *    2.4 MiB; the hybrid (n-gram + LSTM + tables) about 3.1 MiB in all
 *  - analyzer: `regions` x 24 bytes (default 4096: 96 KiB)
 *  - candidates: 1024 per prediction
 * predictor_get_stats reports the total (memory_bytes).
 */
#ifndef NBDSHADOW_PREDICTOR_H
#define NBDSHADOW_PREDICTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "access.h"
#include "analyzer.h"
#include "lstm-trainer.h"
#include "model.h"
#include "ngram.h"

enum pred_policy {
  PRED_POLICY_OFF = 0,
  PRED_POLICY_READAHEAD,
  PRED_POLICY_STRIDE,
  PRED_POLICY_MARKOV1,
  PRED_POLICY_LEAP,
  PRED_POLICY_NGRAM,
  PRED_POLICY_LSTM,
  PRED_POLICY_HYBRID,
  PRED_POLICY__COUNT
};

/* "off", "readahead", "stride", "markov1", "leap", "ngram", "lstm",
 * "hybrid".  The filter's shadow-prefetch accepts off|readahead|ngram|
 * lstm|hybrid; the others are baselines for evaluation. */
const char *predictor_policy_name (enum pred_policy p);
/* -1 if unknown. */
int predictor_policy_parse (const char *name);

enum pred_train_mode {
  PRED_TRAIN_THREAD = 0,        /* background thread (the filter) */
  PRED_TRAIN_SYNC,              /* inline in observe: deterministic (tools, tests) */
  PRED_TRAIN_OFF,               /* frozen weights */
};

struct predictor_config {
  uint32_t block_size;          /* power of two, 512 .. 64 MiB; default 64 KiB */
  uint64_t nr_blocks;           /* volume size in blocks; 0 = unknown */
  enum pred_policy policy;      /* default hybrid */
  const char *model_path;       /* warm start (model-file.h) or NULL */
  enum pred_train_mode train;   /* default PRED_TRAIN_THREAD */
  uint64_t seed;                /* default 1 */

  /* Tunables; predictor_config_default gives the documented defaults.
   * A model file overrides vocab, stream windows and LSTM shapes. */
  unsigned streams;             /* stream slots: 32 */
  uint32_t stream_fwd;          /* stream window ahead, blocks: 32 */
  uint32_t stream_back;         /* stream window behind, blocks: 8 */
  unsigned vocab;               /* delta vocabulary: 256 */
  unsigned ngram_capacity;      /* n-gram contexts: 16384 */
  unsigned regions;             /* analyzer regions: 4096 */
  unsigned depth;               /* lookahead in accesses (rollout, stride): 16 */
  unsigned lstm_depth;          /* lookahead steps that run the LSTM: 2 */
  unsigned hybrid_depth;        /* the hybrid's lookahead, 0: 2 x depth */
  unsigned readahead_max;       /* readahead / leap window, blocks: 32 */
  double min_prob;              /* drop candidates below this: 0.05 */
  bool ngram_calibrate;         /* the n-gram's estimates lifted to their
                                   hit rate (ngram.h): true */
  bool ngram_size_context;      /* the n-gram's contexts also counted with
                                   the last request's size class, which
                                   answer where they predict better
                                   (ngram.h): true */
  bool lstm_size_input;         /* the LSTM's inputs carry the request's
                                   size class (lstm.h): true */
  unsigned lstm_embed;          /* 16 */
  unsigned lstm_hidden;         /* 32 */
  unsigned lstm_bptt;           /* 16 */
  unsigned lstm_replay;         /* 2 */
  double lstm_lr;               /* 0.005 (Adam) */
  double lstm_cpu_share;        /* threaded training, of one core: 0.05
                                   (0 = unlimited; lstm-trainer.h) */
  double lstm_known_loss;       /* chunks predicted below this loss at
                                   every step are not trained: 0.05 nats
                                   (0 = train all; lstm-trainer.h) */
};

void predictor_config_default (struct predictor_config *c);

struct predictor;

/* Validate c, load the model file if any, allocate.  On error returns
 * NULL and writes one line into err naming the problem. */
struct predictor *predictor_new (const struct predictor_config *c,
                                 char *err, size_t errlen);
/* Stops the trainer thread if running, frees everything. */
void predictor_free (struct predictor *p);

/* Predictor thread: one client access.  Flushes, zero-length accesses
 * and repeats (an access within the blocks its stream's previous access
 * touched, tokenizer.h) are counted by the analyzer only. */
void predictor_observe (struct predictor *p, const struct pred_access *a);

/* Predicate supplied by the caller: true if block is worth copying
 * (absent and not already being copied). */
typedef bool (*predictor_absent_fn) (void *opaque, uint64_t block);

/* Predictor thread: up to max candidate blocks after the last observed
 * access, best first, each with the model's probability that it is
 * touched soon (>= min_prob).  Blocks for which absent() returns false
 * are skipped (absent may be NULL: no filtering).  Returns the number
 * written; 0 with policy off or before the first access. */
size_t predictor_predict (struct predictor *p, struct pred_cand *out,
                          size_t max, predictor_absent_fn absent,
                          void *opaque);

/* Predictor thread, for a caller that observes accesses in batches (the
 * filter drains its ring, then predicts): one call per stream accessed
 * since the last prediction, in the order of each stream's latest
 * access, for that access; at most 8 streams, the oldest dropped
 * beyond.  Returns false when no stream is left (and at once with
 * policy off), else true with *n candidates in out as predictor_predict
 * gives them (*n may be 0).  predictor_predict answers only for the
 * last access: with four interleaved readers the other three streams of
 * a batch got no prediction until their next access.  Either call
 * consumes the streams waiting, and so does a policy switch.  Models
 * keep their state per stream, so an earlier access of another stream
 * is answered as it would have been right after it; Leap (an evaluation
 * baseline, not offered by the filter) keeps one global trend and
 * answers every stream from the latest. */
bool predictor_predict_batch (struct predictor *p, struct pred_cand *out,
                              size_t max, predictor_absent_fn absent,
                              void *opaque, size_t *n);

/* Any thread: switch policy; takes effect at the next observe/predict.
 * Models not used by the new policy stop learning and keep their state;
 * a policy used for the first time starts cold (the LSTM from the model
 * file if one was given).  -1 (EINVAL) if the policy is unknown. */
int predictor_set_policy (struct predictor *p, enum pred_policy policy);
enum pred_policy predictor_get_policy (struct predictor *p);

/* Any thread: start / stop the LSTM trainer thread (train mode
 * PRED_TRAIN_THREAD; a no-op otherwise).  start may be called before the
 * LSTM exists: its trainer then starts when a policy first needs it.
 * -1 with errno if the thread cannot be created. */
int predictor_start_training (struct predictor *p);
void predictor_stop_training (struct predictor *p);

/* Per-model figures.  A model "hits" when the first block of an access
 * (the first its stream's previous access did not touch, if it
 * continues a stream) was among the candidates it gave for it (before
 * absent filtering): the best PENDING_MAX (32) it gave after its
 * stream's previous access, or, for an access that starts a stream,
 * all it gave after the previous access of any stream (so one list may
 * be scored twice: by a new stream, then by its own stream's next
 * access).  Accesses after which nothing was predicted for their stream
 * (the filter predicts once per batch of accesses) are not scored.
 * Only the policy's own model predicts, so only it scores; a policy
 * switch drops the old policy's lists. */
struct predictor_model_stats {
  bool exists, active;
  uint64_t observes, predicts;
  uint64_t observe_ns, predict_ns;      /* totals on the predictor thread */
  uint64_t scored, hits;
  double recent_accuracy;       /* hits / scored over the first 64 scored,
                                   then a moving average, factor 1/64 */
  size_t memory_bytes;
};

struct predictor_stats {
  enum pred_policy policy;
  uint64_t accesses;            /* observed, flushes included */
  uint64_t predictions;         /* predict calls that produced candidates */
  uint64_t candidates;          /* candidates returned */
  struct predictor_model_stats model[PRED_POLICY__COUNT];
  bool have_trainer;
  struct pred_lstm_trainer_stats trainer;
  bool lstm_size_input;         /* the config's (inputs carry sizes) */
  /* The n-gram (of the ngram policy and the hybrid's), if it exists. */
  bool have_ngram;
  struct pred_ngram_stats ngram;
  /* Hybrid: component soft accuracies and weights (hybrid.h). */
  double hybrid_acc_ngram, hybrid_acc_lstm, hybrid_w_ngram, hybrid_w_lstm;
  unsigned hybrid_depth;        /* ... its rollout's lookahead (accesses) */
  struct pred_analyzer_stats analyzer;
  unsigned vocab_used, vocab_cap;
  uint64_t vocab_recycled;
  size_t memory_bytes;          /* everything the predictor holds */
  uint64_t snapshot_accesses;   /* `accesses` when this snapshot was taken */
};

/* Any thread: the latest snapshot.  The predictor thread refreshes it,
 * without ever waiting for a reader, at the end of observe, predict or
 * hot_regions once it lags by 256 accesses or by 100 ms: it may lag by
 * that much, or by what came after the predictor thread's last call.
 * predictor_refresh_stats (predictor thread) forces one; a caller that
 * goes idle after a burst and wants exact figures should call it (or
 * hot_regions) after its last predict. */
void predictor_get_stats (struct predictor *p, struct predictor_stats *st);
void predictor_refresh_stats (struct predictor *p);

/* Predictor thread: the up to max hottest regions (analyzer.h). */
size_t predictor_hot_regions (struct predictor *p, struct pred_region *out,
                              size_t max);

/* Predictor thread: write the LSTM and the vocabulary to path
 * (model-file.h).  -1 with a message if there is no LSTM yet. */
int predictor_save_model (struct predictor *p, const char *path,
                          char *err, size_t errlen);

#endif /* NBDSHADOW_PREDICTOR_H */
