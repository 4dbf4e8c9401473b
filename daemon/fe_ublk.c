/* fe_ublk: frontend = ublk, the device /dev/ublkbN (ublk/ublk.h).
 *
 * The device exists only while this node is primary.  Promote (activate)
 * creates it: ADD_DEV and SET_PARAMS on the control thread, then every
 * queue thread maps its descriptors and fetches every tag (a message posted
 * to it), and once all have, START_DEV makes /dev/ublkbN appear.  Demote
 * (deactivate) refuses while the device is mounted or open exclusively,
 * else STOP_DEV (the kernel waits for the requests the queues hold, then
 * aborts every pending fetch), waits for the queues to drain and DEL_DEV.
 * A clean stop (close) does the same without asking.  So a secondary has no
 * /dev/ublkbN at all: nothing can read stale data from it, and nothing can
 * hold it open across a failover.
 *
 * Restart without losing the device.  ADD_DEV asks for
 * UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE: when mirrord dies
 * (kill -9) the kernel keeps /dev/ublkbN, quiesced: I/O waits, the requests
 * the dead daemon held are requeued.  The device's id is kept in a state
 * file next to the control socket (CONTROL.ublk), written as soon as the
 * device exists and removed once it is deleted.  At start (open), a state
 * file naming a live device whose geometry matches the configuration means
 * a crashed primary's device, and open reports held = 1: the node stays
 * secondary and the device quiesced until daemon/resume.c decides, from
 * the peer, whether this node may still be primary (resolve).  Yes:
 * START_USER_RECOVERY (retried while the dead process's files are still
 * being released), the queues fetch again, the node becomes primary,
 * END_USER_RECOVERY lets the waiting I/O through.  No: STOP_DEV, which
 * fails every waiting request with EIO, and DEL_DEV; a clean stop while
 * undecided does the same.  Resuming at once would acknowledge the held
 * writes on a stale copy if the peer was promoted meanwhile.  A file is
 * simpler and exact where a scan of device ids 0..N with GET_DEV_INFO can
 * only guess which device was ours.
 *
 * Requests run twice after a recovery: the kernel reissues what the dead
 * daemon held, whether or not it had reached the disks.  A write applied
 * twice leaves the same data; overlapping writes are reissued in the
 * kernel's order and the conflict tracker keeps that order on both disks;
 * and whatever the dead daemon may have written on one node only lies in its
 * activity extents, which the restart folds into the bitmap, so the next
 * resync makes both nodes equal.
 *
 * Threads: everything here runs on the control thread, except the queue
 * callbacks (attach, failed, ended), which run on the queue threads and
 * report through u->lock. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/frontend.h"
#include "daemon/resource.h"
#include "daemon/rsm.h"
#include "lib/fault.h"
#include "lib/log.h"
#include "lib/util.h"
#include "ublk/ublk.h"

#define FE_UBLK_NODE_WAIT_MS   5000   /* for /dev/ublkcN to appear */
#define FE_UBLK_RECOVERY_MS    30000  /* for the dead daemon's files to go */
#define FE_UBLK_DRAIN_MS       60000  /* for the queues to end after STOP_DEV */
#define FE_UBLK_RESTOP_MS      1000   /* STOP_DEV again meanwhile */
#define FE_UBLK_DEL_MS         10000  /* DEL_DEV waits for the last opener */

enum fe_uq_state {
	FQ_IDLE,        /* no ublk queue on this thread */
	FQ_ATTACHING,   /* the attach message is posted */
	FQ_ATTACHED,    /* fetches prepared; the queue serves the device */
};

struct fe_uq {
	struct ev_msg attach;       /* posted to the queue thread */
	struct fe_ublk *u;
	unsigned index;
	struct ublk_queue *uq;      /* queue thread only */
	int state;                  /* (u->lock) enum fe_uq_state */
	int err;                    /* (u->lock) the queue's first error, or 0 */
};

struct fe_ublk {
	struct res *r;
	struct ublk_ctrl *ctrl;
	struct ublk_geom geom;
	int dev_id;                 /* -1: no device */
	int cdev_fd;                /* /dev/ublkcN, or -1 */
	unsigned nq;                /* queues serving the device */
	int keep;                   /* close() must leave the device (failed recovery) */
	int held;                   /* dev_id is a crashed daemon's device, still quiesced */
	unsigned held_nq;           /* its queues, served once re-attached */
	char state_path[CONF_PATH_MAX + 8];
	pthread_mutex_t lock;       /* protects the fields marked (u->lock) */
	pthread_cond_t cond;
	struct fe_uq q[RES_MAX_QUEUES];
};

