#include "ublk/nbd_srv.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "ublk/nbd_proto.h"

#define NBDS_RX_BUF  (64u * 1024)
#define NBDS_TX_TAGS 64          /* replies per sendmsg */

struct nbds_tag {
	struct req r;                /* first: the write path sees only this */
	struct nbds_conn *c;
	struct nbds_tag *next;       /* free list or send queue */
	uint64_t handle;
	uint16_t cmd;
	uint32_t err;                /* NBD error decided before submission, or 0 */
	uint32_t hdr_len;
	uint32_t data_len;           /* READ data following the header */
	/* A READ or WRITE longer than max_payload ("big") is served in
	 * pieces of at most max_payload, one after the other through this
	 * tag's request and buffer: memory stays depth * max_payload. */
	uint64_t big_off;            /* the client's request */
	uint32_t big_len;            /* 0: an ordinary request */
	uint32_t big_done;           /* bytes of finished pieces (WRITE: written or skipped; READ: sent) */
	int big_more;                /* READ: pieces follow the one queued for sending */
	struct ev_op big_op;         /* a piece's completion continues from the loop */
	union {
		struct nbd_simple_reply simple;
		struct {
			struct nbd_structured_reply h;
			union {
				struct nbd_structured_reply_offset_data data;
				struct nbd_structured_reply_error error;
			} u;
		} __attribute__((packed)) st;
	} hdr;
};

struct nbds_conn {
	struct nbds_params p;
	char name[128];
	struct nbds_tag *tags;
	void *bufs;                  /* depth * max_payload, mmap'd once */
	size_t bufs_len;
	struct nbds_tag *free;
	uint32_t busy;               /* tags not on the free list */

	char *rx;                    /* NBDS_RX_BUF */
	uint32_t rx_head, rx_tail;
	struct ev_op rx_op;
	int rx_busy;                 /* a recv is in flight */
	int rx_stopped;              /* DISC, EOF, error or shutdown: no more requests */
	int stalled;                 /* waiting for a free tag */
	struct nbds_tag *payload;    /* WRITE (or piece) whose payload is being received */
	uint32_t payload_got;
	int in_rx, rx_again;         /* nbds_rx_pump is running: run it again instead of nesting */
	struct nbds_tag *big;        /* the big request in progress: at most one */
	int big_stalled;             /* another big request waits for it */

	/* A big READ's reply is several sends (header, then each piece's
	 * data); nothing else may come between them in the stream, so other
	 * replies wait on the held queue meanwhile. */
	struct nbds_tag *tx_owner;
	struct nbds_tag *held_head, *held_tail;

	int dead;                    /* socket unusable: drop replies */
	struct nbds_tag *sq_head, *sq_tail;
	struct ev_op tx_op;
	int tx_busy;
	uint32_t tx_skip;            /* bytes of sq_head already sent */
	uint32_t tx_count;           /* tags in the sendmsg in flight */
	struct msghdr msg;
	struct iovec iov[NBDS_TX_TAGS * 2];
	int nest;                    /* entry points on the stack */
};

static void nbds_rx_pump(struct nbds_conn *c);
static void nbds_tx_pump(struct nbds_conn *c);
static void nbds_big_piece_done(struct nbds_conn *c, struct nbds_tag *t, int res);
static void nbds_big_read_sent(struct nbds_conn *c, struct nbds_tag *t);

uint32_t
nbds_errno_to_nbd(int res)
{
	switch (-res) {
	case 0:         return 0;
	case EROFS:
	case EPERM:     return NBD_EPERM;
	case ENOSPC:    return NBD_ENOSPC;
	case EINVAL:    return NBD_EINVAL;
	case ENOMEM:    return NBD_ENOMEM;
	case EOVERFLOW: return NBD_EOVERFLOW;
	case ENOTSUP:   return NBD_ENOTSUP;
	case ESHUTDOWN: return NBD_ESHUTDOWN;
	default:        return NBD_EIO;
	}
}

/* Frees the connection once nothing refers to it any more.  Only the
 * outermost entry point may do it (nbds_leave): the write path can complete
 * a request synchronously while the receive loop is still running. */
