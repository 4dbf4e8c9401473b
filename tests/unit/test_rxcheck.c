/* Unit tests for daemon/rxcheck.c: what a data link, the bitmap exchange
 * and the state exchange accept from the peer.  Messages are built with
 * the wire encoders (proto/px.c, tested on their own in test_px). */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "tests/unit/cu_run.h"
#include <CUnit/CUnit.h>

#include "daemon/meta.h"
#include "daemon/rsm.h"
#include "daemon/rxcheck.h"
#include "proto/px.h"

#define MIB (1ull << 20)

static const struct rxc_limits lim = { .size = MIB, .max_data = 65536 };
static unsigned char buf[PX_HDR_SIZE + 128];
static char why[160];

/* A request header (and its px_io) in buf. */
static uint32_t
req(uint16_t type, uint64_t off, uint32_t len, uint32_t data)
{
	px_hdr_encode(buf, type, 0, (uint32_t)sizeof(struct px_io) + data, 7);
	px_io_encode(buf + PX_HDR_SIZE, off, len);
	return PX_HDR_SIZE + (uint32_t)sizeof(struct px_io);
}

static int
check(uint32_t avail, struct rxc_data *d)
{
	why[0] = 0;
	return rxc_data_msg(&lim, buf, avail, d, why, sizeof(why));
}

static void
test_rxc_write_accepted(void)
{
	struct rxc_data d;
	uint32_t n = req(PX_WRITE, MIB - 4096, 4096, 4096);

	CU_ASSERT_EQUAL(check(n - 1, &d), 0);	/* the px_io not all here yet */
	CU_ASSERT_EQUAL(check(n, &d), 1);
	CU_ASSERT_EQUAL(d.fixed, n);
	CU_ASSERT_EQUAL(d.data, 4096);
	CU_ASSERT_EQUAL(d.io.offset, MIB - 4096);
	CU_ASSERT(d.writes);
}

static void
test_rxc_request_ranges_refused(void)
{
	struct rxc_data d;

	/* past the end, straddling it, empty */
	CU_ASSERT_EQUAL(check(req(PX_WRITE, MIB, 512, 512), &d), -EPROTO);
	CU_ASSERT_EQUAL(check(req(PX_TRIM, MIB - 512, 1024, 0), &d), -EPROTO);
	CU_ASSERT_EQUAL(check(req(PX_OOS, 0, 0, 0), &d), -EPROTO);
	CU_ASSERT(strstr(why, "invalid") != NULL);
	/* data that is not the range's length */
	CU_ASSERT_EQUAL(check(req(PX_RS_DATA, 0, 4096, 512), &d), -EPROTO);
	/* a read larger than the buffer it would be read into */
	CU_ASSERT_EQUAL(check(req(PX_CSUM_REQ, 0, 131072, 0), &d), -EPROTO);
	CU_ASSERT_EQUAL(check(req(PX_READ_REQ, 0, 131072, 0), &d), -EPROTO);
	/* a TRIM covers any length on the disk */
	CU_ASSERT_EQUAL(check(req(PX_TRIM, 0, (uint32_t)MIB, 0), &d), 1);
	CU_ASSERT_FALSE(d.data);
}

static void
test_rxc_meta_types_refused_on_data_link(void)
{
	struct rxc_data d;

	px_hdr_encode(buf, PX_PING, 0, 0, 0);
	CU_ASSERT_EQUAL(check(PX_HDR_SIZE, &d), -EPROTO);
	CU_ASSERT(strstr(why, "PING") != NULL);
}

static void
test_rxc_ack_must_match_request(void)
{
	struct rxc_data d;
	uint8_t sha[32] = { 1 };

	px_hdr_encode(buf, PX_CSUM, 0, sizeof(struct px_csum), 3);
	px_csum_encode(buf + PX_HDR_SIZE, 8192, 4096, sha);
	CU_ASSERT_EQUAL(check(PX_HDR_SIZE + sizeof(struct px_csum), &d), 1);
	CU_ASSERT_EQUAL(rxc_ack_check(&d, PX_CSUM_REQ, 8192, 4096, why, sizeof(why)), 0);
	CU_ASSERT_EQUAL(rxc_ack_check(&d, PX_CSUM_REQ, 0, 4096, why, sizeof(why)), -EPROTO);
	CU_ASSERT_EQUAL(rxc_ack_check(&d, PX_WRITE, 8192, 4096, why, sizeof(why)), -EPROTO);

	px_hdr_encode(buf, PX_READ_DATA, 0, sizeof(struct px_ack) + 512, 3);
	px_ack_encode(buf + PX_HDR_SIZE, 0);
	CU_ASSERT_EQUAL(check(PX_HDR_SIZE + sizeof(struct px_ack), &d), 1);
	CU_ASSERT_EQUAL(d.data, 512);
	CU_ASSERT_EQUAL(rxc_ack_check(&d, PX_READ_REQ, 0, 512, why, sizeof(why)), 0);
	CU_ASSERT_EQUAL(rxc_ack_check(&d, PX_READ_REQ, 0, 1024, why, sizeof(why)), -EPROTO);
	/* an error carries no data */
	px_ack_encode(buf + PX_HDR_SIZE, -EIO);
	CU_ASSERT_EQUAL(check(PX_HDR_SIZE + sizeof(struct px_ack), &d), -EPROTO);
}

