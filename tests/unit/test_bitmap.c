/* Unit tests for daemon/bitmap.c: counts, ranges across word and page
 * boundaries, scans, dirty pages, bm_or, the tail past nbits, and random
 * operations checked against a naive one-byte-per-bit reference. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>

#include "daemon/bitmap.h"

#define PAGE_BITS 32768u	/* bits per 4 KiB page of storage */

static struct bm *
new_bm(uint64_t nbits)
{
	struct bm *b = NULL;

	CU_ASSERT_FATAL(bm_new(&b, nbits) == 0);
	CU_ASSERT_FATAL(b != NULL);
	return b;
}

static size_t
count_dirty(const struct bm *b)
{
	size_t n = 0, p;

	for (p = bm_next_dirty_page(b, 0); p < bm_npages(b); p = bm_next_dirty_page(b, p + 1))
		n++;
	return n;
}

static void
clean_all(struct bm *b)
{
	size_t p;

	for (p = 0; p < bm_npages(b); p++)
		bm_page_clean(b, p);
}

static void
test_bitmap_new_is_empty(void)
{
	struct bm *b = new_bm(100000);

	CU_ASSERT_EQUAL(bm_nbits(b), 100000);
	CU_ASSERT_EQUAL(bm_count(b), 0);
	CU_ASSERT_EQUAL(bm_bytes(b), 4 * 4096);	/* 12500 bytes -> 4 pages */
	CU_ASSERT_EQUAL(bm_npages(b), 4);
	CU_ASSERT_EQUAL((uintptr_t)bm_data(b) % 4096, 0);
	CU_ASSERT_EQUAL(bm_next_set(b, 0), 100000);
	CU_ASSERT_EQUAL(bm_next_clear(b, 0), 0);
	CU_ASSERT_EQUAL(bm_next_dirty_page(b, 0), 4);
	CU_ASSERT_EQUAL(bm_test(b, 99999), 0);
	for (size_t i = 0; i < bm_bytes(b); i++)
		if (((unsigned char *)bm_data(b))[i] != 0)
			CU_FAIL("storage not zeroed");
	bm_free(b);
	bm_free(NULL);	/* no-op */
}

