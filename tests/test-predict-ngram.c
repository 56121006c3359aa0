/* test-predict-ngram.c: the n-gram reaches near-perfect accuracy on
 * short periodic patterns, answers a noisy first-order chain from a short
 * context, and stays within its table; Markov-1 learns
 * order-1 chains; with size context it tells a large read's follower
 * from a small one's; on synthetic mixes the hybrid is never worse than the
 * better of n-gram and LSTM by more than a small margin. */
#include <config.h>

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "hybrid.h"
#include "lstm-model.h"
#include "ngram.h"
#include "rng.h"
#include "vocab.h"

static void
make_vocab (struct pred_vocab *v, unsigned cap, unsigned n)
{
  int64_t *d = malloc (n * sizeof *d);
  ck_assert_int_eq (pred_vocab_init (v, cap), 0);
  for (unsigned i = 0; i < n; i++)
    d[i] = (int64_t) i - 3;     /* -3 .. n-4: includes 0 and negatives */
  ck_assert_int_eq (pred_vocab_set (v, d, n), 0);
  free (d);
}

static struct pred_event
tok_event (uint64_t seq, uint32_t tok, unsigned stream, bool new_stream)
{
  struct pred_event ev;
  memset (&ev, 0, sizeof ev);
  ev.seq = seq;
  ev.block = 5000 + 3 * seq;
  ev.nblocks = 1;
  ev.token = tok;
  ev.recycled = -1;
  ev.stream = stream;
  ev.new_stream = new_stream;
  ev.parent = -1;
  ev.have_ref = true;
  return ev;
}

static struct pred_model *
new_ngram_full (const struct pred_vocab *v, unsigned order, bool smooth,
                unsigned cap, bool calibrate, bool size_context)
{
  struct pred_ngram_config g = {
    .max_order = order, .capacity = cap, .smooth = smooth, .nstreams = 8,
    .calibrate = calibrate, .size_context = size_context,
    .rollout = { .depth = 8, .alts = 2, .min_p = 0.01, .max_len = 4 },
  };
  struct pred_model *m = pred_ngram_new (&g, v);
  ck_assert_ptr_nonnull (m);
  return m;
}

static struct pred_model *
new_ngram_cal (const struct pred_vocab *v, unsigned order, bool smooth,
               unsigned cap, bool calibrate)
{
  return new_ngram_full (v, order, smooth, cap, calibrate, false);
}

static struct pred_model *
new_ngram (const struct pred_vocab *v, unsigned order, bool smooth, unsigned cap)
{
  return new_ngram_cal (v, order, smooth, cap, false);
}

static uint32_t
top1 (struct pred_model *m, unsigned s)
{
  unsigned char ctx[8192];
  struct pred_tokdist d;
  m->ops->tok->ctx_init (m, s, ctx);
  m->ops->tok->dist (m, ctx, 1, &d);
  return d.n ? d.tok[0] : 0;
}

/* Accuracy of m over `eval` tokens after `warm` tokens of the pattern. */
static double
periodic_accuracy (struct pred_model *m, const uint32_t *pat, unsigned len,
                   unsigned warm, unsigned eval)
{
  unsigned hits = 0;
  for (unsigned i = 0; i < warm + eval; i++) {
    uint32_t tok = pat[i % len];
    if (i >= warm)
      hits += top1 (m, 0) == tok;
    struct pred_event ev = tok_event (i, tok, 0, i == 0);
    m->ops->observe (m, &ev);
  }
  return (double) hits / eval;
}

