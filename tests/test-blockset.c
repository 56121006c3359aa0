/* nbdshadow: unit tests for server/blockset.c, the residency radix tree.
 *
 * The main test drives a blockset and a reference implementation with
 * the same random operations and compares every answer, and the full
 * state every BATCH operations.  The reference is a flat bitmap for
 * small sets and a sorted list of runs for big ones (a flat bitmap of
 * 2^63 blocks would need 1 EiB).  Positions are biased towards the places
 * where a radix tree breaks: power-of-two boundaries (every level
 * boundary is one), the end of the set, and the edges of existing runs.
 *
 * The tree must be canonical (no node left all-full or all-empty), which
 * the public interface only shows through blockset_memory: so the full
 * comparison also rebuilds the same set twice from scratch, once by
 * setting its runs and once by clearing its gaps from a full set, and
 * checks that all three use the same memory.
 *
 * The seed is printed at start; BLOCKSET_SEED=N reproduces a run.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "blockset.h"

#define BATCH 1000
#define MAX_BLOCKS (UINT64_C (1) << 63)

static uint64_t seed;

/* Check's ck_assert_* record their location with a write(2) on every
 * call, even when they pass: with millions of checks that was most of
 * the run time.  These call into Check only when they fail.
 */
#define require(cond, ...)                                              \
  do { if (!(cond)) ck_abort_msg (__VA_ARGS__); } while (0)
