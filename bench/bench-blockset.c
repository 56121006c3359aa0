/* nbdshadow: benchmark of the residency radix tree (server/blockset.c)
 * against its peer, a flat bitmap (what nbdkit's cow/cache filters and
 * dm-clone use), measured in the same run on the same data.
 *
 * For a 1 TiB and a 64 TiB volume of 4K blocks, in five states (empty,
 * full, first half resident, 1% and 50% of the blocks at random), it
 * prints, as markdown tables:
 *
 *   - memory of the tree (blockset_memory, bytes asked of malloc), the
 *     growth of the process's RSS while building it (so malloc overhead
 *     shows), the flat bitmap's size, and the ratio tree / flat;
 *   - ns per lookup (blockset_test at random blocks), per mark
 *     (blockset_set_range of one random block, undone untimed so that
 *     the state does not drift), and per next_clear from a random block,
 *     for the tree and for the flat bitmap, and the ratio tree / flat.
 *
 * Every timing is the median of REPS repetitions, with clock_gettime
 * (CLOCK_MONOTONIC).  The flat bitmap is memset first so that its pages
 * are really there, as they would be after some use; a fresh calloc
 * would read the shared zero page.
 *
 * States are built the way a migration builds them: "1% random" by
 * single-block marks in random order (copy-on-read); "50% random" (each
 * block in with probability 1/2) by setting, in increasing order, the
 * runs of random 64-bit words, because 2^33 single-block marks in random
 * order would take over an hour on a small machine (the output gives the
 * estimate from the measured 1% rate).  The state is the same either way.
 *
 * Usage: bench-blockset [--quick] [--reps N] [--skip-64t-50]
 *   --quick         the 1 TiB volume only, 3 repetitions
 *   --skip-64t-50   leave out the 64 TiB 50% random state (it takes
 *                   minutes to build and 4 GiB of memory for tree + flat)
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blockset.h"

#define BLOCK_SIZE      4096
#define NR_LOOKUPS      (1u << 20)     /* per repetition */
#define NR_MARKS        (1u << 17)     /* per repetition */
#define NR_NEXT         (1u << 16)     /* per repetition, at most */
#define NEXT_BUDGET_NS  200000000.0    /* per repetition, flat scans */
#define MAX_REPS        31

static unsigned reps = 7;

/*----------------------------------------------------------------------
 * Clock, random numbers, memory.
 */

static double
now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int
compare_double (const void *a, const void *b)
{
  const double x = *(const double *) a, y = *(const double *) b;

  return (x > y) - (x < y);
}

