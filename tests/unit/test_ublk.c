/* Unit tests for ublk/ublk.c, the parts that need no ublk driver: the
 * ADD_DEV and SET_PARAMS arguments built from a geometry (checked against
 * the rules the kernel's ublk_validate_params() applies), the decoding of
 * request descriptors into requests, the result committed back, the layout
 * of the descriptor mapping, the 128-byte SQEs, and the control ring and a
 * queue driven against files that are not ublk devices (every command is
 * refused: the error paths run on any kernel with io_uring). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "tests/unit/cu_run.h"
#include <CUnit/CUnit.h>

#include "lib/ev.h"
#include "ublk/ublk.h"

static struct ublk_geom
geom(uint64_t size, uint32_t block, uint32_t max_io)
{
	struct ublk_geom g = {
		.size = size, .block = block, .max_io = max_io, .queues = 2, .depth = 128,
	};
	return g;
}

/* The checks of drivers/block/ublk_drv.c (6.12) ublk_validate_params()
 * and ublk_ctrl_add_dev(), restated: what SET_PARAMS would refuse. */
static int
kernel_accepts(const struct ublksrv_ctrl_dev_info *info, const struct ublk_params *p)
{
	uint32_t max_io = info->max_io_buf_bytes / 4096 * 4096;	/* rounded down to pages */

	if (!(p->types & UBLK_PARAM_TYPE_BASIC))
		return 0;
	if (p->basic.logical_bs_shift > 12 || p->basic.logical_bs_shift < 9)
		return 0;
	if (p->basic.logical_bs_shift > p->basic.physical_bs_shift)
		return 0;
	if (p->basic.max_sectors > (max_io >> 9))
		return 0;
	if (p->types & UBLK_PARAM_TYPE_DISCARD) {
		if (p->discard.max_discard_sectors && p->discard.max_discard_segments != 1)
			return 0;
		if (!p->discard.discard_granularity)
			return 0;
	}
	if (!info->queue_depth || info->queue_depth > UBLK_MAX_QUEUE_DEPTH ||
	    !info->nr_hw_queues)
		return 0;
	return p->len == sizeof(*p);
}

static void
test_ublk_geom_check(void)
{
	struct ublk_geom g = geom(1 << 30, 512, 1 << 20);
	char err[256];

	CU_ASSERT_EQUAL(ublk_geom_check(&g, err, sizeof(err)), 0);
	g.block = 1024;
	CU_ASSERT_EQUAL(ublk_geom_check(&g, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "512 or 4096"));
	g = geom(1 << 30, 4096, 3 << 20);
	CU_ASSERT_EQUAL(ublk_geom_check(&g, err, sizeof(err)), -EINVAL);
	g.max_io = 2048;
	CU_ASSERT_EQUAL(ublk_geom_check(&g, err, sizeof(err)), -EINVAL);
	g.max_io = 64u << 20;
	CU_ASSERT_EQUAL(ublk_geom_check(&g, err, sizeof(err)), -EINVAL);
	g = geom(1 << 30, 512, 1 << 20);
	g.queues = 0;
	CU_ASSERT_EQUAL(ublk_geom_check(&g, err, sizeof(err)), -EINVAL);
	g.queues = UBLK_MAX_QUEUES + 1;
	CU_ASSERT_EQUAL(ublk_geom_check(&g, err, sizeof(err)), -EINVAL);
	g.queues = 1;
	g.depth = 0;
	CU_ASSERT_EQUAL(ublk_geom_check(&g, err, sizeof(err)), -EINVAL);
	g.depth = UBLK_MAX_QUEUE_DEPTH + 1;
	CU_ASSERT_EQUAL(ublk_geom_check(&g, err, sizeof(err)), -EINVAL);
	g.depth = UBLK_MAX_QUEUE_DEPTH;
	CU_ASSERT_EQUAL(ublk_geom_check(&g, err, sizeof(err)), 0);
	g = geom(4095, 4096, 1 << 20);
	CU_ASSERT_EQUAL(ublk_geom_check(&g, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "smaller than one"));
}

