/* cf: overlapping writes in flight.  A write (or resync write) whose range
 * overlaps one still in flight waits until that one has finished on both
 * nodes, so overlapping writes reach both disks in the same order even
 * though each disk may reorder what is in flight at once.  Shared by all
 * queues: one mutex; a parked request is woken on its own queue thread. */
#ifndef BLKMIRROR_CONFLICT_H
#define BLKMIRROR_CONFLICT_H

#include <stdint.h>

#include "lib/req.h"

struct cf;

int cf_new(struct cf **out);
void cf_free(struct cf *c); /* NULL is a no-op */

/* Registers r's range [r->off, r->off + r->len).  Returns 0 when nothing
 * overlaps (go ahead), 1 when r is parked: r->wait.msg.fn then runs on
 * r->wait.loop once every overlapping earlier request has ended. */
int cf_begin(struct cf *c, struct req *r);
/* r has finished on both nodes: wakes what waited for it. */
void cf_end(struct cf *c, struct req *r);

#endif
