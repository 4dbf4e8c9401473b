/* Unit tests for daemon/gen.c.  Two simulated nodes run the daemon's
 * generation operations (create-md, promote, writes alone or replicated,
 * crash, resync end) on a tiny disk whose blocks hold one value per write,
 * so a test can check not only the decision but what it does to the data.
 * One scenario per truth-table row, then random operation sequences checked
 * for the mirror property, for data that end equal after every resync, and
 * for acknowledged writes that no automatic decision throws away. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "tests/unit/cu_run.h"
#include <CUnit/CUnit.h>

#include "daemon/gen.h"

#define NBLK     16	/* blocks per simulated disk, one bitmap bit each */
#define ALL_BITS ((uint32_t)((1ull << NBLK) - 1))
#define A        0
#define B        1

struct node {
	struct gen_side g;	/* oos_bits is derived from bits when compared */
	uint64_t blk[NBLK];	/* block contents: one unique value per write */
	uint32_t bits;		/* out-of-sync bitmap */
	uint32_t acked;		/* blocks holding a write acknowledged while alone */
};

struct pair {
	struct node n[2];
	int connected;
};

/* How a resync ends: it finishes; it is cut (the target stays
 * inconsistent); or it finishes but the target stops before recording the
 * end, so only the source clears its bitmap. */
enum sync_end { END_DONE, END_CUT, END_LOST };

/* What the connects of a test found; the random tests assert on it. */
struct checks {
	unsigned connects;
	unsigned mirror_bad;	/* gen_compare(a, b) not the mirror of (b, a) */
	unsigned resolve_bad;	/* same for gen_resolve_split_brain() */
	unsigned primary_target;/* a side primary now told to be target */
	unsigned data_bad;	/* disks differ after a finished resync */
	unsigned nosync_bad;	/* NO_SYNC between disks that differ */
	unsigned lost_acks;	/* an automatic resync overwrote an acknowledged write */
	unsigned refused;	/* the caller's rule: no resync from a disk not up to date */
	unsigned rows[100];	/* decisions per truth-table row, both sides */
};

static struct checks ck;
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_value = 1;

/* xorshift64*: deterministic, so a failure reproduces. */
static uint64_t
rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dull;
}

static unsigned
rnd_below(unsigned n)
{
	return (unsigned)(rnd() % n);
}

/* Like meta_new_gen(): never one of the reserved values below 16. */
static uint64_t
new_gen(void)
{
	uint64_t v;

	do {
		v = rnd();
	} while (v < 16);
	return v;
}

static enum gen_decision
mirror(enum gen_decision d)
{
	switch (d) {
	case GEN_SOURCE_BITMAP:
		return GEN_TARGET_BITMAP;
	case GEN_TARGET_BITMAP:
		return GEN_SOURCE_BITMAP;
	case GEN_SOURCE_FULL:
		return GEN_TARGET_FULL;
	case GEN_TARGET_FULL:
		return GEN_SOURCE_FULL;
	default:
		return d;
	}
}

static int
is_source(enum gen_decision d)
{
	return d == GEN_SOURCE_BITMAP || d == GEN_SOURCE_FULL;
}

static int
is_target(enum gen_decision d)
{
	return d == GEN_TARGET_BITMAP || d == GEN_TARGET_FULL;
}

static struct gen_side
side(const struct node *n)
{
	struct gen_side s = n->g;

	s.oos_bits = (uint64_t)__builtin_popcount(n->bits);
	return s;
}

/* ---- the daemon's operations ---- */

/* create-md: fresh metadata, a new node_uuid; the blocks stay as they were. */
static void
create_md(struct node *n)
{
	memset(&n->g, 0, sizeof(n->g));
	n->g.current = GEN_JUST_CREATED;
	n->g.node_uuid = new_gen();
	n->bits = 0;
	n->acked = 0;
}

/* Two new disks with different garbage, fresh metadata, not connected. */
static void
pair_init(struct pair *p)
{
	memset(p, 0, sizeof(*p));
	for (int i = 0; i < 2; i++) {
		for (int b = 0; b < NBLK; b++)
			p->n[i].blk[b] = rnd();
		create_md(&p->n[i]);
	}
}

/* rsm_promote(): the generation shift, with or without --force. */
static void
promote(struct pair *p, int i)
{
	struct gen_side *g = &p->n[i].g;

	if (g->bitmap == 0)
		g->bitmap = g->current;
	memmove(&g->history[1], &g->history[0], sizeof(g->history) - sizeof(g->history[0]));
	g->history[0] = g->current;
	g->current = new_gen();
	g->primary = 1;
	g->uptodate = 1;
	g->crashed_primary = 0;
	g->local_changes = 0;	/* meta_start_generation: the bitmap gen says it */
}

/* rsm_demote() and a clean stop (dm_leave_primary): a primary's bits are
 * its own writes the peer lacks, recorded as local_changes unless a bitmap
 * generation says so already. */
static void
demote(struct pair *p, int i)
{
	struct node *n = &p->n[i];

	if (n->g.primary && n->bits && n->g.bitmap == 0)
		n->g.local_changes = 1;
	n->g.primary = 0;
}

/* A write on primary i: replicated while connected, else acknowledged by
 * the local disk alone and marked out of sync. */
static void
write_block(struct pair *p, int i, int b)
{
	struct node *n = &p->n[i], *o = &p->n[1 - i];
	uint64_t v = next_value++;

	CU_ASSERT_FATAL(n->g.primary);
	n->blk[b] = v;
	if (p->connected) {
		o->blk[b] = v;
		n->acked &= ~(1u << b);
		o->acked &= ~(1u << b);
	} else {
		n->bits |= 1u << b;
		n->acked |= 1u << b;
	}
}

static void
write_some(struct pair *p, int i, int count)
{
	for (int k = 0; k < count; k++)
		write_block(p, i, (int)rnd_below(NBLK));
}

/* Node i stops uncleanly.  A primary had a write in flight that may have
 * reached either disk; its activity extent is folded into the bitmap. */
static void
crash(struct pair *p, int i)
{
	struct node *n = &p->n[i], *o = &p->n[1 - i];
	int b = (int)rnd_below(NBLK);
	uint64_t v = next_value++;

	if (n->g.primary) {
		if (rnd() & 1) {
			n->blk[b] = v;
			n->acked &= ~(1u << b);
		}
		if (p->connected && (rnd() & 1)) {
			o->blk[b] = v;
			o->acked &= ~(1u << b);
		}
		n->bits |= 1u << b;
		n->g.crashed_primary = 1;
		n->g.primary = 0;
	} else if (p->connected && (rnd() & 1)) {
		/* Stale marks on a secondary (an activity extent left from an
		 * earlier primary role, a bit its resync cleared in memory
		 * only), back in its bitmap at the next start: a block that
		 * holds the same data on both, not a write of its own. */
		n->bits |= 1u << b;
	}
	p->connected = 0;
}

static void
link_down(struct pair *p)
{
	p->connected = 0;
}

/* The end of a resync as the daemon records it: the target adopts the
 * source's current, both clear their bitmap (history keeps the old
 * values), and neither is a crashed primary any more. */
