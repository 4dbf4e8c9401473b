#include "daemon/wpath.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/conflict.h"
#include "daemon/link.h"
#include "daemon/peer.h"
#include "daemon/resource.h"
#include "lib/fault.h"
#include "lib/log.h"
#include "lib/util.h"
#include "proto/px.h"

enum wp_phase {
	PH_MAIN,        /* the request itself */
	PH_ZERO_WRITE,  /* trim/zero emulated with writes of zeros */
	PH_SYNC,        /* FUA after a fallocate: fdatasync */
};

/* What a request's completion still waits for. */
#define WP_P_LOCAL 1u
#define WP_P_PEER  2u

struct wp_queue {
	struct req_sink sink;
	struct res_queue *rq;
	struct res *res;
	struct ev_loop *loop;
	struct disk *disk;
	struct dm *dm;
	int no_fallocate;        /* the disk refused fallocate once: emulate */

	struct req *held_head, *held_tail;  /* frozen requests, queue thread only */
	struct ev_msg thaw_msg;
	_Atomic int thaw_posted;

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

/* Both halves are over: account, release, answer. */
static void
wp_finish(struct wp_queue *q, struct req *r)
{
	int detached = atomic_load(&q->res->detached);

	if (!r->replica && wp_is_write(r)) {
		/* Not on the peer although we meant it to be: it differs now.
		 * A local failure on a detached disk is no difference for the
		 * peer to repair: it has the data, this node has no disk. */
		if ((r->peer_res || (r->res && !detached)) && !r->marked_oos)
			dm_mark_oos(q->dm, r->off, r->len);
		dm_write_end(q->dm, r->off, r->len);
		cf_end(q->res->cf, r);
	}
	/* Detached: the peer's disk is the only one, so its answer is the
	 * client's, whatever the local disk said before it failed. */
	if (!r->replica && detached && r->to_peer)
		r->res = r->peer_res ? -EIO : 0;
	wp_untrack(q, r);
	r->complete(r);
}

enum { WP_HELD_NEW = 1, WP_HELD_DONE = 2 };

static void
wp_hold(struct wp_queue *q, struct req *r, uint8_t kind)
{
	r->frozen = kind;
	r->held_next = NULL;
	if (q->held_tail)
		q->held_tail->held_next = r;
	else
		q->held_head = r;
	q->held_tail = r;
}

static void
wp_part_done(struct wp_queue *q, struct req *r, uint8_t part)
{
	r->pending &= (uint8_t)~part;
	if (r->pending)
		return;
	/* Lost the peer while fencing: answer only once the peer is fenced,
	 * or the other node could be promoted without this write.  Whether
	 * the peer got it or not: a write that went to the local disk alone
	 * (the link died before it was sent) must wait just the same. */
	if (r->type != REQ_READ && !r->replica && atomic_load(&q->res->frozen)) {
		wp_hold(q, r, WP_HELD_DONE);
		return;
	}
	wp_finish(q, r);
}

void
wp_peer_done(struct req *r, int res)
{
	struct wp_queue *q = r->wait.ctx;

	/* A detached peer refuses every write: it said so once, in its
	 * state; the blocks are marked all the same (wp_finish). */
	if (res && res != -ENOTCONN && !atomic_load(&q->res->peer_detached))
		LOG_WARN("peer failed %s at %llu+%u: %s", r->type == REQ_FLUSH ? "a flush" : "a write",
			 (unsigned long long)r->off, r->len, strerror(-res));
	r->peer_res = res;
	wp_part_done(q, r, WP_P_PEER);
}

static void
wp_issue(struct wp_queue *q, struct req *r)
{
	struct io_uring_sqe *sqe = ev_get_sqe(q->loop);

	if (r->phase == PH_SYNC)
		io_uring_prep_fsync(sqe, disk_fd(q->disk), IORING_FSYNC_DATASYNC);
	else
		disk_prep(q->disk, sqe, r, r->phase == PH_ZERO_WRITE);
	ev_sqe_set_op(sqe, &r->op);
}

static void
wp_local_done(struct wp_queue *q, struct req *r, int res)
{
	r->res = res;
	wp_part_done(q, r, WP_P_LOCAL);
}

/* Tests only (lib/fault.h): a disk that fails its I/O. */
static int
wp_fault(const struct req *r, int res)
{
	if (res < 0)
		return res;
	if (wp_is_write(r) && FAULT("disk/write/eio"))
		return -EIO;
	if (r->type == REQ_READ && FAULT("disk/read/eio"))
		return -EIO;
	return res;
}

static struct lk *
wp_link(struct wp_queue *q)
{
	struct lk *l = q->rq->link;

	return lk_ready(l) ? l : NULL;
}

/* The link a detached node's reads go to: only a peer that knows
 * READ_REQ (protocol version 3) is asked; an older one would end the
 * link on the unknown type, so the read fails with EIO instead. */
static struct lk *
wp_read_link(struct wp_queue *q)
{
	if (atomic_load(&q->res->peer_version) < PX_VERSION_READ_REQ)
		return NULL;
	return wp_link(q);
}

/* A client read the local disk failed, and the disk is detached now: the
 * peer's disk serves it, as it serves every later read (its answer is
 * the client's, wp_finish).  0 when there is no peer to ask. */
static int
wp_read_from_peer(struct wp_queue *q, struct req *r)
{
	struct lk *link;

	if (r->type != REQ_READ || r->replica || r->to_peer || !atomic_load(&q->res->detached))
		return 0;
	link = wp_read_link(q);
	if (!link)
		return 0;
	r->to_peer = 1;
	r->pending |= WP_P_PEER;
	lk_send(link, r);
	return 1;
}

/* The local disk is done with r (res 0 or -errno): an error is the state
 * machine's to judge (on-io-error) before the request completes, so that
 * a detach already counts for it. */
static void
wp_disk_end(struct wp_queue *q, struct req *r, int res)
{
	char what[64];

	if (res < 0) {
		snprintf(what, sizeof(what), "%s at %llu+%u",
			 r->type == REQ_READ ? "a read" : r->type == REQ_FLUSH ? "a flush" : "a write",
			 (unsigned long long)r->off, r->len);
		/* Detached, rsm_disk_error has logged it (once). */
		if (!rsm_disk_error(q->res, res, what))
			LOG_WARN("disk I/O error: %s failed: %s (on-io-error = pass-on)", what,
				 strerror(-res));
		else if (wp_read_from_peer(q, r))
			LOG_INFO("%s: read from the peer's disk instead", what);
	}
	wp_local_done(q, r, res);
	rsm_disk_io_end(q->res, 1);
}

/* A read or write moved res bytes: the rest is issued again.  0 bytes is
 * past the end of the file, which a sane disk never reports: an error,
 * not a loop.  1 when the request went on or ended. */
static int
wp_partial(struct wp_queue *q, struct req *r, int res)
{
	if (res == 0) {
		wp_disk_end(q, r, -EIO);
		return 1;
	}
	r->done += (uint32_t)res;
	if (r->done < r->len) {
		wp_issue(q, r);
		return 1;
	}
	return 0;
}

static void
wp_disk_result(struct wp_queue *q, struct req *r, int res)
{
	if (res == -EINTR || res == -EAGAIN) {
		wp_issue(q, r);
		return;
	}
	res = wp_fault(r, res);
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
		wp_disk_end(q, r, res);
		return;
	}
	switch (r->phase) {
	case PH_MAIN:
		if (r->type == REQ_READ || r->type == REQ_WRITE) {
			if (wp_partial(q, r, res))
				return;
		} else if (r->type != REQ_FLUSH && (r->flags & REQ_F_FUA)) {
			r->phase = PH_SYNC;	/* fallocate is not durable by itself */
			wp_issue(q, r);
			return;
		}
		break;
	case PH_ZERO_WRITE:
		if (wp_partial(q, r, res))
			return;
		break;
	case PH_SYNC:
		break;
	}
	wp_disk_end(q, r, 0);
}

