/* nbdshadow: unit tests of the control socket server (server/control.c)
 * and of the JSON reader the CLI parses its replies with (server/json.c).
 *
 * A fake handler records its calls and answers canned payloads; the
 * tests are the clients: round trips, pipelining, malformed input,
 * many concurrent clients, clients that vanish mid-line or never read,
 * and the socket file's life (mode 0600, stale socket replaced, other
 * files refused, unlinked at stop).  The JSON reader gets valid and
 * broken documents, and mutated status objects that must never crash
 * it nor the CLI's rendering of them.
 */

#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <check.h>

#include "cli-status.h"
#include "control.h"
#include "json.h"

#define BIG_PAYLOAD 65536

/*----------------------------------------------------------------------
 * The fake handler.
 */

static pthread_mutex_t calls_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned nr_calls;
static char last_call[8192];    /* argv joined with "|" */

/* status: a canned object; echo ARGS: the arguments back; fail: an
 * error; multiline: a payload with newlines; big: BIG_PAYLOAD bytes;
 * quiet: a bare "ok"; anything else: "unknown verb".
 */
static int
fake_handler (void *opaque, int argc, char **argv, char **reply)
{
  size_t i, off = 0;

  pthread_mutex_lock (&calls_lock);
  nr_calls++;
  last_call[0] = '\0';
  for (i = 0; i < (size_t) argc; ++i)
    off += snprintf (last_call + off, sizeof last_call - off, "%s%s",
                     i ? "|" : "", argv[i]);
  pthread_mutex_unlock (&calls_lock);
  ck_assert_ptr_null (argv[argc]);

  if (strcmp (argv[0], "status") == 0)
    *reply = strdup ("{\"phase\":\"copying\",\"blocks_total\":16}");
  else if (strcmp (argv[0], "echo") == 0) {
    char *p = calloc (1, 8192);

    for (i = 1, off = 0; i < (size_t) argc; ++i)
      off += snprintf (p + off, 8192 - off, "%s%s", i > 1 ? " " : "",
                       argv[i]);
    *reply = p;
  }
  else if (strcmp (argv[0], "fail") == 0) {
    *reply = strdup ("it failed\nbadly");
    return -1;
  }
  else if (strcmp (argv[0], "multiline") == 0)
    *reply = strdup ("a\nb\r\nc");
  else if (strcmp (argv[0], "big") == 0) {
    *reply = malloc (BIG_PAYLOAD + 1);
    memset (*reply, 'x', BIG_PAYLOAD);
    (*reply)[BIG_PAYLOAD] = '\0';
  }
  else if (strcmp (argv[0], "quiet") == 0)
    *reply = NULL;
  else {
    if (asprintf (reply, "unknown verb: %s", argv[0]) == -1)
      *reply = NULL;
    return -1;
  }
  return 0;
}

static unsigned
calls (void)
{
  unsigned n;

  pthread_mutex_lock (&calls_lock);
  n = nr_calls;
  pthread_mutex_unlock (&calls_lock);
  return n;
}

static void
get_last_call (char *buf, size_t len)
{
  pthread_mutex_lock (&calls_lock);
  snprintf (buf, len, "%s", last_call);
  pthread_mutex_unlock (&calls_lock);
}

/*----------------------------------------------------------------------
 * A client.
 */

static char tmpdir[256];
static char sockpath[256];

static void
setup (void)
{
  const char *t = getenv ("TMPDIR");

  snprintf (tmpdir, sizeof tmpdir, "%s/nbdshadow-test-control.XXXXXX",
            t && t[0] ? t : "/tmp");
  ck_assert_ptr_nonnull (mkdtemp (tmpdir));
  ck_assert_int_lt (snprintf (sockpath, sizeof sockpath, "%s/control.sock",
                              tmpdir), sizeof sockpath);
  signal (SIGPIPE, SIG_IGN);
}

static void
teardown (void)
{
  DIR *d = opendir (tmpdir);
  struct dirent *e;

  if (d) {
    while ((e = readdir (d)) != NULL) {
      char p[512];

      if (e->d_name[0] == '.' && (e->d_name[1] == '\0' ||
                                  strcmp (e->d_name, "..") == 0))
        continue;
      snprintf (p, sizeof p, "%s/%s", tmpdir, e->d_name);
      unlink (p);
    }
    closedir (d);
  }
  rmdir (tmpdir);
}

