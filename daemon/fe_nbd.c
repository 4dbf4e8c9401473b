/* fe_nbd: frontend = nbd, the kernel's NBD driver as the device /dev/nbdN,
 * configured over generic netlink (ublk/nbdnl.h).
 *
 * The device is bound only while this node is primary.  Promote (activate)
 * makes one socketpair per queue, hands one end of each to the kernel with
 * NBD_CMD_CONNECT (the kernel picks a free /dev/nbdN) and the other to a
 * queue thread, which serves it with the export's NBD transmission code
 * (ublk/nbd_srv.c): there is no handshake, the kernel starts sending
 * requests at once.  Demote (deactivate) refuses while the device is
 * mounted or open exclusively; otherwise it flushes what plain openers left
 * in the page cache, NBD_CMD_DISCONNECT (the kernel sends NBD_CMD_DISC and
 * shuts its ends down) and waits for the queue connections to end.  A
 * connection that does not end within FE_NBD_DRAIN_MS still has requests in
 * the write path: demote then fails and the node stays primary, as with
 * ublk, since a secondary must hold no write of its own in flight; a later
 * demote waits for them again (the device stays disconnected).  On a
 * secondary /dev/nbdN exists (the module creates nbd0..15) but is unbound:
 * size 0, nothing to read.  A clean stop (close) disconnects whoever uses it.
 *
 * The kernel devices outlive a daemon killed with -9: the kernel fails
 * their I/O once every socket is gone (dead-connection timeout 0: nothing
 * reconnects them), which also frees whatever waited on a hung daemon.
 * Each device carries a backend identifier naming the resource and its
 * disk; at start (open) a device still bound with ours is such a leftover
 * (the disk lock says no other daemon of this resource runs) and is
 * disconnected.  There is no resuming it: the node starts as a crashed
 * primary, like after a power cut.
 *
 * The kernel's requests obey the queue's limits: the device's block size is
 * 4096 (aligned for O_DIRECT disks), and max_sectors_kb is lowered to
 * max-io-size, since a larger WRITE would end the connection
 * (ublk/nbd_srv.c).  Its connections are counted in r->writers like the
 * export's, for the queues' bookkeeping; demote does not look at that count
 * but at the device's openers.
 *
 * Threads: control thread only (netlink calls block). */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/frontend.h"
#include "daemon/queue.h"
#include "daemon/resource.h"
#include "lib/fault.h"
#include "lib/log.h"
#include "lib/util.h"
#include "ublk/nbd_proto.h"
#include "ublk/nbdnl.h"

#define FE_NBD_BLOCK          4096u
/* The kernel's request timeout, made long enough never to fire.  I/O
 * waits as long as the daemon holds it (fencing the peer may take minutes),
 * as with a local disk.  Timeout 0 does not mean that: with more than one
 * connection the kernel would then mark a socket dead after the block
 * layer's 30 s and resend its requests on another one.  Below UINT_MAX / HZ
 * (tag_set.timeout is in jiffies). */
#define FE_NBD_IO_TIMEOUT_S   (7u * 24 * 3600)
/* Nothing reconnects a dead socket: fail at once, not after a wait. */
#define FE_NBD_DEAD_CONN_S    0
#define FE_NBD_DRAIN_MS       10000   /* for the queue connections to end */

struct fe_nbd {
	int index;                 /* /dev/nbd<index> while bound, else -1 */
	int disconnected;          /* index disconnected, its connections not all ended */
	unsigned nsocks;
	char backend[600];         /* the backend identifier of our devices */
};

