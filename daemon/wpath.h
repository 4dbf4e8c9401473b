/* wp: the write path of one queue.  Front ends submit requests here
 * (struct req_sink); a write marks the dirty map, waits only if its
 * extents were cold, goes to the local disk through the queue's io_uring,
 * and completes according to the replication protocol.  Reads and flushes
 * go straight to the disk.  Runs entirely on the queue thread. */
#ifndef BLKMIRROR_WPATH_H
#define BLKMIRROR_WPATH_H

#include <stdatomic.h>
#include <stdint.h>

#include "daemon/dirty.h"
#include "daemon/disk.h"
#include "lib/ev.h"
#include "lib/req.h"

struct wp_queue;

struct wp_params {
	struct ev_loop *loop;
	struct disk *disk;
	struct dm *dm;
	const _Atomic int *writable; /* 0: secondary, writes fail with -EROFS */
};

struct wp_inflight {
	uint64_t requests;
	uint64_t bytes;
	uint64_t oldest_ms;
};

int wp_queue_new(struct wp_queue **out, const struct wp_params *p);
void wp_queue_free(struct wp_queue *q); /* NULL is a no-op */
struct req_sink *wp_sink(struct wp_queue *q);
/* Any thread: what is in flight right now. */
void wp_get_inflight(struct wp_queue *q, struct wp_inflight *out);

#endif
