/* Unit tests for proto/px.c and proto/px_auth.c: header validation against
 * the per-type table, fixed payloads, send/recv, the handshake between two
 * real sides over a socketpair (one thread each) and against a fake peer
 * written here from the documented wire format (its own big-endian encoder
 * and its own HMAC), and the secret file. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "tests/unit/cu_run.h"
#include <CUnit/CUnit.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "lib/util.h"
#include "proto/px.h"

#define SECRET       "correct horse battery staple"
#define HELLO_LEN    216
#define MAX_DATA     (1u << 20)

static unsigned char msg[PX_HDR_SIZE + 256];

/* ---- an independent encoder for the wire format ---- */

static void
be16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
}

static void
be32(unsigned char *p, uint32_t v)
{
	be16(p, (uint16_t)(v >> 16));
	be16(p + 2, (uint16_t)v);
}

static void
be64(unsigned char *p, uint64_t v)
{
	be32(p, (uint32_t)(v >> 32));
	be32(p + 4, (uint32_t)v);
}

static uint32_t
rd32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void
raw_hdr(unsigned char *b, uint32_t magic, uint16_t type, uint16_t flags, uint32_t len,
	uint32_t reserved, uint64_t id)
{
	be32(b, magic);
	be16(b + 4, type);
	be16(b + 6, flags);
	be32(b + 8, len);
	be32(b + 12, reserved);
	be64(b + 16, id);
}

static int
decode(uint16_t type, uint16_t flags, uint32_t len, uint32_t max_data)
{
	struct px_msg m;

	raw_hdr(msg, PX_MAGIC, type, flags, len, 0, 0);
	return px_hdr_decode(msg, max_data, &m, NULL, 0);
}

struct fixed {
	uint16_t type;
	uint32_t len;
};

/* Every fixed-size type with its size, written from the brief, not px.c. */
static const struct fixed fixed_types[] = {
	{ PX_HELLO, HELLO_LEN },  { PX_CHALLENGE, 32 }, { PX_AUTH, 32 },
	{ PX_AUTH_OK, 0 },        { PX_STATE, 88 },     { PX_BITMAP_DONE, 0 },
	{ PX_PING, 0 },           { PX_PING_ACK, 0 },   { PX_SYNC_DONE, 88 },
	{ PX_DISCONNECT, 0 },     { PX_WRITE_ACK, 8 },  { PX_RECV_ACK, 0 },
	{ PX_FLUSH, 0 },          { PX_FLUSH_ACK, 8 },  { PX_RS_ACK, 8 },
	{ PX_TRIM, 16 },          { PX_CSUM_REQ, 16 },  { PX_CSUM, 48 },
	{ PX_OOS, 16 },
};

/* ---- header ---- */

static void
test_px_hdr_round_trip(void)
{
	unsigned char b[PX_HDR_SIZE];
	struct px_msg m;

	px_hdr_encode(b, PX_WRITE, PX_F_FUA, 16 + 4096, 0x0102030405060708ull);
	CU_ASSERT(memcmp(b, "BMX1", 4) == 0);
	CU_ASSERT_EQUAL(b[5], PX_WRITE);
	CU_ASSERT_EQUAL(b[7], PX_F_FUA);
	CU_ASSERT_EQUAL(rd32(b + 8), 16 + 4096);
	CU_ASSERT_EQUAL(rd32(b + 12), 0);
	CU_ASSERT_EQUAL(b[16], 0x01);
	CU_ASSERT_EQUAL(b[23], 0x08);
	CU_ASSERT_EQUAL(px_hdr_decode(b, MAX_DATA, &m, NULL, 0), 0);
	CU_ASSERT_EQUAL(m.type, PX_WRITE);
	CU_ASSERT_EQUAL(m.flags, PX_F_FUA);
	CU_ASSERT_EQUAL(m.len, 16 + 4096);
	CU_ASSERT_EQUAL(m.id, 0x0102030405060708ull);
	for (size_t i = 0; i < ARRAY_SIZE(fixed_types); i++) {
		px_hdr_encode(b, fixed_types[i].type, 0, fixed_types[i].len, i);
		CU_ASSERT_EQUAL(px_hdr_decode(b, 0, &m, NULL, 0), 0);
		CU_ASSERT_EQUAL(m.type, fixed_types[i].type);
		CU_ASSERT_EQUAL(m.len, fixed_types[i].len);
		CU_ASSERT_EQUAL(m.id, i);
	}
}

static void
test_px_hdr_bad_magic(void)
{
	char why[128] = "";
	struct px_msg m;

	raw_hdr(msg, 0x474554u /* "\0GET" */, PX_PING, 0, 0, 0, 0);
	CU_ASSERT_EQUAL(px_hdr_decode(msg, 0, &m, why, sizeof(why)), -EPROTO);
	CU_ASSERT(strstr(why, "magic") != NULL);
	raw_hdr(msg, PX_MAGIC ^ 1, PX_PING, 0, 0, 0, 0);
	CU_ASSERT_EQUAL(px_hdr_decode(msg, 0, &m, NULL, 0), -EPROTO);
}

static void
test_px_hdr_reserved(void)
{
	char why[128] = "";
	struct px_msg m;

	raw_hdr(msg, PX_MAGIC, PX_PING, 0, 0, 1u << 31, 0);
	CU_ASSERT_EQUAL(px_hdr_decode(msg, 0, &m, why, sizeof(why)), -EPROTO);
	CU_ASSERT(strstr(why, "reserved") != NULL);
}

static void
test_px_hdr_unknown_type(void)
{
	static const uint16_t bad[] = { 0, 5, 15, 23, 31, PX_TYPE_MAX, 100, 0xffff };
	char why[128] = "";
	struct px_msg m;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		CU_ASSERT_EQUAL(decode(bad[i], 0, 0, MAX_DATA), -EPROTO);
	raw_hdr(msg, PX_MAGIC, 99, 0, 0, 0, 0);
	CU_ASSERT_EQUAL(px_hdr_decode(msg, 0, &m, why, sizeof(why)), -EPROTO);
	CU_ASSERT(strstr(why, "99") != NULL);
	CU_ASSERT_STRING_EQUAL(px_type_name(99), "UNKNOWN");
	CU_ASSERT_EQUAL(px_max_len(99, MAX_DATA), 0);
}

/* READ_REQ is a bare range; READ_DATA is a status, then at most max_data
 * bytes of data (the link checks the exact length against its request). */
static void
test_px_read_lengths(void)
{
	CU_ASSERT_EQUAL(decode(PX_READ_REQ, 0, sizeof(struct px_io), MAX_DATA), 0);
	CU_ASSERT_EQUAL(decode(PX_READ_REQ, 0, sizeof(struct px_io) + 1, MAX_DATA), -EMSGSIZE);
	CU_ASSERT_EQUAL(decode(PX_READ_REQ, PX_F_FUA, sizeof(struct px_io), MAX_DATA), -EPROTO);
	CU_ASSERT_EQUAL(decode(PX_READ_DATA, 0, sizeof(struct px_ack), MAX_DATA), 0);
	CU_ASSERT_EQUAL(decode(PX_READ_DATA, 0, sizeof(struct px_ack) + MAX_DATA, MAX_DATA), 0);
	CU_ASSERT_EQUAL(decode(PX_READ_DATA, 0, sizeof(struct px_ack) - 1, MAX_DATA), -EMSGSIZE);
	CU_ASSERT_EQUAL(decode(PX_READ_DATA, 0, sizeof(struct px_ack) + MAX_DATA + 1, MAX_DATA),
			-EMSGSIZE);
	CU_ASSERT_EQUAL(px_max_len(PX_READ_DATA, MAX_DATA), sizeof(struct px_ack) + MAX_DATA);
	CU_ASSERT_STRING_EQUAL(px_type_name(PX_READ_DATA), "READ_DATA");
}

