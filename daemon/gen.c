/* gen: see gen.h.
 *
 * Pure functions: no I/O, no globals, no logging.  The caller logs the
 * decision and its row once, where it acts on them.  Every row below is
 * written for both sides at once (a condition on local and its mirror on
 * the peer, with a common answer when both hold), which is what makes
 * gen_compare(a, b) and gen_compare(b, a) mirror decisions for any input,
 * not only for the states the daemon can reach. */
#include <stddef.h>

#include "daemon/gen.h"

/* A decision plus what the later rows and the split-brain policies need. */
struct gen_verdict {
	enum gen_decision d;
	int rule;
	int related;	/* the sides share a generation: discard_my_data may steer */
	int full;	/* a sync that resolves this split brain must move every block */
};

static struct gen_verdict
gen_v(enum gen_decision d, int rule, int related, int full)
{
	struct gen_verdict v = { d, rule, related, full };

	return v;
}

/* 0 is "none" and GEN_JUST_CREATED is "fresh metadata": two disks created
 * apart both carry 4 without sharing one block, so neither value may ever
 * count as a generation two sides have in common. */
static int
gen_names_data(uint64_t g)
{
	return g != 0 && g != GEN_JUST_CREATED;
}

static int
gen_in_history(uint64_t g, const struct gen_side *s)
{
	if (!gen_names_data(g))
		return 0;
	for (int i = 0; i < GEN_HISTORY; i++)
		if (s->history[i] == g)
			return 1;
	return 0;
}

/* +1 if only local has the property, -1 if only the peer, 0 if both or
 * neither: a tie-break step that is antisymmetric by construction. */
static int
gen_only(int l, int p)
{
	return (l != 0) - (p != 0);
}

static int
gen_by_node_uuid(const struct gen_side *l, const struct gen_side *p)
{
	return (l->node_uuid > p->node_uuid) - (l->node_uuid < p->node_uuid);
}

/* dir > 0: local is source; dir < 0: local is target. */
static struct gen_verdict
gen_dir(int dir, int full, int rule)
{
	if (dir > 0)
		return gen_v(full ? GEN_SOURCE_FULL : GEN_SOURCE_BITMAP, rule, 1, full);
	return gen_v(full ? GEN_TARGET_FULL : GEN_TARGET_BITMAP, rule, 1, full);
}

static int
gen_is_full(struct gen_verdict v)
{
	return v.d == GEN_SOURCE_FULL || v.d == GEN_TARGET_FULL ||
	       (v.d == GEN_SPLIT_BRAIN && v.full);
}

/* Rows 30-39: same current, so the data differ at most in the blocks the
 * two bitmaps name.  Only the primary role, crashed_primary and
 * local_changes say a side wrote there; out-of-sync bits alone do not
 * (activity extents of an earlier primary role folded in after a crash, a
 * resync's leftovers). */
static struct gen_verdict
gen_same_generation(const struct gen_side *l, const struct gen_side *p)
{
	int dir;

	if (!l->crashed_primary && !p->crashed_primary && !l->local_changes &&
	    !p->local_changes && l->oos_bits == 0 && p->oos_bits == 0 &&
	    l->uptodate == p->uptodate)
		return gen_v(GEN_NO_SYNC, 30, 1, 0);
	if (l->primary && p->primary)
		return gen_v(GEN_SPLIT_BRAIN, 31, 1, 0);
	if ((dir = gen_only(l->primary, p->primary)) != 0)
		return gen_dir(dir, 0, 32);
	if ((dir = gen_only(l->crashed_primary, p->crashed_primary)) != 0)
		return gen_dir(dir, 0, 33);
	if ((dir = gen_only(l->uptodate, p->uptodate)) != 0)
		return gen_dir(dir, 0, 34);
	if ((dir = gen_only(l->local_changes, p->local_changes)) != 0)
		return gen_dir(dir, 0, 35);
	if (l->crashed_primary) {	/* and p: gen_only said both */
		if ((dir = gen_by_node_uuid(l, p)) != 0)
			return gen_dir(dir, 0, 36);
		return gen_v(GEN_SPLIT_BRAIN, 36, 1, 0);
	}
	if (l->local_changes)		/* and p */
		return gen_v(GEN_SPLIT_BRAIN, 37, 1, 0);
	if (l->uptodate && (l->verify_diff || p->verify_diff)) {
		if ((dir = gen_only(l->verify_diff, p->verify_diff)) != 0 ||
		    (dir = gen_by_node_uuid(l, p)) != 0)
			return gen_dir(dir, 0, 38);
		return gen_v(GEN_SPLIT_BRAIN, 38, 1, 0);
	}
	if (l->uptodate)		/* and p: row 34 said both or neither */
		return gen_v(GEN_NO_SYNC, 38, 1, 0);
	if ((dir = gen_by_node_uuid(l, p)) != 0)
		return gen_dir(dir, 0, 39);
	return gen_v(GEN_SPLIT_BRAIN, 39, 1, 0);
}