static void
test_ublk_block_follows_disk_alignment(void)
{
	CU_ASSERT_EQUAL(ublk_block_for_align(1), 512);	/* buffered */
	CU_ASSERT_EQUAL(ublk_block_for_align(512), 512);
	CU_ASSERT_EQUAL(ublk_block_for_align(4096), 4096);
}

static void
test_ublk_dev_info_asks_for_recovery(void)
{
	struct ublk_geom g = geom(1 << 30, 512, 1 << 20);
	struct ublksrv_ctrl_dev_info info;

	g.queues = 3;
	g.depth = 256;
	memset(&info, 0xa5, sizeof(info));
	ublk_dev_info_init(&info, &g, -1);
	CU_ASSERT_EQUAL(info.nr_hw_queues, 3);
	CU_ASSERT_EQUAL(info.queue_depth, 256);
	CU_ASSERT_EQUAL(info.max_io_buf_bytes, 1u << 20);
	CU_ASSERT_EQUAL(info.dev_id, UINT32_MAX);	/* any free id */
	CU_ASSERT(info.flags & UBLK_F_USER_RECOVERY);
	CU_ASSERT(info.flags & UBLK_F_USER_RECOVERY_REISSUE);
	/* The kernel copies into the tag's buffer: no zero copy, no
	 * NEED_GET_DATA round trip, no user copy (bit 7 in 6.12). */
	CU_ASSERT_FALSE(info.flags & UBLK_F_SUPPORT_ZERO_COPY);
	CU_ASSERT_FALSE(info.flags & UBLK_F_NEED_GET_DATA);
	CU_ASSERT_FALSE(info.flags & (1ULL << 7));
	CU_ASSERT_EQUAL(info.ublksrv_pid, 0);
	CU_ASSERT_EQUAL(info.state, 0);
	ublk_dev_info_init(&info, &g, 5);
	CU_ASSERT_EQUAL(info.dev_id, 5);
}

static void
test_ublk_params_512(void)
{
	struct ublk_geom g = geom(100u << 20, 512, 1 << 20);
	struct ublksrv_ctrl_dev_info info;
	struct ublk_params p;

	ublk_dev_info_init(&info, &g, -1);
	memset(&p, 0x5a, sizeof(p));
	ublk_params_init(&p, &g);
	CU_ASSERT_EQUAL(p.len, sizeof(p));
	CU_ASSERT_EQUAL(p.types, UBLK_PARAM_TYPE_BASIC | UBLK_PARAM_TYPE_DISCARD);
	CU_ASSERT_EQUAL(p.basic.attrs, UBLK_ATTR_VOLATILE_CACHE | UBLK_ATTR_FUA);
	CU_ASSERT_FALSE(p.basic.attrs & UBLK_ATTR_READ_ONLY);
	CU_ASSERT_EQUAL(p.basic.logical_bs_shift, 9);
	CU_ASSERT_EQUAL(p.basic.physical_bs_shift, 12);
	CU_ASSERT_EQUAL(p.basic.io_min_shift, 12);
	CU_ASSERT_EQUAL(p.basic.io_opt_shift, 12);
	CU_ASSERT_EQUAL(p.basic.max_sectors, 2048);	/* 1 MiB */
	CU_ASSERT_EQUAL(p.basic.dev_sectors, (100u << 20) >> 9);
	CU_ASSERT_EQUAL(p.basic.chunk_sectors, 0);
	CU_ASSERT_EQUAL(p.basic.virt_boundary_mask, 0);
	CU_ASSERT_EQUAL(p.discard.discard_granularity, 4096);
	CU_ASSERT_EQUAL(p.discard.discard_alignment, 0);
	CU_ASSERT_EQUAL(p.discard.max_discard_sectors, UBLK_MAX_DISCARD_BYTES >> 9);
	CU_ASSERT_EQUAL(p.discard.max_write_zeroes_sectors, UBLK_MAX_DISCARD_BYTES >> 9);
	CU_ASSERT_EQUAL(p.discard.max_discard_segments, 1);
	CU_ASSERT_EQUAL(p.discard.reserved0, 0);
	CU_ASSERT(kernel_accepts(&info, &p));
}

