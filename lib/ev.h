/* ev: the event loop, one io_uring per thread.  Every asynchronous
 * operation (disk I/O, socket I/O, cross-thread wake-ups) is an SQE whose
 * user_data points at a struct ev_op embedded in its owner; the completion
 * calls op->cb.  Submissions are batched: SQEs prepared while handling a
 * batch of completions go to the kernel in one io_uring_enter. */
#ifndef BLKMIRROR_EV_H
#define BLKMIRROR_EV_H

#include <liburing.h>
#include <stdint.h>

struct ev_op;
typedef void (*ev_cb_t)(struct ev_op *op, int res, uint32_t cqe_flags);

struct ev_op {
	ev_cb_t cb;
};

/* A message posted from another thread; fn runs on the loop's thread. */
struct ev_msg {
	struct ev_msg *next;
	void (*fn)(struct ev_msg *m);
};

struct ev_loop;

/* EV_SQE128: 128-byte SQEs, for IORING_OP_URING_CMD (ublk). */
#define EV_SQE128 (1u << 0)

/* Creates a loop with an SQ of `entries` (power of two).  Call on the thread
 * that will run it (SINGLE_ISSUER).  Returns 0 or -errno. */
int ev_new(struct ev_loop **out, unsigned entries, unsigned flags);
void ev_free(struct ev_loop *l); /* ev_free(NULL) is a no-op */

/* A free SQE; submits the pending batch first if the SQ is full, so it
 * never returns NULL.  The caller must set its data with ev_sqe_set_op. */
struct io_uring_sqe *ev_get_sqe(struct ev_loop *l);

static inline void
ev_sqe_set_op(struct io_uring_sqe *sqe, struct ev_op *op)
{
	io_uring_sqe_set_data(sqe, op);
}

/* Runs until ev_stop() (from this thread) or ev_post_stop() (any thread).
 * Returns 0, or -errno if the ring itself failed. */
int ev_run(struct ev_loop *l);
void ev_stop(struct ev_loop *l);

/* Any thread: queue m to run on l's thread.  Lock-protected list plus an
 * eventfd read armed on the ring. */
void ev_post(struct ev_loop *l, struct ev_msg *m);
/* Any thread: make ev_run return after the current batch. */
void ev_post_stop(struct ev_loop *l);

#endif
