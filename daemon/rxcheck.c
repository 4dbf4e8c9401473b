#include "daemon/rxcheck.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "daemon/meta.h"
#include "daemon/rsm.h"

#define RXC_IO_HDR (PX_HDR_SIZE + (uint32_t)sizeof(struct px_io))

static int
rxc_fail(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why && whylen) {
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return -EPROTO;
}

/* ---- data links ---- */

/* A range the peer asks this node to act on: non-empty and on the disk. */
static int
rxc_range_ok(const struct rxc_limits *lim, const struct px_io *io)
{
	return io->length != 0 && io->offset <= lim->size && io->length <= lim->size - io->offset;
}

/* The fixed part of an acknowledgement, decoded. */
static int
rxc_ack_part(const struct px_msg *m, const unsigned char *p, struct rxc_data *out, char *why,
	     size_t whylen)
{
	switch (m->type) {
	case PX_RECV_ACK:
		return 0;
	case PX_CSUM:
		if (px_csum_decode(p, m->len, &out->csum))
			return rxc_fail(why, whylen, "bad CSUM payload");
		return 0;
	case PX_READ_DATA:
		if (px_ack_decode(p, sizeof(struct px_ack), &out->ack))
			return rxc_fail(why, whylen, "bad READ_DATA status");
		out->data = m->len - (uint32_t)sizeof(struct px_ack);
		if (out->ack.status && out->data)
			return rxc_fail(why, whylen, "READ_DATA with status %d and %u data bytes",
					out->ack.status, out->data);
		return 0;
	default:
		if (px_ack_decode(p, m->len, &out->ack))
			return rxc_fail(why, whylen, "bad %s status", px_type_name(m->type));
		return 0;
	}
}

/* The px_io of a request or OOS, checked against this node. */
static int
rxc_io_part(const struct rxc_limits *lim, const struct px_msg *m, const unsigned char *p,
	    struct rxc_data *out, char *why, size_t whylen)
{
	const char *name = px_type_name(m->type);
	int data = m->type == PX_WRITE || m->type == PX_RS_DATA;

	if (px_io_decode(p, sizeof(struct px_io), &out->io))
		return rxc_fail(why, whylen, "bad %s header", name);
	if (!data && m->len != sizeof(struct px_io))
		return rxc_fail(why, whylen, "%s with a payload", name);
	if (!rxc_range_ok(lim, &out->io))
		return rxc_fail(why, whylen, "%s range %llu+%u is invalid", name,
				(unsigned long long)out->io.offset, out->io.length);
	/* Each lands in one buffer of max_data bytes. */
	if (out->io.length > lim->max_data && m->type != PX_TRIM && m->type != PX_OOS)
		return rxc_fail(why, whylen, "%s of %u bytes", name, out->io.length);
	if (data && m->len != sizeof(struct px_io) + out->io.length)
		return rxc_fail(why, whylen, "%s of %u bytes with %u payload bytes", name,
				out->io.length, m->len);
	if (data)
		out->data = out->io.length;
	return 0;
}

/* Bytes of header and fixed part for a type a data link carries; 0 for
 * any other type. */
static uint32_t
rxc_fixed_len(const struct px_msg *m)
{
	switch (m->type) {
	case PX_WRITE_ACK: case PX_FLUSH_ACK: case PX_RS_ACK: case PX_RECV_ACK: case PX_CSUM:
		return PX_HDR_SIZE + m->len;	/* exact lengths: px_hdr_decode */
	case PX_READ_DATA:
		return PX_HDR_SIZE + (uint32_t)sizeof(struct px_ack);
	case PX_FLUSH:
		return PX_HDR_SIZE;
	case PX_WRITE: case PX_RS_DATA: case PX_TRIM: case PX_CSUM_REQ: case PX_READ_REQ:
	case PX_OOS:
		return RXC_IO_HDR;
	}
	return 0;
}

int
rxc_data_msg(const struct rxc_limits *lim, const void *buf, uint32_t avail,
	     struct rxc_data *out, char *why, size_t whylen)
{
	const unsigned char *b = buf;
	struct px_msg m;

	if (avail < PX_HDR_SIZE)
		return 0;
	if (px_hdr_decode(b, lim->max_data, &m, why, whylen))
		return -EPROTO;
	memset(out, 0, sizeof(*out));
	out->m = m;
	out->fixed = rxc_fixed_len(&m);
	out->writes = m.type == PX_WRITE || m.type == PX_TRIM || m.type == PX_RS_DATA;
	if (!out->fixed)
		return rxc_fail(why, whylen, "unexpected %s on a data link", px_type_name(m.type));
	if (avail < out->fixed)
		return 0;
	switch (m.type) {
	case PX_FLUSH:
		return 1;
	case PX_WRITE: case PX_RS_DATA: case PX_TRIM: case PX_CSUM_REQ: case PX_READ_REQ:
	case PX_OOS:
		return rxc_io_part(lim, &m, b + PX_HDR_SIZE, out, why, whylen) ?: 1;
	default:
		return rxc_ack_part(&m, b + PX_HDR_SIZE, out, why, whylen) ?: 1;
	}
}

