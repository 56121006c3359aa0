/* lstm-trainer.h: online training of the LSTM off the I/O path.
 *
 * Why it exists: a training step costs tens of microseconds, far too
 * much for the predictor's per-access budget.  The predictor thread only
 * feeds tokens (a few nanoseconds, never blocking: a bounded
 * single-producer queue that drops and counts when full); the trainer
 * cuts them into per-stream chunks, runs truncated BPTT and the optimizer
 * on its own copy of the weights, and publishes a single-precision
 * inference snapshot (lstm-infer.h) that the predictor thread picks up
 * through a lock-free triple buffer (never waiting, never copying).
 *
 * Training: per stream slot, tokens are collected until bptt + 1 are
 * there, then one forward/backward over bptt steps from the state the
 * stream had at the chunk's start (stateful truncated BPTT); a new
 * stream inherits its parent's pending tokens and state.  After each new
 * chunk that is trained, `replay` chunks drawn from the last 64 are
 * trained again (experience replay: online data is seen once, replay
 * speeds learning).  Weights are published after every trained chunk
 * (and after a known one when a token was recycled since).
 *
 * Known chunks (known_loss > 0): a new chunk is first run forward only
 * (pred_lstm_forward_record); when the model already predicts it, every
 * step's loss below known_loss (0.05 nats: each access given at least
 * 95%), it is not trained, only kept for replay and its end state
 * carried on; otherwise only the backward pass is left to run.  Why: on
 * four sequential readers (bench/e2e inter) both models predict every
 * access, yet the hybrid's clients stalled a fifth longer with the LSTM
 * training (within its 5% of a core, at nice 19) than with its training
 * starved; what the model knows needs no more steps, and the forward
 * pass alone costs a fraction of one.  Chunks the model gets wrong train
 * as before, with replay.
 *
 * CPU budget (threaded mode, cpu_share > 0): training may use that share
 * of one core, measured as a credit of nanoseconds that refills with
 * wall time (at most BUDGET_CAP ahead).  Replays run only while there is
 * credit; a new chunk is skipped (counted) when the debt passes the cap,
 * so that a token flood costs at most about cpu_share of a core.  Why:
 * at 2,000 tokens/s (a find + md5sum through ext4) training with replay
 * took about a tenth of a core, and on the 2-CPU benchmark machine that
 * slowed the very clients the prefetcher serves (bench/e2e: the hybrid
 * stalled 2.02 s against the n-gram's 1.86 s; without replay 1.90 s).
 *
 * Modes:
 *  - synchronous (threaded = false): feed trains inline when a chunk is
 *    complete.  Deterministic for a given seed and token sequence; used
 *    by the simulator and the tests.
 *  - threaded: feed only queues.  pred_lstm_trainer_start starts the
 *    thread (it may be called at any time after creation, e.g. after
 *    nbdkit forked); until then tokens wait in the queue (65536 of them)
 *    and the excess is dropped and counted.  stop joins the thread;
 *    start may be called again.
 *
 * Threading: feed and fetch from one thread (the predictor thread);
 * start, stop, stats from any thread; new/free from the owner, with the
 * thread stopped or not (free stops it).
 */
#ifndef NBDSHADOW_PRED_LSTM_TRAINER_H
#define NBDSHADOW_PRED_LSTM_TRAINER_H

#include <stdbool.h>
#include <stdint.h>

#include "lstm.h"
#include "lstm-infer.h"

struct pred_lstm_trainer;

struct pred_lstm_trainer_config {
  struct pred_lstm_config lstm;
  unsigned nstreams;            /* stream slots, 1 .. 256 */
  unsigned replay;              /* replayed chunks per new chunk, 0 .. 8 */
  bool threaded;
  double cpu_share;             /* threaded: of one core, 0 = unlimited */
  double known_loss;            /* a new chunk each of whose steps has a
                                   loss (nats) below this is not trained;
                                   0 = train every chunk */
};

/* init: starting weights (same shape as cfg->lstm) or NULL. */
struct pred_lstm_trainer *pred_lstm_trainer_new (
  const struct pred_lstm_trainer_config *cfg,
  const struct pred_lstm_params *init);
void pred_lstm_trainer_free (struct pred_lstm_trainer *t);

/* One token of stream slot `stream`.  new_stream/parent as in the
 * tokenizer's event; recycled >= 0 tells that this vocabulary id changed
 * meaning. */
void pred_lstm_trainer_feed (struct pred_lstm_trainer *t, unsigned stream,
                             bool new_stream, int parent, uint32_t tok,
                             int32_t recycled);

int pred_lstm_trainer_start (struct pred_lstm_trainer *t);
void pred_lstm_trainer_stop (struct pred_lstm_trainer *t);

/* The newest inference snapshot if one was published since the last
 * call, else NULL.  Lock-free and wait-free (a triple buffer: one atomic
 * exchange, no copy).  The returned snapshot stays valid and unchanged
 * until the next call that returns non-NULL.  The first call after
 * creation returns the initial weights. */
const struct pred_lstm_infer *pred_lstm_trainer_fetch (struct pred_lstm_trainer *t);

/* Copy the trainer's current weights (for saving a model); blocks
 * briefly.  Same shape required. */
void pred_lstm_trainer_snapshot (struct pred_lstm_trainer *t,
                                 struct pred_lstm_params *dst);

struct pred_lstm_trainer_stats {
  uint64_t fed;                 /* tokens given to feed */
  uint64_t dropped;             /* tokens lost because the queue was full */
  uint64_t chunks;              /* new chunks trained */
  uint64_t replays;             /* replayed chunks trained */
  uint64_t skipped;             /* new chunks not trained: over budget */
  uint64_t known;               /* new chunks not trained: already known */
  uint64_t train_ns;            /* time spent training */
  uint64_t longest_ns;          /* the longest chunk with its replays */
  uint64_t wakeups;             /* times the idle thread woke up */
  double loss;                  /* moving average of the chunk loss */
  bool running;                 /* background thread alive */
  bool idle_priority;           /* it runs at nice 19 */
};
void pred_lstm_trainer_stats (struct pred_lstm_trainer *t,
                              struct pred_lstm_trainer_stats *st);
/* Bytes held (weights, moments, copies, queue, per-stream state). */
size_t pred_lstm_trainer_memory (const struct pred_lstm_trainer *t);

#endif
