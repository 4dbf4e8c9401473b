#include "daemon/link.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/peer.h"
#include "daemon/resource.h"
#include "daemon/resync.h"
#include "daemon/rxcheck.h"
#include "daemon/wpath.h"
#include "lib/fault.h"
#include "lib/log.h"
#include "lib/util.h"
#include "proto/px.h"
#include "proto/px_tls.h"

#include <openssl/evp.h>

#define LK_RX_BUF   (64u * 1024)
#define LK_TLS_BUF  (128u * 1024)       /* ciphertext staging, each way */
#define LK_SLOTS    1024            /* messages awaiting an ack, writes awaiting a flush */
#define LK_BARRIER  256             /* writes between the link's own flushes */
#define LK_TX_BATCH 64
#define LK_IDLE_NS  (200ull * 1000 * 1000)  /* writes unflushed this long get a barrier */
#define LK_IO_HDR   (PX_HDR_SIZE + sizeof(struct px_io))
#define LK_TX_HDR   (PX_HDR_SIZE + sizeof(struct px_csum))  /* largest fixed part */

/* Something to send: a header (with its fixed payload) and optional data. */
struct lk_tx {
	struct lk_tx *next;
	uint8_t hdr[LK_TX_HDR];
	uint32_t hlen;
	void *data;
	uint32_t dlen;
	uint8_t owner;              /* LK_TX_SLOT or LK_TX_RTAG */
};
enum { LK_TX_SLOT = 1, LK_TX_RTAG = 2 };

/* Sending side: one message awaiting its ack. */
struct lk_slot {
	struct lk_tx tx;            /* first */
	struct lk_slot *next_free;
	struct req *r;              /* the request, until its protocol is satisfied */
	uint64_t off;
	uint32_t len;
	uint32_t gen;               /* reuse counter: half of the wire id */
	uint64_t seq;               /* send order on this link */
	uint16_t type;              /* PX_WRITE, PX_TRIM, PX_FLUSH, PX_RS_DATA */
	uint8_t sent, acked, in_use;
};

/* Receiving side: one request from the peer. */
struct lk_rtag {
	struct req r;               /* first */
	struct lk_tx ack;           /* WRITE_ACK / RS_ACK / FLUSH_ACK; frees the tag when sent */
	struct lk_tx rack;          /* RECV_ACK (semi-sync), always sent before ack */
	struct lk *l;
	struct lk_rtag *next;       /* free list, or parked list */
	uint64_t id;
	uint64_t seq;               /* arrival order */
	uint16_t type;
	uint16_t flags;             /* PX_F_* as received */
	uint8_t running;            /* submitted to the disk */
};

struct lk {
	struct res_queue *q;
	struct res *res;
	int fd;
	int dead;
	int nest;
	uint32_t max_data;

	struct lk_slot *slots;
	struct lk_slot *free_slots;
	uint32_t slots_used;
	uint64_t unacked;           /* bytes of WRITE sent, not yet acked */
	uint64_t tx_seq;
	uint32_t since_barrier;     /* writes sent since the last flush */
	int barrier_busy;           /* a flush of the link's own is in flight */
	struct req *wait_head, *wait_tail;  /* requests waiting for a slot or lag room */

	struct lk_rtag *rtags;
	void *rbufs;
	size_t rbufs_len;
	uint32_t depth;
	struct lk_rtag *free_rtags;
	uint32_t rtags_busy;
	struct lk_rtag *parked;     /* arrived, waiting for an overlapping earlier one */
	uint64_t rseq;

	char *rx;
	uint32_t rx_head, rx_tail;
	struct ev_op rx_op;
	int rx_busy, rx_stopped, stalled;
	struct lk_rtag *payload;    /* receiving a data payload into this tag */
	struct lk_slot *rd;         /* or a READ_DATA payload into this slot's request */
	uint32_t payload_got;

	struct px_tls *tls;         /* detached TLS session, or NULL */
	char *ctx;                  /* sealed ciphertext being sent */
	uint32_t ctx_len, ctx_sent;
	char *crx;                  /* ciphertext received, not yet opened */
	uint32_t crx_len;

	struct ev_op idle_op;       /* the idle barrier's timer */
	struct __kernel_timespec idle_ts;
	int idle_armed;

	struct lk_tx *txq_head, *txq_tail;
	struct ev_op tx_op;
	int tx_busy;
	int tx_walking;             /* accounting a finished send: no nested send */
	uint32_t tx_skip;
	struct msghdr msg;
	struct iovec iov[LK_TX_BATCH * 2];
};

static void lk_rx_pump(struct lk *l);
static void lk_tx_pump(struct lk *l);
static void lk_run_parked(struct lk *l);

int
lk_ready(const struct lk *l)
{
	return l && !l->dead;
}

int
lk_congested(const struct lk *l, uint32_t len)
{
	return l->unacked && l->unacked + len > l->res->conf.max_async_lag;
}

uint64_t
lk_unacked_bytes(const struct lk *l)
{
	return l ? l->unacked : 0;
}

/* ---- lifetime ---- */

static int
lk_idle(const struct lk *l)
{
	return l->dead && !l->rx_busy && !l->tx_busy && !l->rtags_busy && !l->nest &&
	       !l->idle_armed;
}

static void
lk_destroy(struct lk *l)
{
	struct res_queue *q = l->q;

	close(l->fd);
	px_tls_free(l->tls);
	free(l->ctx);
	free(l->crx);
	munmap(l->rbufs, l->rbufs_len);
	free(l->rx);
	free(l->slots);
	free(l->rtags);
	free(l);
	peer_link_closed(q);
}

/* A client's write: it stays in the transfer log, holding its activity
 * extent hot (dm_write_ref), until a flush on the peer covers it. */
static int
lk_slot_is_write(const struct lk_slot *s)
{
	return s->type == PX_WRITE || s->type == PX_TRIM;
}

/* Every request the link still answers for learns that the peer is gone.
 * Writes it already completed (async) are marked out of sync here. */
