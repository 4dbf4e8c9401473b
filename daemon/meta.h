/* meta: on-disk metadata.  A superblock (magic, version, sizes, generation
 * identifiers, flags, checksum), then an activity map (one bit per
 * al-extent: "writes may be in flight here") and the dirty bitmap (one bit
 * per granule: "this block may differ from the peer").
 *
 * Layout, all offsets 4 KiB aligned and absolute on the metadata device:
 *   internal (meta-disk = internal): the metadata area is the tail of the
 *     disk; the superblock is the last whole 4 KiB block of the disk (disk
 *     size rounded down to 4 KiB, minus 4 KiB), the bitmap and the activity
 *     map sit just before it:  [data][gap][actmap][bitmap][sb]
 *     (the gap, under a few 4 KiB blocks, is what rounding leaves over).
 *   external (meta-disk = PATH): superblock FIRST, at offset 0 of PATH, so
 *     it can be found without knowing data_size:  [sb][actmap][bitmap].
 *     sb_offset == 0 identifies an external superblock.
 * The superblock records data_size and disk_size; a disk whose size no
 * longer matches is refused. */
#ifndef BLKMIRROR_META_H
#define BLKMIRROR_META_H

#include <stdint.h>
#include <stddef.h>

#define META_MAGIC   0x424c4b4d49525231ull  /* "BLKMIRR1" */
#define META_VERSION 1
#define META_BLOCK   4096u
#define META_HISTORY 4

/* Flags in meta_sb.flags */
#define META_F_CONSISTENT      (1u << 0) /* data is a consistent image (not mid-resync target) */
#define META_F_UPTODATE        (1u << 1) /* data was up to date when last known */
#define META_F_PRIMARY         (1u << 2) /* node is primary; cleared on clean demote/stop */
#define META_F_CRASHED_PRIMARY (1u << 3) /* came up with META_F_PRIMARY still set */
#define META_F_PEER_OUTDATED   (1u << 4) /* the peer is known to be outdated */
#define META_F_JUST_CREATED    (1u << 5) /* fresh create-md, never promoted or synced */
/* Left primary (demote, clean stop) with blocks out of sync at a current
 * generation it shares with the peer (no bitmap generation): writes of its
 * own the peer may lack (pull-ahead, a write the
 * peer failed), not yet resynced.  The only record of that once the node
 * is no longer primary: out-of-sync bits alone may be a secondary's
 * activity extents or a resync's leftovers. */
#define META_F_LOCAL_CHANGES   (1u << 7)
/* A verify found blocks that differ from the peer, at a current generation
 * both share, and the resync that repairs them has not ended: the bits
 * name real differences, not stale marks (gen_compare row 38).  Set on
 * the node that verified, once the bits are on disk; cleared when a
 * resync pass ends with nothing out of sync, at a resync end as target,
 * with no bits left at a connect, and with a new generation. */
#define META_F_VERIFY_DIFF     (1u << 8)
#define META_F_ALL             0x1bfu
/* Not stored: sent in px_state flags when the operator asked this node to
 * become sync target (discard-my-data). */
#define META_F_DISCARD_REQUESTED (1u << 6)

/* In-memory superblock, host byte order.  The on-disk form is little
 * endian, fixed size, with a SHA-256-derived checksum; see meta.c. */
struct meta_sb {
	uint32_t version;
	uint32_t flags;
	uint64_t disk_size;      /* bytes of the data disk when created */
	uint64_t data_size;      /* bytes exposed to users, multiple of 4096 */
	uint32_t granularity;    /* bytes per bitmap bit, power of two >= 4096 */
	uint32_t al_extent_shift;/* log2 of the activity-map extent size */
	uint64_t gen_current;    /* generation identifiers, DRBD style */
	uint64_t gen_bitmap;
	uint64_t gen_history[META_HISTORY];
	uint64_t node_uuid;      /* random per create-md; identifies this disk */
	uint64_t md_offset;      /* byte offset of the metadata area on its device */
	uint64_t actmap_offset;  /* absolute byte offsets on the metadata device */
	uint64_t actmap_bytes;
	uint64_t bitmap_offset;
	uint64_t bitmap_bytes;
	uint64_t sb_offset;
};