/* Writes one message for the operator into err and returns rc. */
static int __attribute__((format(printf, 4, 5)))
fe_ublk_fail(char *err, size_t len, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return rc;
}

/* ---- The state file: the device id, while a device exists ---- */

static int
fe_ublk_state_write(struct fe_ublk *u)
{
	char tmp[sizeof(u->state_path) + 4];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", u->state_path);
	f = fopen(tmp, "we");
	if (!f)
		return -errno;
	fprintf(f, "%d\n", u->dev_id);
	if (fclose(f) != 0 || rename(tmp, u->state_path) < 0) {
		int rc = -errno;
		unlink(tmp);
		return rc;
	}
	return 0;
}

/* 0 with *id, -ENOENT without a file, -EINVAL for a file that says nothing
 * usable. */
static int
fe_ublk_state_read(const char *path, int *id)
{
	FILE *f = fopen(path, "re");
	int rc = -EINVAL;

	if (!f)
		return -errno;
	if (fscanf(f, "%d", id) == 1 && *id >= 0)
		rc = 0;
	fclose(f);
	return rc;
}

/* ---- Queue side (queue threads) ---- */

static void
fe_ublk_q_failed(struct ublk_queue *uq, int err, void *arg)
{
	struct fe_uq *fq = arg;

	(void)uq;
	pthread_mutex_lock(&fq->u->lock);
	if (!fq->err)
		fq->err = err;
	pthread_cond_broadcast(&fq->u->cond);
	pthread_mutex_unlock(&fq->u->lock);
}

static void
fe_ublk_q_ended(struct ublk_queue *uq, void *arg)
{
	struct fe_uq *fq = arg;

	ublk_queue_free(uq);
	fq->uq = NULL;
	pthread_mutex_lock(&fq->u->lock);
	fq->state = FQ_IDLE;
	pthread_cond_broadcast(&fq->u->cond);
	pthread_mutex_unlock(&fq->u->lock);
}

static void
fe_ublk_q_attach(struct ev_msg *m)
{
	struct fe_uq *fq = container_of(m, struct fe_uq, attach);
	struct fe_ublk *u = fq->u;
	struct res_queue *q = &u->r->queues[fq->index];
	struct ublk_queue_params p = {
		.fd = u->cdev_fd,
		.q_id = (uint16_t)fq->index,
		.geom = u->geom,
		.loop = q->loop,
		.sink = wp_sink(q->wp),
		.failed = fe_ublk_q_failed,
		.ended = fe_ublk_q_ended,
		.arg = fq,
	};
	int rc = ublk_queue_new(&fq->uq, &p);

	if (rc)
		LOG_ERROR("ublk queue %u: cannot set up: %s", fq->index, strerror(-rc));
	pthread_mutex_lock(&u->lock);
	fq->state = rc ? FQ_IDLE : FQ_ATTACHED;
	fq->err = rc;
	pthread_cond_broadcast(&u->cond);
	pthread_mutex_unlock(&u->lock);
}

/* ---- Control side ---- */

/* Posts the attach message to the first u->nq queue threads and waits
 * until each has run it.  0 or the first queue's -errno. */
static int
fe_ublk_attach(struct fe_ublk *u)
{
	int rc = 0;

	pthread_mutex_lock(&u->lock);
	for (unsigned i = 0; i < u->nq; i++) {
		struct fe_uq *fq = &u->q[i];

		fq->state = FQ_ATTACHING;
		fq->err = 0;
		ev_post(u->r->queues[i].loop, &fq->attach);
	}
	for (unsigned i = 0; i < u->nq; i++) {
		while (u->q[i].state == FQ_ATTACHING)
			pthread_cond_wait(&u->cond, &u->lock);
		if (!rc)
			rc = u->q[i].err;
	}
	pthread_mutex_unlock(&u->lock);
	return rc;
}

/* ublk_poll_fn while START_DEV or END_USER_RECOVERY waits for the fetches:
 * a queue whose commands the kernel refused will never be ready. */
