#include "daemon/wpath.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/util.h"

enum wp_phase {
	PH_MAIN,        /* the request itself */
	PH_ZERO_WRITE,  /* trim/zero emulated with writes of zeros */
	PH_SYNC,        /* FUA after a fallocate: fdatasync */
};

struct wp_queue {
	struct req_sink sink;
	struct ev_loop *loop;
	struct disk *disk;
	struct dm *dm;
	const _Atomic int *writable;
	int no_fallocate;        /* the disk refused fallocate once: emulate */

	pthread_mutex_t lock;    /* protects the in-flight list and counters */
	struct req *inf_head, *inf_tail;
	uint64_t inf_reqs, inf_bytes;
};

static int
wp_is_write(const struct req *r)
{
	return r->type == REQ_WRITE || r->type == REQ_TRIM || r->type == REQ_WRITE_ZEROES;
}

static void
wp_track(struct wp_queue *q, struct req *r)
{
	pthread_mutex_lock(&q->lock);
	r->inf_next = NULL;
	r->inf_prev = q->inf_tail;
	if (q->inf_tail)
		q->inf_tail->inf_next = r;
	else
		q->inf_head = r;
	q->inf_tail = r;
	q->inf_reqs++;
	q->inf_bytes += r->len;
	pthread_mutex_unlock(&q->lock);
}

static void
wp_untrack(struct wp_queue *q, struct req *r)
{
	pthread_mutex_lock(&q->lock);
	if (r->inf_prev)
		r->inf_prev->inf_next = r->inf_next;
	else
		q->inf_head = r->inf_next;
	if (r->inf_next)
		r->inf_next->inf_prev = r->inf_prev;
	else
		q->inf_tail = r->inf_prev;
	q->inf_reqs--;
	q->inf_bytes -= r->len;
	pthread_mutex_unlock(&q->lock);
}

static void
wp_finish(struct wp_queue *q, struct req *r, int res, int marked)
{
	if (marked)
		dm_write_end(q->dm, r->off, r->len);
	wp_untrack(q, r);
	r->res = res;
	r->complete(r);
}

static void
wp_issue(struct wp_queue *q, struct req *r)
{
	struct io_uring_sqe *sqe = ev_get_sqe(q->loop);

	if (r->phase == PH_SYNC) {
		io_uring_prep_fsync(sqe, disk_fd(q->disk), IORING_FSYNC_DATASYNC);
	} else {
		disk_prep(q->disk, sqe, r, r->phase == PH_ZERO_WRITE);
	}
	ev_sqe_set_op(sqe, &r->op);
}

static void
wp_disk_done(struct ev_op *op, int res, uint32_t flags)
{
	struct req *r = container_of(op, struct req, op);
	struct wp_queue *q = r->wait.ctx;
	int marked = wp_is_write(r);

	(void)flags;
	if (res == -EINTR || res == -EAGAIN) {
		wp_issue(q, r);
		return;
	}
	if (res < 0 && r->phase == PH_MAIN &&
	    (r->type == REQ_TRIM || r->type == REQ_WRITE_ZEROES) &&
	    (res == -EOPNOTSUPP || res == -ENOTSUP || res == -ENOSYS)) {
		if (!q->no_fallocate)
			LOG_INFO("disk does not support fallocate: trim and zero are written as zeros");
		q->no_fallocate = 1;
		r->phase = PH_ZERO_WRITE;
		wp_issue(q, r);
		return;
	}
	if (res < 0) {
		LOG_WARN("disk I/O error (type %u, offset %llu, length %u): %s", r->type,
			 (unsigned long long)r->off, r->len, strerror(-res));
		wp_finish(q, r, res, marked);
		return;
	}
	switch (r->phase) {
	case PH_MAIN:
		if (r->type == REQ_READ || r->type == REQ_WRITE) {
			if (res == 0) {	/* past the end of the file: cannot happen on a sane disk */
				wp_finish(q, r, -EIO, marked);
				return;
			}
			r->done += (uint32_t)res;
			if (r->done < r->len) {
				wp_issue(q, r);
				return;
			}
		} else if (r->type != REQ_FLUSH && (r->flags & REQ_F_FUA)) {
			r->phase = PH_SYNC;	/* fallocate is not durable by itself */
			wp_issue(q, r);
			return;
		}
		break;
	case PH_ZERO_WRITE:
		r->done += (uint32_t)res;
		if (r->done < r->len) {
			wp_issue(q, r);
			return;
		}
		break;
	case PH_SYNC:
		break;
	}
	wp_finish(q, r, 0, marked);
}

/* The activity marks of a parked write are durable (or failed). */
static void
wp_marked(struct ev_msg *m)
{
	struct req *r = container_of(m, struct req, wait.msg);
	struct wp_queue *q = r->wait.ctx;

	if (r->wait.res) {
		wp_finish(q, r, -EIO, 1);
		return;
	}
	wp_issue(q, r);
}

static void
wp_submit(struct req_sink *s, struct req *r)
{
	struct wp_queue *q = container_of(s, struct wp_queue, sink);
	int rc;

	r->start_ns = util_now_ns();
	r->done = 0;
	r->res = 0;
	r->phase = (q->no_fallocate && (r->type == REQ_TRIM || r->type == REQ_WRITE_ZEROES))
			   ? PH_ZERO_WRITE : PH_MAIN;
	r->op.cb = wp_disk_done;
	r->wait.ctx = q;
	r->wait.loop = q->loop;
	r->wait.msg.fn = wp_marked;
	wp_track(q, r);
	if (!wp_is_write(r)) {
		wp_issue(q, r);
		return;
	}
	if (!atomic_load_explicit(q->writable, memory_order_acquire)) {
		wp_finish(q, r, -EROFS, 0);
		return;
	}
	/* Durable intent before the data may touch the disk: after a crash the
	 * bitmap must cover anything that might have been written. */
	rc = dm_write_begin(q->dm, r->off, r->len, &r->wait);
	if (rc < 0) {
		wp_finish(q, r, -EIO, 0);
		return;
	}
	if (rc == 0)
		wp_issue(q, r);
}

int
wp_queue_new(struct wp_queue **out, const struct wp_params *p)
{
	struct wp_queue *q = calloc(1, sizeof(*q));

	if (!q)
		return -ENOMEM;
	q->sink.submit = wp_submit;
	q->loop = p->loop;
	q->disk = p->disk;
	q->dm = p->dm;
	q->writable = p->writable;
	pthread_mutex_init(&q->lock, NULL);
	*out = q;
	return 0;
}

void
wp_queue_free(struct wp_queue *q)
{
	if (!q)
		return;
	pthread_mutex_destroy(&q->lock);
	free(q);
}

struct req_sink *
wp_sink(struct wp_queue *q)
{
	return &q->sink;
}

void
wp_get_inflight(struct wp_queue *q, struct wp_inflight *out)
{
	uint64_t now = util_now_ns();

	pthread_mutex_lock(&q->lock);
	out->requests = q->inf_reqs;
	out->bytes = q->inf_bytes;
	out->oldest_ms = q->inf_head ? (now - q->inf_head->start_ns) / 1000000ull : 0;
	pthread_mutex_unlock(&q->lock);
}
