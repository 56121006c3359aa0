/* nbdshadow: sizes and durations for people (humansize.h). */

#include <config.h>

#include <inttypes.h>
#include <stdio.h>

#include "humansize.h"

void
human_size (uint64_t bytes, char *buf, size_t len)
{
  static const char *const units[] =
    { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
  double v = bytes;
  unsigned u = 0;

  while (v >= 1024 && u < sizeof units / sizeof units[0] - 1) {
    v /= 1024;
    u++;
  }
  if (u == 0)
    snprintf (buf, len, "%" PRIu64 " B", bytes);
  else if (v < 10)
    snprintf (buf, len, "%.1f %s", v, units[u]);
  else
    snprintf (buf, len, "%.0f %s", v, units[u]);
}

void
human_duration (double seconds, char *buf, size_t len)
{
  uint64_t s = seconds < 0 ? 0 : (uint64_t) (seconds + 0.5);

  if (s < 60)
    snprintf (buf, len, "%" PRIu64 "s", s);
  else if (s < 3600)
    snprintf (buf, len, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
  else if (s < 86400)
    snprintf (buf, len, "%" PRIu64 "h%02" PRIu64 "m", s / 3600,
              s / 60 % 60);
  else
    snprintf (buf, len, "%" PRIu64 "d%02" PRIu64 "h", s / 86400,
              s / 3600 % 24);
}
