/* Placeholder until the predictor library lands (issue 5). */
#ifndef NBDSHADOW_PREDICTOR_H
#define NBDSHADOW_PREDICTOR_H
int predictor_version (void);
#endif
