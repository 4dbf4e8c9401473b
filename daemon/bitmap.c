/* bm: see bitmap.h.
 *
 * Bits live in 64-bit words kept little endian in memory, so the storage is
 * byte for byte the on-disk format (bit i is byte i/8, bit i%8) on any host
 * and can be written as is; le64toh/htole64 are no-ops on x86 and arm64.
 * Every operation that changes bits adjusts b->count, so bm_count() never
 * scans.  Bits at or past nbits are always zero (bm_loaded() restores that
 * after a raw load), which lets the scans run over whole words. */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/bitmap.h"
#include "lib/log.h"
#include "lib/util.h"

#define BM_MAGIC      0x626d6170u	/* "bmap" */
#define BM_PAGE       4096u
#define BM_WORD_BITS  64u
#define BM_PAGE_WORDS (BM_PAGE / sizeof(uint64_t))

struct bm {
	uint32_t  magic;	/* BM_MAGIC while alive; catches stale and wild pointers */
	uint64_t  nbits;
	uint64_t  count;	/* set bits, exact after every change */
	uint64_t *words;	/* nwords_alloc LE words, 4 KiB aligned, NULL if nbits == 0 */
	size_t    nwords;	/* words holding bits < nbits: ceil(nbits / 64) */
	size_t    bytes;	/* storage size, a multiple of BM_PAGE */
	size_t    npages;	/* bytes / BM_PAGE */
	uint64_t *dirty;	/* one bit per page, host order: changed since written */
	size_t    ndirty;	/* words in dirty: ceil(npages / 64) */
};

static uint64_t
bm_div_up(uint64_t x, uint64_t d)
{
	/* Not (x + d - 1) / d: x may be close to UINT64_MAX. */
	return x / d + (x % d != 0);
}

static uint64_t
bm_word(const struct bm *b, size_t w)
{
	return le64toh(b->words[w]);
}

static void
bm_mark_word_dirty(struct bm *b, size_t w)
{
	size_t page = w / BM_PAGE_WORDS;

	b->dirty[page / BM_WORD_BITS] |= 1ull << (page % BM_WORD_BITS);
}

int
bm_new(struct bm **out, uint64_t nbits)
{
	struct bm *b;
	uint64_t bytes;
	void *mem;

	bytes = ALIGN_UP(bm_div_up(nbits, 8), (uint64_t)BM_PAGE);
	if (bytes > SIZE_MAX)
		return -ENOMEM;
	b = calloc(1, sizeof(*b));
	if (b == NULL)
		return -ENOMEM;
	b->nbits = nbits;
	b->nwords = (size_t)bm_div_up(nbits, BM_WORD_BITS);
	b->bytes = (size_t)bytes;
	b->npages = b->bytes / BM_PAGE;
	b->ndirty = (size_t)bm_div_up(b->npages, BM_WORD_BITS);
	if (b->bytes > 0) {
		/* 4 KiB aligned so the storage can go straight to an O_DIRECT fd. */
		if (posix_memalign(&mem, BM_PAGE, b->bytes) != 0) {
			free(b);
			return -ENOMEM;
		}
		memset(mem, 0, b->bytes);
		b->words = mem;
	}
	b->dirty = calloc(b->ndirty ? b->ndirty : 1, sizeof(uint64_t));
	if (b->dirty == NULL) {
		free(b->words);
		free(b);
		return -ENOMEM;
	}
	b->magic = BM_MAGIC;
	*out = b;
	return 0;
}

void
bm_free(struct bm *b)
{
	if (b == NULL)
		return;
	VERIFY(b->magic == BM_MAGIC);
	b->magic = 0;	/* a second bm_free or a use after free trips VERIFY */
	free(b->dirty);
	free(b->words);
	free(b);
}

uint64_t
bm_nbits(const struct bm *b)
{
	VERIFY(b->magic == BM_MAGIC);
	return b->nbits;
}

uint64_t
bm_count(const struct bm *b)
{
	VERIFY(b->magic == BM_MAGIC);
	return b->count;
}

int
bm_test(const struct bm *b, uint64_t bit)
{
	VERIFY(b->magic == BM_MAGIC);
	/* Like the range operations, bits past the end read as clear. */
	if (bit >= b->nbits)
		return 0;
	return (bm_word(b, (size_t)(bit / BM_WORD_BITS)) >> (bit % BM_WORD_BITS)) & 1;
}

/* Sets (set != 0) or clears [first, first + n) clipped to nbits, a word at a
 * time; returns the number of bits that changed. */
static uint64_t
bm_change_range(struct bm *b, uint64_t first, uint64_t n, int set)
{
	uint64_t end, changed = 0;
	size_t w, wfirst, wlast;

	if (first >= b->nbits || n == 0)
		return 0;
	end = n > b->nbits - first ? b->nbits : first + n;
	wfirst = (size_t)(first / BM_WORD_BITS);
	wlast = (size_t)((end - 1) / BM_WORD_BITS);
	for (w = wfirst; w <= wlast; w++) {
		uint64_t mask = ~0ull, old, nw;

		if (w == wfirst)
			mask &= ~0ull << (first % BM_WORD_BITS);
		if (w == wlast && end % BM_WORD_BITS != 0)
			mask &= ~0ull >> (BM_WORD_BITS - end % BM_WORD_BITS);
		old = bm_word(b, w);
		nw = set ? old | mask : old & ~mask;
		if (nw == old)
			continue;	/* unchanged words do not dirty their page */
		b->words[w] = htole64(nw);
		changed += (uint64_t)__builtin_popcountll(old ^ nw);
		bm_mark_word_dirty(b, w);
	}
	if (set)
		b->count += changed;
	else
		b->count -= changed;
	return changed;
}

