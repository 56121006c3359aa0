/* lstm-infer.h: fast single-precision LSTM inference snapshots.
 *
 * Why it exists: the predictor thread has a few microseconds per access.
 * Training needs double precision (and is checked against finite
 * differences in double), inference does not.  A snapshot holds the
 * trained weights rearranged for speed:
 *   xproj[v] = Wx Emb[v] + b          (the input half of the gates, per token)
 *   sproj[s] = Wx SizeEmb[s]          (and per size class)
 *   wht      = Wh transposed, wyt = Wy transposed
 * so that every product is a sequence of AXPYs over contiguous rows,
 * which compilers vectorise without reassociating sums (results are the
 * same at every optimisation level on a given machine), and exp is a
 * vectorisable polynomial (relative error < 2e-7).  On x86-64 the
 * kernels are also compiled for AVX2+FMA and picked at run time.
 *
 * Snapshots are immutable once built; the trainer builds them and hands
 * them over through a triple buffer (lstm-trainer.h).
 */
#ifndef NBDSHADOW_PRED_LSTM_INFER_H
#define NBDSHADOW_PRED_LSTM_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "lstm.h"

struct pred_lstm_infer {
  unsigned V, E, H;
  float *xproj;                 /* [V][4H], gate order i f g o */
  float *sproj;                 /* [PRED_LSTM_SIZE_CLASSES][4H] */
  float *wht;                   /* [H][4H] */
  float *wyt;                   /* [H][V] */
  float *by;                    /* [V] */
  uint64_t version;             /* publication number */
};

int pred_lstm_infer_alloc (struct pred_lstm_infer *f, unsigned V, unsigned E,
                           unsigned H);
void pred_lstm_infer_free (struct pred_lstm_infer *f);
size_t pred_lstm_infer_memory (const struct pred_lstm_infer *f);
/* Rebuild f from double-precision parameters of the same shape. */
void pred_lstm_infer_build (struct pred_lstm_infer *f,
                            const struct pred_lstm_params *p);
/* One step from (h, c) with input tok (pred_lstm_input) into (h2, c2);
 * h2/c2 may alias.
 * scratch: 4H floats. */
void pred_lstm_infer_step (const struct pred_lstm_infer *f, const float *h,
                           const float *c, uint32_t tok, float *h2, float *c2,
                           float *scratch);
/* Softmax over the V tokens for state h. */
void pred_lstm_infer_output (const struct pred_lstm_infer *f, const float *h,
                             float *probs);

#endif
