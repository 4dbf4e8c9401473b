#include "daemon/peer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/bitmap.h"
#include "daemon/gen.h"
#include "daemon/hooks.h"
#include "daemon/wpath.h"
#include "daemon/hooks.h"
#include "daemon/link.h"
#include "daemon/resource.h"
#include "daemon/resync.h"
#include "daemon/rsm.h"
#include "daemon/rxcheck.h"
#include "lib/fault.h"
#include "lib/log.h"
#include "lib/util.h"
#include "proto/px.h"
#include "proto/px_tls.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

/* Per read or write on a link until it runs on a queue's ring or with the
 * ping timeout; also how long the data links may take to come up. */
#define PEER_HS_TIMEOUT_MS  5000
/* One link's whole handshake (TLS and HMAC): an unauthenticated party
 * gets this long in total, however it paces its bytes. */
#define PEER_HS_BUDGET_MS   3000
/* Handshakes the listener runs at once; one more connection evicts the
 * oldest, so a crowd of slow clients cannot keep the peer out. */
#define PEER_HS_MAX         8
/* Authenticated links the listener keeps for the peer thread. */
#define PEER_READY_MAX      8
#define PEER_BACKOFF_MIN_MS 100
#define PEER_BACKOFF_MAX_MS 3000

/* An authenticated link: its socket, its TLS session (or NULL) and what
 * the handshake said it is. */
struct peer_conn {
	int fd;
	struct px_tls *tls;
	struct px_hs_result hr;
};

enum { PEER_HS_FREE, PEER_HS_RUNNING, PEER_HS_DONE };

/* One handshake, run on its own thread so that its supervisor can end it
 * at its deadline (shutdown() wakes the blocked reads and writes).  The
 * supervisor is the acceptor thread on the listener, the peer thread on
 * the connector. */
struct peer_hs_job {
	struct peer *p;
	pthread_t thread;
	uint64_t start, deadline;
	uint64_t session;        /* the meta link's, for data links */
	uint16_t link, queue;    /* what the connector asks for */
	int expired;             /* shut down by the supervisor */
	int in_tls;              /* failed in the TLS handshake (read after join) */
	/* PEER_HS_*: RUNNING -> DONE by the handshake thread under hs_lock,
	 * after rc and err; every other change by the supervisor, which
	 * also reads it without the lock (FREE or not is its own to change),
	 * hence atomic. */
	_Atomic int state;
	int rc;                  /* (hs_lock) once DONE */
	char err[256];           /* (hs_lock) once DONE */
	struct peer_conn c;
};

/* Fields marked (lock) are protected by res->lock, (hs_lock) by
 * peer->hs_lock; the rest belong to the peer thread. */
struct peer {
	struct res *res;
	pthread_t thread;
	int started;
	int efd;                 /* wakes the peer thread */
	int listen_fd;           /* the listener node's socket, or -1 */
	int initiator;           /* our name sorts first: we connect */
	unsigned char secret[4096];
	size_t secret_len;
	struct px_sock meta;     /* fd -1 when none; tls when TLS is configured */
	int authed;              /* the meta link passed authentication */
	struct px_tls_ctx *tls_ctx;
	/* Peer thread only: a resync ended with us as source, and the target
	 * has not yet reported that it took our generation. */
	int end_unconfirmed;
	int hs_efd;              /* a handshake ended, or stop: wakes its supervisor */
	pthread_t acceptor;      /* the listener's: accepts and authenticates */
	int acceptor_started;
	uint64_t acc_log_ms;     /* acceptor: when it last warned of a handshake */
	unsigned acc_quiet;      /* acceptor: warnings held back since */

	pthread_mutex_t hs_lock;
	/* (hs_lock) */
	uint64_t session;        /* the current meta link's, 0 before one */
	struct peer_conn ready[PEER_READY_MAX]; /* authenticated, oldest first */
	unsigned nready;

	/* (lock) */
	int stop;
	int want;                /* connect (1) or stay standalone (0) */
	int discard_my_data;
	int restart;             /* drop the session and connect again */
	int verify_done;
	uint64_t verify_bad;
	int state_dirty;         /* local role/disk changed: send STATE */
	uint64_t state_req;      /* bumped by each peer_state_changed() */
	uint64_t state_acked;    /* the last state_req the peer has processed */
	int link_failed;
	int resync_done;
	unsigned links_open;     /* data links posted to queues and not yet closed */
	unsigned links_ready;    /* of this session's, adopted by their queue */
	/* Acceptor thread only: the peer's addresses (peer_from_peer). */
	unsigned char acc_addr[8][16];
	int acc_len[8], acc_n;
	uint64_t acc_resolved_ms;
	unsigned epoch;          /* bumped at every teardown */
	int peer_known, peer_role, peer_disk;
	int outdate_req;         /* behind (pull-ahead): outdate the disk */

	/* Peer thread only: how the next orderly teardown ends. */
	int outdate_self;        /* the primary goes on without us: outdate */
	int outdate_peer;        /* we are primary and go on: tell the peer */
	/* Peer thread only: our current generation the peer learnt in this
	 * session's state exchange (0: no session). */
	uint64_t session_gen;
	/* Peer thread only: this session made us sync source and the resync
	 * has not ended; the peer is an inconsistent target until then. */
	int source_running;
};

struct link_msg {
	struct ev_msg msg;
	struct res_queue *q;
	int fd;
	struct px_tls *tls;      /* detached, owned by the message until adopted */
	unsigned epoch;
};

static void
peer_wake(struct peer *p)
{
	uint64_t one = 1;

	if (write(p->efd, &one, sizeof(one)) < 0)
		LOG_ERROR("peer: eventfd write failed: %s", strerror(errno));
}

/* Reads and clears a flag other threads set with peer_set. */
static int
peer_take(struct peer *p, int *field)
{
	int v;

	pthread_mutex_lock(&p->res->lock);
	v = *field;
	*field = 0;
	pthread_mutex_unlock(&p->res->lock);
	return v;
}

static void
peer_set(struct peer *p, int *field, int value)
{
	pthread_mutex_lock(&p->res->lock);
	*field = value;
	pthread_mutex_unlock(&p->res->lock);
	peer_wake(p);
}

/* ---- called from other threads ---- */

/* fencing = resource-and-stonith applies now: losing the peer would leave
 * it without writes this node goes on acknowledging. */
static int
peer_fencing_applies(struct res *r)
{
	struct rsm_state s;

	rsm_get(r, &s);
	return r->conf.fencing && r->conf.protocol == CONF_PROTO_SYNC &&
	       s.role == RSM_PRIMARY && s.conn == RSM_C_CONNECTED;
}

/* fencing = resource-and-stonith: from the state exchange until the session
 * is connected, no write starts.  The exchange tells an up-to-date peer
 * "no sync" at the generation it shares with this node; a write made alone
 * after it, before the data links replicate, would be one the peer lacks
 * while the connect that follows says "in sync" (the cluster hook lifts
 * its fence then) -- and one that a link lost before "connected" would
 * leave unfenced.  Writes are held before they start (wp_submit), so once
 * connected they go to the peer like any other.  Any node (a promote may
 * come during the session); only writes are held. */
static void
peer_session_hold(struct res *r)
{
	int no = RES_FROZEN_NO;

	if (r->conf.fencing && r->conf.protocol == CONF_PROTO_SYNC)
		atomic_compare_exchange_strong(&r->frozen, &no, RES_FROZEN_SESSION);
}

static void
peer_session_release(struct res *r)
{
	int held = RES_FROZEN_SESSION;

	if (atomic_compare_exchange_strong(&r->frozen, &held, RES_FROZEN_NO))
		wp_thaw_all(r);
}

void
peer_link_failed(struct res_queue *q)
{
	struct res *r = q->res;
	struct peer *p = r->peer;
	int no = RES_FROZEN_NO, held = RES_FROZEN_SESSION;

	/* The queue thread sees the loss first: hold writes at once, before
	 * the peer thread learns whether the peer was lost (then it fences)
	 * or left in order (then it lets them go).  Also over a session's
	 * hold, which its end would otherwise release (peer_session_release
	 * runs just after "connected"). */
	if (peer_fencing_applies(r))
		atomic_compare_exchange_strong(&r->frozen, &no, RES_FROZEN_LINK);
	/* A session's hold implies fencing: whatever the state says yet. */
	atomic_compare_exchange_strong(&r->frozen, &held, RES_FROZEN_LINK);
	peer_set(p, &p->link_failed, 1);
}