static void
nbds_maybe_close(struct nbds_conn *c)
{
	if (c->nest || !c->rx_stopped || c->rx_busy || c->tx_busy || c->busy)
		return;
	LOG_DEBUG("nbd %s: closed", c->name);
	close(c->p.fd);
	munmap(c->bufs, c->bufs_len);
	free(c->rx);
	free(c->tags);
	c->p.closed(c, c->p.arg);
	free(c);
}

static void
nbds_enter(struct nbds_conn *c)
{
	c->nest++;
}

static void
nbds_leave(struct nbds_conn *c)
{
	if (--c->nest == 0)
		nbds_maybe_close(c);
}

static void
nbds_stop_rx(struct nbds_conn *c)
{
	c->rx_stopped = 1;
}

/* The socket failed or the client broke the protocol: stop everything.
 * Requests in flight still finish before the connection is freed. */
static void
nbds_fail(struct nbds_conn *c, const char *why)
{
	if (!c->dead && why)
		LOG_WARN("nbd %s: %s: dropping the connection", c->name, why);
	c->dead = 1;
	nbds_stop_rx(c);
	/* Wakes a pending recv or send with an error. */
	shutdown(c->p.fd, SHUT_RDWR);
}

/* The big request is over (answered, or given up): the next may start. */
static void
nbds_big_end(struct nbds_conn *c)
{
	c->big = NULL;
	if (c->big_stalled) {
		c->big_stalled = 0;
		nbds_rx_pump(c);
	}
}

static void
nbds_tag_put(struct nbds_conn *c, struct nbds_tag *t)
{
	t->big_len = 0;
	t->big_more = 0;
	t->next = c->free;
	c->free = t;
	c->busy--;
	if (c->big == t)	/* given up part-way (the connection is ending) */
		nbds_big_end(c);
	if (c->stalled) {
		c->stalled = 0;
		nbds_rx_pump(c);
	}
}

static void
nbds_append(struct nbds_tag **head, struct nbds_tag **tail, struct nbds_tag *t)
{
	t->next = NULL;
	if (*tail)
		(*tail)->next = t;
	else
		*head = t;
	*tail = t;
}

/* Queues a reply, or a piece of the owner's, for sending. */
static void
nbds_queue(struct nbds_conn *c, struct nbds_tag *t)
{
	if (c->tx_owner && c->tx_owner != t) {
		nbds_append(&c->held_head, &c->held_tail, t);
		return;
	}
	nbds_append(&c->sq_head, &c->sq_tail, t);
	nbds_tx_pump(c);
}

/* The big READ's reply is all queued: the replies held back follow it. */
static void
nbds_owner_end(struct nbds_conn *c)
{
	c->tx_owner = NULL;
	if (!c->held_head)
		return;
	if (c->sq_tail)
		c->sq_tail->next = c->held_head;
	else
		c->sq_head = c->held_head;
	c->sq_tail = c->held_tail;
	c->held_head = c->held_tail = NULL;
	nbds_tx_pump(c);
}

static void
nbds_reply(struct nbds_conn *c, struct nbds_tag *t)
{
	if (c->dead) {
		nbds_tag_put(c, t);
		return;
	}
	t->data_len = 0;
	if (c->p.structured && t->cmd == NBD_CMD_READ) {
		struct nbd_structured_reply *h = &t->hdr.st.h;

		h->magic = htobe32(NBD_STRUCTURED_REPLY_MAGIC);
		h->flags = htobe16(NBD_REPLY_FLAG_DONE);
		h->handle = t->handle;
		if (t->err) {
			h->type = htobe16(NBD_REPLY_TYPE_ERROR);
			h->length = htobe32(sizeof(t->hdr.st.u.error));
			t->hdr.st.u.error.error = htobe32(t->err);
			t->hdr.st.u.error.len = 0;
			t->hdr_len = sizeof(*h) + sizeof(t->hdr.st.u.error);
		} else {
			h->type = htobe16(NBD_REPLY_TYPE_OFFSET_DATA);
			h->length = htobe32(sizeof(t->hdr.st.u.data) + t->r.len);
			t->hdr.st.u.data.offset = htobe64(t->r.off);
			t->hdr_len = sizeof(*h) + sizeof(t->hdr.st.u.data);
			t->data_len = t->r.len;
		}
	} else {
		/* Simple replies are allowed for every command but READ once
		 * structured replies are negotiated. */
		t->hdr.simple.magic = htobe32(NBD_SIMPLE_REPLY_MAGIC);
		t->hdr.simple.error = htobe32(t->err);
		t->hdr.simple.handle = t->handle;
		t->hdr_len = sizeof(t->hdr.simple);
		if (t->cmd == NBD_CMD_READ && !t->err)
			t->data_len = t->r.len;
	}
	nbds_queue(c, t);
}

