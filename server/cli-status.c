/* nbdshadow: what the nbdshadow CLI shows of a status object
 * (cli-status.h).
 *
 * Ratios in the status (hit_ratio, precision, accuracy) are fractions
 * 0..1; sizes are bytes; copy_rate is bytes/s.  Anything missing or of
 * the wrong type prints as "?" or is left out.
 */

#include <config.h>

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cli-status.h"
#include "humansize.h"

#define LABEL "%-12s"

/* "431 MiB", or "?" when absent. */
static const char *
size_at (const struct json *st, const char *path, char *buf, size_t len)
{
  uint64_t v;

  if (!json_get_u64 (st, path, &v))
    return "?";
  human_size (v, buf, len);
  return buf;
}

static const char *
u64_at (const struct json *st, const char *path, char *buf, size_t len)
{
  uint64_t v;

  if (!json_get_u64 (st, path, &v))
    return "?";
  snprintf (buf, len, "%" PRIu64, v);
  return buf;
}

/* A fraction 0..1 as "87.0%"; 99.96% shows as 99.9%, never as a
 * misleading 100.0%.
 */
static const char *
percent (double f, char *buf, size_t len)
{
  double p = f * 100;

  if (!isfinite (p))
    return "?";
  if (p < 100 && p >= 99.95)
    p = 99.9;
  snprintf (buf, len, "%.1f%%", p);
  return buf;
}

static const char *
ratio_at (const struct json *st, const char *path, char *buf, size_t len)
{
  double f;

  if (!json_get_double (st, path, &f))
    return "?";
  return percent (f, buf, len);
}

static const char *
str_at (const struct json *st, const char *path)
{
  const char *s = json_get_string (st, path);

  return s ? s : "?";
}

/* Resident fraction: by bytes if known, else by blocks; -1 unknown. */
static double
resident_fraction (const struct json *st)
{
  uint64_t a, b;

  if (json_get_u64 (st, "bytes_resident", &a) &&
      json_get_u64 (st, "size", &b) && b > 0)
    return a >= b ? 1.0 : (double) a / b;
  if (json_get_u64 (st, "blocks_resident", &a) &&
      json_get_u64 (st, "blocks_total", &b) && b > 0)
    return a >= b ? 1.0 : (double) a / b;
  return -1;
}

bool
status_copy_finished (const struct json *st)
{
  static const char *const done[] = { "synced", "verifying", "cutover",
                                      "done" };
  const char *phase = json_get_string (st, "phase");
  size_t i;

  for (i = 0; phase && i < sizeof done / sizeof done[0]; ++i)
    if (strcmp (phase, done[i]) == 0)
      return true;
  return false;
}

/* "6s", "unknown", or "-" when the server says nothing. */
static const char *
eta (const struct json *st, char *buf, size_t len)
{
  const struct json *v = json_member (st, "eta_seconds");
  double s;

  if (v && v->type == JSON_NULL)
    return "unknown";
  if (!json_get_double (st, "eta_seconds", &s) || s < 0)
    return "?";
  human_duration (s, buf, len);
  return buf;
}

/*----------------------------------------------------------------------
 * The summary.
 */

static void
summary_phase (FILE *fp, const struct json *st)
{
  bool paused = false, background = true;
  char pct[16], a[32], b[32], c[32], d[32], e[32], w[32];
  double f = resident_fraction (st);

  /* Copying figures matter only while copying. */
  if (!status_copy_finished (st)) {
    json_get_bool (st, "paused", &paused);
    json_get_bool (st, "background", &background);
  }
  fprintf (fp, LABEL "%s%s%s\n", "phase:", str_at (st, "phase"),
           paused ? " (copying paused)" : "",
           background ? "" : " (no background copy)");
  fprintf (fp, LABEL "%s  %s of %s  (%s/%s blocks of %s, %s written)\n",
           "resident:", f >= 0 ? percent (f, pct, sizeof pct) : "?",
           size_at (st, "bytes_resident", a, sizeof a),
           size_at (st, "size", b, sizeof b),
           u64_at (st, "blocks_resident", c, sizeof c),
           u64_at (st, "blocks_total", d, sizeof d),
           size_at (st, "block_size", e, sizeof e),
           u64_at (st, "blocks_written", w, sizeof w));
}

