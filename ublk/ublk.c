#include "ublk/ublk.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

/* ------------------------------------------------------------------ */
/* Pure helpers                                                        */
/* ------------------------------------------------------------------ */

static int
ublk_is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

static uint8_t
ublk_log2(uint64_t x)
{
	uint8_t s = 0;

	while (x > 1) {
		x >>= 1;
		s++;
	}
	return s;
}

int
ublk_geom_check(const struct ublk_geom *g, char *err, size_t len)
{
	if (g->block != 512 && g->block != 4096) {
		snprintf(err, len, "logical block size %u: expected 512 or 4096", g->block);
		return -EINVAL;
	}
	if (!ublk_is_pow2(g->max_io) || g->max_io < 4096 || g->max_io > (32u << 20)) {
		snprintf(err, len, "max-io-size %u: expected a power of two from 4 KiB to 32 MiB",
			 g->max_io);
		return -EINVAL;
	}
	if (g->queues < 1 || g->queues > UBLK_MAX_QUEUES) {
		snprintf(err, len, "%u queues: expected 1 to %u", g->queues, UBLK_MAX_QUEUES);
		return -EINVAL;
	}
	if (g->depth < 1 || g->depth > UBLK_MAX_QUEUE_DEPTH) {
		snprintf(err, len, "queue depth %u: expected 1 to %u", g->depth,
			 UBLK_MAX_QUEUE_DEPTH);
		return -EINVAL;
	}
	if (g->size < g->block) {
		snprintf(err, len, "%llu bytes of data: smaller than one %u-byte block",
			 (unsigned long long)g->size, g->block);
		return -EINVAL;
	}
	return 0;
}

uint32_t
ublk_block_for_align(uint32_t align)
{
	/* A disk that needs 4 KiB alignment for O_DIRECT gets only 4 KiB
	 * requests; otherwise the device is as fine-grained as the kernel
	 * allows (512), which is what every partitioning tool expects. */
	return align == 4096 ? 4096 : 512;
}

uint64_t
ublk_capacity(const struct ublk_geom *g)
{
	return g->size / g->block * g->block;
}

void
ublk_dev_info_init(struct ublksrv_ctrl_dev_info *info, const struct ublk_geom *g, int dev_id)
{
	memset(info, 0, sizeof(*info));
	info->nr_hw_queues = (uint16_t)g->queues;
	info->queue_depth = (uint16_t)g->depth;
	info->max_io_buf_bytes = g->max_io;
	info->dev_id = (uint32_t)dev_id;	/* -1: any free id */
	info->flags = UBLK_FEATURES;
}

void
ublk_params_init(struct ublk_params *p, const struct ublk_geom *g)
{
	uint32_t discard = UBLK_MAX_DISCARD_BYTES >> 9;

	memset(p, 0, sizeof(*p));
	p->len = sizeof(*p);
	p->types = UBLK_PARAM_TYPE_BASIC | UBLK_PARAM_TYPE_DISCARD;
	/* A volatile cache that honours FUA: the block layer then sends FLUSH
	 * (fsync, journal commits) and FUA writes through instead of dropping
	 * them, and those are what the write path makes durable on both
	 * nodes. */
	p->basic.attrs = UBLK_ATTR_VOLATILE_CACHE | UBLK_ATTR_FUA;
	p->basic.logical_bs_shift = ublk_log2(g->block);
	p->basic.physical_bs_shift = 12;
	p->basic.io_min_shift = 12;
	p->basic.io_opt_shift = 12;
	p->basic.max_sectors = g->max_io >> 9;
	p->basic.dev_sectors = ublk_capacity(g) >> 9;
	/* discard_alignment is the offset of the first aligned block: 0 means
	 * discards start on multiples of the granularity. */
	p->discard.discard_alignment = 0;
	p->discard.discard_granularity = UBLK_DISCARD_GRANULARITY;
	p->discard.max_discard_sectors = discard;
	p->discard.max_write_zeroes_sectors = discard;
	p->discard.max_discard_segments = 1;	/* the kernel's only choice */
}

