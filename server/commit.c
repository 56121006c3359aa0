/* nbdshadow: commits (see commit.h for the durability order). */

#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commit.h"
#include "lockutil.h"
#include "log.h"

struct committer {
  struct residency *r;
  struct engine *e;
  commit_persist_fn persist;
  void *persist_opaque;
  double interval;
  unsigned test_delay_ms;       /* sleep inside the commit (tests only) */
  pthread_t thread;

  /* lock guards every field below.  Sequence numbers: requested is the
   * highest commit someone waits for, started/completed count commits;
   * result is the outcome of commit number `completed`.
   */
  pthread_mutex_t lock;
  pthread_cond_t wake;          /* to the thread: work or stop */
  pthread_cond_t done;          /* to waiters: a commit completed */
  uint64_t requested, started, completed;
  int result;
  bool stopping;
  /* Marks were lost (out of memory giving them back after a failed
   * commit): a later commit cannot cover the writes they belonged to,
   * so no flush may succeed any more.  Only the committer thread writes
   * it.
   */
  bool marks_lost;
  struct commit_stats stats;
};

static double
now_ms (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Tests widen the windows between the steps so that a kill -9 lands
 * inside a commit.
 */
static void
test_pause (struct committer *c)
{
  if (c->test_delay_ms)
    usleep (c->test_delay_ms * 1000);
}

/* One commit.  Returns 0 or an errno. */
static int
do_commit (struct committer *c, size_t *nr_marks)
{
  struct mark_list marks;
  struct shadow_io flush = { .op = SHADOW_FLUSH, .target = SHADOW_ALL,
                             .priority = SHADOW_PRIO_CLIENT };
  int err = 0;

  *nr_marks = 0;
  if (c->marks_lost) {
    shadow_error ("commit: refused: residency marks were lost after an "
                  "out-of-memory error; restart the filter (blocks copied "
                  "since the last commit will be copied again)");
    return EIO;
  }
  residency_freeze (c->r, &marks);
  *nr_marks = marks.len;
  test_pause (c);
  if (engine_run (c->e, &flush) == -1) {
    err = errno;
    shadow_error ("commit: flushing the shadows failed: %s: %zu marks kept "
                  "for the next commit", strerror (err), marks.len);
  }
  test_pause (c);
  /* Only now, with the data durable on every shadow, may the marks be. */
  if (err == 0 && c->persist && marks.len > 0 &&
      c->persist (c->persist_opaque, &marks) == -1) {
    err = errno;
    shadow_error ("commit: recording %zu marks failed: %s: kept for the "
                  "next commit", marks.len, strerror (err));
  }
  if (err != 0) {
    if (residency_unfreeze (c->r, &marks) == -1) {
      shadow_error ("commit: out of memory keeping marks: no flush can "
                    "succeed from now on");
      c->marks_lost = true;
    }
    return err;
  }
  mark_list_free (&marks);
  return 0;
}

static void
deadline_after (struct timespec *ts, double seconds)
{
  clock_gettime (CLOCK_REALTIME, ts);
  ts->tv_sec += (time_t) seconds;
  ts->tv_nsec += (long) ((seconds - (time_t) seconds) * 1e9);
  if (ts->tv_nsec >= 1000000000) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000;
  }
}

static void *
committer_thread (void *arg)
{
  struct committer *c = arg;
  struct timespec deadline;

  thread_name ("shadow-commit");
  mutex_lock (&c->lock);
  deadline_after (&deadline, c->interval);
  for (;;) {
    bool asked = c->requested > c->started;
    bool timed_out = false;
    uint64_t seq;
    size_t nr_marks;
    double t0;
    int err;

    if (!asked && !c->stopping) {
      timed_out = cond_timedwait (&c->wake, &c->lock, &deadline);
      asked = c->requested > c->started;
    }
    if (timed_out)
      deadline_after (&deadline, c->interval);
    if (!asked && !timed_out && !c->stopping)
      continue;                 /* spurious wake-up */
    if (!asked && !c->stopping && !residency_has_pending (c->r))
      continue;                 /* the timer found nothing to commit */
    if (c->stopping && !asked && !residency_has_pending (c->r))
      break;

    seq = ++c->started;
    mutex_unlock (&c->lock);
    t0 = now_ms ();
    err = do_commit (c, &nr_marks);
    mutex_lock (&c->lock);
    c->completed = seq;
    c->result = err;
    c->stats.commits++;
    c->stats.marks += nr_marks;
    c->stats.last_duration_ms = now_ms () - t0;
    if (err)
      c->stats.failures++;
    cond_broadcast (&c->done);
    if (c->stopping && err)
      break;                    /* do not spin on a dead shadow at exit */
  }
  mutex_unlock (&c->lock);
  return NULL;
}

struct committer *
committer_start (struct residency *r, struct engine *e,
                 commit_persist_fn persist, void *persist_opaque,
                 double interval, unsigned test_delay_ms)
{
  struct committer *c = calloc (1, sizeof *c);
  int err;

  if (c == NULL) {
    shadow_error ("commit: out of memory");
    return NULL;
  }
  c->r = r;
  c->e = e;
  c->persist = persist;
  c->persist_opaque = persist_opaque;
  c->interval = interval > 0 ? interval : 1.0;
  c->test_delay_ms = test_delay_ms;
  pthread_mutex_init (&c->lock, NULL);
  pthread_cond_init (&c->wake, NULL);
  pthread_cond_init (&c->done, NULL);
  err = pthread_create (&c->thread, NULL, committer_thread, c);
  if (err != 0) {
    shadow_error ("commit: cannot start thread: %s", strerror (err));
    pthread_cond_destroy (&c->done);
    pthread_cond_destroy (&c->wake);
    pthread_mutex_destroy (&c->lock);
    free (c);
    return NULL;
  }
  return c;
}

int
committer_wait (struct committer *c)
{
  uint64_t target;
  int err;

  mutex_lock (&c->lock);
  target = c->started + 1;
  if (c->requested < target)
    c->requested = target;
  cond_signal (&c->wake);
  while (c->completed < target && !(c->stopping && c->started < target))
    cond_wait (&c->done, &c->lock);
  /* A later commit that succeeded covers a failed earlier one. */
  err = c->completed >= target ? c->result : ESHUTDOWN;
  mutex_unlock (&c->lock);
  if (err) {
    errno = err;
    return -1;
  }
  return 0;
}

int
committer_stop (struct committer *c)
{
  int r, err;

  if (c == NULL)
    return 0;
  mutex_lock (&c->lock);
  c->stopping = true;
  cond_signal (&c->wake);
  mutex_unlock (&c->lock);
  r = pthread_join (c->thread, NULL);
  if (r != 0)
    shadow_error ("commit: cannot join thread: %s", strerror (r));
  err = c->result;
  cond_broadcast (&c->done);
  pthread_cond_destroy (&c->done);
  pthread_cond_destroy (&c->wake);
  pthread_mutex_destroy (&c->lock);
  free (c);
  if (err) {
    errno = err;
    return -1;
  }
  return 0;
}

void
committer_stats (struct committer *c, struct commit_stats *out)
{
  mutex_lock (&c->lock);
  *out = c->stats;
  mutex_unlock (&c->lock);
}
