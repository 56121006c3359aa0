/* e2e-replay: replay a DiskSim ASCII block trace against an NBD server,
 * open loop, honouring the recorded inter-arrival times, and log the
 * latency of every request (bench/e2e, issue 6).
 *
 * usage: e2e-replay [-d DEVS] [-s SPEEDUP] [-t SECONDS] [-q DEPTH]
 *                   [-l LATLOG] [-r] TRACE URI
 *
 *   -d DEVS     device numbers to replay, comma separated, or "all"
 *               (default: the busiest device by request count)
 *   -s SPEEDUP  divide the recorded times by this (default 1)
 *   -t SECONDS  stop issuing after this much replay time (default: all)
 *   -q DEPTH    most requests in flight (default 64); an arrival that
 *               finds them all busy waits and is counted as late
 *   -l LATLOG   per-request log, fio's lat log format with
 *               log_unix_epoch: "issue time (Unix ms), latency_ns,
 *               ddir (0 read, 1 write), bytes, offset"
 *   -r          replay reads only (skip the trace's writes)
 *
 * The trace format (DiskSim ASCII): one request a line,
 * "arrival_ns device start_sector sectors type", 512-byte sectors, type
 * 1 = read, 0 = write.  Each replayed device gets an equal slice of the
 * export, aligned to 1 MiB; its byte offsets are taken modulo the slice
 * (deltas between nearby requests are kept, so is any pattern a
 * predictor could learn) and a request that would cross the slice's end
 * is moved back to end there.
 *
 * Requests are issued at their due time whatever the server's answers
 * (open loop), over one connection with up to DEPTH in flight, so a slow
 * server sees the load a real application would put on it and queueing
 * delay shows in the latencies.  Written data is a fixed pattern.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libnbd.h>

#define MAX_DEVS 256
#define MAX_REQ_BYTES (32 * 1024 * 1024)

struct req {
  uint64_t due_ns;              /* since the start of the replay */
  uint64_t offset;
  uint32_t len;
  bool write;
};

struct slot {
  bool busy;
  uint64_t issue_ns;
  const struct req *r;
  char *buf;
};

static FILE *latlog;
static struct slot *slots;
static unsigned depth = 64, in_flight;
static uint64_t t0_ns, t0_epoch_ms, completed, errors;
static uint64_t bytes_read, bytes_written;

static uint64_t
now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
usage (void)
{
  fprintf (stderr, "usage: e2e-replay [-d DEVS|all] [-s SPEEDUP] "
           "[-t SECONDS] [-q DEPTH] [-l LATLOG] [-r] TRACE URI\n");
  exit (2);
}

static int
complete (void *opaque, int *error)
{
  struct slot *s = opaque;
  uint64_t t = now_ns ();

  if (*error) {
    errors++;
    fprintf (stderr, "e2e-replay: %s of %" PRIu32 " bytes at %" PRIu64
             ": %s\n", s->r->write ? "write" : "read", s->r->len,
             s->r->offset, strerror (*error));
  }
  if (latlog)
    fprintf (latlog, "%" PRIu64 ", %" PRIu64 ", %d, %" PRIu32 ", %" PRIu64
             "\n", t0_epoch_ms + (s->issue_ns - t0_ns) / 1000000,
             t - s->issue_ns, s->r->write ? 1 : 0, s->r->len, s->r->offset);
  completed++;
  s->busy = false;
  in_flight--;
  return 1;                     /* retire the command */
}

/* Wait for socket events until deadline_ns (0: until one event). */
static int
run_loop (struct nbd_handle *h, uint64_t deadline_ns)
{
  for (;;) {
    struct pollfd pfd = { .fd = nbd_aio_get_fd (h), .events = 0 };
    unsigned dir = nbd_aio_get_direction (h);
    struct timespec ts, *tsp = NULL;
    uint64_t t = now_ns ();
    int r;

    if (deadline_ns && t >= deadline_ns)
      return 0;
    if (dir & LIBNBD_AIO_DIRECTION_READ)
      pfd.events |= POLLIN;
    if (dir & LIBNBD_AIO_DIRECTION_WRITE)
      pfd.events |= POLLOUT;
    if (deadline_ns) {
      ts.tv_sec = (deadline_ns - t) / 1000000000;
      ts.tv_nsec = (deadline_ns - t) % 1000000000;
      tsp = &ts;
    }
    r = ppoll (&pfd, 1, tsp, NULL);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      perror ("ppoll");
      return -1;
    }
    if (r == 0)
      return 0;
    if ((pfd.revents & POLLIN) && nbd_aio_notify_read (h) == -1)
      goto nbd_error;
    if ((pfd.revents & POLLOUT) && nbd_aio_notify_write (h) == -1)
      goto nbd_error;
    if (pfd.revents & (POLLHUP | POLLERR)) {
      if (nbd_aio_notify_read (h) == -1)
        goto nbd_error;
    }
    if (deadline_ns == 0)
      return 0;
  }
 nbd_error:
  fprintf (stderr, "e2e-replay: %s\n", nbd_get_error ());
  return -1;
}

