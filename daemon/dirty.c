#include "daemon/dirty.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "daemon/bitmap.h"
#include "lib/fault.h"
#include "lib/log.h"
#include "lib/util.h"

#define DM_MAGIC 0x646d6170u           /* "dmap" */
#define DM_NONE UINT32_MAX
#define DM_PAGE 4096u
#define DM_EVICT_MAX 64                /* extents evicted per round */
#define DM_IO_PAGES 512                /* staging for one metadata write */

enum dm_ext_state {
	EXT_COLD,      /* not in the activity map */
	EXT_PENDING,   /* marked, durable once batch <= durable_batch */
	EXT_EVICTING,  /* its bitmap pages are being written; a write makes it HOT again */
};

struct dm_ext {
	uint64_t batch;    /* batch that makes the mark durable */
	uint32_t inflight; /* writes in flight in this extent */
	uint32_t prev, next; /* LRU of marked extents, oldest first */
	uint8_t state;
};

/* One lock protects everything below it; the metadata thread drops it
 * around I/O, working on snapshots of the pages it writes. */
struct dm {
	uint32_t magic;
	int md_fd;
	pthread_mutex_t sb_lock;  /* protects sb and superblock writes */
	struct meta_sb sb;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct bm *bitmap;        /* granules out of sync */
	struct bm *actmap;        /* extents marked (image of the on-disk map) */
	uint64_t data_size;
	uint64_t bitmap_off, actmap_off; /* fixed: copies of the sb fields */
	uint32_t gran_shift;
	uint32_t ext_shift;
	uint32_t n_ext;
	struct dm_ext *ext;
	uint32_t lru_head, lru_tail;
	uint32_t marked;          /* extents in the LRU */
	uint32_t al_extents;
	uint64_t open_batch;      /* batch new marks join */
	uint64_t durable_batch;   /* every batch <= this is on disk */
	uint32_t pending;         /* marks waiting in open_batch */
	int md_error;             /* sticky: metadata can no longer be written */
	int err_deferred;         /* an error dm_sync_run could not report under lock */
	/* Set once the owner detached the disk (on-io-error = detach): nothing
	 * is written any more, and the marks count as durable at once, since
	 * the bitmap that matters now is the peer's.  Read without lock. */
	_Atomic int detached;
	void (*on_error)(void *arg, int err); /* set before dm_start */
	void *on_error_arg;
	struct req_wait *waiters;
	uint64_t md_writes;
	int gen_bump;             /* next unreplicated write starts a generation */
	int bitmap_urgent;        /* marks outside hot extents: write the bitmap */
	uint64_t sync_req;        /* dm_sync_bitmap calls asked for ... */
	uint64_t sync_done;       /* ... and answered by the thread */
	int sync_drain;           /* one of them also empties the activity map */
	int sync_rc;              /* result of the last answered one */
	pthread_cond_t sync_cond; /* signalled when sync_done moves */
	int stopping;
	int thread_started;
	pthread_t thread;

	void *iobuf;              /* DM_IO_PAGES pages, touched by the thread only */
	uint32_t iopages[DM_IO_PAGES];
};

static void
dm_check(const struct dm *dm)
{
	VERIFY(dm && dm->magic == DM_MAGIC);
}

uint32_t
dm_granularity(const struct dm *dm)
{
	return 1u << dm->gran_shift;
}

static uint32_t
dm_log2(uint64_t v)
{
	return (uint32_t)__builtin_ctzll(v);
}

/* LRU list of marked extents. */
static void
dm_lru_del(struct dm *dm, uint32_t e)
{
	struct dm_ext *x = &dm->ext[e];

	if (x->prev != DM_NONE)
		dm->ext[x->prev].next = x->next;
	else
		dm->lru_head = x->next;
	if (x->next != DM_NONE)
		dm->ext[x->next].prev = x->prev;
	else
		dm->lru_tail = x->prev;
	x->prev = x->next = DM_NONE;
}

static void
dm_lru_add_tail(struct dm *dm, uint32_t e)
{
	struct dm_ext *x = &dm->ext[e];

	x->next = DM_NONE;
	x->prev = dm->lru_tail;
	if (dm->lru_tail != DM_NONE)
		dm->ext[dm->lru_tail].next = e;
	else
		dm->lru_head = e;
	dm->lru_tail = e;
}

/* Tests only (lib/fault.h): a slow metadata disk.  The metadata writes are
 * synchronous on their caller's thread, as a slow disk would keep them. */
static void
dm_fault_slow(void)
{
	struct timespec ts = { 0, 300 * 1000 * 1000 };

	if (FAULT("meta/write/slow"))
		nanosleep(&ts, NULL);
}

/* pwritev2 of one buffer; in tests (lib/fault.h) a disk that writes only
 * the first half, in sectors, as the kernel may.  A device whose O_DIRECT
 * cannot write half a page is not short. */