static void
sync_done(struct node *src, struct node *tgt)
{
	tgt->g.current = src->g.current;
	src->g.bitmap = tgt->g.bitmap = 0;
	src->bits = tgt->bits = 0;
	src->acked = tgt->acked = 0;
	src->g.crashed_primary = tgt->g.crashed_primary = 0;
	src->g.local_changes = tgt->g.local_changes = 0;
	tgt->g.uptodate = 1;
}

/* The resync finished but the target stopped before recording it: only
 * the source cleared its bitmap; the target is still inconsistent. */
static void
sync_done_source_only(struct node *src, struct node *tgt, uint32_t mask)
{
	src->g.bitmap = 0;
	src->bits = 0;
	src->acked = 0;
	src->g.crashed_primary = 0;
	src->g.local_changes = 0;
	tgt->bits = mask;
	tgt->g.uptodate = 0;
}

/* Moves blocks from s to the other node as a resync does (both bitmaps
 * merged, or all), then ends it as told.  automatic: no operator chose
 * the direction, so no acknowledged write may be lost. */
static void
resync(struct pair *p, int s, int full, enum sync_end how, int automatic)
{
	struct node *src = &p->n[s], *tgt = &p->n[1 - s];
	uint32_t mask = full ? ALL_BITS : (src->bits | tgt->bits);

	/* The operator (discard-my-data, a policy) gave up the target's
	 * writes, also for a resumed resync if this one is cut. */
	if (!automatic)
		tgt->acked = 0;
	tgt->g.local_changes = 0;	/* peer_begin_target */
	for (int b = 0; b < NBLK; b++) {
		if (!(mask & (1u << b)) || (how == END_CUT && (rnd() & 1)))
			continue;
		/* A crashed primary's own writes alone are the one loss
		 * this model cannot see: it does not rotate on peer loss
		 * as the daemon does (see gen.c, row 43). */
		if (automatic && (tgt->acked & (1u << b)) && tgt->blk[b] != src->blk[b] &&
		    !tgt->g.crashed_primary)
			ck.lost_acks++;
		tgt->blk[b] = src->blk[b];
		tgt->acked &= ~(1u << b);
	}
	p->connected = 0;
	switch (how) {
	case END_DONE:
		sync_done(src, tgt);
		p->connected = 1;
		if (memcmp(src->blk, tgt->blk, sizeof(src->blk)) != 0)
			ck.data_bad++;
		break;
	case END_CUT:
		src->bits = tgt->bits = mask;
		tgt->g.uptodate = 0;
		break;
	case END_LOST:
		sync_done_source_only(src, tgt, mask);
		break;
	}
}

/* The handshake as the caller would run it: both decisions, checked, then
 * acted on.  With use_policy the split-brain policy is applied.  Returns
 * node 0's decision; the discard flags are consumed. */
static enum gen_decision
connect_policy(struct pair *p, enum sync_end how, int use_policy, enum gen_sb_policy policy)
{
	struct gen_side s0 = side(&p->n[0]), s1 = side(&p->n[1]);
	enum gen_decision d0, d1, r0, r1, d;
	int row0, row1, automatic, s;

	ck.connects++;
	d0 = gen_compare(&s0, &s1, &row0);
	d1 = gen_compare(&s1, &s0, &row1);
	if (d1 != mirror(d0))
		ck.mirror_bad++;
	ck.rows[row0 % 100]++;
	ck.rows[row1 % 100]++;
	for (int pol = GEN_SB_DISCONNECT; pol <= GEN_SB_DISCARD_LEAST_CHANGES; pol++) {
		r0 = gen_resolve_split_brain(&s0, &s1, (enum gen_sb_policy)pol);
		r1 = gen_resolve_split_brain(&s1, &s0, (enum gen_sb_policy)pol);
		if (r1 != mirror(r0) || (d0 != GEN_SPLIT_BRAIN && r0 != d0))
			ck.resolve_bad++;
		if ((is_target(r0) && s0.primary) || (is_source(r0) && s1.primary))
			ck.primary_target++;
	}
	if ((is_target(d0) && s0.primary) || (is_source(d0) && s1.primary))
		ck.primary_target++;

	d = use_policy ? gen_resolve_split_brain(&s0, &s1, policy) : d0;
	automatic = d == d0 && !s0.discard_my_data && !s1.discard_my_data;
	p->n[0].g.discard_my_data = p->n[1].g.discard_my_data = 0;

	if (d == GEN_NO_SYNC) {
		if (row0 != 10 && memcmp(p->n[0].blk, p->n[1].blk, sizeof(p->n[0].blk)) != 0)
			ck.nosync_bad++;
		p->n[0].g.crashed_primary = p->n[1].g.crashed_primary = 0;
		/* peer_in_sync(): bits no record explains are cleared. */
		p->n[0].bits = p->n[1].bits = 0;
		p->connected = 1;
	} else if (is_source(d) || is_target(d)) {
		s = is_source(d) ? 0 : 1;
		if (!p->n[s].g.uptodate) {
			ck.refused++;
			return d;
		}
		resync(p, s, d == GEN_SOURCE_FULL || d == GEN_TARGET_FULL, how, automatic);
	}
	return d;
}

static enum gen_decision
connect_pair(struct pair *p)
{
	return connect_policy(p, END_DONE, 0, GEN_SB_DISCONNECT);
}

/* Checks node i's decision and row, and that the other node reaches the
 * mirror decision (by row peer_rule). */
#define EXPECT(p, i, d, r, pr) expect_at((p), (i), (d), (r), (pr), __LINE__)

static void
expect_at(const struct pair *p, int i, enum gen_decision d, int rule, int peer_rule, int line)
{
	struct gen_side l = side(&p->n[i]), o = side(&p->n[1 - i]);
	enum gen_decision got, pgot;
	int row = -1, prow = -1;

	got = gen_compare(&l, &o, &row);
	pgot = gen_compare(&o, &l, &prow);
	if (got != d || row != rule || pgot != mirror(d) || prow != peer_rule)
		fprintf(stderr, "\n  line %d: node %d got %s row %d (want %s row %d), "
			"peer %s row %d (want row %d)\n", line, i, gen_decision_name(got), row,
			gen_decision_name(d), rule, gen_decision_name(pgot), prow, peer_rule);
	CU_assertImplementation(got == d && row == rule, (unsigned)line,
				"gen_compare(local, peer)", __FILE__, "", CU_FALSE);
	CU_assertImplementation(pgot == mirror(d) && prow == peer_rule, (unsigned)line,
				"gen_compare(peer, local) is the mirror", __FILE__, "", CU_FALSE);
}

static int
disks_equal(const struct pair *p)
{
	return memcmp(p->n[A].blk, p->n[B].blk, sizeof(p->n[A].blk)) == 0;
}

/* The usual start: create-md on both, promote --force on A, connect, full
 * sync.  A is primary, B secondary, connected, both at A's current. */
static void
initial_sync(struct pair *p)
{
	pair_init(p);
	promote(p, A);
	CU_ASSERT_EQUAL_FATAL(connect_pair(p), GEN_SOURCE_FULL);
	CU_ASSERT_FATAL(p->connected && disks_equal(p));
}

