/* nbdshadow: the shadow filter, thin glue between nbdkit and server/.
 *
 *   nbdkit --filter=shadow nbd uri=nbd://old/vol shadow=nbd://new/vol
 *
 * Life cycle (nbdkit-filter(3), DESIGN §5 and §8):
 *   .config/.config_complete  parse and check every parameter
 *   .get_ready                probe each shadow (reachable, writable, its
 *                             size) while stderr still reaches the user
 *   .after_fork               open a shared origin context, compare sizes,
 *                             start the engine thread and the committer:
 *                             threads never start before nbdkit forks
 *   .open/.prepare            per client: the origin context as an origin
 *   data callbacks            server/volume.c
 *   .cleanup                  final commit, stop threads, close contexts
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <nbdkit-filter.h>

#include "bufpool.h"
#include "control.h"
#include "copyop.h"
#include "engine.h"
#include "migration.h"
#include "lockutil.h"
#include "log.h"
#include "origin_next.h"
#include "params.h"
#include "prefetch.h"
#include "state.h"
#include "volume.h"

/* -D shadow.verbose=1: debug messages from server/. */
NBDKIT_DLL_PUBLIC int shadow_debug_verbose;
/* -D shadow.commit_delay_ms=N: tests only: pause inside each commit so
 * that a kill -9 lands there.
 */
NBDKIT_DLL_PUBLIC int shadow_debug_commit_delay_ms;
/* -D shadow.commit_interval_ms=N: tests only: commit this seldom (while
 * no client asks), so that a test can cut the shadow's power with
 * unflushed updates in its cache.
 */
NBDKIT_DLL_PUBLIC int shadow_debug_commit_interval_ms;
/* -D shadow.write_log_kib=N: tests only: the cap of the unflushed write
 * log per shadow (engine_config.log_cap), instead of 64 MiB.
 */
NBDKIT_DLL_PUBLIC int shadow_debug_write_log_kib;
/* -D shadow.shadow_request_kib=N: benchmarks only: split every read
 * and write to the shadows into commands of N KiB (up to 32768; default:
 * the server's limit, or 256 KiB for copies while clients are idle).
 */
NBDKIT_DLL_PUBLIC int shadow_debug_shadow_request_kib;
/* -D shadow.no_copy_on_read=1: tests only: read absent blocks from the
 * origin without copying them, to look at a state without changing it.
 */
NBDKIT_DLL_PUBLIC int shadow_debug_no_copy_on_read;
/* -D shadow.no_shadow_read_feedback=1: benchmarks only: the copier
 * backs off for the latency of all client requests alone, not for that
 * of the reads the shadow serves (copier.c clients_slowed).
 */
NBDKIT_DLL_PUBLIC int shadow_debug_no_shadow_read_feedback;
/* -D shadow.max_transfer_kib=N: benchmarks only: the largest background
 * transfer, instead of MAX_TRANSFER.
 */
NBDKIT_DLL_PUBLIC int shadow_debug_max_transfer_kib;
/* -D shadow.buffer_pool_kib=N: benchmarks only: keep at most N KiB of
 * idle copy buffers for reuse (server/bufpool.h), instead of 64 MiB; -1:
 * none (every buffer is malloc'd and freed); 0: the default.
 */
NBDKIT_DLL_PUBLIC int shadow_debug_buffer_pool_kib;
/* -D shadow.copier_workers=N: benchmarks only: instead of COPIER_WORKERS
 * (at most 64).
 */
NBDKIT_DLL_PUBLIC int shadow_debug_copier_workers;
/* -D shadow.prefetch_round_blocks=N: benchmarks only: new blocks one
 * prediction round may queue, instead of prefetch.c's ROUND_BLOCKS.
 */
NBDKIT_DLL_PUBLIC int shadow_debug_prefetch_round_blocks;
/* -D shadow.predictor_streams=N: benchmarks only: access streams the
 * predictor tells apart (1 .. 256), instead of its default.
 */
NBDKIT_DLL_PUBLIC int shadow_debug_predictor_streams;
/* -D shadow.ngram_calibrate=0: benchmarks only: the n-gram's estimates
 * left as Witten-Bell gives them instead of lifted to their hit rate
 * (predictor_config.ngram_calibrate).  nbdkit writes the variable only
 * when the flag is given.
 */
