/* nbdshadow: the operator's command line for a running migration
 * (DESIGN §3.3).  It speaks the line protocol of control.h over the
 * filter's control socket:
 *
 *   nbdshadow status  [--json] [--watch] SOCKET
 *   nbdshadow pause|resume SOCKET
 *   nbdshadow rate BYTES SOCKET
 *   nbdshadow verify SOCKET
 *   nbdshadow cutover [--verified] SOCKET
 *   nbdshadow prefetch off|readahead|ngram|lstm|hybrid SOCKET
 *
 * Exit status: 0 done, 1 the server refused or could not be reached
 * (or a verify found unrepaired mismatches), 2 bad arguments, 130
 * interrupted.  This file is argument handling and the verbs; the
 * protocol is ctlclient.c, the JSON reader json.c, and what a status
 * looks like cli-status.c.
 */

#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>

#include "cli-status.h"
#include "ctlclient.h"
#include "humansize.h"
#include "json.h"

#define EXIT_USAGE 2
#define EXIT_INTERRUPTED 130
#define TIMEOUT_MS 60000        /* a cutover commits: give it time */
#define WATCH_INTERVAL_MS 1000
#define VERIFY_INTERVAL_MS 500
#define VERIFY_START_POLLS 20   /* "idle" this long after "verify": error */

static const char usage_text[] =
  "Usage:\n"
  "  nbdshadow status [--json] [--watch] SOCKET\n"
  "  nbdshadow pause|resume SOCKET\n"
  "  nbdshadow rate BYTES SOCKET\n"
  "  nbdshadow verify SOCKET\n"
  "  nbdshadow cutover [--verified] SOCKET\n"
  "  nbdshadow prefetch off|readahead|ngram|lstm|hybrid SOCKET\n"
  "  nbdshadow --help | --version\n";

static const char help_text[] =
  "\n"
  "Steer a live migration run by nbdkit's shadow filter through its\n"
  "control socket (shadow-control=PATH, default STATE/control.sock).\n"
  "\n"
  "  status            phase, progress, hit ratio, copy rate, ETA, prefetch,\n"
  "                    errors per backend, verify state\n"
  "    --json          the status object as JSON\n"
  "    --watch         a progress bar every second until the volume is synced\n"
  "  pause, resume     stop or restart background and prefetch copying\n"
  "  rate BYTES        copy ceiling per second (64K, 100M, 1G; 0 = none)\n"
  "  verify            compare every block, show progress, print the report;\n"
  "                    exit 1 if mismatches remain unrepaired\n"
  "  cutover           switch to the shadow for good (refused unless synced)\n"
  "    --verified      and only if a verify has passed\n"
  "  prefetch POLICY   change the predictor\n"
  "\n"
  "Exit status: 0 success, 1 refused or failed, 2 bad arguments.\n"
  "See nbdshadow(1).\n";

enum { OPT_JSON = 1, OPT_WATCH = 2, OPT_VERIFIED = 4 };

struct cli {
  const char *sock;
  struct ctl_conn conn;
  int opts;
  bool tty;
};

/*----------------------------------------------------------------------
 * Errors.
 */

static void usage_error (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2), noreturn));

static void
usage_error (const char *fmt, ...)
{
  va_list args;

  fputs ("nbdshadow: ", stderr);
  va_start (args, fmt);
  vfprintf (stderr, fmt, args);
  va_end (args);
  fputs ("\n", stderr);
  fputs (usage_text, stderr);
  exit (EXIT_USAGE);
}

/* One request; on "ok" returns 0 with *payload, else reports why and
 * returns the exit status.
 */
static int
request (struct cli *cli, const char *req, char **payload)
{
  enum ctl_result r = ctl_request (&cli->conn, req, TIMEOUT_MS, payload);

  if (r == CTL_OK)
    return 0;
  if (ctl_interrupted)
    return EXIT_INTERRUPTED;
  if (r == CTL_ERROR)
    fprintf (stderr, "nbdshadow: %s\n", *payload);
  else
    fprintf (stderr, "nbdshadow: %s: %s\n", cli->sock, cli->conn.err);
  free (*payload);
  *payload = NULL;
  return EXIT_FAILURE;
}