START_TEST (test_periodic)
{
  static const uint32_t p1[] = { 4 };
  static const uint32_t p2[] = { 4, 9 };
  static const uint32_t p3[] = { 1, 2, 3 };
  static const uint32_t p4[] = { 4, 4, 7 };                 /* repeats inside */
  static const uint32_t p5[] = { 5, 6, 5, 8, 9 };
  static const uint32_t p6[] = { 2, 2, 2, 3, 2, 2, 2, 5 };  /* needs order 4 */
  static const uint32_t p7[] = { 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20 };
  const struct { const uint32_t *p; unsigned n; } pats[] = {
    { p1, 1 }, { p2, 2 }, { p3, 3 }, { p4, 3 }, { p5, 5 }, { p6, 8 }, { p7, 11 },
  };
  struct pred_vocab v;
  make_vocab (&v, 64, 30);
  for (size_t i = 0; i < sizeof pats / sizeof pats[0]; i++) {
    struct pred_model *m = new_ngram (&v, 4, true, 1024);
    /* Five periods to learn, then 300 tokens judged. */
    double acc = periodic_accuracy (m, pats[i].p, pats[i].n, 5 * pats[i].n + 4, 300);
    ck_assert_msg (acc >= 0.99, "pattern %zu (period %u): %.3f", i, pats[i].n, acc);
    pred_model_destroy (m);
  }
  /* Markov-1 only sees one token back: perfect on p3, not on p6. */
  struct pred_model *mk = new_ngram (&v, 1, false, 1024);
  ck_assert_str_eq (mk->ops->name, "markov1");
  ck_assert (periodic_accuracy (mk, p3, 3, 10, 300) >= 0.99);
  /* One table entry per context seen: three. */
  struct pred_ngram_stats st;
  pred_ngram_stats (mk, &st);
  ck_assert_uint_eq (st.used, 3);
  pred_model_destroy (mk);
  mk = new_ngram (&v, 1, false, 1024);
  ck_assert (periodic_accuracy (mk, p6, 8, 40, 400) < 0.9);
  pred_model_destroy (mk);
  pred_vocab_free (&v);
}
END_TEST

/* A sequence with one jump after each run of 3 zeros: the rollout
 * predicts the blocks of the next accesses along the pattern. */
START_TEST (test_rollout_blocks)
{
  struct pred_vocab v;
  struct pred_candlist cl;
  int64_t d[] = { 0, 100 };
  ck_assert_int_eq (pred_vocab_init (&v, 16), 0);
  ck_assert_int_eq (pred_vocab_set (&v, d, 2), 0);     /* id 1 = 0, id 2 = +100 */
  struct pred_model *m = new_ngram (&v, 4, true, 256);
  uint64_t b = 0;
  struct pred_event ev;
  for (unsigned i = 0; i < 80; i++) {
    uint32_t tok = i % 4 == 3 ? 2 : 1;
    b += 1 + (tok == 2 ? 100 : 0);
    ev = tok_event (i, tok, 0, i == 0);
    ev.block = b;
    m->ops->observe (m, &ev);
  }
  /* Last token: i = 79 -> a jump; next are 3 sequential then a jump. */
  ck_assert_int_eq (pred_candlist_init (&cl, 64, 0), 0);
  m->ops->predict (m, &ev, &cl);
  pred_candlist_sort (&cl);
  ck_assert_uint_ge (cl.n, 5);
  ck_assert_uint_eq (cl.c[0].block, b + 1);
  ck_assert_uint_eq (cl.c[1].block, b + 2);
  ck_assert_uint_eq (cl.c[2].block, b + 3);
  ck_assert_uint_eq (cl.c[3].block, b + 4 + 100);
  ck_assert (cl.c[0].p > 0.9);
  ck_assert (pred_candlist_contains (&cl, b + 105));
  pred_candlist_free (&cl);
  pred_model_destroy (m);
  pred_vocab_free (&v);
}
END_TEST

/* A flood of distinct contexts never grows the table. */
START_TEST (test_bounded)
{
  struct pred_vocab v;
  struct pred_rng rng;
  struct pred_ngram_stats st;
  make_vocab (&v, 4096, 4000);
  struct pred_model *m = new_ngram (&v, 4, true, 512);
  size_t mem = m->ops->memory (m);
  pred_rng_seed (&rng, 3);
  for (unsigned i = 0; i < 200000; i++) {
    struct pred_event ev = tok_event (i, 1 + pred_rng_below (&rng, 3999), i % 8, i < 8);
    m->ops->observe (m, &ev);
  }
  pred_ngram_stats (m, &st);
  ck_assert_uint_eq (st.capacity, 512);
  ck_assert_uint_le (st.used, 512);
  ck_assert_uint_gt (st.evictions, 100000);
  ck_assert_uint_eq (m->ops->memory (m), mem);
  /* And it still learns a pattern afterwards. */
  static const uint32_t p[] = { 7, 8, 9 };
  ck_assert (periodic_accuracy (m, p, 3, 30, 300) >= 0.99);
  pred_model_destroy (m);
  pred_vocab_free (&v);
}
END_TEST