/* ---- one scenario per row ---- */

static void
test_gen_both_just_created_no_sync(void)
{
	struct pair p;

	pair_init(&p);
	EXPECT(&p, A, GEN_NO_SYNC, 10, 10);
}

static void
test_gen_force_promote_then_connect_full_sync(void)
{
	struct pair p;

	pair_init(&p);
	promote(&p, A);
	write_some(&p, A, 3);
	EXPECT(&p, A, GEN_SOURCE_FULL, 21, 20);
	EXPECT(&p, B, GEN_TARGET_FULL, 20, 21);
	CU_ASSERT_EQUAL(connect_pair(&p), GEN_SOURCE_FULL);
	CU_ASSERT(disks_equal(&p));
	CU_ASSERT_EQUAL(p.n[B].g.current, p.n[A].g.current);
}

static void
test_gen_reconnect_in_sync_no_sync(void)
{
	struct pair p;

	initial_sync(&p);
	write_some(&p, A, 4);	/* replicated */
	link_down(&p);
	EXPECT(&p, A, GEN_NO_SYNC, 30, 30);
	CU_ASSERT_EQUAL(connect_pair(&p), GEN_NO_SYNC);
}

/* Only reachable by hand: every promote moves current on, so two primaries
 * never share one. */
static void
test_gen_same_generation_both_primary_split_brain(void)
{
	struct pair p;

	initial_sync(&p);
	link_down(&p);
	write_some(&p, A, 2);
	p.n[B].g.primary = 1;
	EXPECT(&p, A, GEN_SPLIT_BRAIN, 31, 31);
}

static void
test_gen_same_generation_primary_is_source(void)
{
	struct pair p;

	initial_sync(&p);
	link_down(&p);		/* B reboots; A keeps current */
	write_some(&p, A, 5);
	EXPECT(&p, A, GEN_SOURCE_BITMAP, 32, 32);
	CU_ASSERT_EQUAL(connect_pair(&p), GEN_SOURCE_BITMAP);
	CU_ASSERT(disks_equal(&p));
}

static void
test_gen_same_generation_crashed_primary_is_source(void)
{
	struct pair p;

	initial_sync(&p);
	write_some(&p, A, 3);
	crash(&p, A);		/* in-flight write on either disk, or both */
	/* Both come back as secondaries; B was never promoted. */
	EXPECT(&p, A, GEN_SOURCE_BITMAP, 33, 33);
	CU_ASSERT_EQUAL(connect_pair(&p), GEN_SOURCE_BITMAP);
	CU_ASSERT(disks_equal(&p));
	CU_ASSERT_FALSE(p.n[A].g.crashed_primary);
}

static void
test_gen_same_generation_uptodate_is_source(void)
{
	struct pair p;

	initial_sync(&p);
	link_down(&p);
	write_some(&p, A, 6);
	/* The resync is cut: B is inconsistent and both hold the bitmap. */
	CU_ASSERT_EQUAL(connect_policy(&p, END_CUT, 0, GEN_SB_DISCONNECT), GEN_SOURCE_BITMAP);
	demote(&p, A);
	p.n[B].g.node_uuid = p.n[A].g.node_uuid + 1;	/* B would win the last tie */
	EXPECT(&p, A, GEN_SOURCE_BITMAP, 34, 34);
	CU_ASSERT_EQUAL(connect_pair(&p), GEN_SOURCE_BITMAP);
	CU_ASSERT(disks_equal(&p));
}

static void
test_gen_same_generation_writer_is_source(void)
{
	struct pair p;

	initial_sync(&p);
	link_down(&p);
	write_some(&p, A, 2);
	demote(&p, A);		/* planned stop: no longer primary */
	p.n[B].g.node_uuid = p.n[A].g.node_uuid + 1;
	EXPECT(&p, A, GEN_SOURCE_BITMAP, 35, 35);
	CU_ASSERT_EQUAL(connect_pair(&p), GEN_SOURCE_BITMAP);
	CU_ASSERT(disks_equal(&p));
}

/* The daemon's promote while connected and in sync: same generation, no
 * rotation (the model's promote() always rotates). */
static void
promote_in_sync(struct pair *p, int i)
{
	CU_ASSERT_FATAL(p->connected && !p->n[1 - i].g.primary);
	p->n[i].g.primary = 1;
}

/* The daemon's first write alone after losing the peer (or the peer loss
 * itself with blocks out of sync): a new generation, the role unchanged. */
static void
go_alone(struct pair *p, int i)
{
	int primary = p->n[i].g.primary;

	promote(p, i);
	p->n[i].g.primary = primary;
}

/* The false split brain of the switchover crash loop: alpha -> beta ->
 * alpha, writes on each primary, the secondary killed (its activity
 * extents come back as bits), the primary writes alone.  Bits on the
 * secondary are not its writes: a bitmap resync from the primary. */
static void
test_gen_secondary_crash_after_switchover_is_target(void)
{
	struct pair p;

	initial_sync(&p);
	write_some(&p, A, 2);
	demote(&p, A);
	promote_in_sync(&p, B);
	write_some(&p, B, 2);
	demote(&p, B);
	promote_in_sync(&p, A);
	write_some(&p, A, 2);
	crash(&p, B);
	p.n[B].bits |= 1u << 3;	/* an activity extent of its primary time */
	go_alone(&p, A);
	write_some(&p, A, 1);
	EXPECT(&p, B, GEN_TARGET_BITMAP, 40, 41);
	/* Still so once B was demoted cleanly after its crash: no record
	 * says it wrote. */
	demote(&p, B);
	EXPECT(&p, B, GEN_TARGET_BITMAP, 40, 41);
	CU_ASSERT_EQUAL(connect_pair(&p), GEN_SOURCE_BITMAP);
	CU_ASSERT(disks_equal(&p));
}

/* Same generation, bits that no record explains (a crashed secondary's
 * activity extent of an earlier primary role), no primary: DRBD's rule
 * 40, no sync; the bits go. */
static void
test_gen_same_generation_stale_bits_no_sync(void)
{
	struct pair p;

	initial_sync(&p);
	write_some(&p, A, 3);
	crash(&p, B);
	p.n[B].bits |= 1u << 5;
	demote(&p, A);
	p.n[B].g.node_uuid = p.n[A].g.node_uuid + 1;
	EXPECT(&p, A, GEN_NO_SYNC, 38, 38);
	/* Neither up to date (set by hand): no source can be trusted, the
	 * caller refuses, and the bits must stay. */
	p.n[A].g.uptodate = p.n[B].g.uptodate = 0;
	EXPECT(&p, B, GEN_SOURCE_BITMAP, 39, 39);
	p.n[A].g.uptodate = p.n[B].g.uptodate = 1;
	CU_ASSERT_EQUAL(connect_pair(&p), GEN_NO_SYNC);
	CU_ASSERT_EQUAL(p.n[B].bits, 0);
	CU_ASSERT(disks_equal(&p));
}

/* Same generation, two secondaries: a verify found blocks that differ and
 * its repair was cut (reconnect, crash of the verifier).  The bits name
 * real differences: the verifier is source, not row 38's "stale, clear". */
