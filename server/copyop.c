/* nbdshadow: copying blocks from the origin to the shadows (copyop.h). */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "copyop.h"
#include "lockutil.h"
#include "log.h"

#define COPY_CHUNK (32 * 1024 * 1024) /* origin bytes per synchronous copy */

/* While clients are idle (VOLUME_CLIENTS_QUIET), copies go to the
 * shadow in commands of IDLE_COMMAND bytes, all in flight together:
 * 20-30% faster hydration than one command per transfer, but with a
 * client active the extra commands made its reads wait longer
 * (bench/results-migrate.md).
 */
#define IDLE_COMMAND (256 * 1024)

struct copy_op {
  struct volume *v;
  struct range_hold hold;
  struct wlog_data *data;       /* holds buf; handed to the engine's log */
  char *buf;
  uint64_t first, count;        /* blocks held and carried in buf */
  uint64_t bytes;               /* length of buf */
  enum copy_kind kind;
  bool zeroes;                  /* no buffer: the blocks are all zero */
  bool requeue_on_error;        /* a client read's copy (requeue_copy) */
  _Atomic unsigned pending;     /* subs not completed, +1 while submitting */
  _Atomic uint64_t copied;      /* bytes made resident */
  _Atomic int err;

  /* A synchronous op's owner waits on these; NULL-free when async. */
  bool sync;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool finished;
};

struct copy_sub {
  struct shadow_io io;          /* first: the done callback casts back */
  struct copy_op *op;
  uint64_t first, count;        /* blocks */
};

/* Does the buffer hold only zero bytes?  After checking a 16 byte
 * prefix, comparing the buffer with itself shifted by 16 checks the rest
 * with one memcmp.
 */
static bool
is_zero (const char *p, size_t n)
{
  size_t i;

  for (i = 0; i < 16 && i < n; ++i)
    if (p[i])
      return false;
  return n <= 16 || memcmp (p, p + 16, n - 16) == 0;
}

static void
account (struct volume *v, int64_t ops, int64_t bytes)
{
  mutex_lock (&v->copy_lock);
  v->copies_in_flight += ops;
  v->copy_bytes_in_flight += bytes;
  if (v->copies_in_flight == 0)
    cond_broadcast (&v->copy_idle);
  mutex_unlock (&v->copy_lock);
}

static bool
over_budget (struct volume *v, uint64_t bytes)
{
  bool over;

  mutex_lock (&v->copy_lock);
  over = v->copy_bytes_in_flight + bytes > v->cfg.copy_memory;
  mutex_unlock (&v->copy_lock);
  return over;
}

static struct copy_op *
copy_op_new (struct volume *v, struct wlog_data *data, uint64_t first,
             uint64_t count, enum copy_kind kind, bool sync)
{
  struct copy_op *op = calloc (1, sizeof *op);

  if (op == NULL)
    return NULL;
  op->v = v;
  op->data = data;
  op->buf = data ? data->bytes : NULL;
  op->first = first;
  op->count = count;
  op->bytes = residency_block_offset (v->res, first + count - 1) +
    residency_block_bytes (v->res, first + count - 1) -
    residency_block_offset (v->res, first);
  op->kind = kind;
  op->sync = sync;
  if (sync) {
    pthread_mutex_init (&op->lock, NULL);
    pthread_cond_init (&op->cond, NULL);
  }
  return op;
}

/* A client read's copy could not be made: its range was busy
 * (volume_set_requeue says why that happens), memory ran out, or a
 * shadow failed the write.  The copier copies what is still absent of
 * it, reading the origin again: rare enough.  Without this, with the
 * sweep off, nothing would ever copy those blocks unless a client read
 * them again, and the volume would never reach synced.  Any thread (the
 * engine's, for a failed write); takes requeue_lock, then the
 * migration's and the copier's locks, none of which is held while
 * waiting for the engine.
 */
static void
requeue_copy (struct volume *v, uint64_t first, uint64_t count,
              const char *why)
{
  bool queued = false;

  mutex_lock (&v->requeue_lock);
  if (v->requeue_fn)
    queued = v->requeue_fn (v->requeue_opaque, first, count);
  mutex_unlock (&v->requeue_lock);
  if (queued)
    STAT_ADD (v->stats.copies_requeued, 1);
  else
    shadow_debug ("copy of blocks %" PRIu64 "..%" PRIu64 " (%s) not (all) "
                  "handed to the copier: copier gone or its queue full "
                  "(the sweep, if on, copies them)", first,
                  first + count - 1, why);
}

