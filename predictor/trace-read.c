/* trace-read.c: streaming readers for native, MSR and DiskSim traces.
 *
 * One fixed line buffer, one bounded device table: constant memory
 * whatever the trace length.  Strict parsing, because a silently
 * misread trace gives silently wrong benchmark figures.
 */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "trace.h"

#define DEV_NAME_MAX 64
#define DEV_HASH (2 * PRED_TRACE_MAX_DEVICES)

struct pred_trace_reader {
  FILE *fp;
  bool own_fp;
  char *name;
  enum pred_trace_format fmt;
  uint64_t lineno;
  bool failed;
  char err[512];
  char line[PRED_TRACE_MAX_LINE + 2];
  unsigned ndev;
  char (*dev_names)[DEV_NAME_MAX];   /* [PRED_TRACE_MAX_DEVICES] */
  int32_t *dev_hash;                 /* [DEV_HASH], -1 = empty */
};

int
pred_trace_format_parse (const char *name)
{
  if (strcmp (name, "auto") == 0) return PRED_TRACE_AUTO;
  if (strcmp (name, "native") == 0) return PRED_TRACE_NATIVE;
  if (strcmp (name, "msr") == 0) return PRED_TRACE_MSR;
  if (strcmp (name, "disksim") == 0) return PRED_TRACE_DISKSIM;
  if (strcmp (name, "disksim-ms") == 0) return PRED_TRACE_DISKSIM_MS;
  return -1;
}

const char *
pred_trace_format_name (enum pred_trace_format f)
{
  switch (f) {
  case PRED_TRACE_AUTO: return "auto";
  case PRED_TRACE_NATIVE: return "native";
  case PRED_TRACE_MSR: return "msr";
  case PRED_TRACE_DISKSIM: return "disksim";
  case PRED_TRACE_DISKSIM_MS: return "disksim-ms";
  }
  return "?";
}

struct pred_trace_reader *
pred_trace_open_stream (FILE *fp, const char *name, enum pred_trace_format fmt)
{
  struct pred_trace_reader *r = calloc (1, sizeof *r);
  if (!r)
    return NULL;
  r->fp = fp;
  r->name = strdup (name);
  r->fmt = fmt;
  r->dev_names = calloc (PRED_TRACE_MAX_DEVICES, DEV_NAME_MAX);
  r->dev_hash = malloc (DEV_HASH * sizeof *r->dev_hash);
  if (!r->name || !r->dev_names || !r->dev_hash) {
    pred_trace_close (r);
    return NULL;
  }
  for (size_t i = 0; i < DEV_HASH; i++)
    r->dev_hash[i] = -1;
  return r;
}

struct pred_trace_reader *
pred_trace_open (const char *path, enum pred_trace_format fmt,
                 char *err, size_t errlen)
{
  FILE *fp;
  struct pred_trace_reader *r;

  if (strcmp (path, "-") == 0)
    fp = stdin;
  else {
    fp = fopen (path, "r");
    if (!fp) {
      snprintf (err, errlen, "%s: %s", path, strerror (errno));
      return NULL;
    }
  }
  r = pred_trace_open_stream (fp, path, fmt);
  if (!r) {
    snprintf (err, errlen, "%s: %s", path, strerror (ENOMEM));
    if (fp != stdin)
      fclose (fp);
    return NULL;
  }
  r->own_fp = fp != stdin;
  return r;
}

void
pred_trace_close (struct pred_trace_reader *r)
{
  if (!r)
    return;
  if (r->own_fp && r->fp)
    fclose (r->fp);
  free (r->name);
  free (r->dev_names);
  free (r->dev_hash);
  free (r);
}

const char *pred_trace_error (const struct pred_trace_reader *r) { return r->err; }
uint64_t pred_trace_lineno (const struct pred_trace_reader *r) { return r->lineno; }
enum pred_trace_format pred_trace_get_format (const struct pred_trace_reader *r) { return r->fmt; }
unsigned pred_trace_ndevices (const struct pred_trace_reader *r) { return r->ndev; }

