/* nbdshadow: the volume being migrated, and its data path.
 *
 * This is DESIGN §4 in code.  A volume ties together the residency map,
 * the block-range locks, the shadow engine and the committer, and serves
 * client requests against an origin (origin.h):
 *
 *  - read: split into runs; resident runs come from a shadow, absent runs
 *    from the origin expanded to whole blocks, and those blocks are then
 *    written to the shadow from the buffer already in hand (copy-on-read,
 *    asynchronous, never a second origin read);
 *  - write / zero: a block that is absent and only partly covered is
 *    first filled from the origin, then the whole block is written, then
 *    marked; with shadow-writes=both the origin gets the write too;
 *  - trim: wholly covered absent blocks become resident as zeroes without
 *    a copy; resident ranges are trimmed on the shadow;
 *  - flush and FUA complete after a commit covering them (commit.h);
 *  - cache: copies the range now (a client's prefetch request);
 *  - extents: what the client would read: the shadow's for resident runs,
 *    the origin's for absent runs.
 *
 * Races: see rangelock.h.  Every path that may put data on the shadow for
 * an absent block holds that block's range lock from its "still absent?"
 * check until the block is marked.
 */

#ifndef NBDSHADOW_VOLUME_H
#define NBDSHADOW_VOLUME_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "commit.h"
#include "engine.h"
#include "origin.h"
#include "rangelock.h"
#include "residency.h"
#include "stats.h"

/* Flags of client requests. */
#define VOLUME_FLAG_FUA 1
#define VOLUME_FLAG_MAY_TRIM 2
#define VOLUME_FLAG_FAST_ZERO 4
#define VOLUME_FLAG_REQ_ONE 8

enum phase {
  PHASE_COPYING,
  PHASE_SYNCED,
  PHASE_VERIFYING,
  PHASE_CUTOVER,
  PHASE_DONE,
};

struct volume_config {
  uint64_t size;                /* origin size = shadow size, bytes */
  uint32_t block_size;
  bool writes_both;             /* shadow-writes=both */
  uint64_t copy_memory;         /* bytes of copy-on-read data in flight */
  double commit_interval;       /* seconds */
  commit_persist_fn persist;    /* NULL: volatile residency */
  void *persist_opaque;
  /* Make "a client is about to write these resident, not yet written
   * blocks" durable before the write reaches the shadow (state.h says
   * why).  NULL: not needed (volatile state, or shadow-writes=both where
   * verify compares every block).
   */
  int (*intent) (void *opaque, uint64_t first, uint64_t count);
  struct residency *res;        /* loaded residency, or NULL for a new one */
  unsigned test_commit_delay_ms; /* tests: widen the commit's windows */
  bool test_no_copy_on_read;    /* tests: look without hydrating */
  uint32_t origin_read_max;     /* bytes per origin read of a copy, 0: whole */
  uint32_t origin_idle_read_max; /* the same while clients are idle */
  /* Every client access, for the predictor (prefetch.h); must not block. */
  void (*access_fn) (void *opaque, int op, uint64_t offset, uint32_t count);
  void *access_opaque;
};

/* Copy rate samples, for status. */
#define RATE_SAMPLES 16

#define CLIENT_LAT_SUM_BITS 44
#define CLIENT_LAT_SUM_MASK ((UINT64_C (1) << CLIENT_LAT_SUM_BITS) - 1)

struct volume {
  struct volume_config cfg;
  struct residency *res;
  struct rangelock locks;
  struct engine *engine;
  struct committer *committer;
  struct volume_stats stats;
  _Atomic int phase;            /* enum phase */

  /* Asynchronous copies in flight: copy_lock guards the two fields, and
   * copy_idle is signalled when copies_in_flight drops to zero.
   */
  pthread_mutex_t copy_lock;
  pthread_cond_t copy_idle;
  uint64_t copies_in_flight;
  uint64_t copy_bytes_in_flight;

  /* Client I/O takes this for reading; cutover for writing. */
  pthread_rwlock_t io_gate;

  /* Client request latency since the copier last looked: the count in
   * the top 20 bits, the sum of microseconds in the other
   * CLIENT_LAT_SUM_BITS, one word so that the copier takes both for the
   * same requests (two words let a request's sum land in one tick and
   * its count in the next).
   */
  _Atomic uint64_t client_lat;

  /* The same for the client reads served entirely by the shadow: what
   * copying costs clients on the filter's host (CPU, the shadow's
   * server), with the origin's latency left out.
   */
  _Atomic uint64_t shadow_read_lat;

  /* Client requests in progress, and when the last one ended
   * (CLOCK_MONOTONIC us): volume_clients_idle.
   */
  _Atomic unsigned clients_active;
  _Atomic uint64_t client_last_us;

  /* Blocks copied by prefetch that no client touched yet: prefetch_lock
   * guards the set; prefetch_outstanding (its count) lets the I/O path
   * skip the lock while it is empty.
   */
  pthread_mutex_t prefetch_lock;
  struct blockset *prefetched;
  _Atomic uint64_t prefetch_outstanding;