static void
test_ublk_params_4096_rounds_capacity(void)
{
	/* A data area that is not a whole number of 4 KiB blocks. */
	struct ublk_geom g = geom((64u << 20) + 3584, 4096, 32u << 20);
	struct ublksrv_ctrl_dev_info info;
	struct ublk_params p;

	ublk_dev_info_init(&info, &g, -1);
	ublk_params_init(&p, &g);
	CU_ASSERT_EQUAL(p.basic.logical_bs_shift, 12);
	CU_ASSERT_EQUAL(p.basic.physical_bs_shift, 12);
	CU_ASSERT_EQUAL(p.basic.max_sectors, (32u << 20) >> 9);
	CU_ASSERT_EQUAL(ublk_capacity(&g), 64u << 20);
	CU_ASSERT_EQUAL(p.basic.dev_sectors, (64u << 20) >> 9);
	CU_ASSERT(kernel_accepts(&info, &p));
}

static void
test_ublk_params_every_geometry_accepted(void)
{
	static const uint32_t blocks[] = { 512, 4096 };

	for (unsigned b = 0; b < 2; b++) {
		for (uint32_t max_io = 4096; max_io <= (32u << 20); max_io <<= 1) {
			struct ublk_geom g = geom((1ull << 34) + 512, blocks[b], max_io);
			struct ublksrv_ctrl_dev_info info;
			struct ublk_params p;
			char err[128];

			CU_ASSERT_EQUAL(ublk_geom_check(&g, err, sizeof(err)), 0);
			ublk_dev_info_init(&info, &g, -1);
			ublk_params_init(&p, &g);
			CU_ASSERT(kernel_accepts(&info, &p));
			CU_ASSERT_EQUAL((uint64_t)p.basic.max_sectors << 9, max_io);
			CU_ASSERT_EQUAL(p.basic.dev_sectors << 9, ublk_capacity(&g));
			CU_ASSERT_EQUAL(ublk_capacity(&g) % blocks[b], 0);
		}
	}
}

static struct ublksrv_io_desc
iod(uint32_t op, uint32_t flags, uint64_t sector, uint32_t nr)
{
	struct ublksrv_io_desc d = {
		.op_flags = op | flags, .nr_sectors = nr, .start_sector = sector,
	};
	return d;
}

