/* libFuzzer target: the on-disk metadata decoder (daemon/meta.c):
 * meta_sb_decode on a raw 4 KiB block and meta_read_sb on a whole
 * metadata device held in a memfd (superblock location, the scan for the
 * superblock of a grown disk, size checks).
 *
 * A superblock is checksummed (SHA-256), which random bytes never pass, so
 * besides raw blocks the target also builds authentic ones: with bit 1 of
 * the first byte, the input's next bytes are taken as a struct meta_sb
 * (host order) and encoded with meta_sb_encode, so the field checks after
 * the checksum see arbitrary values.  Layout of an input:
 *   byte 0   bit 0 internal metadata, bit 1 encode a superblock from the
 *            input, bit 2 disk_size = the superblock's own (else bytes
 *            1-8), bit 3 put the superblock one block early (as after a
 *            grown disk)
 *   1-8      disk_size, little endian
 *   9-10     device size in 512-byte units, little endian (at least 1)
 *   11..     with bit 1: a struct meta_sb, then the device's bytes;
 *            else the device's bytes
 * Properties: whatever decodes (0) re-encodes to the same block, and in a
 * superblock meta_read_sb accepts every area (activity map, bitmap,
 * superblock) lies inside the device, after the data when internal, without
 * overlap, and the bitmap has a bit for every granule of the data. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "daemon/meta.h"
#include "tests/fuzz/fuzz.h"

static uint64_t
le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void
check_decode(const uint8_t *blk)
{
	static uint8_t again[META_BLOCK];
	struct meta_sb sb;
	char why[256];

	why[0] = '\0';
	if (meta_sb_decode(blk, &sb, why, sizeof(why)) != 0) {
		FUZZ_CHECK(memchr(why, '\0', sizeof(why)) != NULL);
		return;
	}
	memset(again, 0, sizeof(again));
	meta_sb_encode(&sb, again);
	FUZZ_CHECK(memcmp(again, blk, META_BLOCK) == 0);
}

/* What the daemon relies on when it reads and writes the areas. */
static void
check_layout(const struct meta_sb *sb, uint64_t dev_size, int internal, uint64_t disk_size)
{
	uint64_t end;

	FUZZ_CHECK(sb->disk_size == disk_size);
	FUZZ_CHECK(sb->sb_offset % META_BLOCK == 0 && sb->sb_offset + META_BLOCK <= dev_size);
	FUZZ_CHECK(sb->actmap_offset % META_BLOCK == 0 && sb->bitmap_offset % META_BLOCK == 0);
	FUZZ_CHECK(sb->actmap_bytes && sb->actmap_bytes % META_BLOCK == 0);
	FUZZ_CHECK(sb->bitmap_bytes && sb->bitmap_bytes % META_BLOCK == 0);
	FUZZ_CHECK(sb->actmap_offset + sb->actmap_bytes > sb->actmap_offset);
	FUZZ_CHECK(sb->actmap_offset + sb->actmap_bytes <= sb->bitmap_offset);
	end = sb->bitmap_offset + sb->bitmap_bytes;
	FUZZ_CHECK(end > sb->bitmap_offset && end <= dev_size);
	FUZZ_CHECK((sb->bitmap_bytes * 8) >= (sb->data_size + sb->granularity - 1) / sb->granularity);
	FUZZ_CHECK((sb->actmap_bytes * 8) >=
		   (sb->data_size + (1ull << sb->al_extent_shift) - 1) >> sb->al_extent_shift);
	if (internal) {
		FUZZ_CHECK(sb->data_size <= sb->md_offset && sb->md_offset == sb->actmap_offset);
		FUZZ_CHECK(end <= sb->sb_offset);
	} else {
		FUZZ_CHECK(sb->sb_offset == 0 && sb->actmap_offset >= META_BLOCK);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t blk[META_BLOCK];
	struct meta_sb sb, got;
	uint64_t disk_size, dev_size, loc;
	char why[512];
	int fd, internal, rc;
	uint8_t mode;

	if (size < 11 || size > (1u << 20))
		return 0;
	mode = data[0];
	internal = mode & 1;
	disk_size = le(data + 1, 8);
	dev_size = (le(data + 9, 2) | 1) * 512;
	data += 11;
	size -= 11;

	/* A raw block, as it could be found on a disk. */
	memset(blk, 0, sizeof(blk));
	memcpy(blk, data, size < META_BLOCK ? size : META_BLOCK);
	check_decode(blk);

	fd = memfd_create("fuzz-meta", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)dev_size) < 0)
		abort();
	if (mode & 2) {
		memset(&sb, 0, sizeof(sb));
		memcpy(&sb, data, size < sizeof(sb) ? size : sizeof(sb));
		data += size < sizeof(sb) ? size : sizeof(sb);
		size -= size < sizeof(sb) ? size : sizeof(sb);
		if (mode & 4)
			disk_size = sb.disk_size;
		memset(blk, 0, sizeof(blk));
		meta_sb_encode(&sb, blk);
		check_decode(blk);
	}
	if (size && pwrite(fd, data, size < dev_size ? size : dev_size, 0) < 0)
		abort();
	if (mode & 2) {
		loc = meta_sb_location(dev_size, internal);
		if ((mode & 8) && loc >= META_BLOCK)
			loc -= META_BLOCK;
		if (loc + META_BLOCK <= dev_size &&
		    pwrite(fd, blk, META_BLOCK, (off_t)loc) != META_BLOCK)
			abort();
	}
	why[0] = '\0';
	rc = meta_read_sb(fd, dev_size, internal, disk_size, &got, why, sizeof(why));
	FUZZ_CHECK(memchr(why, '\0', sizeof(why)) != NULL);
	if (rc == 0)
		check_layout(&got, dev_size, internal, disk_size);
	close(fd);
	return 0;
}