/* The last sub completed: unlock, account, wake or free. */
static void
copy_op_finish (struct copy_op *op)
{
  struct volume *v = op->v;

  rangelock_release (&v->locks, &op->hold);
  if (op->requeue_on_error && atomic_load (&op->err) != 0)
    requeue_copy (v, op->first, op->count, "failed");
  wlog_data_put (op->data);     /* the log may keep it longer */
  op->data = NULL;
  op->buf = NULL;
  account (v, -1, -(int64_t) op->bytes);
  if (op->sync) {
    mutex_lock (&op->lock);
    op->finished = true;
    cond_signal (&op->cond);
    mutex_unlock (&op->lock);   /* the owner frees op after this */
  }
  else
    free (op);
}

static void
copy_op_put (struct copy_op *op)
{
  if (atomic_fetch_sub (&op->pending, 1) == 1)
    copy_op_finish (op);
}

static void
copy_sub_done (struct shadow_io *io)
{
  struct copy_sub *sub = (struct copy_sub *) io;
  struct copy_op *op = sub->op;
  struct volume *v = op->v;

  if (io->err == 0 &&
      residency_mark (v->res, sub->first, sub->count, MARK_COPIED) == 0) {
    STAT_ADD (v->stats.copied_bytes[op->kind], io->count);
    STAT_ADD (v->stats.copied_blocks[op->kind], sub->count);
    atomic_fetch_add (&op->copied, io->count);
    if (op->kind == COPY_PREFETCH)
      volume_note_prefetched (v, sub->first, sub->count);
  }
  else {
    /* Not marked: the blocks stay absent and are copied again later. */
    STAT_ADD (v->stats.copies_failed, 1);
    atomic_store (&op->err, io->err ? io->err : ENOMEM);
  }
  free (sub);
  copy_op_put (op);
}

static int
submit_sub (struct copy_op *op, uint64_t first, uint64_t count, bool zero)
{
  struct volume *v = op->v;
  struct copy_sub *sub = calloc (1, sizeof *sub);
  uint64_t start = residency_block_offset (v->res, first);
  uint64_t base = residency_block_offset (v->res, op->first);
  uint64_t end = residency_block_offset (v->res, first + count - 1) +
    residency_block_bytes (v->res, first + count - 1);

  if (sub == NULL)
    return -1;
  sub->op = op;
  sub->first = first;
  sub->count = count;
  sub->io = (struct shadow_io) {
    .op = zero ? SHADOW_ZERO : SHADOW_WRITE,
    .target = SHADOW_ALL,
    .buf = zero ? NULL : op->buf + (start - base),
    .buf_ref = zero ? NULL : wlog_data_get (op->data),
    .offset = start, .count = end - start,
    .flags = zero ? SHADOW_FLAG_MAY_TRIM : 0,
    .priority = op->kind == COPY_ON_DEMAND ?
      SHADOW_PRIO_CLIENT : SHADOW_PRIO_COPY,
    .done = copy_sub_done,
  };
  if (op->kind != COPY_ON_DEMAND &&
      volume_clients_idle (v, VOLUME_CLIENTS_QUIET))
    sub->io.max_command = IDLE_COMMAND;
  atomic_fetch_add (&op->pending, 1);
  engine_submit (v->engine, &sub->io);
  return 0;
}

/* Submit the still-absent blocks of [a, b) as runs of data and zeroes. */
static int
submit_absent_run (struct copy_op *op, uint64_t a, uint64_t b)
{
  struct volume *v = op->v;
  uint64_t base = residency_block_offset (v->res, op->first);
  uint64_t start = a;
  bool zero = false;
  uint64_t blk;

  if (op->zeroes)
    return submit_sub (op, a, b - a, true);
  for (blk = a; blk <= b; ++blk) {
    bool z = false;

    if (blk < b) {
      uint64_t off = residency_block_offset (v->res, blk) - base;

      z = is_zero (op->buf + off, residency_block_bytes (v->res, blk));
      if (blk == start) {
        zero = z;
        continue;
      }
    }
    if (blk == b || z != zero) {
      if (submit_sub (op, start, blk - start, zero) == -1)
        return -1;
      start = blk;
      zero = z;
    }
  }
  return 0;
}