/* The request type an acknowledgement answers. */
static int
rxc_answers(uint16_t ack_type, uint16_t req_type)
{
	switch (ack_type) {
	case PX_WRITE_ACK:
	case PX_RECV_ACK:  return req_type == PX_WRITE || req_type == PX_TRIM;
	case PX_FLUSH_ACK: return req_type == PX_FLUSH;
	case PX_RS_ACK:    return req_type == PX_RS_DATA;
	case PX_CSUM:      return req_type == PX_CSUM_REQ;
	case PX_READ_DATA: return req_type == PX_READ_REQ;
	}
	return 0;
}

int
rxc_ack_check(const struct rxc_data *d, uint16_t req_type, uint64_t off, uint32_t len,
	      char *why, size_t whylen)
{
	const char *name = px_type_name(d->m.type);

	if (!rxc_answers(d->m.type, req_type))
		return rxc_fail(why, whylen, "%s for a request never sent", name);
	if (d->m.type == PX_CSUM && (d->csum.offset != off || d->csum.length != len))
		return rxc_fail(why, whylen, "CSUM for %llu+%u answers a request for %llu+%u",
				(unsigned long long)d->csum.offset, d->csum.length,
				(unsigned long long)off, len);
	if (d->m.type == PX_READ_DATA && !d->ack.status && d->data != len)
		return rxc_fail(why, whylen, "READ_DATA of %u bytes answers a READ_REQ of %u",
				d->data, len);
	return 0;
}

/* ---- the bitmap exchange ---- */

void
rxc_bitmap_init(struct rxc_bitmap *b, uint64_t bytes, uint32_t chunk)
{
	memset(b, 0, sizeof(*b));
	b->bytes = bytes;
	b->chunk = chunk ? chunk : PX_BITMAP_CHUNK;
}

int
rxc_bitmap_step(struct rxc_bitmap *b, const struct px_msg *m, const void *payload,
		uint64_t *off, uint32_t *n, char *why, size_t whylen)
{
	uint64_t want = b->bytes - b->next;
	struct px_bitmap bm;
	uint32_t got;

	if (b->done)
		return rxc_fail(why, whylen, "%s after BITMAP_DONE", px_type_name(m->type));
	if (m->type == PX_BITMAP_DONE) {
		if (b->next != b->bytes)
			return rxc_fail(why, whylen, "BITMAP_DONE after %llu of %llu bytes",
					(unsigned long long)b->next,
					(unsigned long long)b->bytes);
		b->done = 1;
		return 0;
	}
	if (m->type != PX_BITMAP)
		return rxc_fail(why, whylen, "%s during the bitmap exchange",
				px_type_name(m->type));
	if (px_bitmap_decode(payload, m->len, &bm))
		return rxc_fail(why, whylen, "bad BITMAP chunk");
	got = m->len - (uint32_t)sizeof(struct px_bitmap);
	if (want > b->chunk)
		want = b->chunk;
	/* In order and whole: a duplicate, a gap or an overlap is as wrong
	 * as a chunk past the end, and the exchange stays bounded. */
	if (bm.first_bit / 8 != b->next || got != want || !got)
		return rxc_fail(why, whylen, "BITMAP chunk of %u bytes at bit %llu, expected %llu "
				"bytes at bit %llu", got, (unsigned long long)bm.first_bit,
				(unsigned long long)want, (unsigned long long)b->next * 8);
	*off = b->next;
	*n = got;
	b->next += got;
	return 1;
}

/* ---- STATE ---- */

/* 0 (none), "just created", or one meta_new_gen() draws. */
static int
rxc_gen_ok(uint64_t g)
{
	return g == 0 || g == GEN_JUST_CREATED || g >= 16;
}

static int
rxc_gens_ok(const struct px_state *s)
{
	if (s->gen_current == 0 || !rxc_gen_ok(s->gen_current) || !rxc_gen_ok(s->gen_bitmap))
		return 0;
	for (unsigned i = 0; i < PX_HISTORY; i++)
		if (!rxc_gen_ok(s->gen_history[i]))
			return 0;
	return 1;
}

