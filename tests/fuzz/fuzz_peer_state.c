/* libFuzzer target: the state exchange (rxc_state and rxc_decide in
 * daemon/rxcheck.c), what peer_decide() and peer_established()
 * (daemon/peer.c) do with the peer's STATE or SYNC_DONE.
 *
 * Input: byte 0 the mode (bit 0) and the split-brain policy (bits 1..2);
 * then two states, this node's and the peer's: raw (mode 0: 88 bytes each,
 * through px_state_decode, as they come off the wire) or compact (mode 1:
 * 16 bytes each mapped onto small sets of values -- a few generation ids,
 * sizes and node ids -- so that equal generations and histories that share
 * ids, where the decisions are made, are common).
 *
 * Properties: a state rxc_state accepts has every field in the documented
 * range and this node's geometry; each node decides on both states with
 * the arguments swapped (as the two nodes do), and whenever both states
 * are ones a node can send the two verdicts mirror each other: the same
 * refusal, or SOURCE on one side where the other has TARGET (of the same
 * kind) and NO_SYNC on both.  A verdict to go on never makes a primary a
 * target, a node whose disk is not up to date a source, nor moves data to
 * or from a detached disk. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/meta.h"
#include "daemon/rsm.h"
#include "daemon/rxcheck.h"
#include "proto/px.h"
#include "tests/fuzz/fuzz.h"

#define STATE_RAW     sizeof(struct px_state)
#define STATE_COMPACT 16

static const uint64_t pool[8] = { 0, GEN_JUST_CREATED, 0x1111111111111111ull,
				  0x2222222222222222ull, 0x3333333333333333ull,
				  0x4444444444444444ull, 7, 0xffffffffffffffffull };

static uint64_t
gen_of(uint8_t b)
{
	return pool[b % 8];
}

/* 16 bytes: role/disk, flags, size, granularity, current, bitmap,
 * history x4, oos_bits (2), node_uuid, spare. */
static void
compact(const uint8_t *b, struct px_state *s)
{
	memset(s, 0, sizeof(*s));
	s->role = b[0] & 1 ? 1 : (b[0] & 0x80 ? b[0] >> 4 : 0);	/* now and then out of range */
	s->disk = (b[0] >> 1) % 6;
	s->flags = b[1] | (b[15] & 1 ? (uint32_t)b[15] << 8 : 0);
	s->data_size = (uint64_t)(b[2] % 8 + 1) * 4096 * (b[15] & 2 ? 1000 : 1);
	s->granularity = 4096u << (b[3] % 4);
	s->gen_current = gen_of(b[4]);
	s->gen_bitmap = gen_of(b[5]);
	for (unsigned i = 0; i < PX_HISTORY; i++)
		s->gen_history[i] = gen_of(b[6 + i]);
	s->oos_bits = (uint64_t)b[10] | (uint64_t)b[11] << 8;
	s->node_uuid = b[12] % 4 + 100;
}

/* 0 (none), "just created", or a drawn one (meta_new_gen: never below 16). */
static int
gen_ok(uint64_t g)
{
	return g == 0 || g == GEN_JUST_CREATED || g >= 16;
}

/* The documented ranges (blkmirror-protocol(7), VALIDATION), written out
 * again here rather than taken from rxcheck.c. */
static int
state_ok(const struct px_state *s, const struct px_state *mine)
{
	uint64_t nbits = (s->data_size + s->granularity - 1) / s->granularity;
	int gens = s->gen_current != 0 && gen_ok(s->gen_current) && gen_ok(s->gen_bitmap);

	for (unsigned i = 0; i < PX_HISTORY; i++)
		gens = gens && gen_ok(s->gen_history[i]);
	return s->role <= 1 && s->disk <= RSM_D_FAILED && gens &&
	       !(s->flags & ~(META_F_ALL | META_F_DISCARD_REQUESTED)) &&
	       s->granularity >= 4096 && !(s->granularity & (s->granularity - 1)) &&
	       s->data_size && s->data_size % 4096 == 0 && s->oos_bits <= nbits &&
	       s->data_size == mine->data_size && s->granularity == mine->granularity;
}

