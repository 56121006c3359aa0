/* model-file.h: the versioned, checksummed file a trained model lives in.
 *
 * Why it exists: `nbdshadow-predict train` learns offline what the
 * filter's `shadow-model=FILE` loads to start warm.  The two may run on
 * different machines and versions, so the format is fixed here, byte by
 * byte, and a damaged file is refused with a reason instead of loading
 * garbage weights.
 *
 * Format version 1.  All integers little-endian, reals IEEE-754 binary64
 * little-endian.
 *
 *   offset 0   8 bytes   magic "NBDSPRED"
 *          8   u32       format version (1)
 *         12   u32       flags (0)
 *   then sections, each:
 *              4 bytes   tag (ASCII)
 *              u32       0 (reserved)
 *              u64       payload length L
 *              L bytes   payload
 *              u32       CRC-32 (IEEE, as zlib) of tag..payload
 *   The last section is "END " with L = 0; anything after it, a missing
 *   END, a bad CRC, an unknown version or a duplicate section is an
 *   error.  Unknown tags are skipped (forward compatibility).
 *
 *   "CONF" (required), 15 fields:
 *     u32 block_size       bytes per block the deltas are counted in
 *     u32 stream_fwd       tokenizer stream window, blocks ahead
 *     u32 stream_back      tokenizer stream window, blocks behind
 *     u32 vocab            V = vocabulary capacity (ids 0..V-1, 0 = OOV)
 *     u32 embed            E
 *     u32 hidden           H
 *     u32 bptt             truncation length used for training
 *     u32 optimizer        0 Adam, 1 RMSprop
 *     u64 seed
 *     f64 lr, clip, beta1, beta2, eps
 *     u64 trained_tokens   tokens the model was trained on
 *   "VOCB" (required): u32 n, then n x i64: the deltas of ids 1..n (n < V)
 *   "LSTM" (required): u64 count, then count x f64: Emb[V][E], Wx[4H][E],
 *     Wh[4H][H], b[4H], Wy[V][H], by[V]; gate order i, f, g, o;
 *     count = VE + 4HE + 4HH + 4H + VH + V.
 *   "SEMB" (optional, since 2026-12-02): u64 count, then count x f64:
 *     SizeEmb[8][E], the request size classes' embeddings (lstm.h);
 *     count = 8E.  A file without it (written before) loads with zeros
 *     there: its model sees no sizes, as when it was trained.  A reader
 *     from before skips the section (an unknown tag) and loads the rest:
 *     that model then sees every request as 4 KiB or less, which shifts
 *     its gates where it learnt from sizes.
 *
 * Saving writes PATH.tmp, fsyncs it and renames it over PATH.
 */
#ifndef NBDSHADOW_PRED_MODEL_FILE_H
#define NBDSHADOW_PRED_MODEL_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "lstm.h"

#define PRED_MODEL_MAGIC "NBDSPRED"
#define PRED_MODEL_VERSION 1

struct pred_model_file {
  uint32_t block_size;
  uint32_t stream_fwd, stream_back;
  struct pred_lstm_config lstm;
  uint64_t trained_tokens;
  unsigned nvocab;              /* deltas of ids 1..nvocab */
  int64_t *vocab;
  struct pred_lstm_params params;
};

/* 0 ok; -1 with a message in err. */
int pred_model_save (const char *path, const struct pred_model_file *mf,
                     char *err, size_t errlen);
/* Fills *mf (free with pred_model_file_free).  0 ok; -1 with a message. */
int pred_model_load (const char *path, struct pred_model_file *mf,
                     char *err, size_t errlen);
void pred_model_file_free (struct pred_model_file *mf);

#endif
