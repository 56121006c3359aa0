/* nbdshadow: unit tests for server/prefetch.c, the predictor thread
 * between the client stream and the copier.
 *
 * What matters here is what reaches the copier and in what order, so the
 * tests give the prefetcher a volume of their own (only its residency map
 * and statistics are used) and a request function that records every
 * range it is handed.  Accesses go in through prefetcher_note, exactly as
 * the volume's access hook calls it.
 *
 * The round cap: the copier serves predictions first come, first served,
 * so one round that queued a whole lookahead for a stream that just
 * started made every other stream's next block wait behind it (bench/e2e:
 * four interleaved readers stalled twice as long).  A round queues at
 * most ROUND_BLOCKS new blocks; the lookahead still fills, a few blocks
 * per access.
 *
 * Batches: the thread drains every access waiting, then predicts for
 * each stream among them, not only the last access's.
 */

#include <config.h>

#include <stdbool.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>

#include <check.h>

#include "predictor.h"
#include "prefetch.h"
#include "residency.h"
#include "volume.h"

#define BLOCK 65536
#define NR_BLOCKS 65536
#define ROUND_CAP 8             /* prefetch.c's ROUND_BLOCKS */
#define MAX_RECORDS 4096

struct record {
  bool hot;
  uint64_t first, count;
};

static pthread_mutex_t rec_lock = PTHREAD_MUTEX_INITIALIZER;
static struct record rec[MAX_RECORDS];
static size_t nr_rec;

static bool
record_request (void *opaque, bool hot, uint64_t first, uint64_t count)
{
  (void) opaque;
  pthread_mutex_lock (&rec_lock);
  if (nr_rec < MAX_RECORDS)
    rec[nr_rec++] = (struct record) { hot, first, count };
  pthread_mutex_unlock (&rec_lock);
  return true;
}

static double
never_busy (void *opaque)
{
  (void) opaque;
  return 0;
}

/* Predicted (not hot) blocks requested since the records were cleared,
 * and the highest one.
 */
static uint64_t
predicted_blocks (uint64_t *highest)
{
  uint64_t n = 0;

  *highest = 0;
  pthread_mutex_lock (&rec_lock);
  for (size_t i = 0; i < nr_rec; i++)
    if (!rec[i].hot) {
      n += rec[i].count;
      if (rec[i].first + rec[i].count - 1 > *highest)
        *highest = rec[i].first + rec[i].count - 1;
    }
  pthread_mutex_unlock (&rec_lock);
  return n;
}

static void
clear_records (void)
{
  pthread_mutex_lock (&rec_lock);
  nr_rec = 0;
  pthread_mutex_unlock (&rec_lock);
}

/* Wait until the predictor thread has observed `accesses` in all, and
 * (up to a few seconds) until it has queued a round more than `rounds`:
 * a round runs right after each batch it observes.
 */
static void
wait_observed (struct prefetcher *pf, uint64_t accesses, uint64_t rounds)
{
  struct prefetch_stats st;

  for (int i = 0; i < 5000; i++) {
    prefetcher_get_stats (pf, &st);
    if (st.accesses >= accesses && st.rounds > rounds)
      break;
    usleep (1000);
  }
  ck_assert_uint_ge (st.accesses, accesses);
}

static uint64_t
rounds_now (struct prefetcher *pf)
{
  struct prefetch_stats st;

  prefetcher_get_stats (pf, &st);
  return st.rounds;
}

static struct volume *
fake_volume (void)
{
  struct volume *v = calloc (1, sizeof *v);

  ck_assert_ptr_nonnull (v);
  v->res = residency_new ((uint64_t) NR_BLOCKS * BLOCK, BLOCK);
  ck_assert_ptr_nonnull (v->res);
  return v;
}

static void
free_volume (struct volume *v)
{
  residency_free (v->res);
  free (v);
}

static struct prefetcher *
start (struct volume *v, const char *policy)
{
  struct prefetch_config cfg = {
    .block_size = BLOCK, .nr_blocks = NR_BLOCKS, .policy = policy,
  };
  char err[256];
  struct prefetcher *pf = prefetcher_new (&cfg, err, sizeof err);

  ck_assert_msg (pf != NULL, "prefetcher_new: %s", err);
  ck_assert_int_eq (prefetcher_start (pf, v, record_request, never_busy,
                                      NULL), 0);
  return pf;
}

static void
read_block (struct prefetcher *pf, uint64_t block)
{
  prefetcher_note (pf, PRED_OP_READ, block * BLOCK, BLOCK);
}