/* Fetch and parse the status object. */
static int
fetch_status (struct cli *cli, struct json **st)
{
  char *payload, err[128];
  int r = request (cli, "status", &payload);

  *st = NULL;
  if (r != 0)
    return r;
  *st = json_parse (payload, strlen (payload), err, sizeof err);
  free (payload);
  if (*st == NULL || (*st)->type != JSON_OBJECT) {
    fprintf (stderr, "nbdshadow: %s: the server's status is not a JSON "
             "object (%s)\n", cli->sock, *st ? "another JSON value" : err);
    json_free (*st);
    *st = NULL;
    return EXIT_FAILURE;
  }
  return 0;
}

/*----------------------------------------------------------------------
 * Waiting, interrupts, the terminal.
 */

static void
on_signal (int sig)
{
  ctl_interrupted = 1;
}

/* Long-running verbs stop cleanly on ^C: the progress line is ended. */
static void
catch_interrupts (void)
{
  struct sigaction sa = { .sa_handler = on_signal };

  sigemptyset (&sa.sa_mask);
  sa.sa_flags = 0;              /* no SA_RESTART: waits return EINTR */
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGTERM, &sa, NULL);
}

static void
sleep_ms (int ms)
{
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

  while (!ctl_interrupted && nanosleep (&ts, &ts) == -1 && errno == EINTR)
    ;
}

