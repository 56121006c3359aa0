/* test-predict-accuracy.c: the per-model accuracy statistic, read the
 * way the filter reads it.
 *
 * Why it exists: the filter (server/prefetch.c) observes one access per
 * batch, predicts with an absent() filter and reads predictor_get_stats
 * from another thread without ever calling predictor_refresh_stats.  A
 * warm-started LSTM that prefetched well was reported with accuracy 0.0
 * because the snapshot was refreshed only every 256 accesses and the run
 * had 200; the n-gram's 0.98 on a 400-access run was the snapshot of
 * access 256.  These tests drive the facade exactly like the filter and
 * check that the snapshot follows, and that for every policy `hits`
 * counts the next access's first block among the candidates given for
 * it, before absent filtering.  That is predictor.h's rule for this
 * workload (single-block reads, each stream's next access the very next
 * one, hits within the top 32); its per-stream parts (interleaved
 * streams, reads straddling blocks) are test-predict-facade's
 * test_interleaved_accuracy.
 */
#include <config.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "predictor.h"

#define BS 65536
#define NR_BLOCKS (1u << 16)
#define ALL_CANDS 1024
#define DEPTH 32                /* the filter asks for 2 .. 64 */

/* The filter's test pattern: 4 KiB reads at block deltas +1 +5 -2 +7. */
static uint64_t
pattern_block (unsigned i)
{
  static const int64_t step[] = { 1, 5, -2, 7 };
  uint64_t b = 2200;
  for (unsigned k = 0; k <= i; k++)
    b += step[k % 4];
  return b;
}

static struct pred_access
read_4k (unsigned i)
{
  return (struct pred_access) {
    .time_us = 10000000 + (uint64_t) i * 5000, .op = PRED_OP_READ,
    .offset = pattern_block (i) * BS, .length = 4096,
  };
}

static void
sleep_ms (unsigned ms)
{
  struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000 };
  while (nanosleep (&ts, &ts) == -1)
    ;
}

/* The filter's resident set: blocks read or prefetched. */
struct volume {
  unsigned char resident[NR_BLOCKS];
};

static bool
absent (void *opaque, uint64_t block)
{
  struct volume *v = opaque;
  return block < NR_BLOCKS && !v->resident[block];
}

/* What the test expects the statistic to be, computed on its own from
 * the unfiltered list of the last prediction (nall of them in all). */
struct expect {
  uint64_t scored, hits;
  double recent;
  unsigned first_touches_prefetched;
  struct pred_cand all[ALL_CANDS];
  size_t nall;
  bool have_list;
};

/* The rule of predictor.h: mean of the first 64, then factor 1/64. */
static void
expect_score (struct expect *e, bool hit)
{
  e->scored++;
  e->hits += hit;
  e->recent += (hit - e->recent) / (double) (e->scored < 64 ? e->scored : 64);
}

static bool
in_list (const struct pred_cand *c, size_t n, uint64_t block)
{
  for (size_t i = 0; i < n; i++)
    if (c[i].block == block)
      return true;
  return false;
}

/* Accesses from..to-1 as the filter's predictor thread handles them:
 * observe one, predict once with absent(), "copy" what came back.  The
 * unfiltered list (absent NULL) is asked for just before, to know what
 * the model gave. */
static void
drive (struct predictor *p, struct volume *v, unsigned from, unsigned to,
       struct expect *e)
{
  struct pred_cand got[DEPTH];

  for (unsigned i = from; i < to; i++) {
    struct pred_access a = read_4k (i);
    uint64_t b = pattern_block (i);

    if (e->have_list)
      expect_score (e, in_list (e->all, e->nall, b));
    e->first_touches_prefetched += v->resident[b];
    v->resident[b] = 1;
    predictor_observe (p, &a);
    e->nall = predictor_predict (p, e->all, ALL_CANDS, NULL, NULL);
    e->have_list = true;
    size_t n = predictor_predict (p, got, DEPTH, absent, v);
    for (size_t k = 0; k < n; k++) {
      ck_assert (in_list (e->all, e->nall, got[k].block));
      v->resident[got[k].block] = 1;
    }
  }
}

static struct predictor *
make (enum pred_policy pol, enum pred_train_mode train, const char *model)
{
  struct predictor_config c;
  char err[256];

  predictor_config_default (&c);
  c.policy = pol;
  c.train = train;
  c.nr_blocks = NR_BLOCKS;
  c.model_path = model;
  struct predictor *p = predictor_new (&c, err, sizeof err);
  ck_assert_msg (p != NULL, "%s", err);
  return p;
}

static void
check_model (const struct predictor_stats *st, enum pred_policy pol,
             const struct expect *e)
{
  const struct predictor_model_stats *m = &st->model[pol];
  const char *name = predictor_policy_name (pol);

  ck_assert_msg (m->scored == e->scored && m->hits == e->hits,
                 "%s: scored %llu hits %llu, expected %llu and %llu", name,
                 (unsigned long long) m->scored, (unsigned long long) m->hits,
                 (unsigned long long) e->scored, (unsigned long long) e->hits);
  ck_assert_msg (fabs (m->recent_accuracy - e->recent) < 1e-9,
                 "%s: recent_accuracy %.4f, expected %.4f", name,
                 m->recent_accuracy, e->recent);
  /* Only the policy's own model predicts, so only it scores. */
  for (int i = 1; i < PRED_POLICY__COUNT; i++)
    if (i != (int) pol)
      ck_assert_msg (st->model[i].scored == 0, "%s scored under %s",
                     predictor_policy_name (i), name);
}

/* The filter's case: a client a few ms apart, stats read without a
 * refresh.  The snapshot follows within 100 ms of predictor-thread
 * activity, and the once-a-second hot_regions call publishes the tail
 * of a burst. */