NBDKIT_DLL_PUBLIC int shadow_debug_ngram_calibrate = -1;
/* -D shadow.ngram_size_context=0: benchmarks only: the n-gram's
 * contexts without the last request's size class
 * (predictor_config.ngram_size_context).
 */
NBDKIT_DLL_PUBLIC int shadow_debug_ngram_size_context = -1;
/* -D shadow.lstm_size_input=0: benchmarks only: the LSTM's inputs
 * without the request's size class (predictor_config.lstm_size_input).
 */
NBDKIT_DLL_PUBLIC int shadow_debug_lstm_size_input = -1;
/* -D shadow.lstm_cpu_permille=N: benchmarks only: the LSTM's training
 * may use N/1000 of one core (1 .. 1000) instead of the predictor's
 * default.
 */
NBDKIT_DLL_PUBLIC int shadow_debug_lstm_cpu_permille;
/* -D shadow.hybrid_depth=N: benchmarks only: the hybrid looks N
 * accesses ahead (1 .. 256) instead of twice the n-gram's depth
 * (predictor_config.hybrid_depth).
 */
NBDKIT_DLL_PUBLIC int shadow_debug_hybrid_depth;
/* -D shadow.lstm_known_loss_permille=N: benchmarks only: the LSTM leaves
 * untrained the chunks it predicts with a loss below N/1000 nats at
 * every step (0: trains every chunk) instead of the predictor's default.
 * nbdkit writes the variable only when the flag is given: INT_MIN.
 */
NBDKIT_DLL_PUBLIC int shadow_debug_lstm_known_loss_permille = INT_MIN;
/* -D shadow.origin_read_kib=N: benchmarks only: read the origin for
 * every copy (background, prefetch, a client's cache request) in pieces
 * of N KiB (1 .. 32768), one after another.
 */
NBDKIT_DLL_PUBLIC int shadow_debug_origin_read_kib;
/* -D shadow.copier_idle_workers=N, -D shadow.origin_idle_read_kib=N:
 * benchmarks only: instead of COPIER_IDLE_WORKERS and IDLE_ORIGIN_READ
 * while clients are idle (N = copier_workers, 32768: as while active).
 */
NBDKIT_DLL_PUBLIC int shadow_debug_copier_idle_workers;
NBDKIT_DLL_PUBLIC int shadow_debug_origin_idle_read_kib;
/* -D shadow.fail_log_append=N: tests only: the Nth update a shadow
 * acknowledges fails to enter its write log as if out of memory.
 */
NBDKIT_DLL_PUBLIC int shadow_debug_fail_log_append;
/* -D shadow.replay_depth=N: benchmarks only: write again at most N
 * logged updates at once after a lost connection (1 .. 16, default 16).
 */
NBDKIT_DLL_PUBLIC int shadow_debug_replay_depth;
/* -D shadow.drop_conn_at=OFFSET: tests only: 50 ms after the second
 * write at byte OFFSET goes to the first shadow, drop another of its
 * connections as if lost (engine_config.drop_conn_at).
 */
NBDKIT_DLL_PUBLIC int shadow_debug_drop_conn_at;
/* -D shadow.connect_timeout_s=N: tests only: the probe waits N seconds
 * for a handshake, and start-up fails when other connections fail again
 * N seconds after their first failure, instead of 60
 * (engine_config.connect_timeout).
 */
NBDKIT_DLL_PUBLIC int shadow_debug_connect_timeout_s;
/* -D shadow.handshake_timeout_ms=N: tests only: a connection attempt
 * waits N ms (1 .. 60000) for the handshake at first instead of 10 s,
 * doubling after each attempt that ran out of it
 * (engine_config.handshake_timeout).
 */
NBDKIT_DLL_PUBLIC int shadow_debug_handshake_timeout_ms;

#define TICK_INTERVAL 0.5       /* seconds between rate samples and adaptation */
/* 8 workers (sharing one origin context) of 2 MiB transfers: twice the
 * origin reads in flight of the earlier 4 of 4 MiB made hydration 10-20%
 * faster with the shadow on other storage, and clients of the e2e
 * workloads waited no longer (bench/results-migrate.md).
 */
#define COPIER_WORKERS 8
/* While no client has sent a request for a second, 16 workers reading
 * the origin in 512 KiB pieces hydrate 10-15% faster than 8 reading
 * whole transfers (1 MiB pieces: 2-15%; 256 KiB: slower on a half-sparse
 * volume); with clients active 16 workers doubled a sequential reader's
 * stall (bench/results-migrate.md), so only then.
 */
