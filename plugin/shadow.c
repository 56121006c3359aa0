/* nbdshadow: the shadow filter, thin glue between nbdkit and server/.
 *
 *   nbdkit --filter=shadow nbd uri=nbd://old/vol shadow=nbd://new/vol
 *
 * Life cycle (nbdkit-filter(3), DESIGN §5 and §8):
 *   .config/.config_complete  parse and check every parameter
 *   .get_ready                probe each shadow (reachable, writable, its
 *                             size) while stderr still reaches the user
 *   .after_fork               open a shared origin context, compare sizes,
 *                             start the engine thread and the committer:
 *                             threads never start before nbdkit forks
 *   .open/.prepare            per client: the origin context as an origin
 *   data callbacks            server/volume.c
 *   .cleanup                  final commit, stop threads, close contexts
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "copyop.h"
#include "engine.h"
#include "log.h"
#include "origin_next.h"
#include "params.h"
#include "volume.h"

/* -D shadow.verbose=1 */
NBDKIT_DLL_PUBLIC int shadow_debug_verbose;

#define SAMPLE_INTERVAL 0.5     /* seconds between copy-rate samples */

static struct shadow_params params;
static struct shadow_info probed[ENGINE_MAX_SHADOWS];

/* Set in .after_fork, cleared in .cleanup; connections exist only in
 * between, so the callbacks read them without locks.
 */
static struct engine *engine;
static struct volume *volume;
static nbdkit_next *shared_origin;

/* Per client connection. */
struct shadow_handle {
  struct origin origin;
};

static void
error_sink (const char *fmt, va_list args)
{
  nbdkit_verror (fmt, args);
}

static void
debug_sink (const char *fmt, va_list args)
{
  if (shadow_debug_verbose)
    nbdkit_vdebug (fmt, args);
}

static void
shadow_load (void)
{
  params_init (&params);
  shadow_log_set (error_sink, debug_sink);
}

static int
shadow_config (nbdkit_next_config *next, nbdkit_backend *nxdata,
               const char *key, const char *value)
{
  int r = params_config (&params, key, value);

  if (r == 0)
    return next (nxdata, key, value);
  return r == 1 ? 0 : -1;
}

static int
shadow_config_complete (nbdkit_next_config_complete *next,
                        nbdkit_backend *nxdata)
{
  if (params_complete (&params) == -1)
    return -1;
  return next (nxdata);
}

static struct engine_config
engine_config_of (int64_t expected_size)
{
  return (struct engine_config) {
    .uris = params.uris,
    .nr_shadows = params.nr_shadows,
    .expected_size = expected_size,
    .reconnect_timeout = 60,
  };
}

static int
shadow_get_ready (int thread_model)
{
  struct engine_config cfg = engine_config_of (-1);
  size_t i;

  if (engine_probe (&cfg, probed) == -1)
    return -1;
  for (i = 1; i < params.nr_shadows; ++i)
    if (probed[i].size != probed[0].size) {
      nbdkit_error ("shadow %s has size %" PRIi64 " but shadow %s has size %"
                    PRIi64 ": every shadow must have the origin's size",
                    probed[i].uri, probed[i].size, probed[0].uri,
                    probed[0].size);
      return -1;
    }
  for (i = 0; i < params.nr_shadows; ++i)
    if (!probed[i].can_flush)
      fprintf (stderr, "nbdkit: shadow: warning: shadow %s cannot flush: "
               "its data is durable only if it writes synchronously\n",
               probed[i].uri);
  if (params.state_dir == NULL)
    fprintf (stderr, "nbdkit: shadow: warning: no shadow-state: residency "
             "is kept in memory only, and a restart copies everything "
             "again\n");
  return 0;
}

static void
sample_tick (void *opaque, double now)
{
  volume_sample_rate (opaque, now);
}

/* Open the shared origin context and check its size against the
 * shadows'.  Returns the size or -1.
 */
static int64_t
open_shared_origin (nbdkit_backend *backend)
{
  int64_t size;

  shared_origin = nbdkit_next_context_open (backend, !params.writes_both,
                                            "", 1);
  if (shared_origin == NULL) {
    nbdkit_error ("cannot open the origin");
    return -1;
  }
  if (shared_origin->prepare (shared_origin) == -1)
    return -1;
  size = shared_origin->get_size (shared_origin);
  if (size == -1)
    return -1;
  if (size != probed[0].size) {
    nbdkit_error ("size mismatch: the origin is %" PRIi64 " bytes but shadow "
                  "%s is %" PRIi64 " bytes: they must be equal", size,
                  probed[0].uri, probed[0].size);
    return -1;
  }
  if (params.writes_both && shared_origin->can_write (shared_origin) != 1) {
    nbdkit_error ("shadow-writes=both: the origin is not writable");
    return -1;
  }
  return size;
}

