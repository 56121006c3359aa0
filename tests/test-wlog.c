/* nbdshadow: unit tests for server/wlog.c, the log of updates a shadow
 * acknowledged but has not flushed.
 *
 * What the engine relies on: entries come back in the order they were
 * appended, with their data; a flush drops exactly the entries appended
 * before it was sent (seq <= its mark) and nothing newer; the byte count
 * that bounds the log's memory goes back to zero when it empties; and a
 * log emptied by a trim takes new entries again (its tail is reset);
 * a write's shared copy (made by the submitting thread, one for every
 * shadow and command) lives exactly as long as the last entry or holder
 * that refers to it (ASan reports a leak or a use after free); and a
 * large buffer let go is reused by the next (bufpool.h).
 */

#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "bufpool.h"
#include "wlog.h"

static size_t
count_entries (const struct wlog *l)
{
  const struct wlog_entry *en;
  size_t n = 0;

  for (en = l->head; en; en = en->next)
    n++;
  return n;
}

START_TEST (test_order_and_data)
{
  struct wlog l;
  char a[100], b[7];
  const struct wlog_entry *en;

  memset (a, 'a', sizeof a);
  memset (b, 'b', sizeof b);
  wlog_init (&l, 0);
  ck_assert_int_eq (wlog_append (&l, SHADOW_WRITE, 0, 4096, sizeof a,
                                 NULL, a), 0);
  ck_assert_int_eq (wlog_append (&l, SHADOW_ZERO, SHADOW_FLAG_MAY_TRIM,
                                 0, 1 << 20, NULL, NULL), 0);
  ck_assert_int_eq (wlog_append (&l, SHADOW_TRIM, 0, 8192, 512,
                                 NULL, NULL), 0);
  ck_assert_int_eq (wlog_append (&l, SHADOW_WRITE, 0, 1, sizeof b,
                                 NULL, b), 0);
  ck_assert_uint_eq (l.entries, 4);
  ck_assert_uint_eq (count_entries (&l), 4);
  ck_assert_uint_eq (l.last_seq, 4);

  en = l.head;
  ck_assert_int_eq (en->op, SHADOW_WRITE);
  ck_assert_uint_eq (en->seq, 1);
  ck_assert_uint_eq (en->offset, 4096);
  ck_assert_uint_eq (en->count, sizeof a);
  ck_assert_int_eq (memcmp (en->data, a, sizeof a), 0);
  en = en->next;
  ck_assert_int_eq (en->op, SHADOW_ZERO);
  ck_assert_uint_eq (en->flags, SHADOW_FLAG_MAY_TRIM);
  ck_assert_uint_eq (en->count, 1 << 20);
  en = en->next;
  ck_assert_int_eq (en->op, SHADOW_TRIM);
  en = en->next;
  ck_assert_uint_eq (en->seq, 4);
  ck_assert_int_eq (memcmp (en->data, b, sizeof b), 0);
  ck_assert_ptr_null (en->next);

  /* Data bytes count; zero and trim only their entry. */
  ck_assert_uint_ge (l.bytes, sizeof a + sizeof b);
  ck_assert_uint_lt (l.bytes, sizeof a + sizeof b + 4 * 256);
  wlog_free (&l);
  ck_assert_uint_eq (l.bytes, 0);
  ck_assert_uint_eq (l.entries, 0);
}
END_TEST

