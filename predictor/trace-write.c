/* trace-write.c: buffered, thread-safe writer of the native trace format
 * (see trace.h).  The filter's shadow-trace=FILE records client accesses
 * with it; nbdshadow-predict gen writes synthetic workloads with it.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "trace.h"

#define WBUF (64 * 1024)

struct pred_trace_writer {
  pthread_mutex_t lock;
  int fd;
  int err;                      /* first errno, 0 if none */
  size_t used;
  uint64_t count;
  char buf[WBUF];
};

struct pred_trace_writer *
pred_trace_writer_open (const char *path, bool append, char *err, size_t errlen)
{
  struct pred_trace_writer *w;
  int fd;

  if (strcmp (path, "-") == 0)
    fd = dup (STDOUT_FILENO);
  else
    fd = open (path, O_WRONLY | O_CREAT | O_CLOEXEC |
               (append ? O_APPEND : O_TRUNC), 0644);
  if (fd == -1) {
    snprintf (err, errlen, "%s: %s", path, strerror (errno));
    return NULL;
  }
  w = malloc (sizeof *w);
  if (!w) {
    snprintf (err, errlen, "%s: %s", path, strerror (errno));
    close (fd);
    return NULL;
  }
  pthread_mutex_init (&w->lock, NULL);
  w->fd = fd;
  w->err = 0;
  w->used = 0;
  w->count = 0;
  return w;
}

/* Called with the lock held. */
static int
drain (struct pred_trace_writer *w)
{
  size_t off = 0;
  while (off < w->used) {
    ssize_t n = write (w->fd, w->buf + off, w->used - off);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (!w->err)
        w->err = errno;
      w->used = 0;
      return -1;
    }
    off += n;
  }
  w->used = 0;
  return 0;
}

/* Decimal formatting without printf: this is on the filter's I/O path. */
static size_t
put_u64 (char *p, uint64_t v)
{
  char tmp[24];
  size_t n = 0, i;
  do {
    tmp[n++] = '0' + v % 10;
    v /= 10;
  } while (v);
  for (i = 0; i < n; i++)
    p[i] = tmp[n - 1 - i];
  return n;
}

int
pred_trace_writer_add (struct pred_trace_writer *w, const struct pred_access *a)
{
  char line[80];
  size_t n = 0;
  int r = 0;

  if (!pred_op_valid (a->op)) {
    errno = EINVAL;
    return -1;
  }
  n += put_u64 (line + n, a->time_us);
  line[n++] = ' ';
  line[n++] = (char) a->op;
  line[n++] = ' ';
  n += put_u64 (line + n, a->offset);
  line[n++] = ' ';
  n += put_u64 (line + n, a->length);
  line[n++] = '\n';

  pthread_mutex_lock (&w->lock);
  if (w->err) {
    errno = w->err;
    r = -1;
  }
  else {
    if (w->used + n > WBUF)
      r = drain (w);
    if (r == 0) {
      memcpy (w->buf + w->used, line, n);
      w->used += n;
      w->count++;
    }
    else
      errno = w->err;
  }
  pthread_mutex_unlock (&w->lock);
  return r;
}

int
pred_trace_writer_flush (struct pred_trace_writer *w)
{
  int r;
  pthread_mutex_lock (&w->lock);
  r = w->err ? -1 : drain (w);
  if (r < 0)
    errno = w->err;
  pthread_mutex_unlock (&w->lock);
  return r;
}

uint64_t
pred_trace_writer_count (struct pred_trace_writer *w)
{
  uint64_t c;
  pthread_mutex_lock (&w->lock);
  c = w->count;
  pthread_mutex_unlock (&w->lock);
  return c;
}

int
pred_trace_writer_close (struct pred_trace_writer *w)
{
  int r, e;
  if (!w)
    return 0;
  r = pred_trace_writer_flush (w);
  e = w->err;
  if (close (w->fd) == -1 && r == 0) {
    r = -1;
    e = errno;
  }
  pthread_mutex_destroy (&w->lock);
  free (w);
  if (r < 0)
    errno = e;
  return r;
}