uint64_t
bm_set_range(struct bm *b, uint64_t first, uint64_t n)
{
	VERIFY(b->magic == BM_MAGIC);
	return bm_change_range(b, first, n, 1);
}

uint64_t
bm_clear_range(struct bm *b, uint64_t first, uint64_t n)
{
	VERIFY(b->magic == BM_MAGIC);
	return bm_change_range(b, first, n, 0);
}

/* Next bit at or after from whose value is set (want_set) or clear. */
static uint64_t
bm_next(const struct bm *b, uint64_t from, int want_set)
{
	uint64_t flip = want_set ? 0 : ~0ull;
	uint64_t word, bit;
	size_t w;

	if (from >= b->nbits)
		return b->nbits;
	w = (size_t)(from / BM_WORD_BITS);
	word = (bm_word(b, w) ^ flip) & (~0ull << (from % BM_WORD_BITS));
	while (word == 0) {
		if (++w >= b->nwords)
			return b->nbits;
		word = bm_word(b, w) ^ flip;
	}
	bit = (uint64_t)w * BM_WORD_BITS + (uint64_t)__builtin_ctzll(word);
	/* Looking for clear bits, the zero tail of the last word matches at
	 * nbits itself; the clamp also covers raw storage scribbled on
	 * before bm_loaded(). */
	return MIN(bit, b->nbits);
}

uint64_t
bm_next_set(const struct bm *b, uint64_t from)
{
	VERIFY(b->magic == BM_MAGIC);
	return bm_next(b, from, 1);
}

uint64_t
bm_next_clear(const struct bm *b, uint64_t from)
{
	VERIFY(b->magic == BM_MAGIC);
	return bm_next(b, from, 0);
}

int
bm_or(struct bm *b, const struct bm *other)
{
	size_t w;

	VERIFY(b->magic == BM_MAGIC);
	VERIFY(other->magic == BM_MAGIC);
	if (other->nbits != b->nbits)
		return -EINVAL;
	for (w = 0; w < b->nwords; w++) {
		uint64_t old = bm_word(b, w);
		uint64_t nw = old | bm_word(other, w);

		if (nw == old)
			continue;
		b->words[w] = htole64(nw);
		b->count += (uint64_t)__builtin_popcountll(old ^ nw);
		bm_mark_word_dirty(b, w);
	}
	return 0;
}

void *
bm_data(struct bm *b)
{
	VERIFY(b->magic == BM_MAGIC);
	return b->words;
}

size_t
bm_bytes(const struct bm *b)
{
	VERIFY(b->magic == BM_MAGIC);
	return b->bytes;
}

void
bm_loaded(struct bm *b)
{
	uint64_t count = 0;
	size_t w;

	VERIFY(b->magic == BM_MAGIC);
	if (b->bytes == 0)
		return;
	/* Storage read from disk may carry garbage past nbits (an older,
	 * larger bitmap); the scans rely on that tail being zero. */
	if (b->nbits % BM_WORD_BITS != 0)
		b->words[b->nwords - 1] &= htole64(~0ull >> (BM_WORD_BITS - b->nbits % BM_WORD_BITS));
	memset(b->words + b->nwords, 0, b->bytes - b->nwords * sizeof(uint64_t));
	for (w = 0; w < b->nwords; w++)
		count += (uint64_t)__builtin_popcountll(b->words[w]);
	b->count = count;
	/* What was just read is what is on disk: nothing to write back. */
	memset(b->dirty, 0, b->ndirty * sizeof(uint64_t));
}

size_t
bm_npages(const struct bm *b)
{
	VERIFY(b->magic == BM_MAGIC);
	return b->npages;
}

/* Page numbers come from bm_next_dirty_page() or a loop bounded by
 * bm_npages(), so one out of range is a bug in the caller, not input. */
int
bm_page_dirty(const struct bm *b, size_t page)
{
	VERIFY(b->magic == BM_MAGIC);
	VERIFY(page < b->npages);
	return (b->dirty[page / BM_WORD_BITS] >> (page % BM_WORD_BITS)) & 1;
}

void
bm_page_clean(struct bm *b, size_t page)
{
	VERIFY(b->magic == BM_MAGIC);
	VERIFY(page < b->npages);
	b->dirty[page / BM_WORD_BITS] &= ~(1ull << (page % BM_WORD_BITS));
}

void
bm_mark_all_dirty(struct bm *b)
{
	VERIFY(b->magic == BM_MAGIC);
	if (b->ndirty == 0)
		return;
	memset(b->dirty, 0xff, b->ndirty * sizeof(uint64_t));
	/* Keep the bits past npages clear so bm_next_dirty_page needs no clamp. */
	if (b->npages % BM_WORD_BITS != 0)
		b->dirty[b->ndirty - 1] = ~0ull >> (BM_WORD_BITS - b->npages % BM_WORD_BITS);
}

size_t
bm_next_dirty_page(const struct bm *b, size_t from)
{
	uint64_t word;
	size_t w;

	VERIFY(b->magic == BM_MAGIC);
	if (from >= b->npages)
		return b->npages;
	w = from / BM_WORD_BITS;
	word = b->dirty[w] & (~0ull << (from % BM_WORD_BITS));
	while (word == 0) {
		if (++w >= b->ndirty)
			return b->npages;
		word = b->dirty[w];
	}
	return w * BM_WORD_BITS + (size_t)__builtin_ctzll(word);
}
