/* gen: what two nodes do when they connect, decided from their generation
 * identifiers alone.  One pure function; its truth table is the comment
 * above gen_compare() in gen.c.
 *
 * Generation identifiers (DRBD's UUIDs): `current` names the data
 * generation a node holds; a node that starts writing without its peer
 * (promote while disconnected) moves `current` to `bitmap` — "what the peer
 * last had in common with me, my bitmap tracks the changes since" — and
 * draws a new `current`; older values shift into `history`.  A value of 4
 * (GEN_JUST_CREATED) means fresh metadata that never held data; 0 means
 * none. */
#ifndef BLKMIRROR_GEN_H
#define BLKMIRROR_GEN_H

#include <stdint.h>

#define GEN_JUST_CREATED 4ull
#define GEN_HISTORY 4

struct gen_side {
	uint64_t current;
	uint64_t bitmap;
	uint64_t history[GEN_HISTORY];
	uint64_t node_uuid;         /* breaks ties; never equal on two nodes */
	uint64_t oos_bits;          /* bits set in this side's bitmap: blocks that may
				     * differ, never by itself evidence of a write */
	int primary;                /* role now */
	int crashed_primary;        /* META_F_CRASHED_PRIMARY: was primary, stopped uncleanly */
	int local_changes;          /* META_F_LOCAL_CHANGES: left primary with writes of
				     * its own the peer may lack, at this current */
	int verify_diff;            /* META_F_VERIFY_DIFF: a verify found the bits to
				     * name blocks that really differ */
	int discard_my_data;        /* operator asked this side to become sync target */
	int uptodate;               /* disk state uptodate (not inconsistent/outdated) */
};

enum gen_decision {
	GEN_NO_SYNC,            /* same data; nothing to move */
	GEN_SOURCE_BITMAP,      /* we are sync source; only bitmap blocks move */
	GEN_TARGET_BITMAP,      /* we are sync target; only bitmap blocks move */
	GEN_SOURCE_FULL,        /* we are sync source; every block moves */
	GEN_TARGET_FULL,        /* we are sync target; every block moves */
	GEN_SPLIT_BRAIN,        /* both changed the data apart: move nothing */
	GEN_UNRELATED,          /* no common history: refuse to connect */
};

/* Decides from local's point of view; the peer, calling it with the
 * arguments swapped, reaches the mirror decision (SOURCE <-> TARGET, the
 * others equal).  *rule (may be NULL) gets the number of the truth-table
 * row that decided, for the log.  `uptodate` only breaks ties between
 * equal generations: the caller still refuses to become sync source while
 * its own disk is not up to date, as DRBD does. */
enum gen_decision gen_compare(const struct gen_side *local, const struct gen_side *peer,
			      int *rule);
const char *gen_decision_name(enum gen_decision d);

/* What to do with a split brain when neither side is primary now (DRBD's
 * after-sb-0pri). */
enum gen_sb_policy {
	GEN_SB_DISCONNECT,              /* leave it to the operator */
	GEN_SB_DISCARD_ZERO_CHANGES,    /* a side that changed nothing apart is target */
	GEN_SB_DISCARD_LEAST_CHANGES,   /* the side with fewer oos_bits is target */
};

/* gen_compare(), then policy applied to a GEN_SPLIT_BRAIN when neither
 * side is primary now; any other decision comes back unchanged, so the
 * caller may call this instead of gen_compare().  Mirrored like
 * gen_compare().  The rules are the comment above it in gen.c. */
enum gen_decision gen_resolve_split_brain(const struct gen_side *local,
					  const struct gen_side *peer,
					  enum gen_sb_policy policy);

#endif
