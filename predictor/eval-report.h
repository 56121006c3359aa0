/* eval-report.h: tables and JSON for `nbdshadow-predict eval`.
 *
 * Why it exists: the simulator produces counters; people and scripts
 * need the derived figures (shares, precision, coverage, MiB, ns per
 * access) laid out the same way every time.  Kept apart from the tool's
 * option parsing so both stay short.
 */
#ifndef NBDSHADOW_PRED_EVAL_REPORT_H
#define NBDSHADOW_PRED_EVAL_REPORT_H

#include <stdbool.h>
#include <stdio.h>

#include "sim.h"

struct eval_row {
  const char *policy;
  struct sim_result r;
  uint64_t train_ns;            /* LSTM training time, all of it */
  size_t memory_bytes;          /* predictor memory at the end */
};

struct eval_table {
  const char *trace, *device;
  uint64_t accesses;
  uint32_t block_size;
  const struct sim_config *cfg;
  struct eval_row *rows;
  size_t nrows;
};

void eval_print_table (FILE *fp, const struct eval_table *t);
/* One JSON object (no trailing newline or comma). */
void eval_print_json (FILE *fp, const struct eval_table *t);

/* After a table: `policy` against the baselines present (readahead,
 * stride, markov1, leap) and the oracle -- coverage ratios, and whether
 * it beats every baseline on coverage at equal or better precision and
 * reaches half the oracle's coverage.  Nothing if policy is absent. */
void eval_print_summary (FILE *fp, const struct eval_table *t,
                         const char *policy);

/* Derived figures (0 when the denominator is 0). */
double eval_shadow_share (const struct sim_result *r);
double eval_precision (const struct sim_result *r);
double eval_coverage (const struct sim_result *r);

#endif
