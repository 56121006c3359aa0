/* nbdshadow: copying blocks from the origin to the shadows.
 *
 * A copy op holds the range lock of its blocks (rangelock.h) from before
 * it decides which blocks are still absent until every shadow write has
 * completed and the blocks are marked resident, so it never overwrites
 * newer client data.  Blocks that are all zeroes are sent as write-zeroes
 * with the may-trim flag, which keeps a thin shadow thin.
 *
 * Copies from a client read (copy-on-read) run asynchronously with the
 * data already in hand; they only try the lock (the client must not wait
 * for other copies).  A busy range goes to the copier instead
 * (volume_set_requeue), which reads what is still absent of it from the
 * origin again once the range is free: the holder may cover only part
 * of it, and with the background sweep off nothing else would copy the
 * rest.  So does a copy that fails (a shadow's write error, no memory).
 * Too much copy data in flight (volume_config.copy_memory) makes the
 * reader wait for its copy instead: back-pressure, not unbounded memory.
 */

#ifndef NBDSHADOW_COPYOP_H
#define NBDSHADOW_COPYOP_H

#include <stdint.h>

#include "volume.h"
#include "wlog.h"

/* Copy blocks [first, first+count), whose data is in data (from its
 * first byte, block-aligned; the caller's reference goes to the copy),
 * to every shadow.  Returns at once unless copy memory is exhausted.
 */
extern void copy_from_buffer (struct volume *v, struct wlog_data *data,
                              uint64_t first, uint64_t count,
                              enum copy_kind kind);

/* Make the absent blocks of [first, first+count), which the origin
 * reports as zeroes, resident by writing zeroes to the shadows: no origin
 * read.  Waits.  0, or -1 with *err.
 */
extern int volume_zero_blocks (struct volume *v, uint64_t first,
                               uint64_t count, enum copy_kind kind, int *err);

/* Start the committer (volume_new does not, so that persisted state can be
 * loaded into the residency map first).
 */
extern int volume_start_committer (struct volume *v);

#endif /* NBDSHADOW_COPYOP_H */
