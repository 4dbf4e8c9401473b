/* libFuzzer target: the checks a data link makes on what the peer sends
 * (rxc_data_msg, rxc_ack_check in daemon/rxcheck.c), as lk_parse_one()
 * (daemon/link.c) calls them on its receive buffer.
 *
 * Input: byte 0 picks the node's size (in 4 KiB blocks, 1..256), byte 1
 * its max_data (a power of two, 512 .. 64 KiB), bytes 2..3 the requests
 * this node has outstanding (their types, for the acks); the rest is the
 * stream of messages.  Each message is checked at the head of what is
 * left, as the link does, then used as the link uses it, on memory of
 * exactly the size the checks promise: its data lands in a tag's buffer of
 * max_data bytes, its range on a "disk" of size bytes, a READ_DATA's data
 * in a request buffer of the READ_REQ's length.  So ASan reports any range
 * the checks let through that would land outside, and the properties below
 * (what the link relies on) are checked on every message accepted. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/rxcheck.h"
#include "proto/px.h"
#include "tests/fuzz/fuzz.h"

#define BLOCK 4096u

/* The request types a node sends on a data link, as the acks name them. */
static const uint16_t sent_types[] = { PX_WRITE, PX_TRIM, PX_FLUSH, PX_RS_DATA,
				       PX_CSUM_REQ, PX_READ_REQ };

struct node {
	struct rxc_limits lim;
	unsigned char *disk;        /* size bytes */
	unsigned char *tag;         /* one receive tag's buffer: max_data bytes */
	uint16_t outstanding[4];    /* the request type of slots 0..3 */
};

static void
check_request(struct node *n, const struct rxc_data *d, const unsigned char *data,
	      uint32_t have)
{
	FUZZ_CHECK(d->fixed == PX_HDR_SIZE + sizeof(struct px_io));
	FUZZ_CHECK(d->io.length > 0);
	FUZZ_CHECK(d->io.offset + d->io.length <= n->lim.size);
	FUZZ_CHECK(d->m.len == sizeof(struct px_io) + d->data);
	if (d->m.type == PX_WRITE || d->m.type == PX_RS_DATA) {
		FUZZ_CHECK(d->data == d->io.length && d->data <= n->lim.max_data);
		/* lk_parse_one: the data into the tag's buffer, then the disk. */
		memcpy(n->tag, data, have < d->data ? have : d->data);
		memcpy(n->disk + d->io.offset, n->tag, d->io.length);
	} else {
		FUZZ_CHECK(d->data == 0);
		if (d->m.type == PX_CSUM_REQ || d->m.type == PX_READ_REQ) {
			/* read from the disk into a tag, to hash or send back */
			FUZZ_CHECK(d->io.length <= n->lim.max_data);
			memcpy(n->tag, n->disk + d->io.offset, d->io.length);
		} else {	/* TRIM, OOS: a range of the disk */
			memset(n->disk + d->io.offset, 0, d->io.length);
		}
	}
	FUZZ_CHECK(d->writes == (d->m.type == PX_WRITE || d->m.type == PX_TRIM ||
				 d->m.type == PX_RS_DATA));
}

/* An ack, against each outstanding request in turn; a READ_DATA that fits
 * one is received into a buffer of that request's length. */
static void
check_ack(struct node *n, const struct rxc_data *d, const unsigned char *data, uint32_t have)
{
	char why[160];

	FUZZ_CHECK(!d->writes && d->io.length == 0);
	FUZZ_CHECK(d->fixed == PX_HDR_SIZE + (d->m.type == PX_READ_DATA ? sizeof(struct px_ack)
					      : d->m.len));
	if (d->m.type != PX_READ_DATA)
		FUZZ_CHECK(d->data == 0);
	else if (d->ack.status)
		FUZZ_CHECK(d->data == 0 && d->m.len == sizeof(struct px_ack));
	if (d->m.type != PX_RECV_ACK && d->m.type != PX_CSUM)
		FUZZ_CHECK(d->ack.status <= 0 && d->ack.status >= -4095);
	for (unsigned i = 0; i < 4; i++) {
		uint32_t len = (i + 1) * 512;
		uint64_t off = (uint64_t)i * BLOCK;
		unsigned char *buf;

		if (rxc_ack_check(d, n->outstanding[i], off, len, why, sizeof(why))) {
			FUZZ_CHECK(memchr(why, '\0', sizeof(why)) != NULL);
			continue;
		}
		if (d->m.type == PX_CSUM)
			FUZZ_CHECK(d->csum.offset == off && d->csum.length == len);
		if (d->m.type != PX_READ_DATA || d->ack.status)
			continue;
		FUZZ_CHECK(d->data == len);
		buf = malloc(len);	/* the READ_REQ's own buffer */
		if (!buf)
			continue;
		memcpy(buf, data, have < d->data ? have : d->data);
		free(buf);
	}
}

static void
run(struct node *n, const unsigned char *b, uint32_t len)
{
	char why[160];

	while (len) {
		struct rxc_data d;
		uint32_t have, used;
		int rc;

		/* As the link: the message at the head of its buffer.  A copy
		 * of exactly what is left, so a read past it is ASan's. */
		unsigned char *head = malloc(len);
		if (!head)
			return;
		memcpy(head, b, len);
		memset(why, 0, sizeof(why));
		rc = rxc_data_msg(&n->lim, head, len, &d, why, sizeof(why));
		if (rc <= 0) {
			FUZZ_CHECK(rc == 0 || rc == -EPROTO);
			FUZZ_CHECK(memchr(why, '\0', sizeof(why)) != NULL);
			if (rc == 0)
				FUZZ_CHECK(len < PX_HDR_SIZE + sizeof(struct px_csum));
			free(head);
			return;
		}
		FUZZ_CHECK(d.fixed >= PX_HDR_SIZE && d.fixed <= len);
		FUZZ_CHECK(d.fixed + d.data == PX_HDR_SIZE + d.m.len);
		FUZZ_CHECK(d.data <= n->lim.max_data);
		have = len - d.fixed;
		switch (d.m.type) {
		case PX_WRITE: case PX_RS_DATA: case PX_TRIM: case PX_CSUM_REQ: case PX_READ_REQ:
		case PX_OOS:
			check_request(n, &d, head + d.fixed, have);
			break;
		case PX_FLUSH:
			FUZZ_CHECK(d.fixed == PX_HDR_SIZE && d.data == 0 && !d.writes);
			break;
		default:
			check_ack(n, &d, head + d.fixed, have);
			break;
		}
		free(head);
		/* The data follows; what is missing would come from the socket. */
		used = d.fixed + (have < d.data ? have : d.data);
		b += used;
		len -= used;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct node n;

	if (size < 4 || size > (1u << 20))
		return 0;
	memset(&n, 0, sizeof(n));
	n.lim.size = (uint64_t)(data[0] % 256 + 1) * BLOCK;
	n.lim.max_data = 512u << (data[1] % 8);
	for (unsigned i = 0; i < 4; i++)
		n.outstanding[i] = sent_types[((data[2 + i / 2] >> (4 * (i % 2))) & 0xf) %
					      (sizeof(sent_types) / sizeof(sent_types[0]))];
	n.disk = malloc(n.lim.size);
	n.tag = malloc(n.lim.max_data);
	if (n.disk && n.tag)
		run(&n, data + 4, (uint32_t)(size - 4));
	free(n.disk);
	free(n.tag);
	return 0;
}
