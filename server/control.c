/* nbdshadow: the control socket server (control.h).
 *
 * The control socket is low traffic and must never disturb client I/O,
 * so it has a thread of its own running a poll() loop over the listening
 * socket, the client connections and an eventfd that asks it to stop.  A
 * handler may block briefly (a cutover commits) without stalling the
 * engine's loop; a misbehaving client can at worst slow this thread.
 *
 * Every socket is non-blocking; each client has an input buffer of one
 * request line and an output buffer of unsent replies.  A client that
 * does not read its replies is dropped once that buffer passes a cap, so
 * that no client can make the server block or grow without bound.
 *
 * Creating the socket: bind() creates the socket file with the process
 * umask, and umask is process-wide (changing it around bind would race
 * with every other thread creating files).  Instead the socket is bound
 * in a fresh 0700 directory next to the target (mkdtemp), chmod'ed to
 * 0600 there, and renamed into place: it is never reachable by others
 * with a wider mode, and rename() replaces a stale socket atomically.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "lockutil.h"
#include "control.h"
#include "log.h"

#define LINE_MAX_BYTES   4096         /* a request, "\n" included */
#define MAX_CLIENTS      64           /* concurrent connections */
#define OUT_MAX          (4 << 20)    /* unsent reply bytes before a drop */
#define OUT_EAGER        (64 << 10)   /* try to send while still replying */
#define ACCEPT_BACKOFF_MS 100         /* after EMFILE and the like */

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

struct client {
  int fd;
  bool discarding;              /* inside an overlong line: skip to "\n" */
  bool eof;                     /* peer shut down its side: flush, close */
  size_t in_len;
  char in[LINE_MAX_BYTES];
  char *out;                    /* replies not yet sent: out[out_off..len) */
  size_t out_off, out_len, out_cap;
};

struct control {
  char *path;
  dev_t dev;                    /* identity of our socket file, so that */
  ino_t ino;                    /* control_stop unlinks nothing else */
  int listen_fd;
  int stop_fd;                  /* eventfd: written by control_stop */
  control_handler_fn handler;
  void *opaque;
  pthread_t thread;
  struct client *clients[MAX_CLIENTS];
  size_t nr_clients;
  struct timespec accept_paused_until; /* zero: accepting */
  char *argv[LINE_MAX_BYTES / 2 + 1];
};

/*----------------------------------------------------------------------
 * Creating the socket file.
 */

/* Is there something at path that we must not replace?  A stale socket
 * (connect refused: nobody listens) may go; a live socket or anything
 * that is not a socket may not.  Returns 0 if path is free or stale.
 */
static int
check_existing (const char *path)
{
  struct stat st;
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  int fd, r, err;

  if (lstat (path, &st) == -1) {
    if (errno == ENOENT)
      return 0;
    shadow_error ("control socket %s: %m", path);
    return -1;
  }
  if (!S_ISSOCK (st.st_mode)) {
    shadow_error ("control socket %s: the path exists and is not a socket: "
                  "refusing to replace it", path);
    return -1;
  }

  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1) {
    shadow_error ("control socket %s: socket: %m", path);
    return -1;
  }
  memcpy (sun.sun_path, path, strlen (path) + 1);
  r = connect (fd, (struct sockaddr *) &sun, sizeof sun);
  err = errno;
  if (close (fd) == -1)
    shadow_error ("control socket %s: close: %m", path);
  if (r == 0) {
    shadow_error ("control socket %s: another process is listening on it "
                  "(is another nbdkit running with the same state?)", path);
    return -1;
  }
  if (err == ECONNREFUSED || err == ENOENT)
    return 0;                   /* stale, or gone meanwhile */
  shadow_error ("control socket %s: cannot tell whether the existing "
                "socket is in use: %s", path, strerror (err));
  return -1;
}

/* dirname without modifying or allocating more than once. */
static char *
parent_dir (const char *path)
{
  const char *slash = strrchr (path, '/');

  if (slash == NULL)
    return strdup (".");
  if (slash == path)
    return strdup ("/");
  return strndup (path, slash - path);
}