/* Connect, or -1 with errno. */
static int
try_connect (const char *path)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

  ck_assert_int_ge (fd, 0);
  ck_assert_uint_lt (strlen (path), sizeof sun.sun_path);
  memcpy (sun.sun_path, path, strlen (path) + 1);
  if (connect (fd, (struct sockaddr *) &sun, sizeof sun) == -1) {
    int err = errno;

    close (fd);
    errno = err;
    return -1;
  }
  return fd;
}

static int
client (void)
{
  int fd = try_connect (sockpath);

  ck_assert_msg (fd >= 0, "connect %s: %s", sockpath, strerror (errno));
  return fd;
}

static void
send_all (int fd, const void *buf, size_t len)
{
  const char *p = buf;

  while (len > 0) {
    ssize_t n = send (fd, p, len, MSG_NOSIGNAL);

    ck_assert_msg (n > 0, "send: %s", strerror (errno));
    p += n;
    len -= n;
  }
}

/* Read one reply line (without "\n") into buf; a 10 s timeout so that a
 * server that never answers fails the test instead of hanging it.
 */
static void
read_line (int fd, char *buf, size_t len)
{
  size_t off = 0;

  for (;;) {
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    ssize_t n;

    ck_assert_int_lt (off, len - 1);
    ck_assert_msg (poll (&pfd, 1, 10000) == 1, "no reply within 10 s");
    n = read (fd, buf + off, 1);
    ck_assert_msg (n == 1, "read: %s", n == 0 ? "EOF" : strerror (errno));
    if (buf[off] == '\n')
      break;
    off++;
  }
  buf[off] = '\0';
}

static void
request (int fd, const char *req, char *reply, size_t len)
{
  send_all (fd, req, strlen (req));
  read_line (fd, reply, len);
}

static void
expect (int fd, const char *req, const char *want)
{
  char reply[8192];

  request (fd, req, reply, sizeof reply);
  ck_assert_str_eq (reply, want);
}

static struct control *
start (void)
{
  struct control *c = control_start (sockpath, fake_handler, NULL);

  ck_assert_ptr_nonnull (c);
  return c;
}

/*----------------------------------------------------------------------
 * Tests.
 */

START_TEST (test_round_trip)
{
  struct control *c = start ();
  int fd = client ();
  char call[8192];
  unsigned before = calls ();

  expect (fd, "status\n", "ok {\"phase\":\"copying\",\"blocks_total\":16}");
  expect (fd, "  echo   a  b c \n", "ok a b c");
  get_last_call (call, sizeof call);
  ck_assert_str_eq (call, "echo|a|b|c");
  expect (fd, "quiet\n", "ok");
  expect (fd, "fail\n", "error it failed badly");
  expect (fd, "multiline\n", "ok a b  c");
  expect (fd, "frobnicate now\n", "error unknown verb: frobnicate");
  expect (fd, "status\r\n", "ok {\"phase\":\"copying\",\"blocks_total\":16}");
  ck_assert_uint_eq (calls () - before, 7);

  /* The payload is what the CLI parses. */
  {
    char reply[8192], err[128];
    struct json *st;
    uint64_t blocks;

    request (fd, "status\n", reply, sizeof reply);
    st = json_parse (reply + 3, strlen (reply + 3), err, sizeof err);
    ck_assert_msg (st != NULL, "%s", err);
    ck_assert_str_eq (json_get_string (st, "phase"), "copying");
    ck_assert (json_get_u64 (st, "blocks_total", &blocks));
    ck_assert_uint_eq (blocks, 16);
    json_free (st);
  }
  close (fd);
  control_stop (c);
}
END_TEST

