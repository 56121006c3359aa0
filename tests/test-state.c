/* nbdshadow: unit tests of the persistent state (server/state.c).
 *
 * The state is what keeps a restarted proxy from serving stale data, so
 * these tests attack it the way crashes and disks do: torn tails cut at
 * every byte, single bit flips everywhere in a batch and in the headers,
 * the files left at every crash point of a compaction, appends that fail
 * half-way (RLIMIT_FSIZE makes write() fail after a partial write).  The
 * corrupting tests build their records from the format documented in
 * state.c and nbdshadow-state(5), not from state.c's code, so that the
 * documentation is tested too.
 */

#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <check.h>

#include "crc32c.h"
#include "log.h"
#include "residency.h"
#include "state.h"

/*----------------------------------------------------------------------
 * Fixtures: a fresh temporary directory per test, messages captured.
 */

static char root[PATH_MAX];     /* mkdtemp */
static char dir[PATH_MAX];      /* root/state: state_open creates it */

static char last_error[8192];
static char last_debug[8192];
static unsigned nr_errors;

static void capture_error (const char *fmt, va_list args)
  __attribute__ ((format (printf, 1, 0)));
static void capture_debug (const char *fmt, va_list args)
  __attribute__ ((format (printf, 1, 0)));

static void
capture_error (const char *fmt, va_list args)
{
  vsnprintf (last_error, sizeof last_error, fmt, args);
  nr_errors++;
}

/* Debug messages accumulate (one open says several things); the
 * buffer is emptied by the tests that look at it.
 */
static void
capture_debug (const char *fmt, va_list args)
{
  size_t len = strlen (last_debug);

  if (len < sizeof last_debug - 1) {
    vsnprintf (last_debug + len, sizeof last_debug - len, fmt, args);
    len = strlen (last_debug);
    if (len < sizeof last_debug - 1)
      strcpy (last_debug + len, "\n");
  }
}

static void
setup (void)
{
  const char *tmpdir = getenv ("TMPDIR");

  ck_assert_int_lt (snprintf (root, sizeof root, "%s/test-state.XXXXXX",
                              tmpdir && *tmpdir ? tmpdir : "/tmp"),
                    PATH_MAX);
  ck_assert_ptr_nonnull (mkdtemp (root));
  ck_assert_int_lt (snprintf (dir, sizeof dir, "%s/state", root), PATH_MAX);
  shadow_log_set (capture_error, capture_debug);
  last_error[0] = last_debug[0] = '\0';
  nr_errors = 0;
}

static void
remove_tree (const char *path)
{
  DIR *d = opendir (path);
  struct dirent *e;
  char sub[PATH_MAX];

  if (d == NULL) {
    unlink (path);
    return;
  }
  while ((e = readdir (d)) != NULL) {
    if (strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0)
      continue;
    if (snprintf (sub, sizeof sub, "%s/%s", path, e->d_name) < PATH_MAX)
      remove_tree (sub);
  }
  closedir (d);
  rmdir (path);
}

static void
teardown (void)
{
  remove_tree (root);
}

/*----------------------------------------------------------------------
 * Files.
 */

static const char *
path_of (const char *name)
{
  static char buf[4][PATH_MAX];
  static unsigned next;
  char *p = buf[next++ % 4];

  ck_assert_int_lt (snprintf (p, PATH_MAX, "%s/%s", dir, name), PATH_MAX);
  return p;
}

static bool
exists (const char *name)
{
  return access (path_of (name), F_OK) == 0;
}

static unsigned char *
read_file (const char *name, size_t *len)
{
  int fd = open (path_of (name), O_RDONLY);
  struct stat st;
  unsigned char *buf;
  size_t done = 0;

  ck_assert_msg (fd >= 0, "open %s: %m", name);
  ck_assert_int_eq (fstat (fd, &st), 0);
  buf = malloc (st.st_size + 1);
  ck_assert_ptr_nonnull (buf);
  while (done < (size_t) st.st_size) {
    ssize_t n = read (fd, buf + done, st.st_size - done);

    ck_assert_int_gt (n, 0);
    done += n;
  }
  close (fd);
  *len = done;
  return buf;
}

static void
write_file (const char *name, const void *buf, size_t len)
{
  int fd = open (path_of (name), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  const unsigned char *p = buf;

  ck_assert_msg (fd >= 0, "create %s: %m", name);
  while (len > 0) {
    ssize_t n = write (fd, p, len);

    ck_assert_int_gt (n, 0);
    p += n;
    len -= n;
  }
  ck_assert_int_eq (close (fd), 0);
}

static uint64_t
file_size (const char *name)
{
  struct stat st;

  ck_assert_msg (stat (path_of (name), &st) == 0, "stat %s: %m", name);
  return st.st_size;
}

static void
remove_file (const char *name)
{
  ck_assert_msg (unlink (path_of (name)) == 0 || errno == ENOENT,
                 "unlink %s: %m", name);
}

/* Names in DIR, sorted, space separated. */
static const char *
dir_listing (void)
{
  static char out[1024];
  struct dirent **names;
  int n = scandir (dir, &names, NULL, alphasort);

  out[0] = '\0';
  ck_assert_int_ge (n, 0);
  for (int i = 0; i < n; ++i) {
    if (names[i]->d_name[0] != '.') {
      if (out[0])
        strcat (out, " ");
      strcat (out, names[i]->d_name);
    }
    free (names[i]);
  }
  free (names);
  return out;
}

static void
put_le32 (unsigned char *p, uint32_t v)
{
  for (int i = 0; i < 4; ++i)
    p[i] = v >> (8 * i);
}

static void
put_le64 (unsigned char *p, uint64_t v)
{
  for (int i = 0; i < 8; ++i)
    p[i] = v >> (8 * i);
}

static uint32_t
get_le32 (const unsigned char *p)
{
  return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t) p[3] << 24;
}

static uint64_t
get_le64 (const unsigned char *p)
{
  return get_le32 (p) | (uint64_t) get_le32 (p + 4) << 32;
}

/* A batch of one entry, as nbdshadow-state(5) describes it. */
static size_t
craft_batch (unsigned char *b, unsigned kind, uint64_t first, uint64_t count)
{
  uint32_t crc;

  put_le32 (b, 17);
  b[8] = kind;
  put_le64 (b + 9, first);
  put_le64 (b + 17, count);
  crc = shadow_crc32c (0, b, 4);
  crc = shadow_crc32c (crc, b + 8, 17);
  put_le32 (b + 4, crc);
  return 25;
}

/*----------------------------------------------------------------------
 * Identities, and a model of what a state must load as.
 */

#define SMALL_BLOCKS 1000

static const char *uris_ab[] = { "nbd://b.example/vol", "nbd://a.example/vol" };

static struct state_identity
small_id (void)
{
  return (struct state_identity) {
    .size = SMALL_BLOCKS * 4096, .block_size = 4096,
    .uris = uris_ab, .nr_uris = 2,
  };
}

struct model {
  uint64_t n;
  bool *res, *flag;
  int phase;
};

static void
model_init (struct model *m, uint64_t n)
{
  m->n = n;
  m->res = calloc (n, 1);
  m->flag = calloc (n, 1);
  m->phase = 0;
  ck_assert (m->res && m->flag);
}

static void
model_free (struct model *m)
{
  free (m->res);
  free (m->flag);
}

/* The load rule: resident = resident U written entries, written =
 * (written U intent entries) n resident.
 */
