/* Unit tests for daemon/dirty.c: what the dirty map leaves on disk while
 * its metadata thread runs.  A file with fresh internal metadata, a real
 * event loop for the writes that wait for their activity marks, and the
 * on-disk bitmap and activity map read back with pread, as the next start
 * after a kill -9 would read them. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "tests/unit/cu_run.h"

#include "daemon/dirty.h"
#include "daemon/meta.h"
#include "lib/ev.h"

#define DISK (64ull << 20)
#define GRAN 4096u
#define EXT_SHIFT 22u	/* 4 MiB activity extents */

struct fixture {
	int fd;
	struct meta_sb sb;
	struct dm *dm;
};

static void
fx_open(struct fixture *f)
{
	char path[] = "/tmp/test_dirty.XXXXXX", why[256];

	f->fd = mkstemp(path);
	CU_ASSERT_FATAL(f->fd >= 0);
	unlink(path);
	CU_ASSERT_FATAL(ftruncate(f->fd, (off_t)DISK) == 0);
	CU_ASSERT_FATAL(meta_layout(&f->sb, DISK, 1, 0, GRAN, EXT_SHIFT) == 0);
	CU_ASSERT_FATAL(meta_create(f->fd, &f->sb) == 0);
	CU_ASSERT_FATAL(dm_open(&f->dm, f->fd, &f->sb, 257, why, sizeof(why)) == 0);
	CU_ASSERT_FATAL(dm_start(f->dm) == 0);
}

static void
fx_close(struct fixture *f)
{
	CU_ASSERT_EQUAL(dm_stop(f->dm), 0);
	dm_free(f->dm);
	close(f->fd);
}

/* Bit `bit` of the on-disk area at off. */
static int
disk_bit(const struct fixture *f, uint64_t off, uint64_t bit)
{
	unsigned char byte = 0;

	CU_ASSERT_FATAL(pread(f->fd, &byte, 1, (off_t)(off + bit / 8)) == 1);
	return (byte >> (bit % 8)) & 1;
}

static int
disk_oos(const struct fixture *f, uint64_t data_off)
{
	return disk_bit(f, f->sb.bitmap_offset, data_off / GRAN);
}

static int
disk_marked(const struct fixture *f, uint64_t data_off)
{
	return disk_bit(f, f->sb.actmap_offset, data_off >> EXT_SHIFT);
}

static void
woken(struct ev_msg *m)
{
	struct req_wait *w = (struct req_wait *)m;

	ev_stop(w->loop);
}

/* dm_write_begin, and when it parks the caller, the wait for the marks
 * on a loop of its own (a stopped loop does not run again). */
static int
begin(struct fixture *f, uint64_t off, uint64_t len, int mark_oos)
{
	struct req_wait w;
	int rc;

	memset(&w, 0, sizeof(w));
	CU_ASSERT_FATAL(ev_new(&w.loop, 8, 0) == 0);
	w.msg.fn = woken;
	rc = dm_write_begin(f->dm, off, len, mark_oos, &w);
	CU_ASSERT_FATAL(rc >= 0);
	if (rc == 1) {
		CU_ASSERT_FATAL(ev_run(w.loop) == 0);
		rc = w.res;
	}
	ev_free(w.loop);
	return rc;
}

/* A write's metadata part, as the write path does it: marks, waits until
 * they are durable, then ends (the data write itself does not matter). */
static void
write_marks(struct fixture *f, uint64_t off, uint64_t len, int mark_oos)
{
	CU_ASSERT_EQUAL_FATAL(begin(f, off, len, mark_oos), 0);
	dm_write_end(f->dm, off, len);
}

/* A resync end: bits cleared in memory reach the disk, with the thread
 * running, so a crash right after cannot bring them back. */
static void
test_dirty_sync_bitmap_writes_cleared_bits(void)
{
	struct fixture f;

	fx_open(&f);
	dm_mark_oos(f.dm, 8 << 20, 65536);
	CU_ASSERT_EQUAL(dm_sync_bitmap(f.dm), 0);
	CU_ASSERT(disk_oos(&f, 8 << 20));
	dm_clear_oos(f.dm, 8 << 20, 65536);
	CU_ASSERT(disk_oos(&f, 8 << 20));	/* memory only so far */
	CU_ASSERT_EQUAL(dm_sync_bitmap(f.dm), 0);
	CU_ASSERT_FALSE(disk_oos(&f, 8 << 20));
	CU_ASSERT_FALSE(dm_any_oos(f.dm));
	fx_close(&f);
}

/* A demote: the activity marks of the primary's writes leave the disk, and
 * the bits of a write that did not reach the peer are durable first. */
