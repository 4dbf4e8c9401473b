/* libFuzzer target: the receiving side of the bitmap exchange
 * (rxc_bitmap_step in daemon/rxcheck.c), as peer_recv_bitmap()
 * (daemon/peer.c) drives it on the meta link.
 *
 * Input: bytes 0..1 the size of this node's bitmap (1 .. 65536 bytes),
 * byte 2 the chunk size (1 .. 256 bytes, so that several chunks fit in an
 * input; the daemon's is PX_BITMAP_CHUNK), then the messages the peer
 * sends, each a header and its payload as px_recv_s reads them (a header
 * px_hdr_decode refuses ends the exchange, as it ends the link).  Every
 * chunk accepted is ORed into a bitmap of exactly the size given, as
 * dm_bitmap_or does, so ASan reports one that lands outside.  Properties:
 * chunks come in order without gap or overlap, each byte once; the
 * exchange ends only with every byte received, after at most
 * bytes / chunk + 2 messages; nothing is accepted after it ended. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/rxcheck.h"
#include "proto/px.h"
#include "tests/fuzz/fuzz.h"

/* struct px_bitmap's first_bit, read here from the wire format. */
static uint64_t
first_bit(const unsigned char *p)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rxc_bitmap rb;
	unsigned char *bitmap, *seen;
	uint64_t bytes, got = 0, msgs = 0;
	uint32_t chunk;
	int done = 0;

	if (size < 3)
		return 0;
	bytes = (uint64_t)(data[0] | data[1] << 8) + 1;
	chunk = (uint32_t)data[2] + 1;
	data += 3;
	size -= 3;
	bitmap = calloc(bytes, 1);
	seen = calloc(bytes, 1);
	if (!bitmap || !seen)
		goto out;
	rxc_bitmap_init(&rb, bytes, chunk);
	while (size >= PX_HDR_SIZE) {
		struct px_msg m;
		unsigned char *payload;
		char why[160];
		uint64_t off = 0;
		uint32_t n = 0;
		int rc;

		if (px_hdr_decode(data, PX_MAX_DATA, &m, NULL, 0) ||
		    m.len > sizeof(struct px_bitmap) + PX_BITMAP_CHUNK ||
		    m.len > size - PX_HDR_SIZE)
			break;	/* px_recv_s fails: the link ends */
		/* Exactly the payload, as px_recv_s's buffer holds it. */
		payload = malloc(m.len ? m.len : 1);
		if (!payload)
			break;
		memcpy(payload, data + PX_HDR_SIZE, m.len);
		data += PX_HDR_SIZE + m.len;
		size -= PX_HDR_SIZE + m.len;
		memset(why, 0, sizeof(why));
		rc = rxc_bitmap_step(&rb, &m, payload, &off, &n, why, sizeof(why));
		msgs++;
		if (rc < 0) {
			FUZZ_CHECK(rc == -EPROTO && memchr(why, '\0', sizeof(why)) && why[0]);
			free(payload);
			break;
		}
		FUZZ_CHECK(!done);
		FUZZ_CHECK(msgs <= bytes / chunk + 2);
		if (rc == 0) {
			FUZZ_CHECK(m.type == PX_BITMAP_DONE && got == bytes);
			done = 1;
			free(payload);
			continue;	/* whatever follows must be refused */
		}
		FUZZ_CHECK(rc == 1 && m.type == PX_BITMAP);
		FUZZ_CHECK(off == got && n > 0 && n <= chunk && off + n <= bytes);
		FUZZ_CHECK(first_bit(payload) == off * 8);	/* where the peer put it */
		FUZZ_CHECK(n == chunk || off + n == bytes);
		for (uint32_t i = 0; i < n; i++) {	/* dm_bitmap_or */
			FUZZ_CHECK(!seen[off + i]);
			seen[off + i] = 1;
			bitmap[off + i] |= payload[sizeof(struct px_bitmap) + i];
		}
		got += n;
		free(payload);
	}
out:
	free(bitmap);
	free(seen);
	return 0;
}
