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

/* How an NBD connection is served (queue_adopt_nbd). */
struct queue_nbd {
	int structured;          /* structured replies negotiated */
	int read_only;           /* else counted in r->writers by the caller */
	int export_conn;         /* counted in r->export_conns by the caller */
	uint32_t max_request;    /* largest READ/WRITE (see nbds_params); 0: max-io-size */
};

/* Any thread: serve an NBD connection that finished its handshake on the
 * next queue (round robin).  Takes ownership of fd.  What the caller
 * counted (r->writers unless read-only, r->export_conns for an export
 * connection) is uncounted when the connection closes, or at once if it
 * cannot be served. */
void queue_adopt_nbd(struct res *r, int fd, const struct queue_nbd *o, const char *name);

#endif
