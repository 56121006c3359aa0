/* predictor.c: the online predictor facade (see predictor.h): policy
 * switching, per-model cost and accuracy accounting, stats snapshots,
 * model file warm start.  The models themselves live elsewhere.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analyzer.h"
#include "baselines.h"
#include "hybrid.h"
#include "lstm-model.h"
#include "model-file.h"
#include "ngram.h"
#include "predictor.h"
#include "tokenizer.h"

#define CAND_CAP 1024
/* The public snapshot is republished after this many accesses or this
 * long after it last was, whichever comes first, at the next call on the
 * predictor thread: counting accesses alone left a short or slow
 * workload (the filter's 200-access warm start) with the snapshot taken
 * at creation, all zeros, for ever. */
#define STATS_EVERY 256
#define STATS_MAX_AGE_NS (100 * 1000 * 1000)
/* recent_accuracy: the plain mean of the first ACC_WINDOW scores, then a
 * moving average with factor 1/ACC_WINDOW. */
#define ACC_WINDOW 64
/* Candidates kept per stream for scoring: the hybrid looks 32 accesses
 * ahead, and the next access of a stream is near the top anyway. */
#define PENDING_MAX 32
/* Streams a batch of observed accesses may leave to predict for
 * (predictor_predict_batch); beyond, the oldest is dropped. */
#define UNPREDICTED_MAX 8

static const char *const policy_names[PRED_POLICY__COUNT] = {
  [PRED_POLICY_OFF] = "off",
  [PRED_POLICY_READAHEAD] = "readahead",
  [PRED_POLICY_STRIDE] = "stride",
  [PRED_POLICY_MARKOV1] = "markov1",
  [PRED_POLICY_LEAP] = "leap",
  [PRED_POLICY_NGRAM] = "ngram",
  [PRED_POLICY_LSTM] = "lstm",
  [PRED_POLICY_HYBRID] = "hybrid",
};

const char *
predictor_policy_name (enum pred_policy p)
{
  return (unsigned) p < PRED_POLICY__COUNT ? policy_names[p] : "?";
}

int
predictor_policy_parse (const char *name)
{
  for (int i = 0; i < PRED_POLICY__COUNT; i++)
    if (strcmp (name, policy_names[i]) == 0)
      return i;
  return -1;
}

void
predictor_config_default (struct predictor_config *c)
{
  memset (c, 0, sizeof *c);
  c->block_size = 65536;
  c->policy = PRED_POLICY_HYBRID;
  c->train = PRED_TRAIN_THREAD;
  c->seed = 1;
  c->streams = 32;
  c->stream_fwd = 32;
  c->stream_back = 8;
  c->vocab = 256;
  c->ngram_capacity = 16384;
  c->regions = 4096;
  c->depth = 16;
  c->lstm_depth = 2;
  c->readahead_max = 32;
  c->min_prob = 0.05;
  c->ngram_calibrate = true;
  c->ngram_size_context = true;
  c->lstm_size_input = true;
  c->lstm_embed = 16;
  c->lstm_hidden = 32;
  c->lstm_bptt = 16;
  c->lstm_replay = 2;
  c->lstm_cpu_share = 0.05;
  c->lstm_known_loss = 0.05;
  c->lstm_lr = 0.005;
}

struct mstat {
  uint64_t observes, predicts, observe_ns, predict_ns, scored, hits;
  double recent;
};

/* What a model gave for a stream's next access, scored when that stream
 * is next accessed: with several streams interleaved the access that
 * follows a prediction is mostly another stream's, and scoring against
 * it reported a perfect n-gram as 0% accurate on four sequential
 * readers (bench/e2e inter). */
struct pending {
  int owner;                    /* policy that predicted, -1: none */
  unsigned n;
  uint64_t block[PENDING_MAX];
};

struct predictor {
  struct predictor_config cfg;
  struct pred_tokenizer tok;
  struct pred_analyzer *an;
  struct pred_model *model[PRED_POLICY__COUNT];
  struct mstat ms[PRED_POLICY__COUNT];
  bool active[PRED_POLICY__COUNT];
  enum pred_policy policy;
  _Atomic int requested;

  struct pred_model_file mf;    /* loaded model */
  bool have_mf;
  bool mf_params;               /* mf.params still held (LSTM not created) */
  struct pred_lstm_config lstm_cfg;