/* Caller holds op's range lock.  Submits a write (or zero) for every
 * block still absent; blocks that became resident since the data was
 * read are skipped: never overwrite newer data.
 */
static void
copy_op_submit (struct copy_op *op)
{
  struct volume *v = op->v;
  uint64_t blk = op->first, end = op->first + op->count;

  atomic_store (&op->pending, 1);
  while (blk < end) {
    bool resident;
    uint64_t run_end = residency_run_end (v->res, blk, end, &resident);

    if (!resident && submit_absent_run (op, blk, run_end) == -1) {
      shadow_error ("copy of blocks %" PRIu64 "..%" PRIu64
                    ": out of memory", blk, run_end - 1);
      atomic_store (&op->err, ENOMEM);
      break;
    }
    blk = run_end;
  }
  copy_op_put (op);
}

/* Wait for a synchronous op, free it, return its error. */
static int
copy_op_wait (struct copy_op *op, uint64_t *copied)
{
  int err;

  mutex_lock (&op->lock);
  while (!op->finished)
    cond_wait (&op->cond, &op->lock);
  mutex_unlock (&op->lock);
  err = atomic_load (&op->err);
  *copied = atomic_load (&op->copied);
  pthread_cond_destroy (&op->cond);
  pthread_mutex_destroy (&op->lock);
  free (op);
  return err;
}

void
copy_from_buffer (struct volume *v, struct wlog_data *data, uint64_t first,
                  uint64_t count, enum copy_kind kind)
{
  uint64_t bytes = residency_block_offset (v->res, count);
  bool sync = over_budget (v, bytes);
  struct copy_op *op = copy_op_new (v, data, first, count, kind, sync);
  uint64_t copied;

  if (op == NULL) {
    wlog_data_put (data);
    STAT_ADD (v->stats.copies_failed, 1);
    requeue_copy (v, first, count, "out of memory");
    return;
  }
  op->requeue_on_error = true;
  if (!rangelock_try (&v->locks, &op->hold, first, count)) {
    STAT_ADD (v->stats.copies_skipped_busy, 1);
    if (sync) {
      pthread_cond_destroy (&op->cond);
      pthread_mutex_destroy (&op->lock);
    }
    free (op);
    wlog_data_put (data);
    requeue_copy (v, first, count, "range busy");
    return;
  }
  account (v, 1, op->bytes);
  copy_op_submit (op);
  if (sync)
    (void) copy_op_wait (op, &copied);
}

/* Bytes per origin read of a copy.  While clients are idle, pieces read
 * one after another by more workers keep the origin busier than whole
 * transfers by fewer (bench/results-migrate.md); with a client active
 * they only lengthen the queue its reads wait in.
 */
static uint64_t
origin_piece (struct volume *v, enum copy_kind kind, bool *idle_pieces)
{
  uint64_t piece = v->cfg.origin_read_max;

  *idle_pieces = false;
  if (piece == 0 && kind != COPY_ON_DEMAND &&
      volume_clients_idle (v, VOLUME_CLIENTS_QUIET)) {
    piece = v->cfg.origin_idle_read_max;
    *idle_pieces = piece != 0;
  }
  return piece ? piece : COPY_CHUNK;
}

/* A background copy reading in idle pieces when a client turns up stops
 * after the blocks read so far (copy_run_sync): the rest of its range would
 * keep the client's reads of those blocks, and its reads of the origin,
 * waiting behind up to VOLUME_CLIENTS_QUIET's worth of idle-speed
 * copying (bench/e2e: a sequential reader arriving at an idle volume
 * stalled 0.2 s longer without this).  The rest stays absent for the
 * sweep's next pass.  Returns the blocks to keep, 0: go on reading.
 */
static uint64_t
blocks_to_keep (struct volume *v, enum copy_kind kind, bool idle_pieces,
                uint64_t bytes_read)
{
  if (!idle_pieces || kind != COPY_BACKGROUND ||
      volume_clients_idle (v, VOLUME_CLIENTS_QUIET))
    return 0;
  return bytes_read >> v->res->block_shift;
}

/* Copy one run [a, b) of blocks synchronously.  Returns bytes copied,
 * 0 if the range was busy and !blocking, -1 on error.
 */
