/* sim.c: event-driven migration simulator (see sim.h). */
#include <config.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "baselines.h"
#include "sim.h"
#include "tokenizer.h"

/* ---- sparse per-block flags: pages of 4096 blocks in a hash table ---- */

#define PAGE_BITS 12
#define PAGE_WORDS ((1u << PAGE_BITS) / 64)

enum { F_RESIDENT = 0, F_PREFETCHED, F_USED, F_TOUCHED, F_INFLIGHT, NFLAGS };

struct page {
  uint64_t key;                 /* page number + 1; 0 = empty */
  uint64_t w[NFLAGS][PAGE_WORDS];
};

struct flags {
  struct page **tab;
  size_t cap, used;
};

static uint64_t
hash64 (uint64_t x)
{
  x ^= x >> 33;
  x *= UINT64_C (0xff51afd7ed558ccd);
  x ^= x >> 33;
  return x;
}

static struct page *
page_get (struct flags *f, uint64_t block, bool create)
{
  uint64_t key = (block >> PAGE_BITS) + 1;
  size_t i;

  if (f->cap == 0) {
    if (!create)
      return NULL;
    f->cap = 64;
    f->tab = calloc (f->cap, sizeof *f->tab);
    if (!f->tab)
      abort ();
  }
  for (i = hash64 (key) & (f->cap - 1); f->tab[i]; i = (i + 1) & (f->cap - 1))
    if (f->tab[i]->key == key)
      return f->tab[i];
  if (!create)
    return NULL;
  if (2 * (f->used + 1) > f->cap) {
    struct flags g = { .cap = 2 * f->cap };
    g.tab = calloc (g.cap, sizeof *g.tab);
    if (!g.tab)
      abort ();
    for (size_t j = 0; j < f->cap; j++)
      if (f->tab[j]) {
        size_t k = hash64 (f->tab[j]->key) & (g.cap - 1);
        while (g.tab[k])
          k = (k + 1) & (g.cap - 1);
        g.tab[k] = f->tab[j];
      }
    free (f->tab);
    g.used = f->used;
    *f = g;
    for (i = hash64 (key) & (f->cap - 1); f->tab[i]; i = (i + 1) & (f->cap - 1))
      ;
  }
  f->tab[i] = calloc (1, sizeof (struct page));
  if (!f->tab[i])
    abort ();
  f->tab[i]->key = key;
  f->used++;
  return f->tab[i];
}

static bool
flag_get (struct flags *f, int which, uint64_t b)
{
  struct page *p = page_get (f, b, false);
  unsigned o = b & ((1u << PAGE_BITS) - 1);
  return p && (p->w[which][o / 64] >> (o % 64) & 1);
}

static void
flag_set (struct flags *f, int which, uint64_t b, bool v)
{
  struct page *p = page_get (f, b, v);
  unsigned o = b & ((1u << PAGE_BITS) - 1);
  if (!p)
    return;
  if (v)
    p->w[which][o / 64] |= UINT64_C (1) << (o % 64);
  else
    p->w[which][o / 64] &= ~(UINT64_C (1) << (o % 64));
}

static void
flags_free (struct flags *f)
{
  for (size_t i = 0; i < f->cap; i++)
    free (f->tab[i]);
  free (f->tab);
}

/* ---- in-flight copies: a min-heap by completion time, plus a map ---- */

enum kind { K_DEMAND, K_PREFETCH, K_BACKGROUND };

struct copy {
  double done;
  uint64_t block;
  int kind;
};

struct heap {
  struct copy *a;
  size_t n, cap;
};

static void
heap_push (struct heap *h, struct copy c)
{
  if (h->n == h->cap) {
    h->cap = h->cap ? 2 * h->cap : 256;
    h->a = realloc (h->a, h->cap * sizeof *h->a);
    if (!h->a)
      abort ();
  }
  size_t i = h->n++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (h->a[p].done < c.done ||
        (h->a[p].done == c.done && h->a[p].block <= c.block))
      break;
    h->a[i] = h->a[p];
    i = p;
  }
  h->a[i] = c;
}

