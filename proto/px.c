/* px: header and fixed payload encode/decode/validate, blocking send and
 * receive (on a plain socket or through TLS, struct px_sock).  The
 * handshake and the secret file are in px_auth.c, TLS in px_tls.c.
 *
 * Every check on what the peer sent lives in one table (px_types): the
 * flags each type may carry and the payload length it may have.  A
 * message that breaks it ends the connection, so nothing past the header
 * is read, and no buffer is ever sized from the peer's length. */
#include "proto/px.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>

#include "lib/util.h"
#include "proto/px_tls.h"

_Static_assert(sizeof(struct px_hdr) == PX_HDR_SIZE, "px_hdr is 24 bytes on the wire");
_Static_assert(sizeof(struct px_hello) == 216, "px_hello layout");
_Static_assert(sizeof(struct px_state) == 88, "px_state layout");
_Static_assert(sizeof(struct px_bitmap) == 8, "px_bitmap layout");
_Static_assert(sizeof(struct px_io) == 16, "px_io layout");
_Static_assert(sizeof(struct px_ack) == 8, "px_ack layout");
_Static_assert(sizeof(struct px_csum) == 48, "px_csum layout");

/* How a type's payload length is checked. */
enum px_len_rule {
	PX_LEN_EXACT = 1, /* exactly len */
	PX_LEN_UPTO,      /* at least min, at most len */
	PX_LEN_DATA,      /* struct px_io plus at most max_data bytes */
	PX_LEN_ACK_DATA,  /* struct px_ack plus at most max_data bytes */
};

struct px_type_info {
	const char *name;
	uint16_t flags;      /* PX_F_* the type may carry */
	uint8_t rule;        /* enum px_len_rule; 0: unknown type */
	uint32_t min;        /* PX_LEN_UPTO */
	uint32_t len;        /* PX_LEN_EXACT, PX_LEN_UPTO */
};

#define EXACT(n, l)       { .name = (n), .rule = PX_LEN_EXACT, .len = (l) }
#define EXACT_F(n, l, f)  { .name = (n), .rule = PX_LEN_EXACT, .len = (l), .flags = (f) }

static const struct px_type_info px_types[PX_TYPE_MAX] = {
	[PX_HELLO] = EXACT("HELLO", sizeof(struct px_hello)),
	[PX_CHALLENGE] = EXACT("CHALLENGE", PX_CHALLENGE_LEN),
	[PX_AUTH] = EXACT("AUTH", PX_MAC_LEN),
	[PX_AUTH_OK] = EXACT("AUTH_OK", 0),
	[PX_STATE] = EXACT("STATE", sizeof(struct px_state)),
	[PX_BITMAP] = { .name = "BITMAP", .rule = PX_LEN_UPTO,
			.min = sizeof(struct px_bitmap),
			.len = sizeof(struct px_bitmap) + PX_BITMAP_CHUNK },
	[PX_BITMAP_DONE] = EXACT("BITMAP_DONE", 0),
	[PX_PING] = EXACT("PING", 0),
	[PX_PING_ACK] = EXACT("PING_ACK", 0),
	[PX_SYNC_DONE] = EXACT("SYNC_DONE", sizeof(struct px_state)),
	[PX_DISCONNECT] = EXACT_F("DISCONNECT", 0, PX_F_OUTDATE),
	[PX_WRITE] = { .name = "WRITE", .rule = PX_LEN_DATA, .flags = PX_F_FUA },
	[PX_WRITE_ACK] = EXACT("WRITE_ACK", sizeof(struct px_ack)),
	[PX_RECV_ACK] = EXACT("RECV_ACK", 0),
	[PX_FLUSH] = EXACT_F("FLUSH", 0, PX_F_APP),
	[PX_FLUSH_ACK] = EXACT("FLUSH_ACK", sizeof(struct px_ack)),
	[PX_RS_DATA] = { .name = "RS_DATA", .rule = PX_LEN_DATA, .flags = PX_F_FUA },
	[PX_RS_ACK] = EXACT("RS_ACK", sizeof(struct px_ack)),
	[PX_TRIM] = EXACT_F("TRIM", sizeof(struct px_io), PX_F_FUA | PX_F_NO_HOLE | PX_F_ZERO),
	[PX_CSUM_REQ] = EXACT("CSUM_REQ", sizeof(struct px_io)),
	[PX_CSUM] = EXACT("CSUM", sizeof(struct px_csum)),
	[PX_OOS] = EXACT_F("OOS", sizeof(struct px_io), PX_F_AHEAD),
	[PX_READ_REQ] = EXACT("READ_REQ", sizeof(struct px_io)),
	[PX_READ_DATA] = { .name = "READ_DATA", .rule = PX_LEN_ACK_DATA },
};

