/* lstm-trainer.c: chunking, replay, background thread and weight
 * publication for the online LSTM (see lstm-trainer.h). */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lstm-infer.h"
#include "lstm-trainer.h"
#include "streams.h"

#define QCAP 65536              /* feed queue, power of two */
#define NREPLAY 64
#define BUDGET_CAP_NS 50e6       /* credit or debt: 50 ms of training */
/* The idle trainer sleeps until the queue holds WAKE_EVENTS tokens (four
 * streams' worth of a 16-token chunk) or IDLE_WAIT_MS pass.  It used to
 * look every 2 ms: 500 wake-ups a second for the life of the filter,
 * clients or not, and on a paravirtualized 2-CPU machine every wake-up
 * of an idle CPU costs an exit to the hypervisor next to the threads
 * serving clients.  Tokens wait at most IDLE_WAIT_MS; training lags the
 * stream by seconds anyway. */
#define WAKE_EVENTS 64
#define IDLE_WAIT_MS 100

struct feed_ev {
  uint32_t tok;
  int32_t recycled;
  uint16_t stream;
  int16_t parent;
  uint8_t new_stream;
};

struct stream_buf {
  unsigned n;
  uint32_t *tok;                /* [bptt + 1] */
  double *h0, *c0;              /* [H] */
};

struct replay_slot {
  bool used;
  uint32_t *tok;
  double *h0, *c0;
};

struct pred_lstm_trainer {
  struct pred_lstm_trainer_config cfg;
  struct pred_lstm_core core;   /* owned by whoever trains */
  struct stream_buf *sb;
  struct replay_slot rp[NREPLAY];
  unsigned rp_next;
  double *hT, *cT;
  bool unpublished;             /* weights changed since the last publish */

  /* Feed queue: single producer (feed), single consumer (trainer). */
  struct feed_ev *q;
  _Atomic uint64_t q_head, q_tail;
  /* Doorbell (threaded mode only, else -1): the trainer sets `sleeping`
   * before it waits on efd; feed rings when it takes the flag back with
   * WAKE_EVENTS queued (once per sleep), stop always. */
  int efd;
  _Atomic int sleeping;

  /* Publication: triple buffer of inference snapshots.  `mid` holds the
   * index of the middle buffer and FRESH when it is newer than what the
   * reader holds; back belongs to the trainer, front to the reader. */
  struct pred_lstm_infer snap[3];
  _Atomic unsigned mid;
  unsigned back, front;
  uint64_t version;

  /* Thread. */
  pthread_mutex_t thr_lock;     /* serialises start/stop */
  pthread_t thread;
  bool have_thread;
  _Atomic bool stop;

  /* Training serialisation (thread vs snapshot). */
  pthread_mutex_t train_lock;

  /* CPU budget (cpu_share > 0): credit in ns, refilled with wall time. */
  double credit_ns;
  uint64_t credit_at;

  /* Stats. */
  _Atomic uint64_t fed, dropped, chunks, replays, skipped, known, train_ns;
  _Atomic uint64_t longest_ns, wakeups;
  _Atomic bool idle_priority;
  _Atomic uint64_t loss_bits;
  double loss_avg;
};

static uint64_t
now_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void
pred_lstm_trainer_free (struct pred_lstm_trainer *t)
{
  if (!t)
    return;
  pred_lstm_trainer_stop (t);
  if (t->sb)
    for (unsigned i = 0; i < t->cfg.nstreams; i++) {
      free (t->sb[i].tok);
      free (t->sb[i].h0);
      free (t->sb[i].c0);
    }
  free (t->sb);
  for (unsigned i = 0; i < NREPLAY; i++) {
    free (t->rp[i].tok);
    free (t->rp[i].h0);
    free (t->rp[i].c0);
  }
  free (t->hT);
  free (t->cT);
  free (t->q);
  if (t->efd >= 0)
    close (t->efd);
  pred_lstm_core_free (&t->core);
  for (int i = 0; i < 3; i++)
    pred_lstm_infer_free (&t->snap[i]);
  pthread_mutex_destroy (&t->thr_lock);
  pthread_mutex_destroy (&t->train_lock);
  free (t);
}

