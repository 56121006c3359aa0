/* nbdshadow: the shadow connections and the engine thread that drives them.
 *
 * A shadow export gets ONE libnbd handle unless it advertises multi-conn
 * (qemu-nbd accepts a single client by default), and that one handle must
 * carry many concurrent requests from nbdkit's worker threads and from
 * the copier.  A shadow that advertises multi-conn (nbdkit's file plugin
 * does) gets cfg.connections handles instead: the first is left to
 * clients, so that their reads do not queue behind the copier's large
 * writes, and copies go over the others (more than two let the server
 * receive several copy streams at once).  One engine thread runs
 * a libev loop over all the handles' sockets
 * (nbd_aio_get_fd / nbd_aio_get_direction / nbd_aio_notify_*), and other
 * threads only hand it work through a mutex-protected queue and
 * ev_async_send, the one libev call that is safe from another thread.
 *
 * A shadow_io is one logical operation (read, write, zero, trim, flush,
 * block status) on one shadow or on all of them.  The engine splits it
 * into commands no bigger than the server accepts, issues them with
 * client I/O ahead of copy traffic, and completes the io once all its
 * commands have.  A lost connection is reconnected with backoff and its
 * commands are issued again, so callers see a delay, not an error,
 * unless the shadow stays away longer than reconnect_timeout.  A write
 * that was in flight when its connection was lost completes no sooner
 * than retry_hold seconds after the loss.  Updates the shadow
 * acknowledged but had not flushed when a connection was lost are
 * written again before anything else (wlog.h): a server that crashed
 * may have lost them, and a flush on the new connection would not bring
 * them back.
 *
 * Completion (the done callback) runs on the engine thread, outside
 * libnbd's handle lock: it may submit more work but must not block.
 */

#ifndef NBDSHADOW_ENGINE_H
#define NBDSHADOW_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENGINE_MAX_SHADOWS 8

enum shadow_op {
  SHADOW_READ,
  SHADOW_WRITE,
  SHADOW_ZERO,
  SHADOW_TRIM,
  SHADOW_FLUSH,
  SHADOW_BLOCK_STATUS,
};

/* shadow_io.target */
#define SHADOW_ALL (-1)         /* every shadow (the default for updates) */
#define SHADOW_ANY (-2)         /* the best healthy shadow (reads) */

/* shadow_io.flags */
#define SHADOW_FLAG_MAY_TRIM 1  /* zero: the shadow may punch a hole */

/* shadow_io.priority: client I/O is issued before copy traffic. */
enum shadow_priority {
  SHADOW_PRIO_CLIENT = 0,
  SHADOW_PRIO_COPY = 1,
};

struct shadow_io;
typedef void (*shadow_io_done_fn) (struct shadow_io *io);

/* Extents for SHADOW_BLOCK_STATUS: called on the engine thread with
 * consecutive ranges, flags as in NBD base:allocation (1 hole, 2 zero).
 */
typedef void (*shadow_extent_fn) (void *opaque, uint64_t offset,
                                  uint64_t length, uint32_t flags);

struct engine_waiter;
struct wlog_data;

struct shadow_io {
  /* Set by the caller. */
  enum shadow_op op;
  int target;                   /* shadow index, SHADOW_ALL or SHADOW_ANY */
  uint64_t offset, count;
  void *buf;                    /* READ destination / WRITE source */
  uint32_t flags;
  enum shadow_priority priority;
  shadow_extent_fn extent_fn;   /* BLOCK_STATUS only */
  /* READ and WRITE: largest command to send (0: the server's limit).
   * The copier asks for small commands while no client is active:
   * several in flight at once let the shadow take the data faster, but
   * they also keep more of its threads busy when a client's command
   * arrives (bench/results-migrate.md).
   */
  uint32_t max_command;
  shadow_io_done_fn done;       /* NULL for engine_run */
  void *opaque;

  /* Result: 0, or the errno of the first command that failed. */
  int err;

  /* WRITE, optional: a reference to a buffer (wlog.h) that holds buf and
   * that no one changes any more.  engine_submit takes the reference
   * over, and the write log keeps the data without copying it.
   */
  struct wlog_data *buf_ref;

  /* Engine private. */
  struct wlog_data *log_data;   /* WRITE: holds buf's data, for the log */
  const char *log_base;         /* where buf's first byte is in it */
  unsigned pending;
  struct engine_waiter *waiter;
  double hold_until;            /* CLOCK_MONOTONIC s: complete no earlier */
  struct shadow_io *held_next;  /* on engine->held */
};

/* What a shadow told us when it connected. */
struct shadow_info {
  const char *uri;
  int64_t size;
  bool can_flush, can_fua, can_zero, can_trim, can_block_status;
  bool can_multi_conn;
  uint32_t max_request;         /* bytes per data command */
};

/* Counters per shadow, for status and health (read without locks:
 * each is a relaxed atomic).
 */