static ssize_t
dm_pwrite(int fd, void *buf, size_t len, uint64_t off)
{
	struct iovec iov = { buf, len };
	ssize_t w;

	if (len >= 1024 && FAULT("meta/write/short")) {
		iov.iov_len = len / 2 / 512 * 512;
		w = pwritev2(fd, &iov, 1, (off_t)off, RWF_DSYNC);
		if (w >= 0 || errno != EINVAL)
			return w;
		iov.iov_len = len;
	}
	return pwritev2(fd, &iov, 1, (off_t)off, RWF_DSYNC);
}

/* Writes `n` staged pages (iobuf) to base + page*4096, one write per run of
 * consecutive pages, each durable (RWF_DSYNC) so that only this range is
 * flushed, not the data pages of a shared file. */
static int
dm_write_pages(struct dm *dm, uint64_t base, uint32_t n)
{
	uint32_t i = 0;

	if (atomic_load(&dm->detached))
		return 0;	/* the disk failed: persist nothing on it */
	if (n && FAULT("meta/write/eio"))	/* tests: a failing metadata disk */
		return -EIO;
	if (n)
		dm_fault_slow();
	while (i < n) {
		uint32_t j = i + 1;
		size_t len, done = 0;
		ssize_t w;

		while (j < n && dm->iopages[j] == dm->iopages[j - 1] + 1)
			j++;
		len = (size_t)(j - i) * DM_PAGE;
		/* A short write is the kernel's to make (a signal, a full
		 * device): the rest is written again, and the next call
		 * returns the error if there is one. */
		while (done < len) {
			w = dm_pwrite(dm->md_fd, (char *)dm->iobuf + (size_t)i * DM_PAGE + done,
				      len - done, base + (uint64_t)dm->iopages[i] * DM_PAGE + done);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return -errno;
			if (w == 0)
				return -EIO;
			done += (size_t)w;
		}
		i = j;
	}
	return 0;
}

/* Under lock: copy dirty pages of b in [first, last] into iobuf from slot
 * n0 on (until it is full) and mark them clean; returns how many.  A later change re-dirties a page, so
 * nothing set after the snapshot can be lost. */
static uint32_t
dm_snapshot(struct dm *dm, struct bm *b, uint32_t n0, size_t first, size_t last)
{
	uint32_t n = n0;
	size_t p;

	for (p = bm_next_dirty_page(b, first); p <= last && p < bm_npages(b) && n < DM_IO_PAGES;
	     p = bm_next_dirty_page(b, p + 1)) {
		memcpy((char *)dm->iobuf + (size_t)n * DM_PAGE,
		       (char *)bm_data(b) + p * DM_PAGE, DM_PAGE);
		bm_page_clean(b, p);
		dm->iopages[n++] = (uint32_t)p;
	}
	return n - n0;
}

/* A metadata write failed: the owner decides (on-io-error).  Called without
 * dm->lock, as the owner may detach the disk (dm_detach).  Returns rc, or 0
 * when the disk is detached now: nothing is written any more, so the error
 * is no one's to see. */
static int
dm_io_error(struct dm *dm, int rc)
{
	if (rc >= 0)
		return rc;
	if (dm->on_error)
		dm->on_error(dm->on_error_arg, rc);
	return atomic_load(&dm->detached) ? 0 : rc;
}

static void
dm_wake(struct dm *dm)
{
	struct req_wait **pp = &dm->waiters, *w;

	while ((w = *pp)) {
		if (dm->md_error || w->key <= dm->durable_batch) {
			*pp = w->next;
			w->res = dm->md_error;
			ev_post(w->loop, &w->msg);
		} else {
			pp = &w->next;
		}
	}
}

/* Writes the open batch of activity marks: the thread's main job. */
static void
dm_commit_batch(struct dm *dm)
{
	uint64_t b = dm->open_batch++;
	uint32_t n;
	int rc = 0, bump = dm->gen_bump;

	dm->pending = 0;
	dm->gen_bump = 0;
	n = dm_snapshot(dm, dm->actmap, 0, 0, SIZE_MAX);
	pthread_mutex_unlock(&dm->lock);
	if (bump) {	/* before the write that diverges reaches the disk */
		struct meta_sb sb;

		dm_sb_begin(dm, &sb);
		meta_start_generation(&sb);
		rc = dm_sb_commit(dm, &sb);
		if (!rc)
			LOG_INFO("metadata: first write without the peer: new generation %016llx",
				 (unsigned long long)sb.gen_current);
	}
	if (!rc)
		rc = dm_write_pages(dm, dm->actmap_off, n);
	rc = dm_io_error(dm, rc);
	pthread_mutex_lock(&dm->lock);
	if (rc < 0 && !dm->md_error) {
		LOG_ERROR("metadata: writing the activity map failed: %s", strerror(-rc));
		dm->md_error = rc;
	}
	dm->md_writes++;
	dm->durable_batch = b;
	dm_wake(dm);
}

