/* nbdshadow: a sparse set of block numbers, as a collapsing radix tree.
 *
 * LAYOUT
 * ======
 *
 * The set is a radix tree over block numbers.  The bottom level is made
 * of leaves, each a plain bitmap of 4096 blocks (64 words, 512 bytes).
 * Every level above is made of nodes with 64 children; a node at level
 * k >= 1 spans 4096 * 64^k blocks.  A child is in one of three states:
 *
 *   EMPTY   no block of the child's span is in the set    (no memory)
 *   FULL    every block of the child's span is in the set  (no memory)
 *   MIXED   some are, some are not: a real node or leaf   (a pointer)
 *
 * A node stores the state of its 64 children in two 64-bit masks and
 * keeps pointers only for its MIXED children, packed in index order
 * (the array-mapped trick of HAMTs): child i's pointer is at position
 * popcount (mixed & ((1 << i) - 1)).  So a node costs 16 bytes plus 8 per
 * MIXED child.  Here is a set over 2^18 blocks (a root node with room
 * for 64 leaves) holding blocks 0-8191 and a few blocks in 12288-16383:
 *
 *            +--------------------------------------------------+
 *   root     | full  = 0b...0011   (children 0 and 1)           |
 *   level 1  | mixed = 0b...1000   (child 3)                    |
 *            | child[] = { * }                                  |
 *            +-------------|------------------------------------+
 *                          |
 *                          v
 *              +--------------------------+
 *   leaf       | 64 words, 4096 bits      |   blocks 12288-16383
 *   level 0    | 0000 0110 0000 ... 0001  |
 *              +--------------------------+
 *
 * Children 2 and 4-63 are EMPTY: neither bit is set and they cost
 * nothing.  The root itself is either a uniform marker in the handle
 * (root == NULL, root_full says which) or a node/leaf at level `height',
 * the smallest height whose span covers nr_blocks.
 *
 * INVARIANTS (true whenever no function of this file is running)
 * ==============================================================
 *
 * 1. Canonical form: no node or leaf is all-full or all-empty once an
 *    operation has returned (even a failed one).  A subtree that becomes uniform is freed and replaced by its marker in
 *    the parent (or in the handle for the root).  So the shape of the
 *    tree, and its memory, depend only on the set, not on its history:
 *    filling the whole set brings memory back to the bare handle.
 *
 * 2. full & mixed == 0 in every node, and popcount (mixed) is the length
 *    of child[].
 *
 * 3. The root's span is rounded up to whole root children: blocks
 *    nr_blocks .. end-1 exist in the tree but not in the set.  They always
 *    have the state of the last block, nr_blocks-1: any range that reaches
 *    the last block is extended to `end'.  This keeps the tail from
 *    pinning a path of half-full nodes along the right edge when the whole
 *    set is full, without special cases in every collapse test.  Queries
 *    clip their answers to nr_blocks and `count' excludes the tail.
 *    The root is the only node whose children may stop short of 64: its
 *    existing children are `root_mask', and it is FULL when
 *    full == root_mask.
 *
 * 4. count is the number of blocks < nr_blocks in the set; memory is the
 *    number of bytes asked of malloc (allocator overhead not included).
 *
 * WHY THESE SIZES
 * ===============
 *
 * Fanout 64 makes each node's child states two machine words: finding the
 * next FULL/MIXED (or EMPTY/MIXED) child is one mask and a count of
 * trailing zeros, so next_set and next_clear skip whole subtrees in O(1)
 * per level, and a 2^63-block set is only 9 levels above the leaves.
 *
 * 4096-block leaves are 512 bytes.  When a set is fragmented at a finer
 * grain than a leaf (random copy-on-read marks), every leaf exists and the
 * tree costs the flat bitmap plus 8 bytes of parent pointer per 512 bytes
 * of leaf, plus malloc's own headers: measured 1.02x the flat bitmap
 * by blockset_memory and 1.03x-1.1x by RSS (bench/results-blockset.md).
 * Smaller leaves would follow runs more closely but pay that overhead more
 * often (12.5% at 64 bytes); bigger ones make a single stray block cost
 * more (a stray block costs a leaf plus up to `height' small nodes).  A
 * leaf covers 16 MiB of volume at 4K blocks, 256 MiB at the default 64K.
 *
 * The price of small leaves is in huge fragmented sets: the nodes just
 * above the leaves are 1/64 of the leaves' size (34 MB for a 64 TiB
 * volume of 4K blocks fragmented everywhere), too big to stay in cache,
 * so a lookup there takes two dependent cache and TLB misses where a
 * flat bitmap takes one (measured 2.4x-2.9x its latency).  Sparse leaves
 * stored as arrays of offsets (as Roaring bitmaps do) would allow bigger
 * leaves without that cost; not done.
 *
 * COST
 * ====
 *
 * test, next_set, next_clear: O(height), plus one leaf scan (<= 64
 * words).  A lookup is a chain of dependent loads, one per level; the top
 * levels stay in cache, so in a fragmented set it costs about one cache
 * and TLB miss more than a flat bitmap's (a uniform region answers from
 * the masks, without reaching a leaf).
 *
 * set_range, clear_range: a range inside one word of an existing leaf
 * that stays MIXED is flipped in place after a walk like test's: that is
 * the common single-block mark.  Otherwise the two boundary paths are
 * walked (O(height), allocating at most height nodes each) and every
 * child wholly inside the range is changed through the masks, O(64) per
 * node: O(height * 64) in all, whatever the count.  Subtrees that a range
 * swallows are freed, which their creation has paid for.
 *
 * foreach_run: O(height) per run.
 *
 * ERRORS
 * ======
 *
 * Only allocation can fail, and only on the way down a boundary path,
 * before the child it would create is touched.  Every level recomputes
 * its own state on the way back up whether or not the call below it
 * failed, so a failed mark leaves a valid, canonical tree in which the
 * blocks before the failure point have been processed and the others not.
 * A range extended to `end' (invariant 3) has no right boundary path,
 * since `end' is aligned to every level: all its allocations happen
 * before any block changes, so the tail still mirrors the last block.
 *
 * A blockset is not thread-safe: its owner (residency.c) guards it.
 */