static void wp_disk_done(struct ev_op *op, int res, uint32_t flags);

/* The slow disk's completion, held back: r->res kept its result. */
static void
wp_slow_done(struct ev_op *op, int res, uint32_t flags)
{
	struct req *r = container_of(op, struct req, op);

	(void)res;
	(void)flags;
	r->op.cb = wp_disk_done;
	wp_disk_result(r->wait.ctx, r, r->res);
}

static void
wp_disk_done(struct ev_op *op, int res, uint32_t flags)
{
	struct req *r = container_of(op, struct req, op);
	struct wp_queue *q = r->wait.ctx;

	(void)flags;
	if (FAULT(r->type == REQ_READ ? "disk/read/slow" : "disk/write/slow")) {
		/* r->res is not the request's result before wp_local_done. */
		r->res = res;
		r->op.cb = wp_slow_done;
		disk_delay(q->loop, &r->op);
		return;
	}
	wp_disk_result(q, r, res);
}

static void
wp_init(struct wp_queue *q, struct req *r)
{
	r->start_ns = util_now_ns();
	r->done = 0;
	r->res = 0;
	r->peer_res = 0;
	r->marked_oos = 0;
	r->to_peer = 0;
	r->phase = (q->no_fallocate && (r->type == REQ_TRIM || r->type == REQ_WRITE_ZEROES))
			   ? PH_ZERO_WRITE : PH_MAIN;
	r->op.cb = wp_disk_done;
	r->wait.ctx = q;
	r->wait.loop = q->loop;
	wp_track(q, r);
}

