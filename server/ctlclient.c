/* nbdshadow: the client side of the control protocol (ctlclient.h).
 *
 * Blocking socket, poll() for the timeout.  Replies can be long (the
 * status JSON grows with the number of shadows), so the receive buffer
 * grows up to REPLY_MAX; a longer reply means the server is broken.
 */

#include <config.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "ctlclient.h"

#define REPLY_MAX (16 << 20)

volatile int ctl_interrupted;

int
ctl_connect (struct ctl_conn *c, const char *path)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };

  memset (c, 0, sizeof *c);
  c->fd = -1;
  if (strlen (path) >= sizeof sun.sun_path) {
    snprintf (c->err, sizeof c->err, "%s", strerror (ENAMETOOLONG));
    return -1;
  }
  memcpy (sun.sun_path, path, strlen (path) + 1);
  c->fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd == -1) {
    snprintf (c->err, sizeof c->err, "%s", strerror (errno));
    return -1;
  }
  if (connect (c->fd, (struct sockaddr *) &sun, sizeof sun) == -1) {
    snprintf (c->err, sizeof c->err, "%s", strerror (errno));
    close (c->fd);
    c->fd = -1;
    return -1;
  }
  return 0;
}

void
ctl_close (struct ctl_conn *c)
{
  if (c->fd >= 0)
    close (c->fd);              /* nothing to do about an error here */
  c->fd = -1;
  free (c->buf);
  c->buf = NULL;
  c->len = c->cap = 0;
}

static int
send_all (struct ctl_conn *c, const char *p, size_t len)
{
  while (len > 0) {
    ssize_t n = send (c->fd, p, len, MSG_NOSIGNAL);

    if (n == -1) {
      if (errno == EINTR && !ctl_interrupted)
        continue;
      snprintf (c->err, sizeof c->err, "%s",
                ctl_interrupted ? "interrupted" : strerror (errno));
      return -1;
    }
    p += n;
    len -= n;
  }
  return 0;
}

static double
now_ms (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Receive more bytes into c->buf.  Returns 0, or -1 with c->err. */
static int
receive (struct ctl_conn *c, double deadline)
{
  struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
  ssize_t n;
  int r, wait = -1;

  if (c->cap - c->len < 4096) {
    size_t cap = c->cap ? c->cap * 2 : 8192;
    char *p;

    if (cap > REPLY_MAX + 4096) {
      snprintf (c->err, sizeof c->err, "reply longer than %d bytes",
                REPLY_MAX);
      return -1;
    }
    p = realloc (c->buf, cap);
    if (p == NULL) {
      snprintf (c->err, sizeof c->err, "%s", strerror (errno));
      return -1;
    }
    c->buf = p;
    c->cap = cap;
  }
  if (deadline >= 0) {
    double left = deadline - now_ms ();

    wait = left > 0 ? (int) left + 1 : 0;
  }
  r = poll (&pfd, 1, wait);
  if (r == -1 || ctl_interrupted) {
    snprintf (c->err, sizeof c->err, "%s",
              ctl_interrupted ? "interrupted" : strerror (errno));
    return -1;
  }
  if (r == 0) {
    snprintf (c->err, sizeof c->err, "timed out waiting for the server");
    return -1;
  }
  n = read (c->fd, c->buf + c->len, c->cap - c->len);
  if (n == -1) {
    snprintf (c->err, sizeof c->err, "%s", strerror (errno));
    return -1;
  }
  if (n == 0) {
    snprintf (c->err, sizeof c->err, "the server closed the connection");
    return -1;
  }
  c->len += n;
  return 0;
}

/* Split "ok[ PAYLOAD]" or "error MESSAGE". */
static enum ctl_result
parse_reply (struct ctl_conn *c, const char *line, char **payload)
{
  enum ctl_result r;
  const char *rest;

  if (strncmp (line, "ok", 2) == 0 && (line[2] == '\0' || line[2] == ' ')) {
    r = CTL_OK;
    rest = line[2] ? line + 3 : "";
  }
  else if (strncmp (line, "error", 5) == 0 &&
           (line[5] == '\0' || line[5] == ' ')) {
    r = CTL_ERROR;
    rest = line[5] ? line + 6 : "the server gave no reason";
  }
  else {
    snprintf (c->err, sizeof c->err, "unexpected reply: %.60s%s",
              line, strlen (line) > 60 ? "..." : "");
    return CTL_FAILED;
  }
  *payload = strdup (rest);
  if (*payload == NULL) {
    snprintf (c->err, sizeof c->err, "%s", strerror (errno));
    return CTL_FAILED;
  }
  return r;
}

enum ctl_result
ctl_request (struct ctl_conn *c, const char *request, int timeout_ms,
             char **payload)
{
  double deadline = timeout_ms >= 0 ? now_ms () + timeout_ms : -1;
  size_t scanned = 0;
  char *nl, *line;
  enum ctl_result r;

  *payload = NULL;
  if (send_all (c, request, strlen (request)) == -1 ||
      send_all (c, "\n", 1) == -1)
    return CTL_FAILED;
  while ((nl = c->len > scanned ?
          memchr (c->buf + scanned, '\n', c->len - scanned) : NULL) == NULL) {
    scanned = c->len;
    if (receive (c, deadline) == -1)
      return CTL_FAILED;
  }
  *nl = '\0';
  if (nl > c->buf && nl[-1] == '\r')
    nl[-1] = '\0';
  line = c->buf;                /* a NUL inside merely cuts it short */
  r = parse_reply (c, line, payload);
  c->len -= nl + 1 - c->buf;
  memmove (c->buf, nl + 1, c->len);
  return r;
}