#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blockset.h"

#define LEAF_SHIFT    12                       /* 4096 blocks per leaf */
#define LEAF_BLOCKS   (UINT64_C (1) << LEAF_SHIFT)
#define LEAF_WORDS    (LEAF_BLOCKS / 64)
#define FANOUT_SHIFT  6                        /* 64 children per node */
#define FANOUT        (1u << FANOUT_SHIFT)
#define ALL_CHILDREN  UINT64_MAX
#define MAX_BLOCKS    (UINT64_C (1) << 63)
#define NOT_FOUND     UINT64_MAX

enum kind { EMPTY, FULL, MIXED };

struct leaf {
  uint64_t word[LEAF_WORDS];    /* bit b of word w: block 64*w + b */
};

struct node {
  uint64_t full;                /* bit i: child i is FULL */
  uint64_t mixed;               /* bit i: child i is MIXED, in child[] */
  void *child[];                /* popcount (mixed) pointers, index order */
};

struct blockset {
  uint64_t nr_blocks;
  uint64_t end;                 /* the root's span: see invariant 3 */
  uint64_t count;
  size_t memory;
  unsigned height;              /* level of the root; 0 = a single leaf */
  uint64_t root_mask;           /* the root's existing children */
  void *root;                   /* NULL: uniform, and root_full says how */
  bool root_full;
};

/*----------------------------------------------------------------------
 * Bit helpers.
 */

/* Without -mpopcnt (baseline x86-64, as distributions build),
 * __builtin_popcountll is a call into libgcc's table loop, which showed
 * as the hottest function of the unit test.  The SWAR version is a dozen
 * inline instructions.
 */
static inline unsigned
popcount (uint64_t x)
{
#ifdef __POPCNT__
  return (unsigned) __builtin_popcountll (x);
#else
  x = x - ((x >> 1) & UINT64_C (0x5555555555555555));
  x = (x & UINT64_C (0x3333333333333333)) +
      ((x >> 2) & UINT64_C (0x3333333333333333));
  x = (x + (x >> 4)) & UINT64_C (0x0f0f0f0f0f0f0f0f);
  return (unsigned) ((x * UINT64_C (0x0101010101010101)) >> 56);
#endif
}

static inline unsigned
lowest_bit (uint64_t x)
{
  return (unsigned) __builtin_ctzll (x);
}