int
ublk_iod_to_req(const struct ublksrv_io_desc *iod, const struct ublk_geom *g, struct req *r)
{
	uint32_t op = ublksrv_get_op(iod), fl = ublksrv_get_flags(iod);
	uint64_t off = iod->start_sector << 9, len = (uint64_t)iod->nr_sectors << 9;
	uint64_t cap = ublk_capacity(g);

	r->flags = 0;
	r->off = 0;
	r->len = 0;
	switch (op) {
	case UBLK_IO_OP_READ:
		r->type = REQ_READ;
		break;
	case UBLK_IO_OP_WRITE:
		r->type = REQ_WRITE;
		break;
	case UBLK_IO_OP_FLUSH:
		r->type = REQ_FLUSH;	/* the whole disk: no range */
		return 0;
	case UBLK_IO_OP_DISCARD:
		r->type = REQ_TRIM;
		break;
	case UBLK_IO_OP_WRITE_ZEROES:
		r->type = REQ_WRITE_ZEROES;
		/* NOUNMAP: the blocks must stay allocated. */
		if (fl & (UBLK_IO_F_NOUNMAP >> 8))
			r->flags |= REQ_F_NO_HOLE;
		break;
	default:
		r->type = REQ_FLUSH;
		return -EOPNOTSUPP;
	}
	if (r->type != REQ_READ && (fl & (UBLK_IO_F_FUA >> 8)))
		r->flags |= REQ_F_FUA;
	if (len == 0 || len > UINT32_MAX || off > cap || len > cap - off)
		return -EIO;
	if ((r->type == REQ_READ || r->type == REQ_WRITE) && len > g->max_io)
		return -EIO;
	r->off = off;
	r->len = (uint32_t)len;
	return 0;
}

int32_t
ublk_result(const struct req *r)
{
	if (r->res < 0)
		return r->res;
	if (r->type == REQ_READ || r->type == REQ_WRITE)
		return (int32_t)r->len;
	return 0;
}

static size_t
ublk_page(void)
{
	long ps = sysconf(_SC_PAGESIZE);

	return ps > 0 ? (size_t)ps : 4096;
}

size_t
ublk_iod_map_size(uint32_t depth)
{
	return ALIGN_UP((size_t)depth * sizeof(struct ublksrv_io_desc), ublk_page());
}

off_t
ublk_iod_map_offset(uint32_t q)
{
	/* The kernel spaces the queues by the largest possible area. */
	return (off_t)(UBLKSRV_CMD_BUF_OFFSET + (uint64_t)q * ublk_iod_map_size(UBLK_MAX_QUEUE_DEPTH));
}

/* The 80 bytes after the first 48 of a 128-byte SQE carry the command. */
static void
ublk_prep_uring_cmd(struct io_uring_sqe *sqe, int fd, uint32_t cmd_op, const void *cmd,
		    size_t len)
{
	_Static_assert(sizeof(struct ublksrv_ctrl_cmd) <= 80, "control command fits the SQE");
	_Static_assert(sizeof(struct ublksrv_io_cmd) <= 80, "I/O command fits the SQE");
	_Static_assert(offsetof(struct io_uring_sqe, cmd) == 48, "command area of the SQE");
	memset(sqe, 0, 2 * sizeof(*sqe));	/* SQE128: both halves */
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = fd;
	sqe->cmd_op = cmd_op;
	memcpy(sqe->cmd, cmd, len);
}

void
ublk_prep_io_cmd(struct io_uring_sqe *sqe, int fd, uint32_t cmd_op, uint16_t q, uint16_t tag,
		 int32_t result, void *buf)
{
	struct ublksrv_io_cmd c = {
		.q_id = q,
		.tag = tag,
		.result = result,
		.addr = (uint64_t)(uintptr_t)buf,
	};

	ublk_prep_uring_cmd(sqe, fd, cmd_op, &c, sizeof(c));
}

void
ublk_prep_ctrl_cmd(struct io_uring_sqe *sqe, int fd, uint32_t cmd_op,
		   const struct ublksrv_ctrl_cmd *cmd)
{
	ublk_prep_uring_cmd(sqe, fd, cmd_op, cmd, sizeof(*cmd));
}

const char *
ublk_cmd_name(uint32_t cmd_op)
{
	switch (cmd_op) {
	case UBLK_CMD_GET_DEV_INFO:        return "GET_DEV_INFO";
	case UBLK_CMD_ADD_DEV:             return "ADD_DEV";
	case UBLK_CMD_DEL_DEV:             return "DEL_DEV";
	case UBLK_CMD_START_DEV:           return "START_DEV";
	case UBLK_CMD_STOP_DEV:            return "STOP_DEV";
	case UBLK_CMD_SET_PARAMS:          return "SET_PARAMS";
	case UBLK_CMD_GET_PARAMS:          return "GET_PARAMS";
	case UBLK_CMD_START_USER_RECOVERY: return "START_USER_RECOVERY";
	case UBLK_CMD_END_USER_RECOVERY:   return "END_USER_RECOVERY";
	case UBLK_IO_FETCH_REQ:            return "FETCH_REQ";
	case UBLK_IO_COMMIT_AND_FETCH_REQ: return "COMMIT_AND_FETCH_REQ";
	default:                           return "?";
	}
}

