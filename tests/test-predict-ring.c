/* test-predict-ring.c: the MPSC ring under many producer threads: no
 * loss except counted drops, no duplicates, per-producer order, never
 * blocking when full, and the consumer's wait/wake. */
#include <config.h>

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <check.h>

#include "ring.h"

START_TEST (test_basic)
{
  struct pred_ring *r = pred_ring_new (5);     /* rounds up to 8 */
  struct pred_ring_stats st;
  struct pred_access a, b;

  ck_assert_ptr_nonnull (r);
  pred_ring_stats (r, &st);
  ck_assert_uint_eq (st.capacity, 8);
  ck_assert (!pred_ring_pop (r, &b));
  memset (&a, 0, sizeof a);
  a.op = PRED_OP_READ;
  for (int i = 0; i < 8; i++) {
    a.offset = i;
    ck_assert (pred_ring_push (r, &a));
  }
  a.offset = 99;
  ck_assert (!pred_ring_push (r, &a));          /* full: dropped */
  for (int i = 0; i < 8; i++) {
    ck_assert (pred_ring_pop (r, &b));
    ck_assert_uint_eq (b.offset, i);
  }
  ck_assert (!pred_ring_pop (r, &b));
  /* Wrap around many times. */
  for (int i = 0; i < 1000; i++) {
    a.offset = i;
    ck_assert (pred_ring_push (r, &a));
    ck_assert (pred_ring_pop (r, &b));
    ck_assert_uint_eq (b.offset, i);
  }
  pred_ring_stats (r, &st);
  ck_assert_uint_eq (st.pushed, 1008);
  ck_assert_uint_eq (st.dropped, 1);
  ck_assert_uint_eq (st.popped, 1008);
  pred_ring_free (r);
  ck_assert_ptr_null (pred_ring_new ((size_t) 1 << 30));
}
END_TEST

#define NPROD 8
#define PER_PROD 30000

struct prod {
  struct pred_ring *r;
  unsigned id;
  uint64_t accepted;
  bool retry;                   /* push again until accepted */
  _Atomic int *go, *finished;
};

static void *
producer (void *arg)
{
  struct prod *p = arg;
  struct pred_access a;
  memset (&a, 0, sizeof a);
  a.op = PRED_OP_WRITE;
  a.dev = p->id;
  while (!atomic_load (p->go))
    ;
  for (uint64_t i = 0; i < PER_PROD; i++) {
    a.offset = i;
    a.time_us = i * 3 + p->id;
    if (p->retry)
      while (!pred_ring_push (p->r, &a))
        sched_yield ();
    else
      p->accepted += pred_ring_push (p->r, &a);
    if (p->retry)
      p->accepted++;
  }
  atomic_fetch_add (p->finished, 1);
  pred_ring_wake (p->r);
  return NULL;
}