/* Rows 10-80, the generations alone (plus the tie-breaks of 30-39). */
static struct gen_verdict
gen_table(const struct gen_side *l, const struct gen_side *p)
{
	int l_empty = !gen_names_data(l->current);
	int p_empty = !gen_names_data(p->current);
	int l_behind, p_behind;

	if (l_empty && p_empty)
		return gen_v(GEN_NO_SYNC, 10, 0, 0);
	if (l_empty)
		return gen_v(GEN_TARGET_FULL, 20, 0, 1);
	if (p_empty)
		return gen_v(GEN_SOURCE_FULL, 21, 0, 1);

	if (l->current == p->current)
		return gen_same_generation(l, p);

	l_behind = p->bitmap == l->current;
	p_behind = l->bitmap == p->current;
	if (l_behind && p_behind)
		return gen_v(GEN_SPLIT_BRAIN, 42, 1, 1);
	if (l_behind)
		return l->local_changes ? gen_v(GEN_SPLIT_BRAIN, 43, 1, 0) : gen_dir(-1, 0, 40);
	if (p_behind)
		return p->local_changes ? gen_v(GEN_SPLIT_BRAIN, 43, 1, 0) : gen_dir(1, 0, 41);

	l_behind = gen_in_history(l->current, p);
	p_behind = gen_in_history(p->current, l);
	if (l_behind && p_behind)
		return gen_v(GEN_SPLIT_BRAIN, 52, 1, 1);
	if (l_behind)
		return gen_dir(-1, 1, 50);
	if (p_behind)
		return gen_dir(1, 1, 51);

	if (gen_names_data(l->bitmap) && l->bitmap == p->bitmap)
		return gen_v(GEN_SPLIT_BRAIN, 60, 1, 0);
	if (gen_in_history(l->bitmap, p) || gen_in_history(p->bitmap, l))
		return gen_v(GEN_SPLIT_BRAIN, 61, 1, 0);

	return gen_v(GEN_UNRELATED, 80, 0, 0);
}

/* Rows 90-92: the operator's discard-my-data, on related data only. */
static struct gen_verdict
gen_discard(const struct gen_side *l, const struct gen_side *p, struct gen_verdict v)
{
	struct gen_verdict w;

	if (!v.related || v.d == GEN_NO_SYNC || (!l->discard_my_data && !p->discard_my_data))
		return v;
	if (l->discard_my_data && p->discard_my_data)
		return gen_v(GEN_SPLIT_BRAIN, 90, 1, gen_is_full(v));
	w = gen_dir(l->discard_my_data ? -1 : 1, gen_is_full(v), l->discard_my_data ? 91 : 92);
	/* Already that way: keep the row that decided, it says more. */
	return w.d == v.d ? v : w;
}

/* Row 95: a side that is primary now is never a sync target. */
static struct gen_verdict
gen_guard_primary(const struct gen_side *l, const struct gen_side *p, struct gen_verdict v)
{
	int l_target = v.d == GEN_TARGET_BITMAP || v.d == GEN_TARGET_FULL;
	int p_target = v.d == GEN_SOURCE_BITMAP || v.d == GEN_SOURCE_FULL;

	if ((l_target && l->primary) || (p_target && p->primary))
		return gen_v(GEN_SPLIT_BRAIN, 95, v.related, gen_is_full(v));
	return v;
}

static struct gen_verdict
gen_judge(const struct gen_side *l, const struct gen_side *p)
{
	return gen_guard_primary(l, p, gen_discard(l, p, gen_table(l, p)));
}

