/* nbdshadow: persistent residency (state.h), DESIGN §3.4 and §4.
 *
 * Why it looks like this: a restarted proxy that believes a block is
 * absent copies it again from the origin, and if a client had rewritten
 * that block on the shadow, the copy silently reverts the client's data.
 * So what this file writes must never claim less than what commit.c was
 * told is durable, must survive a crash at any instant, and must refuse
 * loudly, without touching anything, when it is not ours or not sane.
 * The design is the classic one of filesystem journals: a checkpoint
 * (the snapshot) replaced atomically by rename, plus an append-only log
 * of checksummed records (the journal), where a torn tail is the normal
 * result of a crash and is cut off.
 *
 * ON-DISK FORMAT (format version 1)
 * =================================
 *
 * Every integer is little-endian, encoded byte by byte (never a struct
 * dump).  Checksums are CRC-32C (crc32c.h), stored as u32.  Block numbers
 * and counts are in units of the block size.  Every future format version
 * keeps the magic and the version at offsets 0 and 8 of both files, so
 * that an older nbdshadow can say "made by a newer version".
 *
 * DIR/snapshot
 *
 *   offset  size  field
 *   0       8     magic "NBDSHSNP"
 *   8       4     format version (1)
 *   12      4     H: header length in bytes, including the header CRC
 *   16      8     generation (>= 1), +1 at each compaction
 *   24      8     origin size in bytes
 *   32      4     block size in bytes
 *   36      4     phase (0 copying, 1 synced, 2 verifying, 3 cutover,
 *                 4 done)
 *   40      16    state id: random, chosen when the state is created and
 *                 kept by every compaction; ties the journal to it
 *   56      8     R: number of resident runs
 *   64      8     W: number of written-flag runs
 *   72      4     N: number of shadow URIs
 *   76      ...   N times: u32 length L, then L bytes of URI (no NUL).
 *                 The shadow set, canonical: sorted by bytes (strcmp),
 *                 duplicates removed, so the order of shadow= on the
 *                 command line does not matter
 *   H-4     4     CRC-32C of bytes [0, H-4)
 *   H       16*R  resident runs: u64 first, u64 count; count >= 1,
 *                 increasing, not overlapping, inside the volume
 *   H+16R   16*W  written-flag runs, same rules
 *   H+16(R+W) 4   CRC-32C of bytes [H, H+16(R+W))
 *
 *   The file is exactly H + 16(R+W) + 4 bytes long.
 *
 * DIR/journal
 *
 *   offset  size  field
 *   0       8     magic "NBDSHJNL"
 *   8       4     format version (1)
 *   12      4     header length (64)
 *   16      8     generation: the snapshot's it extends
 *   24      8     origin size in bytes   } as in the snapshot: a journal
 *   32      4     block size in bytes    } from elsewhere is refused
 *   36      16    state id               }
 *   52      8     zero
 *   60      4     CRC-32C of bytes [0, 60)
 *   64      ...   batches, back to back, to the end of the file
 *
 *   batch:
 *   0       4     P: payload length, a non-zero multiple of 17
 *   4       4     CRC-32C of bytes 0-3 of the batch (P) followed by
 *                 the P bytes of payload
 *   8       P     P/17 entries of 17 bytes:
 *                   0   1   kind
 *                   1   8   first
 *                   9   8   count
 *
 *   kind 1  resident    blocks [first, first+count) were copied
 *   kind 2  written     blocks [first, first+count) were written by a
 *                       client: resident, and flagged written
 *   kind 3  intent      a client is about to write [first, first+count):
 *                       flagged written, but NOT made resident
 *   kind 4  phase       the phase is now `first'; count is 0
 *
 *   A state_append_marks call is one batch (split into batches of at
 *   most 2^20 entries, with one fdatasync for all, if ever it is bigger);
 *   an intent or a phase is a batch of one entry.
 *
 * DIR/lock is an empty file, flock()ed (LOCK_EX) while a state is open.
 * DIR/snapshot.tmp and DIR/journal.tmp exist only during a write; a left
 * over one is debris from a crash and is removed at the next open.
 *
 * MEANING
 * =======
 *
 * The state is two sets and a phase.  Replay (the snapshot, then the
 * journal's batches in order) builds
 *   resident  = snapshot resident runs U resident and written entries
 *   flagged   = snapshot written-flag runs U written and intent entries
 * and the residency gets resident (MARK_COPIED), and written = flagged
 * intersected with resident (MARK_WRITTEN).  The snapshot stores flagged
 * itself, not flagged n resident, so that compaction changes nothing: an
 * intent for a block that is not resident yet would otherwise be
 * forgotten, and the block would load unwritten after a later copy, where
 * the same history without compaction loads it written (the safe side).
 *
 * Replay stops at the first batch that is incomplete, has a bad length or
 * a bad checksum: that batch and everything after it are ignored (a
 * batch is durable only once fdatasync returned, and nothing after an
 * unsynced batch was ever acknowledged), reported with shadow_debug and
 * in state_load_info, and cut off (ftruncate + fsync) so that new batches
 * never follow garbage.  A batch whose checksum is right but whose
 * content is not (unknown kind, a run outside the volume, an unknown
 * phase) was written like that: it is corruption, and the whole state is
 * refused.
 *
 * WHICH FILES ARE VALID TOGETHER
 * ==============================
 *
 *   snapshot  journal              meaning
 *   gen G     gen G                normal: replay both
 *   gen G     gen < G              compaction interrupted after the new
 *                                  snapshot: the journal is contained in
 *                                  it (stale); replaced by an empty
 *                                  journal of gen G
 *   gen G     gen > G              corruption (a snapshot was restored or
 *                                  lost): refused
 *   gen 1,    missing              creation interrupted: a journal is
 *   empty                          made
 *   other     missing              refused (the journal was lost)
 *   missing   present              refused
 *   missing   missing              a new state is created
 *
 * CRASH SAFETY
 * ============
 *
 * Appends: a batch is pwrite()n at the end of the last good batch, then
 * fdatasync()ed; only then do the caller and the durable sets consider it
 * done.  A crash before that leaves a prefix of it (a torn tail, cut at
 * load) or all of it (replayed: harmless, commit.c flushed the shadows
 * before calling us, so the marks are true either way).  After a failed
 * append the file may hold part of a batch after journal_end: the next
 * append ftruncate()s back to journal_end first.
 *
 * Compaction, from generation G to G+1, and what DIR holds if the machine
 * dies at each point (S = snapshot, J = journal):
 *
 *   1. write snapshot.tmp (gen G+1, from the durable sets), fsync it
 *        crash: S(G) + J(G) + debris tmp -> the old state; tmp removed
 *   2. rename snapshot.tmp -> snapshot
 *        crash: the rename is atomic: S(G) + J(G), or S(G+1) + J(G)
 *   3. fsync DIR
 *        crash after: S(G+1) + J(G).  J(G) is older than the snapshot:
 *        stale, and everything in it is in S(G+1), because the durable
 *        sets S(G+1) was made from include every batch of J(G) (appends
 *        and compaction hold the same mutex, and only synced batches
 *        enter the durable sets).  It is replaced by an empty J(G+1).
 *   4. write journal.tmp (gen G+1, empty), fsync it, fsync DIR
 *        crash: S(G+1) + J(G) + debris tmp: as in 3
 *   5. rename journal.tmp -> journal, fsync DIR
 *        crash: S(G+1) + J(G) as in 3, or S(G+1) + J(G+1): the new state
 *   6. appends go to J(G+1).
 *
 * Nothing is ever appended to J(G) once S(G+1) may be in DIR: a batch
 * there would be discarded as stale at the next load.  So if a step after
 * 2 fails (not a crash: an error), the state remembers that its journal
 * lags the snapshot and every append first finishes steps 4-5; and if a
 * DIR fsync fails after a rename, every later append first retries it
 * (the fsync of DIR in step 4 also makes step 2 durable before step 5 can
 * be, so J(G+1) can never be found next to S(G)).  A failure before step
 * 2 removes snapshot.tmp and leaves everything as it was.
 *
 * Creation writes snapshot (gen 1, empty) by steps 1-3, then the journal
 * by steps 4-5: snapshot first, so that a journal without a snapshot
 * never happens and can be refused as corruption.
 *
 * Size: compaction is due when the journal is past max (2 x snapshot,
 * 1 MiB), so DIR holds at most the snapshot, that much journal and one
 * commit's batch, plus a second snapshot while one is being written.
 *
 * MEMORY AND SPEED
 * ================
 *
 * The durable sets are kept here as blocksets, updated after each
 * successful append, because compaction must write exactly what is
 * durable: the residency holds marks that are not durable yet.  Loading
 * works on runs only (a run is one blockset_set_range, written is
 * computed run against run), so it costs O(runs), whatever the number of
 * blocks.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "blockset.h"
#include "crc32c.h"
#include "lockutil.h"
#include "log.h"
#include "residency.h"
#include "state.h"

#define FORMAT_VERSION  1

#define SNAP_MAGIC      "NBDSHSNP"
#define SNAP_FIXED      76      /* header bytes before the URIs */
#define SNAP_MAX_HEADER (1u << 20)
#define RUN_BYTES       16

