/* nbdshadow: a pool of large buffers, kept for reuse instead of freed.
 *
 * Every background copy reads the origin into a fresh buffer (up to a
 * transfer, 2 MiB by default) that lives on in the shadow's write log
 * until a flush covers it (wlog.h); client writes are copied into such
 * buffers too.  glibc serves these sizes with mmap and gives them back
 * to the kernel on free, so every new buffer's pages are faulted in and
 * zeroed again: 200 thousand page faults per 4 GiB hydrated.  That was
 * cheap on some machines and is not on a paravirtualized guest, where a
 * fault costs a trip through the hypervisor: there the filter spent
 * 9.7 s of CPU per 4 GiB against 3.9 s with the memory reused, and
 * hydrated at half the speed (bench/results-migrate.md).
 *
 * Buffers of at least BUFPOOL_MIN_CLASS bytes come from free lists per
 * power-of-two class (each class with room for a small header on top:
 * BUFPOOL_HEADROOM); smaller ones, and larger than BUFPOOL_MAX_CLASS +
 * BUFPOOL_HEADROOM, are plain malloc.
 * The memory kept idle is bounded (bufpool_set_limit), and all of it is
 * given back once a whole tick passes without a buffer being taken, so
 * a filter that stopped copying does not hold it.
 *
 * Under AddressSanitizer an idle buffer is poisoned: a use after it was
 * put back is still reported.
 *
 * Locking: one process-wide pool guarded by its own mutex; every
 * function may be called from any thread.
 */

#ifndef NBDSHADOW_BUFPOOL_H
#define NBDSHADOW_BUFPOOL_H

#include <stddef.h>
#include <stdint.h>

#define BUFPOOL_MIN_CLASS ((size_t) 64 * 1024)
#define BUFPOOL_MAX_CLASS ((size_t) 64 * 1024 * 1024)
#define BUFPOOL_HEADROOM ((size_t) 256) /* room for a header on top */
#define BUFPOOL_DEFAULT_LIMIT ((size_t) 64 * 1024 * 1024)

/* Built with AddressSanitizer (GCC says so one way, clang another). */
#if defined(__SANITIZE_ADDRESS__)
#define BUFPOOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BUFPOOL_ASAN 1
#endif
#endif

/* A buffer of at least size bytes, not initialised, or NULL (errno =
 * ENOMEM).  *cap is what must be passed back to bufpool_put.
 */
extern void *bufpool_get (size_t size, size_t *cap);

/* Give back a buffer from bufpool_get (NULL is ignored). */
extern void bufpool_put (void *p, size_t cap);

/* Called periodically (twice a second by the filter): frees every idle
 * buffer if none was taken from the pool since the previous call.
 */
extern void bufpool_tick (void);

/* The most bytes kept idle; 0 turns the pool off (every buffer is
 * malloc'd and freed).  Idle buffers over a lower limit are freed.
 */
extern void bufpool_set_limit (size_t bytes);

/* Free every idle buffer (at unload, and in tests). */
extern void bufpool_drain (void);

struct bufpool_stats {
  uint64_t reused;              /* buffers taken from a free list */
  uint64_t allocated;           /* pool-sized buffers malloc'd */
  uint64_t idle_bytes;          /* kept for reuse now */
  uint64_t limit;               /* the most that may be kept */
};

extern void bufpool_stats (struct bufpool_stats *out);

#endif /* NBDSHADOW_BUFPOOL_H */
