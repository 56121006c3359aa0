/* crc32.c: table-driven CRC-32, reflected polynomial 0xEDB88320. */
#include <config.h>

#include <pthread.h>

#include "crc32.h"

static uint32_t table[256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void
make_table (void)
{
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = n;
    for (int k = 0; k < 8; k++)
      c = (c & 1) ? UINT32_C (0xEDB88320) ^ (c >> 1) : c >> 1;
    table[n] = c;
  }
}

uint32_t
pred_crc32 (uint32_t crc, const void *buf, size_t len)
{
  const unsigned char *p = buf;
  pthread_once (&table_once, make_table);
  crc = ~crc;
  while (len--)
    crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}