#define JNL_MAGIC       "NBDSHJNL"
#define JNL_HEADER      64
#define BATCH_HEADER    8
#define ENTRY_BYTES     17
#define BATCH_MAX_ENTRIES (UINT32_C (1) << 20)

#define STATE_ID_BYTES  16
#define PHASE_MAX       4       /* PHASE_DONE */

/* The journal size below which compaction is never due.  The fuzzer
 * builds with 0 to reach compaction with inputs of a few hundred bytes.
 */
#ifndef STATE_COMPACT_MIN
#define STATE_COMPACT_MIN (UINT64_C (1) << 20)
#endif
#define WRITE_BUFFER    (1u << 20)

#define SNAPSHOT        "snapshot"
#define SNAPSHOT_TMP    "snapshot.tmp"
#define JOURNAL         "journal"
#define JOURNAL_TMP     "journal.tmp"
#define LOCKFILE        "lock"

enum entry_kind {
  ENTRY_RESIDENT = 1,
  ENTRY_WRITTEN = 2,
  ENTRY_INTENT = 3,
  ENTRY_PHASE = 4,
};

/* The canonical shadow set: sorted, without duplicates. */
struct uriset {
  char **v;
  size_t n;
};

struct state {
  pthread_mutex_t lock;         /* guards everything below */
  char *dir;
  int dirfd, lockfd, journalfd;

  uint64_t size;
  uint32_t block_size;
  uint64_t nr_blocks;
  struct uriset uris;
  unsigned char state_id[STATE_ID_BYTES];

  uint64_t generation;          /* of the snapshot in DIR */
  uint64_t snapshot_bytes;
  uint64_t journal_gen;         /* of the journal on journalfd */
  uint64_t journal_end;         /* end of the last synced batch */
  bool journal_dirty;           /* bytes past journal_end may exist */
  bool need_dir_sync;           /* a rename in DIR may not be durable */
  bool sets_incomplete;         /* ENOMEM lost an update: no compaction */
  uint64_t compact_after;       /* after a failure: not before this size */
  int phase;                    /* durable phase */

  /* What is durable: see MEANING above. */
  struct blockset *resident;
  struct blockset *flagged;

  /* While loading: the residency that resident runs go to as they are
   * read, which saves walking the set a second time.
   */
  struct residency *load_target;

  struct state_stats stats;
};

/*----------------------------------------------------------------------
 * Little-endian encoding.
 */

static inline void
put_u32 (unsigned char *p, uint32_t v)
{
  for (int i = 0; i < 4; ++i)
    p[i] = v >> (8 * i);
}

static inline void
put_u64 (unsigned char *p, uint64_t v)
{
  for (int i = 0; i < 8; ++i)
    p[i] = v >> (8 * i);
}

static inline uint32_t
get_u32 (const unsigned char *p)
{
  uint32_t v = 0;

  for (int i = 3; i >= 0; --i)
    v = (v << 8) | p[i];
  return v;
}

static inline uint64_t
get_u64 (const unsigned char *p)
{
  uint64_t v = 0;

  for (int i = 7; i >= 0; --i)
    v = (v << 8) | p[i];
  return v;
}

/*----------------------------------------------------------------------
 * Messages.  Every one names DIR, so that a user with several migrations
 * knows which one is meant.  errno is preserved, so that callers can
 * report first and return -1 after.
 */

