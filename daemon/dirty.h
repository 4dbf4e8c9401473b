/* dm: the dirty map.  Two levels, in the manner of DRBD's activity log and
 * hastd's activemap:
 *  - the bitmap: one bit per granule (default 4 KiB), "may differ from the
 *    peer".  Kept in memory, written to disk lazily.
 *  - the activity map: one bit per extent (default 4 MiB), "writes may be
 *    in flight or recently done here".  A write may start only once its
 *    extents' bits are durable; hot extents stay marked (up to al-extents
 *    of them) so most writes cost no metadata I/O.  Marks needed by many
 *    writes at once are written in one batch (one pwrite per page + one
 *    fdatasync).  An extent leaves the map only after its bitmap pages are
 *    durable, so after a crash bitmap | activity-extents covers every
 *    write that may have reached the disk.
 * A metadata thread does the metadata I/O; waiting writes are woken on
 * their own queue thread through ev_post. */
#ifndef BLKMIRROR_DIRTY_H
#define BLKMIRROR_DIRTY_H

#include <stdint.h>
#include <stddef.h>

#include "daemon/meta.h"
#include "lib/req.h"

struct dm;

struct dm_stats {
	uint64_t oos_bytes;         /* bitmap bits set * granularity (clipped to size) */
	uint32_t hot_extents;
	uint64_t md_writes;         /* metadata batches written */
};

/* Loads the bitmap and activity map of the metadata described by sb from
 * md_fd (which stays owned by the caller and open until dm_free), folds the
 * activity extents of an unclean stop into the bitmap and persists that.
 * Returns 0 or -errno with why set. */
int dm_open(struct dm **out, int md_fd, const struct meta_sb *sb, uint32_t al_extents,
	    char *why, size_t whylen);
/* Starts the metadata thread. */
int dm_start(struct dm *dm);
/* Stops the thread, writes every dirty bitmap page, empties the activity
 * map on disk.  Call only with no write in flight.  0 or -errno. */
int dm_stop(struct dm *dm);
void dm_free(struct dm *dm); /* NULL is a no-op */

/* Before a write (or trim/zero) of [off, off+len): marks the extents in
 * flight, and the bitmap when mark_oos (the write will not reach the peer
 * now: not connected).  A replicated write that fails to reach the peer is
 * marked afterwards with dm_mark_oos().  Returns 0 when the extents are durably marked
 * (start the write now), 1 when the caller must wait: w->msg.fn then runs
 * on w->loop, with w->res 0 or -errno if the metadata write failed; or -errno
 * when the metadata cannot be written (the disk failed). */
int dm_write_begin(struct dm *dm, uint64_t off, uint64_t len, int mark_oos, struct req_wait *w);
/* After that write finished (successfully or not). */
void dm_write_end(struct dm *dm, uint64_t off, uint64_t len);
/* One more holder of the extents of a write in flight (between its
 * dm_write_begin and dm_write_end): the data link's transfer log, which
 * keeps them hot until the peer has the write durably or it is marked out
 * of sync, so that mark is covered by the activity map after a crash.
 * Released with dm_write_end. */
void dm_write_ref(struct dm *dm, uint64_t off, uint64_t len);
/* Resync and verify: mark / clear bitmap bits for a range (rounded out for
 * mark, in for clear).  A mark in an extent that is not hot is written to
 * disk by the metadata thread soon after (not before the call returns):
 * a mark that must be durable at once needs its extent held hot. */
void dm_mark_oos(struct dm *dm, uint64_t off, uint64_t len);
void dm_clear_oos(struct dm *dm, uint64_t off, uint64_t len);
/* Marks the whole data area out of sync (full sync). */
void dm_mark_all(struct dm *dm);
/* Next out-of-sync range at or after off: returns 0 with *roff, *rlen set,
 * or -ENOENT. */
int dm_next_oos(struct dm *dm, uint64_t off, uint64_t maxlen, uint64_t *roff, uint64_t *rlen);
/* on: the next write that is not replicated (mark_oos) first moves the
 * metadata to a new generation (meta_start_generation), durably, in the
 * same batch as its activity marks.  off: cancel (the peer is back). */