static int
fe_ublk_poll_queues(void *arg)
{
	struct fe_ublk *u = arg;
	int rc = 0;

	pthread_mutex_lock(&u->lock);
	for (unsigned i = 0; i < u->nq && !rc; i++)
		rc = u->q[i].err;
	pthread_mutex_unlock(&u->lock);
	return rc;
}

/* STOP_DEV, then waits until every attached queue has ended.  STOP_DEV is
 * repeated meanwhile: a fetch the queue thread had prepared but not yet
 * submitted when the first one ran would otherwise wait forever. */
static int
fe_ublk_stop(struct fe_ublk *u)
{
	uint64_t start = util_now_ms(), last;
	int rc = ublk_stop_dev(u->ctrl, (uint32_t)u->dev_id), busy;

	if (rc && rc != -ENODEV)
		LOG_WARN("ublk: STOP_DEV of device %d: %s", u->dev_id, strerror(-rc));
	last = util_now_ms();
	for (;;) {
		struct timespec ts;

		pthread_mutex_lock(&u->lock);
		busy = 0;
		for (unsigned i = 0; i < u->nq; i++)
			busy |= u->q[i].state != FQ_IDLE;
		if (busy) {
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 100 * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&u->cond, &u->lock, &ts);
		}
		pthread_mutex_unlock(&u->lock);
		if (!busy)
			return 0;
		if (util_now_ms() - start > FE_UBLK_DRAIN_MS) {
			LOG_ERROR("ublk: the queues of device %d did not end %u s after STOP_DEV",
				  u->dev_id, FE_UBLK_DRAIN_MS / 1000);
			return -ETIMEDOUT;
		}
		if (util_now_ms() - last >= FE_UBLK_RESTOP_MS) {
			ublk_stop_dev(u->ctrl, (uint32_t)u->dev_id);
			last = util_now_ms();
		}
	}
}

/* Removes the device: stop, drain the queues, close the char device (its
 * last user), DEL_DEV, forget it.  bdev_fd, if not -1, is an exclusive open
 * of /dev/ublkbN held across STOP_DEV so that nothing mounts it meanwhile;
 * it is closed before DEL_DEV, which would wait for it. */
static int
fe_ublk_remove(struct fe_ublk *u, int bdev_fd)
{
	int rc;

	rc = fe_ublk_stop(u);
	if (bdev_fd >= 0)
		close(bdev_fd);
	if (rc)
		return rc;	/* a queue may still use the char device: keep it */
	if (u->cdev_fd >= 0) {
		close(u->cdev_fd);
		u->cdev_fd = -1;
	}
	rc = ublk_del_dev(u->ctrl, (uint32_t)u->dev_id, FE_UBLK_DEL_MS);
	if (rc == -ETIMEDOUT)
		LOG_WARN("ublk: /dev/ublkb%d is still open somewhere: the kernel removes it "
			 "when it is closed", u->dev_id);
	else if (rc && rc != -ENODEV)
		LOG_WARN("ublk: DEL_DEV of device %d: %s", u->dev_id, strerror(-rc));
	LOG_INFO("device /dev/ublkb%d removed", u->dev_id);
	unlink(u->state_path);
	u->dev_id = -1;
	u->nq = 0;
	res_device_set(u->r, "");
	return 0;
}

/* Opens /dev/ublkcN, which devtmpfs or udev creates after ADD_DEV. */
static int
fe_ublk_open_cdev(struct fe_ublk *u)
{
	char path[64];
	uint64_t start = util_now_ms();

	snprintf(path, sizeof(path), "/dev/ublkc%d", u->dev_id);
	for (;;) {
		u->cdev_fd = open(path, O_RDWR | O_CLOEXEC);
		if (u->cdev_fd >= 0)
			return 0;
		if (errno != ENOENT || util_now_ms() - start > FE_UBLK_NODE_WAIT_MS)
			return -errno;
		usleep(20 * 1000);
	}
}

static void
fe_ublk_announce(struct fe_ublk *u, const char *how)
{
	char dev[32];

	snprintf(dev, sizeof(dev), "/dev/ublkb%d", u->dev_id);
	res_device_set(u->r, dev);
	LOG_INFO("device %s %s: %llu bytes, %u-byte blocks, %u %s of %u tags, I/O up to %u bytes",
		 dev, how, (unsigned long long)ublk_capacity(&u->geom), u->geom.block,
		 u->nq, u->nq == 1 ? "queue" : "queues", u->geom.depth, u->geom.max_io);
}

