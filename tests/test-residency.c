/* nbdshadow: unit tests of the residency map, the block-range locks and
 * the human-readable figures of the status line.
 */

#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "humansize.h"
#include "rangelock.h"
#include "residency.h"

START_TEST (test_block_arithmetic)
{
  struct residency *r = residency_new (10 * 65536 + 100, 65536);

  ck_assert_ptr_nonnull (r);
  ck_assert_uint_eq (r->nr_blocks, 11);
  ck_assert_uint_eq (residency_block_bytes (r, 0), 65536);
  ck_assert_uint_eq (residency_block_bytes (r, 10), 100);
  ck_assert_uint_eq (residency_block_of (r, 65535), 0);
  ck_assert_uint_eq (residency_block_of (r, 65536), 1);
  ck_assert_uint_eq (residency_block_offset (r, 3), 3 * 65536);
  residency_free (r);

  r = residency_new (4096, 4096);
  ck_assert_uint_eq (r->nr_blocks, 1);
  ck_assert_uint_eq (residency_block_bytes (r, 0), 4096);
  residency_free (r);

  /* The largest volume: 2^63 - 1 bytes. */
  r = residency_new (INT64_MAX, 4096);
  ck_assert_ptr_nonnull (r);
  ck_assert_uint_eq (r->nr_blocks, (UINT64_C (1) << 51));
  ck_assert_uint_eq (residency_block_bytes (r, r->nr_blocks - 1), 4095);
  ck_assert_int_eq (residency_mark (r, r->nr_blocks - 1, 1, MARK_COPIED), 0);
  ck_assert (residency_is_resident (r, r->nr_blocks - 1));
  ck_assert_uint_eq (residency_count_resident (r), 1);
  residency_free (r);

  errno = 0;
  ck_assert_ptr_null (residency_new (0, 4096));
  ck_assert_int_eq (errno, EINVAL);
}
END_TEST

START_TEST (test_marks_and_runs)
{
  struct residency *r = residency_new (100 * 4096, 4096);
  bool resident;

  ck_assert (residency_any_absent (r, 0, 100));
  ck_assert_int_eq (residency_mark (r, 10, 5, MARK_COPIED), 0);
  ck_assert_int_eq (residency_mark (r, 15, 5, MARK_WRITTEN), 0);
  ck_assert (residency_is_resident (r, 10));
  ck_assert (!residency_is_written (r, 10));
  ck_assert (residency_is_written (r, 19));
  ck_assert (!residency_is_resident (r, 20));

  ck_assert_uint_eq (residency_run_end (r, 0, 100, &resident), 10);
  ck_assert (!resident);
  ck_assert_uint_eq (residency_run_end (r, 10, 100, &resident), 20);
  ck_assert (resident);
  ck_assert_uint_eq (residency_run_end (r, 12, 14, &resident), 14);
  ck_assert_uint_eq (residency_run_end (r, 20, 100, &resident), 100);
  ck_assert (!resident);

  ck_assert (!residency_any_absent (r, 10, 10));
  ck_assert (residency_any_absent (r, 10, 11));
  ck_assert_uint_eq (residency_next_absent (r, 10), 20);
  ck_assert_uint_eq (residency_next_absent (r, 100), 100);
  ck_assert_uint_eq (residency_count_resident (r), 10);
  ck_assert_uint_eq (residency_count_written (r), 5);

  /* Writing a copied block makes it written; nothing goes back. */
  ck_assert_int_eq (residency_mark (r, 10, 1, MARK_WRITTEN), 0);
  ck_assert (residency_is_written (r, 10));
  ck_assert_int_eq (residency_mark (r, 10, 1, MARK_COPIED), 0);
  ck_assert (residency_is_written (r, 10));
  residency_free (r);
}
END_TEST