  struct pred_event last;
  bool have_last;
  struct pred_candlist cl;
  int cl_owner;                 /* policy whose candidates cl holds, -1 */
  struct pending *pending;      /* per stream slot (cfg.streams) */
  /* The latest event of each stream accessed since the last prediction,
   * oldest first (predictor_predict_batch). */
  struct pred_event unpredicted[UNPREDICTED_MAX];
  unsigned nr_unpredicted;

  uint64_t accesses, predictions, candidates;

  /* The published snapshot: whether anything changed since, and when
   * and at which access it was taken (predictor thread only). */
  bool stats_dirty;
  uint64_t pub_accesses, pub_ns;

  pthread_mutex_t life_lock;    /* LSTM creation vs start/stop training */
  bool training_wanted;

  pthread_mutex_t stats_lock;
  struct predictor_stats pub;
};

static uint64_t
now_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static bool
is_pow2 (uint64_t x)
{
  return x && !(x & (x - 1));
}

/* Models a policy needs observed, as a bitmask of policies. */
static unsigned
needs (enum pred_policy p)
{
  if (p == PRED_POLICY_HYBRID)
    return 1u << PRED_POLICY_NGRAM | 1u << PRED_POLICY_LSTM |
      1u << PRED_POLICY_HYBRID;
  if (p == PRED_POLICY_OFF)
    return 0;
  return 1u << p;
}

static struct pred_rollout_cfg
rollout (const struct predictor *p, unsigned depth)
{
  return (struct pred_rollout_cfg) {
    .depth = depth, .alts = 2, .min_p = p->cfg.min_prob, .max_len = 16,
  };
}

static struct pred_model *
create_model (struct predictor *p, enum pred_policy which)
{
  const struct predictor_config *c = &p->cfg;
  const struct pred_vocab *v = &p->tok.vocab;

  switch (which) {
  case PRED_POLICY_READAHEAD:
    return pred_readahead_new (c->streams, c->readahead_max);
  case PRED_POLICY_STRIDE:
    return pred_stride_new (c->streams, c->depth, 16);
  case PRED_POLICY_LEAP:
    return pred_leap_new (c->readahead_max, 16);
  case PRED_POLICY_MARKOV1: {
    struct pred_ngram_config g = {
      .max_order = 1, .capacity = c->ngram_capacity, .smooth = false,
      .nstreams = c->streams, .rollout = rollout (p, c->depth),
    };
    return pred_ngram_new (&g, v);
  }
  case PRED_POLICY_NGRAM: {
    struct pred_ngram_config g = {
      .max_order = 4, .capacity = c->ngram_capacity, .smooth = true,
      .calibrate = c->ngram_calibrate,
      .size_context = c->ngram_size_context,
      .nstreams = c->streams, .rollout = rollout (p, c->depth),
    };
    return pred_ngram_new (&g, v);
  }
  case PRED_POLICY_LSTM: {
    struct pred_lstm_model_config lc = {
      .trainer = {
        .lstm = p->lstm_cfg, .nstreams = c->streams,
        .replay = c->lstm_replay, .threaded = c->train == PRED_TRAIN_THREAD,
        .cpu_share = c->lstm_cpu_share, .known_loss = c->lstm_known_loss,
      },
      .rollout = rollout (p, c->lstm_depth),
      .learn = c->train != PRED_TRAIN_OFF,
      .size_input = c->lstm_size_input,
    };
    struct pred_model *m;
    pthread_mutex_lock (&p->life_lock);
    m = pred_lstm_model_new (&lc, v, p->mf_params ? &p->mf.params : NULL);
    if (m && p->training_wanted)
      pred_lstm_trainer_start (pred_lstm_model_trainer (m));
    pthread_mutex_unlock (&p->life_lock);
    if (m && p->mf_params) {
      /* The trainer copied them. */
      pred_lstm_params_free (&p->mf.params);
      p->mf_params = false;
    }
    return m;
  }
  case PRED_POLICY_HYBRID: {
    /* Twice the n-gram's lookahead: on a sequential stream that reaches
     * as far as readahead's largest window (32 blocks), and where a
     * pattern ends the path probability stops the rollout anyway.  End
     * to end it is worth it where a client reads as fast as it can:
     * tar extraction stalled half as long as at the n-gram's depth
     * (median 1.31 s against 2.38, ahead in three alternations of
     * four).  On four interleaved readers at a steady rate the
     * length made no steady difference (16 ahead stalled less in one
     * session, 64 ahead in the next).  A lookahead in time (as many
     * accesses as a stream makes while a copy lands) shortened it for
     * those readers, served fewer of their reads from the shadow,
     * stalled them more and was taken out (94700c1; bench/e2e/RESULTS.md,
     * "A lookahead in time").
     */
    struct pred_hybrid_config h = {
      .nstreams = c->streams, .slow_depth = c->lstm_depth, .ema = 0.02,
      .sharpness = PRED_HYBRID_SHARPNESS,
      .rollout = rollout (p, c->hybrid_depth ? c->hybrid_depth : 2 * c->depth),
    };
    return pred_hybrid_new (&h, p->model[PRED_POLICY_NGRAM],
                            p->model[PRED_POLICY_LSTM]);
  }
  case PRED_POLICY_OFF:
  case PRED_POLICY__COUNT:
    break;
  }
  return NULL;
}