/* Bits lo .. hi (inclusive) of a word, lo <= hi <= 63. */
static inline uint64_t
bit_range (unsigned lo, unsigned hi)
{
  return (UINT64_MAX << lo) & (UINT64_MAX >> (63 - hi));
}

static inline uint64_t
max_u64 (uint64_t a, uint64_t b)
{
  return a > b ? a : b;
}

static inline uint64_t
min_u64 (uint64_t a, uint64_t b)
{
  return a < b ? a : b;
}

/* log2 of the span of one child of a node at level (>= 1).  At most
 * 12 + 6*8 = 60 for the root of a 2^63-block set, so shifts never
 * overflow; the span of the root itself is never computed.
 */
static inline unsigned
child_shift (unsigned level)
{
  return LEAF_SHIFT + FANOUT_SHIFT * (level - 1);
}

/*----------------------------------------------------------------------
 * Leaves: 4096-bit bitmaps.
 */

/* Set or clear bits lo .. hi of a leaf (offsets in the leaf, inclusive).
 * Adds the number of bits that changed to *changed and returns the kind
 * of the leaf afterwards.
 */
static enum kind
leaf_mark (struct leaf *leaf, unsigned lo, unsigned hi, bool value,
           uint64_t *changed)
{
  const unsigned wlo = lo / 64, whi = hi / 64;
  const uint64_t uniform = value ? UINT64_MAX : 0;
  unsigned w;

  for (w = wlo; w <= whi; ++w) {
    const unsigned blo = w == wlo ? lo % 64 : 0;
    const unsigned bhi = w == whi ? hi % 64 : 63;
    const uint64_t mask = bit_range (blo, bhi);
    const uint64_t old = leaf->word[w];

    leaf->word[w] = value ? old | mask : old & ~mask;
    *changed += popcount (old ^ leaf->word[w]);
  }

  /* The leaf now holds at least one bit equal to value, so it can only
   * have become uniform towards value.  The words at the two ends of the
   * range are the cheap witnesses: when marking block after block, they
   * are usually not uniform yet and we avoid scanning the whole leaf.
   */
  if (leaf->word[wlo] != uniform || leaf->word[whi] != uniform)
    return MIXED;
  for (w = 0; w < LEAF_WORDS; ++w)
    if (leaf->word[w] != uniform)
      return MIXED;
  return value ? FULL : EMPTY;
}

/* The first bit >= off of a leaf that equals value, or NOT_FOUND. */
static uint64_t
leaf_find (const struct leaf *leaf, unsigned off, bool value)
{
  unsigned w = off / 64;
  uint64_t word = value ? leaf->word[w] : ~leaf->word[w];

  word &= UINT64_MAX << (off % 64);
  for (;;) {
    if (word)
      return 64 * w + lowest_bit (word);
    if (++w == LEAF_WORDS)
      return NOT_FOUND;
    word = value ? leaf->word[w] : ~leaf->word[w];
  }
}

static unsigned
leaf_count (const struct leaf *leaf)
{
  unsigned w, n = 0;

  for (w = 0; w < LEAF_WORDS; ++w)
    n += popcount (leaf->word[w]);
  return n;
}

/*----------------------------------------------------------------------
 * Nodes: two masks and the packed array of MIXED children.
 */

static inline size_t
node_size (unsigned nr_children)
{
  return sizeof (struct node) + nr_children * sizeof (void *);
}

/* Position in child[] of child i (whether or not i itself is MIXED):
 * the number of MIXED children before it.
 */
static inline unsigned
child_rank (const struct node *n, unsigned i)
{
  return popcount (n->mixed & ((UINT64_C (1) << i) - 1));
}

static inline enum kind
node_kind (const struct node *n, uint64_t mask)
{
  if (n->mixed)
    return MIXED;
  if (n->full == mask)
    return FULL;
  if (n->full == 0)
    return EMPTY;
  return MIXED;
}

/* A new uniform subtree at level, to be split by the caller.  mask is
 * the set of children that exist (ALL_CHILDREN below the root).
 */