/* The truth table.  Rows are tried in order; the first that holds decides.
 * L is local, P the peer; each row stands for itself and its mirror (L and
 * P swapped, SOURCE <-> TARGET).  "Empty" is a current of 4 (just created)
 * or 0; only other values are ever matched (see gen_names_data()).
 *
 * row  condition                               decision for L
 *      why
 * 10   both currents empty                     NO_SYNC
 *      no data on either side
 * 20   L empty, P not                          TARGET_FULL
 *      first sync after promote --force on P
 * 21   P empty, L not                          SOURCE_FULL     (mirror of 20)
 * L.current == P.current: one generation, only bitmap blocks can differ.
 * 30   neither crashed_primary nor local_changes, no oos_bits on either
 *      side, same uptodate                     NO_SYNC
 *      nothing was written apart
 * 31   both primary now                        SPLIT_BRAIN
 *      neither may be overwritten under its users
 * 32   only L primary now                      SOURCE_BITMAP
 *      a live primary's data is what its users see
 * 33   only L crashed_primary                  SOURCE_BITMAP
 *      its in-flight activity extents may exist on its disk only
 * 34   only L up to date                       SOURCE_BITMAP
 *      P stopped in the middle of a resync
 * 35   only L local_changes                    SOURCE_BITMAP
 *      L left primary with writes P lacks (pull-ahead, a write P
 *      failed) and has not moved on since
 * 36   both crashed_primary: L has the higher node_uuid
 *                                              SOURCE_BITMAP
 *      arbitrary, but both sides pick the same (equal: SPLIT_BRAIN)
 * 37   both local_changes                      SPLIT_BRAIN
 *      both wrote at one generation
 * 38   both up to date                         NO_SYNC
 *      oos_bits, but neither side wrote: the bits are stale (activity
 *      extents of an earlier primary role, a resync's leftovers), and the
 *      blocks they name hold the same data on both (DRBD's rule 40).
 *      Each side clears its bitmap (unless it was promoted meanwhile),
 *      so the bits do not live on.
 *      Unless a verify found them to differ and the repair did not end
 *      (verify_diff): SOURCE_BITMAP on the side that verified (both: the
 *      higher node_uuid, as 36; equal: SPLIT_BRAIN).  Nobody wrote those
 *      blocks, so either copy is as good; what matters is that they move.
 * 39   neither up to date: L has the higher node_uuid
 *                                              SOURCE_BITMAP
 *      as 36; the caller refuses a source that is not up to date, so
 *      nothing moves and no bit is cleared (equal: SPLIT_BRAIN)
 * L.current != P.current:
 * 40   P.bitmap == L.current                   TARGET_BITMAP
 *      P moved on from what L holds; P's bitmap names every block since
 * 41   L.bitmap == P.current                   SOURCE_BITMAP   (mirror of 40)
 * 42   40 and 41 at once                       SPLIT_BRAIN
 *      contradictory histories
 * 43   40, and L local_changes                SPLIT_BRAIN
 *      L left primary with writes P lacks, at the generation P moved on
 *      from: both changed
 * 50   L.current in P.history                  TARGET_FULL
 *      P moved on but lost the bitmap saying since when (a resync end
 *      only P recorded): nothing names the blocks that differ
 * 51   P.current in L.history                  SOURCE_FULL     (mirror of 50)
 * 52   50 and 51 at once                       SPLIT_BRAIN
 *      contradictory histories
 * 60   L.bitmap == P.bitmap                    SPLIT_BRAIN
 *      both moved on from the same generation
 * 61   L.bitmap in P.history, or P.bitmap in L.history
 *                                              SPLIT_BRAIN
 *      both moved on; one reset its bitmap on a resync end the other
 *      never recorded
 * 80   otherwise                               UNRELATED
 *      no generation in common: refuse
 * Then, on the decisions of rows 30-61 other than NO_SYNC (rows 10-21 and
 * 80 share no data, so discarding one side could not make them equal):
 * 90   both discard_my_data                    SPLIT_BRAIN
 *      nobody is left to be the source
 * 91   only L discard_my_data                  TARGET_BITMAP
 *      the operator chose; the caller merges both bitmaps, so every block
 *      either side changed moves.  TARGET_FULL where the decision was
 *      full (rows 50-52): no bitmap spans that gap
 * 92   only P discard_my_data                  SOURCE_BITMAP   (mirror of 91)
 * And last, on every decision:
 * 95   the target would be primary now         SPLIT_BRAIN
 *      never overwrite data under a live user
 *
 * Choices, and where they part from DRBD:
 *  - crashed_primary counts only between equal generations (row 33).
 *    After a failover the new primary's bitmap names the old primary's
 *    current, so row 40 makes the old primary target, and its activity
 *    extents, merged into the bitmap, are overwritten.
 *  - Two disks force-promoted apart from just-created metadata both have
 *    bitmap 4.  DRBD calls that split brain; here it is UNRELATED (row 80):
 *    they never held the same blocks, so resolving it with a bitmap resync
 *    (row 91, the policies) would leave them different.  Recovery: create-md
 *    on the side to discard, then row 20 makes a full sync.
 *  - What says "this side wrote" between equal generations (rows 30-39)
 *    and for row 43 is a durable record of the role, never oos_bits: a
 *    secondary's bits can be activity extents of its time as primary,
 *    folded in after a crash, or bits a resync cleared in memory only
 *    (the daemon now empties the activity map at demote and writes the
 *    bitmap at a resync end, but a crash can still fall between), and
 *    taking those for writes made false split brains (row 43) and let the
 *    node_uuid tie-break (old row 36) pick the stale side.  Like DRBD (its rule 40: same
 *    current, no crashed primary, no sync), bits that no record explains
 *    move nothing (row 38).  DRBD keeps them; here they are cleared, as
 *    a later demote would take bits left on a primary for its own writes
 *    (META_F_LOCAL_CHANGES).
 *  - Rows 35, 37 and 43 have no DRBD counterpart: DRBD moves a primary to
 *    a new current when it loses its peer; the daemon does the same when
 *    the primary has anything out of sync then (and with its first write
 *    alone otherwise), but a primary that is demoted or stopped while
 *    still connected, with writes the peer lacks (pull-ahead, a write the
 *    peer failed), leaves no primary; META_F_LOCAL_CHANGES, set then,
 *    stands for those writes.  A crashed primary's writes alone before
 *    the crash are covered by the rotation on peer loss.
 *  - Row 32 lets a primary win over a crashed peer at the same generation
 *    (DRBD does the same); it cannot happen while every promote moves
 *    current on.
 *  - discard_my_data steers every decision between related data, not only
 *    a split brain as in DRBD: the operator asked for this side's data to
 *    go.  Between equal data (NO_SYNC) there is nothing to discard.
 *  - Row 95 is DRBD's rr-conflict refusal, moved in here so that no
 *    caller can get it wrong. */