static void
test_gen_same_generation_verify_diff(void)
{
	struct pair p;

	initial_sync(&p);
	demote(&p, A);
	p.n[A].bits |= 1u << 4;
	p.n[B].bits |= 1u << 4;
	p.n[B].g.verify_diff = 1;
	p.n[A].g.node_uuid = 200;
	p.n[B].g.node_uuid = 100;
	EXPECT(&p, B, GEN_SOURCE_BITMAP, 38, 38);
	/* Both verified: the tie-break, whichever it is, moves the blocks. */
	p.n[A].g.verify_diff = 1;
	EXPECT(&p, A, GEN_SOURCE_BITMAP, 38, 38);
	p.n[B].g.node_uuid = 200;
	EXPECT(&p, A, GEN_SPLIT_BRAIN, 38, 38);
	/* A record of a role wins: the primary's data is what users see. */
	p.n[B].g.node_uuid = 100;
	p.n[A].g.verify_diff = 0;
	p.n[A].g.primary = 1;
	EXPECT(&p, A, GEN_SOURCE_BITMAP, 32, 32);
	/* No bits left on either side: nothing to move. */
	p.n[A].g.primary = 0;
	p.n[A].bits = p.n[B].bits = 0;
	EXPECT(&p, A, GEN_NO_SYNC, 30, 30);
}

/* Pull-ahead, then a clean demote of the primary while still connected:
 * its bits are writes B lacks; B's stale bits and higher node_uuid must not
 * make B the source (the old row 36 did). */
static void
test_gen_pull_ahead_then_demote_writer_is_source(void)
{
	struct pair p;

	initial_sync(&p);
	p.n[A].blk[2] = next_value++;	/* pulled ahead: not sent, marked */
	p.n[A].bits |= 1u << 2;
	demote(&p, A);
	CU_ASSERT(p.n[A].g.local_changes);
	crash(&p, B);
	p.n[B].bits |= 1u << 9;
	p.n[B].g.node_uuid = p.n[A].g.node_uuid + 1;
	EXPECT(&p, A, GEN_SOURCE_BITMAP, 35, 35);
	CU_ASSERT_EQUAL(connect_pair(&p), GEN_SOURCE_BITMAP);
	CU_ASSERT(disks_equal(&p));
	CU_ASSERT_FALSE(p.n[A].g.local_changes);
}

/* Both left primary with writes of their own at one generation: not
 * reachable through the daemon's operations, set by hand. */
static void
test_gen_same_generation_both_local_changes_split_brain(void)
{
	struct pair p;

	initial_sync(&p);
	link_down(&p);
	p.n[A].g.local_changes = p.n[B].g.local_changes = 1;
	p.n[A].bits = 1;
	p.n[B].bits = 2;
	demote(&p, A);
	EXPECT(&p, A, GEN_SPLIT_BRAIN, 37, 37);
}

/* Both crashed as primary at one generation: not reachable through the
 * daemon's operations today, set by hand.  Nothing else tells them apart,
 * so the higher node_uuid is source. */
static void
test_gen_same_generation_node_uuid_breaks_tie(void)
{
	struct pair p;

	initial_sync(&p);
	crash(&p, A);
	p.n[B].g.crashed_primary = 1;
	p.n[B].bits |= 1u;
	p.n[A].g.node_uuid = 100;
	p.n[B].g.node_uuid = 200;
	EXPECT(&p, B, GEN_SOURCE_BITMAP, 36, 36);
	p.n[B].g.node_uuid = 100;	/* never equal in practice: refuse */
	EXPECT(&p, A, GEN_SPLIT_BRAIN, 36, 36);
}

static void
test_gen_primary_wrote_while_secondary_down(void)
{
	struct pair p;

	initial_sync(&p);
	demote(&p, A);
	link_down(&p);		/* B stays down */
	promote(&p, A);		/* A moves on: bitmap = the generation B holds */
	write_some(&p, A, 4);
	EXPECT(&p, A, GEN_SOURCE_BITMAP, 41, 40);
	EXPECT(&p, B, GEN_TARGET_BITMAP, 40, 41);
	CU_ASSERT_EQUAL(connect_pair(&p), GEN_SOURCE_BITMAP);
	CU_ASSERT(disks_equal(&p));
	/* Once synced, the next reconnect has nothing to do. */
	link_down(&p);
	EXPECT(&p, A, GEN_NO_SYNC, 30, 30);
}

/* The old primary is crashed_primary but must not win: B's bitmap names
 * A's current, so A is the one behind. */
static void
test_gen_failover_old_primary_becomes_target(void)
{
	unsigned lost = ck.lost_acks;
	struct pair p;

	initial_sync(&p);
	write_some(&p, A, 3);
	crash(&p, A);
	promote(&p, B);		/* failover */
	write_some(&p, B, 5);
	EXPECT(&p, A, GEN_TARGET_BITMAP, 40, 41);
	CU_ASSERT_EQUAL(connect_pair(&p), GEN_TARGET_BITMAP);
	CU_ASSERT(disks_equal(&p));
	CU_ASSERT_EQUAL(ck.lost_acks, lost);
}

/* A kept writes B lacks at the same current (in the daemon: pull-ahead or
 * a write B failed, then a demote while still connected; the model writes
 * alone without rotating) and left primary cleanly: local_changes.  B was
 * promoted meanwhile.  Row 40 alone would undo A's acknowledged writes. */
static void
test_gen_unrotated_writes_then_failover_split_brain(void)
{
	struct pair p;

	initial_sync(&p);
	link_down(&p);
	write_some(&p, A, 3);
	demote(&p, A);
	promote(&p, B);
	write_some(&p, B, 2);
	demote(&p, B);
	EXPECT(&p, A, GEN_SPLIT_BRAIN, 43, 43);
	/* Nothing written on A: the plain failover of row 40. */
	initial_sync(&p);
	link_down(&p);
	demote(&p, A);
	promote(&p, B);
	EXPECT(&p, A, GEN_TARGET_BITMAP, 40, 41);
}

/* Documents the limit of row 43 in this model: a primary that wrote alone
 * without moving on and then crashed looks like a plain failover, and its
 * writes are lost.  The daemon moves on with the first write alone, or at
 * the peer loss when blocks are out of sync then, which makes this row 60
 * (test_gen_promoted_apart_split_brain). */
static void
test_gen_known_limit_crash_after_unrotated_writes(void)
{
	struct pair p;

	initial_sync(&p);
	link_down(&p);
	write_some(&p, A, 3);
	crash(&p, A);
	promote(&p, B);
	EXPECT(&p, A, GEN_TARGET_BITMAP, 40, 41);
}

/* ---- found by the exhaustive model (test_gen_model.c) ----
 * Each is the shortest sequence the enumeration found for its class,
 * replayed here as the metadata the daemon leaves, with gen_compare()'s
 * answer today.  None loses an acknowledged write; each refuses a
 * connection that the truth would allow. */

