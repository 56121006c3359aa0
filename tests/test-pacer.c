/* nbdshadow: unit tests of the sweep's pacing by shadow-served reads
 * (server/pacer.h): the probes that measure the quiet latency, the gap
 * that doubles while reads are slowed and never stops the sweep, and
 * its recovery.
 */

#include <config.h>

#include <stdlib.h>

#include <check.h>

#include "pacer.h"

#define QUIET 400.0             /* us: shadow reads with the sweep held */
#define SLOW 1200.0             /* us: well above 1.25 x QUIET + 50 */

/* Run the first probe: its drain tick, then the measured one. */
static void
first_probe (struct pacer *p, double quiet_us)
{
  double wait;

  pacer_tick (p, 100, 100, SLOW, true);      /* starts the probe */
  ck_assert (p->probing);
  ck_assert (!pacer_may_start (p, 1.0, 0.0, &wait));
  ck_assert (wait == 0);                /* the next tick decides */
  pacer_tick (p, 100, 100, SLOW, true);      /* drain: not measured */
  ck_assert (p->probing);
  ck_assert (p->quiet_us == 0);
  pacer_tick (p, 100, 100, quiet_us, true);  /* measured */
  ck_assert (!p->probing);
  ck_assert (p->quiet_us == quiet_us);
}

/* Run the early probes, all measuring quiet_us, to the steady state:
 * the next probe PACER_PROBE_TICKS busy ticks away, no gap. */
static void
settle (struct pacer *p, double quiet_us)
{
  unsigned i;

  first_probe (p, quiet_us);
  for (i = 0; i < 3 * PACER_PROBE_TICKS &&
         (p->probes < PACER_EARLY_PROBES || p->probing); ++i)
    pacer_tick (p, 100, 100, quiet_us, true);
  ck_assert_uint_eq (p->probes, PACER_EARLY_PROBES);
  ck_assert_uint_eq (p->probe_in, PACER_PROBE_TICKS);
  ck_assert (p->quiet_us == quiet_us);
  ck_assert (p->gap_ms == 0);
}

START_TEST (test_first_tick_probes)
{
  struct pacer p = { 0 };
  double wait;

  ck_assert (pacer_may_start (&p, 1.0, 0.0, &wait));
  first_probe (&p, QUIET);
  ck_assert (pacer_may_start (&p, 1.0, 0.0, &wait));
  ck_assert (p.gap_ms == 0);
}
END_TEST

START_TEST (test_no_probe_without_sweep)
{
  struct pacer p = { 0 };
  unsigned i;

  for (i = 0; i < 3 * PACER_PROBE_TICKS; ++i) {
    pacer_tick (&p, 100, 100, SLOW, false);
    ck_assert (!p.probing);
  }
  /* Nothing measured quiet: slow reads alone pace nothing. */
  ck_assert (p.quiet_us == 0);
  ck_assert (p.gap_ms == 0);
}
END_TEST

START_TEST (test_gap_doubles_and_never_stops)
{
  struct pacer p = { 0 };
  double expect = PACER_MIN_GAP_MS, wait, ready;
  unsigned i;

  settle (&p, QUIET);
  for (i = 0; i < 8; ++i) {
    pacer_tick (&p, 100, 100, SLOW, true);
    ck_assert (!p.probing);
    ck_assert_double_eq_tol (p.gap_ms, expect, 1e-9);
    expect = expect * 2 > PACER_MAX_GAP_MS ? PACER_MAX_GAP_MS : expect * 2;
  }
  ck_assert_double_eq_tol (p.gap_ms, PACER_MAX_GAP_MS, 1e-9);

  /* At the widest gap a transfer may still start, 0.5 s after a whole
   * one started, an eighth of that after an eighth of one. */
  ready = pacer_next_start (&p, 10.0, 1.0);
  ck_assert_double_eq_tol (ready, 10.0 + PACER_MAX_GAP_MS / 1000, 1e-9);
  ck_assert (!pacer_may_start (&p, 10.1, ready, &wait));
  ck_assert_double_eq_tol (wait, PACER_MAX_GAP_MS / 1000 - 0.1, 1e-9);
  ck_assert (pacer_may_start (&p, ready, ready, &wait));
  ck_assert_double_eq_tol (pacer_next_start (&p, 10.0, 0.125),
                           10.0 + PACER_MAX_GAP_MS / 8000, 1e-9);
}
END_TEST