static int
submit (struct nbd_handle *h, const struct req *r)
{
  unsigned i;
  struct slot *s = NULL;
  nbd_completion_callback cb = { .callback = complete };
  int64_t cookie;

  for (i = 0; i < depth; ++i)
    if (!slots[i].busy) {
      s = &slots[i];
      break;
    }
  s->busy = true;
  s->r = r;
  s->issue_ns = now_ns ();
  cb.user_data = s;
  in_flight++;
  if (r->write) {
    cookie = nbd_aio_pwrite (h, s->buf, r->len, r->offset, cb, 0);
    bytes_written += r->len;
  }
  else {
    cookie = nbd_aio_pread (h, s->buf, r->len, r->offset, cb, 0);
    bytes_read += r->len;
  }
  if (cookie == -1) {
    fprintf (stderr, "e2e-replay: %s\n", nbd_get_error ());
    return -1;
  }
  return 0;
}

int
main (int argc, char *argv[])
{
  const char *devs_arg = NULL, *log_path = NULL;
  double speedup = 1, max_seconds = 0;
  bool reads_only = false;
  bool want[MAX_DEVS] = { false };
  long counts[MAX_DEVS] = { 0 };
  int slice_of[MAX_DEVS];
  unsigned nr_want = 0;
  struct req *reqs = NULL;
  size_t nr = 0, cap = 0, i;
  uint64_t first_ns = UINT64_MAX, size, slice, late = 0, max_lag = 0;
  uint64_t max_len = 512;
  struct nbd_handle *h;
  char line[512];
  FILE *fp;
  int c;

  while ((c = getopt (argc, argv, "d:s:t:q:l:r")) != -1) {
    switch (c) {
    case 'd': devs_arg = optarg; break;
    case 's': speedup = atof (optarg); break;
    case 't': max_seconds = atof (optarg); break;
    case 'q': depth = atoi (optarg); break;
    case 'l': log_path = optarg; break;
    case 'r': reads_only = true; break;
    default: usage ();
    }
  }
  if (argc - optind != 2 || speedup <= 0 || depth < 1 || depth > 4096)
    usage ();

  /* Read the trace once to count requests per device. */
  fp = fopen (argv[optind], "r");
  if (fp == NULL) {
    perror (argv[optind]);
    exit (1);
  }
  while (fgets (line, sizeof line, fp)) {
    unsigned long long t, sec, n;
    int dev, type;

    if (sscanf (line, "%llu %d %llu %llu %d", &t, &dev, &sec, &n, &type) == 5
        && dev >= 0 && dev < MAX_DEVS)
      counts[dev]++;
  }
  if (devs_arg == NULL) {
    int best = 0;

    for (c = 1; c < MAX_DEVS; ++c)
      if (counts[c] > counts[best])
        best = c;
    want[best] = true;
  }
  else if (strcmp (devs_arg, "all") == 0) {
    for (c = 0; c < MAX_DEVS; ++c)
      want[c] = counts[c] > 0;
  }
  else {
    char *copy = strdup (devs_arg), *tok, *save = NULL;

    for (tok = strtok_r (copy, ",", &save); tok;
         tok = strtok_r (NULL, ",", &save)) {
      c = atoi (tok);
      if (c < 0 || c >= MAX_DEVS) {
        fprintf (stderr, "e2e-replay: bad device %s\n", tok);
        exit (2);
      }
      want[c] = true;
    }
    free (copy);
  }
  for (c = 0; c < MAX_DEVS; ++c)
    if (want[c])
      slice_of[c] = nr_want++;
  if (nr_want == 0) {
    fprintf (stderr, "e2e-replay: no device selected\n");
    exit (2);
  }

  h = nbd_create ();
  if (h == NULL || nbd_connect_uri (h, argv[optind + 1]) == -1) {
    fprintf (stderr, "e2e-replay: %s\n", nbd_get_error ());
    exit (1);
  }
  size = nbd_get_size (h);
  slice = (size / nr_want) & ~(uint64_t) (1024 * 1024 - 1);
  if (slice < MAX_REQ_BYTES) {
    fprintf (stderr, "e2e-replay: export too small for %u devices\n",
             nr_want);
    exit (1);
  }

  rewind (fp);
  while (fgets (line, sizeof line, fp)) {
    unsigned long long t, sec, n;
    int dev, type;
    uint64_t off, len;

    if (sscanf (line, "%llu %d %llu %llu %d", &t, &dev, &sec, &n, &type) != 5
        || dev < 0 || dev >= MAX_DEVS || !want[dev] || n == 0)
      continue;
    if (reads_only && type != 1)
      continue;
    if (t < first_ns)
      first_ns = t;
    len = n * 512;
    if (len > MAX_REQ_BYTES)
      len = MAX_REQ_BYTES;
    if (len > max_len)
      max_len = len;
    off = (sec * 512) % slice;
    if (off + len > slice)
      off = slice - len;
    if (nr == cap) {
      cap = cap ? 2 * cap : 4096;
      reqs = realloc (reqs, cap * sizeof *reqs);
      if (reqs == NULL) {
        perror ("realloc");
        exit (1);
      }
    }
    reqs[nr++] = (struct req) {
      .due_ns = t, .offset = slice_of[dev] * slice + off, .len = len,
      .write = type != 1,
    };
  }
  fclose (fp);
  /* Times relative to the first request, scaled; keep trace order. */
  for (i = 0; i < nr; ++i) {
    reqs[i].due_ns = (uint64_t) ((reqs[i].due_ns - first_ns) / speedup);
    if (max_seconds > 0 && reqs[i].due_ns > max_seconds * 1e9) {
      nr = i;
      break;
    }
  }

  if (log_path) {
    latlog = fopen (log_path, "w");
    if (latlog == NULL) {
      perror (log_path);
      exit (1);
    }
  }
  slots = calloc (depth, sizeof *slots);
  for (i = 0; i < depth; ++i) {
    slots[i].buf = malloc (max_len);
    if (slots[i].buf == NULL) {
      perror ("malloc");
      exit (1);
    }
    memset (slots[i].buf, 0x5a, max_len);
  }

  {
    struct timespec rt;

    clock_gettime (CLOCK_REALTIME, &rt);
    t0_ns = now_ns ();
    t0_epoch_ms = (uint64_t) rt.tv_sec * 1000 + rt.tv_nsec / 1000000;
  }
  for (i = 0; i < nr; ++i) {
    uint64_t due = t0_ns + reqs[i].due_ns, t;

    if (run_loop (h, due) == -1)
      exit (1);
    while (in_flight == depth)
      if (run_loop (h, 0) == -1)
        exit (1);
    t = now_ns ();
    if (t > due + 1000000)
      late++;
    if (t > due && t - due > max_lag)
      max_lag = t - due;
    if (submit (h, &reqs[i]) == -1)
      exit (1);
  }
  while (in_flight > 0)
    if (run_loop (h, 0) == -1)
      exit (1);

  printf ("replayed %zu requests (%u device%s, slice %" PRIu64 " MiB) in "
          "%.2f s: %.1f MiB read, %.1f MiB written, %" PRIu64 " errors, %"
          PRIu64 " issued more than 1 ms late (max %.1f ms)\n", nr, nr_want,
          nr_want == 1 ? "" : "s", slice >> 20, (now_ns () - t0_ns) / 1e9,
          bytes_read / 1048576.0, bytes_written / 1048576.0, errors, late,
          max_lag / 1e6);
  if (latlog && fclose (latlog) != 0) {
    perror (log_path);
    exit (1);
  }
  nbd_shutdown (h, 0);
  nbd_close (h);
  return errors ? 1 : 0;
}
