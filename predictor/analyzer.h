/* analyzer.h: online statistics of the access stream.
 *
 * Why it exists: the scheduler (which blocks to hydrate first), the
 * status report and the humans watching a migration need to know what
 * the clients are doing -- read/write mix, how sequential, request
 * sizes, which regions are hot now, how many interleaved streams -- in
 * bounded memory and O(1) per access.
 *
 * Definitions:
 *  - sequential: the access continues its stream (tokenizer) starting at
 *    the block after, or the last block of, the stream's previous access;
 *    near: continues a stream otherwise (within the stream window);
 *    random: starts a new stream.
 *  - recent shares are exponential moving averages over accesses with
 *    factor 1/256; totals are since creation.
 *  - heat of a region (2^region_shift blocks): every access adds 1 to
 *    each region it touches; heat halves every half_life seconds of trace
 *    time.  A region is hot when its heat >= hot_threshold.
 *  - an active stream was used in the last 256 accesses; a sequential
 *    stream is an active one whose last 2 or more accesses were
 *    sequential.
 *
 * Bounds: max_regions regions (8-way set-associative table, the coldest
 * way of a full set is replaced), PRED_STREAMS_MAX stream counters.
 * Memory is fixed at creation (~24 bytes per region).
 */
#ifndef NBDSHADOW_PRED_ANALYZER_H
#define NBDSHADOW_PRED_ANALYZER_H

#include <stddef.h>
#include <stdint.h>

#include "access.h"
#include "tokenizer.h"

#define PRED_SIZE_BUCKETS 18    /* <=512, <=1K, ..., <=32M, larger */

struct pred_analyzer_config {
  unsigned region_shift;        /* log2 blocks per region, default 4 */
  unsigned max_regions;         /* default 4096 */
  double half_life_s;           /* default 30 */
  double hot_threshold;         /* default 8 */
};

struct pred_region {
  uint64_t first_block;
  uint64_t nblocks;
  double heat;
};

struct pred_analyzer_stats {
  uint64_t accesses;            /* all ops, flushes included */
  uint64_t reads, writes, zeroes, trims, flushes;
  uint64_t bytes_read, bytes_written;
  uint64_t sequential, near, random;
  double recent_read_share, recent_seq_share, recent_random_share;
  double mean_request_bytes;
  uint64_t size_hist[PRED_SIZE_BUCKETS];
  unsigned active_streams, sequential_streams;
  unsigned regions_tracked, regions_hot;
  uint64_t region_evictions;
};

struct pred_analyzer;

void pred_analyzer_config_default (struct pred_analyzer_config *c);
struct pred_analyzer *pred_analyzer_new (const struct pred_analyzer_config *c);
void pred_analyzer_free (struct pred_analyzer *a);
/* ev is the tokenizer's event for a, or NULL when a touches no block
 * (flush, zero length). */
void pred_analyzer_observe (struct pred_analyzer *a, const struct pred_access *acc,
                            const struct pred_event *ev);
/* Snapshot; heat is evaluated at now_us. */
void pred_analyzer_stats (const struct pred_analyzer *a, uint64_t now_us,
                          struct pred_analyzer_stats *st);
/* The up to max hottest regions at now_us, hottest first.  O(regions). */
size_t pred_analyzer_hot (const struct pred_analyzer *a, uint64_t now_us,
                          struct pred_region *out, size_t max);
/* Current heat of the region holding block (0 if not tracked). */
double pred_analyzer_heat (const struct pred_analyzer *a, uint64_t block,
                           uint64_t now_us);
size_t pred_analyzer_memory (const struct pred_analyzer *a);

#endif
