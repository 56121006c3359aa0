/* analyzer.c: access-stream statistics and decayed region heat. */
#include <config.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analyzer.h"
#include "streams.h"

#define WAYS 8
#define EMA (1.0 / 256)

struct region {
  uint64_t id;                  /* region number + 1; 0 = empty */
  double heat;                  /* as of t */
  uint64_t t;                   /* microseconds */
};

struct pred_analyzer {
  struct pred_analyzer_config cfg;
  struct pred_analyzer_stats st;
  unsigned nsets;
  struct region *reg;
  uint64_t evictions;
  uint64_t seq_run[PRED_STREAMS_MAX];   /* consecutive sequential accesses */
  uint64_t last_use[PRED_STREAMS_MAX];
  bool used[PRED_STREAMS_MAX];
  uint64_t nev;
  double size_sum;
};

void
pred_analyzer_config_default (struct pred_analyzer_config *c)
{
  c->region_shift = 4;
  c->max_regions = 4096;
  c->half_life_s = 30;
  c->hot_threshold = 8;
}

struct pred_analyzer *
pred_analyzer_new (const struct pred_analyzer_config *c)
{
  struct pred_analyzer *a = calloc (1, sizeof *a);
  unsigned n = 1;
  if (!a)
    return NULL;
  a->cfg = *c;
  if (a->cfg.region_shift > 40)
    a->cfg.region_shift = 40;
  if (!(a->cfg.half_life_s > 0))
    a->cfg.half_life_s = 30;
  while (n * WAYS < c->max_regions)
    n <<= 1;
  a->nsets = n;
  a->reg = calloc ((size_t) n * WAYS, sizeof *a->reg);
  if (!a->reg) {
    free (a);
    return NULL;
  }
  return a;
}

void
pred_analyzer_free (struct pred_analyzer *a)
{
  if (!a)
    return;
  free (a->reg);
  free (a);
}

size_t
pred_analyzer_memory (const struct pred_analyzer *a)
{
  return sizeof *a + (size_t) a->nsets * WAYS * sizeof *a->reg;
}

static double
decayed (const struct pred_analyzer *a, const struct region *r, uint64_t now)
{
  if (now <= r->t)
    return r->heat;
  double dt = (double) (now - r->t) / 1e6;
  return r->heat * exp2 (-dt / a->cfg.half_life_s);
}

static struct region *
set_of (const struct pred_analyzer *a, uint64_t id)
{
  uint64_t h = id * UINT64_C (0x9E3779B97F4A7C15);
  return &a->reg[((h >> 32) & (a->nsets - 1)) * WAYS];
}

static void
heat_add (struct pred_analyzer *a, uint64_t region, uint64_t now)
{
  uint64_t id = region + 1;
  struct region *s = set_of (a, id), *victim = NULL;
  double coldest = INFINITY;

  for (unsigned w = 0; w < WAYS; w++) {
    if (s[w].id == id) {
      s[w].heat = decayed (a, &s[w], now) + 1;
      if (now > s[w].t)
        s[w].t = now;
      return;
    }
    if (s[w].id == 0) {
      if (coldest > -1) {
        victim = &s[w];
        coldest = -1;
      }
      continue;
    }
    double h = decayed (a, &s[w], now);
    if (h < coldest) {
      coldest = h;
      victim = &s[w];
    }
  }
  if (victim->id)
    a->evictions++;
  victim->id = id;
  victim->heat = 1;
  victim->t = now;
}

static unsigned
size_bucket (uint32_t len)
{
  unsigned b = 0;
  uint64_t lim = 512;
  while (b < PRED_SIZE_BUCKETS - 1 && len > lim) {
    lim <<= 1;
    b++;
  }
  return b;
}

