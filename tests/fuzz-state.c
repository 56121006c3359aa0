/* nbdshadow: libFuzzer target for the persistent state (server/state.c).
 *
 * The state files are the one input of nbdshadow that survives crashes,
 * disk errors and people with editors, and the loader runs before
 * anything else at start-up: it must refuse or accept any bytes at all
 * without crashing, leaking or hanging.  And what it accepts must be
 * consistent: whatever a load repairs (a torn tail cut, a stale journal
 * replaced) and whatever compaction rewrites must load again as the very
 * same state.  So each input is:
 *
 *   bytes 0-3   little-endian u32: bit 31 set = no snapshot file, bit 30
 *               set = no journal file, bits 0-29 = length of the snapshot
 *               (clamped to what follows)
 *   then        the snapshot, then the journal (the rest)
 *
 * written into a temporary DIR and opened with a fixed identity.  If the
 * open succeeds, the state is compacted (this target is built with
 * STATE_COMPACT_MIN=0, so compaction is due whenever the journal is
 * bigger than twice the snapshot), reopened and compared, then written
 * to and reopened again; any difference aborts.
 *
 * FUZZ_STATE_MAKE_SEEDS=DIR in the environment writes a seed corpus of
 * valid states into DIR instead (used by test-fuzz-state.sh): a fresh
 * state, one with batches, one with a torn tail, a compacted one, one
 * with a stale journal, one without its journal.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "log.h"
#include "residency.h"
#include "state.h"

#define NR_BLOCKS 256

static const char *uris[] = { "nbd://fuzz.example/b", "nbd+unix:///a?socket=/s" };
static const struct state_identity id = {
  .size = NR_BLOCKS * 4096, .block_size = 4096, .uris = uris, .nr_uris = 2,
};

static char root[PATH_MAX];
static char dir[PATH_MAX];

static void quiet (const char *fmt, va_list args)
  __attribute__ ((format (printf, 1, 0)));

static void
quiet (const char *fmt, va_list args)
{
  /* Format anyway, so that a bad format argument is found too. */
  char buf[512];

  vsnprintf (buf, sizeof buf, fmt, args);
}

static void
die (const char *what)
{
  fprintf (stderr, "fuzz-state: %s\n", what);
  abort ();
}

static const char *
path_of (const char *name)
{
  static char buf[PATH_MAX];

  if (snprintf (buf, sizeof buf, "%s/%s", dir, name) >= (int) sizeof buf)
    die ("path too long");
  return buf;
}

static const char *const files[] = {
  "snapshot", "journal", "lock", "snapshot.tmp", "journal.tmp",
};

static void
clean_dir (void)
{
  for (size_t i = 0; i < sizeof files / sizeof files[0]; ++i)
    if (unlink (path_of (files[i])) == -1 && errno != ENOENT)
      die ("unlink");
}

static void
remove_root (void)
{
  clean_dir ();
  rmdir (dir);
  rmdir (root);
}

static void
write_file (const char *name, const uint8_t *buf, size_t len)
{
  int fd = open (path_of (name), O_WRONLY | O_CREAT | O_TRUNC, 0600);

  if (fd == -1)
    die ("create");
  while (len > 0) {
    ssize_t n = write (fd, buf, len);

    if (n <= 0)
      die ("write");
    buf += n;
    len -= n;
  }
  if (close (fd) == -1)
    die ("close");
}

/* NULL if the file does not exist. */
static uint8_t *
read_file (const char *name, size_t *len)
{
  int fd = open (path_of (name), O_RDONLY);
  struct stat st;
  uint8_t *buf;
  size_t done = 0;

  if (fd == -1) {
    if (errno != ENOENT)
      die ("open");
    *len = 0;
    return NULL;
  }
  if (fstat (fd, &st) == -1)
    die ("fstat");
  buf = malloc (st.st_size + 1);
  if (buf == NULL)
    die ("malloc");
  while (done < (size_t) st.st_size) {
    ssize_t n = read (fd, buf + done, st.st_size - done);

    if (n <= 0)
      die ("read");
    done += n;
  }
  close (fd);
  *len = done;
  return buf;
}

static struct state *
open_state (struct residency **rp, struct state_load_info *info)
{
  struct state *s;

  *rp = residency_new (id.size, id.block_size);
  if (*rp == NULL)
    die ("residency_new");
  s = state_open (dir, &id, *rp, info);
  if (s == NULL) {
    residency_free (*rp);
    *rp = NULL;
  }
  return s;
}

