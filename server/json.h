/* nbdshadow: a small JSON reader and printer for the nbdshadow CLI.
 *
 * The CLI reads one object, the status of control.h, and must never
 * crash on what a server sends: a strict RFC 8259 parser with a nesting
 * limit, getters that return "absent" for a missing field or one of the
 * wrong type, and a printer that re-indents.  No external library: the
 * CLI should build wherever the filter builds.
 */

#ifndef NBDSHADOW_JSON_H
#define NBDSHADOW_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum json_type {
  JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT,
};

struct json {
  enum json_type type;
  bool boolean;                 /* BOOL */
  double number;                /* NUMBER */
  char *text;                   /* STRING: decoded, NUL-terminated (may also
                                 * contain NULs: see len); NUMBER: the
                                 * literal as written, for exact integers */
  size_t len;                   /* STRING, NUMBER: bytes in text */
  size_t n;                     /* ARRAY, OBJECT: number of members */
  struct json *items;           /* ARRAY, OBJECT: the n values */
  struct json *keys;            /* OBJECT: the n keys (STRINGs) */
};

/* Parse exactly one JSON value (surrounding whitespace allowed) from
 * text[0..len).  Returns a tree to free with json_free, or NULL with a
 * message "at byte N: ..." in err.
 */
extern struct json *json_parse (const char *text, size_t len,
                                char *err, size_t errlen);
extern void json_free (struct json *v);

/* Lookups: NULL when absent or not a container of the right type.
 * json_path follows a dotted path, with array indexes as numbers:
 * "bytes_copied.total", "errors.shadows.0.uri".  A duplicated key
 * yields its last value, as most parsers do.
 */
extern const struct json *json_member (const struct json *obj,
                                       const char *key);
extern const struct json *json_path (const struct json *root,
                                     const char *path);

/* Typed getters on a path: false (and *out untouched) when the value is
 * absent or of another type.  json_get_u64 takes non-negative numbers,
 * exactly for integers up to UINT64_MAX, truncated otherwise.
 */
extern bool json_get_u64 (const struct json *root, const char *path,
                          uint64_t *out);
extern bool json_get_double (const struct json *root, const char *path,
                             double *out);
extern bool json_get_bool (const struct json *root, const char *path,
                           bool *out);
extern const char *json_get_string (const struct json *root,
                                    const char *path);

/* Print v: indent > 0 pretty-prints with that many spaces a level,
 * 0 prints it on one line.  No trailing newline.
 */
extern void json_print (FILE *fp, const struct json *v, int indent);

#endif /* NBDSHADOW_JSON_H */
