/* nbdshadow: error and debug reporting for server/ (see log.h). */

#include <config.h>

#include <stdio.h>

#include "log.h"

/* Set once at load time, before any thread starts: no lock needed. */
static shadow_log_fn error_sink;
static shadow_log_fn debug_sink;
static const char *notice_prefix = "nbdshadow: ";

void
shadow_log_set_prefix (const char *prefix)
{
  notice_prefix = prefix;
}

void
shadow_notice (const char *fmt, ...)
{
  va_list args;

  va_start (args, fmt);
  flockfile (stderr);
  fputs (notice_prefix, stderr);
  vfprintf (stderr, fmt, args);
  fputc ('\n', stderr);
  funlockfile (stderr);
  va_end (args);
}

void
shadow_log_set (shadow_log_fn error_fn, shadow_log_fn debug_fn)
{
  error_sink = error_fn;
  debug_sink = debug_fn;
}

void
shadow_error (const char *fmt, ...)
{
  va_list args;

  va_start (args, fmt);
  if (error_sink)
    error_sink (fmt, args);
  else {
    fputs ("nbdshadow: ", stderr);
    vfprintf (stderr, fmt, args);
    fputc ('\n', stderr);
  }
  va_end (args);
}

void
shadow_debug (const char *fmt, ...)
{
  va_list args;

  if (!debug_sink)
    return;
  va_start (args, fmt);
  debug_sink (fmt, args);
  va_end (args);
}