#define COPIER_IDLE_WORKERS 16
#define IDLE_ORIGIN_READ (512 * 1024)
#define MAX_TRANSFER (2 * 1024 * 1024)

static struct shadow_params params;
static struct shadow_info probed[ENGINE_MAX_SHADOWS];

/* Set in .after_fork, cleared in .cleanup; connections exist only in
 * between, so the callbacks read them without locks.
 */
static struct engine *engine;
static struct volume *volume;
static struct migration *migration;
static struct control *control;

/* Our own origin context, opened in .after_fork: it checks the size and
 * serves the copier's workers and verify, concurrently (which the
 * parallel thread model, required in .get_ready, allows).  One context is
 * one more origin connection through the nbd plugin: the fewer, the
 * better for origins that accept few.  Closed at cutover, and never
 * opened after a restart in phase cutover or done.
 */
static nbdkit_next *origin_ctx;
static struct origin origin;
static pthread_mutex_t origin_lock = PTHREAD_MUTEX_INITIALIZER;

/* Persistent state (shadow-state=DIR), opened in .get_ready so that a bad
 * state is reported before nbdkit forks; the residency it loaded goes to
 * the volume in .after_fork.
 */
static struct state *state;
static struct residency *loaded;

/* The predictor, its model and the access trace, prepared in .get_ready
 * (a bad model or trace path is reported before the fork); its thread
 * starts with the migration.
 */
static struct prefetcher *prefetcher;
static int load_phase = PHASE_COPYING;

/* Per client connection. */
struct shadow_handle {
  struct origin origin;
};

static void
error_sink (const char *fmt, va_list args)
{
  nbdkit_verror (fmt, args);
}

static void
debug_sink (const char *fmt, va_list args)
{
  if (shadow_debug_verbose)
    nbdkit_vdebug (fmt, args);
}

static void
shadow_load (void)
{
  params_init (&params);
  shadow_log_set (error_sink, debug_sink);
  shadow_log_set_prefix ("nbdkit: shadow: ");
}

static int
shadow_config (nbdkit_next_config *next, nbdkit_backend *nxdata,
               const char *key, const char *value)
{
  int r = params_config (&params, key, value);

  if (r == 0)
    return next (nxdata, key, value);
  return r == 1 ? 0 : -1;
}

static int
shadow_config_complete (nbdkit_next_config_complete *next,
                        nbdkit_backend *nxdata)
{
  if (params_complete (&params) == -1)
    return -1;
  return next (nxdata);
}

/* Open shadow-state and load it.  The origin's size is not known before
 * the fork, but it must equal the shadows' (checked in .after_fork), so
 * the state is checked against the shadows' size.
 */
static int
open_state (void)
{
  struct state_identity id = {
    .size = probed[0].size,
    .block_size = params.block_size,
    .uris = params.uris,
    .nr_uris = params.nr_shadows,
  };
  struct state_load_info info;

  loaded = residency_new (probed[0].size, params.block_size);
  if (loaded == NULL) {
    nbdkit_error ("shadow-state=%s: cannot create the residency map: %m",
                  params.state_dir);
    return -1;
  }
  state = state_open (params.state_dir, &id, loaded, &info);
  if (state == NULL) {
    residency_free (loaded);
    loaded = NULL;
    return -1;
  }
  if (info.created)
    nbdkit_debug ("shadow: shadow-state=%s: new state", params.state_dir);
  else
    fprintf (stderr, "nbdkit: shadow: shadow-state=%s: resuming: %" PRIu64
             " of %" PRIu64 " blocks on the shadow (%" PRIu64 " written by "
             "clients), phase %s%s\n", params.state_dir,
             info.resident_blocks, loaded->nr_blocks, info.written_blocks,
             phase_name (info.phase),
             info.torn_tail ? ", torn journal tail ignored" : "");
  load_phase = info.phase;
  return 0;
}