/* Mean log-likelihood m gave the tokens of a first-order chain: after
 * token t comes chain_next (t) with probability 0.7, any of the 40
 * tokens otherwise.  *last is the chain's last token.
 */
static uint32_t
chain_next (uint32_t t)
{
  return (t * 7 + 3) % 40 + 1;
}

static double
chain_loglik (struct pred_model *m, unsigned n, uint32_t *last)
{
  struct pred_rng rng;
  uint32_t tok = 1;
  double ll = 0;
  unsigned judged = 0;

  pred_rng_seed (&rng, 11);
  for (unsigned i = 0; i < n; i++) {
    uint32_t next = pred_rng_below (&rng, 10) < 7 ? chain_next (tok)
      : 1 + pred_rng_below (&rng, 40);
    if (i >= 200) {
      unsigned char ctx[8192];
      double p;
      m->ops->tok->ctx_init (m, 0, ctx);
      p = m->ops->tok->prob (m, ctx, next);
      ll += log (p > 1e-3 ? p : 1e-3);
      judged++;
    }
    struct pred_event ev = tok_event (i, next, 0, i == 0);
    m->ops->observe (m, &ev);
    tok = next;
  }
  *last = tok;
  return ll / judged;
}

/* The n-gram answers from the order that has predicted best lately: a
 * first-order chain with noise is answered from a short context (the
 * longer ones are seen too rarely to trust), without flapping between
 * orders; a pattern that needs four tokens of context, coming after it,
 * takes the order back to four.
 */
START_TEST (test_order_selection)
{
  static const uint32_t p6[] = { 2, 2, 2, 3, 2, 2, 2, 5 };
  struct pred_vocab v;
  struct pred_ngram_stats st;
  uint32_t last;
  make_vocab (&v, 64, 45);

  struct pred_model *ng = new_ngram (&v, 4, true, 16384);
  struct pred_model *mk = new_ngram (&v, 1, false, 16384);
  /* Before any evidence it answers from order 1. */
  pred_ngram_stats (ng, &st);
  ck_assert_uint_eq (st.order, 1);
  double ll_ng = chain_loglik (ng, 3000, &last);
  double ll_mk = chain_loglik (mk, 3000, &last);
  pred_ngram_stats (ng, &st);
  ck_assert_msg (st.order <= 2, "first-order chain answered from order %u",
                 st.order);
  ck_assert_msg (st.order_changes <= 4, "the order changed %" PRIu64 " times",
                 st.order_changes);
  /* Smoothed, it gives the noise tokens some probability: ahead of
   * Markov-1 (about 1.84 against 2.04 nats; answered from order 4 the
   * n-gram is level with it, 2.04). */
  ck_assert_msg (ll_ng >= ll_mk + 0.1,
                 "n-gram %.3f, Markov-1 %.3f nats a token", ll_ng, ll_mk);
  /* The distribution (cached) is the short context's too. */
  ck_assert_uint_eq (top1 (ng, 0), chain_next (last));

  /* Then a pattern that needs order 4, on the same model. */
  ck_assert (periodic_accuracy (ng, p6, 8, 400, 400) >= 0.99);
  pred_ngram_stats (ng, &st);
  ck_assert_uint_eq (st.order, 4);
  pred_model_destroy (ng);
  pred_model_destroy (mk);
  pred_vocab_free (&v);
}
END_TEST

/* Calibration moves the estimate towards what it is worth.  The stream
 * is a first-order chain whose tokens have one usual follower (60%) and
 * five rare ones (8% each), seen about 15 times per context: Witten-
 * Bell keeps T / (n + T) of a context's mass for followers not seen
 * yet, so with six followers in fifteen observations its top estimate
 * is well below the 60% it hits.  A random stream's long shots are
 * left alone.
 */
static struct pred_model *
new_calibrated (const struct pred_vocab *v, bool calibrate, bool smooth)
{
  return new_ngram_cal (v, smooth ? 4 : 1, smooth, 16384, calibrate);
}

