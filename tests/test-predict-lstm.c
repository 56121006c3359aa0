/* test-predict-lstm.c: the LSTM is right (gradients against finite
 * differences in double precision), reproducible (fixed seeds give
 * identical results; a saved and reloaded model predicts identically)
 * and useful (it learns a dependency longer than an order-4 n-gram can
 * see).
 */
#include <config.h>

#include <inttypes.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "lstm.h"
#include "lstm-infer.h"
#include "lstm-model.h"
#include "model-file.h"
#include "ngram.h"
#include "hybrid.h"
#include "vocab.h"

/* ---- gradient check ---- */

static void
gradcheck (enum pred_lstm_optimizer opt, unsigned V, unsigned E, unsigned H,
           unsigned T, uint64_t seed)
{
  struct pred_lstm_config c;
  struct pred_lstm_core k;
  struct pred_rng rng;
  uint32_t tok[64];
  double h0[16], c0[16];
  double *scratch;
  double worst = 0;

  pred_lstm_config_default (&c);
  c.vocab = V;
  c.embed = E;
  c.hidden = H;
  c.bptt = T;
  c.optimizer = opt;
  c.seed = seed;
  ck_assert_ptr_null (pred_lstm_config_check (&c));
  ck_assert_int_eq (pred_lstm_core_init (&k, &c, NULL), 0);

  /* Larger weights than the default init, so every path matters. */
  pred_rng_seed (&rng, seed + 100);
  for (size_t i = 0; i < k.P.n; i++)
    k.P.w[i] = (2 * pred_rng_uniform (&rng) - 1) * 0.8;
  /* Inputs carry size classes too (their embedding rows are checked);
   * targets ignore them. */
  for (unsigned i = 0; i <= T; i++)
    tok[i] = pred_lstm_input (pred_rng_below (&rng, V),
                              pred_rng_below (&rng, PRED_LSTM_SIZE_CLASSES));
  for (unsigned i = 0; i < H; i++) {
    h0[i] = (2 * pred_rng_uniform (&rng) - 1) * 0.5;
    c0[i] = (2 * pred_rng_uniform (&rng) - 1) * 0.5;
  }
  scratch = malloc ((6 * H + V) * sizeof *scratch);

  double hT[16], cT[16], fh[16], fc[16], worst_step;
  /* forward_backward in its two halves, as the trainer runs it. */
  double loss = pred_lstm_forward_record (&k, tok, T, h0, c0, hT, cT, &worst_step);
  pred_lstm_backward (&k, tok);
  double loss2 = pred_lstm_loss (&k.P, tok, T, h0, c0, scratch);
  ck_assert_msg (fabs (loss - loss2) < 1e-12, "loss %g vs %g", loss, loss2);
  /* The parameters-only forward pass agrees with the recording one. */
  double loss3 = pred_lstm_forward (&k.P, tok, T, h0, c0, fh, fc, scratch);
  ck_assert_msg (fabs (loss - loss3) < 1e-12, "loss %g vs %g", loss, loss3);
  /* The worst step: each step's loss is the chunk's with only that
   * step's target kept, so find it by scoring prefixes. */
  double prev = 0, max = 0;
  for (unsigned t = 1; t <= T; t++) {
    double sum = pred_lstm_loss (&k.P, tok, t, h0, c0, scratch) * t;
    if (sum - prev > max)
      max = sum - prev;
    prev = sum;
  }
  ck_assert_msg (fabs (worst_step - max) < 1e-9, "worst step %g vs %g",
                 worst_step, max);
  for (unsigned i = 0; i < H; i++) {
    ck_assert_msg (fabs (hT[i] - fh[i]) < 1e-12, "h[%u] %g vs %g", i, hT[i], fh[i]);
    ck_assert_msg (fabs (cT[i] - fc[i]) < 1e-12, "c[%u] %g vs %g", i, cT[i], fc[i]);
  }

  /* The size rows get no gradient from a chunk of one size (lstm.h). */
  bool differ = false;
  for (unsigned i = 1; i < T; i++)
    differ |= pred_lstm_input_size (tok[i]) != pred_lstm_input_size (tok[0]);
  size_t semb0 = (size_t) (k.P.semb - k.P.w);
  for (size_t i = 0; i < k.P.n; i++) {
    double w = k.P.w[i], eps = 1e-5;
    if (i >= semb0 && !differ) {
      ck_assert_msg (k.G.w[i] == 0, "size row gradient %zu from a chunk of one size", i);
      continue;
    }
    k.P.w[i] = w + eps;
    double lp = pred_lstm_loss (&k.P, tok, T, h0, c0, scratch);
    k.P.w[i] = w - eps;
    double lm = pred_lstm_loss (&k.P, tok, T, h0, c0, scratch);
    k.P.w[i] = w;
    double num = (lp - lm) / (2 * eps), ana = k.G.w[i];
    double err = fabs (num - ana) / fmax (1e-6, fabs (num) + fabs (ana));
    if (err > worst)
      worst = err;
    ck_assert_msg (err < 1e-5,
                   "parameter %zu: analytic %.10g numeric %.10g (rel err %g)",
                   i, ana, num, err);
  }
  /* Every parameter group received gradient. */
  double gsum[7] = { 0 };
  const double *g[7] = { k.G.emb, k.G.wx, k.G.wh, k.G.b, k.G.wy, k.G.by,
                         k.G.semb };
  size_t n[7] = { (size_t) V * E, 4 * H * E, 4 * H * H, 4 * H, (size_t) V * H, V,
                  (size_t) PRED_LSTM_SIZE_CLASSES * E };
  for (int j = 0; j < 7; j++)
    for (size_t i = 0; i < n[j]; i++)
      gsum[j] += fabs (g[j][i]);
  for (int j = 0; j < (differ ? 7 : 6); j++)
    ck_assert_msg (gsum[j] > 0, "parameter group %d has no gradient", j);
  fprintf (stderr, "gradcheck V=%u E=%u H=%u T=%u: %zu parameters, worst relative error %.2e\n",
           V, E, H, T, k.P.n, worst);

  /* One optimizer step lowers the loss on this chunk. */
  pred_lstm_apply (&k);
  double after = pred_lstm_loss (&k.P, tok, T, h0, c0, scratch);
  ck_assert_msg (after < loss, "loss %g did not decrease (%g)", loss, after);

  free (scratch);
  pred_lstm_core_free (&k);
}