static void *
subtree_new (struct blockset *bs, unsigned level, enum kind kind,
             uint64_t mask)
{
  if (level == 0) {
    struct leaf *leaf = malloc (sizeof *leaf);

    if (leaf == NULL)
      return NULL;
    memset (leaf, kind == FULL ? 0xff : 0, sizeof *leaf);
    bs->memory += sizeof *leaf;
    return leaf;
  }
  else {
    struct node *n = malloc (node_size (0));

    if (n == NULL)
      return NULL;
    n->full = kind == FULL ? mask : 0;
    n->mixed = 0;
    bs->memory += node_size (0);
    return n;
  }
}

/* Free a subtree and return how many blocks of it were in the set. */
static uint64_t
subtree_free (struct blockset *bs, void *p, unsigned level)
{
  uint64_t count;

  if (level == 0) {
    count = leaf_count (p);
    bs->memory -= sizeof (struct leaf);
  }
  else {
    struct node *n = p;
    const unsigned nr_children = popcount (n->mixed);
    unsigned r;

    count = (uint64_t) popcount (n->full) << child_shift (level);
    for (r = 0; r < nr_children; ++r)
      count += subtree_free (bs, n->child[r], level - 1);
    bs->memory -= node_size (nr_children);
  }
  free (p);
  return count;
}

/* Make child i of *np MIXED with the given subtree.  May move the node. */
static int
node_insert_child (struct blockset *bs, struct node **np, unsigned i,
                   void *child)
{
  const unsigned nr_children = popcount ((*np)->mixed);
  const unsigned r = child_rank (*np, i);
  struct node *n = realloc (*np, node_size (nr_children + 1));

  if (n == NULL)
    return -1;
  memmove (&n->child[r + 1], &n->child[r],
           (nr_children - r) * sizeof (void *));
  n->child[r] = child;
  n->mixed |= UINT64_C (1) << i;
  n->full &= ~(UINT64_C (1) << i);
  bs->memory += sizeof (void *);
  *np = n;
  return 0;
}

/* Drop the pointers of the MIXED children lo .. hi of *np (the caller
 * has freed them) and make them EMPTY.  May move the node.
 */
static void
node_drop_children (struct blockset *bs, struct node **np,
                    unsigned lo, unsigned hi)
{
  struct node *n = *np;
  const unsigned nr_children = popcount (n->mixed);
  const unsigned r_lo = child_rank (n, lo);
  const unsigned r_hi = hi == FANOUT - 1 ? nr_children : child_rank (n, hi + 1);
  const unsigned dropped = r_hi - r_lo;

  if (dropped == 0)
    return;
  memmove (&n->child[r_lo], &n->child[r_hi],
           (nr_children - r_hi) * sizeof (void *));
  n->mixed &= ~bit_range (lo, hi);
  bs->memory -= dropped * sizeof (void *);

  /* Shrinking cannot really fail, but if it did, the bigger block is
   * still ours and still valid: keep it.
   */
  n = realloc (n, node_size (nr_children - dropped));
  if (n != NULL)
    *np = n;
}

/*----------------------------------------------------------------------
 * Marking: set or clear a range of blocks.
 *
 * The recursion descends only into the (at most two) children that the
 * range cuts; the children it covers whole are changed in one go by
 * fill_children.  On the way back up every level recomputes its kind, so
 * its parent can collapse it (invariant 1), even after an ENOMEM.
 */

static int mark_subtree (struct blockset *bs, void **pp, unsigned level,
                         uint64_t base, uint64_t first, uint64_t last,
                         bool value, uint64_t mask,
                         uint64_t *changed, enum kind *kind);

/* Children lo .. hi of node *np at level, all wholly inside the range,
 * become uniformly value.
 */
static void
fill_children (struct blockset *bs, struct node **np, unsigned level,
               unsigned lo, unsigned hi, bool value, uint64_t *changed)
{
  struct node *n = *np;
  const unsigned shift = child_shift (level);
  const uint64_t span = UINT64_C (1) << shift;
  const uint64_t range = bit_range (lo, hi);
  const uint64_t flipped = value ? range & ~(n->full | n->mixed)
                                 : range & n->full;
  uint64_t mixed = n->mixed & range;
  unsigned r = child_rank (n, lo);

  *changed += (uint64_t) popcount (flipped) << shift;
  for (; mixed; mixed &= mixed - 1) {
    const uint64_t count = subtree_free (bs, n->child[r++], level - 1);

    *changed += value ? span - count : count;
  }
  node_drop_children (bs, np, lo, hi);
  n = *np;
  n->full = value ? n->full | range : n->full & ~range;
}

