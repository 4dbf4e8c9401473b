#include "ublk/nbdnl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <linux/nbd-netlink.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/netlink.h>

#include "ublk/nbd_proto.h"

/* What one request's answers left behind.  The kernel answers CONNECT and
 * STATUS with one message of attributes, then an ACK; a failure is an
 * NLMSG_ERROR carrying -errno, kept here as the kernel sent it (libnl's
 * own codes would lose it). */
struct nbdnl_rx {
	int kerr;
	void (*parse)(struct nlattr **attrs, void *arg);
	void *arg;
};

static int
nbdnl_err_cb(struct sockaddr_nl *nla, struct nlmsgerr *e, void *arg)
{
	struct nbdnl_rx *rx = arg;

	(void)nla;
	rx->kerr = e->error;
	return NL_STOP;
}

static int
nbdnl_valid_cb(struct nl_msg *msg, void *arg)
{
	struct nbdnl_rx *rx = arg;
	struct nlattr *attrs[NBD_ATTR_MAX + 1];

	if (genlmsg_parse(nlmsg_hdr(msg), 0, attrs, NBD_ATTR_MAX, NULL) < 0)
		return NL_SKIP;
	if (rx->parse)
		rx->parse(attrs, rx->arg);
	return NL_OK;
}

/* A connected generic netlink socket and the family's id.  -ENOENT when
 * the family is not registered: the module is not loaded. */
static int
nbdnl_open(struct nl_sock **out, int *family, char *err, size_t len)
{
	struct nl_sock *sk = nl_socket_alloc();
	int rc;

	if (!sk) {
		snprintf(err, len, "nbd netlink: out of memory");
		return -ENOMEM;
	}
	rc = genl_connect(sk);
	if (rc < 0) {
		snprintf(err, len, "nbd netlink: cannot open a generic netlink socket: %s",
			 nl_geterror(rc));
		nl_socket_free(sk);
		return -EIO;
	}
	rc = genl_ctrl_resolve(sk, NBD_GENL_FAMILY_NAME);
	if (rc < 0) {
		if (rc == -NLE_OBJ_NOTFOUND) {
			snprintf(err, len, "nbd module not loaded: generic netlink family '%s' "
				 "not found (modprobe nbd)", NBD_GENL_FAMILY_NAME);
			rc = -ENOENT;
		} else {
			snprintf(err, len, "nbd netlink: cannot resolve the family '%s': %s",
				 NBD_GENL_FAMILY_NAME, nl_geterror(rc));
			rc = -EIO;
		}
		nl_socket_free(sk);
		return rc;
	}
	*family = rc;
	*out = sk;
	return 0;
}

/* Sends msg (freed) and waits for the kernel's ACK or error; answers with
 * attributes go to rx->parse.  0 or -errno. */
static int
nbdnl_transact(struct nl_sock *sk, struct nl_msg *msg, struct nbdnl_rx *rx)
{
	int rc;

	rx->kerr = 0;
	nl_socket_modify_cb(sk, NL_CB_VALID, NL_CB_CUSTOM, nbdnl_valid_cb, rx);
	nl_socket_modify_err_cb(sk, NL_CB_CUSTOM, nbdnl_err_cb, rx);
	rc = nl_send_sync(sk, msg);
	if (rx->kerr < 0)
		return rx->kerr;
	if (rc < 0)
		return -EIO;
	return 0;
}

/* A message for cmd, or NULL (out of memory). */
static struct nl_msg *
nbdnl_msg(int family, uint8_t cmd)
{
	struct nl_msg *msg = nlmsg_alloc();

	if (msg && !genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, 0, cmd, 0)) {
		nlmsg_free(msg);
		msg = NULL;
	}
	return msg;
}

int
nbdnl_probe(char *err, size_t len)
{
	struct nl_sock *sk;
	int family, rc;

	rc = nbdnl_open(&sk, &family, err, len);
	if (rc == 0)
		nl_socket_free(sk);
	return rc;
}

static void
nbdnl_connect_reply(struct nlattr **attrs, void *arg)
{
	if (attrs[NBD_ATTR_INDEX])
		*(int *)arg = (int)nla_get_u32(attrs[NBD_ATTR_INDEX]);
}

static int
nbdnl_put_connect(struct nl_msg *msg, const struct nbdnl_config *c)
{
	struct nlattr *socks, *item;
	int rc = 0;

	/* No index attribute asks for any free device: the kernel refuses -1. */
	if (c->index >= 0)
		rc |= nla_put_u32(msg, NBD_ATTR_INDEX, (uint32_t)c->index);
	rc |= nla_put_u64(msg, NBD_ATTR_SIZE_BYTES, c->size);
	rc |= nla_put_u64(msg, NBD_ATTR_BLOCK_SIZE_BYTES, c->block_size);
	rc |= nla_put_u64(msg, NBD_ATTR_SERVER_FLAGS, c->server_flags | NBD_FLAG_HAS_FLAGS);
	rc |= nla_put_u64(msg, NBD_ATTR_TIMEOUT, c->timeout_s);
	rc |= nla_put_u64(msg, NBD_ATTR_DEAD_CONN_TIMEOUT, c->dead_conn_timeout_s);
	if (c->backend)
		rc |= nla_put_string(msg, NBD_ATTR_BACKEND_IDENTIFIER, c->backend);
	if (rc)
		return -EMSGSIZE;
	socks = nla_nest_start(msg, NBD_ATTR_SOCKETS);
	if (!socks)
		return -EMSGSIZE;
	for (unsigned i = 0; i < c->nsocks; i++) {
		item = nla_nest_start(msg, NBD_SOCK_ITEM);
		if (!item || nla_put_u32(msg, NBD_SOCK_FD, (uint32_t)c->socks[i]))
			return -EMSGSIZE;
		nla_nest_end(msg, item);
	}
	nla_nest_end(msg, socks);
	return 0;
}

