/* test-predict-trace.c: the three trace readers parse what they should,
 * reject malformed lines with "NAME:LINE: why", and the writer's output
 * reads back identically, also when written from many threads. */
#include <config.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "trace.h"

static char tmpdir[] = "/tmp/test-predict-trace-XXXXXX";

static char *
write_file (const char *name, const char *content)
{
  char *path;
  FILE *fp;
  ck_assert_int_ge (asprintf (&path, "%s/%s", tmpdir, name), 0);
  fp = fopen (path, "w");
  ck_assert_ptr_nonnull (fp);
  fputs (content, fp);
  fclose (fp);
  return path;
}

/* Read the whole file; returns the records read, *rc the last result. */
static size_t
read_all (const char *path, enum pred_trace_format fmt, struct pred_access *out,
          size_t max, int *rc, char *err, size_t errlen, unsigned *ndev)
{
  char e[256];
  struct pred_trace_reader *r = pred_trace_open (path, fmt, e, sizeof e);
  size_t n = 0;
  struct pred_access a;
  ck_assert_msg (r != NULL, "%s", e);
  while ((*rc = pred_trace_next (r, &a)) == 1)
    if (n < max)
      out[n++] = a;
  snprintf (err, errlen, "%s", pred_trace_error (r));
  if (ndev)
    *ndev = pred_trace_ndevices (r);
  /* Errors are sticky. */
  if (*rc < 0)
    ck_assert_int_eq (pred_trace_next (r, &a), -1);
  pred_trace_close (r);
  return n;
}

START_TEST (test_native)
{
  struct pred_access a[8];
  char err[256];
  int rc;
  char *p = write_file ("ok.trace",
                        "# a comment\n"
                        "\n"
                        "10 R 0 4096\n"
                        "  20\tW 8192 512  \n"
                        "30 Z 4096 4096\n"
                        "40 T 0 65536\n"
                        "50 F 0 0\n"
                        "60 R 18446744073709486080 65535");  /* no newline */
  size_t n = read_all (p, PRED_TRACE_AUTO, a, 8, &rc, err, sizeof err, NULL);
  ck_assert_int_eq (rc, 0);
  ck_assert_uint_eq (n, 6);
  ck_assert_uint_eq (a[0].time_us, 10);
  ck_assert_int_eq (a[0].op, 'R');
  ck_assert_uint_eq (a[0].length, 4096);
  ck_assert_uint_eq (a[1].time_us, 20);
  ck_assert_int_eq (a[1].op, 'W');
  ck_assert_uint_eq (a[1].offset, 8192);
  ck_assert_uint_eq (a[1].length, 512);
  ck_assert_int_eq (a[2].op, 'Z');
  ck_assert_int_eq (a[3].op, 'T');
  ck_assert_int_eq (a[4].op, 'F');
  ck_assert_uint_eq (a[5].offset, UINT64_C (18446744073709486080));
  ck_assert_uint_eq (a[5].dev, 0);
  free (p);
}
END_TEST

struct bad { const char *content; unsigned line; const char *why; };

static void
check_bad (const char *name, enum pred_trace_format fmt, const struct bad *b)
{
  struct pred_access a[4];
  char err[256], prefix[128];
  int rc;
  char *p = write_file (name, b->content);
  read_all (p, fmt, a, 4, &rc, err, sizeof err, NULL);
  ck_assert_msg (rc == -1, "%s: accepted %s", name, b->content);
  snprintf (prefix, sizeof prefix, "%s:%u: ", p, b->line);
  ck_assert_msg (strncmp (err, prefix, strlen (prefix)) == 0,
                 "message `%s' does not start with `%s'", err, prefix);
  ck_assert_msg (strstr (err, b->why) != NULL, "message `%s' lacks `%s'", err, b->why);
  free (p);
}