static int
open_prefetcher (void)
{
  uint64_t size = probed[0].size;
  struct prefetch_config cfg = {
    .block_size = params.block_size,
    .nr_blocks = (size + params.block_size - 1) / params.block_size,
    .policy = prefetch_name (params.prefetch),
    .model_path = params.model,
    .trace_path = params.trace,
    .round_blocks = shadow_debug_prefetch_round_blocks > 0 ?
      (unsigned) shadow_debug_prefetch_round_blocks : 0,
    .streams = shadow_debug_predictor_streams > 0 ?
      (unsigned) shadow_debug_predictor_streams : 0,
    .lstm_cpu_share = shadow_debug_lstm_cpu_permille > 0 ?
      shadow_debug_lstm_cpu_permille / 1000.0 : 0,
    .hybrid_depth = shadow_debug_hybrid_depth > 0 ?
      (unsigned) shadow_debug_hybrid_depth : 0,
    .ngram_raw = shadow_debug_ngram_calibrate == 0,
    .ngram_no_size = shadow_debug_ngram_size_context == 0,
    .lstm_no_size = shadow_debug_lstm_size_input == 0,
    .lstm_known_loss = shadow_debug_lstm_known_loss_permille == INT_MIN ? 0
      : shadow_debug_lstm_known_loss_permille == 0 ? -1
      : shadow_debug_lstm_known_loss_permille / 1000.0,
  };
  char err[512];

  if (shadow_debug_predictor_streams < 0 ||
      shadow_debug_predictor_streams > 256) {
    nbdkit_error ("-D shadow.predictor_streams=%d: must be 1 .. 256",
                  shadow_debug_predictor_streams);
    return -1;
  }
  if (shadow_debug_lstm_cpu_permille < 0 ||
      shadow_debug_lstm_cpu_permille > 1000) {
    nbdkit_error ("-D shadow.lstm_cpu_permille=%d: must be 1 .. 1000",
                  shadow_debug_lstm_cpu_permille);
    return -1;
  }
  if (shadow_debug_hybrid_depth < 0 || shadow_debug_hybrid_depth > 256) {
    nbdkit_error ("-D shadow.hybrid_depth=%d: must be 1 .. 256",
                  shadow_debug_hybrid_depth);
    return -1;
  }
  if (shadow_debug_lstm_known_loss_permille != INT_MIN &&
      (shadow_debug_lstm_known_loss_permille < 0 ||
       shadow_debug_lstm_known_loss_permille > 100000)) {
    nbdkit_error ("-D shadow.lstm_known_loss_permille=%d: must be 0 .. 100000",
                  shadow_debug_lstm_known_loss_permille);
    return -1;
  }
  prefetcher = prefetcher_new (&cfg, err, sizeof err);
  if (prefetcher == NULL) {
    const char *why = err;
    size_t n = params.model ? strlen (params.model) : 0;

    /* The predictor names the file; say which key it came from. */
    if (n && strncmp (err, params.model, n) == 0 && err[n] == ':') {
      why = err + n + 1;
      while (*why == ' ')
        why++;
    }
    if (params.model && (why != err || strstr (err, "model") != NULL))
      nbdkit_error ("shadow-model=%s: %s", params.model, why);
    else
      nbdkit_error ("%s", err);
    return -1;
  }
  return 0;
}

static int
persist_marks (void *opaque, const struct mark_list *marks)
{
  if (state_append_marks (state, marks) == -1)
    return -1;
  /* A failed compaction leaves the old, valid state: not fatal. */
  if (state_maybe_compact (state) == -1)
    nbdkit_error ("shadow-state=%s: compaction failed: %m (will retry)",
                  params.state_dir);
  return 0;
}

static int
persist_intent (void *opaque, uint64_t first, uint64_t count)
{
  return state_append_intent (state, first, count);
}

static struct engine_config
engine_config_of (int64_t expected_size)
{
  return (struct engine_config) {
    .uris = params.uris,
    .nr_shadows = params.nr_shadows,
    .expected_size = expected_size,
    .reconnect_timeout = params.reconnect_timeout,
    .connections = params.connections,
    .retry_hold = params.retry_hold,
    .log_cap = shadow_debug_write_log_kib > 0 ?
      (uint64_t) shadow_debug_write_log_kib * 1024 : 0,
    .max_data_request = shadow_debug_shadow_request_kib > 0 &&
      shadow_debug_shadow_request_kib <= 32 * 1024 ?
      (uint32_t) shadow_debug_shadow_request_kib * 1024 : 0,
    .fail_log_append = shadow_debug_fail_log_append > 0 ?
      (uint64_t) shadow_debug_fail_log_append : 0,
    .replay_depth = shadow_debug_replay_depth > 0 ?
      (unsigned) shadow_debug_replay_depth : 0,
    .drop_conn_at = shadow_debug_drop_conn_at > 0 ?
      (uint64_t) shadow_debug_drop_conn_at : 0,
    .connect_timeout = shadow_debug_connect_timeout_s > 0 ?
      shadow_debug_connect_timeout_s : 0,
    .handshake_timeout = shadow_debug_handshake_timeout_ms > 0 ?
      shadow_debug_handshake_timeout_ms / 1000.0 : 0,
    .probed = probed,
  };
}