/* A BITMAP message of n bytes at byte `at`, in buf. */
static struct px_msg
chunk(uint64_t at, uint32_t n)
{
	struct px_msg m = { .type = PX_BITMAP, .len = (uint32_t)sizeof(struct px_bitmap) + n };

	px_bitmap_encode(buf, at * 8);
	memset(buf + sizeof(struct px_bitmap), 0xff, n);
	return m;
}

static void
test_rxc_bitmap_in_order(void)
{
	struct px_msg done = { .type = PX_BITMAP_DONE };
	struct rxc_bitmap b;
	struct px_msg m;
	uint64_t off;
	uint32_t n;

	rxc_bitmap_init(&b, 100, 40);
	m = chunk(0, 40);
	CU_ASSERT_EQUAL(rxc_bitmap_step(&b, &m, buf, &off, &n, why, sizeof(why)), 1);
	CU_ASSERT(off == 0 && n == 40);
	m = chunk(40, 40);
	CU_ASSERT_EQUAL(rxc_bitmap_step(&b, &m, buf, &off, &n, why, sizeof(why)), 1);
	m = chunk(80, 20);
	CU_ASSERT_EQUAL(rxc_bitmap_step(&b, &m, buf, &off, &n, why, sizeof(why)), 1);
	CU_ASSERT(off == 80 && n == 20);
	CU_ASSERT_EQUAL(rxc_bitmap_step(&b, &done, buf, &off, &n, why, sizeof(why)), 0);
	/* nothing after the end */
	CU_ASSERT_EQUAL(rxc_bitmap_step(&b, &done, buf, &off, &n, why, sizeof(why)), -EPROTO);
}

/* What peer_recv_bitmap() took before rxc_bitmap_step: any chunk inside the
 * bitmap, any number of times, and a BITMAP_DONE whenever. */
static void
test_rxc_bitmap_refuses_duplicate_gap_early_done(void)
{
	struct px_msg done = { .type = PX_BITMAP_DONE }, ping = { .type = PX_PING };
	struct rxc_bitmap b;
	struct px_msg m;
	uint64_t off;
	uint32_t n;

	rxc_bitmap_init(&b, 100, 40);
	m = chunk(0, 40);
	CU_ASSERT_EQUAL(rxc_bitmap_step(&b, &m, buf, &off, &n, why, sizeof(why)), 1);
	CU_ASSERT_EQUAL(rxc_bitmap_step(&b, &m, buf, &off, &n, why, sizeof(why)), -EPROTO);
	m = chunk(80, 20);	/* a gap */
	CU_ASSERT_EQUAL(rxc_bitmap_step(&b, &m, buf, &off, &n, why, sizeof(why)), -EPROTO);
	m = chunk(40, 8);	/* short of a whole chunk */
	CU_ASSERT_EQUAL(rxc_bitmap_step(&b, &m, buf, &off, &n, why, sizeof(why)), -EPROTO);
	m = chunk(40, 0);	/* empty: would never end */
	CU_ASSERT_EQUAL(rxc_bitmap_step(&b, &m, buf, &off, &n, why, sizeof(why)), -EPROTO);
	CU_ASSERT_EQUAL(rxc_bitmap_step(&b, &done, buf, &off, &n, why, sizeof(why)), -EPROTO);
	CU_ASSERT(strstr(why, "40 of 100") != NULL);
	CU_ASSERT_EQUAL(rxc_bitmap_step(&b, &ping, buf, &off, &n, why, sizeof(why)), -EPROTO);
	/* past the end */
	rxc_bitmap_init(&b, 10, 40);
	m = chunk(0, 11);
	CU_ASSERT_EQUAL(rxc_bitmap_step(&b, &m, buf, &off, &n, why, sizeof(why)), -EPROTO);
}

static struct px_state
st(uint8_t role, uint8_t disk, uint64_t cur, uint64_t uuid)
{
	struct px_state s = { .role = role, .disk = disk, .flags = META_F_CONSISTENT |
			      META_F_UPTODATE, .data_size = MIB, .granularity = 4096,
			      .gen_current = cur, .node_uuid = uuid };
	return s;
}