int
nbdnl_connect(const struct nbdnl_config *c, int *index, char *err, size_t len)
{
	struct nbdnl_rx rx = { .parse = nbdnl_connect_reply };
	struct nl_sock *sk;
	struct nl_msg *msg;
	int family, rc, got = -1;

	if (c->nsocks == 0 || c->nsocks > NBDNL_MAX_SOCKS) {
		snprintf(err, len, "nbd: %u sockets (1 to %d)", c->nsocks, NBDNL_MAX_SOCKS);
		return -EINVAL;
	}
	rc = nbdnl_open(&sk, &family, err, len);
	if (rc)
		return rc;
	msg = nbdnl_msg(family, NBD_CMD_CONNECT);
	if (!msg) {
		nl_socket_free(sk);
		snprintf(err, len, "nbd netlink: out of memory");
		return -ENOMEM;
	}
	rc = nbdnl_put_connect(msg, c);
	if (rc) {
		nlmsg_free(msg);
		nl_socket_free(sk);
		snprintf(err, len, "nbd netlink: the CONNECT message does not fit");
		return rc;
	}
	rx.arg = &got;
	rc = nbdnl_transact(sk, msg, &rx);
	nl_socket_free(sk);
	if (rc == 0 && got < 0) {
		snprintf(err, len, "nbd netlink: CONNECT succeeded but the kernel named no device");
		/* Nothing to disconnect: the device is unknown. */
		return -EPROTO;
	}
	if (rc == -EBUSY && c->index >= 0)
		snprintf(err, len, "nbd: /dev/nbd%d is in use (connected to another server?)",
			 c->index);
	else if (rc == -EPERM)
		snprintf(err, len, "nbd: configuring a device needs CAP_SYS_ADMIN");
	else if (rc)
		snprintf(err, len, "nbd: the kernel refused NBD_CMD_CONNECT: %s (see the "
			 "kernel log)", strerror(-rc));
	if (rc == 0)
		*index = got;
	return rc;
}

/* One command naming a device by index; the reply goes to rx.  *asked
 * tells whether the kernel got it (else err already says why not). */
static int
nbdnl_index_cmd(uint8_t cmd, int index, struct nbdnl_rx *rx, int *asked, char *err,
		size_t len)
{
	struct nl_sock *sk;
	struct nl_msg *msg;
	int family, rc;

	*asked = 0;
	rc = nbdnl_open(&sk, &family, err, len);
	if (rc)
		return rc;
	msg = nbdnl_msg(family, cmd);
	if (!msg || nla_put_u32(msg, NBD_ATTR_INDEX, (uint32_t)index)) {
		nlmsg_free(msg);
		nl_socket_free(sk);
		snprintf(err, len, "nbd netlink: out of memory");
		return -ENOMEM;
	}
	*asked = 1;
	rc = nbdnl_transact(sk, msg, rx);
	nl_socket_free(sk);
	return rc;
}

int
nbdnl_disconnect(int index, char *err, size_t len)
{
	struct nbdnl_rx rx = { 0 };
	int asked, rc = nbdnl_index_cmd(NBD_CMD_DISCONNECT, index, &rx, &asked, err, len);

	if (rc && asked)
		snprintf(err, len, "nbd: the kernel refused NBD_CMD_DISCONNECT of /dev/nbd%d: %s",
			 index, strerror(-rc));
	return rc;
}

struct nbdnl_status_arg {
	int index;
	int found;
	int connected;
};

static void
nbdnl_status_reply(struct nlattr **attrs, void *arg)
{
	struct nbdnl_status_arg *st = arg;
	struct nlattr *item, *dev[NBD_DEVICE_ATTR_MAX + 1];
	int rem;

	if (!attrs[NBD_ATTR_DEVICE_LIST])
		return;
	nla_for_each_nested(item, attrs[NBD_ATTR_DEVICE_LIST], rem) {
		if (nla_type(item) != NBD_DEVICE_ITEM ||
		    nla_parse_nested(dev, NBD_DEVICE_ATTR_MAX, item, NULL) < 0 ||
		    !dev[NBD_DEVICE_INDEX])
			continue;
		if ((int)nla_get_u32(dev[NBD_DEVICE_INDEX]) != st->index)
			continue;
		st->found = 1;
		st->connected = dev[NBD_DEVICE_CONNECTED] && nla_get_u8(dev[NBD_DEVICE_CONNECTED]);
	}
}

int
nbdnl_status(int index, int *connected, char *err, size_t len)
{
	struct nbdnl_status_arg st = { .index = index };
	struct nbdnl_rx rx = { .parse = nbdnl_status_reply, .arg = &st };
	int asked, rc = nbdnl_index_cmd(NBD_CMD_STATUS, index, &rx, &asked, err, len);

	if (!asked)
		return rc;
	if (rc == 0 && !st.found)
		rc = -ENOENT;
	if (rc) {
		snprintf(err, len, "nbd: no status for /dev/nbd%d: %s", index, strerror(-rc));
		return rc;
	}
	*connected = st.connected;
	return 0;
}
