/* nbdshadow: a fake control server for test-nbdshadow-cli.sh.
 *
 * The real control.c with a handler that plays a migration: the status
 * object of control.h with every field, progress that advances with
 * each status request and reaches "synced" after a given number of
 * them, a verify that runs over a few status requests, a cutover
 * refused until synced.  Every request is appended to a log file so
 * that the test can check what the CLI sent.  This tests the CLI
 * without the filter.
 *
 *   fake-control [--synced-after=N] [--mismatches=N] [--recopied=N]
 *                [--refuse=VERB] [--minimal] [--bad-json] SOCKET LOG
 *
 * Runs until SIGTERM or SIGINT, then stops the server and exits 0.
 */

#include <config.h>

#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"

#define SIZE (UINT64_C (1) << 30)
#define BLOCK 65536
#define BLOCKS (SIZE / BLOCK)
#define VERIFY_STEPS 4

struct fake {
  FILE *log;
  unsigned synced_after;        /* status requests until synced */
  uint64_t mismatches, recopied;
  const char *refuse;           /* a verb to answer with an error */
  bool minimal, bad_json;
  unsigned status_calls;
  const char *phase;
  const char *policy;
  uint64_t rate_limit;
  bool paused;
  const char *verify_state;
  unsigned verify_steps;
};

static uint64_t
resident_blocks (struct fake *f)
{
  if (f->status_calls >= f->synced_after)
    return BLOCKS;
  return BLOCKS * f->status_calls / f->synced_after;
}

/* Advance the play by one status request. */
static void
advance (struct fake *f)
{
  f->status_calls++;
  if (strcmp (f->phase, "copying") == 0 && resident_blocks (f) == BLOCKS)
    f->phase = "synced";
  if (strcmp (f->verify_state, "running") == 0 &&
      ++f->verify_steps == VERIFY_STEPS) {
    f->verify_state = "done";
    f->phase = "synced";
  }
}

static void
emit_status (struct fake *f, FILE *fp)
{
  uint64_t res = resident_blocks (f);
  uint64_t checked = strcmp (f->verify_state, "idle") == 0 ? 0 :
    BLOCKS * f->verify_steps / VERIFY_STEPS;
  bool done = strcmp (f->verify_state, "done") == 0;

  fprintf (fp, "{\"phase\": \"%s\", \"status_line\": \"shadow: %s "
           "\\u00e9t\\u00e9 \\\"quoted\\\"\", \"size\": %" PRIu64
           ", \"block_size\": %d, \"blocks_total\": %" PRIu64
           ", \"blocks_resident\": %" PRIu64 ", \"blocks_written\": 12"
           ", \"bytes_resident\": %" PRIu64 ", ",
           f->phase, f->phase, SIZE, BLOCK, BLOCKS, res, res * BLOCK);
  fprintf (fp, "\"bytes_copied\": {\"on_demand\": 10485760, \"prefetch\": "
           "22020096, \"background\": %" PRIu64 ", \"total\": %" PRIu64
           "}, ", res * BLOCK - 32505856 * (res * BLOCK >= 32505856),
           res * BLOCK);
  fprintf (fp, "\"client_reads\": {\"ops\": 1234, \"bytes_shadow\": "
           "912261120, \"bytes_origin\": 136314880, \"hit_ratio\": 0.87}, "
           "\"client_writes\": {\"ops\": 56, \"bytes\": 3145728}, ");
  fprintf (fp, "\"prefetch\": {\"policy\": \"%s\", \"issued\": 1000, "
           "\"used\": 870, \"wasted\": 130, \"precision\": 0.87, "
           "\"accuracy\": {\"ngram\": 0.61, \"lstm\": 0.542, "
           "\"hybrid\": 0.63}}, ", f->policy);
  fprintf (fp, "\"copy_rate\": 99614720, \"rate_limit\": %" PRIu64
           ", \"paused\": %s, \"background\": true, \"eta_seconds\": %s, ",
           f->rate_limit, f->paused ? "true" : "false",
           res == BLOCKS ? "0" : "6.4");
  fprintf (fp, "\"errors\": {\"origin\": 0, \"shadows\": [{\"uri\": "
           "\"nbd+unix:///vol?socket=/tmp/sh\\\"adow\\\\1.sock\", "
           "\"connected\": true, \"errors\": 0, \"reconnects\": 1, "
           "\"retries\": 2, \"replays\": 0, \"latency_us\": 850.5, \"bytes_read\": 4096, "
           "\"bytes_written\": %" PRIu64 "}, {\"uri\": \"nbd://new-host/vol\","
           " \"connected\": false, \"errors\": 3, \"reconnects\": 4, "
           "\"retries\": 5, \"replays\": 6, \"latency_us\": null, \"bytes_read\": 0, "
           "\"bytes_written\": 0}]}, ", res * BLOCK);
  fprintf (fp, "\"verify\": {\"state\": \"%s\", \"verified\": %s, "
           "\"blocks_checked\": %" PRIu64 ", \"blocks_total\": %" PRIu64
           ", \"mismatches\": %" PRIu64 ", \"recopied\": %" PRIu64
           ", \"message\": \"%s\"}, ",
           f->verify_state, done && f->mismatches <= f->recopied ?
           "true" : "false", checked, BLOCKS, done ? f->mismatches : 0,
           done ? f->recopied : 0,
           done && f->mismatches > f->recopied ? "blocks differ" : "");
  fprintf (fp, "\"commits\": {\"count\": 12, \"failures\": 0, "
           "\"last_ms\": 3.25}, \"state\": {\"dir\": \"/var/lib/nbdshadow/"
           "vol\", \"journal_bytes\": 12288, \"snapshot_bytes\": 4096}}");
}