const char *
pred_trace_device_name (const struct pred_trace_reader *r, unsigned dev)
{
  return dev < r->ndev ? r->dev_names[dev] : NULL;
}

static int __attribute__ ((format (printf, 2, 3)))
fail (struct pred_trace_reader *r, const char *fmt, ...)
{
  va_list ap;
  int n = snprintf (r->err, sizeof r->err, "%s:%" PRIu64 ": ",
                    r->name, r->lineno);
  if (n < 0 || (size_t) n >= sizeof r->err)
    n = 0;
  va_start (ap, fmt);
  vsnprintf (r->err + n, sizeof r->err - n, fmt, ap);
  va_end (ap);
  r->failed = true;
  return -1;
}

/* Split s in place on any character of seps (runs of whitespace count
 * as one when ws is true).  Returns the number of fields (at most max+1:
 * max+1 means "too many"). */
static int
split (char *s, const char *seps, bool ws, char **f, int max)
{
  int n = 0;
  char *p = s;

  if (ws) {
    for (;;) {
      while (*p && strchr (seps, *p))
        p++;
      if (!*p)
        break;
      if (n == max)
        return max + 1;
      f[n++] = p;
      while (*p && !strchr (seps, *p))
        p++;
      if (*p)
        *p++ = '\0';
    }
  }
  else {
    for (;;) {
      if (n == max)
        return max + 1;
      f[n++] = p;
      p = strpbrk (p, seps);
      if (!p)
        break;
      *p++ = '\0';
    }
  }
  return n;
}

/* Strict unsigned decimal. */
static bool
parse_u64 (const char *s, uint64_t *v)
{
  char *end;
  if (!isdigit ((unsigned char) *s))
    return false;
  errno = 0;
  unsigned long long x = strtoull (s, &end, 10);
  if (errno || *end)
    return false;
  *v = x;
  return true;
}

/* Non-negative decimal possibly with a fraction (times). */
static bool
parse_time (const char *s, double *v)
{
  char *end;
  if (!isdigit ((unsigned char) *s) && *s != '.')
    return false;
  errno = 0;
  double x = strtod (s, &end);
  if (errno || *end || !isfinite (x) || x < 0 || x > 1.8e19)
    return false;
  *v = x;
  return true;
}

static char *
trim (char *s)
{
  size_t n;
  while (isspace ((unsigned char) *s))
    s++;
  n = strlen (s);
  while (n > 0 && isspace ((unsigned char) s[n - 1]))
    s[--n] = '\0';
  return s;
}

static uint64_t
hash_str (const char *s)
{
  uint64_t h = UINT64_C (1469598103934665603);
  while (*s)
    h = (h ^ (unsigned char) *s++) * UINT64_C (1099511628211);
  return h;
}

/* Device index for a name, adding it if new.  -1 if the table is full. */
static int
device_index (struct pred_trace_reader *r, const char *name)
{
  size_t h = hash_str (name) % DEV_HASH;
  for (;;) {
    int32_t i = r->dev_hash[h];
    if (i < 0)
      break;
    if (strcmp (r->dev_names[i], name) == 0)
      return i;
    h = (h + 1) % DEV_HASH;
  }
  if (r->ndev >= PRED_TRACE_MAX_DEVICES)
    return -1;
  snprintf (r->dev_names[r->ndev], DEV_NAME_MAX, "%s", name);
  r->dev_hash[h] = r->ndev;
  return r->ndev++;
}