/* Make policy current, creating what it needs.  false if a model could
 * not be created (the old policy stays). */
static bool
switch_policy (struct predictor *p, enum pred_policy policy)
{
  unsigned need = needs (policy);

  /* Components before the hybrid: ascending order does it. */
  for (int i = 1; i < PRED_POLICY__COUNT; i++)
    if ((need & (1u << i)) && !p->model[i]) {
      p->model[i] = create_model (p, i);
      if (!p->model[i])
        return false;
    }
  for (int i = 0; i < PRED_POLICY__COUNT; i++)
    p->active[i] = (need >> i) & 1;
  p->policy = policy;
  p->cl_owner = -1;
  /* Candidates the old policy gave are not the new one's to score. */
  for (unsigned s = 0; s < p->cfg.streams; s++)
    p->pending[s].owner = -1;
  /* Nor are the streams waiting for a prediction the new model's to
   * answer: it may have seen none of their accesses (a cold LSTM). */
  p->nr_unpredicted = 0;
  return true;
}

static void
apply_requested (struct predictor *p)
{
  int r = atomic_load_explicit (&p->requested, memory_order_relaxed);
  if (r != (int) p->policy && !switch_policy (p, r))
    atomic_store (&p->requested, (int) p->policy);
}

void
predictor_free (struct predictor *p)
{
  if (!p)
    return;
  /* The hybrid refers to its components: destroy it first. */
  pred_model_destroy (p->model[PRED_POLICY_HYBRID]);
  for (int i = 0; i < PRED_POLICY__COUNT; i++)
    if (i != PRED_POLICY_HYBRID)
      pred_model_destroy (p->model[i]);
  if (p->have_mf)
    pred_model_file_free (&p->mf);
  pred_candlist_free (&p->cl);
  free (p->pending);
  pred_analyzer_free (p->an);
  pred_tokenizer_free (&p->tok);
  pthread_mutex_destroy (&p->life_lock);
  pthread_mutex_destroy (&p->stats_lock);
  free (p);
}

