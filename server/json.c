/* nbdshadow: a small JSON reader and printer (json.h).
 *
 * Recursive descent over a byte buffer.  The nesting limit bounds the
 * recursion, so hostile input cannot overflow the stack; every
 * allocation is checked; a parse error frees what was built.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define MAX_DEPTH 64

struct parser {
  const char *s;
  size_t len, pos;
  char *err;
  size_t errlen;
  bool failed;
};

static void fail (struct parser *p, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* Record the first error only: it is the one that explains. */
static void
fail (struct parser *p, const char *fmt, ...)
{
  va_list args;
  int n;

  if (p->failed)
    return;
  p->failed = true;
  if (p->errlen == 0)
    return;
  n = snprintf (p->err, p->errlen, "at byte %zu: ", p->pos);
  if (n < 0 || (size_t) n >= p->errlen)
    return;
  va_start (args, fmt);
  vsnprintf (p->err + n, p->errlen - n, fmt, args);
  va_end (args);
}

static void
skip_space (struct parser *p)
{
  while (p->pos < p->len &&
         (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
          p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
    p->pos++;
}

static int
peek (struct parser *p)
{
  return p->pos < p->len ? (unsigned char) p->s[p->pos] : -1;
}

/* Free the contents of v, not v itself (values live in arrays). */
static void
clear (struct json *v)
{
  size_t i;

  if (v->type == JSON_ARRAY || v->type == JSON_OBJECT) {
    for (i = 0; i < v->n; ++i) {
      clear (&v->items[i]);
      if (v->keys)
        clear (&v->keys[i]);
    }
    free (v->items);
    free (v->keys);
  }
  free (v->text);
  memset (v, 0, sizeof *v);
}

void
json_free (struct json *v)
{
  if (v) {
    clear (v);
    free (v);
  }
}

/*----------------------------------------------------------------------
 * Strings.
 */

/* A growing byte buffer for decoded strings. */
struct buf {
  char *p;
  size_t len, cap;
};

static bool
buf_add (struct buf *b, const char *bytes, size_t n)
{
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 32;
    char *np;

    while (cap < b->len + n + 1)
      cap *= 2;
    np = realloc (b->p, cap);
    if (np == NULL)
      return false;
    b->p = np;
    b->cap = cap;
  }
  memcpy (b->p + b->len, bytes, n);
  b->len += n;
  b->p[b->len] = '\0';
  return true;
}

static bool
buf_add_utf8 (struct buf *b, uint32_t cp)
{
  char u[4];
  size_t n;

  if (cp < 0x80) {
    u[0] = cp;
    n = 1;
  }
  else if (cp < 0x800) {
    u[0] = 0xc0 | cp >> 6;
    u[1] = 0x80 | (cp & 0x3f);
    n = 2;
  }
  else if (cp < 0x10000) {
    u[0] = 0xe0 | cp >> 12;
    u[1] = 0x80 | (cp >> 6 & 0x3f);
    u[2] = 0x80 | (cp & 0x3f);
    n = 3;
  }
  else {
    u[0] = 0xf0 | cp >> 18;
    u[1] = 0x80 | (cp >> 12 & 0x3f);
    u[2] = 0x80 | (cp >> 6 & 0x3f);
    u[3] = 0x80 | (cp & 0x3f);
    n = 4;
  }
  return buf_add (b, u, n);
}

/* Four hex digits after "\u"; -1 on error. */
static long
hex4 (struct parser *p)
{
  long v = 0;
  int i;

  if (p->len - p->pos < 4) {
    fail (p, "truncated \\u escape");
    return -1;
  }
  for (i = 0; i < 4; ++i) {
    char ch = p->s[p->pos++];

    v <<= 4;
    if (ch >= '0' && ch <= '9')
      v |= ch - '0';
    else if (ch >= 'a' && ch <= 'f')
      v |= ch - 'a' + 10;
    else if (ch >= 'A' && ch <= 'F')
      v |= ch - 'A' + 10;
    else {
      p->pos--;
      fail (p, "bad hex digit in \\u escape");
      return -1;
    }
  }
  return v;
}

/* After "\u": a code point, joining a surrogate pair; a lone surrogate
 * becomes U+FFFD rather than an error, as browsers do.
 */
static long
unicode_escape (struct parser *p)
{
  long hi = hex4 (p), lo;

  if (hi < 0 || hi < 0xd800 || hi > 0xdfff)
    return hi;
  if (hi >= 0xdc00 || p->len - p->pos < 6 ||
      p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
    return 0xfffd;
  p->pos += 2;
  lo = hex4 (p);
  if (lo < 0)
    return -1;
  if (lo < 0xdc00 || lo > 0xdfff)
    return 0xfffd;              /* and lo is lost: rare enough */
  return 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
}

static bool
parse_escape (struct parser *p, struct buf *b)
{
  static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
  const char *e;
  long cp;
  int ch = peek (p);

  if (ch == -1) {
    fail (p, "unterminated string");
    return false;
  }
  p->pos++;
  if (ch == 'u') {
    cp = unicode_escape (p);
    return cp >= 0 && buf_add_utf8 (b, cp);
  }
  e = ch ? strchr (from, ch) : NULL;
  if (e == NULL) {
    p->pos--;
    fail (p, "bad escape \\%c", ch >= 0x20 && ch < 0x7f ? ch : '?');
    return false;
  }
  return buf_add (b, &to[e - from], 1);
}

/* At the opening quote.  Fills v as a STRING. */
static bool
parse_string (struct parser *p, struct json *v)
{
  struct buf b = { NULL, 0, 0 };

  p->pos++;
  if (!buf_add (&b, "", 0))
    goto nomem;
  for (;;) {
    size_t start = p->pos;
    int ch;

    while (p->pos < p->len && p->s[p->pos] != '"' && p->s[p->pos] != '\\' &&
           (unsigned char) p->s[p->pos] >= 0x20)
      p->pos++;
    if (!buf_add (&b, p->s + start, p->pos - start))
      goto nomem;
    ch = peek (p);
    if (ch == '"')
      break;
    if (ch == -1) {
      fail (p, "unterminated string");
      goto err;
    }
    if (ch != '\\') {
      fail (p, "control character in string");
      goto err;
    }
    p->pos++;
    if (!parse_escape (p, &b)) {
      if (!p->failed)
        goto nomem;
      goto err;
    }
  }
  p->pos++;
  v->type = JSON_STRING;
  v->text = b.p;
  v->len = b.len;
  return true;

 nomem:
  fail (p, "out of memory");
 err:
  free (b.p);
  return false;
}

/*----------------------------------------------------------------------
 * Numbers, literals, containers.
 */

static size_t
digits (struct parser *p)
{
  size_t start = p->pos;

  while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
    p->pos++;
  return p->pos - start;
}

/* The RFC 8259 grammar exactly: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool
parse_number (struct parser *p, struct json *v)
{
  size_t start = p->pos;

  if (peek (p) == '-')
    p->pos++;
  if (peek (p) == '0')
    p->pos++;
  else if (digits (p) == 0) {
    fail (p, "bad number");
    return false;
  }
  if (peek (p) == '.') {
    p->pos++;
    if (digits (p) == 0) {
      fail (p, "bad number: no digits after '.'");
      return false;
    }
  }
  if (peek (p) == 'e' || peek (p) == 'E') {
    p->pos++;
    if (peek (p) == '+' || peek (p) == '-')
      p->pos++;
    if (digits (p) == 0) {
      fail (p, "bad number: no digits in the exponent");
      return false;
    }
  }
  v->text = strndup (p->s + start, p->pos - start);
  if (v->text == NULL) {
    fail (p, "out of memory");
    return false;
  }
  v->type = JSON_NUMBER;
  v->len = p->pos - start;
  v->number = strtod (v->text, NULL);   /* overflow gives +-HUGE_VAL */
  return true;
}

static bool
parse_literal (struct parser *p, struct json *v)
{
  static const struct { const char *word; enum json_type type; bool b; }
  lits[] = {
    { "true", JSON_BOOL, true }, { "false", JSON_BOOL, false },
    { "null", JSON_NULL, false },
  };
  size_t i;

  for (i = 0; i < sizeof lits / sizeof lits[0]; ++i) {
    size_t n = strlen (lits[i].word);

    if (p->len - p->pos >= n && memcmp (p->s + p->pos, lits[i].word, n) == 0) {
      p->pos += n;
      v->type = lits[i].type;
      v->boolean = lits[i].b;
      return true;
    }
  }
  fail (p, "unexpected character '%c'",
        peek (p) >= 0x20 && peek (p) < 0x7f ? peek (p) : '?');
  return false;
}

static bool parse_value (struct parser *p, struct json *v, int depth);

/* Grow a container's arrays to hold one more member. */
static bool
grow (struct parser *p, struct json *v, size_t *cap)
{
  struct json *items, *keys;
  size_t ncap;

  if (v->n < *cap)
    return true;
  ncap = *cap ? *cap * 2 : 4;
  items = realloc (v->items, ncap * sizeof *items);
  if (items == NULL)
    goto nomem;
  v->items = items;
  if (v->type == JSON_OBJECT) {
    keys = realloc (v->keys, ncap * sizeof *keys);
    if (keys == NULL)
      goto nomem;
    v->keys = keys;
  }
  *cap = ncap;
  return true;

 nomem:
  fail (p, "out of memory");
  return false;
}

/* At '[' or '{'.  Members are counted in v->n only once complete, so
 * that clear() frees exactly what was built.
 */
static bool
parse_container (struct parser *p, struct json *v, int depth)
{
  bool object = peek (p) == '{';
  char close = object ? '}' : ']';
  size_t cap = 0;

  v->type = object ? JSON_OBJECT : JSON_ARRAY;
  p->pos++;
  skip_space (p);
  if (peek (p) == close) {
    p->pos++;
    return true;
  }
  for (;;) {
    struct json key = { .type = JSON_NULL }, item = { .type = JSON_NULL };

    if (!grow (p, v, &cap))
      return false;
    skip_space (p);
    if (object) {
      if (peek (p) != '"') {
        fail (p, "expected a string key");
        return false;
      }
      if (!parse_string (p, &key))
        return false;
      skip_space (p);
      if (peek (p) != ':') {
        clear (&key);
        fail (p, "expected ':'");
        return false;
      }
      p->pos++;
    }
    if (!parse_value (p, &item, depth + 1)) {
      clear (&key);
      return false;
    }
    v->items[v->n] = item;
    if (object)
      v->keys[v->n] = key;
    v->n++;
    skip_space (p);
    if (peek (p) == close) {
      p->pos++;
      return true;
    }
    if (peek (p) != ',') {
      fail (p, "expected ',' or '%c'", close);
      return false;
    }
    p->pos++;
  }
}

static bool
parse_value (struct parser *p, struct json *v, int depth)
{
  int ch;

  if (depth >= MAX_DEPTH) {
    fail (p, "nested deeper than %d", MAX_DEPTH);
    return false;
  }
  skip_space (p);
  ch = peek (p);
  if (ch == -1) {
    fail (p, "unexpected end of input");
    return false;
  }
  if (ch == '{' || ch == '[') {
    if (parse_container (p, v, depth))
      return true;
    clear (v);
    return false;
  }
  if (ch == '"')
    return parse_string (p, v);
  if (ch == '-' || (ch >= '0' && ch <= '9'))
    return parse_number (p, v);
  return parse_literal (p, v);
}

struct json *
json_parse (const char *text, size_t len, char *err, size_t errlen)
{
  struct parser p = { text, len, 0, err, errlen, false };
  struct json *v = calloc (1, sizeof *v);

  if (errlen > 0)
    err[0] = '\0';
  if (v == NULL) {
    fail (&p, "out of memory");
    return NULL;
  }
  if (!parse_value (&p, v, 0)) {
    json_free (v);
    return NULL;
  }
  skip_space (&p);
  if (p.pos != p.len) {
    fail (&p, "trailing characters after the value");
    json_free (v);
    return NULL;
  }
  return v;
}

/*----------------------------------------------------------------------
 * Lookups.
 */

const struct json *
json_member (const struct json *obj, const char *key)
{
  size_t i, klen;

  if (obj == NULL || obj->type != JSON_OBJECT || key == NULL)
    return NULL;
  klen = strlen (key);
  for (i = obj->n; i > 0; --i) {         /* last duplicate wins */
    const struct json *k = &obj->keys[i - 1];

    if (k->len == klen && memcmp (k->text, key, klen) == 0)
      return &obj->items[i - 1];
  }
  return NULL;
}

/* One path component of length n: a member, or an array index. */
static const struct json *
step (const struct json *v, const char *name, size_t n)
{
  char key[256];

  if (v == NULL || n == 0 || n >= sizeof key)
    return NULL;
  memcpy (key, name, n);
  key[n] = '\0';
  if (v->type == JSON_ARRAY) {
    char *end;
    unsigned long long i;

    if (key[0] < '0' || key[0] > '9')
      return NULL;
    errno = 0;
    i = strtoull (key, &end, 10);
    if (errno || *end || i >= v->n)
      return NULL;
    return &v->items[i];
  }
  return json_member (v, key);
}

const struct json *
json_path (const struct json *root, const char *path)
{
  const struct json *v = root;

  if (path == NULL)
    return NULL;
  while (v) {
    const char *dot = strchr (path, '.');
    size_t n = dot ? (size_t) (dot - path) : strlen (path);

    v = step (v, path, n);
    if (dot == NULL)
      return v;
    path = dot + 1;
  }
  return NULL;
}

bool
json_get_u64 (const struct json *root, const char *path, uint64_t *out)
{
  const struct json *v = json_path (root, path);
  char *end;
  uint64_t u;

  if (v == NULL || v->type != JSON_NUMBER || !(v->number >= 0))
    return false;
  errno = 0;
  u = strtoull (v->text, &end, 10);
  if (*end == '\0' && errno == 0 && v->text[0] != '-') {
    *out = u;                   /* an exact integer */
    return true;
  }
  if (v->number >= 18446744073709551616.0)
    *out = UINT64_MAX;
  else
    *out = (uint64_t) v->number;
  return true;
}

bool
json_get_double (const struct json *root, const char *path, double *out)
{
  const struct json *v = json_path (root, path);

  if (v == NULL || v->type != JSON_NUMBER || !isfinite (v->number))
    return false;
  *out = v->number;
  return true;
}

bool
json_get_bool (const struct json *root, const char *path, bool *out)
{
  const struct json *v = json_path (root, path);

  if (v == NULL || v->type != JSON_BOOL)
    return false;
  *out = v->boolean;
  return true;
}

const char *
json_get_string (const struct json *root, const char *path)
{
  const struct json *v = json_path (root, path);

  return v && v->type == JSON_STRING ? v->text : NULL;
}

/*----------------------------------------------------------------------
 * Printing.
 */

static void
print_string (FILE *fp, const char *s, size_t len)
{
  size_t i;

  fputc ('"', fp);
  for (i = 0; i < len; ++i) {
    unsigned char ch = s[i];

    switch (ch) {
    case '"': fputs ("\\\"", fp); break;
    case '\\': fputs ("\\\\", fp); break;
    case '\b': fputs ("\\b", fp); break;
    case '\f': fputs ("\\f", fp); break;
    case '\n': fputs ("\\n", fp); break;
    case '\r': fputs ("\\r", fp); break;
    case '\t': fputs ("\\t", fp); break;
    default:
      if (ch < 0x20 || ch == 0x7f)
        fprintf (fp, "\\u%04x", ch);
      else
        fputc (ch, fp);
    }
  }
  fputc ('"', fp);
}

static void
newline (FILE *fp, int indent, int level)
{
  if (indent > 0)
    fprintf (fp, "\n%*s", indent * level, "");
}

static void
print_value (FILE *fp, const struct json *v, int indent, int level)
{
  size_t i;

  switch (v->type) {
  case JSON_NULL: fputs ("null", fp); return;
  case JSON_BOOL: fputs (v->boolean ? "true" : "false", fp); return;
  case JSON_NUMBER: fputs (v->text, fp); return;
  case JSON_STRING: print_string (fp, v->text, v->len); return;
  case JSON_ARRAY:
  case JSON_OBJECT:
    break;
  }
  fputc (v->type == JSON_OBJECT ? '{' : '[', fp);
  for (i = 0; i < v->n; ++i) {
    if (i > 0)
      fputc (',', fp);
    newline (fp, indent, level + 1);
    if (v->type == JSON_OBJECT) {
      print_string (fp, v->keys[i].text, v->keys[i].len);
      fputs (indent > 0 ? ": " : ":", fp);
    }
    print_value (fp, &v->items[i], indent, level + 1);
  }
  if (v->n > 0)
    newline (fp, indent, level);
  fputc (v->type == JSON_OBJECT ? '}' : ']', fp);
}

void
json_print (FILE *fp, const struct json *v, int indent)
{
  print_value (fp, v, indent, 0);
}
