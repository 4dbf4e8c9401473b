/* nbdh: the NBD fixed-newstyle handshake, server side, on a socket.  Run
 * on its own short-lived thread per connection, under one deadline for the
 * whole handshake, so a slow client never stalls the data plane nor keeps
 * the thread; the transmission phase then moves to a queue thread
 * (nbd_srv.h). */
#ifndef BLKMIRROR_NBD_HS_H
#define BLKMIRROR_NBD_HS_H

#include <stddef.h>
#include <stdint.h>

struct nbdh_export {
	const char *name;        /* the one export; "" (default name) reaches it too */
	const char *description; /* sent in NBD_INFO_DESCRIPTION when asked, may be NULL */
	uint64_t size;           /* bytes */
	uint16_t tflags;         /* transmission flags; NBD_FLAG_HAS_FLAGS is added */
	uint32_t min_block;      /* NBD_INFO_BLOCK_SIZE */
	uint32_t pref_block;
	uint32_t max_block;      /* largest payload accepted */
	uint32_t timeout_ms;     /* the whole handshake, from nbdh_negotiate's call; 0: none */
};

struct nbdh_result {
	int structured;          /* client negotiated NBD_OPT_STRUCTURED_REPLY */
	int no_zeroes;
	int block_size;          /* GO asked for NBD_INFO_BLOCK_SIZE: the client committed to
				  * max_block; without it the spec's defaults apply (READ and
				  * WRITE of up to 32 MiB) */
};

/* Runs the handshake on fd: greeting, client flags, the option haggling
 * loop (EXPORT_NAME, GO, INFO, LIST, ABORT, STRUCTURED_REPLY; anything else
 * gets NBD_REP_ERR_UNSUP; an unknown export name ERR_UNKNOWN; option data
 * longer than 4096 bytes gets ERR_TOO_BIG and the connection is dropped,
 * without allocating what the client asked for).
 * Returns 0 when the client entered transmission (after EXPORT_NAME or a
 * successful GO), -ESHUTDOWN when it sent ABORT or closed the connection
 * cleanly during option haggling, -EPROTO on bad magic or protocol
 * violations, -ETIMEDOUT when e->timeout_ms passed before the client
 * entered transmission, or another -errno from the socket; err gets one line saying
 * what happened.  Does not close fd. */
int nbdh_negotiate(int fd, const struct nbdh_export *e, struct nbdh_result *out,
		   char *err, size_t errlen);

#endif