#define FRESH 4u

/* Trainer side: build a snapshot in the back buffer and swap it in. */
static void
publish (struct pred_lstm_trainer *t)
{
  struct pred_lstm_infer *s = &t->snap[t->back];
  unsigned old;
  t->unpublished = false;
  pred_lstm_infer_build (s, &t->core.P);
  s->version = ++t->version;
  old = atomic_exchange_explicit (&t->mid, t->back | FRESH, memory_order_acq_rel);
  t->back = old & 3;
}

struct pred_lstm_trainer *
pred_lstm_trainer_new (const struct pred_lstm_trainer_config *cfg,
                       const struct pred_lstm_params *init)
{
  struct pred_lstm_trainer *t = calloc (1, sizeof *t);
  unsigned H, B;

  if (!t)
    return NULL;
  t->efd = -1;
  t->cfg = *cfg;
  if (t->cfg.nstreams < 1)
    t->cfg.nstreams = 1;
  if (t->cfg.nstreams > PRED_STREAMS_MAX)
    t->cfg.nstreams = PRED_STREAMS_MAX;
  if (t->cfg.replay > 8)
    t->cfg.replay = 8;
  pthread_mutex_init (&t->thr_lock, NULL);
  pthread_mutex_init (&t->train_lock, NULL);
  if (pred_lstm_config_check (&cfg->lstm) ||
      pred_lstm_core_init (&t->core, &cfg->lstm, init) < 0) {
    free (t->sb);
    pthread_mutex_destroy (&t->thr_lock);
    pthread_mutex_destroy (&t->train_lock);
    free (t);
    return NULL;
  }
  H = cfg->lstm.hidden;
  B = cfg->lstm.bptt + 1;
  t->sb = calloc (t->cfg.nstreams, sizeof *t->sb);
  t->hT = calloc (H, sizeof (double));
  t->cT = calloc (H, sizeof (double));
  t->q = calloc (QCAP, sizeof *t->q);
  if (!t->sb || !t->hT || !t->cT || !t->q)
    goto fail;
  if (cfg->threaded) {
    t->efd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (t->efd == -1)
      goto fail;
  }
  for (int i = 0; i < 3; i++)
    if (pred_lstm_infer_alloc (&t->snap[i], cfg->lstm.vocab, cfg->lstm.embed, H) < 0)
      goto fail;
  for (unsigned i = 0; i < t->cfg.nstreams; i++) {
    t->sb[i].tok = calloc (B, sizeof (uint32_t));
    t->sb[i].h0 = calloc (H, sizeof (double));
    t->sb[i].c0 = calloc (H, sizeof (double));
    if (!t->sb[i].tok || !t->sb[i].h0 || !t->sb[i].c0)
      goto fail;
  }
  for (unsigned i = 0; i < NREPLAY; i++) {
    t->rp[i].tok = calloc (B, sizeof (uint32_t));
    t->rp[i].h0 = calloc (H, sizeof (double));
    t->rp[i].c0 = calloc (H, sizeof (double));
    if (!t->rp[i].tok || !t->rp[i].h0 || !t->rp[i].c0)
      goto fail;
  }
  /* The initial weights are the first publication. */
  t->front = 0;
  t->back = 1;
  atomic_init (&t->mid, 2);
  pred_lstm_infer_build (&t->snap[0], &t->core.P);
  t->snap[0].version = 0;
  publish (t);
  return t;
 fail:
  pred_lstm_trainer_free (t);
  return NULL;
}