/* Takes idle extents out of the activity map once there are more than
 * al-extents of them; their bitmap pages go to disk first. */
static void
dm_evict(struct dm *dm)
{
	uint32_t victims[DM_EVICT_MAX], nv = 0, n = 0, e;
	uint64_t bits_per_ext = 1ull << (dm->ext_shift - dm->gran_shift);
	int rc;

	for (e = dm->lru_head; e != DM_NONE && dm->marked - nv > dm->al_extents &&
	     nv < DM_EVICT_MAX; e = dm->ext[e].next) {
		struct dm_ext *x = &dm->ext[e];
		if (x->inflight || x->state != EXT_PENDING || x->batch > dm->durable_batch)
			continue;
		x->state = EXT_EVICTING;
		victims[nv++] = e;
	}
	if (!nv)
		return;
	for (uint32_t i = 0; i < nv; i++) {
		uint64_t first = (uint64_t)victims[i] * bits_per_ext;
		uint64_t last = MIN(first + bits_per_ext, bm_nbits(dm->bitmap)) - 1;

		n += dm_snapshot(dm, dm->bitmap, n, first / (8 * DM_PAGE), last / (8 * DM_PAGE));
	}
	pthread_mutex_unlock(&dm->lock);
	rc = dm_io_error(dm, dm_write_pages(dm, dm->bitmap_off, n));
	pthread_mutex_lock(&dm->lock);
	if (rc < 0) {
		if (!dm->md_error)
			LOG_ERROR("metadata: writing the bitmap failed: %s", strerror(-rc));
		dm->md_error = rc;
		dm_wake(dm);
	}
	for (uint32_t i = 0; i < nv; i++) {
		struct dm_ext *x = &dm->ext[victims[i]];
		if (x->state != EXT_EVICTING)
			continue;	/* written again meanwhile: stays marked */
		if (rc < 0) {	/* keep it marked: its bits may not be on disk */
			x->state = EXT_PENDING;
			continue;
		}
		x->state = EXT_COLD;
		dm_lru_del(dm, victims[i]);
		dm->marked--;
		/* The cleared bit reaches disk with the next batch; until then
		 * the extent is merely resynced needlessly after a crash. */
		bm_clear_range(dm->actmap, victims[i], 1);
	}
}

/* Writes the dirty bitmap pages: marks made where no activity extent
 * covers them are durable only this way. */
static void
dm_write_bitmap(struct dm *dm)
{
	uint32_t n;
	int rc = 0;

	dm->bitmap_urgent = 0;
	while (rc == 0 && (n = dm_snapshot(dm, dm->bitmap, 0, 0, SIZE_MAX)) > 0) {
		pthread_mutex_unlock(&dm->lock);
		rc = dm_io_error(dm, dm_write_pages(dm, dm->bitmap_off, n));
		pthread_mutex_lock(&dm->lock);
	}
	if (rc < 0) {
		bm_mark_all_dirty(dm->bitmap);
		if (!dm->md_error)
			LOG_ERROR("metadata: writing the bitmap failed: %s", strerror(-rc));
		dm->md_error = rc;
		dm_wake(dm);
	}
}

static int dm_flush_all(struct dm *dm, struct bm *b, uint64_t base);

/* Takes every idle, durably marked extent out of the activity map (in
 * memory; the caller writes the map).  Only once the bitmap is durable. */
static void
dm_cool_idle(struct dm *dm)
{
	uint32_t e = dm->lru_head, next;

	for (; e != DM_NONE; e = next) {
		struct dm_ext *x = &dm->ext[e];

		next = x->next;
		if (x->inflight || x->state != EXT_PENDING || x->batch > dm->durable_batch)
			continue;
		x->state = EXT_COLD;
		dm_lru_del(dm, e);
		dm->marked--;
		bm_clear_range(dm->actmap, e, 1);
	}
}

/* Answers the dm_sync_bitmap and dm_drain_activity calls made so far.  The
 * I/O runs under the lock: a page snapshot written by the thread cannot
 * then overtake a newer one, and these calls are rare (resync end,
 * demote) enough that writers may wait. */
static void
dm_sync_run(struct dm *dm)
{
	uint64_t req = dm->sync_req;
	int drain = dm->sync_drain;
	int rc = dm->md_error ? dm->md_error : dm_flush_all(dm, dm->bitmap, dm->bitmap_off);

	dm->sync_drain = 0;
	/* Bitmap first: only once it is durable may the marks go. */
	if (!rc && drain) {
		dm_cool_idle(dm);
		rc = dm_flush_all(dm, dm->actmap, dm->actmap_off);
	}
	if (rc < 0 && !dm->md_error) {
		LOG_ERROR("metadata: writing the bitmap failed: %s", strerror(-rc));
		dm->md_error = rc;
		dm->err_deferred = rc;	/* the thread reports it, unlocked */
		dm_wake(dm);
	}
	dm->sync_rc = rc;
	dm->sync_done = req;
	pthread_cond_broadcast(&dm->sync_cond);
}

