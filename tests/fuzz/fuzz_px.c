/* libFuzzer target: the replication wire decoders (proto/px.c).
 *
 * The first input byte picks the decoder, the rest is its buffer.  Every
 * decoder is fed exactly the bytes that follow (a copy of that length on
 * the heap, so ASan sees a read past len), and whatever decodes is
 * encoded again and must give back the same bytes: decode(x) == ok
 * implies encode(decode(x)) == x, which is what the peer relies on when
 * it checks what it sent.  A byte of max_data rides along for the header. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/px.h"
#include "tests/fuzz/fuzz.h"

static void
fuzz_hdr(const uint8_t *b, size_t n, uint32_t max_data)
{
	unsigned char again[PX_HDR_SIZE];
	struct px_msg m;
	char why[128];

	if (n < PX_HDR_SIZE)
		return;
	if (px_hdr_decode(b, max_data, &m, why, sizeof(why)) != 0) {
		FUZZ_CHECK(memchr(why, '\0', sizeof(why)) != NULL);
		return;
	}
	FUZZ_CHECK(m.len <= px_max_len(m.type, max_data));
	FUZZ_CHECK(strcmp(px_type_name(m.type), "UNKNOWN") != 0);
	px_hdr_encode(again, m.type, m.flags, m.len, m.id);
	FUZZ_CHECK(memcmp(again, b, PX_HDR_SIZE) == 0);
}

static void
fuzz_io(const uint8_t *b, size_t n, int data)
{
	unsigned char again[sizeof(struct px_io)];
	struct px_io io;

	if ((data ? px_data_decode(b, (uint32_t)n, &io) : px_io_decode(b, (uint32_t)n, &io)) != 0)
		return;
	FUZZ_CHECK(n >= sizeof(io));
	FUZZ_CHECK(!data || io.length == n - sizeof(io));
	FUZZ_CHECK(io.offset + io.length >= io.offset);	/* no wrap */
	px_io_encode(again, io.offset, io.length);
	FUZZ_CHECK(memcmp(again, b, sizeof(again)) == 0);
}

static void
fuzz_ack(const uint8_t *b, size_t n)
{
	unsigned char again[sizeof(struct px_ack)];
	struct px_ack a;

	if (px_ack_decode(b, (uint32_t)n, &a) != 0)
		return;
	px_ack_encode(again, a.status);
	FUZZ_CHECK(n == sizeof(again) && memcmp(again, b, n) == 0);
}

static void
fuzz_state(const uint8_t *b, size_t n)
{
	unsigned char again[sizeof(struct px_state)];
	struct px_state s;

	if (px_state_decode(b, (uint32_t)n, &s) != 0)
		return;
	FUZZ_CHECK(s.role <= 1 && s.disk <= 4);
	FUZZ_CHECK(s.granularity >= 4096 && (s.granularity & (s.granularity - 1)) == 0);
	FUZZ_CHECK(s.data_size && s.data_size % 4096 == 0);
	px_state_encode(again, &s);
	FUZZ_CHECK(n == sizeof(again) && memcmp(again, b, n) == 0);
}

static void
fuzz_bitmap(const uint8_t *b, size_t n)
{
	unsigned char again[sizeof(struct px_bitmap)];
	struct px_bitmap bm;

	if (px_bitmap_decode(b, (uint32_t)n, &bm) != 0)
		return;
	FUZZ_CHECK(n >= sizeof(bm) && bm.first_bit % 8 == 0);
	px_bitmap_encode(again, bm.first_bit);
	FUZZ_CHECK(memcmp(again, b, sizeof(again)) == 0);
}

static void
fuzz_csum(const uint8_t *b, size_t n)
{
	unsigned char again[sizeof(struct px_csum)];
	struct px_csum c;

	if (px_csum_decode(b, (uint32_t)n, &c) != 0)
		return;
	px_csum_encode(again, c.offset, c.length, c.sha256);
	FUZZ_CHECK(n == sizeof(again) && memcmp(again, b, n) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t max_data;
	uint8_t *b;
	size_t n;

	if (size < 2)
		return 0;
	/* 0: the hard ceiling; else a small power of two, so lengths near
	 * the limit are reachable. */
	max_data = data[1] == 0 ? PX_MAX_DATA : 1u << (data[1] % 26);
	n = size - 2;
	b = malloc(n ? n : 1);
	if (!b)
		return 0;
	memcpy(b, data + 2, n);
	switch (data[0] % 8) {
	case 0: fuzz_hdr(b, n, max_data); break;
	case 1: fuzz_io(b, n, 0); break;
	case 2: fuzz_io(b, n, 1); break;
	case 3: fuzz_ack(b, n); break;
	case 4: fuzz_state(b, n); break;
	case 5: fuzz_bitmap(b, n); break;
	case 6: fuzz_csum(b, n); break;
	case 7: /* a NULL buffer of length 0 is allowed by the contract */
		px_io_decode(NULL, 0, &(struct px_io){0});
		px_ack_decode(NULL, 0, &(struct px_ack){0});
		px_bitmap_decode(NULL, 0, &(struct px_bitmap){0});
		(void)px_max_len((uint16_t)n, max_data);
		break;
	}
	free(b);
	return 0;
}