struct predictor *
predictor_new (const struct predictor_config *c, char *err, size_t errlen)
{
  struct predictor *p;
  struct pred_analyzer_config ac;
  const char *why;

  if (!is_pow2 (c->block_size) || c->block_size < 512 ||
      c->block_size > 64 * 1024 * 1024) {
    snprintf (err, errlen, "predictor: block size %" PRIu32
              " must be a power of two from 512 to 64M", c->block_size);
    return NULL;
  }
  if ((unsigned) c->policy >= PRED_POLICY__COUNT) {
    snprintf (err, errlen, "predictor: unknown policy %d", (int) c->policy);
    return NULL;
  }
  if (c->streams < 1 || c->streams > PRED_STREAMS_MAX) {
    snprintf (err, errlen, "predictor: streams must be 1 .. %d", PRED_STREAMS_MAX);
    return NULL;
  }
  if (c->vocab < 2 || c->vocab > PRED_VOCAB_MAX) {
    snprintf (err, errlen, "predictor: vocab must be 2 .. %d", PRED_VOCAB_MAX);
    return NULL;
  }
  if (c->depth < 1 || c->depth > 256 || c->lstm_depth > 64 ||
      c->hybrid_depth > 256) {
    snprintf (err, errlen, "predictor: depth must be 1 .. 256, hybrid_depth "
              "0 .. 256 (0: twice depth) and lstm_depth 0 .. 64");
    return NULL;
  }
  if (!(c->min_prob > 0 && c->min_prob <= 1)) {
    snprintf (err, errlen, "predictor: min_prob must be in (0, 1]");
    return NULL;
  }
  if (c->ngram_capacity < 8 || c->ngram_capacity > (1u << 24) ||
      c->regions < 8 || c->regions > (1u << 24)) {
    snprintf (err, errlen, "predictor: ngram_capacity and regions must be 8 .. 2^24");
    return NULL;
  }
  if (c->readahead_max < 1 || c->readahead_max > 65536) {
    snprintf (err, errlen, "predictor: readahead_max must be 1 .. 65536");
    return NULL;
  }

  p = calloc (1, sizeof *p);
  if (!p) {
    snprintf (err, errlen, "predictor: %s", strerror (errno));
    return NULL;
  }
  p->cfg = *c;
  p->cfg.model_path = NULL;
  p->cl_owner = -1;
  pthread_mutex_init (&p->life_lock, NULL);
  pthread_mutex_init (&p->stats_lock, NULL);

  pred_lstm_config_default (&p->lstm_cfg);
  p->lstm_cfg.vocab = c->vocab;
  p->lstm_cfg.embed = c->lstm_embed;
  p->lstm_cfg.hidden = c->lstm_hidden;
  p->lstm_cfg.bptt = c->lstm_bptt;
  p->lstm_cfg.lr = c->lstm_lr;
  p->lstm_cfg.seed = c->seed;

  if (c->model_path) {
    if (pred_model_load (c->model_path, &p->mf, err, errlen) < 0)
      goto fail_quiet;
    p->have_mf = p->mf_params = true;
    if (p->mf.block_size != c->block_size) {
      snprintf (err, errlen, "%s: the model was trained with %" PRIu32
                "-byte blocks, the volume uses %" PRIu32 "-byte blocks",
                c->model_path, p->mf.block_size, c->block_size);
      goto fail_quiet;
    }
    p->lstm_cfg = p->mf.lstm;
    p->lstm_cfg.seed = c->seed;
    p->cfg.vocab = p->mf.lstm.vocab;
    p->cfg.stream_fwd = p->mf.stream_fwd;
    p->cfg.stream_back = p->mf.stream_back;
  }
  if ((why = pred_lstm_config_check (&p->lstm_cfg)) != NULL) {
    snprintf (err, errlen, "predictor: LSTM: %s", why);
    goto fail_quiet;
  }

  if (pred_tokenizer_init (&p->tok, c->block_size, c->nr_blocks, c->streams,
                           p->cfg.vocab, p->cfg.stream_fwd,
                           p->cfg.stream_back) < 0)
    goto fail;
  if (p->have_mf &&
      pred_vocab_set (&p->tok.vocab, p->mf.vocab, p->mf.nvocab) < 0) {
    snprintf (err, errlen, "%s: the vocabulary repeats a delta", c->model_path);
    goto fail_quiet;
  }
  pred_analyzer_config_default (&ac);
  ac.max_regions = c->regions;
  p->an = pred_analyzer_new (&ac);
  if (!p->an || pred_candlist_init (&p->cl, CAND_CAP, c->nr_blocks) < 0)
    goto fail;
  p->pending = calloc (c->streams, sizeof *p->pending);
  if (p->pending == NULL)
    goto fail;
  for (unsigned i = 0; i < c->streams; i++)
    p->pending[i].owner = -1;
  p->policy = PRED_POLICY_OFF;
  if (!switch_policy (p, c->policy))
    goto fail;
  atomic_init (&p->requested, (int) c->policy);
  predictor_refresh_stats (p);
  return p;

 fail:
  snprintf (err, errlen, "predictor: out of memory");
 fail_quiet:
  predictor_free (p);
  return NULL;
}

/* One scored prediction.  The mean until ACC_WINDOW were scored: a
 * moving average started at 0 would report a perfect model as 0.15 after
 * 10 predictions and 0.5 after 44. */
static void
score (struct mstat *s, bool hit)
{
  s->scored++;
  s->hits += hit;
  s->recent += (hit - s->recent) /
    (double) (s->scored < ACC_WINDOW ? s->scored : ACC_WINDOW);
}