int
rxc_state(const struct px_state *mine, const struct px_state *theirs, char *why,
	  size_t whylen)
{
	const struct px_state *t = theirs;
	uint64_t nbits;

	if (t->role > 1 || t->disk > RSM_D_FAILED)
		return rxc_fail(why, whylen, "STATE with role %u, disk %u", t->role, t->disk);
	if (t->flags & ~(META_F_ALL | META_F_DISCARD_REQUESTED))
		return rxc_fail(why, whylen, "STATE with unknown flags 0x%x",
				t->flags & ~(META_F_ALL | META_F_DISCARD_REQUESTED));
	if (!rxc_gens_ok(t))
		return rxc_fail(why, whylen, "STATE with a reserved generation id");
	if (t->granularity < 4096 || (t->granularity & (t->granularity - 1)) ||
	    t->data_size == 0 || t->data_size % 4096)
		return rxc_fail(why, whylen, "STATE with data size %llu, granularity %u",
				(unsigned long long)t->data_size, t->granularity);
	nbits = t->data_size / t->granularity + !!(t->data_size % t->granularity);
	if (t->oos_bits > nbits)
		return rxc_fail(why, whylen, "STATE with %llu bits out of sync of %llu",
				(unsigned long long)t->oos_bits, (unsigned long long)nbits);
	if (t->data_size != mine->data_size || t->granularity != mine->granularity) {
		if (why && whylen)
			snprintf(why, whylen, "disk geometry differs (peer %llu bytes, granularity "
				 "%u; here %llu, %u)", (unsigned long long)t->data_size,
				 t->granularity, (unsigned long long)mine->data_size,
				 mine->granularity);
		return -EMEDIUMTYPE;
	}
	return 0;
}

static void
rxc_gen_side(const struct px_state *st, struct gen_side *g)
{
	memset(g, 0, sizeof(*g));
	g->current = st->gen_current;
	g->bitmap = st->gen_bitmap;
	memcpy(g->history, st->gen_history, sizeof(g->history));
	g->node_uuid = st->node_uuid;
	g->oos_bits = st->oos_bits;
	g->primary = st->role;
	g->crashed_primary = !!(st->flags & META_F_CRASHED_PRIMARY);
	g->local_changes = !!(st->flags & META_F_LOCAL_CHANGES);
	g->verify_diff = !!(st->flags & META_F_VERIFY_DIFF);
	g->discard_my_data = !!(st->flags & META_F_DISCARD_REQUESTED);
	g->uptodate = st->disk == RSM_D_UPTODATE;
}

static int
rxc_detached(unsigned disk)
{
	return disk == RSM_D_FAILED || disk == RSM_D_DISKLESS;
}

static int
rxc_is_source(enum gen_decision d)
{
	return d == GEN_SOURCE_BITMAP || d == GEN_SOURCE_FULL;
}

static int
rxc_is_target(enum gen_decision d)
{
	return d == GEN_TARGET_BITMAP || d == GEN_TARGET_FULL;
}

static int
rxc_refuse(struct rxc_decision *out, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out->note, sizeof(out->note), fmt, ap);
	va_end(ap);
	return rc;
}

/* What roles and disks make of the generations' verdict. */
static int
rxc_roles(const struct px_state *mine, const struct px_state *theirs, struct rxc_decision *out)
{
	enum gen_decision d = out->gen;

	if (rxc_detached(mine->disk) || rxc_detached(theirs->disk)) {
		if (rxc_detached(mine->disk) && rxc_detached(theirs->disk))
			return rxc_refuse(out, -EPERM, "the disks of both nodes are detached");
		snprintf(out->note, sizeof(out->note), "%s disk is detached: no resync",
			 rxc_detached(mine->disk) ? "this node's" : "the peer's");
		d = GEN_NO_SYNC;
	}
	if (mine->role && theirs->role)
		return rxc_refuse(out, -EUCLEAN, "both nodes are primary");
	if (d == GEN_SPLIT_BRAIN)
		return rxc_refuse(out, -EUCLEAN, "both nodes changed the data while apart");
	if (d == GEN_UNRELATED)
		return rxc_refuse(out, -ENOLINK, "the peer's data is unrelated to ours "
				  "(no common generation)");
	if (rxc_is_source(d) && mine->disk != RSM_D_UPTODATE)
		return rxc_refuse(out, -EPERM, "this node would be sync source but its data is "
				  "not up to date");
	if (rxc_is_target(d) && theirs->disk != RSM_D_UPTODATE)
		return rxc_refuse(out, -EPERM, "the peer would be sync source but its data is "
				  "not up to date");
	if (mine->role && rxc_is_target(d))
		return rxc_refuse(out, -EPERM, "this node is primary but would have to become "
				  "sync target: demote it");
	if (theirs->role && rxc_is_source(d))
		return rxc_refuse(out, -EPERM, "the peer is primary but would have to become "
				  "sync target");
	out->d = d;
	return 0;
}

int
rxc_decide(const struct px_state *mine, const struct px_state *theirs,
	   enum gen_sb_policy policy, struct rxc_decision *out)
{
	struct gen_side a, b;
	int rc;

	memset(out, 0, sizeof(*out));
	out->gen = out->d = GEN_UNRELATED;
	rc = rxc_state(mine, theirs, out->note, sizeof(out->note));
	if (rc)
		return rc;
	rxc_gen_side(mine, &a);
	rxc_gen_side(theirs, &b);
	out->gen = gen_compare(&a, &b, &out->rule);
	if (out->gen == GEN_SPLIT_BRAIN)
		out->gen = gen_resolve_split_brain(&a, &b, policy);
	return rxc_roles(mine, theirs, out);
}
