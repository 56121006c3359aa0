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
 * Costs (blockset.c explains the layout): lookups and next_* are
 * O(tree height), at most 10 levels; marking a range is O(height * 64)
 * whatever its length; count is O(1).  A set fragmented finer than 4096
 * blocks costs about as much as a flat bitmap (see
 * bench/results-blockset.md).
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

/* Is block blk in the set?  blk must be < nr_blocks (false beyond). */
extern bool blockset_test (const struct blockset *bs, uint64_t blk);

/* Add / remove the blocks first .. first+count-1 (clipped to the set's
 * size: first >= nr_blocks or count == 0 is a no-op, and count may be
 * UINT64_MAX for "to the end").  Return 0, or -1 with errno = ENOMEM, in
 * which case the blocks are processed in increasing order: those before
 * the failure point are done, the others unchanged, count is exact and
 * the set is still valid.  Only the ends of a range can need memory, so
 * marking a range that covers whole aligned 4096-block chunks, or
 * clearing everything, needs little or none.
 */
extern int blockset_set_range (struct blockset *bs,
                               uint64_t first, uint64_t count);
extern int blockset_clear_range (struct blockset *bs,
                                 uint64_t first, uint64_t count);

/* The first block >= from that is not in the set (resp. is in the set),
 * or nr_blocks if there is none (also when from >= nr_blocks).  Uniform
 * regions are skipped whole, whatever their size.
 */
extern uint64_t blockset_next_clear (const struct blockset *bs, uint64_t from);
extern uint64_t blockset_next_set (const struct blockset *bs, uint64_t from);

/* Number of blocks in the set, kept up to date in O(1). */
extern uint64_t blockset_count (const struct blockset *bs);

/* Call fn for each maximal run of blocks in the set that intersects
 * [from, to), clipped to it, in increasing order (to may exceed
 * nr_blocks; from >= to calls nothing).  Stops early and returns fn's
 * value when fn returns non-zero; returns 0 otherwise.
 */
typedef int (*blockset_run_fn) (uint64_t first, uint64_t count, void *opaque);
extern int blockset_foreach_run (const struct blockset *bs,
                                 uint64_t from, uint64_t to,
                                 blockset_run_fn fn, void *opaque);

/* Bytes of heap used by the set (nodes and the handle), as asked of
 * malloc: the allocator's own overhead is not included.  It depends only
 * on the set's contents, not on the order of the operations that made
 * it; an empty or a full set uses only the handle.
 */
extern size_t blockset_memory (const struct blockset *bs);

#endif /* NBDSHADOW_BLOCKSET_H */
