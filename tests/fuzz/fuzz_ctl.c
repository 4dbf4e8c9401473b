/* libFuzzer target: the control socket's request path (daemon/ctl.c and
 * daemon/commands.c): line framing of what arrives on a connection (lines
 * split across reads, the 4096-byte limit), JSON parsing of each line, the
 * malformed-request answer, and cmd_parse, the request checks cmd_handle
 * makes before it touches the resource.
 *
 * cmd_handle itself is not driven: every command it dispatches needs a
 * live struct res (state machine, peer and metadata threads), so the
 * handler here is cmd_parse plus a reply naming the command; "events"
 * subscribes, as cmd_handle does, so that the lines after it are ignored.
 *
 * Seam: a real ctl_open on a private socket and event loop (both new for
 * each input: a stopped loop stays stopped, lib/ev.h); each input is one
 * client connection that sends the input (the
 * first byte is skipped), shuts its writing side and reads every response
 * line on a thread, which checks that each is one JSON object with "ok" and
 * stops the loop at EOF. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/commands.h"
#include "daemon/ctl.h"
#include "lib/ev.h"
#include "tests/fuzz/fuzz.h"

#define MAX_IN (16 * 1024)

static struct ev_loop *loop;
static struct ctl *ctl;
static char path[108];

static json_object *
handler(void *arg, json_object *req, int *subscribe)
{
	json_object *o;
	enum cmd_id id;
	int force;

	(void)arg;
	o = cmd_parse(req, &id, &force);
	if (o) {
		FUZZ_CHECK(id == CMD_NONE);
		return o;
	}
	FUZZ_CHECK(id != CMD_NONE && (force == 0 || force == 1));
	if (id == CMD_EVENTS)
		*subscribe = 1;
	o = json_object_new_object();
	json_object_object_add(o, "ok", json_object_new_boolean(1));
	json_object_object_add(o, "id", json_object_new_int(id));
	return o;
}

/* One response line: a JSON object with a boolean "ok". */
static void
check_line(const char *line)
{
	json_object *o = json_tokener_parse(line), *ok;

	FUZZ_CHECK(o && json_object_is_type(o, json_type_object));
	FUZZ_CHECK(json_object_object_get_ex(o, "ok", &ok) &&
		   json_object_is_type(ok, json_type_boolean));
	json_object_put(o);
}

static void *
reader(void *arg)
{
	static char buf[1 << 16];
	int fd = *(int *)arg;
	size_t len = 0;
	ssize_t n;
	char *nl;

	while ((n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0) {
		len += (size_t)n;
		while ((nl = memchr(buf, '\n', len))) {
			*nl = '\0';
			check_line(buf);
			len -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, len);
		}
		FUZZ_CHECK(len < sizeof(buf) - 1);
	}
	FUZZ_CHECK(len == 0);	/* every response ends in a newline */
	ev_post_stop(loop);
	return NULL;
}

static void
setup(void)
{
	char err[256] = "";

	if (ev_new(&loop, 64, 0) < 0 ||
	    ctl_open(&ctl, path, loop, handler, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_ctl: %s\n", err);
		abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	pthread_t th;
	int fd;

	if (size < 1 || size > MAX_IN)
		return 0;
	if (!path[0]) {
		signal(SIGPIPE, SIG_IGN);
		/* Directly in /tmp: ctl_close removes the socket, and
		 * nothing else is left behind. */
		snprintf(path, sizeof(path), "/tmp/blkmirror-fuzz-ctl.%d.sock", (int)getpid());
	}
	setup();
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		abort();
	if (pthread_create(&th, NULL, reader, &fd) != 0)
		abort();
	/* A line over the limit makes the daemon hang up: a short write is
	 * then expected, and the reader still sees EOF. */
	if (size > 1 && write(fd, data + 1, size - 1) < 0 && errno != EPIPE &&
	    errno != ECONNRESET)
		abort();
	shutdown(fd, SHUT_WR);
	if (ev_run(loop) < 0)
		abort();
	pthread_join(th, NULL);
	close(fd);
	ctl_close(ctl);	/* removes the socket file */
	ev_free(loop);
	return 0;
}