static void *
dm_thread(void *arg)
{
	struct dm *dm = arg;

	pthread_mutex_lock(&dm->lock);
	for (;;) {
		if (dm->pending) {
			dm_commit_batch(dm);
			continue;
		}
		if (dm->sync_req != dm->sync_done) {
			dm_sync_run(dm);
			continue;
		}
		if (dm->err_deferred) {
			int rc = dm->err_deferred;

			dm->err_deferred = 0;
			pthread_mutex_unlock(&dm->lock);
			dm_io_error(dm, rc);
			pthread_mutex_lock(&dm->lock);
			continue;
		}
		if (dm->bitmap_urgent && !dm->md_error) {
			dm_write_bitmap(dm);
			continue;
		}
		if (dm->stopping)
			break;
		if (dm->marked > dm->al_extents && !dm->md_error) {
			uint32_t before = dm->marked;
			dm_evict(dm);
			if (dm->marked < before || dm->pending)
				continue;
		}
		pthread_cond_wait(&dm->cond, &dm->lock);
	}
	pthread_mutex_unlock(&dm->lock);
	return NULL;
}

static int
dm_load(struct dm *dm, struct bm *b, uint64_t off, char *why, size_t whylen, const char *what)
{
	int rc = util_pread_full(dm->md_fd, bm_data(b), bm_bytes(b), off);

	if (rc < 0) {
		snprintf(why, whylen, "cannot read the %s at offset %llu: %s", what,
			 (unsigned long long)off, strerror(-rc));
		return rc;
	}
	bm_loaded(b);
	return 0;
}

/* Writes every dirty page of b, DM_IO_PAGES at a time.  Caller holds the
 * lock and is the only one doing metadata I/O (start-up, stop, or thread). */
static int
dm_flush_all(struct dm *dm, struct bm *b, uint64_t base)
{
	uint32_t n;
	int rc;

	while ((n = dm_snapshot(dm, b, 0, 0, SIZE_MAX)) > 0) {
		rc = dm_write_pages(dm, base, n);
		if (rc < 0) {
			bm_mark_all_dirty(b);
			return rc;
		}
	}
	return 0;
}

int
dm_open(struct dm **out, int md_fd, const struct meta_sb *sb, uint32_t al_extents, char *why,
	size_t whylen)
{
	struct dm *dm;
	uint64_t nbits, next, folded = 0;
	int rc;

	dm = calloc(1, sizeof(*dm));
	if (!dm)
		return -ENOMEM;
	dm->magic = DM_MAGIC;
	dm->md_fd = md_fd;
	dm->sb = *sb;
	dm->data_size = sb->data_size;
	dm->bitmap_off = sb->bitmap_offset;
	dm->actmap_off = sb->actmap_offset;
	dm->gran_shift = dm_log2(sb->granularity);
	dm->ext_shift = sb->al_extent_shift;
	dm->al_extents = al_extents;
	dm->lru_head = dm->lru_tail = DM_NONE;
	dm->open_batch = 1;
	pthread_mutex_init(&dm->lock, NULL);
	pthread_mutex_init(&dm->sb_lock, NULL);
	pthread_cond_init(&dm->cond, NULL);
	pthread_cond_init(&dm->sync_cond, NULL);
	nbits = (sb->data_size + sb->granularity - 1) >> dm->gran_shift;
	dm->n_ext = (uint32_t)((sb->data_size + (1ull << dm->ext_shift) - 1) >> dm->ext_shift);
	rc = bm_new(&dm->bitmap, nbits);
	if (!rc)
		rc = bm_new(&dm->actmap, dm->n_ext);
	if (!rc && !(dm->ext = calloc(dm->n_ext, sizeof(*dm->ext))))
		rc = -ENOMEM;
	if (!rc && posix_memalign(&dm->iobuf, DM_PAGE, (size_t)DM_IO_PAGES * DM_PAGE))
		rc = -ENOMEM;
	if (rc) {
		snprintf(why, whylen, "out of memory for the bitmap");
		goto fail;
	}
	for (uint32_t e = 0; e < dm->n_ext; e++)
		dm->ext[e].prev = dm->ext[e].next = DM_NONE;
	if (bm_bytes(dm->bitmap) > sb->bitmap_bytes || bm_bytes(dm->actmap) > sb->actmap_bytes) {
		snprintf(why, whylen, "metadata areas are smaller than the data size needs");
		rc = -EINVAL;
		goto fail;
	}
	rc = dm_load(dm, dm->bitmap, sb->bitmap_offset, why, whylen, "bitmap");
	if (!rc)
		rc = dm_load(dm, dm->actmap, sb->actmap_offset, why, whylen, "activity map");
	if (rc)
		goto fail;
	/* Extents that were active when the node stopped: every block in them
	 * may differ from the peer.  Fold them in, durably, before clearing. */
	for (next = bm_next_set(dm->actmap, 0); next < dm->n_ext;
	     next = bm_next_set(dm->actmap, next + 1)) {
		uint64_t per = 1ull << (dm->ext_shift - dm->gran_shift);
		bm_set_range(dm->bitmap, next * per, per);
		folded++;
	}
	if (folded) {
		LOG_WARN("metadata: %llu activity extents were open (unclean stop): "
			 "marking them out of sync", (unsigned long long)folded);
		rc = dm_flush_all(dm, dm->bitmap, sb->bitmap_offset);
		if (!rc) {
			bm_clear_range(dm->actmap, 0, dm->n_ext);
			rc = dm_flush_all(dm, dm->actmap, sb->actmap_offset);
		}
		if (rc) {
			snprintf(why, whylen, "cannot write the metadata: %s", strerror(-rc));
			goto fail;
		}
	}
	*out = dm;
	return 0;
fail:
	dm_free(dm);
	return rc;
}