START_TEST (test_gradcheck)
{
  gradcheck (PRED_LSTM_ADAM, 7, 3, 5, 6, 1);
  gradcheck (PRED_LSTM_RMSPROP, 11, 4, 8, 9, 2);
  gradcheck (PRED_LSTM_ADAM, 3, 1, 1, 1, 3);
}
END_TEST

START_TEST (test_forget_bias_and_clip)
{
  struct pred_lstm_config c;
  struct pred_lstm_core k;
  uint32_t tok[5] = { 1, 2, 3, 1, 2 };

  pred_lstm_config_default (&c);
  c.vocab = 8;
  c.embed = 4;
  c.hidden = 6;
  c.bptt = 4;
  c.clip = 1e-3;
  ck_assert_int_eq (pred_lstm_core_init (&k, &c, NULL), 0);
  for (unsigned r = 0; r < 4 * c.hidden; r++)
    ck_assert (k.P.b[r] == (r >= c.hidden && r < 2 * c.hidden ? 1.0 : 0.0));
  /* Adam's first step moves each weight by at most lr. */
  double *before = malloc (k.P.n * sizeof *before);
  memcpy (before, k.P.w, k.P.n * sizeof *before);
  pred_lstm_forward_backward (&k, tok, 4, NULL, NULL, NULL, NULL);
  pred_lstm_apply (&k);
  ck_assert (k.last_grad_norm > 100 * c.clip);
  for (size_t i = 0; i < k.P.n; i++)
    ck_assert (fabs (k.P.w[i] - before[i]) <= c.lr * 1.0001);
  /* The clipped gradient went into the first moment: |M| = (1-b1) clip. */
  double mn = 0;
  for (size_t i = 0; i < k.M.n; i++)
    mn += k.M.w[i] * k.M.w[i];
  ck_assert_msg (fabs (sqrt (mn) - (1 - c.beta1) * c.clip) < 1e-12,
                 "|M| = %g, expected %g", sqrt (mn), (1 - c.beta1) * c.clip);
  free (before);
  pred_lstm_core_free (&k);
}
END_TEST

/* The float inference path computes what the double path does. */
START_TEST (test_infer_matches_double)
{
  struct pred_lstm_params p;
  struct pred_lstm_infer f;
  struct pred_rng rng;
  unsigned V = 40, E = 8, H = 16;
  double h[16] = { 0 }, c[16] = { 0 }, z[64], probs[40];
  float hf[16] = { 0 }, cf[16] = { 0 }, zf[64], pf[40];

  pred_rng_seed (&rng, 5);
  ck_assert_int_eq (pred_lstm_params_alloc (&p, V, E, H), 0);
  pred_lstm_params_init (&p, &rng);
  /* Sizes that matter (a fresh model's are zero). */
  for (size_t i = 0; i < (size_t) PRED_LSTM_SIZE_CLASSES * E; i++)
    p.semb[i] = (2 * pred_rng_uniform (&rng) - 1) * 0.5;
  ck_assert_int_eq (pred_lstm_infer_alloc (&f, V, E, H), 0);
  pred_lstm_infer_build (&f, &p);
  for (unsigned t = 0; t < 30; t++) {
    uint32_t tok = pred_lstm_input ((t * 7) % V, t % PRED_LSTM_SIZE_CLASSES);
    pred_lstm_step (&p, h, c, tok, h, c, z);
    pred_lstm_infer_step (&f, hf, cf, tok, hf, cf, zf);
    pred_lstm_output (&p, h, probs);
    pred_lstm_infer_output (&f, hf, pf);
    for (unsigned v = 0; v < V; v++)
      ck_assert_msg (fabs (probs[v] - pf[v]) < 1e-4, "step %u token %u: %g vs %g",
                     t, v, probs[v], (double) pf[v]);
    for (unsigned r = 0; r < H; r++)
      ck_assert (fabs (h[r] - hf[r]) < 1e-4);
  }
  pred_lstm_infer_free (&f);
  pred_lstm_params_free (&p);
}
END_TEST

/* ---- sequence-level tests through the model interface ---- */

/* A vocabulary whose ids 1..n are the deltas 1..n. */
static void
make_vocab (struct pred_vocab *v, unsigned cap, unsigned n)
{
  int64_t d[64];
  ck_assert_int_eq (pred_vocab_init (v, cap), 0);
  for (unsigned i = 0; i < n; i++)
    d[i] = i + 1;
  ck_assert_int_eq (pred_vocab_set (v, d, n), 0);
}