static void
run_many (size_t capacity, bool slow_consumer, bool retry)
{
  struct pred_ring *r = pred_ring_new (capacity);
  pthread_t th[NPROD];
  struct prod p[NPROD];
  _Atomic int go = 0, finished = 0;
  int64_t last[NPROD];
  uint64_t got[NPROD] = { 0 }, popped = 0, accepted = 0;
  struct pred_access a;
  struct pred_ring_stats st;
  bool final = false;

  ck_assert_ptr_nonnull (r);
  for (int i = 0; i < NPROD; i++) {
    last[i] = -1;
    p[i] = (struct prod) { .r = r, .id = i, .retry = retry, .go = &go, .finished = &finished };
    ck_assert_int_eq (pthread_create (&th[i], NULL, producer, &p[i]), 0);
  }
  atomic_store (&go, 1);
  for (;;) {
    if (pred_ring_pop (r, &a)) {
      ck_assert_uint_lt (a.dev, NPROD);
      /* Per producer: strictly increasing, and the payload intact. */
      ck_assert_int_gt ((int64_t) a.offset, last[a.dev]);
      ck_assert_uint_eq (a.time_us, a.offset * 3 + a.dev);
      ck_assert_int_eq (a.op, PRED_OP_WRITE);
      last[a.dev] = a.offset;
      got[a.dev]++;
      popped++;
      if (slow_consumer && popped % 64 == 0) {
        struct timespec ts = { 0, 20000 };
        nanosleep (&ts, NULL);
      }
      continue;
    }
    /* Empty.  Once every producer is done, one last drain settles it:
     * their pushes were published before they counted themselves. */
    if (final)
      break;
    if (atomic_load (&finished) == NPROD) {
      final = true;
      continue;
    }
    pred_ring_wait (r, 1);
  }
  for (int i = 0; i < NPROD; i++)
    pthread_join (th[i], NULL);
  for (int i = 0; i < NPROD; i++) {
    accepted += p[i].accepted;
    ck_assert_uint_eq (got[i], p[i].accepted);
  }
  pred_ring_stats (r, &st);
  ck_assert_uint_eq (st.pushed, accepted);
  ck_assert_uint_eq (st.popped, popped);
  if (retry)
    ck_assert_uint_eq (st.pushed, (uint64_t) NPROD * PER_PROD);
  else
    ck_assert_uint_eq (st.pushed + st.dropped, (uint64_t) NPROD * PER_PROD);
  fprintf (stderr, "ring of %zu, %d producers: %" PRIu64 " pushed, %" PRIu64
           " dropped, %" PRIu64 " popped\n", capacity, NPROD, st.pushed,
           st.dropped, st.popped);
  if (slow_consumer)
    ck_assert_uint_gt (st.dropped, 0);
  pred_ring_free (r);
}

/* Every access goes through (producers retry): order, no loss, no
 * duplicate under full contention. */
START_TEST (test_many_producers)
{
  run_many (256, false, true);
}
END_TEST

/* Producers never retry: the ring drops, counts, and what it accepted
 * arrives intact. */
START_TEST (test_many_producers_dropping)
{
  run_many (1024, false, false);
}
END_TEST

START_TEST (test_many_producers_slow_consumer)
{
  run_many (64, true, false);
}
END_TEST

static void *
late_pusher (void *arg)
{
  struct pred_ring *r = arg;
  struct pred_access a;
  struct timespec ts = { 0, 50 * 1000 * 1000 };
  memset (&a, 0, sizeof a);
  nanosleep (&ts, NULL);
  a.offset = 7;
  pred_ring_push (r, &a);
  return NULL;
}

static double
now_s (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

START_TEST (test_wait_wake)
{
  struct pred_ring *r = pred_ring_new (16);
  struct pred_access a;
  pthread_t t;
  double t0;

  /* Nothing comes: the wait times out. */
  t0 = now_s ();
  pred_ring_wait (r, 30);
  ck_assert (now_s () - t0 >= 0.025);
  /* A push wakes a sleeping consumer long before its timeout. */
  ck_assert_int_eq (pthread_create (&t, NULL, late_pusher, r), 0);
  t0 = now_s ();
  while (!pred_ring_pop (r, &a))
    pred_ring_wait (r, 10000);
  ck_assert (now_s () - t0 < 5);
  ck_assert_uint_eq (a.offset, 7);
  pthread_join (t, NULL);
  /* Not empty: returns at once. */
  pred_ring_push (r, &a);
  t0 = now_s ();
  pred_ring_wait (r, 10000);
  ck_assert (now_s () - t0 < 1);
  pred_ring_wake (r);
  pred_ring_free (r);
}
END_TEST

static Suite *
ring_suite (void)
{
  Suite *s = suite_create ("predict-ring");
  TCase *tc = tcase_create ("ring");
  tcase_set_timeout (tc, 300);
  tcase_add_test (tc, test_basic);
  tcase_add_test (tc, test_many_producers);
  tcase_add_test (tc, test_many_producers_dropping);
  tcase_add_test (tc, test_many_producers_slow_consumer);
  tcase_add_test (tc, test_wait_wake);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (ring_suite ());
  int failed;
  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
