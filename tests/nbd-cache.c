/* nbdshadow tests: send one NBD_CMD_CACHE.
 *
 *   nbd-cache URI OFFSET LENGTH
 *
 * qemu-io and nbdcopy never send NBD_CMD_CACHE, and libnbd's nbdsh needs
 * Python, so the tests that want a client's cache request (the filter
 * copies the range to the shadow while the client waits) use this.
 * Exits 0 once the server has answered the request successfully.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <libnbd.h>

static uint64_t
parse_u64 (const char *what, const char *s)
{
  char *end;
  unsigned long long v;

  errno = 0;
  v = strtoull (s, &end, 0);
  if (errno || end == s || *end) {
    fprintf (stderr, "nbd-cache: %s '%s' is not a number\n", what, s);
    exit (2);
  }
  return v;
}

int
main (int argc, char *argv[])
{
  struct nbd_handle *nbd;
  uint64_t offset, length;

  if (argc != 4) {
    fprintf (stderr, "usage: nbd-cache URI OFFSET LENGTH\n");
    return 2;
  }
  offset = parse_u64 ("offset", argv[2]);
  length = parse_u64 ("length", argv[3]);
  nbd = nbd_create ();
  if (nbd == NULL || nbd_connect_uri (nbd, argv[1]) == -1) {
    fprintf (stderr, "nbd-cache: %s: %s\n", argv[1], nbd_get_error ());
    nbd_close (nbd);
    return 1;
  }
  if (nbd_can_cache (nbd) != 1) {
    fprintf (stderr, "nbd-cache: %s does not accept cache requests\n",
             argv[1]);
    nbd_close (nbd);
    return 1;
  }
  if (nbd_cache (nbd, length, offset, 0) == -1) {
    fprintf (stderr, "nbd-cache: cache of %" PRIu64 " bytes at %" PRIu64
             ": %s\n", length, offset, nbd_get_error ());
    nbd_close (nbd);
    return 1;
  }
  if (nbd_shutdown (nbd, 0) == -1)
    fprintf (stderr, "nbd-cache: shutdown: %s\n", nbd_get_error ());
  nbd_close (nbd);
  return 0;
}