/* Child i of node *np at level is cut by the range: split it if it is
 * uniform (and not already value), mark inside it, collapse it if it
 * became uniform.
 */
static int
mark_child (struct blockset *bs, struct node **np, unsigned level,
            unsigned i, uint64_t child_base, uint64_t first, uint64_t last,
            bool value, uint64_t *changed)
{
  const uint64_t bit = UINT64_C (1) << i;
  enum kind kind;
  int r;

  if (!((*np)->mixed & bit)) {
    const bool is_full = (*np)->full & bit;
    void *child;

    if (is_full == value)
      return 0;
    child = subtree_new (bs, level - 1, is_full ? FULL : EMPTY, ALL_CHILDREN);
    if (child == NULL)
      return -1;
    if (node_insert_child (bs, np, i, child) == -1) {
      subtree_free (bs, child, level - 1);
      return -1;
    }
  }

  r = mark_subtree (bs, &(*np)->child[child_rank (*np, i)], level - 1,
                    child_base, first, last, value, ALL_CHILDREN,
                    changed, &kind);
  if (kind != MIXED) {
    subtree_free (bs, (*np)->child[child_rank (*np, i)], level - 1);
    node_drop_children (bs, np, i, i);
    if (kind == FULL)
      (*np)->full |= bit;
  }
  return r;
}

/* Mark [first, last] in the node *pp at level, which spans from base.
 * The node may move (its array of children grows and shrinks).
 */
static int
mark_node (struct blockset *bs, void **pp, unsigned level,
           uint64_t base, uint64_t first, uint64_t last, bool value,
           uint64_t *changed)
{
  struct node *n = *pp;
  const unsigned shift = child_shift (level);
  const uint64_t span = UINT64_C (1) << shift;
  const uint64_t lo_off = max_u64 (first, base) - base;
  const uint64_t hi_off = last - base;
  const unsigned i0 = lo_off >> shift;
  const unsigned i1 = min_u64 (hi_off >> shift, FANOUT - 1);
  const uint64_t base0 = base + ((uint64_t) i0 << shift);
  const uint64_t base1 = base + ((uint64_t) i1 << shift);
  const bool whole0 = first <= base0 && last - base0 >= span - 1;
  const bool whole1 = first <= base1 && last - base1 >= span - 1;
  unsigned lo = i0, hi = i1;
  int r = 0;

  /* Left to right, so that an ENOMEM leaves a processed prefix. */
  if (!whole0) {
    r = mark_child (bs, &n, level, i0, base0, first, last, value, changed);
    if (r == -1 || i0 == i1)
      goto out;
    lo = i0 + 1;
  }
  if (!whole1)
    hi = i1 - 1;
  if (lo <= hi)
    fill_children (bs, &n, level, lo, hi, value, changed);
  if (!whole1)
    r = mark_child (bs, &n, level, i1, base1, first, last, value, changed);
 out:
  *pp = n;
  return r;
}

/* Mark [first, last] inside the MIXED subtree *pp at level, which spans
 * from base, and tell its kind afterwards in *kind.
 */
static int
mark_subtree (struct blockset *bs, void **pp, unsigned level,
              uint64_t base, uint64_t first, uint64_t last, bool value,
              uint64_t mask, uint64_t *changed, enum kind *kind)
{
  int r;

  if (level == 0) {
    const uint64_t lo = max_u64 (first, base) - base;
    const uint64_t hi = min_u64 (last - base, LEAF_BLOCKS - 1);

    *kind = leaf_mark (*pp, lo, hi, value, changed);
    return 0;
  }

  r = mark_node (bs, pp, level, base, first, last, value, changed);
  *kind = node_kind (*pp, mask);
  return r;
}

/* Mark [first, last] of the whole tree (last < end); count the blocks
 * that changed in *changed, tail included.
 */