START_TEST (test_snapshot_follows_a_slow_client)
{
  static struct volume v;
  static struct expect e;
  struct predictor *p = make (PRED_POLICY_NGRAM, PRED_TRAIN_SYNC, NULL);
  struct predictor_stats st;
  struct pred_region r[4];

  drive (p, &v, 0, 100, &e);
  sleep_ms (120);
  drive (p, &v, 100, 150, &e);
  predictor_get_stats (p, &st);
  ck_assert_msg (st.snapshot_accesses >= 101,
                 "the snapshot is from access %llu of 150",
                 (unsigned long long) st.snapshot_accesses);
  ck_assert (st.model[PRED_POLICY_NGRAM].recent_accuracy > 0.9);

  sleep_ms (120);
  (void) predictor_hot_regions (p, r, 4);
  predictor_get_stats (p, &st);
  ck_assert_uint_eq (st.snapshot_accesses, 150);
  ck_assert_uint_eq (st.accesses, 150);
  check_model (&st, PRED_POLICY_NGRAM, &e);
  predictor_free (p);
}
END_TEST

/* Every policy, absent filtering on: hits are counted on the list before
 * filtering, and recent_accuracy is their mean while fewer than 64. */
START_TEST (test_every_policy_scores_the_unfiltered_list)
{
  for (int pol = PRED_POLICY_READAHEAD; pol < PRED_POLICY__COUNT; pol++) {
    static struct volume v;
    static struct expect e;
    struct predictor *p = make (pol, PRED_TRAIN_SYNC, NULL);
    struct predictor_stats st;

    memset (&v, 0, sizeof v);
    memset (&e, 0, sizeof e);
    drive (p, &v, 0, 41, &e);
    predictor_refresh_stats (p);
    predictor_get_stats (p, &st);
    check_model (&st, pol, &e);
    ck_assert_msg (fabs (st.model[pol].recent_accuracy -
                         (double) e.hits / e.scored) < 1e-9,
                   "%s: recent_accuracy %.3f is not the mean %.3f of %llu",
                   predictor_policy_name (pol), st.model[pol].recent_accuracy,
                   (double) e.hits / e.scored, (unsigned long long) e.scored);

    /* And on: the moving average after the first 64. */
    drive (p, &v, 41, 300, &e);
    predictor_refresh_stats (p);
    predictor_get_stats (p, &st);
    check_model (&st, pol, &e);
    fprintf (stderr, "%-9s scored %3llu hits %3llu recent %.3f, "
             "first touches prefetched %u of 300\n", predictor_policy_name (pol),
             (unsigned long long) st.model[pol].scored,
             (unsigned long long) st.model[pol].hits,
             st.model[pol].recent_accuracy, e.first_touches_prefetched);
    predictor_free (p);
  }
}
END_TEST

/* The symptom as the filter saw it: an LSTM warm-started from a model
 * trained on the pattern, trainer thread running, 200 accesses a few ms
 * apart, stats read without a refresh. */
START_TEST (test_warm_lstm_reports_its_accuracy)
{
  char path[] = "/tmp/test-predict-accuracy-XXXXXX", err[256];
  int fd = mkstemp (path);
  static struct volume v;
  static struct expect e;
  struct predictor_stats st;
  struct pred_region r[4];

  close (fd);
  struct predictor *p = make (PRED_POLICY_LSTM, PRED_TRAIN_SYNC, NULL);
  for (unsigned i = 0; i < 3000; i++) {
    struct pred_access a = read_4k (i);
    predictor_observe (p, &a);
  }
  ck_assert_msg (predictor_save_model (p, path, err, sizeof err) == 0, "%s", err);
  predictor_free (p);

  p = make (PRED_POLICY_LSTM, PRED_TRAIN_THREAD, path);
  ck_assert_int_eq (predictor_start_training (p), 0);
  for (unsigned i = 0; i < 4; i++) {
    drive (p, &v, 3000 + 50 * i, 3050 + 50 * i, &e);
    sleep_ms (110);             /* 200 accesses over about half a second */
  }
  (void) predictor_hot_regions (p, r, 4);
  predictor_get_stats (p, &st);
  fprintf (stderr, "warm LSTM: snapshot at %llu, scored %llu hits %llu "
           "recent %.3f; first touches prefetched %u of 200\n",
           (unsigned long long) st.snapshot_accesses,
           (unsigned long long) st.model[PRED_POLICY_LSTM].scored,
           (unsigned long long) st.model[PRED_POLICY_LSTM].hits,
           st.model[PRED_POLICY_LSTM].recent_accuracy,
           e.first_touches_prefetched);
  ck_assert_uint_eq (st.snapshot_accesses, 200);
  ck_assert (e.first_touches_prefetched >= 180);
  check_model (&st, PRED_POLICY_LSTM, &e);
  ck_assert_msg (st.model[PRED_POLICY_LSTM].recent_accuracy >= 0.9,
                 "a model that prefetched %u of 200 first touches reports "
                 "accuracy %.3f", e.first_touches_prefetched,
                 st.model[PRED_POLICY_LSTM].recent_accuracy);
  predictor_stop_training (p);
  predictor_free (p);
  unlink (path);
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("predict-accuracy");
  TCase *tc = tcase_create ("core");
  SRunner *sr;
  int failed;

  tcase_set_timeout (tc, 120);
  tcase_add_test (tc, test_snapshot_follows_a_slow_client);
  tcase_add_test (tc, test_every_policy_scores_the_unfiltered_list);
  tcase_add_test (tc, test_warm_lstm_reports_its_accuracy);
  suite_add_tcase (s, tc);
  sr = srunner_create (s);
  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