static void
test_ublk_iod_each_op(void)
{
	struct ublk_geom g = geom(1 << 30, 512, 1 << 20);
	struct ublksrv_io_desc d;
	struct req r;

	memset(&r, 0, sizeof(r));
	d = iod(UBLK_IO_OP_READ, 0, 8, 16);
	CU_ASSERT_EQUAL(ublk_iod_to_req(&d, &g, &r), 0);
	CU_ASSERT_EQUAL(r.type, REQ_READ);
	CU_ASSERT_EQUAL(r.off, 4096);
	CU_ASSERT_EQUAL(r.len, 8192);
	CU_ASSERT_EQUAL(r.flags, 0);

	d = iod(UBLK_IO_OP_WRITE, 0, 1, 1);
	CU_ASSERT_EQUAL(ublk_iod_to_req(&d, &g, &r), 0);
	CU_ASSERT_EQUAL(r.type, REQ_WRITE);
	CU_ASSERT_EQUAL(r.off, 512);
	CU_ASSERT_EQUAL(r.len, 512);
	CU_ASSERT_EQUAL(r.flags, 0);

	d = iod(UBLK_IO_OP_WRITE, UBLK_IO_F_FUA | UBLK_IO_F_META, 0, 8);
	CU_ASSERT_EQUAL(ublk_iod_to_req(&d, &g, &r), 0);
	CU_ASSERT_EQUAL(r.type, REQ_WRITE);
	CU_ASSERT_EQUAL(r.flags, REQ_F_FUA);

	d = iod(UBLK_IO_OP_FLUSH, 0, 0, 0);
	r.off = 77;
	r.len = 77;
	CU_ASSERT_EQUAL(ublk_iod_to_req(&d, &g, &r), 0);
	CU_ASSERT_EQUAL(r.type, REQ_FLUSH);
	CU_ASSERT_EQUAL(r.off, 0);
	CU_ASSERT_EQUAL(r.len, 0);

	d = iod(UBLK_IO_OP_DISCARD, 0, 2048, 8192);	/* 4 MiB: more than max_io is fine */
	CU_ASSERT_EQUAL(ublk_iod_to_req(&d, &g, &r), 0);
	CU_ASSERT_EQUAL(r.type, REQ_TRIM);
	CU_ASSERT_EQUAL(r.off, 1 << 20);
	CU_ASSERT_EQUAL(r.len, 4 << 20);
	CU_ASSERT_EQUAL(r.flags, 0);

	d = iod(UBLK_IO_OP_WRITE_ZEROES, 0, 8, 8);
	CU_ASSERT_EQUAL(ublk_iod_to_req(&d, &g, &r), 0);
	CU_ASSERT_EQUAL(r.type, REQ_WRITE_ZEROES);
	CU_ASSERT_EQUAL(r.flags, 0);	/* may punch a hole */

	d = iod(UBLK_IO_OP_WRITE_ZEROES, UBLK_IO_F_NOUNMAP | UBLK_IO_F_FUA, 8, 8);
	CU_ASSERT_EQUAL(ublk_iod_to_req(&d, &g, &r), 0);
	CU_ASSERT_EQUAL(r.type, REQ_WRITE_ZEROES);
	CU_ASSERT_EQUAL(r.flags, REQ_F_NO_HOLE | REQ_F_FUA);

	/* FUA means nothing on a read. */
	d = iod(UBLK_IO_OP_READ, UBLK_IO_F_FUA, 0, 8);
	CU_ASSERT_EQUAL(ublk_iod_to_req(&d, &g, &r), 0);
	CU_ASSERT_EQUAL(r.flags, 0);
}

static void
test_ublk_iod_refused(void)
{
	struct ublk_geom g = geom(1 << 30, 512, 1 << 20);
	uint64_t end = (1u << 30) >> 9;
	struct ublksrv_io_desc d;
	struct req r;

	memset(&r, 0, sizeof(r));
	d = iod(UBLK_IO_OP_WRITE_SAME, 0, 0, 8);
	CU_ASSERT_EQUAL(ublk_iod_to_req(&d, &g, &r), -EOPNOTSUPP);
	d = iod(10, 0, 0, 8);	/* a zoned op */
	CU_ASSERT_EQUAL(ublk_iod_to_req(&d, &g, &r), -EOPNOTSUPP);
	d = iod(UBLK_IO_OP_READ, 0, 0, 0);
	CU_ASSERT_EQUAL(ublk_iod_to_req(&d, &g, &r), -EIO);
	/* The last sector, then one past it. */
	d = iod(UBLK_IO_OP_WRITE, 0, end - 1, 1);
	CU_ASSERT_EQUAL(ublk_iod_to_req(&d, &g, &r), 0);
	d = iod(UBLK_IO_OP_WRITE, 0, end - 1, 2);
	CU_ASSERT_EQUAL(ublk_iod_to_req(&d, &g, &r), -EIO);
	d = iod(UBLK_IO_OP_DISCARD, 0, end, 8);
	CU_ASSERT_EQUAL(ublk_iod_to_req(&d, &g, &r), -EIO);
	/* Sector numbers that overflow when turned into bytes. */
	d = iod(UBLK_IO_OP_READ, 0, UINT64_MAX >> 8, 8);
	CU_ASSERT_EQUAL(ublk_iod_to_req(&d, &g, &r), -EIO);
	/* Larger than a tag's buffer. */
	d = iod(UBLK_IO_OP_READ, 0, 0, ((1u << 20) >> 9) + 1);
	CU_ASSERT_EQUAL(ublk_iod_to_req(&d, &g, &r), -EIO);
	d = iod(UBLK_IO_OP_WRITE, 0, 0, (1u << 20) >> 9);
	CU_ASSERT_EQUAL(ublk_iod_to_req(&d, &g, &r), 0);
	/* A discard whose byte count does not fit a request. */
	g.size = 1ull << 40;
	d = iod(UBLK_IO_OP_DISCARD, 0, 0, UINT32_MAX);
	CU_ASSERT_EQUAL(ublk_iod_to_req(&d, &g, &r), -EIO);
}