size_t
pred_lstm_trainer_memory (const struct pred_lstm_trainer *t)
{
  const struct pred_lstm_config *c = &t->cfg.lstm;
  size_t H = c->hidden, B = c->bptt + 1;
  size_t per_stream = B * sizeof (uint32_t) + 2 * H * sizeof (double);
  return sizeof *t + 4 * t->core.P.n * sizeof (double) +
    3 * pred_lstm_infer_memory (&t->snap[0]) +
    ((7 * H + c->vocab) * c->bptt + 8 * H + c->vocab + c->embed) * sizeof (double) +
    (t->cfg.nstreams + NREPLAY) * per_stream + QCAP * sizeof (struct feed_ev);
}


/* Fold one chunk's loss into the moving average the stats show. */
static void
note_loss (struct pred_lstm_trainer *t, double loss)
{
  bool first = t->chunks == 0 && t->replays == 0 && t->known == 0;
  t->loss_avg = first ? loss : 0.98 * t->loss_avg + 0.02 * loss;
  uint64_t bits;
  memcpy (&bits, &t->loss_avg, sizeof bits);
  atomic_store (&t->loss_bits, bits);
}

/* Keep stream buffer s's chunk, with its start state, for replay. */
static void
keep_replay (struct pred_lstm_trainer *t, const struct stream_buf *s)
{
  unsigned H = t->cfg.lstm.hidden, B = t->cfg.lstm.bptt + 1;
  struct replay_slot *r = &t->rp[t->rp_next];

  memcpy (r->tok, s->tok, B * sizeof *r->tok);
  memcpy (r->h0, s->h0, H * sizeof *r->h0);
  memcpy (r->c0, s->c0, H * sizeof *r->c0);
  r->used = true;
  t->rp_next = (t->rp_next + 1) % NREPLAY;
}

/* Carry the state after a chunk (hT, cT) on as the stream's next start. */
static void
keep_state (struct pred_lstm_trainer *t, double *h0, double *c0)
{
  memcpy (h0, t->hT, t->cfg.lstm.hidden * sizeof (double));
  memcpy (c0, t->cT, t->cfg.lstm.hidden * sizeof (double));
}

/* Train a replayed chunk (its state is not carried on). */
static void
train_replay (struct pred_lstm_trainer *t, const struct replay_slot *r)
{
  double loss = pred_lstm_forward_backward (&t->core, r->tok,
                                            t->cfg.lstm.bptt, r->h0, r->c0,
                                            NULL, NULL);
  pred_lstm_apply (&t->core);
  note_loss (t, loss);
}

/* Run a new chunk forward, keeping what training needs, and carry its
 * end state on.  Unless it is known -- every step's loss below
 * known_loss (not the mean: a rare token that decides where a stream
 * goes next is what the LSTM is for, and a mean over 16 easy ones would
 * hide it) -- train it from that record, so the forward pass runs once
 * either way.  Known or not, it goes to the replay ring, so that the
 * ring stays recent and what is known is rehearsed while something else
 * is learnt.  Returns true if the chunk was known.
 */
static bool
run_new_chunk (struct pred_lstm_trainer *t, struct stream_buf *s)
{
  double worst;
  double loss = pred_lstm_forward_record (&t->core, s->tok, t->cfg.lstm.bptt,
                                          s->h0, s->c0, t->hT, t->cT, &worst);
  bool known = t->cfg.known_loss > 0 && worst < t->cfg.known_loss;

  keep_replay (t, s);
  if (!known) {
    pred_lstm_backward (&t->core, s->tok);
    pred_lstm_apply (&t->core);
  }
  keep_state (t, s->h0, s->c0);
  note_loss (t, loss);
  atomic_fetch_add (known ? &t->known : &t->chunks, 1);
  return known;
}

/* Add the credit earned since the last refill (budget mode). */
static void
refill (struct pred_lstm_trainer *t, uint64_t now)
{
  if (t->credit_at == 0)
    t->credit_at = now;
  t->credit_ns += (double) (now - t->credit_at) * t->cfg.cpu_share;
  if (t->credit_ns > BUDGET_CAP_NS)
    t->credit_ns = BUDGET_CAP_NS;
  t->credit_at = now;
}

