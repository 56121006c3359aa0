/* bench-predictor-cost: what the predictor costs -- nanoseconds per
 * access on the predictor thread for every policy (with the LSTM
 * training on its own background thread, as in the filter), the LSTM
 * kernels alone (inference step, training chunk), and memory per
 * model.  Target (issue 5): inference under 10 us per access on one
 * core, training off the I/O path.
 *
 *   bench-predictor-cost [ACCESSES]      (default 20000 measured per run)
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lstm.h"
#include "lstm-infer.h"
#include "predictor.h"
#include "rng.h"
#include "workload.h"

static uint64_t
ns_now (clockid_t clk)
{
  struct timespec ts;
  clock_gettime (clk, &ts);
  return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
cmp_u64 (const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
  return x < y ? -1 : x > y;
}

/* ---- LSTM kernels ---- */

static void
bench_kernels (unsigned H)
{
  const unsigned V = 256, E = 16, T = 16, ITER = 20000, CHUNKS = 300;
  struct pred_lstm_params p;
  struct pred_lstm_infer f;
  struct pred_rng rng;
  float h[128] = { 0 }, c[128] = { 0 }, z[512], probs[256];
  uint64_t best = UINT64_MAX;

  pred_rng_seed (&rng, 1);
  if (pred_lstm_params_alloc (&p, V, E, H) < 0 || pred_lstm_infer_alloc (&f, V, E, H) < 0)
    abort ();
  pred_lstm_params_init (&p, &rng);
  pred_lstm_infer_build (&f, &p);
  for (int run = 0; run < 5; run++) {
    uint64_t t0 = ns_now (CLOCK_THREAD_CPUTIME_ID);
    for (unsigned i = 0; i < ITER; i++) {
      pred_lstm_infer_step (&f, h, c, i % V, h, c, z);
      pred_lstm_infer_output (&f, h, probs);
    }
    uint64_t dt = ns_now (CLOCK_THREAD_CPUTIME_ID) - t0;
    if (dt < best)
      best = dt;
  }
  double infer = (double) best / ITER;

  struct pred_lstm_config cfg;
  struct pred_lstm_core k;
  uint32_t tok[17];
  pred_lstm_config_default (&cfg);
  cfg.hidden = H;
  cfg.bptt = T;
  if (pred_lstm_core_init (&k, &cfg, &p) < 0)
    abort ();
  best = UINT64_MAX;
  for (int run = 0; run < 3; run++) {
    uint64_t t0 = ns_now (CLOCK_THREAD_CPUTIME_ID);
    for (unsigned i = 0; i < CHUNKS; i++) {
      for (unsigned j = 0; j <= T; j++)
        tok[j] = pred_rng_below (&rng, V);
      pred_lstm_forward_backward (&k, tok, T, NULL, NULL, NULL, NULL);
      pred_lstm_apply (&k);
    }
    uint64_t dt = ns_now (CLOCK_THREAD_CPUTIME_ID) - t0;
    if (dt < best)
      best = dt;
  }
  double chunk = (double) best / CHUNKS;
  uint64_t t0 = ns_now (CLOCK_THREAD_CPUTIME_ID);
  for (int i = 0; i < 50; i++)
    pred_lstm_infer_build (&f, &p);
  double build = (double) (ns_now (CLOCK_THREAD_CPUTIME_ID) - t0) / 50;

  printf ("| %u | %u | %zu | %.0f | %.1f | %.2f | %.0f |\n", H, V, p.n, infer,
          chunk / 1000, chunk / 1000 / T, build / 1000);
  pred_lstm_core_free (&k);
  pred_lstm_infer_free (&f);
  pred_lstm_params_free (&p);
}

/* ---- per-access cost through the facade ---- */

struct buf {
  struct pred_access *a;
  size_t n, cap;
};

static int
collect (void *opaque, const struct pred_access *a)
{
  struct buf *b = opaque;
  if (b->n == b->cap) {
    b->cap = b->cap ? 2 * b->cap : 4096;
    b->a = realloc (b->a, b->cap * sizeof *b->a);
    if (!b->a)
      abort ();
  }
  b->a[b->n++] = *a;
  return 0;
}

