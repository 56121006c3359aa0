/* nbdshadow: an nbdkit_next context as an origin (server/origin.h). */

#ifndef NBDSHADOW_ORIGIN_NEXT_H
#define NBDSHADOW_ORIGIN_NEXT_H

#include <nbdkit-filter.h>

#include "origin.h"

/* Fill o from next, whose capabilities are queried now.  Returns -1
 * after reporting if they cannot be.
 */
extern int origin_from_next (struct origin *o, nbdkit_next *next);

#endif /* NBDSHADOW_ORIGIN_NEXT_H */