static void
set_side(struct node *n, uint64_t cur, uint64_t bm, uint64_t h0, uint64_t h1, uint64_t h2,
	 uint64_t h3, uint64_t uuid)
{
	memset(n, 0, sizeof(*n));
	n->g.current = cur;
	n->g.bitmap = bm;
	n->g.history[0] = h0;
	n->g.history[1] = h1;
	n->g.history[2] = h2;
	n->g.history[3] = h3;
	n->g.node_uuid = uuid;
	n->g.uptodate = 1;
}

/* History overflow.  A (primary) writes while its data link fails: A moves
 * to 102 (bitmap 101).  Connect: A sources B (row 41).  At the resync end B
 * records 102; A crashes between SYNC_DONE and the confirmation, so it keeps
 * bitmap 101 (and crashed-primary).  Connect: row 33, A sources B again.
 * Promote A while that resync runs: rsm_promote starts a generation (not in
 * sync), and the session restart's peer_teardown starts another one
 * (dm_new_gen_now: blocks are out of sync) -- two per promote.  Demote A,
 * promote A again: two more; an invalidate on B restarts the session (one
 * more).  B's 102 has fallen off A's four history slots, and A's bitmap
 * 101 is older than B's current: no rule relates them.  Refused as
 * unrelated although B only needs a full sync from A (row 51 one step
 * earlier); recovery is create-md on B.  DRBD keeps fewer history slots
 * and has the same limit.  (The second generation per promote, from the
 * session restart's peer_teardown, is gone: peer_gen_moved(); the
 * sequence now takes twice the promotes.)  A bitmap generation that stays
 * behind the peer's current after a lost confirmation makes history the
 * only link. */
static void
test_gen_known_limit_history_overflow_unrelated(void)
{
	struct pair p;

	memset(&p, 0, sizeof(p));
	set_side(&p.n[A], 107, 101, 106, 105, 104, 103, 1);
	p.n[A].g.primary = 1;
	p.n[A].bits = 3;
	set_side(&p.n[B], 102, 0, 0, 0, 0, 0, 2);
	p.n[B].g.uptodate = 0;		/* invalidated */
	p.n[B].bits = ALL_BITS;
	EXPECT(&p, A, GEN_UNRELATED, 80, 80);
	/* One generation less on A and it is the full sync it should be. */
	set_side(&p.n[A], 106, 101, 105, 104, 103, 102, 1);
	p.n[A].g.primary = 1;
	EXPECT(&p, A, GEN_SOURCE_FULL, 51, 50);
}

/* discard-my-data does not outlive a crash of its target.  A writes while
 * its link fails (A: 102, bitmap 101) and crashes; B is promoted (103,
 * bitmap 101) and crashes: row 60, split brain.  discard-my-data on A:
 * connect, A is target (row 91).  B is promoted during that resync (two
 * generations, as above) and A crashes (B's peer_teardown, with blocks
 * out of sync, starts one more): the request was memory only, A's
 * metadata still says it changed since 101, and row 60 finds the same split
 * brain although A's writes were given up.  The operator repeats
 * discard-my-data on A. */
static void
test_gen_known_limit_discard_lost_in_target_crash(void)
{
	struct pair p;

	memset(&p, 0, sizeof(p));
	set_side(&p.n[A], 102, 101, 101, GEN_JUST_CREATED, 0, 0, 1);
	p.n[A].g.crashed_primary = 1;
	p.n[A].g.uptodate = 0;		/* an interrupted sync target */
	p.n[A].bits = ALL_BITS;
	set_side(&p.n[B], 106, 101, 105, 104, 103, 101, 2);
	p.n[B].g.primary = 1;
	p.n[B].bits = 1;
	EXPECT(&p, A, GEN_SPLIT_BRAIN, 60, 60);
	p.n[A].g.discard_my_data = 1;	/* asked again: resolved */
	EXPECT(&p, A, GEN_TARGET_BITMAP, 91, 92);
}

/* local-changes outlives the catch-up that sent the changes.  A (primary,
 * async, pull-ahead) acknowledges a write the peer has not heard of, and is
 * demoted: local-changes (bitmap generation 0, bits).  The catch-up resync
 * ends: peer_established sends SYNC_DONE, B records itself up to date at
 * 101 -- and A crashes before peer_changes_sent() clears local-changes
 * (and the bits it cleared in memory come back).  B is promoted (103,
 * bitmap 101).  Connect: row 43 calls it split brain, though B holds every
 * write of A's and A is a plain target (row 40).  Running
 * peer_changes_sent() before SYNC_DONE is sent would close the window: the
 * source's pass is over then, whatever the target records. */
static void
test_gen_known_limit_local_changes_left_by_crash(void)
{
	struct pair p;

	memset(&p, 0, sizeof(p));
	set_side(&p.n[A], 101, 0, GEN_JUST_CREATED, 0, 0, 0, 1);
	p.n[A].g.local_changes = 1;
	p.n[A].bits = 1;
	set_side(&p.n[B], 103, 101, 101, 0, 0, 0, 2);
	p.n[B].g.primary = 1;
	EXPECT(&p, A, GEN_SPLIT_BRAIN, 43, 43);
	p.n[A].g.local_changes = 0;	/* cleared before SYNC_DONE */
	EXPECT(&p, A, GEN_TARGET_BITMAP, 40, 41);
}

/* The resync ended and A cleared its bitmap, but B stopped before it
 * recorded the end: A no longer knows since when B is behind. */
static void
test_gen_lost_resync_end_full_sync(void)
{
	struct pair p;

	initial_sync(&p);
	demote(&p, A);
	link_down(&p);
	promote(&p, A);
	write_some(&p, A, 4);
	CU_ASSERT_EQUAL(connect_policy(&p, END_LOST, 0, GEN_SB_DISCONNECT), GEN_SOURCE_BITMAP);
	EXPECT(&p, A, GEN_SOURCE_FULL, 51, 50);
	EXPECT(&p, B, GEN_TARGET_FULL, 50, 51);
	CU_ASSERT_EQUAL(connect_pair(&p), GEN_SOURCE_FULL);
	CU_ASSERT(disks_equal(&p));
}

static void
test_gen_promoted_apart_split_brain(void)
{
	struct pair p;

	initial_sync(&p);
	demote(&p, A);
	link_down(&p);
	promote(&p, A);
	promote(&p, B);
	write_some(&p, A, 2);
	write_some(&p, B, 2);
	EXPECT(&p, A, GEN_SPLIT_BRAIN, 60, 60);
	/* Still split after more promotes: bitmaps keep the first generation. */
	demote(&p, A);
	promote(&p, A);
	EXPECT(&p, B, GEN_SPLIT_BRAIN, 60, 60);
	CU_ASSERT_EQUAL(connect_pair(&p), GEN_SPLIT_BRAIN);
	CU_ASSERT_FALSE(p.connected);
}

/* As in the lost resync end, then B is promoted alone: A's bitmap is gone
 * but its history still names the generation B moved on from. */