START_TEST (test_pipelined)
{
  struct control *c = start ();
  int fd = client ();
  const char *reqs = "echo 1\nfail\necho 2\n\nstatus\necho 3\n";
  char reply[8192];

  send_all (fd, reqs, strlen (reqs));
  read_line (fd, reply, sizeof reply);
  ck_assert_str_eq (reply, "ok 1");
  read_line (fd, reply, sizeof reply);
  ck_assert_str_eq (reply, "error it failed badly");
  read_line (fd, reply, sizeof reply);
  ck_assert_str_eq (reply, "ok 2");
  read_line (fd, reply, sizeof reply);
  ck_assert_str_eq (reply, "error empty request");
  read_line (fd, reply, sizeof reply);
  ck_assert_str_eq (reply, "ok {\"phase\":\"copying\",\"blocks_total\":16}");
  read_line (fd, reply, sizeof reply);
  ck_assert_str_eq (reply, "ok 3");

  /* A request split across writes is put back together. */
  send_all (fd, "ec", 2);
  usleep (50000);
  send_all (fd, "ho sp", 5);
  usleep (50000);
  send_all (fd, "lit\necho x\n", 11);
  read_line (fd, reply, sizeof reply);
  ck_assert_str_eq (reply, "ok split");
  read_line (fd, reply, sizeof reply);
  ck_assert_str_eq (reply, "ok x");
  close (fd);
  control_stop (c);
}
END_TEST

START_TEST (test_malformed)
{
  struct control *c = start ();
  int fd = client ();
  unsigned before = calls ();
  char *longline;
  char reply[8192];
  size_t i;

  expect (fd, "\n", "error empty request");
  expect (fd, "\r\n", "error empty request");
  expect (fd, "    \n", "error empty request");
  expect (fd, "sta\x01tus\n",
          "error request contains a non-printable or non-ASCII byte");
  expect (fd, "status\x7f\n",
          "error request contains a non-printable or non-ASCII byte");
  expect (fd, "echo \xc3\xa9\n",
          "error request contains a non-printable or non-ASCII byte");
  expect (fd, "echo\ta\n",
          "error request contains a non-printable or non-ASCII byte");
  send_all (fd, "\0\0\0\n", 4);
  read_line (fd, reply, sizeof reply);
  ck_assert_str_eq (reply,
                    "error request contains a non-printable or non-ASCII byte");
  ck_assert_uint_eq (calls (), before);

  /* 5000 bytes then a newline: one error, then the next request works. */
  longline = malloc (5002);
  memcpy (longline, "echo ", 5);
  for (i = 5; i < 5000; ++i)
    longline[i] = 'a' + i % 26;
  longline[5000] = '\n';
  longline[5001] = '\0';
  expect (fd, longline,
          "error request line too long (at most 4096 bytes)");
  expect (fd, "echo after\n", "ok after");

  /* Exactly at the limit is fine: 4095 bytes and the newline. */
  longline[4095] = '\n';
  longline[4096] = '\0';
  request (fd, longline, reply, sizeof reply);
  ck_assert_int_eq (strncmp (reply, "ok fghijklmno", 13), 0);
  ck_assert_uint_eq (strlen (reply), 3 + 4090);

  /* A megabyte without a newline gets its error before it ends. */
  for (i = 0; i < 256; ++i) {
    memset (longline, 'z', 4096);
    send_all (fd, longline, 4096);
  }
  read_line (fd, reply, sizeof reply);
  ck_assert_str_eq (reply, "error request line too long (at most 4096 bytes)");
  expect (fd, "zzz\necho still\n", "ok still");
  ck_assert_uint_eq (calls (), before + 3);
  free (longline);
  close (fd);

  /* The server is still up for newcomers. */
  fd = client ();
  expect (fd, "echo alive\n", "ok alive");
  close (fd);
  control_stop (c);
}
END_TEST

#define HAMMER_CLIENTS 32
#define HAMMER_REQUESTS 200

/* Each thread checks that its replies are its own and in order. */
static void *
hammer (void *vp)
{
  int id = (int) (long) vp;
  int fd = client ();
  int i;

  for (i = 0; i < HAMMER_REQUESTS; ++i) {
    char req[64], want[64], reply[8192];

    snprintf (req, sizeof req, "echo %d %d\n", id, i);
    snprintf (want, sizeof want, "ok %d %d", id, i);
    if (i % 10 == 0) {          /* some pipelining too */
      send_all (fd, "status\n", 7);
      read_line (fd, reply, sizeof reply);
      ck_assert_int_eq (strncmp (reply, "ok {", 4), 0);
    }
    request (fd, req, reply, sizeof reply);
    ck_assert_str_eq (reply, want);
  }
  close (fd);
  return NULL;
}

