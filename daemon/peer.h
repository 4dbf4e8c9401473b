/* peer: the connection to the other node.  A peer thread owns the meta
 * link (blocking I/O): it connects (the node whose name sorts first) or
 * accepts, authenticates, exchanges state and bitmaps, decides the sync
 * direction with gen_compare(), opens one data link per queue and hands
 * each to its queue thread, then keeps the meta link alive with pings.
 * When anything fails it tears every link down and reconnects with
 * back-off; the node keeps serving meanwhile (degraded: writes are marked
 * out of sync). */
#ifndef BLKMIRROR_PEER_H
#define BLKMIRROR_PEER_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/conf.h"

struct res;
struct res_queue;

/* Start-up checks of the replication settings, before any disk is
 * touched: the secret file, the TLS files, and that queues > 1 goes only
 * with protocol = sync (overlapping writes on different queues are ordered
 * on the peer only when each completes there before the next starts).
 * 0 or -errno with err set. */
int peer_check_config(const struct conf *c, char *err, size_t errlen);

/* Starts the peer thread when a peer is configured.  0 or -errno with
 * err set (e.g. an unreadable secret file). */
int peer_start(struct res *r, char *err, size_t errlen);
void peer_stop(struct res *r);

/* Operator commands (control thread).  0 or -errno with why set. */
int peer_connect(struct res *r, int discard_my_data, char *why, size_t len);
int peer_disconnect(struct res *r, char *why, size_t len);
/* discard-my-data: be the sync target at the next connect; stops trying
 * meanwhile, keeping a splitbrain state as it is. */
int peer_discard_my_data(struct res *r, char *why, size_t len);
/* Drops the current session (if any) and connects again. */
int peer_reconnect(struct res *r);
/* The local role changed: tell the peer. */
void peer_state_changed(struct res *r);
/* Waits until the peer has processed the state of the last
 * peer_state_changed() (its PING_ACK behind our STATE is in), while
 * connected, at most ms.  0, or -ETIMEDOUT (the peer may not know yet).
 * Any thread but the peer thread. */
int peer_state_wait_acked(struct res *r, unsigned ms);
/* Peer's view for status; 0 when known. */
int peer_info(struct res *r, int *role, int *disk);

/* Queue threads. */
void peer_link_failed(struct res_queue *q);
void peer_link_closed(struct res_queue *q);
/* Secondary and not being promoted: the peer's writes may start. */
int peer_accepts_writes(struct res *r);
void peer_resync_done(struct res *r);
/* Pull-ahead: this primary stops sending (ahead); this secondary was told
 * it misses blocks (behind). */
void peer_set_ahead(struct res *r);
void peer_set_behind(struct res *r);
/* Queue 0: an online verify ended; bad bytes were marked on both sides. */
void peer_verify_done(struct res *r, uint64_t bad);

#endif