static int
shadow_get_ready (int thread_model)
{
  struct engine_config cfg = engine_config_of (-1);
  size_t i;

  /* Our copier and verify threads call the origin outside any client
   * connection, which nbdkit's request serialisation does not allow.
   */
  if (thread_model != NBDKIT_THREAD_MODEL_PARALLEL) {
    nbdkit_error ("the shadow filter needs a plugin with the parallel "
                  "thread model (as the nbd, file and memory plugins have); "
                  "this one serialises requests");
    return -1;
  }
  if (shadow_debug_handshake_timeout_ms < 0 ||
      shadow_debug_handshake_timeout_ms > 60000) {
    nbdkit_error ("-D shadow.handshake_timeout_ms=%d: must be 1 .. 60000",
                  shadow_debug_handshake_timeout_ms);
    return -1;
  }

  if (engine_probe (&cfg, probed) == -1)
    return -1;
  for (i = 1; i < params.nr_shadows; ++i)
    if (probed[i].size != probed[0].size) {
      nbdkit_error ("shadow %s has size %" PRIi64 " but shadow %s has size %"
                    PRIi64 ": every shadow must have the origin's size",
                    probed[i].uri, probed[i].size, probed[0].uri,
                    probed[0].size);
      return -1;
    }
  for (i = 0; i < params.nr_shadows; ++i)
    if (!probed[i].can_flush)
      fprintf (stderr, "nbdkit: shadow: warning: shadow %s cannot flush: "
               "its data is durable only if it writes synchronously\n",
               probed[i].uri);
  if (open_prefetcher () == -1)
    return -1;
  if (params.state_dir == NULL) {
    fprintf (stderr, "nbdkit: shadow: warning: no shadow-state: residency "
             "is kept in memory only, and a restart copies everything "
             "again\n");
    return 0;
  }
  return open_state ();
}

/* Open our origin context and check the origin's size against the
 * shadows'.  Returns the size or -1.
 */
static int64_t
open_origin (nbdkit_backend *backend)
{
  int64_t size;

  origin_ctx = nbdkit_next_context_open (backend, !params.writes_both, "", 1);
  if (origin_ctx == NULL) {
    nbdkit_error ("cannot open the origin");
    return -1;
  }
  if (origin_ctx->prepare (origin_ctx) == -1)
    return -1;
  size = origin_ctx->get_size (origin_ctx);
  if (size == -1 || origin_from_next (&origin, origin_ctx) == -1)
    return -1;
  if (size != probed[0].size) {
    nbdkit_error ("size mismatch: the origin is %" PRIi64 " bytes but "
                  "shadow %s is %" PRIi64 " bytes: they must be equal",
                  size, probed[0].uri, probed[0].size);
    return -1;
  }
  if (params.writes_both && !origin.can_write) {
    nbdkit_error ("shadow-writes=both: the origin is not writable");
    return -1;
  }
  return size;
}

static void shadow_cleanup (nbdkit_backend *backend);

static void
close_origins (void *opaque)
{
  mutex_lock (&origin_lock);
  if (origin_ctx) {
    origin_ctx->finalize (origin_ctx);
    nbdkit_next_context_close (origin_ctx);
    origin_ctx = NULL;
  }
  mutex_unlock (&origin_lock);
}

static int
persist_phase (void *opaque, int phase)
{
  return state_set_phase (state, phase);
}

static void
get_state_stats (void *opaque, uint64_t *journal, uint64_t *snapshot)
{
  struct state_stats st;

  state_get_stats (state, &st);
  *journal = st.journal_bytes;
  *snapshot = st.snapshot_bytes;
}

/* Where the control socket goes: shadow-control, else STATE/control.sock. */
static char *
control_path (void)
{
  char *path = NULL;

  if (params.control)
    return strdup (params.control);
  if (params.state_dir &&
      asprintf (&path, "%s/control.sock", params.state_dir) == -1)
    return NULL;
  return path;
}