static enum gen_decision
mirror(enum gen_decision d)
{
	switch (d) {
	case GEN_SOURCE_BITMAP: return GEN_TARGET_BITMAP;
	case GEN_TARGET_BITMAP: return GEN_SOURCE_BITMAP;
	case GEN_SOURCE_FULL:   return GEN_TARGET_FULL;
	case GEN_TARGET_FULL:   return GEN_SOURCE_FULL;
	default:                return d;
	}
}

static int
detached(unsigned disk)
{
	return disk == RSM_D_DISKLESS || disk == RSM_D_FAILED;
}

/* What a verdict to go on must never do. */
static void
check_go_on(const struct px_state *me, const struct px_state *peer, enum gen_decision d)
{
	int source = d == GEN_SOURCE_BITMAP || d == GEN_SOURCE_FULL;
	int target = d == GEN_TARGET_BITMAP || d == GEN_TARGET_FULL;

	FUZZ_CHECK(d != GEN_SPLIT_BRAIN && d != GEN_UNRELATED);
	FUZZ_CHECK(!(me->role && peer->role));
	FUZZ_CHECK(!source || (me->disk == RSM_D_UPTODATE && !peer->role));
	FUZZ_CHECK(!target || (peer->disk == RSM_D_UPTODATE && !me->role));
	if (detached(me->disk) || detached(peer->disk))
		FUZZ_CHECK(d == GEN_NO_SYNC);
}

static void
decide_both(const struct px_state *a, const struct px_state *b, enum gen_sb_policy policy)
{
	struct rxc_decision va, vb;
	char why[160];
	int sa, sb, ra, rb;

	memset(why, 0, sizeof(why));
	sa = rxc_state(a, b, why, sizeof(why));	/* a judges what b sent */
	FUZZ_CHECK(sa == 0 || sa == -EPROTO || sa == -EMEDIUMTYPE);
	FUZZ_CHECK(memchr(why, '\0', sizeof(why)) != NULL && (sa == 0 || why[0]));
	FUZZ_CHECK((sa == 0) == state_ok(b, a));
	sb = rxc_state(b, a, NULL, 0);
	ra = rxc_decide(a, b, policy, &va);
	rb = rxc_decide(b, a, policy, &vb);
	FUZZ_CHECK(memchr(va.note, '\0', sizeof(va.note)) != NULL);
	if (sa) {
		FUZZ_CHECK(ra == sa && va.note[0]);
		return;
	}
	if (ra == 0)
		check_go_on(a, b, va.d);
	else
		FUZZ_CHECK(ra == -EUCLEAN || ra == -ENOLINK || ra == -EPERM);
	if (sb)
		return;		/* a could not have sent its own: no mirror */
	/* Both nodes can send these: they must agree. */
	FUZZ_CHECK(ra == rb);
	FUZZ_CHECK(va.gen == mirror(vb.gen));
	if (ra == 0)
		FUZZ_CHECK(va.d == mirror(vb.d));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct px_state a, b;
	enum gen_sb_policy policy;

	if (size < 1)
		return 0;
	policy = (enum gen_sb_policy)((data[0] >> 1) % 3);
	if (data[0] & 1) {
		if (size < 1 + 2 * STATE_COMPACT)
			return 0;
		compact(data + 1, &a);
		compact(data + 1 + STATE_COMPACT, &b);
	} else {
		unsigned char *raw;
		int bad;

		if (size < 1 + 2 * STATE_RAW)
			return 0;
		raw = malloc(2 * STATE_RAW);	/* exactly the payloads: ASan sees overreads */
		if (!raw)
			return 0;
		memcpy(raw, data + 1, 2 * STATE_RAW);
		bad = px_state_decode(raw, STATE_RAW, &a) ||
		      px_state_decode(raw + STATE_RAW, STATE_RAW, &b);
		free(raw);
		if (bad)
			return 0;
	}
	decide_both(&a, &b, policy);
	decide_both(&b, &a, policy);
	return 0;
}
