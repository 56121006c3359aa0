/* nbdshadow tests: the client side of the crash loop.
 *
 *   crash-client run   URI ORIGIN LOG SECONDS
 *   crash-client check URI ORIGIN LOG
 *
 * "run" writes stripes (stripes.h) from several threads, reads them back
 * from others, and flushes from another, until SECONDS pass or the server
 * dies under it (the test kills it with -9).  It keeps, per stripe, the
 * highest write known durable (completed before a flush that completed,
 * or written with FUA) and the highest write ever issued, and saves them
 * in LOG, continuing from an earlier LOG if there is one.  A run after a
 * restart starts from what "check" observed, not from what was issued:
 * the crash may have lost writes that were issued but never completed.
 *
 * "check", after the server was restarted on the same state, reads every
 * stripe and requires: not garbage, at least the durable write, at most
 * the last issued one.  That is the crash contract: what a completed
 * flush covered is there, everything else is an old or a new version,
 * never anything else.
 */

#include <config.h>

#include <errno.h>
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

#define GROUP 3
#define WRITERS 4
#define READERS 1
#define READ_MAX 16             /* stripes: small reads, slow hydration */

static const char *uri;
static char *origin;
static uint64_t size, nr_stripes;
static double deadline;
static _Atomic bool stop, violated;
static _Atomic uint32_t *seq_started, *seq_done, *durable;
static uint32_t *observed;      /* what check read after the restart */
static _Atomic uint64_t nr_writes, nr_flushes, nr_reads;

static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
die (const char *msg)
{
  fprintf (stderr, "crash-client: %s\n", msg);
  exit (EXIT_FAILURE);
}

static void
raise_to (_Atomic uint32_t *a, uint32_t v)
{
  uint32_t old = atomic_load (a);

  while (old < v && !atomic_compare_exchange_weak (a, &old, v))
    ;
}

static struct nbd_handle *
try_connect (void)
{
  struct nbd_handle *nbd = nbd_create ();

  if (nbd == NULL)
    die (nbd_get_error ());
  if (nbd_connect_uri (nbd, uri) == -1) {
    nbd_close (nbd);
    return NULL;
  }
  return nbd;
}

/* The server going away is expected: stop quietly. */
static void
lost (const char *what)
{
  if (!stop)
    fprintf (stderr, "crash-client: %s: %s (server gone: stopping)\n",
             what, nbd_get_error ());
  stop = true;
}

static void *
writer (void *arg)
{
  uint64_t t = (uintptr_t) arg;
  unsigned seed = (unsigned) time (NULL) * 7 + t;
  struct nbd_handle *nbd = try_connect ();
  uint64_t nr_groups = nr_stripes / GROUP;
  char buf[GROUP * STRIPE];

  if (nbd == NULL) {
    lost ("connect");
    return NULL;
  }
  while (!stop && now () < deadline) {
    uint64_t g = (rand_r (&seed) % (nr_groups / WRITERS)) * WRITERS + t;
    uint64_t first = g * GROUP, count = GROUP, s;
    bool fua = rand_r (&seed) % 10 == 0;

    if (rand_r (&seed) % 2) {
      first += rand_r (&seed) % GROUP;
      count = 1;
    }
    for (s = first; s < first + count; ++s) {
      uint32_t seq = atomic_load (&seq_started[s]) + 1;

      atomic_store (&seq_started[s], seq);
      stripe_fill (buf + (s - first) * STRIPE, s, seq);
    }
    if (nbd_pwrite (nbd, buf, count * STRIPE, first * STRIPE,
                    fua ? LIBNBD_CMD_FLAG_FUA : 0) == -1) {
      lost ("write");
      break;
    }
    for (s = first; s < first + count; ++s) {
      atomic_store (&seq_done[s], atomic_load (&seq_started[s]));
      if (fua)
        raise_to (&durable[s], atomic_load (&seq_started[s]));
    }
    nr_writes++;
  }
  nbd_close (nbd);
  return NULL;
}

static void *
flusher (void *arg)
{
  struct nbd_handle *nbd = try_connect ();
  uint32_t *snap = malloc (nr_stripes * sizeof *snap);
  uint64_t s;

  if (snap == NULL)
    die ("out of memory");
  if (nbd == NULL) {
    lost ("connect");
    free (snap);
    return NULL;
  }
  while (!stop && now () < deadline) {
    usleep (20000);
    for (s = 0; s < nr_stripes; ++s)
      snap[s] = atomic_load (&seq_done[s]);
    if (nbd_flush (nbd, 0) == -1) {
      lost ("flush");
      break;
    }
    /* Everything completed before the flush was issued is durable. */
    for (s = 0; s < nr_stripes; ++s)
      raise_to (&durable[s], snap[s]);
    nr_flushes++;
  }
  nbd_close (nbd);
  free (snap);
  return NULL;
}

static bool
check_stripe (const char *p, uint64_t s, uint32_t min_seq, const char *when)
{
  int64_t got = stripe_decode (p, s, origin + s * STRIPE);
  uint32_t max_seq = atomic_load (&seq_started[s]);

  if (got >= 0 && got >= min_seq && got <= max_seq)
    return true;
  fprintf (stderr, "crash-client: %s: stripe %" PRIu64 " (offset %" PRIu64
           ") holds %s%" PRIi64 ": want a write in %" PRIu32 "..%" PRIu32
           "\n", when, s, s * STRIPE, got == -1 ? "garbage " : "write ",
           got, min_seq, max_seq);
  violated = true;
  return false;
}

