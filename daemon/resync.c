#include "daemon/resync.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "daemon/conflict.h"
#include "daemon/link.h"
#include "daemon/peer.h"
#include "daemon/resource.h"
#include "lib/fault.h"
#include "lib/log.h"
#include "lib/util.h"

#include <openssl/evp.h>

#define RS_DEPTH 8
#define RS_CHUNK (256u * 1024)
#define RS_VERIFY_CHUNK (64u * 1024)  /* what one hash covers, at most (rs->vchunk) */
#define RS_SLICE_NS 100000000ull   /* rate accounting window: 100 ms */
#define RS_BACKOFF_NS 1000000000ull /* after an I/O error: 1 s before going on */

struct rs_tag {
	struct req r;               /* first */
	struct rs *rs;
	int busy;
	uint8_t hash[32];           /* of the local copy (verify, csum) */
};

struct rs {
	struct res_queue *q;
	struct res *res;
	struct rs_tag tags[RS_DEPTH];
	void *bufs;
	uint32_t chunk;             /* a tag's buffer: resync data per request */
	uint32_t vchunk;            /* what one hash covers and a difference marks; <= chunk */
	uint64_t cursor;
	int inflight;
	int active;
	enum resync_mode mode;
	enum resync_mode next_mode; /* (res->lock) asked by resync_kick */
	uint64_t verify_bad;        /* bytes found different */
	uint64_t started_ns;
	int timer_armed;
	struct ev_op timer_op;
	struct __kernel_timespec ts;
	uint64_t slice_start, slice_bytes;
	struct ev_msg kick_msg;
	int kick_posted;            /* res->lock */
	int io_error;               /* a chunk failed on a disk: back off */
};

static void rs_pump(struct rs *rs);

static void
rs_timer_done(struct ev_op *op, int res, uint32_t flags)
{
	struct rs *rs = container_of(op, struct rs, timer_op);

	(void)res;
	(void)flags;
	rs->timer_armed = 0;
	rs_pump(rs);
}

static void
rs_arm_timer(struct rs *rs, uint64_t ns)
{
	struct io_uring_sqe *sqe;

	if (rs->timer_armed)
		return;
	rs->ts.tv_sec = (long long)(ns / 1000000000ull);
	rs->ts.tv_nsec = (long long)(ns % 1000000000ull);
	sqe = ev_get_sqe(rs->q->loop);
	io_uring_prep_timeout(sqe, &rs->ts, 0, 0);
	ev_sqe_set_op(sqe, &rs->timer_op);
	rs->timer_armed = 1;
}

static void
rs_tag_put(struct rs *rs, struct rs_tag *t)
{
	t->busy = 0;
	rs->inflight--;
}

/* The tag is done with (its range leaves the conflict tracker). */
static void
rs_tag_end(struct rs *rs, struct rs_tag *t)
{
	t->r.phase = 0;
	cf_end(rs->res->cf, &t->r);
	rs_tag_put(rs, t);
	rs_pump(rs);
}

/* The rest of a resync read, from r->done on. */
static void
rs_reissue(struct rs *rs, struct req *r)
{
	struct io_uring_sqe *sqe = ev_get_sqe(rs->q->loop);

	disk_prep(rs->res->disk, sqe, r, 0);
	ev_sqe_set_op(sqe, &r->op);
}