static int
start_control (void)
{
  char *path = control_path ();

  if (path == NULL) {
    nbdkit_debug ("shadow: no shadow-state or shadow-control: no control "
                  "socket");
    return 0;
  }
  control = control_start (path, migration_control, migration);
  free (path);
  return control ? 0 : -1;
}

static uint32_t
max_transfer (void)
{
  uint32_t max = MAX_TRANSFER;

  if (shadow_debug_max_transfer_kib > 0)   /* at most 64M, as a block */
    max = (uint32_t) (shadow_debug_max_transfer_kib < 65536 ?
                      shadow_debug_max_transfer_kib : 65536) * 1024;
  return max > params.block_size ? max : params.block_size;
}

static unsigned
copier_workers (void)
{
  if (shadow_debug_copier_workers <= 0)
    return COPIER_WORKERS;
  return shadow_debug_copier_workers < 64 ?
    (unsigned) shadow_debug_copier_workers : 64;
}

static unsigned
copier_idle_workers (void)
{
  unsigned busy = copier_workers ();
  unsigned idle = COPIER_IDLE_WORKERS;

  if (shadow_debug_copier_idle_workers > 0)
    idle = shadow_debug_copier_idle_workers < 64 ?
      (unsigned) shadow_debug_copier_idle_workers : 64;
  return idle > busy ? idle : busy;
}

static uint32_t
origin_idle_read (void)
{
  int kib = shadow_debug_origin_idle_read_kib;

  if (kib <= 0)
    return IDLE_ORIGIN_READ;
  return kib >= 32768 ? 0 : (uint32_t) kib * 1024;
}

static void
tick (void *opaque, double now)
{
  migration_tick (opaque);
  bufpool_tick ();
}

static int
shadow_after_fork (nbdkit_backend *backend)
{
  struct engine_config ecfg;
  struct volume_config vcfg;
  struct migration_config mcfg;
  int64_t size = probed[0].size;
  bool origin_live = load_phase < PHASE_CUTOVER;

  /* After cutover the origin is never touched again, not even opened. */
  if (origin_live && (size = open_origin (backend)) == -1)
    goto fail;
  if (shadow_debug_buffer_pool_kib != 0)
    bufpool_set_limit (shadow_debug_buffer_pool_kib < 0 ? 0 :
                       (size_t) shadow_debug_buffer_pool_kib * 1024);
  ecfg = engine_config_of (size);
  engine = engine_start (&ecfg);
  if (engine == NULL)
    goto fail;
  vcfg = (struct volume_config) {
    .size = size,
    .block_size = params.block_size,
    .writes_both = params.writes_both,
    .commit_interval = shadow_debug_commit_interval_ms > 0 ?
      shadow_debug_commit_interval_ms / 1000.0 : 1.0,
    .res = loaded,
    .persist = state ? persist_marks : NULL,
    /* In shadow-writes=both mode verify compares every block anyway. */
    .intent = state && !params.writes_both ? persist_intent : NULL,
    .test_commit_delay_ms = shadow_debug_commit_delay_ms,
    .test_no_copy_on_read = shadow_debug_no_copy_on_read,
    .origin_read_max = shadow_debug_origin_read_kib > 0 &&
      shadow_debug_origin_read_kib <= 32768 ?
      (uint32_t) shadow_debug_origin_read_kib * 1024 : 0,
    .origin_idle_read_max = origin_idle_read (),
    .access_fn = prefetcher_note,
    .access_opaque = prefetcher,
  };
  volume = volume_new (&vcfg, engine);
  if (volume == NULL)
    goto fail;
  loaded = NULL;                /* the volume owns it now */
  volume_set_phase (volume, load_phase);
  if (volume_start_committer (volume) == -1)
    goto fail;

  mcfg = (struct migration_config) {
    .volume = volume, .engine = engine,
    .worker_origin = &origin, .nr_workers = copier_workers (),
    .nr_idle_workers = copier_idle_workers (),
    .verify_origin = &origin,
    .background = params.background, .rate = params.rate,
    .max_transfer = max_transfer (),
    .shadow_read_feedback = !shadow_debug_no_shadow_read_feedback,
    .cutover_auto = params.cutover_auto,
    .prefetcher = prefetcher,
    .set_phase = state ? persist_phase : NULL,
    .close_origins = close_origins,
    .state_stats = state ? get_state_stats : NULL,
    .state_dir = params.state_dir,
  };
  migration = migration_start (&mcfg);
  if (migration == NULL || start_control () == -1)
    goto fail;
  engine_set_tick (engine, tick, migration, TICK_INTERVAL);
  nbdkit_debug ("shadow: %zu shadow(s), %" PRIi64 " bytes, block size %"
                PRIu32 ", phase %s", params.nr_shadows, size,
                params.block_size, phase_name (load_phase));
  return 0;

 fail:
  shadow_cleanup (backend);
  return -1;
}