static void
model_mark (struct model *m, uint64_t first, uint64_t count, int kind)
{
  for (uint64_t b = first; b < first + count; ++b) {
    if (kind != 3)
      m->res[b] = true;
    if (kind != MARK_COPIED)
      m->flag[b] = true;
  }
}

static void
check_model (struct residency *r, const struct model *m,
             const struct state_load_info *info)
{
  uint64_t res = 0, wr = 0;

  for (uint64_t b = 0; b < m->n; ++b) {
    bool w = m->res[b] && m->flag[b];

    ck_assert_msg (residency_is_resident (r, b) == m->res[b],
                   "block %" PRIu64 ": resident %d, expected %d", b,
                   residency_is_resident (r, b), m->res[b]);
    ck_assert_msg (residency_is_written (r, b) == w,
                   "block %" PRIu64 ": written %d, expected %d", b,
                   residency_is_written (r, b), w);
    res += m->res[b];
    wr += w;
  }
  if (info) {
    ck_assert_uint_eq (info->resident_blocks, res);
    ck_assert_uint_eq (info->written_blocks, wr);
    ck_assert_int_eq (info->phase, m->phase);
  }
  /* Loading must not queue marks for the next commit. */
  ck_assert (!residency_has_pending (r));
}

/* Open, expecting success; *rp receives a fresh residency. */
static struct state *
open_ok (const struct state_identity *id, struct residency **rp,
         struct state_load_info *info)
{
  struct state *s;

  *rp = residency_new (id->size, id->block_size);
  ck_assert_ptr_nonnull (*rp);
  s = state_open (dir, id, *rp, info);
  ck_assert_msg (s != NULL, "state_open failed: %s", last_error);
  return s;
}

static void
close_all (struct state *s, struct residency *r)
{
  state_close (s);
  residency_free (r);
}

/* Open, expecting a refusal whose one-line message contains want and
 * names DIR, with snapshot and journal left byte for byte as they were.
 */
static void
expect_refused (const struct state_identity *id, const char *want)
{
  struct residency *r = residency_new (id->size, id->block_size);
  unsigned char *snap0 = NULL, *jnl0 = NULL, *snap1, *jnl1;
  size_t snap0_len = 0, jnl0_len = 0, snap1_len, jnl1_len;
  bool had_snap = exists ("snapshot"), had_jnl = exists ("journal");
  char prefix[PATH_MAX + 32];
  struct state *s;

  if (had_snap)
    snap0 = read_file ("snapshot", &snap0_len);
  if (had_jnl)
    jnl0 = read_file ("journal", &jnl0_len);
  last_error[0] = '\0';
  s = state_open (dir, id, r, NULL);
  ck_assert_msg (s == NULL, "state_open accepted a state that should be "
                 "refused with \"%s\"", want);
  ck_assert_msg (strstr (last_error, want) != NULL,
                 "message \"%s\" does not contain \"%s\"", last_error, want);
  snprintf (prefix, sizeof prefix, "shadow-state=%s: ", dir);
  ck_assert_msg (strncmp (last_error, prefix, strlen (prefix)) == 0,
                 "message \"%s\" does not name DIR", last_error);
  ck_assert_ptr_null (strchr (last_error, '\n'));

  ck_assert_int_eq (exists ("snapshot"), had_snap);
  ck_assert_int_eq (exists ("journal"), had_jnl);
  if (had_snap) {
    snap1 = read_file ("snapshot", &snap1_len);
    ck_assert_uint_eq (snap1_len, snap0_len);
    ck_assert (memcmp (snap0, snap1, snap0_len) == 0);
    free (snap1);
  }
  if (had_jnl) {
    jnl1 = read_file ("journal", &jnl1_len);
    ck_assert_uint_eq (jnl1_len, jnl0_len);
    ck_assert (memcmp (jnl0, jnl1, jnl0_len) == 0);
    free (jnl1);
  }
  free (snap0);
  free (jnl0);
  residency_free (r);
}

static void
append_mark (struct state *s, struct model *m, uint64_t first,
             uint64_t count, enum mark_kind kind)
{
  struct mark_list l = { 0 };

  ck_assert_int_eq (mark_list_append (&l, first, count, kind), 0);
  ck_assert_int_eq (state_append_marks (s, &l), 0);
  mark_list_free (&l);
  if (m)
    model_mark (m, first, count, kind);
}

static void
append_intent (struct state *s, struct model *m, uint64_t first,
               uint64_t count)
{
  ck_assert_int_eq (state_append_intent (s, first, count), 0);
  if (m)
    model_mark (m, first, count, 3);
}

/* Grow the journal past the compaction threshold with marks of block
 * blk (already resident, so the sets do not change), and compact.
 */
static void
force_compaction (struct state *s, struct model *m, uint64_t blk)
{
  struct state_stats before, after;
  struct mark_list l = { 0 };

  state_get_stats (s, &before);
  for (int i = 0; i < 70000; ++i)       /* 70000 x 17 bytes > 1 MiB */
    ck_assert_int_eq (mark_list_append (&l, blk, 1, MARK_COPIED), 0);
  ck_assert_int_eq (state_append_marks (s, &l), 0);
  mark_list_free (&l);
  model_mark (m, blk, 1, MARK_COPIED);
  ck_assert_int_eq (state_maybe_compact (s), 0);
  state_get_stats (s, &after);
  ck_assert_uint_eq (after.compactions, before.compactions + 1);
  ck_assert_uint_eq (after.journal_bytes, 64);
  ck_assert_uint_eq (file_size ("journal"), 64);
  ck_assert_uint_eq (after.snapshot_bytes, file_size ("snapshot"));
}

