/* nbdshadow: the status JSON object and the control socket's verbs.
 *
 * Everything an operator or a monitoring script may want, in one object
 * whose fields control.h lists: the CLI's human output, --watch and the
 * tests all read it.  Written by hand: a handful of fields does not need
 * a JSON library.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bufpool.h"
#include "migration.h"
#include "stats.h"

static void
json_string (FILE *fp, const char *s)
{
  fputc ('"', fp);
  for (; *s; ++s) {
    unsigned char ch = *s;

    if (ch == '"' || ch == '\\')
      fprintf (fp, "\\%c", ch);
    else if (ch < 0x20)
      fprintf (fp, "\\u%04x", ch);
    else
      fputc (ch, fp);
  }
  fputc ('"', fp);
}

static void
emit_copies (FILE *fp, struct volume *v)
{
  uint64_t od = STAT_GET (v->stats.copied_bytes[COPY_ON_DEMAND]);
  uint64_t pf = STAT_GET (v->stats.copied_bytes[COPY_PREFETCH]);
  uint64_t bg = STAT_GET (v->stats.copied_bytes[COPY_BACKGROUND]);

  fprintf (fp, "\"bytes_copied\": {\"on_demand\": %" PRIu64
           ", \"prefetch\": %" PRIu64 ", \"background\": %" PRIu64
           ", \"total\": %" PRIu64 "}, ", od, pf, bg, od + pf + bg);
  fprintf (fp, "\"copies_busy\": {\"skipped\": %" PRIu64
           ", \"requeued\": %" PRIu64 "}, ",
           STAT_GET (v->stats.copies_skipped_busy),
           STAT_GET (v->stats.copies_requeued));
}

static void
emit_clients (FILE *fp, struct volume *v)
{
  uint64_t sh = STAT_GET (v->stats.read_bytes_shadow);
  uint64_t or = STAT_GET (v->stats.read_bytes_origin);

  fprintf (fp, "\"client_reads\": {\"ops\": %" PRIu64
           ", \"bytes_shadow\": %" PRIu64 ", \"bytes_origin\": %" PRIu64
           ", \"hit_ratio\": %.4f}, ", STAT_GET (v->stats.read_ops), sh, or,
           sh + or ? (double) sh / (sh + or) : 0.0);
  fprintf (fp, "\"client_writes\": {\"ops\": %" PRIu64
           ", \"bytes\": %" PRIu64 "}, ", STAT_GET (v->stats.write_ops),
           STAT_GET (v->stats.write_bytes));
}

static void
emit_prefetch (FILE *fp, struct migration_snapshot *s)
{
  struct volume *v = s->volume;
  uint64_t used = STAT_GET (v->stats.prefetch_used);
  uint64_t wasted = STAT_GET (v->stats.prefetch_wasted);
  uint64_t copied = STAT_GET (v->stats.copied_blocks[COPY_PREFETCH]);
  struct prefetch_stats ps = { .policy = "off" };
  size_t i;

  if (s->cfg->prefetcher)
    prefetcher_get_stats (s->cfg->prefetcher, &ps);
  fprintf (fp, "\"prefetch\": {\"policy\": \"%s\", \"issued\": %" PRIu64
           ", \"copied\": %" PRIu64 ", \"used\": %" PRIu64
           ", \"wasted\": %" PRIu64 ", \"outstanding\": %" PRIu64
           ", \"precision\": %.4f"
           ", \"depth\": %u, \"threshold\": %.3f, \"hybrid_depth\": %u"
           ", \"rounds\": %" PRIu64 ", \"batched_rounds\": %" PRIu64
           ", \"accesses\": %" PRIu64
           ", \"ring_dropped\": %" PRIu64 ", \"trace_records\": %" PRIu64
           ", \"memory_bytes\": %zu, \"accuracy\": {", ps.policy,
           ps.issued, copied, used, wasted,
           atomic_load (&v->prefetch_outstanding),
           copied ? fmin (1.0, (double) used / copied) : 0.0,
           ps.depth, ps.threshold, ps.hybrid_depth, ps.rounds,
           ps.batched_rounds, ps.accesses, ps.ring_dropped, ps.trace_records, ps.memory_bytes);
  for (i = 0; i < ps.nr_models; ++i)
    fprintf (fp, "%s\"%s\": %.4f", i ? ", " : "", ps.model[i].name,
             ps.model[i].accuracy);
  fprintf (fp, "}");
  if (ps.have_training)
    fprintf (fp, ", \"lstm_training\": {\"chunks\": %" PRIu64
             ", \"known\": %" PRIu64 ", \"replays\": %" PRIu64
             ", \"skipped\": %" PRIu64 ", \"train_ms\": %.1f"
             ", \"loss\": %.4f, \"size_input\": %s}",
             ps.train_chunks, ps.train_known, ps.train_replays,
             ps.train_skipped, ps.train_ns / 1e6, ps.train_loss,
             ps.lstm_size_input ? "true" : "false");
  if (ps.have_ngram)
    fprintf (fp, ", \"ngram\": {\"order\": %u, \"sized\": %s"
             ", \"size_context\": %s, \"order_changes\": %" PRIu64 "}",
             ps.ngram_order, ps.ngram_sized ? "true" : "false",
             ps.ngram_size_context ? "true" : "false",
             ps.ngram_order_changes);
  fprintf (fp, "}, ");
}

static void
emit_errors (FILE *fp, struct migration_snapshot *s, struct engine *e)
{
  size_t i;

  fprintf (fp, "\"errors\": {\"origin\": %" PRIu64 ", \"copies_failed\": %"
           PRIu64 ", \"shadows\": [",
           STAT_GET (s->volume->stats.origin_errors),
           STAT_GET (s->volume->stats.copies_failed));
  for (i = 0; i < engine_nr_shadows (e); ++i) {
    struct shadow_stats st;

    engine_shadow_stats (e, i, &st);
    fprintf (fp, "%s{\"uri\": ", i ? ", " : "");
    json_string (fp, engine_shadow_info (e, i)->uri);
    fprintf (fp, ", \"connected\": %s, \"connections\": %u"
             ", \"connections_up\": %u, \"errors\": %" PRIu64
             ", \"reconnects\": %" PRIu64 ", \"retries\": %" PRIu64
             ", \"replays\": %" PRIu64 ", \"replayed\": %" PRIu64
             ", \"updates_lost\": %s"
             ", \"latency_us\": %.1f, \"bytes_read\": %" PRIu64
             ", \"bytes_written\": %" PRIu64 "}",
             st.connected ? "true" : "false", st.connections,
             st.connections_up, st.errors, st.reconnects,
             st.retries, st.replays, st.replayed,
             st.updates_lost ? "true" : "false", st.latency_ewma_us,
             st.bytes_read, st.bytes_written);
  }
  fprintf (fp, "]}, ");
}

static void
emit_verify (FILE *fp, struct migration_snapshot *s)
{
  fprintf (fp, "\"verify\": {\"state\": \"%s\", \"verified\": %s, "
           "\"blocks_checked\": %" PRIu64 ", \"blocks_total\": %" PRIu64
           ", \"mismatches\": %" PRIu64 ", \"recopied\": %" PRIu64
           ", \"message\": ", s->verify_state,
           s->verified ? "true" : "false", s->verify_checked,
           s->verify_total, s->verify_mismatches, s->verify_recopied);
  json_string (fp, s->verify_message);
  fprintf (fp, "}, ");
}

static void
emit_copier (FILE *fp, struct migration_snapshot *s)
{
  struct copier_stats *c = &s->copier;

  fprintf (fp, "\"paused\": %s, \"background\": %s, \"rate_limit\": %"
           PRIu64 ", ", c->paused ? "true" : "false",
           s->cfg->background && s->have_copier ? "true" : "false", c->rate);
  fprintf (fp, "\"copier\": {\"running\": %s, \"transfers\": %" PRIu64
           ", \"zero_transfers\": %" PRIu64 ", \"errors\": %" PRIu64
           ", \"window\": %u, \"active\": %u, \"pause_ms\": %.1f, "
           "\"client_latency_us\": %.1f, \"client_latency_floor_us\": %.1f"
           ", \"shadow_read_latency_us\": %.1f, "
           "\"shadow_read_quiet_us\": %.1f, \"sweep_gap_ms\": %.1f"
           ", \"predictions_copied\": %" PRIu64
           ", \"prediction_latency_us\": %.1f"
           ", \"requests_dropped\": %" PRIu64 ", \"requests_retried\": %"
           PRIu64 ", \"cut_short\": %" PRIu64 "}, ",
           s->have_copier ? "true" : "false", c->transfers,
           c->zero_transfers, c->errors, c->window, c->active, c->pause_ms,
           c->client_latency_us, c->client_latency_floor_us,
           c->shadow_read_latency_us, c->shadow_read_quiet_us,
           c->sweep_gap_ms, c->predictions_copied, c->prediction_latency_us,
           c->requests_dropped, c->requests_retried,
           STAT_GET (s->volume->stats.copies_cut_short));
}

static void
emit_buffers (FILE *fp)
{
  struct bufpool_stats b;

  bufpool_stats (&b);
  fprintf (fp, "\"buffers\": {\"reused\": %" PRIu64 ", \"allocated\": %"
           PRIu64 ", \"idle_bytes\": %" PRIu64 ", \"limit\": %" PRIu64
           "}, ", b.reused, b.allocated, b.idle_bytes, b.limit);
}

char *
migration_status_json (struct migration *m)
{
  struct migration_snapshot s;
  struct volume *v;
  struct commit_stats cs;
  char *buf = NULL, line[256];
  size_t len = 0;
  uint64_t resident, resident_bytes;
  double rate;
  FILE *fp;

  migration_snapshot (m, &s);
  v = s.volume;
  fp = open_memstream (&buf, &len);
  if (fp == NULL)
    return NULL;
  resident = residency_count_resident (v->res);
  resident_bytes = resident == v->res->nr_blocks ? v->res->size :
    resident << v->res->block_shift;
  rate = volume_copy_rate (v);
  volume_status_line (v, line, sizeof line);
  committer_stats (v->committer, &cs);

  fprintf (fp, "{\"phase\": \"%s\", \"status_line\": ",
           phase_name (volume_phase (v)));
  json_string (fp, line);
  fprintf (fp, ", \"size\": %" PRIu64 ", \"block_size\": %" PRIu32
           ", \"blocks_total\": %" PRIu64 ", \"blocks_resident\": %" PRIu64
           ", \"blocks_written\": %" PRIu64 ", \"bytes_resident\": %" PRIu64
           ", ", v->res->size, v->res->block_size, v->res->nr_blocks,
           resident, residency_count_written (v->res), resident_bytes);
  emit_copies (fp, v);
  emit_clients (fp, v);
  emit_prefetch (fp, &s);
  fprintf (fp, "\"copy_rate\": %.0f, \"eta_seconds\": ", rate);
  if (resident == v->res->nr_blocks)
    fprintf (fp, "0, ");
  else if (rate >= 1)
    fprintf (fp, "%.0f, ", (v->res->size - resident_bytes) / rate);
  else
    fprintf (fp, "null, ");
  emit_copier (fp, &s);
  emit_buffers (fp);
  emit_errors (fp, &s, s.cfg->engine);
  emit_verify (fp, &s);
  fprintf (fp, "\"commits\": {\"count\": %" PRIu64 ", \"failures\": %"
           PRIu64 ", \"marks\": %" PRIu64 ", \"last_ms\": %.2f}, ",
           cs.commits, cs.failures, cs.marks, cs.last_duration_ms);
  if (s.cfg->state_dir && s.cfg->state_stats) {
    uint64_t jb = 0, sb = 0;

    s.cfg->state_stats (s.cfg->opaque, &jb, &sb);
    fprintf (fp, "\"state\": {\"dir\": ");
    json_string (fp, s.cfg->state_dir);
    fprintf (fp, ", \"journal_bytes\": %" PRIu64 ", \"snapshot_bytes\": %"
             PRIu64 "}}", jb, sb);
  }
  else
    fprintf (fp, "\"state\": null}");
  if (fclose (fp) != 0) {
    free (buf);
    return NULL;
  }
  return buf;
}

/* ---------------------------------------------------------------------- */
/* The control verbs. */

