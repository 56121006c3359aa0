/* nbdshadow: predictive prefetching, between the client stream and the
 * copier (DESIGN §5, §6; issue 6).
 *
 * nbdkit's worker threads hand every client access to a lock-free ring
 * (predictor/ring.h) and go on: the I/O path never waits for a model.
 * One predictor thread drains the ring, feeds the predictor (and the
 * trace file of shadow-trace), asks it for the likely next blocks of
 * each stream the batch touched (one round per stream, at most 8), and
 * queues the absent ones at the copier's "predicted" priority; every
 * second it also queues the analyzer's hottest regions at "hot".
 *
 * How much to prefetch adapts:
 *  - depth (new blocks queued per round, the likeliest first) is at
 *    most ROUND_BLOCKS (8): the copier serves predictions in order, and
 *    a whole lookahead queued at once for a new stream delays every
 *    other stream; below that it shrinks with the measured precision
 *    of recent prefetches (used / (used + wasted)) and when the copier
 *    is backing off for clients (its window below its maximum);
 *  - a candidate is queued only if its probability clears a threshold that
 *    rises with the same congestion (0.05 + 0.5 x busy share).
 * Memory and threads are bounded whatever the traffic: the predictor's
 * tables are fixed at creation (predictor.h), the ring drops when full.
 */

#ifndef NBDSHADOW_PREFETCH_H
#define NBDSHADOW_PREFETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "volume.h"

struct prefetcher;

/* Where candidates go: the copier's predicted (hot = false) or hot
 * queue.  Returns false if they cannot be queued (no copier any more).
 */
typedef bool (*prefetch_request_fn) (void *opaque, bool hot, uint64_t first,
                                     uint64_t count);
/* The copier's congestion: 0 (idle link) .. 1 (backing off fully). */
typedef double (*prefetch_busy_fn) (void *opaque);

struct prefetch_config {
  uint32_t block_size;
  uint64_t nr_blocks;
  const char *policy;           /* off|readahead|ngram|lstm|hybrid */
  const char *model_path;       /* warm start, or NULL */
  const char *trace_path;       /* shadow-trace, or NULL */
  unsigned round_blocks;        /* new blocks queued per round at most, 0: default */
  unsigned streams;             /* streams the predictor tracks, 0: default */
  double lstm_cpu_share;        /* LSTM training, of one core; 0: default */
  unsigned hybrid_depth;        /* the hybrid's lookahead, 0: default */
  double lstm_known_loss;       /* LSTM chunks left untrained below this
                                   loss; 0: the predictor's default;
                                   < 0: every chunk trained */
  bool ngram_raw;               /* the n-gram's estimates not calibrated
                                   (benchmarks; predictor.h) */
  bool ngram_no_size;           /* the n-gram's contexts without request
                                   sizes (benchmarks; predictor.h) */
  bool lstm_no_size;            /* the LSTM's inputs without request
                                   sizes (benchmarks; predictor.h) */
};

/* Validate, load the model, open the trace: everything that can fail for
 * the user's input, before nbdkit forks.  On error, a message in err.
 */
extern struct prefetcher *prefetcher_new (const struct prefetch_config *cfg,
                                          char *err, size_t errlen);

/* Start the predictor thread and the model's training (after the fork). */
extern int prefetcher_start (struct prefetcher *pf, struct volume *v,
                             prefetch_request_fn request,
                             prefetch_busy_fn busy, void *opaque);

/* Stop the threads, close the trace, free.  NULL is fine. */
extern void prefetcher_free (struct prefetcher *pf);

/* The volume's access hook (volume_config.access_fn): never blocks. */
extern void prefetcher_note (void *pf, int op, uint64_t offset,
                             uint32_t count);

/* Switch policy live.  -1 with a message if the name is unknown. */
extern int prefetcher_set_policy (struct prefetcher *pf, const char *name,
                                  char **msg);

struct prefetch_stats {
  const char *policy;
  uint64_t issued;              /* blocks queued for prefetch */
  uint64_t rounds;              /* predictions that gave candidates */
  uint64_t batched_rounds;      /* rounds beyond the first of a batch of
                                   accesses (one per stream waiting) */
  uint64_t accesses, ring_dropped;
  uint64_t trace_records;
  unsigned depth;               /* current candidates per round */
  double threshold;             /* current probability threshold */
  unsigned hybrid_depth;        /* the hybrid's lookahead (accesses), 0
                                   until the hybrid exists */
  size_t memory_bytes;          /* the predictor's */
  /* The LSTM's trainer, if the LSTM exists (lstm-trainer.h). */
  bool have_training;
  uint64_t train_chunks, train_known, train_replays, train_skipped;
  uint64_t train_ns;
  double train_loss;
  bool lstm_size_input;         /* its inputs carry request sizes */
  /* The n-gram's state, if it exists (ngram.h): the order answering
   * now, whether sized contexts answer, whether they may. */
  bool have_ngram, ngram_sized, ngram_size_context;
  unsigned ngram_order;
  uint64_t ngram_order_changes;
  /* Recent accuracy of each model that exists. */
  struct { const char *name; double accuracy; } model[8];
  size_t nr_models;
};

extern void prefetcher_get_stats (struct prefetcher *pf,
                                  struct prefetch_stats *out);

#endif /* NBDSHADOW_PREFETCH_H */
