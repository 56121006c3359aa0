/* test-predict-pace.c: each stream's pace (pace.h) and the lookahead in
 * accesses it gives a time horizon: the median of the last four
 * intervals, so that one pause does not change it; no pace for a new
 * stream (the most lookahead); the bounds; and through the predictor,
 * a fast stream looked ahead farther than a slow one under the same
 * horizon, both the whole configured lookahead without one. */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <check.h>

#include "pace.h"
#include "predictor.h"

START_TEST (test_median)
{
  struct pred_pace pc;

  ck_assert_int_eq (pred_pace_init (&pc, 4), 0);
  /* Not known before two intervals. */
  pred_pace_note (&pc, 1, true, 1000);
  ck_assert_uint_eq (pred_pace_gap (&pc, 1), 0);
  pred_pace_note (&pc, 1, false, 2000);
  ck_assert_uint_eq (pred_pace_gap (&pc, 1), 0);
  pred_pace_note (&pc, 1, false, 3000);
  ck_assert_uint_eq (pred_pace_gap (&pc, 1), 1000);
  /* A pause of 50 ms among 1 ms intervals: the median stays 1 ms. */
  pred_pace_note (&pc, 1, false, 53000);
  ck_assert_uint_eq (pred_pace_gap (&pc, 1), 1000);
  pred_pace_note (&pc, 1, false, 54000);
  ck_assert_uint_eq (pred_pace_gap (&pc, 1), 1000);
  /* Four slow intervals push the old ones out: (10 + 10) / 2 ms. */
  for (int i = 1; i <= 4; i++)
    pred_pace_note (&pc, 1, false, 54000 + i * 10000);
  ck_assert_uint_eq (pred_pace_gap (&pc, 1), 10000);
  /* Other slots are untouched; out of range ones are ignored. */
  ck_assert_uint_eq (pred_pace_gap (&pc, 0), 0);
  pred_pace_note (&pc, 4, false, 1);
  ck_assert_uint_eq (pred_pace_gap (&pc, 4), 0);
  /* A new stream in the slot forgets the pace. */
  pred_pace_note (&pc, 1, true, 200000);
  ck_assert_uint_eq (pred_pace_gap (&pc, 1), 0);
  pred_pace_free (&pc);
}
END_TEST

START_TEST (test_clamps)
{
  struct pred_pace pc;

  ck_assert_int_eq (pred_pace_init (&pc, 2), 0);
  /* A stamp earlier than the last one (two client threads through the
   * ring) is an interval of 0, and a median of 0 reads as 1 us. */
  pred_pace_note (&pc, 0, true, 5000);
  pred_pace_note (&pc, 0, false, 4000);
  pred_pace_note (&pc, 0, false, 4000);
  ck_assert_uint_eq (pred_pace_gap (&pc, 0), 1);
  /* Intervals are kept up to one second. */
  pred_pace_note (&pc, 1, true, 0);
  pred_pace_note (&pc, 1, false, 5000000);
  pred_pace_note (&pc, 1, false, 10000000);
  ck_assert_uint_eq (pred_pace_gap (&pc, 1), 1000000);
  pred_pace_free (&pc);
}
END_TEST

START_TEST (test_lookahead)
{
  struct pred_pace pc;

  ck_assert_int_eq (pred_pace_init (&pc, 1), 0);
  /* Unknown pace: the most. */
  ck_assert_uint_eq (pred_pace_lookahead (&pc, 0, 20000, 4, 32), 32);
  for (int i = 0; i < 5; i++)
    pred_pace_note (&pc, 0, i == 0, i * 2500);
  /* 2.5 ms a step: 20 ms is 8 steps, 21 ms 9 (rounded up). */
  ck_assert_uint_eq (pred_pace_lookahead (&pc, 0, 20000, 4, 32), 8);
  ck_assert_uint_eq (pred_pace_lookahead (&pc, 0, 21000, 4, 32), 9);
  ck_assert_uint_eq (pred_pace_lookahead (&pc, 0, 1000, 4, 32), 4);
  ck_assert_uint_eq (pred_pace_lookahead (&pc, 0, 1000000, 4, 32), 32);
  pred_pace_free (&pc);
}
END_TEST

/* Two interleaved sequential readers, one every 200 us and one every
 * 20 ms; the mean lookahead the hybrid was given for the last
 * predictions of one of them. */
static double
lookahead_of (uint64_t horizon_us, bool fast, unsigned *most)
{
  struct predictor_config c;
  struct predictor_stats st;
  struct pred_cand cand[64];
  char err[256];
  uint64_t t_fast = 0, t_slow = 0;

  predictor_config_default (&c);
  c.train = PRED_TRAIN_SYNC;
  c.nr_blocks = 1 << 20;
  struct predictor *p = predictor_new (&c, err, sizeof err);
  ck_assert_msg (p != NULL, "%s", err);
  predictor_set_horizon (p, horizon_us);
  for (unsigned i = 0; i < 400; i++) {
    bool is_fast = i % 2 == 0;
    uint64_t *t = is_fast ? &t_fast : &t_slow;
    uint64_t base = is_fast ? 1000 : 500000;

    *t += is_fast ? 200 : 20000;
    predictor_observe (p, &(struct pred_access) {
        .time_us = *t, .op = 'R', .length = 65536,
        .offset = (base + i / 2) * (uint64_t) 65536 });
    /* Predict only for the stream under test, as the filter predicts
     * after each access. */
    if (is_fast == fast)
      (void) predictor_predict (p, cand, 64, NULL, NULL);
  }
  predictor_refresh_stats (p);
  predictor_get_stats (p, &st);
  *most = st.hybrid_depth;
  ck_assert_uint_eq (st.horizon_us, horizon_us);
  predictor_free (p);
  return st.hybrid_lookahead;
}

START_TEST (test_predictor_horizon)
{
  unsigned most;
  double fast = lookahead_of (40000, true, &most);
  double slow = lookahead_of (40000, false, &most);
  double none = lookahead_of (0, false, &most);

  fprintf (stderr, "lookahead under a 40 ms horizon: 200 us stream %.2f, "
           "20 ms stream %.2f; without a horizon %.2f (most %u)\n",
           fast, slow, none, most);
  ck_assert_uint_eq (most, 32);
  ck_assert_double_gt (fast, 31.5);     /* 40 ms = 200 steps: the most */
  ck_assert_double_lt (slow, 4.5);      /* 2 steps: the least, 4 */
  ck_assert_double_ge (slow, 4);
  ck_assert_double_eq (none, 32);
}
END_TEST

static Suite *
pace_suite (void)
{
  Suite *s = suite_create ("predict-pace");
  TCase *tc = tcase_create ("pace");
  tcase_set_timeout (tc, 300);
  tcase_add_test (tc, test_median);
  tcase_add_test (tc, test_clamps);
  tcase_add_test (tc, test_lookahead);
  tcase_add_test (tc, test_predictor_horizon);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (pace_suite ());
  int failed;
  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