static int
parse_native_fields (char **f, int n, struct pred_access *a,
                     char *err, size_t errlen)
{
  uint64_t t, off, len;

  if (n != 4) {
    snprintf (err, errlen, "expected 4 fields `time_us op offset length', got %s",
              n > 4 ? "more" : n == 1 ? "1" : n == 2 ? "2" : "3");
    return -1;
  }
  if (!parse_u64 (f[0], &t)) {
    snprintf (err, errlen, "bad time `%s' (unsigned decimal microseconds)", f[0]);
    return -1;
  }
  if (strlen (f[1]) != 1 || !pred_op_valid (f[1][0])) {
    snprintf (err, errlen, "bad op `%s' (one of R W Z T F)", f[1]);
    return -1;
  }
  if (!parse_u64 (f[2], &off)) {
    snprintf (err, errlen, "bad offset `%s'", f[2]);
    return -1;
  }
  if (!parse_u64 (f[3], &len) || len > UINT32_MAX) {
    snprintf (err, errlen, "bad length `%s' (0 .. 4294967295)", f[3]);
    return -1;
  }
  if (off + len < off) {
    snprintf (err, errlen, "offset + length overflows");
    return -1;
  }
  memset (a, 0, sizeof *a);
  a->time_us = t;
  a->op = f[1][0];
  a->offset = off;
  a->length = (uint32_t) len;
  return 1;
}

int
pred_trace_parse_native (const char *line, struct pred_access *a,
                         char *err, size_t errlen)
{
  char buf[PRED_TRACE_MAX_LINE + 1];
  char *f[5];
  char *s;
  int n;

  snprintf (buf, sizeof buf, "%s", line);
  s = trim (buf);
  if (*s == '\0' || *s == '#')
    return 0;
  n = split (s, " \t", true, f, 4);
  return parse_native_fields (f, n, a, err, errlen);
}

static int
parse_msr (struct pred_trace_reader *r, char *s, struct pred_access *a)
{
  char *f[8];
  uint64_t ts, disk, off, len, rt;
  char devname[DEV_NAME_MAX];
  int n = split (s, ",", false, f, 7), dev;

  if (n != 7)
    return fail (r, "expected 7 comma-separated fields "
                 "`Timestamp,Hostname,DiskNumber,Type,Offset,Size,ResponseTime', got %s",
                 n > 7 ? "more" : n == 1 ? "1" : "fewer");
  for (int i = 0; i < 7; i++)
    f[i] = trim (f[i]);
  if (!parse_u64 (f[0], &ts))
    return fail (r, "bad Timestamp `%s'", f[0]);
  if (*f[1] == '\0' || strlen (f[1]) > 40)
    return fail (r, "bad Hostname `%s'", f[1]);
  if (!parse_u64 (f[2], &disk))
    return fail (r, "bad DiskNumber `%s'", f[2]);
  if (strcasecmp (f[3], "Read") == 0)
    a->op = PRED_OP_READ;
  else if (strcasecmp (f[3], "Write") == 0)
    a->op = PRED_OP_WRITE;
  else
    return fail (r, "bad Type `%s' (Read or Write)", f[3]);
  if (!parse_u64 (f[4], &off))
    return fail (r, "bad Offset `%s'", f[4]);
  if (!parse_u64 (f[5], &len) || len > UINT32_MAX)
    return fail (r, "bad Size `%s'", f[5]);
  if (!parse_u64 (f[6], &rt))
    return fail (r, "bad ResponseTime `%s'", f[6]);
  if (off + len < off)
    return fail (r, "Offset + Size overflows");
  snprintf (devname, sizeof devname, "%s_%" PRIu64, f[1], disk);
  dev = device_index (r, devname);
  if (dev < 0)
    return fail (r, "more than %d devices", PRED_TRACE_MAX_DEVICES);
  a->time_us = ts / 10;
  a->offset = off;
  a->length = (uint32_t) len;
  a->dev = dev;
  return 1;
}