/* The first block ev touched that its stream's previous access did not:
 * an unaligned sequential reader's access begins inside the block its
 * last one ended in, and that block was no prediction's to make
 * (readahead, which predicts from the next block on, scored 0% on
 * bench/e2e inter, whose 64 KiB reads straddle two blocks). */
static uint64_t
first_new_block (const struct pred_event *ev)
{
  if (!ev->new_stream && ev->have_ref && ev->ref > ev->block &&
      ev->ref - ev->block < ev->nblocks)
    return ev->ref;
  return ev->block;
}

/* Score the candidates given before ev for what ev touched: those given
 * for its stream if it continues one, else (a new stream: nothing was
 * predicted for it) the last ones given for any stream. */
static void
score_event (struct predictor *p, const struct pred_event *ev)
{
  struct pending *pd = &p->pending[ev->stream];
  uint64_t want = first_new_block (ev);

  if (!ev->new_stream && pd->owner > 0) {
    bool hit = false;

    for (unsigned i = 0; i < pd->n && !hit; i++)
      hit = pd->block[i] == want;
    score (&p->ms[pd->owner], hit);
  }
  else if (ev->new_stream && p->cl_owner > 0)
    score (&p->ms[p->cl_owner], pred_candlist_contains (&p->cl, want));
  pd->owner = -1;
  p->cl_owner = -1;
}

/* Keep the best candidates just given for a stream. */
static void
remember_candidates (struct predictor *p, unsigned stream)
{
  struct pending *pd = &p->pending[stream];
  unsigned i;

  for (i = 0; i < p->cl.n && i < PENDING_MAX; i++)
    pd->block[i] = p->cl.c[i].block;
  pd->n = i;
  pd->owner = p->policy;
}

/* Predictor thread, at the end of each of its calls: republish the
 * snapshot if it lags by STATS_EVERY accesses or by STATS_MAX_AGE_NS.
 * A refresh skipped because a reader held the lock leaves stats_dirty
 * set, so the next call retries. */
static void
maybe_refresh_stats (struct predictor *p)
{
  if (!p->stats_dirty)
    return;
  if (p->accesses - p->pub_accesses >= STATS_EVERY ||
      now_ns () - p->pub_ns >= STATS_MAX_AGE_NS)
    predictor_refresh_stats (p);
}

/* ev is its stream's latest event: it replaces the stream's older one
 * (a recycled stream slot is a new stream, whose history replaced the
 * old one's in every model) and goes to the end. */
static void
note_unpredicted (struct predictor *p, const struct pred_event *ev)
{
  unsigned i, j;

  for (i = j = 0; i < p->nr_unpredicted; i++)
    if (p->unpredicted[i].stream != ev->stream)
      p->unpredicted[j++] = p->unpredicted[i];
  p->nr_unpredicted = j;
  if (p->nr_unpredicted == UNPREDICTED_MAX) {
    memmove (&p->unpredicted[0], &p->unpredicted[1],
             (UNPREDICTED_MAX - 1) * sizeof p->unpredicted[0]);
    p->nr_unpredicted--;
  }
  p->unpredicted[p->nr_unpredicted++] = *ev;
}

void
predictor_observe (struct predictor *p, const struct pred_access *a)
{
  struct pred_event ev;

  apply_requested (p);
  p->accesses++;
  p->stats_dirty = true;
  if (!pred_tokenizer_feed (&p->tok, a, &ev)) {
    pred_analyzer_observe (p->an, a, NULL);
    goto out;
  }
  pred_analyzer_observe (p->an, a, &ev);

  /* A repeat brings nothing new: the last event and the models' state
   * stand, and the next prediction is the same as the last one. */
  if (ev.repeat)
    goto out;

  score_event (p, &ev);
  for (int i = 1; i < PRED_POLICY__COUNT; i++) {
    if (!p->active[i])
      continue;
    uint64_t t0 = now_ns ();
    p->model[i]->ops->observe (p->model[i], &ev);
    p->ms[i].observe_ns += now_ns () - t0;
    p->ms[i].observes++;
  }
  p->last = ev;
  p->have_last = true;
  note_unpredicted (p, &ev);
 out:
  maybe_refresh_stats (p);
}