int
dm_start(struct dm *dm)
{
	int rc;

	dm_check(dm);
	rc = pthread_create(&dm->thread, NULL, dm_thread, dm);
	if (rc)
		return -rc;
	dm->thread_started = 1;
	return 0;
}

int
dm_stop(struct dm *dm)
{
	int rc;

	dm_check(dm);
	if (dm->thread_started) {
		pthread_mutex_lock(&dm->lock);
		dm->stopping = 1;
		pthread_cond_signal(&dm->cond);
		pthread_mutex_unlock(&dm->lock);
		pthread_join(dm->thread, NULL);
		dm->thread_started = 0;
	}
	pthread_mutex_lock(&dm->lock);
	/* Bitmap first: only once it is durable may the marks go. */
	rc = dm_flush_all(dm, dm->bitmap, dm->bitmap_off);
	if (!rc) {
		bm_clear_range(dm->actmap, 0, dm->n_ext);
		bm_mark_all_dirty(dm->actmap);
		rc = dm_flush_all(dm, dm->actmap, dm->actmap_off);
	}
	pthread_mutex_unlock(&dm->lock);
	if (rc)
		LOG_ERROR("metadata: final bitmap write failed: %s", strerror(-rc));
	return rc;
}

void
dm_free(struct dm *dm)
{
	if (!dm)
		return;
	dm_check(dm);
	if (dm->thread_started) {
		pthread_mutex_lock(&dm->lock);
		dm->stopping = 1;
		pthread_cond_signal(&dm->cond);
		pthread_mutex_unlock(&dm->lock);
		pthread_join(dm->thread, NULL);
	}
	bm_free(dm->bitmap);
	bm_free(dm->actmap);
	free(dm->ext);
	free(dm->iobuf);
	pthread_mutex_destroy(&dm->lock);
	pthread_mutex_destroy(&dm->sb_lock);
	pthread_cond_destroy(&dm->cond);
	pthread_cond_destroy(&dm->sync_cond);
	dm->magic = 0;
	free(dm);
}

/* Granule range covering [off, off+len), rounded out. */
static void
dm_bits(const struct dm *dm, uint64_t off, uint64_t len, uint64_t *first, uint64_t *n)
{
	uint64_t end = MIN(off + len, dm->data_size);

	*first = off >> dm->gran_shift;
	*n = end > off ? ((end - 1) >> dm->gran_shift) - *first + 1 : 0;
}