static void *
reader (void *arg)
{
  unsigned seed = (unsigned) time (NULL) * 13 + (uintptr_t) arg;
  struct nbd_handle *nbd = try_connect ();
  char *buf = malloc (READ_MAX * STRIPE);
  uint32_t min_seq[READ_MAX];

  if (buf == NULL)
    die ("out of memory");
  if (nbd == NULL) {
    lost ("connect");
    free (buf);
    return NULL;
  }
  while (!stop && now () < deadline) {
    uint64_t first = rand_r (&seed) % nr_stripes;
    uint64_t count = 1 + rand_r (&seed) % READ_MAX, s;

    if (first + count > nr_stripes)
      count = nr_stripes - first;
    for (s = 0; s < count; ++s)
      min_seq[s] = atomic_load (&seq_done[first + s]);
    if (nbd_pread (nbd, buf, count * STRIPE, first * STRIPE, 0) == -1) {
      lost ("read");
      break;
    }
    for (s = 0; s < count; ++s)
      check_stripe (buf + s * STRIPE, first + s, min_seq[s], "read");
    nr_reads++;
  }
  nbd_close (nbd);
  free (buf);
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
    die ("origin size must be a multiple of 6144");
  nr_stripes = size / STRIPE;
  origin = malloc (size);
  if (origin == NULL || fread (origin, 1, size, fp) != size)
    die ("cannot read the origin");
  fclose (fp);
  seq_started = calloc (nr_stripes, sizeof *seq_started);
  seq_done = calloc (nr_stripes, sizeof *seq_done);
  durable = calloc (nr_stripes, sizeof *durable);
  observed = calloc (nr_stripes, sizeof *observed);
  if (!seq_started || !seq_done || !durable || !observed)
    die ("out of memory");
}

/* LOG: per stripe, three u32: durable, last issued, observed by check. */
static void
load_log (const char *path)
{
  FILE *fp = fopen (path, "r");
  uint32_t rec[3];
  uint64_t s;

  if (fp == NULL) {
    if (errno == ENOENT)
      return;
    perror (path);
    exit (EXIT_FAILURE);
  }
  for (s = 0; s < nr_stripes; ++s) {
    if (fread (rec, sizeof rec, 1, fp) != 1)
      die ("short log file");
    durable[s] = rec[0];
    seq_started[s] = rec[1];
    observed[s] = seq_done[s] = rec[2];
  }
  fclose (fp);
}

static void
save_log (const char *path)
{
  char tmp[4096];
  FILE *fp;
  uint64_t s;

  snprintf (tmp, sizeof tmp, "%s.tmp", path);
  fp = fopen (tmp, "w");
  if (fp == NULL)
    die ("cannot write the log");
  for (s = 0; s < nr_stripes; ++s) {
    uint32_t rec[3] = { atomic_load (&durable[s]),
                        atomic_load (&seq_started[s]), observed[s] };

    if (fwrite (rec, sizeof rec, 1, fp) != 1)
      die ("cannot write the log");
  }
  if (fclose (fp) != 0 || rename (tmp, path) == -1)
    die ("cannot write the log");
}

static int
run (const char *log, double seconds)
{
  pthread_t w[WRITERS], r[READERS], f;
  uintptr_t i;

  load_log (log);
  deadline = now () + seconds;
  for (i = 0; i < WRITERS; ++i)
    pthread_create (&w[i], NULL, writer, (void *) i);
  for (i = 0; i < READERS; ++i)
    pthread_create (&r[i], NULL, reader, (void *) i);
  pthread_create (&f, NULL, flusher, NULL);
  for (i = 0; i < WRITERS; ++i)
    pthread_join (w[i], NULL);
  for (i = 0; i < READERS; ++i)
    pthread_join (r[i], NULL);
  pthread_join (f, NULL);
  save_log (log);
  printf ("crash-client: %" PRIu64 " writes, %" PRIu64 " flushes, %" PRIu64
          " reads\n", (uint64_t) nr_writes, (uint64_t) nr_flushes,
          (uint64_t) nr_reads);
  return violated ? EXIT_FAILURE : EXIT_SUCCESS;
}

static int
check (const char *log)
{
  struct nbd_handle *nbd;
  char *buf = malloc (size);
  uint64_t s, off, bad = 0, newer = 0;

  load_log (log);
  nbd = try_connect ();
  if (buf == NULL || nbd == NULL)
    die ("cannot connect to check");
  for (off = 0; off < size; off += 1 << 20) {
    uint64_t n = size - off < (1 << 20) ? size - off : (1 << 20);

    if (nbd_pread (nbd, buf + off, n, off, 0) == -1)
      die (nbd_get_error ());
  }
  for (s = 0; s < nr_stripes; ++s) {
    int64_t got = stripe_decode (buf + s * STRIPE, s, origin + s * STRIPE);

    if (!check_stripe (buf + s * STRIPE, s, durable[s], "after restart") &&
        ++bad >= 20)
      break;
    observed[s] = got;
    if (got > durable[s])
      newer++;
  }
  nbd_shutdown (nbd, 0);
  nbd_close (nbd);
  free (buf);
  if (!violated)
    save_log (log);
  printf ("crash-client: checked %" PRIu64 " stripes, %" PRIu64
          " newer than their last flush\n", nr_stripes, newer);
  return violated ? EXIT_FAILURE : EXIT_SUCCESS;
}

int
main (int argc, char *argv[])
{
  if (argc >= 6 && strcmp (argv[1], "run") == 0) {
    uri = argv[2];
    load_origin (argv[3]);
    return run (argv[4], atof (argv[5]));
  }
  if (argc >= 5 && strcmp (argv[1], "check") == 0) {
    uri = argv[2];
    load_origin (argv[3]);
    return check (argv[4]);
  }
  fprintf (stderr, "usage: crash-client run URI ORIGIN LOG SECONDS\n"
           "       crash-client check URI ORIGIN LOG\n");
  return EXIT_FAILURE;
}
