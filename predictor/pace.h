/* pace.h: how fast each stream moves, to look ahead in time.
 *
 * Why it exists: a lookahead counted in accesses reaches a different
 * distance in time for every stream.  Thirty-two accesses of tar, which
 * reads as fast as the shadow answers, are a few milliseconds; thirty-
 * two of a reader doing a hundred requests a second are a third of a
 * second, and copying that far ahead only crowds the link the nearer
 * blocks need (bench/e2e inter stalled less at 16 ahead, fs-tar less at
 * 32: bench/e2e/RESULTS.md, "The hybrid's lookahead").  What a
 * prediction must cover is the time a copy takes to land; this table
 * turns that time into accesses per stream.
 *
 * A stream's gap is the median of the intervals between its last five
 * accesses (four intervals): one long pause (tar between two files, a
 * client thinking) moves a median of four less than a mean, so a stream
 * that reads in bursts keeps the pace of its bursts.  A new stream (its
 * slot reused) starts with no pace.  Intervals are kept in microseconds,
 * at most one second each.
 *
 * Bounds: one fixed record per stream slot (streams.h), 32 bytes.
 * Threading: one thread (the predictor's).
 */
#ifndef NBDSHADOW_PRED_PACE_H
#define NBDSHADOW_PRED_PACE_H

#include <stdbool.h>
#include <stdint.h>

#define PRED_PACE_GAPS 4

struct pred_pace_stream {
  uint64_t last_us;             /* time of the stream's last access */
  uint32_t gap_us[PRED_PACE_GAPS];      /* ring of the latest intervals */
  uint8_t ngaps, next;
  bool seen;                    /* last_us is set */
};

struct pred_pace {
  unsigned nstreams;
  struct pred_pace_stream *s;
};

/* 0, or -1 with errno (out of memory). */
int pred_pace_init (struct pred_pace *pc, unsigned nstreams);
void pred_pace_free (struct pred_pace *pc);

/* An access of stream slot `stream` at time_us; new_stream: the slot
 * was just (re)assigned to a new stream, whose pace is not known. */
void pred_pace_note (struct pred_pace *pc, unsigned stream, bool new_stream,
                     uint64_t time_us);

/* The stream's median interval in microseconds (at least 1), or 0 while
 * fewer than two intervals are known. */
uint32_t pred_pace_gap (const struct pred_pace *pc, unsigned stream);

/* Accesses the stream makes in horizon_us: ceil (horizon_us / gap),
 * within lo .. hi; hi when the pace is not known (a lookahead that
 * falls short costs a stall, one that overshoots only bandwidth). */
unsigned pred_pace_lookahead (const struct pred_pace *pc, unsigned stream,
                              uint64_t horizon_us, unsigned lo, unsigned hi);

#endif