/* Reads a small sysfs file into buf without the trailing newline. */
static int
fe_nbd_sysfs_read(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int rc, fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	rc = n < 0 ? -errno : 0;
	close(fd);
	if (rc)
		return rc;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

/* Caps the kernel's request size at max-io-size: a larger READ or WRITE
 * would be refused or end the connection. */
static int
fe_nbd_limit_io(struct res *r, int index, char *err, size_t len)
{
	char path[96], cur[32], want[32];
	unsigned long kb = r->conf.max_io_size / 1024;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/sys/block/nbd%d/queue/max_sectors_kb", index);
	if (fe_nbd_sysfs_read(path, cur, sizeof(cur)) == 0 && strtoul(cur, NULL, 10) <= kb)
		return 0;
	snprintf(want, sizeof(want), "%lu", kb);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	n = fd < 0 ? -1 : write(fd, want, strlen(want));
	if (n < 0) {
		int rc = -errno;
		if (fd >= 0)
			close(fd);
		return util_fail(err, len, rc, "nbd: cannot limit the request size of "
				 "/dev/nbd%d to %s KiB (%s): %s", index, want, path,
				 strerror(-rc));
	}
	close(fd);
	return 0;
}

/* Waits until the queues have closed every kernel connection: a queue
 * closes one once the requests it carried have completed.  0, or -EBUSY
 * with err set when some are still open after FE_NBD_DRAIN_MS. */
static int
fe_nbd_drain(struct res *r, int index, char *err, size_t len)
{
	uint64_t start = util_now_ms();

	while (atomic_load(&r->writers) > 0) {
		if (util_now_ms() - start > FE_NBD_DRAIN_MS)
			return util_fail(err, len, -EBUSY, "nbd: /dev/nbd%d is disconnected, but "
					 "%d of its connection(s) still carry requests %u ms later "
					 "(the peer or the disk has not completed them): still "
					 "primary; demote again once they have", index,
					 atomic_load(&r->writers), FE_NBD_DRAIN_MS);
		usleep(5 * 1000);
	}
	return 0;
}

/* Disconnects the bound device, waits for its connections to end and
 * forgets it.  0 or -errno; after a failed wait the device stays ours,
 * disconnected, and the next call only waits again. */
static int
fe_nbd_unbind(struct res *r, char *err, size_t len)
{
	struct fe_nbd *n = r->nbd;
	int rc;

	if (!n->disconnected) {
		rc = nbdnl_disconnect(n->index, err, len);
		if (rc)
			return rc;
		n->disconnected = 1;
	}
	rc = fe_nbd_drain(r, n->index, err, len);
	if (rc)
		return rc;
	LOG_INFO("device /dev/nbd%d disconnected", n->index);
	n->disconnected = 0;
	n->index = -1;
	n->nsocks = 0;
	res_device_set(r, "");
	return 0;
}

static int
fe_nbd_activate(struct res *r, char *err, size_t len)
{
	struct fe_nbd *n = r->nbd;
	int kfd[NBDNL_MAX_SOCKS], qfd[NBDNL_MAX_SOCKS];
	struct nbdnl_config c = {
		.index = -1,
		.size = r->size / FE_NBD_BLOCK * FE_NBD_BLOCK,
		.block_size = FE_NBD_BLOCK,
		/* WRITE_ZEROES is newer than this kernel's headers (and than
		 * some kernels, which ignore the flag and write zeroes
		 * themselves); FLUSH is an fdatasync of the whole disk, so it
		 * covers writes completed on every connection: MULTI_CONN. */
		.server_flags = NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
				NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_CAN_MULTI_CONN,
		.timeout_s = FE_NBD_IO_TIMEOUT_S,
		.dead_conn_timeout_s = FE_NBD_DEAD_CONN_S,
		.backend = n->backend,
		.nsocks = MIN(r->nqueues, NBDNL_MAX_SOCKS),
		.socks = kfd,
	};
	char name[64];
	unsigned i;
	int index, rc;

	if (n->index >= 0)
		return 0;
	if (c.size == 0)
		return util_fail(err, len, -EINVAL, "nbd: the disk holds less than one %u-byte "
				 "block of data", FE_NBD_BLOCK);
	for (i = 0; i < c.nsocks; i++) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
			rc = -errno;
			while (i--) {
				close(kfd[i]);
				close(qfd[i]);
			}
			return util_fail(err, len, rc, "nbd: socketpair: %s", strerror(-rc));
		}
		kfd[i] = sv[0];
		qfd[i] = sv[1];
	}
	rc = nbdnl_connect(&c, &index, err, len);
	/* The kernel holds its own references to its ends now. */
	for (i = 0; i < c.nsocks; i++)
		close(kfd[i]);
	if (rc) {
		for (i = 0; i < c.nsocks; i++)
			close(qfd[i]);
		return rc;
	}
	/* Counted like any read-write connection; the queue uncounts each
	 * when it closes. */
	for (i = 0; i < c.nsocks; i++) {
		atomic_fetch_add(&r->writers, 1);
		snprintf(name, sizeof(name), "/dev/nbd%d#%u", index, i);
		/* Simple replies.  The kernel keeps to max-io-size once
		 * fe_nbd_limit_io has set max_sectors, but the device is live
		 * before that (udev probes it at once): a longer request in
		 * between is served in pieces, as for any NBD client that
		 * did not ask for block size constraints. */
		queue_adopt_nbd(r, qfd[i], &(struct queue_nbd){
			.max_request = MAX(NBD_DEFAULT_MAX_PAYLOAD, r->conf.max_io_size) }, name);
	}
	n->index = index;
	n->nsocks = c.nsocks;
	{
		char dev[32];

		snprintf(dev, sizeof(dev), "/dev/nbd%d", index);
		res_device_set(r, dev);
	}
	if (FAULT("nbd/limit/slow"))
		sleep(3);	/* tests: the window before max_sectors is set */
	rc = fe_nbd_limit_io(r, index, err, len);
	if (rc) {
		char why[256];
		if (fe_nbd_unbind(r, why, sizeof(why)))
			LOG_WARN("%s", why);
		return rc;
	}
	LOG_INFO("device /dev/nbd%d connected: %llu bytes, %u-byte blocks, %u %s, I/O up to "
		 "%u bytes", index, (unsigned long long)c.size, FE_NBD_BLOCK, c.nsocks,
		 c.nsocks == 1 ? "connection" : "connections", r->conf.max_io_size);
	return 0;
}

