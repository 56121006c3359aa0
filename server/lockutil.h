/* nbdshadow: pthread calls that cannot fail in a correct program.
 *
 * pthread_mutex_lock and friends only fail on programming errors (EINVAL,
 * EDEADLK with error-checking mutexes).  Checking every return value at
 * every call site would bury the logic, and there is no recovery anyway:
 * these wrappers check and abort with the failing call named.
 */

#ifndef NBDSHADOW_LOCKUTIL_H
#define NBDSHADOW_LOCKUTIL_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <time.h>

#define LOCKUTIL_CHECK(call)                                            \
  do {                                                                  \
    int lockutil_r_ = (call);                                           \
    if (lockutil_r_ != 0) {                                             \
      fprintf (stderr, "nbdshadow: %s:%d: %s: %s\n",                    \
               __FILE__, __LINE__, #call, strerror (lockutil_r_));      \
      abort ();                                                         \
    }                                                                   \
  } while (0)

#define mutex_lock(m)      LOCKUTIL_CHECK (pthread_mutex_lock (m))
#define mutex_unlock(m)    LOCKUTIL_CHECK (pthread_mutex_unlock (m))
#define cond_wait(c, m)    LOCKUTIL_CHECK (pthread_cond_wait ((c), (m)))
#define cond_signal(c)     LOCKUTIL_CHECK (pthread_cond_signal (c))
#define cond_broadcast(c)  LOCKUTIL_CHECK (pthread_cond_broadcast (c))

/* Name the calling thread (15 characters at most), so that top -H,
 * perf sched and gdb tell the filter's threads apart.  A name that
 * cannot be set costs only that: the result is ignored.
 */
static inline void
thread_name (const char *name)
{
  (void) pthread_setname_np (pthread_self (), name);
}

/* Wait until the absolute CLOCK_REALTIME deadline; returns true on
 * timeout.
 */
static inline int
cond_timedwait (pthread_cond_t *c, pthread_mutex_t *m,
                const struct timespec *deadline)
{
  int r = pthread_cond_timedwait (c, m, deadline);

  if (r != 0 && r != ETIMEDOUT) {
    fprintf (stderr, "nbdshadow: pthread_cond_timedwait: %s\n", strerror (r));
    abort ();
  }
  return r == ETIMEDOUT;
}

/* Seconds on CLOCK_MONOTONIC, which timeouts and rates are measured
 * on.  It cannot fail on Linux; if it ever did, every wait would be
 * wrong, so abort like the lock calls above.
 */
static inline double
monotonic_s (void)
{
  struct timespec ts;

  if (clock_gettime (CLOCK_MONOTONIC, &ts) == -1) {
    fprintf (stderr, "nbdshadow: clock_gettime: %s\n", strerror (errno));
    abort ();
  }
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

#endif /* NBDSHADOW_LOCKUTIL_H */
