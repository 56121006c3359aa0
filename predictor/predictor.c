#include <config.h>
#include "predictor.h"
int predictor_version (void) { return 0; }