static double
median (double *v, unsigned n)
{
  qsort (v, n, sizeof *v, compare_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static uint64_t rng_state;

static uint64_t
rnd (void)
{
  uint64_t z = (rng_state += UINT64_C (0x9e3779b97f4a7c15));

  z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static size_t
rss_bytes (void)
{
  FILE *fp = fopen ("/proc/self/statm", "r");
  unsigned long size, resident = 0;

  if (fp == NULL)
    return 0;
  if (fscanf (fp, "%lu %lu", &size, &resident) != 2)
    resident = 0;
  fclose (fp);
  return resident * (size_t) sysconf (_SC_PAGESIZE);
}

static void *
xmalloc (size_t n)
{
  void *p = malloc (n);

  if (p == NULL) {
    perror ("malloc");
    exit (EXIT_FAILURE);
  }
  return p;
}

static void
check (int r, const char *what)
{
  if (r == -1) {
    fprintf (stderr, "bench-blockset: %s: %s\n", what, strerror (errno));
    exit (EXIT_FAILURE);
  }
}

/*----------------------------------------------------------------------
 * The peer: a flat bitmap, one bit per block.
 */

struct flat {
  uint64_t nr_blocks;
  uint64_t nr_words;
  uint64_t *word;
};

static inline bool
flat_test (const struct flat *f, uint64_t blk)
{
  return (f->word[blk / 64] >> (blk % 64)) & 1;
}

static inline void
flat_set (struct flat *f, uint64_t blk)
{
  f->word[blk / 64] |= UINT64_C (1) << (blk % 64);
}

static inline void
flat_clear (struct flat *f, uint64_t blk)
{
  f->word[blk / 64] &= ~(UINT64_C (1) << (blk % 64));
}

/* A word at a time, as a reasonable bitmap does. */
static uint64_t
flat_next_clear (const struct flat *f, uint64_t from)
{
  uint64_t w = from / 64;
  uint64_t bits = ~f->word[w] & (UINT64_MAX << (from % 64));

  while (bits == 0) {
    if (++w == f->nr_words)
      return f->nr_blocks;
    bits = ~f->word[w];
  }
  from = w * 64 + __builtin_ctzll (bits);
  return from < f->nr_blocks ? from : f->nr_blocks;
}

/*----------------------------------------------------------------------
 * The states.
 */

enum state { EMPTY, FULL, FIRST_HALF, RANDOM_1, RANDOM_50 };
static const char *state_name[] = {
  "empty", "full", "first half", "1% random", "50% random",
};

/* Build the state in the flat bitmap (untimed) and then in the tree
 * (timed), from the same random numbers.  The RSS is read around the
 * tree's build only: the flat bitmap's pages are all touched before.
 */
struct built {
  double seconds;
  size_t rss_growth;
};

static void
build_flat (enum state state, struct flat *f, uint64_t seed)
{
  const uint64_t n = f->nr_blocks;
  uint64_t i, w;

  memset (f->word, 0, f->nr_words * sizeof (uint64_t));
  rng_state = seed;
  switch (state) {
  case EMPTY:
    break;
  case FULL:
    memset (f->word, 0xff, f->nr_words * sizeof (uint64_t));
    break;
  case FIRST_HALF:
    memset (f->word, 0xff, n / 2 / 64 * sizeof (uint64_t));
    break;
  case RANDOM_1:
    for (i = 0; i < n / 100; ++i)
      flat_set (f, rnd () % n);
    break;
  case RANDOM_50:
    for (w = 0; w < f->nr_words; ++w)
      f->word[w] = rnd ();
    break;
  }
}

static struct built
build_tree (enum state state, struct blockset *bs, uint64_t seed)
{
  const uint64_t n = blockset_size (bs);
  const size_t rss0 = rss_bytes ();
  const double t0 = now_ns ();
  struct built b;
  uint64_t i, w;
  size_t rss1;

  rng_state = seed;
  switch (state) {
  case EMPTY:
    break;
  case FULL:
    check (blockset_set_range (bs, 0, n), "set_range");
    break;
  case FIRST_HALF:
    check (blockset_set_range (bs, 0, n / 2), "set_range");
    break;
  case RANDOM_1:
    for (i = 0; i < n / 100; ++i)
      check (blockset_set_range (bs, rnd () % n, 1), "set_range");
    break;
  case RANDOM_50:
    for (w = 0; w < (n + 63) / 64; ++w) {
      uint64_t bits = rnd ();

      while (bits) {            /* each run of ones in the word */
        const unsigned lo = __builtin_ctzll (bits);
        const uint64_t from_lo = bits | ((UINT64_C (1) << lo) - 1);
        const unsigned hi = ~from_lo ? __builtin_ctzll (~from_lo) : 64;

        check (blockset_set_range (bs, w * 64 + lo, hi - lo), "set_range");
        bits &= hi == 64 ? 0 : UINT64_MAX << hi;
      }
    }
    break;
  }
  b.seconds = (now_ns () - t0) / 1e9;
  rss1 = rss_bytes ();
  b.rss_growth = rss1 > rss0 ? rss1 - rss0 : 0;
  return b;
}

/*----------------------------------------------------------------------
 * The measurements.  Each returns the median ns per operation.
 */

static volatile uint64_t sink;

static double
time_lookups (const struct blockset *bs, const struct flat *f,
              const uint64_t *pos, double *flat_ns)
{
  double tree[MAX_REPS], flat[MAX_REPS];
  unsigned r, i;

  for (r = 0; r < reps; ++r) {
    uint64_t hits = 0;
    double t0 = now_ns ();

    for (i = 0; i < NR_LOOKUPS; ++i)
      hits += blockset_test (bs, pos[i]);
    tree[r] = (now_ns () - t0) / NR_LOOKUPS;

    t0 = now_ns ();
    for (i = 0; i < NR_LOOKUPS; ++i)
      hits += flat_test (f, pos[i]);
    flat[r] = (now_ns () - t0) / NR_LOOKUPS;
    sink += hits;
  }
  *flat_ns = median (flat, reps);
  return median (tree, reps);
}

/* The same lookups, each position depending on the answer before it:
 * no two lookups overlap in the CPU, so this is the latency one request
 * sees, where the loop above is the throughput of many.
 */
static double
time_chained_lookups (const struct blockset *bs, const struct flat *f,
                      const uint64_t *pos, double *flat_ns)
{
  double tree[MAX_REPS], flat[MAX_REPS];
  unsigned r, i;

  for (r = 0; r < reps; ++r) {
    uint64_t hit = 0;
    double t0 = now_ns ();

    for (i = 0; i < NR_LOOKUPS; ++i)
      hit = blockset_test (bs, pos[i] ^ hit);
    tree[r] = (now_ns () - t0) / NR_LOOKUPS;

    t0 = now_ns ();
    for (i = 0; i < NR_LOOKUPS; ++i)
      hit = flat_test (f, pos[i] ^ hit);
    flat[r] = (now_ns () - t0) / NR_LOOKUPS;
    sink += hit;
  }
  *flat_ns = median (flat, reps);
  return median (tree, reps);
}

/* Marks at random blocks; the blocks that were not in the set are
 * cleared again afterwards, untimed, so every repetition starts from the
 * same state.
 */
static double
time_marks (struct blockset *bs, struct flat *f, const uint64_t *pos,
            double *flat_ns)
{
  double tree[MAX_REPS], flat[MAX_REPS];
  bool *was = xmalloc (NR_MARKS * sizeof *was);
  unsigned r, i;

  for (r = 0; r < reps; ++r) {
    const uint64_t *p = pos + (size_t) r * NR_MARKS % (NR_LOOKUPS - NR_MARKS);
    double t0;

    for (i = 0; i < NR_MARKS; ++i)
      was[i] = blockset_test (bs, p[i]);
    t0 = now_ns ();
    for (i = 0; i < NR_MARKS; ++i)
      check (blockset_set_range (bs, p[i], 1), "set_range");
    tree[r] = (now_ns () - t0) / NR_MARKS;
    for (i = 0; i < NR_MARKS; ++i)
      if (!was[i])
        check (blockset_clear_range (bs, p[i], 1), "clear_range");

    t0 = now_ns ();
    for (i = 0; i < NR_MARKS; ++i)
      flat_set (f, p[i]);
    flat[r] = (now_ns () - t0) / NR_MARKS;
    for (i = 0; i < NR_MARKS; ++i)
      if (!was[i])
        flat_clear (f, p[i]);
  }
  free (was);
  *flat_ns = median (flat, reps);
  return median (tree, reps);
}

/* next_clear from random blocks.  A flat bitmap may have to scan
 * gigabytes for one answer, so its repetitions stop after a time budget.
 */
static double
time_next_clear (const struct blockset *bs, const struct flat *f,
                 const uint64_t *pos, double *flat_ns)
{
  double tree[MAX_REPS], flat[MAX_REPS];
  unsigned r, i;

  for (r = 0; r < reps; ++r) {
    uint64_t sum = 0;
    double t0 = now_ns (), t1;

    for (i = 0; i < NR_NEXT; ++i)
      sum += blockset_next_clear (bs, pos[i]);
    tree[r] = (now_ns () - t0) / NR_NEXT;

    t0 = now_ns ();
    for (i = 0; i < NR_NEXT; ++i) {
      sum -= flat_next_clear (f, pos[i]);
      if (i % 8 == 7 && now_ns () - t0 > NEXT_BUDGET_NS) {
        i++;
        break;
      }
    }
    t1 = now_ns ();
    flat[r] = (t1 - t0) / i;
    sink += sum;
  }
  *flat_ns = median (flat, reps);
  return median (tree, reps);
}

/*----------------------------------------------------------------------
 * Output.
 */

static const char *
human (double bytes, char *buf, size_t len)
{
  static const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
  unsigned u = 0;

  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    u++;
  }
  snprintf (buf, len, u == 0 ? "%.0f %s" : "%.1f %s", bytes, unit[u]);
  return buf;
}

struct result {
  bool built;
  uint64_t count;
  struct built build;
  size_t memory;
  double look, look_f, chain, chain_f, mark, mark_f, next, next_f;
};

static void
bench_volume (const char *name, uint64_t volume_bytes, bool skip_50)
{
  const uint64_t n = volume_bytes / BLOCK_SIZE;
  struct flat f = { n, (n + 63) / 64, NULL };
  const double flat_bytes = f.nr_words * 8.0;
  uint64_t *pos = xmalloc (NR_LOOKUPS * sizeof *pos);
  struct result res[RANDOM_50 + 1] = { { 0 } };
  char b1[32], b2[32], b3[32];
  unsigned i;
  int s;

  f.word = xmalloc (f.nr_words * sizeof (uint64_t));
  rng_state = 42;
  for (i = 0; i < NR_LOOKUPS; ++i)
    pos[i] = rnd () % n;

  for (s = EMPTY; s <= RANDOM_50; ++s) {
    struct result *r = &res[s];
    struct blockset *bs;

    if (s == RANDOM_50 && skip_50)
      continue;
    fprintf (stderr, "bench-blockset: %s, %s ...\n", name, state_name[s]);

    build_flat (s, &f, 1000 + s);
    malloc_trim (0);
    bs = blockset_new (n);
    if (bs == NULL) {
      perror ("blockset_new");
      exit (EXIT_FAILURE);
    }
    r->build = build_tree (s, bs, 1000 + s);
    r->built = true;
    r->count = blockset_count (bs);
    r->memory = blockset_memory (bs);
    r->look = time_lookups (bs, &f, pos, &r->look_f);
    r->chain = time_chained_lookups (bs, &f, pos, &r->chain_f);
    r->mark = time_marks (bs, &f, pos, &r->mark_f);
    r->next = time_next_clear (bs, &f, pos, &r->next_f);
    if (blockset_count (bs) != r->count) {
      fprintf (stderr, "bench-blockset: the marks were not undone\n");
      exit (EXIT_FAILURE);
    }
    blockset_free (bs);
  }

  printf ("\n### %s volume, 4K blocks: %" PRIu64 " blocks\n\n", name, n);
  printf ("Memory.  Flat bitmap: %s.\n\n", human (flat_bytes, b1, sizeof b1));
  printf ("| state | blocks in set | tree build time | tree memory "
          "| RSS growth while building | flat bitmap | tree / flat |\n");
  printf ("|---|---:|---:|---:|---:|---:|---:|\n");
  for (s = EMPTY; s <= RANDOM_50; ++s) {
    const struct result *r = &res[s];

    if (!r->built) {
      printf ("| %s | not built (--skip-64t-50) | | | | | |\n", state_name[s]);
      continue;
    }
    printf ("| %s | %.2f%% | %.2f s | %s | %s | %s | %.3g |\n",
            state_name[s], 100.0 * r->count / n, r->build.seconds,
            human (r->memory, b1, sizeof b1),
            human (r->build.rss_growth, b2, sizeof b2),
            human (flat_bytes, b3, sizeof b3), r->memory / flat_bytes);
  }

  if (res[RANDOM_1].built && res[RANDOM_1].count > 0) {
    const double ns_per_mark = res[RANDOM_1].build.seconds * 1e9 / (n / 100);

    printf ("\n1%% random was built by %" PRIu64 " single-block marks in random "
            "order: %.0f ns each.  50%% random was built by setting the runs "
            "of random words in increasing order; by single-block marks in "
            "random order it would take about %.0f s (an estimate: %" PRIu64
            " marks at the 1%% rate).\n",
            n / 100, ns_per_mark, ns_per_mark * (n / 2) / 1e9, n / 2);
  }

  printf ("\nSpeed, ns per operation, tree / flat (ratio tree/flat).\n\n");
  printf ("| state | lookup, throughput | lookup, latency (chained) "
          "| mark (set 1 block) | next_clear |\n");
  printf ("|---|---:|---:|---:|---:|\n");
  for (s = EMPTY; s <= RANDOM_50; ++s) {
    const struct result *r = &res[s];

    if (!r->built) {
      printf ("| %s | not built | | | |\n", state_name[s]);
      continue;
    }
    printf ("| %s | %.1f / %.1f (%.2f) | %.1f / %.1f (%.2f) "
            "| %.1f / %.1f (%.2f) | %.1f / %.0f (%.2g) |\n",
            state_name[s], r->look, r->look_f, r->look / r->look_f,
            r->chain, r->chain_f, r->chain / r->chain_f,
            r->mark, r->mark_f, r->mark / r->mark_f,
            r->next, r->next_f, r->next / r->next_f);
  }
  fflush (stdout);

  free (f.word);
  free (pos);
}

int
main (int argc, char *argv[])
{
  bool quick = false, skip_50 = false;
  int i;

  for (i = 1; i < argc; ++i) {
    if (strcmp (argv[i], "--quick") == 0) {
      quick = true;
      reps = 3;
    }
    else if (strcmp (argv[i], "--skip-64t-50") == 0)
      skip_50 = true;
    else if (strcmp (argv[i], "--reps") == 0 && i + 1 < argc) {
      reps = atoi (argv[++i]);
      if (reps < 1 || reps > MAX_REPS) {
        fprintf (stderr, "bench-blockset: --reps: 1 to %d\n", MAX_REPS);
        exit (EXIT_FAILURE);
      }
    }
    else {
      fprintf (stderr,
               "usage: bench-blockset [--quick] [--reps N] [--skip-64t-50]\n");
      exit (EXIT_FAILURE);
    }
  }

  printf ("Medians of %u repetitions: %u lookups, %u marks, up to %u "
          "next_clear calls (flat: at most %.1f s) each.\n",
          reps, NR_LOOKUPS, NR_MARKS, NR_NEXT, NEXT_BUDGET_NS / 1e9);
  bench_volume ("1 TiB", UINT64_C (1) << 40, false);
  if (!quick)
    bench_volume ("64 TiB", UINT64_C (64) << 40, skip_50);
  return 0;
}