/* Candidates for what follows ev, ev's stream's latest event. */
static size_t
predict_after (struct predictor *p, const struct pred_event *ev,
               struct pred_cand *out, size_t max,
               predictor_absent_fn absent, void *opaque)
{
  struct pred_model *m = p->model[p->policy];
  size_t n = 0;
  uint64_t t0;

  pred_candlist_reset (&p->cl);
  t0 = now_ns ();
  m->ops->predict (m, ev, &p->cl);
  pred_candlist_sort (&p->cl);
  for (unsigned i = 0; i < p->cl.n && n < max; i++) {
    const struct pred_cand *c = &p->cl.c[i];
    if (c->p < p->cfg.min_prob)
      break;
    if (absent && !absent (opaque, c->block))
      continue;
    out[n++] = *c;
  }
  p->ms[p->policy].predict_ns += now_ns () - t0;
  p->ms[p->policy].predicts++;
  p->cl_owner = p->policy;
  remember_candidates (p, ev->stream);
  if (n) {
    p->predictions++;
    p->candidates += n;
  }
  p->stats_dirty = true;
  return n;
}

size_t
predictor_predict (struct predictor *p, struct pred_cand *out, size_t max,
                   predictor_absent_fn absent, void *opaque)
{
  size_t n = 0;

  apply_requested (p);
  p->nr_unpredicted = 0;
  if (p->policy != PRED_POLICY_OFF && p->have_last && max > 0)
    n = predict_after (p, &p->last, out, max, absent, opaque);
  maybe_refresh_stats (p);
  return n;
}

bool
predictor_predict_batch (struct predictor *p, struct pred_cand *out,
                         size_t max, predictor_absent_fn absent,
                         void *opaque, size_t *n)
{
  struct pred_event ev;

  apply_requested (p);
  *n = 0;
  if (p->policy == PRED_POLICY_OFF || max == 0)
    p->nr_unpredicted = 0;
  if (p->nr_unpredicted == 0) {
    maybe_refresh_stats (p);
    return false;
  }
  ev = p->unpredicted[0];
  memmove (&p->unpredicted[0], &p->unpredicted[1],
           --p->nr_unpredicted * sizeof p->unpredicted[0]);
  *n = predict_after (p, &ev, out, max, absent, opaque);
  maybe_refresh_stats (p);
  return true;
}

int
predictor_set_policy (struct predictor *p, enum pred_policy policy)
{
  if ((unsigned) policy >= PRED_POLICY__COUNT) {
    errno = EINVAL;
    return -1;
  }
  atomic_store (&p->requested, (int) policy);
  return 0;
}

enum pred_policy
predictor_get_policy (struct predictor *p)
{
  return atomic_load (&p->requested);
}

int
predictor_start_training (struct predictor *p)
{
  int r = 0;
  pthread_mutex_lock (&p->life_lock);
  p->training_wanted = true;
  if (p->model[PRED_POLICY_LSTM])
    r = pred_lstm_trainer_start (pred_lstm_model_trainer (p->model[PRED_POLICY_LSTM]));
  pthread_mutex_unlock (&p->life_lock);
  return r;
}

void
predictor_stop_training (struct predictor *p)
{
  pthread_mutex_lock (&p->life_lock);
  p->training_wanted = false;
  if (p->model[PRED_POLICY_LSTM])
    pred_lstm_trainer_stop (pred_lstm_model_trainer (p->model[PRED_POLICY_LSTM]));
  pthread_mutex_unlock (&p->life_lock);
}