/* ------------------------------------------------------------------ */
/* Control plane                                                       */
/* ------------------------------------------------------------------ */

#define UBLK_POLL_MS   100
#define UBLK_CANCEL_MS 5000   /* how long a cancelled command may take to end */

struct ublk_ctrl {
	int fd;                   /* /dev/ublk-control */
	struct io_uring ring;     /* SQE128, private to the owning thread */
	uint64_t seq;             /* user_data of the last command; 0 = not a command */
};

int
ublk_ctrl_open(struct ublk_ctrl **out, const char *path)
{
	struct ublk_ctrl *c = calloc(1, sizeof(*c));
	int rc;

	if (!c)
		return -ENOMEM;
	c->fd = open(path ? path : UBLK_CONTROL_PATH, O_RDWR | O_CLOEXEC);
	if (c->fd < 0) {
		rc = -errno;
		free(c);
		return rc;
	}
	rc = io_uring_queue_init(8, &c->ring, IORING_SETUP_SQE128);
	if (rc < 0) {
		close(c->fd);
		free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void
ublk_ctrl_close(struct ublk_ctrl *c)
{
	if (!c)
		return;
	io_uring_queue_exit(&c->ring);
	close(c->fd);
	free(c);
}

static struct io_uring_sqe *
ublk_ctrl_sqe(struct ublk_ctrl *c)
{
	struct io_uring_sqe *sqe;

	while (!(sqe = io_uring_get_sqe(&c->ring)))
		io_uring_submit(&c->ring);
	return sqe;
}

/* Runs one command and waits for its completion.  The kernel runs control
 * commands in an io_uring worker (they may block), so the wait happens here,
 * in slices: between slices the deadline and poll() may cancel it.  A
 * cancelled command's completion is still awaited (briefly), so that it is
 * not mistaken for the next command's; any late one is told apart by seq. */
static int
ublk_ctrl_run(struct ublk_ctrl *c, uint32_t op, struct ublksrv_ctrl_cmd *cmd, unsigned timeout_ms,
	      ublk_poll_fn poll, void *arg)
{
	struct io_uring_sqe *sqe = ublk_ctrl_sqe(c);
	uint64_t seq = ++c->seq, start = util_now_ms(), cancelled_at = 0;
	int rc, cancel_rc = 0;

	cmd->queue_id = (uint16_t)-1;	/* not a queue command */
	ublk_prep_ctrl_cmd(sqe, c->fd, op, cmd);
	sqe->user_data = seq;
	rc = io_uring_submit(&c->ring);
	if (rc < 0)
		return rc;
	for (;;) {
		struct __kernel_timespec ts = { .tv_nsec = UBLK_POLL_MS * 1000000ll };
		struct io_uring_cqe *cqe;
		uint64_t now;

		rc = io_uring_wait_cqe_timeout(&c->ring, &cqe, &ts);
		if (rc == 0) {
			uint64_t ud = cqe->user_data;
			int res = cqe->res;

			io_uring_cqe_seen(&c->ring, cqe);
			if (ud != seq)
				continue;	/* a cancel, or a command given up on earlier */
			if (cancel_rc)
				return cancel_rc;
			return res;
		}
		if (rc != -ETIME && rc != -EINTR)
			return rc;
		now = util_now_ms();
		if (cancel_rc) {
			if (now - cancelled_at >= UBLK_CANCEL_MS) {
				LOG_WARN("ublk: %s did not end after its cancellation",
					 ublk_cmd_name(op));
				return cancel_rc;
			}
			continue;
		}
		if (timeout_ms && now - start >= timeout_ms)
			cancel_rc = -ETIMEDOUT;
		else if (poll)
			cancel_rc = poll(arg);
		if (cancel_rc) {
			sqe = ublk_ctrl_sqe(c);
			io_uring_prep_cancel64(sqe, seq, 0);
			sqe->user_data = 0;
			io_uring_submit(&c->ring);
			cancelled_at = now;
		}
	}
}

static int
ublk_ctrl_simple(struct ublk_ctrl *c, uint32_t op, uint32_t dev_id, void *buf, uint16_t len,
		 uint64_t data0)
{
	struct ublksrv_ctrl_cmd cmd = {
		.dev_id = dev_id,
		.addr = (uint64_t)(uintptr_t)buf,
		.len = len,
		.data = { data0 },
	};

	return ublk_ctrl_run(c, op, &cmd, 0, NULL, NULL);
}

int
ublk_add_dev(struct ublk_ctrl *c, struct ublksrv_ctrl_dev_info *info)
{
	return ublk_ctrl_simple(c, UBLK_CMD_ADD_DEV, info->dev_id, info, sizeof(*info), 0);
}

int
ublk_set_params(struct ublk_ctrl *c, uint32_t dev_id, const struct ublk_params *p)
{
	struct ublk_params copy = *p;

	copy.len = sizeof(copy);
	return ublk_ctrl_simple(c, UBLK_CMD_SET_PARAMS, dev_id, &copy, sizeof(copy), 0);
}

int
ublk_get_params(struct ublk_ctrl *c, uint32_t dev_id, struct ublk_params *p)
{
	memset(p, 0, sizeof(*p));
	p->len = sizeof(*p);
	p->types = UBLK_PARAM_TYPE_BASIC | UBLK_PARAM_TYPE_DISCARD;
	return ublk_ctrl_simple(c, UBLK_CMD_GET_PARAMS, dev_id, p, sizeof(*p), 0);
}

int
ublk_get_dev_info(struct ublk_ctrl *c, uint32_t dev_id, struct ublksrv_ctrl_dev_info *info)
{
	memset(info, 0, sizeof(*info));
	return ublk_ctrl_simple(c, UBLK_CMD_GET_DEV_INFO, dev_id, info, sizeof(*info), 0);
}

int
ublk_start_dev(struct ublk_ctrl *c, uint32_t dev_id, pid_t pid, ublk_poll_fn poll, void *arg)
{
	struct ublksrv_ctrl_cmd cmd = { .dev_id = dev_id, .data = { (uint64_t)pid } };

	return ublk_ctrl_run(c, UBLK_CMD_START_DEV, &cmd, 0, poll, arg);
}

int
ublk_stop_dev(struct ublk_ctrl *c, uint32_t dev_id)
{
	return ublk_ctrl_simple(c, UBLK_CMD_STOP_DEV, dev_id, NULL, 0, 0);
}

int
ublk_del_dev(struct ublk_ctrl *c, uint32_t dev_id, unsigned timeout_ms)
{
	struct ublksrv_ctrl_cmd cmd = { .dev_id = dev_id };

	return ublk_ctrl_run(c, UBLK_CMD_DEL_DEV, &cmd, timeout_ms, NULL, NULL);
}

int
ublk_start_recovery(struct ublk_ctrl *c, uint32_t dev_id)
{
	return ublk_ctrl_simple(c, UBLK_CMD_START_USER_RECOVERY, dev_id, NULL, 0, 0);
}

int
ublk_end_recovery(struct ublk_ctrl *c, uint32_t dev_id, pid_t pid, ublk_poll_fn poll, void *arg)
{
	struct ublksrv_ctrl_cmd cmd = { .dev_id = dev_id, .data = { (uint64_t)pid } };

	return ublk_ctrl_run(c, UBLK_CMD_END_USER_RECOVERY, &cmd, 0, poll, arg);
}

/* ------------------------------------------------------------------ */
/* Data plane                                                          */
/* ------------------------------------------------------------------ */

enum ublk_tag_state {
	UT_KERNEL,   /* a FETCH_REQ or COMMIT_AND_FETCH_REQ is with the kernel */
	UT_SERVING,  /* the request is in the write path */
	UT_ENDED,    /* the kernel aborted or refused the command: never again */
};

struct ublk_tag {
	struct req r;            /* first: the write path sees only this */
	struct ev_op op;         /* completion of the tag's command on /dev/ublkcN */
	struct ublk_queue *uq;
	uint8_t state;           /* enum ublk_tag_state */
};

struct ublk_queue {
	struct ublk_queue_params p;
	const struct ublksrv_io_desc *iods; /* the kernel's descriptors, read-only */
	size_t iods_len;
	void *bufs;              /* depth * max_io, one slice per tag */
	size_t bufs_len;
	struct ublk_tag *tags;
	uint32_t nended;         /* tags in UT_ENDED */
	int failed;              /* failed() was called */
};

static void
ublk_tag_cmd(struct ublk_tag *t, uint32_t cmd_op, int32_t result)
{
	struct ublk_queue *uq = t->uq;
	struct io_uring_sqe *sqe = ev_get_sqe(uq->p.loop);

	t->state = UT_KERNEL;
	ublk_prep_io_cmd(sqe, uq->p.fd, cmd_op, uq->p.q_id, t->r.tag, result, t->r.buf);
	ev_sqe_set_op(sqe, &t->op);
}

/* The write path is done with the request: hand the result back and wait
 * for the tag's next request in the same command. */
static void
ublk_req_complete(struct req *r)
{
	struct ublk_tag *t = (struct ublk_tag *)r;

	VERIFY(t->state == UT_SERVING);
	ublk_tag_cmd(t, UBLK_IO_COMMIT_AND_FETCH_REQ, ublk_result(r));
}

static void
ublk_tag_ended(struct ublk_tag *t, int res)
{
	struct ublk_queue *uq = t->uq;

	t->state = UT_ENDED;
	if (res != UBLK_IO_RES_ABORT && !uq->failed) {
		int err = res < 0 ? res : -EPROTO;

		LOG_WARN("ublk queue %u tag %u: the kernel refused the command: %s",
			 uq->p.q_id, t->r.tag, strerror(-err));
		uq->failed = 1;
		uq->p.failed(uq, err, uq->p.arg);
	}
	if (++uq->nended == uq->p.geom.depth)
		uq->p.ended(uq, uq->p.arg);	/* may free uq: last */
}

static void
ublk_tag_done(struct ev_op *op, int res, uint32_t flags)
{
	struct ublk_tag *t = container_of(op, struct ublk_tag, op);
	struct ublk_queue *uq = t->uq;
	struct ublksrv_io_desc iod;
	int rc;

	(void)flags;
	VERIFY(t->state == UT_KERNEL);
	if (res != UBLK_IO_RES_OK) {
		/* UBLK_IO_RES_ABORT: the device is going away (STOP_DEV, or
		 * the ring is being torn down).  Anything else is a refusal. */
		ublk_tag_ended(t, res);
		return;
	}
	/* The kernel wrote the descriptor before completing the command. */
	memcpy(&iod, &uq->iods[t->r.tag], sizeof(iod));
	rc = ublk_iod_to_req(&iod, &uq->p.geom, &t->r);
	if (rc) {
		LOG_WARN("ublk queue %u tag %u: op %u at sector %llu, %u sectors: %s",
			 uq->p.q_id, t->r.tag, ublksrv_get_op(&iod),
			 (unsigned long long)iod.start_sector, iod.nr_sectors, strerror(-rc));
		t->r.res = rc;
		ublk_tag_cmd(t, UBLK_IO_COMMIT_AND_FETCH_REQ, rc);
		return;
	}
	t->state = UT_SERVING;
	req_submit(uq->p.sink, &t->r);
}

int
ublk_queue_new(struct ublk_queue **out, const struct ublk_queue_params *p)
{
	struct ublk_queue *uq = calloc(1, sizeof(*uq));
	void *iods;
	int rc;

	if (!uq)
		return -ENOMEM;
	uq->p = *p;
	uq->iods_len = ublk_iod_map_size(p->geom.depth);
	iods = mmap(NULL, uq->iods_len, PROT_READ, MAP_SHARED | MAP_POPULATE, p->fd,
		    ublk_iod_map_offset(p->q_id));
	if (iods == MAP_FAILED) {
		rc = -errno;
		free(uq);
		return rc;
	}
	uq->iods = iods;
	uq->bufs_len = (size_t)p->geom.depth * p->geom.max_io;
	/* Address space only: pages are touched as requests use them. */
	uq->bufs = mmap(NULL, uq->bufs_len, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uq->tags = calloc(p->geom.depth, sizeof(*uq->tags));
	if (uq->bufs == MAP_FAILED || !uq->tags) {
		if (uq->bufs == MAP_FAILED)
			uq->bufs = NULL;
		ublk_queue_free(uq);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < p->geom.depth; i++) {
		struct ublk_tag *t = &uq->tags[i];

		t->uq = uq;
		t->op.cb = ublk_tag_done;
		t->r.tag = (uint16_t)i;
		t->r.buf = (char *)uq->bufs + (size_t)i * p->geom.max_io;
		t->r.complete = ublk_req_complete;
		ublk_tag_cmd(t, UBLK_IO_FETCH_REQ, -1);
	}
	*out = uq;
	return 0;
}

void
ublk_queue_free(struct ublk_queue *uq)
{
	if (!uq)
		return;
	if (uq->iods)
		munmap((void *)uq->iods, uq->iods_len);
	if (uq->bufs)
		munmap(uq->bufs, uq->bufs_len);
	free(uq->tags);
	free(uq);
}