START_TEST (test_pending_freeze)
{
  struct residency *r = residency_new (1000 * 4096, 4096);
  struct mark_list frozen;
  uint64_t i;

  /* A sweep of consecutive marks coalesces into one. */
  for (i = 0; i < 100; ++i)
    ck_assert_int_eq (residency_mark (r, i, 1, MARK_COPIED), 0);
  ck_assert_int_eq (residency_mark (r, 500, 2, MARK_WRITTEN), 0);
  ck_assert (residency_has_pending (r));
  residency_freeze (r, &frozen);
  ck_assert (!residency_has_pending (r));
  ck_assert_uint_eq (frozen.len, 2);
  ck_assert_uint_eq (frozen.v[0].first, 0);
  ck_assert_uint_eq (frozen.v[0].count, 100);
  ck_assert_int_eq (frozen.v[0].kind, MARK_COPIED);
  ck_assert_uint_eq (frozen.v[1].first, 500);
  ck_assert_int_eq (frozen.v[1].kind, MARK_WRITTEN);

  /* Marks made during a commit stay pending; a failed commit gives its
   * marks back.
   */
  ck_assert_int_eq (residency_mark (r, 700, 1, MARK_COPIED), 0);
  ck_assert_int_eq (residency_unfreeze (r, &frozen), 0);
  ck_assert_ptr_null (frozen.v);
  residency_freeze (r, &frozen);
  ck_assert_uint_eq (frozen.len, 3);
  mark_list_free (&frozen);

  /* Loading persisted marks does not queue them, and checks ranges. */
  {
    struct mark ok = { .first = 900, .count = 100, .kind = MARK_COPIED };
    struct mark bad = { .first = 950, .count = 51, .kind = MARK_COPIED };

    ck_assert_int_eq (residency_load_mark (r, &ok), 0);
    ck_assert (!residency_has_pending (r));
    ck_assert_int_eq (residency_load_mark (r, &bad), -1);
    ck_assert_int_eq (errno, ERANGE);
  }
  residency_free (r);
}
END_TEST

/* Many threads take overlapping ranges of a small set of blocks and
 * check that nobody else holds any of their blocks meanwhile.
 */
#define LOCK_BLOCKS 64
#define LOCK_THREADS 8
#define LOCK_ROUNDS 20000

static struct rangelock test_lock;
static _Atomic int holders[LOCK_BLOCKS];
static _Atomic int overlaps;
static _Atomic long tried_ok;

static void *
lock_worker (void *arg)
{
  unsigned seed = (uintptr_t) arg;
  int i;

  for (i = 0; i < LOCK_ROUNDS; ++i) {
    uint64_t first = rand_r (&seed) % LOCK_BLOCKS;
    uint64_t count = 1 + rand_r (&seed) % 8, b;
    struct range_hold h;

    if (first + count > LOCK_BLOCKS)
      count = LOCK_BLOCKS - first;
    if (rand_r (&seed) % 2)
      rangelock_acquire (&test_lock, &h, first, count);
    else if (rangelock_try (&test_lock, &h, first, count))
      tried_ok++;
    else
      continue;
    for (b = first; b < first + count; ++b)
      if (atomic_fetch_add (&holders[b], 1) != 0)
        overlaps++;
    for (b = first; b < first + count; ++b)
      atomic_fetch_sub (&holders[b], 1);
    rangelock_release (&test_lock, &h);
  }
  return NULL;
}

START_TEST (test_rangelock_exclusion)
{
  pthread_t t[LOCK_THREADS];
  uintptr_t i;

  ck_assert_int_eq (rangelock_init (&test_lock), 0);
  for (i = 0; i < LOCK_THREADS; ++i)
    ck_assert_int_eq (pthread_create (&t[i], NULL, lock_worker,
                                      (void *) (i + 1)), 0);
  for (i = 0; i < LOCK_THREADS; ++i)
    pthread_join (t[i], NULL);
  ck_assert_int_eq (overlaps, 0);
  ck_assert_int_gt (tried_ok, 0);
  rangelock_destroy (&test_lock);
}
END_TEST