static void
test_ublk_result_committed(void)
{
	struct req r;

	memset(&r, 0, sizeof(r));
	r.type = REQ_READ;
	r.len = 65536;
	CU_ASSERT_EQUAL(ublk_result(&r), 65536);
	r.type = REQ_WRITE;
	CU_ASSERT_EQUAL(ublk_result(&r), 65536);
	r.type = REQ_FLUSH;
	CU_ASSERT_EQUAL(ublk_result(&r), 0);
	r.type = REQ_TRIM;
	CU_ASSERT_EQUAL(ublk_result(&r), 0);
	r.type = REQ_WRITE_ZEROES;
	CU_ASSERT_EQUAL(ublk_result(&r), 0);
	r.type = REQ_WRITE;
	r.res = -EIO;
	CU_ASSERT_EQUAL(ublk_result(&r), -EIO);
	r.type = REQ_READ;
	r.res = -ENOSPC;
	CU_ASSERT_EQUAL(ublk_result(&r), -ENOSPC);
}

static void
test_ublk_iod_map_layout(void)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);

	CU_ASSERT_EQUAL(sizeof(struct ublksrv_io_desc), 24);
	CU_ASSERT_EQUAL(ublk_iod_map_size(1), ps);
	CU_ASSERT_EQUAL(ublk_iod_map_size(128), ps);	/* 3072 bytes */
	CU_ASSERT_EQUAL(ublk_iod_map_size(1024), (24576 + ps - 1) / ps * ps);
	CU_ASSERT_EQUAL(ublk_iod_map_offset(0), 0);
	/* Queues are spaced by the area of the largest depth (4096 tags). */
	CU_ASSERT_EQUAL(ublk_iod_map_offset(1), (off_t)((98304 + ps - 1) / ps * ps));
	CU_ASSERT_EQUAL(ublk_iod_map_offset(3), 3 * ublk_iod_map_offset(1));
}

static void
test_ublk_prep_io_cmd(void)
{
	struct io_uring_sqe sqe[2];
	const struct ublksrv_io_cmd *c = (const void *)sqe[0].cmd;
	const uint8_t *raw = (const void *)sqe;
	char buf[16];

	memset(sqe, 0xee, sizeof(sqe));
	ublk_prep_io_cmd(sqe, 7, UBLK_IO_COMMIT_AND_FETCH_REQ, 3, 511, -EIO, buf);
	CU_ASSERT_EQUAL(sqe[0].opcode, IORING_OP_URING_CMD);
	CU_ASSERT_EQUAL(sqe[0].fd, 7);
	CU_ASSERT_EQUAL(sqe[0].cmd_op, UBLK_IO_COMMIT_AND_FETCH_REQ);
	CU_ASSERT_EQUAL(sqe[0].__pad1, 0);
	CU_ASSERT_EQUAL(sqe[0].flags, 0);
	CU_ASSERT_EQUAL(sqe[0].user_data, 0);	/* the caller's: ev_sqe_set_op */
	CU_ASSERT_EQUAL(c->q_id, 3);
	CU_ASSERT_EQUAL(c->tag, 511);
	CU_ASSERT_EQUAL(c->result, -EIO);
	CU_ASSERT_EQUAL(c->addr, (uint64_t)(uintptr_t)buf);
	/* Everything after the command is zero, in both halves. */
	for (size_t i = 48 + sizeof(*c); i < sizeof(sqe); i++)
		if (raw[i] != 0) {
			CU_FAIL("byte after the command not cleared");
			break;
		}
}