static void
lk_fail_outstanding(struct lk *l)
{
	struct req *r;

	for (uint32_t i = 0; i < LK_SLOTS; i++) {
		struct lk_slot *s = &l->slots[i];

		if (!s->in_use)
			continue;
		/* Acked or not, a write was never flushed on the peer.  The
		 * slot still holds its extent hot, so the mark is covered by
		 * the activity map until the metadata has it. */
		if (lk_slot_is_write(s))
			dm_mark_oos(l->res->dm, s->off, s->len);
		if (lk_slot_is_write(s) && !s->acked)
			atomic_fetch_sub(&l->res->repl_unacked, 1);
		if (s->r && (s->type == PX_RS_DATA || s->type == PX_CSUM_REQ))
			resync_acked(s->r, -ENOTCONN);
		else if (s->r)
			wp_peer_done(s->r, -ENOTCONN);
		if (lk_slot_is_write(s))
			dm_write_end(l->res->dm, s->off, s->len);
		s->r = NULL;
		s->in_use = 0;
	}
	while ((r = l->wait_head)) {
		l->wait_head = r->lk_next;
		if (r->phase == 0xff || r->phase == 0xfe)
			resync_acked(r, -ENOTCONN);
		else
			wp_peer_done(r, -ENOTCONN);
	}
	l->wait_tail = NULL;
}

static void lk_tx_sent(struct lk *l, struct lk_tx *t);

/* Drops what waits in the send queue (not what a sendmsg in flight holds:
 * its completion does that).  Acks still release their tags; sending
 * slots are answered by lk_fail_outstanding(). */
static void
lk_txq_drop(struct lk *l)
{
	struct lk_tx *t;

	while ((t = l->txq_head)) {
		l->txq_head = t->next;
		if (t->owner == LK_TX_RTAG)
			lk_tx_sent(l, t);
	}
	l->txq_tail = NULL;
	l->tx_skip = 0;
}

static void
lk_enter(struct lk *l)
{
	l->nest++;
}

static void
lk_leave(struct lk *l)
{
	if (--l->nest == 0 && lk_idle(l))
		lk_destroy(l);
}

void
lk_fail(struct lk *l, const char *why)
{
	if (l->dead)
		return;
	lk_enter(l);
	if (why)
		LOG_WARN("peer data link %u: %s", l->q->index, why);
	l->dead = 1;
	l->rx_stopped = 1;
	shutdown(l->fd, SHUT_RDWR);
	/* First, before any request learns of the loss: with fencing the
	 * write path must already hold what completes now. */
	peer_link_failed(l->q);
	/* Nothing queued will be sent now. */
	if (!l->tx_busy)
		lk_txq_drop(l);
	lk_fail_outstanding(l);
	/* Parked writes stay: they are applied, in order, as the running ones
	 * finish (semi-sync already told the primary they were received). */
	if (l->payload) {	/* a write whose data never came: not counted on */
		atomic_fetch_sub(&l->res->peer_writes, 1);
		l->payload->next = l->free_rtags;
		l->free_rtags = l->payload;
		l->rtags_busy--;
		l->payload = NULL;
	}
	l->rd = NULL;	/* its request learnt ENOTCONN above */
	lk_leave(l);
}

/* ---- sending ---- */

static void
lk_txq_add(struct lk *l, struct lk_tx *t)
{
	if (l->dead) {	/* nothing more goes out; acks still free their tags */
		if (t->owner == LK_TX_RTAG)
			lk_tx_sent(l, t);
		return;
	}
	t->next = NULL;
	if (l->txq_tail)
		l->txq_tail->next = t;
	else
		l->txq_head = t;
	l->txq_tail = t;
	lk_tx_pump(l);
}

static void
lk_slot_free(struct lk *l, struct lk_slot *s)
{
	if (lk_slot_is_write(s))
		dm_write_end(l->res->dm, s->off, s->len);
	s->in_use = 0;
	s->r = NULL;
	s->next_free = l->free_slots;
	l->free_slots = s;
	l->slots_used--;
}

static void lk_retry_waiting(struct lk *l);
static void lk_idle_arm(struct lk *l);

/* Writes stay in the transfer log until a flush on the peer covers them:
 * written is not durable, and a peer that loses its cache must not lose
 * them silently (they are marked out of sync if the link fails first). */
static void
lk_slot_maybe_free(struct lk *l, struct lk_slot *s)
{
	if (lk_slot_is_write(s))
		return;
	if (s->sent && s->acked) {
		lk_slot_free(l, s);
		lk_retry_waiting(l);
	}
}

static void
lk_tx_sent(struct lk *l, struct lk_tx *t)
{
	if (t->owner == LK_TX_SLOT) {
		struct lk_slot *s = (struct lk_slot *)t;

		s->sent = 1;
		/* Async: a client's write is in the socket; the request (and
		 * its buffer) may go.  The slot still remembers the range until
		 * the ack.  Resync data and checksum requests belong to the
		 * resync, which waits for the peer's answer in every protocol. */
		if (s->r && (s->type == PX_WRITE || s->type == PX_TRIM) &&
		    l->res->conf.protocol == CONF_PROTO_ASYNC) {
			struct req *r = s->r;
			s->r = NULL;
			wp_peer_done(r, 0);
		}
		lk_slot_maybe_free(l, s);
	} else if (t->owner == LK_TX_RTAG) {
		struct lk_rtag *rt = container_of(t, struct lk_rtag, ack);

		rt->next = l->free_rtags;
		l->free_rtags = rt;
		l->rtags_busy--;
		if (l->stalled) {
			l->stalled = 0;
			lk_rx_pump(l);
		}
	}
}

/* Bytes of the queue are gone (written to the socket, or sealed into
 * ciphertext): release the messages they complete. */
static void
lk_tx_advance(struct lk *l, uint32_t left)
{
	l->tx_walking = 1;
	while (l->txq_head && !l->dead) {
		struct lk_tx *t = l->txq_head;
		uint32_t rest = t->hlen + t->dlen - l->tx_skip;

		if (left < rest) {
			l->tx_skip += left;
			break;
		}
		left -= rest;
		l->tx_skip = 0;
		l->txq_head = t->next;
		if (!l->txq_head)
			l->txq_tail = NULL;
		lk_tx_sent(l, t);
	}
	l->tx_walking = 0;
}

static void
lk_tx_done(struct ev_op *op, int res, uint32_t flags)
{
	struct lk *l = container_of(op, struct lk, tx_op);

	(void)flags;
	lk_enter(l);
	l->tx_busy = 0;
	if (res < 0) {
		char why[64];
		snprintf(why, sizeof(why), "send failed: %s", strerror(-res));
		lk_fail(l, l->dead ? NULL : why);
		res = 0;
	}
	if (l->tls)
		l->ctx_sent += (uint32_t)res;
	else
		lk_tx_advance(l, (uint32_t)res);
	if (l->dead)
		lk_txq_drop(l);
	lk_tx_pump(l);
	lk_leave(l);
}

