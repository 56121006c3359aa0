/* nbdshadow: unit tests for server/bufpool.c, the pool of copy buffers.
 *
 * What the copier and the write log rely on: a buffer put back is the
 * next one of its class taken (its pages are already mapped: that is the
 * point); sizes round up to their class and small ones are never pooled;
 * the idle memory stays under the limit, and all of it goes back to the
 * system after a tick without a taker; with the pool off nothing is kept;
 * and under many threads no buffer is ever handed to two holders at once
 * (each thread writes its own pattern and checks it before putting the
 * buffer back).  Under AddressSanitizer an idle buffer is poisoned, so a
 * use after bufpool_put is still reported, and a buffer put back twice
 * aborts.  Check forks every test: each starts with an empty pool.
 */

#include <config.h>

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <check.h>

#include "bufpool.h"

#ifdef BUFPOOL_ASAN
#include <sanitizer/asan_interface.h>
#endif

#define MiB ((size_t) 1024 * 1024)

static struct bufpool_stats
stats (void)
{
  struct bufpool_stats s;

  bufpool_stats (&s);
  return s;
}

START_TEST (test_put_back_is_taken_next)
{
  size_t cap, cap2;
  char *a = bufpool_get (2 * MiB, &cap);
  char *b;

  ck_assert_ptr_nonnull (a);
  ck_assert_uint_ge (cap, 2 * MiB);
  memset (a, 0xa5, 2 * MiB);
  bufpool_put (a, cap);
  ck_assert_uint_eq (stats ().idle_bytes, cap);
  b = bufpool_get (2 * MiB - 4096, &cap2);  /* same class */
  ck_assert_ptr_eq (b, a);
  ck_assert_uint_eq (cap2, cap);
  ck_assert_uint_eq (stats ().reused, 1);
  ck_assert_uint_eq (stats ().allocated, 1);
  ck_assert_uint_eq (stats ().idle_bytes, 0);
  bufpool_put (b, cap2);
  bufpool_drain ();
  ck_assert_uint_eq (stats ().idle_bytes, 0);
}
END_TEST

START_TEST (test_classes)
{
  size_t cap_small, cap_edge, cap_over, cap_huge;
  void *small = bufpool_get (BUFPOOL_MIN_CLASS - 1, &cap_small);
  void *edge = bufpool_get (BUFPOOL_MIN_CLASS + BUFPOOL_HEADROOM, &cap_edge);
  void *over = bufpool_get (BUFPOOL_MIN_CLASS + BUFPOOL_HEADROOM + 1,
                            &cap_over);
  void *huge = bufpool_get (BUFPOOL_MAX_CLASS + BUFPOOL_HEADROOM + 1,
                            &cap_huge);

  ck_assert_ptr_nonnull (small);
  ck_assert_ptr_nonnull (edge);
  ck_assert_ptr_nonnull (over);
  ck_assert_ptr_nonnull (huge);
  ck_assert_uint_eq (cap_small, 0);     /* malloc's business */
  ck_assert_uint_eq (cap_edge, BUFPOOL_MIN_CLASS + BUFPOOL_HEADROOM);
  ck_assert_uint_eq (cap_over, 2 * BUFPOOL_MIN_CLASS + BUFPOOL_HEADROOM);
  ck_assert_uint_eq (cap_huge, 0);      /* larger than any class */
  ck_assert_uint_eq (stats ().allocated, 2);
  bufpool_put (small, cap_small);
  bufpool_put (edge, cap_edge);
  bufpool_put (over, cap_over);
  bufpool_put (huge, cap_huge);
  ck_assert_uint_eq (stats ().idle_bytes, cap_edge + cap_over);
  bufpool_drain ();
}
END_TEST

START_TEST (test_limit_bounds_idle_memory)
{
  void *p[4];
  size_t cap[4], i;

  bufpool_set_limit (3 * MiB);
  for (i = 0; i < 4; i++)
    ck_assert_ptr_nonnull (p[i] = bufpool_get (MiB, &cap[i]));
  for (i = 0; i < 4; i++)
    bufpool_put (p[i], cap[i]);
  /* Each holds 1 MiB and a header: two fit under 3 MiB, not three. */
  ck_assert_uint_eq (stats ().idle_bytes, 2 * cap[0]);
  ck_assert_uint_le (stats ().idle_bytes, 3 * MiB);
  bufpool_set_limit (MiB);              /* lower: the idle ones go */
  ck_assert_uint_eq (stats ().idle_bytes, 0);
  ck_assert_uint_eq (stats ().limit, MiB);
}
END_TEST

START_TEST (test_tick_without_taker_empties)
{
  size_t cap;
  void *p = bufpool_get (MiB, &cap);

  bufpool_put (p, cap);
  bufpool_tick ();                      /* one was taken since the start */
  ck_assert_uint_eq (stats ().idle_bytes, cap);
  p = bufpool_get (MiB, &cap);
  bufpool_put (p, cap);
  bufpool_tick ();                      /* taken again: kept */
  ck_assert_uint_eq (stats ().idle_bytes, cap);
  bufpool_tick ();                      /* a tick without a taker */
  ck_assert_uint_eq (stats ().idle_bytes, 0);
}
END_TEST