/* Offsets in the header. */
#define HDR_MAGIC    0
#define HDR_TYPE     4
#define HDR_FLAGS    6
#define HDR_LEN      8
#define HDR_RESERVED 12
#define HDR_ID       16

/* Big-endian accessors on unaligned bytes. */
static void
put16(void *p, uint16_t v)
{
	v = htobe16(v);
	memcpy(p, &v, sizeof(v));
}

static void
put32(void *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, sizeof(v));
}

static void
put64(void *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, sizeof(v));
}

static uint16_t
get16(const void *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return be16toh(v);
}

static uint32_t
get32(const void *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return be32toh(v);
}

static uint64_t
get64(const void *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return be64toh(v);
}

static const struct px_type_info *
px_info(uint16_t type)
{
	if (type >= PX_TYPE_MAX || px_types[type].rule == 0)
		return NULL;
	return &px_types[type];
}

const char *
px_type_name(uint16_t type)
{
	const struct px_type_info *ti = px_info(type);

	return ti ? ti->name : "UNKNOWN";
}

/* A caller's max_data above the hard ceiling is clamped, so a bad
 * configuration can never make us accept more than PX_MAX_DATA. */
static uint32_t
clamp_data(uint32_t max_data)
{
	return max_data > PX_MAX_DATA ? PX_MAX_DATA : max_data;
}

uint32_t
px_max_len(uint16_t type, uint32_t max_data)
{
	const struct px_type_info *ti = px_info(type);

	if (!ti)
		return 0;
	if (ti->rule == PX_LEN_DATA)
		return (uint32_t)sizeof(struct px_io) + clamp_data(max_data);
	if (ti->rule == PX_LEN_ACK_DATA)
		return (uint32_t)sizeof(struct px_ack) + clamp_data(max_data);
	return ti->len;
}

static uint32_t
px_min_len(const struct px_type_info *ti)
{
	switch (ti->rule) {
	case PX_LEN_EXACT:
		return ti->len;
	case PX_LEN_UPTO:
		return ti->min;
	case PX_LEN_ACK_DATA:
		return sizeof(struct px_ack);
	default:
		return sizeof(struct px_io);
	}
}

void
px_hdr_encode(void *buf, uint16_t type, uint16_t flags, uint32_t len, uint64_t id)
{
	unsigned char *b = buf;

	put32(b + HDR_MAGIC, PX_MAGIC);
	put16(b + HDR_TYPE, type);
	put16(b + HDR_FLAGS, flags);
	put32(b + HDR_LEN, len);
	put32(b + HDR_RESERVED, 0);
	put64(b + HDR_ID, id);
}