static void
lk_send_ctx(struct lk *l)
{
	struct io_uring_sqe *sqe = ev_get_sqe(l->q->loop);

	io_uring_prep_send(sqe, l->fd, l->ctx + l->ctx_sent, l->ctx_len - l->ctx_sent,
			   MSG_NOSIGNAL);
	ev_sqe_set_op(sqe, &l->tx_op);
	l->tx_busy = 1;
}

static void
lk_tx_pump(struct lk *l)
{
	struct io_uring_sqe *sqe;
	struct lk_tx *t;
	uint32_t n = 0, skip = l->tx_skip;

	if (l->tx_busy || l->tx_walking || l->dead)
		return;
	if (l->tls && l->ctx_sent < l->ctx_len) {	/* never seal twice: send the rest */
		lk_send_ctx(l);
		return;
	}
	if (!l->txq_head)
		return;
	for (t = l->txq_head; t && n + 2 <= ARRAY_SIZE(l->iov); t = t->next) {
		uint32_t hs = MIN(skip, t->hlen);

		if (hs < t->hlen) {
			l->iov[n].iov_base = t->hdr + hs;
			l->iov[n++].iov_len = t->hlen - hs;
		}
		if (t->dlen) {
			uint32_t ds = skip - hs;
			l->iov[n].iov_base = (char *)t->data + ds;
			l->iov[n++].iov_len = t->dlen - ds;
		}
		skip = 0;
	}
	if (l->tls) {
		size_t consumed = 0, produced = 0;
		int rc = px_tls_seal(l->tls, l->iov, (int)n, 0, l->ctx, LK_TLS_BUF, &consumed,
				     &produced);

		if (rc < 0) {
			lk_fail(l, "TLS: sealing failed");
			return;
		}
		l->ctx_len = (uint32_t)produced;
		l->ctx_sent = 0;
		/* Sealed is as good as sent for the messages: their buffers
		 * may be reused now. */
		lk_tx_advance(l, (uint32_t)consumed);
		if (produced && !l->dead)
			lk_send_ctx(l);
		return;
	}
	memset(&l->msg, 0, sizeof(l->msg));
	l->msg.msg_iov = l->iov;
	l->msg.msg_iovlen = n;
	sqe = ev_get_sqe(l->q->loop);
	io_uring_prep_sendmsg(sqe, l->fd, &l->msg, MSG_NOSIGNAL);
	ev_sqe_set_op(sqe, &l->tx_op);
	l->tx_busy = 1;
}

static uint64_t
lk_slot_id(const struct lk *l, const struct lk_slot *s)
{
	return ((uint64_t)s->gen << 32) | (uint64_t)(s - l->slots);
}

/* Queues r on the link if a slot and (async) lag room are free. */
static int
lk_try_send(struct lk *l, struct req *r, uint16_t type)
{
	struct lk_slot *s;
	uint16_t flags = 0;
	uint32_t plen = 0;
	int data = 0;

	if (!l->free_slots)
		return -EAGAIN;
	if (type == PX_WRITE && l->res->conf.protocol == CONF_PROTO_ASYNC && l->unacked &&
	    l->unacked + r->len > l->res->conf.max_async_lag)
		return -EAGAIN;	/* on-congestion = block: wait for acks */
	s = l->free_slots;
	l->free_slots = s->next_free;
	l->slots_used++;
	s->in_use = 1;
	s->sent = s->acked = 0;
	s->gen++;
	s->r = r;
	s->off = r ? r->off : 0;
	s->len = r ? r->len : 0;
	s->type = type;
	s->seq = ++l->tx_seq;
	s->tx.owner = LK_TX_SLOT;
	s->tx.data = NULL;
	s->tx.dlen = 0;
	switch (type) {
	case PX_WRITE:
		data = 1;
		plen = sizeof(struct px_io) + r->len;
		if (r->flags & REQ_F_FUA)
			flags |= PX_F_FUA;
		break;
	case PX_RS_DATA:
		/* Bits are cleared on the ack: the target writes it durably. */
		flags |= PX_F_FUA;
		data = 1;
		plen = sizeof(struct px_io) + r->len;
		break;
	case PX_TRIM:
		plen = sizeof(struct px_io);
		if (r->flags & REQ_F_FUA)
			flags |= PX_F_FUA;
		if (r->type == REQ_WRITE_ZEROES)
			flags |= PX_F_ZERO | ((r->flags & REQ_F_NO_HOLE) ? PX_F_NO_HOLE : 0);
		break;
	case PX_FLUSH:
		plen = 0;
		if (r)	/* the peer can tell a client's flush from a barrier */
			flags |= PX_F_APP;
		break;
	case PX_CSUM_REQ:
	case PX_READ_REQ:
		plen = sizeof(struct px_io);
		break;
	}
	if (type == PX_FLUSH)
		l->since_barrier = 0;
	px_hdr_encode(s->tx.hdr, type, flags, plen, lk_slot_id(l, s));
	s->tx.hlen = PX_HDR_SIZE;
	if (type != PX_FLUSH) {
		px_io_encode(s->tx.hdr + PX_HDR_SIZE, s->off, s->len);
		s->tx.hlen += sizeof(struct px_io);
	}
	if (data) {
		s->tx.data = r->buf;	/* the same buffer the local disk gets */
		s->tx.dlen = r->len;
	}
	if (type == PX_WRITE || type == PX_TRIM) {
		l->unacked += r->len;
		l->since_barrier++;
		/* Async completes r before the peer has it: the slot keeps
		 * the extent hot in its stead (lk_slot_is_write). */
		dm_write_ref(l->res->dm, r->off, r->len);
		atomic_fetch_add(&l->res->repl_unacked, 1);
		lk_idle_arm(l);
	}
	lk_txq_add(l, &s->tx);
	return 0;
}

/* The link's own flush, so the transfer log drains without client
 * flushes.  Sent when enough writes accumulated or slots run short. */
static void
lk_maybe_barrier(struct lk *l)
{
	if (l->barrier_busy || l->dead || l->since_barrier == 0)
		return;
	if (l->since_barrier < LK_BARRIER && l->slots_used < LK_SLOTS / 2)
		return;
	if (lk_try_send(l, NULL, PX_FLUSH) == 0)
		l->barrier_busy = 1;
}