static struct copy
heap_pop (struct heap *h)
{
  struct copy top = h->a[0], last = h->a[--h->n];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    struct copy *mc = &last;
    if (l < h->n && (h->a[l].done < mc->done ||
                     (h->a[l].done == mc->done && h->a[l].block < mc->block))) {
      m = l;
      mc = &h->a[l];
    }
    if (r < h->n && (h->a[r].done < mc->done ||
                     (h->a[r].done == mc->done && h->a[r].block < mc->block)))
      m = r;
    if (m == i)
      break;
    h->a[i] = h->a[m];
    i = m;
  }
  if (h->n)
    h->a[i] = last;
  return top;
}

/* Completion time of an in-flight block: open-addressing map. */
struct donemap {
  uint64_t *key;                /* block + 1, 0 empty, UINT64_MAX deleted */
  double *done;
  size_t cap, used;
};

static void
dm_put (struct donemap *m, uint64_t block, double done);

static void
dm_grow (struct donemap *m)
{
  struct donemap g = { .cap = m->cap ? 2 * m->cap : 1024 };
  g.key = calloc (g.cap, sizeof *g.key);
  g.done = calloc (g.cap, sizeof *g.done);
  if (!g.key || !g.done)
    abort ();
  for (size_t i = 0; i < m->cap; i++)
    if (m->key[i] && m->key[i] != UINT64_MAX)
      dm_put (&g, m->key[i] - 1, m->done[i]);
  free (m->key);
  free (m->done);
  *m = g;
}

static void
dm_put (struct donemap *m, uint64_t block, double done)
{
  if (2 * (m->used + 1) > m->cap)
    dm_grow (m);
  size_t i = hash64 (block + 1) & (m->cap - 1);
  while (m->key[i] && m->key[i] != UINT64_MAX && m->key[i] != block + 1)
    i = (i + 1) & (m->cap - 1);
  if (m->key[i] != block + 1)
    m->used++;
  m->key[i] = block + 1;
  m->done[i] = done;
}

static bool
dm_get (const struct donemap *m, uint64_t block, double *done)
{
  if (!m->cap)
    return false;
  size_t i = hash64 (block + 1) & (m->cap - 1);
  while (m->key[i]) {
    if (m->key[i] == block + 1) {
      *done = m->done[i];
      return true;
    }
    i = (i + 1) & (m->cap - 1);
  }
  return false;
}

static void
dm_del (struct donemap *m, uint64_t block)
{
  if (!m->cap)
    return;
  size_t i = hash64 (block + 1) & (m->cap - 1);
  while (m->key[i]) {
    if (m->key[i] == block + 1) {
      m->key[i] = UINT64_MAX;   /* tombstone; `used` keeps counting it */
      return;
    }
    i = (i + 1) & (m->cap - 1);
  }
}

/* ---- the simulation ---- */

struct sim {
  const struct sim_config *cfg;
  struct sim_result *r;
  struct flags fl;
  struct heap heap;
  struct donemap dm;
  double xfer, link_free;
  unsigned outstanding;
  struct pred_cand *pending;
  size_t npending, pend_pos;
  uint64_t sweep;               /* next block the sweep considers */
  uint64_t nr_blocks;
  double busy_total;            /* link time of demand and prefetch copies */
  double busy_prev, t_prev, util;
};

static bool
sim_absent (void *opaque, uint64_t b)
{
  struct sim *s = opaque;
  if (b >= s->nr_blocks)
    return false;
  return !flag_get (&s->fl, F_RESIDENT, b) && !flag_get (&s->fl, F_INFLIGHT, b);
}

static double
issue (struct sim *s, uint64_t b, double t, int kind)
{
  double start = t > s->link_free ? t : s->link_free;
  double done;
  s->link_free = start + s->xfer;
  if (kind != K_BACKGROUND)
    s->busy_total += s->xfer;   /* the sweep yields: not load */
  done = s->link_free + s->cfg->latency_us;
  heap_push (&s->heap, (struct copy) { .done = done, .block = b, .kind = kind });
  dm_put (&s->dm, b, done);
  flag_set (&s->fl, F_INFLIGHT, b, true);
  switch (kind) {
  case K_DEMAND:
    s->r->copied_demand++;
    break;
  case K_PREFETCH:
    s->r->copied_prefetch++;
    s->r->pf_issued++;
    flag_set (&s->fl, F_PREFETCHED, b, true);
    s->outstanding++;
    break;
  case K_BACKGROUND:
    s->r->copied_background++;
    s->outstanding++;
    break;
  }
  return done;
}