static void
test_ublk_prep_ctrl_cmd(void)
{
	struct io_uring_sqe sqe[2];
	const struct ublksrv_ctrl_cmd *c = (const void *)sqe[0].cmd;
	struct ublksrv_ctrl_cmd in = {
		.dev_id = 4, .queue_id = 0xffff, .len = 64, .addr = 0x1234, .data = { 99, 0 },
	};

	memset(sqe, 0xee, sizeof(sqe));
	ublk_prep_ctrl_cmd(sqe, 9, UBLK_CMD_START_DEV, &in);
	CU_ASSERT_EQUAL(sqe[0].opcode, IORING_OP_URING_CMD);
	CU_ASSERT_EQUAL(sqe[0].fd, 9);
	CU_ASSERT_EQUAL(sqe[0].cmd_op, UBLK_CMD_START_DEV);
	CU_ASSERT_EQUAL(memcmp(c, &in, sizeof(in)), 0);
	for (size_t i = 48 + sizeof(in); i < sizeof(sqe); i++)
		if (((const uint8_t *)sqe)[i] != 0) {
			CU_FAIL("byte after the command not cleared");
			break;
		}
	CU_ASSERT_STRING_EQUAL(ublk_cmd_name(UBLK_CMD_START_DEV), "START_DEV");
	CU_ASSERT_STRING_EQUAL(ublk_cmd_name(UBLK_CMD_END_USER_RECOVERY), "END_USER_RECOVERY");
	CU_ASSERT_STRING_EQUAL(ublk_cmd_name(UBLK_IO_FETCH_REQ), "FETCH_REQ");
	CU_ASSERT_STRING_EQUAL(ublk_cmd_name(0x7f), "?");
}

static void
test_ublk_ctrl_open_missing(void)
{
	struct ublk_ctrl *c = NULL;

	CU_ASSERT_EQUAL(ublk_ctrl_open(&c, "/nonexistent/ublk-control"), -ENOENT);
	CU_ASSERT_PTR_NULL(c);
	ublk_ctrl_close(NULL);
}

/* A regular file has no uring_cmd (unlike /dev/null since Linux 6.14):
 * every control command comes back refused through the whole
 * submit-and-wait path of the private ring. */
static void
test_ublk_ctrl_refused_by_non_ublk_file(void)
{
	char path[] = "/tmp/test_ublk.XXXXXX";
	struct ublksrv_ctrl_dev_info info;
	struct ublk_params p;
	struct ublk_ctrl *c;
	int fd = mkstemp(path);

	CU_ASSERT_FATAL(fd >= 0);
	close(fd);
	if (ublk_ctrl_open(&c, path) != 0) {
		unlink(path);
		CU_FAIL("cannot open a control ring on a regular file");
		return;
	}
	unlink(path);
	CU_ASSERT_EQUAL(ublk_get_dev_info(c, 0, &info), -EOPNOTSUPP);
	CU_ASSERT_EQUAL(ublk_get_params(c, 0, &p), -EOPNOTSUPP);
	CU_ASSERT_EQUAL(ublk_stop_dev(c, 0), -EOPNOTSUPP);
	CU_ASSERT_EQUAL(ublk_del_dev(c, 0, 1000), -EOPNOTSUPP);
	CU_ASSERT_EQUAL(ublk_start_dev(c, 0, getpid(), NULL, NULL), -EOPNOTSUPP);
	ublk_ctrl_close(c);
}

struct qprobe {
	struct ev_loop *loop;
	int failed, failed_err, ended;
};

static void
probe_failed(struct ublk_queue *uq, int err, void *arg)
{
	struct qprobe *p = arg;

	(void)uq;
	p->failed++;
	p->failed_err = err;
}

static void
probe_ended(struct ublk_queue *uq, void *arg)
{
	struct qprobe *p = arg;

	p->ended++;
	ublk_queue_free(uq);
	ev_stop(p->loop);
}

static void
probe_submit(struct req_sink *s, struct req *r)
{
	(void)s;
	(void)r;
	CU_FAIL("a request reached the sink");
}

/* A memfd stands in for /dev/ublkcN: the descriptors map, but every
 * FETCH_REQ is refused.  The queue reports the first refusal once, ends
 * every tag, and calls ended() once, with nothing submitted. */