static void
shadow_cleanup (nbdkit_backend *backend)
{
  if (engine)
    engine_set_tick (engine, NULL, NULL, 0);
  control_stop (control);
  control = NULL;
  /* Its thread queues work through the migration: stop it first. */
  prefetcher_free (prefetcher);
  prefetcher = NULL;
  migration_stop (migration);
  migration = NULL;
  if (volume && volume_close (volume) == -1)
    nbdkit_error ("final commit failed: blocks copied since the last "
                  "commit will be copied again");
  volume = NULL;
  engine_stop (engine);
  engine = NULL;
  bufpool_drain ();             /* every buffer is back: nothing uses them */
  close_origins (NULL);
  if (state)
    state_close (state);
  state = NULL;
  residency_free (loaded);
  loaded = NULL;
  /* With -v: the time a test measures to this line is the filter's
   * own (the C library's exit handlers come after). */
  nbdkit_debug ("shadow: stopped");
}

static void *
shadow_open (nbdkit_next_open *next, nbdkit_context *nxdata, int readonly,
             const char *exportname, int is_tls)
{
  struct shadow_handle *h;

  /* Every client sees the one volume being migrated: the origin's
   * default export.  In shadow-writes=shadow mode the origin is opened
   * read-only, so that nothing can ever write to it.
   */
  if (next (nxdata, readonly || !params.writes_both, "") == -1)
    return NULL;
  h = calloc (1, sizeof *h);
  if (h == NULL) {
    nbdkit_error ("calloc: %m");
    return NULL;
  }
  return h;
}

static void
shadow_close (void *handle)
{
  free (handle);
}

static int
shadow_prepare (nbdkit_next *next, void *handle, int readonly)
{
  struct shadow_handle *h = handle;
  int64_t size;

  /* nbdkit needs the size of a context before any I/O on it. */
  size = next->get_size (next);
  if (size == -1)
    return -1;
  if ((uint64_t) size != volume->cfg.size) {
    nbdkit_error ("the origin's size changed from %" PRIu64 " to %" PRIi64
                  " bytes: refusing the connection", volume->cfg.size, size);
    return -1;
  }
  return origin_from_next (&h->origin, next);
}

static int64_t
shadow_get_size (nbdkit_next *next, void *handle)
{
  return volume->cfg.size;
}

static const char *
shadow_export_description (nbdkit_next *next, void *handle)
{
  char line[256];

  volume_status_line (volume, line, sizeof line);
  return nbdkit_strdup_intern (line);
}

static int
shadow_can_write (nbdkit_next *next, void *handle)
{
  return 1;
}

static int
shadow_can_flush (nbdkit_next *next, void *handle)
{
  return 1;
}

static int
shadow_can_fua (nbdkit_next *next, void *handle)
{
  return NBDKIT_FUA_NATIVE;
}

static int
shadow_can_zero (nbdkit_next *next, void *handle)
{
  return NBDKIT_ZERO_NATIVE;
}

static int
shadow_can_fast_zero (nbdkit_next *next, void *handle)
{
  return 1;                     /* and volume_zero refuses it at once */
}

static int
shadow_can_trim (nbdkit_next *next, void *handle)
{
  return 1;
}

static int
shadow_can_extents (nbdkit_next *next, void *handle)
{
  return 1;
}

static int
shadow_can_cache (nbdkit_next *next, void *handle)
{
  return NBDKIT_CACHE_NATIVE;
}

static int
shadow_can_multi_conn (nbdkit_next *next, void *handle)
{
  /* Flushes commit every shadow through shared connections, so a flush on
   * any client connection covers all of them; the origin's writes in
   * shadow-writes=both mode are only as consistent as the origin says.
   */
  if (params.writes_both)
    return next->can_multi_conn (next);
  return 1;
}

