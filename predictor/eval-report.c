/* eval-report.c: text and JSON output of evaluation tables. */
#include <config.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "eval-report.h"

static double
ratio (double a, double b)
{
  return b > 0 ? a / b : 0;
}

double
eval_shadow_share (const struct sim_result *r)
{
  return ratio (r->reads_shadow, r->reads);
}

double
eval_precision (const struct sim_result *r)
{
  return ratio (r->pf_used, r->pf_issued);
}

double
eval_coverage (const struct sim_result *r)
{
  return ratio (r->ft_covered, r->first_touches);
}

/* Predictor time without the synchronous LSTM training done inside
 * observe (in the filter, training runs on its own thread). */
static double
infer_ns (const struct eval_row *w)
{
  return w->r.policy_ns > w->train_ns ? (double) (w->r.policy_ns - w->train_ns) : 0;
}

static double
mib (uint64_t blocks, uint32_t bs)
{
  return (double) blocks * bs / (1024.0 * 1024.0);
}

void
eval_print_table (FILE *fp, const struct eval_table *t)
{
  const struct sim_config *c = t->cfg;

  fprintf (fp, "== %s device %s: %" PRIu64 " accesses, %" PRIu64
           " blocks of %" PRIu32 " KiB, %.0f s of trace\n",
           t->trace, t->device, t->accesses,
           t->nrows ? t->rows[0].r.nr_blocks : 0, t->block_size / 1024,
           t->nrows ? t->rows[0].r.duration_us / 1e6 : 0.0);
  fprintf (fp, "   link %.1f MiB/s, latency %.0f us, queue depth %u, "
           "background sweep %s, first touches needing data: %" PRIu64 "\n",
           c->bandwidth / 1048576.0, c->latency_us, c->queue_depth,
           c->background ? "on" : "off",
           t->nrows ? t->rows[0].r.first_touches : 0);
  fprintf (fp, "%-10s %7s %10s %9s %7s %7s %7s %9s %9s %9s %8s %8s %8s\n",
           "policy", "shadow%", "stall_ms", "stall/rd", "prec%", "cover%",
           "ftres%", "demandMiB", "prefMiB", "bgMiB", "ns/acc", "trn_ns/a",
           "memKiB");
  for (size_t i = 0; i < t->nrows; i++) {
    const struct eval_row *w = &t->rows[i];
    const struct sim_result *r = &w->r;
    fprintf (fp, "%-10s %7.1f %10.1f %9.1f %7.1f %7.1f %7.1f %9.1f %9.1f %9.1f "
             "%8.0f %8.0f %8.0f\n",
             w->policy, 100 * eval_shadow_share (r), r->stall_us / 1000,
             ratio (r->stall_us, r->reads), 100 * eval_precision (r),
             100 * eval_coverage (r), 100 * ratio (r->ft_resident, r->first_touches),
             mib (r->copied_demand, t->block_size),
             mib (r->copied_prefetch, t->block_size),
             mib (r->copied_background, t->block_size),
             ratio (infer_ns (w), r->accesses), ratio (w->train_ns, r->accesses),
             w->memory_bytes / 1024.0);
  }
}

static void
json_str (FILE *fp, const char *s)
{
  fputc ('"', fp);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      fprintf (fp, "\\%c", *s);
    else if ((unsigned char) *s < 0x20)
      fprintf (fp, "\\u%04x", *s);
    else
      fputc (*s, fp);
  }
  fputc ('"', fp);
}

void
eval_print_json (FILE *fp, const struct eval_table *t)
{
  const struct sim_config *c = t->cfg;

  fprintf (fp, "{\"trace\":");
  json_str (fp, t->trace);
  fprintf (fp, ",\"device\":");
  json_str (fp, t->device);
  fprintf (fp, ",\"accesses\":%" PRIu64 ",\"block_size\":%" PRIu32
           ",\"bandwidth\":%.0f,\"latency_us\":%.1f,\"queue_depth\":%u"
           ",\"background\":%s,\"policies\":[",
           t->accesses, t->block_size, c->bandwidth, c->latency_us,
           c->queue_depth, c->background ? "true" : "false");
  for (size_t i = 0; i < t->nrows; i++) {
    const struct eval_row *w = &t->rows[i];
    const struct sim_result *r = &w->r;
    fprintf (fp, "%s{\"policy\":", i ? "," : "");
    json_str (fp, w->policy);
    fprintf (fp, ",\"reads\":%" PRIu64 ",\"reads_shadow\":%" PRIu64
             ",\"shadow_share\":%.6f,\"stall_us\":%.1f,\"stalled\":%" PRIu64
             ",\"first_touches\":%" PRIu64 ",\"ft_covered\":%" PRIu64
             ",\"ft_resident\":%" PRIu64 ",\"coverage\":%.6f"
             ",\"prefetch_issued\":%" PRIu64 ",\"prefetch_used\":%" PRIu64
             ",\"precision\":%.6f,\"copied_demand_blocks\":%" PRIu64
             ",\"copied_prefetch_blocks\":%" PRIu64
             ",\"copied_background_blocks\":%" PRIu64
             ",\"bytes_copied\":%" PRIu64 ",\"policy_ns\":%" PRIu64
             ",\"ns_per_access\":%.1f,\"train_ns\":%" PRIu64
             ",\"memory_bytes\":%zu,\"duration_us\":%.0f,\"nr_blocks\":%" PRIu64 "}",
             r->reads, r->reads_shadow, eval_shadow_share (r), r->stall_us,
             r->stalled, r->first_touches, r->ft_covered, r->ft_resident,
             eval_coverage (r), r->pf_issued, r->pf_used, eval_precision (r),
             r->copied_demand, r->copied_prefetch, r->copied_background,
             (r->copied_demand + r->copied_prefetch + r->copied_background) *
             (uint64_t) t->block_size,
             r->policy_ns, ratio (infer_ns (w), r->accesses), w->train_ns,
             w->memory_bytes, r->duration_us, r->nr_blocks);
  }
  fprintf (fp, "]}");
}

