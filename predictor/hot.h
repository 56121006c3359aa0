/* hot.h: run-time selection of an AVX2+FMA build of hot kernels.
 *
 * Why it exists: the library must run on any x86-64 (it is loaded into
 * nbdkit on whatever machine hosts the migration), yet the LSTM kernels
 * are 2-4 times faster with 256-bit vectors.  GCC's target_clones builds
 * a function twice (x86-64-v3 and baseline) and picks one when the
 * program loads.  Results may differ in the last bits between the two
 * builds (fused multiply-add), never between runs on one machine.
 */
#ifndef NBDSHADOW_PRED_HOT_H
#define NBDSHADOW_PRED_HOT_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
  defined(__has_attribute)
#if __has_attribute (target_clones)
#define PRED_HOT __attribute__ ((target_clones ("arch=x86-64-v3", "default")))
#endif
#endif
#ifndef PRED_HOT
#define PRED_HOT
#endif

#endif