static void
summary_traffic (FILE *fp, const struct json *st)
{
  char a[32], b[32], c[32], d[32];
  uint64_t sh, or;

  fprintf (fp, LABEL "%s: on demand %s, prefetch %s, background %s\n",
           "copied:", size_at (st, "bytes_copied.total", a, sizeof a),
           size_at (st, "bytes_copied.on_demand", b, sizeof b),
           size_at (st, "bytes_copied.prefetch", c, sizeof c),
           size_at (st, "bytes_copied.background", d, sizeof d));

  /* The hit ratio from the bytes if we have them: exact, not rounded;
   * and none at all before the first read.
   */
  if (json_get_u64 (st, "client_reads.bytes_shadow", &sh) &&
      json_get_u64 (st, "client_reads.bytes_origin", &or)) {
    if (sh + or > 0)
      percent ((double) sh / (sh + or), b, sizeof b);
    else
      snprintf (b, sizeof b, "-");
  }
  else
    snprintf (b, sizeof b, "%s",
              ratio_at (st, "client_reads.hit_ratio", c, sizeof c));
  fprintf (fp, LABEL "%s ops, hit %s (shadow %s, origin %s)\n",
           "reads:", u64_at (st, "client_reads.ops", a, sizeof a), b,
           size_at (st, "client_reads.bytes_shadow", c, sizeof c),
           size_at (st, "client_reads.bytes_origin", d, sizeof d));
  fprintf (fp, LABEL "%s ops, %s\n", "writes:",
           u64_at (st, "client_writes.ops", a, sizeof a),
           size_at (st, "client_writes.bytes", b, sizeof b));
}

static void
summary_rate (FILE *fp, const struct json *st)
{
  char a[32], b[32];
  double rate;
  uint64_t limit;

  if (json_get_double (st, "copy_rate", &rate) && rate >= 0) {
    human_size ((uint64_t) rate, a, sizeof a);
    strcat (a, "/s");
  }
  else
    snprintf (a, sizeof a, "?");
  if (!json_get_u64 (st, "rate_limit", &limit))
    snprintf (b, sizeof b, "?");
  else if (limit == 0)
    snprintf (b, sizeof b, "none");
  else {
    human_size (limit, b, sizeof b);
    strcat (b, "/s");
  }
  fprintf (fp, LABEL "%s (limit %s)\n", "copy rate:", a, b);
  fprintf (fp, LABEL "%s\n", "eta:", eta (st, a, sizeof a));
}

static void
summary_prefetch (FILE *fp, const struct json *st)
{
  const struct json *acc = json_path (st, "prefetch.accuracy");
  char a[32], b[32], c[32], d[32];
  size_t i;

  fprintf (fp, LABEL "%s: issued %s, used %s, wasted %s, precision %s\n",
           "prefetch:", str_at (st, "prefetch.policy"),
           u64_at (st, "prefetch.issued", a, sizeof a),
           u64_at (st, "prefetch.used", b, sizeof b),
           u64_at (st, "prefetch.wasted", c, sizeof c),
           ratio_at (st, "prefetch.precision", d, sizeof d));
  if (acc == NULL || acc->type != JSON_OBJECT || acc->n == 0)
    return;
  fprintf (fp, LABEL, "accuracy:");
  for (i = 0; i < acc->n; ++i) {
    const struct json *v = &acc->items[i];

    fprintf (fp, "%s%s %s", i ? ", " : "", acc->keys[i].text,
             v->type == JSON_NUMBER ? percent (v->number, a, sizeof a) : "?");
  }
  fputc ('\n', fp);
}

