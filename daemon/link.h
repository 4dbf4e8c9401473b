/* lk: one data link to the peer, owned by a queue thread and driven by its
 * io_uring, like the front-end connections.  It carries, in both
 * directions: WRITE / TRIM (primary -> secondary) and their acks, FLUSH and
 * FLUSH_ACK, RS_DATA / RS_ACK (sync source -> target), OOS.
 *
 * Sending side: a write's payload is sent from the request's own buffer,
 * the same buffer being written to the local disk (no copy).  The link
 * calls wp_peer_done() exactly once per request, when the request's
 * protocol is satisfied: async when the data is in the socket, semi-sync
 * on RECV_ACK, sync on WRITE_ACK; or with -ENOTCONN when the link fails
 * first.  Writes it no longer holds a request for (async) are marked out of
 * sync by the link itself if it fails before their ack.
 *
 * Receiving side: writes are applied in the order they arrived (a write
 * that overlaps an earlier one still in flight waits), acknowledged when
 * written; a FLUSH waits for the writes before it, then syncs the disk. */
#ifndef BLKMIRROR_LINK_H
#define BLKMIRROR_LINK_H

#include <stdint.h>

#include "lib/ev.h"
#include "lib/req.h"

struct lk;
struct res_queue;
struct res;

struct px_tls;

/* Takes ownership of an authenticated socket (and of its detached TLS
 * session, or NULL); starts receiving. */
int lk_new(struct lk **out, struct res_queue *q, int fd, struct px_tls *tls);
/* Queue thread.  Ends the link: requests waiting on the peer complete with
 * -ENOTCONN; the link frees itself once its operations have drained and
 * calls peer_link_closed(). */
void lk_fail(struct lk *l, const char *why);
int lk_ready(const struct lk *l);

/* Queue thread.  Replicates a write/trim/zero (r->type) or a FLUSH.
 * Always succeeds from the caller's view: on failure the link calls
 * wp_peer_done(r, -ENOTCONN). */
void lk_send(struct lk *l, struct req *r);
/* Resync: sends r (REQ_WRITE, data read from the source's disk) as
 * RS_DATA; resync_acked(r, status) follows exactly once (-ENOTCONN if the
 * link fails). */
void lk_send_resync(struct lk *l, struct req *r);
/* Verify and checksum resync: asks the peer for the SHA-256 of its copy
 * of [r->off, +r->len); resync_csum(r, hash) follows, or
 * resync_acked(r, -ENOTCONN). */
void lk_send_csum_req(struct lk *l, struct req *r);
/* Tells the peer a range is out of sync (best effort). */
void lk_send_oos(struct lk *l, uint64_t off, uint32_t len, int ahead);

/* Pull-ahead: would a write of len bytes go past max-async-lag? */
int lk_congested(const struct lk *l, uint32_t len);
/* Bytes sent but not yet acknowledged as written (async lag). */
uint64_t lk_unacked_bytes(const struct lk *l);
/* Control thread: waits until the peer has written every write sent to it
 * on any data link (or the links failed), at most ms.  0 or -ETIMEDOUT.
 * A demote calls it before the peer may hear of the new role: its STATE
 * travels on the meta link and could overtake them. */
int lk_wait_acked(struct res *r, unsigned ms);
/* Control thread: waits until every write (or resync data) received from
 * the peer is on the local disk, at most ms.  0 or -ETIMEDOUT.  A promote
 * calls it once the links refuse new ones (res.promoting). */
int lk_wait_applied(struct res *r, unsigned ms);

#endif
