/* ublk: the kernel's userspace block device (drivers/block/ublk_drv.c),
 * spoken directly: no libublksrv.
 *
 * Control plane: commands on /dev/ublk-control, each an IORING_OP_URING_CMD
 * on a small private ring (128-byte SQEs) owned by one thread, the daemon's
 * control thread.  ADD_DEV creates /dev/ublkcN (the char device the queues
 * talk to), SET_PARAMS describes the disk, START_DEV creates /dev/ublkbN once
 * every queue has a FETCH_REQ pending for each of its tags, STOP_DEV removes
 * /dev/ublkbN and aborts the pending commands, DEL_DEV removes /dev/ublkcN.
 * START_USER_RECOVERY / END_USER_RECOVERY re-attach a new process to a
 * device whose server died (UBLK_F_USER_RECOVERY: meanwhile its I/O waits).
 *
 * Data plane: one struct ublk_queue per hardware queue, on a queue thread's
 * event loop (lib/ev, created with EV_SQE128).  Each tag owns a struct req
 * and a preallocated buffer of max_io bytes; the kernel hands a request over
 * by completing the tag's FETCH_REQ (its description is in the shared,
 * read-only descriptor array), the request goes to the write path through
 * the req_sink, and its result goes back with COMMIT_AND_FETCH_REQ, which
 * also waits for the tag's next request.  Nothing is allocated per request.
 *
 * Layer: uses lib/ only. */
#ifndef BLKMIRROR_UBLK_H
#define BLKMIRROR_UBLK_H

#include <errno.h>
#include <linux/ublk_cmd.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/ev.h"
#include "lib/req.h"

/* ---- What Debian 12's linux-libc-dev (6.1) header may lack ----
 * The one place where kernel values are restated; each is the value of
 * include/uapi/linux/ublk_cmd.h in Linux 6.12.  The 6.1 header already has
 * all of them; the fallbacks keep older or trimmed headers building. */
#ifndef UBLK_F_USER_RECOVERY
#define UBLK_F_USER_RECOVERY (1ULL << 3)          /* Linux 6.0 */
#endif
#ifndef UBLK_F_USER_RECOVERY_REISSUE
#define UBLK_F_USER_RECOVERY_REISSUE (1ULL << 4)  /* Linux 6.0 */
#endif
#ifndef UBLK_ATTR_VOLATILE_CACHE
#define UBLK_ATTR_VOLATILE_CACHE (1 << 2)
#endif
#ifndef UBLK_ATTR_FUA
#define UBLK_ATTR_FUA (1 << 3)
#endif
#ifndef UBLK_S_DEV_QUIESCED
#define UBLK_S_DEV_QUIESCED 2
#endif

/* Features blkmirror asks for at ADD_DEV.  USER_RECOVERY keeps /dev/ublkbN
 * when the daemon dies (I/O waits for a new one); REISSUE makes the kernel
 * requeue the requests the dead daemon held, instead of failing them with
 * EIO, so a mounted file system sees no error: they run again in the new
 * daemon.  A write done twice leaves the same data (see fe_ublk.c).  No
 * USER_COPY, no zero copy: the kernel copies into the tag's buffer. */
#define UBLK_FEATURES (UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE)

#define UBLK_CONTROL_PATH "/dev/ublk-control"
/* Largest single discard / write-zeroes request the device accepts. */
#define UBLK_MAX_DISCARD_BYTES (1u << 30)
/* Granularity (and alignment) of discards: the page cache's block. */
#define UBLK_DISCARD_GRANULARITY 4096u

/* The device as the daemon serves it. */
struct ublk_geom {
	uint64_t size;       /* data bytes (the resource's data area) */
	uint32_t block;      /* logical block size: 512 or 4096 */
	uint32_t max_io;     /* largest READ/WRITE in bytes: power of two, 4 KiB..32 MiB */
	uint32_t queues;     /* hardware queues, 1..UBLK_MAX_QUEUES */
	uint32_t depth;      /* tags per queue, 1..UBLK_MAX_QUEUE_DEPTH */
};
#define UBLK_MAX_QUEUES 64

/* ---- Pure helpers: no kernel needed (tests/unit/test_ublk.c) ---- */

/* Checks g; 0 or -EINVAL with a message in err. */
int ublk_geom_check(const struct ublk_geom *g, char *err, size_t len);
/* The logical block size for a backing disk whose O_DIRECT alignment is
 * `align` (disk_align(): 512, 4096, or 1 when buffered). */
uint32_t ublk_block_for_align(uint32_t align);
/* ADD_DEV's argument: dev_id -1 asks for any free id. */
void ublk_dev_info_init(struct ublksrv_ctrl_dev_info *info, const struct ublk_geom *g,
			int dev_id);
/* SET_PARAMS' argument: basic (block sizes, max_sectors, capacity, a
 * volatile cache with FUA, so FLUSH and FUA reach the daemon) and discard
 * (TRIM and WRITE_ZEROES). */
void ublk_params_init(struct ublk_params *p, const struct ublk_geom *g);
/* Capacity in bytes the kernel exposes for g (size rounded down to blocks). */
uint64_t ublk_capacity(const struct ublk_geom *g);
/* Decodes a request descriptor into r (type, flags, off, len).  Returns 0,
 * or the -errno to commit without submitting: -EOPNOTSUPP for an op the
 * daemon does not serve, -EIO for a range outside the device or a READ or
 * WRITE larger than max_io. */