struct shadow_stats {
  uint64_t commands, bytes_read, bytes_written;
  uint64_t errors, reconnects, retries;
  uint64_t replays;             /* times unflushed updates were redone */
  uint64_t replayed;            /* updates written again */
  bool updates_lost;            /* acknowledged updates may be lost: every
                                   flush fails until the filter restarts */
  double latency_ewma_us;       /* smoothed command latency */
  bool connected;               /* at least one connection is up */
  unsigned connections;         /* open to it (1, or more with multi-conn) */
  unsigned connections_up;
};

struct engine_config {
  const char *const *uris;
  size_t nr_shadows;
  int64_t expected_size;        /* -1: do not check */
  double reconnect_timeout;     /* seconds a shadow may stay away */
  /* Seconds a write (write, zero, trim) that was in flight on a lost
   * connection keeps its io open after the loss, retry included, so that
   * a server still executing the lost copy finishes it before anything
   * newer can be sent to the same range (engine.c says why).  0: none.
   */
  double retry_hold;
  /* Bytes of acknowledged, unflushed updates kept per shadow to write
   * them again after a lost connection (wlog.h); above it the engine
   * flushes early, above twice it new updates wait.  0: 64 MiB.
   */
  uint64_t log_cap;
  /* Every read or write command this size, if below the server's limit
   * (0: as shadow_io.max_command asks; engine.c says why).  Benchmarks
   * only.
   */
  uint32_t max_data_request;
  /* Tests only: each shadow's fail_log_append-th update fails to enter
   * its write log as if out of memory (wlog.fail_seq); 0: never.
   */
  uint64_t fail_log_append;
  /* Replay commands in flight per shadow after a lost connection
   * (1..REPLAY_MAX; 0: REPLAY_MAX).  Benchmarks only.
   */
  unsigned replay_depth;
  /* Tests only: DROP_CONN_DELAY after the second write command at this
   * byte offset is issued to the first shadow, another of its
   * connections is dropped as if lost (once), while that write is still
   * in flight on a slow shadow: the replay must wait for it.  0: never.
   */
  uint64_t drop_conn_at;
  /* Seconds a shadow may go without a connection at start-up (the
   * probe's handshake included) before the start fails; 0:
   * CONNECT_TIMEOUT.  Tests shorten it.
   */
  double connect_timeout;
  /* Seconds a connection attempt waits for the server's handshake at
   * first (doubled after each attempt that ran out of it); 0:
   * HANDSHAKE_TIMEOUT.  Tests shorten it.
   */
  double handshake_timeout;
  unsigned max_in_flight;       /* commands per shadow */
  unsigned max_copy_in_flight;  /* of which copy traffic */
  /* Connections per shadow that advertised multi-conn in probed[] (0 or
   * 1: one each; without probed, one each).  Read during engine_start.
   */
  unsigned connections;
  const struct shadow_info *probed;
};

struct engine;

/* Probe the shadows synchronously (before nbdkit forks): connect, read
 * size and capabilities, disconnect.  Fills info[0..nr-1] (info[i].uri
 * points into cfg).  Reports the failing URI and returns -1 on error.
 */
extern int engine_probe (const struct engine_config *cfg,
                         struct shadow_info *info);

/* Create the engine, start its thread and connect every shadow.  Waits
 * until all connections are up, but for those that failed (refused, or
 * left unanswered) while another of their shadow's was up (retried in
 * the background); on failure reports which and returns NULL.
 */
extern struct engine *engine_start (const struct engine_config *cfg);

/* Fail everything still queued with ESHUTDOWN, stop the thread, close
 * the handles, free.
 */
extern void engine_stop (struct engine *e);

extern size_t engine_nr_shadows (const struct engine *e);
extern const struct shadow_info *engine_shadow_info (const struct engine *e,
                                                      size_t i);
extern void engine_shadow_stats (struct engine *e, size_t i,
                                 struct shadow_stats *out);

/* Every shadow supports it (the filter's can_* answers). */
extern bool engine_all_can_zero (const struct engine *e);
extern bool engine_all_can_trim (const struct engine *e);

/* Asynchronous: io->done is called exactly once, on the engine thread. */
extern void engine_submit (struct engine *e, struct shadow_io *io);

/* Synchronous: submit and wait.  Returns 0, or -1 with errno = io->err.
 * Must not be called from the engine thread.
 */
extern int engine_run (struct engine *e, struct shadow_io *io);

/* Call fn (opaque, now) on the engine thread every interval seconds from
 * now on (replacing any earlier tick).  fn must not block.
 */
typedef void (*engine_tick_fn) (void *opaque, double now);
extern void engine_set_tick (struct engine *e, engine_tick_fn fn,
                             void *opaque, double interval);

/* Is the calling thread the engine thread? */
extern bool engine_on_thread (const struct engine *e);

#endif /* NBDSHADOW_ENGINE_H */
