/* eval-report.c: text and JSON output of evaluation tables. */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>

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
