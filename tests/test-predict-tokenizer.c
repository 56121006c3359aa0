/* test-predict-tokenizer.c: delta vocabulary (admission on second
 * sighting, recycling, refusal, hash table integrity) and stream
 * detection (interleaved sequential streams, bounded slots). */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "rng.h"
#include "tokenizer.h"
#include "vocab.h"

START_TEST (test_vocab_admission)
{
  struct pred_vocab v;
  int32_t rec;
  ck_assert_int_eq (pred_vocab_init (&v, 4), 0);        /* ids 1..3 */
  ck_assert_uint_eq (pred_vocab_observe (&v, 7, &rec), PRED_VOCAB_OOV);
  ck_assert_int_eq (rec, -1);
  uint32_t id7 = pred_vocab_observe (&v, 7, &rec);      /* second sighting */
  ck_assert_uint_ne (id7, PRED_VOCAB_OOV);
  ck_assert_int_eq (pred_vocab_delta (&v, id7), 7);
  ck_assert_uint_eq (pred_vocab_lookup (&v, 7), id7);
  ck_assert_uint_eq (pred_vocab_observe (&v, 7, &rec), id7);
  pred_vocab_observe (&v, -2, &rec);
  uint32_t idm2 = pred_vocab_observe (&v, -2, &rec);
  pred_vocab_observe (&v, 0, &rec);
  uint32_t id0 = pred_vocab_observe (&v, 0, &rec);
  ck_assert_uint_eq (v.n, 4);
  /* Full: a new delta is admitted only over a token used at most once. */
  for (int i = 0; i < 10; i++) {
    pred_vocab_observe (&v, 7, &rec);
    pred_vocab_observe (&v, -2, &rec);
    pred_vocab_observe (&v, 0, &rec);
  }
  pred_vocab_observe (&v, 99, &rec);
  ck_assert_uint_eq (pred_vocab_observe (&v, 99, &rec), PRED_VOCAB_OOV);
  ck_assert_uint_ge (v.refused, 1);
  ck_assert_int_eq (rec, -1);
  /* Decay halves counts every 16*cap = 64 observations: after a long
   * stretch of only 7s, -2 and 0 become recyclable. */
  for (int i = 0; i < 400; i++)
    pred_vocab_observe (&v, 7, &rec);
  pred_vocab_observe (&v, 99, &rec);
  uint32_t id99 = pred_vocab_observe (&v, 99, &rec);
  ck_assert_uint_ne (id99, PRED_VOCAB_OOV);
  ck_assert (id99 == idm2 || id99 == id0);
  ck_assert_int_eq (rec, (int32_t) id99);
  ck_assert_uint_eq (pred_vocab_lookup (&v, 99), id99);
  ck_assert_uint_eq (pred_vocab_lookup (&v, 7), id7);
  ck_assert_uint_eq (v.recycled, 1);
  pred_vocab_free (&v);
}
END_TEST

/* Random admissions and recyclings: the hash always agrees with the
 * id -> delta table. */
START_TEST (test_vocab_integrity)
{
  struct pred_vocab v;
  struct pred_rng rng;
  int32_t rec;
  ck_assert_int_eq (pred_vocab_init (&v, 64), 0);
  pred_rng_seed (&rng, 8);
  for (int i = 0; i < 300000; i++) {
    int64_t d = (int64_t) pred_rng_below (&rng, 300) - 150;
    if (pred_rng_below (&rng, 4) == 0)
      d = (int64_t) pred_rng_below (&rng, 20);         /* a popular few */
    uint32_t id = pred_vocab_observe (&v, d, &rec);
    if (id != PRED_VOCAB_OOV)
      ck_assert_int_eq (pred_vocab_delta (&v, id), d);
  }
  for (unsigned id = 1; id < v.n; id++)
    ck_assert_uint_eq (pred_vocab_lookup (&v, pred_vocab_delta (&v, id)), id);
  ck_assert_uint_gt (v.recycled, 0);
  ck_assert_uint_le (v.n, 64);
  /* pred_vocab_set refuses duplicates and overflow. */
  int64_t dup[] = { 1, 2, 1 };
  ck_assert_int_eq (pred_vocab_set (&v, dup, 3), -1);
  int64_t many[64] = { 0 };
  for (int i = 0; i < 64; i++)
    many[i] = i;
  ck_assert_int_eq (pred_vocab_set (&v, many, 64), -1);
  ck_assert_int_eq (pred_vocab_set (&v, many, 63), 0);
  ck_assert_uint_eq (pred_vocab_lookup (&v, 62), 63);
  pred_vocab_free (&v);
}
END_TEST