static void __attribute__((format(printf, 3, 4)))
set_why(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (!why || !whylen)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

/* Only the length rule: the header is otherwise valid. */
static int
px_check_len(const struct px_type_info *ti, uint16_t type, uint32_t len, uint32_t max_data,
	     char *why, size_t whylen)
{
	uint32_t min = px_min_len(ti);
	uint32_t max = px_max_len(type, max_data);

	if (len < min || len > max) {
		if (min == max)
			set_why(why, whylen, "%s with %u payload bytes, must be exactly %u",
				ti->name, len, max);
		else if (len < min)
			set_why(why, whylen, "%s with %u payload bytes, at least %u", ti->name,
				len, min);
		else
			set_why(why, whylen, "%s with %u payload bytes, at most %u", ti->name,
				len, max);
		return -EMSGSIZE;
	}
	return 0;
}

int
px_hdr_decode(const void *buf, uint32_t max_data, struct px_msg *out, char *why,
	      size_t whylen)
{
	const unsigned char *b = buf;
	const struct px_type_info *ti;
	uint16_t type = get16(b + HDR_TYPE);
	uint16_t flags = get16(b + HDR_FLAGS);
	uint32_t len = get32(b + HDR_LEN);

	/* Never echo the peer's bytes for a bad magic: it may be anything. */
	if (get32(b + HDR_MAGIC) != PX_MAGIC) {
		set_why(why, whylen, "bad magic (not a blkmirror peer?)");
		return -EPROTO;
	}
	if (get32(b + HDR_RESERVED) != 0) {
		set_why(why, whylen, "non-zero reserved field in header");
		return -EPROTO;
	}
	ti = px_info(type);
	if (!ti) {
		set_why(why, whylen, "unknown message type %u", type);
		return -EPROTO;
	}
	if (flags & ~ti->flags) {
		set_why(why, whylen, "%s with flags 0x%x, allowed 0x%x", ti->name, flags,
			ti->flags);
		return -EPROTO;
	}
	if (px_check_len(ti, type, len, max_data, why, whylen))
		return -EMSGSIZE;
	out->type = type;
	out->flags = flags;
	out->len = len;
	out->id = get64(b + HDR_ID);
	return 0;
}

/* struct px_io: offset 0, length 8, reserved 12. */
void
px_io_encode(void *buf, uint64_t off, uint32_t length)
{
	unsigned char *b = buf;

	put64(b, off);
	put32(b + 8, length);
	put32(b + 12, 0);
}

static int
px_io_get(const unsigned char *b, struct px_io *out)
{
	uint64_t off = get64(b);
	uint32_t length = get32(b + 8);

	if (get32(b + 12) != 0)
		return -EPROTO;
	/* A range that wraps cannot be on any disk. */
	if (off + length < off)
		return -EPROTO;
	out->offset = off;
	out->length = length;
	out->reserved = 0;
	return 0;
}

int
px_io_decode(const void *buf, uint32_t len, struct px_io *out)
{
	if (len != sizeof(struct px_io))
		return -EPROTO;
	return px_io_get(buf, out);
}

int
px_data_decode(const void *buf, uint32_t len, struct px_io *out)
{
	struct px_io io;
	int rc;

	if (len < sizeof(struct px_io))
		return -EPROTO;
	rc = px_io_get(buf, &io);
	if (rc)
		return rc;
	if (io.length != len - sizeof(struct px_io))
		return -EPROTO;
	*out = io;
	return 0;
}

/* struct px_ack: status 0, reserved 4. */
void
px_ack_encode(void *buf, int32_t status)
{
	unsigned char *b = buf;

	put32(b, (uint32_t)status);
	put32(b + 4, 0);
}

int
px_ack_decode(const void *buf, uint32_t len, struct px_ack *out)
{
	const unsigned char *b = buf;
	int32_t status;

	if (len != sizeof(struct px_ack) || get32(b + 4) != 0)
		return -EPROTO;
	status = (int32_t)get32(b);
	/* 0 or a negative errno; anything else would confuse the caller. */
	if (status > 0 || status < -4095)
		return -EPROTO;
	out->status = status;
	out->reserved = 0;
	return 0;
}

/* struct px_state offsets. */
#define ST_ROLE        0
#define ST_DISK        1
#define ST_RESERVED    2
#define ST_FLAGS       4
#define ST_DATA_SIZE   8
#define ST_GRAN        16
#define ST_RESERVED2   20
#define ST_GEN_CURRENT 24
#define ST_GEN_BITMAP  32
#define ST_GEN_HISTORY 40
#define ST_OOS_BITS    (ST_GEN_HISTORY + 8 * PX_HISTORY)
#define ST_NODE_UUID   (ST_OOS_BITS + 8)

void
px_state_encode(void *buf, const struct px_state *s)
{
	unsigned char *b = buf;

	b[ST_ROLE] = s->role;
	b[ST_DISK] = s->disk;
	put16(b + ST_RESERVED, 0);
	put32(b + ST_FLAGS, s->flags);
	put64(b + ST_DATA_SIZE, s->data_size);
	put32(b + ST_GRAN, s->granularity);
	put32(b + ST_RESERVED2, 0);
	put64(b + ST_GEN_CURRENT, s->gen_current);
	put64(b + ST_GEN_BITMAP, s->gen_bitmap);
	for (unsigned i = 0; i < PX_HISTORY; i++)
		put64(b + ST_GEN_HISTORY + 8 * i, s->gen_history[i]);
	put64(b + ST_OOS_BITS, s->oos_bits);
	put64(b + ST_NODE_UUID, s->node_uuid);
}

/* The sanity checks a peer's state must pass before anything compares it
 * with ours: a garbage granularity or size would corrupt the bitmap math. */
static int
px_state_sane(const struct px_state *s)
{
	if (s->role > 1 || s->disk > 4)
		return -EPROTO;
	if (s->granularity < 4096 || (s->granularity & (s->granularity - 1)))
		return -EPROTO;
	if (s->data_size == 0 || s->data_size % 4096)
		return -EPROTO;
	return 0;
}

int
px_state_decode(const void *buf, uint32_t len, struct px_state *out)
{
	const unsigned char *b = buf;
	struct px_state s;

	if (len != sizeof(struct px_state))
		return -EPROTO;
	if (get16(b + ST_RESERVED) != 0 || get32(b + ST_RESERVED2) != 0)
		return -EPROTO;
	memset(&s, 0, sizeof(s));
	s.role = b[ST_ROLE];
	s.disk = b[ST_DISK];
	s.flags = get32(b + ST_FLAGS);
	s.data_size = get64(b + ST_DATA_SIZE);
	s.granularity = get32(b + ST_GRAN);
	s.gen_current = get64(b + ST_GEN_CURRENT);
	s.gen_bitmap = get64(b + ST_GEN_BITMAP);
	for (unsigned i = 0; i < PX_HISTORY; i++)
		s.gen_history[i] = get64(b + ST_GEN_HISTORY + 8 * i);
	s.oos_bits = get64(b + ST_OOS_BITS);
	s.node_uuid = get64(b + ST_NODE_UUID);
	if (px_state_sane(&s))
		return -EPROTO;
	*out = s;
	return 0;
}

void
px_bitmap_encode(void *buf, uint64_t first_bit)
{
	put64(buf, first_bit);
}

int
px_bitmap_decode(const void *buf, uint32_t len, struct px_bitmap *out)
{
	uint64_t first, bytes;

	/* Length first: a short payload may end before first_bit does. */
	if (len < sizeof(struct px_bitmap) || len > sizeof(struct px_bitmap) + PX_BITMAP_CHUNK)
		return -EPROTO;
	first = get64(buf);
	bytes = len - sizeof(struct px_bitmap);
	/* first_bit is byte aligned, and the chunk's last bit must not wrap. */
	if (first % 8 || first + 8 * bytes < first)
		return -EPROTO;
	out->first_bit = first;
	return 0;
}

/* struct px_csum: offset 0, length 8, reserved 12, sha256 16. */
void
px_csum_encode(void *buf, uint64_t off, uint32_t length, const uint8_t sha256[32])
{
	unsigned char *b = buf;

	px_io_encode(b, off, length);
	memcpy(b + 16, sha256, 32);
}

int
px_csum_decode(const void *buf, uint32_t len, struct px_csum *out)
{
	const unsigned char *b = buf;
	struct px_io io;

	if (len != sizeof(struct px_csum) || px_io_get(b, &io))
		return -EPROTO;
	out->offset = io.offset;
	out->length = io.length;
	out->reserved = 0;
	memcpy(out->sha256, b + 16, sizeof(out->sha256));
	return 0;
}

/* writev until everything is out; one call keeps header and payload in
 * one segment so Nagle does not hold the payload back. */
static int
writev_full(int fd, struct iovec *iov, int cnt)
{
	while (cnt > 0) {
		ssize_t n = writev(fd, iov, cnt);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		while (cnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

int
px_send_s(struct px_sock *s, uint16_t type, uint16_t flags, uint64_t id, const void *payload,
	  uint32_t len)
{
	unsigned char hdr[PX_HDR_SIZE];
	struct px_msg m;
	struct iovec iov[2];
	int cnt = len ? 2 : 1;

	px_hdr_encode(hdr, type, flags, len, id);
	/* What the peer would reject is our bug: refuse to send it. */
	if (px_hdr_decode(hdr, PX_MAX_DATA, &m, NULL, 0))
		return -EINVAL;
	iov[0].iov_base = hdr;
	iov[0].iov_len = sizeof(hdr);
	iov[1].iov_base = (void *)payload;
	iov[1].iov_len = len;
	if (s->tls)
		return px_tls_writev_full(s->tls, iov, cnt);
	return writev_full(s->fd, iov, cnt);
}

int
px_send(int fd, uint16_t type, uint16_t flags, uint64_t id, const void *payload,
	uint32_t len)
{
	struct px_sock s = { .fd = fd, .tls = NULL };

	return px_send_s(&s, type, flags, id, payload, len);
}

int
px_recv_hdr_s(struct px_sock *s, struct px_msg *m, uint32_t max_data, char *why, size_t whylen)
{
	unsigned char hdr[PX_HDR_SIZE];
	int rc;

	rc = px_sock_read_full(s, hdr, sizeof(hdr));
	if (rc) {
		set_why(why, whylen, "%s", rc == -ECONNRESET ? "connection closed by peer" :
			rc == -EPROTO ? "TLS record error" : strerror(-rc));
		return rc;
	}
	return px_hdr_decode(hdr, max_data, m, why, whylen);
}

int
px_recv_hdr(int fd, struct px_msg *m, uint32_t max_data, char *why, size_t whylen)
{
	struct px_sock s = { .fd = fd, .tls = NULL };

	return px_recv_hdr_s(&s, m, max_data, why, whylen);
}

int
px_recv_s(struct px_sock *s, struct px_msg *m, void *buf, uint32_t cap, uint32_t max_data,
	  char *why, size_t whylen)
{
	int rc;

	rc = px_recv_hdr_s(s, m, max_data, why, whylen);
	if (rc)
		return rc;
	if (m->len > cap) {
		set_why(why, whylen, "%s with %u payload bytes, buffer holds %u",
			px_type_name(m->type), m->len, cap);
		return -EMSGSIZE;
	}
	rc = px_sock_read_full(s, buf, m->len);
	if (rc)
		set_why(why, whylen, "reading %s payload: %s", px_type_name(m->type),
			rc == -ECONNRESET ? "connection closed by peer" :
			rc == -EPROTO ? "TLS record error" : strerror(-rc));
	return rc;
}

int
px_recv(int fd, struct px_msg *m, void *buf, uint32_t cap, uint32_t max_data, char *why,
	size_t whylen)
{
	struct px_sock s = { .fd = fd, .tls = NULL };

	return px_recv_s(&s, m, buf, cap, max_data, why, whylen);
}