static void
fill_slots (struct sim *s, double t)
{
  while (s->outstanding < s->cfg->queue_depth) {
    bool issued = false;
    while (s->pend_pos < s->npending) {
      uint64_t b = s->pending[s->pend_pos++].block;
      if (sim_absent (s, b)) {
        issue (s, b, t, K_PREFETCH);
        issued = true;
        break;
      }
    }
    if (issued)
      continue;
    if (!s->cfg->background)
      return;
    while (s->sweep < s->nr_blocks && !sim_absent (s, s->sweep))
      s->sweep++;
    if (s->sweep >= s->nr_blocks)
      return;
    issue (s, s->sweep++, t, K_BACKGROUND);
  }
}

/* Complete every copy done by time t, refilling slots as they free. */
static void
advance (struct sim *s, double t)
{
  while (s->heap.n && s->heap.a[0].done <= t) {
    struct copy c = heap_pop (&s->heap);
    double d;
    /* A stale heap entry (block overwritten meanwhile) is still a slot. */
    if (dm_get (&s->dm, c.block, &d) && d == c.done) {
      dm_del (&s->dm, c.block);
      flag_set (&s->fl, F_INFLIGHT, c.block, false);
      flag_set (&s->fl, F_RESIDENT, c.block, true);
    }
    if (c.kind != K_DEMAND) {
      s->outstanding--;
      fill_slots (s, c.done);
    }
  }
}

/* Wait of one block touched at t needing its data; issues an on-demand
 * fetch if nobody is bringing it. */
static double
need_block (struct sim *s, uint64_t b, double t)
{
  double d;
  if (flag_get (&s->fl, F_RESIDENT, b))
    return 0;
  if (flag_get (&s->fl, F_INFLIGHT, b) && dm_get (&s->dm, b, &d))
    return d > t ? d - t : 0;
  d = issue (s, b, t, K_DEMAND);
  return d - t;
}

static uint64_t
now_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void
sim_config_default (struct sim_config *c)
{
  memset (c, 0, sizeof *c);
  c->block_size = 65536;
  c->bandwidth = 100.0 * 1024 * 1024;
  c->latency_us = 500;
  c->queue_depth = 8;
  c->background = false;
  c->max_candidates = 64;
  c->threshold = -1;
}

/* Link utilisation, a moving average over about 100 ms of trace time. */
static void
update_util (struct sim *s, double t)
{
  double dt = t - s->t_prev;
  if (dt <= 0)
    return;
  double inst = (s->busy_total - s->busy_prev) / dt;
  if (inst > 1)
    inst = 1;
  s->util += (1 - exp (-dt / 100000.0)) * (inst - s->util);
  s->busy_prev = s->busy_total;
  s->t_prev = t;
}

uint64_t
sim_trace_blocks (const struct pred_access *a, size_t n, uint32_t block_size)
{
  uint64_t mx = 0;
  for (size_t i = 0; i < n; i++)
    if (a[i].length && a[i].op != PRED_OP_FLUSH) {
      uint64_t last = (a[i].offset + a[i].length - 1) / block_size;
      if (last + 1 > mx)
        mx = last + 1;
    }
  return mx;
}