static double top1_p (struct pred_model *m, unsigned s, uint32_t *tok);

static uint32_t
usual_or_rare (uint32_t t, struct pred_rng *rng)
{
  unsigned r = pred_rng_below (rng, 100);
  if (r < 60)
    return chain_next (t);
  return (chain_next (t) + 1 + 7 * ((r - 60) / 8)) % 40 + 1;
}

START_TEST (test_calibration)
{
  struct pred_vocab v;
  struct pred_rng rng;
  uint32_t tok = 1, tok_cal, tok_raw;
  double p_cal, p_raw, sum_cal = 0, sum_raw = 0, hits = 0;
  unsigned judged = 0;
  make_vocab (&v, 64, 45);

  struct pred_model *cal = new_calibrated (&v, true, true);
  struct pred_model *raw = new_calibrated (&v, false, true);
  pred_rng_seed (&rng, 3);
  for (unsigned i = 0; i < 600; i++) {
    uint32_t next = usual_or_rare (tok, &rng);
    if (i >= 300) {
      p_cal = top1_p (cal, 0, &tok_cal);
      p_raw = top1_p (raw, 0, &tok_raw);
      ck_assert_uint_eq (tok_cal, tok_raw);
      sum_cal += p_cal;
      sum_raw += p_raw;
      hits += tok_raw == next;
      judged++;
    }
    struct pred_event ev = tok_event (i, next, 0, i == 0);
    cal->ops->observe (cal, &ev);
    raw->ops->observe (raw, &ev);
    tok = next;
  }
  hits /= judged;
  sum_cal /= judged;
  sum_raw /= judged;
  ck_assert_msg (hits - sum_raw >= 0.08, "Witten-Bell %.3f for a hit rate "
                 "of %.3f: the test's premise does not hold", sum_raw, hits);
  ck_assert_msg (fabs (sum_cal - hits) <= 0.5 * (hits - sum_raw),
                 "calibrated %.3f, raw %.3f, hit rate %.3f",
                 sum_cal, sum_raw, hits);
  pred_model_destroy (cal);
  pred_model_destroy (raw);

  /* Random tokens: the top token is hardly ever right; nothing lifted. */
  cal = new_calibrated (&v, true, true);
  raw = new_calibrated (&v, false, true);
  pred_rng_seed (&rng, 5);
  for (unsigned i = 0; i < 2000; i++) {
    struct pred_event ev = tok_event (i, 1 + pred_rng_below (&rng, 40), 0,
                                      i == 0);
    cal->ops->observe (cal, &ev);
    raw->ops->observe (raw, &ev);
    if (i % 100 == 99) {
      p_cal = top1_p (cal, 0, &tok_cal);
      p_raw = top1_p (raw, 0, &tok_raw);
      ck_assert_msg (p_cal == p_raw && tok_cal == tok_raw,
                     "token %u: calibrated %.4f, raw %.4f", i, p_cal, p_raw);
    }
  }
  pred_model_destroy (cal);
  pred_model_destroy (raw);

  pred_vocab_free (&v);
}
END_TEST

/* A web server's pattern (wsrch-small): a large read is followed by the
 * next one, a small read by a jump anywhere.  Tokens are deltas from a
 * request's end and cannot tell the two apart; with size_context the
 * n-gram's contexts can.  Size classes (pred_size_class) are random
 * here, so the tokens before an access say nothing about its size.
 */
#define SEQ_TOKEN 3             /* delta 0 in make_vocab */