/* Bind a listening socket in a private 0700 directory, make it 0600
 * and rename it to path.  Returns the listening fd or -1.
 */
static int
create_socket (struct control *c)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  char *dir = NULL, *tmpdir = NULL, *tmpsock = NULL;
  struct stat st;
  int fd = -1;
  bool bound = false;

  dir = parent_dir (c->path);
  if (dir == NULL ||
      asprintf (&tmpdir, "%s/.cXXXXXX", dir) == -1) {
    tmpdir = NULL;
    shadow_error ("control socket %s: %m", c->path);
    goto err;
  }
  if (mkdtemp (tmpdir) == NULL) {
    shadow_error ("control socket %s: creating a temporary directory in %s: "
                  "%m", c->path, dir);
    free (tmpdir);
    tmpdir = NULL;
    goto err;
  }
  /* mkdtemp gives 0700 less the umask: make sure we can use it. */
  if (chmod (tmpdir, 0700) == -1) {
    shadow_error ("control socket %s: chmod %s: %m", c->path, tmpdir);
    goto err;
  }
  if (asprintf (&tmpsock, "%s/s", tmpdir) == -1) {
    tmpsock = NULL;
    shadow_error ("control socket %s: %m", c->path);
    goto err;
  }
  if (strlen (tmpsock) >= sizeof sun.sun_path) {
    shadow_error ("control socket %s: path too long (the socket is created "
                  "as %s first, at most %zu bytes)",
                  c->path, tmpsock, sizeof sun.sun_path - 1);
    goto err;
  }
  memcpy (sun.sun_path, tmpsock, strlen (tmpsock) + 1);

  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd == -1) {
    shadow_error ("control socket %s: socket: %m", c->path);
    goto err;
  }
  if (bind (fd, (struct sockaddr *) &sun, sizeof sun) == -1) {
    shadow_error ("control socket %s: bind %s: %m", c->path, tmpsock);
    goto err;
  }
  bound = true;
  if (chmod (tmpsock, 0600) == -1) {
    shadow_error ("control socket %s: chmod %s: %m", c->path, tmpsock);
    goto err;
  }
  if (listen (fd, SOMAXCONN) == -1) {
    shadow_error ("control socket %s: listen: %m", c->path);
    goto err;
  }
  if (lstat (tmpsock, &st) == -1) {
    shadow_error ("control socket %s: stat %s: %m", c->path, tmpsock);
    goto err;
  }
  c->dev = st.st_dev;
  c->ino = st.st_ino;

  /* Check again right before the rename: the window in which something
   * else could appear at path is now as short as it can be.
   */
  if (check_existing (c->path) == -1)
    goto err;
  if (rename (tmpsock, c->path) == -1) {
    shadow_error ("control socket %s: rename from %s: %m", c->path, tmpsock);
    goto err;
  }
  bound = false;
  if (rmdir (tmpdir) == -1)
    shadow_error ("control socket %s: rmdir %s: %m", c->path, tmpdir);
  free (dir);
  free (tmpdir);
  free (tmpsock);
  return fd;

 err:
  if (fd >= 0 && close (fd) == -1)
    shadow_error ("control socket %s: close: %m", c->path);
  if (bound && unlink (tmpsock) == -1)
    shadow_error ("control socket %s: unlink %s: %m", c->path, tmpsock);
  if (tmpdir && rmdir (tmpdir) == -1)
    shadow_error ("control socket %s: rmdir %s: %m", c->path, tmpdir);
  free (dir);
  free (tmpdir);
  free (tmpsock);
  return -1;
}

/*----------------------------------------------------------------------
 * Clients: replies, requests.
 */

static void
close_fd (struct control *c, int fd)
{
  if (close (fd) == -1)
    shadow_error ("control socket %s: close: %m", c->path);
}

static void
drop_client (struct control *c, size_t i)
{
  struct client *cl = c->clients[i];

  close_fd (c, cl->fd);
  free (cl->out);
  free (cl);
  c->clients[i] = c->clients[--c->nr_clients];
  c->clients[c->nr_clients] = NULL;
}