static int
fe_ublk_activate(struct res *r, char *err, size_t len)
{
	struct fe_ublk *u = r->ublk;
	struct ublksrv_ctrl_dev_info info;
	struct ublk_params params;
	const char *step;
	int rc;

	/* The held device is resume.c's to resolve, not promote's. */
	if (u->held)
		return fe_ublk_fail(err, len, -EBUSY, "/dev/ublkb%d of a crashed mirrord still "
				 "holds its I/O", u->dev_id);
	if (u->dev_id >= 0)
		return 0;
	ublk_dev_info_init(&info, &u->geom, -1);
	rc = ublk_add_dev(u->ctrl, &info);
	if (rc)
		return fe_ublk_fail(err, len, rc, "ublk: cannot create a device (ADD_DEV): %s",
				 strerror(-rc));
	u->dev_id = (int)info.dev_id;
	/* The kernel gives at most one queue per CPU. */
	u->nq = MIN(info.nr_hw_queues, r->nqueues);
	if (!(info.flags & UBLK_F_USER_RECOVERY))
		LOG_WARN("ublk: this kernel has no user recovery: /dev/ublkb%d will not outlive "
			 "mirrord", u->dev_id);
	/* Recorded before anything can use the device: a crash from here on
	 * leaves a file that names it. */
	rc = fe_ublk_state_write(u);
	if (rc)
		LOG_WARN("ublk: cannot write %s: %s (a restart after a crash will not find the "
			 "device)", u->state_path, strerror(-rc));
	ublk_params_init(&params, &u->geom);
	step = "SET_PARAMS";
	rc = ublk_set_params(u->ctrl, (uint32_t)u->dev_id, &params);
	if (!rc) {
		step = "opening the char device";
		rc = fe_ublk_open_cdev(u);
	}
	if (!rc) {
		step = "setting up the queues";
		rc = fe_ublk_attach(u);
	}
	if (!rc) {
		step = "START_DEV";
		rc = ublk_start_dev(u->ctrl, (uint32_t)u->dev_id, getpid(), fe_ublk_poll_queues, u);
	}
	if (rc) {
		fe_ublk_fail(err, len, rc, "ublk: device %d: %s failed: %s", u->dev_id, step,
			  strerror(-rc));
		fe_ublk_remove(u, -1);
		return rc;
	}
	fe_ublk_announce(u, "created");
	return 0;
}

static int
fe_ublk_deactivate(struct res *r, char *err, size_t len)
{
	struct fe_ublk *u = r->ublk;
	char path[64];
	int fd, rc;

	if (!u || u->dev_id < 0)
		return 0;
	/* A mounted file system or an exclusive opener (mkfs, a database
	 * using O_EXCL) holds it: the data would be cut from under it.  The
	 * exclusive open is kept until the device is gone so nothing mounts
	 * it in between.  Plain openers are not seen: their I/O fails once
	 * the device is gone. */
	snprintf(path, sizeof(path), "/dev/ublkb%d", u->dev_id);
	fd = open(path, O_RDONLY | O_EXCL | O_CLOEXEC);
	if (fd < 0 && errno == EBUSY)
		return fe_ublk_fail(err, len, -EBUSY,
				 "device %s is in use (mounted or open exclusively)", path);
	/* What plain openers left in the page cache goes to the disks
	 * while the device still exists. */
	if (fd >= 0 && fsync(fd) < 0)
		LOG_WARN("ublk: flushing %s before removing it: %s", path, strerror(errno));
	rc = fe_ublk_remove(u, fd);
	if (rc)
		return fe_ublk_fail(err, len, rc, "device %s could not be removed: %s", path,
				 strerror(-rc));
	return 0;
}

static void
fe_ublk_free(struct fe_ublk *u)
{
	if (u->cdev_fd >= 0)
		close(u->cdev_fd);
	ublk_ctrl_close(u->ctrl);
	pthread_mutex_destroy(&u->lock);
	pthread_cond_destroy(&u->cond);
	free(u);
}