static void
close_shared_origin (void)
{
  if (shared_origin) {
    shared_origin->finalize (shared_origin);
    nbdkit_next_context_close (shared_origin);
    shared_origin = NULL;
  }
}

static int
shadow_after_fork (nbdkit_backend *backend)
{
  struct engine_config ecfg;
  struct volume_config vcfg;
  int64_t size = open_shared_origin (backend);

  if (size == -1)
    goto fail;
  ecfg = engine_config_of (size);
  engine = engine_start (&ecfg);
  if (engine == NULL)
    goto fail;
  vcfg = (struct volume_config) {
    .size = size,
    .block_size = params.block_size,
    .writes_both = params.writes_both,
    .commit_interval = 1.0,
  };
  volume = volume_new (&vcfg, engine);
  if (volume == NULL || volume_start_committer (volume) == -1)
    goto fail;
  engine_set_tick (engine, sample_tick, volume, SAMPLE_INTERVAL);
  nbdkit_debug ("shadow: %zu shadow(s), %" PRIi64 " bytes, block size %"
                PRIu32, params.nr_shadows, size, params.block_size);
  return 0;

 fail:
  if (volume)
    volume_close (volume);
  volume = NULL;
  engine_stop (engine);
  engine = NULL;
  close_shared_origin ();
  return -1;
}

static void
shadow_cleanup (nbdkit_backend *backend)
{
  if (engine)
    engine_set_tick (engine, NULL, NULL, 0);
  if (volume && volume_close (volume) == -1)
    nbdkit_error ("final commit failed: blocks copied since the last "
                  "commit will be copied again");
  volume = NULL;
  engine_stop (engine);
  engine = NULL;
  close_shared_origin ();
}

static void *
shadow_open (nbdkit_next_open *next, nbdkit_context *nxdata, int readonly,
             const char *exportname, int is_tls)
{
  struct shadow_handle *h;

  /* Every client sees the one volume being migrated: the origin's
   * default export.  In shadow-writes=shadow mode the origin is opened
   * read-only, so that nothing can ever write to it.
   */
  if (next (nxdata, readonly || !params.writes_both, "") == -1)
    return NULL;
  h = calloc (1, sizeof *h);
  if (h == NULL) {
    nbdkit_error ("calloc: %m");
    return NULL;
  }
  return h;
}

static void
shadow_close (void *handle)
{
  free (handle);
}

static int
shadow_prepare (nbdkit_next *next, void *handle, int readonly)
{
  struct shadow_handle *h = handle;
  int64_t size;

  /* nbdkit needs the size of a context before any I/O on it. */
  size = next->get_size (next);
  if (size == -1)
    return -1;
  if ((uint64_t) size != volume->cfg.size) {
    nbdkit_error ("the origin's size changed from %" PRIu64 " to %" PRIi64
                  " bytes: refusing the connection", volume->cfg.size, size);
    return -1;
  }
  return origin_from_next (&h->origin, next);
}

static int64_t
shadow_get_size (nbdkit_next *next, void *handle)
{
  return volume->cfg.size;
}

static const char *
shadow_export_description (nbdkit_next *next, void *handle)
{
  char line[256];

  volume_status_line (volume, line, sizeof line);
  return nbdkit_strdup_intern (line);
}

static int
shadow_can_write (nbdkit_next *next, void *handle)
{
  return 1;
}

static int
shadow_can_flush (nbdkit_next *next, void *handle)
{
  return 1;
}

static int
shadow_can_fua (nbdkit_next *next, void *handle)
{
  return NBDKIT_FUA_NATIVE;
}

static int
shadow_can_zero (nbdkit_next *next, void *handle)
{
  return NBDKIT_ZERO_NATIVE;
}

static int
shadow_can_fast_zero (nbdkit_next *next, void *handle)
{
  return 1;                     /* and volume_zero refuses it at once */
}

static int
shadow_can_trim (nbdkit_next *next, void *handle)
{
  return 1;
}

static int
shadow_can_extents (nbdkit_next *next, void *handle)
{
  return 1;
}

static int
shadow_can_cache (nbdkit_next *next, void *handle)
{
  return NBDKIT_CACHE_NATIVE;
}