static void
test_px_hdr_flags(void)
{
	CU_ASSERT_EQUAL(decode(PX_WRITE, PX_F_FUA, 16, MAX_DATA), 0);
	CU_ASSERT_EQUAL(decode(PX_WRITE, PX_F_ZERO, 16, MAX_DATA), -EPROTO);
	CU_ASSERT_EQUAL(decode(PX_WRITE, PX_F_NO_HOLE, 16, MAX_DATA), -EPROTO);
	CU_ASSERT_EQUAL(decode(PX_TRIM, PX_F_FUA | PX_F_NO_HOLE | PX_F_ZERO, 16, 0), 0);
	CU_ASSERT_EQUAL(decode(PX_TRIM, PX_F_ZERO, 16, 0), 0);
	CU_ASSERT_EQUAL(decode(PX_TRIM, 1u << 3, 16, 0), -EPROTO);
	CU_ASSERT_EQUAL(decode(PX_TRIM, 0x8000, 16, 0), -EPROTO);
	CU_ASSERT_EQUAL(decode(PX_RS_DATA, PX_F_FUA, 16, MAX_DATA), 0);
	CU_ASSERT_EQUAL(decode(PX_RS_DATA, PX_F_ZERO, 16, MAX_DATA), -EPROTO);
	for (size_t i = 0; i < ARRAY_SIZE(fixed_types); i++) {
		if (fixed_types[i].type == PX_TRIM)
			continue;
		CU_ASSERT_EQUAL(decode(fixed_types[i].type, PX_F_FUA, fixed_types[i].len, 0),
				-EPROTO);
	}
}

static void
test_px_hdr_oversize(void)
{
	char why[128] = "";
	struct px_msg m;

	for (size_t i = 0; i < ARRAY_SIZE(fixed_types); i++) {
		CU_ASSERT_EQUAL(decode(fixed_types[i].type, 0, fixed_types[i].len + 1,
				       PX_MAX_DATA), -EMSGSIZE);
		CU_ASSERT_EQUAL(decode(fixed_types[i].type, 0, UINT32_MAX, PX_MAX_DATA),
				-EMSGSIZE);
	}
	CU_ASSERT_EQUAL(decode(PX_WRITE, 0, 16 + MAX_DATA, MAX_DATA), 0);
	CU_ASSERT_EQUAL(decode(PX_WRITE, 0, 16 + MAX_DATA + 1, MAX_DATA), -EMSGSIZE);
	CU_ASSERT_EQUAL(decode(PX_RS_DATA, 0, 16 + MAX_DATA, MAX_DATA), 0);
	CU_ASSERT_EQUAL(decode(PX_RS_DATA, 0, 16 + MAX_DATA + 1, MAX_DATA), -EMSGSIZE);
	/* Data types with max_data 0 (as during the handshake) carry no data. */
	CU_ASSERT_EQUAL(decode(PX_WRITE, 0, 17, 0), -EMSGSIZE);
	/* max_data is clamped to the hard ceiling. */
	CU_ASSERT_EQUAL(decode(PX_WRITE, 0, 16 + PX_MAX_DATA, UINT32_MAX), 0);
	CU_ASSERT_EQUAL(decode(PX_WRITE, 0, 16 + PX_MAX_DATA + 1, UINT32_MAX), -EMSGSIZE);
	CU_ASSERT_EQUAL(decode(PX_WRITE, 0, UINT32_MAX, UINT32_MAX), -EMSGSIZE);
	CU_ASSERT_EQUAL(decode(PX_BITMAP, 0, 8 + PX_BITMAP_CHUNK, 0), 0);
	CU_ASSERT_EQUAL(decode(PX_BITMAP, 0, 8 + PX_BITMAP_CHUNK + 1, PX_MAX_DATA), -EMSGSIZE);
	raw_hdr(msg, PX_MAGIC, PX_HELLO, 0, 0x7fffffff, 0, 0);
	CU_ASSERT_EQUAL(px_hdr_decode(msg, 0, &m, why, sizeof(why)), -EMSGSIZE);
	CU_ASSERT(strstr(why, "HELLO") != NULL);
}

static void
test_px_hdr_fixed_size(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(fixed_types); i++) {
		CU_ASSERT_EQUAL(decode(fixed_types[i].type, 0, fixed_types[i].len, 0), 0);
		if (fixed_types[i].len > 0)
			CU_ASSERT_EQUAL(decode(fixed_types[i].type, 0, fixed_types[i].len - 1,
					       PX_MAX_DATA), -EMSGSIZE);
	}
	/* Types with a range still need their leading struct. */
	CU_ASSERT_EQUAL(decode(PX_WRITE, 0, 15, MAX_DATA), -EMSGSIZE);
	CU_ASSERT_EQUAL(decode(PX_WRITE, 0, 0, MAX_DATA), -EMSGSIZE);
	CU_ASSERT_EQUAL(decode(PX_RS_DATA, 0, 15, MAX_DATA), -EMSGSIZE);
	CU_ASSERT_EQUAL(decode(PX_BITMAP, 0, 7, 0), -EMSGSIZE);
	CU_ASSERT_EQUAL(decode(PX_BITMAP, 0, 8, 0), 0);
}

static void
test_px_max_len(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(fixed_types); i++)
		CU_ASSERT_EQUAL(px_max_len(fixed_types[i].type, MAX_DATA), fixed_types[i].len);
	CU_ASSERT_EQUAL(px_max_len(PX_WRITE, MAX_DATA), 16 + MAX_DATA);
	CU_ASSERT_EQUAL(px_max_len(PX_RS_DATA, 4096), 16 + 4096);
	CU_ASSERT_EQUAL(px_max_len(PX_WRITE, UINT32_MAX), 16 + PX_MAX_DATA);
	CU_ASSERT_EQUAL(px_max_len(PX_BITMAP, 0), 8 + PX_BITMAP_CHUNK);
}

static void
test_px_type_name(void)
{
	CU_ASSERT_STRING_EQUAL(px_type_name(PX_HELLO), "HELLO");
	CU_ASSERT_STRING_EQUAL(px_type_name(PX_WRITE_ACK), "WRITE_ACK");
	CU_ASSERT_STRING_EQUAL(px_type_name(PX_OOS), "OOS");
	CU_ASSERT_STRING_EQUAL(px_type_name(0), "UNKNOWN");
	CU_ASSERT_STRING_EQUAL(px_type_name(PX_TYPE_MAX), "UNKNOWN");
	for (uint16_t t = 1; t < PX_TYPE_MAX; t++)
		if (px_max_len(t, MAX_DATA) || decode(t, 0, 0, 0) == 0)
			CU_ASSERT_STRING_NOT_EQUAL(px_type_name(t), "UNKNOWN");
}

/* ---- fixed payloads ---- */

static void
test_px_io_round_trip(void)
{
	unsigned char b[16];
	struct px_io io;

	px_io_encode(b, 0x123456789000ull, 65536);
	CU_ASSERT_EQUAL(b[0], 0x00);
	CU_ASSERT_EQUAL(b[2], 0x12);
	CU_ASSERT_EQUAL(rd32(b + 8), 65536);
	CU_ASSERT_EQUAL(rd32(b + 12), 0);
	CU_ASSERT_EQUAL(px_io_decode(b, 16, &io), 0);
	CU_ASSERT_EQUAL(io.offset, 0x123456789000ull);
	CU_ASSERT_EQUAL(io.length, 65536);
}

