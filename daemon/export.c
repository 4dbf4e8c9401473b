#include "daemon/export.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/queue.h"
#include "lib/log.h"
#include "lib/util.h"
#include "ublk/nbd_hs.h"
#include "ublk/nbd_proto.h"

#define EXPORT_HS_MAX 64          /* handshakes at once, below max-connections */
#define EXPORT_REFUSE_LOG_MS 1000 /* one line per second about refused clients */

struct export_hs {
	struct res *res;
	int fd;
	unsigned serial;
};

/* Handshake threads in flight; protected by hs_lock. */
static pthread_mutex_t hs_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hs_cond = PTHREAD_COND_INITIALIZER;
static int hs_fds[EXPORT_HS_MAX];
static unsigned hs_count;
static unsigned hs_serial;
static int export_is_unix;

static void export_arm_accept(struct res *r);

/* A connection counted at accept ended before reaching a queue. */
static void
export_conn_gone(struct res *r)
{
	atomic_fetch_sub(&r->export_conns, 1);
}

/* The handshake on fd no longer needs waking by export_close(): fd is
 * about to be closed or handed to a queue. */
static void
export_hs_forget(int fd)
{
	pthread_mutex_lock(&hs_lock);
	for (unsigned i = 0; i < EXPORT_HS_MAX; i++) {
		if (hs_fds[i] == fd + 1) {
			hs_fds[i] = 0;
			break;
		}
	}
	pthread_mutex_unlock(&hs_lock);
}

/* The handshake thread's last touch of shared state: export_close() may
 * return, and the queues' loops be freed, from here on. */
static void
export_hs_exit(void)
{
	pthread_mutex_lock(&hs_lock);
	hs_count--;
	pthread_cond_broadcast(&hs_cond);
	pthread_mutex_unlock(&hs_lock);
}

static void *
export_hs_thread(void *arg)
{
	struct export_hs *h = arg;
	struct res *r = h->res;
	struct nbdh_export e = {
		.name = r->conf.name,
		.size = r->size,
		.tflags = NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
			  NBD_FLAG_SEND_WRITE_ZEROES |
			  /* FLUSH is an fdatasync of the whole disk: it covers
			   * writes completed on every connection. */
			  NBD_FLAG_CAN_MULTI_CONN,
		.min_block = disk_align(r->disk) > 1 ? 512 : 1,
		.pref_block = 4096,
		.max_block = r->conf.max_io_size,
		/* One deadline for the whole handshake: a client dripping a
		 * byte at a time must not keep this thread and its slot. */
		.timeout_ms = r->conf.handshake_timeout_ms,
	};
	struct nbdh_result res = { 0 };
	struct queue_nbd o = { .export_conn = 1 };
	char desc[128], err[256], name[96];
	int ro, rc;

	snprintf(desc, sizeof(desc), "blkmirror resource %s", r->conf.name);
	e.description = desc;
	snprintf(name, sizeof(name), "%s#%u", export_is_unix ? "unix" : "tcp", h->serial);
	/* Read-only for a secondary; a primary counts the writer now, under
	 * the lock demote takes, so demote cannot slip in between. */
	pthread_mutex_lock(&r->lock);
	ro = !atomic_load(&r->writable);
	if (!ro)
		atomic_fetch_add(&r->writers, 1);
	pthread_mutex_unlock(&r->lock);
	if (ro)
		e.tflags |= NBD_FLAG_READ_ONLY;
	rc = nbdh_negotiate(h->fd, &e, &res, err, sizeof(err));
	if (rc == 0 && !atomic_load(&r->shutting_down)) {
		export_hs_forget(h->fd);
		o.structured = res.structured;
		o.read_only = ro;
		/* A client that asked for the block size constraints keeps
		 * to max-io-size; others may send what the spec allows by
		 * default, served in pieces. */
		o.max_request = res.block_size ? 0 : MAX(NBD_DEFAULT_MAX_PAYLOAD, r->conf.max_io_size);
		/* Posts to a queue's loop: counted in hs_count until it
		 * returns, or a shutdown could free the loop under ev_post. */
		queue_adopt_nbd(r, h->fd, &o, name);
		free(h);
		export_hs_exit();
		return NULL;
	}
	if (rc == -ESHUTDOWN)
		LOG_DEBUG("nbd %s: %s", name, err);
	else if (rc == -ETIMEDOUT)
		LOG_WARN("nbd %s: handshake failed: %s (handshake-timeout %u ms)", name, err,
			 r->conf.handshake_timeout_ms);
	else if (rc)
		LOG_WARN("nbd %s: handshake failed: %s", name, err);
	if (!ro)
		atomic_fetch_sub(&r->writers, 1);
	export_hs_forget(h->fd);
	export_conn_gone(r);
	close(h->fd);
	free(h);
	export_hs_exit();
	return NULL;
}

static void
export_start_hs(struct res *r, int fd)
{
	struct export_hs *h;
	pthread_attr_t attr;
	pthread_t t;
	unsigned slot = EXPORT_HS_MAX;

	pthread_mutex_lock(&hs_lock);
	for (unsigned i = 0; i < EXPORT_HS_MAX; i++) {
		if (!hs_fds[i]) {
			slot = i;
			break;
		}
	}
	if (slot < EXPORT_HS_MAX) {
		hs_fds[slot] = fd + 1;
		hs_count++;
	}
	pthread_mutex_unlock(&hs_lock);
	if (slot == EXPORT_HS_MAX) {
		LOG_WARN("nbd: %d handshakes in progress: refusing a connection", EXPORT_HS_MAX);
		export_conn_gone(r);
		close(fd);
		return;
	}
	h = calloc(1, sizeof(*h));
	if (h) {
		h->res = r;
		h->fd = fd;
		h->serial = ++hs_serial;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &attr, export_hs_thread, h) == 0) {
			pthread_attr_destroy(&attr);
			return;
		}
		pthread_attr_destroy(&attr);
		free(h);
	}
	export_hs_forget(fd);
	export_hs_exit();
	export_conn_gone(r);
	close(fd);
}