static void
nbds_req_complete(struct req *r)
{
	struct nbds_tag *t = (struct nbds_tag *)r;
	struct nbds_conn *c = t->c;

	if (t->big_len) {
		/* The next piece is submitted from the loop, not from inside
		 * the write path's completion. */
		struct io_uring_sqe *sqe = ev_get_sqe(c->p.loop);

		io_uring_prep_nop(sqe);
		ev_sqe_set_op(sqe, &t->big_op);
		return;
	}
	nbds_enter(c);
	t->err = nbds_errno_to_nbd(r->res);
	nbds_reply(c, t);
	nbds_leave(c);
}

static void
nbds_tx_done(struct ev_op *op, int res, uint32_t flags)
{
	struct nbds_conn *c = container_of(op, struct nbds_conn, tx_op);
	uint32_t left;

	(void)flags;
	nbds_enter(c);
	if (res < 0) {
		c->tx_busy = 0;
		if (res != -EPIPE && res != -ECONNRESET)
			nbds_fail(c, strerror(-res));
		else
			nbds_fail(c, NULL);
		nbds_tx_pump(c);
		nbds_leave(c);
		return;
	}
	left = (uint32_t)res;
	while (c->sq_head && left) {
		struct nbds_tag *t = c->sq_head;
		uint32_t rest = t->hdr_len + t->data_len - c->tx_skip;

		if (left < rest) {
			c->tx_skip += left;
			break;
		}
		left -= rest;
		c->tx_skip = 0;
		c->sq_head = t->next;
		if (!c->sq_head)
			c->sq_tail = NULL;
		/* tx_busy stays set meanwhile: what this may queue goes out
		 * in the next sendmsg, not one built from tags being unlinked. */
		if (t->big_more)
			nbds_big_read_sent(c, t);
		else
			nbds_tag_put(c, t);
	}
	c->tx_busy = 0;
	nbds_tx_pump(c);
	nbds_leave(c);
}

static void
nbds_tx_pump(struct nbds_conn *c)
{
	struct io_uring_sqe *sqe;
	struct nbds_tag *t;
	uint32_t n = 0, skip = c->tx_skip;

	if (c->tx_busy || !c->sq_head)
		return;
	if (c->dead) {	/* nothing more will be sent: release what was queued */
		nbds_owner_end(c);
		while ((t = c->sq_head)) {
			c->sq_head = t->next;
			nbds_tag_put(c, t);
		}
		c->sq_tail = NULL;
		c->tx_skip = 0;
		return;
	}
	for (t = c->sq_head; t && n + 2 <= ARRAY_SIZE(c->iov); t = t->next) {
		uint32_t hs = MIN(skip, t->hdr_len);

		if (hs < t->hdr_len) {
			c->iov[n].iov_base = (char *)&t->hdr + hs;
			c->iov[n++].iov_len = t->hdr_len - hs;
		}
		if (t->data_len) {
			uint32_t ds = skip - hs;
			c->iov[n].iov_base = (char *)t->r.buf + ds;
			c->iov[n++].iov_len = t->data_len - ds;
		}
		skip = 0;
	}
	memset(&c->msg, 0, sizeof(c->msg));
	c->msg.msg_iov = c->iov;
	c->msg.msg_iovlen = n;
	sqe = ev_get_sqe(c->p.loop);
	io_uring_prep_sendmsg(sqe, c->p.fd, &c->msg, MSG_NOSIGNAL);
	ev_sqe_set_op(sqe, &c->tx_op);
	c->tx_busy = 1;
}

/* Checks a request the way the NBD spec asks; returns the NBD error or 0.
 * *drop is set when the stream cannot continue (a WRITE payload too large
 * to receive). */
