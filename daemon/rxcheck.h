/* rxc: the checks on what the peer sends, after the wire decoders
 * (proto/px.c) and before anything it says touches the resource: a data
 * link's messages (daemon/link.c), the bitmap exchange and the STATEs of
 * the meta link (daemon/peer.c).  The decoders know one message; these
 * know this node: its size, its request limit, what it already received,
 * its own state.
 *
 * Pure: no sockets, threads, locks, logging or I/O; they depend on
 * proto/px.c and daemon/gen.c only, so a test or a fuzz target
 * (tests/fuzz/fuzz_lk_msg.c, fuzz_peer_bitmap.c, fuzz_peer_state.c) calls
 * them as the daemon does.  Every refusal ends the link, with why (one
 * line, never raw peer bytes) for the log. */
#ifndef BLKMIRROR_RXCHECK_H
#define BLKMIRROR_RXCHECK_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/gen.h"
#include "proto/px.h"

/* ---- data links ---- */

/* This node, as a data link sees it. */
struct rxc_limits {
	uint64_t size;              /* bytes of data (res->size) */
	uint32_t max_data;          /* largest request (max-io-size); its buffers hold this */
};

/* One data-link message that passed rxc_data_msg(). */
struct rxc_data {
	struct px_msg m;
	struct px_io io;            /* requests and OOS; zero otherwise */
	struct px_ack ack;          /* WRITE_ACK, FLUSH_ACK, RS_ACK, READ_DATA */
	struct px_csum csum;        /* CSUM */
	uint32_t fixed;             /* header and fixed part: what the buffer must hold */
	uint32_t data;              /* data bytes after the fixed part (WRITE,
				     * RS_DATA, READ_DATA with status 0) */
	int writes;                 /* WRITE, TRIM, RS_DATA: refused on a primary */
};

/* Checks the message at the head of a data link's receive buffer (avail
 * bytes at buf): a header px_hdr_decode accepts with lim->max_data, a type
 * a data link carries, its fixed part (px_io, px_ack, px_csum) decoded,
 * request ranges non-empty and inside lim->size, data payloads of exactly
 * the range's length and at most lim->max_data, a CSUM_REQ or READ_REQ of
 * at most max_data, TRIM, OOS, CSUM_REQ and READ_REQ without data, a
 * READ_DATA with a status carrying no data.  Nothing past the fixed part
 * is read.  Returns 1 with *out set, 0 when avail does not hold the fixed
 * part yet, or -EPROTO / -EMSGSIZE with why set.  What depends on the
 * link's own state is the caller's: the role (out->writes) and the
 * request an acknowledgement names (rxc_ack_check). */
int rxc_data_msg(const struct rxc_limits *lim, const void *buf, uint32_t avail,
		 struct rxc_data *out, char *why, size_t whylen);

/* An acknowledgement (WRITE_ACK, RECV_ACK, FLUSH_ACK, RS_ACK, CSUM,
 * READ_DATA) checked by rxc_data_msg, against the request it names: a
 * request of type req_type for [off, +len) that is still unanswered.  The
 * type must be the one it answers, a CSUM must be for the same range and a
 * READ_DATA with status 0 must carry exactly len bytes.  0 or -EPROTO with
 * why set. */
int rxc_ack_check(const struct rxc_data *d, uint16_t req_type, uint64_t off, uint32_t len,
		  char *why, size_t whylen);

/* ---- the bitmap exchange (meta link) ---- */

/* The receiving side of one exchange: the sender's bitmap of `bytes`
 * bytes arrives in order, from byte 0, in chunks of exactly `chunk` bytes
 * (the last one the rest), then BITMAP_DONE.  So it ends after
 * bytes / chunk + 2 messages at most, and no byte comes twice. */
struct rxc_bitmap {
	uint64_t bytes;             /* of the bitmap, the same on both nodes */
	uint64_t next;              /* the byte the next chunk must start at */
	uint32_t chunk;             /* PX_BITMAP_CHUNK; a test may pick less */
	int done;
};

void rxc_bitmap_init(struct rxc_bitmap *b, uint64_t bytes, uint32_t chunk);
/* Takes one message received during the exchange (header m, m->len
 * payload bytes at payload).  Returns 1 for a chunk: its *n bytes, at
 * payload + sizeof(struct px_bitmap), go at byte *off of the bitmap, with
 * *off + *n <= bytes; 0 for the BITMAP_DONE that ends it; -EPROTO with why
 * set for anything else: another type, a chunk out of order, of another
 * size, past the end, a BITMAP_DONE early, or any message after it. */
int rxc_bitmap_step(struct rxc_bitmap *b, const struct px_msg *m, const void *payload,
		    uint64_t *off, uint32_t *n, char *why, size_t whylen);

/* ---- STATE and SYNC_DONE (meta link) ---- */

/* A peer's STATE or SYNC_DONE (already through px_state_decode) against
 * this node's own (mine, as sent in the exchange): the fields a node can
 * send (role 0/1, a disk state, flags in META_F_ALL or
 * META_F_DISCARD_REQUESTED, generation ids 0, GEN_JUST_CREATED or a drawn
 * one >= 16 -- gen_current never 0 --, oos_bits within the bitmap), then
 * the same data size and granularity.  0, -EPROTO (a field no node sends)
 * or -EMEDIUMTYPE (the geometry differs), with why set. */
int rxc_state(const struct px_state *mine, const struct px_state *theirs, char *why,
	      size_t whylen);

/* What one connection does, decided from both STATEs. */
struct rxc_decision {
	enum gen_decision gen;      /* the generations' verdict, split-brain policy applied */
	int rule;                   /* gen_compare()'s row, for the log */
	enum gen_decision d;        /* what this connection does */
	char note[160];             /* why d is not gen, or why refused; "" if neither */
};

/* rxc_state(), then gen_compare() and the split-brain policy on both
 * sides' generations, roles, disks and flags (discard-my-data is each
 * side's META_F_DISCARD_REQUESTED as sent, so both nodes decide on the same
 * inputs), then what roles and disks forbid: a detached disk neither gives
 * nor takes a resync, both detached or both primary refuse, a source must
 * be up to date, a primary is never a target.  Returns 0 when the
 * connection goes on with out->d; -EUCLEAN for a split brain; else
 * -EPROTO, -EMEDIUMTYPE (rxc_state), -ENOLINK (unrelated data) or -EPERM
 * (roles or disks forbid it); out->note says why.  The peer, deciding
 * with the arguments swapped, reaches the mirror verdict. */
int rxc_decide(const struct px_state *mine, const struct px_state *theirs,
	       enum gen_sb_policy policy, struct rxc_decision *out);

#endif