static struct pred_event
tok_event (uint64_t seq, uint32_t tok, unsigned stream, bool new_stream)
{
  struct pred_event ev;
  memset (&ev, 0, sizeof ev);
  ev.seq = seq;
  ev.block = 1000 + seq;
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
new_lstm (const struct pred_vocab *v, uint64_t seed, unsigned hidden,
          const struct pred_lstm_params *init, bool learn)
{
  struct pred_lstm_model_config mc;
  memset (&mc, 0, sizeof mc);
  pred_lstm_config_default (&mc.trainer.lstm);
  mc.trainer.lstm.vocab = v->cap;
  mc.trainer.lstm.hidden = hidden;
  mc.trainer.lstm.embed = 8;
  mc.trainer.lstm.bptt = 16;
  mc.trainer.lstm.lr = 0.01;
  mc.trainer.lstm.seed = seed;
  mc.trainer.nstreams = 8;
  mc.trainer.replay = 2;
  mc.trainer.threaded = false;
  mc.rollout = (struct pred_rollout_cfg) { .depth = 2, .alts = 2, .min_p = 0.01, .max_len = 4 };
  mc.learn = learn;
  mc.size_input = true;
  struct pred_model *m = pred_lstm_model_new (&mc, v, init);
  ck_assert_ptr_nonnull (m);
  return m;
}

static struct pred_model *
new_ngram (const struct pred_vocab *v)
{
  struct pred_ngram_config g = {
    .max_order = 4, .capacity = 4096, .smooth = true, .nstreams = 8,
    .rollout = { .depth = 4, .alts = 2, .min_p = 0.01, .max_len = 4 },
  };
  struct pred_model *m = pred_ngram_new (&g, v);
  ck_assert_ptr_nonnull (m);
  return m;
}

/* Top-1 of model m for stream s. */
static uint32_t
top1 (struct pred_model *m, unsigned s, double *p)
{
  unsigned char ctx[8192];
  struct pred_tokdist d;
  ck_assert_uint_le (m->ops->tok->ctx_size, sizeof ctx);
  m->ops->tok->ctx_init (m, s, ctx);
  m->ops->tok->dist (m, ctx, 1, &d);
  if (p)
    *p = d.n ? d.p[0] : 0;
  return d.n ? d.tok[0] : 0;
}

/* a 1 2 3 4 X b 1 2 3 4 Y ...: after "1 2 3 4" the next token depends
 * on the one 5 steps back, out of an order-4 n-gram's sight. */
static const uint32_t long_pattern[] = { 1, 3, 4, 5, 6, 7, 2, 3, 4, 5, 6, 8 };
#define LP (sizeof long_pattern / sizeof long_pattern[0])

START_TEST (test_lstm_learns_long_context)
{
  struct pred_vocab v;
  struct pred_model *lstm, *ng, *hy;
  struct pred_hybrid_config hc = {
    .nstreams = 8, .slow_depth = 2, .ema = 0.02,
    .sharpness = PRED_HYBRID_SHARPNESS,
    .rollout = { .depth = 2, .alts = 2, .min_p = 0.01, .max_len = 4 },
  };
  unsigned n = 9000, window = 1200;
  unsigned hit_l = 0, hit_n = 0, hit_h = 0, crit_l = 0, crit_n = 0, crit_h = 0, ncrit = 0;

  make_vocab (&v, 16, 8);
  lstm = new_lstm (&v, 7, 32, NULL, true);
  ng = new_ngram (&v);
  hy = pred_hybrid_new (&hc, ng, lstm);
  ck_assert_ptr_nonnull (hy);

  for (unsigned i = 0; i < n; i++) {
    uint32_t tok = long_pattern[i % LP];
    struct pred_event ev = tok_event (i, tok, 0, i == 0);
    if (i >= n - window) {
      bool critical = (i % LP) == 5 || (i % LP) == 11;
      uint32_t pl = top1 (lstm, 0, NULL), pn = top1 (ng, 0, NULL), ph = top1 (hy, 0, NULL);
      hit_l += pl == tok;
      hit_n += pn == tok;
      hit_h += ph == tok;
      if (critical) {
        ncrit++;
        crit_l += pl == tok;
        crit_n += pn == tok;
        crit_h += ph == tok;
      }
    }
    else if (i % 3 == 0)
      top1 (hy, 0, NULL);       /* let the hybrid score its components */
    ng->ops->observe (ng, &ev);
    lstm->ops->observe (lstm, &ev);
    hy->ops->observe (hy, &ev);
  }
  fprintf (stderr, "long context: top-1 over last %u tokens: lstm %.1f%% ngram %.1f%% "
           "hybrid %.1f%%; at the 5-back positions: lstm %.1f%% ngram %.1f%% hybrid %.1f%%\n",
           window, 100.0 * hit_l / window, 100.0 * hit_n / window, 100.0 * hit_h / window,
           100.0 * crit_l / ncrit, 100.0 * crit_n / ncrit, 100.0 * crit_h / ncrit);
  /* The n-gram cannot beat a coin at the critical positions... */
  ck_assert_msg (crit_n <= 0.65 * ncrit, "ngram %u/%u", crit_n, ncrit);
  /* ... the LSTM gets them. */
  ck_assert_msg (crit_l >= 0.95 * ncrit, "lstm %u/%u", crit_l, ncrit);
  ck_assert_msg (hit_l >= 0.97 * window, "lstm overall %u/%u", hit_l, window);
  /* And the hybrid is at least as good as the better one, within 2%. */
  ck_assert_msg (hit_h + 0.02 * window >= (hit_l > hit_n ? hit_l : hit_n),
                 "hybrid %u lstm %u ngram %u", hit_h, hit_l, hit_n);

  pred_model_destroy (hy);
  pred_model_destroy (ng);
  pred_model_destroy (lstm);
  pred_vocab_free (&v);
}
END_TEST

/* Same seed and same input: bit-identical weights and predictions. */
static void
run_fixed (uint64_t seed, struct pred_lstm_params *out, double *probs_out)
{
  struct pred_vocab v;
  struct pred_model *m;
  make_vocab (&v, 16, 8);
  m = new_lstm (&v, seed, 16, NULL, true);
  for (unsigned i = 0; i < 700; i++) {
    struct pred_event ev = tok_event (i, long_pattern[(i * 5) % LP], i % 3, i < 3);
    m->ops->observe (m, &ev);
  }
  unsigned char ctx[8192];
  struct pred_tokdist d;
  m->ops->tok->ctx_init (m, 1, ctx);
  m->ops->tok->dist (m, ctx, 8, &d);
  for (unsigned i = 0; i < 8; i++)
    probs_out[i] = i < d.n ? d.p[i] * 1000 + d.tok[i] : -1;
  ck_assert_int_eq (pred_lstm_params_alloc (out, 16, 8, 16), 0);
  pred_lstm_trainer_snapshot (pred_lstm_model_trainer (m), out);
  pred_model_destroy (m);
  pred_vocab_free (&v);
}

START_TEST (test_fixed_seed)
{
  struct pred_lstm_params a, b, c;
  double pa[8], pb[8], pc[8];
  run_fixed (42, &a, pa);
  run_fixed (42, &b, pb);
  run_fixed (43, &c, pc);
  ck_assert_int_eq (memcmp (a.w, b.w, a.n * sizeof *a.w), 0);
  ck_assert_int_eq (memcmp (pa, pb, sizeof pa), 0);
  ck_assert_int_ne (memcmp (a.w, c.w, a.n * sizeof *a.w), 0);
  pred_lstm_params_free (&a);
  pred_lstm_params_free (&b);
  pred_lstm_params_free (&c);
}
END_TEST

/* A file written before the size embedding had a section (SEMB) loads:
 * the same weights, and zeros for the sizes.  Made by cutting the
 * section out of a fresh file (tag, reserved, length, payload, CRC).
 */
static void
check_file_without_sizes (const char *path, const struct pred_model_file *mf)
{
  struct pred_model_file old;
  char err[256], oldpath[64];
  unsigned char *buf;
  long len;
  size_t at, cut;
  FILE *fp = fopen (path, "rb");

  ck_assert_ptr_nonnull (fp);
  ck_assert_int_eq (fseek (fp, 0, SEEK_END), 0);
  len = ftell (fp);
  rewind (fp);
  buf = malloc (len);
  ck_assert_int_eq (fread (buf, 1, len, fp), (size_t) len);
  fclose (fp);
  for (at = 16; at + 16 <= (size_t) len; ) {
    uint64_t n;
    memcpy (&n, buf + at + 8, 8);        /* little-endian, as on x86 */
    if (memcmp (buf + at, "SEMB", 4) == 0)
      break;
    at += 16 + n + 4;
  }
  ck_assert_msg (at + 16 <= (size_t) len, "no SEMB section in %s", path);
  uint64_t n;
  memcpy (&n, buf + at + 8, 8);
  cut = 16 + n + 4;
  memmove (buf + at, buf + at + cut, len - at - cut);
  snprintf (oldpath, sizeof oldpath, "%s.old", path);
  fp = fopen (oldpath, "wb");
  ck_assert_ptr_nonnull (fp);
  ck_assert_int_eq (fwrite (buf, 1, len - cut, fp), len - cut);
  fclose (fp);
  free (buf);

  ck_assert_msg (pred_model_load (oldpath, &old, err, sizeof err) == 0, "%s", err);
  size_t core = mf->params.n - (size_t) PRED_LSTM_SIZE_CLASSES * mf->params.E;
  ck_assert_int_eq (memcmp (old.params.w, mf->params.w, core * sizeof (double)), 0);
  for (size_t i = core; i < old.params.n; i++)
    ck_assert (old.params.w[i] == 0);
  pred_model_file_free (&old);
  unlink (oldpath);
}

START_TEST (test_save_load_identical)
{
  struct pred_vocab v;
  struct pred_model *a, *b;
  struct pred_model_file mf, in;
  char path[] = "/tmp/test-predict-lstm-XXXXXX";
  char err[256];
  int fd = mkstemp (path);
  ck_assert_int_ge (fd, 0);
  close (fd);

  make_vocab (&v, 16, 8);
  a = new_lstm (&v, 9, 24, NULL, true);
  for (unsigned i = 0; i < 2000; i++) {
    struct pred_event ev = tok_event (i, long_pattern[i % LP], 0, i == 0);
    ev.size_class = (i / 3) % 3;        /* the size embedding is trained */
    a->ops->observe (a, &ev);
  }
  memset (&mf, 0, sizeof mf);
  mf.block_size = 65536;
  mf.stream_fwd = 32;
  mf.stream_back = 8;
  pred_lstm_config_default (&mf.lstm);
  mf.lstm.vocab = 16;
  mf.lstm.embed = 8;
  mf.lstm.hidden = 24;
  mf.lstm.lr = 0.01;
  mf.lstm.seed = 9;
  mf.nvocab = v.n - 1;
  mf.vocab = v.delta + 1;
  ck_assert_int_eq (pred_lstm_params_alloc (&mf.params, 16, 8, 24), 0);
  pred_lstm_trainer_snapshot (pred_lstm_model_trainer (a), &mf.params);
  ck_assert_msg (pred_model_save (path, &mf, err, sizeof err) == 0, "%s", err);
  ck_assert_msg (pred_model_load (path, &in, err, sizeof err) == 0, "%s", err);
  ck_assert_uint_eq (in.nvocab, 8);
  ck_assert_int_eq (memcmp (in.vocab, mf.vocab, 8 * sizeof *in.vocab), 0);
  ck_assert_int_eq (memcmp (in.params.w, mf.params.w, mf.params.n * sizeof (double)), 0);
  ck_assert_uint_eq (in.lstm.hidden, 24);
  double semb_sum = 0;
  for (size_t i = 0; i < (size_t) PRED_LSTM_SIZE_CLASSES * 8; i++)
    semb_sum += fabs (in.params.semb[i]);
  ck_assert_msg (semb_sum > 0, "the size embedding was not trained or not saved");
  check_file_without_sizes (path, &mf);

  b = new_lstm (&v, 12345, 24, &in.params, false);
  pred_lstm_model_set_learn (a, false);
  /* Fresh stream (parent -1) in both, then the same tokens. */
  for (unsigned i = 0; i < 60; i++) {
    struct pred_event ev = tok_event (i, long_pattern[(i + 3) % LP], 5, i == 0);
    ev.size_class = i % 2;
    a->ops->observe (a, &ev);
    b->ops->observe (b, &ev);
    unsigned char ca[8192], cb[8192];
    struct pred_tokdist da, db;
    a->ops->tok->ctx_init (a, 5, ca);
    b->ops->tok->ctx_init (b, 5, cb);
    a->ops->tok->dist (a, ca, 8, &da);
    b->ops->tok->dist (b, cb, 8, &db);
    ck_assert_uint_eq (da.n, db.n);
    for (unsigned j = 0; j < da.n; j++) {
      ck_assert_uint_eq (da.tok[j], db.tok[j]);
      ck_assert_msg (da.p[j] == db.p[j], "step %u rank %u: %.17g vs %.17g",
                     i, j, da.p[j], db.p[j]);
    }
  }

  /* Damage is detected: flip one byte in the weights. */
  FILE *fp = fopen (path, "r+b");
  ck_assert_ptr_nonnull (fp);
  fseek (fp, 300, SEEK_SET);
  int ch = fgetc (fp);
  fseek (fp, 300, SEEK_SET);
  fputc (ch ^ 0x40, fp);
  fclose (fp);
  struct pred_model_file bad;
  ck_assert_int_eq (pred_model_load (path, &bad, err, sizeof err), -1);
  ck_assert_msg (strstr (err, "checksum") != NULL, "%s", err);
  /* Truncation is detected. */
  ck_assert_int_eq (truncate (path, 200), 0);
  ck_assert_int_eq (pred_model_load (path, &bad, err, sizeof err), -1);
  ck_assert_msg (strstr (err, "truncated") != NULL, "%s", err);
  /* Not a model at all. */
  fp = fopen (path, "w");
  fputs ("hello world, this is not a model file\n", fp);
  fclose (fp);
  ck_assert_int_eq (pred_model_load (path, &bad, err, sizeof err), -1);
  ck_assert_msg (strstr (err, "magic") != NULL, "%s", err);

  unlink (path);
  pred_lstm_params_free (&mf.params);
  pred_model_file_free (&in);
  pred_model_destroy (a);
  pred_model_destroy (b);
  pred_vocab_free (&v);
}
END_TEST

static void small_sync_trainer (struct pred_lstm_trainer_config *tc,
                                unsigned vocab, unsigned streams);

/* A stream of one size, whatever it is, trains exactly as unsized tokens
 * do: the size rows learn nothing from it (lstm.h). */
START_TEST (test_one_size_trains_as_none)
{
  static const uint32_t pat[] = { 1, 3, 4, 5, 6, 7, 2, 3, 4, 5, 6, 8 };
  struct pred_lstm_trainer_config tc;
  struct pred_lstm_trainer *plain, *sized;
  struct pred_lstm_params a, b;

  small_sync_trainer (&tc, 16, 2);
  plain = pred_lstm_trainer_new (&tc, NULL);
  sized = pred_lstm_trainer_new (&tc, NULL);
  ck_assert_ptr_nonnull (plain);
  ck_assert_ptr_nonnull (sized);
  for (unsigned i = 0; i < 3000; i++) {
    uint32_t tok = pat[i % 12];
    pred_lstm_trainer_feed (plain, 0, i == 0, -1, tok, -1);
    pred_lstm_trainer_feed (sized, 0, i == 0, -1, pred_lstm_input (tok, 4), -1);
  }
  ck_assert_int_eq (pred_lstm_params_alloc (&a, tc.lstm.vocab, tc.lstm.embed,
                                            tc.lstm.hidden), 0);
  ck_assert_int_eq (pred_lstm_params_alloc (&b, tc.lstm.vocab, tc.lstm.embed,
                                            tc.lstm.hidden), 0);
  pred_lstm_trainer_snapshot (plain, &a);
  pred_lstm_trainer_snapshot (sized, &b);
  ck_assert_int_eq (memcmp (a.w, b.w, a.n * sizeof *a.w), 0);
  pred_lstm_params_free (&a);
  pred_lstm_params_free (&b);
  pred_lstm_trainer_free (plain);
  pred_lstm_trainer_free (sized);
}
END_TEST

/* Where the next request goes depends on this one's size alone: after
 * a small request the delta is 1, after a large one 5, sizes at random.
 * Tokens alone leave a coin toss; with its size input the LSTM learns it
 * (lstm.h).
 */
static double
size_pattern_accuracy (bool size_input)
{
  struct pred_vocab v;
  struct pred_model *m;
  struct pred_rng rng;
  unsigned n = 6000, hits = 0, scored = 0, size = 0;

  make_vocab (&v, 16, 8);
  m = new_lstm (&v, 21, 16, NULL, true);
  if (!size_input) {
    /* new_lstm turns it on: rebuild with it off. */
    pred_model_destroy (m);
    struct pred_lstm_model_config mc;
    memset (&mc, 0, sizeof mc);
    pred_lstm_config_default (&mc.trainer.lstm);
    mc.trainer.lstm.vocab = v.cap;
    mc.trainer.lstm.hidden = 16;
    mc.trainer.lstm.embed = 8;
    mc.trainer.lstm.lr = 0.01;
    mc.trainer.lstm.seed = 21;
    mc.trainer.nstreams = 8;
    mc.trainer.replay = 2;
    mc.rollout = (struct pred_rollout_cfg) { .depth = 2, .alts = 2, .min_p = 0.01, .max_len = 4 };
    mc.learn = true;
    m = pred_lstm_model_new (&mc, &v, NULL);
    ck_assert_ptr_nonnull (m);
  }
  pred_rng_seed (&rng, 77);
  for (unsigned i = 0; i < n; i++) {
    uint32_t tok = i == 0 ? 1 : size == 0 ? 1 : 5;
    if (i >= n - 1000) {
      hits += top1 (m, 0, NULL) == tok;
      scored++;
    }
    struct pred_event ev = tok_event (i, tok, 0, i == 0);
    size = pred_rng_below (&rng, 2) ? 3 : 0;       /* 32 KiB or 4 KiB */
    ev.size_class = size;
    m->ops->observe (m, &ev);
  }
  pred_model_destroy (m);
  pred_vocab_free (&v);
  return (double) hits / scored;
}

START_TEST (test_lstm_learns_from_sizes)
{
  double with = size_pattern_accuracy (true);
  double without = size_pattern_accuracy (false);

  fprintf (stderr, "size pattern: top-1 %.3f with the size input, %.3f without\n",
           with, without);
  ck_assert_msg (with > 0.95, "with sizes: %.3f", with);
  ck_assert_msg (without < 0.65, "without sizes: %.3f", without);
}
END_TEST

/* The background trainer learns too, and start may come late. */
START_TEST (test_threaded_trainer)
{
  struct pred_lstm_trainer_config tc;
  struct pred_lstm_trainer *t;
  struct pred_lstm_trainer_stats st;

  memset (&tc, 0, sizeof tc);
  pred_lstm_config_default (&tc.lstm);
  tc.lstm.vocab = 16;
  tc.lstm.hidden = 16;
  tc.lstm.embed = 8;
  tc.nstreams = 4;
  tc.replay = 1;
  tc.threaded = true;
  t = pred_lstm_trainer_new (&tc, NULL);
  ck_assert_ptr_nonnull (t);
  ck_assert_ptr_nonnull (pred_lstm_trainer_fetch (t));
  ck_assert_ptr_null (pred_lstm_trainer_fetch (t));
  /* Fed before the thread exists: queued. */
  for (unsigned i = 0; i < 1000; i++)
    pred_lstm_trainer_feed (t, 0, i == 0, -1, long_pattern[i % LP], -1);
  pred_lstm_trainer_stats (t, &st);
  ck_assert_uint_eq (st.chunks, 0);
  ck_assert (!st.running);
  ck_assert_int_eq (pred_lstm_trainer_start (t), 0);
  ck_assert_int_eq (pred_lstm_trainer_start (t), 0);   /* idempotent */
  for (int k = 0; k < 2000; k++) {
    pred_lstm_trainer_stats (t, &st);
    if (st.chunks >= 1000 / 17)
      break;
    usleep (1000);
  }
  ck_assert_uint_ge (st.chunks, 1000 / 17);
  ck_assert (st.running);
#ifdef __linux__
  ck_assert_msg (st.idle_priority, "the trainer should run at nice 19");
#endif
  const struct pred_lstm_infer *f = pred_lstm_trainer_fetch (t);
  ck_assert_ptr_nonnull (f);
  ck_assert_uint_gt (f->version, 1);

  /* Idle, the thread sleeps until tokens come (it looked every 2 ms:
   * 250 wake-ups in half a second); a few tokens wait at most 100 ms.
   * First every chunk of the 1000 tokens (16 new a chunk) is done. */
  uint64_t fed_chunks, w0;
  for (int k = 0; k < 2000; k++) {
    pred_lstm_trainer_stats (t, &st);
    if (st.chunks + st.known + st.skipped >= (1000 - 1) / 16)
      break;
    usleep (1000);
  }
  ck_assert_uint_ge (st.chunks + st.known + st.skipped, (1000 - 1) / 16);
  usleep (150 * 1000);
  pred_lstm_trainer_stats (t, &st);
  w0 = st.wakeups;
  usleep (500 * 1000);
  pred_lstm_trainer_stats (t, &st);
  fprintf (stderr, "idle trainer: %" PRIu64 " wake-ups in 0.5 s\n",
           st.wakeups - w0);
  ck_assert_uint_le (st.wakeups - w0, 10);
  fed_chunks = st.chunks + st.known;
  for (unsigned i = 0; i < 17 * 2; i++)
    pred_lstm_trainer_feed (t, 2, i == 0, -1, long_pattern[i % LP], -1);
  for (int k = 0; k < 2000; k++) {
    pred_lstm_trainer_stats (t, &st);
    if (st.chunks + st.known >= fed_chunks + 2)
      break;
    usleep (1000);
  }
  ck_assert_uint_ge (st.chunks + st.known, fed_chunks + 2);
  pred_lstm_trainer_stop (t);
  pred_lstm_trainer_stats (t, &st);
  ck_assert (!st.running);
  /* Overfill the queue while stopped: drops are counted, never blocks. */
  for (unsigned i = 0; i < 70000; i++)
    pred_lstm_trainer_feed (t, 1, false, -1, 3, -1);
  pred_lstm_trainer_stats (t, &st);
  ck_assert_uint_ge (st.dropped, 70000 - 65536);
  ck_assert_int_eq (pred_lstm_trainer_start (t), 0);
  pred_lstm_trainer_free (t);   /* stops the running thread */
}
END_TEST

/* A token flood with a CPU budget: training takes about its share of
 * the wall time (plus the 50 ms of credit it may run ahead), skips
 * chunks rather than fall behind, and without a budget skips none.
 */
static void
flood (double share, double seconds, struct pred_lstm_trainer_stats *st,
       double *wall_ns)
{
  struct pred_lstm_trainer_config tc;
  struct pred_lstm_trainer *t;
  struct timespec a, b;

  memset (&tc, 0, sizeof tc);
  pred_lstm_config_default (&tc.lstm);
  tc.lstm.vocab = 16;
  tc.nstreams = 4;
  tc.replay = 2;
  tc.threaded = true;
  tc.cpu_share = share;
  t = pred_lstm_trainer_new (&tc, NULL);
  ck_assert_ptr_nonnull (t);
  ck_assert_int_eq (pred_lstm_trainer_start (t), 0);
  clock_gettime (CLOCK_MONOTONIC, &a);
  do {
    /* 20,000 tokens a second, far more than 1% of a core can train. */
    for (unsigned i = 0; i < 200; i++)
      pred_lstm_trainer_feed (t, 0, false, -1, long_pattern[i % LP], -1);
    usleep (10000);
    clock_gettime (CLOCK_MONOTONIC, &b);
  } while ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9 < seconds);
  pred_lstm_trainer_stop (t);
  pred_lstm_trainer_stats (t, st);
  *wall_ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
  pred_lstm_trainer_free (t);
}

