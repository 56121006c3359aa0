/* lstm-model.h: the LSTM as a prediction model (model.h interface).
 *
 * Why it exists: it joins the pieces on the predictor thread -- per
 * stream hidden state advanced by one step per observed token
 * (inference), tokens fed to the trainer, fresh weights picked up when
 * the trainer published some -- and exposes the result as a sequence
 * model that the rollout and the hybrid can use.
 *
 * Cost on the predictor thread per access: one LSTM step (4H(E+H)
 * multiply-adds) at observe; at predict, one softmax (VH) per rollout
 * step and one more LSTM step per step beyond the first.  Keep the
 * rollout depth small (the hybrid continues with the n-gram).
 *
 * Inference is single precision (lstm-infer.h) on the trainer's latest
 * snapshot; a vocabulary id recycled by the tokenizer keeps its old
 * rows until the trainer's next publication resets them.
 *
 * Memory: the trainer's (weights, gradient, two moments in double, three
 * float snapshots, feed queue) plus 2H floats of state per stream slot;
 * reported by memory().  Fixed at creation.
 */
#ifndef NBDSHADOW_PRED_LSTM_MODEL_H
#define NBDSHADOW_PRED_LSTM_MODEL_H

#include "lstm-trainer.h"
#include "model.h"

struct pred_lstm_model_config {
  struct pred_lstm_trainer_config trainer;      /* lstm.vocab == vocab cap */
  struct pred_rollout_cfg rollout;
  bool learn;                   /* feed the trainer (online learning) */
  bool size_input;              /* inputs carry the request's size class
                                   (lstm.h); off: every input is class 0 */
};

/* init: starting weights or NULL (random from the seed). */
struct pred_model *pred_lstm_model_new (const struct pred_lstm_model_config *cfg,
                                        const struct pred_vocab *vocab,
                                        const struct pred_lstm_params *init);
struct pred_lstm_trainer *pred_lstm_model_trainer (struct pred_model *m);
/* The snapshot inference uses now. */
const struct pred_lstm_infer *pred_lstm_model_snapshot (const struct pred_model *m);
/* Turn online learning on or off (tokens are no longer fed when off). */
void pred_lstm_model_set_learn (struct pred_model *m, bool learn);

#endif