static void
test_rxc_state_fields(void)
{
	struct px_state mine = st(0, RSM_D_UPTODATE, 0x1234, 1), t;

	t = st(0, RSM_D_UPTODATE, 0x1234, 2);
	CU_ASSERT_EQUAL(rxc_state(&mine, &t, why, sizeof(why)), 0);
	t.gen_current = 0;	/* SYNC_DONE: the target would store it */
	CU_ASSERT_EQUAL(rxc_state(&mine, &t, why, sizeof(why)), -EPROTO);
	t.gen_current = GEN_JUST_CREATED;
	CU_ASSERT_EQUAL(rxc_state(&mine, &t, why, sizeof(why)), 0);
	t.gen_history[2] = 9;	/* reserved, never drawn */
	CU_ASSERT_EQUAL(rxc_state(&mine, &t, why, sizeof(why)), -EPROTO);
	t = st(0, RSM_D_UPTODATE, 0x1234, 2);
	t.flags |= 1u << 9;	/* past META_F_VERIFY_DIFF */
	CU_ASSERT_EQUAL(rxc_state(&mine, &t, why, sizeof(why)), -EPROTO);
	t = st(0, RSM_D_UPTODATE, 0x1234, 2);
	t.oos_bits = MIB / 4096 + 1;
	CU_ASSERT_EQUAL(rxc_state(&mine, &t, why, sizeof(why)), -EPROTO);
	t.oos_bits = MIB / 4096;
	CU_ASSERT_EQUAL(rxc_state(&mine, &t, why, sizeof(why)), 0);
	t.oos_bits = 0;
	t.granularity = 8192;
	CU_ASSERT_EQUAL(rxc_state(&mine, &t, why, sizeof(why)), -EMEDIUMTYPE);
	CU_ASSERT(strstr(why, "geometry") != NULL);
}

static void
test_rxc_decide_mirrors(void)
{
	struct px_state a = st(1, RSM_D_UPTODATE, 0x5555, 1), b = st(0, RSM_D_UPTODATE, 0x4444, 2);
	struct rxc_decision va, vb;

	a.gen_bitmap = 0x4444;
	a.gen_history[0] = 0x4444;
	a.oos_bits = 3;
	CU_ASSERT_EQUAL(rxc_decide(&a, &b, GEN_SB_DISCONNECT, &va), 0);
	CU_ASSERT_EQUAL(rxc_decide(&b, &a, GEN_SB_DISCONNECT, &vb), 0);
	CU_ASSERT_EQUAL(va.d, GEN_SOURCE_BITMAP);
	CU_ASSERT_EQUAL(vb.d, GEN_TARGET_BITMAP);
	/* both primary */
	b.role = 1;
	CU_ASSERT_EQUAL(rxc_decide(&a, &b, GEN_SB_DISCONNECT, &va), -EUCLEAN);
	CU_ASSERT_EQUAL(rxc_decide(&b, &a, GEN_SB_DISCONNECT, &vb), -EUCLEAN);
	/* a's discard-my-data is the flag it sent, on both sides: the newer
	 * data becomes the target */
	b = st(0, RSM_D_UPTODATE, 0x4444, 2);
	a.role = 0;
	a.flags |= META_F_DISCARD_REQUESTED;
	CU_ASSERT_EQUAL(rxc_decide(&a, &b, GEN_SB_DISCONNECT, &va), 0);
	CU_ASSERT_EQUAL(rxc_decide(&b, &a, GEN_SB_DISCONNECT, &vb), 0);
	CU_ASSERT(va.d == GEN_TARGET_BITMAP || va.d == GEN_TARGET_FULL);
	CU_ASSERT_EQUAL(vb.d, va.d == GEN_TARGET_FULL ? GEN_SOURCE_FULL : GEN_SOURCE_BITMAP);
	/* a detached disk: no resync, said in the note */
	b.disk = RSM_D_DISKLESS;
	CU_ASSERT_EQUAL(rxc_decide(&a, &b, GEN_SB_DISCONNECT, &va), 0);
	CU_ASSERT_EQUAL(va.d, GEN_NO_SYNC);
	CU_ASSERT(strstr(va.note, "detached") != NULL);
}

int
main(void)
{
	static const struct cu_test tests[] = {
		{ "test_rxc_write_accepted", test_rxc_write_accepted },
		{ "test_rxc_request_ranges_refused", test_rxc_request_ranges_refused },
		{ "test_rxc_meta_types_refused_on_data_link",
		  test_rxc_meta_types_refused_on_data_link },
		{ "test_rxc_ack_must_match_request", test_rxc_ack_must_match_request },
		{ "test_rxc_bitmap_in_order", test_rxc_bitmap_in_order },
		{ "test_rxc_bitmap_refuses_duplicate_gap_early_done",
		  test_rxc_bitmap_refuses_duplicate_gap_early_done },
		{ "test_rxc_state_fields", test_rxc_state_fields },
		{ "test_rxc_decide_mirrors", test_rxc_decide_mirrors },
	};

	return cu_run("rxcheck", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