static double
now_s (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*----------------------------------------------------------------------
 * Tests.
 */

START_TEST (test_crc32c)
{
  /* The check value of CRC-32C (RFC 3720 B.4 and every catalogue). */
  ck_assert_uint_eq (shadow_crc32c (0, "123456789", 9), 0xe3069283);
  ck_assert_uint_eq (shadow_crc32c (0, "", 0), 0);
  /* 32 bytes of zeros, RFC 3720 B.4. */
  {
    unsigned char z[32] = { 0 }, buf[1000];

    ck_assert_uint_eq (shadow_crc32c (0, z, 32), 0x8a9136aa);
    /* Chaining, at every split and alignment. */
    for (size_t i = 0; i < sizeof buf; ++i)
      buf[i] = i * 7 + 3;
    for (size_t off = 0; off < 8; ++off)
      for (size_t split = 0; split <= 100; ++split) {
        uint32_t whole = shadow_crc32c (0, buf + off, 100);
        uint32_t part = shadow_crc32c (0, buf + off, split);

        part = shadow_crc32c (part, buf + off + split, 100 - split);
        ck_assert_uint_eq (whole, part);
      }
  }
}
END_TEST

START_TEST (test_create_reopen)
{
  struct state_identity id = small_id ();
  struct state_load_info info;
  struct state_stats st;
  struct residency *r;
  struct state *s;
  struct stat sb;
  unsigned char *h;
  size_t len;

  ck_assert (access (dir, F_OK) == -1);
  s = open_ok (&id, &r, &info);
  ck_assert (info.created);
  ck_assert_int_eq (info.phase, 0);
  ck_assert_uint_eq (info.resident_blocks, 0);
  ck_assert_uint_eq (info.batches_replayed, 0);
  ck_assert (!info.torn_tail);
  ck_assert_int_eq (stat (dir, &sb), 0);
  ck_assert_int_eq (sb.st_mode & 0777, 0700);
  ck_assert_str_eq (dir_listing (), "journal lock snapshot");
  state_get_stats (s, &st);
  ck_assert_uint_eq (st.journal_bytes, 64);
  ck_assert_uint_eq (st.snapshot_bytes, file_size ("snapshot"));
  ck_assert_uint_eq (file_size ("journal"), 64);
  close_all (s, r);

  /* The snapshot header is laid out as documented. */
  h = read_file ("snapshot", &len);
  ck_assert (memcmp (h, "NBDSHSNP", 8) == 0);
  ck_assert_uint_eq (get_le32 (h + 8), 1);              /* version */
  ck_assert_uint_eq (get_le64 (h + 16), 1);             /* generation */
  ck_assert_uint_eq (get_le64 (h + 24), id.size);
  ck_assert_uint_eq (get_le32 (h + 32), id.block_size);
  ck_assert_uint_eq (get_le32 (h + 36), 0);             /* phase */
  ck_assert_uint_eq (get_le64 (h + 56), 0);
  ck_assert_uint_eq (get_le64 (h + 64), 0);
  ck_assert_uint_eq (get_le32 (h + 72), 2);             /* sorted: */
  ck_assert_uint_eq (get_le32 (h + 76), strlen (uris_ab[1]));
  ck_assert (memcmp (h + 80, uris_ab[1], strlen (uris_ab[1])) == 0);
  ck_assert_uint_eq (get_le32 (h + 12), len - 4);
  ck_assert_uint_eq (get_le32 (h + len - 8),
                     shadow_crc32c (0, h, len - 8));
  ck_assert_uint_eq (get_le32 (h + len - 4), shadow_crc32c (0, "", 0));
  free (h);
  h = read_file ("journal", &len);
  ck_assert (memcmp (h, "NBDSHJNL", 8) == 0);
  ck_assert_uint_eq (get_le64 (h + 16), 1);
  ck_assert_uint_eq (get_le32 (h + 60), shadow_crc32c (0, h, 60));
  free (h);

  s = open_ok (&id, &r, &info);
  ck_assert (!info.created);
  ck_assert_uint_eq (info.resident_blocks, 0);
  close_all (s, r);

  /* mkdir, not mkdir -p: a missing parent is an error. */
  ck_assert_int_lt (snprintf (dir, sizeof dir, "%s/no/such", root), PATH_MAX);
  r = residency_new (id.size, id.block_size);
  ck_assert_ptr_null (state_open (dir, &id, r, NULL));
  ck_assert_ptr_nonnull (strstr (last_error, "mkdir"));
  residency_free (r);
}
END_TEST

START_TEST (test_marks_survive)
{
  struct state_identity id = small_id ();
  struct state_load_info info;
  struct residency *r;
  struct state *s;
  struct model m;
  struct mark_list l = { 0 };

  model_init (&m, SMALL_BLOCKS);
  s = open_ok (&id, &r, &info);
  ck_assert_int_eq (mark_list_append (&l, 0, 10, MARK_COPIED), 0);
  ck_assert_int_eq (mark_list_append (&l, 20, 5, MARK_WRITTEN), 0);
  ck_assert_int_eq (mark_list_append (&l, 999, 1, MARK_COPIED), 0);
  ck_assert_int_eq (state_append_marks (s, &l), 0);
  mark_list_free (&l);
  model_mark (&m, 0, 10, MARK_COPIED);
  model_mark (&m, 20, 5, MARK_WRITTEN);
  model_mark (&m, 999, 1, MARK_COPIED);
  append_intent (s, &m, 0, 2);          /* resident: becomes written */
  append_intent (s, &m, 30, 3);         /* absent: stays absent */
  ck_assert_int_eq (state_set_phase (s, 2), 0);
  m.phase = 2;
  append_mark (s, &m, 500, 100, MARK_WRITTEN);
  close_all (s, r);

  s = open_ok (&id, &r, &info);
  ck_assert (!info.created);
  ck_assert_uint_eq (info.batches_replayed, 5);
  ck_assert (!info.torn_tail);
  check_model (r, &m, &info);
  ck_assert (residency_is_written (r, 0));
  ck_assert (!residency_is_resident (r, 30));
  ck_assert (!residency_is_written (r, 30));

  /* The phase changes again, and the last one wins. */
  ck_assert_int_eq (state_set_phase (s, 3), 0);
  m.phase = 3;
  close_all (s, r);
  s = open_ok (&id, &r, &info);
  check_model (r, &m, &info);
  close_all (s, r);
  model_free (&m);
}
END_TEST

START_TEST (test_intent_rule)
{
  struct state_identity id = small_id ();
  struct state_load_info info;
  struct residency *r;
  struct state *s;
  struct model m;

  model_init (&m, SMALL_BLOCKS);
  s = open_ok (&id, &r, &info);
  append_intent (s, &m, 5, 5);
  close_all (s, r);

  /* An intent alone makes nothing resident, so nothing written. */
  s = open_ok (&id, &r, &info);
  ck_assert_uint_eq (info.resident_blocks, 0);
  ck_assert_uint_eq (info.written_blocks, 0);
  check_model (r, &m, &info);

  /* The blocks that become resident later carry the flag: a client may
   * have written them (written = flags n resident).
   */
  append_mark (s, &m, 7, 2, MARK_COPIED);
  append_mark (s, &m, 100, 3, MARK_COPIED);
  close_all (s, r);
  s = open_ok (&id, &r, &info);
  check_model (r, &m, &info);
  ck_assert (residency_is_written (r, 7));
  ck_assert (residency_is_written (r, 8));
  ck_assert (!residency_is_resident (r, 6));
  ck_assert (!residency_is_written (r, 100));
  ck_assert_uint_eq (info.written_blocks, 2);

  /* Compaction keeps the flags of blocks that are not resident: a copy
   * after it gives the same answer as without it.
   */
  force_compaction (s, &m, 999);
  append_mark (s, &m, 5, 1, MARK_COPIED);
  close_all (s, r);
  s = open_ok (&id, &r, &info);
  check_model (r, &m, &info);
  ck_assert (residency_is_written (r, 5));
  ck_assert (!residency_is_resident (r, 9));
  close_all (s, r);
  model_free (&m);
}
END_TEST

/* A, B, then C with three entries; returns C's start and end. */
static void
three_batches (struct model *m, uint64_t *c_start, uint64_t *c_end)
{
  struct state_identity id = small_id ();
  struct state_stats st;
  struct mark_list l = { 0 };
  struct residency *r;
  struct state *s;

  s = open_ok (&id, &r, NULL);
  append_mark (s, m, 10, 10, MARK_COPIED);
  append_intent (s, m, 12, 2);
  state_get_stats (s, &st);
  *c_start = st.journal_bytes;
  ck_assert_int_eq (mark_list_append (&l, 100, 1, MARK_COPIED), 0);
  ck_assert_int_eq (mark_list_append (&l, 200, 2, MARK_WRITTEN), 0);
  ck_assert_int_eq (mark_list_append (&l, 300, 3, MARK_COPIED), 0);
  ck_assert_int_eq (state_append_marks (s, &l), 0);
  mark_list_free (&l);
  state_get_stats (s, &st);
  *c_end = st.journal_bytes;
  ck_assert_uint_eq (*c_end - *c_start, 8 + 3 * 17);
  ck_assert_uint_eq (file_size ("journal"), *c_end);
  close_all (s, r);
}

START_TEST (test_torn_tail)
{
  struct state_identity id = small_id ();
  struct state_load_info info;
  struct residency *r;
  struct state *s;
  struct model m, m_ab;
  uint64_t c_start, c_end;
  unsigned char *jnl;
  size_t jnl_len;

  model_init (&m_ab, SMALL_BLOCKS);
  three_batches (&m_ab, &c_start, &c_end);
  jnl = read_file ("journal", &jnl_len);
  ck_assert_uint_eq (jnl_len, c_end);
  /* m_ab has C in it: rebuild A and B only. */
  model_free (&m_ab);
  model_init (&m_ab, SMALL_BLOCKS);
  model_mark (&m_ab, 10, 10, MARK_COPIED);
  model_mark (&m_ab, 12, 2, 3);

  for (uint64_t cut = c_start; cut < c_end; ++cut) {
    write_file ("journal", jnl, cut);
    last_debug[0] = '\0';
    s = open_ok (&id, &r, &info);
    check_model (r, &m_ab, &info);
    ck_assert_uint_eq (info.batches_replayed, 2);
    ck_assert_int_eq (info.torn_tail, cut > c_start);
    ck_assert_uint_eq (info.torn_bytes, cut - c_start);
    if (cut > c_start)
      ck_assert_ptr_nonnull (strstr (last_debug, "torn"));
    /* Cut off, so that the next batch does not follow garbage. */
    ck_assert_uint_eq (file_size ("journal"), c_start);

    /* Appending works and survives another reopen. */
    model_init (&m, SMALL_BLOCKS);
    memcpy (m.res, m_ab.res, SMALL_BLOCKS);
    memcpy (m.flag, m_ab.flag, SMALL_BLOCKS);
    append_mark (s, &m, 700 + cut % 50, 1, MARK_WRITTEN);
    close_all (s, r);
    s = open_ok (&id, &r, &info);
    check_model (r, &m, &info);
    ck_assert (!info.torn_tail);
    ck_assert_uint_eq (info.batches_replayed, 3);
    close_all (s, r);
    model_free (&m);
  }

  /* Uncut: everything is there. */
  write_file ("journal", jnl, c_end);
  s = open_ok (&id, &r, &info);
  ck_assert_uint_eq (info.batches_replayed, 3);
  ck_assert (residency_is_resident (r, 302));
  ck_assert (residency_is_written (r, 201));
  close_all (s, r);
  free (jnl);
  model_free (&m_ab);
}
END_TEST

START_TEST (test_bit_flips)
{
  struct state_identity id = small_id ();
  struct state_load_info info;
  struct residency *r;
  struct state *s;
  struct model m, m_a;
  uint64_t b_start, b_end, c_end;
  unsigned char *jnl;
  size_t jnl_len;
  struct mark_list l = { 0 };

  /* A, B (two entries: the one flipped), C. */
  model_init (&m, SMALL_BLOCKS);
  s = open_ok (&id, &r, NULL);
  append_mark (s, &m, 1, 1, MARK_COPIED);
  close_all (s, r);
  b_start = file_size ("journal");
  s = open_ok (&id, &r, NULL);
  ck_assert_int_eq (mark_list_append (&l, 50, 5, MARK_WRITTEN), 0);
  ck_assert_int_eq (mark_list_append (&l, 60, 5, MARK_COPIED), 0);
  ck_assert_int_eq (state_append_marks (s, &l), 0);
  mark_list_free (&l);
  close_all (s, r);
  b_end = file_size ("journal");
  s = open_ok (&id, &r, NULL);
  append_mark (s, &m, 80, 1, MARK_COPIED);
  close_all (s, r);
  c_end = file_size ("journal");
  jnl = read_file ("journal", &jnl_len);

  model_init (&m_a, SMALL_BLOCKS);
  model_mark (&m_a, 1, 1, MARK_COPIED);
  for (uint64_t bit = b_start * 8; bit < b_end * 8; ++bit) {
    jnl[bit / 8] ^= 1 << (bit % 8);
    write_file ("journal", jnl, jnl_len);
    jnl[bit / 8] ^= 1 << (bit % 8);
    s = open_ok (&id, &r, &info);
    check_model (r, &m_a, &info);
    ck_assert_uint_eq (info.batches_replayed, 1);
    ck_assert (info.torn_tail);
    ck_assert_uint_eq (info.torn_bytes, c_end - b_start);
    ck_assert_uint_eq (file_size ("journal"), b_start);
    close_all (s, r);
  }
  free (jnl);
  model_free (&m);
  model_free (&m_a);
}
END_TEST

/* A state with runs in its snapshot and batches in its journal. */
static void
populated_state (struct model *m)
{
  struct state_identity id = small_id ();
  struct residency *r;
  struct state *s;

  s = open_ok (&id, &r, NULL);
  for (uint64_t b = 0; b < 300; b += 3)
    append_mark (s, m, b, 1 + b % 2, b % 6 ? MARK_COPIED : MARK_WRITTEN);
  append_intent (s, m, 400, 10);
  ck_assert_int_eq (state_set_phase (s, 1), 0);
  m->phase = 1;
  force_compaction (s, m, 999);
  append_mark (s, m, 600, 10, MARK_WRITTEN);
  close_all (s, r);
}

START_TEST (test_corrupt_snapshot)
{
  struct state_identity id = small_id ();
  struct state_load_info info;
  struct residency *r;
  struct state *s;
  struct model m;
  unsigned char *snap, *copy;
  size_t len, hlen;

  model_init (&m, SMALL_BLOCKS);
  populated_state (&m);
  snap = read_file ("snapshot", &len);
  copy = malloc (len);
  hlen = get_le32 (snap + 12);
  ck_assert_uint_gt (len, hlen + 16);
  ck_assert_uint_gt (get_le64 (snap + 56), 10);  /* runs in it */

  memcpy (copy, snap, len);
  copy[0] ^= 0x20;
  write_file ("snapshot", copy, len);
  expect_refused (&id, "snapshot header is corrupt: bad magic");

  memcpy (copy, snap, len);
  copy[24] ^= 1;                        /* origin size */
  write_file ("snapshot", copy, len);
  expect_refused (&id, "snapshot header is corrupt: checksum mismatch");

  /* Every byte of the header, one at a time: refused, untouched. */
  for (size_t i = 0; i < hlen; ++i) {
    memcpy (copy, snap, len);
    copy[i] ^= 0x80;
    write_file ("snapshot", copy, len);
    expect_refused (&id, "snapshot");
  }

  memcpy (copy, snap, len);
  copy[hlen + 5] ^= 4;                  /* a run */
  write_file ("snapshot", copy, len);
  expect_refused (&id, "snapshot body is corrupt: checksum mismatch");

  write_file ("snapshot", snap, len - 1);
  expect_refused (&id, "snapshot body is corrupt");
  write_file ("snapshot", snap, hlen + 16);
  expect_refused (&id, "snapshot body is corrupt");
  write_file ("snapshot", snap, 10);
  expect_refused (&id, "snapshot header is corrupt");
  write_file ("snapshot", snap, 0);
  expect_refused (&id, "snapshot header is corrupt");

  /* A newer format: refused as such, checksum or not. */
  memcpy (copy, snap, len);
  put_le32 (copy + 8, 2);
  put_le32 (copy + hlen - 4, shadow_crc32c (0, copy, hlen - 4));
  write_file ("snapshot", copy, len);
  expect_refused (&id, "snapshot: made by format version 2, but this "
                  "nbdshadow reads format version 1 at most");

  /* Right checksums, wrong content. */
  memcpy (copy, snap, len);
  put_le32 (copy + 36, 9);
  put_le32 (copy + hlen - 4, shadow_crc32c (0, copy, hlen - 4));
  write_file ("snapshot", copy, len);
  expect_refused (&id, "snapshot header is corrupt: unknown phase");

  memcpy (copy, snap, len);
  put_le64 (copy + hlen, SMALL_BLOCKS);  /* first resident run */
  put_le32 (copy + len - 4, shadow_crc32c (0, copy + hlen, len - hlen - 4));
  write_file ("snapshot", copy, len);
  expect_refused (&id, "outside the volume");

  /* And the original still loads, with everything in it. */
  write_file ("snapshot", snap, len);
  s = open_ok (&id, &r, &info);
  check_model (r, &m, &info);
  close_all (s, r);
  free (snap);
  free (copy);
  model_free (&m);
}
END_TEST

START_TEST (test_corrupt_journal)
{
  struct state_identity id = small_id ();
  struct state_load_info info;
  struct residency *r;
  struct state *s;
  struct model m;
  unsigned char *jnl, *copy, *other;
  size_t len, other_len;

  model_init (&m, SMALL_BLOCKS);
  populated_state (&m);
  jnl = read_file ("journal", &len);
  copy = malloc (len + 100);
  ck_assert_uint_gt (len, 64);

  /* Every byte of the header: refused, never taken as a torn tail. */
  for (size_t i = 0; i < 64; ++i) {
    memcpy (copy, jnl, len);
    copy[i] ^= 0x01;
    write_file ("journal", copy, len);
    expect_refused (&id, "journal");
  }
  write_file ("journal", jnl, 40);
  expect_refused (&id, "journal header is corrupt");

  /* A journal newer than the snapshot. */
  memcpy (copy, jnl, len);
  put_le64 (copy + 16, get_le64 (jnl + 16) + 1);
  put_le32 (copy + 60, shadow_crc32c (0, copy, 60));
  write_file ("journal", copy, len);
  expect_refused (&id, "newer than the snapshot's");

  /* Batches with right checksums and wrong content. */
  memcpy (copy, jnl, len);
  write_file ("journal", copy, len + craft_batch (copy + len, 4, 7, 0));
  expect_refused (&id, "unknown phase");
  write_file ("journal", copy, len + craft_batch (copy + len, 9, 1, 1));
  expect_refused (&id, "unknown entry kind");
  write_file ("journal", copy, len + craft_batch (copy + len, 1, 999, 2));
  expect_refused (&id, "outside the volume");
  write_file ("journal", copy, len + craft_batch (copy + len, 2, 5, 0));
  expect_refused (&id, "outside the volume");

  /* A crafted valid batch is replayed: the format is as documented. */
  write_file ("journal", copy, len + craft_batch (copy + len, 3, 990, 5));
  s = open_ok (&id, &r, &info);
  model_mark (&m, 990, 5, 3);
  check_model (r, &m, &info);
  close_all (s, r);
  write_file ("journal", copy, len + craft_batch (copy + len, 4, 4, 0));
  s = open_ok (&id, &r, &info);
  m.phase = 4;
  check_model (r, &m, &info);
  close_all (s, r);

  /* Another state's journal. */
  remove_tree (dir);
  s = open_ok (&id, &r, NULL);
  close_all (s, r);
  other = read_file ("journal", &other_len);
  remove_tree (dir);
  populated_state (&m);
  write_file ("journal", other, other_len);
  expect_refused (&id, "belongs to another state");

  free (other);
  free (jnl);
  free (copy);
  model_free (&m);
}
END_TEST

START_TEST (test_identity_mismatch)
{
  const char *one[] = { "nbd://a.example/vol" };
  const char *other[] = { "nbd://a.example/vol", "nbd://c.example/vol" };
  const char *again[] = { "nbd://a.example/vol", "nbd://b.example/vol",
                          "nbd://a.example/vol" };
  struct state_identity id = {
    .size = UINT64_C (1) << 30, .block_size = 65536,
    .uris = uris_ab, .nr_uris = 2,
  };
  struct state_identity bad;
  struct residency *r;
  struct state *s;

  s = open_ok (&id, &r, NULL);
  append_mark (s, NULL, 3, 4, MARK_WRITTEN);
  close_all (s, r);

  bad = id;
  bad.size = UINT64_C (2) << 30;
  expect_refused (&bad, "made for origin size 1073741824, but the origin "
                  "is 2147483648 bytes");
  bad = id;
  bad.block_size = 4096;
  bad.size = id.size;
  expect_refused (&bad, "made for block size 65536, but shadow-block-size "
                  "is 4096");
  bad = id;
  bad.uris = other;
  expect_refused (&bad, "made for the shadows nbd://a.example/vol, "
                  "nbd://b.example/vol, but the shadows are "
                  "nbd://a.example/vol, nbd://c.example/vol");
  bad.uris = one;
  bad.nr_uris = 1;
  expect_refused (&bad, "but the shadows are nbd://a.example/vol");

  /* The same set in another order, or with a shadow named twice. */
  bad = id;
  bad.uris = again;
  bad.nr_uris = 3;
  s = open_ok (&bad, &r, NULL);
  ck_assert (residency_is_written (r, 6));
  close_all (s, r);
}
END_TEST

START_TEST (test_lock)
{
  struct state_identity id = small_id ();
  char want[PATH_MAX + 64];
  struct residency *r, *r2;
  struct state *s, *s2;
  pid_t pid;
  int status;

  s = open_ok (&id, &r, NULL);
  snprintf (want, sizeof want, "%s is in use by another process", dir);
  expect_refused (&id, want);

  /* And from another process. */
  pid = fork ();
  ck_assert_int_ge (pid, 0);
  if (pid == 0) {
    r2 = residency_new (id.size, id.block_size);
    s2 = state_open (dir, &id, r2, NULL);
    _exit (s2 == NULL && errno == EBUSY &&
           strstr (last_error, "in use by another process") ? 0 : 1);
  }
  ck_assert_int_eq (waitpid (pid, &status, 0), pid);
  ck_assert (WIFEXITED (status) && WEXITSTATUS (status) == 0);

  /* The lock holder still works, and closing releases the lock. */
  append_mark (s, NULL, 1, 1, MARK_COPIED);
  close_all (s, r);
  s2 = open_ok (&id, &r2, NULL);
  ck_assert (residency_is_resident (r2, 1));
  close_all (s2, r2);
}
END_TEST

/* xorshift: reproducible without touching rand()'s global state. */
static uint64_t
next_random (uint64_t *x)
{
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

START_TEST (test_compaction_bounded)
{
  const uint64_t nr_blocks = UINT64_C (1) << 20;
  struct state_identity id = {
    .size = nr_blocks * 4096, .block_size = 4096,
    .uris = uris_ab, .nr_uris = 2,
  };
  struct state_load_info info;
  struct state_stats st;
  struct residency *r;
  struct state *s;
  struct model m;
  uint64_t x = 88172645463325252ull;
  int appends = 0;

  model_init (&m, nr_blocks);
  s = open_ok (&id, &r, NULL);
  for (int i = 0; i < 3000; ++i) {
    struct mark_list l = { 0 };
    uint64_t biggest = 0;

    for (int k = 0; k < 40; ++k) {
      uint64_t first = next_random (&x) % (nr_blocks - 64);
      uint64_t count = 1 + next_random (&x) % 64;
      enum mark_kind kind = next_random (&x) % 4 ? MARK_COPIED : MARK_WRITTEN;

      ck_assert_int_eq (mark_list_append (&l, first, count, kind), 0);
      model_mark (&m, first, count, kind);
    }
    biggest = 8 + l.len * 17;
    ck_assert_int_eq (state_append_marks (s, &l), 0);
    mark_list_free (&l);
    appends++;
    if (i % 7 == 0)
      append_intent (s, &m, next_random (&x) % nr_blocks, 1);
    if (i % 500 == 0) {
      ck_assert_int_eq (state_set_phase (s, i / 500 % 5), 0);
      m.phase = i / 500 % 5;
    }
    ck_assert_int_eq (state_maybe_compact (s), 0);

    /* Bounded: after state_maybe_compact the journal is never past the
     * threshold, and DIR holds nothing else.  Between two calls it can
     * pass it by what was appended in between.
     */
    state_get_stats (s, &st);
    ck_assert_uint_eq (st.journal_bytes, file_size ("journal"));
    ck_assert_uint_eq (st.snapshot_bytes, file_size ("snapshot"));
    ck_assert_uint_le (st.journal_bytes,
                       2 * st.snapshot_bytes > (1u << 20) ?
                       2 * st.snapshot_bytes : (1u << 20));
    ck_assert_uint_lt (biggest, 1024);
  }
  state_get_stats (s, &st);
  ck_assert_uint_ge (st.compactions, 1);
  ck_assert_uint_eq (st.batches_appended, appends);
  ck_assert_str_eq (dir_listing (), "journal lock snapshot");
  close_all (s, r);

  s = open_ok (&id, &r, &info);
  check_model (r, &m, &info);
  close_all (s, r);
  model_free (&m);
}
END_TEST

static unsigned char *
copy_of (const char *name, size_t *len)
{
  return read_file (name, len);
}

/* After loading in a crash scenario: the model, a journal of the
 * snapshot's generation, no debris, and appends that survive.
 */
static void
check_recovered (const struct state_identity *id, struct model *m)
{
  struct state_load_info info;
  struct residency *r;
  struct state *s;
  unsigned char *snap, *jnl;
  size_t slen, jlen;

  s = open_ok (id, &r, &info);
  check_model (r, m, &info);
  ck_assert_str_eq (dir_listing (), "journal lock snapshot");
  snap = read_file ("snapshot", &slen);
  jnl = read_file ("journal", &jlen);
  ck_assert_uint_eq (get_le64 (jnl + 16), get_le64 (snap + 16));
  free (snap);
  free (jnl);
  append_mark (s, m, 777, 1, MARK_WRITTEN);
  close_all (s, r);
  s = open_ok (id, &r, &info);
  check_model (r, m, &info);
  close_all (s, r);
}

START_TEST (test_compaction_crash_points)
{
  struct state_identity id = small_id ();
  struct residency *r;
  struct state *s;
  struct model m, saved;
  unsigned char *snap_g, *jnl_g, *snap_g1, *jnl_g1;
  size_t snap_g_len, jnl_g_len, snap_g1_len, jnl_g1_len;
  struct mark_list l = { 0 };

  /* Generation G with a journal full enough to compact... */
  model_init (&m, SMALL_BLOCKS);
  s = open_ok (&id, &r, NULL);
  append_mark (s, &m, 5, 5, MARK_WRITTEN);
  append_intent (s, &m, 40, 2);
  ck_assert_int_eq (state_set_phase (s, 1), 0);
  m.phase = 1;
  for (int i = 0; i < 70000; ++i)
    ck_assert_int_eq (mark_list_append (&l, 2 * (i % 400), 1,
                                        MARK_COPIED), 0);
  ck_assert_int_eq (state_append_marks (s, &l), 0);
  mark_list_free (&l);
  for (int i = 0; i < 400; ++i)
    model_mark (&m, 2 * i, 1, MARK_COPIED);
  close_all (s, r);
  snap_g = copy_of ("snapshot", &snap_g_len);
  jnl_g = copy_of ("journal", &jnl_g_len);

  /* ... and generation G+1, what compacting it gives. */
  s = open_ok (&id, &r, NULL);
  ck_assert_int_eq (state_maybe_compact (s), 0);
  close_all (s, r);
  snap_g1 = copy_of ("snapshot", &snap_g1_len);
  jnl_g1 = copy_of ("journal", &jnl_g1_len);
  ck_assert_uint_eq (get_le64 (snap_g1 + 16), get_le64 (snap_g + 16) + 1);
  ck_assert_uint_eq (get_le64 (jnl_g1 + 16), get_le64 (snap_g1 + 16));
  ck_assert_uint_eq (jnl_g1_len, 64);
  ck_assert_uint_eq (get_le32 (snap_g1 + 36), 1);        /* phase kept */

  model_init (&saved, SMALL_BLOCKS);
#define RESTART(snap, jnl) do {                                 \
    remove_tree (dir);                                          \
    ck_assert_int_eq (mkdir (dir, 0700), 0);                    \
    write_file ("snapshot", snap, snap ## _len);                \
    write_file ("journal", jnl, jnl ## _len);                   \
    memcpy (saved.res, m.res, SMALL_BLOCKS);                    \
    memcpy (saved.flag, m.flag, SMALL_BLOCKS);                  \
    saved.phase = m.phase;                                      \
  } while (0)

  /* 1. Crash while writing snapshot.tmp, or before its rename. */
  RESTART (snap_g, jnl_g);
  write_file ("snapshot.tmp", snap_g1, snap_g1_len / 2);
  check_recovered (&id, &saved);
  RESTART (snap_g, jnl_g);
  write_file ("snapshot.tmp", snap_g1, snap_g1_len);
  check_recovered (&id, &saved);

  /* 2-4. The new snapshot next to the old journal (stale), with or
   * without the new journal's tmp file.
   */
  RESTART (snap_g1, jnl_g);
  check_recovered (&id, &saved);
  RESTART (snap_g1, jnl_g);
  write_file ("journal.tmp", jnl_g1, jnl_g1_len / 2);
  check_recovered (&id, &saved);
  RESTART (snap_g1, jnl_g);
  write_file ("journal.tmp", jnl_g1, jnl_g1_len);
  check_recovered (&id, &saved);

  /* 5. Done. */
  RESTART (snap_g1, jnl_g1);
  check_recovered (&id, &saved);

  /* Impossible: a new journal next to the old snapshot. */
  RESTART (snap_g, jnl_g1);
  expect_refused (&id, "newer than the snapshot's");

  /* Creation interrupted between snapshot and journal: fine... */
  remove_tree (dir);
  s = open_ok (&id, &r, NULL);
  close_all (s, r);
  remove_file ("journal");
  s = open_ok (&id, &r, NULL);
  ck_assert_str_eq (dir_listing (), "journal lock snapshot");
  close_all (s, r);
  /* ... but a lost journal of a state with history is refused, */
  RESTART (snap_g1, jnl_g1);
  remove_file ("journal");
  expect_refused (&id, "journal is missing");
  /* and so is a journal without a snapshot. */
  RESTART (snap_g1, jnl_g1);
  remove_file ("snapshot");
  expect_refused (&id, "journal exists but snapshot is missing");
#undef RESTART

  free (snap_g);
  free (jnl_g);
  free (snap_g1);
  free (jnl_g1);
  model_free (&m);
  model_free (&saved);
}
END_TEST

static void
set_file_limit (rlim_t limit)
{
  struct rlimit rl;

  ck_assert_int_eq (getrlimit (RLIMIT_FSIZE, &rl), 0);
  rl.rlim_cur = limit;
  ck_assert_int_eq (setrlimit (RLIMIT_FSIZE, &rl), 0);
}

START_TEST (test_append_failure)
{
  struct state_identity id = small_id ();
  struct state_load_info info;
  struct residency *r;
  struct state *s;
  struct model m;
  struct mark_list b = { 0 };
  struct state_stats st;
  uint64_t good;

  /* write() past RLIMIT_FSIZE fails with EFBIG instead of killing us. */
  signal (SIGXFSZ, SIG_IGN);
  model_init (&m, SMALL_BLOCKS);
  s = open_ok (&id, &r, NULL);
  append_mark (s, &m, 10, 5, MARK_COPIED);
  good = file_size ("journal");
  ck_assert_int_eq (mark_list_append (&b, 100, 5, MARK_WRITTEN), 0);
  ck_assert_int_eq (mark_list_append (&b, 200, 5, MARK_COPIED), 0);

  /* A failed append leaves part of a batch behind ... */
  set_file_limit (good + 10);
  errno = 0;
  ck_assert_int_eq (state_append_marks (s, &b), -1);
  ck_assert_int_eq (errno, EFBIG);
  ck_assert_ptr_nonnull (strstr (last_error, "journal: write at offset"));
  set_file_limit (RLIM_INFINITY);
  ck_assert_uint_eq (file_size ("journal"), good + 10);
  state_get_stats (s, &st);
  ck_assert_uint_eq (st.journal_bytes, good);

  /* ... which the next append cuts first. */
  append_mark (s, &m, 300, 1, MARK_COPIED);
  ck_assert_uint_eq (file_size ("journal"), good + 8 + 17);

  /* The durable sets did not take B: a compaction, which writes them,
   * must not bring it back.
   */
  force_compaction (s, &m, 999);
  close_all (s, r);
  s = open_ok (&id, &r, &info);
  check_model (r, &m, &info);
  ck_assert (!info.torn_tail);
  ck_assert (!residency_is_resident (r, 100));
  ck_assert (!residency_is_resident (r, 200));

  /* A failure with nothing after it: a torn tail at the next load. */
  set_file_limit (file_size ("journal") + 3);
  ck_assert_int_eq (state_append_marks (s, &b), -1);
  set_file_limit (RLIM_INFINITY);
  close_all (s, r);
  s = open_ok (&id, &r, &info);
  ck_assert (info.torn_tail);
  ck_assert_uint_eq (info.torn_bytes, 3);
  check_model (r, &m, &info);

  /* The caller retries: now it is there. */
  ck_assert_int_eq (state_append_marks (s, &b), 0);
  model_mark (&m, 100, 5, MARK_WRITTEN);
  model_mark (&m, 200, 5, MARK_COPIED);
  close_all (s, r);
  s = open_ok (&id, &r, &info);
  check_model (r, &m, &info);
  close_all (s, r);
  mark_list_free (&b);
  model_free (&m);
}
END_TEST

START_TEST (test_compaction_failure)
{
  struct state_identity id = small_id ();
  struct state_load_info info;
  struct residency *r;
  struct state *s;
  struct model m;
  struct mark_list l = { 0 };
  unsigned char *snap0, *snap1;
  size_t len0, len1;

  signal (SIGXFSZ, SIG_IGN);
  model_init (&m, SMALL_BLOCKS);
  s = open_ok (&id, &r, NULL);
  for (uint64_t b = 0; b < SMALL_BLOCKS; b += 2)
    append_mark (s, &m, b, 1, b % 4 ? MARK_COPIED : MARK_WRITTEN);
  for (int i = 0; i < 70000; ++i)
    ck_assert_int_eq (mark_list_append (&l, 0, 1, MARK_COPIED), 0);
  ck_assert_int_eq (state_append_marks (s, &l), 0);
  mark_list_free (&l);
  snap0 = read_file ("snapshot", &len0);

  /* The new snapshot (500 + 250 runs) cannot be written. */
  set_file_limit (4096);
  ck_assert_int_eq (state_maybe_compact (s), -1);
  ck_assert_int_eq (errno, EFBIG);
  set_file_limit (RLIM_INFINITY);
  ck_assert_ptr_nonnull (strstr (last_error, "snapshot.tmp: write at "
                                 "offset"));
  ck_assert_str_eq (dir_listing (), "journal lock snapshot");
  snap1 = read_file ("snapshot", &len1);
  ck_assert_uint_eq (len0, len1);
  ck_assert (memcmp (snap0, snap1, len0) == 0);
  free (snap1);

  /* The old state still works.  The next attempt waits until the
   * journal has grown by as much again: not at the next commit ...
   */
  append_mark (s, &m, 1, 1, MARK_WRITTEN);
  ck_assert_int_eq (state_maybe_compact (s), 0);
  ck_assert_uint_gt (file_size ("journal"), 70000 * 17);
  snap1 = read_file ("snapshot", &len1);
  ck_assert_uint_eq (len0, len1);
  free (snap1);

  /* ... but then, and it succeeds. */
  for (int i = 0; i < 70000; ++i)
    ck_assert_int_eq (mark_list_append (&l, 0, 1, MARK_COPIED), 0);
  ck_assert_int_eq (state_append_marks (s, &l), 0);
  mark_list_free (&l);
  ck_assert_int_eq (state_maybe_compact (s), 0);
  ck_assert_uint_eq (file_size ("journal"), 64);
  close_all (s, r);
  s = open_ok (&id, &r, &info);
  check_model (r, &m, &info);
  close_all (s, r);
  free (snap0);
  model_free (&m);
}
END_TEST

/* A compaction that fails after its new snapshot is in place (here:
 * journal.tmp cannot be created, because a directory is in the way)
 * must not let anything be appended to the old journal, which the next
 * load would discard as stale.
 */
START_TEST (test_compaction_half_done)
{
  struct state_identity id = small_id ();
  struct state_load_info info;
  struct residency *r;
  struct state *s;
  struct model m;
  struct mark_list l = { 0 };
  unsigned char *snap, *jnl;
  size_t slen, jlen;
  uint64_t old_gen;

  model_init (&m, SMALL_BLOCKS);
  s = open_ok (&id, &r, NULL);
  append_mark (s, &m, 10, 10, MARK_WRITTEN);
  for (int i = 0; i < 70000; ++i)
    ck_assert_int_eq (mark_list_append (&l, 10, 1, MARK_COPIED), 0);
  ck_assert_int_eq (state_append_marks (s, &l), 0);
  mark_list_free (&l);
  jnl = read_file ("journal", &jlen);
  old_gen = get_le64 (jnl + 16);
  free (jnl);

  ck_assert_int_eq (mkdir (path_of ("journal.tmp"), 0700), 0);
  ck_assert_int_eq (state_maybe_compact (s), -1);
  snap = read_file ("snapshot", &slen);
  ck_assert_uint_eq (get_le64 (snap + 16), old_gen + 1);
  free (snap);

  /* Appends fail while the new journal cannot be made ... */
  errno = 0;
  ck_assert_int_eq (state_set_phase (s, 1), -1);
  ck_assert_int_eq (errno, EISDIR);
  ck_assert_int_eq (state_append_intent (s, 30, 1), -1);
  jnl = read_file ("journal", &jlen);
  ck_assert_uint_eq (get_le64 (jnl + 16), old_gen);
  free (jnl);

  /* ... and go to it once it can. */
  ck_assert_int_eq (rmdir (path_of ("journal.tmp")), 0);
  append_mark (s, &m, 40, 2, MARK_COPIED);
  jnl = read_file ("journal", &jlen);
  ck_assert_uint_eq (get_le64 (jnl + 16), old_gen + 1);
  ck_assert_uint_eq (jlen, 64 + 8 + 17);
  free (jnl);
  close_all (s, r);
  s = open_ok (&id, &r, &info);
  check_model (r, &m, &info);
  close_all (s, r);

  /* The same failure, then a crash (close) before any append: the old
   * journal is stale next to the new snapshot, and nothing is lost.
   */
  s = open_ok (&id, &r, NULL);
  force_compaction (s, &m, 11);
  for (int i = 0; i < 70000; ++i)
    ck_assert_int_eq (mark_list_append (&l, 11, 1, MARK_COPIED), 0);
  ck_assert_int_eq (state_append_marks (s, &l), 0);
  mark_list_free (&l);
  ck_assert_int_eq (mkdir (path_of ("journal.tmp"), 0700), 0);
  ck_assert_int_eq (state_maybe_compact (s), -1);
  close_all (s, r);
  ck_assert_int_eq (rmdir (path_of ("journal.tmp")), 0);
  s = open_ok (&id, &r, &info);
  check_model (r, &m, &info);
  ck_assert_str_eq (dir_listing (), "journal lock snapshot");
  ck_assert_uint_eq (file_size ("journal"), 64);
  close_all (s, r);
  model_free (&m);
}
END_TEST

START_TEST (test_api_errors)
{
  struct state_identity id = small_id ();
  struct residency *r;
  struct state *s;
  struct mark_list l = { 0 };
  uint64_t size;

  s = open_ok (&id, &r, NULL);
  size = file_size ("journal");
  errno = 0;
  ck_assert_int_eq (state_set_phase (s, 5), -1);
  ck_assert_int_eq (errno, EINVAL);
  ck_assert_int_eq (state_set_phase (s, -1), -1);
  ck_assert_int_eq (state_append_intent (s, SMALL_BLOCKS - 1, 2), -1);
  ck_assert_int_eq (errno, EINVAL);
  ck_assert_int_eq (state_append_intent (s, 0, 0), -1);
  ck_assert_int_eq (mark_list_append (&l, 0, 1, MARK_COPIED), 0);
  ck_assert_int_eq (mark_list_append (&l, SMALL_BLOCKS, 1, MARK_COPIED), 0);
  ck_assert_int_eq (state_append_marks (s, &l), -1);
  ck_assert_int_eq (errno, EINVAL);
  mark_list_free (&l);
  ck_assert_int_eq (state_append_marks (s, &l), 0);     /* empty */
  ck_assert_uint_eq (file_size ("journal"), size);
  ck_assert_int_eq (state_maybe_compact (s), 0);        /* not due */
  ck_assert_uint_eq (file_size ("journal"), size);
  close_all (s, r);

  /* The residency must be sized for the identity. */
  r = residency_new (id.size * 2, id.block_size);
  ck_assert_ptr_null (state_open (dir, &id, r, NULL));
  ck_assert_int_eq (errno, EINVAL);
  residency_free (r);
}
END_TEST

/* A million runs on a volume of 2^38 blocks: anything per block would
 * take hours, anything quadratic in the runs days, so a bound that no
 * loaded machine or sanitizer build comes near still catches both.  The
 * times are printed for the record (DESIGN §7: no performance targets in
 * timed tests).  The written runs are whole leaves of the blockset, so
 * that the test measures runs, not 512-byte bitmaps.
 */
START_TEST (test_large_state)
{
  const uint64_t nr_runs = UINT64_C (1) << 20;
  struct state_identity id = {
    .size = UINT64_C (1) << 50, .block_size = 4096,
    .uris = uris_ab, .nr_uris = 2,
  };
  struct state_load_info info;
  struct residency *r;
  struct state *s;
  struct mark_list l = { 0 };
  double t0, t_journal, t_snapshot;

  s = open_ok (&id, &r, NULL);
  for (uint64_t i = 0; i < nr_runs; ++i)
    ck_assert_int_eq (mark_list_append (&l, i << 18, UINT64_C (1) << 17,
                                        MARK_COPIED), 0);
  ck_assert_int_eq (state_append_marks (s, &l), 0);
  mark_list_free (&l);
  for (uint64_t i = 0; i < nr_runs; i += 8)
    ck_assert_int_eq (mark_list_append (&l, i << 18, 4096,
                                        MARK_WRITTEN), 0);
  ck_assert_int_eq (state_append_marks (s, &l), 0);
  mark_list_free (&l);
  close_all (s, r);

  t0 = now_s ();
  s = open_ok (&id, &r, &info);
  t_journal = now_s () - t0;
  ck_assert_uint_eq (info.resident_blocks, nr_runs << 17);
  ck_assert_uint_eq (info.written_blocks, nr_runs / 8 * 4096);
  ck_assert_uint_eq (info.batches_replayed, 2);
  ck_assert_int_eq (state_maybe_compact (s), 0);
  close_all (s, r);
  {
    size_t len;
    unsigned char *h = read_file ("snapshot", &len);

    ck_assert_uint_eq (get_le64 (h + 56), nr_runs);
    ck_assert_uint_eq (get_le64 (h + 64), nr_runs / 8);
    free (h);
  }

  t0 = now_s ();
  s = open_ok (&id, &r, &info);
  t_snapshot = now_s () - t0;
  ck_assert_uint_eq (info.resident_blocks, nr_runs << 17);
  ck_assert_uint_eq (info.written_blocks, nr_runs / 8 * 4096);
  ck_assert (residency_is_written (r, UINT64_C (8) << 18));
  ck_assert (!residency_is_written (r, (UINT64_C (8) << 18) + 4096));
  ck_assert (!residency_is_written (r, UINT64_C (2) << 18));
  ck_assert (residency_is_resident (r, (UINT64_C (3) << 18) + (1 << 17) - 1));
  ck_assert (!residency_is_resident (r, (UINT64_C (3) << 18) + (1 << 17)));
  close_all (s, r);

  fprintf (stderr, "test-state: 1M resident + 128K written runs: "
           "load from the journal %.3f s, from the snapshot %.3f s\n",
           t_journal, t_snapshot);
  ck_assert_double_lt (t_journal, 30);
  ck_assert_double_lt (t_snapshot, 30);
}
END_TEST

static Suite *
state_suite (void)
{
  Suite *s = suite_create ("state");
  TCase *tc = tcase_create ("state");

  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_set_timeout (tc, 300);
  tcase_add_test (tc, test_crc32c);
  tcase_add_test (tc, test_create_reopen);
  tcase_add_test (tc, test_marks_survive);
  tcase_add_test (tc, test_intent_rule);
  tcase_add_test (tc, test_torn_tail);
  tcase_add_test (tc, test_bit_flips);
  tcase_add_test (tc, test_corrupt_snapshot);
  tcase_add_test (tc, test_corrupt_journal);
  tcase_add_test (tc, test_identity_mismatch);
  tcase_add_test (tc, test_lock);
  tcase_add_test (tc, test_compaction_bounded);
  tcase_add_test (tc, test_compaction_crash_points);
  tcase_add_test (tc, test_append_failure);
  tcase_add_test (tc, test_compaction_failure);
  tcase_add_test (tc, test_compaction_half_done);
  tcase_add_test (tc, test_api_errors);
  tcase_add_test (tc, test_large_state);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (state_suite ());
  int failed;

  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
