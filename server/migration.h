/* nbdshadow: the orchestrator.
 *
 * A migration drives a volume through its phases (DESIGN §1, §4):
 *
 *   copying --(all resident)--> synced --verify--> verifying --> synced
 *      ^                           |                                 |
 *      '---- (never goes back) ----'----------- cutover -------> cutover
 *                                                                    |
 *                                                         done <-----'
 *
 * It owns the copier, runs verify on its own thread, performs cutover,
 * answers the control socket (control.h) and builds the status JSON.
 * Phases are persisted through the set_phase hook (state_set_phase, or
 * nothing when the state is volatile) before they take effect.
 *
 * Verify reads every copied block that no client has written (every
 * resident block with shadow-writes=both) from the origin and from each
 * shadow, and repairs mismatches under the block's range lock, after
 * checking again that no client wrote it meanwhile.  Repairs are flushed
 * before verify reports success.
 *
 * Cutover refuses unless synced (and verified, when asked), then pauses
 * client I/O, checks again that every block is resident, commits, records
 * the phase durably, and from then on serves only from the shadows; the
 * origin contexts are closed.  After a restart in phase cutover or done
 * the origin is never read.
 */

#ifndef NBDSHADOW_MIGRATION_H
#define NBDSHADOW_MIGRATION_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "origin.h"
#include "prefetch.h"
#include "volume.h"

struct migration_config {
  struct volume *volume;
  struct engine *engine;
  struct origin *worker_origin;         /* shared by the copier's workers */
  unsigned nr_workers;                  /* copier_config says */
  unsigned nr_idle_workers;
  struct origin *verify_origin;
  bool background;
  uint64_t rate;
  uint64_t max_transfer;
  bool shadow_read_feedback;            /* copier_config says */
  bool cutover_auto;
  struct prefetcher *prefetcher;        /* started here; NULL: none */

  /* Persist the phase (enum phase).  NULL: volatile. */
  int (*set_phase) (void *opaque, int phase);
  /* Close the origin contexts (after cutover: never used again). */
  void (*close_origins) (void *opaque);
  /* State statistics for status; NULL when volatile. */
  void (*state_stats) (void *opaque, uint64_t *journal_bytes,
                       uint64_t *snapshot_bytes);
  void *opaque;
  const char *state_dir;                /* for status, or NULL */
};

struct migration;

extern struct migration *migration_start (const struct migration_config *cfg);

/* Stop verify and the copier (waiting for them). */
extern void migration_stop (struct migration *m);

/* Every half second on the engine thread: rate samples, copier
 * adaptation.
 */
extern void migration_tick (struct migration *m);

/* Control operations.  0, or -1 with a malloc'd message in *msg. */
extern int migration_verify_start (struct migration *m, char **msg);
extern int migration_cutover (struct migration *m, bool require_verified,
                              char **msg);
extern void migration_pause (struct migration *m, bool paused);
extern void migration_set_rate (struct migration *m, uint64_t rate);
extern int migration_set_prefetch (struct migration *m, const char *policy,
                                   char **msg);

/* A consistent copy of the orchestrator's figures, for status. */
#include "copier.h"
struct migration_snapshot {
  const char *verify_state;
  bool verified;
  uint64_t verify_checked, verify_total, verify_mismatches, verify_recopied;
  char verify_message[256];
  bool have_copier;
  struct copier_stats copier;
  struct volume *volume;
  const struct migration_config *cfg;
};
extern void migration_snapshot (struct migration *m,
                                struct migration_snapshot *out);

/* The status JSON object of control.h (malloc'd), or NULL. */
extern char *migration_status_json (struct migration *m);

/* The control socket handler (control_handler_fn). */
extern int migration_control (void *opaque, int argc, char **argv,
                              char **reply);

#endif /* NBDSHADOW_MIGRATION_H */
