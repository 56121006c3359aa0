/* model-file.c: read and write the model file format (model-file.h). */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crc32.h"
#include "model-file.h"

#define CONF_LEN (8 * 4 + 8 + 5 * 8 + 8)

/* --- little-endian buffer helpers --- */

struct wbuf {
  unsigned char *p;
  size_t n, cap;
  int oom;
};

static void
wb_put (struct wbuf *b, const void *src, size_t n)
{
  if (b->oom)
    return;
  if (b->n + n > b->cap) {
    size_t nc = b->cap ? b->cap : 4096;
    while (nc < b->n + n)
      nc *= 2;
    unsigned char *q = realloc (b->p, nc);
    if (!q) {
      b->oom = 1;
      return;
    }
    b->p = q;
    b->cap = nc;
  }
  memcpy (b->p + b->n, src, n);
  b->n += n;
}

static void
wb_u32 (struct wbuf *b, uint32_t v)
{
  unsigned char x[4];
  for (int i = 0; i < 4; i++)
    x[i] = v >> (8 * i);
  wb_put (b, x, 4);
}

static void
wb_u64 (struct wbuf *b, uint64_t v)
{
  unsigned char x[8];
  for (int i = 0; i < 8; i++)
    x[i] = v >> (8 * i);
  wb_put (b, x, 8);
}

static void
wb_f64 (struct wbuf *b, double d)
{
  uint64_t v;
  memcpy (&v, &d, 8);
  wb_u64 (b, v);
}

static uint32_t
rd_u32 (const unsigned char *p)
{
  return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 |
    (uint32_t) p[3] << 24;
}

static uint64_t
rd_u64 (const unsigned char *p)
{
  return (uint64_t) rd_u32 (p) | (uint64_t) rd_u32 (p + 4) << 32;
}

static double
rd_f64 (const unsigned char *p)
{
  uint64_t v = rd_u64 (p);
  double d;
  memcpy (&d, &v, 8);
  return d;
}

/* Append a section: tag, reserved, length, payload, crc. */
static void
section (struct wbuf *b, const char tag[4], const struct wbuf *payload)
{
  size_t start = b->n;
  wb_put (b, tag, 4);
  wb_u32 (b, 0);
  wb_u64 (b, payload ? payload->n : 0);
  if (payload && payload->n)
    wb_put (b, payload->p, payload->n);
  if (!b->oom)
    wb_u32 (b, pred_crc32 (0, b->p + start, b->n - start));
}

/* The weights the "LSTM" section holds: all but the size embedding,
 * which has a section of its own (older files lack it).
 */
static size_t
core_count (const struct pred_lstm_params *P)
{
  return P->n - (size_t) PRED_LSTM_SIZE_CLASSES * P->E;
}

/* count f64 weights at p into w, refusing any that is not finite. */
static int
read_weights (double *w, const unsigned char *p, size_t count,
              const char *path, const char *tag, char *err, size_t errlen)
{
  for (size_t i = 0; i < count; i++) {
    double d = rd_f64 (p + 8 * i);
    if (d != d || d > 1e300 || d < -1e300) {
      snprintf (err, errlen, "%s: %s weight %zu is not finite", path, tag, i);
      return -1;
    }
    w[i] = d;
  }
  return 0;
}