/* A write stays in the transfer log, holding its activity extent, until a
 * flush on the peer covers it: after a burst that ends short of LK_BARRIER
 * writes, this timer sends that flush, so an idle link holds nothing. */
static void
lk_idle_done(struct ev_op *op, int res, uint32_t flags)
{
	struct lk *l = container_of(op, struct lk, idle_op);

	(void)res;
	(void)flags;
	lk_enter(l);
	l->idle_armed = 0;
	if (!l->dead && l->since_barrier && !l->barrier_busy &&
	    lk_try_send(l, NULL, PX_FLUSH) == 0)
		l->barrier_busy = 1;
	lk_leave(l);
}

static void
lk_idle_arm(struct lk *l)
{
	struct io_uring_sqe *sqe;

	if (l->idle_armed || l->dead)
		return;
	l->idle_ts.tv_sec = 0;
	l->idle_ts.tv_nsec = (long long)LK_IDLE_NS;
	sqe = ev_get_sqe(l->q->loop);
	io_uring_prep_timeout(sqe, &l->idle_ts, 0, 0);
	ev_sqe_set_op(sqe, &l->idle_op);
	l->idle_armed = 1;
}

static uint16_t
lk_type_for(const struct req *r)
{
	switch (r->type) {
	case REQ_WRITE:        return PX_WRITE;
	case REQ_FLUSH:        return PX_FLUSH;
	case REQ_READ:         return PX_READ_REQ;	/* a diskless primary's */
	default:               return PX_TRIM;
	}
}

static void
lk_retry_waiting(struct lk *l)
{
	struct req *r;

	while ((r = l->wait_head) && !l->dead) {
		uint16_t type = r->phase == 0xff ? PX_RS_DATA : r->phase == 0xfe ? PX_CSUM_REQ :
			lk_type_for(r);

		/* Off the list first: if sending fails the link, the slot
		 * answers for r, and the list must not answer again. */
		l->wait_head = r->lk_next;
		if (!l->wait_head)
			l->wait_tail = NULL;
		if (lk_try_send(l, r, type)) {
			r->lk_next = l->wait_head;	/* no room: back at the head */
			l->wait_head = r;
			if (!l->wait_tail)
				l->wait_tail = r;
			return;
		}
	}
}

static void
lk_queue_wait(struct lk *l, struct req *r)
{
	r->lk_next = NULL;
	if (l->wait_tail)
		l->wait_tail->lk_next = r;
	else
		l->wait_head = r;
	l->wait_tail = r;
}

void
lk_send(struct lk *l, struct req *r)
{
	if (!l->dead && FAULT("link/send/fail"))
		lk_fail(l, "failpoint link/send/fail");
	if (l->dead) {
		wp_peer_done(r, -ENOTCONN);
		return;
	}
	/* Keep order: nothing overtakes a waiting request. */
	if (l->wait_head || lk_try_send(l, r, lk_type_for(r))) {
		lk_queue_wait(l, r);
		lk_maybe_barrier(l);
		return;
	}
	lk_maybe_barrier(l);
}

void
lk_send_resync(struct lk *l, struct req *r)
{
	if (l->dead) {
		resync_acked(r, -ENOTCONN);
		return;
	}
	r->phase = 0xff;	/* marks a resync request while it waits */
	if (l->wait_head || lk_try_send(l, r, PX_RS_DATA))
		lk_queue_wait(l, r);
}

void
lk_send_csum_req(struct lk *l, struct req *r)
{
	if (l->dead) {
		resync_acked(r, -ENOTCONN);
		return;
	}
	r->phase = 0xfe;	/* marks a checksum request while it waits */
	if (l->wait_head || lk_try_send(l, r, PX_CSUM_REQ))
		lk_queue_wait(l, r);
}

/* A one-way notice: the slot is freed once it is sent. */
void
lk_send_oos(struct lk *l, uint64_t off, uint32_t len, int ahead)
{
	struct lk_slot *s;

	if (l->dead || !l->free_slots)
		return;	/* best effort: a verify marks its own side anyway */
	s = l->free_slots;
	l->free_slots = s->next_free;
	l->slots_used++;
	s->in_use = 1;
	s->sent = 0;
	s->acked = 1;	/* nothing comes back */
	s->gen++;
	s->r = NULL;
	s->off = off;
	s->len = len;
	s->type = PX_OOS;
	s->seq = ++l->tx_seq;
	s->tx.owner = LK_TX_SLOT;
	s->tx.data = NULL;
	s->tx.dlen = 0;
	px_hdr_encode(s->tx.hdr, PX_OOS, ahead ? PX_F_AHEAD : 0, sizeof(struct px_io), 0);
	px_io_encode(s->tx.hdr + PX_HDR_SIZE, off, len);
	s->tx.hlen = LK_IO_HDR;
	lk_txq_add(l, &s->tx);
}

/* An ack names a slot: one still waiting for its answer.  Whether the
 * ack fits the request in it is rxc_ack_check()'s. */
static struct lk_slot *
lk_slot_for(struct lk *l, uint64_t id)
{
	uint32_t idx = (uint32_t)id, gen = (uint32_t)(id >> 32);
	struct lk_slot *s;

	if (idx >= LK_SLOTS)
		return NULL;
	s = &l->slots[idx];
	if (!s->in_use || s->gen != gen || s->acked)
		return NULL;
	return s;
}

/* An acknowledgement (d checked by rxc_data_msg) of a request we sent.
 * 0, or -EPROTO with why set. */