static void
test_px_io_rejects(void)
{
	unsigned char b[32];
	struct px_io io;

	px_io_encode(b, 4096, 4096);
	CU_ASSERT_EQUAL(px_io_decode(b, 15, &io), -EPROTO);
	CU_ASSERT_EQUAL(px_io_decode(b, 17, &io), -EPROTO);
	b[15] = 1;
	CU_ASSERT_EQUAL(px_io_decode(b, 16, &io), -EPROTO);
	px_io_encode(b, UINT64_MAX - 100, 4096);
	CU_ASSERT_EQUAL(px_io_decode(b, 16, &io), -EPROTO);
}

static void
test_px_data_decode(void)
{
	unsigned char b[16 + 512];
	struct px_io io;

	px_io_encode(b, 8192, 512);
	CU_ASSERT_EQUAL(px_data_decode(b, sizeof(b), &io), 0);
	CU_ASSERT_EQUAL(io.offset, 8192);
	CU_ASSERT_EQUAL(io.length, 512);
	CU_ASSERT_EQUAL(px_data_decode(b, sizeof(b) - 1, &io), -EPROTO);
	CU_ASSERT_EQUAL(px_data_decode(b, 15, &io), -EPROTO);
	px_io_encode(b, 8192, 0);
	CU_ASSERT_EQUAL(px_data_decode(b, 16, &io), 0);
}

static void
test_px_ack_round_trip(void)
{
	unsigned char b[8];
	struct px_ack a;

	px_ack_encode(b, -EIO);
	CU_ASSERT_EQUAL(rd32(b), (uint32_t)-EIO);
	CU_ASSERT_EQUAL(px_ack_decode(b, 8, &a), 0);
	CU_ASSERT_EQUAL(a.status, -EIO);
	px_ack_encode(b, 0);
	CU_ASSERT_EQUAL(px_ack_decode(b, 8, &a), 0);
	CU_ASSERT_EQUAL(a.status, 0);
}

static void
test_px_ack_rejects(void)
{
	unsigned char b[8];
	struct px_ack a;

	px_ack_encode(b, 0);
	CU_ASSERT_EQUAL(px_ack_decode(b, 7, &a), -EPROTO);
	CU_ASSERT_EQUAL(px_ack_decode(b, 9, &a), -EPROTO);
	b[4] = 1;
	CU_ASSERT_EQUAL(px_ack_decode(b, 8, &a), -EPROTO);
	px_ack_encode(b, 5);
	CU_ASSERT_EQUAL(px_ack_decode(b, 8, &a), -EPROTO);
	px_ack_encode(b, -100000);
	CU_ASSERT_EQUAL(px_ack_decode(b, 8, &a), -EPROTO);
}

static void
good_state(struct px_state *s)
{
	memset(s, 0, sizeof(*s));
	s->role = 1;
	s->disk = 2;
	s->flags = 0xa5;
	s->data_size = 1ull << 30;
	s->granularity = 4096;
	s->gen_current = 0x1111111111111111ull;
	s->gen_bitmap = 0x2222;
	for (int i = 0; i < PX_HISTORY; i++)
		s->gen_history[i] = 0x3300u + (unsigned)i;
	s->oos_bits = 77;
	s->node_uuid = 0xdeadbeefcafef00dull;
}

static void
test_px_state_round_trip(void)
{
	unsigned char b[88];
	struct px_state in, out;

	good_state(&in);
	px_state_encode(b, &in);
	CU_ASSERT_EQUAL(b[0], 1);
	CU_ASSERT_EQUAL(b[1], 2);
	CU_ASSERT_EQUAL(rd32(b + 16), 4096);
	CU_ASSERT_EQUAL(rd32(b + 84), 0xcafef00du);
	memset(&out, 0xff, sizeof(out));
	CU_ASSERT_EQUAL(px_state_decode(b, 88, &out), 0);
	CU_ASSERT(memcmp(&in, &out, sizeof(in)) == 0);
}

static int
state_with(void (*brk)(struct px_state *))
{
	unsigned char b[88];
	struct px_state s;

	good_state(&s);
	brk(&s);
	px_state_encode(b, &s);
	return px_state_decode(b, 88, &s);
}

static void brk_role(struct px_state *s) { s->role = 2; }
static void brk_disk(struct px_state *s) { s->disk = 5; }
static void brk_gran_small(struct px_state *s) { s->granularity = 2048; }
static void brk_gran_pow2(struct px_state *s) { s->granularity = 12288; }
static void brk_gran_zero(struct px_state *s) { s->granularity = 0; }
static void brk_size_zero(struct px_state *s) { s->data_size = 0; }
static void brk_size_align(struct px_state *s) { s->data_size = (1ull << 30) + 512; }

static void
test_px_state_rejects(void)
{
	void (*brk[])(struct px_state *) = { brk_role, brk_disk, brk_gran_small, brk_gran_pow2,
					     brk_gran_zero, brk_size_zero, brk_size_align };
	unsigned char b[89];
	struct px_state s;

	for (size_t i = 0; i < ARRAY_SIZE(brk); i++)
		CU_ASSERT_EQUAL(state_with(brk[i]), -EPROTO);
	good_state(&s);
	px_state_encode(b, &s);
	CU_ASSERT_EQUAL(px_state_decode(b, 87, &s), -EPROTO);
	CU_ASSERT_EQUAL(px_state_decode(b, 89, &s), -EPROTO);
	b[3] = 1; /* reserved */
	CU_ASSERT_EQUAL(px_state_decode(b, 88, &s), -EPROTO);
	b[3] = 0;
	b[23] = 1; /* reserved2 */
	CU_ASSERT_EQUAL(px_state_decode(b, 88, &s), -EPROTO);
	b[23] = 0;
	CU_ASSERT_EQUAL(px_state_decode(b, 88, &s), 0);
}

static void
test_px_bitmap_csum(void)
{
	unsigned char b[48], sha[32];
	struct px_bitmap bm;
	struct px_csum c;

	px_bitmap_encode(b, 64);
	CU_ASSERT_EQUAL(px_bitmap_decode(b, 8 + 16, &bm), 0);
	CU_ASSERT_EQUAL(bm.first_bit, 64);
	CU_ASSERT_EQUAL(px_bitmap_decode(b, 7, &bm), -EPROTO);
	CU_ASSERT_EQUAL(px_bitmap_decode(b, 8 + PX_BITMAP_CHUNK + 1, &bm), -EPROTO);
	px_bitmap_encode(b, 65);
	CU_ASSERT_EQUAL(px_bitmap_decode(b, 8 + 16, &bm), -EPROTO);
	for (int i = 0; i < 32; i++)
		sha[i] = (unsigned char)i;
	px_csum_encode(b, 4096, 8192, sha);
	CU_ASSERT_EQUAL(px_csum_decode(b, 48, &c), 0);
	CU_ASSERT_EQUAL(c.offset, 4096);
	CU_ASSERT_EQUAL(c.length, 8192);
	CU_ASSERT(memcmp(c.sha256, sha, 32) == 0);
	CU_ASSERT_EQUAL(px_csum_decode(b, 47, &c), -EPROTO);
	b[12] = 1;
	CU_ASSERT_EQUAL(px_csum_decode(b, 48, &c), -EPROTO);
}

/* Every payload decoder checks the length before it reads: a short
 * payload sits in a heap block of exactly its length, so ASan reports any
 * byte read past it.  Found by fuzzing (px_bitmap_decode read its first 8
 * bytes before looking at len). */
typedef int (*decode_fn)(const void *buf, uint32_t len);