static int
parse_disksim (struct pred_trace_reader *r, char *s, struct pred_access *a)
{
  char *f[6];
  double t;
  uint64_t devno, sector, count, flags;
  char devname[DEV_NAME_MAX];
  int n = split (s, " \t", true, f, 5), dev;

  if (n != 5)
    return fail (r, "expected 5 fields `time device sector sectors flags', got %s",
                 n > 5 ? "more" : n == 1 ? "1" : "fewer");
  if (!parse_time (f[0], &t))
    return fail (r, "bad time `%s'", f[0]);
  if (!parse_u64 (f[1], &devno))
    return fail (r, "bad device `%s'", f[1]);
  if (!parse_u64 (f[2], &sector) || sector > UINT64_MAX / 512)
    return fail (r, "bad sector `%s'", f[2]);
  if (!parse_u64 (f[3], &count) || count > UINT32_MAX / 512)
    return fail (r, "bad sector count `%s'", f[3]);
  if (!parse_u64 (f[4], &flags))
    return fail (r, "bad flags `%s'", f[4]);
  if (sector * 512 + count * 512 < sector * 512)
    return fail (r, "sector + count overflows");
  snprintf (devname, sizeof devname, "%" PRIu64, devno);
  dev = device_index (r, devname);
  if (dev < 0)
    return fail (r, "more than %d devices", PRED_TRACE_MAX_DEVICES);
  a->time_us = r->fmt == PRED_TRACE_DISKSIM_MS
    ? (uint64_t) llround (t * 1000.0) : (uint64_t) llround (t / 1000.0);
  a->op = (flags & 1) ? PRED_OP_READ : PRED_OP_WRITE;
  a->offset = sector * 512;
  a->length = (uint32_t) (count * 512);
  a->dev = dev;
  return 1;
}

/* Guess the format of a data line. */
static enum pred_trace_format
detect (const char *s)
{
  char buf[PRED_TRACE_MAX_LINE + 1];
  char *f[6];
  int n;

  if (strchr (s, ','))
    return PRED_TRACE_MSR;
  snprintf (buf, sizeof buf, "%s", s);
  n = split (buf, " \t", true, f, 5);
  if (n == 4)
    return PRED_TRACE_NATIVE;
  if (n == 5)
    return PRED_TRACE_DISKSIM;
  return PRED_TRACE_AUTO;
}

int
pred_trace_next (struct pred_trace_reader *r, struct pred_access *a)
{
  if (r->failed)
    return -1;

  for (;;) {
    char *s;
    size_t len;

    if (!fgets (r->line, sizeof r->line, r->fp)) {
      if (ferror (r->fp)) {
        r->lineno++;
        return fail (r, "read error: %s", strerror (errno));
      }
      return 0;
    }
    r->lineno++;
    len = strlen (r->line);
    if (len > PRED_TRACE_MAX_LINE ||
        (len == PRED_TRACE_MAX_LINE && r->line[len - 1] != '\n'))
      return fail (r, "line longer than %d bytes", PRED_TRACE_MAX_LINE);
    if (memchr (r->line, '\0', len) != NULL && strlen (r->line) != len)
      return fail (r, "NUL byte in line");
    s = trim (r->line);
    if (*s == '\0' || *s == '#')
      continue;
    /* The MSR files sometimes start with a header row. */
    if (r->lineno == 1 && strncasecmp (s, "Timestamp,", 10) == 0) {
      if (r->fmt == PRED_TRACE_AUTO)
        r->fmt = PRED_TRACE_MSR;
      continue;
    }

    if (r->fmt == PRED_TRACE_AUTO) {
      r->fmt = detect (s);
      if (r->fmt == PRED_TRACE_AUTO)
        return fail (r, "cannot tell the trace format from this line "
                     "(native has 4 fields, DiskSim 5, MSR is comma-separated)");
    }

    memset (a, 0, sizeof *a);
    switch (r->fmt) {
    case PRED_TRACE_NATIVE: {
      char *f[5];
      char msg[256];
      int n = split (s, " \t", true, f, 4);
      if (parse_native_fields (f, n, a, msg, sizeof msg) < 0)
        return fail (r, "%s", msg);
      if (r->ndev == 0)
        device_index (r, "0");
      return 1;
    }
    case PRED_TRACE_MSR:
      return parse_msr (r, s, a);
    case PRED_TRACE_DISKSIM:
    case PRED_TRACE_DISKSIM_MS:
      return parse_disksim (r, s, a);
    case PRED_TRACE_AUTO:
      break;
    }
    return fail (r, "internal error: no format");
  }
}
