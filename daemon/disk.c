#include "daemon/disk.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fault.h"
#include "lib/log.h"
#include "lib/util.h"

#define DISK_ZERO_CHUNK (1u << 20)

struct disk {
	int fd_direct;   /* O_DIRECT, or -1 */
	int fd;          /* buffered */
	uint64_t size;
	uint32_t align;  /* what O_DIRECT needs; 1 when not direct */
};

/* One shared, never written, 4 KiB aligned buffer of zeros. */
static void *disk_zeros;

uint32_t
disk_zero_chunk(void)
{
	return DISK_ZERO_CHUNK;
}

/* Smallest alignment O_DIRECT accepts here: a 512-byte direct read at
 * offset 512 tells; 4096 is what every device accepts. */
static uint32_t
disk_probe_align(int fd, uint64_t size)
{
	void *buf;
	uint32_t align = 4096;

	if (size < 1024 || posix_memalign(&buf, 4096, 4096))
		return align;
	if (pread(fd, (char *)buf + 512, 512, 512) == 512)
		align = 512;
	free(buf);
	return align;
}

int
disk_open(const char *path, enum conf_direct mode, struct disk **out, char *err,
	  size_t errlen)
{
	struct disk *d;
	struct stat st;
	int rc;

	if (!disk_zeros) {
		if (posix_memalign(&disk_zeros, 4096, DISK_ZERO_CHUNK))
			return -ENOMEM;
		memset(disk_zeros, 0, DISK_ZERO_CHUNK);
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->fd_direct = -1;
	d->fd = open(path, O_RDWR | O_CLOEXEC);
	if (d->fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot open disk %s: %s", path, strerror(errno));
		free(d);
		return rc;
	}
	if (fstat(d->fd, &st) < 0) {
		rc = -errno;
		goto fail;
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(d->fd, BLKGETSIZE64, &d->size) < 0) {
			rc = -errno;
			goto fail;
		}
	} else if (S_ISREG(st.st_mode)) {
		d->size = (uint64_t)st.st_size;
	} else {
		snprintf(err, errlen, "disk %s is neither a regular file nor a block device", path);
		rc = -EINVAL;
		goto fail_msg;
	}
	d->align = 1;
	if (mode != CONF_DIRECT_NO) {
		d->fd_direct = open(path, O_RDWR | O_CLOEXEC | O_DIRECT);
		if (d->fd_direct < 0 && mode == CONF_DIRECT_YES) {
			rc = -errno;
			snprintf(err, errlen, "disk %s: direct-io = yes but O_DIRECT is not possible: %s",
				 path, strerror(errno));
			goto fail_msg;
		}
		if (d->fd_direct >= 0)
			d->align = disk_probe_align(d->fd_direct, d->size);
	}
	*out = d;
	return 0;
fail:
	snprintf(err, errlen, "disk %s: %s", path, strerror(-rc));
fail_msg:
	disk_close(d);
	return rc;
}

void
disk_close(struct disk *d)
{
	if (!d)
		return;
	if (d->fd_direct >= 0)
		close(d->fd_direct);
	if (d->fd >= 0)
		close(d->fd);
	free(d);
}

uint64_t
disk_size(const struct disk *d)
{
	return d->size;
}

int
disk_is_direct(const struct disk *d)
{
	return d->fd_direct >= 0;
}

int
disk_fd(const struct disk *d)
{
	return d->fd;
}

uint32_t
disk_align(const struct disk *d)
{
	return d->align;
}

/* O_DIRECT needs offset, length and buffer aligned; buffers always are. */
static int
disk_fd_for(const struct disk *d, uint64_t off, uint32_t len)
{
	if (d->fd_direct >= 0 && off % d->align == 0 && len % d->align == 0)
		return d->fd_direct;
	return d->fd;
}

/* Tests only (lib/fault.h): a disk that does part of a read or write, as
 * the kernel may: asking for half (in the fd's alignment) makes the
 * completion genuinely short, the rest really not read or written. */
static uint32_t
disk_fault_len(const struct disk *d, int fd, int write, uint32_t len)
{
	uint32_t unit = fd == d->fd_direct ? d->align : 1;
	uint32_t half = len / 2 / unit * unit;

	if (!half || !FAULT(write ? "disk/write/short" : "disk/read/short"))
		return len;
	return half;
}

void
disk_prep(struct disk *d, struct io_uring_sqe *sqe, struct req *r, int zero_fallback)
{
	uint64_t off = r->off + r->done;
	uint32_t len = r->len - r->done;
	int fd;

	switch (r->type) {
	case REQ_READ:
		fd = disk_fd_for(d, r->off, r->len);
		len = disk_fault_len(d, fd, 0, len);
		io_uring_prep_read(sqe, fd, (char *)r->buf + r->done, len, off);
		break;
	case REQ_WRITE:
		fd = disk_fd_for(d, r->off, r->len);
		len = disk_fault_len(d, fd, 1, len);
		io_uring_prep_write(sqe, fd, (char *)r->buf + r->done, len, off);
		if (r->flags & REQ_F_FUA)
			sqe->rw_flags = RWF_DSYNC;
		break;
	case REQ_FLUSH:
		io_uring_prep_fsync(sqe, d->fd, IORING_FSYNC_DATASYNC);
		break;
	case REQ_TRIM:
	case REQ_WRITE_ZEROES:
		if (zero_fallback) {
			len = MIN(len, DISK_ZERO_CHUNK);
			fd = disk_fd_for(d, off, len);
			len = disk_fault_len(d, fd, 1, len);
			io_uring_prep_write(sqe, fd, disk_zeros, len, off);
			if (r->flags & REQ_F_FUA)
				sqe->rw_flags = RWF_DSYNC;
		} else {
			/* A trim must read back as zeros on both nodes, or the
			 * mirror would diverge: punch, never just discard. */
			int mode = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
			if (r->type == REQ_WRITE_ZEROES && (r->flags & REQ_F_NO_HOLE))
				mode = FALLOC_FL_KEEP_SIZE | FALLOC_FL_ZERO_RANGE;
			io_uring_prep_fallocate(sqe, d->fd, mode, (off_t)off, len);
		}
		break;
	default:
		VERIFY(0);
	}
}

/* Tests: how long a slow disk holds a completion back.  Read-only, so the
 * queue threads share it; the kernel copies it when it takes the SQE. */
static struct __kernel_timespec disk_slow_ts = { .tv_sec = 0, .tv_nsec = 300 * 1000 * 1000 };

void
disk_delay(struct ev_loop *loop, struct ev_op *op)
{
	struct io_uring_sqe *sqe = ev_get_sqe(loop);

	io_uring_prep_timeout(sqe, &disk_slow_ts, 0, 0);
	ev_sqe_set_op(sqe, op);
}