static uint32_t
nbds_validate(struct nbds_conn *c, uint16_t cmd, uint16_t flags, uint64_t off, uint32_t len,
	      int *drop)
{
	uint16_t allowed = 0;

	*drop = 0;
	switch (cmd) {
	case NBD_CMD_READ:
		break;
	case NBD_CMD_WRITE:
	case NBD_CMD_TRIM:
		allowed = NBD_CMD_FLAG_FUA;
		break;
	case NBD_CMD_WRITE_ZEROES:
		allowed = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE;
		break;
	case NBD_CMD_FLUSH:
		return (off || len || flags) ? NBD_EINVAL : 0;
	default:
		return NBD_EINVAL;
	}
	if (cmd == NBD_CMD_WRITE && len > c->p.max_request) {
		*drop = 1;
		return NBD_EINVAL;
	}
	if (flags & ~allowed)
		return NBD_EINVAL;
	if (cmd == NBD_CMD_READ && len > c->p.max_request)
		return NBD_EINVAL;
	if (len == 0)
		return NBD_EINVAL;
	if (off > c->p.size || len > c->p.size - off)
		return (cmd == NBD_CMD_WRITE || cmd == NBD_CMD_WRITE_ZEROES) ? NBD_ENOSPC : NBD_EINVAL;
	if (c->p.read_only && cmd != NBD_CMD_READ)
		return NBD_EPERM;
	return 0;
}

/* Longer than a tag's buffer: served in pieces (see struct nbds_tag). */
static int
nbds_is_big(const struct nbds_conn *c, uint16_t cmd, uint32_t len)
{
	return (cmd == NBD_CMD_READ || cmd == NBD_CMD_WRITE) && len > c->p.max_payload;
}

/* Points the tag's request at the next piece of its big request. */
static void
nbds_big_next(struct nbds_conn *c, struct nbds_tag *t)
{
	t->r.off = t->big_off + t->big_done;
	t->r.len = MIN(c->p.max_payload, t->big_len - t->big_done);
}

static void
nbds_dispatch(struct nbds_conn *c, struct nbds_tag *t)
{
	if (t->err) {
		/* A big WRITE refused up front still has payload to consume,
		 * piece by piece; none of it is submitted. */
		if (t->big_len)
			nbds_big_piece_done(c, t, 0);
		else
			nbds_reply(c, t);
		return;
	}
	req_submit(c->p.sink, &t->r);
}

/* A piece of a big WRITE is done: written, failed, or skipped after an
 * error.  The reply, with the first error, goes once the last is done. */
static void
nbds_big_write_done(struct nbds_conn *c, struct nbds_tag *t, int res)
{
	if (res && !t->err)
		t->err = nbds_errno_to_nbd(res);
	t->big_done += t->r.len;
	if (t->big_done == t->big_len) {
		/* Ended before the reply: a reply dropped on a dead
		 * connection frees the tag, which must not be c->big then. */
		nbds_big_end(c);
		nbds_reply(c, t);
		return;
	}
	if (c->rx_stopped) {	/* the rest never arrives: no reply, no more pieces */
		nbds_tag_put(c, t);
		return;
	}
	nbds_big_next(c, t);
	c->payload = t;
	c->payload_got = 0;
	nbds_rx_pump(c);
}

/* The header that goes before a big READ's piece: with structured replies
 * one OFFSET_DATA chunk per piece, DONE on the last; with a simple reply,
 * the one header before the first piece's data, none before the others. */
static void
nbds_big_read_hdr(struct nbds_conn *c, struct nbds_tag *t)
{
	t->big_more = t->big_done + t->r.len < t->big_len;
	t->data_len = t->r.len;
	if (c->p.structured) {
		struct nbd_structured_reply *h = &t->hdr.st.h;

		h->magic = htobe32(NBD_STRUCTURED_REPLY_MAGIC);
		h->flags = htobe16(t->big_more ? 0 : NBD_REPLY_FLAG_DONE);
		h->type = htobe16(NBD_REPLY_TYPE_OFFSET_DATA);
		h->handle = t->handle;
		h->length = htobe32(sizeof(t->hdr.st.u.data) + t->r.len);
		t->hdr.st.u.data.offset = htobe64(t->r.off);
		t->hdr_len = sizeof(*h) + sizeof(t->hdr.st.u.data);
	} else if (t->big_done == 0) {
		t->hdr.simple.magic = htobe32(NBD_SIMPLE_REPLY_MAGIC);
		t->hdr.simple.error = 0;
		t->hdr.simple.handle = t->handle;
		t->hdr_len = sizeof(t->hdr.simple);
	} else {
		t->hdr_len = 0;
	}
}