static int
fe_nbd_deactivate(struct res *r, char *err, size_t len)
{
	struct fe_nbd *n = r->nbd;
	char path[64];
	int fd, rc;

	if (!n || n->index < 0)
		return 0;
	/* An earlier demote disconnected it already: wait for the rest. */
	if (n->disconnected)
		return fe_nbd_unbind(r, err, len);
	/* A mounted file system or an exclusive opener (mkfs, a database
	 * using O_EXCL) holds it: the data would be cut from under it.  The
	 * exclusive open is kept across the disconnect so that nothing mounts
	 * it in between.  Plain openers are not seen: their I/O fails once
	 * the device is unbound. */
	snprintf(path, sizeof(path), "/dev/nbd%d", n->index);
	fd = open(path, O_RDONLY | O_EXCL | O_CLOEXEC);
	if (fd < 0 && errno == EBUSY)
		return util_fail(err, len, -EBUSY,
				 "device %s is in use (mounted or open exclusively)", path);
	/* What plain openers left in the page cache reaches the disks while
	 * the device is still bound. */
	if (fd >= 0 && fsync(fd) < 0)
		LOG_WARN("nbd: flushing %s before disconnecting it: %s", path, strerror(errno));
	rc = fe_nbd_unbind(r, err, len);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Disconnects devices a killed daemon of this resource left bound. */
static void
fe_nbd_clean_stale(struct res *r)
{
	struct fe_nbd *n = r->nbd;
	char id[sizeof(n->backend)], err[256];
	glob_t g;

	if (glob("/sys/block/nbd*/backend", 0, NULL, &g) != 0)
		return;
	for (size_t i = 0; i < g.gl_pathc; i++) {
		int index;

		if (fe_nbd_sysfs_read(g.gl_pathv[i], id, sizeof(id)) || strcmp(id, n->backend) ||
		    sscanf(g.gl_pathv[i], "/sys/block/nbd%d/", &index) != 1)
			continue;
		LOG_WARN("nbd: /dev/nbd%d was left bound by a mirrord of this resource that did "
			 "not stop: disconnecting it", index);
		if (nbdnl_disconnect(index, err, sizeof(err)))
			LOG_WARN("%s", err);
	}
	globfree(&g);
}

static int
fe_nbd_open(struct res *r, int *resumed, char *err, size_t len)
{
	struct fe_nbd *n;
	int rc;

	*resumed = 0;
	/* Refused at start, not at the first promote (a failover). */
	rc = nbdnl_probe(err, len);
	if (rc)
		return rc;
	n = calloc(1, sizeof(*n));
	if (!n)
		return util_fail(err, len, -ENOMEM, "nbd: out of memory");
	n->index = -1;
	snprintf(n->backend, sizeof(n->backend), "blkmirror:%s:%s", r->conf.name, r->conf.disk);
	r->nbd = n;
	fe_nbd_clean_stale(r);
	return 0;
}

static void
fe_nbd_close(struct res *r)
{
	struct fe_nbd *n = r->nbd;
	char err[256];

	if (!n)
		return;
	/* A clean stop unbinds the device, whoever uses it. */
	if (n->index >= 0 && fe_nbd_unbind(r, err, sizeof(err)))
		LOG_WARN("%s", err);
	r->nbd = NULL;
	free(n);
}

const struct fe_ops fe_nbd_ops = {
	.name = "nbd",
	.open = fe_nbd_open,
	.activate = fe_nbd_activate,
	.deactivate = fe_nbd_deactivate,
	.close = fe_nbd_close,
};