START_TEST (test_concurrent_clients)
{
  struct control *c = start ();
  pthread_t t[HAMMER_CLIENTS];
  long i;
  unsigned before = calls ();

  for (i = 0; i < HAMMER_CLIENTS; ++i)
    ck_assert_int_eq (pthread_create (&t[i], NULL, hammer, (void *) i), 0);
  for (i = 0; i < HAMMER_CLIENTS; ++i)
    ck_assert_int_eq (pthread_join (t[i], NULL), 0);
  ck_assert_uint_eq (calls () - before,
                     HAMMER_CLIENTS * (HAMMER_REQUESTS + HAMMER_REQUESTS / 10));
  control_stop (c);
}
END_TEST

/* Connections beyond the limit are told so and closed; the others are
 * unaffected, and a freed slot can be used again.
 */
START_TEST (test_too_many_clients)
{
  struct control *c = start ();
  int fds[64], extra, i;
  char reply[256];

  for (i = 0; i < 64; ++i) {
    fds[i] = client ();
    expect (fds[i], "echo in\n", "ok in");
  }
  extra = client ();              /* the kernel accepts; the server refuses */
  read_line (extra, reply, sizeof reply);
  ck_assert_str_eq (reply, "error too many connections");
  ck_assert_int_eq (read (extra, reply, sizeof reply), 0);
  close (extra);
  expect (fds[17], "echo still\n", "ok still");
  close (fds[17]);
  usleep (100000);                /* let the server see the close */
  fds[17] = client ();
  expect (fds[17], "echo again\n", "ok again");
  for (i = 0; i < 64; ++i)
    close (fds[i]);
  control_stop (c);
}
END_TEST

START_TEST (test_half_line_disconnect)
{
  struct control *c = start ();
  int fd = client (), fd2 = client ();
  unsigned before = calls ();

  send_all (fd, "echo half a li", 14);
  usleep (50000);
  close (fd);
  expect (fd2, "echo other\n", "ok other");

  /* Half a line, then shut down writing: the complete requests before
   * it are answered, the fragment is dropped, and the server closes.
   */
  fd = client ();
  send_all (fd, "echo whole\necho frag", 20);
  ck_assert_int_eq (shutdown (fd, SHUT_WR), 0);
  {
    char reply[64];
    ssize_t n;

    read_line (fd, reply, sizeof reply);
    ck_assert_str_eq (reply, "ok whole");
    n = read (fd, reply, sizeof reply);
    ck_assert_int_eq (n, 0);
  }
  close (fd);
  ck_assert_uint_eq (calls () - before, 2);
  expect (fd2, "echo still\n", "ok still");
  close (fd2);
  control_stop (c);
}
END_TEST

START_TEST (test_never_reads)
{
  struct control *c = start ();
  int hog = client (), other = client ();
  struct timespec t0, t1;
  bool dropped = false;
  size_t sent = 0;

  ck_assert_int_eq (fcntl (hog, F_SETFL, O_NONBLOCK), 0);
  clock_gettime (CLOCK_MONOTONIC, &t0);
  /* Send "big" requests and never read: each produces 64 KiB of reply.
   * The server must drop us (EPIPE / ECONNRESET) within a few seconds,
   * and serve the other client meanwhile.
   */
  while (!dropped) {
    ssize_t n = send (hog, "big\n", 4, MSG_NOSIGNAL);

    if (n == -1 && (errno == EPIPE || errno == ECONNRESET))
      dropped = true;
    else if (n == -1) {
      struct pollfd pfd = { .fd = hog, .events = POLLOUT };

      ck_assert_int_eq (errno, EAGAIN);
      poll (&pfd, 1, 100);
    }
    else
      sent += n;
    if (sent % 400 == 0)
      expect (other, "echo ping\n", "ok ping");
    clock_gettime (CLOCK_MONOTONIC, &t1);
    ck_assert_msg (t1.tv_sec - t0.tv_sec < 30,
                   "a client that never reads was not dropped "
                   "(%zu bytes of requests sent)", sent);
  }
  ck_assert_uint_gt (sent, 4 * 16);   /* at least the cap's worth */
  close (hog);
  expect (other, "echo fine\n", "ok fine");
  close (other);
  control_stop (c);
}
END_TEST

