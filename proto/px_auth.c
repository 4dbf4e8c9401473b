/* px_auth: the handshake of one link (HELLO, mutual challenge-response
 * with HMAC-SHA256 over a shared secret) and the secret file.
 *
 * Sequence (C connects, L listens):
 *   C -> L  HELLO(c)
 *   L -> C  HELLO(l)            sent before L judges HELLO(c), so that
 *                               both sides log the same mismatch
 *   L -> C  CHALLENGE(l)        only when HELLO(c) is acceptable
 *   C -> L  AUTH(c) CHALLENGE(c)
 *   L -> C  AUTH_OK AUTH(l)     only when AUTH(c) is right
 *   C -> L  AUTH_OK             only when AUTH(l) is right
 * A side that rejects closes without a word; the other side learns it
 * from EOF, and EOF while waiting for AUTH_OK means our AUTH was refused.
 *
 * Nothing from the wire is printed before it passed hello_name(): names
 * are NUL terminated, printable ASCII and NUL padded. */
#include "proto/px.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "lib/fault.h"
#include "lib/util.h"
#include "proto/px_tls.h"

#define PX_LABEL_CLIENT  "blkmirror v1 client"
#define PX_LABEL_SERVER  "blkmirror v1 server"
#define PX_LABEL_SESSION "blkmirror v1 session"
#define PX_LABEL_MAX     32
#define PX_HELLO_LEN     ((uint32_t)sizeof(struct px_hello))
#define PX_SECRET_MIN    16
#define PX_SECRET_MAX    4096

/* struct px_hello offsets. */
#define HE_VMIN     0
#define HE_VMAX     4
#define HE_FEATURES 8
#define HE_LINK     12
#define HE_QUEUE    14
#define HE_SESSION  16
#define HE_NODE     24
#define HE_PEER     (HE_NODE + PX_NAME_MAX)
#define HE_RESOURCE (HE_PEER + PX_NAME_MAX)

/* One handshake in progress. */
struct hs {
	struct px_sock *s;                     /* plain or TLS */
	const struct px_hs_params *p;
	char *err;
	size_t errlen;
	unsigned char hello_c[PX_HELLO_LEN];   /* the connector's, as on the wire */
	unsigned char hello_l[PX_HELLO_LEN];   /* the listener's, as on the wire */
	unsigned char chal_c[PX_CHALLENGE_LEN]; /* sent by the connector */
	unsigned char chal_l[PX_CHALLENGE_LEN]; /* sent by the listener */
	struct px_hello peer;                  /* decoded, names validated */
	int bound;                             /* the AUTHs cover binding */
	unsigned char binding[PX_TLS_BINDING_LEN]; /* the TLS session's exporter */
};

