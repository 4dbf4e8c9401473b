/* meta: the on-disk superblock and the metadata layout; see meta.h.
 *
 * The superblock is one 4 KiB block: struct meta_sb_disk, then zeros.  All
 * integers are little endian except the magic, which is stored big endian
 * so that the block starts with the ASCII bytes "BLKMIRR1" in a hex dump.
 * The checksum is SHA-256 over the whole 4 KiB block with the checksum
 * field zeroed, so padding is covered too.
 *
 * Decoding checks, in this order: magic (-ENOENT), version (-EPROTO; a
 * later version may checksum differently), checksum (-EBADMSG), then the
 * sanity of every field (-EINVAL).  Whatever meta_write_sb or meta_create
 * writes has been decoded first, so we never write a block we would refuse
 * to read. */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "daemon/meta.h"

#include "lib/log.h"
#include "lib/util.h"

#define META_GRAN_MIN   4096u
#define META_GRAN_MAX   (1u << 30)
#define META_SHIFT_MIN  16u
#define META_SHIFT_MAX  30u
#define META_SUM_BYTES  32u
#define META_ZERO_CHUNK (1u << 20)	/* largest write meta_create issues */

/* Version 1 superblock.  Offsets in bytes from the start of the block. */
struct meta_sb_disk {
	uint64_t magic;                     /*   0: META_MAGIC, big endian ("BLKMIRR1") */
	uint32_t version;                   /*   8: META_VERSION */
	uint32_t flags;                     /*  12: META_F_*, nothing outside META_F_ALL */
	uint64_t disk_size;                 /*  16: bytes of the data disk at create-md */
	uint64_t data_size;                 /*  24: bytes exported, multiple of 4096 */
	uint32_t granularity;               /*  32: bytes of data per bitmap bit */
	uint32_t al_extent_shift;           /*  36: log2 bytes of data per activity-map bit */
	uint64_t gen_current;               /*  40: current generation identifier */
	uint64_t gen_bitmap;                /*  48: generation the bitmap is relative to */
	uint64_t gen_history[META_HISTORY]; /*  56: older generations, newest first */
	uint64_t node_uuid;                 /*  88: random per create-md */
	uint64_t md_offset;                 /*  96: start of the metadata area */
	uint64_t actmap_offset;             /* 104: activity map, absolute on the md device */
	uint64_t actmap_bytes;              /* 112: its size, multiple of 4096 */
	uint64_t bitmap_offset;             /* 120: dirty bitmap, absolute on the md device */
	uint64_t bitmap_bytes;              /* 128: its size, multiple of 4096 */
	uint64_t sb_offset;                 /* 136: where this block belongs */
	uint8_t  checksum[META_SUM_BYTES];  /* 144: SHA-256 of the block, this field zero */
	uint8_t  pad[META_BLOCK - 176];     /* 176: zero */
} __attribute__((packed));

_Static_assert(sizeof(struct meta_sb_disk) == META_BLOCK, "superblock is one 4 KiB block");
_Static_assert(offsetof(struct meta_sb_disk, checksum) == 144, "version 1 layout is frozen");