static void
summary_errors (FILE *fp, const struct json *st)
{
  const struct json *shadows = json_path (st, "errors.shadows");
  char a[32], b[32], c[32], d[32], r[32], label[32];
  size_t i;

  fprintf (fp, LABEL "origin %s\n", "errors:",
           u64_at (st, "errors.origin", a, sizeof a));
  if (shadows == NULL || shadows->type != JSON_ARRAY)
    return;
  for (i = 0; i < shadows->n; ++i) {
    const struct json *sh = &shadows->items[i];
    bool connected = false, lost = false;
    double lat, conns, up;
    char state[64] = "";

    snprintf (label, sizeof label, "shadow %zu:", i);
    if (json_get_bool (sh, "connected", &connected)) {
      /* "2 of 4 connections" only when there are several. */
      if (json_get_double (sh, "connections", &conns) && conns > 1 &&
          json_get_double (sh, "connections_up", &up))
        snprintf (state, sizeof state, "(%s, %.0f of %.0f connections up)",
                  connected ? "connected" : "DISCONNECTED", up, conns);
      else
        snprintf (state, sizeof state, "(%s)",
                  connected ? "connected" : "DISCONNECTED");
    }
    fprintf (fp, LABEL "%s %s\n", label, str_at (sh, "uri"), state);
    if (json_get_double (sh, "latency_us", &lat))
      snprintf (d, sizeof d, "%.0f us", lat);
    else
      snprintf (d, sizeof d, "?");
    fprintf (fp, LABEL "%s errors, %s reconnects, %s retries, "
             "%s replays, latency %s\n",
             "", u64_at (sh, "errors", a, sizeof a),
             u64_at (sh, "reconnects", b, sizeof b),
             u64_at (sh, "retries", c, sizeof c),
             u64_at (sh, "replays", r, sizeof r), d);
    if (json_get_bool (sh, "updates_lost", &lost) && lost)
      fprintf (fp, LABEL "UPDATES LOST: it may have lost writes it "
               "acknowledged; every flush fails until the filter "
               "restarts\n", "");
  }
}

static void
summary_verify (FILE *fp, const struct json *st)
{
  const char *state = json_get_string (st, "verify.state");
  char a[32], b[32], c[32], d[32];
  uint64_t checked, total;

  if (state == NULL) {
    fprintf (fp, LABEL "?\n", "verify:");
    return;
  }
  if (strcmp (state, "running") == 0 &&
      json_get_u64 (st, "verify.blocks_checked", &checked) &&
      json_get_u64 (st, "verify.blocks_total", &total) && total > 0)
    fprintf (fp, LABEL "running %s (%" PRIu64 "/%" PRIu64 " blocks, "
             "%s mismatches)\n", "verify:",
             percent ((double) checked / total, a, sizeof a), checked, total,
             u64_at (st, "verify.mismatches", b, sizeof b));
  else if (strcmp (state, "idle") == 0)
    fprintf (fp, LABEL "idle\n", "verify:");
  else
    fprintf (fp, LABEL "%s: %s blocks checked, %s mismatches, %s re-copied\n",
             "verify:", state,
             u64_at (st, "verify.blocks_checked", b, sizeof b),
             u64_at (st, "verify.mismatches", c, sizeof c),
             u64_at (st, "verify.recopied", d, sizeof d));
}

static void
summary_state (FILE *fp, const struct json *st)
{
  const struct json *state = json_member (st, "state");
  char a[32], b[32], c[32];
  double ms;

  if (json_get_double (st, "commits.last_ms", &ms))
    snprintf (c, sizeof c, "%.1f ms", ms);
  else
    snprintf (c, sizeof c, "?");
  fprintf (fp, LABEL "%s (%s failures, last %s)\n", "commits:",
           u64_at (st, "commits.count", a, sizeof a),
           u64_at (st, "commits.failures", b, sizeof b), c);
  if (state && state->type == JSON_NULL)
    fprintf (fp, LABEL "none (volatile: a restart recopies everything)\n",
             "state:");
  else if (state && state->type == JSON_OBJECT)
    fprintf (fp, LABEL "%s (journal %s, snapshot %s)\n", "state:",
             str_at (state, "dir"),
             size_at (state, "journal_bytes", a, sizeof a),
             size_at (state, "snapshot_bytes", b, sizeof b));
}

