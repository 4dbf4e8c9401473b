/* bm: an in-memory bitmap of fixed size with counting, range operations
 * and page-level dirty tracking so only changed 4 KiB pages are written.
 * Not thread safe: the owner holds its lock. */
#ifndef BLKMIRROR_BITMAP_H
#define BLKMIRROR_BITMAP_H

#include <stddef.h>
#include <stdint.h>

struct bm;

/* New bitmap of nbits bits, all clear.  The backing storage is a multiple
 * of 4096 bytes, little endian bit order (bit i is byte i/8, bit i%8), the
 * same as on disk.  Returns 0 or -ENOMEM. */
int bm_new(struct bm **out, uint64_t nbits);
void bm_free(struct bm *b);            /* bm_free(NULL) is a no-op */

uint64_t bm_nbits(const struct bm *b);
uint64_t bm_count(const struct bm *b); /* number of set bits, O(1) */
int bm_test(const struct bm *b, uint64_t bit);
/* Set/clear bits [first, first+n); return how many bits changed.  Bits past
 * the end are ignored.  Changed bits mark their 4 KiB page dirty. */
uint64_t bm_set_range(struct bm *b, uint64_t first, uint64_t n);
uint64_t bm_clear_range(struct bm *b, uint64_t first, uint64_t n);
/* Next set (or clear) bit at or after `from`, or bm_nbits() if none. */
uint64_t bm_next_set(const struct bm *b, uint64_t from);
uint64_t bm_next_clear(const struct bm *b, uint64_t from);
/* OR another bitmap of the same size into this one. */
int bm_or(struct bm *b, const struct bm *other);

/* Raw storage (bm_bytes() bytes, a multiple of 4096) for I/O. */
void *bm_data(struct bm *b);
size_t bm_bytes(const struct bm *b);
/* After loading raw storage from disk: recount and clear dirty marks;
 * bits past nbits are cleared. */
void bm_loaded(struct bm *b);

/* Page dirty tracking (a page is 4096 bytes of storage = 32768 bits). */
size_t bm_npages(const struct bm *b);
int bm_page_dirty(const struct bm *b, size_t page);
void bm_page_clean(struct bm *b, size_t page);
void bm_mark_all_dirty(struct bm *b);
/* Next dirty page at or after `from`, or bm_npages() if none. */
size_t bm_next_dirty_page(const struct bm *b, size_t from);

#endif