START_TEST (test_trainer_cpu_budget)
{
  struct pred_lstm_trainer_stats st;
  double wall;

  flood (0.01, 1.5, &st, &wall);
  fprintf (stderr, "budget 1%%: %.1f ms trained in %.0f ms (longest chunk %.1f ms), %" PRIu64
           " chunks, %" PRIu64 " replays, %" PRIu64 " skipped\n",
           st.train_ns / 1e6, wall / 1e6, st.longest_ns / 1e6, st.chunks,
           st.replays, st.skipped);
  ck_assert_uint_gt (st.skipped, 0);
  ck_assert_uint_gt (st.chunks, 0);
  /* Share of the wall time, the cap ahead and one chunk's overshoot:
   * a chunk starts while the debt is under the cap and may then take
   * long: the nice-19 thread preempted under the test suite's load once
   * made 461 chunks take 330 ms where 585 take 65 ms on a quiet machine.
   */
  ck_assert_msg (st.train_ns <= 0.01 * wall + 50e6 + st.longest_ns + 5e6,
                 "trained %.1f ms in %.0f ms at a 1%% budget, longest chunk %.1f ms",
                 st.train_ns / 1e6, wall / 1e6, st.longest_ns / 1e6);

  flood (0, 0.3, &st, &wall);
  ck_assert_uint_eq (st.skipped, 0);
}
END_TEST