START_TEST (test_gap_recovers)
{
  struct pacer p = { 0 };
  unsigned i;

  settle (&p, QUIET);
  for (i = 0; i < 6; ++i)
    pacer_tick (&p, 100, 100, SLOW, true);
  ck_assert_double_eq_tol (p.gap_ms, PACER_MAX_GAP_MS, 1e-9);
  pacer_tick (&p, 100, 100, QUIET, true);
  ck_assert_double_eq_tol (p.gap_ms, PACER_MAX_GAP_MS * 0.75, 1e-9);
  for (i = 0; i < 20 && p.gap_ms > 0; ++i) {
    pacer_tick (&p, 100, 100, QUIET, true);
    ck_assert (p.gap_ms == 0 || p.gap_ms >= PACER_MIN_GAP_MS);
  }
  ck_assert (p.gap_ms == 0);
}
END_TEST

START_TEST (test_threshold)
{
  struct pacer p = { 0 };
  double edge = PACER_SLOWDOWN * QUIET + PACER_SLOWDOWN_US;

  settle (&p, QUIET);
  pacer_tick (&p, 100, 100, edge, true);
  ck_assert (p.gap_ms == 0);
  pacer_tick (&p, 100, 100, edge + 1, true);
  ck_assert_double_eq_tol (p.gap_ms, PACER_MIN_GAP_MS, 1e-9);
}
END_TEST

/* A tick with fewer than PACER_READS_MIN shadow reads is no evidence. */
START_TEST (test_few_reads)
{
  struct pacer p = { 0 };
  unsigned i;

  pacer_tick (&p, 100, 100, SLOW, true);
  pacer_tick (&p, 100, 100, SLOW, true);
  pacer_tick (&p, PACER_READS_MIN - 1, PACER_READS_MIN - 1, QUIET, true);
  ck_assert (!p.probing);
  ck_assert (p.quiet_us == 0);          /* the probe measured nothing */

  /* The next probe, a quarter of PACER_PROBE_TICKS later, does. */
  for (i = 0; i < PACER_PROBE_TICKS + 2 && p.quiet_us == 0; ++i)
    pacer_tick (&p, 100, 100, QUIET, true);
  ck_assert_uint_eq (i, PACER_PROBE_TICKS / 4 + 2);      /* sooner */
  ck_assert (p.quiet_us == QUIET);

  pacer_tick (&p, PACER_READS_MIN - 1, PACER_READS_MIN - 1, 10 * SLOW, true);
  ck_assert (p.gap_ms == 0);
  pacer_tick (&p, PACER_READS_MIN, PACER_READS_MIN, SLOW, true);
  ck_assert (p.gap_ms > 0);
}
END_TEST

/* Probes come back every PACER_PROBE_TICKS ticks and follow the host. */
START_TEST (test_probes_repeat)
{
  struct pacer p = { 0 };
  unsigned i, probes = 0, held = 0;

  settle (&p, QUIET);
  for (i = 0; i < 10 * PACER_PROBE_TICKS; ++i) {
    bool was = p.probing;

    pacer_tick (&p, 100, 100, was ? QUIET / 2 : QUIET, true);
    held += was;
    probes += was && !p.probing;
  }
  ck_assert_uint_ge (probes, 9);
  ck_assert_uint_le (probes, 11);
  ck_assert_uint_ge (held, 2 * probes);
  ck_assert_uint_le (held, 2 * probes + 1);     /* one under way */
  ck_assert (p.quiet_us == QUIET / 2);
}
END_TEST

START_TEST (test_idle_resets)
{
  struct pacer p = { 0 };
  double wait;
  unsigned i;

  settle (&p, QUIET);
  for (i = 0; i < 4; ++i)
    pacer_tick (&p, 100, 100, SLOW, true);
  ck_assert (p.gap_ms > 0);
  pacer_idle (&p);
  ck_assert (p.gap_ms == 0);
  ck_assert (pacer_may_start (&p, 1.0, 2.0, &wait));
  ck_assert (p.quiet_us == QUIET);      /* kept: no new probe at once */
  pacer_tick (&p, 100, 100, SLOW, true);
  ck_assert (!p.probing);
  ck_assert (p.gap_ms == PACER_MIN_GAP_MS);

  /* Idle in the middle of a probe ends it. */
  p = (struct pacer) { 0 };
  pacer_tick (&p, 100, 100, SLOW, true);
  ck_assert (p.probing);
  pacer_idle (&p);
  ck_assert (!p.probing);
  ck_assert (pacer_may_start (&p, 1.0, 0.0, &wait));
}
END_TEST

/* A probe's high figure is replaced by a lower one at once; a higher
 * one moves it halfway. */
