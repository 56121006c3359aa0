/* nbdshadow: the filter's parameters (see params.h). */

#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "params.h"

#define MIN_BLOCK_SIZE (4 * 1024)
#define MAX_BLOCK_SIZE (64 * 1024 * 1024)
#define MAX_CONNECTIONS 16
#define MAX_RETRY_HOLD 3600.0
#define DEFAULT_RECONNECT_TIMEOUT 60.0
#define MIN_RECONNECT_TIMEOUT 0.1
#define MAX_RECONNECT_TIMEOUT 86400.0
#define DEFAULT_RETRY_HOLD 5.0

static const char *const prefetch_names[] = {
  [PREFETCH_OFF] = "off",
  [PREFETCH_READAHEAD] = "readahead",
  [PREFETCH_NGRAM] = "ngram",
  [PREFETCH_LSTM] = "lstm",
  [PREFETCH_HYBRID] = "hybrid",
};

/* Keys given once at most. */
static bool seen_block_size, seen_state, seen_writes, seen_background,
  seen_rate, seen_prefetch, seen_model, seen_control, seen_cutover,
  seen_trace, seen_connections, seen_retry_hold, seen_reconnect_timeout;

void
params_init (struct shadow_params *p)
{
  memset (p, 0, sizeof *p);
  p->block_size = 64 * 1024;
  p->background = true;
  p->prefetch = PREFETCH_HYBRID;
  p->connections = 2;
  p->retry_hold = DEFAULT_RETRY_HOLD;
  p->reconnect_timeout = DEFAULT_RECONNECT_TIMEOUT;
}

const char *
prefetch_name (enum prefetch_policy p)
{
  return prefetch_names[p];
}

int
prefetch_parse (const char *s, enum prefetch_policy *out)
{
  size_t i;

  for (i = 0; i < sizeof prefetch_names / sizeof prefetch_names[0]; ++i)
    if (strcmp (s, prefetch_names[i]) == 0) {
      *out = i;
      return 0;
    }
  return -1;
}

/* nbdkit's size syntax (a number, an optional b, K, M, G, T, P or E
 * suffix, any case), parsed here so that an error names the key.
 */
static int
parse_size (const char *key, const char *value, uint64_t *out)
{
  static const char suffixes[] = "bkmgtpe";
  const char *p = value;
  uint64_t n = 0, scale = 1;
  const char *sfx;

  while (*p == ' ')
    p++;
  if (*p < '0' || *p > '9')
    goto bad;
  for (; *p >= '0' && *p <= '9'; ++p) {
    if (n > (UINT64_MAX - (*p - '0')) / 10)
      goto overflow;
    n = n * 10 + (*p - '0');
  }
  if (*p != '\0') {
    sfx = strchr (suffixes, *p | 0x20);
    if (sfx == NULL || p[1] != '\0')
      goto bad;
    scale = UINT64_C (1) << (10 * (sfx - suffixes));
  }
  if (n > INT64_MAX / scale)
    goto overflow;
  *out = n * scale;
  return 0;

 bad:
  nbdkit_error ("%s=%s: not a size (a number with an optional K, M, G, T, "
                "P or E suffix)", key, value);
  return -1;
 overflow:
  nbdkit_error ("%s=%s: too large", key, value);
  return -1;
}

/* nbdkit's boolean words, with an error that names the key. */
static int
parse_bool (const char *key, const char *value, bool *out)
{
  static const char *const yes[] = { "1", "true", "yes", "on" };
  static const char *const no[] = { "0", "false", "no", "off" };
  size_t i;

  for (i = 0; i < 4; ++i) {
    if (strcasecmp (value, yes[i]) == 0) {
      *out = true;
      return 0;
    }
    if (strcasecmp (value, no[i]) == 0) {
      *out = false;
      return 0;
    }
  }
  nbdkit_error ("%s=%s: must be on or off", key, value);
  return -1;
}

static int
once (bool *seen, const char *key)
{
  if (*seen) {
    nbdkit_error ("%s: given more than once", key);
    return -1;
  }
  *seen = true;
  return 0;
}

static bool
valid_uri_scheme (const char *uri)
{
  static const char *const schemes[] = {
    "nbd://", "nbds://", "nbd+unix://", "nbds+unix://", "nbd+unix:///",
    "nbd+vsock://", "nbds+vsock://",
  };
  size_t i;

  for (i = 0; i < sizeof schemes / sizeof schemes[0]; ++i)
    if (strncmp (uri, schemes[i], strlen (schemes[i])) == 0)
      return true;
  return false;
}

static int
config_shadow (struct shadow_params *p, const char *value)
{
  if (!valid_uri_scheme (value)) {
    nbdkit_error ("shadow=%s: not an NBD URI (expected nbd://, nbds://, "
                  "nbd+unix:// or nbds+unix://)", value);
    return -1;
  }
  if (p->nr_shadows == ENGINE_MAX_SHADOWS) {
    nbdkit_error ("shadow=%s: at most %d shadows are supported", value,
                  ENGINE_MAX_SHADOWS);
    return -1;
  }
  p->uris[p->nr_shadows++] = value;
  return 0;
}

static int
config_block_size (struct shadow_params *p, const char *key,
                   const char *value)
{
  uint64_t n;

  if (parse_size (key, value, &n) == -1)
    return -1;
  if (n < MIN_BLOCK_SIZE || n > MAX_BLOCK_SIZE || (n & (n - 1)) != 0) {
    nbdkit_error ("%s=%s: must be a power of two between 4K and 64M",
                  key, value);
    return -1;
  }
  p->block_size = n;
  return 0;
}