START_TEST (test_native_malformed)
{
  static const struct bad bad[] = {
    { "1 R 0 512\n2 R 0\n", 2, "expected 4 fields" },
    { "1 R 0 512\n\n# c\n2 R 0 512 9\n", 4, "expected 4 fields" },
    { "1 X 0 512\n", 1, "bad op" },
    { "1 RW 0 512\n", 1, "bad op" },
    { "1 R -5 512\n", 1, "bad offset" },
    { "1 R 0x10 512\n", 1, "bad offset" },
    { "t R 0 512\n", 1, "bad time" },
    { "1 R 0 4294967296\n", 1, "bad length" },
    { "1 R 18446744073709551615 2\n", 1, "overflows" },
    { "1 R 99999999999999999999 2\n", 1, "bad offset" },
    { "1 R 0 512\n2 R 0 512\n3 W 1.5 512\n", 3, "bad offset" },
  };
  char name[32];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf (name, sizeof name, "bad%zu.trace", i);
    check_bad (name, PRED_TRACE_NATIVE, &bad[i]);
  }
  /* A line longer than the limit. */
  char *big = malloc (PRED_TRACE_MAX_LINE + 100);
  memset (big, '1', PRED_TRACE_MAX_LINE + 50);
  strcpy (big + PRED_TRACE_MAX_LINE + 50, "\n");
  char *content;
  ck_assert_int_ge (asprintf (&content, "1 R 0 512\n%s", big), 0);
  struct bad b = { content, 2, "longer than" };
  check_bad ("long.trace", PRED_TRACE_NATIVE, &b);
  free (content);
  free (big);

  /* The stand-alone line parser. */
  struct pred_access a;
  char err[128];
  ck_assert_int_eq (pred_trace_parse_native ("5 W 1 2", &a, err, sizeof err), 1);
  ck_assert_int_eq (pred_trace_parse_native ("# x", &a, err, sizeof err), 0);
  ck_assert_int_eq (pred_trace_parse_native ("5 Q 1 2", &a, err, sizeof err), -1);
  ck_assert (strstr (err, "bad op") != NULL);
}
END_TEST

START_TEST (test_msr)
{
  struct pred_access a[8];
  char err[256];
  int rc;
  unsigned ndev;
  char *p = write_file ("hm_1.csv",
                        "Timestamp,Hostname,DiskNumber,Type,Offset,Size,ResponseTime\n"
                        "128166372003061629,hm,1,Read,3154152960,32768,1409\n"
                        "128166372016382155,hm,1,Write,3154152960,4096,3000\n"
                        "128166372026382245,src1,0,read,512,512,1\n");
  size_t n = read_all (p, PRED_TRACE_AUTO, a, 8, &rc, err, sizeof err, &ndev);
  ck_assert_int_eq (rc, 0);
  ck_assert_uint_eq (n, 3);
  ck_assert_uint_eq (ndev, 2);
  ck_assert_uint_eq (a[0].time_us, UINT64_C (128166372003061629) / 10);
  ck_assert_int_eq (a[0].op, 'R');
  ck_assert_uint_eq (a[0].offset, UINT64_C (3154152960));
  ck_assert_uint_eq (a[0].length, 32768);
  ck_assert_int_eq (a[1].op, 'W');
  ck_assert_uint_eq (a[1].dev, a[0].dev);
  ck_assert_uint_ne (a[2].dev, a[0].dev);

  struct pred_trace_reader *r = pred_trace_open (p, PRED_TRACE_MSR, err, sizeof err);
  struct pred_access x;
  while (pred_trace_next (r, &x) == 1)
    ;
  ck_assert_str_eq (pred_trace_device_name (r, 0), "hm_1");
  ck_assert_str_eq (pred_trace_device_name (r, 1), "src1_0");
  ck_assert_ptr_null (pred_trace_device_name (r, 2));
  ck_assert_int_eq (pred_trace_get_format (r), PRED_TRACE_MSR);
  pred_trace_close (r);
  free (p);

  static const struct bad bad[] = {
    { "1,h,0,Read,0,512,1\n1,h,0,Delete,0,512,1\n", 2, "bad Type" },
    { "1,h,0,Read,0,512\n", 1, "expected 7" },
    { "1,h,0,Read,0,512,1,9\n", 1, "expected 7" },
    { "1,h,x,Read,0,512,1\n", 1, "bad DiskNumber" },
    { "1,h,0,Read,-1,512,1\n", 1, "bad Offset" },
    { "1,,0,Read,0,512,1\n", 1, "bad Hostname" },
  };
  char name[32];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf (name, sizeof name, "bad%zu.csv", i);
    check_bad (name, PRED_TRACE_MSR, &bad[i]);
  }
}
END_TEST