/* Local disk and peer at once, from the same buffer. */
static void
wp_start(struct wp_queue *q, struct req *r, struct lk *link)
{
	int local = !atomic_load(&q->res->detached);

	r->to_peer = link != NULL;
	if (!local && !link) {
		/* Detached and no peer to take it: nothing can serve it. */
		r->pending = WP_P_LOCAL;
		wp_local_done(q, r, -EIO);
		return;
	}
	/* The failed disk is not touched again: the peer alone. */
	r->pending = (local ? WP_P_LOCAL : 0) | (link ? WP_P_PEER : 0);
	if (local) {
		rsm_disk_io_begin(q->res);
		wp_issue(q, r);
	}
	if (link)
		lk_send(link, r);
}

/* Async with on-congestion = pull-ahead: past max-async-lag, go on alone
 * (NULL: do not send); the peer is told which blocks it misses and gets
 * them once it catches up. */
static struct lk *
wp_pull_ahead(struct wp_queue *q, struct req *r, struct lk *link)
{
	/* Detached, a write not sent would be nowhere. */
	if (link && q->res->conf.protocol == CONF_PROTO_ASYNC && !atomic_load(&q->res->detached) &&
	    q->res->conf.on_congestion_pull_ahead && lk_congested(link, r->len)) {
		peer_set_ahead(q->res);
		lk_send_oos(link, r->off, r->len, 1);
		return NULL;
	}
	return link;
}

static void
wp_marked(struct ev_msg *m)
{
	struct req *r = container_of(m, struct req, wait.msg);
	struct wp_queue *q = r->wait.ctx;

	if (r->wait.res) {	/* the metadata could not be written */
		r->pending = WP_P_LOCAL;
		wp_local_done(q, r, -EIO);
		return;
	}
	/* The link may have gone, or congested, while the marks were written:
	 * then the blocks are marked now, before the data is written. */
	if (!r->marked_oos && !wp_pull_ahead(q, r, wp_link(q))) {
		dm_mark_oos(q->dm, r->off, r->len);
		r->marked_oos = 1;
	}
	wp_start(q, r, r->marked_oos ? NULL : wp_link(q));
}