/* Queue "word[ text]\n" with any newline in text replaced, so that a
 * reply is always exactly one line.  Returns -1 if the client must be
 * dropped: it has not read OUT_MAX bytes of earlier replies.
 */
static int
queue_reply (struct client *cl, const char *word, const char *text)
{
  size_t wlen = strlen (word), tlen = text ? strlen (text) : 0;
  size_t need = wlen + (tlen ? 1 + tlen : 0) + 1;
  size_t pending = cl->out_len - cl->out_off;
  char *p;
  size_t k;

  if (pending > 0 && pending + need > OUT_MAX)
    return -1;
  if (cl->out_off > 0) {        /* compact before growing */
    memmove (cl->out, cl->out + cl->out_off, pending);
    cl->out_off = 0;
    cl->out_len = pending;
  }
  if (cl->out_len + need > cl->out_cap) {
    size_t cap = cl->out_cap ? cl->out_cap : 1024;
    char *out;

    while (cap < cl->out_len + need)
      cap *= 2;
    out = realloc (cl->out, cap);
    if (out == NULL)
      return -1;
    cl->out = out;
    cl->out_cap = cap;
  }
  p = cl->out + cl->out_len;
  memcpy (p, word, wlen);
  p += wlen;
  if (tlen) {
    *p++ = ' ';
    for (k = 0; k < tlen; ++k)
      p[k] = text[k] == '\n' || text[k] == '\r' ? ' ' : text[k];
    p += tlen;
  }
  *p = '\n';
  cl->out_len += need;
  return 0;
}

/* Check and split a request line in place (line[len] is the "\n").
 * Returns argc, or 0 with *why set for a malformed line.
 */
static int
split_words (struct control *c, char *line, size_t len, const char **why)
{
  size_t i;
  int argc = 0;

  if (len > 0 && line[len - 1] == '\r') /* tolerate CRLF (telnet, socat) */
    len--;
  for (i = 0; i < len; ++i) {
    unsigned char ch = line[i];

    if (ch < 0x20 || ch > 0x7e) {
      *why = "request contains a non-printable or non-ASCII byte";
      return 0;
    }
  }
  line[len] = '\0';
  for (i = 0; i < len; ++i) {
    if (line[i] == ' ')
      line[i] = '\0';
    else if (i == 0 || line[i - 1] == '\0')
      c->argv[argc++] = &line[i];
  }
  c->argv[argc] = NULL;
  if (argc == 0)
    *why = "empty request";
  return argc;
}

/* One complete request line: reply to it.  Returns -1 to drop the client. */
static int
handle_line (struct control *c, struct client *cl, char *line, size_t len)
{
  const char *why = NULL;
  char *reply = NULL;
  int argc, r;

  argc = split_words (c, line, len, &why);
  if (argc == 0)
    return queue_reply (cl, "error", why);

  r = c->handler (c->opaque, argc, c->argv, &reply);
  if (r == 0)
    r = queue_reply (cl, "ok", reply && reply[0] ? reply : NULL);
  else
    r = queue_reply (cl, "error",
                     reply && reply[0] ? reply : "request failed");
  free (reply);
  return r;
}

static int flush_output (struct control *c, struct client *cl);

/* Reply to every complete line in the input buffer and keep the rest.
 * A line that does not fit the buffer is answered once, at the moment it
 * overflows, and skipped up to its newline.  Replies go out as they pile
 * up, so that a client pipelining a full buffer of requests and reading
 * as it goes stays well under OUT_MAX.
 */
static int
process_input (struct control *c, struct client *cl)
{
  size_t start = 0;
  char *nl;

  while ((nl = memchr (cl->in + start, '\n', cl->in_len - start)) != NULL) {
    size_t len = nl - (cl->in + start);

    if (cl->discarding)
      cl->discarding = false;
    else if (handle_line (c, cl, cl->in + start, len) == -1)
      return -1;
    start += len + 1;
    if (cl->out_len - cl->out_off >= OUT_EAGER &&
        flush_output (c, cl) == -1)
      return -1;
  }
  memmove (cl->in, cl->in + start, cl->in_len - start);
  cl->in_len -= start;

  if (cl->in_len == sizeof cl->in) {
    if (!cl->discarding) {
      if (queue_reply (cl, "error", "request line too long (at most "
                       STRINGIFY (LINE_MAX_BYTES) " bytes)") == -1)
        return -1;
      cl->discarding = true;
    }
    cl->in_len = 0;
  }
  return 0;
}

