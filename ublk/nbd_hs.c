/* nbdh: the server side of the NBD fixed-newstyle handshake; see nbd_hs.h.
 *
 * Choices where the spec leaves room (doc/proto.md in NetworkBlockDevice/nbd):
 * - A client without NBD_FLAG_C_FIXED_NEWSTYLE may only use EXPORT_NAME;
 *   any other option is read and answered NBD_REP_ERR_INVALID (as nbdkit).
 * - A repeated STRUCTURED_REPLY gets NBD_REP_ERR_INVALID (as nbdkit; the
 *   spec allows failing a repeated state change); structured stays on.
 * - NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE are sent on every INFO/GO,
 *   asked for or not; NAME and DESCRIPTION only when asked for.
 * - LIST's NBD_REP_SERVER carries the description after the name (the
 *   spec's free text for humans), as nbdkit does.
 * - STARTTLS gets NBD_REP_ERR_POLICY: the export has no TLS.
 * - NBD_FLAG_SEND_DF is cleared unless structured replies were negotiated
 *   (the spec says MUST).
 * - A clean close between messages is -ESHUTDOWN; a close part-way through
 *   an option is -ECONNRESET.
 * - The whole handshake has one deadline (e->timeout_ms): every read and
 *   write waits in poll(2) for what is left of it, so a client that drips
 *   a byte at a time cannot keep the thread longer than one that sends
 *   nothing.  Past it: -ETIMEDOUT.
 * Sockets only (send/recv with MSG_NOSIGNAL: no SIGPIPE). */
#include "ublk/nbd_hs.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "ublk/nbd_proto.h"

/* Longest option data we read.  Every option we understand is a name of
 * at most 4096 bytes (the spec's string limit) plus a few bytes, so longer
 * data is broken or hostile and is never buffered. */
#define NBDH_MAX_OPTLEN 4096
/* Options per connection, so a client cannot keep the handshake thread. */
#define NBDH_MAX_OPTIONS 1024
/* Longest export name or description we send (the spec's string limit). */
#define NBDH_MAX_STRING 4096
/* Internal return value: the client entered transmission. */
#define NBDH_DONE 1

struct nbdh_conn {
	int fd;
	uint64_t deadline_ms;          /* util_now_ms() value; 0: none */
	int fixed;                     /* client set C_FIXED_NEWSTYLE */
	const struct nbdh_export *e;
	size_t name_len;               /* strlen(e->name) */
	size_t desc_len;               /* strlen(e->description), 0 if NULL */
	struct nbdh_result *out;
	char *err;
	size_t errlen;
	uint8_t data[NBDH_MAX_OPTLEN]; /* the current option's data */
};

/* One option reply, built whole so it leaves in one write. */
struct nbdh_reply {
	size_t len;
	uint8_t buf[sizeof(struct nbd_fixed_new_option_reply) + 4 +
		    2 * NBDH_MAX_STRING];
};