static void
bench_policy (const char *wl, const struct buf *b, enum pred_policy pol,
              size_t warm, size_t meas)
{
  struct predictor_config c;
  struct predictor_stats st;
  struct pred_cand cand[64];
  char err[256];
  uint64_t *d = malloc (meas * sizeof *d), sum = 0, cpu0, cpu1;

  predictor_config_default (&c);
  c.policy = pol;
  c.train = PRED_TRAIN_THREAD;
  c.nr_blocks = (UINT64_C (4) << 30) / c.block_size;
  struct predictor *p = predictor_new (&c, err, sizeof err);
  if (!p || !d) {
    fprintf (stderr, "%s\n", err);
    exit (1);
  }
  predictor_start_training (p);
  for (size_t i = 0; i < warm; i++) {
    predictor_observe (p, &b->a[i % b->n]);
    predictor_predict (p, cand, 64, NULL, NULL);
  }
  cpu0 = ns_now (CLOCK_THREAD_CPUTIME_ID);
  for (size_t i = 0; i < meas; i++) {
    const struct pred_access *a = &b->a[(warm + i) % b->n];
    uint64_t t0 = ns_now (CLOCK_MONOTONIC);
    predictor_observe (p, a);
    predictor_predict (p, cand, 64, NULL, NULL);
    d[i] = ns_now (CLOCK_MONOTONIC) - t0;
    sum += d[i];
  }
  cpu1 = ns_now (CLOCK_THREAD_CPUTIME_ID);
  predictor_refresh_stats (p);
  predictor_get_stats (p, &st);
  qsort (d, meas, sizeof *d, cmp_u64);
  /* Known chunks (run forward only, lstm-trainer.h) count too: their
   * time is in train_ns. */
  uint64_t runs = st.trainer.chunks + st.trainer.replays + st.trainer.known;
  double chunk_us = runs ? st.trainer.train_ns / 1000.0 / runs : 0;
  char tr[96] = "-", drop[32] = "-";
  if (st.have_trainer) {
    snprintf (tr, sizeof tr, "%.0f (%" PRIu64 " chunks, %" PRIu64 " known)",
              chunk_us, runs, st.trainer.known);
    snprintf (drop, sizeof drop, "%.1f%%",
              st.trainer.fed ? 100.0 * st.trainer.dropped / st.trainer.fed : 0);
  }
  printf ("| %s | %s | %.0f | %.0f | %" PRIu64 " | %" PRIu64 " | %.0f | %s | %s |\n",
          wl, predictor_policy_name (pol), (double) (cpu1 - cpu0) / meas,
          (double) sum / meas, d[meas / 2], d[meas * 99 / 100],
          st.memory_bytes / 1024.0, tr, drop);
  predictor_free (p);
  free (d);
}

int
main (int argc, char **argv)
{
  size_t meas = argc > 1 ? strtoul (argv[1], NULL, 10) : 20000;
  static const enum pred_workload_kind wls[] = {
    PRED_WL_SEQUENTIAL, PRED_WL_INTERLEAVED, PRED_WL_BOOT, PRED_WL_ZIPF,
  };

  if (meas < 100)
    meas = 100;
  printf ("### LSTM kernels (one thread, best of several runs, CPU time)\n\n");
  printf ("| hidden | vocab | parameters | ns per inference step + softmax | us per training chunk (16 tokens, fwd+bwd+Adam) | us per token | us to build a snapshot |\n");
  printf ("|---|---|---|---|---|---|---|\n");
  bench_kernels (32);
  bench_kernels (64);

  printf ("\n### Per access on the predictor thread (observe + predict 64), "
          "LSTM training on a background thread\n\n");
  printf ("| workload | policy | CPU ns/access | wall ns mean | median | p99 | memory KiB | trainer us/chunk | tokens dropped |\n");
  printf ("|---|---|---|---|---|---|---|---|---|\n");
  for (size_t w = 0; w < sizeof wls / sizeof wls[0]; w++) {
    struct pred_workload_config wc;
    struct buf b = { 0 };
    pred_workload_config_default (&wc);
    wc.kind = wls[w];
    wc.requests = 10000 + meas;
    if (pred_workload_generate (&wc, collect, &b) != 0)
      abort ();
    for (int pol = PRED_POLICY_READAHEAD; pol < PRED_POLICY__COUNT; pol++)
      bench_policy (pred_workload_name (wls[w]), &b, pol, 10000, meas);
    free (b.a);
  }
  return 0;
}