static int dec_io(const void *b, uint32_t n) { struct px_io o; return px_io_decode(b, n, &o); }
static int dec_data(const void *b, uint32_t n) { struct px_io o; return px_data_decode(b, n, &o); }
static int dec_ack(const void *b, uint32_t n) { struct px_ack o; return px_ack_decode(b, n, &o); }
static int dec_state(const void *b, uint32_t n) { struct px_state o; return px_state_decode(b, n, &o); }
static int dec_bitmap(const void *b, uint32_t n) { struct px_bitmap o; return px_bitmap_decode(b, n, &o); }
static int dec_csum(const void *b, uint32_t n) { struct px_csum o; return px_csum_decode(b, n, &o); }

static void
short_payloads(decode_fn fn, uint32_t need)
{
	for (uint32_t len = 0; len < need; len++) {
		unsigned char *b = malloc(len ? len : 1);

		CU_ASSERT_FATAL(b != NULL);
		memset(b, 0, len);
		/* len 0 may come with no buffer at all. */
		CU_ASSERT_EQUAL(fn(len ? b : NULL, len), -EPROTO);
		free(b);
	}
}

static void
test_px_decode_short(void)
{
	short_payloads(dec_io, sizeof(struct px_io));
	short_payloads(dec_data, sizeof(struct px_io));
	short_payloads(dec_ack, sizeof(struct px_ack));
	short_payloads(dec_state, sizeof(struct px_state));
	short_payloads(dec_bitmap, sizeof(struct px_bitmap));
	short_payloads(dec_csum, sizeof(struct px_csum));
}

/* ---- send / recv ---- */