static void
rs_read_result(struct rs *rs, struct rs_tag *t, int res)
{
	struct req *r = &t->r;
	unsigned int mdlen = 0;

	if (res == -EINTR || res == -EAGAIN) {
		rs_reissue(rs, r);
		return;
	}
	if (res == 0)	/* past the end: cannot happen on a sane disk */
		res = -EIO;
	if (res > 0 && FAULT("disk/read/eio"))	/* tests: a failing source disk */
		res = -EIO;
	if (res < 0) {
		char what[64];

		snprintf(what, sizeof(what), "a resync read at %llu+%u",
			 (unsigned long long)r->off, r->len);
		rsm_disk_error(rs->res, res, what);
		rs->io_error = 1;
	}
	if (res > 0 && (uint32_t)res < r->len - r->done) {
		r->done += (uint32_t)res;
		rs_reissue(rs, r);
		return;
	}
	rsm_disk_io_end(rs->res, 1);
	if (res < 0 || !lk_ready(rs->q->link)) {
		if (res < 0)
			LOG_WARN("resync: reading %llu+%u failed: %s", (unsigned long long)r->off,
				 r->len, strerror(-res));
		rs_tag_end(rs, t);
		return;
	}
	if (rs->mode == RESYNC_DATA) {
		lk_send_resync(rs->q->link, r);
		return;
	}
	EVP_Digest(r->buf, r->len, t->hash, &mdlen, EVP_sha256(), NULL);
	lk_send_csum_req(rs->q->link, r);
}

static void rs_read_done(struct ev_op *op, int res, uint32_t flags);

/* The slow disk's completion, held back: r.res kept its result. */
static void
rs_read_slow_done(struct ev_op *op, int res, uint32_t flags)
{
	struct rs_tag *t = (struct rs_tag *)container_of(op, struct req, op);

	(void)res;
	(void)flags;
	t->r.op.cb = rs_read_done;
	rs_read_result(t->rs, t, t->r.res);
}

static void
rs_read_done(struct ev_op *op, int res, uint32_t flags)
{
	struct rs_tag *t = (struct rs_tag *)container_of(op, struct req, op);

	(void)flags;
	if (FAULT("disk/read/slow")) {	/* tests: a slow source disk */
		t->r.res = res;
		t->r.op.cb = rs_read_slow_done;
		disk_delay(t->rs->q->loop, &t->r.op);
		return;
	}
	rs_read_result(t->rs, t, res);
}

static void
rs_issue_read(struct rs *rs, struct rs_tag *t)
{
	struct io_uring_sqe *sqe;

	if (atomic_load(&rs->res->detached)) {	/* the failed disk is not read again */
		rs_tag_end(rs, t);
		return;
	}
	sqe = ev_get_sqe(rs->q->loop);
	rsm_disk_io_begin(rs->res);
	t->r.type = REQ_READ;
	t->r.done = 0;
	t->r.op.cb = rs_read_done;
	disk_prep(rs->res->disk, sqe, &t->r, 0);
	ev_sqe_set_op(sqe, &t->r.op);
}

/* Conflict tracker let the range go. */
static void
rs_cf_ready(struct ev_msg *m)
{
	struct req *r = container_of(m, struct req, wait.msg);

	rs_issue_read(((struct rs_tag *)r)->rs, (struct rs_tag *)r);
}

void
resync_acked(struct req *r, int status)
{
	struct rs_tag *t = (struct rs_tag *)r;
	struct rs *rs = t->rs;

	if (status == 0) {
		dm_clear_oos(rs->res->dm, r->off, r->len);
		atomic_fetch_add(&rs->res->rs_done_bytes, r->len);
	} else if (status != -ENOTCONN) {
		LOG_WARN("resync: the peer failed to write %llu+%u: %s", (unsigned long long)r->off,
			 r->len, strerror(-status));
		rs->io_error = 1;
	}
	rs_tag_end(rs, t);
}

void
resync_csum(struct req *r, const uint8_t sha256[32])
{
	struct rs_tag *t = (struct rs_tag *)r;
	struct rs *rs = t->rs;
	int same = memcmp(t->hash, sha256, sizeof(t->hash)) == 0;

	if (rs->mode == RESYNC_VERIFY) {
		if (!same) {
			LOG_INFO("verify: %llu+%u differs from the peer",
				 (unsigned long long)r->off, r->len);
			dm_mark_oos(rs->res->dm, r->off, r->len);
			if (lk_ready(rs->q->link))
				lk_send_oos(rs->q->link, r->off, r->len, 0);
			rs->verify_bad += r->len;
		}
		atomic_fetch_add(&rs->res->rs_done_bytes, r->len);
		rs_tag_end(rs, t);
		return;
	}
	if (same) {	/* the target already has it: nothing moves */
		dm_clear_oos(rs->res->dm, r->off, r->len);
		rs_tag_end(rs, t);
		return;
	}
	if (!lk_ready(rs->q->link)) {
		rs_tag_end(rs, t);
		return;
	}
	lk_send_resync(rs->q->link, r);	/* the buffer still holds our data */
}

