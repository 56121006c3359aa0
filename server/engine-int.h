/* nbdshadow: the engine's internals, shared by engine.c (connections,
 * queues, the libev loop) and engine-loss.c (what a lost connection
 * leaves behind).  Not an interface: engine.h is.
 *
 * Locking is engine.c's: e->lock guards e->incoming, e->stopping and the
 * tick fields; everything else here belongs to the engine thread,
 * except the counters, which are relaxed atomics read by status.
 */

#ifndef NBDSHADOW_ENGINE_INT_H
#define NBDSHADOW_ENGINE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <ev.h>
#include <libnbd.h>

#include "engine.h"
#include "wlog.h"

#define DATA_CHUNK_MAX (32 * 1024 * 1024) /* common server payload limit */
#define NODATA_CHUNK_MAX (1024 * 1024 * 1024) /* zero/trim/block status */
#define ZERO_BUF_SIZE (1024 * 1024)       /* zero emulated by writes */
#define BACKOFF_MIN 0.05
#define BACKOFF_MAX 2.0
#define GIVEN_UP_RETRY 30.0     /* seconds, for a connection that failed
                                   at start-up while another was up */
#define CONNECT_TIMEOUT 60.0
/* Seconds from connect to ready: a server that accepts but never
 * finishes the handshake must not hold a connection (and start-up)
 * forever.  Doubled after each attempt that ran out of it, up to the
 * maximum, for a server that is only slow to answer (a plugin with a
 * slow open, a long link); back to the start once a connection is up.
 */
#define HANDSHAKE_TIMEOUT 10.0
#define HANDSHAKE_TIMEOUT_MAX 60.0
#define LOG_CAP_DEFAULT (64 * 1024 * 1024)
#define LOG_RETRY 1.0             /* s after a failed flush or replay */
#define REPLAY_MAX 16             /* replay commands in flight per shadow */
#define DROP_CONN_DELAY 0.05      /* s; tests only (engine_config.drop_conn_at) */

struct sub {
  struct sub *next;
  struct shadow_io *io;
  struct shadow *sh;            /* the shadow it is for */
  struct shadow_conn *conn;     /* the connection it was issued on */
  uint64_t offset, count;
  char *buf;                    /* into io->buf, for READ and WRITE */
  bool any;                     /* io->target was SHADOW_ANY */
  int err;
  struct timespec started;
  uint64_t covers;              /* FLUSH: the log entries it covers */
  struct wlog_entry *replay;    /* a replay of this entry (io is internal) */
};

struct subq {
  struct sub *head, **tail;
  size_t len;
};

enum conn_state {
  CONN_CONNECTING,
  CONN_READY,
  CONN_DOWN,                    /* waiting for the retry timer */
};

struct shadow_counters {
  _Atomic uint64_t commands, bytes_read, bytes_written;
  _Atomic uint64_t errors, reconnects, retries, replays, replayed;
  _Atomic double latency_ewma_us;
  _Atomic unsigned connected;   /* connections ready */
  _Atomic bool updates_lost;    /* shadow.poisoned, for status */
};

/* One shadow export.  Its commands wait in its queues until one of its
 * connections has room; the in-flight caps are per shadow, whatever the
 * number of connections.
 */
struct shadow {
  struct engine *e;
  struct shadow_info info;
  bool info_known;              /* info is from a handshake */
  char refused[128];            /* the last refusal said this outage, or
                                   "" (engine thread only): conn_refuse */
  struct subq queue[2];         /* by priority, not yet issued */
  unsigned in_flight, copy_in_flight;
  double down_since;            /* ev_now when its last connection went
                                   down, or 0 while one is ready */
  size_t nr_conns;
  struct shadow_conn *conns;    /* into engine->conns */
  struct shadow_counters counters;

  /* What it acknowledged since its last flush, written again after a
   * lost connection (wlog.h).  While replaying nothing else is issued;
   * entries are issued in log order, several at once as long as none
   * overlaps one still in flight (engine-loss.c).
   */
  struct wlog log;
  uint64_t log_gap;             /* an append failed at this seq (0: none) */
  bool poisoned;                /* acknowledged updates may be lost for
                                   good: every caller's flush fails */
  bool replaying;
  bool replay_drain;            /* (re)start: issue once nothing is in
                                   flight */
  struct wlog_entry *replay_next;   /* the next entry to issue */
  struct wlog_entry *replay_failed; /* the oldest that failed while others
                                       were in flight, or NULL */
  struct wlog_entry *replay_retrying; /* issued again after failing: its
                                         success stops the failure clock */
  unsigned replay_in_flight;
  unsigned replay_round;        /* a restart begins a new one */
  unsigned replay_depth;        /* at most this many in flight (1..REPLAY_MAX) */
  struct replay_range {
    uint64_t offset, count;
    bool used;
  } replay_ranges[REPLAY_MAX];  /* of the replay commands in flight */
  double replay_retry_at;       /* monotonic: not before (failure, loss) */
  double failing_since;         /* monotonic: replay or log flush failing */
  ev_timer replay_timer;
  struct sub *log_flush;        /* our own flush to trim the log, queued
                                   or in flight (conn set), or NULL */
  double log_flush_retry_at;    /* monotonic */
};

/* One connection to a shadow.  A shadow has several only when it
 * advertises multi-conn: then a flush on any of them covers the writes
 * completed on all of them (NBD protocol, NBD_FLAG_CAN_MULTI_CONN), which
 * is what the commit's durability order relies on.
 */
