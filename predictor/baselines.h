/* baselines.h: the classic prefetchers the learned models must beat,
 * plus the oracle that bounds what any of them could do.
 *
 * Why it exists: a predictor's figures mean nothing without the peers
 * measured on the same trace with the same simulator (DESIGN §6).  Each
 * is a faithful, small re-implementation:
 *
 *  readahead  Linux's on-demand readahead (mm/readahead.c): no prefetch
 *             for random reads; on a sequential read (starting at or one
 *             block before where its stream ended, or inside the window
 *             already read ahead) the window starts at 4x / 2x the request
 *             (rounded to a power of two) and grows 4x then 2x up to
 *             `max_window` blocks.  Per stream slot, as Linux keeps one
 *             state per open file.
 *  stride     per-stream stride detector (as in CPU prefetchers): after
 *             the same non-zero start-to-start stride twice, prefetch the
 *             next `depth` strides.  A new stream inherits its parent's
 *             state, so a single client jumping by a constant stride is
 *             detected even when each jump starts a new stream.
 *  leap       Leap's majority trend (Al Maruf and Chowdhury, ATC '20):
 *             over the last 32 global start-to-start deltas, the
 *             Boyer-Moore majority in the most recent 4, 8, 16 or 32
 *             (smallest window with a strict majority) is the trend; the
 *             prefetch window doubles (up to `max_window`) when the
 *             previous prefetch was hit and halves when it was not.
 *  oracle     knows the future: given the blocks in order of their first
 *             touch (and the access number of that touch) it proposes
 *             the next `lookahead` not-yet-touched ones.  Only the
 *             simulator can build one.
 *
 * All give probability 1 to their candidates (they are rules, not
 * distributions).  Memory is fixed at creation: a few words per stream
 * slot (readahead, stride), 32 deltas (leap), the future list (oracle).
 */
#ifndef NBDSHADOW_PRED_BASELINES_H
#define NBDSHADOW_PRED_BASELINES_H

#include "model.h"

struct pred_model *pred_readahead_new (unsigned nstreams, unsigned max_window);
struct pred_model *pred_stride_new (unsigned nstreams, unsigned depth,
                                    unsigned max_len);
struct pred_model *pred_leap_new (unsigned max_window, unsigned max_len);

/* future: blocks in order of first touch; when[i]: access number
 * (pred_event.seq) of that first touch.  Copied. */
struct pred_model *pred_oracle_new (const uint64_t *future,
                                    const uint64_t *when, size_t n,
                                    unsigned lookahead);

#endif