START_TEST (test_disksim)
{
  struct pred_access a[8];
  char err[256];
  int rc;
  unsigned ndev;
  char *p = write_file ("ds.trace",
                        "11413000 0 657728 16 1\n"
                        "11565000 1 31244784 64 0\n"
                        "11721000 0 21868784 16 3\n");
  size_t n = read_all (p, PRED_TRACE_AUTO, a, 8, &rc, err, sizeof err, &ndev);
  ck_assert_int_eq (rc, 0);
  ck_assert_uint_eq (n, 3);
  ck_assert_uint_eq (ndev, 2);
  ck_assert_uint_eq (a[0].time_us, 11413);
  ck_assert_uint_eq (a[0].offset, UINT64_C (657728) * 512);
  ck_assert_uint_eq (a[0].length, 16 * 512);
  ck_assert_int_eq (a[0].op, 'R');
  ck_assert_int_eq (a[1].op, 'W');
  ck_assert_int_eq (a[2].op, 'R');             /* flags 3: bit 0 set */
  ck_assert_uint_eq (a[1].dev, 1);
  ck_assert_uint_eq (a[2].dev, 0);
  free (p);

  /* Classic DiskSim: milliseconds with fractions. */
  p = write_file ("ms.trace", "0.500000 3 8 8 1\n12.25 3 16 8 0\n");
  n = read_all (p, PRED_TRACE_DISKSIM_MS, a, 8, &rc, err, sizeof err, NULL);
  ck_assert_int_eq (rc, 0);
  ck_assert_uint_eq (n, 2);
  ck_assert_uint_eq (a[0].time_us, 500);
  ck_assert_uint_eq (a[1].time_us, 12250);
  free (p);

  static const struct bad bad[] = {
    { "1 0 8 8 1\n2 0 8 8\n", 2, "expected 5" },
    { "1 0 8 8 1\n2 0 8 8 1\n3 0 -8 8 1\n", 3, "bad sector" },
    { "1 0 8 8 x\n", 1, "bad flags" },
    { "-1 0 8 8 1\n", 1, "bad time" },
    { "1 0 8 99999999999 1\n", 1, "bad sector count" },
  };
  char name[32];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf (name, sizeof name, "bad%zu.ds", i);
    check_bad (name, PRED_TRACE_DISKSIM, &bad[i]);
  }
  /* Auto-detection refuses a line it cannot classify. */
  struct bad b = { "1 2 3\n", 1, "cannot tell the trace format" };
  check_bad ("what.trace", PRED_TRACE_AUTO, &b);
}
END_TEST

START_TEST (test_open_errors)
{
  char err[256];
  ck_assert_ptr_null (pred_trace_open ("/nonexistent/x.trace", PRED_TRACE_AUTO,
                                       err, sizeof err));
  ck_assert (strstr (err, "/nonexistent/x.trace") != NULL);
  ck_assert_int_eq (pred_trace_format_parse ("msr"), PRED_TRACE_MSR);
  ck_assert_int_eq (pred_trace_format_parse ("csv"), -1);
}
END_TEST

START_TEST (test_writer_roundtrip)
{
  char err[256], *path;
  struct pred_trace_writer *w;
  struct pred_access *in, *out;
  const size_t N = 50000;
  static const char ops[] = "RWZTF";
  int rc;

  ck_assert_int_ge (asprintf (&path, "%s/rt.trace", tmpdir), 0);
  w = pred_trace_writer_open (path, false, err, sizeof err);
  ck_assert_msg (w != NULL, "%s", err);
  in = calloc (N, sizeof *in);
  out = calloc (N, sizeof *out);
  uint64_t x = 12345;
  for (size_t i = 0; i < N; i++) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    in[i].time_us = i * 17 + (x >> 60);
    in[i].op = ops[(x >> 20) % 5];
    in[i].offset = in[i].op == 'F' ? 0 : x >> 3;
    in[i].length = in[i].op == 'F' ? 0 : (uint32_t) (x >> 32);
    if (in[i].offset + in[i].length < in[i].offset)
      in[i].offset = 0;
    ck_assert_int_eq (pred_trace_writer_add (w, &in[i]), 0);
  }
  struct pred_access bad = { .op = 'Q' };
  ck_assert_int_eq (pred_trace_writer_add (w, &bad), -1);
  ck_assert_uint_eq (pred_trace_writer_count (w), N);
  ck_assert_int_eq (pred_trace_writer_close (w), 0);

  size_t n = read_all (path, PRED_TRACE_NATIVE, out, N, &rc, err, sizeof err, NULL);
  ck_assert_msg (rc == 0, "%s", err);
  ck_assert_uint_eq (n, N);
  for (size_t i = 0; i < N; i++) {
    ck_assert_uint_eq (out[i].time_us, in[i].time_us);
    ck_assert_int_eq (out[i].op, in[i].op);
    ck_assert_uint_eq (out[i].offset, in[i].offset);
    ck_assert_uint_eq (out[i].length, in[i].length);
  }

  /* Append mode adds to the end. */
  w = pred_trace_writer_open (path, true, err, sizeof err);
  ck_assert_int_eq (pred_trace_writer_add (w, &in[0]), 0);
  ck_assert_int_eq (pred_trace_writer_close (w), 0);
  n = read_all (path, PRED_TRACE_NATIVE, out, N, &rc, err, sizeof err, NULL);
  ck_assert_int_eq (rc, 0);
  free (in);
  free (out);
  free (path);
}
END_TEST

