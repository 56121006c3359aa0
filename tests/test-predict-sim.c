/* test-predict-sim.c: the migration simulator's figures for "no
 * prefetch", the oracle and the background sweep equal values computed
 * by hand (comments show the arithmetic), on small traces. */
#include <config.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "sim.h"

#define BS 4096

static struct pred_access
acc (uint64_t t, char op, uint64_t block, uint32_t nblocks)
{
  struct pred_access a;
  memset (&a, 0, sizeof a);
  a.time_us = t;
  a.op = op;
  a.offset = block * BS;
  a.length = nblocks * BS;
  return a;
}

/* xfer = 100 us per block (4096 B at 40.96 MB/s). */
static struct sim_config
cfg (double latency, unsigned qd, bool bg, uint64_t nr_blocks)
{
  struct sim_config c;
  sim_config_default (&c);
  c.block_size = BS;
  c.bandwidth = BS * 1e6 / 100;
  c.latency_us = latency;
  c.queue_depth = qd;
  c.background = bg;
  c.nr_blocks = nr_blocks;
  c.max_candidates = 16;
  return c;
}

static void
run (const struct sim_config *c, const struct pred_access *a, size_t n,
     bool oracle, struct sim_result *r)
{
  struct sim_policy *p = oracle ? sim_oracle_new (c, a, n) : NULL;
  if (oracle)
    ck_assert_ptr_nonnull (p);
  ck_assert_int_eq (sim_run (c, a, n, p, r), 0);
  sim_oracle_free (p);
}

#define EQ(x, v) ck_assert_msg ((x) == (v), #x " = %g, expected %g", (double) (x), (double) (v))

/* Reads of blocks 0..3 a millisecond apart, no latency, one slot. */
START_TEST (test_spaced_reads)
{
  struct pred_access a[] = {
    acc (0, 'R', 0, 1), acc (1000, 'R', 1, 1), acc (2000, 'R', 2, 1),
    acc (3000, 'R', 3, 1),
  };
  struct sim_config c = cfg (0, 1, false, 0);
  struct sim_result r;

  /* No prefetch: every read is a 100 us on-demand fetch. */
  run (&c, a, 4, false, &r);
  EQ (r.nr_blocks, 4);
  EQ (r.reads, 4);
  EQ (r.reads_shadow, 0);
  EQ (r.stall_us, 400);
  EQ (r.stalled, 4);
  EQ (r.first_touches, 4);
  EQ (r.ft_covered, 0);
  EQ (r.ft_resident, 0);
  EQ (r.copied_demand, 4);
  EQ (r.copied_prefetch, 0);
  EQ (r.pf_issued, 0);

  /* Oracle: block 0 on demand (done at 100); then 1, 2, 3 prefetched
   * back to back on the one slot (done at 200, 300, 400), long before
   * their reads: 3 reads from the shadow, 100 us of stall. */
  run (&c, a, 4, true, &r);
  EQ (r.reads_shadow, 3);
  EQ (r.stall_us, 100);
  EQ (r.stalled, 1);
  EQ (r.first_touches, 4);
  EQ (r.ft_covered, 3);
  EQ (r.ft_resident, 3);
  EQ (r.pf_issued, 3);
  EQ (r.pf_used, 3);
  EQ (r.copied_demand, 1);
  EQ (r.copied_prefetch, 3);
  EQ (r.read_blocks, 4);
  EQ (r.read_blocks_resident, 3);
  EQ (r.duration_us, 3000);
}
END_TEST

/* Reads faster than the link, latency 50 us, two slots: partial stalls
 * on blocks still in flight. */
START_TEST (test_tight_reads)
{
  struct pred_access a[] = {
    acc (0, 'R', 0, 1), acc (120, 'R', 1, 1), acc (130, 'R', 2, 1),
    acc (140, 'R', 3, 1),
  };
  struct sim_config c = cfg (50, 2, false, 0);
  struct sim_result r;

  /* No prefetch, the link serialises the fetches:
   *   b0 at 0:   link 0..100,   done 150, stall 150
   *   b1 at 120: link 120..220, done 270, stall 150
   *   b2 at 130: link 220..320, done 370, stall 240
   *   b3 at 140: link 320..420, done 470, stall 330   total 870 */
  run (&c, a, 4, false, &r);
  EQ (r.stall_us, 870);
  EQ (r.reads_shadow, 0);
  EQ (r.copied_demand, 4);

  /* Oracle:
   *   b0 at 0 on demand: link 0..100, done 150, stall 150
   *   prefetch b1: link 100..200, done 250; b2: link 200..300, done 350
   *   (two slots full, b3 waits)
   *   b1 at 120: in flight until 250, stall 130
   *   b2 at 130: in flight until 350, stall 220
   *   b3 at 140: slots still full, on demand: link 300..400, done 450,
   *   stall 310                                        total 810 */
  run (&c, a, 4, true, &r);
  EQ (r.stall_us, 810);
  EQ (r.reads_shadow, 0);
  EQ (r.ft_covered, 2);
  EQ (r.ft_resident, 0);
  EQ (r.pf_issued, 2);
  EQ (r.pf_used, 2);
  EQ (r.copied_demand, 2);
  EQ (r.copied_prefetch, 2);
}
END_TEST