#define require_true(cond)                                              \
  require ((cond), "%s is false (seed %" PRIu64 ")", #cond, seed)
#define require_u64(expr, want)                                         \
  do {                                                                  \
    const uint64_t got_ = (expr), want_ = (want);                       \
    require (got_ == want_, "%s = %" PRIu64 ", expected %" PRIu64       \
             " (seed %" PRIu64 ")", #expr, got_, want_, seed);          \
  } while (0)
#define require_ok(expr)                                                \
  do {                                                                  \
    const int r_ = (expr);                                              \
    require (r_ == 0, "%s = %d, expected 0 (seed %" PRIu64 ")",         \
             #expr, r_, seed);                                          \
  } while (0)

/*----------------------------------------------------------------------
 * A small, fast, seedable PRNG (splitmix64).
 */

static uint64_t rng_state;

static uint64_t
rnd (void)
{
  uint64_t z = (rng_state += UINT64_C (0x9e3779b97f4a7c15));

  z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

/* Uniform in [0, n), n > 0 (the bias of % is irrelevant here). */
static uint64_t
rnd_below (uint64_t n)
{
  return rnd () % n;
}

/* __builtin_popcountll is a libgcc call without -mpopcnt. */
static unsigned
popcount (uint64_t x)
{
  x = x - ((x >> 1) & UINT64_C (0x5555555555555555));
  x = (x & UINT64_C (0x3333333333333333)) +
      ((x >> 2) & UINT64_C (0x3333333333333333));
  x = (x + (x >> 4)) & UINT64_C (0x0f0f0f0f0f0f0f0f);
  return (x * UINT64_C (0x0101010101010101)) >> 56;
}

/*----------------------------------------------------------------------
 * Reference implementations: a flat bitmap, or a sorted run list.
 * Runs are [first, end), disjoint, non-adjacent, in increasing order.
 */

struct run {
  uint64_t first, end;
};

struct ref {
  uint64_t size;
  uint64_t count;
  bool flat;
  uint64_t *words;              /* flat */
  struct run *runs;             /* run list */
  size_t nr_runs, cap_runs;
};

static void
ref_init (struct ref *ref, uint64_t size, bool flat)
{
  memset (ref, 0, sizeof *ref);
  ref->size = size;
  ref->flat = flat;
  if (flat) {
    ref->words = calloc ((size + 63) / 64, sizeof (uint64_t));
    require_true (ref->words != NULL);
  }
  else {
    /* Never NULL, even when empty: memcpy (NULL, ..., 0) is undefined. */
    ref->cap_runs = 16;
    ref->runs = malloc (ref->cap_runs * sizeof (struct run));
    require_true (ref->runs != NULL);
  }
}

static void
ref_free (struct ref *ref)
{
  free (ref->words);
  free (ref->runs);
}

/* First run index whose end is >= x. */
static size_t
runs_end_ge (const struct ref *ref, uint64_t x)
{
  size_t lo = 0, hi = ref->nr_runs;

  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;

    if (ref->runs[mid].end >= x)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

/* First run index whose first is > x. */
static size_t
runs_first_gt (const struct ref *ref, uint64_t x)
{
  size_t lo = 0, hi = ref->nr_runs;

  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;

    if (ref->runs[mid].first > x)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

/* Replace runs lo .. hi-1 by the k runs in new_runs. */
static void
runs_replace (struct ref *ref, size_t lo, size_t hi,
              const struct run *new_runs, size_t k)
{
  const size_t n = ref->nr_runs - (hi - lo) + k;

  if (n > ref->cap_runs) {
    ref->cap_runs = n * 2 + 16;
    ref->runs = realloc (ref->runs, ref->cap_runs * sizeof (struct run));
    require_true (ref->runs != NULL);
  }
  memmove (&ref->runs[lo + k], &ref->runs[hi],
           (ref->nr_runs - hi) * sizeof (struct run));
  memcpy (&ref->runs[lo], new_runs, k * sizeof (struct run));
  ref->nr_runs = n;
}

static void
runs_mark (struct ref *ref, uint64_t first, uint64_t end, bool value)
{
  struct run pieces[2];
  size_t lo, hi, i, k = 0;

  if (value) {
    /* Swallow the runs that overlap or touch [first, end). */
    lo = runs_end_ge (ref, first);
    hi = runs_first_gt (ref, end);
    pieces[0].first = first;
    pieces[0].end = end;
    if (lo < hi) {
      if (ref->runs[lo].first < first)
        pieces[0].first = ref->runs[lo].first;
      if (ref->runs[hi - 1].end > end)
        pieces[0].end = ref->runs[hi - 1].end;
    }
    k = 1;
  }
  else {
    /* Cut the runs that overlap [first, end). */
    lo = runs_end_ge (ref, first + 1);
    hi = runs_first_gt (ref, end - 1);
    if (lo < hi && ref->runs[lo].first < first)
      pieces[k++] = (struct run) { ref->runs[lo].first, first };
    if (lo < hi && ref->runs[hi - 1].end > end)
      pieces[k++] = (struct run) { end, ref->runs[hi - 1].end };
  }

  for (i = lo; i < hi; ++i)
    ref->count -= ref->runs[i].end - ref->runs[i].first;
  for (i = 0; i < k; ++i)
    ref->count += pieces[i].end - pieces[i].first;
  runs_replace (ref, lo, hi, pieces, k);
}

static void
flat_mark (struct ref *ref, uint64_t first, uint64_t end, bool value)
{
  uint64_t blk = first;

  while (blk < end) {
    const uint64_t w = blk / 64;
    const unsigned lo = blk % 64;
    const unsigned hi = end - w * 64 >= 64 ? 63 : (end - 1) % 64;
    const uint64_t mask = (UINT64_MAX << lo) & (UINT64_MAX >> (63 - hi));
    const uint64_t old = ref->words[w];

    ref->words[w] = value ? old | mask : old & ~mask;
    ref->count += popcount (ref->words[w]);
    ref->count -= popcount (old);
    blk = w * 64 + hi + 1;
  }
}

/* [first, end) already clipped to the size. */
static void
ref_mark (struct ref *ref, uint64_t first, uint64_t end, bool value)
{
  if (first >= end)
    return;
  if (ref->flat)
    flat_mark (ref, first, end, value);
  else
    runs_mark (ref, first, end, value);
}

static bool
ref_test (const struct ref *ref, uint64_t blk)
{
  size_t i;

  if (ref->flat)
    return (ref->words[blk / 64] >> (blk % 64)) & 1;
  i = runs_end_ge (ref, blk + 1);
  return i < ref->nr_runs && ref->runs[i].first <= blk;
}

/* The first block >= from whose state is value, or size. */
static uint64_t
ref_next (const struct ref *ref, uint64_t from, bool value)
{
  size_t i;

  if (from >= ref->size)
    return ref->size;

  if (ref->flat) {
    uint64_t w = from / 64;
    uint64_t word = value ? ref->words[w] : ~ref->words[w];

    word &= UINT64_MAX << (from % 64);
    while (word == 0) {
      if (++w >= (ref->size + 63) / 64)
        return ref->size;
      word = value ? ref->words[w] : ~ref->words[w];
    }
    from = w * 64 + __builtin_ctzll (word);
    return from < ref->size ? from : ref->size;
  }

  i = runs_end_ge (ref, from + 1);
  if (value)
    return i == ref->nr_runs ? ref->size
      : ref->runs[i].first > from ? ref->runs[i].first : from;
  return i < ref->nr_runs && ref->runs[i].first <= from
    ? ref->runs[i].end : from;
}

/*----------------------------------------------------------------------
 * Collecting runs, from the blockset and from the reference.
 */

struct runlist {
  struct run *runs;
  size_t n, cap;
  size_t stop_after;            /* 0: never stop */
};

static void
runlist_add (struct runlist *l, uint64_t first, uint64_t end)
{
  if (l->n == l->cap) {
    l->cap = l->cap * 2 + 16;
    l->runs = realloc (l->runs, l->cap * sizeof (struct run));
    require_true (l->runs != NULL);
  }
  l->runs[l->n++] = (struct run) { first, end };
}

static int
collect_run (uint64_t first, uint64_t count, void *opaque)
{
  struct runlist *l = opaque;

  /* Runs are maximal and in order: each starts after a gap.  (This
   * also stops a broken foreach_run that would loop for ever.)
   */
  require (count > 0 && count <= UINT64_MAX - first,
           "foreach_run: run of %" PRIu64 " at %" PRIu64 " (seed %" PRIu64 ")",
           count, first, seed);
  require (l->n == 0 || first > l->runs[l->n - 1].end,
           "foreach_run: run at %" PRIu64 " after a run ending at %" PRIu64
           " (seed %" PRIu64 ")", first, l->runs[l->n - 1].end, seed);
  runlist_add (l, first, first + count);
  if (l->stop_after && l->n == l->stop_after)
    return 42;
  return 0;
}

/* The reference's runs inside [from, to), clipped to it. */
static void
ref_runs (const struct ref *ref, uint64_t from, uint64_t to,
          struct runlist *l)
{
  if (to > ref->size)
    to = ref->size;
  l->n = 0;
  while (from < to) {
    const uint64_t first = ref_next (ref, from, true);
    uint64_t end;

    if (first >= to)
      break;
    end = ref_next (ref, first, false);
    if (end > to)
      end = to;
    runlist_add (l, first, end);
    from = end;
  }
}

static void
tree_runs (const struct blockset *bs, uint64_t from, uint64_t to,
           struct runlist *l)
{
  l->n = 0;
  require_ok (blockset_foreach_run (bs, from, to, collect_run, l));
}

static void
assert_same_runs (const struct runlist *got, const struct runlist *want,
                  const char *what, uint64_t op)
{
  size_t i;

  require (got->n == want->n,
                 "%s, op %" PRIu64 ": %zu runs, expected %zu (seed %" PRIu64 ")",
                 what, op, got->n, want->n, seed);
  for (i = 0; i < got->n; ++i)
    require (got->runs[i].first == want->runs[i].first &&
                   got->runs[i].end == want->runs[i].end,
                   "%s, op %" PRIu64 ": run %zu is [%" PRIu64 ", %" PRIu64
                   "), expected [%" PRIu64 ", %" PRIu64 ") (seed %" PRIu64 ")",
                   what, op, i, got->runs[i].first, got->runs[i].end,
                   want->runs[i].first, want->runs[i].end, seed);
}

/*----------------------------------------------------------------------
 * Random positions and lengths, biased towards the interesting places.
 */

static uint64_t
rnd_pos (const struct ref *ref)
{
  const uint64_t n = ref->size;
  uint64_t p;
  unsigned k;

  switch (rnd_below (10)) {
  case 0: case 1: case 2:       /* anywhere */
    return rnd_below (n);

  case 3: case 4:               /* near a power-of-two boundary */
    k = rnd_below (64);
    p = rnd_below (n) & ~((UINT64_C (1) << k) - 1);
    return p + rnd_below (5) - 2;   /* may wrap or pass n: clipped later */

  case 5:                       /* near the end of the set */
    return n - 1 + rnd_below (5) - 2;

  case 6:                       /* near the start */
    return rnd_below (5);

  default:                      /* near the edge of a run */
    p = ref_next (ref, rnd_below (n), rnd () & 1);
    return p + rnd_below (5) - 2;
  }
}

static uint64_t
rnd_count (const struct ref *ref, uint64_t first)
{
  const uint64_t n = ref->size;
  unsigned k;

  switch (rnd_below (16)) {
  case 0: case 1: case 2: case 3:
    return 1;
  case 4: case 5: case 6:
    return 1 + rnd_below (64);
  case 7: case 8:
    return 1 + rnd_below (10000);
  case 9: case 10: case 11:     /* log-uniform, any size */
    k = rnd_below (64);
    return 1 + (rnd () & ((UINT64_C (1) << k) - 1));
  case 12: case 13:             /* up to near a power-of-two boundary */
    k = rnd_below (64);
    return ((first | ((UINT64_C (1) << k) - 1)) + 1 - first)
      + rnd_below (5) - 2;
  case 14:                      /* up to near the edge of a run */
    return ref_next (ref, first, rnd () & 1) - first + rnd_below (3) - 1;
  default:                      /* clipping and degenerate cases */
    switch (rnd_below (4)) {
    case 0: return 0;
    case 1: return UINT64_MAX;
    case 2: return n - first;
    default: return n - first + 1;
    }
  }
}

/*----------------------------------------------------------------------
 * The random test.
 */

static size_t
memory_of_rebuild (uint64_t size, const struct runlist *runs, bool by_clearing)
{
  struct blockset *bs = blockset_new (size);
  uint64_t blk = 0;
  size_t i, mem;

  require_true (bs != NULL);
  if (by_clearing) {
    require_ok (blockset_set_range (bs, 0, size));
    for (i = 0; i <= runs->n; ++i) {
      const uint64_t end = i < runs->n ? runs->runs[i].first : size;

      require_ok (blockset_clear_range (bs, blk, end - blk));
      if (i < runs->n)
        blk = runs->runs[i].end;
    }
  }
  else {
    for (i = 0; i < runs->n; ++i)
      require_ok (blockset_set_range (bs, runs->runs[i].first,
                                      runs->runs[i].end -
                                      runs->runs[i].first));
  }
  mem = blockset_memory (bs);
  blockset_free (bs);
  return mem;
}

static void
compare_all (const struct blockset *bs, const struct ref *ref, uint64_t op,
             struct runlist *got, struct runlist *want)
{
  size_t mem, mem_set, mem_clear;

  require (blockset_count (bs) == ref->count,
                 "op %" PRIu64 ": count %" PRIu64 ", expected %" PRIu64
                 " (seed %" PRIu64 ")",
                 op, blockset_count (bs), ref->count, seed);
  tree_runs (bs, 0, UINT64_MAX, got);
  ref_runs (ref, 0, UINT64_MAX, want);
  assert_same_runs (got, want, "full state", op);

  /* Canonical form: the same set built two other ways, same memory. */
  mem = blockset_memory (bs);
  mem_set = memory_of_rebuild (ref->size, want, false);
  mem_clear = memory_of_rebuild (ref->size, want, true);
  require (mem == mem_set && mem == mem_clear,
                 "op %" PRIu64 ": memory %zu, rebuilt by setting %zu, "
                 "by clearing %zu: a node was not collapsed (seed %" PRIu64 ")",
                 op, mem, mem_set, mem_clear, seed);
}

static void
one_random_op (struct blockset *bs, struct ref *ref, uint64_t op,
               struct runlist *got, struct runlist *want)
{
  const uint64_t n = ref->size;
  const unsigned what = rnd_below (100);
  uint64_t first, count, end, blk;

  if (what < 60) {              /* set_range or clear_range */
    const bool value = what < 30;
    int r;

    first = rnd_pos (ref);
    count = rnd_count (ref, first);
    r = value ? blockset_set_range (bs, first, count)
              : blockset_clear_range (bs, first, count);
    require_ok (r);
    if (first < n && count > 0) {
      end = count > n - first ? n : first + count;
      ref_mark (ref, first, end, value);
    }
  }
  else if (what < 75) {         /* test */
    blk = rnd_pos (ref) % n;
    require (blockset_test (bs, blk) == ref_test (ref, blk),
                   "op %" PRIu64 ": test (%" PRIu64 ") is %d (seed %" PRIu64 ")",
                   op, blk, blockset_test (bs, blk), seed);
  }
  else if (what < 95) {         /* next_set or next_clear */
    const bool value = what < 85;
    uint64_t got_next;

    blk = rnd_pos (ref);
    got_next = value ? blockset_next_set (bs, blk)
                     : blockset_next_clear (bs, blk);

    require (got_next == ref_next (ref, blk, value),
                   "op %" PRIu64 ": next_%s (%" PRIu64 ") = %" PRIu64
                   ", expected %" PRIu64 " (seed %" PRIu64 ")",
                   op, value ? "set" : "clear", blk, got_next,
                   ref_next (ref, blk, value), seed);
  }
  else if (what < 97) {         /* count */
    require_u64 (blockset_count (bs), ref->count);
  }
  else {                        /* foreach_run on a window, maybe stopping */
    first = rnd_pos (ref);
    end = first + rnd_count (ref, first);
    if (end < first)
      end = UINT64_MAX;
    ref_runs (ref, first, end, want);
    if (what == 99 && want->n > 0) {
      const size_t stop = 1 + rnd_below (want->n);
      int r;

      got->n = 0;
      got->stop_after = stop;
      r = blockset_foreach_run (bs, first, end, collect_run, got);
      got->stop_after = 0;
      require_u64 (r, 42);
      want->n = stop;
    }
    else
      tree_runs (bs, first, end, got);
    assert_same_runs (got, want, "foreach_run window", op);
  }
}

static void
random_test (uint64_t size, bool flat, uint64_t nr_ops)
{
  struct blockset *bs = blockset_new (size);
  struct ref ref;
  struct runlist got = { 0 }, want = { 0 };
  size_t empty_memory;
  uint64_t op;

  require_true (bs != NULL);
  ref_init (&ref, size, flat);
  empty_memory = blockset_memory (bs);

  for (op = 1; op <= nr_ops; ++op) {
    one_random_op (bs, &ref, op, &got, &want);
    if (op % BATCH == 0)
      compare_all (bs, &ref, op, &got, &want);
  }
  compare_all (bs, &ref, op, &got, &want);

  require_ok (blockset_clear_range (bs, 0, size));
  require_u64 (blockset_count (bs), 0);
  require_u64 (blockset_memory (bs), empty_memory);

  free (got.runs);
  free (want.runs);
  ref_free (&ref);
  blockset_free (bs);
}

/* Sizes and numbers of operations: > 1,000,000 operations in all. */
START_TEST (test_random_flat_tiny)
{
  random_test (1, true, 20000);
  random_test (63, true, 50000);
  random_test (64, true, 50000);
  random_test (65, true, 50000);
}
END_TEST

START_TEST (test_random_flat_small)
{
  random_test (4096 + 1, true, 100000);
  random_test (4096 * 64 + 1, true, 120000);   /* one level more */
}
END_TEST

START_TEST (test_random_flat_odd)
{
  random_test (1000003, true, 150000);         /* a prime */
}
END_TEST

START_TEST (test_random_runs_medium)
{
  random_test ((UINT64_C (1) << 24) + 1, false, 100000);
  /* A size of the seed's choosing, not a multiple of anything much. */
  random_test (2 + rnd_below (UINT64_C (1) << 40) * 2 + 1, false, 100000);
}
END_TEST

START_TEST (test_random_runs_huge)
{
  random_test (UINT64_C (1) << 51, false, 150000);
  random_test (MAX_BLOCKS, false, 150000);
}
END_TEST

/*----------------------------------------------------------------------
 * Edge cases.
 */

START_TEST (test_new_limits)
{
  struct blockset *bs;

  errno = 0;
  require_true (NULL == blockset_new (0));
  require_u64 (errno, EINVAL);
  errno = 0;
  require_true (NULL == blockset_new (MAX_BLOCKS + 1));
  require_u64 (errno, EINVAL);
  require_true (NULL == blockset_new (UINT64_MAX));

  bs = blockset_new (MAX_BLOCKS);
  require_true (bs != NULL);
  require_u64 (blockset_size (bs), MAX_BLOCKS);
  require_u64 (blockset_count (bs), 0);
  require_u64 (blockset_next_set (bs, 0), MAX_BLOCKS);
  require_u64 (blockset_next_clear (bs, MAX_BLOCKS - 1),
                     MAX_BLOCKS - 1);
  blockset_free (bs);

  bs = blockset_new (1);
  require_true (bs != NULL);
  require_u64 (blockset_size (bs), 1);
  require_true (!blockset_test (bs, 0));
  require_ok (blockset_set_range (bs, 0, 1));
  require_true (blockset_test (bs, 0));
  require_u64 (blockset_count (bs), 1);
  require_u64 (blockset_next_clear (bs, 0), 1);
  blockset_free (bs);

  blockset_free (NULL);
}
END_TEST

/* Two blocks on either side of b, then one each, then none. */
static void
check_boundary (struct blockset *bs, uint64_t b, size_t empty_memory)
{
  const uint64_t n = blockset_size (bs);
  struct runlist l = { 0 };

  require_ok (blockset_set_range (bs, b - 1, 2));
  require_u64 (blockset_count (bs), 2);
  require_true (!blockset_test (bs, b - 2));
  require_true (blockset_test (bs, b - 1));
  require_true (blockset_test (bs, b));
  if (b + 1 < n)
    require_true (!blockset_test (bs, b + 1));
  require_u64 (blockset_next_set (bs, 0), b - 1);
  require_u64 (blockset_next_set (bs, b), b);
  require_u64 (blockset_next_clear (bs, b - 1), b + 1);
  require_u64 (blockset_next_set (bs, b + 1), n);
  tree_runs (bs, 0, UINT64_MAX, &l);
  require_u64 (l.n, 1);
  require_u64 (l.runs[0].first, b - 1);
  require_u64 (l.runs[0].end, b + 1);
  tree_runs (bs, b, b + 1, &l);
  require_u64 (l.n, 1);
  require_u64 (l.runs[0].first, b);
  require_u64 (l.runs[0].end, b + 1);

  require_ok (blockset_clear_range (bs, b - 1, 1));
  require_u64 (blockset_next_set (bs, 0), b);
  require_u64 (blockset_count (bs), 1);
  require_ok (blockset_clear_range (bs, b, 1));
  require_u64 (blockset_next_set (bs, 0), n);
  require_u64 (blockset_count (bs), 0);
  require_u64 (blockset_memory (bs), empty_memory);

  /* The complement: everything but b - 1 and b. */
  require_ok (blockset_set_range (bs, 0, n));
  require_ok (blockset_clear_range (bs, b - 1, 2));
  require_u64 (blockset_count (bs), n - 2);
  require_u64 (blockset_next_clear (bs, 0), b - 1);
  require_u64 (blockset_next_set (bs, b - 1), b + 1 < n ? b + 1 : n);
  require_true (blockset_test (bs, b - 2));
  require_true (!blockset_test (bs, b));
  require_ok (blockset_set_range (bs, b - 1, 2));
  require_u64 (blockset_count (bs), n);
  require_u64 (blockset_memory (bs), empty_memory);

  /* A range from just below b to the end, then its removal. */
  require_ok (blockset_clear_range (bs, b - 1, UINT64_MAX));
  require_u64 (blockset_count (bs), b - 1);
  require_u64 (blockset_next_clear (bs, 0), b - 1);
  require_ok (blockset_clear_range (bs, 0, n));
  require_u64 (blockset_memory (bs), empty_memory);

  free (l.runs);
}

/* Every power of two and a few multiples of them are a level boundary
 * for some layout; cross each one, in sets of several sizes.
 */
START_TEST (test_level_boundaries)
{
  const uint64_t sizes[] = {
    MAX_BLOCKS, UINT64_C (1) << 51, (UINT64_C (1) << 51) - 12345,
    (UINT64_C (1) << 34) + 1, 1000003, 4096 * 64 + 1,
  };
  size_t s;

  for (s = 0; s < sizeof sizes / sizeof sizes[0]; ++s) {
    struct blockset *bs = blockset_new (sizes[s]);
    const size_t empty_memory = blockset_memory (bs);
    unsigned j, m;

    for (j = 1; j < 63; ++j)
      for (m = 1; m <= 7; m += 2) {
        const uint64_t b = (uint64_t) m << j;

        if (b < sizes[s])
          check_boundary (bs, b, empty_memory);
      }
    check_boundary (bs, sizes[s] - 1, empty_memory);
    blockset_free (bs);
  }
}
END_TEST

START_TEST (test_clipping)
{
  struct blockset *bs = blockset_new (1000);
  struct runlist l = { 0 };

  require_ok (blockset_set_range (bs, 990, 100));
  require_u64 (blockset_count (bs), 10);
  require_true (blockset_test (bs, 999));
  require_true (!blockset_test (bs, 1000));        /* out of range: absent */
  require_ok (blockset_set_range (bs, 1000, 5));
  require_ok (blockset_set_range (bs, UINT64_MAX, UINT64_MAX));
  require_ok (blockset_set_range (bs, 5, 0));
  require_u64 (blockset_count (bs), 10);
  require_u64 (blockset_next_set (bs, 0), 990);
  require_u64 (blockset_next_clear (bs, 990), 1000);
  require_u64 (blockset_next_set (bs, 1005), 1000);
  require_u64 (blockset_next_clear (bs, UINT64_MAX), 1000);

  require_ok (blockset_set_range (bs, 5, UINT64_MAX));
  require_u64 (blockset_count (bs), 995);
  tree_runs (bs, 0, UINT64_MAX, &l);
  require_u64 (l.n, 1);
  require_u64 (l.runs[0].first, 5);
  require_u64 (l.runs[0].end, 1000);
  tree_runs (bs, 998, 5000, &l);
  require_u64 (l.n, 1);
  require_u64 (l.runs[0].first, 998);
  require_u64 (l.runs[0].end, 1000);
  tree_runs (bs, 2000, 3000, &l);
  require_u64 (l.n, 0);
  tree_runs (bs, 50, 50, &l);
  require_u64 (l.n, 0);
  tree_runs (bs, 60, 50, &l);
  require_u64 (l.n, 0);

  require_ok (blockset_clear_range (bs, 0, UINT64_MAX));
  require_u64 (blockset_count (bs), 0);
  require_u64 (blockset_next_set (bs, 0), 1000);

  free (l.runs);
  blockset_free (bs);
}
END_TEST

/* Fill a set in pieces, in random order, with scattered blocks first:
 * the memory must come back to the bare handle when it is full, and
 * again when it is emptied the same way.
 */
static void
fill_and_empty (uint64_t size, unsigned nr_pieces)
{
  struct blockset *bs = blockset_new (size);
  const size_t empty_memory = blockset_memory (bs);
  uint64_t *cut = malloc ((nr_pieces + 1) * sizeof *cut);
  unsigned *order = malloc (nr_pieces * sizeof *order);
  unsigned i, pass;

  require_true (bs != NULL);
  require_true (cut != NULL);
  require_true (order != NULL);

  /* Scattered blocks: memory must grow, or the test proves nothing. */
  for (i = 0; i < 100; ++i)
    require_ok (blockset_set_range (bs, rnd_below (size), 1));
  if (blockset_count (bs) < size)
    require_true (blockset_memory (bs) > empty_memory);

  for (pass = 0; pass < 2; ++pass) {
    const bool value = pass == 0;

    /* nr_pieces pieces with random cuts (some may be empty). */
    cut[0] = 0;
    cut[nr_pieces] = size;
    for (i = 1; i < nr_pieces; ++i)
      cut[i] = rnd_below (size);
    for (i = 1; i < nr_pieces; ++i) {     /* insertion sort */
      unsigned j = i;
      const uint64_t c = cut[i];

      while (j > 1 && cut[j - 1] > c) {
        cut[j] = cut[j - 1];
        j--;
      }
      cut[j] = c;
    }
    for (i = 0; i < nr_pieces; ++i)
      order[i] = i;
    for (i = nr_pieces - 1; i > 0; --i) { /* shuffle */
      const unsigned j = rnd_below (i + 1);
      const unsigned t = order[i];

      order[i] = order[j];
      order[j] = t;
    }

    for (i = 0; i < nr_pieces; ++i) {
      const uint64_t first = cut[order[i]];
      const uint64_t count = cut[order[i] + 1] - first;
      const int r = value ? blockset_set_range (bs, first, count)
                          : blockset_clear_range (bs, first, count);

      require_ok (r);
    }

    require_u64 (blockset_count (bs), value ? size : 0);
    require_u64 (blockset_memory (bs), empty_memory);
    require_u64 (blockset_next_clear (bs, 0), value ? size : 0);
    require_u64 (blockset_next_set (bs, 0), value ? 0 : size);
  }

  free (cut);
  free (order);
  blockset_free (bs);
}

START_TEST (test_full_collapses)
{
  const uint64_t sizes[] = {
    1, 63, 64, 65, 4096, 4097, 1000003, UINT64_C (1) << 34,
    (UINT64_C (1) << 51) + 7, MAX_BLOCKS - 1, MAX_BLOCKS,
  };
  size_t s;

  for (s = 0; s < sizeof sizes / sizeof sizes[0]; ++s) {
    fill_and_empty (sizes[s], 2);
    fill_and_empty (sizes[s], 1000);
  }
}
END_TEST

/* Block by block, in random order: every leaf and every node must
 * collapse as its last block arrives.
 */
START_TEST (test_full_collapses_block_by_block)
{
  const uint64_t size = 4096 * 64 + 4096 + 3;
  struct blockset *bs = blockset_new (size);
  const size_t empty_memory = blockset_memory (bs);
  uint64_t *order = malloc (size * sizeof *order);
  size_t peak = 0;
  uint64_t i;

  require_true (order != NULL);
  for (i = 0; i < size; ++i)
    order[i] = i;
  for (i = size - 1; i > 0; --i) {
    const uint64_t j = rnd_below (i + 1);
    const uint64_t t = order[i];

    order[i] = order[j];
    order[j] = t;
  }

  for (i = 0; i < size; ++i) {
    require_ok (blockset_set_range (bs, order[i], 1));
    if (blockset_memory (bs) > peak)
      peak = blockset_memory (bs);
  }
  require_u64 (blockset_count (bs), size);
  require_u64 (blockset_memory (bs), empty_memory);
  require_true (peak > empty_memory + size / 16);

  for (i = 0; i < size; ++i)
    require_ok (blockset_clear_range (bs, order[i], 1));
  require_u64 (blockset_count (bs), 0);
  require_u64 (blockset_memory (bs), empty_memory);

  free (order);
  blockset_free (bs);
}
END_TEST

/* Memory follows fragmentation, not size: one run in the middle of a
 * 2^63-block set costs a few nodes, not a bitmap.
 */
START_TEST (test_memory_follows_runs)
{
  struct blockset *bs = blockset_new (MAX_BLOCKS);
  const size_t empty_memory = blockset_memory (bs);
  uint64_t i;

  require_u64 (blockset_set_range (bs, UINT64_C (1) << 40,
                                        UINT64_C (1) << 62), 0);
  require_true (blockset_memory (bs) < empty_memory + 4096);
  for (i = 0; i < 1000; ++i)
    require_ok (blockset_set_range (bs, i * 1000000007, 1));
  require_true (blockset_memory (bs) < empty_memory + 1000 * 2048);
  require_ok (blockset_clear_range (bs, 0, MAX_BLOCKS));
  require_u64 (blockset_memory (bs), empty_memory);
  blockset_free (bs);
}
END_TEST

struct stop_state {
  unsigned calls;
  unsigned stop_at;             /* 0: never stop */
  uint64_t last_first;
  uint64_t blocks;              /* total of the counts seen */
};

static int
stop_after (uint64_t first, uint64_t count, void *opaque)
{
  struct stop_state *s = opaque;

  s->calls++;
  s->last_first = first;
  s->blocks += count;
  return s->calls == s->stop_at ? -7 : 0;
}

START_TEST (test_foreach_early_stop)
{
  struct blockset *bs = blockset_new (1000);
  struct stop_state s = { .stop_at = 3 };
  uint64_t i;

  for (i = 10; i < 1000; i += 100)
    require_ok (blockset_set_range (bs, i, 10));

  require_u64 (blockset_foreach_run (bs, 0, 1000, stop_after, &s), -7);
  require_u64 (s.calls, 3);
  require_u64 (s.last_first, 210);
  require_u64 (s.blocks, 30);

  s = (struct stop_state) { .stop_at = 0 };
  require_ok (blockset_foreach_run (bs, 0, 1000, stop_after, &s));
  require_u64 (s.calls, 10);
  require_u64 (s.last_first, 910);
  require_u64 (s.blocks, 100);

  /* Starting inside a run clips it. */
  s = (struct stop_state) { .stop_at = 1 };
  require_u64 (blockset_foreach_run (bs, 215, 1000, stop_after, &s), -7);
  require_u64 (s.last_first, 215);
  require_u64 (s.blocks, 5);

  blockset_free (bs);
}
END_TEST

static Suite *
blockset_suite (void)
{
  Suite *s = suite_create ("blockset");
  TCase *edge = tcase_create ("edge");
  TCase *random = tcase_create ("random");

  tcase_add_test (edge, test_new_limits);
  tcase_add_test (edge, test_level_boundaries);
  tcase_add_test (edge, test_clipping);
  tcase_add_test (edge, test_full_collapses);
  tcase_add_test (edge, test_full_collapses_block_by_block);
  tcase_add_test (edge, test_memory_follows_runs);
  tcase_add_test (edge, test_foreach_early_stop);
  tcase_set_timeout (edge, 60);
  suite_add_tcase (s, edge);

  tcase_add_test (random, test_random_flat_tiny);
  tcase_add_test (random, test_random_flat_small);
  tcase_add_test (random, test_random_flat_odd);
  tcase_add_test (random, test_random_runs_medium);
  tcase_add_test (random, test_random_runs_huge);
  tcase_set_timeout (random, 120);
  suite_add_tcase (s, random);

  return s;
}

int
main (void)
{
  const char *env = getenv ("BLOCKSET_SEED");
  SRunner *sr;
  int failed;

  seed = env ? strtoull (env, NULL, 0) : UINT64_C (20261125);
  rng_state = seed;
  printf ("test-blockset: seed %" PRIu64 " (set BLOCKSET_SEED to change it)\n",
          seed);
  fflush (stdout);

  sr = srunner_create (blockset_suite ());
  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