static void
pair(int sv[2])
{
	struct timeval tv = { .tv_sec = 10 };

	CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	/* A bug shows as a failed test, not a hung run. */
	setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static void
test_px_send_recv(void)
{
	unsigned char out[16 + 4096], in[16 + 4096];
	struct px_msg m;
	int sv[2];

	pair(sv);
	px_io_encode(out, 0, 4096);
	memset(out + 16, 0x5a, 4096);
	CU_ASSERT_EQUAL(px_send(sv[0], PX_WRITE, PX_F_FUA, 42, out, sizeof(out)), 0);
	CU_ASSERT_EQUAL(px_send(sv[0], PX_PING, 0, 0, NULL, 0), 0);
	CU_ASSERT_EQUAL(px_recv(sv[1], &m, in, sizeof(in), 4096, NULL, 0), 0);
	CU_ASSERT_EQUAL(m.type, PX_WRITE);
	CU_ASSERT_EQUAL(m.flags, PX_F_FUA);
	CU_ASSERT_EQUAL(m.id, 42);
	CU_ASSERT_EQUAL(m.len, sizeof(out));
	CU_ASSERT(memcmp(in, out, sizeof(out)) == 0);
	CU_ASSERT_EQUAL(px_recv(sv[1], &m, in, 0, 0, NULL, 0), 0);
	CU_ASSERT_EQUAL(m.type, PX_PING);
	CU_ASSERT_EQUAL(m.len, 0);
	close(sv[0]);
	CU_ASSERT_EQUAL(px_recv(sv[1], &m, in, sizeof(in), 0, NULL, 0), -ECONNRESET);
	close(sv[1]);
}

static void
test_px_recv_rejects(void)
{
	unsigned char buf[64];
	char why[128] = "";
	struct px_msg m;
	int sv[2];

	pair(sv);
	/* Fits the type's limit but not the caller's buffer. */
	memset(buf, 0, sizeof(buf));
	px_io_encode(buf, 0, 48);
	CU_ASSERT_EQUAL(px_send(sv[0], PX_WRITE, 0, 1, buf, 64), 0);
	CU_ASSERT_EQUAL(px_recv(sv[1], &m, buf, 32, 4096, why, sizeof(why)), -EMSGSIZE);
	CU_ASSERT(strstr(why, "WRITE") != NULL);
	close(sv[0]);
	close(sv[1]);

	pair(sv);
	raw_hdr(msg, PX_MAGIC, PX_STATE, 0, 1u << 30, 0, 0);
	CU_ASSERT_EQUAL(write(sv[0], msg, PX_HDR_SIZE), PX_HDR_SIZE);
	CU_ASSERT_EQUAL(px_recv(sv[1], &m, buf, sizeof(buf), 4096, NULL, 0), -EMSGSIZE);
	raw_hdr(msg, PX_MAGIC, 77, 0, 0, 0, 0);
	CU_ASSERT_EQUAL(write(sv[0], msg, PX_HDR_SIZE), PX_HDR_SIZE);
	CU_ASSERT_EQUAL(px_recv(sv[1], &m, buf, sizeof(buf), 4096, NULL, 0), -EPROTO);
	/* EOF inside a payload. */
	raw_hdr(msg, PX_MAGIC, PX_CHALLENGE, 0, 32, 0, 0);
	CU_ASSERT_EQUAL(write(sv[0], msg, PX_HDR_SIZE + 10), PX_HDR_SIZE + 10);
	close(sv[0]);
	CU_ASSERT_EQUAL(px_recv(sv[1], &m, buf, sizeof(buf), 4096, NULL, 0), -ECONNRESET);
	close(sv[1]);
}

static void
test_px_send_refuses_invalid(void)
{
	unsigned char buf[64] = { 0 };

	CU_ASSERT_EQUAL(px_send(-1, PX_PING, 0, 0, buf, 1), -EINVAL);
	CU_ASSERT_EQUAL(px_send(-1, PX_RS_DATA, PX_F_ZERO, 0, buf, 16), -EINVAL);
	CU_ASSERT_EQUAL(px_send(-1, 200, 0, 0, NULL, 0), -EINVAL);
	CU_ASSERT_EQUAL(px_send(-1, PX_WRITE, 0, 0, buf, 8), -EINVAL);
}

/* ---- handshake between two real sides ---- */

struct side {
	int fd;
	struct px_hs_params p;
	struct px_hs_result res;
	char err[256];
	int rc;
	pthread_t th;
};

static void
side_init(struct side *s, int initiator, uint16_t link)
{
	memset(s, 0, sizeof(*s));
	s->p.initiator = initiator;
	s->p.node = initiator ? "alpha" : "beta";
	s->p.peer = initiator ? "beta" : "alpha";
	s->p.resource = "r0";
	s->p.secret = SECRET;
	s->p.secret_len = strlen(SECRET);
	s->p.link = initiator ? link : 0;
	s->p.features = PX_FEAT_CSUM_RESYNC | PX_FEAT_VERIFY;
	s->rc = 1;
}

/* Closes its end as soon as the handshake ends: that close is how the
 * other side learns it was rejected. */
static void *
side_run(void *arg)
{
	struct side *s = arg;

	s->rc = px_handshake(s->fd, &s->p, &s->res, s->err, sizeof(s->err));
	close(s->fd);
	return NULL;
}

static void
side_start(struct side *s, int fd)
{
	s->fd = fd;
	CU_ASSERT_FATAL(pthread_create(&s->th, NULL, side_run, s) == 0);
}

static void
side_join(struct side *s)
{
	pthread_join(s->th, NULL);
}

static void
run_pair(struct side *c, struct side *l)
{
	int sv[2];

	pair(sv);
	side_start(c, sv[0]);
	side_start(l, sv[1]);
	side_join(c);
	side_join(l);
}

static void
test_px_handshake_meta_ok(void)
{
	struct side c, l;

	side_init(&c, 1, PX_LINK_META);
	side_init(&l, 0, 0);
	l.p.features = PX_FEAT_CSUM_RESYNC | (1u << 7);
	run_pair(&c, &l);
	CU_ASSERT_EQUAL(c.rc, 0);
	CU_ASSERT_EQUAL(l.rc, 0);
	CU_ASSERT_EQUAL(c.res.version, PX_VERSION);
	CU_ASSERT_EQUAL(l.res.version, PX_VERSION);
	CU_ASSERT_EQUAL(c.res.features, PX_FEAT_CSUM_RESYNC);
	CU_ASSERT_EQUAL(l.res.features, PX_FEAT_CSUM_RESYNC);
	CU_ASSERT_EQUAL(c.res.link, PX_LINK_META);
	CU_ASSERT_EQUAL(l.res.link, PX_LINK_META);
	CU_ASSERT_EQUAL(l.res.queue, 0);
	/* Both sides derive the same fresh session for the data links. */
	CU_ASSERT(c.res.session != 0);
	CU_ASSERT_EQUAL(c.res.session, l.res.session);
}

static void
test_px_handshake_data_ok(void)
{
	struct side c, l;

	side_init(&c, 1, PX_LINK_DATA);
	side_init(&l, 0, 0);
	c.p.queue = 3;
	c.p.session = 0x1234567890abcdefull;
	l.p.session = 0x1234567890abcdefull;
	c.p.features = 0;
	run_pair(&c, &l);
	CU_ASSERT_EQUAL(c.rc, 0);
	CU_ASSERT_EQUAL(l.rc, 0);
	CU_ASSERT_EQUAL(l.res.link, PX_LINK_DATA);
	CU_ASSERT_EQUAL(l.res.queue, 3);
	CU_ASSERT_EQUAL(l.res.session, 0x1234567890abcdefull);
	CU_ASSERT_EQUAL(c.res.link, PX_LINK_DATA);
	CU_ASSERT_EQUAL(c.res.queue, 3);
	CU_ASSERT_EQUAL(c.res.session, 0x1234567890abcdefull);
	CU_ASSERT_EQUAL(c.res.features, 0);
	CU_ASSERT_EQUAL(l.res.features, 0);
}

static void
test_px_handshake_wrong_secret(void)
{
	struct side c, l;

	side_init(&c, 1, PX_LINK_META);
	side_init(&l, 0, 0);
	l.p.secret = "another secret of some length";
	l.p.secret_len = strlen(l.p.secret);
	run_pair(&c, &l);
	CU_ASSERT_EQUAL(c.rc, -EACCES);
	CU_ASSERT_EQUAL(l.rc, -EACCES);
	CU_ASSERT(strstr(c.err, "peer rejected our authentication (wrong secret?)") != NULL);
	CU_ASSERT(strstr(l.err, "wrong secret") != NULL);
	CU_ASSERT(strstr(l.err, "alpha") != NULL);
}

static void
test_px_handshake_resource_mismatch(void)
{
	struct side c, l;

	side_init(&c, 1, PX_LINK_META);
	side_init(&l, 0, 0);
	l.p.resource = "r1";
	run_pair(&c, &l);
	CU_ASSERT_EQUAL(c.rc, -ENOENT);
	CU_ASSERT_EQUAL(l.rc, -ENOENT);
	CU_ASSERT(strstr(l.err, "r0") != NULL && strstr(l.err, "r1") != NULL);
	CU_ASSERT(strstr(c.err, "r0") != NULL && strstr(c.err, "r1") != NULL);
}

static void
test_px_handshake_wrong_peer_name(void)
{
	struct side c, l;

	/* The connector wants to reach gamma. */
	side_init(&c, 1, PX_LINK_META);
	side_init(&l, 0, 0);
	c.p.peer = "gamma";
	run_pair(&c, &l);
	CU_ASSERT_EQUAL(c.rc, -ENOENT);
	CU_ASSERT_EQUAL(l.rc, -ENOENT);
	CU_ASSERT(strstr(l.err, "gamma") != NULL);

	/* The listener expects someone else. */
	side_init(&c, 1, PX_LINK_META);
	side_init(&l, 0, 0);
	l.p.peer = "delta";
	run_pair(&c, &l);
	CU_ASSERT_EQUAL(c.rc, -ENOENT);
	CU_ASSERT_EQUAL(l.rc, -ENOENT);
	CU_ASSERT(strstr(l.err, "delta") != NULL);
}

static void
test_px_handshake_session_mismatch(void)
{
	struct side c, l;

	side_init(&c, 1, PX_LINK_DATA);
	side_init(&l, 0, 0);
	c.p.session = 7;
	l.p.session = 8;
	run_pair(&c, &l);
	CU_ASSERT_EQUAL(c.rc, -ESTALE);
	CU_ASSERT_EQUAL(l.rc, -ESTALE);

	/* No meta link on the listener yet. */
	side_init(&c, 1, PX_LINK_DATA);
	side_init(&l, 0, 0);
	c.p.session = 7;
	run_pair(&c, &l);
	CU_ASSERT_EQUAL(c.rc, -ESTALE);
	CU_ASSERT_EQUAL(l.rc, -ESTALE);

	/* A meta link ignores the listener's session. */
	side_init(&c, 1, PX_LINK_META);
	side_init(&l, 0, 0);
	l.p.session = 9;
	run_pair(&c, &l);
	CU_ASSERT_EQUAL(c.rc, 0);
	CU_ASSERT_EQUAL(l.rc, 0);
}

static void
test_px_handshake_bad_params(void)
{
	char longname[PX_NAME_MAX + 1];
	struct side c;
	char err[256];

	memset(longname, 'a', PX_NAME_MAX);
	longname[PX_NAME_MAX] = '\0';
	side_init(&c, 1, PX_LINK_META);
	c.p.node = longname;
	CU_ASSERT_EQUAL(px_handshake(-1, &c.p, &c.res, err, sizeof(err)), -EINVAL);
	side_init(&c, 1, PX_LINK_META);
	c.p.resource = "";
	CU_ASSERT_EQUAL(px_handshake(-1, &c.p, &c.res, err, sizeof(err)), -EINVAL);
	side_init(&c, 1, PX_LINK_DATA);
	CU_ASSERT_EQUAL(px_handshake(-1, &c.p, &c.res, err, sizeof(err)), -EINVAL);
	side_init(&c, 1, 9);
	CU_ASSERT_EQUAL(px_handshake(-1, &c.p, &c.res, err, sizeof(err)), -EINVAL);
	side_init(&c, 1, PX_LINK_META);
	c.p.secret_len = 0;
	CU_ASSERT_EQUAL(px_handshake(-1, &c.p, &c.res, NULL, 0), -EINVAL);
}

/* ---- handshake against a fake peer built from the documented format ---- */

struct fake_hello {
	uint32_t vmin, vmax, features;
	uint16_t link, queue;
	uint64_t session;
	const char *node, *peer, *resource;
};

static void
fake_hello_default(struct fake_hello *h, int connector)
{
	memset(h, 0, sizeof(*h));
	h->vmin = 1;
	h->vmax = 1;
	h->features = PX_FEAT_VERIFY;
	h->link = PX_LINK_META;
	h->node = connector ? "alpha" : "beta";
	h->peer = connector ? "beta" : "alpha";
	h->resource = "r0";
}

static void
fake_hello_bytes(unsigned char *b, const struct fake_hello *h)
{
	memset(b, 0, HELLO_LEN);
	be32(b, h->vmin);
	be32(b + 4, h->vmax);
	be32(b + 8, h->features);
	be16(b + 12, h->link);
	be16(b + 14, h->queue);
	be64(b + 16, h->session);
	memcpy(b + 24, h->node, strlen(h->node));
	memcpy(b + 88, h->peer, strlen(h->peer));
	memcpy(b + 152, h->resource, strlen(h->resource));
}

static int
fake_send(int fd, uint16_t type, const void *payload, uint32_t len)
{
	unsigned char b[PX_HDR_SIZE + 512];

	raw_hdr(b, PX_MAGIC, type, 0, len, 0, 0);
	if (len)
		memcpy(b + PX_HDR_SIZE, payload, len);
	return util_write_full(fd, b, PX_HDR_SIZE + len);
}

/* Reads one message and checks its header by hand. */
static int
fake_recv(int fd, uint16_t type, void *payload, uint32_t len)
{
	unsigned char h[PX_HDR_SIZE];

	if (util_read_full(fd, h, sizeof(h)))
		return -1;
	if (rd32(h) != PX_MAGIC || h[4] != 0 || h[5] != type || rd32(h + 8) != len)
		return -1;
	return util_read_full(fd, payload, len) ? -1 : 0;
}

static void
fake_mac(const char *label, const unsigned char *chal, const unsigned char *hc,
	 const unsigned char *hl, unsigned char *out)
{
	unsigned char in[19 + 32 + 2 * HELLO_LEN];
	unsigned int n = 0;

	CU_ASSERT_EQUAL_FATAL(strlen(label), 19);
	memcpy(in, label, 19);
	memcpy(in + 19, chal, 32);
	memcpy(in + 51, hc, HELLO_LEN);
	memcpy(in + 51 + HELLO_LEN, hl, HELLO_LEN);
	HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), in, sizeof(in), out, &n);
	CU_ASSERT_EQUAL(n, 32);
}