static int64_t
copy_run_sync (struct volume *v, struct origin *o, uint64_t a, uint64_t b,
               enum copy_kind kind, bool blocking, bool *cut_short, int *err)
{
  struct copy_op *op = copy_op_new (v, NULL, a, b - a, kind, true);
  bool idle_pieces;
  uint64_t piece = origin_piece (v, kind, &idle_pieces);
  uint64_t copied = 0, off = 0, keep;
  int e;

  if (op == NULL) {
    *err = ENOMEM;
    return -1;
  }
  if (blocking)
    rangelock_acquire (&v->locks, &op->hold, a, b - a);
  else if (!rangelock_try (&v->locks, &op->hold, a, b - a)) {
    STAT_ADD (v->stats.copies_skipped_busy, 1);
    pthread_cond_destroy (&op->cond);
    pthread_mutex_destroy (&op->lock);
    free (op);
    return 0;
  }
  /* Whoever held the lock before us may have copied the blocks: reading
   * the origin again would be wasted (nothing else can make them
   * resident while we hold the lock).
   */
  if (!residency_any_absent (v->res, a, b - a)) {
    rangelock_release (&v->locks, &op->hold);
    pthread_cond_destroy (&op->cond);
    pthread_mutex_destroy (&op->lock);
    free (op);
    return 0;
  }
  op->data = wlog_data_new (op->bytes);
  if (op->data == NULL) {
    *err = ENOMEM;
    goto fail;
  }
  op->buf = op->data->bytes;
  for (off = 0; off < op->bytes; ) {
    uint64_t n = op->bytes - off > piece ? piece : op->bytes - off;

    if (off > 0 && (keep = blocks_to_keep (v, kind, idle_pieces, off)) > 0) {
      op->count = keep;
      op->bytes = residency_block_offset (v->res, keep);
      /* The client's reads of the rest may copy it now. */
      rangelock_shrink (&v->locks, &op->hold, a + keep);
      STAT_ADD (v->stats.copies_cut_short, 1);
      *cut_short = true;
      break;
    }

    if (o->ops->pread (o->ctx, op->buf + off, n,
                       residency_block_offset (v->res, a) + off, err) == -1) {
      STAT_ADD (v->stats.origin_errors, 1);
      shadow_error ("origin: read of %" PRIu64 " bytes at %" PRIu64
                    " for a copy failed: %s", n,
                    residency_block_offset (v->res, a) + off,
                    strerror (*err));
      goto fail;
    }
    off += n;
  }
  account (v, 1, op->bytes);
  copy_op_submit (op);
  e = copy_op_wait (op, &copied);
  if (e) {
    *err = e;
    return -1;
  }
  return copied;

 fail:
  rangelock_release (&v->locks, &op->hold);
  wlog_data_put (op->data);
  pthread_cond_destroy (&op->cond);
  pthread_mutex_destroy (&op->lock);
  free (op);
  return -1;
}

int
volume_zero_blocks (struct volume *v, uint64_t first, uint64_t count,
                    enum copy_kind kind, int *err)
{
  struct copy_op *op = copy_op_new (v, NULL, first, count, kind, true);
  uint64_t copied;
  int e;

  if (op == NULL) {
    *err = ENOMEM;
    return -1;
  }
  op->zeroes = true;
  rangelock_acquire (&v->locks, &op->hold, first, count);
  account (v, 1, 0);
  op->bytes = 0;
  copy_op_submit (op);
  e = copy_op_wait (op, &copied);
  if (e) {
    *err = e;
    return -1;
  }
  return 0;
}

int64_t
volume_copy_blocks (struct volume *v, struct origin *o, uint64_t first,
                    uint64_t count, enum copy_kind kind, bool blocking,
                    bool *cut_short, int *err)
{
  uint64_t end = first + count;
  uint64_t chunk_blocks = COPY_CHUNK >> v->res->block_shift;
  int64_t total = 0;
  bool cut = false;

  if (chunk_blocks == 0)
    chunk_blocks = 1;
  while (first < end) {
    uint64_t a = residency_next_absent (v->res, first);
    uint64_t b;
    bool resident;
    int64_t n;

    if (a >= end)
      break;
    b = residency_run_end (v->res, a, end, &resident);
    if (b - a > chunk_blocks)
      b = a + chunk_blocks;
    n = copy_run_sync (v, o, a, b, kind, blocking, &cut, err);
    if (n == -1)
      return -1;
    total += n;
    if (cut)
      break;
    first = b;
  }
  if (cut_short)
    *cut_short = cut;
  return total;
}