/* A small synchronous trainer (H 16, E 8, learning rate 0.01, two
 * replays) over `vocab` tokens and `streams` stream slots. */
static void
small_sync_trainer (struct pred_lstm_trainer_config *tc, unsigned vocab,
                    unsigned streams)
{
  memset (tc, 0, sizeof *tc);
  pred_lstm_config_default (&tc->lstm);
  tc->lstm.vocab = vocab;
  tc->lstm.hidden = 16;
  tc->lstm.embed = 8;
  tc->lstm.lr = 0.01;
  tc->nstreams = streams;
  tc->replay = 2;
  tc->threaded = false;
}

/* Feed n tokens of pattern pat (length len) to stream 0 of t, from
 * position `from` of the pattern. */
static void
feed_pattern (struct pred_lstm_trainer *t, const uint32_t *pat, unsigned len,
              unsigned from, unsigned n, bool first)
{
  for (unsigned i = 0; i < n; i++)
    pred_lstm_trainer_feed (t, 0, first && i == 0, -1, pat[(from + i) % len], -1);
}

/* Mean loss of t's current weights on pattern pat from a zero state,
 * after a warm-up of one period. */
static double
pattern_loss (struct pred_lstm_trainer *t, const struct pred_lstm_config *c,
              const uint32_t *pat, unsigned len)
{
  struct pred_lstm_params p;
  uint32_t tok[129];
  double scratch[6 * 16 + 16], h[16], cs[16];
  ck_assert_int_eq (pred_lstm_params_alloc (&p, c->vocab, c->embed, c->hidden), 0);
  pred_lstm_trainer_snapshot (t, &p);
  for (unsigned i = 0; i < 129; i++)
    tok[i] = pat[i % len];
  pred_lstm_forward (&p, tok, len, NULL, NULL, h, cs, scratch);
  double loss = pred_lstm_forward (&p, tok + len, 128 - len, h, cs, NULL, NULL,
                                   scratch);
  pred_lstm_params_free (&p);
  return loss;
}

