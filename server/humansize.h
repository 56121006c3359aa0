/* nbdshadow: sizes and durations for people ("1.0 GiB", "2m05s"). */

#ifndef NBDSHADOW_HUMANSIZE_H
#define NBDSHADOW_HUMANSIZE_H

#include <stddef.h>
#include <stdint.h>

/* "512 B", "9.5 KiB", "431 MiB", "1.0 GiB": one decimal below 10. */
extern void human_size (uint64_t bytes, char *buf, size_t len);

/* "6s", "2m05s", "1h02m", "3d04h". */
extern void human_duration (double seconds, char *buf, size_t len);

#endif /* NBDSHADOW_HUMANSIZE_H */