static void
test_gen_bitmap_in_history_split_brain(void)
{
	struct pair p;

	initial_sync(&p);
	demote(&p, A);
	link_down(&p);
	promote(&p, A);
	write_some(&p, A, 2);
	CU_ASSERT_EQUAL(connect_policy(&p, END_LOST, 0, GEN_SB_DISCONNECT), GEN_SOURCE_BITMAP);
	demote(&p, A);
	promote(&p, B);		/* --force: B is inconsistent */
	write_some(&p, B, 2);
	EXPECT(&p, A, GEN_SPLIT_BRAIN, 61, 61);
}

/* Two fresh disks force-promoted apart share only "just created": no
 * block was ever equal, so no bitmap resync could reconcile them. */
static void
test_gen_fresh_disks_promoted_apart_unrelated(void)
{
	struct pair p;

	pair_init(&p);
	promote(&p, A);
	promote(&p, B);
	write_some(&p, A, 1);
	EXPECT(&p, A, GEN_UNRELATED, 80, 80);
	demote(&p, B);
	p.n[B].g.discard_my_data = 1;
	EXPECT(&p, A, GEN_UNRELATED, 80, 80);
	/* The way out: fresh metadata on the side to discard. */
	p.n[B].g.discard_my_data = 0;
	create_md(&p.n[B]);
	EXPECT(&p, A, GEN_SOURCE_FULL, 21, 20);
	CU_ASSERT_EQUAL(connect_pair(&p), GEN_SOURCE_FULL);
	CU_ASSERT(disks_equal(&p));
}

static void
test_gen_different_resources_unrelated(void)
{
	struct pair p, q;

	initial_sync(&p);
	initial_sync(&q);
	p.n[B] = q.n[B];	/* B's disk belongs to another mirror */
	demote(&p, A);
	p.n[B].g.discard_my_data = 1;
	EXPECT(&p, A, GEN_UNRELATED, 80, 80);
}

static void
split_brain_pair(struct pair *p, int writes_a, int writes_b)
{
	initial_sync(p);
	demote(p, A);
	link_down(p);
	promote(p, A);
	promote(p, B);
	write_some(p, A, writes_a);
	write_some(p, B, writes_b);
	demote(p, A);
	demote(p, B);
}

static void
test_gen_discard_my_data_resolves_split_brain(void)
{
	struct pair p;

	split_brain_pair(&p, 3, 3);
	p.n[B].g.discard_my_data = 1;
	EXPECT(&p, B, GEN_TARGET_BITMAP, 91, 92);
	EXPECT(&p, A, GEN_SOURCE_BITMAP, 92, 91);
	p.n[A].g.discard_my_data = 1;
	EXPECT(&p, A, GEN_SPLIT_BRAIN, 90, 90);
	p.n[A].g.discard_my_data = 0;
	/* Both bitmaps move: B ends equal to A, A's data untouched. */
	CU_ASSERT_EQUAL(connect_pair(&p), GEN_SOURCE_BITMAP);
	CU_ASSERT(disks_equal(&p));
	CU_ASSERT_EQUAL(p.n[B].g.current, p.n[A].g.current);
	link_down(&p);
	EXPECT(&p, A, GEN_NO_SYNC, 30, 30);
}

/* discard-my-data steers any decision between related data, keeping a
 * full resync full; it never makes a disk without data a source. */
static void
test_gen_discard_my_data_overrides_direction(void)
{
	struct pair p;

	initial_sync(&p);
	demote(&p, A);
	link_down(&p);
	promote(&p, A);
	write_some(&p, A, 2);
	demote(&p, A);
	p.n[A].g.discard_my_data = 1;
	EXPECT(&p, A, GEN_TARGET_BITMAP, 91, 92);
	CU_ASSERT_EQUAL(connect_pair(&p), GEN_TARGET_BITMAP);
	CU_ASSERT(disks_equal(&p));

	initial_sync(&p);
	demote(&p, A);
	link_down(&p);
	promote(&p, A);
	write_some(&p, A, 2);
	CU_ASSERT_EQUAL(connect_policy(&p, END_LOST, 0, GEN_SB_DISCONNECT), GEN_SOURCE_BITMAP);
	demote(&p, A);
	p.n[A].g.discard_my_data = 1;
	EXPECT(&p, A, GEN_TARGET_FULL, 91, 92);

	initial_sync(&p);
	link_down(&p);
	p.n[A].g.discard_my_data = 1;
	EXPECT(&p, A, GEN_NO_SYNC, 30, 30);	/* nothing to discard */

	pair_init(&p);
	promote(&p, A);
	demote(&p, A);
	p.n[A].g.discard_my_data = 1;
	EXPECT(&p, A, GEN_SOURCE_FULL, 21, 20);	/* B has no data to take */
}

/* The old primary survived a failover and is still primary: it must not
 * become target under its users, even if B's operator asks for it. */
static void
test_gen_primary_is_never_target(void)
{
	struct pair p;

	initial_sync(&p);
	link_down(&p);
	promote(&p, B);
	EXPECT(&p, A, GEN_SPLIT_BRAIN, 95, 95);
	p.n[B].g.discard_my_data = 1;
	EXPECT(&p, A, GEN_SPLIT_BRAIN, 95, 95);	/* B is primary too */
	demote(&p, B);
	EXPECT(&p, A, GEN_SOURCE_BITMAP, 92, 91);
	p.n[B].g.discard_my_data = 0;
	demote(&p, A);
	EXPECT(&p, A, GEN_TARGET_BITMAP, 40, 41);
}

static enum gen_decision
resolve(const struct pair *p, int i, enum gen_sb_policy policy)
{
	struct gen_side l = side(&p->n[i]), o = side(&p->n[1 - i]);
	enum gen_decision d = gen_resolve_split_brain(&l, &o, policy);

	CU_ASSERT_EQUAL(gen_resolve_split_brain(&o, &l, policy), mirror(d));
	return d;
}

static void
test_gen_resolve_discard_zero_changes(void)
{
	struct pair p;

	split_brain_pair(&p, 0, 3);
	CU_ASSERT_EQUAL(resolve(&p, A, GEN_SB_DISCONNECT), GEN_SPLIT_BRAIN);
	CU_ASSERT_EQUAL(resolve(&p, A, GEN_SB_DISCARD_ZERO_CHANGES), GEN_TARGET_BITMAP);
	CU_ASSERT_EQUAL(connect_policy(&p, END_DONE, 1, GEN_SB_DISCARD_ZERO_CHANGES),
			GEN_TARGET_BITMAP);
	CU_ASSERT(disks_equal(&p));

	split_brain_pair(&p, 2, 3);
	CU_ASSERT_EQUAL(resolve(&p, A, GEN_SB_DISCARD_ZERO_CHANGES), GEN_SPLIT_BRAIN);

	/* Neither wrote: equal data, a resync that moves nothing aligns the
	 * generations so the next connect is not a split brain again. */
	split_brain_pair(&p, 0, 0);
	p.n[A].g.node_uuid = 7;
	p.n[B].g.node_uuid = 9;
	CU_ASSERT_EQUAL(resolve(&p, A, GEN_SB_DISCARD_ZERO_CHANGES), GEN_TARGET_BITMAP);
	CU_ASSERT_EQUAL(connect_policy(&p, END_DONE, 1, GEN_SB_DISCARD_ZERO_CHANGES),
			GEN_TARGET_BITMAP);
	link_down(&p);
	EXPECT(&p, A, GEN_NO_SYNC, 30, 30);

	/* A primary is never chosen behind the operator's back. */
	split_brain_pair(&p, 0, 3);
	p.n[A].g.primary = 1;
	CU_ASSERT_EQUAL(resolve(&p, A, GEN_SB_DISCARD_ZERO_CHANGES), GEN_SPLIT_BRAIN);
	CU_ASSERT_EQUAL(resolve(&p, A, GEN_SB_DISCARD_LEAST_CHANGES), GEN_SPLIT_BRAIN);

	/* Not a split brain: the decision is returned as it is. */
	initial_sync(&p);
	link_down(&p);
	write_some(&p, A, 1);
	CU_ASSERT_EQUAL(resolve(&p, B, GEN_SB_DISCARD_ZERO_CHANGES), GEN_TARGET_BITMAP);
	pair_init(&p);
	promote(&p, A);
	promote(&p, B);
	demote(&p, A);
	demote(&p, B);
	CU_ASSERT_EQUAL(resolve(&p, A, GEN_SB_DISCARD_ZERO_CHANGES), GEN_UNRELATED);
}