/* The state reloads as it was: same sets, block by block. */
static void
check_same (struct residency *a, const struct state_load_info *ia,
            struct residency *b, const struct state_load_info *ib)
{
  if (ia->resident_blocks != ib->resident_blocks ||
      ia->written_blocks != ib->written_blocks || ia->phase != ib->phase)
    die ("reloaded state differs (counts or phase)");
  if (ib->torn_tail || ib->created)
    die ("reloaded state has a torn tail or was created");
  for (uint64_t blk = 0; blk < NR_BLOCKS; ++blk)
    if (residency_is_resident (a, blk) != residency_is_resident (b, blk) ||
        residency_is_written (a, blk) != residency_is_written (b, blk))
      die ("reloaded state differs (blocks)");
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
int LLVMFuzzerInitialize (int *argc, char ***argv);

/* Set while checking the seeds, which are valid states. */
static bool must_load;

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct state_load_info info1, info2, info3;
  struct residency *r1, *r2, *r3;
  struct state *s;
  struct mark_list l = { 0 };
  uint32_t head;
  size_t snap_len;

  if (size < 4)
    return 0;
  head = data[0] | data[1] << 8 | data[2] << 16 | (uint32_t) data[3] << 24;
  data += 4;
  size -= 4;
  snap_len = head & 0x3fffffff;
  if (snap_len > size)
    snap_len = size;
  clean_dir ();
  if (!(head & 0x80000000))
    write_file ("snapshot", data, snap_len);
  if (!(head & 0x40000000))
    write_file ("journal", data + snap_len, size - snap_len);

  s = open_state (&r1, &info1);
  if (s == NULL) {
    if (must_load)
      die ("a seed does not load");
    return 0;
  }

  /* Whatever compaction and the load's repairs wrote loads the same. */
  if (state_maybe_compact (s) == -1)
    die ("compaction failed");
  state_close (s);
  s = open_state (&r2, &info2);
  if (s == NULL)
    die ("a state that loaded does not load after compaction");
  check_same (r1, &info1, r2, &info2);

  /* And takes new batches. */
  if (mark_list_append (&l, NR_BLOCKS - 1, 1, MARK_WRITTEN) == -1 ||
      state_append_marks (s, &l) == -1 ||
      state_append_intent (s, 0, 1) == -1 ||
      state_set_phase (s, 3) == -1)
    die ("append failed");
  mark_list_free (&l);
  state_close (s);
  s = open_state (&r3, &info3);
  if (s == NULL)
    die ("a state does not load after appends");
  if (!residency_is_written (r3, NR_BLOCKS - 1) || info3.phase != 3 ||
      residency_is_written (r3, 0) != residency_is_resident (r3, 0))
    die ("appended batches were lost");
  state_close (s);
  residency_free (r1);
  residency_free (r2);
  residency_free (r3);
  return 0;
}

/*----------------------------------------------------------------------
 * Seeds.
 */

static void
save_seed (const char *seeds, const char *name, bool with_snap,
           bool with_jnl, size_t cut_journal)
{
  size_t snap_len, jnl_len;
  uint8_t *snap = read_file ("snapshot", &snap_len);
  uint8_t *jnl = read_file ("journal", &jnl_len);
  uint32_t head = snap_len;
  char path[PATH_MAX];
  FILE *fp;

  if (cut_journal && cut_journal < jnl_len)
    jnl_len = cut_journal;
  if (!with_snap)
    head |= 0x80000000;
  if (!with_jnl)
    head |= 0x40000000;
  if (snprintf (path, sizeof path, "%s/%s", seeds, name) >= (int) sizeof path)
    die ("path too long");
  fp = fopen (path, "w");
  if (fp == NULL)
    die ("cannot create a seed");
  for (int i = 0; i < 4; ++i)
    fputc (head >> (8 * i), fp);
  if ((with_snap && fwrite (snap, 1, snap_len, fp) != snap_len) ||
      (with_jnl && jnl_len && fwrite (jnl, 1, jnl_len, fp) != jnl_len) ||
      fclose (fp) == EOF)
    die ("cannot write a seed");
  free (snap);
  free (jnl);
}