/* Send what we can.  Returns -1 to drop the client. */
static int
flush_output (struct control *c, struct client *cl)
{
  while (cl->out_off < cl->out_len) {
    ssize_t n = send (cl->fd, cl->out + cl->out_off, cl->out_len - cl->out_off,
                      MSG_NOSIGNAL | MSG_DONTWAIT);

    if (n == -1) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
      if (errno != EPIPE && errno != ECONNRESET)
        shadow_error ("control socket %s: send: %m", c->path);
      return -1;
    }
    cl->out_off += n;
  }
  cl->out_off = cl->out_len = 0;
  return 0;
}

/* Read once (fairness: one buffer per client per round), then reply.
 * Returns -1 to drop the client.
 */
static int
read_input (struct control *c, struct client *cl)
{
  ssize_t n;

  do
    n = read (cl->fd, cl->in + cl->in_len, sizeof cl->in - cl->in_len);
  while (n == -1 && errno == EINTR);
  if (n == -1) {
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return 0;
    if (errno != ECONNRESET)
      shadow_error ("control socket %s: read: %m", c->path);
    return -1;
  }
  if (n == 0) {                 /* a partial line at EOF is discarded */
    cl->eof = true;
    cl->in_len = 0;
    return 0;
  }
  cl->in_len += n;
  if (process_input (c, cl) == -1) {
    shadow_debug ("control socket %s: dropping a client that does not read "
                  "its replies", c->path);
    return -1;
  }
  return flush_output (c, cl);
}

/*----------------------------------------------------------------------
 * Accepting.
 */

/* Best effort one-line refusal, then close. */
static void
refuse (struct control *c, int fd, const char *msg)
{
  if (send (fd, msg, strlen (msg), MSG_NOSIGNAL | MSG_DONTWAIT) == -1 &&
      errno != EAGAIN && errno != EPIPE && errno != ECONNRESET)
    shadow_error ("control socket %s: send: %m", c->path);
  close_fd (c, fd);
}

/* Socket mode 0600 is the access control; this is belt and braces for a
 * socket whose mode someone widened.  root may connect: it could reach
 * the process through other ways anyway.
 */
static bool
peer_allowed (struct control *c, int fd)
{
  struct ucred cred;
  socklen_t len = sizeof cred;

  if (getsockopt (fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1) {
    shadow_error ("control socket %s: SO_PEERCRED: %m", c->path);
    return false;
  }
  if (cred.uid == geteuid () || cred.uid == 0)
    return true;
  shadow_error ("control socket %s: refused a connection from uid %u "
                "(pid %d): only uid %u may connect",
                c->path, (unsigned) cred.uid, (int) cred.pid,
                (unsigned) geteuid ());
  return false;
}

static void
pause_accepting (struct control *c)
{
  if (clock_gettime (CLOCK_MONOTONIC, &c->accept_paused_until) == -1) {
    shadow_error ("control socket %s: clock_gettime: %m", c->path);
    return;
  }
  c->accept_paused_until.tv_nsec += ACCEPT_BACKOFF_MS * 1000000L;
  if (c->accept_paused_until.tv_nsec >= 1000000000L) {
    c->accept_paused_until.tv_sec++;
    c->accept_paused_until.tv_nsec -= 1000000000L;
  }
}

static void
accept_clients (struct control *c)
{
  for (;;) {
    struct client *cl;
    int fd = accept4 (c->listen_fd, NULL, NULL,
                      SOCK_NONBLOCK | SOCK_CLOEXEC);

    if (fd == -1) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return;
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      /* EMFILE, ENFILE, ENOBUFS, ENOMEM: the listening socket stays
       * readable, so back off instead of spinning.
       */
      shadow_error ("control socket %s: accept: %m", c->path);
      pause_accepting (c);
      return;
    }
    if (!peer_allowed (c, fd)) {
      refuse (c, fd, "error permission denied\n");
      continue;
    }
    if (c->nr_clients == MAX_CLIENTS) {
      shadow_debug ("control socket %s: too many clients", c->path);
      refuse (c, fd, "error too many connections\n");
      continue;
    }
    cl = calloc (1, sizeof *cl);
    if (cl == NULL) {
      shadow_error ("control socket %s: %m", c->path);
      refuse (c, fd, "error out of memory\n");
      continue;
    }
    cl->fd = fd;
    c->clients[c->nr_clients++] = cl;
  }
}