int
dm_write_begin(struct dm *dm, uint64_t off, uint64_t len, int mark_oos, struct req_wait *w)
{
	uint64_t first, n, need = 0;
	uint32_t e0, e1;
	int wait = 0;

	dm_check(dm);
	if (len == 0)
		return 0;
	dm_bits(dm, off, len, &first, &n);
	e0 = (uint32_t)(off >> dm->ext_shift);
	e1 = (uint32_t)((MIN(off + len, dm->data_size) - 1) >> dm->ext_shift);
	pthread_mutex_lock(&dm->lock);
	if (dm->md_error) {
		int rc = dm->md_error;
		pthread_mutex_unlock(&dm->lock);
		return rc;
	}
	if (mark_oos)
		bm_set_range(dm->bitmap, first, n);
	if (mark_oos && dm->gen_bump) {
		wait = 1;
		need = dm->open_batch;
		if (dm->pending++ == 0)
			pthread_cond_signal(&dm->cond);
	}
	for (uint32_t e = e0; e <= e1; e++) {
		struct dm_ext *x = &dm->ext[e];

		x->inflight++;
		switch (x->state) {
		case EXT_COLD:
			x->state = EXT_PENDING;
			x->batch = dm->open_batch;
			bm_set_range(dm->actmap, e, 1);
			dm->marked++;
			if (dm->pending++ == 0)
				pthread_cond_signal(&dm->cond);
			dm_lru_add_tail(dm, e);
			break;
		case EXT_EVICTING:
			/* Its bit is still on disk: cancel the eviction. */
			x->state = EXT_PENDING;
			/* fall through */
		case EXT_PENDING:
			dm_lru_del(dm, e);
			dm_lru_add_tail(dm, e);
			break;
		}
		if (x->batch > dm->durable_batch) {
			wait = 1;
			need = MAX(need, x->batch);
		}
	}
	if (wait) {
		w->key = need;
		w->res = 0;
		w->next = dm->waiters;
		dm->waiters = w;
	}
	pthread_mutex_unlock(&dm->lock);
	return wait;
}

void
dm_write_end(struct dm *dm, uint64_t off, uint64_t len)
{
	uint32_t e0, e1;
	int kick = 0;

	if (len == 0)
		return;
	e0 = (uint32_t)(off >> dm->ext_shift);
	e1 = (uint32_t)((MIN(off + len, dm->data_size) - 1) >> dm->ext_shift);
	pthread_mutex_lock(&dm->lock);
	for (uint32_t e = e0; e <= e1; e++) {
		VERIFY(dm->ext[e].inflight > 0);
		if (--dm->ext[e].inflight == 0 && dm->marked > dm->al_extents)
			kick = 1;
	}
	if (kick)
		pthread_cond_signal(&dm->cond);
	pthread_mutex_unlock(&dm->lock);
}

void
dm_write_ref(struct dm *dm, uint64_t off, uint64_t len)
{
	uint32_t e0, e1;

	if (len == 0)
		return;
	e0 = (uint32_t)(off >> dm->ext_shift);
	e1 = (uint32_t)((MIN(off + len, dm->data_size) - 1) >> dm->ext_shift);
	pthread_mutex_lock(&dm->lock);
	for (uint32_t e = e0; e <= e1; e++) {
		/* Only a write in flight may be shared: its extent is hot. */
		VERIFY(dm->ext[e].inflight > 0 && dm->ext[e].state == EXT_PENDING);
		dm->ext[e].inflight++;
	}
	pthread_mutex_unlock(&dm->lock);
}

void
dm_mark_oos(struct dm *dm, uint64_t off, uint64_t len)
{
	uint64_t first, n;
	uint32_t e0, e1;

	dm_check(dm);
	dm_bits(dm, off, len, &first, &n);
	if (n == 0)
		return;
	e0 = (uint32_t)(off >> dm->ext_shift);
	e1 = (uint32_t)((MIN(off + len, dm->data_size) - 1) >> dm->ext_shift);
	pthread_mutex_lock(&dm->lock);
	bm_set_range(dm->bitmap, first, n);
	/* An extent that is not hot (or is leaving the map, its pages
	 * perhaps already copied) does not cover the mark after a crash. */
	for (uint32_t e = e0; e <= e1 && !dm->bitmap_urgent; e++) {
		if (dm->ext[e].state != EXT_PENDING || dm->ext[e].batch > dm->durable_batch) {
			dm->bitmap_urgent = 1;
			pthread_cond_signal(&dm->cond);
		}
	}
	pthread_mutex_unlock(&dm->lock);
}

void
dm_clear_oos(struct dm *dm, uint64_t off, uint64_t len)
{
	uint64_t end = MIN(off + len, dm->data_size);
	uint64_t g = 1ull << dm->gran_shift;
	uint64_t first = (off + g - 1) >> dm->gran_shift;
	uint64_t last_excl = (end == dm->data_size) ? (end + g - 1) >> dm->gran_shift
						    : end >> dm->gran_shift;

	dm_check(dm);
	if (last_excl <= first)
		return;
	pthread_mutex_lock(&dm->lock);
	bm_clear_range(dm->bitmap, first, last_excl - first);
	pthread_mutex_unlock(&dm->lock);
}

void
dm_mark_all(struct dm *dm)
{
	dm_check(dm);
	pthread_mutex_lock(&dm->lock);
	bm_set_range(dm->bitmap, 0, bm_nbits(dm->bitmap));
	pthread_mutex_unlock(&dm->lock);
}