START_TEST (test_trim_exactly_what_a_flush_covers)
{
  struct wlog l;
  char d[16] = "0123456789abcde";
  uint64_t mark;
  int i;

  wlog_init (&l, 0);
  for (i = 0; i < 10; ++i)
    ck_assert_int_eq (wlog_append (&l, SHADOW_WRITE, 0, i * 16, 16,
                                   NULL, d), 0);
  mark = l.last_seq;            /* a flush sent now */
  for (i = 10; i < 15; ++i)
    ck_assert_int_eq (wlog_append (&l, SHADOW_WRITE, 0, i * 16, 16,
                                   NULL, d), 0);

  wlog_trim (&l, 0);            /* covers nothing */
  ck_assert_uint_eq (count_entries (&l), 15);
  wlog_trim (&l, mark);
  ck_assert_uint_eq (count_entries (&l), 5);
  ck_assert_uint_eq (l.entries, 5);
  ck_assert_uint_eq (l.head->seq, mark + 1);
  ck_assert_uint_eq (l.head->offset, 10 * 16);

  /* Trimmed to empty, then appended to: the tail was reset. */
  wlog_trim (&l, l.last_seq);
  ck_assert_ptr_null (l.head);
  ck_assert_uint_eq (l.bytes, 0);
  ck_assert_int_eq (wlog_append (&l, SHADOW_TRIM, 0, 0, 4096, NULL, NULL), 0);
  ck_assert_ptr_nonnull (l.head);
  ck_assert_uint_eq (l.head->seq, 16);
  ck_assert_uint_eq (count_entries (&l), 1);
  wlog_free (&l);
}
END_TEST

START_TEST (test_shared_copy_outlives_its_submitter)
{
  struct wlog a, b;
  char src[64];
  struct wlog_data *d;

  memset (src, 's', sizeof src);
  d = wlog_data_copy (src, sizeof src);
  ck_assert_ptr_nonnull (d);
  memset (src, 'x', sizeof src);  /* the caller's buffer is reused */
  wlog_init (&a, 0);
  wlog_init (&b, 1);
  /* Split in two commands on shadow a, one on shadow b. */
  ck_assert_int_eq (wlog_append (&a, SHADOW_WRITE, 0, 0, 32, d, d->bytes), 0);
  ck_assert_int_eq (wlog_append (&a, SHADOW_WRITE, 0, 32, 32, d,
                                 d->bytes + 32), 0);
  ck_assert_int_eq (wlog_append (&b, SHADOW_WRITE, 0, 0, 64, d, d->bytes), 0);
  ck_assert_uint_eq (d->refs, 4);
  wlog_data_put (d);            /* the io completes */
  ck_assert_ptr_eq (a.head->next->data, d->bytes + 32);
  /* Each log is charged for the whole buffer once. */
  ck_assert_uint_ge (a.bytes, 64);
  ck_assert_uint_lt (a.bytes, 2 * 64 + 2 * sizeof (struct wlog_entry));
  ck_assert_uint_ge (b.bytes, 64);
  wlog_free (&a);
  ck_assert_uint_eq (d->refs, 1);
  ck_assert_int_eq (b.head->data[63], 's');
  wlog_free (&b);               /* frees d */
  wlog_data_put (NULL);
}
END_TEST

/* A few blocks of a large buffer keep all of it: the log's size, which
 * its cap bounds, must say so.
 */
START_TEST (test_small_entry_of_a_large_buffer_counts_it_all)
{
  struct wlog l;
  struct wlog_data *d = wlog_data_new (1 << 20);

  ck_assert_ptr_nonnull (d);
  memset (d->bytes, 0, 1 << 20);
  wlog_init (&l, 3);
  ck_assert_int_eq (wlog_append (&l, SHADOW_WRITE, 0, 65536, 4096, d,
                                 d->bytes + 65536), 0);
  wlog_data_put (d);
  ck_assert_uint_ge (l.bytes, 1 << 20);
  wlog_free (&l);
  ck_assert_uint_eq (l.bytes, 0);
}
END_TEST

/* The copier drops its reference on its own thread while the engine
 * thread takes and drops the log's: the count must stay exact.
 */
static void *
get_put_many (void *arg)
{
  struct wlog_data *d = arg;
  int i;

  for (i = 0; i < 200000; ++i) {
    wlog_data_get (d);
    wlog_data_put (d);
  }
  return NULL;
}

/* An append that fails (out of memory; here the tests' fail_seq) still
 * takes its seq, so that the engine can tell which flushes were sent
 * after it, and leaves the log as it was.
 */