enum gen_decision
gen_compare(const struct gen_side *local, const struct gen_side *peer, int *rule)
{
	struct gen_verdict v = gen_judge(local, peer);

	if (rule != NULL)
		*rule = v.rule;
	return v.d;
}

const char *
gen_decision_name(enum gen_decision d)
{
	switch (d) {
	case GEN_NO_SYNC:
		return "no-sync";
	case GEN_SOURCE_BITMAP:
		return "source-bitmap";
	case GEN_TARGET_BITMAP:
		return "target-bitmap";
	case GEN_SOURCE_FULL:
		return "source-full";
	case GEN_TARGET_FULL:
		return "target-full";
	case GEN_SPLIT_BRAIN:
		return "split-brain";
	case GEN_UNRELATED:
		return "unrelated";
	}
	return "unknown";
}

/* Split-brain policies, DRBD's after-sb-0pri.  Only for a split brain, and
 * only when neither side is primary now (else SPLIT_BRAIN: a primary is
 * never picked as a target behind the operator's back):
 *  disconnect             SPLIT_BRAIN.
 *  discard-zero-changes   the side with oos_bits == 0 is target; both with
 *                         changes: SPLIT_BRAIN; neither with changes: the
 *                         data are equal, and the higher node_uuid is source
 *                         of a resync that moves nothing.  Not NO_SYNC: the
 *                         currents would stay different and every later
 *                         connect would find the same split brain; the
 *                         resync's end makes the target adopt the source's
 *                         current.  DRBD does the same.
 *  discard-least-changes  fewer oos_bits is target; equal: higher node_uuid
 *                         is source.
 * The resync is a bitmap one (the caller merges both bitmaps) unless the
 * split brain came from rows 42/52, or from a full decision turned into one
 * by rows 90/95.  Row 90 (both sides asked to discard) is settled too, as
 * DRBD applies after-sb before discard-my-data.  Equal node_uuids leave it
 * a SPLIT_BRAIN. */
enum gen_decision
gen_resolve_split_brain(const struct gen_side *local, const struct gen_side *peer,
			enum gen_sb_policy policy)
{
	struct gen_verdict v = gen_judge(local, peer);
	int dir;

	if (v.d != GEN_SPLIT_BRAIN)
		return v.d;
	if (local->primary || peer->primary)
		return GEN_SPLIT_BRAIN;
	switch (policy) {
	case GEN_SB_DISCARD_ZERO_CHANGES:
		if (local->oos_bits > 0 && peer->oos_bits > 0)
			return GEN_SPLIT_BRAIN;
		dir = gen_only(local->oos_bits > 0, peer->oos_bits > 0);
		break;
	case GEN_SB_DISCARD_LEAST_CHANGES:
		dir = (local->oos_bits > peer->oos_bits) - (local->oos_bits < peer->oos_bits);
		break;
	case GEN_SB_DISCONNECT:
	default:
		return GEN_SPLIT_BRAIN;
	}
	if (dir == 0)
		dir = gen_by_node_uuid(local, peer);
	if (dir == 0)
		return GEN_SPLIT_BRAIN;
	return gen_dir(dir, v.full, v.rule).d;
}