static double
size_context_confidence (bool size_context, bool after_large)
{
  struct pred_vocab v;
  struct pred_rng rng;
  uint32_t next = SEQ_TOKEN, tok;
  double sum = 0;
  unsigned judged = 0;

  make_vocab (&v, 64, 45);
  struct pred_model *m = new_ngram_full (&v, 4, true, 16384, false,
                                         size_context);
  pred_rng_seed (&rng, 11);
  for (unsigned i = 0; i < 3000; i++) {
    bool large = pred_rng_below (&rng, 2);
    struct pred_event ev = tok_event (i, next, 0, i == 0);
    ev.size_class = large ? pred_size_class (32768) : pred_size_class (8192);
    m->ops->observe (m, &ev);
    next = large ? SEQ_TOKEN : 5 + pred_rng_below (&rng, 30);
    if (i >= 1000 && large == after_large) {
      double p = top1_p (m, 0, &tok);
      sum += tok == SEQ_TOKEN ? p : 0;
      judged++;
    }
  }
  struct pred_ngram_stats st;
  pred_ngram_stats (m, &st);
  ck_assert_msg (st.sized == size_context, "sized contexts %s",
                 st.sized ? "chosen without size_context" : "not chosen");
  pred_model_destroy (m);
  pred_vocab_free (&v);
  return sum / judged;
}

START_TEST (test_size_context)
{
  double with_large = size_context_confidence (true, true);
  double with_small = size_context_confidence (true, false);
  double without_large = size_context_confidence (false, true);
  double without_small = size_context_confidence (false, false);

  ck_assert_uint_eq (pred_size_class (512), 0);
  ck_assert_uint_eq (pred_size_class (4096), 0);
  ck_assert_uint_eq (pred_size_class (4097), 1);
  ck_assert_uint_eq (pred_size_class (8192), 1);
  ck_assert_uint_eq (pred_size_class (24576), 3);
  ck_assert_uint_eq (pred_size_class (32768), 3);
  ck_assert_uint_eq (pred_size_class (262144), 6);
  ck_assert_uint_eq (pred_size_class (UINT32_MAX), PRED_SIZE_CLASSES - 1);

  /* With sizes: sure after a large read, not after a small one. */
  ck_assert_msg (with_large >= 0.9 && with_small <= 0.1,
                 "size context: P(sequential) %.3f after a large read, "
                 "%.3f after a small one", with_large, with_small);
  /* A file system's varied sizes around a pattern the tokens tell
   * alone: the plain contexts keep answering, as well as without sizes. */
  struct pred_vocab v;
  struct pred_rng rng;
  static const uint32_t pat[] = { 4, 9, 4, 12, 7 };
  unsigned hits = 0;
  make_vocab (&v, 64, 45);
  struct pred_model *m = new_ngram_full (&v, 4, true, 16384, false, true);
  pred_rng_seed (&rng, 12);
  for (unsigned i = 0; i < 2000; i++) {
    uint32_t tok = pat[i % 5];
    if (i >= 1000)
      hits += top1 (m, 0) == tok;
    struct pred_event ev = tok_event (i, tok, 0, i == 0);
    ev.size_class = pred_size_class (4096u << pred_rng_below (&rng, 6));
    m->ops->observe (m, &ev);
  }
  struct pred_ngram_stats st;
  pred_ngram_stats (m, &st);
  ck_assert_msg (!st.sized && hits >= 990, "random sizes: sized %d, %u of "
                 "1000 right", st.sized, hits);
  pred_model_destroy (m);
  pred_vocab_free (&v);

  /* Without: the same estimate after both (above the mix's 0.5: a
   * context keeps its 6 likeliest followers, and the 30 jumps' counts
   * are mostly dropped), less sure after a large read. */
  ck_assert_msg (fabs (without_large - without_small) < 0.05 &&
                 without_large < with_large - 0.1,
                 "no size context: P(sequential) %.3f after a large read, "
                 "%.3f after a small one", without_large, without_small);
}
END_TEST

/* ---- hybrid versus its components on synthetic mixes ---- */

static struct pred_model *
new_lstm (const struct pred_vocab *v, uint64_t seed)
{
  struct pred_lstm_model_config mc;
  memset (&mc, 0, sizeof mc);
  pred_lstm_config_default (&mc.trainer.lstm);
  mc.trainer.lstm.vocab = v->cap;
  mc.trainer.lstm.hidden = 32;
  mc.trainer.lstm.embed = 8;
  mc.trainer.lstm.lr = 0.01;
  mc.trainer.lstm.seed = seed;
  mc.trainer.nstreams = 8;
  mc.trainer.replay = 2;
  mc.rollout = (struct pred_rollout_cfg) { .depth = 2, .alts = 2, .min_p = 0.01, .max_len = 4 };
  mc.learn = true;
  struct pred_model *m = pred_lstm_model_new (&mc, v, NULL);
  ck_assert_ptr_nonnull (m);
  return m;
}

