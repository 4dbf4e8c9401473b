/* nbdnl: configures the kernel's NBD driver (/dev/nbdN) through its generic
 * netlink family "nbd" (linux/nbd-netlink.h), with libnl-genl-3.  The
 * kernel then speaks the NBD transmission protocol (no handshake) on the
 * sockets it is given; the other ends are served like any NBD connection
 * (nbd_srv.h).  Every call opens its own netlink socket and blocks until the
 * kernel answers: control thread only, never on a queue thread.  Needs
 * CAP_SYS_ADMIN. */
#ifndef BLKMIRROR_NBDNL_H
#define BLKMIRROR_NBDNL_H

#include <stddef.h>
#include <stdint.h>

#define NBDNL_MAX_SOCKS 16

struct nbdnl_config {
	int index;                 /* device number wanted, or -1 for any free one */
	uint64_t size;             /* bytes, a multiple of block_size */
	uint64_t block_size;       /* logical = physical block size, 512..4096 */
	uint64_t server_flags;     /* NBD_FLAG_* (ublk/nbd_proto.h); HAS_FLAGS is added */
	uint64_t timeout_s;        /* per-request timeout; 0: the kernel only logs */
	uint64_t dead_conn_timeout_s; /* wait for a reconnect once every socket died */
	const char *backend;       /* shown in /sys/block/nbdN/backend; may be NULL */
	unsigned nsocks;           /* 1..NBDNL_MAX_SOCKS */
	const int *socks;          /* connected stream sockets; the kernel takes a
	                            * reference, the caller still closes its fds */
};

/* Checks that the "nbd" family exists (the nbd module is loaded).  0, or
 * -ENOENT with "nbd module not loaded: ..." in err, or another -errno. */
int nbdnl_probe(char *err, size_t len);

/* NBD_CMD_CONNECT: binds the sockets to a device and starts it.  On success
 * *index is the device the kernel chose (/dev/nbd<*index>).  -errno and a
 * message naming the cause otherwise (-EBUSY: that device is in use). */
int nbdnl_connect(const struct nbdnl_config *c, int *index, char *err, size_t len);

/* NBD_CMD_DISCONNECT: the kernel sends NBD_CMD_DISC on every socket, shuts
 * them down and fails whatever it still had queued; it has stopped reading
 * the sockets when this returns.  0 or -errno with a message. */
int nbdnl_disconnect(int index, char *err, size_t len);

/* NBD_CMD_STATUS for one device: *connected is 1 while it is bound to
 * sockets.  -ENOENT when there is no such device. */
int nbdnl_status(int index, int *connected, char *err, size_t len);

#endif