static int
lk_handle_ack(struct lk *l, const struct rxc_data *d, char *why, size_t whylen)
{
	struct lk_slot *s = lk_slot_for(l, d->m.id);
	struct px_ack ack = d->ack;
	struct req *r;

	if (!s) {
		snprintf(why, whylen, "%s for a request never sent", px_type_name(d->m.type));
		return -EPROTO;
	}
	if (rxc_ack_check(d, s->type, s->off, s->len, why, whylen))
		return -EPROTO;
	if (d->m.type == PX_CSUM) {
		s->acked = 1;
		r = s->r;
		s->r = NULL;
		if (r)
			resync_csum(r, d->csum.sha256);
		lk_slot_maybe_free(l, s);
		lk_retry_waiting(l);
		return 0;
	}
	if (d->m.type == PX_RECV_ACK) {
		/* Semi-sync: received is enough. */
		if (s->r && l->res->conf.protocol == CONF_PROTO_SEMISYNC) {
			r = s->r;
			s->r = NULL;
			wp_peer_done(r, 0);
		}
		return 0;
	}
	s->acked = 1;
	if (s->type == PX_FLUSH) {
		/* Every write sent before this flush is durable on the peer. */
		for (uint32_t i = 0; i < LK_SLOTS; i++) {
			struct lk_slot *w = &l->slots[i];
			if (!w->in_use || w->seq > s->seq || (w->type != PX_WRITE && w->type != PX_TRIM))
				continue;
			if (!w->acked) {	/* the peer must ack writes before the flush */
				snprintf(why, whylen, "FLUSH_ACK before the WRITE_ACKs it covers");
				return -EPROTO;
			}
			if (ack.status)
				dm_mark_oos(l->res->dm, w->off, w->len);
			lk_slot_free(l, w);
		}
		if (!s->r)
			l->barrier_busy = 0;
	}
	if (s->type == PX_WRITE || s->type == PX_TRIM) {
		l->unacked -= s->len;
		atomic_fetch_sub(&l->res->repl_unacked, 1);
		/* Pulled ahead and the lag has drained: repair what was skipped. */
		if (atomic_load(&l->res->ahead) && l->unacked <= l->res->conf.max_async_lag / 2)
			resync_kick(l->res, RESYNC_DATA);
	}
	if ((r = s->r)) {
		s->r = NULL;
		if (s->type == PX_RS_DATA)
			resync_acked(r, ack.status);
		else
			wp_peer_done(r, ack.status);
	} else if (ack.status && (s->type == PX_WRITE || s->type == PX_TRIM)) {
		/* An async write the peer failed to write: it differs now. */
		dm_mark_oos(l->res->dm, s->off, s->len);
	}
	lk_slot_maybe_free(l, s);
	lk_retry_waiting(l);
	lk_maybe_barrier(l);
	return 0;
}

/* Waits until *n is 0, at most ms.  Rare (a demote, a promote) and short:
 * polling keeps the queues' hot path to one atomic add and one subtract
 * per write. */
static int
lk_wait_zero(_Atomic uint64_t *n, unsigned ms)
{
	uint64_t end = util_now_ms() + ms;

	while (atomic_load(n)) {
		if (util_now_ms() >= end)
			return -ETIMEDOUT;
		usleep(1000);
	}
	return 0;
}

int
lk_wait_acked(struct res *r, unsigned ms)
{
	return lk_wait_zero(&r->repl_unacked, ms);
}

int
lk_wait_applied(struct res *r, unsigned ms)
{
	return lk_wait_zero(&r->peer_writes, ms);
}

/* ---- receiving: requests from the peer ---- */

static int
lk_overlaps_running(struct lk *l, const struct lk_rtag *t)
{
	for (uint32_t i = 0; i < l->depth; i++) {
		const struct lk_rtag *o = &l->rtags[i];
		if (o->running && o != t && o->type != PX_FLUSH &&
		    o->r.off < t->r.off + t->r.len && t->r.off < o->r.off + o->r.len)
			return 1;
	}
	return 0;
}

/* A FLUSH may start once every write that arrived before it is done. */
static int
lk_flush_ready(struct lk *l, const struct lk_rtag *f)
{
	for (uint32_t i = 0; i < l->depth; i++) {
		const struct lk_rtag *o = &l->rtags[i];
		if (o->running && o->type != PX_FLUSH && o->seq < f->seq)
			return 0;
	}
	for (const struct lk_rtag *p = l->parked; p && p != f; p = p->next)
		if (p->type != PX_FLUSH && p->seq < f->seq)
			return 0;
	return 1;
}

static void
lk_ack(struct lk *l, struct lk_rtag *t, uint16_t type, int status)
{
	px_hdr_encode(t->ack.hdr, type, 0, sizeof(struct px_ack), t->id);
	px_ack_encode(t->ack.hdr + PX_HDR_SIZE, status);
	t->ack.hlen = PX_HDR_SIZE + sizeof(struct px_ack);
	t->ack.data = NULL;
	t->ack.dlen = 0;
	t->ack.owner = LK_TX_RTAG;
	if (l->dead) {
		lk_tx_sent(l, &t->ack);
		return;
	}
	lk_txq_add(l, &t->ack);
}

/* The hash of our copy of the range; a sync target that answers one no
 * longer counts the range as different: the source sends the data if the
 * hashes differ (and keeps its own bits until then). */
static void
lk_csum_reply(struct lk *l, struct lk_rtag *t)
{
	uint8_t md[32];
	unsigned int mdlen = 0;
	struct rsm_state s;

	memset(md, 0, sizeof(md));
	if (t->r.res == 0)
		EVP_Digest(t->r.buf, t->r.len, md, &mdlen, EVP_sha256(), NULL);
	else
		LOG_WARN("peer data link %u: reading %llu+%u for a checksum failed: %s",
			 l->q->index, (unsigned long long)t->r.off, t->r.len, strerror(-t->r.res));
	rsm_get(l->res, &s);
	if (s.repl == RSM_R_SYNCTARGET && t->r.res == 0)
		dm_clear_oos(l->res->dm, t->r.off, t->r.len);
	px_hdr_encode(t->ack.hdr, PX_CSUM, 0, sizeof(struct px_csum), t->id);
	/* A failed read answers an all-zero hash: it will not match. */
	px_csum_encode(t->ack.hdr + PX_HDR_SIZE, t->r.off, t->r.len, md);
	t->ack.hlen = PX_HDR_SIZE + sizeof(struct px_csum);
	t->ack.data = NULL;
	t->ack.dlen = 0;
	t->ack.owner = LK_TX_RTAG;
	lk_txq_add(l, &t->ack);
}

/* READ_DATA for the peer's READ_REQ (it is primary, its disk detached):
 * the data from the tag's buffer, or the error alone.  Only an up-to-date
 * copy is served: anything else is not the data the primary wrote. */