typedef uint32_t (*gen_fn) (uint64_t i, struct pred_rng *rng);

/* Short period plus 10% noise: the n-gram's home ground. */
static uint32_t
gen_short_noisy (uint64_t i, struct pred_rng *rng)
{
  static const uint32_t p[] = { 3, 4, 4, 5 };
  return pred_rng_uniform (rng) < 0.1 ? 1 + pred_rng_below (rng, 12) : p[i % 4];
}

/* The long-context pattern: the LSTM's. */
static uint32_t
gen_long (uint64_t i, struct pred_rng *rng)
{
  static const uint32_t p[] = { 1, 3, 4, 5, 6, 7, 2, 3, 4, 5, 6, 8 };
  (void) rng;
  return p[i % 12];
}

/* Alternating segments of the two. */
static uint32_t
gen_switching (uint64_t i, struct pred_rng *rng)
{
  return (i / 1500) % 2 ? gen_long (i, rng) : gen_short_noisy (i, rng);
}

/* Runs of zeros of length 1..6 ending in a jump whose size depends on
 * the run length (a file of n blocks then a jump to the next). */
static uint32_t
gen_runs (uint64_t i, struct pred_rng *rng)
{
  static const uint32_t p[] = { 9, 3, 10, 3, 3, 11, 3, 3, 3, 12, 3, 3, 3, 3, 13,
                                3, 3, 3, 3, 3, 14 };
  (void) rng;
  return p[i % 21];
}

/* No structure at all. */
static uint32_t
gen_random (uint64_t i, struct pred_rng *rng)
{
  (void) i;
  return 1 + pred_rng_below (rng, 15);
}

/* The hybrid as the hybrid tests build it. */
static const struct pred_hybrid_config hybrid_cfg = {
  .nstreams = 8, .slow_depth = 2, .ema = 0.02,
  .sharpness = PRED_HYBRID_SHARPNESS,
  .rollout = { .depth = 2, .alts = 2, .min_p = 0.01, .max_len = 4 },
};

static void
mix (const char *name, gen_fn gen, unsigned n, unsigned judge_from,
     bool calibrate)
{
  struct pred_vocab v;
  struct pred_rng rng;
  struct pred_model *ng, *ls, *hy;
  unsigned hn = 0, hl = 0, hh = 0, judged = 0;

  make_vocab (&v, 16, 15);
  ng = new_ngram_cal (&v, 4, true, 4096, calibrate);
  ls = new_lstm (&v, 11);
  hy = pred_hybrid_new (&hybrid_cfg, ng, ls);
  ck_assert_ptr_nonnull (hy);
  pred_rng_seed (&rng, 99);
  for (unsigned i = 0; i < n; i++) {
    uint32_t tok = gen (i, &rng);
    uint32_t ph = top1 (hy, 0);         /* also lets the hybrid score */
    if (i >= judge_from) {
      hn += top1 (ng, 0) == tok;
      hl += top1 (ls, 0) == tok;
      hh += ph == tok;
      judged++;
    }
    struct pred_event ev = tok_event (i, tok, 0, i == 0);
    ng->ops->observe (ng, &ev);
    ls->ops->observe (ls, &ev);
    hy->ops->observe (hy, &ev);
  }
  double an = (double) hn / judged, al = (double) hl / judged, ah = (double) hh / judged;
  double best = an > al ? an : al;
  fprintf (stderr, "%-14s top-1: ngram %.3f lstm %.3f hybrid %.3f (best - hybrid = %+.3f)\n",
           name, an, al, ah, best - ah);
  ck_assert_msg (ah >= best - 0.03, "%s: hybrid %.3f, best component %.3f", name, ah, best);
  pred_model_destroy (hy);
  pred_model_destroy (ng);
  pred_model_destroy (ls);
  pred_vocab_free (&v);
}

/* With the n-gram as the predictor has it (calibrated) and as
 * Witten-Bell gives it.
 */