static int nbdh_fail(struct nbdh_conn *c, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int
nbdh_fail(struct nbdh_conn *c, int rc, const char *fmt, ...)
{
	va_list ap;

	if (c->err && c->errlen) {
		va_start(ap, fmt);
		vsnprintf(c->err, c->errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* A socket error while doing `what`; EOF comes back from nbdh_read_full
 * as -ECONNRESET, so name both as a closed connection. */
static int
nbdh_io_fail(struct nbdh_conn *c, int rc, const char *what, const char *opt)
{
	char eb[64];
	const char *s;

	s = rc == -ECONNRESET ? "connection closed by client" :
	    rc == -ETIMEDOUT  ? "the handshake's deadline passed" :
				strerror_r(-rc, eb, sizeof(eb));
	if (opt)
		return nbdh_fail(c, rc, "%s for option %s: %s", what, opt, s);
	return nbdh_fail(c, rc, "%s: %s", what, s);
}

static const char *
nbdh_opt_name(uint32_t opt)
{
	switch (opt) {
	case NBD_OPT_EXPORT_NAME:       return "EXPORT_NAME";
	case NBD_OPT_ABORT:             return "ABORT";
	case NBD_OPT_LIST:              return "LIST";
	case NBD_OPT_STARTTLS:          return "STARTTLS";
	case NBD_OPT_INFO:              return "INFO";
	case NBD_OPT_GO:                return "GO";
	case NBD_OPT_STRUCTURED_REPLY:  return "STRUCTURED_REPLY";
	case NBD_OPT_LIST_META_CONTEXT: return "LIST_META_CONTEXT";
	case NBD_OPT_SET_META_CONTEXT:  return "SET_META_CONTEXT";
	default:                        return "unknown";
	}
}

/* Copies a client-supplied name for a message: bounded, printable only,
 * so a client cannot forge log lines. */
static const char *
nbdh_show_name(const uint8_t *s, size_t len, char *buf, size_t buflen)
{
	size_t i, n = MIN(len, buflen - 4);

	for (i = 0; i < n; i++)
		buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '?';
	if (n < len)
		memcpy(buf + n, "...", 4);
	else
		buf[n] = '\0';
	return buf;
}

/* Waits until fd is ready for events, or the deadline passes (-ETIMEDOUT). */
static int
nbdh_wait(struct nbdh_conn *c, short events)
{
	struct pollfd p = { .fd = c->fd, .events = events };
	int n, ms = -1;

	for (;;) {
		if (c->deadline_ms) {
			uint64_t now = util_now_ms();

			if (now >= c->deadline_ms)
				return -ETIMEDOUT;
			ms = (int)MIN(c->deadline_ms - now, (uint64_t)INT32_MAX);
		}
		n = poll(&p, 1, ms);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

/* Reads up to len bytes (at least one) before the deadline; 0 at EOF. */
static ssize_t
nbdh_recv(struct nbdh_conn *c, void *buf, size_t len)
{
	for (;;) {
		ssize_t n = recv(c->fd, buf, len, MSG_DONTWAIT);
		int rc;

		if (n >= 0)
			return n;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return -errno;
		rc = nbdh_wait(c, POLLIN);
		if (rc)
			return rc;
	}
}

/* Reads exactly len bytes; EOF part-way is -ECONNRESET. */
static int
nbdh_read_full(struct nbdh_conn *c, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = nbdh_recv(c, (char *)buf + got, len - got);

		if (n < 0)
			return (int)n;
		if (n == 0)
			return -ECONNRESET;
		got += (size_t)n;
	}
	return 0;
}

static int
nbdh_write_full(struct nbdh_conn *c, const void *buf, size_t len)
{
	size_t sent = 0;

	while (sent < len) {
		ssize_t n = send(c->fd, (const char *)buf + sent, len - sent,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
		int rc;

		if (n >= 0) {
			sent += (size_t)n;
			continue;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return -errno;
		rc = nbdh_wait(c, POLLOUT);
		if (rc)
			return rc;
	}
	return 0;
}

/* Reads len bytes.  Returns 1 if the peer closed before sending any, so a
 * clean close between messages can be told from one in the middle. */
static int
nbdh_read_msg(struct nbdh_conn *c, void *buf, size_t len)
{
	ssize_t n = nbdh_recv(c, buf, len);

	if (n < 0)
		return (int)n;
	if (n == 0)
		return 1;
	return nbdh_read_full(c, (char *)buf + n, len - (size_t)n);
}

static void
nbdh_reply_start(struct nbdh_reply *r, uint32_t opt, uint32_t type)
{
	struct nbd_fixed_new_option_reply h = {
		.magic = htobe64(NBD_REP_MAGIC),
		.option = htobe32(opt),
		.reply = htobe32(type),
		.replylen = 0,
	};

	memcpy(r->buf, &h, sizeof(h));
	r->len = sizeof(h);
}

static void
nbdh_reply_put(struct nbdh_reply *r, const void *p, size_t len)
{
	/* Holds because nbdh_negotiate bounds the name and description. */
	VERIFY(len <= sizeof(r->buf) - r->len);
	if (!len)
		return;	/* p may be NULL (no description) */
	memcpy(r->buf + r->len, p, len);
	r->len += len;
}

static int
nbdh_reply_send(struct nbdh_conn *c, struct nbdh_reply *r)
{
	struct nbd_fixed_new_option_reply *h = (void *)r->buf;
	int rc;

	h->replylen = htobe32((uint32_t)(r->len - sizeof(*h)));
	rc = nbdh_write_full(c, r->buf, r->len);
	if (rc)
		return nbdh_io_fail(c, rc, "writing reply",
				    nbdh_opt_name(be32toh(h->option)));
	return 0;
}

/* A reply without data: ACK or an error. */
static int
nbdh_send_simple(struct nbdh_conn *c, uint32_t opt, uint32_t type)
{
	struct nbdh_reply r;

	nbdh_reply_start(&r, opt, type);
	return nbdh_reply_send(c, &r);
}

static uint16_t
nbdh_tflags(const struct nbdh_conn *c)
{
	uint16_t f = c->e->tflags | NBD_FLAG_HAS_FLAGS;

	/* The spec: SEND_DF MUST be clear without structured replies. */
	if (!c->out->structured)
		f &= (uint16_t)~NBD_FLAG_SEND_DF;
	return f;
}

/* The empty name is the default export, which is ours too. */
static int
nbdh_name_ok(const struct nbdh_conn *c, const uint8_t *name, size_t len)
{
	return len == 0 ||
	       (len == c->name_len && memcmp(name, c->e->name, len) == 0);
}

static int
nbdh_send_greeting(struct nbdh_conn *c)
{
	struct nbd_new_handshake g = {
		.nbdmagic = htobe64(NBD_MAGIC),
		.version = htobe64(NBD_IHAVEOPT),
		.gflags = htobe16(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES),
	};
	int rc;

	rc = nbdh_write_full(c, &g, sizeof(g));
	if (rc)
		return nbdh_io_fail(c, rc, "writing greeting", NULL);
	return 0;
}

static int
nbdh_read_client_flags(struct nbdh_conn *c)
{
	const uint32_t known = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;
	uint32_t f;
	int rc;

	rc = nbdh_read_msg(c, &f, sizeof(f));
	if (rc == 1)
		return nbdh_fail(c, -ESHUTDOWN,
				 "client closed the connection before sending its flags");
	if (rc)
		return nbdh_io_fail(c, rc, "reading client flags", NULL);
	f = be32toh(f);
	/* The spec: the server MUST drop a client that sets an unknown flag. */
	if (f & ~known)
		return nbdh_fail(c, -EPROTO, "client sent unknown flags 0x%" PRIx32,
				 f & ~known);
	c->fixed = !!(f & NBD_FLAG_C_FIXED_NEWSTYLE);
	c->out->no_zeroes = !!(f & NBD_FLAG_C_NO_ZEROES);
	return 0;
}

/* Data longer than we buffer would have to be read and thrown away to stay
 * in step with the client; dropping the connection is simpler and safe. */
static int
nbdh_opt_too_big(struct nbdh_conn *c, uint32_t opt, uint32_t len)
{
	/* EXPORT_NAME has no error reply: the close is the answer. */
	if (opt != NBD_OPT_EXPORT_NAME)
		(void)nbdh_send_simple(c, opt, NBD_REP_ERR_TOO_BIG);
	return nbdh_fail(c, -EPROTO,
			 "client sent option %s with %" PRIu32 " bytes of data (limit %d)",
			 nbdh_opt_name(opt), len, NBDH_MAX_OPTLEN);
}

static int
nbdh_opt_export_name(struct nbdh_conn *c, uint32_t len)
{
	struct nbd_export_name_reply r;
	char shown[68];
	size_t n;
	int rc;

	/* The protocol has no error reply to EXPORT_NAME: refusing is closing. */
	if (!nbdh_name_ok(c, c->data, len))
		return nbdh_fail(c, -EPROTO, "unknown export '%s'",
				 nbdh_show_name(c->data, len, shown, sizeof(shown)));
	memset(&r, 0, sizeof(r));
	r.exportsize = htobe64(c->e->size);
	r.eflags = htobe16(nbdh_tflags(c));
	n = c->out->no_zeroes ? offsetof(struct nbd_export_name_reply, zeroes) :
				sizeof(r);
	rc = nbdh_write_full(c, &r, n);
	if (rc)
		return nbdh_io_fail(c, rc, "writing reply", "EXPORT_NAME");
	return NBDH_DONE;
}

static int
nbdh_opt_abort(struct nbdh_conn *c)
{
	/* The client may be gone already; after ABORT it owes us nothing. */
	(void)nbdh_send_simple(c, NBD_OPT_ABORT, NBD_REP_ACK);
	return nbdh_fail(c, -ESHUTDOWN, "client aborted the handshake");
}

static int
nbdh_opt_list(struct nbdh_conn *c, uint32_t len)
{
	struct nbdh_reply r;
	uint32_t nl = htobe32((uint32_t)c->name_len);
	int rc;

	if (len)
		return nbdh_send_simple(c, NBD_OPT_LIST, NBD_REP_ERR_INVALID);
	nbdh_reply_start(&r, NBD_OPT_LIST, NBD_REP_SERVER);
	nbdh_reply_put(&r, &nl, sizeof(nl));
	nbdh_reply_put(&r, c->e->name, c->name_len);
	/* What follows the name is free text for humans (nbdinfo --list). */
	nbdh_reply_put(&r, c->e->description, c->desc_len);
	rc = nbdh_reply_send(c, &r);
	if (rc)
		return rc;
	return nbdh_send_simple(c, NBD_OPT_LIST, NBD_REP_ACK);
}

static int
nbdh_opt_starttls(struct nbdh_conn *c, uint32_t len)
{
	if (len)
		return nbdh_send_simple(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID);
	/* The export has no TLS; the peer link does its own. */
	return nbdh_send_simple(c, NBD_OPT_STARTTLS, NBD_REP_ERR_POLICY);
}

static int
nbdh_opt_structured_reply(struct nbdh_conn *c, uint32_t len)
{
	int rc;

	if (len || c->out->structured)
		return nbdh_send_simple(c, NBD_OPT_STRUCTURED_REPLY,
					NBD_REP_ERR_INVALID);
	rc = nbdh_send_simple(c, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK);
	if (rc)
		return rc;
	c->out->structured = 1;
	return 0;
}

struct nbdh_info_req {
	uint32_t name_len;       /* name starts at data + 4 */
	int want_name;
	int want_description;
	int want_block_size;
};

/* Checks every length in INFO/GO data against optlen exactly.
 * Returns 0 or -EINVAL. */
static int
nbdh_parse_info_go(const uint8_t *d, uint32_t len, struct nbdh_info_req *q)
{
	uint32_t nl, i;
	uint16_t n, t;

	memset(q, 0, sizeof(*q));
	if (len < 6)
		return -EINVAL;
	memcpy(&nl, d, 4);
	nl = be32toh(nl);
	if (nl > len - 6)
		return -EINVAL;
	memcpy(&n, d + 4 + nl, 2);
	n = be16toh(n);
	if (len != 6 + nl + 2u * n)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		memcpy(&t, d + 6 + nl + 2 * i, 2);
		/* EXPORT and BLOCK_SIZE go out anyway; unknown ones are
		 * ignored, as the spec requires. */
		if (be16toh(t) == NBD_INFO_NAME)
			q->want_name = 1;
		else if (be16toh(t) == NBD_INFO_DESCRIPTION)
			q->want_description = 1;
		else if (be16toh(t) == NBD_INFO_BLOCK_SIZE)
			q->want_block_size = 1;
	}
	q->name_len = nl;
	return 0;
}

static int
nbdh_send_info_export(struct nbdh_conn *c, uint32_t opt)
{
	struct nbdh_reply r;
	struct nbd_info_export ie = {
		.info = htobe16(NBD_INFO_EXPORT),
		.exportsize = htobe64(c->e->size),
		.eflags = htobe16(nbdh_tflags(c)),
	};

	nbdh_reply_start(&r, opt, NBD_REP_INFO);
	nbdh_reply_put(&r, &ie, sizeof(ie));
	return nbdh_reply_send(c, &r);
}

static int
nbdh_send_info_block_size(struct nbdh_conn *c, uint32_t opt)
{
	struct nbdh_reply r;
	struct nbd_info_block_size bs = {
		.info = htobe16(NBD_INFO_BLOCK_SIZE),
		.minimum = htobe32(c->e->min_block),
		.preferred = htobe32(c->e->pref_block),
		.maximum = htobe32(c->e->max_block),
	};

	nbdh_reply_start(&r, opt, NBD_REP_INFO);
	nbdh_reply_put(&r, &bs, sizeof(bs));
	return nbdh_reply_send(c, &r);
}

/* NBD_INFO_NAME or NBD_INFO_DESCRIPTION: the type, then the string. */
static int
nbdh_send_info_str(struct nbdh_conn *c, uint32_t opt, uint16_t type,
		   const char *s, size_t len)
{
	struct nbdh_reply r;
	uint16_t t = htobe16(type);

	nbdh_reply_start(&r, opt, NBD_REP_INFO);
	nbdh_reply_put(&r, &t, sizeof(t));
	nbdh_reply_put(&r, s, len);
	return nbdh_reply_send(c, &r);
}

static int
nbdh_send_infos(struct nbdh_conn *c, uint32_t opt, const struct nbdh_info_req *q)
{
	int rc;

	rc = nbdh_send_info_export(c, opt);
	if (!rc)
		rc = nbdh_send_info_block_size(c, opt);
	/* Always the canonical name, also when the client asked for "". */
	if (!rc && q->want_name)
		rc = nbdh_send_info_str(c, opt, NBD_INFO_NAME, c->e->name,
					c->name_len);
	if (!rc && q->want_description && c->e->description)
		rc = nbdh_send_info_str(c, opt, NBD_INFO_DESCRIPTION,
					c->e->description, c->desc_len);
	return rc;
}

static int
nbdh_opt_info_go(struct nbdh_conn *c, uint32_t opt, uint32_t len)
{
	struct nbdh_info_req q;
	int rc;

	if (nbdh_parse_info_go(c->data, len, &q))
		return nbdh_send_simple(c, opt, NBD_REP_ERR_INVALID);
	if (!nbdh_name_ok(c, c->data + 4, q.name_len))
		return nbdh_send_simple(c, opt, NBD_REP_ERR_UNKNOWN);
	rc = nbdh_send_infos(c, opt, &q);
	if (!rc)
		rc = nbdh_send_simple(c, opt, NBD_REP_ACK);
	if (rc)
		return rc;
	if (opt != NBD_OPT_GO)
		return 0;
	/* Only GO commits the client to the constraints (INFO only asks). */
	c->out->block_size = q.want_block_size;
	return NBDH_DONE;
}

/* Returns 0 to go on haggling, NBDH_DONE, or -errno to drop the client. */
static int
nbdh_handle_option(struct nbdh_conn *c, uint32_t opt, uint32_t len)
{
	int rc;

	LOG_DEBUG("nbd handshake: option %s (%" PRIu32 "), %" PRIu32 " bytes",
		  nbdh_opt_name(opt), opt, len);
	if (len > NBDH_MAX_OPTLEN)
		return nbdh_opt_too_big(c, opt, len);
	rc = nbdh_read_full(c, c->data, len);
	if (rc)
		return nbdh_io_fail(c, rc, "reading data",
				    nbdh_opt_name(opt));
	/* A client that is not fixed newstyle cannot parse option replies
	 * and should send only EXPORT_NAME; answer like nbdkit does. */
	if (!c->fixed && opt != NBD_OPT_EXPORT_NAME)
		return nbdh_send_simple(c, opt, NBD_REP_ERR_INVALID);
	switch (opt) {
	case NBD_OPT_EXPORT_NAME:
		return nbdh_opt_export_name(c, len);
	case NBD_OPT_ABORT:
		return nbdh_opt_abort(c);
	case NBD_OPT_LIST:
		return nbdh_opt_list(c, len);
	case NBD_OPT_STARTTLS:
		return nbdh_opt_starttls(c, len);
	case NBD_OPT_INFO:
	case NBD_OPT_GO:
		return nbdh_opt_info_go(c, opt, len);
	case NBD_OPT_STRUCTURED_REPLY:
		return nbdh_opt_structured_reply(c, len);
	default:
		return nbdh_send_simple(c, opt, NBD_REP_ERR_UNSUP);
	}
}

static int
nbdh_option_loop(struct nbdh_conn *c)
{
	struct nbd_option o;
	unsigned n;
	int rc;

	for (n = 0;; n++) {
		rc = nbdh_read_msg(c, &o, sizeof(o));
		if (rc == 1)
			return nbdh_fail(c, -ESHUTDOWN,
					 "client closed the connection during option haggling");
		if (rc)
			return nbdh_io_fail(c, rc, "reading option header", NULL);
		if (be64toh(o.version) != NBD_IHAVEOPT)
			return nbdh_fail(c, -EPROTO,
					 "client sent bad option magic 0x%016" PRIx64,
					 be64toh(o.version));
		if (n == NBDH_MAX_OPTIONS)
			return nbdh_fail(c, -EPROTO,
					 "client sent more than %d options without choosing an export",
					 NBDH_MAX_OPTIONS);
		rc = nbdh_handle_option(c, be32toh(o.option), be32toh(o.optlen));
		if (rc)
			return rc == NBDH_DONE ? 0 : rc;
	}
}

int
nbdh_negotiate(int fd, const struct nbdh_export *e, struct nbdh_result *out,
	       char *err, size_t errlen)
{
	struct nbdh_conn c = {
		.fd = fd, .e = e, .out = out, .err = err, .errlen = errlen,
		.deadline_ms = e->timeout_ms ? util_now_ms() + e->timeout_ms : 0,
	};
	int rc;

	if (err && errlen)
		err[0] = '\0';
	out->structured = 0;
	out->no_zeroes = 0;
	out->block_size = 0;
	/* Replies are built in fixed buffers sized for the spec's limit. */
	if (!e->name || strlen(e->name) > NBDH_MAX_STRING ||
	    (e->description && strlen(e->description) > NBDH_MAX_STRING))
		return nbdh_fail(&c, -EINVAL,
				 "export name missing, or name or description over %d bytes",
				 NBDH_MAX_STRING);
	c.name_len = strlen(e->name);
	c.desc_len = e->description ? strlen(e->description) : 0;
	rc = nbdh_send_greeting(&c);
	if (!rc)
		rc = nbdh_read_client_flags(&c);
	if (!rc)
		rc = nbdh_option_loop(&c);
	return rc;
}