int ublk_iod_to_req(const struct ublksrv_io_desc *iod, const struct ublk_geom *g, struct req *r);
/* What COMMIT_AND_FETCH_REQ reports for a finished request: the bytes
 * transferred for READ and WRITE (the kernel wants all of them), 0 for the
 * others, or the request's -errno. */
int32_t ublk_result(const struct req *r);
/* Bytes the kernel maps for one queue's descriptors, and where queue q's
 * start in /dev/ublkcN (mmap offset). */
size_t ublk_iod_map_size(uint32_t depth);
off_t ublk_iod_map_offset(uint32_t q);
/* Fills a 128-byte SQE with an I/O command (FETCH_REQ or
 * COMMIT_AND_FETCH_REQ) for tag `tag` of queue q on /dev/ublkcN (fd). */
void ublk_prep_io_cmd(struct io_uring_sqe *sqe, int fd, uint32_t cmd_op, uint16_t q,
		      uint16_t tag, int32_t result, void *buf);
/* Fills a 128-byte SQE with a control command on /dev/ublk-control. */
void ublk_prep_ctrl_cmd(struct io_uring_sqe *sqe, int fd, uint32_t cmd_op,
			const struct ublksrv_ctrl_cmd *cmd);
/* "ADD_DEV", "START_DEV"...: for log lines. */
const char *ublk_cmd_name(uint32_t cmd_op);

/* ---- Control plane (one thread) ---- */

struct ublk_ctrl;

/* Opens the control device (path NULL: UBLK_CONTROL_PATH) and the private
 * ring.  0 or -errno (-ENOENT: no ublk_drv in this kernel). */
int ublk_ctrl_open(struct ublk_ctrl **out, const char *path);
void ublk_ctrl_close(struct ublk_ctrl *c); /* NULL is a no-op */

/* Called about every 100 ms while a long command (START_DEV,
 * END_USER_RECOVERY) waits; a non-zero return cancels the command, which
 * then returns that value. */
typedef int (*ublk_poll_fn)(void *arg);

/* Every command returns 0 or the kernel's -errno; -ETIMEDOUT when a
 * command with a time limit was cancelled. */
/* ADD_DEV: info in (from ublk_dev_info_init), the kernel's view out (the
 * id it chose, nr_hw_queues at most the CPUs, the flags it kept). */
int ublk_add_dev(struct ublk_ctrl *c, struct ublksrv_ctrl_dev_info *info);
int ublk_set_params(struct ublk_ctrl *c, uint32_t dev_id, const struct ublk_params *p);
int ublk_get_params(struct ublk_ctrl *c, uint32_t dev_id, struct ublk_params *p);
int ublk_get_dev_info(struct ublk_ctrl *c, uint32_t dev_id, struct ublksrv_ctrl_dev_info *info);
/* START_DEV waits (in the kernel) until every queue fetched every tag;
 * poll may give up. */
int ublk_start_dev(struct ublk_ctrl *c, uint32_t dev_id, pid_t pid, ublk_poll_fn poll,
		   void *arg);
/* STOP_DEV: waits for requests the daemon holds, removes /dev/ublkbN, then
 * completes every pending FETCH with UBLK_IO_RES_ABORT.  Repeatable. */
int ublk_stop_dev(struct ublk_ctrl *c, uint32_t dev_id);
/* DEL_DEV: removes the device; the kernel waits for its last user (an
 * opener of /dev/ublkbN, the char device) up to timeout_ms, after which the
 * removal completes by itself when that user goes. */
int ublk_del_dev(struct ublk_ctrl *c, uint32_t dev_id, unsigned timeout_ms);
/* START_USER_RECOVERY: -EBUSY while the dead daemon's files are still
 * being released or the device is not quiesced yet (retry). */
int ublk_start_recovery(struct ublk_ctrl *c, uint32_t dev_id);
/* END_USER_RECOVERY waits until every queue fetched every tag, then lets
 * the waiting I/O through. */
int ublk_end_recovery(struct ublk_ctrl *c, uint32_t dev_id, pid_t pid, ublk_poll_fn poll,
		      void *arg);

/* ---- Data plane (a queue thread) ---- */

struct ublk_queue;

struct ublk_queue_params {
	int fd;                  /* /dev/ublkcN, shared by the queues; not owned */
	uint16_t q_id;
	struct ublk_geom geom;   /* depth, max_io and size are used */
	struct ev_loop *loop;    /* the queue thread's loop (EV_SQE128); every call runs on it */
	struct req_sink *sink;
	/* The first command the kernel refused (not an abort): err is its
	 * -errno.  The queue goes on ending its other tags. */
	void (*failed)(struct ublk_queue *uq, int err, void *arg);
	/* Every tag has ended (aborted by STOP_DEV or refused) and no request
	 * is in flight any more: the queue may be freed, on this thread. */
	void (*ended)(struct ublk_queue *uq, void *arg);
	void *arg;
};

/* Maps the queue's descriptors, allocates the tags' buffers and prepares
 * a FETCH_REQ for every tag (the loop submits them).  Loop thread.
 * 0 or -errno (nothing is left prepared then). */
int ublk_queue_new(struct ublk_queue **out, const struct ublk_queue_params *p);
/* After ended(), or after a failed ublk_queue_new.  NULL is a no-op. */
void ublk_queue_free(struct ublk_queue *uq);

#endif