static void
test_gen_resolve_discard_least_changes(void)
{
	struct pair p;

	split_brain_pair(&p, 1, 1);
	p.n[A].bits = 0x1;
	p.n[B].bits = 0x7;
	CU_ASSERT_EQUAL(resolve(&p, A, GEN_SB_DISCARD_LEAST_CHANGES), GEN_TARGET_BITMAP);
	p.n[A].bits = 0xf;
	CU_ASSERT_EQUAL(resolve(&p, A, GEN_SB_DISCARD_LEAST_CHANGES), GEN_SOURCE_BITMAP);
	p.n[B].bits = 0xf0;	/* tie: higher node_uuid is source */
	p.n[A].g.node_uuid = 5;
	p.n[B].g.node_uuid = 6;
	CU_ASSERT_EQUAL(resolve(&p, A, GEN_SB_DISCARD_LEAST_CHANGES), GEN_TARGET_BITMAP);
	p.n[B].g.node_uuid = 5;
	CU_ASSERT_EQUAL(resolve(&p, A, GEN_SB_DISCARD_LEAST_CHANGES), GEN_SPLIT_BRAIN);

	/* B changed more blocks: A is target, and every block moves. */
	split_brain_pair(&p, 0, 0);
	p.n[A].g.primary = p.n[B].g.primary = 1;
	write_block(&p, A, 0);
	for (int b = 1; b < 6; b++)
		write_block(&p, B, b);
	p.n[A].g.primary = p.n[B].g.primary = 0;
	CU_ASSERT_EQUAL(connect_policy(&p, END_DONE, 1, GEN_SB_DISCARD_LEAST_CHANGES),
			GEN_TARGET_BITMAP);
	CU_ASSERT(disks_equal(&p));
}

static void
test_gen_decision_names(void)
{
	CU_ASSERT_STRING_EQUAL(gen_decision_name(GEN_NO_SYNC), "no-sync");
	CU_ASSERT_STRING_EQUAL(gen_decision_name(GEN_SOURCE_BITMAP), "source-bitmap");
	CU_ASSERT_STRING_EQUAL(gen_decision_name(GEN_TARGET_BITMAP), "target-bitmap");
	CU_ASSERT_STRING_EQUAL(gen_decision_name(GEN_SOURCE_FULL), "source-full");
	CU_ASSERT_STRING_EQUAL(gen_decision_name(GEN_TARGET_FULL), "target-full");
	CU_ASSERT_STRING_EQUAL(gen_decision_name(GEN_SPLIT_BRAIN), "split-brain");
	CU_ASSERT_STRING_EQUAL(gen_decision_name(GEN_UNRELATED), "unrelated");
	CU_ASSERT_STRING_EQUAL(gen_decision_name((enum gen_decision)99), "unknown");
}

/* ---- random operation sequences ---- */

#define SIM_RUNS  4000
#define SIM_STEPS 60

/* One random step on the pair: what operators, cluster managers and
 * failures do.  The daemon's refusals are kept: no promote while the
 * connected peer is primary. */
static void
sim_step(struct pair *p)
{
	int i = (int)rnd_below(2), j = 1 - i;
	struct node *n = &p->n[i];
	enum gen_decision d;
	enum sync_end how;
	enum gen_sb_policy policy;
	int use_policy;

	switch (rnd_below(12)) {
	case 0: case 1: case 2:
		if (n->g.primary)
			write_some(p, i, 1 + (int)rnd_below(3));
		break;
	case 3:
		if (!n->g.primary && !(p->connected && p->n[j].g.primary))
			promote(p, i);
		break;
	case 4:
		demote(p, i);
		break;
	case 5:
		crash(p, i);
		break;
	case 6:
		link_down(p);
		break;
	case 7:
		if (!p->connected && !n->g.primary && rnd_below(8) == 0)
			create_md(n);	/* replaced disk, or wiped by the operator */
		break;
	default:
		if (p->connected)
			break;
		if (rnd_below(10) == 0)
			p->n[0].g.discard_my_data = 1;
		if (rnd_below(10) == 0)
			p->n[1].g.discard_my_data = 1;
		/* One draw per statement: argument order would vary by compiler. */
		how = rnd_below(10) < 8 ? END_DONE : rnd_below(2) ? END_CUT : END_LOST;
		use_policy = rnd_below(3) == 0;
		policy = (enum gen_sb_policy)rnd_below(3);
		d = connect_policy(p, how, use_policy, policy);
		/* The operator picks a loser for next time. */
		if (d == GEN_SPLIT_BRAIN && rnd_below(2)) {
			demote(p, i);
			n->g.discard_my_data = 1;
		}
		break;
	}
}

static void
sim_run(void)
{
	struct pair p;

	memset(&ck, 0, sizeof(ck));
	rng = 0x2545f4914f6cdd1dull;
	for (int run = 0; run < SIM_RUNS; run++) {
		pair_init(&p);
		for (int step = 0; step < SIM_STEPS; step++)
			sim_step(&p);
	}
}

static void
test_gen_random_operations_symmetric(void)
{
	sim_run();
	CU_ASSERT(ck.connects > SIM_RUNS * 5);
	CU_ASSERT_EQUAL(ck.mirror_bad, 0);
	CU_ASSERT_EQUAL(ck.resolve_bad, 0);
}

static void
test_gen_random_operations_keep_data(void)
{
	static const int reachable[] = {
		10, 20, 21, 30, 32, 33, 34, 35, 38, 40, 41, 43, 50, 51, 60, 61, 80, 90, 91, 92,
		95,
	};

	sim_run();
	CU_ASSERT_EQUAL(ck.primary_target, 0);
	CU_ASSERT_EQUAL(ck.data_bad, 0);
	CU_ASSERT_EQUAL(ck.nosync_bad, 0);
	CU_ASSERT_EQUAL(ck.lost_acks, 0);
	/* The walk must reach every row it can, or it proves little. */
	for (size_t k = 0; k < sizeof(reachable) / sizeof(reachable[0]); k++) {
		if (ck.rows[reachable[k]] == 0)
			fprintf(stderr, "\n  row %d never reached\n", reachable[k]);
		CU_ASSERT(ck.rows[reachable[k]] > 0);
	}
}