static void state_err (const char *dir, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

static void
state_err (const char *dir, const char *fmt, ...)
{
  int saved = errno;
  char *msg;
  va_list args;

  va_start (args, fmt);
  if (vasprintf (&msg, fmt, args) == -1)
    msg = NULL;
  va_end (args);
  shadow_error ("shadow-state=%s: %s", dir, msg ? msg : fmt);
  free (msg);
  errno = saved;
}

/* Report a failed syscall on a file of DIR, keeping errno. */
static void
sys_err (const char *dir, const char *file, const char *what, uint64_t offset,
         bool with_offset)
{
  int saved = errno;

  if (with_offset)
    state_err (dir, "%s: %s at offset %" PRIu64 ": %s",
               file, what, offset, strerror (saved));
  else
    state_err (dir, "%s: %s: %s", file, what, strerror (saved));
  errno = saved;
}

/*----------------------------------------------------------------------
 * The shadow set's identity.
 */

static void
uriset_free (struct uriset *u)
{
  for (size_t i = 0; i < u->n; ++i)
    free (u->v[i]);
  free (u->v);
  u->v = NULL;
  u->n = 0;
}

static int
compare_strings (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* Sort and deduplicate: every shadow gets every block, so a shadow named
 * twice is the same set, and the command line order means nothing.
 */
static int
uriset_from_identity (const struct state_identity *id, struct uriset *out)
{
  size_t i, n = 0;

  out->v = calloc (id->nr_uris ? id->nr_uris : 1, sizeof *out->v);
  out->n = 0;
  if (out->v == NULL)
    return -1;
  for (i = 0; i < id->nr_uris; ++i) {
    out->v[i] = strdup (id->uris[i]);
    if (out->v[i] == NULL) {
      out->n = i;
      uriset_free (out);
      return -1;
    }
  }
  qsort (out->v, id->nr_uris, sizeof *out->v, compare_strings);
  for (i = 0; i < id->nr_uris; ++i) {
    if (n > 0 && strcmp (out->v[n - 1], out->v[i]) == 0)
      free (out->v[i]);
    else
      out->v[n++] = out->v[i];
  }
  out->n = n;
  return 0;
}

static bool
uriset_equal (const struct uriset *a, const struct uriset *b)
{
  if (a->n != b->n)
    return false;
  for (size_t i = 0; i < a->n; ++i)
    if (strcmp (a->v[i], b->v[i]) != 0)
      return false;
  return true;
}

/* "nbd://a, nbd://b" for messages; NULL on ENOMEM. */
static char *
uriset_join (const struct uriset *u)
{
  size_t len = 1, i;
  char *s, *p;

  if (u->n == 0)
    return strdup ("(none)");
  for (i = 0; i < u->n; ++i)
    len += strlen (u->v[i]) + 2;
  s = p = malloc (len);
  if (s == NULL)
    return NULL;
  for (i = 0; i < u->n; ++i)
    p += sprintf (p, "%s%s", i ? ", " : "", u->v[i]);
  return s;
}

/* Bytes that the URIs take in the snapshot header. */
static uint64_t
uriset_encoded_bytes (const struct uriset *u)
{
  uint64_t n = 0;

  for (size_t i = 0; i < u->n; ++i)
    n += 4 + strlen (u->v[i]);
  return n;
}

/*----------------------------------------------------------------------
 * Syscalls with error reports.
 */

static int
pwrite_all (const char *dir, const char *file, int fd,
            const void *buf, size_t len, uint64_t offset)
{
  const unsigned char *p = buf;

  while (len > 0) {
    ssize_t n = pwrite (fd, p, len, offset);

    if (n == -1 && errno == EINTR)
      continue;
    if (n <= 0) {
      if (n == 0)
        errno = EIO;
      sys_err (dir, file, "write", offset, true);
      return -1;
    }
    p += n;
    len -= n;
    offset += n;
  }
  return 0;
}

/* Read the whole file open on fd into a new buffer. */
static int
read_all (const char *dir, const char *file, int fd,
          unsigned char **bufp, size_t *lenp)
{
  struct stat st;
  unsigned char *buf;
  size_t len = 0, size;

  if (fstat (fd, &st) == -1) {
    sys_err (dir, file, "fstat", 0, false);
    return -1;
  }
  if (!S_ISREG (st.st_mode)) {
    errno = EINVAL;
    state_err (dir, "%s: not a regular file", file);
    return -1;
  }
  if ((uint64_t) st.st_size > SIZE_MAX - 1) {
    errno = EFBIG;
    sys_err (dir, file, "read", 0, false);
    return -1;
  }
  size = st.st_size;
  buf = malloc (size + 1);
  if (buf == NULL) {
    sys_err (dir, file, "read", 0, false);
    return -1;
  }
  while (len < size) {
    ssize_t n = pread (fd, buf + len, size - len, len);

    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1) {
      sys_err (dir, file, "read", len, true);
      free (buf);
      return -1;
    }
    if (n == 0)                 /* shrank under us: use what is there */
      break;
    len += n;
  }
  *bufp = buf;
  *lenp = len;
  return 0;
}

static int
sync_dir (struct state *s)
{
  if (fsync (s->dirfd) == -1) {
    sys_err (s->dir, ".", "fsync of the directory", 0, false);
    return -1;
  }
  return 0;
}

/* Close a file we wrote, reporting the error close can carry (NFS). */
static int
close_written (const char *dir, const char *file, int fd)
{
  if (close (fd) == -1) {
    sys_err (dir, file, "close", 0, false);
    return -1;
  }
  return 0;
}

static void
remove_debris (struct state *s, const char *file)
{
  if (unlinkat (s->dirfd, file, 0) == -1 && errno != ENOENT)
    shadow_debug ("shadow-state=%s: cannot remove %s: %s",
                  s->dir, file, strerror (errno));
}

/*----------------------------------------------------------------------
 * The durable sets.
 */

/* Blocks become resident: in the durable set, and while loading in the
 * residency too (the written flags can only go there at the end, once
 * resident is complete).
 */
static int
add_resident (struct state *s, uint64_t first, uint64_t count)
{
  struct mark m = { .first = first, .count = count, .kind = MARK_COPIED };

  if (blockset_set_range (s->resident, first, count) == -1)
    return -1;
  if (s->load_target && residency_load_mark (s->load_target, &m) == -1)
    return -1;
  return 0;
}

/* Apply one validated entry.  -1 with errno = ENOMEM. */
static int
apply_entry (struct state *s, unsigned kind, uint64_t first, uint64_t count)
{
  switch (kind) {
  case ENTRY_RESIDENT:
    return add_resident (s, first, count);
  case ENTRY_WRITTEN:
    if (add_resident (s, first, count) == -1)
      return -1;
    return blockset_set_range (s->flagged, first, count);
  case ENTRY_INTENT:
    return blockset_set_range (s->flagged, first, count);
  case ENTRY_PHASE:
    s->phase = first;
    return 0;
  }
  abort ();                     /* entries are validated before */
}

/* Is [first, first+count) a non-empty range inside the volume? */
static bool
range_ok (const struct state *s, uint64_t first, uint64_t count)
{
  return count > 0 && first < s->nr_blocks && count <= s->nr_blocks - first;
}

/* Why is this entry invalid?  NULL if it is valid. */
static const char *
entry_problem (const struct state *s, unsigned kind, uint64_t first,
               uint64_t count)
{
  switch (kind) {
  case ENTRY_RESIDENT: case ENTRY_WRITTEN: case ENTRY_INTENT:
    return range_ok (s, first, count) ? NULL : "run outside the volume";
  case ENTRY_PHASE:
    if (count != 0)
      return "phase record with a non-zero count";
    return first <= PHASE_MAX ? NULL : "unknown phase";
  default:
    return "unknown entry kind";
  }
}

/*----------------------------------------------------------------------
 * Writing the snapshot.
 */

struct snap_writer {
  struct state *s;
  int fd;
  uint64_t offset;              /* of buf[0] in the file */
  unsigned char *buf;
  size_t len;
  uint32_t crc;                 /* of the body written so far */
  uint64_t runs;                /* counting pass: runs seen */
};

static int
count_run (uint64_t first, uint64_t count, void *opaque)
{
  struct snap_writer *w = opaque;

  w->runs++;
  return 0;
}

static int
flush_writer (struct snap_writer *w)
{
  if (pwrite_all (w->s->dir, SNAPSHOT_TMP, w->fd, w->buf, w->len,
                  w->offset) == -1)
    return -1;
  w->offset += w->len;
  w->len = 0;
  return 0;
}

static int
write_run (uint64_t first, uint64_t count, void *opaque)
{
  struct snap_writer *w = opaque;
  unsigned char *p;

  if (w->len + RUN_BYTES > WRITE_BUFFER && flush_writer (w) == -1)
    return -1;
  p = w->buf + w->len;
  put_u64 (p, first);
  put_u64 (p + 8, count);
  w->crc = shadow_crc32c (w->crc, p, RUN_BYTES);
  w->len += RUN_BYTES;
  return 0;
}

/* The snapshot header for the current identity, phase and generation. */
static unsigned char *
encode_snapshot_header (struct state *s, uint64_t generation,
                        uint64_t nr_resident, uint64_t nr_flagged,
                        size_t *lenp)
{
  uint64_t len = SNAP_FIXED + uriset_encoded_bytes (&s->uris) + 4;
  unsigned char *h, *p;

  if (len > SNAP_MAX_HEADER) {
    errno = E2BIG;
    state_err (s->dir, "the shadow URIs take %" PRIu64 " bytes, more than "
               "the state format allows (%u)", len, SNAP_MAX_HEADER);
    return NULL;
  }
  h = calloc (1, len);
  if (h == NULL) {
    state_err (s->dir, "%s", strerror (errno));
    return NULL;
  }
  memcpy (h, SNAP_MAGIC, 8);
  put_u32 (h + 8, FORMAT_VERSION);
  put_u32 (h + 12, len);
  put_u64 (h + 16, generation);
  put_u64 (h + 24, s->size);
  put_u32 (h + 32, s->block_size);
  put_u32 (h + 36, s->phase);
  memcpy (h + 40, s->state_id, STATE_ID_BYTES);
  put_u64 (h + 56, nr_resident);
  put_u64 (h + 64, nr_flagged);
  put_u32 (h + 72, s->uris.n);
  p = h + SNAP_FIXED;
  for (size_t i = 0; i < s->uris.n; ++i) {
    size_t l = strlen (s->uris.v[i]);

    put_u32 (p, l);
    memcpy (p + 4, s->uris.v[i], l);
    p += 4 + l;
  }
  put_u32 (p, shadow_crc32c (0, h, len - 4));
  *lenp = len;
  return h;
}

/* Steps 1-3 of CRASH SAFETY: snapshot.tmp from the durable sets, fsync,
 * rename over snapshot, fsync DIR.  Returns 0 once the rename is done
 * (*renamed tells whether it was, when -1 is returned after it).
 */
static int
write_snapshot (struct state *s, uint64_t generation, uint64_t *bytes,
                bool *renamed)
{
  struct snap_writer w = { .s = s, .fd = -1 };
  unsigned char *header = NULL;
  unsigned char crc[4];
  size_t hlen;
  uint64_t nr_resident, nr_flagged;
  int err;

  *renamed = false;
  blockset_foreach_run (s->resident, 0, s->nr_blocks, count_run, &w);
  nr_resident = w.runs;
  w.runs = 0;
  blockset_foreach_run (s->flagged, 0, s->nr_blocks, count_run, &w);
  nr_flagged = w.runs;

  header = encode_snapshot_header (s, generation, nr_resident, nr_flagged,
                                   &hlen);
  if (header == NULL)
    return -1;
  w.buf = malloc (WRITE_BUFFER + 4);
  if (w.buf == NULL) {
    state_err (s->dir, "%s: %s", SNAPSHOT_TMP, strerror (errno));
    goto fail;
  }
  w.fd = openat (s->dirfd, SNAPSHOT_TMP,
                 O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (w.fd == -1) {
    sys_err (s->dir, SNAPSHOT_TMP, "create", 0, false);
    goto fail;
  }
  if (pwrite_all (s->dir, SNAPSHOT_TMP, w.fd, header, hlen, 0) == -1)
    goto fail;
  w.offset = hlen;
  if (blockset_foreach_run (s->resident, 0, s->nr_blocks,
                            write_run, &w) != 0 ||
      blockset_foreach_run (s->flagged, 0, s->nr_blocks,
                            write_run, &w) != 0)
    goto fail;
  put_u32 (crc, w.crc);
  memcpy (w.buf + w.len, crc, 4); /* the buffer has 4 bytes to spare */
  w.len += 4;
  if (flush_writer (&w) == -1)
    goto fail;
  if (fsync (w.fd) == -1) {
    sys_err (s->dir, SNAPSHOT_TMP, "fsync", 0, false);
    goto fail;
  }
  err = close_written (s->dir, SNAPSHOT_TMP, w.fd);
  w.fd = -1;
  if (err == -1)
    goto fail;
  if (renameat (s->dirfd, SNAPSHOT_TMP, s->dirfd, SNAPSHOT) == -1) {
    sys_err (s->dir, SNAPSHOT_TMP, "rename to " SNAPSHOT, 0, false);
    goto fail;
  }
  *renamed = true;
  *bytes = w.offset;
  free (w.buf);
  free (header);
  if (sync_dir (s) == -1) {
    s->need_dir_sync = true;
    return -1;
  }
  return 0;

 fail:
  err = errno;
  if (w.fd >= 0)
    close (w.fd);
  unlinkat (s->dirfd, SNAPSHOT_TMP, 0);
  free (w.buf);
  free (header);
  errno = err;
  return -1;
}

/*----------------------------------------------------------------------
 * Writing the journal.
 */

static void
encode_journal_header (struct state *s, uint64_t generation,
                       unsigned char h[JNL_HEADER])
{
  memset (h, 0, JNL_HEADER);
  memcpy (h, JNL_MAGIC, 8);
  put_u32 (h + 8, FORMAT_VERSION);
  put_u32 (h + 12, JNL_HEADER);
  put_u64 (h + 16, generation);
  put_u64 (h + 24, s->size);
  put_u32 (h + 32, s->block_size);
  memcpy (h + 36, s->state_id, STATE_ID_BYTES);
  put_u32 (h + 60, shadow_crc32c (0, h, 60));
}

/* Steps 4-5 of CRASH SAFETY: an empty journal of the given generation
 * replaces the current one.  Once the rename is done the new file is
 * the journal, whatever happens after, so journalfd follows it.
 */
static int
install_journal (struct state *s, uint64_t generation)
{
  unsigned char h[JNL_HEADER];
  int fd, err;

  encode_journal_header (s, generation, h);
  fd = openat (s->dirfd, JOURNAL_TMP,
               O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd == -1) {
    sys_err (s->dir, JOURNAL_TMP, "create", 0, false);
    return -1;
  }
  if (pwrite_all (s->dir, JOURNAL_TMP, fd, h, JNL_HEADER, 0) == -1)
    goto fail;
  if (fsync (fd) == -1) {
    sys_err (s->dir, JOURNAL_TMP, "fsync", 0, false);
    goto fail;
  }
  /* Makes the snapshot's rename durable before the new journal's can
   * be: a new journal next to an old snapshot would be refused.
   */
  if (sync_dir (s) == -1)
    goto fail;
  if (renameat (s->dirfd, JOURNAL_TMP, s->dirfd, JOURNAL) == -1) {
    sys_err (s->dir, JOURNAL_TMP, "rename to " JOURNAL, 0, false);
    goto fail;
  }
  if (s->journalfd >= 0)
    close (s->journalfd);       /* read-only use so far, or synced */
  s->journalfd = fd;
  s->journal_gen = generation;
  s->journal_end = JNL_HEADER;
  s->journal_dirty = false;
  s->need_dir_sync = true;
  if (sync_dir (s) == -1)
    return -1;
  s->need_dir_sync = false;
  return 0;

 fail:
  err = errno;
  close (fd);
  unlinkat (s->dirfd, JOURNAL_TMP, 0);
  errno = err;
  return -1;
}

/* Make the journal ready to take a batch at journal_end: finish a
 * compaction that failed half-way, make a rename durable, cut a partial
 * batch left by a failed append.
 */
static int
prepare_journal (struct state *s)
{
  if (s->journal_gen != s->generation &&
      install_journal (s, s->generation) == -1)
    return -1;
  if (s->need_dir_sync) {
    if (sync_dir (s) == -1)
      return -1;
    s->need_dir_sync = false;
  }
  if (s->journal_dirty) {
    if (ftruncate (s->journalfd, s->journal_end) == -1) {
      sys_err (s->dir, JOURNAL, "truncate of a failed batch",
               s->journal_end, true);
      return -1;
    }
    s->journal_dirty = false;
  }
  return 0;
}

/* Encode entries [from, from+n) of a batch into buf (BATCH_HEADER + 17n
 * bytes).  get returns entry i.
 */
typedef void (*entry_fn) (const void *src, size_t i, unsigned *kind,
                          uint64_t *first, uint64_t *count);

static void
encode_batch (unsigned char *buf, const void *src, size_t from, size_t n,
              entry_fn get)
{
  unsigned char *p = buf + BATCH_HEADER;
  uint32_t crc;

  for (size_t i = 0; i < n; ++i, p += ENTRY_BYTES) {
    unsigned kind;
    uint64_t first, count;

    get (src, from + i, &kind, &first, &count);
    p[0] = kind;
    put_u64 (p + 1, first);
    put_u64 (p + 9, count);
  }
  put_u32 (buf, n * ENTRY_BYTES);
  crc = shadow_crc32c (0, buf, 4);
  crc = shadow_crc32c (crc, buf + BATCH_HEADER, n * ENTRY_BYTES);
  put_u32 (buf + 4, crc);
}

/* Append nr entries as batches of at most BATCH_MAX_ENTRIES, with one
 * fdatasync for all.  Only when it returns 0 is anything durable as far
 * as the caller and the durable sets know.
 */
static int
append_entries (struct state *s, const void *src, size_t nr, entry_fn get)
{
  size_t chunk = nr < BATCH_MAX_ENTRIES ? nr : BATCH_MAX_ENTRIES;
  unsigned char *buf;
  uint64_t offset;
  size_t done;

  if (prepare_journal (s) == -1)
    return -1;
  buf = malloc (BATCH_HEADER + chunk * ENTRY_BYTES);
  if (buf == NULL) {
    state_err (s->dir, "%s: append: %s", JOURNAL, strerror (errno));
    return -1;
  }
  offset = s->journal_end;
  for (done = 0; done < nr; done += chunk) {
    size_t n = nr - done < chunk ? nr - done : chunk;
    size_t len = BATCH_HEADER + n * ENTRY_BYTES;

    encode_batch (buf, src, done, n, get);
    s->journal_dirty = true;
    if (pwrite_all (s->dir, JOURNAL, s->journalfd, buf, len, offset) == -1) {
      free (buf);
      return -1;
    }
    offset += len;
  }
  free (buf);
  if (fdatasync (s->journalfd) == -1) {
    sys_err (s->dir, JOURNAL, "fdatasync of the batch", s->journal_end,
             true);
    return -1;
  }
  s->journal_end = offset;
  s->journal_dirty = false;
  return 0;
}

/* The batch is durable: the durable sets must follow, or compaction
 * would write less than the journal holds.  If memory runs out here,
 * compaction is disabled until the next load, which rebuilds the sets
 * from the files.
 */
static void
apply_durable (struct state *s, const void *src, size_t nr, entry_fn get)
{
  for (size_t i = 0; i < nr; ++i) {
    unsigned kind;
    uint64_t first, count;

    get (src, i, &kind, &first, &count);
    if (apply_entry (s, kind, first, count) == -1) {
      if (!s->sets_incomplete)
        state_err (s->dir, "out of memory updating the durable sets: "
                   "compaction is disabled until the next start (the "
                   "journal is complete, but will grow)");
      s->sets_incomplete = true;
    }
  }
}

static void
get_mark (const void *src, size_t i, unsigned *kind, uint64_t *first,
          uint64_t *count)
{
  const struct mark *m = &((const struct mark_list *) src)->v[i];

  *kind = m->kind == MARK_WRITTEN ? ENTRY_WRITTEN : ENTRY_RESIDENT;
  *first = m->first;
  *count = m->count;
}

struct one_entry {
  unsigned kind;
  uint64_t first, count;
};

static void
get_one (const void *src, size_t i, unsigned *kind, uint64_t *first,
         uint64_t *count)
{
  const struct one_entry *e = src;

  *kind = e->kind;
  *first = e->first;
  *count = e->count;
}

/*----------------------------------------------------------------------
 * Loading.
 */

struct snap_header {
  uint64_t generation, size;
  uint32_t header_len, block_size, phase;
  unsigned char state_id[STATE_ID_BYTES];
  uint64_t nr_resident, nr_flagged;
  struct uriset uris;
};

/* Check what can be checked of a file's first 12 bytes: ours, and a
 * version we read.
 */
static int
check_magic_version (struct state *s, const char *file,
                     const unsigned char *buf, size_t len, const char *magic)
{
  uint32_t version;

  if (len < 12 || memcmp (buf, magic, 8) != 0) {
    errno = EUCLEAN;
    state_err (s->dir, "%s header is corrupt: bad magic (not an nbdshadow "
               "state file)", file);
    return -1;
  }
  version = get_u32 (buf + 8);
  if (version > FORMAT_VERSION) {
    errno = ENOTSUP;
    state_err (s->dir, "%s: made by format version %" PRIu32 ", but this "
               "nbdshadow reads format version %d at most",
               file, version, FORMAT_VERSION);
    return -1;
  }
  if (version == 0) {
    errno = EUCLEAN;
    state_err (s->dir, "%s header is corrupt: format version 0", file);
    return -1;
  }
  return 0;
}

/* The URIs of a snapshot header whose checksum is right.  Written by us,
 * so anything but canonical form is corruption.
 */
static const char *
decode_uris (const unsigned char *h, uint32_t hlen, struct uriset *out)
{
  uint32_t n = get_u32 (h + 72);
  size_t p = SNAP_FIXED, end = hlen - 4;

  out->n = 0;
  if (n > (end - p) / 4)
    return "more shadow URIs than bytes";
  out->v = calloc (n ? n : 1, sizeof *out->v);
  if (out->v == NULL)
    return "out of memory";
  for (uint32_t i = 0; i < n; ++i) {
    uint32_t l;

    if (end - p < 4)
      return "shadow URIs run past the header";
    l = get_u32 (h + p);
    p += 4;
    if (l > end - p)
      return "shadow URIs run past the header";
    if (memchr (h + p, 0, l) != NULL)
      return "a shadow URI contains a NUL byte";
    out->v[i] = strndup ((const char *) h + p, l);
    if (out->v[i] == NULL)
      return "out of memory";
    out->n = i + 1;
    if (i > 0 && strcmp (out->v[i - 1], out->v[i]) >= 0)
      return "shadow URIs not in canonical order";
    p += l;
  }
  if (p != end)
    return "bytes after the shadow URIs";
  return NULL;
}

static int
decode_snapshot_header (struct state *s, const unsigned char *buf,
                        size_t len, struct snap_header *h)
{
  uint32_t stored, computed;
  const char *problem;

  if (check_magic_version (s, SNAPSHOT, buf, len, SNAP_MAGIC) == -1)
    return -1;
  errno = EUCLEAN;
  if (len < 16) {
    state_err (s->dir, "%s header is corrupt: the file has only %zu bytes",
               SNAPSHOT, len);
    return -1;
  }
  h->header_len = get_u32 (buf + 12);
  if (h->header_len < SNAP_FIXED + 4 || h->header_len > SNAP_MAX_HEADER ||
      h->header_len > len) {
    state_err (s->dir, "%s header is corrupt: header length %" PRIu32
               " in a file of %zu bytes", SNAPSHOT, h->header_len, len);
    return -1;
  }
  stored = get_u32 (buf + h->header_len - 4);
  computed = shadow_crc32c (0, buf, h->header_len - 4);
  if (stored != computed) {
    state_err (s->dir, "%s header is corrupt: checksum mismatch (stored "
               "0x%08" PRIx32 ", computed 0x%08" PRIx32 ")",
               SNAPSHOT, stored, computed);
    return -1;
  }
  h->generation = get_u64 (buf + 16);
  h->size = get_u64 (buf + 24);
  h->block_size = get_u32 (buf + 32);
  h->phase = get_u32 (buf + 36);
  memcpy (h->state_id, buf + 40, STATE_ID_BYTES);
  h->nr_resident = get_u64 (buf + 56);
  h->nr_flagged = get_u64 (buf + 64);
  problem = decode_uris (buf, h->header_len, &h->uris);
  /* 2^63 compactions will not happen: a bigger one is damage, and
   * refusing it keeps generation + 1 from wrapping.
   */
  if (problem == NULL && (h->generation == 0 || h->generation >> 63))
    problem = "generation out of range";
  if (problem == NULL && h->phase > PHASE_MAX)
    problem = "unknown phase";
  if (problem) {
    errno = EUCLEAN;
    state_err (s->dir, "%s header is corrupt: %s", SNAPSHOT, problem);
    return -1;
  }
  return 0;
}

/* One line naming what differs and both values. */
static int
check_identity (struct state *s, const struct snap_header *h)
{
  char *was, *is;

  errno = EINVAL;
  if (h->size != s->size) {
    state_err (s->dir, "made for origin size %" PRIu64 ", but the origin is %"
               PRIu64 " bytes", h->size, s->size);
    return -1;
  }
  if (h->block_size != s->block_size) {
    state_err (s->dir, "made for block size %" PRIu32 ", but "
               "shadow-block-size is %" PRIu32, h->block_size,
               s->block_size);
    return -1;
  }
  if (!uriset_equal (&h->uris, &s->uris)) {
    was = uriset_join (&h->uris);
    is = uriset_join (&s->uris);
    state_err (s->dir, "made for the shadows %s, but the shadows are %s",
               was ? was : "?", is ? is : "?");
    free (was);
    free (is);
    errno = EINVAL;
    return -1;
  }
  return 0;
}

/* Runs of one kind: increasing, not overlapping, inside the volume.
 * kind is ENTRY_RESIDENT or ENTRY_INTENT (a flag alone).
 */
static int
load_runs (struct state *s, const unsigned char *p, uint64_t n,
           unsigned kind, const char *what, uint64_t offset)
{
  uint64_t prev_end = 0;

  for (uint64_t i = 0; i < n; ++i, p += RUN_BYTES) {
    uint64_t first = get_u64 (p), count = get_u64 (p + 8);

    if (!range_ok (s, first, count) || first < prev_end) {
      errno = EUCLEAN;
      state_err (s->dir, "%s is corrupt: %s run %" PRIu64 " at offset %"
                 PRIu64 " (first %" PRIu64 ", count %" PRIu64 ") is out of "
                 "order or outside the volume (%" PRIu64 " blocks)",
                 SNAPSHOT, what, i, offset + i * RUN_BYTES, first, count,
                 s->nr_blocks);
      return -1;
    }
    if (apply_entry (s, kind, first, count) == -1) {
      state_err (s->dir, "%s: %s", SNAPSHOT, strerror (errno));
      return -1;
    }
    prev_end = first + count;
  }
  return 0;
}

static int
load_snapshot_body (struct state *s, const unsigned char *buf, size_t len,
                    const struct snap_header *h)
{
  uint64_t body = len - h->header_len, runs_bytes;
  uint32_t stored, computed;

  errno = EUCLEAN;
  if (h->nr_resident > body / RUN_BYTES ||
      h->nr_flagged > body / RUN_BYTES - h->nr_resident ||
      body != (h->nr_resident + h->nr_flagged) * RUN_BYTES + 4) {
    state_err (s->dir, "%s body is corrupt: %zu bytes, but the header "
               "announces %" PRIu64 " + %" PRIu64 " runs",
               SNAPSHOT, len, h->nr_resident, h->nr_flagged);
    return -1;
  }
  runs_bytes = body - 4;
  stored = get_u32 (buf + len - 4);
  computed = shadow_crc32c (0, buf + h->header_len, runs_bytes);
  if (stored != computed) {
    state_err (s->dir, "%s body is corrupt: checksum mismatch (stored "
               "0x%08" PRIx32 ", computed 0x%08" PRIx32 ")",
               SNAPSHOT, stored, computed);
    return -1;
  }
  if (load_runs (s, buf + h->header_len, h->nr_resident, ENTRY_RESIDENT,
                 "resident", h->header_len) == -1)
    return -1;
  return load_runs (s, buf + h->header_len + h->nr_resident * RUN_BYTES,
                    h->nr_flagged, ENTRY_INTENT, "written-flag",
                    h->header_len + h->nr_resident * RUN_BYTES);
}

/* What the journal needs after it was read. */
enum journal_fix {
  JOURNAL_OK,
  JOURNAL_TRUNCATE,             /* torn tail */
  JOURNAL_REPLACE,              /* missing or stale */
};

static int
check_journal_header (struct state *s, const unsigned char *buf, size_t len,
                      uint64_t *generation)
{
  uint32_t stored, computed;
  const char *problem = NULL;
  static const unsigned char zero[8];

  if (check_magic_version (s, JOURNAL, buf, len, JNL_MAGIC) == -1)
    return -1;
  errno = EUCLEAN;
  if (len < JNL_HEADER) {
    state_err (s->dir, "%s header is corrupt: the file has only %zu bytes",
               JOURNAL, len);
    return -1;
  }
  stored = get_u32 (buf + 60);
  computed = shadow_crc32c (0, buf, 60);
  if (stored != computed) {
    state_err (s->dir, "%s header is corrupt: checksum mismatch (stored "
               "0x%08" PRIx32 ", computed 0x%08" PRIx32 ")",
               JOURNAL, stored, computed);
    return -1;
  }
  *generation = get_u64 (buf + 16);
  if (get_u32 (buf + 12) != JNL_HEADER)
    problem = "bad header length";
  else if (memcmp (buf + 52, zero, 8) != 0)
    problem = "reserved bytes are not zero";
  else if (get_u64 (buf + 24) != s->size ||
           get_u32 (buf + 32) != s->block_size)
    problem = "origin size or block size differs from the snapshot's";
  else if (memcmp (buf + 36, s->state_id, STATE_ID_BYTES) != 0)
    problem = "it belongs to another state (the state id differs from "
      "the snapshot's)";
  if (problem) {
    state_err (s->dir, "%s header is corrupt: %s", JOURNAL, problem);
    return -1;
  }
  if (*generation > s->generation) {
    state_err (s->dir, "%s is corrupt: its generation %" PRIu64 " is newer "
               "than the snapshot's %" PRIu64 " (was the snapshot replaced "
               "by an older copy?)", JOURNAL, *generation, s->generation);
    return -1;
  }
  return 0;
}

/* Replay batches from JNL_HEADER on.  *good_end: the end of the last good
 * batch.  -1 only for corruption that a crash cannot explain.
 */
static int
replay_journal (struct state *s, const unsigned char *buf, size_t len,
                uint64_t *good_end, uint64_t *batches)
{
  size_t off = JNL_HEADER;

  *batches = 0;
  while (len - off >= BATCH_HEADER) {
    const unsigned char *b = buf + off;
    uint32_t plen = get_u32 (b);
    uint32_t crc;

    if (plen == 0 || plen % ENTRY_BYTES != 0 ||
        plen > len - off - BATCH_HEADER)
      break;                    /* torn, or a damaged length */
    crc = shadow_crc32c (0, b, 4);
    crc = shadow_crc32c (crc, b + BATCH_HEADER, plen);
    if (crc != get_u32 (b + 4))
      break;
    for (uint32_t e = 0; e < plen; e += ENTRY_BYTES) {
      const unsigned char *p = b + BATCH_HEADER + e;
      unsigned kind = p[0];
      uint64_t first = get_u64 (p + 1), count = get_u64 (p + 9);
      const char *problem = entry_problem (s, kind, first, count);

      if (problem) {
        errno = EUCLEAN;
        state_err (s->dir, "%s is corrupt: batch at offset %zu, entry at "
                   "offset %zu: %s (kind %u, first %" PRIu64 ", count %"
                   PRIu64 ")", JOURNAL, off, off + BATCH_HEADER + e,
                   problem, kind, first, count);
        return -1;
      }
      if (apply_entry (s, kind, first, count) == -1) {
        state_err (s->dir, "%s: %s", JOURNAL, strerror (errno));
        return -1;
      }
    }
    off += BATCH_HEADER + plen;
    ++*batches;
  }
  *good_end = off;
  return 0;
}

/* Is this snapshot what creation writes, so that a missing journal is
 * explained by a crash during creation?
 */
static bool
snapshot_pristine (const struct snap_header *h)
{
  return h->generation == 1 && h->phase == STATE_PHASE_COPYING &&
    h->nr_resident == 0 && h->nr_flagged == 0;
}

/* Read and check everything first; change files only once the whole
 * state is known good, so that a refused state is left as it was.
 */
static int
load_state (struct state *s, int snapfd, struct state_load_info *info)
{
  struct snap_header h = { 0 };
  unsigned char *snap = NULL, *jnl = NULL;
  size_t snap_len, jnl_len = 0;
  uint64_t jgen = 0, good_end = JNL_HEADER;
  enum journal_fix fix = JOURNAL_OK;
  int ret = -1, fd;

  if (read_all (s->dir, SNAPSHOT, snapfd, &snap, &snap_len) == -1)
    goto out;
  if (decode_snapshot_header (s, snap, snap_len, &h) == -1 ||
      check_identity (s, &h) == -1 ||
      load_snapshot_body (s, snap, snap_len, &h) == -1)
    goto out;
  s->generation = h.generation;
  s->snapshot_bytes = snap_len;
  s->phase = h.phase;
  memcpy (s->state_id, h.state_id, STATE_ID_BYTES);

  fd = openat (s->dirfd, JOURNAL, O_RDWR | O_CLOEXEC);
  if (fd == -1 && errno != ENOENT) {
    sys_err (s->dir, JOURNAL, "open", 0, false);
    goto out;
  }
  if (fd == -1) {
    if (!snapshot_pristine (&h)) {
      errno = EUCLEAN;
      state_err (s->dir, "%s is missing, but %s (generation %" PRIu64 ") "
                 "needs one: refusing to lose the residency recorded in it",
                 JOURNAL, SNAPSHOT, h.generation);
      goto out;
    }
    shadow_debug ("shadow-state=%s: no %s next to a new %s: creation was "
                  "interrupted; making it", s->dir, JOURNAL, SNAPSHOT);
    fix = JOURNAL_REPLACE;
  }
  else {
    s->journalfd = fd;
    if (read_all (s->dir, JOURNAL, fd, &jnl, &jnl_len) == -1 ||
        check_journal_header (s, jnl, jnl_len, &jgen) == -1)
      goto out;
    if (jgen < s->generation) {
      shadow_debug ("shadow-state=%s: %s generation %" PRIu64 " is older "
                    "than %s's %" PRIu64 ": left by an interrupted "
                    "compaction, contained in the snapshot; replacing it",
                    s->dir, JOURNAL, jgen, SNAPSHOT, s->generation);
      fix = JOURNAL_REPLACE;
    }
    else {
      if (replay_journal (s, jnl, jnl_len, &good_end,
                          &info->batches_replayed) == -1)
        goto out;
      s->journal_gen = jgen;
      s->journal_end = good_end;
      if (good_end < jnl_len) {
        info->torn_tail = true;
        info->torn_bytes = jnl_len - good_end;
        shadow_debug ("shadow-state=%s: %s: the batch at offset %" PRIu64
                      " is torn or corrupt: ignoring it and the %" PRIu64
                      " bytes to the end, and cutting them off",
                      s->dir, JOURNAL, good_end, info->torn_bytes);
        fix = JOURNAL_TRUNCATE;
      }
    }
  }

  switch (fix) {
  case JOURNAL_OK:
    break;
  case JOURNAL_REPLACE:
    if (install_journal (s, s->generation) == -1)
      goto out;
    break;
  case JOURNAL_TRUNCATE:
    if (ftruncate (s->journalfd, good_end) == -1) {
      sys_err (s->dir, JOURNAL, "truncate of the torn tail", good_end, true);
      goto out;
    }
    if (fsync (s->journalfd) == -1) {
      sys_err (s->dir, JOURNAL, "fsync after truncating", good_end, true);
      goto out;
    }
    break;
  }
  ret = 0;

 out:
  uriset_free (&h.uris);
  free (snap);
  free (jnl);
  return ret;
}

/* A random id, so that a journal is never replayed over another state's
 * snapshot.  Unique, not secret: if the kernel's pool is not ready, time,
 * pid and an address are good enough.
 */
static void
make_state_id (unsigned char id[STATE_ID_BYTES])
{
  struct timespec ts;
  uint64_t x;

  if (getrandom (id, STATE_ID_BYTES, GRND_NONBLOCK) == STATE_ID_BYTES)
    return;
  clock_gettime (CLOCK_REALTIME, &ts);
  x = (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
  x ^= (uint64_t) getpid () << 32 ^ (uintptr_t) id;
  for (int i = 0; i < STATE_ID_BYTES; i += 8) {
    uint64_t z = (x += UINT64_C (0x9e3779b97f4a7c15)); /* splitmix64 */

    z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
    put_u64 (id + i, z ^ (z >> 31));
  }
}

static int
create_state (struct state *s)
{
  bool renamed;

  make_state_id (s->state_id);
  s->generation = 1;
  s->phase = STATE_PHASE_COPYING;
  if (write_snapshot (s, 1, &s->snapshot_bytes, &renamed) == -1)
    return -1;
  return install_journal (s, 1);
}

/* mkdir DIR if it is missing, and make its entry durable. */
static int
open_dir (struct state *s)
{
  bool made = false;

  if (mkdir (s->dir, 0700) == 0)
    made = true;
  else if (errno != EEXIST) {
    sys_err (s->dir, s->dir, "mkdir", 0, false);
    return -1;
  }
  s->dirfd = open (s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (s->dirfd == -1) {
    sys_err (s->dir, s->dir, "open", 0, false);
    return -1;
  }
  if (made) {
    char *copy = strdup (s->dir);
    int pfd = copy ? open (dirname (copy), O_RDONLY | O_DIRECTORY |
                           O_CLOEXEC) : -1;

    if (pfd == -1 || fsync (pfd) == -1) {
      sys_err (s->dir, "parent directory", "fsync", 0, false);
      if (pfd >= 0)
        close (pfd);
      free (copy);
      return -1;
    }
    close (pfd);
    free (copy);
  }
  return 0;
}

static int
take_lock (struct state *s)
{
  s->lockfd = openat (s->dirfd, LOCKFILE, O_RDWR | O_CREAT | O_CLOEXEC,
                      0600);
  if (s->lockfd == -1) {
    sys_err (s->dir, LOCKFILE, "open", 0, false);
    return -1;
  }
  if (flock (s->lockfd, LOCK_EX | LOCK_NB) == -1) {
    if (errno == EWOULDBLOCK) {
      state_err (s->dir, "%s is in use by another process", s->dir);
      errno = EBUSY;
    }
    else
      sys_err (s->dir, LOCKFILE, "flock", 0, false);
    return -1;
  }
  return 0;
}

static void
state_free (struct state *s)
{
  if (s == NULL)
    return;
  if (s->journalfd >= 0)
    close (s->journalfd);
  if (s->lockfd >= 0)
    close (s->lockfd);          /* releases the flock */
  if (s->dirfd >= 0)
    close (s->dirfd);
  if (s->resident)
    blockset_free (s->resident);
  if (s->flagged)
    blockset_free (s->flagged);
  uriset_free (&s->uris);
  pthread_mutex_destroy (&s->lock);
  free (s->dir);
  free (s);
}

static struct state *
state_new (const char *dir, const struct residency *r,
           const struct state_identity *id)
{
  struct state *s = calloc (1, sizeof *s);
  int err;

  if (s == NULL)
    return NULL;
  s->dirfd = s->lockfd = s->journalfd = -1;
  err = pthread_mutex_init (&s->lock, NULL);
  if (err != 0) {
    free (s);
    errno = err;
    return NULL;
  }
  s->size = id->size;
  s->block_size = id->block_size;
  s->nr_blocks = r->nr_blocks;
  s->dir = strdup (dir);
  s->resident = blockset_new (r->nr_blocks);
  s->flagged = blockset_new (r->nr_blocks);
  if (s->dir == NULL || s->resident == NULL || s->flagged == NULL ||
      uriset_from_identity (id, &s->uris) == -1) {
    err = errno;
    state_free (s);
    errno = err;
    return NULL;
  }
  return s;
}

/* The residency got the resident runs while they were read; now written
 * = flagged n resident, run against run.
 */
struct to_residency {
  struct state *s;
  struct residency *r;
  uint64_t written;
};

static int
load_written_run (uint64_t first, uint64_t count, void *opaque)
{
  struct to_residency *t = opaque;
  struct mark m = { .first = first, .count = count, .kind = MARK_WRITTEN };

  t->written += count;
  return residency_load_mark (t->r, &m) == -1 ? -1 : 0;
}

static int
intersect_flagged_run (uint64_t first, uint64_t count, void *opaque)
{
  struct to_residency *t = opaque;

  /* The usual case, a flagged run wholly resident, costs one lookup. */
  if (blockset_next_clear (t->s->resident, first) >= first + count)
    return load_written_run (first, count, t);
  return blockset_foreach_run (t->s->resident, first, first + count,
                               load_written_run, t);
}

static int
load_written (struct state *s, struct residency *r,
              struct state_load_info *info)
{
  struct to_residency t = { .s = s, .r = r };

  if (blockset_foreach_run (s->flagged, 0, s->nr_blocks,
                            intersect_flagged_run, &t) != 0) {
    state_err (s->dir, "loading the residency: %s", strerror (errno));
    return -1;
  }
  info->resident_blocks = blockset_count (s->resident);
  info->written_blocks = t.written;
  return 0;
}

struct state *
state_open (const char *dir, const struct state_identity *id,
            struct residency *r, struct state_load_info *info)
{
  struct state_load_info ignored;
  struct state *s;
  int snapfd, err;

  if (info == NULL)
    info = &ignored;
  memset (info, 0, sizeof *info);
  if (r->size != id->size || r->block_size != id->block_size) {
    errno = EINVAL;
    state_err (dir, "the residency map does not match the identity");
    return NULL;
  }
  s = state_new (dir, r, id);
  if (s == NULL) {
    state_err (dir, "%s", strerror (errno));
    return NULL;
  }
  if (open_dir (s) == -1 || take_lock (s) == -1)
    goto fail;

  snapfd = openat (s->dirfd, SNAPSHOT, O_RDONLY | O_CLOEXEC);
  if (snapfd == -1 && errno != ENOENT) {
    sys_err (dir, SNAPSHOT, "open", 0, false);
    goto fail;
  }
  if (snapfd == -1) {
    if (faccessat (s->dirfd, JOURNAL, F_OK, 0) == 0) {
      errno = EUCLEAN;
      state_err (dir, "%s exists but %s is missing: refusing to start a "
                 "new state over it", JOURNAL, SNAPSHOT);
      goto fail;
    }
    if (errno != ENOENT) {
      sys_err (dir, JOURNAL, "access", 0, false);
      goto fail;
    }
    if (create_state (s) == -1)
      goto fail;
    info->created = true;
  }
  else {
    s->load_target = r;
    err = load_state (s, snapfd, info);
    s->load_target = NULL;
    close (snapfd);
    if (err == -1)
      goto fail;
  }
  if (load_written (s, r, info) == -1)
    goto fail;
  remove_debris (s, SNAPSHOT_TMP);
  remove_debris (s, JOURNAL_TMP);
  info->phase = s->phase;
  shadow_debug ("shadow-state=%s: %s generation %" PRIu64 ": %" PRIu64
                " resident, %" PRIu64 " written, phase %d, %" PRIu64
                " batches replayed", dir, info->created ? "created" : "loaded",
                s->generation, info->resident_blocks, info->written_blocks,
                s->phase, info->batches_replayed);
  return s;

 fail:
  err = errno;
  state_free (s);
  errno = err;
  return NULL;
}

/*----------------------------------------------------------------------
 * Appending.
 */

int
state_append_marks (struct state *s, const struct mark_list *m)
{
  int ret = 0;

  for (size_t i = 0; i < m->len; ++i)
    if ((m->v[i].kind != MARK_COPIED && m->v[i].kind != MARK_WRITTEN) ||
        !range_ok (s, m->v[i].first, m->v[i].count)) {
      /* Never let the journal take what the next load would refuse. */
      errno = EINVAL;
      state_err (s->dir, "refusing to record mark %zu (kind %d, first %"
                 PRIu64 ", count %" PRIu64 "): not a valid mark of this "
                 "volume", i, (int) m->v[i].kind, m->v[i].first,
                 m->v[i].count);
      return -1;
    }
  if (m->len == 0)
    return 0;

  mutex_lock (&s->lock);
  if (append_entries (s, m, m->len, get_mark) == -1)
    ret = -1;
  else {
    apply_durable (s, m, m->len, get_mark);
    s->stats.batches_appended++;
  }
  mutex_unlock (&s->lock);
  return ret;
}

int
state_append_intent (struct state *s, uint64_t first, uint64_t count)
{
  struct one_entry e = { ENTRY_INTENT, first, count };
  int ret = 0;

  if (!range_ok (s, first, count)) {
    errno = EINVAL;
    state_err (s->dir, "refusing to record an intent for blocks %" PRIu64
               "+%" PRIu64 ": outside the volume", first, count);
    return -1;
  }
  mutex_lock (&s->lock);
  if (append_entries (s, &e, 1, get_one) == -1)
    ret = -1;
  else {
    apply_durable (s, &e, 1, get_one);
    s->stats.intents_appended++;
  }
  mutex_unlock (&s->lock);
  return ret;
}

int
state_set_phase (struct state *s, int phase)
{
  struct one_entry e = { ENTRY_PHASE, (uint64_t) phase, 0 };
  int ret = 0;

  if (phase < 0 || phase > PHASE_MAX) {
    errno = EINVAL;
    state_err (s->dir, "refusing to record unknown phase %d", phase);
    return -1;
  }
  mutex_lock (&s->lock);
  if (append_entries (s, &e, 1, get_one) == -1)
    ret = -1;
  else
    s->phase = phase;
  mutex_unlock (&s->lock);
  return ret;
}

/*----------------------------------------------------------------------
 * Compaction.
 */

/* The journal size past which compaction is due. */
static uint64_t
compaction_limit (const struct state *s)
{
  const uint64_t minimum = STATE_COMPACT_MIN;
  uint64_t limit = 2 * s->snapshot_bytes;

  return limit > minimum ? limit : minimum;
}

/* After a failure (a full disk, typically) the next attempt waits until
 * the journal has grown by as much again, rather than writing a whole
 * snapshot at every commit only to fail again.
 */
static bool
compaction_due (const struct state *s)
{
  return s->journal_end > compaction_limit (s) &&
    s->journal_end > s->compact_after;
}

int
state_maybe_compact (struct state *s)
{
  uint64_t bytes;
  bool renamed;
  int ret = -1;

  mutex_lock (&s->lock);
  /* A lagging journal (a compaction failed after its rename) is
   * finished here too, not only by the next append.
   */
  if (s->journal_gen == s->generation && !compaction_due (s)) {
    ret = 0;
    goto out;
  }
  if (s->journal_gen == s->generation) {
    if (s->sets_incomplete) {
      errno = ENOMEM;
      goto out;                 /* apply_durable said why, once */
    }
    if (write_snapshot (s, s->generation + 1, &bytes, &renamed) == -1) {
      if (renamed) {
        s->generation++;
        s->snapshot_bytes = bytes;
        s->stats.compactions++;
      }
      else
        s->compact_after = s->journal_end + compaction_limit (s);
      goto out;
    }
    s->generation++;
    s->snapshot_bytes = bytes;
    s->compact_after = 0;
    s->stats.compactions++;
  }
  if (install_journal (s, s->generation) == -1)
    goto out;
  shadow_debug ("shadow-state=%s: compacted to generation %" PRIu64
                ": snapshot %" PRIu64 " bytes", s->dir, s->generation,
                s->snapshot_bytes);
  ret = 0;
 out:
  mutex_unlock (&s->lock);
  return ret;
}

void
state_get_stats (struct state *s, struct state_stats *out)
{
  mutex_lock (&s->lock);
  *out = s->stats;
  out->journal_bytes = s->journal_end;
  out->snapshot_bytes = s->snapshot_bytes;
  mutex_unlock (&s->lock);
}

void
state_close (struct state *s)
{
  /* Every batch was synced when it was appended: nothing to flush. */
  state_free (s);
}
