#include "lib/ev.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

struct ev_loop {
	struct io_uring ring;
	int efd;                 /* wakes the ring for posted messages */
	uint64_t efd_val;        /* read target of the armed eventfd read */
	struct ev_op efd_op;
	_Atomic int stop;
	pthread_mutex_t lock;    /* protects posted */
	struct ev_msg *posted;   /* LIFO; reversed before running */
};

static void
ev_arm_efd(struct ev_loop *l)
{
	struct io_uring_sqe *sqe = ev_get_sqe(l);

	io_uring_prep_read(sqe, l->efd, &l->efd_val, sizeof(l->efd_val), 0);
	ev_sqe_set_op(sqe, &l->efd_op);
}

static void
ev_run_posted(struct ev_loop *l)
{
	struct ev_msg *m, *rev = NULL, *next;

	pthread_mutex_lock(&l->lock);
	m = l->posted;
	l->posted = NULL;
	pthread_mutex_unlock(&l->lock);
	for (; m; m = next) {	/* restore posting order */
		next = m->next;
		m->next = rev;
		rev = m;
	}
	for (m = rev; m; m = next) {
		next = m->next;
		m->fn(m);
	}
}

static void
ev_efd_done(struct ev_op *op, int res, uint32_t flags)
{
	struct ev_loop *l = container_of(op, struct ev_loop, efd_op);

	(void)flags;
	if (res < 0 && res != -EINTR && res != -EAGAIN)
		LOG_ERROR("event loop: eventfd read failed: %s", strerror(-res));
	ev_run_posted(l);
	ev_arm_efd(l);
}

int
ev_new(struct ev_loop **out, unsigned entries, unsigned flags)
{
	unsigned extra = (flags & EV_SQE128) ? IORING_SETUP_SQE128 : 0;
	struct io_uring_params p;
	struct ev_loop *l;
	int rc;

	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	memset(&p, 0, sizeof(p));
	/* Only this thread submits; completions run when it asks for them. */
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
		  IORING_SETUP_CQSIZE | extra;
	p.cq_entries = entries * 4;
	rc = io_uring_queue_init_params(entries, &l->ring, &p);
	if (rc == -EINVAL) {	/* older kernel: plain ring */
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE | extra;
		p.cq_entries = entries * 4;
		rc = io_uring_queue_init_params(entries, &l->ring, &p);
	}
	if (rc < 0) {
		free(l);
		return rc;
	}
	l->efd = eventfd(0, EFD_CLOEXEC);
	if (l->efd < 0) {
		rc = -errno;
		io_uring_queue_exit(&l->ring);
		free(l);
		return rc;
	}
	pthread_mutex_init(&l->lock, NULL);
	l->efd_op.cb = ev_efd_done;
	ev_arm_efd(l);
	*out = l;
	return 0;
}

void
ev_free(struct ev_loop *l)
{
	if (!l)
		return;
	/* Messages posted after the loop stopped still own memory. */
	ev_run_posted(l);
	io_uring_queue_exit(&l->ring);
	close(l->efd);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

struct io_uring_sqe *
ev_get_sqe(struct ev_loop *l)
{
	struct io_uring_sqe *sqe;

	while (!(sqe = io_uring_get_sqe(&l->ring))) {
		int rc = io_uring_submit(&l->ring);
		VERIFY(rc >= 0 || rc == -EAGAIN || rc == -EBUSY || rc == -EINTR);
	}
	return sqe;
}

int
ev_run(struct ev_loop *l)
{
	struct io_uring_cqe *cqe;
	unsigned head, n;
	int rc;

	while (!atomic_load_explicit(&l->stop, memory_order_relaxed)) {
		rc = io_uring_submit_and_wait(&l->ring, 1);
		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
			LOG_ERROR("event loop: io_uring_enter failed: %s", strerror(-rc));
			return rc;
		}
		n = 0;
		io_uring_for_each_cqe(&l->ring, head, cqe) {
			struct ev_op *op = io_uring_cqe_get_data(cqe);
			n++;
			if (op)
				op->cb(op, cqe->res, cqe->flags);
		}
		io_uring_cq_advance(&l->ring, n);
	}
	return 0;
}

void
ev_stop(struct ev_loop *l)
{
	atomic_store(&l->stop, 1);
}

static void
ev_kick(struct ev_loop *l)
{
	uint64_t one = 1;

	/* eventfd writes of 8 bytes cannot be short; an overflow cannot happen
	 * either since the reader drains it. */
	if (write(l->efd, &one, sizeof(one)) < 0)
		LOG_ERROR("event loop: eventfd write failed: %s", strerror(errno));
}

void
ev_post(struct ev_loop *l, struct ev_msg *m)
{
	int was_empty;

	pthread_mutex_lock(&l->lock);
	was_empty = l->posted == NULL;
	m->next = l->posted;
	l->posted = m;
	pthread_mutex_unlock(&l->lock);
	if (was_empty)
		ev_kick(l);
}

void
ev_post_stop(struct ev_loop *l)
{
	atomic_store(&l->stop, 1);
	ev_kick(l);
}