int
pred_model_save (const char *path, const struct pred_model_file *mf,
                 char *err, size_t errlen)
{
  struct wbuf f = { 0 }, s = { 0 };
  const struct pred_lstm_config *c = &mf->lstm;
  const struct pred_lstm_params *P = &mf->params;
  char *tmp = NULL;
  int fd = -1, r = -1;

  if (P->V != c->vocab || P->E != c->embed || P->H != c->hidden ||
      mf->nvocab >= c->vocab) {
    snprintf (err, errlen, "%s: model shapes are inconsistent", path);
    return -1;
  }
  wb_put (&f, PRED_MODEL_MAGIC, 8);
  wb_u32 (&f, PRED_MODEL_VERSION);
  wb_u32 (&f, 0);

  wb_u32 (&s, mf->block_size);
  wb_u32 (&s, mf->stream_fwd);
  wb_u32 (&s, mf->stream_back);
  wb_u32 (&s, c->vocab);
  wb_u32 (&s, c->embed);
  wb_u32 (&s, c->hidden);
  wb_u32 (&s, c->bptt);
  wb_u32 (&s, c->optimizer);
  wb_u64 (&s, c->seed);
  wb_f64 (&s, c->lr);
  wb_f64 (&s, c->clip);
  wb_f64 (&s, c->beta1);
  wb_f64 (&s, c->beta2);
  wb_f64 (&s, c->eps);
  wb_u64 (&s, mf->trained_tokens);
  section (&f, "CONF", &s);

  s.n = 0;
  wb_u32 (&s, mf->nvocab);
  for (unsigned i = 0; i < mf->nvocab; i++)
    wb_u64 (&s, (uint64_t) mf->vocab[i]);
  section (&f, "VOCB", &s);

  s.n = 0;
  wb_u64 (&s, core_count (P));
  for (size_t i = 0; i < core_count (P); i++)
    wb_f64 (&s, P->w[i]);
  section (&f, "LSTM", &s);
  s.n = 0;
  wb_u64 (&s, P->n - core_count (P));
  for (size_t i = core_count (P); i < P->n; i++)
    wb_f64 (&s, P->w[i]);
  section (&f, "SEMB", &s);
  section (&f, "END ", NULL);

  if (f.oom || s.oom) {
    snprintf (err, errlen, "%s: out of memory", path);
    goto out;
  }
  if (asprintf (&tmp, "%s.tmp", path) < 0) {
    tmp = NULL;
    snprintf (err, errlen, "%s: out of memory", path);
    goto out;
  }
  fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd == -1) {
    snprintf (err, errlen, "%s: %s", tmp, strerror (errno));
    goto out;
  }
  for (size_t off = 0; off < f.n;) {
    ssize_t n = write (fd, f.p + off, f.n - off);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      snprintf (err, errlen, "%s: write: %s", tmp, strerror (errno));
      goto out;
    }
    off += n;
  }
  if (fsync (fd) == -1) {
    snprintf (err, errlen, "%s: fsync: %s", tmp, strerror (errno));
    goto out;
  }
  if (close (fd) == -1) {
    fd = -1;
    snprintf (err, errlen, "%s: close: %s", tmp, strerror (errno));
    goto out;
  }
  fd = -1;
  if (rename (tmp, path) == -1) {
    snprintf (err, errlen, "%s: rename: %s", path, strerror (errno));
    goto out;
  }
  r = 0;
 out:
  if (fd >= 0)
    close (fd);
  if (r < 0 && tmp)
    unlink (tmp);
  free (tmp);
  free (f.p);
  free (s.p);
  return r;
}

void
pred_model_file_free (struct pred_model_file *mf)
{
  free (mf->vocab);
  mf->vocab = NULL;
  pred_lstm_params_free (&mf->params);
}

static int
parse_conf (struct pred_model_file *mf, const unsigned char *p, uint64_t n,
            const char *path, char *err, size_t errlen)
{
  struct pred_lstm_config *c = &mf->lstm;
  const char *why;

  if (n != CONF_LEN) {
    snprintf (err, errlen, "%s: CONF section has %" PRIu64 " bytes, expected %d",
              path, n, CONF_LEN);
    return -1;
  }
  mf->block_size = rd_u32 (p);
  mf->stream_fwd = rd_u32 (p + 4);
  mf->stream_back = rd_u32 (p + 8);
  c->vocab = rd_u32 (p + 12);
  c->embed = rd_u32 (p + 16);
  c->hidden = rd_u32 (p + 20);
  c->bptt = rd_u32 (p + 24);
  c->optimizer = rd_u32 (p + 28);
  c->seed = rd_u64 (p + 32);
  c->lr = rd_f64 (p + 40);
  c->clip = rd_f64 (p + 48);
  c->beta1 = rd_f64 (p + 56);
  c->beta2 = rd_f64 (p + 64);
  c->eps = rd_f64 (p + 72);
  mf->trained_tokens = rd_u64 (p + 80);
  if ((why = pred_lstm_config_check (c)) != NULL) {
    snprintf (err, errlen, "%s: CONF: %s", path, why);
    return -1;
  }
  if (mf->block_size < 512 || (mf->block_size & (mf->block_size - 1))) {
    snprintf (err, errlen, "%s: CONF: block size %" PRIu32 " is not a power of two >= 512",
              path, mf->block_size);
    return -1;
  }
  return 0;
}

