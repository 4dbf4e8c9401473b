/* disk: the local backing disk (file or block device) driven through the
 * queue thread's io_uring.  O_DIRECT where the file system allows it,
 * buffered otherwise; requests not aligned for O_DIRECT use a second,
 * buffered descriptor. */
#ifndef BLKMIRROR_DISK_H
#define BLKMIRROR_DISK_H

#include <stdint.h>
#include <stddef.h>

#include "daemon/conf.h"
#include "lib/req.h"

struct disk;

/* Opens path read-write.  mode: CONF_DIRECT_YES fails if O_DIRECT is not
 * possible, AUTO falls back to buffered I/O, NO never uses it.  Returns 0
 * or -errno with a message in err. */
int disk_open(const char *path, enum conf_direct mode, struct disk **out, char *err,
	      size_t errlen);
void disk_close(struct disk *d); /* NULL is a no-op */

uint64_t disk_size(const struct disk *d);
int disk_is_direct(const struct disk *d);
int disk_fd(const struct disk *d); /* the buffered descriptor (metadata, tools) */
/* Alignment O_DIRECT needs (512 or 4096); 1 when buffered. */
uint32_t disk_align(const struct disk *d);

/* Prepares the SQE for the next piece of r (from r->off + r->done):
 * READ/WRITE (FUA as RWF_DSYNC), FLUSH (fdatasync), TRIM (punch hole),
 * WRITE_ZEROES (zero range, or punch hole unless NO_HOLE).  zero_fallback
 * != 0 asks for a plain write of zeros from a shared zero buffer instead,
 * for file systems without fallocate support; it covers at most
 * disk_zero_chunk() bytes, so the caller resumes until r->done == r->len. */
void disk_prep(struct disk *d, struct io_uring_sqe *sqe, struct req *r, int zero_fallback);
uint32_t disk_zero_chunk(void);

/* The tests' slow disk (failpoints named .../slow, lib/fault.h): op's
 * callback runs a few hundred ms from now on loop's thread, which goes on
 * meanwhile. */
void disk_delay(struct ev_loop *loop, struct ev_op *op);

#endif