void
peer_link_closed(struct res_queue *q)
{
	struct res *r = q->res;

	q->link = NULL;
	pthread_mutex_lock(&r->lock);
	r->peer->links_open--;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

int
peer_accepts_writes(struct res *r)
{
	struct rsm_state s;

	/* promoting first: a 0 read here after a promote cleared it comes
	 * after the role was stored primary, so the role read next sees it;
	 * the other way round, a stale "secondary" and the cleared flag could
	 * both be seen and a write start under the new primary. */
	if (atomic_load(&r->promoting))
		return 0;
	rsm_get(r, &s);
	return s.role == RSM_SECONDARY;
}

void
peer_resync_done(struct res *r)
{
	peer_set(r->peer, &r->peer->resync_done, 1);
}

void
peer_verify_done(struct res *r, uint64_t bad)
{
	struct peer *p = r->peer;

	pthread_mutex_lock(&r->lock);
	p->verify_done = 1;
	p->verify_bad = bad;
	pthread_mutex_unlock(&r->lock);
	peer_wake(p);
}

void
peer_set_ahead(struct res *r)
{
	struct rsm_state v = { .repl = RSM_R_AHEAD };
	enum rsm_repl from = RSM_R_ESTABLISHED;

	if (atomic_exchange(&r->ahead, 1))
		return;
	LOG_WARN("peer: the peer lags by more than max-async-lag: pulling ahead "
		 "(writes are marked out of sync and resynced when it catches up)");
	rsm_update(r, RSM_F_REPL, &v, "pull-ahead", rsm_repl_is, &from);
}

void
peer_set_behind(struct res *r)
{
	struct rsm_state v = { .repl = RSM_R_BEHIND };
	enum rsm_repl from = RSM_R_ESTABLISHED;

	if (rsm_update(r, RSM_F_REPL, &v, "the peer pulled ahead", rsm_repl_is, &from)) {
		/* The metadata write is the peer thread's, not this queue's. */
		peer_set(r->peer, &r->peer->outdate_req, 1);
	}
}

void
peer_state_changed(struct res *r)
{
	struct peer *p = r->peer;

	if (!p)
		return;
	pthread_mutex_lock(&r->lock);
	p->state_dirty = 1;
	p->state_req++;
	pthread_mutex_unlock(&r->lock);
	peer_wake(p);
}

/* r->cond wait until abs_ms (util_now_ms() time); r->lock held. */
static void
peer_cond_wait_until(struct res *r, uint64_t abs_ms)
{
	uint64_t now = util_now_ms(), left = abs_ms > now ? abs_ms - now : 0;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(left / 1000);
	ts.tv_nsec += (long)(left % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&r->cond, &r->lock, &ts);
}

int
peer_state_wait_acked(struct res *r, unsigned ms)
{
	struct peer *p = r->peer;
	uint64_t end = util_now_ms() + ms, want;
	int rc = 0;

	if (!p)
		return 0;
	pthread_mutex_lock(&r->lock);
	want = p->state_req;
	/* Not connected: the next session's state exchange tells the peer
	 * before anything else, so there is nothing to wait for. */
	while (p->state_acked < want && r->state.conn == RSM_C_CONNECTED) {
		if (util_now_ms() >= end) {
			rc = -ETIMEDOUT;
			break;
		}
		peer_cond_wait_until(r, end);
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

int
peer_info(struct res *r, int *role, int *disk)
{
	struct peer *p = r->peer;
	int known;

	if (!p)
		return -ENOENT;
	pthread_mutex_lock(&r->lock);
	known = p->peer_known;
	*role = p->peer_role;
	*disk = p->peer_disk;
	pthread_mutex_unlock(&r->lock);
	return known ? 0 : -ENOENT;
}

/* Under r->lock: connect asked, and the node is not trying yet. */
static int
peer_may_start_connecting(void *arg, const struct rsm_state *cur)
{
	const struct peer *p = arg;

	return p->want && (cur->conn == RSM_C_STANDALONE || cur->conn == RSM_C_SPLITBRAIN);
}

/* Under r->lock: disconnect asked and no connect since. */
static int
peer_may_go_standalone(void *arg, const struct rsm_state *cur)
{
	const struct peer *p = arg;

	return !p->want && (cur->conn == RSM_C_CONNECTING || cur->conn == RSM_C_CONNECTED);
}

/* The state says "connecting" before connect returns: a command run next
 * (wait-sync, wait-connect) must not see the standalone or splitbrain
 * state that this connect just ended (the peer thread may take up to a
 * poll period to get there itself). */
int
peer_connect(struct res *r, int discard_my_data, char *why, size_t len)
{
	struct peer *p = r->peer;

	if (!p) {
		snprintf(why, len, "no peer: configure a second [node] and a secret-file");
		return -ENOTCONN;
	}
	pthread_mutex_lock(&r->lock);
	p->want = 1;
	if (discard_my_data)
		p->discard_my_data = 1;
	pthread_mutex_unlock(&r->lock);
	rsm_set_conn_if(r, RSM_C_CONNECTING, RSM_R_OFF, "connect", peer_may_start_connecting, p);
	peer_wake(p);
	return 0;
}

int
peer_discard_my_data(struct res *r, char *why, size_t len)
{
	struct peer *p = r->peer;

	if (!p) {
		snprintf(why, len, "no peer: configure a second [node] and a secret-file");
		return -ENOTCONN;
	}
	/* Takes effect at the next connect; a split brain stays visible. */
	pthread_mutex_lock(&r->lock);
	p->discard_my_data = 1;
	p->want = 0;
	pthread_mutex_unlock(&r->lock);
	peer_wake(p);
	return 0;
}

int
peer_reconnect(struct res *r)
{
	struct peer *p = r->peer;

	if (!p)
		return -ENOTCONN;
	pthread_mutex_lock(&r->lock);
	p->restart = 1;
	p->want = 1;
	pthread_mutex_unlock(&r->lock);
	peer_wake(p);
	return 0;
}

/* disconnect returns once the node is standalone, so that a connect or
 * wait-connect run next does not see the session it just ended (its
 * teardown waits for the data links and, under fencing, up to ping-timeout
 * for the peer's confirmation; a connect attempt in progress ends within
 * the handshake bound).  A connect since, or I/O frozen for fence-peer,
 * settles it too: the fence handler may run for handler-timeout. */
static int
peer_disconnect_settle(struct res *r, char *why, size_t len)
{
	struct peer *p = r->peer;
	uint64_t end = util_now_ms() + r->conf.ping_timeout_ms + 5000;
	int rc = 0;

	pthread_mutex_lock(&r->lock);
	/* A split brain stays visible while standalone (see discard-my-data). */
	while (!p->want && r->state.conn != RSM_C_STANDALONE &&
	       r->state.conn != RSM_C_SPLITBRAIN) {
		if (atomic_load(&r->frozen) == RES_FROZEN_FENCE) {
			snprintf(why, len, "disconnected; I/O is frozen until handler-fence-peer "
				 "succeeds");
			break;
		}
		if (util_now_ms() >= end) {
			snprintf(why, len, "the connection is still being torn down (%s)",
				 rsm_conn_name(r->state.conn));
			rc = -ETIMEDOUT;
			break;
		}
		peer_cond_wait_until(r, end);
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

int
peer_disconnect(struct res *r, char *why, size_t len)
{
	struct peer *p = r->peer;

	if (!p) {
		snprintf(why, len, "no peer configured");
		return -ENOTCONN;
	}
	peer_set(p, &p->want, 0);
	return peer_disconnect_settle(r, why, len);
}

/* ---- state ---- */

static int
peer_bits_left(struct res *r)
{
	struct dm_stats st;

	dm_get_stats(r->dm, &st);
	return st.oos_bytes != 0;
}

static int
peer_is_behind(struct res *r)
{
	struct rsm_state s;

	rsm_get(r, &s);
	return s.repl == RSM_R_BEHIND;
}

/* Only the connection fields: a promote or demote on the control thread
 * meanwhile keeps its role (rsm_update reads and writes under r->lock). */
static void
peer_conn_state(struct res *r, enum rsm_conn c, enum rsm_repl repl, const char *why)
{
	struct rsm_state v = { .conn = c, .repl = repl };

	if (FAULT("peer/state/slow"))
		usleep(500000);	/* tests: a promote runs meanwhile */
	rsm_update(r, RSM_F_CONN | RSM_F_REPL, &v, why, NULL, NULL);
}

static void
peer_local_state(struct res *r, struct px_state *st)
{
	struct meta_sb sb;
	struct rsm_state s;
	struct dm_stats ds;

	dm_sb_get(r->dm, &sb);
	rsm_get(r, &s);
	dm_get_stats(r->dm, &ds);
	memset(st, 0, sizeof(*st));
	st->role = s.role == RSM_PRIMARY;
	st->disk = (uint8_t)s.disk;
	st->flags = sb.flags;
	st->data_size = sb.data_size;
	st->granularity = sb.granularity;
	st->gen_current = sb.gen_current;
	st->gen_bitmap = sb.gen_bitmap;
	memcpy(st->gen_history, sb.gen_history, sizeof(st->gen_history));
	st->oos_bits = (ds.oos_bytes + sb.granularity - 1) / sb.granularity;
	st->node_uuid = sb.node_uuid;
	pthread_mutex_lock(&r->lock);
	if (r->peer && r->peer->discard_my_data)
		st->flags |= META_F_DISCARD_REQUESTED;
	pthread_mutex_unlock(&r->lock);
}

static int
peer_detached_disk(unsigned disk)
{
	return disk == RSM_D_FAILED || disk == RSM_D_DISKLESS;
}

static void
peer_remember(struct peer *p, const struct px_state *st)
{
	pthread_mutex_lock(&p->res->lock);
	p->peer_known = 1;
	p->peer_role = st->role;
	p->peer_disk = st->disk;
	if (!peer_detached_disk(st->disk))
		atomic_store(&p->res->peer_detached, 0);
	else if (!atomic_exchange(&p->res->peer_detached, 1))
		LOG_WARN("peer: its disk is %s: the writes it refuses are marked out of sync",
			 rsm_disk_name((enum rsm_disk)st->disk));
	pthread_mutex_unlock(&p->res->lock);
}

/* ---- sockets ---- */

static void
peer_timeouts(int fd, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	int one = 1;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* The address of a socket, IPv4-mapped IPv6 as IPv4: into out (16 bytes),
 * returns its length (4 or 16), or 0 for another family. */
static int
peer_addr_bytes(const struct sockaddr *sa, unsigned char *out)
{
	static const unsigned char mapped[12] = { [10] = 0xff, [11] = 0xff };

	if (sa->sa_family == AF_INET) {
		memcpy(out, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
		return 4;
	}
	if (sa->sa_family != AF_INET6)
		return 0;
	memcpy(out, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
	if (memcmp(out, mapped, sizeof(mapped)) == 0) {
		memmove(out, out + 12, 4);
		return 4;
	}
	return 16;
}

static int
peer_addr_any(const struct sockaddr *sa)
{
	static const unsigned char zero[16];
	unsigned char a[16];
	int n = peer_addr_bytes(sa, a);

	return n == 0 || memcmp(a, zero, (size_t)n) == 0;
}

/* The peer's addresses, resolved at most every 30 s (a name lookup on
 * every accept would stall the acceptor while DNS is down); a failed
 * lookup keeps what the last one found. */
static void
peer_acc_resolve(struct peer *p)
{
	const struct conf_node *n = &p->res->conf.nodes[p->res->conf.peer];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *ai, *i;
	uint64_t now = util_now_ms();
	int k = 0;

	if (p->acc_resolved_ms && now - p->acc_resolved_ms < 30000)
		return;
	p->acc_resolved_ms = now;
	if (getaddrinfo(n->host, "0", &hints, &ai))
		return;
	for (i = ai; i && k < 8; i = i->ai_next) {
		p->acc_len[k] = peer_addr_bytes(i->ai_addr, p->acc_addr[k]);
		k += p->acc_len[k] != 0;
	}
	freeaddrinfo(ai);
	p->acc_n = k;
}

/* Whether an incoming connection comes from the peer's configured address
 * (any address its host name resolves to): like DRBD, the listener talks
 * to nobody else, so that other hosts cannot take its handshake slots.
 * An unresolvable name lets every address through (the HMAC still
 * decides). */
static int
peer_from_peer(struct peer *p, const struct sockaddr *from)
{
	unsigned char a[16];
	int la = peer_addr_bytes(from, a);

	peer_acc_resolve(p);
	if (!p->acc_n)
		return 1;
	for (int i = 0; i < p->acc_n; i++)
		if (la && p->acc_len[i] == la && memcmp(a, p->acc_addr[i], (size_t)la) == 0)
			return 1;
	return 0;
}

static int
peer_resolve(const struct conf_node *n, struct addrinfo **ai, int passive)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
	char port[8];

	if (passive)
		hints.ai_flags = AI_PASSIVE;
	snprintf(port, sizeof(port), "%u", n->port);
	return getaddrinfo(n->host, port, &hints, ai) ? -EHOSTUNREACH : 0;
}

/* The connector's links leave from this node's own address, as DRBD's do:
 * the listener accepts the peer's address only (peer_from_peer), and on a
 * host with several addresses the route might pick another.  Best effort:
 * a wildcard or unusable own address leaves the choice to the kernel. */
static void
peer_bind_self(struct res *r, int fd, int family)
{
	const struct conf_node *self = &r->conf.nodes[r->conf.self];
	struct addrinfo hints = { .ai_family = family, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV }, *ai;
	int one = 1;

	/* The port is picked by connect(), as without a bind: bind() alone
	 * would take any free one -- the listener's own while the peer is
	 * down, which then cannot restart (or connects to itself). */
	if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) < 0)
		return;
	if (getaddrinfo(self->host, "0", &hints, &ai))
		return;
	if (!peer_addr_any(ai->ai_addr) && bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		LOG_DEBUG("peer: binding to %s before dialing: %s", self->host, strerror(errno));
	freeaddrinfo(ai);
}

/* Waits up to ms for fd: 1 ready, 0 on timeout or when the thread must
 * stop or disconnect.  Other wake-ups (state changes) are drained and the
 * wait goes on: they are handled once a session is up. */
static int
peer_poll(struct peer *p, int fd, short ev, int ms)
{
	uint64_t end = util_now_ms() + (uint64_t)ms;

	for (;;) {
		struct pollfd pf[2] = { { .fd = fd, .events = ev },
					{ .fd = p->efd, .events = POLLIN } };
		uint64_t now = util_now_ms(), v;
		int stop;

		if (now >= end)
			return 0;
		if (poll(pf, 2, (int)(end - now)) <= 0)
			continue;
		if (pf[0].revents & (ev | POLLERR | POLLHUP))
			return 1;
		if (read(p->efd, &v, sizeof(v)) < 0)
			(void)0;
		pthread_mutex_lock(&p->res->lock);
		stop = p->stop || !p->want || p->restart;
		pthread_mutex_unlock(&p->res->lock);
		if (stop)
			return 0;
	}
}

static int
peer_dial(struct peer *p, int ms)
{
	struct res *r = p->res;
	struct addrinfo *ai;
	int fd, rc, err = 0;
	socklen_t el = sizeof(err);

	rc = peer_resolve(&r->conf.nodes[r->conf.peer], &ai, 0);
	if (rc)
		return rc;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		freeaddrinfo(ai);
		return -errno;
	}
	peer_bind_self(r, fd, ai->ai_family);
	rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	if (rc < 0 && errno != EINPROGRESS) {
		rc = -errno;
		close(fd);
		return rc;
	}
	if (rc < 0) {
		if (!peer_poll(p, fd, POLLOUT, ms) ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
			close(fd);
			return err ? -err : -ETIMEDOUT;
		}
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	peer_timeouts(fd, PEER_HS_TIMEOUT_MS);
	return fd;
}

/* TLS first when configured (certificates both ways), then the HMAC
 * handshake inside it.  Runs on a handshake thread (peer_hs_main): it
 * reads only what does not change while the peer runs.  The supervisor
 * logs the outcome. */
static int
peer_hs(struct peer *p, struct peer_hs_job *j, char *err, size_t errlen)
{
	struct res *r = p->res;
	struct px_hs_params hp = {
		.initiator = p->initiator,
		.node = r->conf.nodes[r->conf.self].name,
		.peer = r->conf.nodes[r->conf.peer].name,
		.resource = r->conf.name,
		.secret = p->secret,
		.secret_len = p->secret_len,
		.link = j->link,
		.queue = j->queue,
		.session = j->session,
		.features = 0,
	};
	struct px_sock sk = { .fd = j->c.fd, .tls = NULL };
	int rc;

	if (p->tls_ctx) {
		rc = px_tls_handshake(p->tls_ctx, sk.fd, p->initiator, hp.peer, &sk.tls, err,
				      errlen);
		j->in_tls = rc != 0;
		if (rc)
			return rc;
	}
	rc = px_handshake_s(&sk, &hp, &j->c.hr, err, errlen);
	if (rc) {
		px_tls_free(sk.tls);
		return rc;
	}
	/* The listener takes the kind the connector asks for: the caller
	 * decides what a link of the other kind means. */
	j->c.tls = sk.tls;
	return 0;
}

static void *
peer_hs_main(void *arg)
{
	struct peer_hs_job *j = arg;
	struct peer *p = j->p;
	char err[sizeof(j->err)] = "";
	uint64_t one = 1;
	int rc;

	rc = peer_hs(p, j, err, sizeof(err));
	pthread_mutex_lock(&p->hs_lock);
	j->rc = rc;
	memcpy(j->err, err, sizeof(err));
	j->state = PEER_HS_DONE;
	pthread_mutex_unlock(&p->hs_lock);
	if (write(p->hs_efd, &one, sizeof(one)) < 0)
		LOG_ERROR("peer: eventfd write failed: %s", strerror(errno));
	return NULL;
}

static uint64_t
peer_session_get(struct peer *p)
{
	uint64_t s;

	pthread_mutex_lock(&p->hs_lock);
	s = p->session;
	pthread_mutex_unlock(&p->hs_lock);
	return s;
}

static void
peer_session_set(struct peer *p, uint64_t s)
{
	pthread_mutex_lock(&p->hs_lock);
	p->session = s;
	pthread_mutex_unlock(&p->hs_lock);
}

/* Starts the handshake on fd (owned by the job from here, also on
 * failure, when it is closed).  0 or -errno. */
static int
peer_hs_start(struct peer *p, struct peer_hs_job *j, int fd, uint16_t link, uint16_t queue)
{
	int rc;

	memset(j, 0, sizeof(*j));
	j->p = p;
	j->c.fd = fd;
	j->link = link;
	j->queue = queue;
	j->session = peer_session_get(p);
	j->start = util_now_ms();
	j->deadline = j->start + PEER_HS_BUDGET_MS;
	j->state = PEER_HS_RUNNING;
	rc = pthread_create(&j->thread, NULL, peer_hs_main, j);
	if (rc) {
		LOG_ERROR("peer: no thread for a handshake: %s", strerror(rc));
		close(fd);
		j->state = PEER_HS_FREE;
		return -rc;
	}
	return 0;
}

/* Ends a running handshake now: its reads and writes fail at once. */
static void
peer_hs_cut(struct peer_hs_job *j)
{
	if (j->state != PEER_HS_FREE && !j->expired) {
		j->expired = 1;
		shutdown(j->c.fd, SHUT_RDWR);
	}
}

static int
peer_hs_done(struct peer *p, struct peer_hs_job *j)
{
	int done;

	pthread_mutex_lock(&p->hs_lock);
	done = j->state == PEER_HS_DONE;
	pthread_mutex_unlock(&p->hs_lock);
	return done;
}

/* Whether a warning about an incoming handshake may be logged now: at
 * most one a second, so a flood of connections cannot flood the log; the
 * next one says how many were held back (they go to the debug level). */
static int
peer_acc_log_ok(struct peer *p, unsigned *quiet)
{
	uint64_t now = util_now_ms();

	if (p->initiator)
		return *quiet = 0, 1;
	if (now - p->acc_log_ms < 1000) {
		p->acc_quiet++;
		return 0;
	}
	p->acc_log_ms = now;
	*quiet = p->acc_quiet;
	p->acc_quiet = 0;
	return 1;
}

static void
peer_hs_log(struct peer *p, const struct peer_hs_job *j)
{
	const char *kind = p->initiator ? (j->link == PX_LINK_META ? "meta" : "data") : "incoming";
	char why[300];
	unsigned quiet;

	if (j->expired && util_now_ms() >= j->deadline)
		snprintf(why, sizeof(why), "%s link handshake did not finish within %d ms: dropped",
			 kind, PEER_HS_BUDGET_MS);
	else if (j->expired && p->initiator)
		snprintf(why, sizeof(why), "%s link handshake cut short (disconnect or shutdown)",
			 kind);
	else if (j->expired)
		snprintf(why, sizeof(why), "%s handshake cut short (too many at once, or shutdown)",
			 kind);
	else if (j->in_tls)
		snprintf(why, sizeof(why), "TLS handshake failed: %s", j->err);
	else
		snprintf(why, sizeof(why), "%s link handshake failed: %s", kind, j->err);
	/* Cut short on purpose: an eviction is routine under a flood (debug),
	 * a disconnect or shutdown the operator's (info). */
	if (j->expired && util_now_ms() < j->deadline && p->initiator)
		LOG_INFO("peer: %s", why);
	else if ((j->expired && util_now_ms() < j->deadline) || !peer_acc_log_ok(p, &quiet))
		LOG_DEBUG("peer: %s", why);
	else if (quiet)
		LOG_WARN("peer: %s (and %u more incoming handshakes failed in the last second)",
			 why, quiet);
	else
		LOG_WARN("peer: %s", why);
}

/* Collects a finished handshake: 0 and *c holds the authenticated link,
 * or -errno (logged here, socket closed).  The job is free again. */
static int
peer_hs_reap(struct peer *p, struct peer_hs_job *j, struct peer_conn *c)
{
	int rc;

	pthread_join(j->thread, NULL);
	j->state = PEER_HS_FREE;
	rc = j->rc;
	if (!rc && j->expired)
		rc = -ETIMEDOUT;        /* authenticated just as it was cut */
	if (!rc) {
		*c = j->c;
		return 0;
	}
	peer_hs_log(p, j);
	px_tls_free(j->c.tls);
	close(j->c.fd);
	return rc;
}

/* The connector's handshake on fd (consumed), bounded by
 * PEER_HS_BUDGET_MS in total and cut short by stop or disconnect. */
static int
peer_hs_bounded(struct peer *p, int fd, uint16_t link, uint16_t queue, struct peer_conn *c)
{
	struct peer_hs_job j;
	uint64_t v;
	int rc;

	rc = peer_hs_start(p, &j, fd, link, queue);
	if (rc)
		return rc;
	while (!peer_hs_done(p, &j)) {
		struct pollfd pf[2] = { { .fd = p->hs_efd, .events = POLLIN },
					{ .fd = p->efd, .events = POLLIN } };
		uint64_t now = util_now_ms();
		int stop;

		if (now >= j.deadline) {
			peer_hs_cut(&j);
			pf[1].fd = -1;
		}
		poll(pf, 2, j.expired ? 100 : (int)(j.deadline - now));
		if (pf[0].revents & POLLIN && read(p->hs_efd, &v, sizeof(v)) < 0)
			(void)0;
		if (!(pf[1].revents & POLLIN))
			continue;
		if (read(p->efd, &v, sizeof(v)) < 0)
			(void)0;
		pthread_mutex_lock(&p->res->lock);
		stop = p->stop || !p->want || p->restart;
		pthread_mutex_unlock(&p->res->lock);
		if (stop)
			peer_hs_cut(&j);
	}
	return peer_hs_reap(p, &j, c);
}

static void
peer_conn_close(struct peer_conn *c)
{
	px_tls_free(c->tls);
	close(c->fd);
}

/* ---- the listener's acceptor thread ---- */

/* Hands an authenticated link to the peer thread; the oldest one waiting
 * makes room (it is stale by then: the connector gave up on it). */
static void
peer_ready_push(struct peer *p, const struct peer_conn *c)
{
	struct peer_conn old = { .fd = -1 };

	pthread_mutex_lock(&p->hs_lock);
	if (p->nready == PEER_READY_MAX) {
		old = p->ready[0];
		memmove(&p->ready[0], &p->ready[1], (PEER_READY_MAX - 1) * sizeof(p->ready[0]));
		p->nready--;
	}
	p->ready[p->nready++] = *c;
	pthread_mutex_unlock(&p->hs_lock);
	if (old.fd >= 0) {
		LOG_WARN("peer: too many authenticated links waiting: dropped the oldest");
		peer_conn_close(&old);
	}
	peer_wake(p);
}

static int
peer_ready_pop(struct peer *p, struct peer_conn *c)
{
	int got = 0;

	pthread_mutex_lock(&p->hs_lock);
	if (p->nready) {
		*c = p->ready[0];
		memmove(&p->ready[0], &p->ready[1], (p->nready - 1) * sizeof(p->ready[0]));
		p->nready--;
		got = 1;
	}
	pthread_mutex_unlock(&p->hs_lock);
	return got;
}

static void
peer_ready_flush(struct peer *p)
{
	struct peer_conn c;

	while (peer_ready_pop(p, &c))
		peer_conn_close(&c);
}

/* Collects finished handshakes and cuts those past their deadline;
 * returns the ms until the next deadline (at most max_ms). */
static int
peer_acc_tend(struct peer *p, struct peer_hs_job *jobs, int max_ms)
{
	uint64_t now = util_now_ms();
	int wait = max_ms;

	for (int i = 0; i < PEER_HS_MAX; i++) {
		struct peer_hs_job *j = &jobs[i];
		struct peer_conn c;

		if (j->state == PEER_HS_FREE)
			continue;
		if (peer_hs_done(p, j)) {
			if (!peer_hs_reap(p, j, &c))
				peer_ready_push(p, &c);
			continue;
		}
		if (now >= j->deadline)
			peer_hs_cut(j);
		else
			wait = (int)MIN((uint64_t)wait, j->deadline - now);
	}
	return wait;
}

/* A free job, or NULL after cutting the oldest running one short: its
 * slot frees once its thread notices. */
static struct peer_hs_job *
peer_acc_slot(struct peer_hs_job *jobs)
{
	struct peer_hs_job *oldest = NULL;

	for (int i = 0; i < PEER_HS_MAX; i++) {
		if (jobs[i].state == PEER_HS_FREE)
			return &jobs[i];
		if (!jobs[i].expired && (!oldest || jobs[i].start < oldest->start))
			oldest = &jobs[i];
	}
	if (oldest)
		peer_hs_cut(oldest);
	return NULL;
}

/* Whether to watch the listening socket: with a free job, or to cut the
 * oldest for a new connection; not while a cut one is ending, which frees
 * a job soon (else every wake-up would cut one more). */
static int
peer_acc_listen(const struct peer_hs_job *jobs)
{
	int cutting = 0;

	for (int i = 0; i < PEER_HS_MAX; i++) {
		if (jobs[i].state == PEER_HS_FREE)
			return 1;
		cutting |= jobs[i].expired;
	}
	return !cutting;
}

/* Accepts one connection into a free job; none free: leaves it in the
 * backlog (peer_acc_slot cut the oldest to make room).  0 or -errno. */
static int
peer_acc_one(struct peer *p, struct peer_hs_job *jobs)
{
	struct peer_hs_job *j = NULL;
	struct sockaddr_storage from;
	socklen_t fromlen = sizeof(from);
	int fd, want;

	pthread_mutex_lock(&p->res->lock);
	want = p->want;
	pthread_mutex_unlock(&p->res->lock);
	/* Standalone: accepted and closed, so a retrying peer sees a refusal
	 * at once. */
	if (want && !(j = peer_acc_slot(jobs)))
		return 0;
	fd = accept4(p->listen_fd, (struct sockaddr *)&from, &fromlen, SOCK_CLOEXEC);
	if (fd < 0)
		return errno == EAGAIN || errno == EINTR || errno == ECONNABORTED ? 0 : -errno;
	if (j && !peer_from_peer(p, (struct sockaddr *)&from)) {
		char host[INET6_ADDRSTRLEN] = "?";
		unsigned quiet;

		getnameinfo((struct sockaddr *)&from, fromlen, host, sizeof(host), NULL, 0,
			    NI_NUMERICHOST);
		if (peer_acc_log_ok(p, &quiet))
			LOG_WARN("peer: refused a connection from %s: not %s's address (%s); "
				 "%u more not logged", host, p->res->conf.nodes[p->res->conf.peer].name,
				 p->res->conf.nodes[p->res->conf.peer].host, quiet);
		j = NULL;
	}
	if (!j) {
		close(fd);
		return 0;
	}
	peer_timeouts(fd, PEER_HS_TIMEOUT_MS);
	peer_hs_start(p, j, fd, 0, 0);
	return 0;
}

/* The listener accepts here, all the time, and authenticates up to
 * PEER_HS_MAX connections at once, each within PEER_HS_BUDGET_MS: a
 * connection that does not authenticate never delays another. */
static void *
peer_acceptor_main(void *arg)
{
	struct peer *p = arg;
	struct peer_hs_job *jobs = calloc(PEER_HS_MAX, sizeof(*jobs));
	int stop = 0;

	pthread_setname_np(pthread_self(), "mirrord-accept");
	if (!jobs) {
		LOG_ERROR("peer: no memory for the acceptor: the peer cannot connect");
		return NULL;
	}
	while (!stop) {
		struct pollfd pf[2] = { { .fd = p->hs_efd, .events = POLLIN },
					{ .fd = -1, .events = POLLIN } };
		int wait = peer_acc_tend(p, jobs, 1000);
		uint64_t v;
		int rc;

		if (peer_acc_listen(jobs))
			pf[1].fd = p->listen_fd;
		poll(pf, 2, wait);
		if (pf[0].revents & POLLIN && read(p->hs_efd, &v, sizeof(v)) < 0)
			(void)0;
		if (pf[1].revents & POLLIN) {
			rc = peer_acc_one(p, jobs);
			if (rc < 0) {
				/* Out of descriptors, say: retry later, not at once. */
				LOG_WARN("peer: accept: %s", strerror(-rc));
				poll(NULL, 0, 100);
			}
		}
		pthread_mutex_lock(&p->res->lock);
		stop = p->stop;
		pthread_mutex_unlock(&p->res->lock);
	}
	for (int i = 0; i < PEER_HS_MAX; i++) {
		struct peer_conn c;

		peer_hs_cut(&jobs[i]);
		if (jobs[i].state != PEER_HS_FREE && !peer_hs_reap(p, &jobs[i], &c))
			peer_conn_close(&c);
	}
	free(jobs);
	return NULL;
}

/* The next authenticated link from the acceptor, waiting up to ms;
 * -ETIMEDOUT also when the thread must stop, disconnect or restart. */
static int
peer_accept(struct peer *p, int ms, struct peer_conn *c)
{
	uint64_t end = util_now_ms() + (uint64_t)ms;

	for (;;) {
		struct pollfd pf = { .fd = p->efd, .events = POLLIN };
		uint64_t now = util_now_ms(), v;
		int stop;

		if (peer_ready_pop(p, c))
			return 0;
		if (now >= end)
			return -ETIMEDOUT;
		if (poll(&pf, 1, (int)(end - now)) <= 0)
			continue;
		if (read(p->efd, &v, sizeof(v)) < 0)
			(void)0;
		pthread_mutex_lock(&p->res->lock);
		stop = p->stop || !p->want || p->restart;
		pthread_mutex_unlock(&p->res->lock);
		if (stop)
			return -ETIMEDOUT;
	}
}

/* The connector's link: dial, then the bounded handshake. */
static int
peer_dial_link(struct peer *p, int ms, uint16_t link, uint16_t queue, struct peer_conn *c)
{
	int fd = peer_dial(p, ms);

	if (fd < 0)
		return fd;
	return peer_hs_bounded(p, fd, link, queue, c);
}

/* ---- links to queues ---- */

static void
peer_adopt_run(struct ev_msg *m)
{
	struct link_msg *lm = container_of(m, struct link_msg, msg);
	struct res_queue *q = lm->q;
	struct res *r = q->res;
	unsigned epoch;
	int rc = -ESTALE;

	pthread_mutex_lock(&r->lock);
	epoch = r->peer->epoch;
	pthread_mutex_unlock(&r->lock);
	if (epoch == lm->epoch && !q->link) {
		rc = lk_new(&q->link, q, lm->fd, lm->tls);
		if (!rc) {
			pthread_mutex_lock(&r->lock);
			r->peer->links_ready++;
			pthread_cond_broadcast(&r->cond);
			pthread_mutex_unlock(&r->lock);
		}
	} else {
		px_tls_free(lm->tls);
		close(lm->fd);
	}
	if (rc) {
		pthread_mutex_lock(&r->lock);
		r->peer->links_open--;
		pthread_cond_broadcast(&r->cond);
		pthread_mutex_unlock(&r->lock);
	}
	free(lm);
}

static void
peer_fail_run(struct ev_msg *m)
{
	struct link_msg *lm = container_of(m, struct link_msg, msg);

	if (lm->q->link)
		lk_fail(lm->q->link, NULL);
	free(lm);
}

static int
peer_post(struct peer *p, struct res_queue *q, int fd, struct px_tls *tls,
	  void (*fn)(struct ev_msg *))
{
	struct link_msg *lm = calloc(1, sizeof(*lm));

	if (!lm) {
		px_tls_free(tls);
		if (fd >= 0)
			close(fd);
		return -ENOMEM;
	}
	lm->msg.fn = fn;
	lm->q = q;
	lm->fd = fd;
	lm->tls = tls;
	pthread_mutex_lock(&p->res->lock);
	lm->epoch = p->epoch;
	if (fn == peer_adopt_run)
		p->links_open++;
	pthread_mutex_unlock(&p->res->lock);
	ev_post(q->loop, &lm->msg);
	return 0;
}

static void
peer_close_meta(struct peer *p)
{
	p->authed = 0;
	px_tls_free(p->meta.tls);
	p->meta.tls = NULL;
	if (p->meta.fd >= 0)
		close(p->meta.fd);
	p->meta.fd = -1;
}

/* After DISCONNECT with PX_F_OUTDATE: the peer answers with its own
 * DISCONNECT once its superblock says outdated.  1 when it did, within
 * ping-timeout. */
static int
peer_await_outdated(struct peer *p)
{
	uint64_t end = util_now_ms() + p->res->conf.ping_timeout_ms;
	unsigned char buf[sizeof(struct px_state)];
	char why[160];
	struct px_msg m;

	while (util_now_ms() < end) {
		if (px_recv_s(&p->meta, &m, buf, sizeof(buf), p->res->conf.max_io_size, why,
			      sizeof(why)))
			return 0;
		if (m.type == PX_DISCONNECT)
			return 1;
	}
	return 0;
}

/* handler-fence-peer's exit status, with DRBD's meanings: whether the peer
 * can no longer be promoted without this node's writes (*fenced). */
static const char *
peer_fence_verdict(int rc, int *fenced)
{
	*fenced = rc == 0 || rc == 3 || rc == 4 || rc == 5 || rc == 7;
	switch (rc) {
	case 0: return "the peer is fenced";
	case 3: return "the peer's disk is inconsistent";
	case 4: return "the peer is outdated";
	case 5: return "the peer is unreachable, assumed down";
	case 6: return "the peer is primary";
	case 7: return "the peer was powered off (STONITH)";
	default: return rc < 0 ? "the handler could not run" : "the handler failed";
	}
}

/* Ends every data link and waits until the queues have let go of them. */
/* This node started a generation since the peer learnt its current one (a
 * promote that was not in sync, which restarts the session): the peer's
 * current is then our bitmap generation, which names every block since,
 * so a teardown needs no second one.  Two per promote pushed a shared
 * generation off the history (gen_compare row 80, "unrelated"). */
static int
peer_gen_moved(struct peer *p)
{
	struct meta_sb sb;

	dm_sb_get(p->res->dm, &sb);
	/* Started from it: the one the peer learnt is our latest history
	 * entry.  Not a generation taken from the peer at a resync end. */
	return p->session_gen && sb.gen_current != p->session_gen &&
	       sb.gen_history[0] == p->session_gen;
}

/* lost: the peer vanished (EOF, error, timeout), as opposed to an orderly
 * disconnect or restart on either side: only then is it fenced. */
static void
peer_teardown(struct peer *p, const char *why, int lost)
{
	struct res *r = p->res;
	struct rsm_state s;
	int fencing = peer_fencing_applies(r), fence, peer_was_primary, peer_detached;
	int no = RES_FROZEN_NO;

	/* fencing = resource-and-stonith: a sync primary that loses its peer
	 * holds writes until the peer is fenced, so the peer can never be
	 * promoted without a write this node acknowledged.  One that leaves
	 * a peer it goes on without holds them until the peer confirms it is
	 * outdated (or is fenced). */
	fence = lost && fencing;
	if (fence) {
		atomic_store(&r->frozen, RES_FROZEN_FENCE);
		LOG_WARN("peer lost while primary: I/O frozen until handler-fence-peer succeeds");
	} else if (fencing && p->outdate_peer) {
		atomic_compare_exchange_strong(&r->frozen, &no, RES_FROZEN_LINK);
	}
	rsm_get(r, &s);
	pthread_mutex_lock(&r->lock);
	peer_was_primary = p->peer_known && p->peer_role;
	peer_detached = p->peer_known &&
			(p->peer_disk == RSM_D_FAILED || p->peer_disk == RSM_D_DISKLESS);
	pthread_mutex_unlock(&r->lock);
	/* An orderly end with a primary that goes on writing: this node
	 * misses its writes from now (DRBD outdates it too).  Recorded
	 * before the primary hears that we leave.  A primary whose disk is
	 * detached writes nothing without us: we stay its only copy. */
	if (!lost && p->outdate_self && peer_was_primary && !peer_detached)
		rsm_outdate(r, "the primary goes on without this node");
	/* Behind when the link went: outdated, whatever the reason it went. */
	if (peer_take(p, &p->outdate_req))
		rsm_outdate(r, "behind the peer (pull-ahead)");
	if (p->meta.fd >= 0) {
		/* Only an authenticated peer hears why we leave; a primary that
		 * goes on writing tells the secondary it is outdated now. */
		if (p->authed)
			px_send_s(&p->meta, PX_DISCONNECT, p->outdate_peer &&
				  s.role == RSM_PRIMARY && !atomic_load(&r->detached) ?
				  PX_F_OUTDATE : 0, 0, NULL, 0);
		if (!fence && fencing && p->outdate_peer && !atomic_load(&r->detached) &&
		    !peer_await_outdated(p)) {
			fence = 1;
			atomic_store(&r->frozen, RES_FROZEN_FENCE);
			LOG_WARN("peer did not confirm it is outdated: I/O frozen until "
				 "handler-fence-peer succeeds");
		}
		peer_close_meta(p);
	}
	/* From now on the listener refuses this session's data links. */
	peer_session_set(p, 0);
	pthread_mutex_lock(&r->lock);
	p->epoch++;
	pthread_mutex_unlock(&r->lock);
	for (unsigned i = 0; i < r->nqueues; i++)
		peer_post(p, &r->queues[i], -1, NULL, peer_fail_run);
	pthread_mutex_lock(&r->lock);
	if (p->links_open)
		LOG_DEBUG("peer: waiting for %u data link(s) to close, after the peer's writes "
			  "they still apply", p->links_open);
	while (p->links_open)
		pthread_cond_wait(&r->cond, &r->lock);
	/* Only now that the links are closed: the peer's writes they were
	 * still applying are done, and a promote that sees the peer no
	 * longer known can no longer be overwritten by one of them. */
	p->peer_known = 0;
	p->links_ready = 0;
	atomic_store(&r->peer_detached, 0);
	/* Only now: the old links report their end while they go. */
	p->link_failed = 0;
	atomic_store(&r->ahead, 0);
	p->resync_done = 0;
	pthread_mutex_unlock(&r->lock);
	if (fence) {
		int rc = hook_run_sync(r, HOOK_FENCE_PEER, (int)r->conf.handler_timeout_s), fenced;
		const char *what = peer_fence_verdict(rc, &fenced);

		if (fenced) {
			int fenced_hold = RES_FROZEN_FENCE;

			LOG_INFO("fence-peer succeeded: resuming I/O (exit %d: %s)", rc, what);
			if (atomic_compare_exchange_strong(&r->frozen, &fenced_hold, RES_FROZEN_NO))
				wp_thaw_all(r);
		} else {
			LOG_ERROR("fence-peer failed (%d: %s): I/O stays frozen; 'mirrorctl resume-io' "
				  "resumes it without fencing, at the risk of a split brain", rc, what);
		}
	} else {
		int link = RES_FROZEN_LINK;

		/* Held when a link failed, but the peer left in order. */
		if (atomic_compare_exchange_strong(&r->frozen, &link, RES_FROZEN_NO))
			wp_thaw_all(r);
		/* A session that failed before it was connected: the peer never
		 * left the state it had before (fenced, or behind a generation
		 * this node's writes alone move on). */
		peer_session_release(r);
	}
	p->outdate_self = p->outdate_peer = 0;
	/* Ordered against a promote (role_lock): either the promote sees the
	 * connection gone and starts a new generation, or this sees it
	 * primary and arms one.  Without it, a promote that found the peer
	 * still known and in sync kept the shared generation, and this,
	 * reading the role just before, armed none: a primary alone at the
	 * generation its peer has too. */
	pthread_mutex_lock(&r->role_lock);
	rsm_get(r, &s);
	/* A primary that goes on alone starts a new generation, so the peer
	 * can later tell that this side changed (gen_compare rule 40) -- but
	 * only with its first write alone: a primary that is stopped or
	 * reconnects without writing has not diverged.  Unless blocks are out
	 * of sync already (writes the links failed, pull-ahead): those are
	 * writes alone too, and nothing else would record them once this node
	 * is demoted.  Armed first, so a write racing with the check cannot
	 * slip through at the old generation. */
	if (s.role == RSM_PRIMARY && s.conn == RSM_C_CONNECTED && !peer_gen_moved(p)) {
		dm_new_gen_on_write(r->dm, 1);
		/* Not when the bits are a resync's to a target: it is
		 * inconsistent, so the next connect makes this node source
		 * again whatever the generations (gen_compare row 34).  A new
		 * one at each restart (an invalidate, say) pushed the shared
		 * generation off the history: "unrelated". */
		if (dm_any_oos(r->dm) && !p->source_running)
			dm_new_gen_now(r->dm);
	}
	p->session_gen = 0;
	p->source_running = 0;
	if (s.conn != RSM_C_SPLITBRAIN)
		peer_conn_state(r, RSM_C_CONNECTING, RSM_R_OFF, why);
	pthread_mutex_unlock(&r->role_lock);
}

/* ---- the connection sequence ---- */

/* Every queue has taken its data link: from "connected" on, a write that
 * a queue starts goes to the peer, never alone (with fencing, a write
 * alone then would be one an up-to-date peer lacks).  A link a queue
 * refused, or failed at once, fails the session. */
static int
peer_links_adopted(struct peer *p)
{
	struct res *r = p->res;
	uint64_t end = util_now_ms() + PEER_HS_TIMEOUT_MS;
	int rc = 0;

	pthread_mutex_lock(&r->lock);
	while (p->links_ready < r->nqueues && !p->link_failed) {
		if (util_now_ms() >= end || p->links_open < r->nqueues) {
			rc = -ENOTCONN;
			break;
		}
		peer_cond_wait_until(r, end);
	}
	if (p->link_failed)
		rc = -ENOTCONN;
	pthread_mutex_unlock(&r->lock);
	return rc;
}


static int
peer_send_bitmap(struct peer *p)
{
	struct res *r = p->res;
	static unsigned char buf[sizeof(struct px_bitmap) + PX_BITMAP_CHUNK];
	uint64_t bytes = dm_bitmap_bytes(r->dm);
	int rc;

	for (uint64_t off = 0; off < bytes; off += PX_BITMAP_CHUNK) {
		uint32_t n = (uint32_t)MIN(PX_BITMAP_CHUNK, bytes - off);
		uint64_t first_bit = htobe64(off * 8);

		memcpy(buf, &first_bit, sizeof(first_bit));
		dm_bitmap_get(r->dm, off, buf + sizeof(struct px_bitmap), n);
		rc = px_send_s(&p->meta, PX_BITMAP, 0, 0, buf, (uint32_t)sizeof(struct px_bitmap) + n);
		if (rc)
			return rc;
	}
	return px_send_s(&p->meta, PX_BITMAP_DONE, 0, 0, NULL, 0);
}

/* The peer's bitmap, ORed into ours; what it may send is
 * rxc_bitmap_step()'s to say (daemon/rxcheck.h). */
static int
peer_recv_bitmap(struct peer *p)
{
	struct res *r = p->res;
	static unsigned char buf[sizeof(struct px_bitmap) + PX_BITMAP_CHUNK];
	struct rxc_bitmap rb;
	struct px_msg m;
	char why[160];
	int rc;

	rxc_bitmap_init(&rb, dm_bitmap_bytes(r->dm), PX_BITMAP_CHUNK);
	for (;;) {
		uint64_t off;
		uint32_t n;

		rc = px_recv_s(&p->meta, &m, buf, sizeof(buf), r->conf.max_io_size, why, sizeof(why));
		if (rc) {
			LOG_WARN("peer: receiving the bitmap: %s", rc == -EPROTO ? why : strerror(-rc));
			return rc;
		}
		rc = rxc_bitmap_step(&rb, &m, buf, &off, &n, why, sizeof(why));
		if (rc < 0)
			LOG_WARN("peer: receiving the bitmap: %s", why);
		if (rc <= 0)
			return rc;
		dm_bitmap_or(r->dm, off, buf + sizeof(struct px_bitmap), n);
	}
}

static int
peer_exchange_state(struct peer *p, struct px_state *mine, struct px_state *theirs)
{
	unsigned char buf[sizeof(struct px_state)];
	struct px_msg m;
	char why[160];
	int rc;

	peer_local_state(p->res, mine);
	px_state_encode(buf, mine);
	rc = px_send_s(&p->meta, PX_STATE, 0, 0, buf, sizeof(buf));
	if (rc)
		return rc;
	rc = px_recv_s(&p->meta, &m, buf, sizeof(buf), p->res->conf.max_io_size, why, sizeof(why));
	if (rc)
		return rc;
	if (m.type != PX_STATE || px_state_decode(buf, m.len, theirs))
		return -EPROTO;
	peer_remember(p, theirs);
	return 0;
}

static enum gen_sb_policy
peer_sb_policy(const struct res *r)
{
	return (enum gen_sb_policy)r->conf.after_sb_0pri;
}

/* Decides what to do on this connection (rxc_decide(), daemon/rxcheck.h);
 * returns the decision, or -1 when the connection must not go on
 * (message logged, state set). */
static int
peer_decide(struct peer *p, const struct px_state *mine, const struct px_state *theirs)
{
	struct res *r = p->res;
	struct px_state m = *mine, t = *theirs;
	struct rxc_decision v;
	int rc;

	/* A version 2 peer knows no verify-diff: both decide without it. */
	if (atomic_load(&r->peer_version) < PX_VERSION_READ_REQ) {
		m.flags &= ~META_F_VERIFY_DIFF;
		t.flags &= ~META_F_VERIFY_DIFF;
	}
	rc = rxc_decide(&m, &t, peer_sb_policy(r), &v);
	if (rc == -EPROTO || rc == -EMEDIUMTYPE) {
		LOG_ERROR("peer: %s", v.note);
		return -1;
	}
	LOG_INFO("peer: generations: local %016llx/%016llx, peer %016llx/%016llx: %s (rule %d)",
		 (unsigned long long)mine->gen_current, (unsigned long long)mine->gen_bitmap,
		 (unsigned long long)theirs->gen_current, (unsigned long long)theirs->gen_bitmap,
		 gen_decision_name(v.gen), v.rule);
	if (rc == -EUCLEAN) {
		LOG_ERROR("peer: split brain detected: %s; nothing is moved (resolve with "
			  "discard-my-data on one node, then connect)", v.note);
		peer_conn_state(r, RSM_C_SPLITBRAIN, RSM_R_OFF, "split brain");
		return -1;
	}
	if (rc) {
		LOG_ERROR("peer: %s (disk here %s, peer %s): refusing to connect", v.note,
			  rsm_disk_name((enum rsm_disk)mine->disk),
			  rsm_disk_name((enum rsm_disk)theirs->disk));
		return -1;
	}
	if (v.note[0])
		LOG_INFO("peer: %s", v.note);
	return (int)v.d;
}

/* The target's data is inconsistent from the first resync write on. */
static void
peer_begin_target(struct res *r)
{
	struct meta_sb sb;
	struct rsm_state s;

	dm_sb_begin(r->dm, &sb);
	/* Whatever it wrote alone is being overwritten. */
	sb.flags &= ~(META_F_UPTODATE | META_F_CONSISTENT | META_F_LOCAL_CHANGES);
	dm_sb_commit(r->dm, &sb);
	s.disk = RSM_D_INCONSISTENT;
	rsm_update(r, RSM_F_DISK, &s, "sync target", NULL, NULL);
}

/* A data link from the listener's queue that does not belong to this
 * session: a leftover of an earlier attempt.  Returns 1 to drop it. */
static int
peer_stale_data_link(struct peer *p, const struct peer_conn *c, unsigned seen)
{
	const struct px_hs_result *hr = &c->hr;

	if (hr->session != peer_session_get(p))
		return 1;
	if (hr->queue >= p->res->nqueues || (seen & (1u << hr->queue))) {
		LOG_WARN("peer: data link for queue %u refused", hr->queue);
		return 1;
	}
	return 0;
}

/* The next data link: dialed and authenticated (connector), or taken from
 * the acceptor (listener) before the deadline. */
static int
peer_next_data_link(struct peer *p, unsigned i, uint64_t deadline, unsigned seen,
		    struct peer_conn *c)
{
	int rc;

	if (p->initiator) {
		rc = peer_dial_link(p, PEER_HS_TIMEOUT_MS, PX_LINK_DATA, (uint16_t)i, c);
		if (!rc && c->hr.link != PX_LINK_DATA) {
			peer_conn_close(c);
			rc = -EPROTO;
		}
		return rc;
	}
	for (;;) {
		uint64_t now = util_now_ms();

		rc = now < deadline ? peer_accept(p, (int)(deadline - now), c) : -ETIMEDOUT;
		if (rc)
			return rc;
		if (c->hr.link == PX_LINK_META) {
			/* The peer started over: this session is dead. */
			LOG_INFO("peer: the peer restarted its session");
			peer_conn_close(c);
			return -ESTALE;
		}
		if (!peer_stale_data_link(p, c, seen))
			return 0;
		peer_conn_close(c);
	}
}

static int
peer_open_data_links(struct peer *p)
{
	struct res *r = p->res;
	uint64_t deadline = util_now_ms() + PEER_HS_TIMEOUT_MS;
	unsigned seen = 0;
	struct peer_conn c;
	int rc;

	for (unsigned i = 0; i < r->nqueues; i++) {
		rc = peer_next_data_link(p, i, deadline, seen, &c);
		if (rc)
			return rc;
		/* From here the queue's ring moves the bytes: memory BIOs. */
		if (c.tls && px_tls_detach(c.tls)) {
			LOG_WARN("peer: TLS session could not be detached for the data link");
			peer_conn_close(&c);
			return -EPROTO;
		}
		seen |= 1u << c.hr.queue;
		/* The data path runs on the queue's ring: no socket timeouts. */
		peer_timeouts(c.fd, 0);
		rc = peer_post(p, &r->queues[p->initiator ? i : c.hr.queue], c.fd, c.tls,
			       peer_adopt_run);
		if (rc)
			return rc;
	}
	return 0;
}

static void
peer_sync_finished_target(struct peer *p, const struct px_state *src)
{
	struct res *r = p->res;
	struct meta_sb sb;
	struct rsm_state s;

	/* The bits the resync cleared, on disk before the generation that says
	 * "in sync": else a crash from here on brings them back. */
	if (dm_sync_bitmap(r->dm))
		return;		/* metadata failed: stay inconsistent */
	dm_sb_begin(r->dm, &sb);
	sb.gen_current = src->gen_current;
	sb.gen_bitmap = 0;
	sb.flags |= META_F_UPTODATE | META_F_CONSISTENT;
	sb.flags &= ~(META_F_JUST_CREATED | META_F_CRASHED_PRIMARY | META_F_DISCARD_REQUESTED |
		      META_F_LOCAL_CHANGES | META_F_VERIFY_DIFF);
	dm_sb_commit(r->dm, &sb);
	s.disk = RSM_D_UPTODATE;
	s.repl = RSM_R_ESTABLISHED;
	rsm_update(r, RSM_F_DISK | RSM_F_REPL, &s, "resync finished", NULL, NULL);
	pthread_mutex_lock(&r->lock);
	p->discard_my_data = 0;
	pthread_mutex_unlock(&r->lock);
	/* The source learns it from us, not by assuming. */
	{
		unsigned char buf[sizeof(struct px_state)];
		struct px_state st;

		peer_local_state(r, &st);
		px_state_encode(buf, &st);
		px_send_s(&p->meta, PX_STATE, 0, 0, buf, sizeof(buf));
	}
}

static void
peer_sync_finished_source(struct peer *p)
{
	struct res *r = p->res;
	unsigned char buf[sizeof(struct px_state)];
	struct px_state st;
	struct rsm_state s;

	/* The bitmap generation stays until the target reports that it took
	 * our generation (peer_sync_confirmed): if it stops before recording
	 * the end, that generation still names what it holds, and the next
	 * connection is a bitmap resync (gen_compare row 40), not the full
	 * one of row 50.  The bits cleared are made durable now, as on the
	 * target. */
	p->source_running = 0;
	dm_sync_bitmap(r->dm);
	p->end_unconfirmed = 1;
	peer_local_state(r, &st);
	px_state_encode(buf, &st);
	px_send_s(&p->meta, PX_SYNC_DONE, 0, 0, buf, sizeof(buf));
	s.repl = RSM_R_ESTABLISHED;
	rsm_update(r, RSM_F_REPL, &s, "resync finished", NULL, NULL);
}

/* The target of our resync reports, in its STATE, the generation it took
 * at the end: from now on the peer holds everything of ours, so the bitmap
 * generation, a crashed primary's mark and local changes go. */
static void
peer_sync_confirmed(struct peer *p, const struct px_state *theirs)
{
	struct res *r = p->res;
	struct meta_sb sb;

	dm_sb_begin(r->dm, &sb);
	if (!p->end_unconfirmed || theirs->gen_current != sb.gen_current ||
	    theirs->disk != RSM_D_UPTODATE) {
		dm_sb_abort(r->dm);
		return;
	}
	p->end_unconfirmed = 0;
	sb.gen_bitmap = 0;
	sb.flags &= ~(META_F_CRASHED_PRIMARY | META_F_LOCAL_CHANGES | META_F_VERIFY_DIFF);
	dm_sb_commit(r->dm, &sb);
}

/* No sync (gen_compare row 38): the bits left, both sides' merged, name
 * blocks that hold the same data on both, stale marks no record explains.
 * Cleared, durably, so that a later crash cannot bring them back and a
 * later demote does not take them for writes of its own -- but only while
 * this node is still the secondary at the generation decided on: a promote
 * since then may have written.  Under r->lock, as a promote sets the role
 * under it before any write can mark a block. */
static void
peer_clear_stale(struct res *r, const struct px_state *mine)
{
	struct meta_sb sb;
	int clear;

	pthread_mutex_lock(&r->lock);
	dm_sb_get(r->dm, &sb);
	clear = r->state.role == RSM_SECONDARY && sb.gen_current == mine->gen_current &&
		!(sb.flags & META_F_LOCAL_CHANGES) && dm_any_oos(r->dm);
	if (clear)
		dm_clear_all(r->dm);
	pthread_mutex_unlock(&r->lock);
	if (!clear)
		return;
	LOG_INFO("peer: no resync: clearing blocks marked out of sync that neither node wrote");
	dm_sync_bitmap(r->dm);
}

/* In sync with the peer from the start: no bitmap generation needed. */
static void
peer_in_sync(struct res *r, const struct px_state *mine)
{
	struct meta_sb sb;

	peer_clear_stale(r, mine);
	dm_sb_begin(r->dm, &sb);
	/* No sync with verify-diff: neither side had bits left (row 30). */
	if (sb.gen_bitmap || (sb.flags & (META_F_CRASHED_PRIMARY | META_F_VERIFY_DIFF))) {
		sb.gen_bitmap = 0;
		sb.flags &= ~(META_F_CRASHED_PRIMARY | META_F_VERIFY_DIFF);
		dm_sb_commit(r->dm, &sb);
	} else {
		dm_sb_abort(r->dm);
	}
}

/* A resync pass of ours ended with nothing left out of sync: the peer has
 * every write of ours, and local-changes (set by a demote while the pass
 * ran, pull-ahead) no longer holds.  Left set, it would make a later
 * failover of the peer look like a split brain (gen_compare row 43).
 * Nor does verify-diff: the differences it found are repaired.
 * Bitmap first, so that a crash in between keeps the flag with its bits. */
static void
peer_changes_sent(struct res *r)
{
	struct meta_sb sb;

	dm_sb_get(r->dm, &sb);
	if (!(sb.flags & (META_F_LOCAL_CHANGES | META_F_VERIFY_DIFF)) || dm_any_oos(r->dm))
		return;
	if (dm_sync_bitmap(r->dm))
		return;
	dm_sb_begin(r->dm, &sb);
	sb.flags &= ~(META_F_LOCAL_CHANGES | META_F_VERIFY_DIFF);
	dm_sb_commit(r->dm, &sb);
}

/* A verify found blocks that differ: the bits on disk, then the record
 * that they name real differences, before the repair starts.  Cut short
 * (reconnect, crash), it resumes at the next connect instead of the bits
 * being cleared as stale (gen_compare row 38).  A crash before the record
 * forgets the verify, as if it had not run. */
static void
peer_verify_record(struct res *r)
{
	struct meta_sb sb;

	if (dm_sync_bitmap(r->dm))
		return;
	dm_sb_begin(r->dm, &sb);
	sb.flags |= META_F_VERIFY_DIFF;
	dm_sb_commit(r->dm, &sb);
}

/* Keeps the meta link: pings, peer state, resync end, local changes. */
static void
peer_established(struct peer *p, const struct px_state *mine, int source, int target)
{
	struct res *r = p->res;
	unsigned char buf[sizeof(struct px_state)];
	uint64_t last_rx = util_now_ms(), last_tx = last_rx;
	uint32_t timeout = r->conf.ping_timeout_ms;
	/* The peer answers every PING in order, after the messages before
	 * it: the ack of the PING sent right behind a STATE says the peer has
	 * processed that STATE (demote waits for it). */
	uint64_t pings = 0, acks = 0, state_ping = 0, state_req = 0;
	char why[160];
	int rc;

	for (;;) {
		struct pollfd pf[2] = { { .fd = p->meta.fd, .events = POLLIN },
					{ .fd = p->efd, .events = POLLIN } };
		int stop, want, dirty, failed, done, restart, vdone, outdate;
		uint64_t vbad, req;
		uint64_t now;

		/* TLS may hold a whole message already: then do not wait. */
		if (px_sock_pending(&p->meta))
			pf[0].revents = POLLIN;
		else
			poll(pf, 2, (int)MAX(timeout / 4, 10));
		if (pf[1].revents & POLLIN) {
			uint64_t v;
			if (read(p->efd, &v, sizeof(v)) < 0)
				(void)0;
		}
		pthread_mutex_lock(&r->lock);
		stop = p->stop;
		want = p->want;
		dirty = p->state_dirty;
		req = p->state_req;
		failed = p->link_failed;
		done = p->resync_done;
		restart = p->restart;
		p->restart = 0;
		vdone = p->verify_done;
		vbad = p->verify_bad;
		outdate = p->outdate_req;
		p->outdate_req = 0;
		p->verify_done = 0;
		p->state_dirty = 0;
		p->resync_done = 0;
		pthread_mutex_unlock(&r->lock);
		if (stop || !want) {
			/* A secondary that leaves a primary misses its writes;
			 * a primary that disconnects (not one that stops)
			 * goes on writing. */
			p->outdate_self = 1;
			p->outdate_peer = !stop;
			peer_teardown(p, stop ? "shutting down" : "disconnect", 0);
			return;
		}
		if (restart) {
			p->outdate_self = 1;
			p->outdate_peer = 1;
			peer_teardown(p, "reconnect", 0);
			return;
		}
		if (outdate)
			rsm_outdate(r, "behind the peer (pull-ahead)");
		if (vdone) {
			LOG_INFO("verify finished: %llu bytes differ from the peer%s",
				 (unsigned long long)vbad, vbad ? ": marked out of sync, resyncing" : "");
			peer_conn_state(r, RSM_C_CONNECTED, RSM_R_ESTABLISHED, "verify finished");
			/* Both sides marked what differs.  The primary repairs it;
			 * between two secondaries, the one that verified. */
			if (vbad) {
				struct rsm_state ls;
				int prole = 0, pdisk = 0;

				rsm_get(r, &ls);
				peer_info(r, &prole, &pdisk);
				/* Only the side that repairs records it: a
				 * primary peer's own bits already make it
				 * source (rows 32, 35), and nothing would
				 * clear the flag here. */
				if (ls.role == RSM_PRIMARY || !prole)
					peer_verify_record(r);
				if (ls.role == RSM_PRIMARY || !prole) {
					resync_kick(r, RESYNC_DATA);
				} else {
					struct px_state st;

					/* Our STATE makes the primary start. */
					peer_local_state(r, &st);
					px_state_encode(buf, &st);
					px_send_s(&p->meta, PX_STATE, 0, 0, buf, sizeof(buf));
				}
			}
		}
		/* Before SYNC_DONE goes out: a crash between the two would
		 * otherwise keep local-changes with nothing left to send, and
		 * the peer's later failover would look like a split brain
		 * (gen_compare row 43; found by test_gen_model). */
		if (done)
			peer_changes_sent(r);
		if (done && source) {
			source = 0;
			peer_sync_finished_source(p);
		} else if (done && atomic_load(&r->ahead) && peer_bits_left(r)) {
			/* A congested write marked blocks after the pass ended:
			 * still ahead, another pass. */
			resync_kick(r, RESYNC_DATA);
		} else if (done && atomic_exchange(&r->ahead, 0)) {
			/* Caught up after pull-ahead: SYNC_DONE ends "behind"
			 * and makes the peer's disk up to date again. */
			struct px_state st;

			peer_conn_state(r, RSM_C_CONNECTED, RSM_R_ESTABLISHED, "caught up");
			peer_local_state(r, &st);
			px_state_encode(buf, &st);
			px_send_s(&p->meta, PX_SYNC_DONE, 0, 0, buf, sizeof(buf));
			last_tx = util_now_ms();
		}
		if (dirty) {
			struct px_state st;
			peer_local_state(r, &st);
			px_state_encode(buf, &st);
			px_send_s(&p->meta, PX_STATE, 0, 0, buf, sizeof(buf));
			if (px_send_s(&p->meta, PX_PING, 0, 0, NULL, 0) == 0) {
				state_ping = ++pings;
				state_req = req;
			}
			last_tx = util_now_ms();
		}
		if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			struct px_msg m;
			struct px_state st;

			rc = px_recv_s(&p->meta, &m, buf, sizeof(buf), r->conf.max_io_size, why,
				     sizeof(why));
			if (rc) {
				LOG_WARN("peer: meta link: %s", rc == -EPROTO ? why : rc == -ECONNRESET ?
					 "peer closed the connection" : strerror(-rc));
				peer_teardown(p, "peer lost", 1);
				return;
			}
			last_rx = util_now_ms();
			switch (m.type) {
			case PX_PING:
				px_send_s(&p->meta, PX_PING_ACK, 0, 0, NULL, 0);
				last_tx = last_rx;
				break;
			case PX_PING_ACK:
				if (++acks == state_ping) {
					pthread_mutex_lock(&r->lock);
					p->state_acked = state_req;
					pthread_cond_broadcast(&r->cond);
					pthread_mutex_unlock(&r->lock);
				}
				break;
			case PX_STATE:
			case PX_SYNC_DONE:
				/* The same checks as at connect: its superblock
				 * may take the generation of a SYNC_DONE. */
				rc = px_state_decode(buf, m.len, &st);
				if (rc)
					snprintf(why, sizeof(why), "a field out of range");
				else
					rc = rxc_state(mine, &st, why, sizeof(why));
				if (rc) {
					LOG_WARN("peer: bad %s from the peer: %s", px_type_name(m.type),
						 why);
					peer_teardown(p, "bad state from peer", 1);
					return;
				}
				peer_remember(p, &st);
				{
					/* A primary repairs blocks marked out of sync
					 * while connected (verify by the peer). */
					struct rsm_state ls;
					struct dm_stats ds;

					rsm_get(r, &ls);
					dm_get_stats(r->dm, &ds);
					if (ls.role == RSM_PRIMARY && ds.oos_bytes && !source)
						resync_kick(r, RESYNC_DATA);
				}
				if (m.type == PX_SYNC_DONE && (target || peer_is_behind(r))) {
					target = 0;
					peer_sync_finished_target(p, &st);
				}
				if (m.type == PX_STATE)
					peer_sync_confirmed(p, &st);
				if (st.role) {
					struct rsm_state s;
					rsm_get(r, &s);
					if (s.role == RSM_PRIMARY) {
						LOG_ERROR("peer: both nodes became primary: disconnecting");
						peer_teardown(p, "both primary", 0);
						peer_conn_state(r, RSM_C_SPLITBRAIN, RSM_R_OFF, "both primary");
						peer_set(p, &p->want, 0);
						return;
					}
				}
				/* Status and events show the peer's new view; only
				 * SYNC_DONE ends "behind". */
				peer_conn_state(r, RSM_C_CONNECTED, source ? RSM_R_SYNCSOURCE :
						target ? RSM_R_SYNCTARGET : atomic_load(&r->ahead) ?
						RSM_R_AHEAD : peer_is_behind(r) ? RSM_R_BEHIND :
						RSM_R_ESTABLISHED, "peer state");
				break;
			case PX_DISCONNECT:
				LOG_INFO("peer: the peer disconnected%s", (m.flags & PX_F_OUTDATE) ?
					 " and goes on writing without this node" : "");
				p->outdate_self = !!(m.flags & PX_F_OUTDATE);
				peer_teardown(p, "peer disconnected", 0);
				return;
			default:
				LOG_WARN("peer: unexpected %s on the meta link", px_type_name(m.type));
				peer_teardown(p, "protocol error", 1);
				return;
			}
		}
		/* After the meta link's messages: a peer that leaves in order
		 * sends DISCONNECT there before it closes its data links. */
		if (failed) {
			peer_teardown(p, "a data link failed", 1);
			return;
		}
		now = util_now_ms();
		if (now - last_rx > timeout) {
			LOG_WARN("peer: no answer for %u ms: peer considered dead", timeout);
			peer_teardown(p, "ping timeout", 1);
			return;
		}
		if (now - last_tx >= timeout / 4) {
			if (px_send_s(&p->meta, PX_PING, 0, 0, NULL, 0)) {
				peer_teardown(p, "peer lost", 1);
				return;
			}
			pings++;
			last_tx = now;
		}
	}
}

/* Hashes first where the target probably holds most of the data already:
 * after a crash (activity extents), an invalidate or discard-my-data, a
 * full sync to a disk that is not fresh.  Plain bitmap resyncs send data:
 * their blocks are known to differ. */
static enum resync_mode
peer_resync_mode(int d, const struct px_state *mine, const struct px_state *theirs)
{
	if ((mine->flags | theirs->flags) & (META_F_CRASHED_PRIMARY | META_F_DISCARD_REQUESTED))
		return RESYNC_CSUM;
	if (d == GEN_SOURCE_FULL && theirs->gen_current != GEN_JUST_CREATED &&
	    theirs->gen_current != 0)
		return RESYNC_CSUM;
	return RESYNC_DATA;
}

/* One attempt: meta link up to established (or refused).  Returns 1 when
 * the session was established (and has ended since). */
static int
peer_session(struct peer *p, struct peer_conn *c)
{
	struct res *r = p->res;
	struct px_state mine, theirs;
	uint64_t req;
	int fd = c->fd;
	int d, source, target, rc;

	p->end_unconfirmed = 0;
	if (c->hr.link != PX_LINK_META) {
		/* A data link left over from an earlier attempt: not a session. */
		peer_conn_close(c);
		return 0;
	}
	p->meta.fd = fd;
	p->meta.tls = c->tls;
	p->authed = 1;
	atomic_store(&r->peer_version, c->hr.version);
	/* Derived by both sides in the handshake; data links must carry it. */
	peer_session_set(p, c->hr.session);
	peer_session_hold(r);
	/* The STATE below carries every local change up to here. */
	pthread_mutex_lock(&r->lock);
	req = p->state_req;
	pthread_mutex_unlock(&r->lock);
	if (peer_exchange_state(p, &mine, &theirs)) {
		LOG_WARN("peer: state exchange failed");
		goto fail;
	}
	p->session_gen = mine.gen_current;
	p->source_running = 0;
	d = peer_decide(p, &mine, &theirs);
	if (d < 0) {
		px_send_s(&p->meta, PX_DISCONNECT, 0, 0, NULL, 0);
		peer_close_meta(p);
		peer_session_release(r);
		/* Do not retry by itself: the operator decides. */
		peer_set(p, &p->want, 0);
		return 0;
	}
	/* Bitmaps: connector first, then listener, so neither blocks on a
	 * full socket while the other also sends. */
	if (p->initiator)
		rc = peer_send_bitmap(p) ?: peer_recv_bitmap(p);
	else
		rc = peer_recv_bitmap(p) ?: peer_send_bitmap(p);
	if (rc)
		goto fail;
	source = d == GEN_SOURCE_BITMAP || d == GEN_SOURCE_FULL;
	target = d == GEN_TARGET_BITMAP || d == GEN_TARGET_FULL;
	p->source_running = source;
	if (d == GEN_SOURCE_FULL || d == GEN_TARGET_FULL)
		dm_mark_all(r->dm);
	if (target)
		peer_begin_target(r);
	if (d == GEN_NO_SYNC)
		peer_in_sync(r, &mine);
	if (FAULT("peer/session/slow"))
		sleep(3);	/* tests: a session slow to come up */
	rc = peer_open_data_links(p) ?: peer_links_adopted(p);
	if (rc) {
		LOG_WARN("peer: opening data links failed: %s", strerror(-rc));
		goto fail;
	}
	/* What changed before this session was in the state exchange; a
	 * restart or a discard asked before it is done with. */
	pthread_mutex_lock(&r->lock);
	/* A change after the exchange still has to be sent. */
	if (p->state_req == req)
		p->state_dirty = 0;
	p->state_acked = req;
	pthread_cond_broadcast(&r->cond);
	p->restart = 0;
	if (!target)
		p->discard_my_data = 0;
	pthread_mutex_unlock(&r->lock);
	/* Connected again before any write alone: same generation. */
	dm_new_gen_on_write(r->dm, 0);
	/* Queue sockets need no timeouts; the meta link keeps short ones. */
	peer_timeouts(fd, (int)r->conf.ping_timeout_ms);
	pthread_mutex_lock(&r->lock);
	r->rs_total_bytes = 0;
	atomic_store(&r->rs_done_bytes, 0);
	r->rs_start_ms = util_now_ms();
	pthread_mutex_unlock(&r->lock);
	if (source || target) {
		struct dm_stats st;
		dm_get_stats(r->dm, &st);
		pthread_mutex_lock(&r->lock);
		r->rs_total_bytes = st.oos_bytes;
		pthread_mutex_unlock(&r->lock);
	}
	peer_conn_state(r, RSM_C_CONNECTED, source ? RSM_R_SYNCSOURCE : target ? RSM_R_SYNCTARGET
				      : RSM_R_ESTABLISHED, gen_decision_name((enum gen_decision)d));
	/* Connected: a link lost from now on is fenced (peer_fencing_applies),
	 * and what was held goes to the peer like any write. */
	peer_session_release(r);
	/* The source moves its bits; a primary also repairs any bit set while
	 * the links were coming up. */
	if (source || mine.role)
		resync_kick(r, peer_resync_mode(d, &mine, &theirs));
	peer_established(p, &mine, source, target);
	return 1;
fail:
	peer_teardown(p, "connection failed", 0);
	return 0;
}

/* Standalone: waits for a change; what the acceptor authenticated
 * meanwhile is closed, so a retrying peer sees a refusal. */
static void
peer_standalone_wait(struct peer *p)
{
	struct pollfd pf = { .fd = p->efd, .events = POLLIN };
	uint64_t v;

	/* Unless a connect came in since want was read. */
	rsm_set_conn_if(p->res, RSM_C_STANDALONE, RSM_R_OFF, "disconnect",
			peer_may_go_standalone, p);
	peer_ready_flush(p);
	poll(&pf, 1, 500);
	if (read(p->efd, &v, sizeof(v)) < 0)
		(void)0;
}

static void
peer_backoff(struct peer *p, unsigned *backoff)
{
	struct pollfd pf = { .fd = p->efd, .events = POLLIN };

	poll(&pf, 1, (int)*backoff);
	*backoff = MIN(*backoff * 2, PEER_BACKOFF_MAX_MS);
}

static void *
peer_main(void *arg)
{
	struct peer *p = arg;
	struct res *r = p->res;
	unsigned backoff = PEER_BACKOFF_MIN_MS;

	pthread_setname_np(pthread_self(), "mirrord-peer");
	for (;;) {
		struct peer_conn c;
		struct rsm_state s;
		int stop, want, rc;

		pthread_mutex_lock(&r->lock);
		stop = p->stop;
		want = p->want;
		pthread_mutex_unlock(&r->lock);
		if (stop)
			break;
		if (!want) {
			peer_standalone_wait(p);
			continue;
		}
		rsm_get(r, &s);
		if (s.conn != RSM_C_CONNECTING)
			peer_conn_state(r, RSM_C_CONNECTING, RSM_R_OFF, "connect");
		rc = p->initiator ? peer_dial_link(p, 1000, PX_LINK_META, 0, &c)
				  : peer_accept(p, 500, &c);
		if (rc) {
			if (p->initiator)
				peer_backoff(p, &backoff);
			continue;
		}
		/* A failed session backs off too: redialing at once while the
		 * listener still holds stale attempts only keeps it busy. */
		if (peer_session(p, &c))
			backoff = PEER_BACKOFF_MIN_MS;
		else if (p->initiator)
			peer_backoff(p, &backoff);
	}
	return NULL;
}

/* ---- start / stop ---- */

static int
peer_listen(struct peer *p, char *err, size_t errlen)
{
	struct res *r = p->res;
	struct addrinfo *ai;
	int fd, one = 1, rc;

	rc = peer_resolve(&r->conf.nodes[r->conf.self], &ai, 1);
	if (rc) {
		snprintf(err, errlen, "cannot resolve this node's address %s",
			 r->conf.nodes[r->conf.self].address);
		return rc;
	}
	/* Non-blocking: a connection reset between poll and accept must not
	 * stall the acceptor. */
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		freeaddrinfo(ai);
		return -errno;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 8) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot listen on %s: %s", r->conf.nodes[r->conf.self].address,
			 strerror(errno));
		close(fd);
		freeaddrinfo(ai);
		return rc;
	}
	freeaddrinfo(ai);
	p->listen_fd = fd;
	return 0;
}

int
peer_check_config(const struct conf *c, char *err, size_t errlen)
{
	unsigned char secret[4096];
	struct px_tls_ctx *ctx = NULL;
	size_t len;
	int rc;

	if (c->peer < 0 || !c->secret_file[0])
		return 0;
	if (c->queues > 1 && c->protocol != CONF_PROTO_SYNC) {
		snprintf(err, errlen, "%s: queues = %u needs protocol = sync (with semi-sync or "
			 "async, overlapping writes on different queues could reach the peer out "
			 "of order)", c->file, c->queues);
		return -EINVAL;
	}
	rc = px_load_secret(c->secret_file, secret, sizeof(secret), &len, err, errlen);
	OPENSSL_cleanse(secret, sizeof(secret));
	if (rc)
		return rc;
	if (c->tls_cert[0]) {
		rc = px_tls_ctx_new(&ctx, c->tls_cert, c->tls_key, c->tls_ca, err, errlen);
		px_tls_ctx_free(ctx);
	}
	return rc;
}

/* Ends the acceptor (listener) once stop is set. */
static void
peer_acceptor_stop(struct peer *p)
{
	uint64_t one = 1;

	if (!p->acceptor_started)
		return;
	if (write(p->hs_efd, &one, sizeof(one)) < 0)
		LOG_ERROR("peer: eventfd write failed: %s", strerror(errno));
	pthread_join(p->acceptor, NULL);
	p->acceptor_started = 0;
}

/* The eventfds, the lock and the threads: the peer thread, and on the
 * listener the acceptor.  0 or -errno, nothing left behind on failure. */
static int
peer_threads_start(struct peer *p)
{
	int rc;

	p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	p->hs_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->efd < 0 || p->hs_efd < 0) {
		rc = -errno;
		goto fail_fds;
	}
	pthread_mutex_init(&p->hs_lock, NULL);
	p->want = 1;
	if (p->listen_fd >= 0) {
		rc = -pthread_create(&p->acceptor, NULL, peer_acceptor_main, p);
		if (rc)
			goto fail_lock;
		p->acceptor_started = 1;
	}
	rc = -pthread_create(&p->thread, NULL, peer_main, p);
	if (rc)
		goto fail_acceptor;
	p->started = 1;
	return 0;
fail_acceptor:
	pthread_mutex_lock(&p->res->lock);
	p->stop = 1;
	pthread_mutex_unlock(&p->res->lock);
	peer_acceptor_stop(p);
fail_lock:
	pthread_mutex_destroy(&p->hs_lock);
fail_fds:
	if (p->efd >= 0)
		close(p->efd);
	if (p->hs_efd >= 0)
		close(p->hs_efd);
	return rc;
}

int
peer_start(struct res *r, char *err, size_t errlen)
{
	struct peer *p;
	int rc;

	if (r->conf.peer < 0)
		return 0;
	if (!r->conf.secret_file[0]) {
		LOG_WARN("no secret-file configured: running standalone (the replication link "
			 "needs a shared secret)");
		return 0;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->res = r;
	p->listen_fd = -1;
	p->meta.fd = -1;
	rc = px_load_secret(r->conf.secret_file, p->secret, sizeof(p->secret), &p->secret_len,
			    err, errlen);
	if (rc) {
		free(p);
		return rc;
	}
	if (r->conf.tls_cert[0]) {
		rc = px_tls_ctx_new(&p->tls_ctx, r->conf.tls_cert, r->conf.tls_key, r->conf.tls_ca,
				    err, errlen);
		if (rc) {
			OPENSSL_cleanse(p->secret, sizeof(p->secret));
			free(p);
			return rc;
		}
	}
	p->initiator = strcmp(r->conf.nodes[r->conf.self].name,
			      r->conf.nodes[r->conf.peer].name) < 0;
	if (!p->initiator) {
		rc = peer_listen(p, err, errlen);
		if (rc) {
			px_tls_ctx_free(p->tls_ctx);
			free(p);
			return rc;
		}
	}
	/* Set first: both threads reach the peer through the resource. */
	r->peer = p;
	rc = peer_threads_start(p);
	if (rc) {
		r->peer = NULL;
		if (p->listen_fd >= 0)
			close(p->listen_fd);
		px_tls_ctx_free(p->tls_ctx);
		OPENSSL_cleanse(p->secret, sizeof(p->secret));
		free(p);
		return rc;
	}
	return 0;
}

void
peer_stop(struct res *r)
{
	struct peer *p = r->peer;

	if (!p)
		return;
	peer_set(p, &p->stop, 1);
	pthread_join(p->thread, NULL);
	peer_acceptor_stop(p);
	peer_ready_flush(p);
	peer_close_meta(p);
	if (p->listen_fd >= 0)
		close(p->listen_fd);
	close(p->efd);
	close(p->hs_efd);
	pthread_mutex_destroy(&p->hs_lock);
	px_tls_ctx_free(p->tls_ctx);
	OPENSSL_cleanse(p->secret, sizeof(p->secret));
	r->peer = NULL;
	free(p);
}
