/* trace.h: block-trace readers and the writer of the project's format.
 *
 * Why it exists: the predictor is developed, trained and judged on
 * recorded access streams.  Three formats are read, one record at a time
 * in constant memory (a fixed line buffer and a bounded device table),
 * so multi-gigabyte traces stream through:
 *
 *  native   DESIGN §3.5, one access a line: `time_us op offset length`,
 *           op one of R W Z T F, decimal integers, whitespace separated.
 *           Blank lines and lines starting with '#' are ignored.
 *           Device is always 0.
 *  msr      MSR-Cambridge CSV: `Timestamp,Hostname,DiskNumber,Type,
 *           Offset,Size,ResponseTime`; Timestamp in 100 ns Windows ticks,
 *           Type Read or Write, Offset and Size in bytes.  A device is a
 *           (Hostname, DiskNumber) pair, named "host_disk".
 *  disksim  DiskSim ASCII: `time device sector sectors flags`; sectors of
 *           512 bytes; flags bit 0 set = read, clear = write.  time is in
 *           nanoseconds by default (the traces in ../shared/traces), or
 *           milliseconds with PRED_TRACE_DISKSIM_MS (classic DiskSim);
 *           a fractional time is accepted.  A device is the device number.
 *
 * Every malformed line is an error whose message starts with
 * "NAME:LINE: " (NAME is the file name given to open), and the reader
 * stops there: a trace is either read whole or refused.  Devices get
 * indices 0, 1, ... in order of first appearance (at most
 * PRED_TRACE_MAX_DEVICES); evaluate each device as its own volume.
 *
 * The writer produces the native format.  It is thread-safe (one
 * internal mutex, held only while formatting into a 64 KiB buffer); the
 * filter should still write from its single predictor thread so that the
 * lock is never contended.  Records reach the file when the buffer fills,
 * on pred_trace_writer_flush and on close.
 */
#ifndef NBDSHADOW_PRED_TRACE_H
#define NBDSHADOW_PRED_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "access.h"

enum pred_trace_format {
  PRED_TRACE_AUTO = 0,          /* guess from the first data line */
  PRED_TRACE_NATIVE,
  PRED_TRACE_MSR,
  PRED_TRACE_DISKSIM,           /* time in ns */
  PRED_TRACE_DISKSIM_MS,        /* time in ms */
};

#define PRED_TRACE_MAX_LINE 4096        /* longer lines are an error */
#define PRED_TRACE_MAX_DEVICES 4096

/* Parse a format name: auto, native, msr, disksim, disksim-ms.
 * Returns -1 if unknown. */
int pred_trace_format_parse (const char *name);
const char *pred_trace_format_name (enum pred_trace_format f);

struct pred_trace_reader;

/* Open path ("-" is stdin).  On error returns NULL and writes a message
 * into err. */
struct pred_trace_reader *pred_trace_open (const char *path,
                                           enum pred_trace_format fmt,
                                           char *err, size_t errlen);
/* Read from an open stream; name is used in messages; fp is not closed. */
struct pred_trace_reader *pred_trace_open_stream (FILE *fp, const char *name,
                                                  enum pred_trace_format fmt);

/* Next access: 1 = *a filled, 0 = end of trace, -1 = error (see
 * pred_trace_error; further calls keep returning -1).  Times are converted
 * to microseconds, sizes to bytes. */
int pred_trace_next (struct pred_trace_reader *r, struct pred_access *a);

const char *pred_trace_error (const struct pred_trace_reader *r);
/* Line number of the last line read (1-based). */
uint64_t pred_trace_lineno (const struct pred_trace_reader *r);
/* The format in use (after auto-detection: known once a record was read). */
enum pred_trace_format pred_trace_get_format (const struct pred_trace_reader *r);
unsigned pred_trace_ndevices (const struct pred_trace_reader *r);
const char *pred_trace_device_name (const struct pred_trace_reader *r,
                                    unsigned dev);
void pred_trace_close (struct pred_trace_reader *r);

/* Parse one line on its own (no state, no device table): used by tests.
 * Returns 1 ok, 0 blank/comment, -1 error with message (no line prefix). */
int pred_trace_parse_native (const char *line, struct pred_access *a,
                             char *err, size_t errlen);

struct pred_trace_writer;

/* Create (or truncate; append if `append`) path for writing. */
struct pred_trace_writer *pred_trace_writer_open (const char *path,
                                                  bool append,
                                                  char *err, size_t errlen);
/* Append one access.  0 on success, -1 with errno after a write error
 * (the writer stays failed). */
int pred_trace_writer_add (struct pred_trace_writer *w,
                           const struct pred_access *a);
/* Write buffered records to the file (not fsync). */
int pred_trace_writer_flush (struct pred_trace_writer *w);
/* Records accepted so far. */
uint64_t pred_trace_writer_count (struct pred_trace_writer *w);
/* Flush, close, free.  Returns -1 if anything failed since open. */
int pred_trace_writer_close (struct pred_trace_writer *w);

#endif