static int
shadow_can_multi_conn (nbdkit_next *next, void *handle)
{
  /* Flushes commit every shadow through shared connections, so a flush on
   * any client connection covers all of them; the origin's writes in
   * shadow-writes=both mode are only as consistent as the origin says.
   */
  if (params.writes_both)
    return next->can_multi_conn (next);
  return 1;
}

static uint32_t
volume_flags (uint32_t flags)
{
  uint32_t f = 0;

  if (flags & NBDKIT_FLAG_FUA)
    f |= VOLUME_FLAG_FUA;
  if (flags & NBDKIT_FLAG_MAY_TRIM)
    f |= VOLUME_FLAG_MAY_TRIM;
  if (flags & NBDKIT_FLAG_FAST_ZERO)
    f |= VOLUME_FLAG_FAST_ZERO;
  if (flags & NBDKIT_FLAG_REQ_ONE)
    f |= VOLUME_FLAG_REQ_ONE;
  return f;
}

static int
shadow_pread (nbdkit_next *next, void *handle, void *buf, uint32_t count,
              uint64_t offset, uint32_t flags, int *err)
{
  struct shadow_handle *h = handle;

  return volume_pread (volume, &h->origin, buf, count, offset, err);
}

static int
shadow_pwrite (nbdkit_next *next, void *handle, const void *buf,
               uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  struct shadow_handle *h = handle;

  return volume_pwrite (volume, &h->origin, buf, count, offset,
                        volume_flags (flags), err);
}

static int
shadow_zero (nbdkit_next *next, void *handle, uint32_t count,
             uint64_t offset, uint32_t flags, int *err)
{
  struct shadow_handle *h = handle;

  return volume_zero (volume, &h->origin, count, offset,
                      volume_flags (flags), err);
}

static int
shadow_trim (nbdkit_next *next, void *handle, uint32_t count,
             uint64_t offset, uint32_t flags, int *err)
{
  struct shadow_handle *h = handle;

  return volume_trim (volume, &h->origin, count, offset,
                      volume_flags (flags), err);
}

static int
shadow_flush (nbdkit_next *next, void *handle, uint32_t flags, int *err)
{
  struct shadow_handle *h = handle;

  return volume_flush (volume, &h->origin, err);
}

static int
shadow_cache (nbdkit_next *next, void *handle, uint32_t count,
              uint64_t offset, uint32_t flags, int *err)
{
  struct shadow_handle *h = handle;

  return volume_cache (volume, &h->origin, count, offset, err);
}

struct extents_ctx {
  struct nbdkit_extents *extents;
  int failed;
};

static void
add_extent (void *opaque, uint64_t offset, uint64_t length, uint32_t type)
{
  struct extents_ctx *x = opaque;

  if (!x->failed &&
      nbdkit_add_extent (x->extents, offset, length,
                         type & (NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO)) == -1)
    x->failed = errno ? errno : EIO;
}

static int
shadow_extents (nbdkit_next *next, void *handle, uint32_t count,
                uint64_t offset, uint32_t flags,
                struct nbdkit_extents *extents, int *err)
{
  struct shadow_handle *h = handle;
  struct extents_ctx x = { .extents = extents };

  if (volume_extents (volume, &h->origin, count, offset,
                      volume_flags (flags), add_extent, &x, err) == -1)
    return -1;
  if (x.failed) {
    *err = x.failed;
    return -1;
  }
  return 0;
}

static struct nbdkit_filter filter = {
  .name = "shadow",
  .longname = "nbdkit shadow filter: live migration to a new volume",
  .load = shadow_load,
  .config = shadow_config,
  .config_complete = shadow_config_complete,
  .config_help = SHADOW_CONFIG_HELP,
  .get_ready = shadow_get_ready,
  .after_fork = shadow_after_fork,
  .cleanup = shadow_cleanup,
  .open = shadow_open,
  .close = shadow_close,
  .prepare = shadow_prepare,
  .get_size = shadow_get_size,
  .export_description = shadow_export_description,
  .can_write = shadow_can_write,
  .can_flush = shadow_can_flush,
  .can_fua = shadow_can_fua,
  .can_zero = shadow_can_zero,
  .can_fast_zero = shadow_can_fast_zero,
  .can_trim = shadow_can_trim,
  .can_extents = shadow_can_extents,
  .can_cache = shadow_can_cache,
  .can_multi_conn = shadow_can_multi_conn,
  .pread = shadow_pread,
  .pwrite = shadow_pwrite,
  .zero = shadow_zero,
  .trim = shadow_trim,
  .flush = shadow_flush,
  .cache = shadow_cache,
  .extents = shadow_extents,
};

NBDKIT_REGISTER_FILTER (filter)