START_TEST (test_socket_mode)
{
  mode_t old = umask (0);       /* the mode must not depend on umask */
  struct control *c = start ();
  struct stat st;
  DIR *d;
  struct dirent *e;
  int entries = 0;

  umask (old);
  ck_assert_int_eq (lstat (sockpath, &st), 0);
  ck_assert (S_ISSOCK (st.st_mode));
  ck_assert_uint_eq (st.st_mode & 07777, 0600);
  ck_assert_uint_eq (st.st_uid, geteuid ());

  /* No temporary directory left behind. */
  d = opendir (tmpdir);
  ck_assert_ptr_nonnull (d);
  while ((e = readdir (d)) != NULL)
    if (strcmp (e->d_name, ".") != 0 && strcmp (e->d_name, "..") != 0) {
      ck_assert_str_eq (e->d_name, "control.sock");
      entries++;
    }
  closedir (d);
  ck_assert_int_eq (entries, 1);
  control_stop (c);
}
END_TEST

START_TEST (test_stale_socket_replaced)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  int fd = socket (AF_UNIX, SOCK_STREAM, 0);
  struct stat st;
  struct control *c;

  /* A socket file nobody listens on: what a crashed nbdkit leaves. */
  memcpy (sun.sun_path, sockpath, strlen (sockpath) + 1);
  ck_assert_int_eq (bind (fd, (struct sockaddr *) &sun, sizeof sun), 0);
  close (fd);
  ck_assert_int_eq (lstat (sockpath, &st), 0);
  ck_assert (S_ISSOCK (st.st_mode));

  c = start ();
  fd = client ();
  expect (fd, "echo replaced\n", "ok replaced");
  close (fd);
  control_stop (c);
}
END_TEST

START_TEST (test_regular_file_refused)
{
  FILE *fp = fopen (sockpath, "w");
  char buf[64] = "";

  ck_assert_ptr_nonnull (fp);
  fputs ("precious\n", fp);
  ck_assert_int_eq (fclose (fp), 0);

  ck_assert_ptr_null (control_start (sockpath, fake_handler, NULL));
  fp = fopen (sockpath, "r");
  ck_assert_ptr_nonnull (fp);
  ck_assert_ptr_nonnull (fgets (buf, sizeof buf, fp));
  fclose (fp);
  ck_assert_str_eq (buf, "precious\n");

  /* A directory is refused too. */
  ck_assert_int_eq (unlink (sockpath), 0);
  ck_assert_int_eq (mkdir (sockpath, 0700), 0);
  ck_assert_ptr_null (control_start (sockpath, fake_handler, NULL));
  ck_assert_int_eq (rmdir (sockpath), 0);
}
END_TEST

START_TEST (test_live_socket_refused)
{
  struct control *c = start ();
  int fd;

  ck_assert_ptr_null (control_start (sockpath, fake_handler, NULL));
  fd = client ();                 /* the first server is untouched */
  expect (fd, "echo first\n", "ok first");
  close (fd);
  control_stop (c);
}
END_TEST

START_TEST (test_stop_unlinks)
{
  struct control *c = start ();
  int fd = client ();
  struct stat st;

  expect (fd, "echo x\n", "ok x");
  /* Stop with a client still connected and one mid-line. */
  send_all (fd, "echo y", 6);
  control_stop (c);
  ck_assert_int_eq (lstat (sockpath, &st), -1);
  ck_assert_int_eq (errno, ENOENT);
  ck_assert_int_eq (try_connect (sockpath), -1);
  close (fd);

  /* And it can start again at the same path. */
  c = start ();
  fd = client ();
  expect (fd, "echo again\n", "ok again");
  close (fd);
  control_stop (c);
  control_stop (NULL);
}
END_TEST

START_TEST (test_bad_paths)
{
  char longpath[200];

  memset (longpath, 'a', sizeof longpath - 1);
  longpath[0] = '/';
  longpath[sizeof longpath - 1] = '\0';
  ck_assert_ptr_null (control_start (longpath, fake_handler, NULL));
  ck_assert_ptr_null (control_start ("", fake_handler, NULL));
  ck_assert_ptr_null (control_start ("/nonexistent-dir/x/control.sock",
                                     fake_handler, NULL));
}
END_TEST

/* A peer with another uid is refused even if the mode lets it in.  Only
 * root can become another user to try it.
 */