int
sim_run (const struct sim_config *cfg, const struct pred_access *a, size_t n,
         const struct sim_policy *pol, struct sim_result *r)
{
  struct sim s;
  double last_t = 0, thr_sum = 0;
  uint64_t bs = cfg->block_size;

  memset (r, 0, sizeof *r);
  memset (&s, 0, sizeof s);
  s.cfg = cfg;
  s.r = r;
  s.xfer = (double) bs / cfg->bandwidth * 1e6;
  s.nr_blocks = cfg->nr_blocks ? cfg->nr_blocks : sim_trace_blocks (a, n, bs);
  r->nr_blocks = s.nr_blocks;
  s.pending = calloc (cfg->max_candidates ? cfg->max_candidates : 1,
                      sizeof *s.pending);
  if (!s.pending)
    return -1;

  for (size_t i = 0; i < n; i++) {
    const struct pred_access *x = &a[i];
    double t = (double) x->time_us;
    if (i == 0 || t < last_t)
      t = i == 0 ? t : last_t;
    last_t = t;
    if (i == 0)
      s.link_free = t;

    advance (&s, t);
    if (i == 0)
      s.t_prev = t;
    update_util (&s, t);
    r->accesses++;

    if (x->op != PRED_OP_FLUSH && x->length) {
      uint64_t first = x->offset / bs, last = (x->offset + x->length - 1) / bs;
      bool is_read = x->op == PRED_OP_READ;
      bool all_resident = true;
      double stall = 0;

      if (last >= s.nr_blocks)
        last = s.nr_blocks ? s.nr_blocks - 1 : 0;
      if (is_read)
        r->reads++;
      for (uint64_t b = first; b <= last && first < s.nr_blocks; b++) {
        bool resident = flag_get (&s.fl, F_RESIDENT, b);
        bool first_touch = !flag_get (&s.fl, F_TOUCHED, b);
        bool needs_data;
        double w = 0;

        if (is_read) {
          r->read_blocks++;
          r->read_blocks_resident += resident;
          needs_data = true;
        }
        else {
          uint64_t bstart = b * bs, bend = bstart + bs;
          bool whole = x->offset <= bstart && x->offset + x->length >= bend;
          needs_data = !whole && !resident;
        }
        if (!resident)
          all_resident = false;
        if (needs_data)
          w = need_block (&s, b, t);
        else if (!is_read) {
          /* Whole block written: resident now; a pending copy is moot. */
          if (flag_get (&s.fl, F_INFLIGHT, b)) {
            dm_del (&s.dm, b);
            flag_set (&s.fl, F_INFLIGHT, b, false);
          }
          flag_set (&s.fl, F_RESIDENT, b, true);
        }
        if (w > stall)
          stall = w;
        if (first_touch && needs_data) {
          r->first_touches++;
          r->ft_covered += flag_get (&s.fl, F_PREFETCHED, b);
          r->ft_resident += resident;
        }
        if (flag_get (&s.fl, F_PREFETCHED, b) && !flag_get (&s.fl, F_USED, b)) {
          r->pf_used++;
          flag_set (&s.fl, F_USED, b, true);
        }
        flag_set (&s.fl, F_TOUCHED, b, true);
      }
      if (is_read && all_resident)
        r->reads_shadow++;
      if (stall > 0) {
        r->stall_us += stall;
        r->stalled++;
      }
    }

    if (pol) {
      uint64_t t0 = now_ns ();
      pol->observe (pol->opaque, x);
      size_t k = pol->predict (pol->opaque, s.pending, cfg->max_candidates,
                               sim_absent, &s);
      r->policy_ns += now_ns () - t0;
      double thr = cfg->threshold >= 0 ? cfg->threshold : 0.05 + 0.5 * s.util;
      size_t kept = 0;
      for (size_t j = 0; j < k; j++)
        if (s.pending[j].p >= thr)
          s.pending[kept++] = s.pending[j];
      r->below_threshold += k - kept;
      thr_sum += thr;
      s.npending = kept;
      s.pend_pos = 0;
      if (kept) {
        r->predictions++;
        r->candidates += kept;
      }
    }
    fill_slots (&s, t);
  }
  if (n)
    r->duration_us = last_t - (double) a[0].time_us;
  r->mean_threshold = n ? thr_sum / n : 0;

  flags_free (&s.fl);
  free (s.heap.a);
  free (s.dm.key);
  free (s.dm.done);
  free (s.pending);
  return 0;
}

/* ---- policies ---- */

static void
facade_observe (void *o, const struct pred_access *a)
{
  predictor_observe (o, a);
}