/* Account the wall time since t0 to training (and to the budget).  Wall
 * time, not the thread's CPU time: a trainer preempted mid-chunk on a
 * busy machine is charged for the wait too, and trains less under load.
 */
static void
charge (struct pred_lstm_trainer *t, uint64_t t0, bool budget)
{
  uint64_t spent = now_ns () - t0;

  atomic_fetch_add (&t->train_ns, spent);
  if (spent > atomic_load (&t->longest_ns))
    atomic_store (&t->longest_ns, spent);   /* one writer: this thread */
  if (budget)
    t->credit_ns -= spent;
}

/* Train one full chunk of stream buffer s, then replays, within the CPU
 * budget.  A skipped chunk leaves the stream's start state where it was:
 * the next chunk then starts from an older state, an approximation that
 * costs nothing.  A known chunk (run_new_chunk) is not trained at all.
 */
static void
train_chunk (struct pred_lstm_trainer *t, struct stream_buf *s)
{
  uint64_t t0 = now_ns ();
  bool budget = t->cfg.threaded && t->cfg.cpu_share > 0;

  if (budget) {
    refill (t, t0);
    if (t->credit_ns < -BUDGET_CAP_NS) {
      atomic_fetch_add (&t->skipped, 1);
      return;
    }
  }
  if (run_new_chunk (t, s)) {
    /* A recycled token's fresh rows must reach inference even when
     * nothing is trained for a while. */
    if (t->unpublished)
      publish (t);
    charge (t, t0, budget);
    return;
  }

  for (unsigned i = 0; i < t->cfg.replay; i++) {
    unsigned j = pred_rng_below (&t->core.rng, NREPLAY);
    if (budget && t->credit_ns - (double) (now_ns () - t0) <= 0)
      break;
    if (!t->rp[j].used)
      continue;
    train_replay (t, &t->rp[j]);
    atomic_fetch_add (&t->replays, 1);
  }
  publish (t);
  charge (t, t0, budget);
}

/* Apply one event to the training state (trainer side). */
static void
process (struct pred_lstm_trainer *t, const struct feed_ev *e)
{
  unsigned H = t->cfg.lstm.hidden, B = t->cfg.lstm.bptt + 1;
  struct stream_buf *s;

  if (e->stream >= t->cfg.nstreams)
    return;
  if (e->recycled >= 0) {
    struct pred_lstm_core *k = &t->core;
    pred_lstm_params_reset_token (&k->P, e->recycled, &k->rng);
    /* Forget the optimizer's memory of the old meaning. */
    size_t E = k->P.E;
    memset (k->M.emb + (size_t) e->recycled * E, 0, E * sizeof (double));
    memset (k->S.emb + (size_t) e->recycled * E, 0, E * sizeof (double));
    memset (k->M.wy + (size_t) e->recycled * H, 0, H * sizeof (double));
    memset (k->S.wy + (size_t) e->recycled * H, 0, H * sizeof (double));
    t->unpublished = true;
  }
  s = &t->sb[e->stream];
  if (e->new_stream) {
    if (e->parent >= 0 && (unsigned) e->parent < t->cfg.nstreams &&
        (unsigned) e->parent != e->stream) {
      struct stream_buf *p = &t->sb[e->parent];
      s->n = p->n;
      memcpy (s->tok, p->tok, B * sizeof *s->tok);
      memcpy (s->h0, p->h0, H * sizeof *s->h0);
      memcpy (s->c0, p->c0, H * sizeof *s->c0);
    }
    else if (e->parent < 0) {
      s->n = 0;
      memset (s->h0, 0, H * sizeof *s->h0);
      memset (s->c0, 0, H * sizeof *s->c0);
    }
  }
  s->tok[s->n++] = e->tok;
  if (s->n < B)
    return;
  train_chunk (t, s);
  /* The chunk's last token is the first input of the next. */
  s->tok[0] = s->tok[B - 1];
  s->n = 1;
}