/* A chunk the model already predicts is not trained (known_loss): on a
 * learnt pattern training stops, on a new one it starts again and
 * learns it as well as a trainer that trains every chunk.
 */
START_TEST (test_trainer_known_chunks)
{
  static const uint32_t first[] = { 1, 2, 3, 4, 5, 6 };
  static const uint32_t other[] = { 9, 9, 10, 11, 9, 12, 13 };
  struct pred_lstm_trainer_config tc;
  struct pred_lstm_trainer *gated, *every;
  struct pred_lstm_trainer_stats g1, g2, e2;

  small_sync_trainer (&tc, 16, 2);
  every = pred_lstm_trainer_new (&tc, NULL);
  tc.known_loss = 0.05;
  gated = pred_lstm_trainer_new (&tc, NULL);
  ck_assert_ptr_nonnull (every);
  ck_assert_ptr_nonnull (gated);

  /* Until the pattern is learnt the two train alike; after that the
   * gated one trains almost nothing more. */
  feed_pattern (gated, first, 6, 0, 20000, true);
  feed_pattern (every, first, 6, 0, 20000, true);
  pred_lstm_trainer_stats (gated, &g1);
  pred_lstm_trainer_stats (every, &e2);
  double lg = pattern_loss (gated, &tc.lstm, first, 6);
  double le = pattern_loss (every, &tc.lstm, first, 6);
  fprintf (stderr, "known chunks, pattern 1: gated %" PRIu64 " trained + %" PRIu64
           " known, loss %.4f; every chunk %" PRIu64 " trained, loss %.4f\n",
           g1.chunks, g1.known, lg, e2.chunks, le);
  ck_assert_uint_eq (g1.chunks + g1.known + g1.skipped, e2.chunks);
  ck_assert_uint_eq (g1.skipped, 0);
  ck_assert_msg (g1.known > g1.chunks, "known %" PRIu64 " trained %" PRIu64,
                 g1.known, g1.chunks);
  ck_assert_msg (lg < 0.1, "the gated trainer did not learn the pattern: %g", lg);
  ck_assert_msg (le < 0.1, "the trainer of every chunk did not learn the pattern: %g", le);
  ck_assert_uint_lt (g1.replays, e2.replays);
  /* More of the same trains almost nothing (the model sits just below
   * the limit, so a chunk now and then crosses it); every chunk is
   * counted once. */
  feed_pattern (gated, first, 6, 20000 % 6, 1600, false);
  pred_lstm_trainer_stats (gated, &g2);
  ck_assert_uint_le (g2.chunks, g1.chunks + 3);
  ck_assert_uint_eq (g2.chunks + g2.known, g1.chunks + g1.known + 100);
  g1 = g2;

  /* A recycled vocabulary id (one the pattern does not use) gets fresh
   * rows: they are published although the next chunk is known. */
  while (pred_lstm_trainer_fetch (gated) != NULL)
    ;
  pred_lstm_trainer_feed (gated, 0, false, -1, first[21600 % 6], 15);
  feed_pattern (gated, first, 6, 21601 % 6, 15, false);
  pred_lstm_trainer_stats (gated, &g2);
  ck_assert_uint_eq (g2.known, g1.known + 1);
  ck_assert_uint_eq (g2.chunks, g1.chunks);
  ck_assert_ptr_nonnull (pred_lstm_trainer_fetch (gated));
  g1 = g2;

  /* A new pattern: training resumes and learns it. */
  feed_pattern (gated, other, 7, 0, 20000, false);
  feed_pattern (every, other, 7, 0, 20000, false);
  pred_lstm_trainer_stats (gated, &g2);
  pred_lstm_trainer_stats (every, &e2);
  lg = pattern_loss (gated, &tc.lstm, other, 7);
  le = pattern_loss (every, &tc.lstm, other, 7);
  fprintf (stderr, "known chunks, pattern 2: gated %" PRIu64 " more trained, %" PRIu64
           " more known, loss %.4f; every chunk: loss %.4f\n",
           g2.chunks - g1.chunks, g2.known - g1.known, lg, le);
  ck_assert_uint_gt (g2.chunks, g1.chunks + 10);
  ck_assert_msg (lg < 0.1, "the gated trainer did not learn the new pattern: %g", lg);
  ck_assert_msg (le < 0.1, "the trainer of every chunk did not learn the new pattern: %g", le);
  ck_assert_uint_gt (g2.known, g1.known);

  pred_lstm_trainer_free (gated);
  pred_lstm_trainer_free (every);
}
END_TEST