void
predictor_refresh_stats (struct predictor *p)
{
  struct predictor_stats st;
  size_t mem;

  memset (&st, 0, sizeof st);
  st.policy = p->policy;
  st.accesses = p->accesses;
  st.snapshot_accesses = p->accesses;
  st.predictions = p->predictions;
  st.candidates = p->candidates;
  mem = sizeof *p + pred_vocab_memory (&p->tok.vocab) +
    pred_analyzer_memory (p->an) + p->cl.cap * sizeof *p->cl.c +
    p->cl.hsize * sizeof *p->cl.hash +
    p->cfg.streams * sizeof *p->pending +
    (p->mf_params ? p->mf.params.n * sizeof (double) : 0);
  for (int i = 1; i < PRED_POLICY__COUNT; i++) {
    struct predictor_model_stats *s = &st.model[i];
    const struct mstat *m = &p->ms[i];
    s->exists = p->model[i] != NULL;
    s->active = p->active[i];
    s->observes = m->observes;
    s->predicts = m->predicts;
    s->observe_ns = m->observe_ns;
    s->predict_ns = m->predict_ns;
    s->scored = m->scored;
    s->hits = m->hits;
    s->recent_accuracy = m->recent;
    if (p->model[i]) {
      s->memory_bytes = p->model[i]->ops->memory (p->model[i]);
      mem += s->memory_bytes;
    }
  }
  if (p->model[PRED_POLICY_LSTM]) {
    st.have_trainer = true;
    st.lstm_size_input = p->cfg.lstm_size_input;
    pred_lstm_trainer_stats (pred_lstm_model_trainer (p->model[PRED_POLICY_LSTM]),
                             &st.trainer);
  }
  if (p->model[PRED_POLICY_NGRAM]) {
    st.have_ngram = true;
    pred_ngram_stats (p->model[PRED_POLICY_NGRAM], &st.ngram);
  }
  if (p->model[PRED_POLICY_HYBRID]) {
    struct pred_hybrid_state h;
    pred_hybrid_state (p->model[PRED_POLICY_HYBRID], &h);
    st.hybrid_acc_ngram = h.acc_fast;
    st.hybrid_acc_lstm = h.acc_slow;
    st.hybrid_w_ngram = h.w_fast;
    st.hybrid_w_lstm = h.w_slow;
    st.hybrid_depth = h.depth;
  }
  pred_analyzer_stats (p->an, p->have_last ? p->last.time_us : 0, &st.analyzer);
  st.vocab_used = p->tok.vocab.n;
  st.vocab_cap = p->tok.vocab.cap;
  st.vocab_recycled = p->tok.vocab.recycled;
  st.memory_bytes = mem;

  /* Never wait for a reader: skip this refresh if one is copying (the
   * snapshot stays dirty, maybe_refresh_stats retries). */
  if (pthread_mutex_trylock (&p->stats_lock) == 0) {
    p->pub = st;
    pthread_mutex_unlock (&p->stats_lock);
    p->stats_dirty = false;
    p->pub_accesses = p->accesses;
    p->pub_ns = now_ns ();
  }
}

void
predictor_get_stats (struct predictor *p, struct predictor_stats *st)
{
  pthread_mutex_lock (&p->stats_lock);
  *st = p->pub;
  pthread_mutex_unlock (&p->stats_lock);
}

size_t
predictor_hot_regions (struct predictor *p, struct pred_region *out, size_t max)
{
  /* The filter calls this once a second even when no access came: the
   * last accesses of a burst reach the snapshot here. */
  maybe_refresh_stats (p);
  return pred_analyzer_hot (p->an, p->have_last ? p->last.time_us : 0, out, max);
}

int
predictor_save_model (struct predictor *p, const char *path,
                      char *err, size_t errlen)
{
  struct pred_model *m = p->model[PRED_POLICY_LSTM];
  struct pred_model_file mf;
  struct pred_lstm_trainer *t;
  struct pred_lstm_trainer_stats ts;
  int r;

  if (!m) {
    snprintf (err, errlen, "%s: no LSTM to save (the policy never used one)", path);
    return -1;
  }
  t = pred_lstm_model_trainer (m);
  memset (&mf, 0, sizeof mf);
  mf.block_size = p->cfg.block_size;
  mf.stream_fwd = p->cfg.stream_fwd;
  mf.stream_back = p->cfg.stream_back;
  mf.lstm = p->lstm_cfg;
  pred_lstm_trainer_stats (t, &ts);
  mf.trained_tokens = ts.fed - ts.dropped + (p->have_mf ? p->mf.trained_tokens : 0);
  mf.nvocab = p->tok.vocab.n - 1;
  mf.vocab = p->tok.vocab.delta + 1;
  if (pred_lstm_params_alloc (&mf.params, p->lstm_cfg.vocab, p->lstm_cfg.embed,
                              p->lstm_cfg.hidden) < 0) {
    snprintf (err, errlen, "%s: out of memory", path);
    return -1;
  }
  pred_lstm_trainer_snapshot (t, &mf.params);
  r = pred_model_save (path, &mf, err, errlen);
  pred_lstm_params_free (&mf.params);
  return r;
}
