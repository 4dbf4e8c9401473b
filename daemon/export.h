/* export: the NBD export front end (frontend = export).  Listens on a unix
 * socket or TCP; each connection runs the handshake on its own short-lived
 * thread, then moves to a queue thread for the transmission phase. */
#ifndef BLKMIRROR_EXPORT_H
#define BLKMIRROR_EXPORT_H

#include "daemon/resource.h"
#include <stddef.h>

/* Listens on r->conf.export_listen, accepting on the control loop.  Fills
 * r->device with the NBD URI clients use.  0 or -errno with err set. */
int export_open(struct res *r, char *err, size_t errlen);
/* Stops accepting and waits for handshakes in progress to end. */
void export_close(struct res *r);

#endif