/* The device of the state file was left by a daemon that died.  0 with
 * *held = 1 when it still holds its users' I/O: it stays quiesced, the
 * node secondary, until fe_ublk_resolve(); 0 with *held = 0 when there was
 * nothing to hold. */
static int
fe_ublk_find_held(struct fe_ublk *u, int id, int *held, char *err, size_t len)
{
	struct res *r = u->r;
	struct ublksrv_ctrl_dev_info info;
	struct ublk_params p;
	int rc;

	rc = ublk_get_dev_info(u->ctrl, (uint32_t)id, &info);
	if (rc == -ENODEV) {
		LOG_INFO("ublk: %s names device %d, which is gone: removing the file",
			 u->state_path, id);
		unlink(u->state_path);
		return 0;
	}
	if (!rc)
		rc = ublk_get_params(u->ctrl, (uint32_t)id, &p);
	if (rc)
		return fe_ublk_fail(err, len, rc, "ublk: device %d (from %s): %s", id, u->state_path,
				 strerror(-rc));
	if (info.queue_depth != u->geom.depth || info.max_io_buf_bytes != u->geom.max_io ||
	    info.nr_hw_queues > r->nqueues || p.basic.dev_sectors != ublk_capacity(&u->geom) >> 9 ||
	    (1u << p.basic.logical_bs_shift) != u->geom.block)
		return fe_ublk_fail(err, len, -EINVAL,
				 "/dev/ublkb%d, left by a mirrord that did not stop cleanly (%s), has "
				 "%u queues of %u tags, I/O up to %u bytes, %llu bytes of %u-byte "
				 "blocks, which this configuration does not match: start mirrord "
				 "with the configuration it was created with",
				 id, u->state_path, info.nr_hw_queues, info.queue_depth,
				 info.max_io_buf_bytes,
				 (unsigned long long)p.basic.dev_sectors << 9,
				 1u << p.basic.logical_bs_shift);
	u->dev_id = id;
	u->nq = 0;	/* no queue of ours serves it yet */
	if (info.state == UBLK_S_DEV_DEAD) {
		/* Never started, or stopped but not deleted: nobody can be
		 * using it. */
		LOG_INFO("ublk: removing /dev/ublkc%d, left unstarted by the previous mirrord", id);
		return fe_ublk_remove(u, -1);
	}
	LOG_WARN("ublk: /dev/ublkb%d outlived the previous mirrord (pid %d): its I/O waits "
		 "until the peer confirms that this node may stay primary", id, info.ublksrv_pid);
	u->held_nq = info.nr_hw_queues;
	u->held = 1;
	*held = 1;
	return 0;
}

/* The held device serves again: user recovery, the node primary before
 * the waiting requests run (so that no reissued write is refused). */
static int
fe_ublk_reattach(struct fe_ublk *u, char *err, size_t len)
{
	struct res *r = u->r;
	uint64_t start;
	int rc, id = u->dev_id;

	/* The kernel accepts it once the dead daemon's ring and char device
	 * are released and the device is quiesced. */
	start = util_now_ms();
	while ((rc = ublk_start_recovery(u->ctrl, (uint32_t)id)) == -EBUSY &&
	       util_now_ms() - start < FE_UBLK_RECOVERY_MS)
		usleep(100 * 1000);
	if (rc)
		return fe_ublk_fail(err, len, rc, "ublk: START_USER_RECOVERY of /dev/ublkb%d: %s", id,
				 strerror(-rc));
	u->nq = u->held_nq;
	rc = fe_ublk_open_cdev(u);
	if (!rc)
		rc = fe_ublk_attach(u);
	if (!rc) {
		rsm_resume_primary(r);
		rc = FAULT("ublk/end-recovery/eio") ? -EIO :
		     ublk_end_recovery(u->ctrl, (uint32_t)id, getpid(), fe_ublk_poll_queues, u);
	}
	if (rc)
		return fe_ublk_fail(err, len, rc, "ublk: re-attaching /dev/ublkb%d failed: %s", id,
				 strerror(-rc));
	fe_ublk_announce(u, "re-attached");
	return 0;
}

/* The held device goes: STOP_DEV on a quiesced device aborts every
 * request it holds (EIO to its users), then DEL_DEV.  Stale data must not
 * be read or overwritten under users who believe they talk to the
 * primary. */