/* No overlapping write in flight any more: take the activity marks. */
static void
wp_write_admitted(struct wp_queue *q, struct req *r)
{
	struct lk *link;
	int rc;

	link = wp_pull_ahead(q, r, wp_link(q));
	r->marked_oos = link == NULL;
	r->wait.msg.fn = wp_marked;
	/* Durable intent before the data may touch the disk: after a crash the
	 * bitmap must cover anything that might have been written. */
	rc = dm_write_begin(q->dm, r->off, r->len, r->marked_oos, &r->wait);
	if (rc < 0) {
		cf_end(q->res->cf, r);
		wp_untrack(q, r);
		r->res = -EIO;
		r->complete(r);
		return;
	}
	if (rc == 0) {
		r->wait.res = 0;
		wp_marked(&r->wait.msg);
	}
}

static void
wp_cf_ready(struct ev_msg *m)
{
	struct req *r = container_of(m, struct req, wait.msg);

	wp_write_admitted(r->wait.ctx, r);
}

static void
wp_submit(struct req_sink *s, struct req *r)
{
	struct wp_queue *q = container_of(s, struct wp_queue, sink);

	if (r->type != REQ_READ && atomic_load(&q->res->frozen)) {
		wp_hold(q, r, WP_HELD_NEW);
		return;
	}
	r->frozen = 0;
	r->replica = 0;
	wp_init(q, r);
	if (r->type == REQ_READ) {
		/* Detached: the peer's disk serves it (READ_REQ). */
		wp_start(q, r, atomic_load(&q->res->detached) ? wp_read_link(q) : NULL);
		return;
	}
	if (r->type == REQ_FLUSH) {
		/* Async never waits for the peer: its lag is bounded instead;
		 * but a detached node has only the peer's disk to flush. */
		wp_start(q, r, q->res->conf.protocol == CONF_PROTO_ASYNC &&
			 !atomic_load(&q->res->detached) ? NULL : wp_link(q));
		return;
	}
	if (!atomic_load_explicit(&q->res->writable, memory_order_acquire)) {
		wp_untrack(q, r);
		r->res = -EROFS;
		r->complete(r);
		return;
	}
	r->wait.msg.fn = wp_cf_ready;
	if (cf_begin(q->res->cf, r) == 0)
		wp_write_admitted(q, r);
}

void
wp_submit_replica(struct wp_queue *q, struct req *r)
{
	r->replica = 1;
	wp_init(q, r);
	wp_start(q, r, NULL);
}

static void
wp_thaw_run(struct ev_msg *m)
{
	struct wp_queue *q = container_of(m, struct wp_queue, thaw_msg);
	struct req *r, *list = q->held_head;

	atomic_store(&q->thaw_posted, 0);
	if (atomic_load(&q->res->frozen))
		return;
	q->held_head = q->held_tail = NULL;
	while ((r = list)) {
		list = r->held_next;
		if (r->frozen == WP_HELD_DONE)
			wp_finish(q, r);
		else
			wp_submit(&q->sink, r);
	}
}

void
wp_thaw_all(struct res *r)
{
	for (unsigned i = 0; i < r->nqueues; i++) {
		struct wp_queue *q = r->queues[i].wp;

		if (q && !atomic_exchange(&q->thaw_posted, 1))
			ev_post(r->queues[i].loop, &q->thaw_msg);
	}
}

int
wp_queue_new(struct wp_queue **out, struct res_queue *rq)
{
	struct wp_queue *q = calloc(1, sizeof(*q));

	if (!q)
		return -ENOMEM;
	q->sink.submit = wp_submit;
	q->thaw_msg.fn = wp_thaw_run;
	q->rq = rq;
	q->res = rq->res;
	q->loop = rq->loop;
	q->disk = rq->res->disk;
	q->dm = rq->res->dm;
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