static void
test_px_handshake_garbage(void)
{
	static const char junk[] = "GET / HTTP/1.1\r\nHost: beta\r\n\r\n";
	struct side l, c;
	unsigned char hc[HELLO_LEN];
	int sv[2];

	side_init(&l, 0, 0);
	pair(sv);
	side_start(&l, sv[1]);
	CU_ASSERT_EQUAL(util_write_full(sv[0], junk, sizeof(junk)), 0);
	side_join(&l);
	CU_ASSERT_EQUAL(l.rc, -EPROTO);
	CU_ASSERT(strstr(l.err, "magic") != NULL);
	close(sv[0]);

	/* The connector gets garbage instead of the listener's HELLO. */
	side_init(&c, 1, PX_LINK_META);
	pair(sv);
	side_start(&c, sv[0]);
	CU_ASSERT_EQUAL(fake_recv(sv[1], PX_HELLO, hc, HELLO_LEN), 0);
	CU_ASSERT_EQUAL(util_write_full(sv[1], junk, sizeof(junk)), 0);
	side_join(&c);
	CU_ASSERT_EQUAL(c.rc, -EPROTO);
	close(sv[1]);
}

/* A header that claims a huge payload is refused before anything is read
 * or allocated: the fake keeps its end open, so a listener that tried to
 * read the payload would time out instead. */
static void
test_px_handshake_oversized_len(void)
{
	static const uint16_t types[] = { PX_HELLO, PX_WRITE, PX_BITMAP };
	unsigned char h[PX_HDR_SIZE];
	struct timeval tv = { .tv_sec = 0, .tv_usec = 200000 };
	struct side l;
	int sv[2];

	for (size_t i = 0; i < ARRAY_SIZE(types); i++) {
		side_init(&l, 0, 0);
		pair(sv);
		setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		raw_hdr(h, PX_MAGIC, types[i], 0, 0xfffffff0u, 0, 0);
		CU_ASSERT_EQUAL(util_write_full(sv[0], h, sizeof(h)), 0);
		side_start(&l, sv[1]);
		side_join(&l);
		CU_ASSERT_EQUAL(l.rc, -EPROTO);
		close(sv[0]);
	}
}

static void
test_px_handshake_unexpected_type(void)
{
	struct fake_hello fh;
	unsigned char hc[HELLO_LEN], hl[HELLO_LEN], chal[32];
	struct side l;
	int sv[2];

	/* A data-link message before HELLO. */
	side_init(&l, 0, 0);
	pair(sv);
	side_start(&l, sv[1]);
	CU_ASSERT_EQUAL(fake_send(sv[0], PX_PING, NULL, 0), 0);
	side_join(&l);
	CU_ASSERT_EQUAL(l.rc, -EPROTO);
	CU_ASSERT(strstr(l.err, "PING") != NULL);
	close(sv[0]);

	/* AUTH_OK where AUTH belongs: authentication cannot be skipped. */
	side_init(&l, 0, 0);
	pair(sv);
	side_start(&l, sv[1]);
	fake_hello_default(&fh, 1);
	fake_hello_bytes(hc, &fh);
	CU_ASSERT_EQUAL(fake_send(sv[0], PX_HELLO, hc, HELLO_LEN), 0);
	CU_ASSERT_EQUAL(fake_recv(sv[0], PX_HELLO, hl, HELLO_LEN), 0);
	CU_ASSERT_EQUAL(fake_recv(sv[0], PX_CHALLENGE, chal, 32), 0);
	CU_ASSERT_EQUAL(fake_send(sv[0], PX_AUTH_OK, NULL, 0), 0);
	side_join(&l);
	CU_ASSERT_EQUAL(l.rc, -EPROTO);
	close(sv[0]);
}

static void
test_px_handshake_bad_names(void)
{
	struct fake_hello fh;
	unsigned char hc[HELLO_LEN];
	struct side l;
	int sv[2];

	for (int i = 0; i < 3; i++) {
		side_init(&l, 0, 0);
		pair(sv);
		side_start(&l, sv[1]);
		fake_hello_default(&fh, 1);
		fake_hello_bytes(hc, &fh);
		if (i == 0)
			hc[24 + 2] = 0x1b;            /* escape in node name */
		else if (i == 1)
			memset(hc + 152, 'r', 64);    /* resource not terminated */
		else
			hc[88 + 10] = 'x';            /* junk after peer's NUL */
		CU_ASSERT_EQUAL(fake_send(sv[0], PX_HELLO, hc, HELLO_LEN), 0);
		side_join(&l);
		CU_ASSERT_EQUAL(l.rc, -EPROTO);
		CU_ASSERT(strchr(l.err, 0x1b) == NULL);
		CU_ASSERT(strstr(l.err, "rrrr") == NULL);
		close(sv[0]);
	}
}

static void
test_px_handshake_peer_closes(void)
{
	struct fake_hello fh;
	unsigned char hc[HELLO_LEN], hl[HELLO_LEN];
	struct side l, c;
	int sv[2];

	/* Before anything. */
	side_init(&l, 0, 0);
	pair(sv);
	side_start(&l, sv[1]);
	close(sv[0]);
	side_join(&l);
	CU_ASSERT_EQUAL(l.rc, -ECONNRESET);

	/* Half a HELLO. */
	side_init(&l, 0, 0);
	pair(sv);
	side_start(&l, sv[1]);
	fake_hello_default(&fh, 1);
	fake_hello_bytes(hc, &fh);
	raw_hdr(msg, PX_MAGIC, PX_HELLO, 0, HELLO_LEN, 0, 0);
	memcpy(msg + PX_HDR_SIZE, hc, 100);
	CU_ASSERT_EQUAL(util_write_full(sv[0], msg, PX_HDR_SIZE + 100), 0);
	close(sv[0]);
	side_join(&l);
	CU_ASSERT_EQUAL(l.rc, -ECONNRESET);

	/* After HELLO, before AUTH. */
	side_init(&l, 0, 0);
	pair(sv);
	side_start(&l, sv[1]);
	CU_ASSERT_EQUAL(fake_send(sv[0], PX_HELLO, hc, HELLO_LEN), 0);
	CU_ASSERT_EQUAL(fake_recv(sv[0], PX_HELLO, hl, HELLO_LEN), 0);
	close(sv[0]);
	side_join(&l);
	CU_ASSERT_EQUAL(l.rc, -ECONNRESET);

	/* The listener vanishes after reading our HELLO. */
	side_init(&c, 1, PX_LINK_META);
	pair(sv);
	side_start(&c, sv[0]);
	CU_ASSERT_EQUAL(fake_recv(sv[1], PX_HELLO, hc, HELLO_LEN), 0);
	close(sv[1]);
	side_join(&c);
	CU_ASSERT_EQUAL(c.rc, -ECONNRESET);
}

