/* nbdshadow: migration counters.
 *
 * Bumped on the I/O paths with relaxed atomics (no lock: a counter that
 * is a few operations behind is fine for status), read by status and the
 * control socket.
 */

#ifndef NBDSHADOW_STATS_H
#define NBDSHADOW_STATS_H

#include <stdatomic.h>
#include <stdint.h>

enum copy_kind {
  COPY_ON_DEMAND,               /* copy-on-read, partial-write fill, cache */
  COPY_PREFETCH,                /* predicted */
  COPY_BACKGROUND,              /* hydration sweep */
  COPY_KINDS
};

struct volume_stats {
  _Atomic uint64_t read_ops;
  _Atomic uint64_t read_bytes_shadow;   /* client bytes served by a shadow */
  _Atomic uint64_t read_bytes_origin;   /* ... by the origin */
  _Atomic uint64_t write_ops, write_bytes;
  _Atomic uint64_t zero_ops, trim_ops, flush_ops, cache_ops;
  _Atomic uint64_t copied_bytes[COPY_KINDS];
  _Atomic uint64_t copied_blocks[COPY_KINDS];
  _Atomic uint64_t copies_skipped_busy; /* range held by a writer/copier */
  _Atomic uint64_t copies_requeued;     /* ... and handed to the copier */
  _Atomic uint64_t copies_cut_short;    /* idle-speed copies a client ended */
  _Atomic uint64_t copies_failed;
  _Atomic uint64_t fill_reads;          /* origin reads to fill partial writes */
  _Atomic uint64_t origin_errors;
  _Atomic uint64_t shadow_errors;
  /* Prefetched blocks a client then read (used) or overwrote before
   * reading (wasted): volume.c keeps the set in between.
   */
  _Atomic uint64_t prefetch_used, prefetch_wasted;
};

#define STAT_ADD(field, n) \
  atomic_fetch_add_explicit (&(field), (n), memory_order_relaxed)
#define STAT_GET(field) \
  atomic_load_explicit (&(field), memory_order_relaxed)

#endif /* NBDSHADOW_STATS_H */