START_TEST (test_hybrid_mixes)
{
  for (int cal = 1; cal >= 0; cal--) {
    mix (cal ? "short+noise" : "short+noise/raw", gen_short_noisy, 6000, 1000, cal);
    mix (cal ? "long-context" : "long-context/raw", gen_long, 9000, 6000, cal);
    mix (cal ? "switching" : "switching/raw", gen_switching, 12000, 3000, cal);
    mix (cal ? "runs" : "runs/raw", gen_runs, 12000, 6000, cal);
    mix (cal ? "random" : "random/raw", gen_random, 4000, 1000, cal);
  }
}
END_TEST

/* A fast model that claims 1.5 times what an equally good model claims
 * (as a calibrated n-gram can: its list sums past 1) must not take the
 * mixture's weight for it (hybrid.c, fast_share): the two predict alike,
 * so the weights stay near even.  Unscaled, log 1.5 per access would
 * give the inflated model ~0.998 of the weight.
 */
struct inflated {
  struct pred_model base;
  struct pred_model *inner;
};

static void
infl_observe (struct pred_model *m, const struct pred_event *ev)
{
  struct pred_model *in = ((struct inflated *) m)->inner;
  in->ops->observe (in, ev);
}

static void
infl_ctx_init (struct pred_model *m, unsigned stream, void *ctx)
{
  struct pred_model *in = ((struct inflated *) m)->inner;
  in->ops->tok->ctx_init (in, stream, ctx);
}

static void
infl_ctx_advance (struct pred_model *m, void *ctx, uint32_t tok)
{
  struct pred_model *in = ((struct inflated *) m)->inner;
  in->ops->tok->ctx_advance (in, ctx, tok);
}

static double
inflate (double p)
{
  return p * 1.5 < 1 ? p * 1.5 : 1;
}

static void
infl_dist (struct pred_model *m, void *ctx, unsigned k, struct pred_tokdist *out)
{
  struct pred_model *in = ((struct inflated *) m)->inner;
  in->ops->tok->dist (in, ctx, k, out);
  for (unsigned i = 0; i < out->n; i++)
    out->p[i] = inflate (out->p[i]);
}

static double
infl_prob (struct pred_model *m, void *ctx, uint32_t tok)
{
  struct pred_model *in = ((struct inflated *) m)->inner;
  return inflate (in->ops->tok->prob (in, ctx, tok));
}

static size_t
infl_memory (const struct pred_model *m)
{
  (void) m;
  return sizeof (struct inflated);
}

static void
infl_destroy (struct pred_model *m)
{
  free (m);
}

static struct pred_tokmodel_ops infl_tok_ops = {
  .ctx_init = infl_ctx_init, .ctx_advance = infl_ctx_advance,
  .dist = infl_dist, .prob = infl_prob,
};

static const struct pred_model_ops infl_ops = {
  .name = "inflated", .observe = infl_observe, .memory = infl_memory,
  .destroy = infl_destroy, .tok = &infl_tok_ops,
};

START_TEST (test_hybrid_inflated)
{
  struct pred_vocab v;
  struct pred_rng rng;
  struct pred_hybrid_state st;
  struct inflated *fast = calloc (1, sizeof *fast);
  struct pred_model *inner, *slow, *hy;
  uint32_t tok = 1;

  ck_assert_ptr_nonnull (fast);
  make_vocab (&v, 16, 15);
  inner = new_ngram (&v, 1, true, 4096);
  slow = new_ngram (&v, 1, true, 4096);
  infl_tok_ops.ctx_size = inner->ops->tok->ctx_size;
  fast->base = (struct pred_model) { .ops = &infl_ops, .vocab = &v };
  fast->inner = inner;
  hy = pred_hybrid_new (&hybrid_cfg, &fast->base, slow);
  ck_assert_ptr_nonnull (hy);
  pred_rng_seed (&rng, 5);
  /* A noisy cycle over six tokens: the top follower has ~0.6, so every
   * list covers the whole alphabet and its scaled share is exact. */
  for (unsigned i = 0; i < 3000; i++) {
    tok = pred_rng_uniform (&rng) < 0.5 ? 1 + tok % 6 : 1 + pred_rng_below (&rng, 6);
    (void) top1 (hy, 0);                /* lets the hybrid score */
    struct pred_event ev = tok_event (i, tok, 0, i == 0);
    fast->base.ops->observe (&fast->base, &ev);
    slow->ops->observe (slow, &ev);
    hy->ops->observe (hy, &ev);
  }
  pred_hybrid_state (hy, &st);
  fprintf (stderr, "inflated fast model: weight %.3f\n", st.w_fast);
  ck_assert_msg (st.w_fast > 0.4 && st.w_fast < 0.6,
                 "an inflated but no better model took weight %.3f",
                 st.w_fast);
  pred_model_destroy (hy);
  pred_model_destroy (&fast->base);
  pred_model_destroy (inner);
  pred_model_destroy (slow);
  pred_vocab_free (&v);
}
END_TEST