static struct rs_tag *
rs_free_tag(struct rs *rs)
{
	for (int i = 0; i < RS_DEPTH; i++)
		if (!rs->tags[i].busy)
			return &rs->tags[i];
	return NULL;
}

/* Rate limit: bytes per 100 ms slice. */
static int
rs_rate_ok(struct rs *rs)
{
	uint64_t rate = rs->res->conf.resync_rate, now = util_now_ns();

	if (!rate)
		return 1;
	if (now - rs->slice_start >= RS_SLICE_NS) {
		rs->slice_start = now;
		rs->slice_bytes = 0;
	}
	if (rs->slice_bytes < rate / 10)
		return 1;
	rs_arm_timer(rs, RS_SLICE_NS - (now - rs->slice_start));
	return 0;
}

/* A resync or verify never sends data to a primary: its users own the
 * data now (a target promoted with --force).  The next connect decides. */
static int
rs_peer_primary(struct rs *rs)
{
	int role = 0, disk = 0;

	return rs->mode != RESYNC_VERIFY && peer_info(rs->res, &role, &disk) == 0 && role;
}

/* Why the resync cannot go on now, or NULL.  A failed or diskless disk on
 * either side cannot take part: retrying would only fail again, as fast as
 * the disks answer.  The next connection (after attach) starts it again. */
static const char *
rs_blocked(struct rs *rs)
{
	int role = 0, disk = 0;

	if (!lk_ready(rs->q->link))
		return "no link";
	if (rs_peer_primary(rs))
		return "the peer is primary";
	if (atomic_load(&rs->res->detached))
		return "the local disk failed and is detached";
	if (peer_info(rs->res, &role, &disk) == 0 &&
	    (disk == RSM_D_FAILED || disk == RSM_D_DISKLESS))
		return "the peer's disk failed and is detached";
	return NULL;
}

static void
rs_pump(struct rs *rs)
{
	struct res *r = rs->res;
	struct dm_stats st;
	struct wp_inflight app;

	const char *why;

	if (!rs->active)
		return;
	if ((why = rs_blocked(rs))) {
		if (rs->inflight == 0) {
			rs->active = 0;
			rs->io_error = 0;
			LOG_INFO("resync: paused (%s)", why);
		}
		return;
	}
	if (rs->io_error) {
		/* An error that detached nothing (on-io-error = pass-on, or
		 * the peer's disk not known to be detached yet): go on after
		 * a pause, not at the pace of the failing disk. */
		if (rs->inflight == 0 && !rs->timer_armed) {
			LOG_WARN("resync: I/O error: going on in %llu ms",
				 RS_BACKOFF_NS / 1000000ull);
			rs->io_error = 0;
			rs_arm_timer(rs, RS_BACKOFF_NS);
		}
		return;
	}
	for (;;) {
		struct rs_tag *t;
		uint64_t off, len;
		int limit;

		/* Yield to applications: few resync requests while they run. */
		wp_get_inflight(rs->q->wp, &app);
		limit = app.requests > 0 ? 2 : RS_DEPTH;
		if (rs->inflight >= limit || !rs_rate_ok(rs))
			return;
		if (rs->mode == RESYNC_VERIFY) {
			if (rs->cursor >= r->size) {
				if (rs->inflight)
					return;
				rs->active = 0;
				peer_verify_done(r, rs->verify_bad);
				return;
			}
			off = rs->cursor;
			len = MIN(rs->vchunk, r->size - off);
		} else if (dm_next_oos(r->dm, rs->cursor,
				       rs->mode == RESYNC_CSUM ? rs->vchunk : rs->chunk,
				       &off, &len)) {
			/* Nothing after the cursor: wrap only once nothing is in
			 * flight, or in-flight ranges would be found again. */
			if (rs->inflight)
				return;
			if (rs->cursor != 0) {
				rs->cursor = 0;
				continue;
			}
			dm_get_stats(r->dm, &st);
			if (st.oos_bytes == 0) {
				struct rsm_state rstate;

				rs->active = 0;
				rsm_get(r, &rstate);
				if (atomic_load(&r->rs_done_bytes) || rstate.repl == RSM_R_SYNCSOURCE)
					LOG_INFO("resync finished: %llu bytes in %.1f s",
					 (unsigned long long)atomic_load(&r->rs_done_bytes),
					 (double)(util_now_ns() - rs->started_ns) / 1e9);
				peer_resync_done(r);
			}
			return;
		}
		t = rs_free_tag(rs);
		VERIFY(t);
		t->busy = 1;
		rs->inflight++;
		rs->cursor = off + len;
		rs->slice_bytes += len;
		t->r.off = off;
		t->r.len = (uint32_t)len;
		t->r.flags = 0;
		t->r.wait.loop = rs->q->loop;
		t->r.wait.msg.fn = rs_cf_ready;
		if (cf_begin(r->cf, &t->r) == 0)
			rs_issue_read(rs, t);
	}
}

