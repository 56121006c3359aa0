/* nbdshadow: progress figures and the one-line status of DESIGN §3.2,
 * e.g. "shadow: copying 42.1% (431 MiB/1.0 GiB) hit 87.0% 95 MiB/s eta 6s".
 *
 * The copy rate is measured, not configured: a ring of (time, bytes
 * copied) samples taken about twice a second, and the rate over the
 * last few seconds of it.
 */

#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "volume.h"
#include "humansize.h"
#include "lockutil.h"

#define RATE_WINDOW 5.0         /* seconds */

uint64_t
volume_copied_bytes (struct volume *v)
{
  uint64_t sum = 0;
  int k;

  for (k = 0; k < COPY_KINDS; ++k)
    sum += STAT_GET (v->stats.copied_bytes[k]);
  return sum;
}

static double
monotonic_now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The engine's clock is libev's; the samples use their own monotonic
 * clock so that the rate can be measured against "now" at any time.
 */
void
volume_sample_rate (struct volume *v, double now_unused)
{
  double now = monotonic_now ();
  uint64_t bytes = volume_copied_bytes (v);

  mutex_lock (&v->rate_lock);
  v->rate[v->rate_next].t = now;
  v->rate[v->rate_next].bytes = bytes;
  v->rate_next = (v->rate_next + 1) % RATE_SAMPLES;
  if (v->rate_len < RATE_SAMPLES)
    v->rate_len++;
  mutex_unlock (&v->rate_lock);
}

/* Bytes copied per second between the oldest sample of the last
 * RATE_WINDOW seconds and now.
 */
double
volume_copy_rate (struct volume *v)
{
  double now = monotonic_now (), rate = 0;
  uint64_t bytes = volume_copied_bytes (v);
  unsigned i;

  mutex_lock (&v->rate_lock);
  for (i = v->rate_len; i > 0; --i) {
    unsigned s = (v->rate_next + RATE_SAMPLES - i) % RATE_SAMPLES;
    double dt = now - v->rate[s].t;

    if (dt <= RATE_WINDOW && dt >= 0.2) {
      rate = (bytes - v->rate[s].bytes) / dt;
      break;
    }
  }
  mutex_unlock (&v->rate_lock);
  return rate;
}

void
volume_status_line (struct volume *v, char *buf, size_t len)
{
  uint64_t total = v->res->nr_blocks;
  uint64_t resident = residency_count_resident (v->res);
  uint64_t resident_bytes, shadow_reads, origin_reads;
  double pct = total ? 100.0 * resident / total : 100.0;
  double rate = volume_copy_rate (v);
  char done_s[32], size_s[32], rate_s[32], eta_s[32], hit_s[32];
  enum phase phase = volume_phase (v);

  /* Bytes resident: whole blocks, except a partial last block. */
  resident_bytes = resident << v->res->block_shift;
  if (resident_bytes > v->res->size)
    resident_bytes = v->res->size;
  if (resident == total)
    resident_bytes = v->res->size;
  if (phase == PHASE_COPYING && resident == total)
    phase = PHASE_SYNCED;

  shadow_reads = STAT_GET (v->stats.read_bytes_shadow);
  origin_reads = STAT_GET (v->stats.read_bytes_origin);
  if (shadow_reads + origin_reads > 0)
    snprintf (hit_s, sizeof hit_s, "%.1f%%",
              100.0 * shadow_reads / (shadow_reads + origin_reads));
  else
    strcpy (hit_s, "-");

  human_size (resident_bytes, done_s, sizeof done_s);
  human_size (v->res->size, size_s, sizeof size_s);
  human_size ((uint64_t) rate, rate_s, sizeof rate_s);
  if (resident == total)
    strcpy (eta_s, "0s");
  else if (rate < 1)
    strcpy (eta_s, "-");
  else
    human_duration ((v->res->size - resident_bytes) / rate, eta_s,
                    sizeof eta_s);

  snprintf (buf, len, "shadow: %s %.1f%% (%s/%s) hit %s %s/s eta %s",
            phase_name (phase), pct, done_s, size_s, hit_s, rate_s, eta_s);
}