static void meta_why(char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
meta_why(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why == NULL || whylen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

static uint64_t
meta_div_up(uint64_t x, uint64_t d)
{
	/* Not (x + d - 1) / d: sizes read from disk may be near UINT64_MAX. */
	return x / d + (x % d != 0);
}

static uint64_t
meta_round_down(uint64_t x)
{
	return x / META_BLOCK * META_BLOCK;
}

/* Bytes of an area with one bit per `unit` bytes of data, in whole 4 KiB
 * blocks so every area can be written with O_DIRECT. */
static uint64_t
meta_area_bytes(uint64_t data_size, uint64_t unit)
{
	return ALIGN_UP(meta_div_up(meta_div_up(data_size, unit), 8), (uint64_t)META_BLOCK);
}

static int
meta_gran_ok(uint32_t granularity)
{
	return granularity >= META_GRAN_MIN && granularity <= META_GRAN_MAX &&
	       (granularity & (granularity - 1)) == 0;
}

static int
meta_shift_ok(uint32_t al_extent_shift)
{
	return al_extent_shift >= META_SHIFT_MIN && al_extent_shift <= META_SHIFT_MAX;
}

static int
meta_params_ok(uint32_t granularity, uint32_t al_extent_shift)
{
	/* An activity extent covers whole bitmap granules. */
	return meta_gran_ok(granularity) && meta_shift_ok(al_extent_shift) &&
	       (1ull << al_extent_shift) >= granularity;
}

uint64_t
meta_md_bytes(uint64_t data_size, uint32_t granularity, uint32_t al_extent_shift)
{
	/* Callers validate with meta_layout() first; a bad value here is a bug. */
	VERIFY(meta_params_ok(granularity, al_extent_shift));
	return META_BLOCK + meta_area_bytes(data_size, 1ull << al_extent_shift) +
	       meta_area_bytes(data_size, granularity);
}

uint64_t
meta_sb_location(uint64_t md_dev_size, int internal)
{
	/* Internal: the last whole 4 KiB block, so the superblock stays 4 KiB
	 * aligned (O_DIRECT on 4Kn disks) even if the disk size is not. */
	if (!internal || md_dev_size < META_BLOCK)
		return 0;
	return meta_round_down(md_dev_size) - META_BLOCK;
}

/* Largest multiple of 4096 d > 0 with d + meta_md_bytes(d) <= end (end a
 * multiple of 4096), or 0 if none.
 *
 * md(d) = 4096 * (1 + ceil(d / pb) + ceil(d / pa)) where pb and pa are the
 * bytes of data one 4 KiB block of bitmap or activity map covers.  Taking
 * each ceil as "+1" gives a d that surely fits:
 *   d * (1 + 1/qb + 1/qa) <= end - 3 * 4096,  qb = pb / 4096, qa = pa / 4096
 * and the largest d is less than three blocks above it, so step up from
 * there.  128-bit arithmetic: qb * qa reaches 2^66. */
static uint64_t
meta_internal_data_size(uint64_t end, uint32_t granularity, uint32_t al_extent_shift)
{
	unsigned __int128 qb = (unsigned __int128)granularity * 8;
	unsigned __int128 qa = (unsigned __int128)1 << (al_extent_shift + 3);
	unsigned __int128 num, den;
	uint64_t avail, d, md;

	if (end < 3 * META_BLOCK)
		return 0;
	avail = end - 3 * META_BLOCK;
	/* floor(avail * qb*qa / (qb*qa + qb + qa)) without the 2^130 product. */
	num = (unsigned __int128)avail * (qb + qa);
	den = qb * qa + qb + qa;
	d = meta_round_down(avail - (uint64_t)((num + den - 1) / den));
	for (;;) {
		uint64_t next = d + META_BLOCK;

		md = meta_md_bytes(next, granularity, al_extent_shift);
		if (next > end || md > end - next)
			break;
		d = next;
	}
	return d;
}

int
meta_layout(struct meta_sb *sb, uint64_t disk_size, int internal,
	    uint64_t md_dev_size, uint32_t granularity, uint32_t al_extent_shift)
{
	uint64_t end = meta_round_down(disk_size), data_size;

	if (!meta_params_ok(granularity, al_extent_shift))
		return -EINVAL;
	memset(sb, 0, sizeof(*sb));
	if (internal) {
		data_size = meta_internal_data_size(end, granularity, al_extent_shift);
		if (data_size == 0)
			return -ENOSPC;
	} else {
		data_size = end;
		if (data_size == 0 ||
		    md_dev_size < meta_md_bytes(data_size, granularity, al_extent_shift))
			return -ENOSPC;
	}
	sb->version = META_VERSION;
	sb->flags = META_F_JUST_CREATED;
	sb->disk_size = disk_size;
	sb->data_size = data_size;
	sb->granularity = granularity;
	sb->al_extent_shift = al_extent_shift;
	sb->gen_current = 4;	/* reserved value: "just created" */
	sb->node_uuid = meta_new_gen();
	sb->actmap_bytes = meta_area_bytes(data_size, 1ull << al_extent_shift);
	sb->bitmap_bytes = meta_area_bytes(data_size, granularity);
	if (internal) {
		/* [data][gap][actmap][bitmap][sb], flush with the end; the gap
		 * (under three blocks) is what the rounding leaves over. */
		sb->sb_offset = end - META_BLOCK;
		sb->bitmap_offset = sb->sb_offset - sb->bitmap_bytes;
		sb->actmap_offset = sb->bitmap_offset - sb->actmap_bytes;
		sb->md_offset = sb->actmap_offset;
	} else {
		/* [sb][actmap][bitmap]: the superblock first so it can be found
		 * without knowing data_size. */
		sb->md_offset = 0;
		sb->sb_offset = 0;
		sb->actmap_offset = META_BLOCK;
		sb->bitmap_offset = META_BLOCK + sb->actmap_bytes;
	}
	return 0;
}

static void
meta_sum(const struct meta_sb_disk *d, uint8_t out[META_SUM_BYTES])
{
	unsigned int len = 0;

	/* SHA-256 of a fixed buffer cannot fail short of a broken libcrypto. */
	VERIFY(EVP_Digest(d, sizeof(*d), out, &len, EVP_sha256(), NULL) == 1);
	VERIFY(len == META_SUM_BYTES);
}

void
meta_sb_encode(const struct meta_sb *sb, void *buf)
{
	struct meta_sb_disk d;
	unsigned i;

	memset(&d, 0, sizeof(d));
	d.magic = htobe64(META_MAGIC);
	d.version = htole32(sb->version);
	d.flags = htole32(sb->flags);
	d.disk_size = htole64(sb->disk_size);
	d.data_size = htole64(sb->data_size);
	d.granularity = htole32(sb->granularity);
	d.al_extent_shift = htole32(sb->al_extent_shift);
	d.gen_current = htole64(sb->gen_current);
	d.gen_bitmap = htole64(sb->gen_bitmap);
	for (i = 0; i < META_HISTORY; i++)
		d.gen_history[i] = htole64(sb->gen_history[i]);
	d.node_uuid = htole64(sb->node_uuid);
	d.md_offset = htole64(sb->md_offset);
	d.actmap_offset = htole64(sb->actmap_offset);
	d.actmap_bytes = htole64(sb->actmap_bytes);
	d.bitmap_offset = htole64(sb->bitmap_offset);
	d.bitmap_bytes = htole64(sb->bitmap_bytes);
	d.sb_offset = htole64(sb->sb_offset);
	meta_sum(&d, d.checksum);	/* checksum field still zero here */
	memcpy(buf, &d, sizeof(d));
}

/* Range and consistency checks on a decoded superblock. */
static int
meta_sb_check(const struct meta_sb *sb, char *why, size_t whylen)
{
	uint64_t md;

	if (sb->flags & ~META_F_ALL) {
		meta_why(why, whylen, "unknown flags 0x%" PRIx32, sb->flags & ~META_F_ALL);
		return -EINVAL;
	}
	if (!meta_gran_ok(sb->granularity)) {
		meta_why(why, whylen, "granularity %" PRIu32 " is not a power of two "
			 "between 4096 and 1 GiB", sb->granularity);
		return -EINVAL;
	}
	if (meta_shift_ok(sb->al_extent_shift) &&
	    (1ull << sb->al_extent_shift) < sb->granularity) {
		meta_why(why, whylen, "activity extent (2^%" PRIu32 ") smaller than the "
			 "granularity %" PRIu32, sb->al_extent_shift, sb->granularity);
		return -EINVAL;
	}
	if (!meta_shift_ok(sb->al_extent_shift)) {
		meta_why(why, whylen, "activity-map extent shift %" PRIu32 " is outside 16..30",
			 sb->al_extent_shift);
		return -EINVAL;
	}
	if (sb->data_size == 0 || sb->data_size % META_BLOCK != 0 ||
	    sb->data_size > sb->disk_size) {
		meta_why(why, whylen, "data size %" PRIu64 " is not a non-zero multiple of 4096 "
			 "within the disk size %" PRIu64, sb->data_size, sb->disk_size);
		return -EINVAL;
	}
	if (sb->bitmap_bytes != meta_area_bytes(sb->data_size, sb->granularity) ||
	    sb->actmap_bytes != meta_area_bytes(sb->data_size, 1ull << sb->al_extent_shift)) {
		meta_why(why, whylen, "bitmap (%" PRIu64 " bytes) or activity map (%" PRIu64
			 " bytes) does not match the data size %" PRIu64,
			 sb->bitmap_bytes, sb->actmap_bytes, sb->data_size);
		return -EINVAL;
	}
	md = meta_md_bytes(sb->data_size, sb->granularity, sb->al_extent_shift);
	if (sb->sb_offset == 0) {
		/* External: [sb][actmap][bitmap] from offset 0. */
		if (sb->md_offset != 0 || sb->actmap_offset != META_BLOCK ||
		    sb->bitmap_offset != META_BLOCK + sb->actmap_bytes) {
			meta_why(why, whylen, "offsets do not match the external layout");
			return -EINVAL;
		}
		return 0;
	}
	/* Internal: [data][actmap][bitmap][sb], sb the last whole 4 KiB block;
	 * an internal sb_offset is never 0 since data_size > 0 comes first. */
	if (meta_round_down(sb->disk_size) < md ||
	    sb->data_size > meta_round_down(sb->disk_size) - md) {
		meta_why(why, whylen, "data size %" PRIu64 " and %" PRIu64 " bytes of metadata "
			 "do not fit in a disk of %" PRIu64 " bytes",
			 sb->data_size, md, sb->disk_size);
		return -EINVAL;
	}
	if (sb->sb_offset != meta_sb_location(sb->disk_size, 1) ||
	    sb->bitmap_offset != sb->sb_offset - sb->bitmap_bytes ||
	    sb->actmap_offset != sb->bitmap_offset - sb->actmap_bytes ||
	    sb->md_offset != sb->actmap_offset) {
		meta_why(why, whylen, "offsets do not match the internal layout");
		return -EINVAL;
	}
	return 0;
}

int
meta_sb_decode(const void *buf, struct meta_sb *sb, char *why, size_t whylen)
{
	struct meta_sb_disk d;
	uint8_t want[META_SUM_BYTES], got[META_SUM_BYTES];
	uint32_t version;
	unsigned i;

	memcpy(&d, buf, sizeof(d));
	if (be64toh(d.magic) != META_MAGIC) {
		meta_why(why, whylen, "no blkmirror superblock (no magic)");
		return -ENOENT;
	}
	version = le32toh(d.version);
	if (version != META_VERSION) {
		meta_why(why, whylen, "unsupported metadata version %" PRIu32
			 " (this build reads version %u)", version, META_VERSION);
		return -EPROTO;
	}
	memcpy(want, d.checksum, sizeof(want));
	memset(d.checksum, 0, sizeof(d.checksum));
	meta_sum(&d, got);
	if (memcmp(want, got, sizeof(want)) != 0) {
		meta_why(why, whylen, "metadata checksum mismatch: the metadata is corrupt");
		return -EBADMSG;
	}
	/* Authentic from here on: *sb is filled even if a check below fails,
	 * so a dump tool can show what is wrong. */
	sb->version = version;
	sb->flags = le32toh(d.flags);
	sb->disk_size = le64toh(d.disk_size);
	sb->data_size = le64toh(d.data_size);
	sb->granularity = le32toh(d.granularity);
	sb->al_extent_shift = le32toh(d.al_extent_shift);
	sb->gen_current = le64toh(d.gen_current);
	sb->gen_bitmap = le64toh(d.gen_bitmap);
	for (i = 0; i < META_HISTORY; i++)
		sb->gen_history[i] = le64toh(d.gen_history[i]);
	sb->node_uuid = le64toh(d.node_uuid);
	sb->md_offset = le64toh(d.md_offset);
	sb->actmap_offset = le64toh(d.actmap_offset);
	sb->actmap_bytes = le64toh(d.actmap_bytes);
	sb->bitmap_offset = le64toh(d.bitmap_offset);
	sb->bitmap_bytes = le64toh(d.bitmap_bytes);
	sb->sb_offset = le64toh(d.sb_offset);
	return meta_sb_check(sb, why, whylen);
}

/* A disk that grew since create-md keeps its superblock where the old end
 * was.  Looks back up to META_GROWN_SCAN bytes from the end for a valid one
 * that sits exactly at its own recorded place; returns 0 and fills *sb. */
#define META_GROWN_SCAN (64ull << 20)
#define META_SCAN_CHUNK (1u << 20)

static int
meta_find_grown(int fd, uint64_t dev_size, struct meta_sb *sb)
{
	uint64_t end = dev_size / META_BLOCK * META_BLOCK;
	uint64_t stop = end > META_GROWN_SCAN ? end - META_GROWN_SCAN : 0;
	void *buf;
	int found = -ENOENT;

	if (posix_memalign(&buf, META_BLOCK, META_SCAN_CHUNK) != 0)
		return -ENOMEM;
	while (end > stop && found) {
		uint64_t start = end - MIN(META_SCAN_CHUNK, end - stop);
		uint32_t len = (uint32_t)(end - start);

		if (util_pread_full(fd, buf, len, start) < 0)
			break;
		for (uint32_t o = len; o >= META_BLOCK && found; o -= META_BLOCK) {
			const char *blk = (const char *)buf + o - META_BLOCK;
			struct meta_sb t;

			if (meta_sb_decode(blk, &t, NULL, 0) == 0 &&
			    t.sb_offset == start + o - META_BLOCK && t.disk_size < dev_size) {
				*sb = t;
				found = 0;
			}
		}
		end = start;
	}
	free(buf);
	return found;
}

int
meta_read_sb(int md_fd, uint64_t md_dev_size, int internal, uint64_t disk_size,
	     struct meta_sb *sb, char *why, size_t whylen)
{
	const char *where = internal ? "the last 4 KiB of the disk" :
				       "the start of the metadata device";
	struct meta_sb tmp;
	char reason[256];
	uint64_t off, md;
	void *buf;
	int rc;

	if (md_dev_size < META_BLOCK) {
		meta_why(why, whylen, "no blkmirror metadata: the %s is only %" PRIu64 " bytes",
			 internal ? "disk" : "metadata device", md_dev_size);
		return -ENOENT;
	}
	off = meta_sb_location(md_dev_size, internal);
	/* Aligned so the read also works on an O_DIRECT descriptor. */
	if (posix_memalign(&buf, META_BLOCK, META_BLOCK) != 0)
		return -ENOMEM;
	rc = util_pread_full(md_fd, buf, META_BLOCK, off);
	if (rc < 0) {
		free(buf);
		meta_why(why, whylen, "cannot read the superblock at offset %" PRIu64 ": %s",
			 off, strerror(-rc));
		return rc;
	}
	rc = meta_sb_decode(buf, &tmp, reason, sizeof(reason));
	free(buf);
	switch (rc) {
	case 0:
		break;
	case -ENOENT:
		if (internal && meta_find_grown(md_fd, md_dev_size, &tmp) == 0) {
			meta_why(why, whylen, "disk is %" PRIu64 " bytes but its metadata was "
				 "created for %" PRIu64 " bytes (the disk grew)", disk_size,
				 tmp.disk_size);
			return -EFBIG;
		}
		meta_why(why, whylen, "no blkmirror metadata found at offset %" PRIu64
			 " (%s): run 'mirrorctl create-md'", off, where);
		return rc;
	case -EBADMSG:
		meta_why(why, whylen, "metadata checksum mismatch at offset %" PRIu64
			 ": the metadata is corrupt", off);
		return rc;
	default:
		meta_why(why, whylen, "metadata at offset %" PRIu64 ": %s", off, reason);
		return rc;
	}
	/* Grown: the data area could be enlarged; shrunk: data past the end
	 * is lost.  Either way it needs an operator, not a guess. */
	if (tmp.disk_size != disk_size) {
		meta_why(why, whylen, "disk is %" PRIu64 " bytes but its metadata was created "
			 "for %" PRIu64 " bytes", disk_size, tmp.disk_size);
		return disk_size > tmp.disk_size ? -EFBIG : -ERANGE;
	}
	/* With equal disk sizes data_size <= disk_size already holds (decode). */
	if (tmp.sb_offset != off) {
		meta_why(why, whylen, "the superblock at offset %" PRIu64 " belongs at offset %"
			 PRIu64 ": was meta-disk changed since create-md?", off, tmp.sb_offset);
		return -EINVAL;
	}
	md = meta_md_bytes(tmp.data_size, tmp.granularity, tmp.al_extent_shift);
	if (!internal && md_dev_size < md) {
		meta_why(why, whylen, "metadata device is %" PRIu64 " bytes but the metadata "
			 "needs %" PRIu64 " bytes", md_dev_size, md);
		return -ERANGE;
	}
	*sb = tmp;
	return 0;
}

/* Encodes sb into a new 4 KiB aligned block, refusing (with decode's
 * error) a superblock that would not read back. */
static int
meta_encode_checked(const struct meta_sb *sb, void **out)
{
	struct meta_sb check;
	void *buf;
	int rc;

	if (posix_memalign(&buf, META_BLOCK, META_BLOCK) != 0)
		return -ENOMEM;
	meta_sb_encode(sb, buf);
	rc = meta_sb_decode(buf, &check, NULL, 0);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	*out = buf;
	return 0;
}

static int
meta_sync(int fd)
{
	return fdatasync(fd) < 0 ? -errno : 0;
}

int
meta_write_sb(int md_fd, const struct meta_sb *sb)
{
	void *buf;
	int rc;

	rc = meta_encode_checked(sb, &buf);
	if (rc < 0)
		return rc;
	rc = util_pwrite_full(md_fd, buf, META_BLOCK, sb->sb_offset);
	free(buf);
	if (rc < 0)
		return rc;
	return meta_sync(md_fd);
}

int
meta_create(int md_fd, const struct meta_sb *sb)
{
	uint64_t off, left;
	size_t chunk;
	void *sbbuf, *zero;
	int rc;

	rc = meta_encode_checked(sb, &sbbuf);
	if (rc < 0)
		return rc;
	free(sbbuf);
	/* Both layouts put the bitmap right after the activity map (checked
	 * by decode), so one zeroed range covers both. */
	left = sb->actmap_bytes + sb->bitmap_bytes;
	chunk = (size_t)MIN(left, (uint64_t)META_ZERO_CHUNK);
	if (posix_memalign(&zero, META_BLOCK, chunk) != 0)
		return -ENOMEM;
	memset(zero, 0, chunk);
	/* Invalidate any old superblock first: if we crashed while zeroing,
	 * an old superblock would still be valid over a half-cleared bitmap,
	 * i.e. blocks that differ from the peer marked in sync. */
	rc = util_pwrite_full(md_fd, zero, META_BLOCK, sb->sb_offset);
	if (rc == 0)
		rc = meta_sync(md_fd);
	for (off = sb->actmap_offset; rc == 0 && left > 0; ) {
		size_t n = (size_t)MIN(left, (uint64_t)chunk);

		rc = util_pwrite_full(md_fd, zero, n, off);
		off += n;
		left -= n;
	}
	free(zero);
	/* The zeroed areas must be durable before the superblock that vouches
	 * for them. */
	if (rc == 0)
		rc = meta_sync(md_fd);
	if (rc == 0)
		rc = meta_write_sb(md_fd, sb);
	return rc;
}

uint64_t
meta_new_gen(void)
{
	uint64_t v;

	/* A generation must be unique to tell histories apart: without a
	 * working CSPRNG we cannot make one, so stop rather than guess. */
	do {
		VERIFY(RAND_bytes((unsigned char *)&v, sizeof(v)) == 1);
	} while (v < 16);
	return v;
}

void
meta_start_generation(struct meta_sb *sb)
{
	if (sb->gen_bitmap == 0)
		sb->gen_bitmap = sb->gen_current;
	memmove(&sb->gen_history[1], &sb->gen_history[0],
		sizeof(sb->gen_history) - sizeof(sb->gen_history[0]));
	sb->gen_history[0] = sb->gen_current;
	sb->gen_current = meta_new_gen();
	sb->flags &= ~(META_F_LOCAL_CHANGES | META_F_VERIFY_DIFF);
}