static void
lk_read_reply(struct lk *l, struct lk_rtag *t)
{
	struct rsm_state s;
	int status = t->r.res;

	rsm_get(l->res, &s);
	if (!status && s.disk != RSM_D_UPTODATE)
		status = -EIO;
	if (status)
		LOG_WARN("peer data link %u: cannot serve the peer's read at %llu+%u: %s",
			 l->q->index, (unsigned long long)t->r.off, t->r.len, strerror(-status));
	px_hdr_encode(t->ack.hdr, PX_READ_DATA, 0,
		      (uint32_t)sizeof(struct px_ack) + (status ? 0 : t->r.len), t->id);
	px_ack_encode(t->ack.hdr + PX_HDR_SIZE, status);
	t->ack.hlen = PX_HDR_SIZE + sizeof(struct px_ack);
	t->ack.data = status ? NULL : t->r.buf;
	t->ack.dlen = status ? 0 : t->r.len;
	t->ack.owner = LK_TX_RTAG;
	lk_txq_add(l, &t->ack);
}

static void
lk_rtag_complete(struct req *r)
{
	struct lk_rtag *t = (struct lk_rtag *)r;
	struct lk *l = t->l;
	uint16_t type;

	lk_enter(l);
	t->running = 0;
	switch (t->type) {
	case PX_RS_DATA:
		/* Written here: this block no longer differs. */
		if (r->res == 0)
			dm_clear_oos(l->res->dm, r->off, r->len);
		type = PX_RS_ACK;
		break;
	case PX_FLUSH:
		type = PX_FLUSH_ACK;
		/* Evidence that an application's flush reached this disk. */
		if ((t->flags & PX_F_APP) && r->res == 0)
			LOG_DEBUG("flush from the peer's application #%llu: disk synced",
				  (unsigned long long)atomic_fetch_add(&l->res->peer_app_flushes, 1) + 1);
		break;
	case PX_CSUM_REQ:
		lk_csum_reply(l, t);
		lk_run_parked(l);
		lk_leave(l);
		return;
	case PX_READ_REQ:
		lk_read_reply(l, t);
		lk_run_parked(l);
		lk_leave(l);
		return;
	default:
		type = PX_WRITE_ACK;
		break;
	}
	if (r->res)
		LOG_WARN("peer data link %u: local %s at %llu failed: %s", l->q->index,
			 px_type_name(t->type), (unsigned long long)r->off, strerror(-r->res));
	if (t->type != PX_FLUSH)	/* a write or resync data: done with the disk */
		atomic_fetch_sub(&l->res->peer_writes, 1);
	lk_ack(l, t, type, r->res);
	lk_run_parked(l);
	lk_leave(l);
}

/* Tests: how often a held write of the peer looks at peer/apply/hold
 * again.  Read-only, so the queue threads share it. */
static struct __kernel_timespec lk_hold_ts = { .tv_sec = 0, .tv_nsec = 50 * 1000 * 1000 };

static void
lk_hold_arm(struct lk *l, struct lk_rtag *t)
{
	struct io_uring_sqe *sqe = ev_get_sqe(l->q->loop);

	io_uring_prep_timeout(sqe, &lk_hold_ts, 0, 0);
	ev_sqe_set_op(sqe, &t->r.op);
}

/* The held write's timer (t->r.op is the disk's only once it is
 * submitted): it goes to the disk once the failpoint is off. */
static void
lk_hold_done(struct ev_op *op, int res, uint32_t flags)
{
	struct lk_rtag *t = container_of(op, struct lk_rtag, r.op);

	(void)res;
	(void)flags;
	if (FAULT("peer/apply/hold")) {
		lk_hold_arm(t->l, t);
		return;
	}
	LOG_INFO("failpoint peer/apply/hold: writing the peer's write at %llu+%u",
		 (unsigned long long)t->r.off, t->r.len);
	wp_submit_replica(t->l->q->wp, &t->r);
}

/* Tests only (lib/fault.h): a write of the peer that arrived and is not
 * on the disk yet, held there as long as the test wants (running, so
 * the link stays and overlapping writes wait behind it). */
static int
lk_hold(struct lk *l, struct lk_rtag *t)
{
	if ((t->type != PX_WRITE && t->type != PX_TRIM) || !FAULT("peer/apply/hold"))
		return 0;
	LOG_INFO("failpoint peer/apply/hold: holding the peer's write at %llu+%u",
		 (unsigned long long)t->r.off, t->r.len);
	t->r.op.cb = lk_hold_done;
	lk_hold_arm(l, t);
	return 1;
}

static void
lk_start(struct lk *l, struct lk_rtag *t)
{
	t->running = 1;
	if (lk_hold(l, t))
		return;
	wp_submit_replica(l->q->wp, &t->r);
}

/* Starts parked requests that no longer conflict, in arrival order. */
static void
lk_run_parked(struct lk *l)
{
	struct lk_rtag **pp = &l->parked, *t;

	while ((t = *pp)) {
		int ok = t->type == PX_FLUSH ? lk_flush_ready(l, t) : !lk_overlaps_running(l, t);

		/* A write never overtakes an earlier parked write it overlaps. */
		for (struct lk_rtag *p = l->parked; ok && p != t; p = p->next)
			if (t->type != PX_FLUSH && p->type != PX_FLUSH &&
			    p->r.off < t->r.off + t->r.len && t->r.off < p->r.off + p->r.len)
				ok = 0;
		if (!ok) {
			pp = &t->next;
			continue;
		}
		*pp = t->next;
		lk_start(l, t);
	}
}

static void
lk_dispatch(struct lk *l, struct lk_rtag *t)
{
	struct lk_rtag **pp;
	int ok;

	ok = t->type == PX_FLUSH ? lk_flush_ready(l, t) : !lk_overlaps_running(l, t);
	if (ok && l->parked) {
		for (struct lk_rtag *p = l->parked; p; p = p->next)
			if (t->type == PX_FLUSH || p->type == PX_FLUSH ||
			    (p->r.off < t->r.off + t->r.len && t->r.off < p->r.off + p->r.len))
				ok = 0;
	}
	if (ok) {
		lk_start(l, t);
		return;
	}
	for (pp = &l->parked; *pp; pp = &(*pp)->next)
		;
	t->next = NULL;
	*pp = t;
}

static struct lk_rtag *
lk_rtag_get(struct lk *l)
{
	struct lk_rtag *t = l->free_rtags;

	if (!t)
		return NULL;
	l->free_rtags = t->next;
	l->rtags_busy++;
	t->seq = ++l->rseq;
	t->running = 0;
	return t;
}