/* Arbitrary sides, values drawn from small pools so that every equality
 * the table looks at happens often, reachable or not. */
static void
random_side(struct gen_side *s)
{
	static const uint64_t pool[] = { 0, GEN_JUST_CREATED, 100, 101, 102, 103 };
	const size_t np = sizeof(pool) / sizeof(pool[0]);

	s->current = pool[rnd_below(np)];
	s->bitmap = pool[rnd_below(np)];
	for (int i = 0; i < GEN_HISTORY; i++)
		s->history[i] = pool[rnd_below(np)];
	s->node_uuid = 1 + rnd_below(3);
	s->oos_bits = rnd_below(3) == 0 ? 0 : rnd_below(3);
	s->primary = rnd_below(4) == 0;
	s->crashed_primary = rnd_below(4) == 0;
	s->local_changes = rnd_below(4) == 0;
	s->discard_my_data = rnd_below(4) == 0;
	s->uptodate = rnd_below(4) != 0;
}

static void
test_gen_random_fields_symmetric(void)
{
	struct gen_side a, b, a0, b0;
	unsigned bad = 0, bad_resolve = 0, bad_primary = 0, bad_discard = 0, bad_empty = 0;
	enum gen_decision d, e;
	int row;

	rng = 0x1234567887654321ull;
	for (int k = 0; k < 200000; k++) {
		random_side(&a);
		random_side(&b);
		d = gen_compare(&a, &b, &row);
		if (gen_compare(&b, &a, NULL) != mirror(d))
			bad++;
		for (int pol = GEN_SB_DISCONNECT; pol <= GEN_SB_DISCARD_LEAST_CHANGES; pol++) {
			e = gen_resolve_split_brain(&a, &b, (enum gen_sb_policy)pol);
			if (gen_resolve_split_brain(&b, &a, (enum gen_sb_policy)pol) != mirror(e))
				bad_resolve++;
			if ((is_target(e) && a.primary) || (is_source(e) && b.primary))
				bad_primary++;
		}
		if ((is_target(d) && a.primary) || (is_source(d) && b.primary))
			bad_primary++;
		/* discard-my-data never turns UNRELATED into a resync. */
		a0 = a;
		b0 = b;
		a0.discard_my_data = b0.discard_my_data = 0;
		if ((gen_compare(&a0, &b0, NULL) == GEN_UNRELATED) != (d == GEN_UNRELATED))
			bad_discard++;
		/* A side without data is never a source. */
		if ((a.current == 0 || a.current == GEN_JUST_CREATED) && is_source(d))
			bad_empty++;
	}
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT_EQUAL(bad_resolve, 0);
	CU_ASSERT_EQUAL(bad_primary, 0);
	CU_ASSERT_EQUAL(bad_discard, 0);
	CU_ASSERT_EQUAL(bad_empty, 0);
}

int
main(void)
{
	static const struct cu_test tests[] = {
		{ "test_gen_both_just_created_no_sync", test_gen_both_just_created_no_sync },
		{ "test_gen_force_promote_then_connect_full_sync",
		  test_gen_force_promote_then_connect_full_sync },
		{ "test_gen_reconnect_in_sync_no_sync", test_gen_reconnect_in_sync_no_sync },
		{ "test_gen_same_generation_both_primary_split_brain",
		  test_gen_same_generation_both_primary_split_brain },
		{ "test_gen_same_generation_primary_is_source",
		  test_gen_same_generation_primary_is_source },
		{ "test_gen_same_generation_crashed_primary_is_source",
		  test_gen_same_generation_crashed_primary_is_source },
		{ "test_gen_same_generation_uptodate_is_source",
		  test_gen_same_generation_uptodate_is_source },
		{ "test_gen_same_generation_writer_is_source",
		  test_gen_same_generation_writer_is_source },
		{ "test_gen_same_generation_node_uuid_breaks_tie",
		  test_gen_same_generation_node_uuid_breaks_tie },
		{ "test_gen_secondary_crash_after_switchover_is_target",
		  test_gen_secondary_crash_after_switchover_is_target },
		{ "test_gen_same_generation_stale_bits_no_sync",
		  test_gen_same_generation_stale_bits_no_sync },
		{ "test_gen_same_generation_verify_diff", test_gen_same_generation_verify_diff },
		{ "test_gen_pull_ahead_then_demote_writer_is_source",
		  test_gen_pull_ahead_then_demote_writer_is_source },
		{ "test_gen_same_generation_both_local_changes_split_brain",
		  test_gen_same_generation_both_local_changes_split_brain },
		{ "test_gen_primary_wrote_while_secondary_down",
		  test_gen_primary_wrote_while_secondary_down },
		{ "test_gen_failover_old_primary_becomes_target",
		  test_gen_failover_old_primary_becomes_target },
		{ "test_gen_unrotated_writes_then_failover_split_brain",
		  test_gen_unrotated_writes_then_failover_split_brain },
		{ "test_gen_known_limit_crash_after_unrotated_writes",
		  test_gen_known_limit_crash_after_unrotated_writes },
		{ "test_gen_lost_resync_end_full_sync", test_gen_lost_resync_end_full_sync },
		{ "test_gen_known_limit_history_overflow_unrelated",
		  test_gen_known_limit_history_overflow_unrelated },
		{ "test_gen_known_limit_discard_lost_in_target_crash",
		  test_gen_known_limit_discard_lost_in_target_crash },
		{ "test_gen_known_limit_local_changes_left_by_crash",
		  test_gen_known_limit_local_changes_left_by_crash },
		{ "test_gen_promoted_apart_split_brain", test_gen_promoted_apart_split_brain },
		{ "test_gen_bitmap_in_history_split_brain",
		  test_gen_bitmap_in_history_split_brain },
		{ "test_gen_fresh_disks_promoted_apart_unrelated",
		  test_gen_fresh_disks_promoted_apart_unrelated },
		{ "test_gen_different_resources_unrelated",
		  test_gen_different_resources_unrelated },
		{ "test_gen_discard_my_data_resolves_split_brain",
		  test_gen_discard_my_data_resolves_split_brain },
		{ "test_gen_discard_my_data_overrides_direction",
		  test_gen_discard_my_data_overrides_direction },
		{ "test_gen_primary_is_never_target", test_gen_primary_is_never_target },
		{ "test_gen_resolve_discard_zero_changes", test_gen_resolve_discard_zero_changes },
		{ "test_gen_resolve_discard_least_changes",
		  test_gen_resolve_discard_least_changes },
		{ "test_gen_decision_names", test_gen_decision_names },
		{ "test_gen_random_operations_symmetric", test_gen_random_operations_symmetric },
		{ "test_gen_random_operations_keep_data", test_gen_random_operations_keep_data },
		{ "test_gen_random_fields_symmetric", test_gen_random_fields_symmetric },
	};

	return cu_run("gen", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