/* Wake the trainer (trainer_sleep). */
static void
ring (struct pred_lstm_trainer *t)
{
  uint64_t one = 1;
  /* Only an overflow of the counter fails: the trainer drains it. */
  ssize_t n = write (t->efd, &one, sizeof one);
  (void) n;
}

void
pred_lstm_trainer_feed (struct pred_lstm_trainer *t, unsigned stream,
                        bool new_stream, int parent, uint32_t tok,
                        int32_t recycled)
{
  struct feed_ev e = {
    .tok = tok, .recycled = recycled, .stream = (uint16_t) stream,
    .parent = (int16_t) parent, .new_stream = new_stream,
  };

  atomic_fetch_add_explicit (&t->fed, 1, memory_order_relaxed);
  if (!t->cfg.threaded) {
    pthread_mutex_lock (&t->train_lock);
    process (t, &e);
    pthread_mutex_unlock (&t->train_lock);
    return;
  }
  uint64_t tail = atomic_load_explicit (&t->q_tail, memory_order_relaxed);
  uint64_t head = atomic_load_explicit (&t->q_head, memory_order_acquire);
  if (tail - head >= QCAP) {
    atomic_fetch_add_explicit (&t->dropped, 1, memory_order_relaxed);
    return;
  }
  t->q[tail & (QCAP - 1)] = e;
  atomic_store_explicit (&t->q_tail, tail + 1, memory_order_release);

  /* Dekker pairing with trainer_sleep: publish, then look at the flag.
   * Taking the flag back makes one ring per sleep: a nice-19 trainer
   * may take milliseconds to run, and feed would otherwise make a
   * system call for every token meanwhile. */
  atomic_thread_fence (memory_order_seq_cst);
  if (tail + 1 - atomic_load_explicit (&t->q_head, memory_order_relaxed)
      >= WAKE_EVENTS &&
      atomic_load_explicit (&t->sleeping, memory_order_relaxed) &&
      atomic_exchange_explicit (&t->sleeping, 0, memory_order_relaxed))
    ring (t);
}

/* Yield the CPU to everything else: a training chunk takes a few
 * hundred microseconds, and on the 2-CPU benchmark machine four fio
 * readers waited behind those bursts (bench/e2e inter: the LSTM policy's
 * median read 0.39 ms against the n-gram's 0.26 ms).  Nice 19 (Linux
 * threads have their own) lets any other thread preempt it at once, yet
 * unlike SCHED_IDLE, which starved training for seconds while the test
 * suite kept both CPUs busy, it still gets a little CPU under full load.
 * If refused, training keeps its priority (stats: idle_priority).
 */
static void
lower_priority (struct pred_lstm_trainer *t)
{
#ifdef __linux__
  atomic_store (&t->idle_priority,
                setpriority (PRIO_PROCESS, (id_t) syscall (SYS_gettid),
                             19) == 0);
#else
  atomic_store (&t->idle_priority, false);
#endif
}

/* Wait until feed has queued WAKE_EVENTS tokens, stop is asked, or
 * IDLE_WAIT_MS pass. */
static void
trainer_sleep (struct pred_lstm_trainer *t)
{
  struct pollfd pfd = { .fd = t->efd, .events = POLLIN };
  uint64_t v;

  atomic_store_explicit (&t->sleeping, 1, memory_order_relaxed);
  atomic_thread_fence (memory_order_seq_cst);
  if (atomic_load_explicit (&t->q_tail, memory_order_relaxed) -
      atomic_load_explicit (&t->q_head, memory_order_relaxed) < WAKE_EVENTS &&
      !atomic_load (&t->stop) &&
      poll (&pfd, 1, IDLE_WAIT_MS) == -1 && errno != EINTR) {
    /* ENOMEM: sleep anyway rather than spin. */
    struct timespec ts = { 0, IDLE_WAIT_MS * 1000 * 1000 };
    nanosleep (&ts, NULL);
  }
  atomic_store_explicit (&t->sleeping, 0, memory_order_relaxed);
  ssize_t n = read (t->efd, &v, sizeof v);  /* drain; EAGAIN: not rung */
  (void) n;
  atomic_fetch_add_explicit (&t->wakeups, 1, memory_order_relaxed);
}