void
pred_analyzer_observe (struct pred_analyzer *a, const struct pred_access *acc,
                       const struct pred_event *ev)
{
  struct pred_analyzer_stats *st = &a->st;

  st->accesses++;
  switch (acc->op) {
  case PRED_OP_READ: st->reads++; st->bytes_read += acc->length; break;
  case PRED_OP_WRITE: st->writes++; st->bytes_written += acc->length; break;
  case PRED_OP_ZERO: st->zeroes++; break;
  case PRED_OP_TRIM: st->trims++; break;
  case PRED_OP_FLUSH: st->flushes++; return;
  }
  st->size_hist[size_bucket (acc->length)]++;
  a->size_sum += acc->length;
  st->recent_read_share = (1 - EMA) * st->recent_read_share +
    EMA * (acc->op == PRED_OP_READ);
  if (!ev)
    return;

  a->nev++;
  bool seq = !ev->new_stream && ev->delta >= -1 && ev->delta <= 0;
  if (ev->new_stream)
    st->random++;
  else if (seq)
    st->sequential++;
  else
    st->near++;
  st->recent_seq_share = (1 - EMA) * st->recent_seq_share + EMA * seq;
  st->recent_random_share = (1 - EMA) * st->recent_random_share +
    EMA * ev->new_stream;
  if (ev->stream < PRED_STREAMS_MAX) {
    unsigned s = ev->stream;
    a->seq_run[s] = ev->new_stream ? 0 : seq ? a->seq_run[s] + 1 : 0;
    a->last_use[s] = a->nev;
    a->used[s] = true;
  }

  uint64_t r0 = ev->block >> a->cfg.region_shift;
  uint64_t r1 = (ev->block + ev->nblocks - 1) >> a->cfg.region_shift;
  for (uint64_t r = r0; r <= r1 && r < r0 + 16; r++)
    heat_add (a, r, acc->time_us);
}

void
pred_analyzer_stats (const struct pred_analyzer *a, uint64_t now,
                     struct pred_analyzer_stats *st)
{
  *st = a->st;
  st->mean_request_bytes = st->accesses - st->flushes
    ? a->size_sum / (double) (st->accesses - st->flushes) : 0;
  st->active_streams = st->sequential_streams = 0;
  for (unsigned s = 0; s < PRED_STREAMS_MAX; s++)
    if (a->used[s] && a->nev - a->last_use[s] < 256) {
      st->active_streams++;
      if (a->seq_run[s] >= 2)
        st->sequential_streams++;
    }
  st->regions_tracked = st->regions_hot = 0;
  for (size_t i = 0; i < (size_t) a->nsets * WAYS; i++)
    if (a->reg[i].id) {
      st->regions_tracked++;
      if (decayed (a, &a->reg[i], now) >= a->cfg.hot_threshold)
        st->regions_hot++;
    }
  st->region_evictions = a->evictions;
}

size_t
pred_analyzer_hot (const struct pred_analyzer *a, uint64_t now,
                   struct pred_region *out, size_t max)
{
  size_t n = 0;
  uint64_t rb = (uint64_t) 1 << a->cfg.region_shift;
  for (size_t i = 0; i < (size_t) a->nsets * WAYS && max; i++) {
    const struct region *r = &a->reg[i];
    if (!r->id)
      continue;
    double h = decayed (a, r, now);
    if (n == max && h <= out[max - 1].heat)
      continue;
    size_t j = n < max ? n++ : max - 1;
    while (j > 0 && out[j - 1].heat < h) {
      out[j] = out[j - 1];
      j--;
    }
    out[j].first_block = (r->id - 1) << a->cfg.region_shift;
    out[j].nblocks = rb;
    out[j].heat = h;
  }
  return n;
}

double
pred_analyzer_heat (const struct pred_analyzer *a, uint64_t block, uint64_t now)
{
  uint64_t id = (block >> a->cfg.region_shift) + 1;
  const struct region *s = set_of (a, id);
  for (unsigned w = 0; w < WAYS; w++)
    if (s[w].id == id)
      return decayed (a, &s[w], now);
  return 0;
}