/* Background sweep, no prefetch, 4-block volume, one slot:
 *   t=0 read b2: demand, link 0..100, resident at 100, stall 100
 *   sweep b0: link 100..200 (resident 200), b1: 200..300, b2 skipped
 *   (resident), b3: 300..400
 *   t=250 read b0: resident -> shadow
 *   t=350 read b3: in flight until 400 -> stall 50
 *   t=1000 read b1: resident -> shadow */
START_TEST (test_background)
{
  struct pred_access a[] = {
    acc (0, 'R', 2, 1), acc (250, 'R', 0, 1), acc (350, 'R', 3, 1),
    acc (1000, 'R', 1, 1),
  };
  struct sim_config c = cfg (0, 1, true, 4);
  struct sim_result r;

  run (&c, a, 4, false, &r);
  EQ (r.reads_shadow, 2);
  EQ (r.stall_us, 150);
  EQ (r.stalled, 2);
  EQ (r.copied_demand, 1);
  EQ (r.copied_background, 3);
  EQ (r.first_touches, 4);
  EQ (r.ft_resident, 2);
  EQ (r.ft_covered, 0);

  /* The oracle with the sweep on: after b2 (demand, link 0..100) it
   * prefetches b0 (100..200), then b3 (200..300), then b1 (300..400);
   * the sweep finds nothing left.  Reads at 250 (b0) and 1000 (b1) hit,
   * b3 at 350 hits (resident at 300): 3 from the shadow, 100 us stall. */
  run (&c, a, 4, true, &r);
  EQ (r.reads_shadow, 3);
  EQ (r.stall_us, 100);
  EQ (r.copied_background, 0);
  EQ (r.copied_prefetch, 3);
  EQ (r.ft_covered, 3);
}
END_TEST

/* Writes: a whole-block write needs no copy and makes the block
 * resident; a partial write to an absent block fetches it first. */
START_TEST (test_writes)
{
  struct pred_access a[] = {
    acc (0, 'W', 0, 2),                 /* whole blocks 0 and 1 */
    acc (1000, 'R', 1, 1),              /* resident: shadow */
    { .time_us = 2000, .op = 'W', .offset = 2 * BS + 512, .length = 512 },
    acc (3000, 'R', 2, 1),              /* fetched by the RMW at 2000 */
    { .time_us = 4000, .op = 'F' },     /* flush: nothing */
    { .time_us = 5000, .op = 'Z', .offset = 3 * BS, .length = BS },
    acc (6000, 'R', 3, 1),
  };
  struct sim_config c = cfg (0, 1, false, 0);
  struct sim_result r;

  run (&c, a, 7, false, &r);
  EQ (r.accesses, 7);
  EQ (r.reads, 3);
  EQ (r.reads_shadow, 3);
  EQ (r.stall_us, 100);                 /* the read-modify-write */
  EQ (r.copied_demand, 1);
  EQ (r.first_touches, 1);              /* block 2, partially written */

  /* The oracle has nothing worth copying but block 2. */
  run (&c, a, 7, true, &r);
  EQ (r.copied_prefetch + r.copied_demand, 1);
}
END_TEST

/* A trivial policy double: always proposes block 9 (never read). */
static void obs (void *o, const struct pred_access *a) { (void) o; (void) a; }
static size_t
pred9 (void *o, struct pred_cand *out, size_t max, predictor_absent_fn absent,
       void *ao)
{
  if (max && absent (ao, 9)) {
    out[0].block = 9;
    out[0].p = 1;
    return 1;
  }
  return 0;
}

START_TEST (test_useless_prefetch)
{
  struct pred_access a[] = { acc (0, 'R', 0, 1), acc (1000, 'R', 1, 1) };
  struct sim_config c = cfg (0, 4, false, 16);
  struct sim_policy p = { .name = "nine", .observe = obs, .predict = pred9 };
  struct sim_result r;

  ck_assert_int_eq (sim_run (&c, a, 2, &p, &r), 0);
  EQ (r.pf_issued, 1);                  /* once: then it is in flight/resident */
  EQ (r.pf_used, 0);
  EQ (r.ft_covered, 0);
  /* b0: link 0..100; b9 prefetched: link 100..200; b1 at 1000: 100 us. */
  EQ (r.stall_us, 200);
}
END_TEST

static Suite *
sim_suite (void)
{
  Suite *s = suite_create ("predict-sim");
  TCase *tc = tcase_create ("sim");
  tcase_add_test (tc, test_spaced_reads);
  tcase_add_test (tc, test_tight_reads);
  tcase_add_test (tc, test_background);
  tcase_add_test (tc, test_writes);
  tcase_add_test (tc, test_useless_prefetch);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (sim_suite ());
  int failed;
  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
