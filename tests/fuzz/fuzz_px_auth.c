/* libFuzzer target: the replication handshake (proto/px_auth.c), HELLO
 * parsing and judging, the CHALLENGE/AUTH/AUTH_OK sequence as far as a
 * peer without the secret gets.
 *
 * Seam: a socketpair.  The fuzzer's bytes (after the first) are written to
 * one end, which is then shut for writing, and px_handshake runs on the
 * other end in this thread: what it reads is the input, then EOF.  The
 * first byte picks the role: bit 0 connector (else listener), bit 1 a data
 * link (connector) or a listener with a session (so data links are judged
 * against it), bit 2 the peer's session matches.  What the handshake sends
 * lands in the fuzzer's end, unread (a handshake sends a few hundred bytes,
 * well within the socket buffer); both ends are closed after each input. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "proto/px.h"
#include "tests/fuzz/fuzz.h"

#define SECRET  "fuzzing-secret-0123456789"
#define SESSION 0x1122334455667788ull
#define MAX_IN  (32 * 1024)  /* well under the socket buffer */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int once;
	struct timeval tv = { .tv_sec = 1 };
	struct px_hs_params p;
	struct px_hs_result res;
	char err[256];
	int sv[2], rc;
	uint8_t mode;

	if (size < 1 || size > MAX_IN)
		return 0;
	if (!once) {
		signal(SIGPIPE, SIG_IGN);
		once = 1;
	}
	mode = data[0];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	/* Only a bug waits: the input ends in EOF. */
	setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (size > 1 && write(sv[1], data + 1, size - 1) != (ssize_t)(size - 1))
		abort();
	shutdown(sv[1], SHUT_WR);

	memset(&p, 0, sizeof(p));
	p.initiator = mode & 1;
	p.node = p.initiator ? "alpha" : "beta";
	p.peer = p.initiator ? "beta" : "alpha";
	p.resource = "r0";
	p.secret = SECRET;
	p.secret_len = strlen(SECRET);
	p.features = PX_FEAT_CSUM_RESYNC | PX_FEAT_VERIFY;
	if (p.initiator) {
		p.link = (mode & 2) ? PX_LINK_DATA : PX_LINK_META;
		p.queue = p.link == PX_LINK_DATA ? (mode >> 4) : 0;
		p.session = p.link == PX_LINK_DATA ? SESSION : 0;
	} else {
		p.session = (mode & 2) ? ((mode & 4) ? SESSION : SESSION + 1) : 0;
	}
	rc = px_handshake(sv[0], &p, &res, err, sizeof(err));
	FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
	/* Without the secret no input may pass. */
	FUZZ_CHECK(rc != 0);
	FUZZ_CHECK(rc < 0 && rc != -ETIMEDOUT && rc != -EINVAL);
	close(sv[0]);
	close(sv[1]);
	return 0;
}