static const struct eval_row *
find_row (const struct eval_table *t, const char *name)
{
  for (size_t i = 0; i < t->nrows; i++)
    if (strcmp (t->rows[i].policy, name) == 0)
      return &t->rows[i];
  return NULL;
}

/* Rows of `policy` itself and of its threshold sweep ("policy@T"). */
static bool
is_point_of (const char *row, const char *policy)
{
  size_t n = strlen (policy);
  return strncmp (row, policy, n) == 0 && (row[n] == '\0' || row[n] == '@');
}

void
eval_print_summary (FILE *fp, const struct eval_table *t, const char *policy)
{
  static const char *const baselines[] = { "readahead", "stride", "markov1", "leap" };
  const struct eval_row *h = find_row (t, policy), *o = find_row (t, "oracle");
  const struct eval_row *best = NULL;
  double ch, ph, maxcov = 0;
  char lost[512] = "";
  bool ok = true;
  unsigned npoints = 0;

  if (!h)
    return;
  ch = eval_coverage (&h->r);
  ph = eval_precision (&h->r);
  for (size_t i = 0; i < t->nrows; i++) {
    if (strcmp (t->rows[i].policy, "oracle") != 0 &&
        eval_coverage (&t->rows[i].r) > maxcov)
      maxcov = eval_coverage (&t->rows[i].r);
    npoints += is_point_of (t->rows[i].policy, policy);
  }

  for (size_t k = 0; k < sizeof baselines / sizeof baselines[0]; k++) {
    const struct eval_row *b = find_row (t, baselines[k]);
    if (!b)
      continue;
    double cb = eval_coverage (&b->r), pb = eval_precision (&b->r);
    if (!best || cb > eval_coverage (&best->r))
      best = b;
    /* Beaten if some operating point of the policy (its default and any
     * swept threshold) has more coverage at no less precision.  Half a
     * point of slack; coverage ties count when both are near-perfect or
     * both nil; a baseline that prefetched nothing has no precision. */
    bool beaten = false;
    const char *how = "";
    for (size_t i = 0; i < t->nrows && !beaten; i++) {
      const struct eval_row *x = &t->rows[i];
      if (!is_point_of (x->policy, policy))
        continue;
      double cx = eval_coverage (&x->r), px = eval_precision (&x->r);
      bool cov_ok = cx > cb || (cx >= cb - 0.005 && (cb > 0.99 || cb < 0.005));
      bool prec_ok = b->r.pf_issued == 0 || px >= pb - 0.005;
      if (cov_ok && prec_ok) {
        beaten = true;
        how = x->policy;
      }
    }
    if (beaten && strcmp (how, policy) != 0)
      fprintf (fp, "   %s beats %s (%.1f%% at %.1f%%) at threshold %s\n", policy,
               b->policy, 100 * cb, 100 * pb, strchr (how, '@') + 1);
    if (!beaten) {
      ok = false;
      size_t n = strlen (lost);
      snprintf (lost + n, sizeof lost - n, "%s%s (coverage %.1f%%, precision %.1f%%)",
                n ? ", " : "", b->policy, 100 * cb, 100 * pb);
    }
  }
  fprintf (fp, "   %s: coverage %.1f%% at precision %.1f%%", policy, 100 * ch, 100 * ph);
  if (best)
    fprintf (fp, "; best baseline %s %.1f%% at %.1f%% (x%.2f)", best->policy,
             100 * eval_coverage (&best->r), 100 * eval_precision (&best->r),
             eval_coverage (&best->r) > 0 ? ch / eval_coverage (&best->r) : 0);
  if (o)
    fprintf (fp, "; oracle %.1f%% (x%.2f)", 100 * eval_coverage (&o->r),
             eval_coverage (&o->r) > 0 ? ch / eval_coverage (&o->r) : 0);
  fprintf (fp, "\n");
  if (!best || !o)
    return;
  if (maxcov < 0.05) {
    fprintf (fp, "   target: not applicable (no policy covers 5%% of first touches: "
             "nothing learnable)\n");
    return;
  }
  bool half = ch >= 0.5 * eval_coverage (&o->r);
  fprintf (fp, "   target: %s", ok && half ? "MET" : "NOT MET");
  if (!ok)
    fprintf (fp, "; not beaten at any of %u operating points: %s", npoints, lost);
  if (!half)
    fprintf (fp, "; below half the oracle's coverage");
  fprintf (fp, "\n");
}