struct shadow_conn {
  struct shadow *sh;
  struct nbd_handle *nbd;       /* NULL while down */
  enum conn_state state;
  bool ever_ready;
  bool given_up;                /* failed at start-up while another was
                                   up: start-up did not wait for it */
  ev_io io;
  ev_timer retry;
  ev_timer handshake;           /* armed while CONN_CONNECTING */
  double handshake_timeout;     /* its length (HANDSHAKE_TIMEOUT) */
  bool silence_said;            /* a handshake timed out, said once per
                                   outage after the connection was up */
  double backoff;
  double down_since;            /* ev_now when it went down, or 0 */
  struct subq completed;        /* filled by libnbd completion callbacks */
  unsigned in_flight;
  unsigned copy_in_flight;      /* of in_flight, the copier's */
};

struct engine_waiter {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool done;
};

struct engine {
  struct engine_config cfg;
  struct ev_loop *loop;
  ev_async wake;
  ev_prepare prepare;
  pthread_t thread;
  bool thread_started;

  pthread_mutex_t lock;         /* guards incoming, stopping, new_tick */
  struct shadow_io **incoming;
  size_t incoming_len, incoming_cap;
  bool stopping;
  bool new_tick;                /* tick_* changed: re-arm the timer */
  engine_tick_fn tick_fn;
  void *tick_opaque;
  double tick_interval;
  ev_timer tick;

  pthread_mutex_t start_lock;   /* guards the start-up fields below */
  pthread_cond_t start_cond;
  size_t nr_ready;              /* connections that came up */
  size_t nr_given_up;           /* ... or were given up (conn_give_up) */
  bool start_failed;

  struct shadow_io *held;       /* completed, waiting for hold_until */
  ev_timer hold_timer;          /* fires at the earliest hold_until */

  /* Shadows that could flush when the engine started (bit i: shadow i):
   * writes to them are kept for the write log by engine_submit, on the
   * caller's thread (wlog.h).  Set by the engine thread at each shadow's
   * first handshake, before engine_start returns; read-only after.
   */
  unsigned logged_shadows;

  char *zero_buf;               /* ZERO_BUF_SIZE zero bytes */
  bool closing;                 /* engine_stop, after the thread ended */
  /* Tests (engine_config.drop_conn_at): writes seen at that offset, the
   * connection the second went to, and the timer that drops another.
   */
  unsigned drop_conn_seen;
  struct shadow_conn *drop_spare;
  ev_timer drop_timer;
  size_t nr_shadows;
  struct shadow shadows[ENGINE_MAX_SHADOWS];
  size_t nr_conns;              /* over all shadows */
  struct shadow_conn conns[];
};

/* ---------------------------------------------------------------------- */
/* Queues of subs, and time. */

static inline void
subq_init (struct subq *q)
{
  q->head = NULL;
  q->tail = &q->head;
  q->len = 0;
}

static inline void
subq_push (struct subq *q, struct sub *s)
{
  s->next = NULL;
  *q->tail = s;
  q->tail = &s->next;
  q->len++;
}

static inline void
subq_push_front (struct subq *q, struct sub *s)
{
  s->next = q->head;
  q->head = s;
  if (q->tail == &q->head)
    q->tail = &s->next;
  q->len++;
}

static inline struct sub *
subq_pop (struct subq *q)
{
  struct sub *s = q->head;

  if (s) {
    q->head = s->next;
    if (q->head == NULL)
      q->tail = &q->head;
    q->len--;
    s->next = NULL;
  }
  return s;
}

/* Take s out of q, wherever it is.  Returns whether it was there. */
static inline bool
subq_remove (struct subq *q, struct sub *s)
{
  struct sub **pp;

  for (pp = &q->head; *pp; pp = &(*pp)->next)
    if (*pp == s) {
      *pp = s->next;
      if (q->tail == &s->next)
        q->tail = pp;
      q->len--;
      s->next = NULL;
      return true;
    }
  return false;
}

/* Seconds on CLOCK_MONOTONIC.  Holds use it, not ev_now (the wall
 * clock, as of the loop iteration's start): a clock step must not end a
 * hold early.
 */
static inline double
monotonic_now (void)
{
  struct timespec now;

  clock_gettime (CLOCK_MONOTONIC, &now);
  return now.tv_sec + now.tv_nsec / 1e9;
}

static inline bool
op_updates (enum shadow_op op)
{
  return op == SHADOW_WRITE || op == SHADOW_ZERO || op == SHADOW_TRIM;
}

/* engine.c */
extern const char *engine_op_name (enum shadow_op op);
extern void engine_conn_down (struct shadow_conn *c, const char *why);
extern int engine_issue_sub (struct sub *s, struct shadow_conn *c);
extern struct shadow_conn *engine_least_busy_conn (struct shadow *sh);
extern int engine_split_onto (struct shadow_io *io, struct shadow *sh,
                              bool any, struct subq *out);
extern void engine_deliver_io (struct shadow_io *io);

/* engine-loss.c: writes in flight on a lost connection are held. */
extern bool loss_hold_write (struct sub *s);
extern void loss_complete_io (struct engine *e, struct shadow_io *io);
extern void loss_release_held (struct engine *e, bool all);
extern void loss_hold_cb (struct ev_loop *loop, ev_timer *w, int revents);

/* engine-loss.c: the unflushed write log and its replay. */
extern int loss_note_success (struct sub *s);
extern void loss_maybe_flush_log (struct shadow *sh);
extern bool loss_log_flush_first (struct shadow *sh, struct subq *q);
extern bool loss_log_full (const struct shadow *sh);
extern void loss_start_replay (struct shadow *sh);
extern bool loss_replay_step (struct shadow *sh);
extern void loss_replay_completed (struct sub *s, bool dead);
extern void loss_replay_timer_cb (struct ev_loop *loop, ev_timer *w,
                                  int revents);

#endif /* NBDSHADOW_ENGINE_INT_H */
