/* resync: copies the out-of-sync blocks from the sync source to the
 * target, on queue 0's ring, while applications keep writing.  A resync
 * range takes part in the conflict tracker like a write, so an
 * application write to the same blocks waits for it (and the reverse): a
 * resync write never overwrites newer data.  Bits are cleared when the
 * target has written the block.  Throttled by resync-rate, and to two
 * requests in flight while applications have I/O in flight on the queue. */
#ifndef BLKMIRROR_RESYNC_H
#define BLKMIRROR_RESYNC_H

#include "lib/req.h"

struct res;
struct res_queue;

/* Any thread: run the pump on queue 0 until no bit is left; then
 * peer_resync_done() is called (on queue 0's thread). */
void resync_kick(struct res *r);
/* Link: a resync request finished on the target (status 0) or failed. */
void resync_acked(struct req *r, int status);
/* Queue 0's thread, at start / stop. */
int resync_init(struct res_queue *q);
void resync_fini(struct res_queue *q);

#endif