START_TEST (test_other_uid_refused)
{
  struct control *c;
  pid_t pid;
  int status;

  if (geteuid () != 0) {
    fprintf (stderr, "test-control: not root: the other-uid refusal is "
             "checked only when run as root\n");
    return;
  }
  c = start ();
  ck_assert_int_eq (chmod (sockpath, 0666), 0);
  ck_assert_int_eq (chmod (tmpdir, 0755), 0);
  pid = fork ();
  ck_assert_int_ge (pid, 0);
  if (pid == 0) {
    char reply[256];
    int fd;

    if (setgid (65534) == -1 || setuid (65534) == -1)
      _exit (10);
    fd = try_connect (sockpath);
    if (fd == -1)
      _exit (11);
    /* The refusal arrives before any request is read. */
    read_line (fd, reply, sizeof reply);
    _exit (strcmp (reply, "error permission denied") == 0 ? 0 : 12);
  }
  ck_assert_int_eq (waitpid (pid, &status, 0), pid);
  ck_assert (WIFEXITED (status));
  ck_assert_int_eq (WEXITSTATUS (status), 0);
  control_stop (c);
}
END_TEST

/*----------------------------------------------------------------------
 * The CLI's JSON reader.
 */

static struct json *
parse_ok (const char *text)
{
  char err[128];
  struct json *v = json_parse (text, strlen (text), err, sizeof err);

  ck_assert_msg (v != NULL, "'%s' did not parse: %s", text, err);
  return v;
}

/* Print v compactly into a malloc'd string. */
static char *
print_compact (const struct json *v, int indent)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *fp = open_memstream (&buf, &len);

  ck_assert_ptr_nonnull (fp);
  json_print (fp, v, indent);
  ck_assert_int_eq (fclose (fp), 0);
  return buf;
}

START_TEST (test_json_values)
{
  struct json *v;
  uint64_t u;
  double d;
  bool b;
  char *out;

  v = parse_ok (" {\"a\": {\"b\": [10, {\"c\": \"x\"}, true, null]},"
                " \"n\": -1.5e3, \"big\": 18446744073709551615,"
                " \"huge\": 1e400, \"a\": {\"dup\": 1}, \"e\": {}, \"f\": []}\n");
  ck_assert_ptr_null (json_path (v, "a.b"));   /* last "a" wins */
  ck_assert (json_get_u64 (v, "a.dup", &u));
  ck_assert_uint_eq (u, 1);
  ck_assert (json_get_double (v, "n", &d));
  ck_assert (d == -1500);
  ck_assert (!json_get_u64 (v, "n", &u));      /* negative */
  ck_assert (json_get_u64 (v, "big", &u));
  ck_assert (u == UINT64_MAX);                 /* exact, not via double */
  ck_assert (!json_get_double (v, "huge", &d));
  ck_assert (!json_get_bool (v, "n", &b));
  ck_assert_ptr_null (json_get_string (v, "n"));
  ck_assert_ptr_null (json_path (v, "nope.deeper"));
  ck_assert_ptr_null (json_path (v, "e.x"));
  ck_assert_ptr_null (json_path (v, "f.0"));
  ck_assert_ptr_null (json_path (v, ""));
  out = print_compact (v, 0);
  ck_assert_str_eq (out, "{\"a\":{\"b\":[10,{\"c\":\"x\"},true,null]},"
                    "\"n\":-1.5e3,\"big\":18446744073709551615,"
                    "\"huge\":1e400,\"a\":{\"dup\":1},\"e\":{},\"f\":[]}");
  free (out);
  json_free (v);

  v = parse_ok ("{\"a\": {\"b\": [10, {\"c\": \"x\"}, true]}}");
  ck_assert_str_eq (json_get_string (v, "a.b.1.c"), "x");
  ck_assert (json_get_u64 (v, "a.b.0", &u));
  ck_assert_uint_eq (u, 10);
  ck_assert (json_get_bool (v, "a.b.2", &b) && b);
  ck_assert_ptr_null (json_path (v, "a.b.3"));
  ck_assert_ptr_null (json_path (v, "a.b.-1"));
  ck_assert_ptr_null (json_path (v, "a.b.x"));
  out = print_compact (v, 2);
  ck_assert_str_eq (out, "{\n  \"a\": {\n    \"b\": [\n      10,\n      {\n"
                    "        \"c\": \"x\"\n      },\n      true\n    ]\n  }\n}");
  free (out);
  json_free (v);

  /* Escapes, surrogate pairs, an embedded NUL. */
  v = parse_ok ("\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t \\u00e9 \\ud83d\\ude00 "
                "\\u0000 \\ud800x\"");
  ck_assert_uint_eq (v->len, 29);
  ck_assert_int_eq (memcmp (v->text, "q\" b\\ s/ \b\f\n\r\t \xc3\xa9 "
                            "\xf0\x9f\x98\x80 \0 \xef\xbf\xbdx", 29), 0);
  out = print_compact (v, 0);
  ck_assert_str_eq (out, "\"q\\\" b\\\\ s/ \\b\\f\\n\\r\\t \xc3\xa9 "
                    "\xf0\x9f\x98\x80 \\u0000 \xef\xbf\xbdx\"");
  free (out);
  json_free (v);
}
END_TEST