/* A piece of a big READ was read: it goes out as the next part of the
 * one reply, which owns the stream until its last piece is queued. */
static void
nbds_big_read_done(struct nbds_conn *c, struct nbds_tag *t, int res)
{
	if (c->dead) {
		nbds_owner_end(c);
		nbds_tag_put(c, t);
		return;
	}
	if (res && t->big_done && !c->p.structured) {
		/* The simple reply's header said success and data is on its
		 * way: the error cannot be told, the stream cannot go on. */
		nbds_fail(c, "READ failed after the start of its reply");
		nbds_owner_end(c);
		nbds_tag_put(c, t);
		return;
	}
	if (res) {	/* an error reply, or a structured reply's last chunk */
		t->err = nbds_errno_to_nbd(res);
		nbds_reply(c, t);
	} else {
		nbds_big_read_hdr(c, t);
		if (t->big_more)
			c->tx_owner = t;
		nbds_queue(c, t);
		if (t->big_more)
			return;
	}
	nbds_owner_end(c);
	nbds_big_end(c);
}

/* A piece of a big READ is in the socket: read the next one. */
static void
nbds_big_read_sent(struct nbds_conn *c, struct nbds_tag *t)
{
	t->big_more = 0;
	if (c->dead) {
		nbds_owner_end(c);
		nbds_tag_put(c, t);
		return;
	}
	t->big_done += t->r.len;
	nbds_big_next(c, t);
	req_submit(c->p.sink, &t->r);
}

static void
nbds_big_piece_done(struct nbds_conn *c, struct nbds_tag *t, int res)
{
	if (t->cmd == NBD_CMD_WRITE)
		nbds_big_write_done(c, t, res);
	else
		nbds_big_read_done(c, t, res);
}

/* A big request's piece completed: continue from the loop, not from inside
 * the write path's completion (the next piece is submitted from here). */
static void
nbds_big_op_done(struct ev_op *op, int res, uint32_t flags)
{
	struct nbds_tag *t = container_of(op, struct nbds_tag, big_op);
	struct nbds_conn *c = t->c;

	(void)res;
	(void)flags;
	nbds_enter(c);
	nbds_big_piece_done(c, t, t->r.res);
	nbds_leave(c);
}

/* Gives back the tag of a WRITE whose payload will never fully arrive: it
 * is not submitted and gets no reply. */
static void
nbds_drop_payload(struct nbds_conn *c)
{
	struct nbds_tag *t = c->payload;

	if (t) {
		c->payload = NULL;
		nbds_tag_put(c, t);
	}
}

static void
nbds_rx_done(struct ev_op *op, int res, uint32_t flags)
{
	struct nbds_conn *c = container_of(op, struct nbds_conn, rx_op);

	(void)flags;
	nbds_enter(c);
	c->rx_busy = 0;
	if (res == -EINTR || res == -EAGAIN) {
		nbds_rx_pump(c);
		nbds_leave(c);
		return;
	}
	if (res <= 0) {
		if (res == 0 && !c->payload)
			LOG_DEBUG("nbd %s: client closed the connection", c->name);
		else if (res == 0)
			nbds_fail(c, "client closed the connection in the middle of a write");
		else if (!c->dead)
			nbds_fail(c, strerror(-res));
		nbds_stop_rx(c);
		nbds_drop_payload(c);
		nbds_leave(c);
		return;
	}
	if (c->payload)
		c->payload_got += (uint32_t)res;
	else
		c->rx_tail += (uint32_t)res;
	nbds_rx_pump(c);
	nbds_leave(c);
}

static void
nbds_recv(struct nbds_conn *c, void *buf, uint32_t len, int flags)
{
	struct io_uring_sqe *sqe = ev_get_sqe(c->p.loop);

	io_uring_prep_recv(sqe, c->p.fd, buf, len, flags);
	ev_sqe_set_op(sqe, &c->rx_op);
	c->rx_busy = 1;
}