static int
mark_root (struct blockset *bs, uint64_t first, uint64_t last, bool value,
           uint64_t *changed)
{
  enum kind kind;
  int r;

  if (bs->root == NULL) {
    if (bs->root_full == value)
      return 0;
    if (first == 0 && last == bs->end - 1) {
      /* The whole tree flips: no need to allocate anything. */
      bs->root_full = value;
      *changed += bs->end;
      return 0;
    }
    bs->root = subtree_new (bs, bs->height, bs->root_full ? FULL : EMPTY,
                            bs->root_mask);
    if (bs->root == NULL)
      return -1;
  }

  r = mark_subtree (bs, &bs->root, bs->height, 0, first, last, value,
                    bs->root_mask, changed, &kind);
  if (kind != MIXED) {
    subtree_free (bs, bs->root, bs->height);
    bs->root = NULL;
    bs->root_full = kind == FULL;
  }
  return r;
}

/*----------------------------------------------------------------------
 * Lookups.
 */

/* The first block >= from (from inside the subtree) whose state is
 * value, or NOT_FOUND.  Only the first candidate child may fail to
 * answer: a MIXED child wholly after from holds both states.
 */
static uint64_t
find_subtree (const void *p, unsigned level, uint64_t base, uint64_t from,
              bool value, uint64_t mask)
{
  const struct node *n = p;
  unsigned shift;
  uint64_t candidates;

  if (level == 0) {
    const uint64_t off = leaf_find (p, from - base, value);

    return off == NOT_FOUND ? NOT_FOUND : base + off;
  }

  shift = child_shift (level);
  candidates = value ? n->full | n->mixed : ~n->full;
  candidates &= mask & (UINT64_MAX << ((from - base) >> shift));
  for (; candidates; candidates &= candidates - 1) {
    const unsigned i = lowest_bit (candidates);
    const uint64_t child_base = base + ((uint64_t) i << shift);

    if (n->mixed & (UINT64_C (1) << i)) {
      const uint64_t found =
        find_subtree (n->child[child_rank (n, i)], level - 1, child_base,
                      max_u64 (from, child_base), value, ALL_CHILDREN);

      if (found != NOT_FOUND)
        return found;
    }
    else
      return max_u64 (from, child_base);
  }
  return NOT_FOUND;
}

static uint64_t
find (const struct blockset *bs, uint64_t from, bool value)
{
  uint64_t found;

  if (from >= bs->nr_blocks)
    return bs->nr_blocks;
  if (bs->root == NULL)
    return bs->root_full == value ? from : bs->nr_blocks;
  found = find_subtree (bs->root, bs->height, 0, from, value, bs->root_mask);
  return min_u64 (found, bs->nr_blocks);
}

/*----------------------------------------------------------------------
 * The interface.
 */

struct blockset *
blockset_new (uint64_t nr_blocks)
{
  struct blockset *bs;
  unsigned height = 0;

  if (nr_blocks == 0 || nr_blocks > MAX_BLOCKS) {
    errno = EINVAL;
    return NULL;
  }

  bs = calloc (1, sizeof *bs);
  if (bs == NULL)
    return NULL;

  /* The smallest height whose span, 2^(12 + 6*height), covers the set:
   * at most 9 for 2^63 blocks.
   */
  while (LEAF_SHIFT + FANOUT_SHIFT * height < 63 &&
         nr_blocks > UINT64_C (1) << (LEAF_SHIFT + FANOUT_SHIFT * height))
    height++;

  bs->nr_blocks = nr_blocks;
  bs->height = height;
  if (height == 0) {
    bs->end = LEAF_BLOCKS;
    bs->root_mask = ALL_CHILDREN;
  }
  else {
    const unsigned shift = child_shift (height);
    const uint64_t nr_children = ((nr_blocks - 1) >> shift) + 1;

    bs->end = nr_children << shift;
    bs->root_mask = nr_children == FANOUT ? ALL_CHILDREN
                                          : bit_range (0, nr_children - 1);
  }
  bs->memory = sizeof *bs;
  return bs;
}

void
blockset_free (struct blockset *bs)
{
  if (bs == NULL)
    return;
  if (bs->root)
    subtree_free (bs, bs->root, bs->height);
  free (bs);
}

uint64_t
blockset_size (const struct blockset *bs)
{
  return bs->nr_blocks;
}

