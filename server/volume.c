/* nbdshadow: the volume being migrated and its data path (volume.h). */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "volume.h"
#include "copyop.h"
#include "lockutil.h"
#include "log.h"

#define ORIGIN_CHUNK (32 * 1024 * 1024) /* largest origin read at once */

/* ---------------------------------------------------------------------- */
/* Life cycle. */

/* Writer-preferring, so that a cutover waiting for the gate is not
 * starved by a steady stream of client requests.
 */
static int
init_io_gate (pthread_rwlock_t *gate)
{
  pthread_rwlockattr_t attr;
  int r;

  r = pthread_rwlockattr_init (&attr);
  if (r == 0)
    r = pthread_rwlockattr_setkind_np (&attr,
                                       PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  if (r == 0)
    r = pthread_rwlock_init (gate, &attr);
  pthread_rwlockattr_destroy (&attr);
  return r;
}

struct volume *
volume_new (const struct volume_config *cfg, struct engine *engine)
{
  struct volume *v = calloc (1, sizeof *v);

  if (v == NULL) {
    shadow_error ("volume: out of memory");
    return NULL;
  }
  v->cfg = *cfg;
  if (v->cfg.copy_memory == 0)
    v->cfg.copy_memory = 256 * 1024 * 1024;
  v->engine = engine;
  v->res = cfg->res ? cfg->res : residency_new (cfg->size, cfg->block_size);
  if (v->res == NULL) {
    shadow_error ("volume: cannot create the residency map for %" PRIu64
                  " bytes: %s", cfg->size, strerror (errno));
    free (v);
    return NULL;
  }
  if (rangelock_init (&v->locks) == -1) {
    shadow_error ("volume: cannot create locks: %s", strerror (errno));
    residency_free (v->res);
    free (v);
    return NULL;
  }
  pthread_mutex_init (&v->copy_lock, NULL);
  pthread_mutex_init (&v->requeue_lock, NULL);
  pthread_cond_init (&v->copy_idle, NULL);
  pthread_mutex_init (&v->rate_lock, NULL);
  pthread_mutex_init (&v->prefetch_lock, NULL);
  v->prefetched = blockset_new (v->res->nr_blocks);
  if (v->prefetched == NULL || init_io_gate (&v->io_gate) != 0) {
    shadow_error ("volume: cannot create the I/O gate");
    if (v->prefetched)
      blockset_free (v->prefetched);
    residency_free (v->res);
    free (v);
    return NULL;
  }
  atomic_init (&v->phase, PHASE_COPYING);
  return v;
}

/* The committer starts separately so that persisted marks can be loaded
 * into v->res first (see volume_start_committer).
 */
int
volume_start_committer (struct volume *v)
{
  v->committer = committer_start (v->res, v->engine, v->cfg.persist,
                                  v->cfg.persist_opaque,
                                  v->cfg.commit_interval,
                                  v->cfg.test_commit_delay_ms);
  return v->committer ? 0 : -1;
}

void
volume_wait_copies (struct volume *v)
{
  mutex_lock (&v->copy_lock);
  while (v->copies_in_flight > 0)
    cond_wait (&v->copy_idle, &v->copy_lock);
  mutex_unlock (&v->copy_lock);
}

void
volume_set_requeue (struct volume *v,
                    bool (*fn) (void *opaque, uint64_t first, uint64_t count),
                    void *opaque)
{
  mutex_lock (&v->requeue_lock);
  v->requeue_fn = fn;
  v->requeue_opaque = opaque;
  mutex_unlock (&v->requeue_lock);
}

int
volume_close (struct volume *v)
{
  int r = 0;

  if (v == NULL)
    return 0;
  volume_wait_copies (v);
  if (v->committer)
    r = committer_stop (v->committer);
  rangelock_destroy (&v->locks);
  residency_free (v->res);
  pthread_cond_destroy (&v->copy_idle);
  pthread_mutex_destroy (&v->copy_lock);
  pthread_mutex_destroy (&v->requeue_lock);
  pthread_mutex_destroy (&v->rate_lock);
  pthread_rwlock_destroy (&v->io_gate);
  blockset_free (v->prefetched);
  pthread_mutex_destroy (&v->prefetch_lock);
  free (v);
  return r;
}

enum phase
volume_phase (struct volume *v)
{
  return atomic_load (&v->phase);
}

void
volume_set_phase (struct volume *v, enum phase p)
{
  atomic_store (&v->phase, p);
}

const char *
phase_name (enum phase p)
{
  switch (p) {
  case PHASE_COPYING: return "copying";
  case PHASE_SYNCED: return "synced";
  case PHASE_VERIFYING: return "verifying";
  case PHASE_CUTOVER: return "cutover";
  case PHASE_DONE: return "done";
  }
  return "unknown";
}

/* ---------------------------------------------------------------------- */
/* Helpers. */

static uint64_t
block_start (struct volume *v, uint64_t blk)
{
  return residency_block_offset (v->res, blk);
}

/* End offset of block blk, clipped to the volume (last block partial). */
static uint64_t
block_end (struct volume *v, uint64_t blk)
{
  return block_start (v, blk) + residency_block_bytes (v->res, blk);
}

static bool
origin_is_live (struct volume *v)
{
  return volume_phase (v) < PHASE_CUTOVER;
}

static bool
writes_to_origin (struct volume *v)
{
  return v->cfg.writes_both && origin_is_live (v);
}

/* Synchronous shadow I/O. */
static int
shadow_sync (struct volume *v, enum shadow_op op, int target, void *buf,
             uint64_t count, uint64_t offset, uint32_t flags, int *err)
{
  struct shadow_io io = {
    .op = op, .target = target, .buf = buf, .count = count,
    .offset = offset, .flags = flags, .priority = SHADOW_PRIO_CLIENT,
  };

  if (engine_run (v->engine, &io) == -1) {
    STAT_ADD (v->stats.shadow_errors, 1);
    *err = errno;
    return -1;
  }
  return 0;
}

/* Read [offset, offset+count) from the origin in chunks it accepts. */
static int
origin_read (struct volume *v, struct origin *o, char *buf, uint64_t count,
             uint64_t offset, int *err)
{
  while (count > 0) {
    uint32_t n = count > ORIGIN_CHUNK ? ORIGIN_CHUNK : count;

    if (o->ops->pread (o->ctx, buf, n, offset, err) == -1) {
      STAT_ADD (v->stats.origin_errors, 1);
      shadow_error ("origin: read of %" PRIu32 " bytes at %" PRIu64
                    " failed: %s", n, offset, strerror (*err));
      return -1;
    }
    buf += n;
    offset += n;
    count -= n;
  }
  return 0;
}

static int
commit_for_client (struct volume *v, int *err)
{
  if (committer_wait (v->committer) == -1) {
    *err = errno;
    return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Read. */

/* A run of blocks with one state, snapshotted at the start of a read. */
struct run {
  uint64_t first, end;
  bool resident;
};

struct read_group {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  unsigned pending;
  int err;
};

static void
read_group_done (struct shadow_io *io)
{
  struct read_group *g = io->opaque;

  mutex_lock (&g->lock);
  if (io->err && g->err == 0)
    g->err = io->err;
  if (--g->pending == 0)
    cond_signal (&g->cond);
  mutex_unlock (&g->lock);
}

/* Snapshot the runs of [first, end).  *runs is the caller's array of
 * *cap elements, replaced by a heap array when more are needed.
 */
static size_t
snapshot_runs (struct volume *v, uint64_t first, uint64_t end,
               struct run **runs, size_t *cap, bool *heap)
{
  size_t n = 0;

  while (first < end) {
    bool resident;
    uint64_t run_end = residency_run_end (v->res, first, end, &resident);

    if (n == *cap) {
      size_t ncap = *cap * 4;
      struct run *nv = malloc (ncap * sizeof *nv);

      if (nv == NULL)
        return SIZE_MAX;
      memcpy (nv, *runs, n * sizeof *nv);
      if (*heap)
        free (*runs);
      *runs = nv;
      *cap = ncap;
      *heap = true;
    }
    (*runs)[n++] = (struct run) { first, run_end, resident };
    first = run_end;
  }
  return n;
}

/* Serve the part [offset, offset+count) of an absent run from the origin,
 * reading whole blocks, and copy them to the shadow.
 */
static int
read_absent_run (struct volume *v, struct origin *o, char *dst,
                 uint64_t offset, uint64_t count, const struct run *run,
                 int *err)
{
  uint64_t start = block_start (v, run->first);
  uint64_t len = block_end (v, run->end - 1) - start;
  struct wlog_data *blocks = wlog_data_new (len);

  if (blocks == NULL) {
    *err = ENOMEM;
    return -1;
  }
  if (origin_read (v, o, blocks->bytes, len, start, err) == -1) {
    wlog_data_put (blocks);
    return -1;
  }
  memcpy (dst, blocks->bytes + (offset - start), count);
  STAT_ADD (v->stats.read_bytes_origin, count);
  if (v->cfg.test_no_copy_on_read) {
    wlog_data_put (blocks);
    return 0;
  }
  /* The copy owns the buffer from here (and hands it to the log). */
  copy_from_buffer (v, blocks, run->first, run->end - run->first,
                    COPY_ON_DEMAND);
  return 0;
}

/* *from_shadow: was all of it read from the shadow? */
static int
do_pread (struct volume *v, struct origin *o, void *buf, uint32_t count,
          uint64_t offset, bool *from_shadow, int *err)
{
  struct run stack_runs[8], *runs = stack_runs;
  size_t cap = 8, nr_runs, i, nr_ios = 0;
  bool heap = false;
  struct shadow_io stack_ios[8], *ios = stack_ios;
  struct read_group g = { .pending = 1 };
  uint64_t first, end;
  int ret = 0;

  STAT_ADD (v->stats.read_ops, 1);
  *from_shadow = false;
  if (count == 0)
    return 0;
  if (!origin_is_live (v)) {
    *from_shadow = true;
    STAT_ADD (v->stats.read_bytes_shadow, count);
    return shadow_sync (v, SHADOW_READ, SHADOW_ANY, buf, count, offset, 0,
                        err);
  }

  first = residency_block_of (v->res, offset);
  end = residency_block_of (v->res, offset + count - 1) + 1;
  nr_runs = snapshot_runs (v, first, end, &runs, &cap, &heap);
  if (nr_runs == SIZE_MAX) {
    *err = ENOMEM;
    return -1;
  }
  if (nr_runs > 8) {
    ios = calloc (nr_runs, sizeof *ios);
    if (ios == NULL) {
      if (heap)
        free (runs);
      *err = ENOMEM;
      return -1;
    }
  }
  pthread_mutex_init (&g.lock, NULL);
  pthread_cond_init (&g.cond, NULL);

  /* Resident runs are read from the shadow in parallel with the origin
   * reads of the absent runs.
   */
  for (i = 0; i < nr_runs; ++i) {
    uint64_t s = block_start (v, runs[i].first);
    uint64_t e = block_start (v, runs[i].end);
    uint64_t lo = s > offset ? s : offset;
    uint64_t hi = e < offset + count ? e : offset + count;
    char *dst = (char *) buf + (lo - offset);

    if (runs[i].resident) {
      struct shadow_io *io = &ios[nr_ios++];

      *io = (struct shadow_io) {
        .op = SHADOW_READ, .target = SHADOW_ANY, .buf = dst,
        .offset = lo, .count = hi - lo, .priority = SHADOW_PRIO_CLIENT,
        .done = read_group_done, .opaque = &g,
      };
      mutex_lock (&g.lock);
      g.pending++;
      mutex_unlock (&g.lock);
      STAT_ADD (v->stats.read_bytes_shadow, hi - lo);
      volume_note_client_touch (v, runs[i].first, runs[i].end - runs[i].first,
                                true);
      engine_submit (v->engine, io);
    }
    else if (read_absent_run (v, o, dst, lo, hi - lo, &runs[i], err) == -1) {
      ret = -1;
      break;                    /* still wait for the shadow reads */
    }
  }
  *from_shadow = nr_ios == nr_runs;

  mutex_lock (&g.lock);
  g.pending--;
  while (g.pending > 0)
    cond_wait (&g.cond, &g.lock);
  mutex_unlock (&g.lock);
  if (ret == 0 && g.err) {
    STAT_ADD (v->stats.shadow_errors, 1);
    *err = g.err;
    ret = -1;
  }
  pthread_cond_destroy (&g.cond);
  pthread_mutex_destroy (&g.lock);
  if (ios != stack_ios)
    free (ios);
  if (heap)
    free (runs);
  return ret;
}

/* ---------------------------------------------------------------------- */
/* Write and zero. */

/* Is block blk only partly covered by [offset, end)? */
static bool
partly_covered (struct volume *v, uint64_t blk, uint64_t offset,
                uint64_t end)
{
  return offset > block_start (v, blk) || end < block_end (v, blk);
}

/* The blocks at the edges of a client update that must be filled from
 * the origin first: absent and only partly covered.  Caller holds the
 * range lock.
 */
struct edges {
  uint64_t first, end;          /* blocks touched */
  bool fill_head, fill_tail;    /* fill_tail is never the head block */
};

static void
find_edges (struct volume *v, uint64_t offset, uint64_t count,
            struct edges *ed)
{
  uint64_t stop = offset + count;

  ed->first = residency_block_of (v->res, offset);
  ed->end = residency_block_of (v->res, stop - 1) + 1;
  ed->fill_head = partly_covered (v, ed->first, offset, stop) &&
    !residency_is_resident (v->res, ed->first);
  ed->fill_tail = ed->end - 1 != ed->first &&
    partly_covered (v, ed->end - 1, offset, stop) &&
    !residency_is_resident (v->res, ed->end - 1);
}

/* Read block blk from the origin into buf. */
static int
fill_block (struct volume *v, struct origin *o, char *buf, uint64_t blk,
            int *err)
{
  STAT_ADD (v->stats.fill_reads, 1);
  return origin_read (v, o, buf, residency_block_bytes (v->res, blk),
                      block_start (v, blk), err);
}

/* Write client data (or zeroes if data is NULL) to every shadow, filling
 * absent edge blocks from the origin.  Caller holds the range lock if
 * any block is absent.
 */
static int
update_shadow (struct volume *v, struct origin *o, const struct edges *ed,
               const void *data, uint64_t count, uint64_t offset,
               uint32_t flags, int *err)
{
  uint64_t wstart = offset, wend = offset + count;
  char *tmp;
  int r;

  /* The filled blocks are written whole: a write strictly inside one
   * absent block fills both its sides from the head block.
   */
  if (ed->fill_head) {
    wstart = block_start (v, ed->first);
    if (wend < block_end (v, ed->first))
      wend = block_end (v, ed->first);
  }
  if (ed->fill_tail)
    wend = block_end (v, ed->end - 1);

  if (!ed->fill_head && !ed->fill_tail) {
    if (data)
      return shadow_sync (v, SHADOW_WRITE, SHADOW_ALL, (void *) data, count,
                          offset, 0, err);
    return shadow_sync (v, SHADOW_ZERO, SHADOW_ALL, NULL, count, offset,
                        flags & VOLUME_FLAG_MAY_TRIM ?
                        SHADOW_FLAG_MAY_TRIM : 0, err);
  }

  /* Merge into one buffer covering the filled blocks and the data. */
  tmp = malloc (wend - wstart);
  if (tmp == NULL) {
    *err = ENOMEM;
    return -1;
  }
  if ((ed->fill_head && fill_block (v, o, tmp, ed->first, err) == -1) ||
      (ed->fill_tail &&
       fill_block (v, o, tmp + (block_start (v, ed->end - 1) - wstart),
                   ed->end - 1, err) == -1)) {
    free (tmp);
    return -1;
  }
  if (data)
    memcpy (tmp + (offset - wstart), data, count);
  else
    memset (tmp + (offset - wstart), 0, count);
  r = shadow_sync (v, SHADOW_WRITE, SHADOW_ALL, tmp, wend - wstart, wstart,
                   0, err);
  free (tmp);
  return r;
}

/* Take the range lock of blocks [first, end) if a copy could touch any
 * of them: an absent block (copies) or a copied one a client has not
 * written yet (verify repairs those).  Once every block is written, no
 * copy ever touches them again and no lock is needed, except with
 * shadow-writes=both: there verify compares written blocks too, and its
 * repair must not fall between a write's shadow and origin halves.
 * Returns whether the lock was taken.
 */
static bool
lock_for_update (struct volume *v, struct range_hold *hold, uint64_t first,
                 uint64_t end)
{
  if (!v->cfg.writes_both &&
      !residency_any_absent (v->res, first, end - first) &&
      !residency_any_unwritten (v->res, first, end - first))
    return false;
  rangelock_acquire (&v->locks, hold, first, end - first);
  return true;
}

/* Copied blocks about to hold client data: say so durably first
 * (state.h says why).  Caller holds the range lock.
 */
static int
record_intent (struct volume *v, uint64_t first, uint64_t end, int *err)
{
  if (v->cfg.intent == NULL ||
      !residency_any_unwritten (v->res, first, end - first))
    return 0;
  if (v->cfg.intent (v->cfg.persist_opaque, first, end - first) == -1) {
    *err = errno;
    shadow_error ("recording the written-intent of blocks %" PRIu64 "..%"
                  PRIu64 " failed: %s", first, end - 1, strerror (*err));
    return -1;
  }
  return 0;
}

/* The common body of pwrite and zero (data NULL). */
static int
client_update (struct volume *v, struct origin *o, const void *data,
               uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  struct range_hold hold;
  struct edges ed;
  bool locked;
  int r;

  if (count == 0)
    return 0;
  ed.first = residency_block_of (v->res, offset);
  ed.end = residency_block_of (v->res, offset + count - 1) + 1;
  locked = lock_for_update (v, &hold, ed.first, ed.end);
  find_edges (v, offset, count, &ed);

  r = record_intent (v, ed.first, ed.end, err);
  if (r == 0)
    r = update_shadow (v, o, &ed, data, count, offset, flags, err);
  if (r == 0 && writes_to_origin (v)) {
    uint32_t oflags = flags & VOLUME_FLAG_MAY_TRIM ? ORIGIN_FLAG_MAY_TRIM : 0;

    r = data ? o->ops->pwrite (o->ctx, data, count, offset, 0, err)
      : o->ops->zero (o->ctx, count, offset, oflags, err);
    if (r == -1) {
      STAT_ADD (v->stats.origin_errors, 1);
      shadow_error ("origin: %s of %" PRIu32 " bytes at %" PRIu64
                    " failed: %s", data ? "write" : "zero", count, offset,
                    strerror (*err));
    }
  }
  if (r == 0 && residency_mark (v->res, ed.first, ed.end - ed.first,
                                MARK_WRITTEN) == -1) {
    *err = errno;
    r = -1;
  }
  if (locked)
    rangelock_release (&v->locks, &hold);
  volume_note_client_touch (v, ed.first, ed.end - ed.first, false);
  if (r == 0 && (flags & VOLUME_FLAG_FUA))
    r = commit_for_client (v, err);
  return r;
}

static int
do_pwrite (struct volume *v, struct origin *o, const void *buf,
               uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  STAT_ADD (v->stats.write_ops, 1);
  STAT_ADD (v->stats.write_bytes, count);
  return client_update (v, o, buf, count, offset, flags, err);
}

static int
do_zero (struct volume *v, struct origin *o, uint32_t count,
             uint64_t offset, uint32_t flags, int *err)
{
  STAT_ADD (v->stats.zero_ops, 1);
  /* A fast zero would have to be faster than writing: ours is not
   * (absent edge blocks need an origin read), so refuse it at once as
   * the protocol allows.
   */
  if (flags & VOLUME_FLAG_FAST_ZERO) {
    *err = ENOTSUP;
    return -1;
  }
  return client_update (v, o, NULL, count, offset, flags, err);
}

/* ---------------------------------------------------------------------- */
/* Trim. */

/* Trim whole blocks [first, end): resident runs are trimmed on the
 * shadows, absent ones become zeroes there without a copy (the client no
 * longer cares what they hold).  Either way they now hold what the client
 * made of them, so they are marked written: verify must not "repair"
 * them from the origin.  Caller holds the range lock if needed.
 */
static int
trim_whole_blocks (struct volume *v, uint64_t first, uint64_t end, int *err)
{
  uint64_t blk = first;

  while (blk < end) {
    bool resident;
    uint64_t run_end = residency_run_end (v->res, blk, end, &resident);
    uint64_t s = block_start (v, blk);
    uint64_t len = block_end (v, run_end - 1) - s;
    int r;

    if (resident)
      r = shadow_sync (v, SHADOW_TRIM, SHADOW_ALL, NULL, len, s, 0, err);
    else
      r = shadow_sync (v, SHADOW_ZERO, SHADOW_ALL, NULL, len, s,
                       SHADOW_FLAG_MAY_TRIM, err);
    if (r == -1)
      return -1;
    blk = run_end;
  }
  if (residency_mark (v->res, first, end - first, MARK_WRITTEN) == -1) {
    *err = errno;
    return -1;
  }
  return 0;
}

/* Trim is advisory: only the blocks it covers whole are trimmed; the
 * edges of a trim keep their contents.
 */
static int
do_trim (struct volume *v, struct origin *o, uint32_t count,
             uint64_t offset, uint32_t flags, int *err)
{
  uint64_t stop = offset + count;
  uint64_t first, end;
  struct range_hold hold;
  bool locked = false;
  int r = 0;

  STAT_ADD (v->stats.trim_ops, 1);
  if (count == 0)
    return 0;
  first = residency_block_of (v->res, offset);
  end = residency_block_of (v->res, stop - 1) + 1;
  if (partly_covered (v, first, offset, stop))
    first++;
  if (end > first && partly_covered (v, end - 1, offset, stop))
    end--;

  if (first < end) {
    locked = lock_for_update (v, &hold, first, end);
    r = record_intent (v, first, end, err);
    if (r == 0)
      r = trim_whole_blocks (v, first, end, err);
  }
  if (r == 0 && writes_to_origin (v) && o->can_trim &&
      o->ops->trim (o->ctx, count, offset, 0, err) == -1) {
    STAT_ADD (v->stats.origin_errors, 1);
    r = -1;
  }
  if (locked)
    rangelock_release (&v->locks, &hold);
  if (r == 0 && (flags & VOLUME_FLAG_FUA))
    r = commit_for_client (v, err);
  return r;
}

/* ---------------------------------------------------------------------- */
/* Flush and cache. */

static int
do_flush (struct volume *v, struct origin *o, int *err)
{
  STAT_ADD (v->stats.flush_ops, 1);
  if (commit_for_client (v, err) == -1)
    return -1;
  if (writes_to_origin (v) && o->can_flush &&
      o->ops->flush (o->ctx, err) == -1) {
    STAT_ADD (v->stats.origin_errors, 1);
    shadow_error ("origin: flush failed: %s", strerror (*err));
    return -1;
  }
  return 0;
}

static int
do_cache (struct volume *v, struct origin *o, uint32_t count,
              uint64_t offset, int *err)
{
  uint64_t first, end;

  STAT_ADD (v->stats.cache_ops, 1);
  if (count == 0 || !origin_is_live (v))
    return 0;
  first = residency_block_of (v->res, offset);
  end = residency_block_of (v->res, offset + count - 1) + 1;
  return volume_copy_blocks (v, o, first, end - first, COPY_ON_DEMAND, true,
                             NULL, err) == -1 ? -1 : 0;
}

/* ---------------------------------------------------------------------- */
/* Extents. */

/* Collects one source's extents, clipped and made contiguous. */
struct extent_sink {
  origin_extent_fn fn;
  void *opaque;
  uint64_t next;                /* where the next extent must start */
  uint64_t end;                 /* stop here */
};

static void
sink_add (void *opaque, uint64_t offset, uint64_t length, uint32_t type)
{
  struct extent_sink *sk = opaque;
  uint64_t stop = offset + length;

  /* Ignore anything not continuing the reported range. */
  if (offset > sk->next || stop <= sk->next || sk->next >= sk->end)
    return;
  if (stop > sk->end)
    stop = sk->end;
  sk->fn (sk->opaque, sk->next, stop - sk->next, type);
  sk->next = stop;
}

static int
do_extents (struct volume *v, struct origin *o, uint32_t count,
                uint64_t offset, uint32_t flags, origin_extent_fn fn,
                void *opaque, int *err)
{
  uint64_t stop = offset + count;
  uint64_t blk, end;
  struct extent_sink sk = { .fn = fn, .opaque = opaque, .next = offset };
  bool req_one = flags & VOLUME_FLAG_REQ_ONE;

  if (count == 0)
    return 0;
  blk = residency_block_of (v->res, offset);
  end = residency_block_of (v->res, stop - 1) + 1;
  while (blk < end) {
    bool resident = !origin_is_live (v);
    uint64_t run_end = resident ? end
      : residency_run_end (v->res, blk, end, &resident);
    uint64_t hi = block_start (v, run_end);

    if (hi > stop)
      hi = stop;
    sk.end = hi;
    if (resident) {
      struct shadow_io io = {
        .op = SHADOW_BLOCK_STATUS, .target = SHADOW_ANY,
        .offset = sk.next, .count = hi - sk.next,
        .priority = SHADOW_PRIO_CLIENT, .extent_fn = sink_add, .opaque = &sk,
      };

      if (engine_run (v->engine, &io) == -1) {
        *err = errno;
        return -1;
      }
    }
    else if (!o->can_extents)
      sink_add (&sk, sk.next, hi - sk.next, 0);
    else if (o->ops->extents (o->ctx, hi - sk.next, sk.next, req_one,
                              sink_add, &sk, err) == -1) {
      STAT_ADD (v->stats.origin_errors, 1);
      return -1;
    }
    /* A source that answered for a prefix only ends the reply here: the
     * client asks again from where it stops.
     */
    if (sk.next < hi || req_one)
      break;
    blk = run_end;
  }
  if (sk.next == offset) {      /* nothing reported: say "data" */
    sk.end = stop;
    sink_add (&sk, offset, count, 0);
  }
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Prefetch accounting. */

void
volume_note_prefetched (struct volume *v, uint64_t first, uint64_t count)
{
  uint64_t before, after;

  mutex_lock (&v->prefetch_lock);
  before = blockset_count (v->prefetched);
  if (blockset_set_range (v->prefetched, first, count) == 0) {
    after = blockset_count (v->prefetched);
    atomic_fetch_add (&v->prefetch_outstanding, after - before);
  }
  mutex_unlock (&v->prefetch_lock);
}

/* A client read (used) or wrote (wasted: the copy did not save it an
 * origin read) prefetched blocks in [first, first+count).  Costs one
 * atomic load while nothing prefetched is outstanding.
 */
void
volume_note_client_touch (struct volume *v, uint64_t first, uint64_t count,
                          bool read)
{
  uint64_t before, hit;

  if (atomic_load_explicit (&v->prefetch_outstanding,
                            memory_order_relaxed) == 0)
    return;
  mutex_lock (&v->prefetch_lock);
  before = blockset_count (v->prefetched);
  if (blockset_clear_range (v->prefetched, first, count) == 0) {
    hit = before - blockset_count (v->prefetched);
    if (hit) {
      atomic_fetch_sub (&v->prefetch_outstanding, hit);
      if (read)
        STAT_ADD (v->stats.prefetch_used, hit);
      else
        STAT_ADD (v->stats.prefetch_wasted, hit);
    }
  }
  mutex_unlock (&v->prefetch_lock);
}

/* ---------------------------------------------------------------------- */
/* Client entry points: the I/O gate and latency measurement around each. */

static double
monotonic_us (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Cutover closes the gate (a writer lock) to pause client I/O. */
static double
client_enter (struct volume *v)
{
  LOCKUTIL_CHECK (pthread_rwlock_rdlock (&v->io_gate));
  atomic_fetch_add_explicit (&v->clients_active, 1, memory_order_relaxed);
  return monotonic_us ();
}

/* Add a request of us microseconds to a latency word (count in the top
 * bits, sum below).  No sample may carry into the count: one of over
 * three months (!) counts as that long.  The copier's tick empties the
 * words twice a second; once no copier runs, nothing reads them, and the
 * sum may in the end (after 2^44 us of requests) wrap into the count
 * unread.
 */
static void
add_latency (_Atomic uint64_t *word, uint64_t us)
{
  if (us > CLIENT_LAT_SUM_MASK / 2)
    us = CLIENT_LAT_SUM_MASK / 2;
  atomic_fetch_add_explicit (word, (UINT64_C (1) << CLIENT_LAT_SUM_BITS) + us,
                             memory_order_relaxed);
}

static void
take_latency (_Atomic uint64_t *word, uint64_t *count, double *mean_us)
{
  uint64_t w = atomic_exchange (word, 0);
  uint64_t sum = w & CLIENT_LAT_SUM_MASK;

  *count = w >> CLIENT_LAT_SUM_BITS;
  *mean_us = *count ? (double) sum / *count : 0;
}

/* also_word: a second latency word the request counts in (the shadow
 * reads' for a read the shadow served alone), or NULL.  It is added
 * before the request counts as ended, so that a tick which finds the
 * clients idle finds this sample taken too. */
static void
client_leave (struct volume *v, double t0, _Atomic uint64_t *also_word)
{
  double now = monotonic_us ();
  uint64_t us = (uint64_t) (now - t0);

  add_latency (&v->client_lat, us);
  if (also_word)
    add_latency (also_word, us);
  atomic_store_explicit (&v->client_last_us, (uint64_t) now,
                         memory_order_relaxed);
  /* Release: whoever sees the count drop sees the samples above. */
  atomic_fetch_sub_explicit (&v->clients_active, 1, memory_order_release);
  LOCKUTIL_CHECK (pthread_rwlock_unlock (&v->io_gate));
}

bool
volume_clients_idle (struct volume *v, double quiet_s)
{
  uint64_t last = atomic_load_explicit (&v->client_last_us,
                                        memory_order_relaxed);

  return atomic_load_explicit (&v->clients_active,
                               memory_order_acquire) == 0 &&
    (last == 0 || monotonic_us () - last >= quiet_s * 1e6);
}

/* Hand the access to the predictor (never blocks). */
static void
note_access (struct volume *v, int op, uint64_t offset, uint32_t count)
{
  if (v->cfg.access_fn)
    v->cfg.access_fn (v->cfg.access_opaque, op, offset, count);
}

void
volume_take_client_latency (struct volume *v, uint64_t *count,
                            double *mean_us)
{
  take_latency (&v->client_lat, count, mean_us);
}

void
volume_take_shadow_read_latency (struct volume *v, uint64_t *count,
                                 double *mean_us)
{
  take_latency (&v->shadow_read_lat, count, mean_us);
}

void
volume_pause_clients (struct volume *v)
{
  LOCKUTIL_CHECK (pthread_rwlock_wrlock (&v->io_gate));
}

void
volume_resume_clients (struct volume *v)
{
  LOCKUTIL_CHECK (pthread_rwlock_unlock (&v->io_gate));
}

int
volume_pread (struct volume *v, struct origin *o, void *buf, uint32_t count,
              uint64_t offset, int *err)
{
  double t0 = client_enter (v);
  bool from_shadow;
  int r;

  note_access (v, 'R', offset, count);
  r = do_pread (v, o, buf, count, offset, &from_shadow, err);

  client_leave (v, t0, r == 0 && from_shadow ? &v->shadow_read_lat : NULL);
  return r;
}

int
volume_pwrite (struct volume *v, struct origin *o, const void *buf,
               uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  double t0 = client_enter (v);
  int r;

  note_access (v, 'W', offset, count);
  r = do_pwrite (v, o, buf, count, offset, flags, err);

  client_leave (v, t0, NULL);
  return r;
}

int
volume_zero (struct volume *v, struct origin *o, uint32_t count,
             uint64_t offset, uint32_t flags, int *err)
{
  double t0 = client_enter (v);
  int r;

  note_access (v, 'Z', offset, count);
  r = do_zero (v, o, count, offset, flags, err);

  client_leave (v, t0, NULL);
  return r;
}

int
volume_trim (struct volume *v, struct origin *o, uint32_t count,
             uint64_t offset, uint32_t flags, int *err)
{
  double t0 = client_enter (v);
  int r;

  note_access (v, 'T', offset, count);
  r = do_trim (v, o, count, offset, flags, err);

  client_leave (v, t0, NULL);
  return r;
}

int
volume_flush (struct volume *v, struct origin *o, int *err)
{
  double t0 = client_enter (v);
  int r;

  note_access (v, 'F', 0, 0);
  r = do_flush (v, o, err);

  client_leave (v, t0, NULL);
  return r;
}

int
volume_cache (struct volume *v, struct origin *o, uint32_t count,
              uint64_t offset, int *err)
{
  double t0 = client_enter (v);
  int r = do_cache (v, o, count, offset, err);

  client_leave (v, t0, NULL);
  return r;
}

int
volume_extents (struct volume *v, struct origin *o, uint32_t count,
                uint64_t offset, uint32_t flags, origin_extent_fn fn,
                void *opaque, int *err)
{
  double t0 = client_enter (v);
  int r = do_extents (v, o, count, offset, flags, fn, opaque, err);

  client_leave (v, t0, NULL);
  return r;
}
