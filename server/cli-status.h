/* nbdshadow: what the nbdshadow CLI shows of a status object (the JSON
 * of control.h): the summary of `status`, the progress line of
 * `status --watch` and of `verify`.
 *
 * Kept apart from the CLI's argument handling so that the rendering is
 * one idea: every field may be missing (an older or newer server), and
 * then it is shown as "?" or left out, never a crash.
 */

#ifndef NBDSHADOW_CLI_STATUS_H
#define NBDSHADOW_CLI_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "json.h"

/* The multi-line human summary. */
extern void status_summary (FILE *fp, const struct json *st);

/* One progress line fitting width columns, e.g.
 * "[#####.....] 42.1% 431 MiB/1.0 GiB 95 MiB/s eta 6s copying".
 */
extern void status_progress_line (const struct json *st, int width,
                                  char *buf, size_t len);

/* The same for a running verify: "[###.......] 30.0% 4915/16384 blocks
 * 0 mismatches verifying".
 */
extern void status_verify_line (const struct json *st, int width,
                                char *buf, size_t len);

/* The final verify report: "verify done: 16384 blocks checked,
 * 0 mismatches, 0 re-copied", and the server's message if any.
 */
extern void status_verify_report (FILE *fp, const struct json *st);

/* Is copying over (phase synced, verifying, cutover or done)? */
extern bool status_copy_finished (const struct json *st);

#endif /* NBDSHADOW_CLI_STATUS_H */
