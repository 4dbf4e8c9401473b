/* res: one resource (one mirrored device) as mirrord runs it: the pieces
 * from every module, wired together.  Private to daemon/. */
#ifndef BLKMIRROR_RESOURCE_H
#define BLKMIRROR_RESOURCE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "daemon/conf.h"
#include "daemon/ctl.h"
#include "daemon/dirty.h"
#include "daemon/disk.h"
#include "daemon/meta.h"
#include "daemon/rsm.h"
#include "daemon/wpath.h"
#include "lib/ev.h"

#define RES_MAX_QUEUES 16

struct fe_nbd;
struct fe_ublk;
struct nbds_conn;
struct lk;
struct rs;
struct cf;
struct peer;
struct resume;

/* One data-plane thread: its ring carries the front end's socket I/O and
 * the disk I/O of its requests. */
struct res_queue {
	struct res *res;
	unsigned index;
	pthread_t thread;
	struct ev_loop *loop;
	struct wp_queue *wp;
	int ready;                /* set once loop and wp exist (res->lock) */
	int stopping;             /* queue thread only */
	unsigned nconns;          /* queue thread only */
	struct res_conn *conns;   /* queue thread only */
	struct lk *link;          /* data link to the peer, queue thread only */
	struct rs *rs;            /* resync pump (queue 0 only) */
	struct ev_msg stop_msg;
};

/* res.frozen: why writes are held (wpath.h). */
enum {
	RES_FROZEN_NO,
	RES_FROZEN_FENCE,   /* the peer was lost: until fence-peer succeeds or resume-io */
	RES_FROZEN_LINK,    /* a link failed: until the peer thread knows whether it was lost */
	RES_FROZEN_SESSION, /* fencing: a session is coming up, until connected or failed */
};

struct res {
	struct conf conf;
	struct disk *disk;
	int md_fd;
	uint64_t md_size;         /* bytes of the metadata device, for attach */
	struct dm *dm;
	uint64_t size;            /* data bytes exposed */
	/* What status shows as "device": written by the control thread
	 * (front-end open, promote, demote, close) under lock, through
	 * res_device_set(); read there freely, on other threads (the hook
	 * worker, fence-peer on the peer thread) under lock. */
	char device[512];

	/* Held across a decision on the role or disk state, the superblock
	 * write that records it and the state store (promote, demote,
	 * outdate), so none acts on a state another is changing.  Taken
	 * before lock, never on a queue thread. */
	pthread_mutex_t role_lock;
	pthread_mutex_t lock;     /* protects state and the fields below */
	pthread_cond_t cond;
	struct rsm_state state;
	_Atomic int writable;     /* role primary and disk usable: writes allowed */
	_Atomic int writers;      /* front-end openers with write access */

	struct ev_loop *ctl_loop; /* control thread */
	struct ctl *ctl;
	unsigned nqueues;
	struct res_queue queues[RES_MAX_QUEUES];
	_Atomic unsigned next_queue;
	struct fe_ublk *ublk;     /* frontend = ublk: its state (control thread) */
	struct fe_nbd *nbd;       /* frontend = nbd: its state (control thread) */
	struct resume *resume;    /* waiting to resolve a held device (control thread) */
	int export_fd;            /* listening NBD export socket, or -1 */
	/* Export connections, handshakes included (max-connections): added
	 * at accept on the control thread, removed where each one ends. */
	_Atomic unsigned export_conns;
	struct ev_op export_op;
	_Atomic int shutting_down;

	struct cf *cf;            /* overlapping writes in flight, all queues */
	struct peer *peer;        /* NULL: no peer configured */
	uint64_t rs_total_bytes;  /* (lock) out of sync when this resync began */
	uint64_t rs_start_ms;     /* (lock) */
	_Atomic uint64_t rs_done_bytes;
	_Atomic int ahead;        /* pull-ahead: writes are marked, not sent */
	_Atomic int frozen;       /* RES_FROZEN_*: writes wait (fencing) */
	_Atomic uint64_t peer_app_flushes; /* the peer's application flushes made durable here */
	_Atomic uint64_t repl_unacked; /* writes sent on any data link, not yet written there */
	/* Writes (and resync data) received from the peer and not yet on
	 * the disk, counted before the role is looked at (lk_parse_one), and
	 * a promote past its checks: from then on the links refuse new ones
	 * and the promote waits for these (rsm_promote_decide). */
	_Atomic uint64_t peer_writes;
	_Atomic int promoting;
	/* on-io-error = detach fired (rsm_disk_error): no local disk or
	 * metadata I/O is started any more.  Set once, any thread. */
	_Atomic int detached;
	_Atomic int disk_inflight; /* write path's local disk I/O in flight, all queues */
	_Atomic int peer_detached; /* the connected peer's disk is failed or diskless */
	_Atomic unsigned peer_version; /* the protocol version agreed with the peer in the
				    * current session (peer thread writes; 0 before) */
};

/* Control thread: r->device = dev ("" when there is none), under r->lock
 * for the hook threads reading it.  Never with r->lock held. */
static inline void
res_device_set(struct res *r, const char *dev)
{
	pthread_mutex_lock(&r->lock);
	snprintf(r->device, sizeof(r->device), "%s", dev);
	pthread_mutex_unlock(&r->lock);
}

#endif