/* Moves the buffered part of a WRITE's (or piece's) payload into its tag's
 * buffer; submits it once whole, else receives the rest directly there. */
static void
nbds_payload_step(struct nbds_conn *c)
{
	struct nbds_tag *t = c->payload;
	uint32_t take = MIN(c->rx_tail - c->rx_head, t->r.len - c->payload_got);

	memcpy((char *)t->r.buf + c->payload_got, c->rx + c->rx_head, take);
	c->rx_head += take;
	c->payload_got += take;
	if (c->payload_got < t->r.len) {
		c->rx_head = c->rx_tail = 0;	/* all of it was taken */
		nbds_recv(c, (char *)t->r.buf + c->payload_got, t->r.len - c->payload_got,
			  MSG_WAITALL);
		return;
	}
	c->payload = NULL;
	nbds_dispatch(c, t);
	c->rx_again = 1;
}

static void
nbds_set_type(struct nbds_tag *t, uint16_t flags)
{
	switch (t->cmd) {
	case NBD_CMD_READ:         t->r.type = REQ_READ; break;
	case NBD_CMD_WRITE:        t->r.type = REQ_WRITE; break;
	case NBD_CMD_FLUSH:        t->r.type = REQ_FLUSH; break;
	case NBD_CMD_TRIM:         t->r.type = REQ_TRIM; break;
	case NBD_CMD_WRITE_ZEROES: t->r.type = REQ_WRITE_ZEROES; break;
	default:                   t->r.type = REQ_READ; break; /* err is set */
	}
	t->r.flags = 0;
	if (flags & NBD_CMD_FLAG_FUA)
		t->r.flags |= REQ_F_FUA;
	if (flags & NBD_CMD_FLAG_NO_HOLE)
		t->r.flags |= REQ_F_NO_HOLE;
}

/* Takes one request from the receive buffer.  Returns 1 to parse the next
 * one, 0 to stop: waiting for a tag or for the big request in progress,
 * a WRITE's payload to receive first (rx_again set), or the end. */
static int
nbds_parse_one(struct nbds_conn *c)
{
	struct nbd_request rq;
	struct nbds_tag *t;
	uint16_t cmd, flags;
	uint32_t len;
	int drop;

	memcpy(&rq, c->rx + c->rx_head, sizeof(rq));
	if (be32toh(rq.magic) != NBD_REQUEST_MAGIC) {
		char why[64];
		snprintf(why, sizeof(why), "bad request magic 0x%08x", be32toh(rq.magic));
		nbds_fail(c, why);
		return 0;
	}
	cmd = be16toh(rq.type);
	flags = be16toh(rq.flags);
	len = be32toh(rq.count);
	if (cmd == NBD_CMD_DISC) {
		LOG_DEBUG("nbd %s: client sent DISC", c->name);
		nbds_stop_rx(c);
		return 0;
	}
	if (!c->free) {
		c->stalled = 1;	/* resumes when a reply frees a tag */
		return 0;
	}
	if (c->big && nbds_is_big(c, cmd, len)) {
		c->big_stalled = 1;	/* resumes at nbds_big_end */
		return 0;
	}
	t = c->free;
	c->free = t->next;
	c->busy++;
	c->rx_head += sizeof(rq);
	t->handle = rq.handle;	/* echoed as is */
	t->cmd = cmd;
	t->r.off = be64toh(rq.offset);
	t->r.len = len;
	t->err = nbds_validate(c, cmd, flags, t->r.off, len, &drop);
	if (drop) {
		char why[96];
		snprintf(why, sizeof(why), "WRITE of %u bytes exceeds the maximum of %u",
			 len, c->p.max_request);
		nbds_tag_put(c, t);
		nbds_fail(c, why);
		return 0;
	}
	nbds_set_type(t, flags);
	/* A refused big WRITE is still received piece by piece, to stay in
	 * step with the stream; a refused READ is answered at once. */
	if (nbds_is_big(c, cmd, len) && (cmd == NBD_CMD_WRITE || !t->err)) {
		c->big = t;
		t->big_off = t->r.off;
		t->big_len = len;
		t->big_done = 0;
		nbds_big_next(c, t);
	}
	if (cmd == NBD_CMD_WRITE) {
		/* The payload follows, into the tag's buffer (an invalid
		 * WRITE's too, to stay in step with the stream). */
		c->payload = t;
		c->payload_got = 0;
		c->rx_again = 1;
		return 0;
	}
	nbds_dispatch(c, t);
	return !c->rx_stopped;
}