static void
test_px_handshake_timeout(void)
{
	struct timeval tv = { .tv_sec = 0, .tv_usec = 100000 };
	struct side l;
	int sv[2];

	side_init(&l, 0, 0);
	pair(sv);
	setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	side_start(&l, sv[1]);
	side_join(&l);
	CU_ASSERT_EQUAL(l.rc, -ETIMEDOUT);
	close(sv[0]);
}

static void
test_px_handshake_version_mismatch(void)
{
	struct fake_hello fh;
	unsigned char hc[HELLO_LEN], hl[HELLO_LEN];
	struct side l, c;
	int sv[2];

	/* A connector from the future: PX_VERSION + 1 to + 2. */
	side_init(&l, 0, 0);
	pair(sv);
	side_start(&l, sv[1]);
	fake_hello_default(&fh, 1);
	fh.vmin = PX_VERSION + 1;
	fh.vmax = PX_VERSION + 2;
	fake_hello_bytes(hc, &fh);
	CU_ASSERT_EQUAL(fake_send(sv[0], PX_HELLO, hc, HELLO_LEN), 0);
	/* It still gets the listener's HELLO, so it can report the same. */
	CU_ASSERT_EQUAL(fake_recv(sv[0], PX_HELLO, hl, HELLO_LEN), 0);
	CU_ASSERT_EQUAL(rd32(hl), 1);
	CU_ASSERT_EQUAL(rd32(hl + 4), PX_VERSION);
	side_join(&l);
	CU_ASSERT_EQUAL(l.rc, -EPROTONOSUPPORT);
	{
		char want[32];

		snprintf(want, sizeof(want), "%u-%u", PX_VERSION + 1, PX_VERSION + 2);
		CU_ASSERT(strstr(l.err, want) != NULL);
	}
	close(sv[0]);

	/* A listener from the future. */
	side_init(&c, 1, PX_LINK_META);
	pair(sv);
	side_start(&c, sv[0]);
	CU_ASSERT_EQUAL(fake_recv(sv[1], PX_HELLO, hc, HELLO_LEN), 0);
	fake_hello_default(&fh, 0);
	fh.vmin = 5;
	fh.vmax = 9;
	fake_hello_bytes(hl, &fh);
	CU_ASSERT_EQUAL(fake_send(sv[1], PX_HELLO, hl, HELLO_LEN), 0);
	side_join(&c);
	CU_ASSERT_EQUAL(c.rc, -EPROTONOSUPPORT);
	close(sv[1]);

	/* An inverted range is garbage, not a version question. */
	side_init(&l, 0, 0);
	pair(sv);
	side_start(&l, sv[1]);
	fake_hello_default(&fh, 1);
	fh.vmin = 3;
	fh.vmax = 1;
	fake_hello_bytes(hc, &fh);
	CU_ASSERT_EQUAL(fake_send(sv[0], PX_HELLO, hc, HELLO_LEN), 0);
	side_join(&l);
	CU_ASSERT_EQUAL(l.rc, -EPROTO);
	close(sv[0]);
}

/* A whole handshake by the fake connector, which speaks versions 1-4 and
 * computes its MACs from the documented construction: proves px_auth.c
 * matches the documentation, and the agreed version is min(max). */
static void
test_px_handshake_version_agreement(void)
{
	struct fake_hello fh;
	unsigned char hc[HELLO_LEN], hl[HELLO_LEN], chal_l[32], chal_c[32], mac[32], want[32];
	struct side l;
	int sv[2];

	side_init(&l, 0, 0);
	pair(sv);
	side_start(&l, sv[1]);
	fake_hello_default(&fh, 1);
	fh.vmax = 4;
	fake_hello_bytes(hc, &fh);
	CU_ASSERT_EQUAL(fake_send(sv[0], PX_HELLO, hc, HELLO_LEN), 0);
	CU_ASSERT_EQUAL(fake_recv(sv[0], PX_HELLO, hl, HELLO_LEN), 0);
	CU_ASSERT_EQUAL(fake_recv(sv[0], PX_CHALLENGE, chal_l, 32), 0);
	fake_mac("blkmirror v1 client", chal_l, hc, hl, mac);
	CU_ASSERT_EQUAL(fake_send(sv[0], PX_AUTH, mac, 32), 0);
	memset(chal_c, 0x42, sizeof(chal_c));
	CU_ASSERT_EQUAL(fake_send(sv[0], PX_CHALLENGE, chal_c, 32), 0);
	CU_ASSERT_EQUAL(fake_recv(sv[0], PX_AUTH_OK, NULL, 0), 0);
	CU_ASSERT_EQUAL(fake_recv(sv[0], PX_AUTH, mac, 32), 0);
	fake_mac("blkmirror v1 server", chal_c, hc, hl, want);
	CU_ASSERT(memcmp(mac, want, 32) == 0);
	CU_ASSERT_EQUAL(fake_send(sv[0], PX_AUTH_OK, NULL, 0), 0);
	side_join(&l);
	CU_ASSERT_EQUAL(l.rc, 0);
	CU_ASSERT_EQUAL(l.res.version, PX_VERSION);
	CU_ASSERT_EQUAL(l.res.features, PX_FEAT_VERIFY);
	close(sv[0]);
}

/* The connector also refuses a listener that fails its challenge. */
static void
test_px_handshake_listener_wrong_secret(void)
{
	struct fake_hello fh;
	unsigned char hc[HELLO_LEN], hl[HELLO_LEN], chal[32], mac[32];
	struct side c;
	int sv[2];

	side_init(&c, 1, PX_LINK_META);
	pair(sv);
	side_start(&c, sv[0]);
	CU_ASSERT_EQUAL(fake_recv(sv[1], PX_HELLO, hc, HELLO_LEN), 0);
	fake_hello_default(&fh, 0);
	fake_hello_bytes(hl, &fh);
	CU_ASSERT_EQUAL(fake_send(sv[1], PX_HELLO, hl, HELLO_LEN), 0);
	memset(chal, 7, sizeof(chal));
	CU_ASSERT_EQUAL(fake_send(sv[1], PX_CHALLENGE, chal, 32), 0);
	CU_ASSERT_EQUAL(fake_recv(sv[1], PX_AUTH, mac, 32), 0);
	CU_ASSERT_EQUAL(fake_recv(sv[1], PX_CHALLENGE, chal, 32), 0);
	/* Accept the connector without checking, answer with a bad MAC. */
	CU_ASSERT_EQUAL(fake_send(sv[1], PX_AUTH_OK, NULL, 0), 0);
	memset(mac, 0, sizeof(mac));
	CU_ASSERT_EQUAL(fake_send(sv[1], PX_AUTH, mac, 32), 0);
	side_join(&c);
	CU_ASSERT_EQUAL(c.rc, -EACCES);
	/* ...and never sends its AUTH_OK. */
	CU_ASSERT_EQUAL(read(sv[1], msg, sizeof(msg)), 0);
	close(sv[1]);
}

/* ---- secret file ---- */

static char tmpdir[4096];

static void
secret_file(const char *name, const void *data, size_t len, mode_t mode, char *path,
	    size_t plen)
{
	int fd;

	snprintf(path, plen, "%s/%s", tmpdir, name);
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_FATAL(util_write_full(fd, data, len) == 0);
	CU_ASSERT_FATAL(fchmod(fd, mode) == 0);
	close(fd);
}