static void
rs_kick_run(struct ev_msg *m)
{
	struct rs *rs = container_of(m, struct rs, kick_msg);

	enum resync_mode mode;

	pthread_mutex_lock(&rs->res->lock);
	rs->kick_posted = 0;
	mode = rs->next_mode;
	pthread_mutex_unlock(&rs->res->lock);
	if (!rs->active) {
		rs->active = 1;
		rs->cursor = 0;
		rs->mode = mode;
		rs->verify_bad = 0;
		rs->started_ns = util_now_ns();
		atomic_store(&rs->res->rs_done_bytes, 0);
		if (mode == RESYNC_VERIFY)
			LOG_INFO("verify: started");
	}
	rs_pump(rs);
}

void
resync_kick(struct res *r, enum resync_mode mode)
{
	struct rs *rs = r->queues[0].rs;
	int post;

	pthread_mutex_lock(&r->lock);
	post = !rs->kick_posted;
	rs->kick_posted = 1;
	rs->next_mode = mode;
	pthread_mutex_unlock(&r->lock);
	if (post)
		ev_post(r->queues[0].loop, &rs->kick_msg);
}

int
resync_init(struct res_queue *q)
{
	struct rs *rs = calloc(1, sizeof(*rs));

	if (!rs)
		return -ENOMEM;
	rs->q = q;
	rs->res = q->res;
	rs->chunk = MIN(RS_CHUNK, q->res->conf.max_io_size);
	/* A checksum request reads into a tag's buffer, and the peer refuses
	 * one longer than max-io-size. */
	rs->vchunk = MIN(RS_VERIFY_CHUNK, rs->chunk);
	rs->bufs = mmap(NULL, (size_t)RS_DEPTH * rs->chunk, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (rs->bufs == MAP_FAILED) {
		free(rs);
		return -ENOMEM;
	}
	for (int i = 0; i < RS_DEPTH; i++) {
		rs->tags[i].rs = rs;
		rs->tags[i].r.tag = (uint16_t)i;
		rs->tags[i].r.buf = (char *)rs->bufs + (size_t)i * rs->chunk;
	}
	rs->timer_op.cb = rs_timer_done;
	rs->kick_msg.fn = rs_kick_run;
	q->rs = rs;
	return 0;
}

void
resync_fini(struct res_queue *q)
{
	struct rs *rs = q->rs;

	if (!rs)
		return;
	munmap(rs->bufs, (size_t)RS_DEPTH * rs->chunk);
	free(rs);
	q->rs = NULL;
}

void
resync_verify(struct res *r)
{
	resync_kick(r, RESYNC_VERIFY);
}