static uint32_t
volume_flags (uint32_t flags)
{
  uint32_t f = 0;

  if (flags & NBDKIT_FLAG_FUA)
    f |= VOLUME_FLAG_FUA;
  if (flags & NBDKIT_FLAG_MAY_TRIM)
    f |= VOLUME_FLAG_MAY_TRIM;
  if (flags & NBDKIT_FLAG_FAST_ZERO)
    f |= VOLUME_FLAG_FAST_ZERO;
  if (flags & NBDKIT_FLAG_REQ_ONE)
    f |= VOLUME_FLAG_REQ_ONE;
  return f;
}

static int
shadow_pread (nbdkit_next *next, void *handle, void *buf, uint32_t count,
              uint64_t offset, uint32_t flags, int *err)
{
  struct shadow_handle *h = handle;

  return volume_pread (volume, &h->origin, buf, count, offset, err);
}

static int
shadow_pwrite (nbdkit_next *next, void *handle, const void *buf,
               uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  struct shadow_handle *h = handle;

  return volume_pwrite (volume, &h->origin, buf, count, offset,
                        volume_flags (flags), err);
}

static int
shadow_zero (nbdkit_next *next, void *handle, uint32_t count,
             uint64_t offset, uint32_t flags, int *err)
{
  struct shadow_handle *h = handle;

  return volume_zero (volume, &h->origin, count, offset,
                      volume_flags (flags), err);
}

static int
shadow_trim (nbdkit_next *next, void *handle, uint32_t count,
             uint64_t offset, uint32_t flags, int *err)
{
  struct shadow_handle *h = handle;

  return volume_trim (volume, &h->origin, count, offset,
                      volume_flags (flags), err);
}

static int
shadow_flush (nbdkit_next *next, void *handle, uint32_t flags, int *err)
{
  struct shadow_handle *h = handle;

  return volume_flush (volume, &h->origin, err);
}

static int
shadow_cache (nbdkit_next *next, void *handle, uint32_t count,
              uint64_t offset, uint32_t flags, int *err)
{
  struct shadow_handle *h = handle;

  return volume_cache (volume, &h->origin, count, offset, err);
}

struct extents_ctx {
  struct nbdkit_extents *extents;
  int failed;
};

static void
add_extent (void *opaque, uint64_t offset, uint64_t length, uint32_t type)
{
  struct extents_ctx *x = opaque;

  if (!x->failed &&
      nbdkit_add_extent (x->extents, offset, length,
                         type & (NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO)) == -1)
    x->failed = errno ? errno : EIO;
}

static int
shadow_extents (nbdkit_next *next, void *handle, uint32_t count,
                uint64_t offset, uint32_t flags,
                struct nbdkit_extents *extents, int *err)
{
  struct shadow_handle *h = handle;
  struct extents_ctx x = { .extents = extents };

  if (volume_extents (volume, &h->origin, count, offset,
                      volume_flags (flags), add_extent, &x, err) == -1)
    return -1;
  if (x.failed) {
    *err = x.failed;
    return -1;
  }
  return 0;
}

static struct nbdkit_filter filter = {
  .name = "shadow",
  .longname = "nbdkit shadow filter: live migration to a new volume",
  .load = shadow_load,
  .config = shadow_config,
  .config_complete = shadow_config_complete,
  .config_help = SHADOW_CONFIG_HELP,
  .get_ready = shadow_get_ready,
  .after_fork = shadow_after_fork,
  .cleanup = shadow_cleanup,
  .open = shadow_open,
  .close = shadow_close,
  .prepare = shadow_prepare,
  .get_size = shadow_get_size,
  .export_description = shadow_export_description,
  .can_write = shadow_can_write,
  .can_flush = shadow_can_flush,
  .can_fua = shadow_can_fua,
  .can_zero = shadow_can_zero,
  .can_fast_zero = shadow_can_fast_zero,
  .can_trim = shadow_can_trim,
  .can_extents = shadow_can_extents,
  .can_cache = shadow_can_cache,
  .can_multi_conn = shadow_can_multi_conn,
  .pread = shadow_pread,
  .pwrite = shadow_pwrite,
  .zero = shadow_zero,
  .trim = shadow_trim,
  .flush = shadow_flush,
  .cache = shadow_cache,
  .extents = shadow_extents,
};

NBDKIT_REGISTER_FILTER (filter)