/* Bytes of metadata (activity map + bitmap + superblock, each rounded up to
 * 4 KiB) needed for data_size bytes of data. */
uint64_t meta_md_bytes(uint64_t data_size, uint32_t granularity, uint32_t al_extent_shift);

/* Fills *sb with a fresh layout: for internal metadata the largest
 * 4 KiB-multiple data_size such that data + metadata <= disk_size; for
 * external, data_size = disk_size rounded down to 4 KiB and the metadata at
 * offset 0 of a device of md_dev_size bytes.  Returns -ENOSPC if the disk
 * (or metadata device) is too small, -EINVAL for a bad granularity or
 * extent shift.  Flags = META_F_JUST_CREATED, generations zero except
 * gen_current = 4 ("just created"), node_uuid random. */
int meta_layout(struct meta_sb *sb, uint64_t disk_size, int internal,
		uint64_t md_dev_size, uint32_t granularity, uint32_t al_extent_shift);

/* Encodes sb into one 4 KiB block (buf) with its checksum. */
void meta_sb_encode(const struct meta_sb *sb, void *buf);
/* Decodes and validates one 4 KiB block.  Returns 0, or:
 *   -ENOENT  no magic: no blkmirror metadata here
 *   -EPROTO  unsupported version
 *   -EBADMSG checksum mismatch
 *   -EINVAL  fields out of range or inconsistent (sizes, offsets, granularity)
 * and writes a one-line reason into why (may be NULL).  *sb is filled when
 * the checksum matched (so on 0 and on -EINVAL). */
int meta_sb_decode(const void *buf, struct meta_sb *sb, char *why, size_t whylen);

/* Where the superblock lives for a device of md_dev_size bytes: internal,
 * the last whole 4 KiB block; external, offset 0. */
uint64_t meta_sb_location(uint64_t md_dev_size, int internal);

/* Reads and validates the superblock of an opened metadata device fd of
 * md_dev_size bytes (4 KiB aligned buffer: O_DIRECT fds work), then checks
 * it against the data disk size.  Returns 0 or a negative errno as
 * meta_sb_decode, plus -EFBIG when the disk is larger and -ERANGE when it
 * is smaller than the superblock records (or, external, when the metadata
 * device is too small for the metadata), -EINVAL when the superblock
 * belongs at another offset (meta-disk changed), -errno of a failed read.
 * why says which, in words an operator understands ("no blkmirror metadata
 * found at offset N (...): run 'mirrorctl create-md'", "metadata checksum
 * mismatch at offset N: the metadata is corrupt", "disk is N bytes but its
 * metadata was created for M bytes"); it does not name the device, the
 * caller prefixes the path. */
int meta_read_sb(int md_fd, uint64_t md_dev_size, int internal, uint64_t disk_size,
		 struct meta_sb *sb, char *why, size_t whylen);
/* Writes the superblock at sb->sb_offset (pwrite of one aligned 4 KiB
 * block + fdatasync).  Refuses, with meta_sb_decode's error, a superblock
 * that would not read back. */
int meta_write_sb(int md_fd, const struct meta_sb *sb);

/* Writes a fresh metadata area: invalidates any old superblock, zeroes the
 * activity map and bitmap, fdatasync, then writes the superblock and
 * fdatasync again.  Used by `mirrorctl create-md`. */
int meta_create(int md_fd, const struct meta_sb *sb);

/* New random 64-bit generation identifier (never 0..15, which are reserved). */
uint64_t meta_new_gen(void);
/* This node goes on alone: the current generation becomes the bitmap one
 * (what the peer last shared; kept if already set), history shifts, a new
 * current is drawn.  META_F_LOCAL_CHANGES goes: the bitmap generation now
 * says the same for every block. */
void meta_start_generation(struct meta_sb *sb);

#endif