static void
test_bitmap_storage_size(void)
{
	static const struct { uint64_t nbits; size_t bytes; } cases[] = {
		{ 0, 0 }, { 1, 4096 }, { 64, 4096 }, { PAGE_BITS, 4096 },
		{ PAGE_BITS + 1, 8192 }, { 3 * PAGE_BITS, 3 * 4096 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct bm *b = new_bm(cases[i].nbits);

		CU_ASSERT_EQUAL(bm_bytes(b), cases[i].bytes);
		CU_ASSERT_EQUAL(bm_npages(b), cases[i].bytes / 4096);
		CU_ASSERT_EQUAL(bm_set_range(b, 0, UINT64_MAX), cases[i].nbits);
		CU_ASSERT_EQUAL(bm_count(b), cases[i].nbits);
		CU_ASSERT_EQUAL(bm_next_clear(b, 0), cases[i].nbits);
		bm_free(b);
	}
}

static void
test_bitmap_range_across_words(void)
{
	struct bm *b = new_bm(1000);

	CU_ASSERT_EQUAL(bm_set_range(b, 60, 10), 10);	/* words 0 and 1 */
	CU_ASSERT_EQUAL(bm_count(b), 10);
	CU_ASSERT_EQUAL(bm_test(b, 59), 0);
	CU_ASSERT_EQUAL(bm_test(b, 60), 1);
	CU_ASSERT_EQUAL(bm_test(b, 69), 1);
	CU_ASSERT_EQUAL(bm_test(b, 70), 0);
	/* Overlap: only the newly set bits count. */
	CU_ASSERT_EQUAL(bm_set_range(b, 65, 20), 15);
	CU_ASSERT_EQUAL(bm_count(b), 25);
	CU_ASSERT_EQUAL(bm_set_range(b, 60, 25), 0);
	/* A range covering whole words in the middle. */
	CU_ASSERT_EQUAL(bm_set_range(b, 100, 300), 300);
	CU_ASSERT_EQUAL(bm_count(b), 325);
	CU_ASSERT_EQUAL(bm_clear_range(b, 64, 64), 21 + 28);	/* exactly word 1 */
	CU_ASSERT_EQUAL(bm_count(b), 276);
	CU_ASSERT_EQUAL(bm_test(b, 63), 1);
	CU_ASSERT_EQUAL(bm_test(b, 64), 0);
	CU_ASSERT_EQUAL(bm_test(b, 127), 0);
	CU_ASSERT_EQUAL(bm_test(b, 128), 1);	/* word 2, from [100, 400) */
	CU_ASSERT_EQUAL(bm_clear_range(b, 0, 1000), 276);
	CU_ASSERT_EQUAL(bm_count(b), 0);
	CU_ASSERT_EQUAL(bm_clear_range(b, 0, 1000), 0);
	/* Single bits and zero-length ranges. */
	CU_ASSERT_EQUAL(bm_set_range(b, 63, 1), 1);
	CU_ASSERT_EQUAL(bm_set_range(b, 64, 1), 1);
	CU_ASSERT_EQUAL(bm_set_range(b, 500, 0), 0);
	CU_ASSERT_EQUAL(bm_count(b), 2);
	bm_free(b);
}

static void
test_bitmap_range_across_pages(void)
{
	struct bm *b = new_bm(3 * PAGE_BITS);

	CU_ASSERT_EQUAL(bm_set_range(b, PAGE_BITS - 5, 10), 10);
	CU_ASSERT_EQUAL(bm_count(b), 10);
	CU_ASSERT_EQUAL(bm_page_dirty(b, 0), 1);
	CU_ASSERT_EQUAL(bm_page_dirty(b, 1), 1);
	CU_ASSERT_EQUAL(bm_page_dirty(b, 2), 0);
	clean_all(b);
	/* A range spanning all of page 1 and into page 2. */
	CU_ASSERT_EQUAL(bm_set_range(b, PAGE_BITS, PAGE_BITS + 1), PAGE_BITS + 1 - 5);
	CU_ASSERT_EQUAL(bm_count(b), PAGE_BITS + 1 + 5);
	CU_ASSERT_EQUAL(bm_page_dirty(b, 0), 0);	/* nothing changed there */
	CU_ASSERT_EQUAL(bm_page_dirty(b, 1), 1);
	CU_ASSERT_EQUAL(bm_page_dirty(b, 2), 1);
	CU_ASSERT_EQUAL(bm_next_clear(b, PAGE_BITS - 5), 2 * PAGE_BITS + 1);
	clean_all(b);
	CU_ASSERT_EQUAL(bm_clear_range(b, 0, 3 * PAGE_BITS), PAGE_BITS + 6);
	CU_ASSERT_EQUAL(bm_count(b), 0);
	CU_ASSERT_EQUAL(count_dirty(b), 3);
	bm_free(b);
}

static void
test_bitmap_range_past_end_ignored(void)
{
	struct bm *b = new_bm(130);

	CU_ASSERT_EQUAL(bm_set_range(b, 120, 100), 10);
	CU_ASSERT_EQUAL(bm_count(b), 10);
	CU_ASSERT_EQUAL(bm_set_range(b, 130, 5), 0);
	CU_ASSERT_EQUAL(bm_set_range(b, UINT64_MAX, UINT64_MAX), 0);
	CU_ASSERT_EQUAL(bm_set_range(b, 5, UINT64_MAX), 115);	/* no overflow */
	CU_ASSERT_EQUAL(bm_count(b), 125);
	CU_ASSERT_EQUAL(bm_test(b, 130), 0);
	CU_ASSERT_EQUAL(bm_test(b, UINT64_MAX), 0);
	CU_ASSERT_EQUAL(bm_clear_range(b, 129, UINT64_MAX), 1);
	CU_ASSERT_EQUAL(bm_count(b), 124);
	bm_free(b);
}

static void
test_bitmap_next_set_clear(void)
{
	struct bm *b = new_bm(2 * PAGE_BITS + 7);
	uint64_t n = bm_nbits(b);

	CU_ASSERT_EQUAL(bm_next_set(b, n), n);
	CU_ASSERT_EQUAL(bm_next_set(b, UINT64_MAX), n);
	CU_ASSERT_EQUAL(bm_next_clear(b, n), n);
	bm_set_range(b, 3, 1);
	bm_set_range(b, 64, 1);
	bm_set_range(b, 5000, 200);
	bm_set_range(b, n - 1, 1);
	CU_ASSERT_EQUAL(bm_next_set(b, 0), 3);
	CU_ASSERT_EQUAL(bm_next_set(b, 3), 3);
	CU_ASSERT_EQUAL(bm_next_set(b, 4), 64);
	CU_ASSERT_EQUAL(bm_next_set(b, 65), 5000);
	CU_ASSERT_EQUAL(bm_next_set(b, 5100), 5100);
	CU_ASSERT_EQUAL(bm_next_set(b, 5200), n - 1);	/* long scan of empty words */
	CU_ASSERT_EQUAL(bm_next_clear(b, 3), 4);
	CU_ASSERT_EQUAL(bm_next_clear(b, 5000), 5200);
	CU_ASSERT_EQUAL(bm_next_clear(b, n - 1), n);	/* tail bits do not count */
	bm_clear_range(b, n - 1, 1);
	CU_ASSERT_EQUAL(bm_next_set(b, 5200), n);
	/* All set: next_clear finds nothing even across whole words. */
	bm_set_range(b, 0, n);
	CU_ASSERT_EQUAL(bm_next_clear(b, 0), n);
	bm_clear_range(b, PAGE_BITS + 63, 1);
	CU_ASSERT_EQUAL(bm_next_clear(b, 0), PAGE_BITS + 63);
	bm_free(b);
}

static void
test_bitmap_dirty_pages(void)
{
	struct bm *b = new_bm(5 * PAGE_BITS);

	CU_ASSERT_EQUAL(bm_npages(b), 5);
	CU_ASSERT_EQUAL(count_dirty(b), 0);
	bm_set_range(b, 3 * PAGE_BITS + 17, 1);
	CU_ASSERT_EQUAL(bm_next_dirty_page(b, 0), 3);
	CU_ASSERT_EQUAL(bm_next_dirty_page(b, 3), 3);
	CU_ASSERT_EQUAL(bm_next_dirty_page(b, 4), 5);
	bm_page_clean(b, 3);
	CU_ASSERT_EQUAL(bm_page_dirty(b, 3), 0);
	/* Setting an already set bit changes nothing: page stays clean. */
	CU_ASSERT_EQUAL(bm_set_range(b, 3 * PAGE_BITS + 17, 1), 0);
	CU_ASSERT_EQUAL(bm_page_dirty(b, 3), 0);
	CU_ASSERT_EQUAL(bm_clear_range(b, 0, PAGE_BITS), 0);
	CU_ASSERT_EQUAL(bm_page_dirty(b, 0), 0);
	bm_mark_all_dirty(b);
	CU_ASSERT_EQUAL(count_dirty(b), 5);
	CU_ASSERT_EQUAL(bm_next_dirty_page(b, 4), 4);
	CU_ASSERT_EQUAL(bm_next_dirty_page(b, 5), 5);
	bm_page_clean(b, 0);
	bm_page_clean(b, 4);
	CU_ASSERT_EQUAL(bm_next_dirty_page(b, 0), 1);
	CU_ASSERT_EQUAL(bm_next_dirty_page(b, 4), 5);
	CU_ASSERT_EQUAL(count_dirty(b), 3);
	bm_free(b);

	/* More than 64 pages: the dirty map itself spans several words. */
	b = new_bm(130 * (uint64_t)PAGE_BITS);
	bm_set_range(b, 129 * (uint64_t)PAGE_BITS, 1);
	CU_ASSERT_EQUAL(bm_next_dirty_page(b, 0), 129);
	bm_mark_all_dirty(b);
	CU_ASSERT_EQUAL(count_dirty(b), 130);
	bm_free(b);
}

static void
test_bitmap_or(void)
{
	struct bm *a = new_bm(3 * PAGE_BITS), *o = new_bm(3 * PAGE_BITS);
	struct bm *other_size = new_bm(3 * PAGE_BITS - 1);

	bm_set_range(a, 0, 100);
	bm_set_range(o, 50, 100);
	bm_set_range(o, 2 * PAGE_BITS + 1, 3);
	clean_all(a);
	CU_ASSERT_EQUAL(bm_or(a, o), 0);
	CU_ASSERT_EQUAL(bm_count(a), 153);
	CU_ASSERT_EQUAL(bm_next_clear(a, 0), 150);
	CU_ASSERT_EQUAL(bm_page_dirty(a, 0), 1);
	CU_ASSERT_EQUAL(bm_page_dirty(a, 1), 0);
	CU_ASSERT_EQUAL(bm_page_dirty(a, 2), 1);
	CU_ASSERT_EQUAL(bm_count(o), 103);	/* source untouched */
	clean_all(a);
	CU_ASSERT_EQUAL(bm_or(a, o), 0);	/* idempotent: nothing dirty */
	CU_ASSERT_EQUAL(bm_count(a), 153);
	CU_ASSERT_EQUAL(count_dirty(a), 0);
	CU_ASSERT_EQUAL(bm_or(a, other_size), -EINVAL);
	bm_free(a);
	bm_free(o);
	bm_free(other_size);
}

static void
test_bitmap_byte_order(void)
{
	struct bm *b = new_bm(1000);
	const unsigned char *p = bm_data(b);

	bm_set_range(b, 9, 1);
	bm_set_range(b, 63, 1);
	bm_set_range(b, 64, 1);
	CU_ASSERT_EQUAL(p[0], 0);
	CU_ASSERT_EQUAL(p[1], 0x02);	/* bit 9 = byte 1, bit 1 */
	CU_ASSERT_EQUAL(p[7], 0x80);	/* bit 63 */
	CU_ASSERT_EQUAL(p[8], 0x01);	/* bit 64 */
	bm_free(b);
}

static void
test_bitmap_tail_bits_cleared_on_load(void)
{
	struct bm *b = new_bm(100);
	unsigned char *p = bm_data(b);

	/* As if read from a disk whose storage holds garbage past nbits. */
	memset(p, 0xff, bm_bytes(b));
	bm_loaded(b);
	CU_ASSERT_EQUAL(bm_count(b), 100);
	CU_ASSERT_EQUAL(count_dirty(b), 0);
	CU_ASSERT_EQUAL(p[11], 0xff);
	CU_ASSERT_EQUAL(p[12], 0x0f);	/* bits 96..99 only */
	for (size_t i = 13; i < bm_bytes(b); i++)
		if (p[i] != 0)
			CU_FAIL("byte past nbits not cleared");
	CU_ASSERT_EQUAL(bm_next_clear(b, 0), 100);
	CU_ASSERT_EQUAL(bm_next_set(b, 99), 99);
	CU_ASSERT_EQUAL(bm_clear_range(b, 0, 1000), 100);
	CU_ASSERT_EQUAL(bm_count(b), 0);
	bm_free(b);

	/* Exactly a multiple of 64 bits: only whole words past the end. */
	b = new_bm(128);
	p = bm_data(b);
	memset(p, 0xff, bm_bytes(b));
	bm_loaded(b);
	CU_ASSERT_EQUAL(bm_count(b), 128);
	CU_ASSERT_EQUAL(p[16], 0);
	bm_free(b);
}

/* xorshift64*: a fixed sequence on every platform. */
static uint64_t
rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

static uint64_t
ref_next(const unsigned char *ref, uint64_t n, uint64_t from, int val)
{
	while (from < n && ref[from] != val)
		from++;
	return from < n ? from : n;
}

static void
test_bitmap_random_against_reference(void)
{
	const uint64_t n = 4 * PAGE_BITS + 333;
	unsigned char *ref = calloc(n, 1), *ref2 = calloc(n, 1);
	unsigned char dirty[5] = { 0 };
	struct bm *b = new_bm(n), *o = new_bm(n);
	uint64_t seed = 0x5eed1234abcdull, count = 0, count2 = 0;

	CU_ASSERT_FATAL(ref != NULL && ref2 != NULL);
	for (int iter = 0; iter < 3000; iter++) {
		uint64_t op = rnd(&seed) % 8, first = rnd(&seed) % (n + 100), len, changed = 0;

		/* Mostly short ranges, sometimes long ones spanning pages. */
		len = rnd(&seed) % 4 == 0 ? rnd(&seed) % (2 * PAGE_BITS) : rnd(&seed) % 200;
		if (op <= 3) {
			int set = op <= 1;
			uint64_t got = set ? bm_set_range(b, first, len) : bm_clear_range(b, first, len);

			for (uint64_t i = first; i < n && i < first + len; i++) {
				if (ref[i] != set) {
					ref[i] = (unsigned char)set;
					dirty[i / PAGE_BITS] = 1;
					changed++;
				}
			}
			count = set ? count + changed : count - changed;
			CU_ASSERT_EQUAL(got, changed);
		} else if (op == 4) {
			/* Build up the other map, then sometimes OR it in. */
			uint64_t got = bm_set_range(o, first, len / 8);

			for (uint64_t i = first; i < n && i < first + len / 8; i++) {
				if (!ref2[i]) {
					ref2[i] = 1;
					count2++;
					changed++;
				}
			}
			CU_ASSERT_EQUAL(got, changed);
			CU_ASSERT_EQUAL(bm_count(o), count2);
		} else if (op == 5 && rnd(&seed) % 8 == 0) {
			CU_ASSERT_EQUAL(bm_or(b, o), 0);
			for (uint64_t i = 0; i < n; i++) {
				if (ref2[i] && !ref[i]) {
					ref[i] = 1;
					dirty[i / PAGE_BITS] = 1;
					count++;
				}
			}
		} else if (op == 6) {
			size_t p = (size_t)(rnd(&seed) % 5);

			bm_page_clean(b, p);
			dirty[p] = 0;
		} else {
			uint64_t from = rnd(&seed) % (n + 10);

			CU_ASSERT_EQUAL(bm_next_set(b, from), ref_next(ref, n, from, 1));
			CU_ASSERT_EQUAL(bm_next_clear(b, from), ref_next(ref, n, from, 0));
			CU_ASSERT_EQUAL(bm_test(b, from), from < n ? ref[from] : 0);
		}
		CU_ASSERT_EQUAL(bm_count(b), count);
		for (size_t p = 0; p < 5; p++)
			CU_ASSERT_EQUAL(bm_page_dirty(b, p), dirty[p]);
	}
	/* Final full comparison, bit by bit and through the raw storage. */
	const unsigned char *raw = bm_data(b);
	uint64_t mismatches = 0;

	for (uint64_t i = 0; i < n; i++) {
		if (bm_test(b, i) != ref[i] || ((raw[i / 8] >> (i % 8)) & 1) != ref[i])
			mismatches++;
	}
	CU_ASSERT_EQUAL(mismatches, 0);
	CU_ASSERT(count > 0 && count < n);	/* the sequence exercised both */
	bm_free(b);
	bm_free(o);
	free(ref);
	free(ref2);
}

static void
test_bitmap_verify_catches_bad_pointer(void)
{
	/* A struct that is not a live bitmap must stop the process, the way
	 * hastd's activemap catches stale pointers. */
	pid_t pid = fork();
	int status = 0;

	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		uint64_t junk[32];

		memset(junk, 0, sizeof(junk));
		close(2);	/* keep the expected VERIFY line out of the test log */
		(void)bm_count((const struct bm *)junk);
		_exit(0);
	}
	CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
	CU_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
}