void
status_summary (FILE *fp, const struct json *st)
{
  summary_phase (fp, st);
  summary_traffic (fp, st);
  summary_rate (fp, st);
  summary_prefetch (fp, st);
  summary_errors (fp, st);
  summary_verify (fp, st);
  summary_state (fp, st);
}

/*----------------------------------------------------------------------
 * Progress lines.
 */

/* "[####......]" sized to what width leaves after tail, then tail. */
static void
bar_line (double f, const char *tail, int width, char *buf, size_t len)
{
  int bar = width - 3 - (int) strlen (tail);   /* "[", "]", last column */
  int i, full;
  size_t off = 0;

  if (bar > 50)
    bar = 50;
  if (bar < 10)
    bar = 10;
  if (len < (size_t) bar + 3)
    return;
  full = f <= 0 ? 0 : f >= 1 ? bar : (int) (f * bar);
  buf[off++] = '[';
  for (i = 0; i < bar; ++i)
    buf[off++] = i < full ? '#' : '.';
  buf[off++] = ']';
  snprintf (buf + off, len - off, "%s", tail);
}

void
status_progress_line (const struct json *st, int width, char *buf,
                      size_t len)
{
  char tail[256], pct[16], a[32], b[32], r[32], e[32];
  double f = resident_fraction (st), rate;
  bool paused = false;

  if (json_get_double (st, "copy_rate", &rate) && rate >= 0) {
    human_size ((uint64_t) rate, r, sizeof r);
    strcat (r, "/s");
  }
  else
    snprintf (r, sizeof r, "?/s");
  json_get_bool (st, "paused", &paused);
  /* Fixed widths where the figures vary, so that the bar keeps still. */
  snprintf (tail, sizeof tail, " %6s %7s/%s %10s eta %s %s%s",
            f >= 0 ? percent (f, pct, sizeof pct) : "?%",
            size_at (st, "bytes_resident", a, sizeof a),
            size_at (st, "size", b, sizeof b), r, eta (st, e, sizeof e),
            str_at (st, "phase"), paused ? " (paused)" : "");
  bar_line (f, tail, width, buf, len);
}

void
status_verify_line (const struct json *st, int width, char *buf, size_t len)
{
  char tail[256], pct[16], a[32], b[32], c[32];
  uint64_t checked, total;
  double f = -1;

  if (json_get_u64 (st, "verify.blocks_checked", &checked) &&
      json_get_u64 (st, "verify.blocks_total", &total) && total > 0)
    f = checked >= total ? 1.0 : (double) checked / total;
  snprintf (tail, sizeof tail, " %6s %s/%s blocks %s mismatches %s",
            f >= 0 ? percent (f, pct, sizeof pct) : "?%",
            u64_at (st, "verify.blocks_checked", a, sizeof a),
            u64_at (st, "verify.blocks_total", b, sizeof b),
            u64_at (st, "verify.mismatches", c, sizeof c),
            str_at (st, "verify.state"));
  bar_line (f, tail, width, buf, len);
}

void
status_verify_report (FILE *fp, const struct json *st)
{
  const char *msg = json_get_string (st, "verify.message");
  char a[32], b[32], c[32];

  fprintf (fp, "verify %s: %s blocks checked, %s mismatches, %s re-copied\n",
           str_at (st, "verify.state"),
           u64_at (st, "verify.blocks_checked", a, sizeof a),
           u64_at (st, "verify.mismatches", b, sizeof b),
           u64_at (st, "verify.recopied", c, sizeof c));
  if (msg && msg[0])
    fprintf (fp, "verify: %s\n", msg);
}