START_TEST (test_quiet_follows_probes)
{
  struct pacer p = { 0 };
  double first;
  unsigned i, ticks;

  first_probe (&p, 2 * QUIET);          /* disturbed */
  first = p.quiet_us;
  /* The next probe comes a quarter of PACER_PROBE_TICKS later. */
  for (ticks = 0; ticks < PACER_PROBE_TICKS && p.quiet_us == first; ++ticks)
    pacer_tick (&p, 100, 100, p.probing ? QUIET : 2 * QUIET, true);
  ck_assert_uint_eq (ticks, PACER_PROBE_TICKS / 4 + 2);
  ck_assert (p.quiet_us == QUIET);
  for (i = 0; i < 3 * PACER_PROBE_TICKS && p.quiet_us == QUIET; ++i)
    pacer_tick (&p, 100, 100, p.probing ? 3 * QUIET : QUIET, true);
  ck_assert (p.quiet_us == 2 * QUIET);
}
END_TEST

/* While more than a tenth of the requests are not shadow reads (origin
 * reads, mostly), slow shadow reads do not pace the sweep: it saves
 * those requests more than it costs the shadow's. */
START_TEST (test_origin_share)
{
  struct pacer p = { 0 };
  uint64_t all = 100, shadow = (uint64_t) (PACER_SHADOW_SHARE * all);

  settle (&p, QUIET);
  pacer_tick (&p, all, shadow - 1, SLOW, true);
  ck_assert (p.gap_ms == 0);
  pacer_tick (&p, all, shadow, SLOW, true);
  ck_assert_double_eq_tol (p.gap_ms, PACER_MIN_GAP_MS, 1e-9);
  pacer_tick (&p, 2 * all, shadow, SLOW, true);
  ck_assert (p.gap_ms < PACER_MIN_GAP_MS);      /* shrinks instead */

  /* Nor is the sweep held to probe for such a mix. */
  p = (struct pacer) { 0 };
  for (unsigned i = 0; i < 3 * PACER_PROBE_TICKS; ++i) {
    pacer_tick (&p, all, shadow - 1, SLOW, true);
    ck_assert (!p.probing);
  }
  pacer_tick (&p, all, shadow, SLOW, true);
  ck_assert (p.probing);
}
END_TEST

/* A client that reads a little (fewer reads than PACER_READS_MIN in
 * every tick) is never worth holding the sweep for, nor pacing it. */
START_TEST (test_light_reader)
{
  struct pacer p = { 0 };
  unsigned i;

  for (i = 0; i < 5 * PACER_PROBE_TICKS; ++i) {
    pacer_tick (&p, i % PACER_READS_MIN, i % PACER_READS_MIN, 10 * SLOW, true);
    ck_assert (!p.probing);
    ck_assert (p.gap_ms == 0);
  }
}
END_TEST

/* Ticks in which no read ended (one still in flight) leave the gap
 * alone, and a probe under way still ends after its two ticks. */
START_TEST (test_ticks_without_reads)
{
  struct pacer p = { 0 };
  unsigned i;

  settle (&p, QUIET);
  pacer_tick (&p, 100, 100, SLOW, true);
  pacer_tick (&p, 100, 100, SLOW, true);
  ck_assert_double_eq_tol (p.gap_ms, 2 * PACER_MIN_GAP_MS, 1e-9);
  for (i = 0; i < 3 * PACER_PROBE_TICKS; ++i) {
    pacer_tick (&p, 0, 0, 0, true);
    ck_assert (!p.probing);             /* no reads: no probe due */
  }
  ck_assert_double_eq_tol (p.gap_ms, 2 * PACER_MIN_GAP_MS, 1e-9);

  p = (struct pacer) { 0 };
  pacer_tick (&p, 100, 100, SLOW, true);
  ck_assert (p.probing);
  pacer_tick (&p, 0, 0, 0, true);
  pacer_tick (&p, 0, 0, 0, true);
  ck_assert (!p.probing);
  ck_assert (p.quiet_us == 0);
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("pacer");
  TCase *tc = tcase_create ("core");
  SRunner *sr;
  int failed;

  tcase_add_test (tc, test_first_tick_probes);
  tcase_add_test (tc, test_no_probe_without_sweep);
  tcase_add_test (tc, test_gap_doubles_and_never_stops);
  tcase_add_test (tc, test_gap_recovers);
  tcase_add_test (tc, test_threshold);
  tcase_add_test (tc, test_few_reads);
  tcase_add_test (tc, test_probes_repeat);
  tcase_add_test (tc, test_idle_resets);
  tcase_add_test (tc, test_light_reader);
  tcase_add_test (tc, test_origin_share);
  tcase_add_test (tc, test_quiet_follows_probes);
  tcase_add_test (tc, test_ticks_without_reads);
  suite_add_tcase (s, tc);
  sr = srunner_create (s);
  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
