/* nbdshadow: error and debug reporting for server/.
 *
 * server/ does not depend on nbdkit, so that its pieces can be unit tested
 * and used by the CLI.  The filter installs nbdkit_error/nbdkit_debug as
 * the sinks at load time; elsewhere messages go to stderr.
 */

#ifndef NBDSHADOW_LOG_H
#define NBDSHADOW_LOG_H

#include <stdarg.h>

typedef void (*shadow_log_fn) (const char *fmt, va_list args);

/* Install the sinks (NULL = stderr for errors, nothing for debug). */
extern void shadow_log_set (shadow_log_fn error_fn, shadow_log_fn debug_fn);

/* Notices (phase changes, reconnects: not errors) go to stderr with the
 * filter's prefix; this sets the prefix.
 */
extern void shadow_log_set_prefix (const char *prefix);

extern void shadow_error (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));
extern void shadow_notice (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));
extern void shadow_debug (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));

#endif /* NBDSHADOW_LOG_H */