/* Counts a new connection unless max-connections are open already.  Only
 * the control thread adds, so the check cannot be raced past; each
 * connection's buffers (queue-depth x max-io-size) are bounded this way.
 * A flood of refusals logs one line a second. */
static int
export_admit(struct res *r)
{
	static unsigned refused;
	static uint64_t last_log_ms;
	unsigned n = atomic_load(&r->export_conns);
	uint64_t now;

	if (n < r->conf.max_connections) {
		atomic_fetch_add(&r->export_conns, 1);
		return 1;
	}
	refused++;
	now = util_now_ms();
	if (now - last_log_ms >= EXPORT_REFUSE_LOG_MS) {
		LOG_WARN("nbd: %u connections (max-connections): refusing new ones "
			 "(%u refused since the last message)", n, refused);
		refused = 0;
		last_log_ms = now;
	}
	return 0;
}

static void
export_accept_done(struct ev_op *op, int res, uint32_t flags)
{
	struct res *r = container_of(op, struct res, export_op);
	int one = 1;

	(void)flags;
	if (r->export_fd < 0) {
		if (res >= 0)
			close(res);
		return;
	}
	if (res >= 0 && !export_admit(r)) {
		close(res);
	} else if (res >= 0) {
		if (!export_is_unix)
			setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		export_start_hs(r, res);
	} else if (res != -EINTR && res != -EAGAIN && res != -ECONNABORTED) {
		LOG_WARN("nbd: accept failed: %s", strerror(-res));
	}
	export_arm_accept(r);
}

static void
export_arm_accept(struct res *r)
{
	struct io_uring_sqe *sqe = ev_get_sqe(r->ctl_loop);

	io_uring_prep_accept(sqe, r->export_fd, NULL, NULL, SOCK_CLOEXEC);
	ev_sqe_set_op(sqe, &r->export_op);
}

static int
export_listen_unix(struct res *r, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "export-listen path too long: %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	/* A live socket belongs to someone: never steal it.  One that a
	 * killed daemon of this resource left (we hold its lock now) stops
	 * answering once the kernel has torn down that daemon's io_uring:
	 * give it a moment. */
	for (int i = 0; i < 40 && ctl_probe(path) == 0; i++)
		usleep(50 * 1000);
	if (ctl_probe(path) == 0) {
		snprintf(err, errlen, "export-listen %s is in use by another process", path);
		return -EADDRINUSE;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 ||
	    listen(fd, 64) < 0) {
		int rc = -errno;
		snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
		close(fd);
		return rc;
	}
	export_is_unix = 1;
	{
		char dev[sizeof(r->device)];

		snprintf(dev, sizeof(dev), "nbd+unix:///%s?socket=%s", r->conf.name, path);
		res_device_set(r, dev);
	}
	return fd;
}

static int
export_listen_tcp(struct res *r, const char *spec, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *ai;
	char host[256], *colon;
	int fd, one = 1, rc;

	snprintf(host, sizeof(host), "%s", spec);
	colon = strrchr(host, ':');
	if (!colon) {
		snprintf(err, errlen, "export-listen '%s': expected unix:PATH or HOST:PORT", spec);
		return -EINVAL;
	}
	*colon = '\0';
	if (host[0] == '[' && colon[-1] == ']') {
		colon[-1] = '\0';
		memmove(host, host + 1, strlen(host));
	}
	rc = getaddrinfo(host, colon + 1, &hints, &ai);
	if (rc) {
		snprintf(err, errlen, "export-listen '%s': %s", spec, gai_strerror(rc));
		return -EINVAL;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		freeaddrinfo(ai);
		return -errno;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot listen on %s: %s", spec, strerror(errno));
		close(fd);
		freeaddrinfo(ai);
		return rc;
	}
	freeaddrinfo(ai);
	{
		char dev[sizeof(r->device)];

		snprintf(dev, sizeof(dev), "nbd://%s/%s", spec, r->conf.name);
		res_device_set(r, dev);
	}
	return fd;
}

int
export_open(struct res *r, char *err, size_t errlen)
{
	const char *spec = r->conf.export_listen;
	int fd;

	if (strncmp(spec, "unix:", 5) == 0)
		fd = export_listen_unix(r, spec + 5, err, errlen);
	else
		fd = export_listen_tcp(r, spec, err, errlen);
	if (fd < 0)
		return fd;
	r->export_fd = fd;
	r->export_op.cb = export_accept_done;
	export_arm_accept(r);
	return 0;
}

void
export_close(struct res *r)
{
	if (r->export_fd >= 0) {
		close(r->export_fd);
		r->export_fd = -1;
		if (export_is_unix)
			unlink(r->conf.export_listen + 5);
	}
	/* Handshakes in progress: wake them, then wait for their threads. */
	pthread_mutex_lock(&hs_lock);
	for (unsigned i = 0; i < EXPORT_HS_MAX; i++)
		if (hs_fds[i])
			shutdown(hs_fds[i] - 1, SHUT_RDWR);
	while (hs_count)
		pthread_cond_wait(&hs_cond, &hs_lock);
	pthread_mutex_unlock(&hs_lock);
}