static size_t
facade_predict (void *o, struct pred_cand *out, size_t max,
                predictor_absent_fn absent, void *ao)
{
  return predictor_predict (o, out, max, absent, ao);
}

void
sim_policy_from_predictor (struct sim_policy *pol, struct predictor *p,
                           const char *name)
{
  pol->name = name;
  pol->opaque = p;
  pol->observe = facade_observe;
  pol->predict = facade_predict;
}

struct oracle_pol {
  struct sim_policy pol;
  struct pred_model *m;
  struct pred_candlist cl;
  uint32_t block_size;
  uint64_t nr_blocks, seq;
  struct pred_event ev;
};

static void
oracle_observe (void *o, const struct pred_access *a)
{
  struct oracle_pol *op = o;
  /* Same counting as the tokenizer: only accesses touching a block. */
  if (a->op == PRED_OP_FLUSH || a->length == 0 ||
      a->offset / op->block_size >= op->nr_blocks)
    return;
  memset (&op->ev, 0, sizeof op->ev);
  op->ev.seq = op->seq++;
  op->m->ops->observe (op->m, &op->ev);
}

static size_t
oracle_predict (void *o, struct pred_cand *out, size_t max,
                predictor_absent_fn absent, void *ao)
{
  struct oracle_pol *op = o;
  size_t n = 0;
  pred_candlist_reset (&op->cl);
  op->m->ops->predict (op->m, &op->ev, &op->cl);
  for (unsigned i = 0; i < op->cl.n && n < max; i++)
    if (!absent || absent (ao, op->cl.c[i].block))
      out[n++] = op->cl.c[i];
  return n;
}

struct sim_policy *
sim_oracle_new (const struct sim_config *cfg, const struct pred_access *a,
                size_t n)
{
  struct oracle_pol *op = calloc (1, sizeof *op);
  struct flags seen = { 0 };
  uint64_t *fut = NULL, *when = NULL, seq = 0, bs = cfg->block_size;
  size_t nf = 0, cap = 0;

  if (!op)
    return NULL;
  op->block_size = cfg->block_size;
  op->nr_blocks = cfg->nr_blocks ? cfg->nr_blocks : sim_trace_blocks (a, n, bs);
  for (size_t i = 0; i < n; i++) {
    const struct pred_access *x = &a[i];
    if (x->op == PRED_OP_FLUSH || x->length == 0 || x->offset / bs >= op->nr_blocks)
      continue;
    uint64_t first = x->offset / bs, last = (x->offset + x->length - 1) / bs;
    if (last >= op->nr_blocks)
      last = op->nr_blocks - 1;
    for (uint64_t b = first; b <= last; b++) {
      if (flag_get (&seen, F_TOUCHED, b))
        continue;
      flag_set (&seen, F_TOUCHED, b, true);
      bool whole = x->offset <= b * bs && x->offset + x->length >= (b + 1) * bs;
      if (x->op != PRED_OP_READ && whole)
        continue;               /* never needs a copy */
      if (nf == cap) {
        cap = cap ? 2 * cap : 1024;
        fut = realloc (fut, cap * sizeof *fut);
        when = realloc (when, cap * sizeof *when);
        if (!fut || !when)
          abort ();
      }
      fut[nf] = b;
      when[nf] = seq;
      nf++;
    }
    seq++;
  }
  flags_free (&seen);
  op->m = pred_oracle_new (fut, when, nf, cfg->max_candidates ? cfg->max_candidates : 1);
  free (fut);
  free (when);
  if (!op->m || pred_candlist_init (&op->cl, cfg->max_candidates ? cfg->max_candidates : 1,
                                    0) < 0) {
    pred_model_destroy (op->m);
    free (op);
    return NULL;
  }
  op->pol.name = "oracle";
  op->pol.opaque = op;
  op->pol.observe = oracle_observe;
  op->pol.predict = oracle_predict;
  return &op->pol;
}

void
sim_oracle_free (struct sim_policy *p)
{
  struct oracle_pol *op = (struct oracle_pol *) p;
  if (!op)
    return;
  pred_model_destroy (op->m);
  pred_candlist_free (&op->cl);
  free (op);
}
