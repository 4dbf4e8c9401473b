/* fe: the front end a resource serves its data through (frontend = ...),
 * behind one small table of operations.  The export exists from start to
 * stop (read-only while secondary); a kernel device (ublk, kernel NBD)
 * exists only while this node is primary: created at promote, removed at
 * demote, refused if still in use. */
#ifndef BLKMIRROR_FRONTEND_H
#define BLKMIRROR_FRONTEND_H

#include <stddef.h>

struct res;

struct fe_ops {
	const char *name;
	/* Start-up, control thread, after the queues run.  May find a device
	 * left by a crashed daemon, still holding its users' I/O: then
	 * *held = 1, the node stays secondary and the device waits for
	 * resolve() (daemon/resume.c decides). */
	int (*open)(struct res *r, int *held, char *err, size_t len);
	/* promote: make the device appear (writable). */
	int (*activate)(struct res *r, char *err, size_t len);
	/* demote: -EBUSY with a message when it is still open for writing;
	 * else remove it.  Called without r->lock (removing a device waits
	 * for queue threads); once it returns 0, rsm_demote clears
	 * r->writable. */
	int (*deactivate)(struct res *r, char *err, size_t len);
	/* Control thread, once, after open() reported a held device.
	 * resume = 1: serve it again; the node becomes primary before the
	 * held I/O runs (no reissued write is refused).  resume = 0: remove
	 * it; the held I/O fails (EIO).  0 or -errno with err set; after a
	 * failed resume the node is secondary and the device removed.  NULL
	 * for front ends that never hold a device. */
	int (*resolve)(struct res *r, int resume, char *err, size_t len);
	/* Clean stop: remove everything (a held device too: its I/O fails). */
	void (*close)(struct res *r);
};

/* The kernel front ends, each in its own file. */
extern const struct fe_ops fe_ublk_ops;   /* daemon/fe_ublk.c */
extern const struct fe_ops fe_nbd_ops;    /* daemon/fe_nbd.c */

/* The operations for r->conf.frontend. */
const struct fe_ops *fe_for(const struct res *r);

/* FE_LINK_DIR/NAME, a symbolic link to the kernel device (/dev/ublkbN,
 * /dev/nbdN) while it exists: one name for every node, whatever number
 * each kernel gave the device, for fstab or a cluster's Filesystem
 * resource (DRBD's /dev/drbd/by-res/NAME).  Failures are logged, not
 * fatal: the device itself works without it. */
#define FE_LINK_DIR "/dev/blkmirror"
/* After the device appeared (promote, or re-attached at start). */
void fe_link_add(const struct res *r);
/* After the device DEV was removed; leaves a link to another device (a
 * second daemon for the same name) alone. */
void fe_link_del(const struct res *r, const char *dev);

#endif