/* Sends RECV_ACK for a semi-sync write: a header-only message. */
static void
lk_recv_ack(struct lk *l, struct lk_rtag *t)
{
	px_hdr_encode(t->rack.hdr, PX_RECV_ACK, 0, 0, t->id);
	t->rack.hlen = PX_HDR_SIZE;
	t->rack.data = NULL;
	t->rack.dlen = 0;
	t->rack.owner = 0;	/* nothing to release: the ack after it frees the tag */
	lk_txq_add(l, &t->rack);
}

/* Our READ_REQ is answered: the request completes with the peer's status. */
static void
lk_read_done(struct lk *l, struct lk_slot *s, int status)
{
	struct req *r = s->r;

	s->r = NULL;
	if (r)
		wp_peer_done(r, status);
	lk_slot_maybe_free(l, s);
	lk_retry_waiting(l);
}

/* READ_DATA: its data goes straight into the request's buffer, received
 * there directly (l->rd) when not all of it is here yet.  1 handled, or
 * -EPROTO with why set. */
static int
lk_read_data(struct lk *l, const struct rxc_data *d, char *why, size_t whylen)
{
	struct lk_slot *s = lk_slot_for(l, d->m.id);
	uint32_t take;

	if (!s || !s->r || rxc_ack_check(d, s->type, s->off, s->len, why, whylen)) {
		snprintf(why, whylen, "READ_DATA that answers no READ_REQ of this length");
		return -EPROTO;
	}
	s->acked = 1;
	l->rx_head += d->fixed;
	take = d->ack.status ? 0 : MIN(l->rx_tail - l->rx_head, s->len);
	memcpy(s->r->buf, l->rx + l->rx_head, take);
	l->rx_head += take;
	if (!d->ack.status && take < s->len) {
		l->rd = s;
		l->payload_got = take;
		return 1;
	}
	lk_read_done(l, s, d->ack.status);
	return 1;
}

/* Parses one message at the head of the receive buffer.  Returns 1 when
 * it was consumed, 0 when more bytes are needed, -EAGAIN when out of tags,
 * or -EPROTO with why set.  What the message says is checked by
 * rxc_data_msg() first (daemon/rxcheck.h); here only what needs the
 * link's own state: the role, the slot an ack names, a free tag. */
static int
lk_parse_one(struct lk *l, char *why, size_t whylen)
{
	const struct rxc_limits lim = { .size = l->res->size, .max_data = l->max_data };
	uint32_t avail = l->rx_tail - l->rx_head;
	struct rxc_data d;
	struct lk_rtag *t;
	int rc;

	rc = rxc_data_msg(&lim, l->rx + l->rx_head, avail, &d, why, whylen);
	if (rc <= 0)
		return rc;
	/* Requests from the peer: nothing may write under a primary's users,
	 * resync data included (a target promoted with --force).  Counted
	 * first: a promote that then finds none counted knows that none
	 * starts after it (rsm_promote_decide). */
	if (d.writes) {
		atomic_fetch_add(&l->res->peer_writes, 1);
		if (!peer_accepts_writes(l->res)) {
			atomic_fetch_sub(&l->res->peer_writes, 1);
			snprintf(why, whylen, "peer sent %s but this node is primary or being "
				 "promoted", px_type_name(d.m.type));
			return -EPROTO;
		}
	}
	switch (d.m.type) {
	case PX_WRITE_ACK: case PX_FLUSH_ACK: case PX_RS_ACK: case PX_RECV_ACK: case PX_CSUM:
		if (lk_handle_ack(l, &d, why, whylen))
			return -EPROTO;
		l->rx_head += d.fixed;
		return 1;
	case PX_READ_DATA:
		return lk_read_data(l, &d, why, whylen);
	case PX_OOS:
		dm_mark_oos(l->res->dm, d.io.offset, d.io.length);
		/* A verify sends it too: only pull-ahead makes this node behind. */
		if (d.m.flags & PX_F_AHEAD)
			peer_set_behind(l->res);
		l->rx_head += d.fixed;
		return 1;
	}
	t = lk_rtag_get(l);
	if (!t) {
		if (d.writes)	/* parsed again once a tag is free */
			atomic_fetch_sub(&l->res->peer_writes, 1);
		return -EAGAIN;
	}
	t->id = d.m.id;
	t->type = d.m.type;
	t->flags = d.m.flags;
	t->r.off = d.io.offset;
	t->r.len = d.io.length;
	t->r.flags = (d.m.flags & PX_F_FUA) ? REQ_F_FUA : 0;
	t->r.replica = 1;
	l->rx_head += d.fixed;
	switch (d.m.type) {
	case PX_FLUSH:
		t->r.type = REQ_FLUSH;
		lk_dispatch(l, t);
		return 1;
	case PX_CSUM_REQ:
	case PX_READ_REQ:
		t->r.type = REQ_READ;
		lk_dispatch(l, t);
		return 1;
	case PX_TRIM:
		t->r.type = (d.m.flags & PX_F_ZERO) ? REQ_WRITE_ZEROES : REQ_TRIM;
		if (d.m.flags & PX_F_NO_HOLE)
			t->r.flags |= REQ_F_NO_HOLE;
		if (l->res->conf.protocol == CONF_PROTO_SEMISYNC)
			lk_recv_ack(l, t);
		lk_dispatch(l, t);
		return 1;
	}
	/* WRITE, RS_DATA: the data goes straight into the tag's buffer of
	 * max_data bytes (d.data <= max_data). */
	t->r.type = REQ_WRITE;
	avail = l->rx_tail - l->rx_head;
	{
		uint32_t take = MIN(avail, d.data);
		memcpy(t->r.buf, l->rx + l->rx_head, take);
		l->rx_head += take;
		if (take < d.data) {
			l->payload = t;
			l->payload_got = take;
			return 1;
		}
	}
	if (d.m.type == PX_WRITE && l->res->conf.protocol == CONF_PROTO_SEMISYNC)
		lk_recv_ack(l, t);
	lk_dispatch(l, t);
	return 1;
}

static void
lk_recv(struct lk *l, void *buf, uint32_t len, int flags)
{
	struct io_uring_sqe *sqe = ev_get_sqe(l->q->loop);

	io_uring_prep_recv(sqe, l->fd, buf, len, flags);
	ev_sqe_set_op(sqe, &l->rx_op);
	l->rx_busy = 1;
}