int
dm_next_oos(struct dm *dm, uint64_t off, uint64_t maxlen, uint64_t *roff, uint64_t *rlen)
{
	uint64_t bit, end, nbits;

	dm_check(dm);
	pthread_mutex_lock(&dm->lock);
	nbits = bm_nbits(dm->bitmap);
	bit = bm_next_set(dm->bitmap, off >> dm->gran_shift);
	if (bit >= nbits) {
		pthread_mutex_unlock(&dm->lock);
		return -ENOENT;
	}
	end = bm_next_clear(dm->bitmap, bit);
	pthread_mutex_unlock(&dm->lock);
	*roff = bit << dm->gran_shift;
	*rlen = MIN((end - bit) << dm->gran_shift, maxlen);
	*rlen = MIN(*rlen, dm->data_size - *roff);
	return 0;
}

int
dm_flush_bitmap(struct dm *dm)
{
	int rc;

	dm_check(dm);
	pthread_mutex_lock(&dm->lock);
	/* iobuf belongs to the thread; borrow it only while it is idle-safe:
	 * the thread drops the lock around I/O, so serialise with stopping. */
	VERIFY(!dm->thread_started);
	rc = dm_flush_all(dm, dm->bitmap, dm->bitmap_off);
	pthread_mutex_unlock(&dm->lock);
	return rc;
}

/* dm_sync_bitmap, and with drain dm_drain_activity: the metadata thread
 * does it (it owns iobuf); before dm_start, the caller. */
static int
dm_sync(struct dm *dm, int drain)
{
	uint64_t mine;
	int rc;

	dm_check(dm);
	pthread_mutex_lock(&dm->lock);
	if (!dm->thread_started) {
		dm->sync_req++;
		dm->sync_drain |= drain;
		dm_sync_run(dm);
		rc = dm->sync_rc;
		pthread_mutex_unlock(&dm->lock);
		return rc;
	}
	dm->sync_drain |= drain;
	mine = ++dm->sync_req;
	pthread_cond_signal(&dm->cond);
	while (dm->sync_done < mine)
		pthread_cond_wait(&dm->sync_cond, &dm->lock);
	rc = dm->sync_rc;
	pthread_mutex_unlock(&dm->lock);
	return rc;
}

int
dm_sync_bitmap(struct dm *dm)
{
	return dm_sync(dm, 0);
}

int
dm_drain_activity(struct dm *dm)
{
	return dm_sync(dm, 1);
}

void
dm_clear_all(struct dm *dm)
{
	dm_check(dm);
	pthread_mutex_lock(&dm->lock);
	bm_clear_range(dm->bitmap, 0, bm_nbits(dm->bitmap));
	pthread_mutex_unlock(&dm->lock);
}

int
dm_any_oos(struct dm *dm)
{
	int any;

	dm_check(dm);
	pthread_mutex_lock(&dm->lock);
	any = bm_count(dm->bitmap) > 0;
	pthread_mutex_unlock(&dm->lock);
	return any;
}

void
dm_leave_primary(struct dm *dm, struct meta_sb *sb)
{
	/* A primary's bits are its own writes the peer lacks: a connection
	 * starts with a resync or clears the bits (no sync), so a connected
	 * primary carries no stale ones.  With a bitmap generation it moved on
	 * since it last shared one with the peer, and that says it already. */
	if (sb->gen_bitmap == 0 && dm_any_oos(dm))
		sb->flags |= META_F_LOCAL_CHANGES;
	sb->flags &= ~META_F_PRIMARY;
}

int
dm_new_gen_now(struct dm *dm)
{
	struct meta_sb sb;
	int bump, rc;

	dm_check(dm);
	pthread_mutex_lock(&dm->lock);
	bump = dm->gen_bump;
	dm->gen_bump = 0;
	pthread_mutex_unlock(&dm->lock);
	if (!bump)	/* none asked, or a write alone took it already */
		return 0;
	dm_sb_begin(dm, &sb);
	meta_start_generation(&sb);
	rc = dm_sb_commit(dm, &sb);
	if (!rc) {
		LOG_INFO("metadata: peer lost with blocks out of sync: new generation %016llx",
			 (unsigned long long)sb.gen_current);
		return 0;
	}
	/* Not moved: the next write alone must still try. */
	dm_new_gen_on_write(dm, 1);
	return rc;
}

void
dm_get_stats(struct dm *dm, struct dm_stats *st)
{
	uint64_t nbits, bytes;

	dm_check(dm);
	pthread_mutex_lock(&dm->lock);
	nbits = bm_nbits(dm->bitmap);
	bytes = bm_count(dm->bitmap) << dm->gran_shift;
	/* The last granule may stick out past the end of the data. */
	if (nbits && bm_test(dm->bitmap, nbits - 1))
		bytes -= (nbits << dm->gran_shift) - dm->data_size;
	st->oos_bytes = bytes;
	st->hot_extents = dm->marked;
	st->md_writes = dm->md_writes;
	pthread_mutex_unlock(&dm->lock);
}

