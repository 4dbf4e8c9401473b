/* libFuzzer target: the NBD fixed-newstyle handshake, server side
 * (ublk/nbd_hs.c nbdh_negotiate): client flags, the option haggling loop,
 * EXPORT_NAME, GO/INFO with their info requests, LIST, ABORT,
 * STRUCTURED_REPLY, unknown options, oversized option data.
 *
 * Seam: the one tests/unit/test_nbd_hs.c uses, a socketpair with the
 * server on one end; here the client's bytes are the fuzzer's input,
 * written in advance and followed by EOF, and the server runs in this
 * thread.  A thread drains what the server sends, so no reply can fill the
 * socket buffer and block it.  The first byte picks the export: bit 0 a
 * description, bit 1 read-only flags, bit 2 an odd size. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/fuzz/fuzz.h"
#include "ublk/nbd_hs.h"
#include "ublk/nbd_proto.h"

#define MAX_IN (64 * 1024)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int once;
	struct nbdh_export e = {
		.name = "r0",
		.size = 1u << 30,
		.tflags = NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_CAN_MULTI_CONN,
		.min_block = 512,
		.pref_block = 4096,
		.max_block = 1u << 20,
		.timeout_ms = 2000,	/* only a bug waits: the input ends in EOF */
	};
	struct nbdh_result res;
	char err[256];
	pthread_t th;
	int sv[2], rc;

	if (size < 1 || size > MAX_IN)
		return 0;
	if (!once) {
		signal(SIGPIPE, SIG_IGN);
		once = 1;
	}
	if (data[0] & 1)
		e.description = "mirror r0";
	if (data[0] & 2)
		e.tflags |= NBD_FLAG_READ_ONLY;
	if (data[0] & 4)
		e.size += 512;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	if (pthread_create(&th, NULL, fuzz_drain, &sv[1]) != 0)
		abort();
	/* The client's bytes fit in the socket buffer (MAX_IN). */
	if (size > 1 && write(sv[1], data + 1, size - 1) != (ssize_t)(size - 1))
		abort();
	shutdown(sv[1], SHUT_WR);
	rc = nbdh_negotiate(sv[0], &e, &res, err, sizeof(err));
	FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
	FUZZ_CHECK(rc <= 0 && rc != -ETIMEDOUT);
	shutdown(sv[0], SHUT_RDWR);
	pthread_join(th, NULL);
	close(sv[0]);
	close(sv[1]);
	return 0;
}