static int
config_choice (const char *key, const char *value, const char *a,
               const char *b, bool *is_b)
{
  if (strcmp (value, a) == 0)
    *is_b = false;
  else if (strcmp (value, b) == 0)
    *is_b = true;
  else {
    nbdkit_error ("%s=%s: must be %s or %s", key, value, a, b);
    return -1;
  }
  return 0;
}

/* A whole number in [min, max], nothing else. */
static int
parse_uint_range (const char *key, const char *value, unsigned min,
                  unsigned max, unsigned *out)
{
  char *end;
  unsigned long v;

  errno = 0;
  v = strtoul (value, &end, 10);
  if (*value < '0' || *value > '9' || *end != '\0' || errno != 0 ||
      v < min || v > max) {
    nbdkit_error ("%s=%s: must be a whole number from %u to %u",
                  key, value, min, max);
    return -1;
  }
  *out = v;
  return 0;
}

/* Seconds, a decimal number in [0, max]. */
static int
parse_seconds (const char *key, const char *value, double min, double max,
               double *out)
{
  char *end;
  double v;

  errno = 0;
  v = strtod (value, &end);
  if (*value < '0' || *value > '9' || *end != '\0' || errno != 0 ||
      !(v >= min && v <= max)) {
    nbdkit_error ("%s=%s: must be a number of seconds from %g to %g",
                  key, value, min, max);
    return -1;
  }
  *out = v;
  return 0;
}

static int
config_readable_file (const char *key, const char *value)
{
  if (access (value, R_OK) == -1) {
    nbdkit_error ("%s=%s: %s", key, value, strerror (errno));
    return -1;
  }
  return 0;
}

int
params_config (struct shadow_params *p, const char *key, const char *value)
{
  int r;

  if (strcmp (key, "shadow") == 0)
    r = config_shadow (p, value);
  else if (strcmp (key, "shadow-block-size") == 0)
    r = once (&seen_block_size, key) ?: config_block_size (p, key, value);
  else if (strcmp (key, "shadow-state") == 0) {
    r = once (&seen_state, key);
    if (r == 0 && *value == '\0') {
      nbdkit_error ("%s: empty path", key);
      r = -1;
    }
    p->state_dir = value;
  }
  else if (strcmp (key, "shadow-writes") == 0)
    r = once (&seen_writes, key) ?:
      config_choice (key, value, "shadow", "both", &p->writes_both);
  else if (strcmp (key, "shadow-background") == 0) {
    r = once (&seen_background, key) ?:
      parse_bool (key, value, &p->background);
  }
  else if (strcmp (key, "shadow-rate") == 0) {
    r = once (&seen_rate, key) ?: parse_size (key, value, &p->rate);
    if (r == 0 && p->rate == 0) {
      nbdkit_error ("%s=%s: must be more than 0 (omit it for no limit)",
                    key, value);
      r = -1;
    }
  }
  else if (strcmp (key, "shadow-connections") == 0)
    r = once (&seen_connections, key) ?:
      parse_uint_range (key, value, 1, MAX_CONNECTIONS, &p->connections);
  else if (strcmp (key, "shadow-retry-hold") == 0)
    r = once (&seen_retry_hold, key) ?:
      parse_seconds (key, value, 0, MAX_RETRY_HOLD, &p->retry_hold);
  else if (strcmp (key, "shadow-reconnect-timeout") == 0)
    r = once (&seen_reconnect_timeout, key) ?:
      parse_seconds (key, value, MIN_RECONNECT_TIMEOUT, MAX_RECONNECT_TIMEOUT,
                     &p->reconnect_timeout);
  else if (strcmp (key, "shadow-prefetch") == 0) {
    r = once (&seen_prefetch, key);
    if (r == 0 && prefetch_parse (value, &p->prefetch) == -1) {
      nbdkit_error ("%s=%s: must be off, readahead, ngram, lstm or hybrid",
                    key, value);
      r = -1;
    }
  }
  else if (strcmp (key, "shadow-model") == 0) {
    r = once (&seen_model, key) ?: config_readable_file (key, value);
    p->model = value;
  }
  else if (strcmp (key, "shadow-control") == 0) {
    r = once (&seen_control, key);
    p->control = value;
  }
  else if (strcmp (key, "shadow-cutover") == 0)
    r = once (&seen_cutover, key) ?:
      config_choice (key, value, "manual", "auto", &p->cutover_auto);
  else if (strcmp (key, "shadow-trace") == 0) {
    r = once (&seen_trace, key);
    p->trace = value;
  }
  else if (strncmp (key, "shadow", 6) == 0) {
    nbdkit_error ("%s: unknown parameter of the shadow filter "
                  "(see nbdkit --filter=shadow --help)", key);
    r = -1;
  }
  else
    return 0;
  return r == 0 ? 1 : -1;
}

int
params_complete (struct shadow_params *p)
{
  struct stat st;

  if (p->nr_shadows == 0) {
    nbdkit_error ("shadow=URI is required: the NBD URI of the volume to "
                  "migrate to (see nbdkit --filter=shadow --help)");
    return -1;
  }
  if (p->state_dir && stat (p->state_dir, &st) == 0 && !S_ISDIR (st.st_mode)) {
    nbdkit_error ("shadow-state=%s: not a directory", p->state_dir);
    return -1;
  }
  return 0;
}
