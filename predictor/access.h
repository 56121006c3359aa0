/* access.h: the one record every part of the predictor speaks.
 *
 * Why it exists: the filter's worker threads, the trace readers and
 * writer, the ring and the models all exchange "a client touched these
 * bytes at this time".  Keeping that record in one small header means no
 * module depends on another just to name an access.  Nothing here knows
 * about NBD: the op letters are those of the trace format (DESIGN §3.5).
 */
#ifndef NBDSHADOW_PRED_ACCESS_H
#define NBDSHADOW_PRED_ACCESS_H

#include <stdint.h>

/* Operation of an access; the values are the trace-format letters. */
enum pred_op {
  PRED_OP_READ  = 'R',
  PRED_OP_WRITE = 'W',
  PRED_OP_ZERO  = 'Z',          /* write zeroes */
  PRED_OP_TRIM  = 'T',          /* discard */
  PRED_OP_FLUSH = 'F',          /* flush: offset and length are 0 */
};

/* One client access.  32 bytes, copied by value everywhere. */
struct pred_access {
  uint64_t time_us;             /* microseconds, any epoch, non-decreasing */
  uint64_t offset;              /* bytes */
  uint32_t length;              /* bytes */
  uint8_t op;                   /* enum pred_op */
  uint8_t pad[3];
  uint32_t dev;                 /* device index (trace readers); 0 otherwise */
};

/* 1 if c is one of R W Z T F. */
static inline int
pred_op_valid (int c)
{
  return c == PRED_OP_READ || c == PRED_OP_WRITE || c == PRED_OP_ZERO ||
         c == PRED_OP_TRIM || c == PRED_OP_FLUSH;
}

/* 1 if the op changes data on the volume (W Z T). */
static inline int
pred_op_is_write (int op)
{
  return op == PRED_OP_WRITE || op == PRED_OP_ZERO || op == PRED_OP_TRIM;
}

#endif /* NBDSHADOW_PRED_ACCESS_H */
