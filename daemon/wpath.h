/* wp: the write path of one queue.  Front ends submit requests here
 * (struct req_sink).  A write:
 *   1. waits for overlapping writes still in flight (conflict tracker), so
 *      both disks see overlapping writes in the same order;
 *   2. marks its activity extent (and, when it cannot be replicated now,
 *      its bitmap bits) durably before touching the disk;
 *   3. goes to the local disk and, in the same loop iteration, to the peer
 *      from the same buffer;
 *   4. completes when the local write is done and the protocol is
 *      satisfied (sync: the peer wrote it; semi-sync: the peer received it;
 *      async: it is in the socket).  If the peer is lost first, the blocks
 *      are marked out of sync and the write completes with the local
 *      result (degraded mode).
 * Reads go to the local disk.  A FLUSH makes every completed write durable
 * locally and, in sync and semi-sync, on the peer.  Runs on the queue
 * thread. */
#ifndef BLKMIRROR_WPATH_H
#define BLKMIRROR_WPATH_H

#include <stdatomic.h>
#include <stdint.h>

#include "daemon/dirty.h"
#include "daemon/disk.h"
#include "lib/ev.h"
#include "lib/req.h"

struct wp_queue;
struct res_queue;
struct res;

struct wp_inflight {
	uint64_t requests;
	uint64_t bytes;
	uint64_t oldest_ms;
};

int wp_queue_new(struct wp_queue **out, struct res_queue *q);
void wp_queue_free(struct wp_queue *q); /* NULL is a no-op */
struct req_sink *wp_sink(struct wp_queue *q);
/* Any thread: what is in flight right now. */
void wp_get_inflight(struct wp_queue *q, struct wp_inflight *out);

/* A request that came from the peer (link): applied to the local disk
 * as is; r->complete runs when done. */
void wp_submit_replica(struct wp_queue *q, struct req *r);
/* Fencing: with r->frozen set, writes and flushes are held (new ones before
 * they start, replicated ones that lost the peer before they complete).
 * wp_thaw_all() lets them go on every queue once the caller has cleared
 * it (with a compare-and-swap from the value it ends: a plain store could
 * wipe out a hold another thread set meanwhile).  Any thread. */
void wp_thaw_all(struct res *r);

/* The link: the peer part of r is over (0, the peer's -errno, or
 * -ENOTCONN).  Exactly once per request handed to lk_send(). */
void wp_peer_done(struct req *r, int res);

#endif