  /* Where a client read's copy goes when its range is busy or the copy
   * fails (copyop.c): requeue_lock guards the pair, and is held across
   * the call so that volume_set_requeue (NULL) returns only once no call
   * is running.  NULL: the copy is dropped.
   */
  pthread_mutex_t requeue_lock;
  bool (*requeue_fn) (void *opaque, uint64_t first, uint64_t count);
  void *requeue_opaque;

  /* Rate sampler: rate_lock guards the ring. */
  pthread_mutex_t rate_lock;
  struct { double t; uint64_t bytes; } rate[RATE_SAMPLES];
  unsigned rate_next, rate_len;
};

/* Create the volume over a started engine and start its committer.
 * Reports and returns NULL on failure.
 */
extern struct volume *volume_new (const struct volume_config *cfg,
                                  struct engine *engine);

/* Wait for copies in flight, run a final commit, stop the committer and
 * free.  The engine is the caller's.  Returns the final commit's result.
 */
extern int volume_close (struct volume *v);

/* A client read copies the blocks it read from the origin to the shadow
 * only if no other copy or write holds part of their range at that
 * moment (it must not wait: the client is waiting), and the copy may
 * fail (a shadow fails the write, memory runs out).  Dropping such a
 * copy would leave the blocks absent until something else copies them,
 * which with the background sweep off is never.  So the volume hands the
 * range to fn (the migration's copier, at requested priority), which
 * returns false if it could not take it.  fn NULL: no one to hand it to.
 * fn may be called on any thread, the engine's included.
 */
extern void volume_set_requeue (struct volume *v,
                                bool (*fn) (void *opaque, uint64_t first,
                                            uint64_t count),
                                void *opaque);

/* After this long without a client request the volume counts as idle,
 * and copies go faster at the price of longer queues at the origin and
 * the shadows (more copier workers, origin reads in pieces, 256 KiB
 * commands to the shadows): bench/results-migrate.md.
 */
#define VOLUME_CLIENTS_QUIET 1.0

/* No client request is in progress, nor ended in the last quiet_s
 * seconds.  A hint (requests may start right after), never blocks.
 */
extern bool volume_clients_idle (struct volume *v, double quiet_s);

extern int volume_pread (struct volume *v, struct origin *o, void *buf,
                         uint32_t count, uint64_t offset, int *err);
extern int volume_pwrite (struct volume *v, struct origin *o,
                          const void *buf, uint32_t count, uint64_t offset,
                          uint32_t flags, int *err);
extern int volume_zero (struct volume *v, struct origin *o, uint32_t count,
                        uint64_t offset, uint32_t flags, int *err);
extern int volume_trim (struct volume *v, struct origin *o, uint32_t count,
                        uint64_t offset, uint32_t flags, int *err);
extern int volume_flush (struct volume *v, struct origin *o, int *err);
extern int volume_cache (struct volume *v, struct origin *o, uint32_t count,
                         uint64_t offset, int *err);
extern int volume_extents (struct volume *v, struct origin *o,
                           uint32_t count, uint64_t offset, uint32_t flags,
                           origin_extent_fn fn, void *opaque, int *err);

/* Copy the absent blocks of [first, first+count) from origin o now, and
 * wait.  blocking: wait for busy ranges (else skip them).  *cut_short
 * (cut_short may be NULL): a background copy begun while clients were
 * idle stopped early because one turned up; the rest is left absent.
 * Returns the number of bytes copied, or -1 with *err.
 */
extern int64_t volume_copy_blocks (struct volume *v, struct origin *o,
                                   uint64_t first, uint64_t count,
                                   enum copy_kind kind, bool blocking,
                                   bool *cut_short, int *err);

/* Client requests served since the last call, and their mean latency;
 * the copier backs off when it rises (copier.c).
 */
extern void volume_take_client_latency (struct volume *v, uint64_t *count,
                                        double *mean_us);

/* The same for the client reads served entirely by the shadow. */
extern void volume_take_shadow_read_latency (struct volume *v,
                                             uint64_t *count,
                                             double *mean_us);

/* Pause client I/O (waits for requests in flight) / resume it. */
extern void volume_pause_clients (struct volume *v);
extern void volume_resume_clients (struct volume *v);

/* Prefetch accounting: blocks [first, first+count) were copied by
 * prefetch; a client read or wrote [first, first+count).
 */
extern void volume_note_prefetched (struct volume *v, uint64_t first,
                                    uint64_t count);
extern void volume_note_client_touch (struct volume *v, uint64_t first,
                                      uint64_t count, bool read);

/* Wait until no asynchronous copy is in flight. */
extern void volume_wait_copies (struct volume *v);

extern enum phase volume_phase (struct volume *v);
extern void volume_set_phase (struct volume *v, enum phase p);
extern const char *phase_name (enum phase p);

/* Record a rate sample (called about twice a second) and return the copy
 * rate in bytes/s over the last few seconds.
 */
extern void volume_sample_rate (struct volume *v, double now);
extern double volume_copy_rate (struct volume *v);
extern uint64_t volume_copied_bytes (struct volume *v);

/* The one-line status of DESIGN §3.2, into buf. */
extern void volume_status_line (struct volume *v, char *buf, size_t len);

#endif /* NBDSHADOW_VOLUME_H */