START_TEST (test_json_malformed)
{
  static const char *const bad[] = {
    "", " ", "{", "}", "[1,]", "[,1]", "{\"a\" 1}", "{\"a\":}", "{1:2}",
    "{\"a\":1,}", "01", "1.", ".5", "-", "1e", "1e+", "+1", "tru", "nul",
    "\"abc", "\"a\x01\"", "\"a\nb\"", "{} x", "[1 2]", "\"\\x\"",
    "\"\\u12\"", "\"\\u12g4\"", "[\"a\\", "NaN", "Infinity", "'a'",
    "{\"a\":1}}", "[[]", "\xff",
  };
  char deep[200], err[128];
  size_t i;

  for (i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
    struct json *v = json_parse (bad[i], strlen (bad[i]), err, sizeof err);

    ck_assert_msg (v == NULL, "'%s' parsed", bad[i]);
    ck_assert_msg (strncmp (err, "at byte ", 8) == 0, "'%s': %s", bad[i], err);
  }
  /* An embedded NUL is a byte like any other: not the end. */
  ck_assert_ptr_null (json_parse ("{}\0x", 4, err, sizeof err));

  /* Nesting is bounded: 64 levels parse, 65 do not. */
  memset (deep, '[', 64);
  memset (deep + 64, ']', 64);
  {
    char *t = strndup (deep, 128);
    struct json *v = parse_ok (t);

    json_free (v);
    free (t);
  }
  memset (deep, '[', 65);
  memset (deep + 65, ']', 65);
  ck_assert_ptr_null (json_parse (deep, 130, err, sizeof err));
  ck_assert_ptr_nonnull (strstr (err, "nested deeper"));
}
END_TEST

/* A status object as the filter sends it (control.h). */
static const char status_doc[] =
  "{\"phase\": \"copying\", \"status_line\": \"shadow: copying 42.1%\", "
  "\"size\": 1073741824, \"block_size\": 65536, \"blocks_total\": 16384, "
  "\"blocks_resident\": 6899, \"blocks_written\": 12, "
  "\"bytes_resident\": 452132864, \"bytes_copied\": {\"on_demand\": 1, "
  "\"prefetch\": 2, \"background\": 3, \"total\": 6}, \"client_reads\": "
  "{\"ops\": 5, \"bytes_shadow\": 870, \"bytes_origin\": 130, "
  "\"hit_ratio\": 0.87}, \"client_writes\": {\"ops\": 1, \"bytes\": 2}, "
  "\"prefetch\": {\"policy\": \"hybrid\", \"issued\": 10, \"used\": 8, "
  "\"wasted\": 2, \"precision\": 0.8, \"accuracy\": {\"ngram\": 0.5}}, "
  "\"copy_rate\": 99614720, \"rate_limit\": 0, \"paused\": false, "
  "\"background\": true, \"eta_seconds\": null, \"errors\": {\"origin\": 0, "
  "\"shadows\": [{\"uri\": \"nbd://x\", \"connected\": true, \"errors\": 0, "
  "\"reconnects\": 0, \"retries\": 0, \"latency_us\": 12.5}]}, "
  "\"verify\": {\"state\": \"running\", \"verified\": false, "
  "\"blocks_checked\": 100, \"blocks_total\": 16384, \"mismatches\": 0, "
  "\"recopied\": 0, \"message\": \"\"}, \"commits\": {\"count\": 1, "
  "\"failures\": 0, \"last_ms\": 2.5}, \"state\": null}";