START_TEST (test_rangelock_try)
{
  struct rangelock rl;
  struct range_hold a, b;

  ck_assert_int_eq (rangelock_init (&rl), 0);
  ck_assert (rangelock_try (&rl, &a, 10, 10));
  ck_assert (!rangelock_try (&rl, &b, 19, 1));
  ck_assert (!rangelock_try (&rl, &b, 0, 11));
  ck_assert (rangelock_try (&rl, &b, 20, 5));  /* adjacent is fine */
  rangelock_release (&rl, &a);
  ck_assert (rangelock_try (&rl, &a, 0, 20));
  rangelock_release (&rl, &a);
  rangelock_release (&rl, &b);
  rangelock_destroy (&rl);
}
END_TEST

/* A shrunk hold frees its tail at once, wakes a waiter for it, and
 * keeps its head.
 */
static struct rangelock shrink_lock;
static _Atomic bool got_tail;

static void *
acquire_tail (void *arg)
{
  struct range_hold h;

  (void) arg;
  rangelock_acquire (&shrink_lock, &h, 15, 5);
  atomic_store (&got_tail, true);
  rangelock_release (&shrink_lock, &h);
  return NULL;
}

START_TEST (test_rangelock_shrink)
{
  struct range_hold a, b;
  pthread_t t;
  int i;

  ck_assert_int_eq (rangelock_init (&shrink_lock), 0);
  ck_assert (rangelock_try (&shrink_lock, &a, 10, 10));
  ck_assert_int_eq (pthread_create (&t, NULL, acquire_tail, NULL), 0);
  usleep (200 * 1000);          /* let it block on the tail */
  ck_assert (!atomic_load (&got_tail));
  rangelock_shrink (&shrink_lock, &a, 14);
  for (i = 0; i < 500 && !atomic_load (&got_tail); ++i)
    usleep (10 * 1000);
  ck_assert_msg (atomic_load (&got_tail),
                 "a waiter for the freed tail was not woken in 5 s");
  ck_assert_int_eq (pthread_join (t, NULL), 0);
  ck_assert (!rangelock_try (&shrink_lock, &b, 13, 1));
  ck_assert (rangelock_try (&shrink_lock, &b, 14, 6));
  rangelock_release (&shrink_lock, &b);
  rangelock_release (&shrink_lock, &a);
  rangelock_destroy (&shrink_lock);
}
END_TEST

START_TEST (test_human)
{
  static const struct { uint64_t n; const char *s; } sizes[] = {
    { 0, "0 B" }, { 1023, "1023 B" }, { 1024, "1.0 KiB" },
    { 9 * 1024 + 512, "9.5 KiB" }, { 431 * 1048576ULL, "431 MiB" },
    { 1ULL << 30, "1.0 GiB" }, { 64ULL << 40, "64 TiB" },
  };
  static const struct { double t; const char *s; } times[] = {
    { 0, "0s" }, { 6.2, "6s" }, { 59.6, "1m00s" }, { 125, "2m05s" },
    { 3720, "1h02m" }, { 3 * 86400 + 4 * 3600, "3d04h" }, { -5, "0s" },
  };
  char buf[32];
  size_t i;

  for (i = 0; i < sizeof sizes / sizeof sizes[0]; ++i) {
    human_size (sizes[i].n, buf, sizeof buf);
    ck_assert_str_eq (buf, sizes[i].s);
  }
  for (i = 0; i < sizeof times / sizeof times[0]; ++i) {
    human_duration (times[i].t, buf, sizeof buf);
    ck_assert_str_eq (buf, times[i].s);
  }
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("residency");
  TCase *tc = tcase_create ("core");
  SRunner *sr;
  int failed;

  tcase_set_timeout (tc, 120);
  tcase_add_test (tc, test_block_arithmetic);
  tcase_add_test (tc, test_marks_and_runs);
  tcase_add_test (tc, test_pending_freeze);
  tcase_add_test (tc, test_rangelock_exclusion);
  tcase_add_test (tc, test_rangelock_try);
  tcase_add_test (tc, test_rangelock_shrink);
  tcase_add_test (tc, test_human);
  suite_add_tcase (s, tc);
  sr = srunner_create (s);
  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