static int
terminal_width (bool tty)
{
  struct winsize ws;
  const char *cols = getenv ("COLUMNS");

  if (tty && ioctl (STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    return ws.ws_col;
  if (cols && atoi (cols) > 0)
    return atoi (cols);
  return 80;
}

/* On a terminal, redraw the line in place; otherwise one line each. */
static void
show_line (struct cli *cli, const char *line)
{
  if (cli->tty)
    printf ("\r%s\033[K", line);
  else
    printf ("%s\n", line);
  fflush (stdout);
}

static void
end_line (struct cli *cli)
{
  if (cli->tty) {
    printf ("\n");
    fflush (stdout);
  }
}

/*----------------------------------------------------------------------
 * The verbs.
 */

static int
do_status_once (struct cli *cli)
{
  struct json *st;
  int r = fetch_status (cli, &st);

  if (r != 0)
    return r;
  if (cli->opts & OPT_JSON) {
    json_print (stdout, st, 2);
    putchar ('\n');
  }
  else
    status_summary (stdout, st);
  json_free (st);
  return 0;
}

/* Until copying is over (synced, or past it) or ^C. */
static int
do_status_watch (struct cli *cli)
{
  catch_interrupts ();
  for (;;) {
    struct json *st;
    bool finished;
    int r = fetch_status (cli, &st);

    if (r != 0) {
      end_line (cli);
      return r;
    }
    if (cli->opts & OPT_JSON) {     /* JSON lines, for scripts */
      json_print (stdout, st, 0);
      putchar ('\n');
      fflush (stdout);
    }
    else {
      char line[512];

      status_progress_line (st, terminal_width (cli->tty), line, sizeof line);
      show_line (cli, line);
    }
    finished = status_copy_finished (st);
    json_free (st);
    if (finished)
      break;
    sleep_ms (WATCH_INTERVAL_MS);
    if (ctl_interrupted) {
      end_line (cli);
      return EXIT_INTERRUPTED;
    }
  }
  if (!(cli->opts & OPT_JSON))
    end_line (cli);
  return 0;
}

static int
do_status (struct cli *cli, char **args)
{
  return cli->opts & OPT_WATCH ? do_status_watch (cli) : do_status_once (cli);
}

/* A verb whose reply is a bare "ok" (or a message worth showing). */
static int
simple (struct cli *cli, const char *req, const char *done)
{
  char *payload;
  int r = request (cli, req, &payload);

  if (r != 0)
    return r;
  printf ("%s\n", payload[0] ? payload : done);
  free (payload);
  return 0;
}

static int
do_pause (struct cli *cli, char **args)
{
  return simple (cli, "pause", "copying paused");
}

static int
do_resume (struct cli *cli, char **args)
{
  return simple (cli, "resume", "copying resumed");
}

/* nbdkit's size syntax: a number with an optional b, s (512), K, M, G,
 * T, P or E suffix (powers of 1024).  Returns -1 if it is not a size.
 */
static int
parse_size (const char *s, uint64_t *out)
{
  static const char suffixes[] = "BSKMGTPE";
  static const int shifts[] = { 0, 9, 10, 20, 30, 40, 50, 60 };
  const char *p;
  char *end;
  unsigned long long n;
  int shift = 0;

  if (s[0] < '0' || s[0] > '9')
    return -1;
  errno = 0;
  n = strtoull (s, &end, 10);
  if (errno)
    return -1;
  if (*end) {
    p = strchr (suffixes, toupper ((unsigned char) *end));
    if (p == NULL || end[1] != '\0')
      return -1;
    shift = shifts[p - suffixes];
  }
  if (shift && n > (UINT64_MAX >> shift))
    return -1;
  *out = (uint64_t) n << shift;
  return 0;
}

static int
do_rate (struct cli *cli, char **args)
{
  char req[64], done[64], h[32];
  uint64_t bytes;

  if (parse_size (args[0], &bytes) == -1)  /* checked in main: cannot fail */
    return EXIT_USAGE;
  snprintf (req, sizeof req, "rate %" PRIu64, bytes);
  if (bytes == 0)
    snprintf (done, sizeof done, "copy rate limit: none");
  else {
    human_size (bytes, h, sizeof h);
    snprintf (done, sizeof done, "copy rate limit: %s/s", h);
  }
  return simple (cli, req, done);
}

static int
do_prefetch (struct cli *cli, char **args)
{
  char req[64], done[64];

  snprintf (req, sizeof req, "prefetch %s", args[0]);
  snprintf (done, sizeof done, "prefetch policy: %s", args[0]);
  return simple (cli, req, done);
}

static int
do_cutover (struct cli *cli, char **args)
{
  return simple (cli, cli->opts & OPT_VERIFIED ? "cutover verified"
                 : "cutover", "cutover done: the shadow serves everything");
}

/* Poll until verify.state is done or failed; *st is that last status.
 * On a terminal the progress line is redrawn; otherwise a line is
 * printed whenever it changes.
 */
static int
verify_wait (struct cli *cli, struct json **st)
{
  char line[512], last[512] = "";
  int idle = 0;

  for (;;) {
    const char *state;
    int r = fetch_status (cli, st);

    if (r != 0)
      return r;
    state = json_get_string (*st, "verify.state");
    if (state == NULL) {
      fprintf (stderr, "nbdshadow: %s: the status has no verify.state\n",
               cli->sock);
      return EXIT_FAILURE;
    }
    if (strcmp (state, "done") == 0 || strcmp (state, "failed") == 0)
      return 0;
    if (strcmp (state, "idle") == 0 && ++idle > VERIFY_START_POLLS) {
      fprintf (stderr, "nbdshadow: %s: the verify did not start\n",
               cli->sock);
      return EXIT_FAILURE;
    }
    status_verify_line (*st, terminal_width (cli->tty), line, sizeof line);
    if (cli->tty || strcmp (line, last) != 0)
      show_line (cli, line);
    snprintf (last, sizeof last, "%s", line);
    json_free (*st);
    *st = NULL;
    sleep_ms (VERIFY_INTERVAL_MS);
    if (ctl_interrupted)
      return EXIT_INTERRUPTED;
  }
}

static int
do_verify (struct cli *cli, char **args)
{
  struct json *st = NULL;
  char *payload;
  uint64_t mismatches = 0, recopied = 0;
  const char *state;
  int r;

  catch_interrupts ();
  r = request (cli, "verify", &payload);
  if (r != 0)
    return r;
  free (payload);
  r = verify_wait (cli, &st);
  if (cli->tty) {
    printf ("\r\033[K");
    fflush (stdout);
  }
  if (r != 0) {
    json_free (st);
    return r;
  }
  status_verify_report (stdout, st);
  state = json_get_string (st, "verify.state");
  json_get_u64 (st, "verify.mismatches", &mismatches);
  json_get_u64 (st, "verify.recopied", &recopied);
  r = strcmp (state, "done") == 0 && mismatches <= recopied ?
    0 : EXIT_FAILURE;
  json_free (st);
  return r;
}

/*----------------------------------------------------------------------
 * Arguments.
 */

struct verb {
  const char *name;
  int nargs;                    /* before SOCKET */
  int opts;                     /* options it takes */
  int (*run) (struct cli *cli, char **args);
};

static const struct verb verbs[] = {
  { "status", 0, OPT_JSON | OPT_WATCH, do_status },
  { "pause", 0, 0, do_pause },
  { "resume", 0, 0, do_resume },
  { "rate", 1, 0, do_rate },
  { "verify", 0, 0, do_verify },
  { "cutover", 0, OPT_VERIFIED, do_cutover },
  { "prefetch", 1, 0, do_prefetch },
};

static const char *const policies[] = {
  "off", "readahead", "ngram", "lstm", "hybrid",
};

static const struct verb *
find_verb (const char *name)
{
  size_t i;

  for (i = 0; i < sizeof verbs / sizeof verbs[0]; ++i)
    if (strcmp (verbs[i].name, name) == 0)
      return &verbs[i];
  return NULL;
}

static const char *
option_name (int opt)
{
  return opt == OPT_JSON ? "--json" : opt == OPT_WATCH ? "--watch"
    : "--verified";
}

/* The verb's own arguments, checked before connecting. */
static void
check_args (const struct verb *v, char **args, int opts)
{
  int o;
  size_t i;
  uint64_t bytes;

  for (o = OPT_JSON; o <= OPT_VERIFIED; o <<= 1)
    if (opts & o && !(v->opts & o))
      usage_error ("%s: %s does not take %s", v->name, v->name,
                   option_name (o));
  if (strcmp (v->name, "rate") == 0 && parse_size (args[0], &bytes) == -1)
    usage_error ("rate: '%s' is not a size in bytes (e.g. 64K, 100M, 1G; "
                 "0 = unlimited)", args[0]);
  if (strcmp (v->name, "prefetch") == 0) {
    for (i = 0; i < sizeof policies / sizeof policies[0]; ++i)
      if (strcmp (args[0], policies[i]) == 0)
        return;
    usage_error ("prefetch: unknown policy '%s'", args[0]);
  }
}

static const struct verb *
parse_args (int argc, char **argv, struct cli *cli, char ***args)
{
  static const struct option long_opts[] = {
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { "json", no_argument, NULL, 'j' },
    { "watch", no_argument, NULL, 'w' },
    { "verified", no_argument, NULL, 'v' },
    { NULL, 0, NULL, 0 },
  };
  const struct verb *v;
  int c, npos;

  opterr = 0;                   /* our own messages, then the usage */
  while ((c = getopt_long (argc, argv, "hV", long_opts, NULL)) != -1) {
    switch (c) {
    case 'h':
      printf ("%s%s", usage_text, help_text);
      exit (EXIT_SUCCESS);
    case 'V':
      printf ("nbdshadow %s\n", PACKAGE_VERSION);
      exit (EXIT_SUCCESS);
    case 'j': cli->opts |= OPT_JSON; break;
    case 'w': cli->opts |= OPT_WATCH; break;
    case 'v': cli->opts |= OPT_VERIFIED; break;
    default:
      if (optopt)
        usage_error ("unknown option '-%c'", optopt);
      usage_error ("unknown option '%s'", argv[optind - 1]);
    }
  }
  npos = argc - optind;
  if (npos == 0)
    usage_error ("no command");
  v = find_verb (argv[optind]);
  if (v == NULL)
    usage_error ("unknown command '%s'", argv[optind]);
  if (npos != v->nargs + 2)
    usage_error ("%s: expected %s%s", v->name, v->nargs ? "an argument and " : "",
                 "the control socket path");
  *args = &argv[optind + 1];
  check_args (v, *args, cli->opts);
  cli->sock = argv[argc - 1];
  return v;
}

int
main (int argc, char **argv)
{
  struct cli cli = { .opts = 0 };
  const struct verb *v;
  char **args;
  int r;

  v = parse_args (argc, argv, &cli, &args);
  cli.tty = isatty (STDOUT_FILENO);
  if (ctl_connect (&cli.conn, cli.sock) == -1) {
    fprintf (stderr, "nbdshadow: %s: %s\n", cli.sock, cli.conn.err);
    return EXIT_FAILURE;
  }
  r = v->run (&cli, args);
  ctl_close (&cli.conn);
  if (fflush (stdout) == EOF || ferror (stdout)) {
    fprintf (stderr, "nbdshadow: standard output: %s\n", strerror (errno));
    return EXIT_FAILURE;
  }
  return r;
}
