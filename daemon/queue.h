/* queue: the data-plane threads.  Each owns one io_uring (lib/ev) that
 * carries its front-end connections' socket I/O and their disk I/O, and
 * one write path (wpath).  Connections are handed to a queue with
 * queue_adopt_nbd() from any thread. */
#ifndef BLKMIRROR_QUEUE_H
#define BLKMIRROR_QUEUE_H

#include "daemon/resource.h"

/* Starts r->nqueues threads and waits until each is ready.  0 or -errno. */
int queue_start_all(struct res *r);
/* Ends every connection, waits for in-flight requests, joins the threads. */
void queue_stop_all(struct res *r);

/* Any thread: serve an NBD connection that finished its handshake on the
 * next queue (round robin).  Takes ownership of fd.  read_only connections
 * do not count as writers; others were counted in r->writers by the caller
 * and are uncounted when they close.  max_request: the largest READ/WRITE
 * accepted (see nbds_params); 0 for max-io-size. */
void queue_adopt_nbd(struct res *r, int fd, int structured, int read_only,
		     uint32_t max_request, const char *name);

#endif