void
dm_sb_get(struct dm *dm, struct meta_sb *sb)
{
	dm_check(dm);
	pthread_mutex_lock(&dm->sb_lock);
	*sb = dm->sb;
	pthread_mutex_unlock(&dm->sb_lock);
}

void
dm_sb_begin(struct dm *dm, struct meta_sb *sb)
{
	dm_check(dm);
	pthread_mutex_lock(&dm->sb_lock);
	*sb = dm->sb;
}

/* meta_write_sb, with the tests' failing metadata disk (lib/fault.h). */
static int
dm_write_sb(struct dm *dm, const struct meta_sb *sb)
{
	if (atomic_load(&dm->detached))
		return 0;	/* the disk failed: persist nothing on it */
	if (FAULT("meta/write/eio"))
		return -EIO;
	dm_fault_slow();
	return meta_write_sb(dm->md_fd, sb);
}

/* Tests only (lib/fault.h): a superblock update held between the copy
 * dm_sb_begin took and its write, the window in which another writer's
 * update would be lost if sb_lock did not span it.  Logged, so that a test
 * starts the other writer only once this one is inside. */
static void
dm_fault_sb_slow(void)
{
	struct timespec ts = { 2, 0 };

	if (!FAULT("meta/sb/slow"))
		return;
	LOG_INFO("metadata: failpoint meta/sb/slow: superblock update held 2 s before its write");
	nanosleep(&ts, NULL);
}

int
dm_sb_commit(struct dm *dm, const struct meta_sb *sb)
{
	int rc;

	dm_fault_sb_slow();
	rc = dm_write_sb(dm, sb);
	if (!rc)
		dm->sb = *sb;
	pthread_mutex_unlock(&dm->sb_lock);
	if (rc)
		LOG_ERROR("metadata: writing the superblock failed: %s", strerror(-rc));
	return dm_io_error(dm, rc);
}

void
dm_sb_abort(struct dm *dm)
{
	pthread_mutex_unlock(&dm->sb_lock);
}

int
dm_sb_write(struct dm *dm, const struct meta_sb *sb)
{
	int rc;

	dm_check(dm);
	pthread_mutex_lock(&dm->sb_lock);
	rc = dm_write_sb(dm, sb);
	if (!rc)
		dm->sb = *sb;
	pthread_mutex_unlock(&dm->sb_lock);
	if (rc)
		LOG_ERROR("metadata: writing the superblock failed: %s", strerror(-rc));
	return dm_io_error(dm, rc);
}

uint64_t
dm_bitmap_bytes(struct dm *dm)
{
	dm_check(dm);
	return (bm_nbits(dm->bitmap) + 7) / 8;
}

void
dm_bitmap_get(struct dm *dm, uint64_t off, void *buf, uint32_t len)
{
	dm_check(dm);
	pthread_mutex_lock(&dm->lock);
	memcpy(buf, (char *)bm_data(dm->bitmap) + off, len);
	pthread_mutex_unlock(&dm->lock);
}

void
dm_bitmap_or(struct dm *dm, uint64_t off, const void *buf, uint32_t len)
{
	const unsigned char *src = buf;
	uint64_t first = off * 8;

	dm_check(dm);
	pthread_mutex_lock(&dm->lock);
	/* Bit by bit through bm_set_range so counts and dirty pages stay right;
	 * runs of set bits are few. */
	for (uint32_t i = 0; i < len; i++) {
		if (!src[i])
			continue;
		for (unsigned b = 0; b < 8; b++) {
			uint64_t bit = first + (uint64_t)i * 8 + b;
			if ((src[i] >> b) & 1 && bit < bm_nbits(dm->bitmap))
				bm_set_range(dm->bitmap, bit, 1);
		}
	}
	pthread_mutex_unlock(&dm->lock);
}

void
dm_new_gen_on_write(struct dm *dm, int on)
{
	dm_check(dm);
	pthread_mutex_lock(&dm->lock);
	dm->gen_bump = on;
	pthread_mutex_unlock(&dm->lock);
}

void
dm_set_error_cb(struct dm *dm, void (*fn)(void *arg, int err), void *arg)
{
	dm_check(dm);
	dm->on_error = fn;
	dm->on_error_arg = arg;
}

void
dm_detach(struct dm *dm)
{
	dm_check(dm);
	pthread_mutex_lock(&dm->lock);
	atomic_store(&dm->detached, 1);
	/* Nothing is written from now on, so no write waits for the metadata
	 * and no earlier error stays: the peer's bitmap is the record. */
	dm->md_error = 0;
	pthread_cond_signal(&dm->cond);
	pthread_mutex_unlock(&dm->lock);
}

void
dm_reattach(struct dm *dm)
{
	dm_check(dm);
	pthread_mutex_lock(&dm->lock);
	atomic_store(&dm->detached, 0);
	pthread_mutex_unlock(&dm->lock);
}