static int
reply_msg (char **reply, const char *msg)
{
  *reply = strdup (msg);
  return -1;
}

/* Sizes as the filter takes them: digits and an optional K/M/G/T suffix. */
static int
parse_bytes (const char *s, uint64_t *out)
{
  char *end;
  unsigned long long n;
  int shift = 0;

  errno = 0;
  n = strtoull (s, &end, 10);
  if (errno || end == s || *s == '-')
    return -1;
  switch (*end) {
  case '\0': break;
  case 'k': case 'K': shift = 10; break;
  case 'm': case 'M': shift = 20; break;
  case 'g': case 'G': shift = 30; break;
  case 't': case 'T': shift = 40; break;
  default: return -1;
  }
  if (*end && end[1] != '\0')
    return -1;
  if (shift && n > (UINT64_MAX >> shift))
    return -1;
  *out = (uint64_t) n << shift;
  return 0;
}

int
migration_control (void *opaque, int argc, char **argv, char **reply)
{
  struct migration *m = opaque;
  const char *verb = argv[0];

  *reply = NULL;
  if (strcmp (verb, "status") == 0 && argc == 1) {
    *reply = migration_status_json (m);
    return *reply ? 0 : reply_msg (reply, "out of memory");
  }
  if ((strcmp (verb, "pause") == 0 || strcmp (verb, "resume") == 0) &&
      argc == 1) {
    migration_pause (m, verb[0] == 'p');
    return 0;
  }
  if (strcmp (verb, "rate") == 0 && argc == 2) {
    uint64_t rate;

    if (parse_bytes (argv[1], &rate) == -1)
      return reply_msg (reply, "rate: not a size (bytes per second, with "
                        "an optional K, M, G or T suffix; 0 = no limit)");
    migration_set_rate (m, rate);
    return 0;
  }
  if (strcmp (verb, "verify") == 0 && argc == 1)
    return migration_verify_start (m, reply);
  if (strcmp (verb, "cutover") == 0 &&
      (argc == 1 || (argc == 2 && strcmp (argv[1], "verified") == 0)))
    return migration_cutover (m, argc == 2, reply);
  if (strcmp (verb, "prefetch") == 0 && argc == 2)
    return migration_set_prefetch (m, argv[1], reply);
  if (strcmp (verb, "help") == 0 && argc == 1) {
    *reply = strdup ("status | pause | resume | rate BYTES | verify | "
                     "cutover [verified] | prefetch "
                     "off|readahead|ngram|lstm|hybrid | help");
    return 0;
  }
  return reply_msg (reply, "unknown request or wrong arguments "
                    "(try: help)");
}