/* True while a big WRITE's piece is in flight with more payload to come:
 * the tag's buffer is busy and the stream's next bytes belong to it. */
static int
nbds_big_write_waits(const struct nbds_conn *c)
{
	const struct nbds_tag *t = c->big;

	return t && t->cmd == NBD_CMD_WRITE && t->big_done + t->r.len < t->big_len;
}

/* One step of receiving: a payload, or every complete request in the
 * receive buffer, then a recv for more. */
static void
nbds_rx_step(struct nbds_conn *c)
{
	if (c->rx_busy)
		return;
	if (c->rx_stopped) {
		/* A write cut short by shutdown: never submitted. */
		nbds_drop_payload(c);
		return;
	}
	if (c->payload) {
		nbds_payload_step(c);
		return;
	}
	if (nbds_big_write_waits(c))
		return;	/* its completion resumes receiving */
	while (c->rx_tail - c->rx_head >= sizeof(struct nbd_request)) {
		if (!nbds_parse_one(c))
			return;
	}
	/* Keep a partial header at the start of the buffer. */
	if (c->rx_head) {
		memmove(c->rx, c->rx + c->rx_head, c->rx_tail - c->rx_head);
		c->rx_tail -= c->rx_head;
		c->rx_head = 0;
	}
	nbds_recv(c, c->rx + c->rx_tail, NBDS_RX_BUF - c->rx_tail, 0);
}

/* Completions and freed tags call back in here, also while it runs: the
 * outer call repeats the step instead, so no two frames parse the
 * receive buffer at once. */
static void
nbds_rx_pump(struct nbds_conn *c)
{
	if (c->in_rx) {
		c->rx_again = 1;
		return;
	}
	c->in_rx = 1;
	do {
		c->rx_again = 0;
		nbds_rx_step(c);
	} while (c->rx_again);
	c->in_rx = 0;
}

int
nbds_conn_new(struct nbds_conn **out, const struct nbds_params *p)
{
	struct nbds_conn *c = calloc(1, sizeof(*c));

	if (!c)
		goto nomem;
	c->p = *p;
	snprintf(c->name, sizeof(c->name), "%s", p->name ? p->name : "?");
	c->p.name = c->name;
	if (c->p.max_request < c->p.max_payload)
		c->p.max_request = c->p.max_payload;
	c->rx = malloc(NBDS_RX_BUF);
	c->tags = calloc(p->depth, sizeof(*c->tags));
	c->bufs_len = (size_t)p->depth * p->max_payload;
	/* Address space only: pages are touched as requests use them. */
	c->bufs = mmap(NULL, c->bufs_len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (!c->rx || !c->tags || c->bufs == MAP_FAILED) {
		if (c->bufs != MAP_FAILED && c->bufs)
			munmap(c->bufs, c->bufs_len);
		free(c->rx);
		free(c->tags);
		free(c);
		goto nomem;
	}
	for (uint32_t i = p->depth; i-- > 0;) {
		struct nbds_tag *t = &c->tags[i];
		t->c = c;
		t->r.tag = (uint16_t)i;
		t->r.buf = (char *)c->bufs + (size_t)i * p->max_payload;
		t->r.complete = nbds_req_complete;
		t->big_op.cb = nbds_big_op_done;
		t->next = c->free;
		c->free = t;
	}
	c->rx_op.cb = nbds_rx_done;
	c->tx_op.cb = nbds_tx_done;
	*out = c;
	nbds_enter(c);
	nbds_rx_pump(c);
	nbds_leave(c);
	return 0;
nomem:
	close(p->fd);
	return -ENOMEM;
}

void
nbds_conn_shutdown(struct nbds_conn *c)
{
	nbds_enter(c);
	nbds_fail(c, NULL);
	nbds_leave(c);
}