/* Render everything the CLI renders; only crashes and sanitizer
 * reports matter here.
 */
static void
render_all (FILE *null, const struct json *st)
{
  char line[512];

  status_summary (null, st);
  status_progress_line (st, 80, line, sizeof line);
  status_verify_line (st, 1, line, sizeof line);
  status_verify_report (null, st);
  status_copy_finished (st);
}

/* Random mutations of a status object: the parser must never crash,
 * whatever it accepts must print and re-parse to the same text, and the
 * CLI's rendering must cope with fields of any type or missing.
 */
START_TEST (test_json_mutations)
{
  FILE *null = fopen ("/dev/null", "w");
  size_t n = strlen (status_doc), i;
  unsigned seed = 12345, parsed = 0;
  char *doc = malloc (n + 16), err[128];
  static const char pool[] = "{}[]\",:0123456789.-+eEtrufalsn \\u\x01\xff";

  ck_assert_ptr_nonnull (null);
  for (i = 0; i < 20000; ++i) {
    size_t len = n, k, edits = 1 + rand_r (&seed) % 3;
    struct json *v;

    memcpy (doc, status_doc, n);
    for (k = 0; k < edits; ++k) {
      size_t at = rand_r (&seed) % len;
      char ch = pool[rand_r (&seed) % (sizeof pool - 1)];

      switch (rand_r (&seed) % 3) {
      case 0: doc[at] = ch; break;                          /* replace */
      case 1: memmove (doc + at, doc + at + 1, len - at - 1); /* delete */
        len--;
        break;
      default: memmove (doc + at + 1, doc + at, len - at);  /* insert */
        doc[at] = ch;
        len++;
      }
    }
    v = json_parse (doc, len, err, sizeof err);
    if (v == NULL) {
      ck_assert (strncmp (err, "at byte ", 8) == 0);
      continue;
    }
    parsed++;
    {
      char *a = print_compact (v, 0), *b;
      struct json *w = parse_ok (a);

      b = print_compact (w, 0);
      ck_assert_str_eq (a, b);
      free (a);
      free (b);
      json_free (w);
    }
    render_all (null, v);
    json_free (v);
  }
  ck_assert_uint_gt (parsed, 1000);   /* the valid side was exercised */
  {
    struct json *v = parse_ok (status_doc);

    render_all (null, v);
    json_free (v);
    v = parse_ok ("{\"size\": \"big\", \"errors\": {\"shadows\": 5}, "
                  "\"prefetch\": {\"accuracy\": [1]}, \"verify\": 3, "
                  "\"state\": [], \"bytes_resident\": -5, \"eta_seconds\": -1}");
    render_all (null, v);
    json_free (v);
  }
  free (doc);
  fclose (null);
}
END_TEST

static Suite *
control_suite (void)
{
  Suite *s = suite_create ("control");
  TCase *tc = tcase_create ("control");

  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_set_timeout (tc, 120);
  tcase_add_test (tc, test_round_trip);
  tcase_add_test (tc, test_pipelined);
  tcase_add_test (tc, test_malformed);
  tcase_add_test (tc, test_concurrent_clients);
  tcase_add_test (tc, test_too_many_clients);
  tcase_add_test (tc, test_half_line_disconnect);
  tcase_add_test (tc, test_never_reads);
  tcase_add_test (tc, test_socket_mode);
  tcase_add_test (tc, test_stale_socket_replaced);
  tcase_add_test (tc, test_regular_file_refused);
  tcase_add_test (tc, test_live_socket_refused);
  tcase_add_test (tc, test_stop_unlinks);
  tcase_add_test (tc, test_bad_paths);
  tcase_add_test (tc, test_other_uid_refused);
  suite_add_tcase (s, tc);

  tc = tcase_create ("json");
  tcase_set_timeout (tc, 120);
  tcase_add_test (tc, test_json_values);
  tcase_add_test (tc, test_json_malformed);
  tcase_add_test (tc, test_json_mutations);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (control_suite ());
  int failed;

  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