/* Every seed goes through the target once, and must load. */
static void
check_seeds (const char *seeds, const char *const *names, size_t n)
{
  char path[PATH_MAX];
  uint8_t *buf;
  size_t len;

  must_load = true;
  for (size_t i = 0; i < n; ++i) {
    if (snprintf (path, sizeof path, "%s/%s", seeds, names[i]) >=
        (int) sizeof path)
      die ("path too long");
    {
      int fd = open (path, O_RDONLY);
      struct stat st;

      if (fd == -1 || fstat (fd, &st) == -1)
        die ("cannot read a seed");
      buf = malloc (st.st_size + 1);
      if (buf == NULL || read (fd, buf, st.st_size) != st.st_size)
        die ("cannot read a seed");
      len = st.st_size;
      close (fd);
    }
    LLVMFuzzerTestOneInput (buf, len);
    free (buf);
  }
  must_load = false;
}

static void
append (struct state *s, uint64_t first, uint64_t count, enum mark_kind kind)
{
  struct mark_list l = { 0 };

  if (mark_list_append (&l, first, count, kind) == -1 ||
      state_append_marks (s, &l) == -1)
    die ("append");
  mark_list_free (&l);
}

static void
make_seeds (const char *seeds)
{
  struct residency *r;
  struct state *s;
  size_t len;
  uint8_t *stale;

  if (mkdir (seeds, 0700) == -1 && errno != EEXIST)
    die ("cannot create the seed directory");

  clean_dir ();
  if ((s = open_state (&r, NULL)) == NULL)
    die ("create");
  state_close (s);
  residency_free (r);
  save_seed (seeds, "fresh", true, true, 0);
  save_seed (seeds, "no-journal", true, false, 0);

  /* Batches of every kind; the snapshot is small, so keep the journal
   * under twice its size by not calling state_maybe_compact.
   */
  if ((s = open_state (&r, NULL)) == NULL)
    die ("open");
  append (s, 3, 5, MARK_COPIED);
  append (s, 10, 2, MARK_WRITTEN);
  if (state_append_intent (s, 4, 2) == -1 ||
      state_append_intent (s, 100, 3) == -1 ||
      state_set_phase (s, 1) == -1)
    die ("append");
  append (s, 200, 50, MARK_COPIED);
  state_close (s);
  residency_free (r);
  save_seed (seeds, "batches", true, true, 0);
  free (read_file ("journal", &len));
  save_seed (seeds, "torn", true, true, len - 9);

  /* Compacted: runs in the snapshot, then more batches; and the stale
   * journal of before the compaction next to the new snapshot.
   */
  if ((s = open_state (&r, NULL)) == NULL)
    die ("open");
  for (uint64_t b = 20; b < 60; b += 2)
    append (s, b, 1, b % 4 ? MARK_COPIED : MARK_WRITTEN);
  state_close (s);
  residency_free (r);
  stale = read_file ("journal", &len);
  if ((s = open_state (&r, NULL)) == NULL)
    die ("open");
  {
    struct state_stats st;

    if (state_maybe_compact (s) == -1)
      die ("compact");
    state_get_stats (s, &st);
    if (st.compactions != 1)
      die ("the seed state was not compacted");
  }
  state_close (s);
  residency_free (r);
  write_file ("journal", stale, len);
  save_seed (seeds, "stale-journal", true, true, 0);
  free (stale);
  if ((s = open_state (&r, NULL)) == NULL)
    die ("open");
  append (s, 120, 1, MARK_WRITTEN);
  if (state_set_phase (s, 2) == -1)
    die ("phase");
  state_close (s);
  residency_free (r);
  save_seed (seeds, "compacted", true, true, 0);
  clean_dir ();

  {
    static const char *const names[] = {
      "fresh", "no-journal", "batches", "torn", "stale-journal", "compacted",
    };

    check_seeds (seeds, names, sizeof names / sizeof names[0]);
  }
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  const char *tmpdir = getenv ("TMPDIR");
  const char *seeds = getenv ("FUZZ_STATE_MAKE_SEEDS");

  shadow_log_set (quiet, quiet);
  if (snprintf (root, sizeof root, "%s/fuzz-state.XXXXXX",
                tmpdir && *tmpdir ? tmpdir : "/tmp") >= (int) sizeof root ||
      mkdtemp (root) == NULL)
    die ("cannot make a temporary directory");
  if (snprintf (dir, sizeof dir, "%s/state", root) >= (int) sizeof dir ||
      mkdir (dir, 0700) == -1)
    die ("cannot make the state directory");
  atexit (remove_root);
  if (seeds) {
    make_seeds (seeds);
    exit (EXIT_SUCCESS);
  }
  return 0;
}