#define WTHREADS 6
#define WPER 20000

struct wjob {
  struct pred_trace_writer *w;
  unsigned id;
};

static void *
writer_thread (void *arg)
{
  struct wjob *j = arg;
  struct pred_access a;
  memset (&a, 0, sizeof a);
  a.op = 'R';
  for (unsigned i = 0; i < WPER; i++) {
    a.time_us = i;
    a.offset = (uint64_t) j->id << 32 | i;
    a.length = 512 + j->id;
    if (pred_trace_writer_add (j->w, &a) != 0)
      return (void *) 1;
  }
  return NULL;
}

START_TEST (test_writer_threads)
{
  char err[256], *path;
  struct pred_trace_writer *w;
  pthread_t th[WTHREADS];
  struct wjob jobs[WTHREADS];
  struct pred_trace_reader *r;
  struct pred_access a;
  uint64_t next[WTHREADS] = { 0 }, n = 0;
  int rc;

  ck_assert_int_ge (asprintf (&path, "%s/mt.trace", tmpdir), 0);
  w = pred_trace_writer_open (path, false, err, sizeof err);
  for (int i = 0; i < WTHREADS; i++) {
    jobs[i] = (struct wjob) { w, i };
    ck_assert_int_eq (pthread_create (&th[i], NULL, writer_thread, &jobs[i]), 0);
  }
  for (int i = 0; i < WTHREADS; i++) {
    void *ret;
    pthread_join (th[i], &ret);
    ck_assert_ptr_null (ret);
  }
  ck_assert_int_eq (pred_trace_writer_close (w), 0);
  r = pred_trace_open (path, PRED_TRACE_NATIVE, err, sizeof err);
  while ((rc = pred_trace_next (r, &a)) == 1) {
    unsigned id = a.offset >> 32;
    ck_assert_uint_lt (id, WTHREADS);
    ck_assert_uint_eq (a.length, 512 + id);
    /* Each thread's records in its order: lines were never torn. */
    ck_assert_uint_eq (a.offset & 0xffffffff, next[id]);
    next[id]++;
    n++;
  }
  ck_assert_msg (rc == 0, "%s", pred_trace_error (r));
  ck_assert_uint_eq (n, WTHREADS * WPER);
  pred_trace_close (r);
  free (path);
}
END_TEST

/* The project's real traces, when present, read whole. */
START_TEST (test_shared_traces)
{
  const char *src = getenv ("abs_top_srcdir");
  char *path;
  struct pred_access a[1];
  char err[256];
  int rc;
  unsigned ndev;

  ck_assert_int_ge (asprintf (&path, "%s/../shared/traces/wsrch-small.trace",
                              src ? src : ".."), 0);
  if (access (path, R_OK) != 0) {
    fprintf (stderr, "%s: not present, skipped\n", path);
    free (path);
    return;
  }
  size_t n = read_all (path, PRED_TRACE_AUTO, a, 0, &rc, err, sizeof err, &ndev);
  (void) n;
  ck_assert_msg (rc == 0, "%s", err);
  struct pred_trace_reader *r = pred_trace_open (path, PRED_TRACE_AUTO, err, sizeof err);
  size_t count = 0;
  struct pred_access x;
  while (pred_trace_next (r, &x) == 1)
    count++;
  /* 24782 newlines (the README's count) plus a last line without one. */
  ck_assert_uint_eq (count, 24783);
  ck_assert_uint_eq (pred_trace_ndevices (r), 6);
  ck_assert_int_eq (pred_trace_get_format (r), PRED_TRACE_DISKSIM);
  pred_trace_close (r);
  free (path);
}
END_TEST

static void
setup (void)
{
  ck_assert_ptr_nonnull (mkdtemp (tmpdir));
}

static void
teardown (void)
{
  char cmd[128];
  snprintf (cmd, sizeof cmd, "rm -rf %s", tmpdir);
  ck_assert_int_eq (system (cmd), 0);
  strcpy (tmpdir + strlen (tmpdir) - 6, "XXXXXX");
}

static Suite *
trace_suite (void)
{
  Suite *s = suite_create ("predict-trace");
  TCase *tc = tcase_create ("trace");
  tcase_set_timeout (tc, 120);
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_native);
  tcase_add_test (tc, test_native_malformed);
  tcase_add_test (tc, test_msr);
  tcase_add_test (tc, test_disksim);
  tcase_add_test (tc, test_open_errors);
  tcase_add_test (tc, test_writer_roundtrip);
  tcase_add_test (tc, test_writer_threads);
  tcase_add_test (tc, test_shared_traces);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (trace_suite ());
  int failed;
  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
