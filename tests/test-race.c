/* nbdshadow: many threads writing and reading the same blocks through the
 * filter while copy-on-read is in flight.
 *
 *   test-race URI ORIGIN-FILE EXPECTED-OUT [SECONDS]
 *
 * The volume is cut into 512-byte stripes.  Each writer owns every W-th
 * group of 3 stripes, so writers never write the same byte but always
 * share blocks (a 4K block holds stripes of several writers), and most
 * writes are partial writes to blocks that readers are copying from the
 * origin at the same moment.  Every stripe write carries (stripe, seq).
 *
 * Readers check that no read goes back in time: a stripe whose write
 * number n completed before the read was issued must read as write n or
 * later, never as the origin's bytes or an older write.  A copy-on-read
 * that lands stale origin data over a client write (nbdkit's cow filter
 * bug, DESIGN §8) breaks exactly this.  At the end the whole volume is
 * read back and compared byte for byte with the expected image, which is
 * also written to EXPECTED-OUT for the caller to compare with the shadow.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libnbd.h>

#include "stripes.h"

#define GROUP 3                 /* stripes per ownership group */
#define WRITERS 6
#define READERS 6

static const char *uri;
static char *origin;            /* the origin's bytes */
static uint64_t size, nr_stripes;
static double deadline;
static _Atomic uint32_t *seq_done;     /* last completed write per stripe */
static _Atomic uint32_t *seq_started;  /* last issued write per stripe */
static _Atomic bool failed;
static _Atomic uint64_t nr_writes, nr_reads, nr_checked;

static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
die (const char *what)
{
  fprintf (stderr, "test-race: %s\n", what);
  exit (EXIT_FAILURE);
}

static void
fill_stripe (char *p, uint64_t s, uint32_t seq)
{
  stripe_fill (p, s, seq);
}

static int64_t
decode_stripe (const char *p, uint64_t s)
{
  return stripe_decode (p, s, origin + s * STRIPE);
}

static uint64_t
owner_of (uint64_t s)
{
  return (s / GROUP) % WRITERS;
}

static struct nbd_handle *
connect_or_die (void)
{
  struct nbd_handle *nbd = nbd_create ();

  if (nbd == NULL || nbd_connect_uri (nbd, uri) == -1) {
    fprintf (stderr, "test-race: %s: %s\n", uri, nbd_get_error ());
    exit (EXIT_FAILURE);
  }
  return nbd;
}

static uint64_t
rnd (unsigned *seed, uint64_t n)
{
  return ((uint64_t) rand_r (seed) << 31 ^ rand_r (seed)) % n;
}

static void *
writer (void *arg)
{
  uint64_t t = (uintptr_t) arg;
  unsigned seed = 1000 + t;
  struct nbd_handle *nbd = connect_or_die ();
  uint64_t nr_groups = nr_stripes / GROUP;
  char buf[GROUP * STRIPE];

  while (now () < deadline && !failed) {
    /* A random group of ours: whole (3 stripes) or one stripe of it. */
    uint64_t g = rnd (&seed, nr_groups / WRITERS) * WRITERS + t;
    uint64_t first = g * GROUP, count = GROUP, s;
    uint32_t flags = rnd (&seed, 8) == 0 ? LIBNBD_CMD_FLAG_FUA : 0;

    if (g >= nr_groups || owner_of (first) != t)
      continue;
    if (rnd (&seed, 2)) {
      first += rnd (&seed, GROUP);
      count = 1;
    }
    for (s = first; s < first + count; ++s) {
      uint32_t seq = atomic_load (&seq_started[s]) + 1;

      atomic_store (&seq_started[s], seq);
      fill_stripe (buf + (s - first) * STRIPE, s, seq);
    }
    if (nbd_pwrite (nbd, buf, count * STRIPE, first * STRIPE, flags) == -1) {
      fprintf (stderr, "test-race: write at %" PRIu64 ": %s\n",
               first * STRIPE, nbd_get_error ());
      failed = true;
      break;
    }
    for (s = first; s < first + count; ++s)
      atomic_store (&seq_done[s], atomic_load (&seq_started[s]));
    nr_writes++;
    if (rnd (&seed, 64) == 0 && nbd_flush (nbd, 0) == -1) {
      fprintf (stderr, "test-race: flush: %s\n", nbd_get_error ());
      failed = true;
    }
  }
  nbd_shutdown (nbd, 0);
  nbd_close (nbd);
  return NULL;
}

/* Check one read stripe against what was known before the read. */
static void
check_read_stripe (const char *p, uint64_t s, uint32_t min_seq)
{
  int64_t got = decode_stripe (p, s);
  uint32_t max_seq = atomic_load (&seq_started[s]);

  if (got == -1 || got < min_seq || got > max_seq) {
    fprintf (stderr, "test-race: stripe %" PRIu64 " (offset %" PRIu64
             ") read as %s%" PRIi64 ", but write %" PRIu32
             " had completed before the read (issued up to %" PRIu32 ")\n",
             s, s * STRIPE, got == -1 ? "garbage " : "write ", got,
             min_seq, max_seq);
    failed = true;
  }
  nr_checked++;
}