static void
test_ublk_queue_refused_fetches_end_every_tag(void)
{
	struct req_sink sink = { .submit = probe_submit };
	struct qprobe probe = { 0 };
	struct ublk_queue *uq = NULL;
	int fd = memfd_create("fake-ublkc", MFD_CLOEXEC);
	struct ublk_queue_params p = {
		.fd = fd,
		.q_id = 1,
		.geom = geom(1 << 30, 512, 64 << 10),
		.sink = &sink,
		.failed = probe_failed,
		.ended = probe_ended,
		.arg = &probe,
	};

	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_FATAL(ftruncate(fd, 2 * ublk_iod_map_offset(1)) == 0);
	p.geom.depth = 300;	/* more than the loop's SQ: submitted in batches */
	CU_ASSERT_FATAL(ev_new(&probe.loop, 256, EV_SQE128) == 0);
	p.loop = probe.loop;
	CU_ASSERT_EQUAL_FATAL(ublk_queue_new(&uq, &p), 0);
	CU_ASSERT_EQUAL(ev_run(probe.loop), 0);
	CU_ASSERT_EQUAL(probe.failed, 1);
	CU_ASSERT_EQUAL(probe.failed_err, -EOPNOTSUPP);
	CU_ASSERT_EQUAL(probe.ended, 1);
	ev_free(probe.loop);
	close(fd);
}

/* Mapping past the end of what the "device" offers fails cleanly. */
static void
test_ublk_queue_new_map_failure(void)
{
	struct req_sink sink = { .submit = probe_submit };
	struct qprobe probe = { 0 };
	struct ublk_queue *uq = NULL;
	struct ublk_queue_params p = {
		.fd = -1,
		.q_id = 0,
		.geom = geom(1 << 30, 512, 64 << 10),
		.sink = &sink,
		.failed = probe_failed,
		.ended = probe_ended,
		.arg = &probe,
	};

	CU_ASSERT_FATAL(ev_new(&probe.loop, 64, EV_SQE128) == 0);
	p.loop = probe.loop;
	CU_ASSERT_EQUAL(ublk_queue_new(&uq, &p), -EBADF);
	CU_ASSERT_PTR_NULL(uq);
	ublk_queue_free(NULL);
	ev_free(probe.loop);
	CU_ASSERT_EQUAL(probe.failed + probe.ended, 0);
}

int
main(void)
{
	static const struct cu_test tests[] = {
		{ "test_ublk_geom_check", test_ublk_geom_check },
		{ "test_ublk_block_follows_disk_alignment", test_ublk_block_follows_disk_alignment },
		{ "test_ublk_dev_info_asks_for_recovery", test_ublk_dev_info_asks_for_recovery },
		{ "test_ublk_params_512", test_ublk_params_512 },
		{ "test_ublk_params_4096_rounds_capacity", test_ublk_params_4096_rounds_capacity },
		{ "test_ublk_params_every_geometry_accepted",
		  test_ublk_params_every_geometry_accepted },
		{ "test_ublk_iod_each_op", test_ublk_iod_each_op },
		{ "test_ublk_iod_refused", test_ublk_iod_refused },
		{ "test_ublk_result_committed", test_ublk_result_committed },
		{ "test_ublk_iod_map_layout", test_ublk_iod_map_layout },
		{ "test_ublk_prep_io_cmd", test_ublk_prep_io_cmd },
		{ "test_ublk_prep_ctrl_cmd", test_ublk_prep_ctrl_cmd },
		{ "test_ublk_ctrl_open_missing", test_ublk_ctrl_open_missing },
		{ "test_ublk_ctrl_refused_by_non_ublk_file", test_ublk_ctrl_refused_by_non_ublk_file },
		{ "test_ublk_queue_refused_fetches_end_every_tag",
		  test_ublk_queue_refused_fetches_end_every_tag },
		{ "test_ublk_queue_new_map_failure", test_ublk_queue_new_map_failure },
	};

	return cu_run("ublk", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