/* Milliseconds until accepting resumes, or -1 (accepting, wait forever). */
static int
accept_pause_ms (struct control *c)
{
  struct timespec now;
  int64_t ms;

  if (c->accept_paused_until.tv_sec == 0)
    return -1;
  if (clock_gettime (CLOCK_MONOTONIC, &now) == -1) {
    shadow_error ("control socket %s: clock_gettime: %m", c->path);
    ms = 0;
  }
  else
    ms = (c->accept_paused_until.tv_sec - now.tv_sec) * INT64_C (1000) +
      (c->accept_paused_until.tv_nsec - now.tv_nsec) / 1000000;
  if (ms <= 0) {
    c->accept_paused_until.tv_sec = 0;
    c->accept_paused_until.tv_nsec = 0;
    return -1;
  }
  return ms;
}

/*----------------------------------------------------------------------
 * The thread.
 */

/* Service one client after poll.  Returns -1 to drop it. */
static int
service_client (struct control *c, struct client *cl, short revents)
{
  bool pending;

  if (revents & (POLLERR | POLLNVAL))
    return -1;
  if (revents & POLLOUT && flush_output (c, cl) == -1)
    return -1;
  if (!cl->eof && revents & (POLLIN | POLLHUP) && read_input (c, cl) == -1)
    return -1;
  /* After EOF: close once everything is said, or when the peer is gone
   * for good and will never read what is pending.
   */
  pending = cl->out_off < cl->out_len;
  if (cl->eof && (!pending || revents & POLLHUP))
    return -1;
  return 0;
}

static void *
control_thread (void *vp)
{
  struct control *c = vp;
  struct pollfd fds[2 + MAX_CLIENTS];
  struct client *polled[MAX_CLIENTS];

  thread_name ("shadow-control");
  for (;;) {
    int timeout = accept_pause_ms (c);
    size_t i, n = c->nr_clients;
    int r;

    fds[0] = (struct pollfd) { .fd = c->stop_fd, .events = POLLIN };
    fds[1] = (struct pollfd) { .fd = timeout == -1 ? c->listen_fd : -1,
                               .events = POLLIN };
    for (i = 0; i < n; ++i) {
      struct client *cl = c->clients[i];

      polled[i] = cl;
      fds[2 + i] = (struct pollfd) {
        .fd = cl->fd,
        .events = (cl->eof ? 0 : POLLIN) |
                  (cl->out_off < cl->out_len ? POLLOUT : 0),
      };
    }

    r = poll (fds, 2 + n, timeout);
    if (r == -1) {
      if (errno != EINTR && errno != EAGAIN) {
        shadow_error ("control socket %s: poll: %m", c->path);
        if (poll (NULL, 0, ACCEPT_BACKOFF_MS) == -1 && errno != EINTR)
          return NULL;          /* cannot happen: poll without fds */
      }
      continue;
    }
    if (fds[0].revents)
      return NULL;

    /* Clients first, by identity: dropping one reorders c->clients. */
    for (i = 0; i < n; ++i) {
      size_t j;

      if (fds[2 + i].revents == 0 ||
          service_client (c, polled[i], fds[2 + i].revents) == 0)
        continue;
      for (j = 0; j < c->nr_clients; ++j)
        if (c->clients[j] == polled[i]) {
          drop_client (c, j);
          break;
        }
    }
    if (fds[1].revents)
      accept_clients (c);
  }
}