/* A stream that starts where nothing was read queues at most ROUND_CAP
 * blocks at once, the nearest ones; the next accesses extend the
 * lookahead beyond what one round may queue.
 */
START_TEST (test_round_cap)
{
  const char *policy = _i == 0 ? "ngram" : "hybrid";
  struct volume *v = fake_volume ();
  struct prefetcher *pf = start (v, policy);
  uint64_t seen = 0, n, highest, r;
  const uint64_t s = 20000;

  /* Teach the model that reads go forward one block at a time. */
  r = rounds_now (pf);
  for (uint64_t b = 0; b < 200; b++) {
    read_block (pf, b);
    residency_mark (v->res, b, 1, MARK_COPIED);    /* the client's read copied it */
    if (b % 16 == 15) {
      wait_observed (pf, b + 1, r);
      r = rounds_now (pf);
    }
  }
  seen = 200;
  wait_observed (pf, seen, 0);

  /* A new stream far away: its first round. */
  clear_records ();
  r = rounds_now (pf);
  read_block (pf, s);
  wait_observed (pf, ++seen, r);
  n = predicted_blocks (&highest);
  ck_assert_msg (n >= 1 && n <= ROUND_CAP,
                 "%s: first round of a new stream queued %" PRIu64
                 " blocks (cap %d)", policy, n, ROUND_CAP);
  ck_assert_msg (highest <= s + ROUND_CAP,
                 "%s: the first round skipped near blocks: up to %" PRIu64,
                 policy, highest);

  /* Reading on: the lookahead grows past one round's worth. */
  for (uint64_t b = s + 1; b < s + 6; b++) {
    r = rounds_now (pf);
    read_block (pf, b);
    wait_observed (pf, ++seen, r);
  }
  n = predicted_blocks (&highest);
  ck_assert_msg (highest >= s + 6 + ROUND_CAP,
                 "%s: lookahead stuck at %" PRIu64 " after 6 reads at %"
                 PRIu64, policy, highest, s);
  ck_assert_uint_le (n, 6 * ROUND_CAP);

  prefetcher_free (pf);
  free_volume (v);
}
END_TEST

/* Every stream of a batch gets its round.  The accesses of four
 * interleaved sequential readers are all waiting when the predictor
 * thread starts (as when it falls behind on a busy machine): each
 * reader's next block is queued, not only the last access's reader's.
 */
START_TEST (test_batch_streams)
{
  struct volume *v = fake_volume ();
  struct prefetch_config cfg = {
    .block_size = BLOCK, .nr_blocks = NR_BLOCKS, .policy = "ngram",
  };
  char err[256];
  struct prefetcher *pf = prefetcher_new (&cfg, err, sizeof err);
  struct prefetch_stats st;
  const unsigned readers = 4, reads = 8;
  const uint64_t spacing = 10000;

  ck_assert_msg (pf != NULL, "prefetcher_new: %s", err);
  clear_records ();
  for (unsigned i = 0; i < readers * reads; i++) {
    uint64_t b = (i % readers) * spacing + i / readers;

    read_block (pf, b);
    residency_mark (v->res, b, 1, MARK_COPIED);
  }
  ck_assert_int_eq (prefetcher_start (pf, v, record_request, never_busy,
                                      NULL), 0);
  wait_observed (pf, readers * reads, 0);
  for (int i = 0; i < 5000; i++) {
    prefetcher_get_stats (pf, &st);
    if (st.rounds >= readers)
      break;
    usleep (1000);
  }
  ck_assert_msg (st.rounds >= readers && st.batched_rounds >= readers - 1,
                 "%" PRIu64 " rounds, %" PRIu64 " batched for %u readers",
                 st.rounds, st.batched_rounds, readers);
  for (unsigned r = 0; r < readers; r++) {
    uint64_t next = r * spacing + reads;
    bool queued = false;

    pthread_mutex_lock (&rec_lock);
    for (size_t i = 0; i < nr_rec && !queued; i++)
      queued = !rec[i].hot && rec[i].first <= next &&
        next < rec[i].first + rec[i].count;
    pthread_mutex_unlock (&rec_lock);
    ck_assert_msg (queued, "reader %u: its next block %" PRIu64
                   " was not queued", r, next);
  }
  prefetcher_free (pf);
  free_volume (v);
}
END_TEST

static Suite *
prefetcher_suite (void)
{
  Suite *s = suite_create ("prefetcher");
  TCase *tc = tcase_create ("round");

  tcase_set_timeout (tc, 120);
  tcase_add_loop_test (tc, test_round_cap, 0, 2);
  tcase_add_test (tc, test_batch_streams);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (prefetcher_suite ());
  int failed;

  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