static void
test_px_load_secret_good(void)
{
	unsigned char buf[4096];
	char path[4200], err[256];
	size_t len = 0;

	secret_file("good", "0123456789abcdef\n", 17, 0600, path, sizeof(path));
	CU_ASSERT_EQUAL(px_load_secret(path, buf, sizeof(buf), &len, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(len, 16);
	CU_ASSERT(memcmp(buf, "0123456789abcdef", 16) == 0);
	secret_file("crlf", "0123456789abcdefXY\r\n", 20, 0400, path, sizeof(path));
	CU_ASSERT_EQUAL(px_load_secret(path, buf, sizeof(buf), &len, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(len, 18);
	/* Binary, no newline, exactly the maximum. */
	memset(buf, 0xee, sizeof(buf));
	secret_file("max", buf, 4096, 0600, path, sizeof(path));
	CU_ASSERT_EQUAL(px_load_secret(path, buf, sizeof(buf), &len, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(len, 4096);
}

static void
test_px_load_secret_too_short(void)
{
	unsigned char buf[64];
	char path[4200], err[256] = "";
	size_t len = 0;

	secret_file("short", "0123456789abcde\n", 16, 0600, path, sizeof(path));
	CU_ASSERT_EQUAL(px_load_secret(path, buf, sizeof(buf), &len, err, sizeof(err)), -EINVAL);
	CU_ASSERT(strstr(err, "16") != NULL);
	secret_file("empty", "", 0, 0600, path, sizeof(path));
	CU_ASSERT_EQUAL(px_load_secret(path, buf, sizeof(buf), &len, err, sizeof(err)), -EINVAL);
}

static void
test_px_load_secret_too_long(void)
{
	static unsigned char big[5000];
	unsigned char buf[32];
	char path[4200], err[256] = "";
	size_t len = 0;

	memset(big, 'k', sizeof(big));
	secret_file("long", big, sizeof(big), 0600, path, sizeof(path));
	CU_ASSERT_EQUAL(px_load_secret(path, big, sizeof(big), &len, err, sizeof(err)), -EFBIG);
	secret_file("long2", big, 4097, 0600, path, sizeof(path));
	CU_ASSERT_EQUAL(px_load_secret(path, big, sizeof(big), &len, err, sizeof(err)), -EFBIG);
	secret_file("cap", big, 40, 0600, path, sizeof(path));
	CU_ASSERT_EQUAL(px_load_secret(path, buf, sizeof(buf), &len, err, sizeof(err)), -ENOBUFS);
}

static void
test_px_load_secret_mode(void)
{
	static const mode_t bad[] = { 0644, 0640, 0604, 0620, 0602, 0610 };
	unsigned char buf[64];
	char path[4200], err[256] = "";
	size_t len = 0;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		secret_file("mode", "0123456789abcdef", 16, bad[i], path, sizeof(path));
		CU_ASSERT_EQUAL(px_load_secret(path, buf, sizeof(buf), &len, err, sizeof(err)),
				-EPERM);
	}
	secret_file("mode", "0123456789abcdef", 16, 0644, path, sizeof(path));
	px_load_secret(path, buf, sizeof(buf), &len, err, sizeof(err));
	CU_ASSERT(strstr(err, "0644") != NULL);
	CU_ASSERT(strstr(err, "chmod 600") != NULL);
}

static void
test_px_load_secret_missing(void)
{
	unsigned char buf[64];
	char path[4200], err[256] = "";
	size_t len = 0;

	snprintf(path, sizeof(path), "%s/does-not-exist", tmpdir);
	CU_ASSERT_EQUAL(px_load_secret(path, buf, sizeof(buf), &len, err, sizeof(err)), -ENOENT);
	CU_ASSERT(strstr(err, "does-not-exist") != NULL);
	CU_ASSERT_EQUAL(px_load_secret(tmpdir, buf, sizeof(buf), &len, err, sizeof(err)),
			-EINVAL);
}

static int
suite_init(void)
{
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

	snprintf(tmpdir, sizeof(tmpdir), "%s/test_px.XXXXXX", dir);
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int
suite_clean(void)
{
	static const char *names[] = { "good", "crlf", "max", "short", "empty", "long",
				       "long2", "cap", "mode" };
	char path[4200];

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
		unlink(path);
	}
	return rmdir(tmpdir);
}

int
main(void)
{
	static const struct cu_test tests[] = {
		{ "test_px_hdr_round_trip", test_px_hdr_round_trip },
		{ "test_px_hdr_bad_magic", test_px_hdr_bad_magic },
		{ "test_px_hdr_reserved", test_px_hdr_reserved },
		{ "test_px_hdr_unknown_type", test_px_hdr_unknown_type },
		{ "test_px_hdr_flags", test_px_hdr_flags },
		{ "test_px_read_lengths", test_px_read_lengths },
		{ "test_px_hdr_oversize", test_px_hdr_oversize },
		{ "test_px_hdr_fixed_size", test_px_hdr_fixed_size },
		{ "test_px_max_len", test_px_max_len },
		{ "test_px_type_name", test_px_type_name },
		{ "test_px_io_round_trip", test_px_io_round_trip },
		{ "test_px_io_rejects", test_px_io_rejects },
		{ "test_px_data_decode", test_px_data_decode },
		{ "test_px_ack_round_trip", test_px_ack_round_trip },
		{ "test_px_ack_rejects", test_px_ack_rejects },
		{ "test_px_state_round_trip", test_px_state_round_trip },
		{ "test_px_state_rejects", test_px_state_rejects },
		{ "test_px_bitmap_csum", test_px_bitmap_csum },
		{ "test_px_decode_short", test_px_decode_short },
		{ "test_px_send_recv", test_px_send_recv },
		{ "test_px_recv_rejects", test_px_recv_rejects },
		{ "test_px_send_refuses_invalid", test_px_send_refuses_invalid },
		{ "test_px_handshake_meta_ok", test_px_handshake_meta_ok },
		{ "test_px_handshake_data_ok", test_px_handshake_data_ok },
		{ "test_px_handshake_wrong_secret", test_px_handshake_wrong_secret },
		{ "test_px_handshake_listener_wrong_secret",
		  test_px_handshake_listener_wrong_secret },
		{ "test_px_handshake_resource_mismatch", test_px_handshake_resource_mismatch },
		{ "test_px_handshake_wrong_peer_name", test_px_handshake_wrong_peer_name },
		{ "test_px_handshake_session_mismatch", test_px_handshake_session_mismatch },
		{ "test_px_handshake_bad_params", test_px_handshake_bad_params },
		{ "test_px_handshake_garbage", test_px_handshake_garbage },
		{ "test_px_handshake_oversized_len", test_px_handshake_oversized_len },
		{ "test_px_handshake_unexpected_type", test_px_handshake_unexpected_type },
		{ "test_px_handshake_bad_names", test_px_handshake_bad_names },
		{ "test_px_handshake_peer_closes", test_px_handshake_peer_closes },
		{ "test_px_handshake_timeout", test_px_handshake_timeout },
		{ "test_px_handshake_version_mismatch", test_px_handshake_version_mismatch },
		{ "test_px_handshake_version_agreement", test_px_handshake_version_agreement },
		{ "test_px_load_secret_good", test_px_load_secret_good },
		{ "test_px_load_secret_too_short", test_px_load_secret_too_short },
		{ "test_px_load_secret_too_long", test_px_load_secret_too_long },
		{ "test_px_load_secret_mode", test_px_load_secret_mode },
		{ "test_px_load_secret_missing", test_px_load_secret_missing },
	};

	/* A side that writes after the other closed must get EPIPE. */
	signal(SIGPIPE, SIG_IGN);
	return cu_run("px", suite_init, suite_clean, tests, sizeof(tests) / sizeof(tests[0]));
}