START_TEST (test_failed_append_takes_its_seq)
{
  struct wlog l;
  char a[10];
  const struct wlog_entry *en;

  memset (a, 'a', sizeof a);
  wlog_init (&l, 0);
  l.fail_seq = 2;
  ck_assert_int_eq (wlog_append (&l, SHADOW_WRITE, 0, 0, sizeof a,
                                 NULL, a), 0);
  errno = 0;
  ck_assert_int_eq (wlog_append (&l, SHADOW_WRITE, 0, 10, sizeof a,
                                 NULL, a), -1);
  ck_assert_int_eq (errno, ENOMEM);
  ck_assert_uint_eq (l.last_seq, 2);
  ck_assert_uint_eq (l.entries, 1);
  ck_assert_int_eq (wlog_append (&l, SHADOW_ZERO, 0, 20, 4096,
                                 NULL, NULL), 0);
  ck_assert_uint_eq (l.entries, 2);
  ck_assert_uint_eq (count_entries (&l), 2);
  en = l.head;
  ck_assert_uint_eq (en->seq, 1);
  ck_assert_uint_eq (en->next->seq, 3);
  ck_assert_uint_eq (en->next->offset, 20);
  wlog_free (&l);
  ck_assert_uint_eq (l.bytes, 0);
}
END_TEST

START_TEST (test_references_from_many_threads)
{
  struct wlog_data *d = wlog_data_new (4096);
  pthread_t t[4];
  size_t i;

  ck_assert_ptr_nonnull (d);
  for (i = 0; i < 4; ++i)
    ck_assert_int_eq (pthread_create (&t[i], NULL, get_put_many, d), 0);
  for (i = 0; i < 4; ++i)
    ck_assert_int_eq (pthread_join (t[i], NULL), 0);
  ck_assert_uint_eq (d->refs, 1);
  wlog_data_put (d);            /* frees: a leak or double free shows */
}
END_TEST

/* A copy's buffer, once its last holder lets go, is the next copy's:
 * its pages stay mapped (bufpool.h).  And a log is charged for what such
 * a buffer holds: its whole class, not only the bytes asked for.
 */
START_TEST (test_large_buffer_is_recycled)
{
  struct wlog_data *d = wlog_data_new (2 * 1024 * 1024), *e;
  struct bufpool_stats before, after;
  struct wlog l;

  ck_assert_ptr_nonnull (d);
  memset (d->bytes, 1, d->size);
  wlog_data_get (d);
  wlog_data_put (d);
  bufpool_stats (&before);
  wlog_data_put (d);            /* the last: back to the pool */
  e = wlog_data_new (2 * 1024 * 1024 - 512);
  ck_assert_ptr_eq (e, d);
  ck_assert_uint_eq (e->size, 2 * 1024 * 1024 - 512);
  ck_assert_uint_eq (e->refs, 1);
  bufpool_stats (&after);
  ck_assert_uint_eq (after.reused, before.reused + 1);
  wlog_data_put (e);

  /* 1 MiB and a block: a 2 MiB class. */
  wlog_init (&l, 0);
  d = wlog_data_new (1024 * 1024 + 4096);
  ck_assert_ptr_nonnull (d);
  memset (d->bytes, 2, d->size);
  ck_assert_int_eq (wlog_append (&l, SHADOW_WRITE, 0, 0, d->size, d,
                                 d->bytes), 0);
  ck_assert_uint_ge (l.bytes, 2 * 1024 * 1024);
  ck_assert_uint_eq (l.bytes - sizeof (struct wlog_entry),
                     wlog_data_footprint (d));
  wlog_data_put (d);
  wlog_trim (&l, UINT64_MAX);
  ck_assert_uint_eq (l.bytes, 0);
  bufpool_drain ();
}
END_TEST

static Suite *
wlog_suite (void)
{
  Suite *s = suite_create ("wlog");
  TCase *tc = tcase_create ("wlog");

  tcase_add_test (tc, test_order_and_data);
  tcase_add_test (tc, test_trim_exactly_what_a_flush_covers);
  tcase_add_test (tc, test_shared_copy_outlives_its_submitter);
  tcase_add_test (tc, test_failed_append_takes_its_seq);
  tcase_add_test (tc, test_references_from_many_threads);
  tcase_add_test (tc, test_small_entry_of_a_large_buffer_counts_it_all);
  tcase_add_test (tc, test_large_buffer_is_recycled);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (wlog_suite ());
  int failed;

  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
