/* workload.c: seeded synthetic workloads (see workload.h). */
#include <config.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "workload.h"

static const char *const names[PRED_WL__COUNT] = {
  "sequential", "strided", "interleaved", "zipf", "boot",
};

const char *
pred_workload_name (enum pred_workload_kind k)
{
  return (unsigned) k < PRED_WL__COUNT ? names[k] : "?";
}

int
pred_workload_parse (const char *name)
{
  for (int i = 0; i < PRED_WL__COUNT; i++)
    if (strcmp (name, names[i]) == 0)
      return i;
  return -1;
}

void
pred_workload_config_default (struct pred_workload_config *c)
{
  memset (c, 0, sizeof *c);
  c->kind = PRED_WL_SEQUENTIAL;
  c->requests = 20000;
  c->volume = UINT64_C (4) << 30;
  c->request_size = 65536;
  c->rate = 500;
  c->seed = 1;
  c->streams = 4;
  c->stride = 4;
  c->zipf_s = 0.9;
  c->template_len = 400;
  c->noise = 0.1;
}

struct gen {
  const struct pred_workload_config *c;
  struct pred_rng rng;
  double t;
  uint64_t units;
  pred_workload_sink sink;
  void *opaque;
};

static int
emit (struct gen *g, uint64_t unit)
{
  struct pred_access a;
  memset (&a, 0, sizeof a);
  g->t += -log (1.0 - pred_rng_uniform (&g->rng)) * 1e6 / g->c->rate;
  a.time_us = (uint64_t) g->t;
  a.offset = (unit % g->units) * g->c->request_size;
  a.length = g->c->request_size;
  a.op = g->c->write_share > 0 && pred_rng_uniform (&g->rng) < g->c->write_share
    ? PRED_OP_WRITE : PRED_OP_READ;
  return g->sink (g->opaque, &a);
}

static uint64_t
gcd (uint64_t a, uint64_t b)
{
  while (b) {
    uint64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

/* A fixed pseudo-random permutation of [0, n): x -> (x * m + key) mod n
 * with m coprime to n. */
static uint64_t
scatter (uint64_t x, uint64_t n, uint64_t m, uint64_t key)
{
  return (uint64_t) (((unsigned __int128) x * m + key) % n);
}

int
pred_workload_generate (const struct pred_workload_config *c,
                        pred_workload_sink sink, void *opaque)
{
  struct gen g = { .c = c, .sink = sink, .opaque = opaque };
  uint64_t n = c->requests;
  int r = 0;

  if (c->request_size == 0 || c->volume < c->request_size || !(c->rate > 0) ||
      (unsigned) c->kind >= PRED_WL__COUNT)
    return -1;
  pred_rng_seed (&g.rng, c->seed);
  g.units = c->volume / c->request_size;

  switch (c->kind) {
  case PRED_WL_SEQUENTIAL:
  case PRED_WL_STRIDED: {
    uint64_t step = c->kind == PRED_WL_STRIDED ? (c->stride ? c->stride : 1) : 1;
    uint64_t pos = pred_rng_below (&g.rng, g.units);
    for (uint64_t i = 0; i < n && !r; i++) {
      if (i && pred_rng_below (&g.rng, 2000) == 0)
        pos = pred_rng_below (&g.rng, g.units);
      r = emit (&g, pos);
      pos += step;
    }
    break;
  }
  case PRED_WL_INTERLEAVED: {
    unsigned s = c->streams ? c->streams : 1;
    uint64_t *pos = malloc (s * sizeof *pos);
    if (!pos)
      return -1;
    for (unsigned j = 0; j < s; j++)
      pos[j] = pred_rng_below (&g.rng, g.units);
    for (uint64_t i = 0; i < n && !r; i++) {
      unsigned j = pred_rng_below (&g.rng, s);
      if (pred_rng_below (&g.rng, 1000) == 0)
        pos[j] = pred_rng_below (&g.rng, g.units);
      r = emit (&g, pos[j]++);
    }
    free (pos);
    break;
  }
  case PRED_WL_ZIPF: {
    double s = c->zipf_s;
    double N = (double) g.units;
    uint64_t key = pred_rng_next (&g.rng) % g.units;
    uint64_t m = (UINT64_C (0x9E3779B97F4A7C15) % g.units) | 1;
    while (gcd (m, g.units) != 1)
      m += 2;
    for (uint64_t i = 0; i < n && !r; i++) {
      double u = pred_rng_uniform (&g.rng), rank;
      /* Inverse of the continuous approximation of the Zipf CDF. */
      if (fabs (s - 1.0) < 1e-9)
        rank = exp (u * log (N + 1)) - 1;
      else
        rank = pow (u * (pow (N + 1, 1 - s) - 1) + 1, 1 / (1 - s)) - 1;
      uint64_t k = (uint64_t) rank;
      if (k >= g.units)
        k = g.units - 1;
      r = emit (&g, scatter (k, g.units, m, key));
    }
    break;
  }
  case PRED_WL_BOOT: {
    unsigned L = c->template_len ? c->template_len : 1;
    uint64_t *tpl = malloc (L * sizeof *tpl);
    /* Enough clones that every replay boots a fresh image. */
    uint64_t clones = n / L + 2 > 8 ? n / L + 2 : 8;
    uint64_t img = g.units / clones;
    unsigned run = 0;
    uint64_t p = 0;
    if (!tpl)
      return -1;
    if (img < 64)
      img = g.units;
    for (unsigned j = 0; j < L; j++) {
      if (run == 0) {
        p = pred_rng_below (&g.rng, img);
        run = 1 + pred_rng_below (&g.rng, 20);
      }
      tpl[j] = p++ % img;
      run--;
    }
    uint64_t i = 0, rep = 0;
    while (i < n && !r) {
      uint64_t base = (rep % (g.units / img)) * img;
      for (unsigned j = 0; j < L && i < n && !r; j++) {
        double u = pred_rng_uniform (&g.rng);
        if (u < c->noise) {
          r = emit (&g, pred_rng_below (&g.rng, g.units));
          i++;
          if (r || i >= n)
            break;
        }
        else if (u < 1.5 * c->noise)
          continue;             /* skipped step */
        r = emit (&g, base + tpl[j]);
        i++;
      }
      rep++;
    }
    free (tpl);
    break;
  }
  case PRED_WL__COUNT:
    return -1;
  }
  return r;
}