int
pred_model_load (const char *path, struct pred_model_file *mf,
                 char *err, size_t errlen)
{
  FILE *fp;
  unsigned char *buf = NULL;
  size_t len = 0, cap = 0, off;
  bool have_conf = false, have_vocab = false, have_lstm = false, have_end = false;
  bool have_semb = false;
  const unsigned char *vocab_p = NULL, *lstm_p = NULL, *semb_p = NULL;
  uint64_t vocab_n = 0, lstm_n = 0, semb_n = 0;
  size_t core;
  int r = -1;

  memset (mf, 0, sizeof *mf);
  fp = fopen (path, "rb");
  if (!fp) {
    snprintf (err, errlen, "%s: %s", path, strerror (errno));
    return -1;
  }
  for (;;) {
    if (len == cap) {
      cap = cap ? cap * 2 : 65536;
      if (cap > (size_t) 1 << 31) {
        snprintf (err, errlen, "%s: file too large for a model", path);
        goto out;
      }
      unsigned char *q = realloc (buf, cap);
      if (!q) {
        snprintf (err, errlen, "%s: out of memory", path);
        goto out;
      }
      buf = q;
    }
    size_t n = fread (buf + len, 1, cap - len, fp);
    len += n;
    if (n == 0) {
      if (ferror (fp)) {
        snprintf (err, errlen, "%s: read error", path);
        goto out;
      }
      break;
    }
  }

  if (len < 16 || memcmp (buf, PRED_MODEL_MAGIC, 8) != 0) {
    snprintf (err, errlen, "%s: not an nbdshadow model file (bad magic)", path);
    goto out;
  }
  if (rd_u32 (buf + 8) != PRED_MODEL_VERSION) {
    snprintf (err, errlen, "%s: model format version %" PRIu32 " is not supported (this is %d)",
              path, rd_u32 (buf + 8), PRED_MODEL_VERSION);
    goto out;
  }
  off = 16;
  while (!have_end) {
    char tag[5];
    uint64_t n;
    if (len - off < 16) {
      snprintf (err, errlen, "%s: truncated (no END section)", path);
      goto out;
    }
    memcpy (tag, buf + off, 4);
    tag[4] = '\0';
    n = rd_u64 (buf + off + 8);
    if (n > len - off - 16 || len - off - 16 - n < 4) {
      snprintf (err, errlen, "%s: section %s is truncated", path, tag);
      goto out;
    }
    uint32_t crc = rd_u32 (buf + off + 16 + n);
    if (pred_crc32 (0, buf + off, 16 + n) != crc) {
      snprintf (err, errlen, "%s: section %s fails its checksum", path, tag);
      goto out;
    }
    const unsigned char *p = buf + off + 16;
    bool dup = false;
    if (strcmp (tag, "CONF") == 0) {
      dup = have_conf;
      if (!dup && parse_conf (mf, p, n, path, err, errlen) < 0)
        goto out;
      have_conf = true;
    }
    else if (strcmp (tag, "VOCB") == 0) {
      dup = have_vocab;
      vocab_p = p;
      vocab_n = n;
      have_vocab = true;
    }
    else if (strcmp (tag, "LSTM") == 0) {
      dup = have_lstm;
      lstm_p = p;
      lstm_n = n;
      have_lstm = true;
    }
    else if (strcmp (tag, "SEMB") == 0) {
      dup = have_semb;
      semb_p = p;
      semb_n = n;
      have_semb = true;
    }
    else if (strcmp (tag, "END ") == 0)
      have_end = true;
    if (dup) {
      snprintf (err, errlen, "%s: duplicate section %s", path, tag);
      goto out;
    }
    off += 16 + n + 4;
  }
  if (off != len) {
    snprintf (err, errlen, "%s: %zu bytes of garbage after END", path, len - off);
    goto out;
  }
  if (!have_conf || !have_vocab || !have_lstm) {
    snprintf (err, errlen, "%s: missing section %s", path,
              !have_conf ? "CONF" : !have_vocab ? "VOCB" : "LSTM");
    goto out;
  }

  /* Vocabulary. */
  if (vocab_n < 4 || (vocab_n - 4) % 8 != 0 ||
      rd_u32 (vocab_p) != (vocab_n - 4) / 8 ||
      rd_u32 (vocab_p) >= mf->lstm.vocab) {
    snprintf (err, errlen, "%s: VOCB section is inconsistent", path);
    goto out;
  }
  mf->nvocab = rd_u32 (vocab_p);
  mf->vocab = malloc ((mf->nvocab + 1) * sizeof *mf->vocab);
  if (!mf->vocab) {
    snprintf (err, errlen, "%s: out of memory", path);
    goto out;
  }
  for (unsigned i = 0; i < mf->nvocab; i++)
    mf->vocab[i] = (int64_t) rd_u64 (vocab_p + 4 + 8 * i);

  /* Weights. */
  if (pred_lstm_params_alloc (&mf->params, mf->lstm.vocab, mf->lstm.embed,
                              mf->lstm.hidden) < 0) {
    snprintf (err, errlen, "%s: out of memory", path);
    goto out;
  }
  core = core_count (&mf->params);
  if (lstm_n < 8 || rd_u64 (lstm_p) != core || lstm_n != 8 + 8 * core) {
    snprintf (err, errlen, "%s: LSTM section does not match the CONF shapes", path);
    goto out;
  }
  if (read_weights (mf->params.w, lstm_p + 8, core, path, "LSTM",
                    err, errlen) < 0)
    goto out;
  if (have_semb) {
    size_t count = mf->params.n - core;
    if (semb_n < 8 || rd_u64 (semb_p) != count || semb_n != 8 + 8 * count) {
      snprintf (err, errlen, "%s: SEMB section does not match the CONF shapes",
                path);
      goto out;
    }
    if (read_weights (mf->params.w + core, semb_p + 8, count, path, "SEMB",
                      err, errlen) < 0)
      goto out;
  }
  /* else: zeros from pred_lstm_params_alloc, sizes unseen */
  r = 0;
 out:
  if (r < 0)
    pred_model_file_free (mf);
  fclose (fp);
  free (buf);
  return r;
}
