/* libFuzzer target: the NBD transmission phase (ublk/nbd_srv.c): the
 * receive buffer's framing of 28-byte requests, nbds_validate (range,
 * length, flags, read-only), WRITE payloads received into a tag's buffer,
 * requests longer than a tag's buffer served piece by piece, DISC, bad
 * magic, and the replies, all on a real event loop.
 *
 * Seam: nbds_conn_new on one end of a socketpair with a fake write path
 * (a struct req_sink whose submit completes each request at once, as the
 * real one may), the fuzzer's bytes written to the other end followed by
 * EOF; a thread drains the replies.  The connection's closed() callback
 * stops the loop, so each input runs until every request is answered and
 * the connection is freed: a hang is a bug (libFuzzer's -timeout).  A
 * stopped loop stays stopped (lib/ev.h), so each input has a loop of its
 * own.  The
 * first byte picks the export: bit 0 read-only, bit 1 structured replies,
 * bit 2 a tag buffer smaller than the largest request (big requests),
 * bits 3-4 the queue depth (1, 2, 4, 8); bit 5 makes every request on an
 * odd 512-byte sector fail with EIO; bit 7 completes requests later, from
 * the loop, newest first (as the write path does when the disk and the peer
 * answer out of order), instead of inside submit. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/ev.h"
#include "lib/req.h"
#include "tests/fuzz/fuzz.h"
#include "ublk/nbd_srv.h"

#define MAX_IN    (64 * 1024)
#define EXPORT_SZ (1u << 20)

static struct ev_loop *loop;
static int fail_odd, deferred;
static unsigned submitted;
static struct req *later;	/* deferred requests, newest first (lk_next) */
static struct ev_op later_op;
static int later_armed;

/* Completes every deferred request, newest first. */
static void
later_done(struct ev_op *op, int res, uint32_t flags)
{
	struct req *r;

	(void)op;
	(void)res;
	(void)flags;
	later_armed = 0;
	while ((r = later)) {
		later = r->lk_next;
		r->complete(r);
	}
}

static void
sink_submit(struct req_sink *s, struct req *r)
{
	(void)s;
	submitted++;
	FUZZ_CHECK(r->off <= EXPORT_SZ && r->len <= EXPORT_SZ - r->off);
	FUZZ_CHECK(r->type <= REQ_WRITE_ZEROES);
	r->res = (fail_odd && (r->off >> 9) % 2) ? -EIO : 0;
	if (!deferred) {
		r->complete(r);
		return;
	}
	r->lk_next = later;
	later = r;
	if (!later_armed) {
		struct io_uring_sqe *sqe = ev_get_sqe(loop);

		io_uring_prep_nop(sqe);
		ev_sqe_set_op(sqe, &later_op);
		later_armed = 1;
	}
}

static struct req_sink sink = { .submit = sink_submit };

static void
closed(struct nbds_conn *c, void *arg)
{
	(void)c;
	*(int *)arg = 1;
	ev_stop(loop);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nbds_params p;
	struct nbds_conn *c;
	pthread_t th;
	int sv[2], done = 0;
	uint8_t mode;

	if (size < 1 || size > MAX_IN)
		return 0;
	signal(SIGPIPE, SIG_IGN);
	if (ev_new(&loop, 64, 0) < 0)
		abort();
	mode = data[0];
	fail_odd = !!(mode & 0x20);
	deferred = !!(mode & 0x80);
	later_op.cb = later_done;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	if (pthread_create(&th, NULL, fuzz_drain, &sv[1]) != 0)
		abort();
	if (size > 1 && write(sv[1], data + 1, size - 1) != (ssize_t)(size - 1))
		abort();
	shutdown(sv[1], SHUT_WR);

	memset(&p, 0, sizeof(p));
	p.fd = sv[0];	/* owned by the connection from here */
	p.loop = loop;
	p.sink = &sink;
	p.size = EXPORT_SZ - ((mode & 0x40) ? 512 : 0);
	p.max_payload = (mode & 4) ? 4096 : 65536;
	p.max_request = 65536;
	p.depth = 1u << ((mode >> 3) & 3);
	p.structured = !!(mode & 2);
	p.read_only = mode & 1;
	p.name = "fuzz";
	p.closed = closed;
	p.arg = &done;
	if (nbds_conn_new(&c, &p) < 0)
		abort();
	if (!done && ev_run(loop) < 0)
		abort();
	FUZZ_CHECK(done && !later && !later_armed);
	pthread_join(th, NULL);
	close(sv[1]);
	ev_free(loop);
	loop = NULL;
	return 0;
}