void dm_new_gen_on_write(struct dm *dm, int on);
/* Writes dirty bitmap pages now (synchronously).  0 or -errno.  Only
 * before dm_start or after dm_stop. */
int dm_flush_bitmap(struct dm *dm);
/* Makes the bitmap on disk what it is in memory now, durably, while the
 * metadata thread runs (it does the I/O; the caller waits).  For a resync
 * end: the bits it cleared must not come back after a crash.  Not on a
 * queue thread: writers wait meanwhile.  0 or -errno. */
int dm_sync_bitmap(struct dm *dm);
/* dm_sync_bitmap, then takes every extent with no write in flight out of
 * the activity map, durably.  For a demote: the marks a primary's writes
 * left must not outlive its role, since after a crash they would come back
 * as blocks out of sync that no write of the secondary explains.  0 or
 * -errno. */
int dm_drain_activity(struct dm *dm);
/* Clears every bit (both sides agreed their data are equal).  Memory only:
 * follow with dm_sync_bitmap. */
void dm_clear_all(struct dm *dm);
/* When a dm_new_gen_on_write() is still pending: moves the metadata to a
 * new generation now, durably, and cancels it.  For a primary that loses
 * its peer with blocks already out of sync (writes in flight, pull-ahead):
 * those are writes alone too.  0 or -errno. */
int dm_new_gen_now(struct dm *dm);
/* True when any bit is set. */
int dm_any_oos(struct dm *dm);
/* The flags of a node that stops being primary cleanly (demote, clean
 * stop): META_F_PRIMARY goes; with blocks out of sync at a generation it
 * shares with the peer (no bitmap generation), META_F_LOCAL_CHANGES comes
 * (writes the peer may lack, see meta.h).  The caller writes sb. */
void dm_leave_primary(struct dm *dm, struct meta_sb *sb);
/* Raw bitmap access for the exchange with the peer (byte offsets into the
 * on-disk bitmap layout). */
uint64_t dm_bitmap_bytes(struct dm *dm);
void dm_bitmap_get(struct dm *dm, uint64_t off, void *buf, uint32_t len);
void dm_bitmap_or(struct dm *dm, uint64_t off, const void *buf, uint32_t len);
void dm_get_stats(struct dm *dm, struct dm_stats *st);
uint32_t dm_granularity(const struct dm *dm);

/* The superblock kept by the dirty map (it owns the metadata device).
 * Any thread.  dm_sb_write writes it durably. */
void dm_sb_get(struct dm *dm, struct meta_sb *sb);
int dm_sb_write(struct dm *dm, const struct meta_sb *sb);
/* A read-modify-write of the superblock that no other thread's can cut
 * in two (the metadata thread moves the generation while the peer and
 * control threads change flags): dm_sb_begin copies it out and holds it,
 * dm_sb_commit writes the changed copy durably and lets go (0 or -errno),
 * dm_sb_abort lets go without writing.  In between: no other dm_sb_* call,
 * nothing slow, and r->lock not taken (it is taken before, never after). */
void dm_sb_begin(struct dm *dm, struct meta_sb *sb);
int dm_sb_commit(struct dm *dm, const struct meta_sb *sb);
void dm_sb_abort(struct dm *dm);

/* on-io-error: fn(arg, -errno) is called on every failed metadata write,
 * on the thread that wrote (the metadata thread, or the caller of a
 * dm_sb_* write), with no dm lock held; it may call dm_detach.  Set
 * before dm_start. */
void dm_set_error_cb(struct dm *dm, void (*fn)(void *arg, int err), void *arg);
/* The disk failed and is detached (on-io-error = detach): from now on
 * nothing is written to the metadata, superblock writes only change the
 * copy in memory, marks count as durable at once and a sticky error is
 * forgotten.  Any thread without a dm lock. */
void dm_detach(struct dm *dm);
/* Undoes dm_detach (mirrorctl attach): writes go to the metadata again.
 * The caller writes the superblock and the bitmap, and detaches again if
 * that fails. */
void dm_reattach(struct dm *dm);

#endif