static void
test_dirty_drain_activity_empties_the_map(void)
{
	struct fixture f;

	fx_open(&f);
	write_marks(&f, 0, 65536, 0);		/* replicated */
	write_marks(&f, 12 << 20, 4096, 1);	/* alone: marked out of sync */
	CU_ASSERT(disk_marked(&f, 0));
	CU_ASSERT(disk_marked(&f, 12 << 20));
	CU_ASSERT_EQUAL(dm_drain_activity(f.dm), 0);
	CU_ASSERT_FALSE(disk_marked(&f, 0));
	CU_ASSERT_FALSE(disk_marked(&f, 12 << 20));
	CU_ASSERT(disk_oos(&f, 12 << 20));
	CU_ASSERT_FALSE(disk_oos(&f, 0));
	/* Still usable: the next write marks its extent again. */
	write_marks(&f, 0, 4096, 0);
	CU_ASSERT(disk_marked(&f, 0));
	fx_close(&f);
}

/* An extent with a write in flight keeps its mark. */
static void
test_dirty_drain_activity_keeps_busy_extents(void)
{
	struct fixture f;

	fx_open(&f);
	CU_ASSERT_EQUAL_FATAL(begin(&f, 20 << 20, 4096, 0), 0);
	CU_ASSERT_EQUAL(dm_drain_activity(f.dm), 0);
	CU_ASSERT(disk_marked(&f, 20 << 20));
	dm_write_end(f.dm, 20 << 20, 4096);
	CU_ASSERT_EQUAL(dm_drain_activity(f.dm), 0);
	CU_ASSERT_FALSE(disk_marked(&f, 20 << 20));
	fx_close(&f);
}

/* What a node records when it stops being primary. */
static void
test_dirty_leave_primary_records_local_changes(void)
{
	struct fixture f;
	struct meta_sb sb;

	fx_open(&f);
	dm_sb_get(f.dm, &sb);
	sb.flags |= META_F_PRIMARY;
	dm_leave_primary(f.dm, &sb);
	CU_ASSERT_FALSE(sb.flags & (META_F_PRIMARY | META_F_LOCAL_CHANGES));
	dm_mark_oos(f.dm, 0, 4096);
	sb.flags |= META_F_PRIMARY;
	dm_leave_primary(f.dm, &sb);
	CU_ASSERT_FALSE(sb.flags & META_F_PRIMARY);
	CU_ASSERT(sb.flags & META_F_LOCAL_CHANGES);
	/* A new generation says it for every block: the flag goes, and a
	 * node with a bitmap generation does not need it. */
	meta_start_generation(&sb);
	CU_ASSERT_FALSE(sb.flags & META_F_LOCAL_CHANGES);
	sb.flags |= META_F_PRIMARY;
	dm_leave_primary(f.dm, &sb);
	CU_ASSERT_FALSE(sb.flags & (META_F_PRIMARY | META_F_LOCAL_CHANGES));
	fx_close(&f);
}

/* The peer is lost with blocks out of sync: a pending new generation is
 * taken at once, and only once. */
static void
test_dirty_new_gen_now(void)
{
	struct fixture f;
	struct meta_sb a, b;

	fx_open(&f);
	dm_sb_get(f.dm, &a);
	CU_ASSERT_EQUAL(dm_new_gen_now(f.dm), 0);	/* none pending */
	dm_sb_get(f.dm, &b);
	CU_ASSERT_EQUAL(b.gen_current, a.gen_current);
	dm_new_gen_on_write(f.dm, 1);
	CU_ASSERT_EQUAL(dm_new_gen_now(f.dm), 0);
	dm_sb_get(f.dm, &b);
	CU_ASSERT_NOT_EQUAL(b.gen_current, a.gen_current);
	CU_ASSERT_EQUAL(b.gen_bitmap, a.gen_current);
	a = b;
	write_marks(&f, 0, 4096, 1);	/* the write alone finds it taken */
	dm_sb_get(f.dm, &b);
	CU_ASSERT_EQUAL(b.gen_current, a.gen_current);
	fx_close(&f);
}

int
main(void)
{
	static const struct cu_test tests[] = {
		{ "test_dirty_sync_bitmap_writes_cleared_bits",
		  test_dirty_sync_bitmap_writes_cleared_bits },
		{ "test_dirty_drain_activity_empties_the_map",
		  test_dirty_drain_activity_empties_the_map },
		{ "test_dirty_drain_activity_keeps_busy_extents",
		  test_dirty_drain_activity_keeps_busy_extents },
		{ "test_dirty_leave_primary_records_local_changes",
		  test_dirty_leave_primary_records_local_changes },
		{ "test_dirty_new_gen_now", test_dirty_new_gen_now },
	};

	return cu_run("dirty", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
