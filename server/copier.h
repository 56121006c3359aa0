/* nbdshadow: background hydration.
 *
 * Copy-on-read alone never finishes a migration: blocks nobody reads stay
 * on the origin forever.  The copier's workers copy the rest, through
 * an origin context of the filter's own (not a client's), in this order
 * of priority:
 *
 *   1. requested    ranges a client or the operator asked for
 *   2. predicted    the predictor's candidates (copier_request)
 *   3. hot          regions the access analyzer finds hot
 *   4. sweep        a sequential pass over what is still absent
 *
 * Adjacent absent blocks are coalesced into large transfers, and the
 * origin's allocation is used: ranges it reports as zero are written to
 * the shadows as write-zeroes, never read.
 *
 * Bandwidth: shadow-rate caps background and predicted copying with a
 * token bucket, predictions first (they may borrow ahead, the sweep
 * waits the debt off: pick_job).  Without a cap the copier still
 * yields to clients: it halves its window of concurrent transfers (down
 * to one) and adds a pause (at most MAX_PAUSE) when the clients'
 * latency rises above its recent floor, and grows back when it falls;
 * and it paces the sweep (2 MiB every 20-500 ms) while the reads the
 * shadow serves take much longer than when the sweep is held (it is,
 * for a second in every ten of clients' reading, to know: pacer.h).
 * It never stops: dm-clone stops hydrating whenever any client I/O is
 * in flight, which under a steady load means never finishing.  While
 * clients are idle (VOLUME_CLIENTS_QUIET) more workers copy at once
 * (nr_idle_workers): faster hydration; a client that turns up cuts
 * the background copies under way short (copyop.c blocks_to_keep).
 */

#ifndef NBDSHADOW_COPIER_H
#define NBDSHADOW_COPIER_H

#include <stdbool.h>
#include <stdint.h>

#include "origin.h"
#include "volume.h"

enum copy_priority {
  COPY_PRIO_REQUESTED,
  COPY_PRIO_PREDICTED,
  COPY_PRIO_HOT,
  COPY_PRIO_LEVELS,
};

struct copier_config {
  struct volume *volume;
  struct origin *origin;        /* shared by the workers; the caller's */
  unsigned nr_workers;           /* transfers at once while clients are active */
  unsigned nr_idle_workers;      /* ... while they are idle (>= nr_workers) */
  bool background;              /* the sweep (shadow-background) */
  uint64_t rate;                /* bytes/s for background + predicted, 0 = no cap */
  uint64_t max_transfer;        /* bytes per coalesced copy */
  bool shadow_read_feedback;    /* back off when shadow reads slow down */
  /* Called (on a worker thread) when every block is resident. */
  void (*synced) (void *opaque);
  void *opaque;
};

struct copier_stats {
  uint64_t transfers, zero_transfers, errors, requests_queued;
  uint64_t requests_dropped;    /* queue full */
  uint64_t requests_retried;    /* failed requested ranges queued again */
  unsigned window;              /* transfers allowed at once now */
  unsigned active;              /* transfers in progress */
  double pause_ms;              /* pause between transfers now */
  double client_latency_us;     /* last measured */
  double client_latency_floor_us;
  double shadow_read_latency_us; /* client reads served by the shadow */
  double shadow_read_quiet_us;  /* ... while the sweep was last held */
  double sweep_gap_ms;          /* between sweep transfers' starts, 0 = none */
  uint64_t predictions_copied;  /* predicted ranges that wrote to the shadow */
  double prediction_latency_us; /* ... queued to copied, running median
                                   (0: none yet) */
  bool paused;
  uint64_t rate;
};

struct copier;

/* Start the workers.  Reports and returns NULL on error. */
extern struct copier *copier_start (const struct copier_config *cfg);

/* Stop and join the workers (copies in flight finish first). */
extern void copier_stop (struct copier *c);

/* Pause / resume background, predicted and hot copying, and the retries
 * of failed requested ranges (requested ranges themselves are still
 * copied: a client may be waiting for them).
 */
extern void copier_pause (struct copier *c, bool paused);
extern void copier_set_rate (struct copier *c, uint64_t rate);

/* Queue blocks [first, first+count) at priority prio.  Never blocks: a
 * full queue drops the request (counted).  Returns false if any of it
 * was dropped.
 */
extern bool copier_request (struct copier *c, enum copy_priority prio,
                            uint64_t first, uint64_t count);

/* Measure client latency and adapt; called about twice a second.
 * Returns true, once, when every block is resident and no worker has
 * reported it through cfg.synced: the caller reports it instead (copies
 * outside the copier, copy-on-read, may have finished the volume).
 */
extern bool copier_tick (struct copier *c);

extern void copier_get_stats (struct copier *c, struct copier_stats *out);

#endif /* NBDSHADOW_COPIER_H */