/* Top-1 token and its probability. */
static double
top1_p (struct pred_model *m, unsigned s, uint32_t *tok)
{
  unsigned char ctx[8192];
  struct pred_tokdist d;
  m->ops->tok->ctx_init (m, s, ctx);
  m->ops->tok->dist (m, ctx, 1, &d);
  *tok = d.n ? d.tok[0] : 0;
  return d.n ? d.p[0] : 0;
}

/* Next to a clearly worse model the hybrid passes the better one's
 * confidence on undiluted: every lookahead path multiplies it, and the
 * prefetch threshold compares the product.  The slow model here is a
 * Markov-1 fed the same stream with 40% noise (it gives the right token
 * about 0.6); weights proportional to squared accuracy would have left
 * it 28% of the mixture and the top-1 probability near 0.85.
 */
START_TEST (test_hybrid_undiluted)
{
  struct pred_vocab v;
  struct pred_rng rng;
  struct pred_model *fast, *slow, *hy;
  uint32_t tf, th, ts;
  double pf, ph, ps;

  make_vocab (&v, 16, 15);
  fast = new_ngram (&v, 4, true, 4096);
  slow = new_ngram (&v, 1, true, 4096);
  hy = pred_hybrid_new (&hybrid_cfg, fast, slow);
  ck_assert_ptr_nonnull (hy);
  pred_rng_seed (&rng, 7);
  for (unsigned i = 0; i < 600; i++) {
    uint32_t noisy = pred_rng_uniform (&rng) < 0.4 ? 1 + pred_rng_below (&rng, 14) : 4;
    struct pred_event ev = tok_event (i, 4, 0, i == 0);
    struct pred_event evn = tok_event (i, noisy, 0, i == 0);

    (void) top1_p (hy, 0, &th);         /* lets the hybrid score */
    fast->ops->observe (fast, &ev);
    slow->ops->observe (slow, &evn);
    hy->ops->observe (hy, &ev);
  }
  pf = top1_p (fast, 0, &tf);
  ps = top1_p (slow, 0, &ts);
  ph = top1_p (hy, 0, &th);
  fprintf (stderr, "undiluted: fast p %.3f, slow p %.3f, hybrid p %.3f\n",
           pf, ps, ph);
  ck_assert_uint_eq (tf, 4);
  ck_assert_uint_eq (th, 4);
  ck_assert_msg (ps < 0.8, "the slow model should be mediocre: %.3f", ps);
  ck_assert_msg (ph >= 0.98 * pf, "hybrid %.3f diluted against the fast %.3f",
                 ph, pf);
  pred_model_destroy (hy);
  pred_model_destroy (fast);
  pred_model_destroy (slow);
  pred_vocab_free (&v);
}
END_TEST

static Suite *
ngram_suite (void)
{
  Suite *s = suite_create ("predict-ngram");
  TCase *tc = tcase_create ("ngram");
  tcase_set_timeout (tc, 300);
  tcase_add_test (tc, test_periodic);
  tcase_add_test (tc, test_rollout_blocks);
  tcase_add_test (tc, test_bounded);
  tcase_add_test (tc, test_order_selection);
  tcase_add_test (tc, test_calibration);
  tcase_add_test (tc, test_size_context);
  tcase_add_test (tc, test_hybrid_mixes);
  tcase_add_test (tc, test_hybrid_inflated);
  tcase_add_test (tc, test_hybrid_undiluted);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (ngram_suite ());
  int failed;
  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