int
main(void)
{
	CU_pSuite s;
	unsigned failures;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite("bitmap", NULL, NULL);
	if (s == NULL ||
	    !CU_add_test(s, "test_bitmap_new_is_empty", test_bitmap_new_is_empty) ||
	    !CU_add_test(s, "test_bitmap_storage_size", test_bitmap_storage_size) ||
	    !CU_add_test(s, "test_bitmap_range_across_words", test_bitmap_range_across_words) ||
	    !CU_add_test(s, "test_bitmap_range_across_pages", test_bitmap_range_across_pages) ||
	    !CU_add_test(s, "test_bitmap_range_past_end_ignored", test_bitmap_range_past_end_ignored) ||
	    !CU_add_test(s, "test_bitmap_next_set_clear", test_bitmap_next_set_clear) ||
	    !CU_add_test(s, "test_bitmap_dirty_pages", test_bitmap_dirty_pages) ||
	    !CU_add_test(s, "test_bitmap_or", test_bitmap_or) ||
	    !CU_add_test(s, "test_bitmap_byte_order", test_bitmap_byte_order) ||
	    !CU_add_test(s, "test_bitmap_tail_bits_cleared_on_load",
			 test_bitmap_tail_bits_cleared_on_load) ||
	    !CU_add_test(s, "test_bitmap_random_against_reference",
			 test_bitmap_random_against_reference) ||
	    !CU_add_test(s, "test_bitmap_verify_catches_bad_pointer",
			 test_bitmap_verify_catches_bad_pointer)) {
		CU_cleanup_registry();
		return 1;
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failures > 0;
}