static int
fe_ublk_abandon(struct fe_ublk *u, char *err, size_t len)
{
	char dev[64];
	int rc;

	snprintf(dev, sizeof(dev), "/dev/ublkb%d", u->dev_id);
	LOG_WARN("ublk: removing %s: its waiting I/O fails", dev);
	rc = fe_ublk_remove(u, -1);
	if (rc) {
		u->keep = 1;
		return fe_ublk_fail(err, len, rc, "ublk: removing %s: %s", dev, strerror(-rc));
	}
	fe_link_del(u->r, dev);
	return 0;
}

static int
fe_ublk_resolve(struct res *r, int resume, char *err, size_t len)
{
	struct fe_ublk *u = r->ublk;
	int rc;

	if (!u || !u->held)
		return 0;
	u->held = 0;
	if (!resume)
		return fe_ublk_abandon(u, err, len);
	rc = fe_ublk_reattach(u, err, len);
	if (rc) {
		char why[256];

		/* Secondary again, and the device goes rather than waiting
		 * forever. */
		rsm_resume_failed(r);
		if (fe_ublk_abandon(u, why, sizeof(why)))
			LOG_ERROR("%s", why);
	}
	return rc;
}

static void
fe_ublk_close(struct res *r)
{
	struct fe_ublk *u = r->ublk;

	if (!u)
		return;
	if (u->held) {
		char why[256];

		/* Nobody decided it may serve: its waiting I/O fails. */
		u->held = 0;
		if (fe_ublk_abandon(u, why, sizeof(why)))
			LOG_ERROR("%s", why);
	}
	if (u->dev_id >= 0 && !u->keep) {
		/* A clean stop removes the device, whoever uses it. */
		if (fe_ublk_remove(u, -1))
			u->keep = 1;
	}
	if (u->keep) {
		/* Queues may still hold the char device and their buffers
		 * until their rings are gone: leave both to the exit. */
		r->ublk = NULL;
		return;
	}
	r->ublk = NULL;
	fe_ublk_free(u);
}

static int
fe_ublk_open(struct res *r, int *held, char *err, size_t len)
{
	struct fe_ublk *u = calloc(1, sizeof(*u));
	int rc, id;

	*held = 0;
	if (!u)
		return fe_ublk_fail(err, len, -ENOMEM, "out of memory");
	u->r = r;
	u->dev_id = -1;
	u->cdev_fd = -1;
	pthread_mutex_init(&u->lock, NULL);
	pthread_cond_init(&u->cond, NULL);
	for (unsigned i = 0; i < RES_MAX_QUEUES; i++) {
		u->q[i].u = u;
		u->q[i].index = i;
		u->q[i].attach.fn = fe_ublk_q_attach;
	}
	r->ublk = u;
	u->geom.size = r->size;
	u->geom.block = ublk_block_for_align(disk_align(r->disk));
	u->geom.max_io = r->conf.max_io_size;
	u->geom.queues = r->nqueues;
	u->geom.depth = r->conf.queue_depth;
	rc = ublk_geom_check(&u->geom, err, len);
	if (rc)
		return rc;
	snprintf(u->state_path, sizeof(u->state_path), "%s.ublk", r->conf.control);
	rc = ublk_ctrl_open(&u->ctrl, NULL);
	if (rc == -ENOENT)
		return fe_ublk_fail(err, len, rc, "frontend = ublk: %s does not exist: this kernel "
				 "has no ublk driver loaded (modprobe ublk_drv; Linux 6.0 or later "
				 "with CONFIG_BLK_DEV_UBLK)", UBLK_CONTROL_PATH);
	if (rc)
		return fe_ublk_fail(err, len, rc, "frontend = ublk: cannot use %s: %s",
				 UBLK_CONTROL_PATH, strerror(-rc));
	rc = fe_ublk_state_read(u->state_path, &id);
	if (rc == -ENOENT)
		return 0;
	if (rc) {
		LOG_WARN("ublk: ignoring %s: it names no device", u->state_path);
		unlink(u->state_path);
		return 0;
	}
	return fe_ublk_find_held(u, id, held, err, len);
}

const struct fe_ops fe_ublk_ops = {
	.name = "ublk",
	.open = fe_ublk_open,
	.activate = fe_ublk_activate,
	.deactivate = fe_ublk_deactivate,
	.resolve = fe_ublk_resolve,
	.close = fe_ublk_close,
};