/* n plaintext bytes arrived where lk_rx_pump asked for them. */
static void
lk_rx_account(struct lk *l, uint32_t n)
{
	if (l->rd) {
		l->payload_got += n;
		if (l->payload_got == l->rd->len) {
			struct lk_slot *s = l->rd;

			l->rd = NULL;
			lk_read_done(l, s, 0);
		}
	} else if (l->payload) {
		l->payload_got += n;
		if (l->payload_got == l->payload->r.len) {
			struct lk_rtag *t = l->payload;
			l->payload = NULL;
			if (t->type == PX_WRITE && l->res->conf.protocol == CONF_PROTO_SEMISYNC)
				lk_recv_ack(l, t);
			lk_dispatch(l, t);
		}
	} else {
		l->rx_tail += n;
	}
}

/* TLS: plaintext from ciphertext already received, into dst.  Returns the
 * bytes produced, 0 when it needs more ciphertext (a recv is issued), or
 * -1 when the link failed. */
static int
lk_tls_open(struct lk *l, void *dst, uint32_t cap)
{
	size_t used = 0, got = 0;
	int rc = px_tls_open(l->tls, l->crx, l->crx_len, &used, dst, cap, &got);

	if (rc < 0) {
		lk_fail(l, rc == -ECONNRESET ? "peer closed the link" :
			"TLS: a record failed to authenticate (tampering?)");
		return -1;
	}
	memmove(l->crx, l->crx + used, l->crx_len - used);
	l->crx_len -= (uint32_t)used;
	if (got)
		return (int)got;
	lk_recv(l, l->crx + l->crx_len, LK_TLS_BUF - l->crx_len, 0);
	return 0;
}

/* Parses what is buffered, then gets more bytes: straight into a write's
 * buffer for its payload, else into the receive buffer; through TLS when
 * the link has it. */
static void
lk_rx_pump(struct lk *l)
{
	char why[160];
	int rc;

	for (;;) {
		void *dst;
		uint32_t cap;
		int got;

		if (l->rx_busy || l->rx_stopped || l->dead)
			return;
		if (!l->payload && !l->rd) {
			while ((rc = lk_parse_one(l, why, sizeof(why))) == 1) {
				if (l->dead)
					return;
				if (l->payload || l->rd)
					break;
			}
			if (rc == -EPROTO) {
				lk_fail(l, why);
				return;
			}
			if (rc == -EAGAIN) {
				l->stalled = 1;
				return;
			}
			if (l->rx_head) {
				memmove(l->rx, l->rx + l->rx_head, l->rx_tail - l->rx_head);
				l->rx_tail -= l->rx_head;
				l->rx_head = 0;
			}
		}
		if (l->rd) {
			dst = (char *)l->rd->r->buf + l->payload_got;
			cap = l->rd->len - l->payload_got;
		} else if (l->payload) {
			dst = (char *)l->payload->r.buf + l->payload_got;
			cap = l->payload->r.len - l->payload_got;
		} else {
			dst = l->rx + l->rx_tail;
			cap = LK_RX_BUF - l->rx_tail;
		}
		if (!l->tls) {
			lk_recv(l, dst, cap, l->payload || l->rd ? MSG_WAITALL : 0);
			return;
		}
		got = lk_tls_open(l, dst, cap);
		if (got <= 0)
			return;
		lk_rx_account(l, (uint32_t)got);
	}
}

static void
lk_rx_done(struct ev_op *op, int res, uint32_t flags)
{
	struct lk *l = container_of(op, struct lk, rx_op);

	(void)flags;
	lk_enter(l);
	l->rx_busy = 0;
	if (res > 0 && FAULT("link/recv/slow"))
		usleep(2000);	/* a slow peer network: tests only */
	if (res == -EINTR || res == -EAGAIN) {
		lk_rx_pump(l);
	} else if (res <= 0) {
		char why[64];
		snprintf(why, sizeof(why), "%s", res ? strerror(-res) : "peer closed the link");
		lk_fail(l, l->dead ? NULL : why);
	} else {
		if (l->tls)
			l->crx_len += (uint32_t)res;
		else
			lk_rx_account(l, (uint32_t)res);
		lk_rx_pump(l);
	}
	lk_leave(l);
}

int
lk_new(struct lk **out, struct res_queue *q, int fd, struct px_tls *tls)
{
	struct lk *l = calloc(1, sizeof(*l));
	struct res *r = q->res;

	if (!l)
		goto nomem;
	l->q = q;
	l->res = r;
	l->fd = fd;
	l->tls = tls;
	if (tls) {
		l->ctx = malloc(LK_TLS_BUF);
		l->crx = malloc(LK_TLS_BUF);
		if (!l->ctx || !l->crx) {
			free(l->ctx);
			free(l->crx);
			free(l);
			l = NULL;
			goto nomem;
		}
	}
	l->max_data = r->conf.max_io_size;
	l->depth = r->conf.queue_depth;
	l->rx = malloc(LK_RX_BUF);
	l->slots = calloc(LK_SLOTS, sizeof(*l->slots));
	l->rtags = calloc(l->depth, sizeof(*l->rtags));
	l->rbufs_len = (size_t)l->depth * l->max_data;
	l->rbufs = mmap(NULL, l->rbufs_len, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (!l->rx || !l->slots || !l->rtags || l->rbufs == MAP_FAILED) {
		if (l->rbufs && l->rbufs != MAP_FAILED)
			munmap(l->rbufs, l->rbufs_len);
		free(l->rx);
		free(l->slots);
		free(l->rtags);
		free(l->ctx);
		free(l->crx);
		free(l);
		goto nomem;
	}
	for (uint32_t i = LK_SLOTS; i-- > 0;) {
		l->slots[i].next_free = l->free_slots;
		l->free_slots = &l->slots[i];
	}
	for (uint32_t i = l->depth; i-- > 0;) {
		struct lk_rtag *t = &l->rtags[i];
		t->l = l;
		t->r.tag = (uint16_t)i;
		t->r.buf = (char *)l->rbufs + (size_t)i * l->max_data;
		t->r.complete = lk_rtag_complete;
		t->next = l->free_rtags;
		l->free_rtags = t;
	}
	l->rx_op.cb = lk_rx_done;
	l->tx_op.cb = lk_tx_done;
	l->idle_op.cb = lk_idle_done;
	*out = l;
	lk_enter(l);
	lk_rx_pump(l);
	lk_leave(l);
	return 0;
nomem:
	px_tls_free(tls);
	close(fd);
	return -ENOMEM;
}
