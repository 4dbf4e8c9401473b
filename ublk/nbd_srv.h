/* nbds: the NBD transmission phase of one connection, on a queue thread's
 * io_uring.  Requests are parsed from a receive buffer (a WRITE's payload
 * lands in its tag's own buffer), validated, handed to the write path, and
 * answered out of order as they complete; replies are batched into one
 * sendmsg.  Each connection preallocates `depth` tags with their buffers:
 * nothing is allocated per request, and never what a client asks for.  A
 * READ or WRITE longer than a tag's buffer (up to max_request) is served
 * through one tag, piece after piece, each an ordinary request of the
 * write path; its one reply goes when all pieces are done (a READ's data
 * is sent piece by piece, in order). */
#ifndef BLKMIRROR_NBD_SRV_H
#define BLKMIRROR_NBD_SRV_H

#include <stdint.h>

#include "lib/ev.h"
#include "lib/req.h"

struct nbds_conn;

struct nbds_params {
	int fd;                  /* connected socket after the handshake; owned from now on */
	struct ev_loop *loop;    /* the queue thread's loop; every call below runs on it */
	struct req_sink *sink;
	uint64_t size;           /* export size in bytes */
	uint32_t max_payload;    /* each tag's buffer size: the largest piece submitted */
	uint32_t max_request;    /* largest READ/WRITE accepted; a longer one than max_payload
				  * goes to the write path in pieces (0: max_payload) */
	uint32_t depth;          /* tags: requests in flight at once */
	int structured;          /* structured replies negotiated */
	int read_only;           /* advertised read-only: writes get EPERM */
	const char *name;        /* for log lines, e.g. "unix:/run/x.nbd#3" (copied) */
	/* Called once, on the loop's thread, when the connection is gone and
	 * all its requests have completed; c is freed right after. */
	void (*closed)(struct nbds_conn *c, void *arg);
	void *arg;
};

/* Starts serving.  On error the fd is closed and -errno returned. */
int nbds_conn_new(struct nbds_conn **out, const struct nbds_params *p);
/* Ends the connection: in-flight requests still finish, then closed() runs. */
void nbds_conn_shutdown(struct nbds_conn *c);
/* Maps a write-path result (-errno) to the NBD error number. */
uint32_t nbds_errno_to_nbd(int res);

#endif