static char *
status (struct fake *f)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *fp;

  advance (f);
  if (f->bad_json)
    return strdup ("{\"phase\": \"copying\", \"size\": [1, 2,");
  if (f->minimal)
    return strdup ("{\"phase\": \"copying\", \"verify\": {}}");
  fp = open_memstream (&buf, &len);
  if (fp == NULL)
    return NULL;
  emit_status (f, fp);
  if (fclose (fp) != 0) {
    free (buf);
    return NULL;
  }
  return buf;
}

static int
error (char **reply, const char *msg)
{
  *reply = strdup (msg);
  return -1;
}

static int
handler (void *opaque, int argc, char **argv, char **reply)
{
  struct fake *f = opaque;
  const char *verb = argv[0];
  int i;

  for (i = 0; i < argc; ++i)
    fprintf (f->log, "%s%s", i ? " " : "", argv[i]);
  fprintf (f->log, "\n");
  fflush (f->log);
  *reply = NULL;

  if (f->refuse && strcmp (verb, f->refuse) == 0)
    return error (reply, "refused by the test: line one\nline two");
  if (strcmp (verb, "status") == 0 && argc == 1) {
    *reply = status (f);
    return *reply ? 0 : error (reply, "out of memory");
  }
  if (strcmp (verb, "pause") == 0 && argc == 1) {
    f->paused = true;
    return 0;
  }
  if (strcmp (verb, "resume") == 0 && argc == 1) {
    f->paused = false;
    return 0;
  }
  if (strcmp (verb, "rate") == 0 && argc == 2) {
    char *end;

    f->rate_limit = strtoull (argv[1], &end, 10);
    return *end ? error (reply, "rate: not a number") : 0;
  }
  if (strcmp (verb, "prefetch") == 0 && argc == 2) {
    static const char *const p[] = { "off", "readahead", "ngram", "lstm",
                                     "hybrid" };
    size_t k;

    for (k = 0; k < sizeof p / sizeof p[0]; ++k)
      if (strcmp (argv[1], p[k]) == 0) {
        f->policy = p[k];
        return 0;
      }
    return error (reply, "prefetch: unknown policy");
  }
  if (strcmp (verb, "verify") == 0 && argc == 1) {
    if (strcmp (f->verify_state, "running") == 0)
      return error (reply, "a verify is already running");
    f->verify_state = "running";
    f->verify_steps = 0;
    f->phase = resident_blocks (f) == BLOCKS ? "verifying" : f->phase;
    return 0;
  }
  if (strcmp (verb, "cutover") == 0 &&
      (argc == 1 || (argc == 2 && strcmp (argv[1], "verified") == 0))) {
    if (strcmp (f->phase, "synced") != 0)
      return error (reply, "cutover refused: not synced (phase copying)");
    if (argc == 2 && strcmp (f->verify_state, "done") != 0)
      return error (reply, "cutover refused: not verified");
    f->phase = "done";
    return 0;
  }
  if (asprintf (reply, "unknown request: %s", verb) == -1)
    *reply = NULL;
  return -1;
}

static void
usage (void)
{
  fprintf (stderr, "usage: fake-control [--synced-after=N] "
           "[--mismatches=N] [--recopied=N] [--refuse=VERB] [--minimal] "
           "[--bad-json] SOCKET LOG\n");
  exit (2);
}

static void
parse_args (int argc, char **argv, struct fake *f)
{
  static const struct option opts[] = {
    { "synced-after", required_argument, NULL, 's' },
    { "mismatches", required_argument, NULL, 'm' },
    { "recopied", required_argument, NULL, 'r' },
    { "refuse", required_argument, NULL, 'R' },
    { "minimal", no_argument, NULL, 'M' },
    { "bad-json", no_argument, NULL, 'B' },
    { NULL, 0, NULL, 0 },
  };
  int c;

  while ((c = getopt_long (argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 's': f->synced_after = atoi (optarg); break;
    case 'm': f->mismatches = strtoull (optarg, NULL, 10); break;
    case 'r': f->recopied = strtoull (optarg, NULL, 10); break;
    case 'R': f->refuse = optarg; break;
    case 'M': f->minimal = true; break;
    case 'B': f->bad_json = true; break;
    default: usage ();
    }
  }
  if (argc - optind != 2)
    usage ();
}

int
main (int argc, char **argv)
{
  struct fake f = {
    .synced_after = 1000000, .phase = "copying", .policy = "hybrid",
    .verify_state = "idle",
  };
  struct control *c;
  sigset_t set;
  int sig;

  parse_args (argc, argv, &f);
  f.log = fopen (argv[optind + 1], "a");
  if (f.log == NULL) {
    perror (argv[optind + 1]);
    return 1;
  }
  /* Block the signals before any thread starts; wait for them below. */
  sigemptyset (&set);
  sigaddset (&set, SIGTERM);
  sigaddset (&set, SIGINT);
  pthread_sigmask (SIG_BLOCK, &set, NULL);

  c = control_start (argv[optind], handler, &f);
  if (c == NULL)
    return 1;
  sigwait (&set, &sig);
  control_stop (c);
  fclose (f.log);
  return 0;
}