static void *
reader (void *arg)
{
  unsigned seed = 2000 + (uintptr_t) arg;
  struct nbd_handle *nbd = connect_or_die ();
  uint32_t *min_seq = malloc (256 * sizeof *min_seq);
  char *buf = malloc (256 * STRIPE);

  if (min_seq == NULL || buf == NULL)
    die ("out of memory");
  while (now () < deadline && !failed) {
    uint64_t first = rnd (&seed, nr_stripes);
    uint64_t count = 1 + rnd (&seed, 256), s;

    if (first + count > nr_stripes)
      count = nr_stripes - first;
    for (s = 0; s < count; ++s)
      min_seq[s] = atomic_load (&seq_done[first + s]);
    if (nbd_pread (nbd, buf, count * STRIPE, first * STRIPE, 0) == -1) {
      fprintf (stderr, "test-race: read at %" PRIu64 ": %s\n",
               first * STRIPE, nbd_get_error ());
      failed = true;
      break;
    }
    for (s = 0; s < count; ++s)
      check_read_stripe (buf + s * STRIPE, first + s, min_seq[s]);
    nr_reads++;
  }
  free (buf);
  free (min_seq);
  nbd_shutdown (nbd, 0);
  nbd_close (nbd);
  return NULL;
}

static void
load_origin (const char *path)
{
  FILE *fp = fopen (path, "r");
  struct stat st;

  if (fp == NULL || fstat (fileno (fp), &st) == -1) {
    perror (path);
    exit (EXIT_FAILURE);
  }
  size = st.st_size;
  if (size % (STRIPE * GROUP * WRITERS) != 0)
    die ("origin size must be a multiple of 9216");
  origin = malloc (size);
  if (origin == NULL || fread (origin, 1, size, fp) != size)
    die ("cannot read the origin");
  fclose (fp);
  nr_stripes = size / STRIPE;
}

/* Read everything back; write the expected image. */
static void
final_check (const char *expected_path)
{
  struct nbd_handle *nbd = connect_or_die ();
  char *got = malloc (size), *expect = malloc (size);
  uint64_t s, bad = 0;
  FILE *fp;

  if (got == NULL || expect == NULL)
    die ("out of memory");
  for (s = 0; s < nr_stripes; ++s) {
    uint32_t seq = atomic_load (&seq_done[s]);

    if (seq)
      fill_stripe (expect + s * STRIPE, s, seq);
    else
      memcpy (expect + s * STRIPE, origin + s * STRIPE, STRIPE);
  }
  for (s = 0; s < size; s += 1 << 20) {
    uint64_t n = size - s < (1 << 20) ? size - s : (1 << 20);

    if (nbd_pread (nbd, got + s, n, s, 0) == -1) {
      fprintf (stderr, "test-race: final read: %s\n", nbd_get_error ());
      exit (EXIT_FAILURE);
    }
  }
  for (s = 0; s < nr_stripes; ++s)
    if (memcmp (got + s * STRIPE, expect + s * STRIPE, STRIPE) != 0) {
      if (bad++ < 10)
        fprintf (stderr, "test-race: final: stripe %" PRIu64 " (offset %"
                 PRIu64 ") holds %" PRIi64 ", expected write %" PRIu32 "\n",
                 s, s * STRIPE, decode_stripe (got + s * STRIPE, s),
                 atomic_load (&seq_done[s]));
    }
  if (bad) {
    fprintf (stderr, "test-race: %" PRIu64 " stripes differ\n", bad);
    failed = true;
  }
  fp = fopen (expected_path, "w");
  if (fp == NULL || fwrite (expect, 1, size, fp) != size || fclose (fp) != 0)
    die ("cannot write the expected image");
  nbd_shutdown (nbd, 0);
  nbd_close (nbd);
  free (got);
  free (expect);
}

int
main (int argc, char *argv[])
{
  pthread_t w[WRITERS], r[READERS];
  double seconds = argc > 4 ? atof (argv[4]) : 5;
  uintptr_t i;

  if (argc < 4) {
    fprintf (stderr, "usage: test-race URI ORIGIN-FILE EXPECTED-OUT [SECONDS]\n");
    exit (EXIT_FAILURE);
  }
  uri = argv[1];
  load_origin (argv[2]);
  seq_done = calloc (nr_stripes, sizeof *seq_done);
  seq_started = calloc (nr_stripes, sizeof *seq_started);
  if (seq_done == NULL || seq_started == NULL)
    die ("out of memory");
  deadline = now () + seconds;

  for (i = 0; i < WRITERS; ++i)
    if (pthread_create (&w[i], NULL, writer, (void *) i) != 0)
      die ("pthread_create");
  for (i = 0; i < READERS; ++i)
    if (pthread_create (&r[i], NULL, reader, (void *) i) != 0)
      die ("pthread_create");
  for (i = 0; i < WRITERS; ++i)
    pthread_join (w[i], NULL);
  for (i = 0; i < READERS; ++i)
    pthread_join (r[i], NULL);

  printf ("test-race: %" PRIu64 " writes, %" PRIu64 " reads, %" PRIu64
          " stripes checked\n", (uint64_t) nr_writes, (uint64_t) nr_reads,
          (uint64_t) nr_checked);
  if (nr_writes == 0 || nr_reads == 0)
    die ("no I/O happened");
  final_check (argv[3]);
  if (failed) {
    fprintf (stderr, "test-race: FAILED\n");
    exit (EXIT_FAILURE);
  }
  return 0;
}