/*----------------------------------------------------------------------
 * Start and stop.
 */

/* Start the thread with every signal blocked: signals are for nbdkit's
 * own threads to handle.
 */
static int
start_thread (struct control *c)
{
  sigset_t all, old;
  int r, r2;

  sigfillset (&all);
  r = pthread_sigmask (SIG_SETMASK, &all, &old);
  if (r != 0) {
    shadow_error ("control socket %s: pthread_sigmask: %s",
                  c->path, strerror (r));
    return -1;
  }
  r = pthread_create (&c->thread, NULL, control_thread, c);
  r2 = pthread_sigmask (SIG_SETMASK, &old, NULL);
  if (r2 != 0)
    shadow_error ("control socket %s: pthread_sigmask: %s",
                  c->path, strerror (r2));
  if (r != 0) {
    shadow_error ("control socket %s: pthread_create: %s",
                  c->path, strerror (r));
    return -1;
  }
  return 0;
}

struct control *
control_start (const char *path, control_handler_fn handler, void *opaque)
{
  struct sockaddr_un sun;
  struct control *c;

  if (path == NULL || path[0] == '\0' || handler == NULL) {
    shadow_error ("control socket: no path or no handler");
    return NULL;
  }
  if (strlen (path) >= sizeof sun.sun_path) {
    shadow_error ("control socket %s: path too long (at most %zu bytes)",
                  path, sizeof sun.sun_path - 1);
    return NULL;
  }
  c = calloc (1, sizeof *c);
  if (c == NULL || (c->path = strdup (path)) == NULL) {
    shadow_error ("control socket %s: %m", path);
    free (c);
    return NULL;
  }
  c->handler = handler;
  c->opaque = opaque;
  c->listen_fd = c->stop_fd = -1;

  if (check_existing (path) == -1)
    goto err;
  c->stop_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (c->stop_fd == -1) {
    shadow_error ("control socket %s: eventfd: %m", path);
    goto err;
  }
  c->listen_fd = create_socket (c);
  if (c->listen_fd == -1)
    goto err;
  if (start_thread (c) == -1) {
    if (unlink (path) == -1)
      shadow_error ("control socket %s: unlink: %m", path);
    goto err;
  }
  return c;

 err:
  if (c->listen_fd >= 0)
    close_fd (c, c->listen_fd);
  if (c->stop_fd >= 0)
    close_fd (c, c->stop_fd);
  free (c->path);
  free (c);
  return NULL;
}

/* Unlink the socket file only if it is still ours. */
static void
unlink_socket (struct control *c)
{
  struct stat st;

  if (lstat (c->path, &st) == -1) {
    if (errno != ENOENT)
      shadow_error ("control socket %s: %m", c->path);
    return;
  }
  if (st.st_dev != c->dev || st.st_ino != c->ino) {
    shadow_debug ("control socket %s: replaced by someone else: left alone",
                  c->path);
    return;
  }
  if (unlink (c->path) == -1)
    shadow_error ("control socket %s: unlink: %m", c->path);
}

void
control_stop (struct control *c)
{
  const uint64_t one = 1;
  ssize_t n;
  int r;

  if (c == NULL)
    return;
  do
    n = write (c->stop_fd, &one, sizeof one);
  while (n == -1 && errno == EINTR);
  if (n != sizeof one) {
    /* Cannot wake the thread: joining would hang.  Should not happen
     * (the counter cannot overflow from one write), so abort loudly.
     */
    shadow_error ("control socket %s: eventfd write: %m", c->path);
    abort ();
  }
  r = pthread_join (c->thread, NULL);
  if (r != 0)
    shadow_error ("control socket %s: pthread_join: %s", c->path, strerror (r));

  while (c->nr_clients > 0)
    drop_client (c, c->nr_clients - 1);
  unlink_socket (c);
  close_fd (c, c->listen_fd);
  close_fd (c, c->stop_fd);
  free (c->path);
  free (c);
}