bool
blockset_test (const struct blockset *bs, uint64_t blk)
{
  const void *p = bs->root;
  unsigned level;

  if (blk >= bs->nr_blocks)
    return false;
  if (p == NULL)
    return bs->root_full;

  for (level = bs->height; level > 0; --level) {
    const struct node *n = p;
    const unsigned i = (blk >> child_shift (level)) % FANOUT;
    const uint64_t bit = UINT64_C (1) << i;

    if (!(n->mixed & bit))
      return n->full & bit;
    p = n->child[child_rank (n, i)];
  }
  {
    const struct leaf *leaf = p;
    const unsigned off = blk % LEAF_BLOCKS;

    return (leaf->word[off / 64] >> (off % 64)) & 1;
  }
}

/* The common case: a few blocks inside one word of a leaf that exists
 * and stays MIXED (a copy-on-read mark in a fragmented set).  Walk down
 * like blockset_test and flip the bits: no recursion, no allocation.
 * Returns false, having changed nothing, when the general path is
 * needed: a uniform child to split, or a word about to become uniform
 * (its leaf may have to collapse).
 */
static bool
mark_in_word (struct blockset *bs, uint64_t first, uint64_t last, bool value)
{
  const uint64_t uniform = value ? UINT64_MAX : 0;
  const uint64_t mask = bit_range (first % 64, last % 64);
  void *p = bs->root;
  unsigned level;
  uint64_t *word, old, new_word;

  if (p == NULL)
    return bs->root_full == value;

  for (level = bs->height; level > 0; --level) {
    struct node *n = p;
    const unsigned i = (first >> child_shift (level)) % FANOUT;
    const uint64_t bit = UINT64_C (1) << i;

    if (!(n->mixed & bit))
      return ((n->full & bit) != 0) == value;
    p = n->child[child_rank (n, i)];
  }

  word = &((struct leaf *) p)->word[first % LEAF_BLOCKS / 64];
  old = *word;
  new_word = value ? old | mask : old & ~mask;
  if (new_word == uniform)
    return false;
  *word = new_word;
  if (value)
    bs->count += popcount (old ^ new_word);
  else
    bs->count -= popcount (old ^ new_word);
  return true;
}

static int
mark (struct blockset *bs, uint64_t first, uint64_t count, bool value)
{
  const uint64_t last_block = bs->nr_blocks - 1;
  uint64_t last, changed = 0, tail_changed = 0;
  bool tail_before = false;
  int r;

  if (count == 0 || first >= bs->nr_blocks)
    return 0;
  last = count - 1 > last_block - first ? last_block : first + count - 1;

  if (first / 64 == last / 64 && last < last_block &&
      mark_in_word (bs, first, last, value))
    return 0;

  /* Invariant 3: the tail follows the last block. */
  if (last == last_block) {
    tail_before = blockset_test (bs, last_block);
    last = bs->end - 1;
  }

  r = mark_root (bs, first, last, value, &changed);

  if (last == bs->end - 1 && tail_before != blockset_test (bs, last_block))
    tail_changed = bs->end - bs->nr_blocks;
  if (value)
    bs->count += changed - tail_changed;
  else
    bs->count -= changed - tail_changed;
  return r;
}

int
blockset_set_range (struct blockset *bs, uint64_t first, uint64_t count)
{
  return mark (bs, first, count, true);
}

int
blockset_clear_range (struct blockset *bs, uint64_t first, uint64_t count)
{
  return mark (bs, first, count, false);
}

uint64_t
blockset_next_clear (const struct blockset *bs, uint64_t from)
{
  return find (bs, from, false);
}

uint64_t
blockset_next_set (const struct blockset *bs, uint64_t from)
{
  return find (bs, from, true);
}

uint64_t
blockset_count (const struct blockset *bs)
{
  return bs->count;
}

int
blockset_foreach_run (const struct blockset *bs, uint64_t from, uint64_t to,
                      blockset_run_fn fn, void *opaque)
{
  to = min_u64 (to, bs->nr_blocks);
  while (from < to) {
    const uint64_t first = blockset_next_set (bs, from);
    uint64_t end;
    int r;

    if (first >= to)
      break;
    end = min_u64 (blockset_next_clear (bs, first), to);
    r = fn (first, end - first, opaque);
    if (r != 0)
      return r;
    from = end;
  }
  return 0;
}

size_t
blockset_memory (const struct blockset *bs)
{
  return bs->memory;
}
