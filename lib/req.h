/* req: the request that flows from a front end (NBD export, ublk, kernel
 * NBD) through the write path to the disk and the peer, and back.  Each
 * front end owns a preallocated array of them, one per tag, each with its
 * own data buffer: no allocation per request, and the same buffer is
 * written to the local disk and sent to the peer. */
#ifndef BLKMIRROR_REQ_H
#define BLKMIRROR_REQ_H

#include <stdint.h>

#include "lib/ev.h"

enum req_type {
	REQ_READ,
	REQ_WRITE,
	REQ_FLUSH,
	REQ_TRIM,          /* reads back as zeros afterwards, on both nodes */
	REQ_WRITE_ZEROES,
};

#define REQ_F_FUA     (1u << 0) /* durable before completion */
#define REQ_F_NO_HOLE (1u << 1) /* WRITE_ZEROES must allocate, not punch */

/* A request parked until another thread (the metadata writer) is done with
 * something it needs; msg.fn runs on `loop` with res set. */
struct req;

struct req_wait {
	struct ev_msg msg;
	struct ev_loop *loop;
	void *ctx;              /* the parker's context */
	int res;
	uint64_t key;           /* private to the thread that wakes it */
	struct req_wait *next;  /* likewise */
	struct req *next_ready; /* conflict tracker: batch of requests to wake */
};

struct req {
	struct ev_op op;        /* disk completion; owned by the write path while submitted */
	uint8_t type;           /* enum req_type */
	uint8_t flags;          /* REQ_F_* */
	uint16_t tag;           /* index in the owner's array */
	uint32_t len;           /* bytes; <= the owner's max I/O size for READ/WRITE */
	uint64_t off;           /* byte offset in the data area, validated by the front end */
	uint32_t done;          /* bytes completed so far (short I/O is resumed) */
	int res;                /* 0 or -errno, set before complete() */
	uint64_t start_ns;      /* when the write path got it (inflight age) */
	void *buf;              /* the tag's buffer, 4 KiB aligned */
	uint8_t phase;          /* write path's progress through a multi-step request */
	uint8_t pending;        /* write path: what completion still waits for (WP_P_*) */
	uint8_t replica;        /* arrived from the peer: no role check, no marks */
	uint8_t marked_oos;     /* write path: the bitmap was marked for it */
	uint8_t frozen;         /* write path: held while I/O is frozen (fencing) */
	uint8_t to_peer;        /* write path: sent to the peer (its answer counts) */
	int peer_res;           /* write path: the peer's result, or -ENOTCONN */
	/* Each list has its own link: a request is on the conflict tracker's
	 * list for as long as it is in flight, and meanwhile may wait on the
	 * data link or be held by fencing. */
	struct req *cf_next;    /* conflict tracker only (its lock): in flight / waiting */
	struct req *lk_next;    /* data link only (queue thread): waiting for a slot */
	struct req *held_next;  /* write path only (queue thread): held by fencing */
	struct req_wait wait;   /* write path: waiting for metadata */
	struct req *inf_prev, *inf_next; /* write path: in-flight list, oldest first */
	/* Set by the front end; called exactly once, on the queue thread, when
	 * the request is finished according to the replication protocol. */
	void (*complete)(struct req *r);
};

/* Where a front end sends its requests: the daemon's write path. */
struct req_sink {
	void (*submit)(struct req_sink *s, struct req *r);
};

static inline void
req_submit(struct req_sink *s, struct req *r)
{
	s->submit(s, r);
}

#endif
