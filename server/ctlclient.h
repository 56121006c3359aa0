/* nbdshadow: the client side of the control protocol (control.h), for
 * the nbdshadow CLI: connect, send one request line, read one reply.
 *
 * Failures of the transport (no server, server gone, garbage reply,
 * timeout) are told apart from an "error" reply, which is the server
 * refusing a request: the CLI reports them differently.
 */

#ifndef NBDSHADOW_CTLCLIENT_H
#define NBDSHADOW_CTLCLIENT_H

#include <stddef.h>

struct ctl_conn {
  int fd;
  char *buf;                    /* bytes received, not yet returned */
  size_t len, cap;
  char err[256];                /* why the last call failed */
};

/* Set by the CLI's SIGINT handler: a wait in ctl_request then gives up
 * (returns CTL_FAILED with err "interrupted").
 */
extern volatile int ctl_interrupted;

/* Connect to the socket at path.  Returns 0, or -1 with err set to
 * strerror (the CLI prints "nbdshadow: PATH: <err>").
 */
extern int ctl_connect (struct ctl_conn *c, const char *path);

enum ctl_result {
  CTL_OK = 0,                   /* "ok": *payload is the payload or "" */
  CTL_ERROR = 1,                /* "error": *payload is the message */
  CTL_FAILED = -1,              /* transport failure: see c->err */
};

/* Send request (without "\n") and wait up to timeout_ms (-1: forever)
 * for the reply line.  *payload is malloc'd on CTL_OK and CTL_ERROR.
 */
extern enum ctl_result ctl_request (struct ctl_conn *c, const char *request,
                                    int timeout_ms, char **payload);

extern void ctl_close (struct ctl_conn *c);

#endif /* NBDSHADOW_CTLCLIENT_H */