START_TEST (test_off_keeps_nothing)
{
  size_t cap;
  void *p;

  bufpool_set_limit (0);
  p = bufpool_get (2 * MiB, &cap);
  ck_assert_ptr_nonnull (p);
  ck_assert_uint_eq (cap, 0);
  bufpool_put (p, cap);
  ck_assert_uint_eq (stats ().idle_bytes, 0);
  ck_assert_uint_eq (stats ().allocated, 0);
  ck_assert_uint_eq (stats ().reused, 0);
}
END_TEST

/* Many holders at once, sizes across classes, a ticker and a limit that
 * changes underneath: a buffer handed out twice would show as another
 * thread's pattern.
 */
#define THREADS 6
#define ROUNDS 1000
#define STRIDE 4093             /* marks this far apart: a page each */

static _Atomic int stop_ticking;

static void *
churn (void *arg)
{
  unsigned seed = (unsigned) (uintptr_t) arg, r;
  unsigned char mark = (unsigned char) (uintptr_t) arg;
  void *held[4] = { NULL };
  size_t cap[4] = { 0 }, len[4] = { 0 };
  size_t i, k;

  for (r = 0; r < ROUNDS; r++) {
    k = rand_r (&seed) % 4;
    if (held[k] != NULL) {
      const unsigned char *b = held[k];

      for (i = 0; i < len[k]; i += STRIDE)
        if (b[i] != mark)
          return (void *) "a buffer was held by two threads at once";
      bufpool_put (held[k], cap[k]);
      held[k] = NULL;
    }
    len[k] = BUFPOOL_MIN_CLASS / 2 + (size_t) rand_r (&seed) % (2 * MiB);
    held[k] = bufpool_get (len[k], &cap[k]);
    if (held[k] == NULL)
      return (void *) "out of memory";
    for (i = 0; i < len[k]; i += STRIDE)
      ((unsigned char *) held[k])[i] = mark;
  }
  for (k = 0; k < 4; k++)
    bufpool_put (held[k], cap[k]);
  return NULL;
}

static void *
ticker (void *arg)
{
  unsigned n = 0;

  (void) arg;
  while (!stop_ticking) {
    const struct timespec ms = { .tv_nsec = 1000000 };

    bufpool_tick ();
    bufpool_set_limit (++n % 2 ? 8 * MiB : 64 * MiB);
    nanosleep (&ms, NULL);
  }
  return NULL;
}

START_TEST (test_many_threads_same_buffers)
{
  pthread_t t[THREADS], tick;
  void *err;
  size_t i;

  ck_assert_int_eq (pthread_create (&tick, NULL, ticker, NULL), 0);
  for (i = 0; i < THREADS; i++)
    ck_assert_int_eq (pthread_create (&t[i], NULL, churn,
                                      (void *) (uintptr_t) (i + 1)), 0);
  for (i = 0; i < THREADS; i++) {
    ck_assert_int_eq (pthread_join (t[i], &err), 0);
    if (err != NULL)
      ck_abort_msg ("%s", (const char *) err);
  }
  stop_ticking = 1;
  ck_assert_int_eq (pthread_join (tick, NULL), 0);
  ck_assert_uint_gt (stats ().reused, 0);
  ck_assert_uint_le (stats ().idle_bytes, stats ().limit);
  bufpool_drain ();                     /* LeakSanitizer: all came back */
  ck_assert_uint_eq (stats ().idle_bytes, 0);
}
END_TEST

#ifdef BUFPOOL_ASAN
START_TEST (test_idle_buffer_is_poisoned)
{
  size_t cap;
  char *p = bufpool_get (MiB, &cap);

  ck_assert (!__asan_address_is_poisoned (p + 4096));
  bufpool_put (p, cap);
  /* From its first byte (its user's header: a reference count dropped
   * on an idle buffer is reported) up to the link in its last bytes. */
  ck_assert (__asan_address_is_poisoned (p));
  ck_assert (__asan_address_is_poisoned (p + 4096));
  ck_assert (__asan_address_is_poisoned (p + cap - sizeof (void *) - 1));
  ck_assert_ptr_eq (bufpool_get (MiB, &cap), p);
  ck_assert (!__asan_address_is_poisoned (p));
  ck_assert (!__asan_address_is_poisoned (p + cap - 1));
  bufpool_put (p, cap);
  bufpool_drain ();
}
END_TEST

START_TEST (test_put_twice_aborts)
{
  size_t cap;
  void *p = bufpool_get (MiB, &cap);

  bufpool_put (p, cap);
  bufpool_put (p, cap);                 /* aborts */
}
END_TEST
#endif

static Suite *
bufpool_suite (void)
{
  Suite *s = suite_create ("bufpool");
  TCase *tc = tcase_create ("bufpool");

  tcase_set_timeout (tc, 120);
  tcase_add_test (tc, test_put_back_is_taken_next);
  tcase_add_test (tc, test_classes);
  tcase_add_test (tc, test_limit_bounds_idle_memory);
  tcase_add_test (tc, test_tick_without_taker_empties);
  tcase_add_test (tc, test_off_keeps_nothing);
  tcase_add_test (tc, test_many_threads_same_buffers);
#ifdef BUFPOOL_ASAN
  tcase_add_test (tc, test_idle_buffer_is_poisoned);
  tcase_add_test_raise_signal (tc, test_put_twice_aborts, SIGABRT);
#endif
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (bufpool_suite ());
  int failed;

  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