static int __attribute__((format(printf, 3, 4)))
hs_fail(struct hs *h, int rc, const char *fmt, ...)
{
	va_list ap;

	if (h->err && h->errlen) {
		va_start(ap, fmt);
		vsnprintf(h->err, h->errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* Our own names come from the configuration; the peer checks the same
 * rules, so catch a name it would refuse here. */
static int
name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n >= PX_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x20 || s[i] > 0x7e)
			return 0;
	return 1;
}

/* A name field from the wire: NUL terminated within the field, non-empty,
 * printable ASCII, NUL padded (so the bytes under the MAC are canonical). */
static int
hello_name(const unsigned char *field, char *out)
{
	const unsigned char *nul = memchr(field, 0, PX_NAME_MAX);
	size_t n;

	if (!nul || nul == field)
		return -EPROTO;
	n = (size_t)(nul - field);
	for (size_t i = 0; i < n; i++)
		if (field[i] < 0x20 || field[i] > 0x7e)
			return -EPROTO;
	for (size_t i = n; i < PX_NAME_MAX; i++)
		if (field[i])
			return -EPROTO;
	memcpy(out, field, PX_NAME_MAX);
	return 0;
}

/* The highest version this node speaks: PX_VERSION, or 2 under the
 * failpoint peer/version2 (tests: a peer built before version 3). */
static uint32_t
px_version_max(void)
{
	return FAULT("peer/version2") ? 2 : PX_VERSION;
}

static void
put_name(unsigned char *field, const char *s)
{
	memset(field, 0, PX_NAME_MAX);
	memcpy(field, s, strlen(s));
}

static void
hello_encode(unsigned char *b, const struct px_hs_params *p, uint16_t link, uint16_t queue,
	     uint64_t session)
{
	uint32_t v32;
	uint16_t v16;
	uint64_t v64;

	v32 = htobe32(1);
	memcpy(b + HE_VMIN, &v32, 4);
	v32 = htobe32(px_version_max());
	memcpy(b + HE_VMAX, &v32, 4);
	v32 = htobe32(p->features);
	memcpy(b + HE_FEATURES, &v32, 4);
	v16 = htobe16(link);
	memcpy(b + HE_LINK, &v16, 2);
	v16 = htobe16(queue);
	memcpy(b + HE_QUEUE, &v16, 2);
	v64 = htobe64(session);
	memcpy(b + HE_SESSION, &v64, 8);
	put_name(b + HE_NODE, p->node);
	put_name(b + HE_PEER, p->peer);
	put_name(b + HE_RESOURCE, p->resource);
}

/* Decodes the peer's HELLO into h->peer: structure only, nothing here
 * depends on our configuration. */
static int
hello_decode(struct hs *h, const unsigned char *b)
{
	struct px_hello *o = &h->peer;
	uint32_t v32;
	uint16_t v16;
	uint64_t v64;

	memcpy(&v32, b + HE_VMIN, 4);
	o->version_min = be32toh(v32);
	memcpy(&v32, b + HE_VMAX, 4);
	o->version_max = be32toh(v32);
	memcpy(&v32, b + HE_FEATURES, 4);
	o->features = be32toh(v32);
	memcpy(&v16, b + HE_LINK, 2);
	o->link = be16toh(v16);
	memcpy(&v16, b + HE_QUEUE, 2);
	o->queue = be16toh(v16);
	memcpy(&v64, b + HE_SESSION, 8);
	o->session = be64toh(v64);
	if (hello_name(b + HE_NODE, o->node) || hello_name(b + HE_PEER, o->peer) ||
	    hello_name(b + HE_RESOURCE, o->resource))
		return hs_fail(h, -EPROTO, "peer sent a HELLO with a malformed name");
	if (o->version_min == 0 || o->version_min > o->version_max)
		return hs_fail(h, -EPROTO, "peer sent an invalid version range %u-%u",
			       o->version_min, o->version_max);
	if (o->link != PX_LINK_META && o->link != PX_LINK_DATA)
		return hs_fail(h, -EPROTO, "peer sent unknown link kind %u", o->link);
	if (o->link == PX_LINK_META && (o->queue || o->session))
		return hs_fail(h, -EPROTO, "peer sent a meta link HELLO with queue or session set");
	return 0;
}

static int
hello_judge_version(struct hs *h)
{
	const struct px_hello *o = &h->peer;
	uint32_t hi = MIN(o->version_max, px_version_max());
	uint32_t lo = o->version_min > 1 ? o->version_min : 1;

	if (hi < lo)
		return hs_fail(h, -EPROTONOSUPPORT,
			       "no common protocol version: we speak %u-%u, node %s speaks %u-%u",
			       1, px_version_max(), o->node, o->version_min, o->version_max);
	return 0;
}

static int
hello_judge_names(struct hs *h)
{
	const struct px_hello *o = &h->peer;
	const struct px_hs_params *p = h->p;

	if (strcmp(o->resource, p->resource) != 0)
		return hs_fail(h, -ENOENT, "node %s serves resource %s, we serve %s", o->node,
			       o->resource, p->resource);
	if (strcmp(o->node, p->peer) != 0)
		return hs_fail(h, -ENOENT, "peer is node %s, expected %s", o->node, p->peer);
	if (strcmp(o->peer, p->node) != 0)
		return hs_fail(h, -ENOENT, "node %s expects to reach node %s, we are %s", o->node,
			       o->peer, p->node);
	return 0;
}

/* A data link belongs to the meta link whose session it names; a stale
 * one (from before a reconnect) must not feed writes into the new one. */
static int
hello_judge_session(struct hs *h)
{
	const struct px_hello *o = &h->peer;

	if (o->link != PX_LINK_DATA)
		return 0;
	if (h->p->session == 0)
		return hs_fail(h, -ESTALE, "data link %u from node %s before a meta link",
			       o->queue, o->node);
	if (o->session != h->p->session)
		return hs_fail(h, -ESTALE, "data link %u from node %s is for another session",
			       o->queue, o->node);
	return 0;
}

/* The connector also checks that the listener answered for the link it
 * asked for. */
static int
hello_judge_link(struct hs *h)
{
	if (!h->p->initiator)
		return 0;
	if (h->peer.link != h->p->link || h->peer.queue != h->p->queue)
		return hs_fail(h, -EPROTO, "node %s answered for link %u queue %u, we asked %u/%u",
			       h->peer.node, h->peer.link, h->peer.queue, h->p->link,
			       h->p->queue);
	return 0;
}

static int
hello_judge(struct hs *h)
{
	int rc;

	rc = hello_judge_version(h);
	if (!rc)
		rc = hello_judge_names(h);
	if (!rc)
		rc = hello_judge_link(h);
	if (!rc)
		rc = hello_judge_session(h);
	return rc;
}

static int
hs_send(struct hs *h, uint16_t type, const void *buf, uint32_t len)
{
	int rc = px_send_s(h->s, type, 0, 0, buf, len);

	/* The peer closing first is the same event whether we notice it on a
	 * read or on a write. */
	if (rc == -EPIPE || rc == -ECONNRESET)
		return hs_fail(h, -ECONNRESET, "peer closed the connection before our %s",
			       px_type_name(type));
	if (rc == -EAGAIN || rc == -EWOULDBLOCK)
		return hs_fail(h, -ETIMEDOUT, "timed out sending %s", px_type_name(type));
	if (rc)
		return hs_fail(h, rc, "sending %s: %s", px_type_name(type), strerror(-rc));
	return 0;
}

/* Receives one handshake message of exactly the given type.  The type is
 * checked before any payload is read, and max_data 0 keeps every length
 * tiny.  EOF means what the caller says it means at this point. */
static int
hs_recv(struct hs *h, uint16_t type, void *buf, int eof_rc, const char *eof_msg)
{
	char why[128];
	struct px_msg m;
	int rc;

	rc = px_recv_hdr_s(h->s, &m, 0, why, sizeof(why));
	if (rc == -ECONNRESET)
		return hs_fail(h, eof_rc, "%s", eof_msg);
	if (rc == -EAGAIN || rc == -EWOULDBLOCK)
		return hs_fail(h, -ETIMEDOUT, "timed out waiting for %s", px_type_name(type));
	if (rc == -EPROTO || rc == -EMSGSIZE)
		return hs_fail(h, -EPROTO, "waiting for %s: %s", px_type_name(type), why);
	if (rc)
		return hs_fail(h, rc, "waiting for %s: %s", px_type_name(type), why);
	if (m.type != type)
		return hs_fail(h, -EPROTO, "expected %s, peer sent %s", px_type_name(type),
			       px_type_name(m.type));
	/* px_hdr_decode held the length to exactly the type's size. */
	rc = px_sock_read_full(h->s, buf, m.len);
	if (rc == -ECONNRESET)
		return hs_fail(h, eof_rc, "%s", eof_msg);
	if (rc == -EAGAIN || rc == -EWOULDBLOCK)
		return hs_fail(h, -ETIMEDOUT, "timed out reading %s", px_type_name(type));
	if (rc)
		return hs_fail(h, rc, "reading %s: %s", px_type_name(type), strerror(-rc));
	return 0;
}

/* HMAC-SHA256(secret, label || challenge || hello_c || hello_l
 *             [|| TLS exporter, when bound]). */
static int
hs_mac(struct hs *h, const char *label, const unsigned char *chal, unsigned char *out)
{
	unsigned char in[PX_LABEL_MAX + PX_CHALLENGE_LEN + 2 * PX_HELLO_LEN + PX_TLS_BINDING_LEN];
	size_t ll = strlen(label), n = 0;
	unsigned int outlen = 0;

	memcpy(in + n, label, ll);
	n += ll;
	memcpy(in + n, chal, PX_CHALLENGE_LEN);
	n += PX_CHALLENGE_LEN;
	memcpy(in + n, h->hello_c, PX_HELLO_LEN);
	n += PX_HELLO_LEN;
	memcpy(in + n, h->hello_l, PX_HELLO_LEN);
	n += PX_HELLO_LEN;
	if (h->bound) {
		memcpy(in + n, h->binding, PX_TLS_BINDING_LEN);
		n += PX_TLS_BINDING_LEN;
	}
	if (!HMAC(EVP_sha256(), h->p->secret, (int)h->p->secret_len, in, n, out, &outlen) ||
	    outlen != PX_MAC_LEN)
		return hs_fail(h, -EIO, "HMAC-SHA256 failed");
	return 0;
}

/* From version 2, on a TLS link, the AUTHs also cover the TLS session's
 * exporter: a man in the middle with certificates both nodes accept could
 * otherwise relay the whole exchange between its two TLS sessions, and
 * neither node would notice that its session ends at the relay.  The
 * version is agreed from the HELLOs, which the AUTHs cover too, so a
 * relay cannot talk two version 2 nodes down to version 1. */
static int
hs_bind(struct hs *h)
{
	uint32_t version = MIN(h->peer.version_max, px_version_max());

	if (!h->s->tls || version < 2)
		return 0;
	if (px_tls_binding(h->s->tls, h->binding))
		return hs_fail(h, -EPROTO, "no TLS keying material to bind the authentication to");
	h->bound = 1;
	return 0;
}

static int
hs_challenge(struct hs *h, unsigned char *chal)
{
	if (RAND_bytes(chal, PX_CHALLENGE_LEN) != 1)
		return hs_fail(h, -EIO, "no random bytes for the challenge");
	return hs_send(h, PX_CHALLENGE, chal, PX_CHALLENGE_LEN);
}

/* Checks the peer's AUTH over our challenge, made with the peer's label. */
static int
hs_verify(struct hs *h, const char *label, const unsigned char *chal,
	  const unsigned char *got)
{
	unsigned char want[PX_MAC_LEN];
	int rc;

	rc = hs_mac(h, label, chal, want);
	if (rc)
		return rc;
	if (CRYPTO_memcmp(want, got, PX_MAC_LEN) != 0)
		return hs_fail(h, -EACCES, "node %s failed authentication (wrong secret?)",
			       h->peer.node);
	return 0;
}

/* Both sides derive a meta link's session id from both challenges, so
 * neither can pick it and it is new on every connection.  Never 0. */
static int
hs_session(struct hs *h, uint64_t *out)
{
	unsigned char in[PX_LABEL_MAX + 2 * PX_CHALLENGE_LEN];
	unsigned char md[PX_MAC_LEN];
	size_t ll = strlen(PX_LABEL_SESSION);
	unsigned int mdlen = 0;
	uint64_t v;

	memcpy(in, PX_LABEL_SESSION, ll);
	memcpy(in + ll, h->chal_l, PX_CHALLENGE_LEN);
	memcpy(in + ll + PX_CHALLENGE_LEN, h->chal_c, PX_CHALLENGE_LEN);
	if (!HMAC(EVP_sha256(), h->p->secret, (int)h->p->secret_len, in,
		  ll + 2 * PX_CHALLENGE_LEN, md, &mdlen))
		return hs_fail(h, -EIO, "HMAC-SHA256 failed");
	memcpy(&v, md, sizeof(v));
	v = be64toh(v);
	*out = v ? v : 1;
	return 0;
}

static int
hs_connector(struct hs *h)
{
	const struct px_hs_params *p = h->p;
	unsigned char mac[PX_MAC_LEN];
	int rc;

	hello_encode(h->hello_c, p, p->link, p->queue,
		     p->link == PX_LINK_DATA ? p->session : 0);
	rc = hs_send(h, PX_HELLO, h->hello_c, PX_HELLO_LEN);
	if (!rc)
		rc = hs_recv(h, PX_HELLO, h->hello_l, -ECONNRESET,
			     "peer closed the connection before its HELLO (see its log)");
	if (!rc)
		rc = hello_decode(h, h->hello_l);
	if (!rc)
		rc = hello_judge(h);
	if (!rc)
		rc = hs_bind(h);
	if (!rc)
		rc = hs_recv(h, PX_CHALLENGE, h->chal_l, -ECONNRESET,
			     "peer closed the connection after HELLO (see its log)");
	if (!rc)
		rc = hs_mac(h, PX_LABEL_CLIENT, h->chal_l, mac);
	if (!rc)
		rc = hs_send(h, PX_AUTH, mac, PX_MAC_LEN);
	if (!rc)
		rc = hs_challenge(h, h->chal_c);
	if (!rc)
		rc = hs_recv(h, PX_AUTH_OK, NULL, -EACCES,
			     "peer rejected our authentication (wrong secret?)");
	if (!rc)
		rc = hs_recv(h, PX_AUTH, mac, -ECONNRESET,
			     "peer closed the connection before its AUTH");
	if (!rc)
		rc = hs_verify(h, PX_LABEL_SERVER, h->chal_c, mac);
	if (!rc)
		rc = hs_send(h, PX_AUTH_OK, NULL, 0);
	return rc;
}

static int
hs_listener(struct hs *h)
{
	const struct px_hs_params *p = h->p;
	unsigned char mac[PX_MAC_LEN];
	int rc;

	rc = hs_recv(h, PX_HELLO, h->hello_c, -ECONNRESET,
		     "peer closed the connection before its HELLO");
	if (!rc)
		rc = hello_decode(h, h->hello_c);
	if (rc)
		return rc;
	/* Answer for the link the connector asked for, then judge, so that a
	 * mismatch is reported by both sides. */
	hello_encode(h->hello_l, p, h->peer.link, h->peer.queue,
		     h->peer.link == PX_LINK_DATA ? p->session : 0);
	rc = hs_send(h, PX_HELLO, h->hello_l, PX_HELLO_LEN);
	if (!rc)
		rc = hello_judge(h);
	if (!rc)
		rc = hs_bind(h);
	if (!rc)
		rc = hs_challenge(h, h->chal_l);
	if (!rc)
		rc = hs_recv(h, PX_AUTH, mac, -ECONNRESET,
			     "peer closed the connection before its AUTH (see its log)");
	if (!rc)
		rc = hs_recv(h, PX_CHALLENGE, h->chal_c, -ECONNRESET,
			     "peer closed the connection before its CHALLENGE");
	if (!rc)
		rc = hs_verify(h, PX_LABEL_CLIENT, h->chal_l, mac);
	if (!rc)
		rc = hs_send(h, PX_AUTH_OK, NULL, 0);
	if (!rc)
		rc = hs_mac(h, PX_LABEL_SERVER, h->chal_c, mac);
	if (!rc)
		rc = hs_send(h, PX_AUTH, mac, PX_MAC_LEN);
	if (!rc)
		rc = hs_recv(h, PX_AUTH_OK, NULL, -EACCES,
			     "peer rejected our authentication (wrong secret?)");
	return rc;
}

static int
hs_check_params(struct hs *h)
{
	const struct px_hs_params *p = h->p;

	if (!name_ok(p->node) || !name_ok(p->peer) || !name_ok(p->resource))
		return hs_fail(h, -EINVAL, "node, peer and resource names must be 1-%d "
			       "printable characters", PX_NAME_MAX - 1);
	if (!p->secret || p->secret_len == 0 || p->secret_len > PX_SECRET_MAX)
		return hs_fail(h, -EINVAL, "no usable secret");
	if (!p->initiator)
		return 0;
	if (p->link != PX_LINK_META && p->link != PX_LINK_DATA)
		return hs_fail(h, -EINVAL, "unknown link kind %u", p->link);
	if (p->link == PX_LINK_DATA && p->session == 0)
		return hs_fail(h, -EINVAL, "a data link needs the meta link's session");
	if (p->link == PX_LINK_META && p->queue)
		return hs_fail(h, -EINVAL, "a meta link has no queue");
	return 0;
}

int
px_handshake_s(struct px_sock *s, const struct px_hs_params *p, struct px_hs_result *out,
	       char *err, size_t errlen)
{
	struct hs h;
	uint32_t vmax;
	int rc;

	memset(&h, 0, sizeof(h));
	h.s = s;
	h.p = p;
	h.err = err;
	h.errlen = errlen;
	if (err && errlen)
		err[0] = '\0';
	rc = hs_check_params(&h);
	if (!rc)
		rc = p->initiator ? hs_connector(&h) : hs_listener(&h);
	if (rc)
		return rc;
	memset(out, 0, sizeof(*out));
	vmax = h.peer.version_max;
	out->version = MIN(vmax, px_version_max());
	out->features = p->features & h.peer.features;
	out->link = h.peer.link;
	out->queue = h.peer.queue;
	out->session = h.peer.session;
	if (out->link == PX_LINK_META)
		rc = hs_session(&h, &out->session);
	return rc;
}

int
px_handshake(int fd, const struct px_hs_params *p, struct px_hs_result *out, char *err,
	     size_t errlen)
{
	struct px_sock s = { .fd = fd, .tls = NULL };

	return px_handshake_s(&s, p, out, err, errlen);
}

/* Reads at most cap bytes; 0 at EOF is fine here (a short file). */
static ssize_t
read_upto(int fd, unsigned char *buf, size_t cap)
{
	size_t n = 0;

	while (n < cap) {
		ssize_t r = read(fd, buf + n, cap - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		n += (size_t)r;
	}
	return (ssize_t)n;
}

/* Permissions first, so a world-readable secret is refused even when it
 * is otherwise fine: it must be replaced, not just chmodded. */
static int
secret_open(const char *path, char *err, size_t errlen)
{
	struct stat st;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return util_fail(err, errlen, -errno, "secret file %s: %s", path,
				   strerror(errno));
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		close(fd);
		return util_fail(err, errlen, rc, "secret file %s: %s", path, strerror(-rc));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return util_fail(err, errlen, -EINVAL, "secret file %s is not a regular file",
				   path);
	}
	if (st.st_mode & 077) {
		close(fd);
		return util_fail(err, errlen, -EPERM,
				   "secret file %s has mode %04o: group and others must have "
				   "no access (chmod 600)", path, (unsigned)(st.st_mode & 07777));
	}
	return fd;
}

int
px_load_secret(const char *path, void *buf, size_t cap, size_t *len, char *err,
	       size_t errlen)
{
	/* Room for the longest secret, "\r\n", and one byte to see it is longer. */
	unsigned char tmp[PX_SECRET_MAX + 3];
	ssize_t n;
	int fd, rc = 0;

	if (err && errlen)
		err[0] = '\0';
	fd = secret_open(path, err, errlen);
	if (fd < 0)
		return fd;
	n = read_upto(fd, tmp, sizeof(tmp));
	close(fd);
	if (n < 0)
		return util_fail(err, errlen, (int)n, "secret file %s: %s", path,
				   strerror((int)-n));
	if (n > 0 && tmp[n - 1] == '\n') {
		n--;
		if (n > 0 && tmp[n - 1] == '\r')
			n--;
	}
	if (n < PX_SECRET_MIN)
		rc = util_fail(err, errlen, -EINVAL,
				 "secret file %s holds %zd bytes, at least %d are needed", path, n,
				 PX_SECRET_MIN);
	else if (n > PX_SECRET_MAX)
		rc = util_fail(err, errlen, -EFBIG, "secret file %s is longer than %d bytes",
				 path, PX_SECRET_MAX);
	else if ((size_t)n > cap)
		rc = util_fail(err, errlen, -ENOBUFS,
				 "secret file %s: %zd bytes do not fit the buffer", path, n);
	if (!rc) {
		memcpy(buf, tmp, (size_t)n);
		*len = (size_t)n;
	}
	OPENSSL_cleanse(tmp, sizeof(tmp));
	return rc;
}