static void *
trainer_thread (void *arg)
{
  struct pred_lstm_trainer *t = arg;

  /* For top -H and perf; failing to name it changes nothing else. */
  (void) pthread_setname_np (pthread_self (), "lstm-trainer");
  lower_priority (t);

  while (!atomic_load (&t->stop)) {
    uint64_t head = atomic_load_explicit (&t->q_head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit (&t->q_tail, memory_order_acquire);
    if (head == tail) {
      trainer_sleep (t);
      continue;
    }
    pthread_mutex_lock (&t->train_lock);
    while (head != tail && !atomic_load (&t->stop)) {
      struct feed_ev e = t->q[head & (QCAP - 1)];
      atomic_store_explicit (&t->q_head, head + 1, memory_order_release);
      head++;
      process (t, &e);
    }
    pthread_mutex_unlock (&t->train_lock);
  }
  return NULL;
}

int
pred_lstm_trainer_start (struct pred_lstm_trainer *t)
{
  int err = 0;
  if (!t->cfg.threaded)
    return 0;
  pthread_mutex_lock (&t->thr_lock);
  if (!t->have_thread) {
    atomic_store (&t->stop, false);
    err = pthread_create (&t->thread, NULL, trainer_thread, t);
    if (err == 0)
      t->have_thread = true;
  }
  pthread_mutex_unlock (&t->thr_lock);
  if (err) {
    errno = err;
    return -1;
  }
  return 0;
}

void
pred_lstm_trainer_stop (struct pred_lstm_trainer *t)
{
  pthread_mutex_lock (&t->thr_lock);
  if (t->have_thread) {
    atomic_store (&t->stop, true);
    ring (t);
    int r = pthread_join (t->thread, NULL);
    if (r != 0) {               /* EDEADLK, EINVAL, ESRCH: a bug here */
      errno = r;
      perror ("lstm-trainer: pthread_join");
      abort ();
    }
    t->have_thread = false;
  }
  pthread_mutex_unlock (&t->thr_lock);
}

const struct pred_lstm_infer *
pred_lstm_trainer_fetch (struct pred_lstm_trainer *t)
{
  unsigned old;
  if (!(atomic_load_explicit (&t->mid, memory_order_acquire) & FRESH))
    return NULL;
  old = atomic_exchange_explicit (&t->mid, t->front, memory_order_acq_rel);
  t->front = old & 3;
  return &t->snap[t->front];
}

void
pred_lstm_trainer_snapshot (struct pred_lstm_trainer *t,
                            struct pred_lstm_params *dst)
{
  pthread_mutex_lock (&t->train_lock);
  pred_lstm_params_copy (dst, &t->core.P);
  pthread_mutex_unlock (&t->train_lock);
}

void
pred_lstm_trainer_stats (struct pred_lstm_trainer *t,
                         struct pred_lstm_trainer_stats *st)
{
  double loss;
  uint64_t bits = atomic_load (&t->loss_bits);
  memcpy (&loss, &bits, sizeof loss);
  st->fed = atomic_load (&t->fed);
  st->dropped = atomic_load (&t->dropped);
  st->chunks = atomic_load (&t->chunks);
  st->replays = atomic_load (&t->replays);
  st->skipped = atomic_load (&t->skipped);
  st->known = atomic_load (&t->known);
  st->train_ns = atomic_load (&t->train_ns);
  st->longest_ns = atomic_load (&t->longest_ns);
  st->wakeups = atomic_load (&t->wakeups);
  st->loss = loss;
  pthread_mutex_lock (&t->thr_lock);
  st->running = t->have_thread;
  st->idle_priority = atomic_load (&t->idle_priority);
  pthread_mutex_unlock (&t->thr_lock);
}
