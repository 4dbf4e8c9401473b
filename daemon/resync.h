/* resync: copies the out-of-sync blocks from the sync source to the
 * target, on queue 0's ring, while applications keep writing.  A resync
 * range takes part in the conflict tracker like a write, so an
 * application write to the same blocks waits for it (and the reverse): a
 * resync write never overwrites newer data.  Bits are cleared when the
 * target has written the block.  Throttled by resync-rate, and to two
 * requests in flight while applications have I/O in flight on the queue. */
#ifndef BLKMIRROR_RESYNC_H
#define BLKMIRROR_RESYNC_H

#include <stdint.h>

#include "lib/req.h"

struct res;
struct res_queue;

enum resync_mode {
	RESYNC_DATA,     /* send every out-of-sync range */
	RESYNC_CSUM,     /* compare hashes first, send only ranges that differ */
	RESYNC_VERIFY,   /* online verify: hash every block on both sides, mark differences */
};

/* Any thread: run the pump on queue 0 until no bit is left; then
 * peer_resync_done() is called (on queue 0's thread). */
void resync_kick(struct res *r, enum resync_mode mode);
/* Any thread: start an online verify (peer_verify_done() at the end). */
void resync_verify(struct res *r);
/* Link: a resync request finished on the target (status 0) or failed. */
void resync_acked(struct req *r, int status);
/* Link: the peer's SHA-256 of a range asked with lk_send_csum_req(). */
void resync_csum(struct req *r, const uint8_t sha256[32]);
/* Queue 0's thread, at start / stop. */
int resync_init(struct res_queue *q);
void resync_fini(struct res_queue *q);

#endif
