/* nbdshadow: a sparse set of block numbers.
 *
 * The residency map has to answer "is block N on the shadow?" for
 * volumes of up to 2^63 bytes, where a flat bitmap at 4K blocks would
 * need 256 TiB of memory.  Real migrations are mostly runs: empty at the
 * start, full at the end, a few hydrated ranges in between.  So the set
 * is a radix tree over block numbers whose subtrees collapse into a
 * single "all absent" or "all present" marker: memory follows the
 * fragmentation of the set, not the size of the volume.
 *
 * A blockset is not thread-safe: its owner (residency.c) guards it.
 */

#ifndef NBDSHADOW_BLOCKSET_H
#define NBDSHADOW_BLOCKSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct blockset;

/* A set over block numbers 0 .. nr_blocks-1, initially empty.
 * nr_blocks may be anything from 1 to 2^63.  Returns NULL with errno
 * set (ENOMEM, or EINVAL for nr_blocks out of range).
 */
extern struct blockset *blockset_new (uint64_t nr_blocks);
extern void blockset_free (struct blockset *bs);

extern uint64_t blockset_size (const struct blockset *bs);

/* Is block blk in the set?  blk must be < nr_blocks. */
extern bool blockset_test (const struct blockset *bs, uint64_t blk);

/* Add / remove the blocks first .. first+count-1 (clipped to the set's
 * size).  Return 0, or -1 with errno = ENOMEM, in which case the set is
 * unchanged for the blocks not yet processed and still valid.
 */
extern int blockset_set_range (struct blockset *bs,
                               uint64_t first, uint64_t count);
extern int blockset_clear_range (struct blockset *bs,
                                 uint64_t first, uint64_t count);

/* The first block >= from that is not in the set (resp. is in the set),
 * or nr_blocks if there is none.
 */
extern uint64_t blockset_next_clear (const struct blockset *bs, uint64_t from);
extern uint64_t blockset_next_set (const struct blockset *bs, uint64_t from);

/* Number of blocks in the set, kept up to date in O(1). */
extern uint64_t blockset_count (const struct blockset *bs);

/* Call fn for each maximal run of blocks in the set that intersects
 * [from, to), clipped to it, in increasing order.  Stops early and
 * returns fn's value when fn returns non-zero; returns 0 otherwise.
 */
typedef int (*blockset_run_fn) (uint64_t first, uint64_t count, void *opaque);
extern int blockset_foreach_run (const struct blockset *bs,
                                 uint64_t from, uint64_t to,
                                 blockset_run_fn fn, void *opaque);

/* Bytes of heap used by the set (nodes and the handle). */
extern size_t blockset_memory (const struct blockset *bs);

#endif /* NBDSHADOW_BLOCKSET_H */