static struct pred_access
rd (uint64_t t, uint64_t block, uint32_t nblocks)
{
  struct pred_access a;
  memset (&a, 0, sizeof a);
  a.time_us = t;
  a.op = PRED_OP_READ;
  a.offset = block * 65536;
  a.length = nblocks * 65536;
  return a;
}

START_TEST (test_interleaved_streams)
{
  struct pred_tokenizer t;
  struct pred_event ev;
  uint64_t pos[3] = { 1000, 50000, 900000 };
  unsigned slot[3], new_streams = 0, zero = 0;
  ck_assert_int_eq (pred_tokenizer_init (&t, 65536, 0, 8, 64, 32, 8), 0);
  for (unsigned i = 0; i < 300; i++) {
    unsigned s = (i * 7 + i / 5) % 3;           /* irregular interleaving */
    struct pred_access a = rd (i, pos[s], 2);
    ck_assert (pred_tokenizer_feed (&t, &a, &ev));
    pos[s] += 2;
    if (ev.new_stream) {
      new_streams++;
      slot[s] = ev.stream;
    }
    else {
      ck_assert_uint_eq (ev.stream, slot[s]);
      ck_assert_int_eq (ev.delta, 0);
      ck_assert_uint_eq (ev.ref, ev.block);
      zero += ev.token != PRED_VOCAB_OOV && pred_vocab_delta (&t.vocab, ev.token) == 0;
    }
    ck_assert_uint_eq (ev.nblocks, 2);
    ck_assert_uint_eq (ev.seq, i);
  }
  ck_assert_uint_eq (new_streams, 3);
  ck_assert_uint_ge (zero, 290);
  ck_assert_uint_eq (pred_streams_active (&t.streams, 10), 3);
  /* Flushes and empty accesses are not events. */
  struct pred_access f = { .op = PRED_OP_FLUSH };
  ck_assert (!pred_tokenizer_feed (&t, &f, &ev));
  struct pred_access z = rd (5, 5, 0);
  ck_assert (!pred_tokenizer_feed (&t, &z, &ev));
  pred_tokenizer_free (&t);
}
END_TEST

START_TEST (test_jumps_and_bounds)
{
  struct pred_tokenizer t;
  struct pred_event ev;
  ck_assert_int_eq (pred_tokenizer_init (&t, 4096, 1000, 4, 64, 16, 4), 0);
  struct pred_access a = rd (0, 0, 1);
  a.offset = 10 * 4096;
  a.length = 4096;
  ck_assert (pred_tokenizer_feed (&t, &a, &ev));
  ck_assert (ev.new_stream);
  ck_assert_int_eq (ev.parent, -1);
  ck_assert (!ev.have_ref);
  ck_assert_uint_eq (ev.token, PRED_VOCAB_OOV);
  unsigned prev = ev.stream;
  /* A jump far away: new stream, parent = previous, delta from its end. */
  a.offset = 500 * 4096;
  ck_assert (pred_tokenizer_feed (&t, &a, &ev));
  ck_assert (ev.new_stream);
  ck_assert_int_eq (ev.parent, (int) prev);
  ck_assert_int_eq (ev.delta, 500 - 11);
  ck_assert_int_eq (ev.gdelta, 490);
  /* Slightly behind the stream's end (within back = 4): same stream. */
  a.offset = 498 * 4096;
  ck_assert (pred_tokenizer_feed (&t, &a, &ev));
  ck_assert (!ev.new_stream);
  ck_assert_int_eq (ev.delta, -3);
  /* Beyond the volume: not an event; straddling the end: clamped. */
  a.offset = 1000 * 4096;
  ck_assert (!pred_tokenizer_feed (&t, &a, &ev));
  a.offset = 999 * 4096;
  a.length = 3 * 4096;
  ck_assert (pred_tokenizer_feed (&t, &a, &ev));
  ck_assert_uint_eq (ev.nblocks, 1);
  /* A random flood only recycles the 4 slots. */
  struct pred_rng rng;
  pred_rng_seed (&rng, 1);
  for (int i = 0; i < 10000; i++) {
    a.offset = pred_rng_below (&rng, 1000) * 4096;
    a.length = 4096;
    ck_assert (pred_tokenizer_feed (&t, &a, &ev));
    ck_assert_uint_lt (ev.stream, 4);
  }
  ck_assert_uint_le (t.vocab.n, 64);
  pred_tokenizer_free (&t);
}
END_TEST

static Suite *
tok_suite (void)
{
  Suite *s = suite_create ("predict-tokenizer");
  TCase *tc = tcase_create ("tokenizer");
  tcase_set_timeout (tc, 120);
  tcase_add_test (tc, test_vocab_admission);
  tcase_add_test (tc, test_vocab_integrity);
  tcase_add_test (tc, test_interleaved_streams);
  tcase_add_test (tc, test_jumps_and_bounds);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (tok_suite ());
  int failed;
  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