/* A chunk is known only when every step is: a pattern with one coin
 * toss per 16 accesses (a mean loss of about ln 2 / 16 = 0.043 once the
 * rest is learnt, below the limit of 0.05) keeps training, since that
 * one step is what there is to learn.
 */
START_TEST (test_trainer_known_needs_every_step)
{
  struct pred_lstm_trainer_config tc;
  struct pred_lstm_trainer *t;
  struct pred_lstm_trainer_stats st;
  struct pred_rng rng;

  small_sync_trainer (&tc, 32, 1);
  tc.known_loss = 0.05;
  t = pred_lstm_trainer_new (&tc, NULL);
  ck_assert_ptr_nonnull (t);
  pred_rng_seed (&rng, 3);
  for (unsigned i = 0; i < 20000; i++) {
    unsigned pos = i % 16;
    uint32_t tok = pos == 15 ? 20 + pred_rng_below (&rng, 2) : 1 + pos;
    pred_lstm_trainer_feed (t, 0, i == 0, -1, tok, -1);
  }
  pred_lstm_trainer_stats (t, &st);
  fprintf (stderr, "one coin toss per chunk: %" PRIu64 " trained, %" PRIu64
           " known, loss %.4f\n", st.chunks, st.known, st.loss);
  ck_assert_msg (st.loss < 0.1, "the rest of the pattern was not learnt: %g", st.loss);
  ck_assert_msg (st.known <= st.chunks / 20, "%" PRIu64 " of %" PRIu64
                 " chunks known despite the coin toss", st.known,
                 st.chunks + st.known);
  pred_lstm_trainer_free (t);
}
END_TEST

static Suite *
lstm_suite (void)
{
  Suite *s = suite_create ("predict-lstm");
  TCase *tc = tcase_create ("lstm");
  tcase_set_timeout (tc, 300);
  tcase_add_test (tc, test_gradcheck);
  tcase_add_test (tc, test_forget_bias_and_clip);
  tcase_add_test (tc, test_infer_matches_double);
  tcase_add_test (tc, test_fixed_seed);
  tcase_add_test (tc, test_save_load_identical);
  tcase_add_test (tc, test_lstm_learns_from_sizes);
  tcase_add_test (tc, test_one_size_trains_as_none);
  tcase_add_test (tc, test_threaded_trainer);
  tcase_add_test (tc, test_trainer_cpu_budget);
  tcase_add_test (tc, test_trainer_known_chunks);
  tcase_add_test (tc, test_trainer_known_needs_every_step);
  tcase_add_test (tc, test_lstm_learns_long_context);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (lstm_suite ());
  int failed;
  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
