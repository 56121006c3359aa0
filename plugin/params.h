/* nbdshadow: the filter's parameters (DESIGN §3.1).
 *
 * Parsing and validation live apart from the callbacks so that every bad
 * value is refused at start-up with one line that names the key and says
 * why, before nbdkit forks and stderr goes away.
 */

#ifndef NBDSHADOW_PARAMS_H
#define NBDSHADOW_PARAMS_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"

enum prefetch_policy {
  PREFETCH_OFF,
  PREFETCH_READAHEAD,
  PREFETCH_NGRAM,
  PREFETCH_LSTM,
  PREFETCH_HYBRID,
};

struct shadow_params {
  const char *uris[ENGINE_MAX_SHADOWS];
  size_t nr_shadows;
  uint32_t block_size;
  const char *state_dir;        /* NULL: volatile */
  bool writes_both;
  bool background;
  uint64_t rate;                /* bytes/s, 0 = unlimited */
  unsigned connections;         /* per shadow that allows multi-conn */
  double retry_hold;            /* seconds, engine_config.retry_hold */
  double reconnect_timeout;     /* seconds, engine_config.reconnect_timeout */
  enum prefetch_policy prefetch;
  const char *model;
  const char *control;
  bool cutover_auto;
  const char *trace;
};

#define SHADOW_CONFIG_HELP \
  "shadow=URI                 (required, repeatable) NBD URI of a shadow export\n" \
  "shadow-block-size=SIZE     residency granularity, power of 2, 4K..64M (default 64K)\n" \
  "shadow-state=DIR           persistent state directory (default: volatile)\n" \
  "shadow-writes=shadow|both  where client writes go (default shadow)\n" \
  "shadow-background=on|off   background hydration (default on)\n" \
  "shadow-rate=BYTES          background+prefetch copy ceiling per second\n" \
  "shadow-connections=N       connections per multi-conn shadow, 1..16 (default 2)\n" \
  "shadow-retry-hold=SECONDS  hold writes retried after a lost connection (default 5)\n" \
  "shadow-reconnect-timeout=SECONDS  how long a shadow may stay away (default 60)\n" \
  "shadow-prefetch=off|readahead|ngram|lstm|hybrid  predictor (default hybrid)\n" \
  "shadow-model=PATH          warm-start model file\n" \
  "shadow-control=PATH        control socket (default STATE/control.sock)\n" \
  "shadow-cutover=manual|auto cut over by hand or when synced (default manual)\n" \
  "shadow-trace=PATH          record the client access stream"

extern void params_init (struct shadow_params *p);

/* Handle one key=value.  Returns 1 if the key is ours and valid, 0 if it
 * is not ours (pass it on), -1 after reporting an error.
 */
extern int params_config (struct shadow_params *p, const char *key,
                          const char *value);

/* Checks that need every key.  -1 after reporting an error. */
extern int params_complete (struct shadow_params *p);

extern const char *prefetch_name (enum prefetch_policy p);
extern int prefetch_parse (const char *s, enum prefetch_policy *out);

#endif /* NBDSHADOW_PARAMS_H */
