#include "daemon/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

#define CTL_LINE_MAX 4096
/* How long a start waits for a killed daemon to finish dying. */
#define CTL_LOCK_WAIT_MS 10000
#define CTL_PF_EXITING 0x4 /* task flag in /proc/PID/stat: exit under way */

struct ctl_client {
	struct ctl *ctl;
	int fd;
	int subscribed;
	int closing;
	struct ev_op rx_op;
	uint32_t len;
	char buf[CTL_LINE_MAX];
	struct ctl_client *next;
};

struct ctl {
	struct ev_loop *loop;
	int fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	ctl_handler_t fn;
	void *arg;
	struct ev_op accept_op;
	struct ctl_client *clients;
};

static void ctl_arm_accept(struct ctl *c);

static void
ctl_client_free(struct ctl_client *cl)
{
	struct ctl_client **pp;

	for (pp = &cl->ctl->clients; *pp; pp = &(*pp)->next) {
		if (*pp == cl) {
			*pp = cl->next;
			break;
		}
	}
	close(cl->fd);
	free(cl);
}

static int
ctl_send_line(int fd, json_object *o, int flags)
{
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	size_t n = strlen(s);
	struct iovec iov[2] = { { (void *)s, n }, { "\n", 1 } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };
	ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL | flags);

	return w == (ssize_t)(n + 1) ? 0 : -1;
}

static void ctl_arm_recv(struct ctl_client *cl);

static void
ctl_handle_line(struct ctl_client *cl, const char *line)
{
	json_object *req, *resp;
	int sub = 0;

	req = json_tokener_parse(line);
	if (!req || !json_object_is_type(req, json_type_object) ||
	    !json_object_object_get_ex(req, "cmd", NULL)) {
		resp = json_object_new_object();
		json_object_object_add(resp, "ok", json_object_new_boolean(0));
		json_object_object_add(resp, "code", json_object_new_int(2));
		json_object_object_add(resp, "error", json_object_new_string(
			"malformed request: expected one JSON object with a \"cmd\" member"));
	} else {
		resp = cl->ctl->fn(cl->ctl->arg, req, &sub);
	}
	json_object_put(req);
	if (ctl_send_line(cl->fd, resp, 0) < 0)
		cl->closing = 1;
	json_object_put(resp);
	if (sub)
		cl->subscribed = 1;
}

static void
ctl_rx_done(struct ev_op *op, int res, uint32_t flags)
{
	struct ctl_client *cl = container_of(op, struct ctl_client, rx_op);
	char *nl;

	(void)flags;
	if (res <= 0 || cl->closing) {
		ctl_client_free(cl);
		return;
	}
	cl->len += (uint32_t)res;
	while ((nl = memchr(cl->buf, '\n', cl->len))) {
		size_t used = (size_t)(nl - cl->buf) + 1;
		*nl = '\0';
		if (!cl->subscribed)
			ctl_handle_line(cl, cl->buf);
		memmove(cl->buf, cl->buf + used, cl->len - used);
		cl->len -= (uint32_t)used;
	}
	if (cl->len == sizeof(cl->buf)) {
		LOG_WARN("control: request longer than %u bytes: closing", CTL_LINE_MAX);
		cl->closing = 1;
	}
	if (cl->closing) {
		ctl_client_free(cl);
		return;
	}
	ctl_arm_recv(cl);
}

static void
ctl_arm_recv(struct ctl_client *cl)
{
	struct io_uring_sqe *sqe = ev_get_sqe(cl->ctl->loop);

	io_uring_prep_recv(sqe, cl->fd, cl->buf + cl->len, sizeof(cl->buf) - cl->len, 0);
	ev_sqe_set_op(sqe, &cl->rx_op);
}

static void
ctl_accept_done(struct ev_op *op, int res, uint32_t flags)
{
	struct ctl *c = container_of(op, struct ctl, accept_op);
	struct ctl_client *cl;
	struct timeval tv = { .tv_sec = 2 };

	(void)flags;
	if (res >= 0) {
		cl = calloc(1, sizeof(*cl));
		if (!cl) {
			close(res);
		} else {
			/* A client that stops reading must not stall the daemon. */
			setsockopt(res, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
			cl->ctl = c;
			cl->fd = res;
			cl->rx_op.cb = ctl_rx_done;
			cl->next = c->clients;
			c->clients = cl;
			ctl_arm_recv(cl);
		}
	} else if (res != -EINTR && res != -EAGAIN && res != -ECONNABORTED) {
		LOG_WARN("control: accept failed: %s", strerror(-res));
	}
	ctl_arm_accept(c);
}

static void
ctl_arm_accept(struct ctl *c)
{
	struct io_uring_sqe *sqe = ev_get_sqe(c->loop);

	io_uring_prep_accept(sqe, c->fd, NULL, NULL, SOCK_CLOEXEC);
	ev_sqe_set_op(sqe, &c->accept_op);
}

static int
ctl_mkdirs(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *p;

	snprintf(dir, sizeof(dir), "%s", path);
	p = strrchr(dir, '/');
	if (!p || p == dir)
		return 0;
	*p = '\0';
	for (p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* The pid that wrote the lock file, or 0. */
static pid_t
ctl_lock_holder(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return (pid_t)strtol(buf, NULL, 10);
}

/* 1 when a SIGKILL is pending for pid's process: not yet acted on. */
static int
ctl_holder_killed(pid_t pid)
{
	char path[64], line[128];
	int killed = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (!killed && fgets(line, sizeof(line), f))
		if (strncmp(line, "ShdPnd:", 7) == 0 || strncmp(line, "SigPnd:", 7) == 0)
			killed = !!(strtoull(line + 7, NULL, 16) & (1ull << (SIGKILL - 1)));
	fclose(f);
	return killed;
}

/* 1 when pid no longer runs or is exiting (SIGKILL pending or delivered,
 * files still being closed): its lock is about to go.  0 while it lives. */
static int
ctl_holder_dying(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long flags = 0;
	FILE *f;
	int n = 0;

	if (pid <= 0)
		return 0;	/* unknown: the holder wrote nothing yet, so it lives */
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return 1;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	/* After "(comm)": state, ppid, pgrp, session, tty, tpgid, flags. */
	if (!p || !(p = strrchr(buf, ')')))
		return 0;
	if (p[1] && (p[2] == 'Z' || p[2] == 'X'))
		return 1;
	for (p++; *p && n < 7; p++)
		if (*p == ' ' && ++n == 7)
			flags = strtoul(p + 1, NULL, 10);
	return (flags & CTL_PF_EXITING) || ctl_holder_killed(pid);
}

/* One try; while the holder is dying, waits and tries again. */
static int
ctl_lock_take(int fd)
{
	uint64_t end = util_now_ms() + CTL_LOCK_WAIT_MS;

	for (;;) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK)
			return -errno;
		if (!ctl_holder_dying(ctl_lock_holder(fd)) || util_now_ms() >= end)
			return -EADDRINUSE;
		usleep(10 * 1000);
	}
}

int
ctl_lock_pid(int fd)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());

	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n)
		return -errno;
	return 0;
}

int
ctl_lock(const char *path, char *err, size_t errlen)
{
	char lpath[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
	int fd, rc;

	snprintf(lpath, sizeof(lpath), "%s.lock", path);
	rc = ctl_mkdirs(path);
	if (rc) {
		snprintf(err, errlen, "cannot create the directory of %s: %s", path, strerror(-rc));
		return rc;
	}
	fd = open(lpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot open %s: %s", lpath, strerror(errno));
		return rc;
	}
	rc = ctl_lock_take(fd);
	if (!rc)
		rc = ctl_lock_pid(fd);
	if (rc) {
		if (rc == -EADDRINUSE)
			snprintf(err, errlen, "another mirrord is already running on %s", path);
		else
			snprintf(err, errlen, "cannot lock %s: %s", lpath, strerror(-rc));
		close(fd);
		return rc;
	}
	return fd;
}

int
ctl_probe(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, rc;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : -errno;
	close(fd);
	return rc;
}

int
ctl_open(struct ctl **out, const char *path, struct ev_loop *loop, ctl_handler_t fn, void *arg,
	 char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ctl *c;
	mode_t old;
	int fd, rc;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "control socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	rc = ctl_mkdirs(path);
	if (rc) {
		snprintf(err, errlen, "cannot create the directory of %s: %s", path, strerror(-rc));
		return rc;
	}
	/* The caller holds ctl_lock(): whatever is at path was left by a
	 * daemon that is gone, even if it still accepts (a killed daemon's
	 * io_uring may hold its listener a while after the process died). */
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	old = umask(0177);	/* the socket is born 0600 */
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0 || chmod(path, 0600) < 0 || listen(fd, 16) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
		close(fd);
		return rc;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	c->loop = loop;
	c->fd = fd;
	snprintf(c->path, sizeof(c->path), "%s", path);
	c->fn = fn;
	c->arg = arg;
	c->accept_op.cb = ctl_accept_done;
	ctl_arm_accept(c);
	*out = c;
	return 0;
}

void
ctl_broadcast(struct ctl *c, json_object *event)
{
	struct ctl_client *cl, *next;

	if (!c)
		return;
	for (cl = c->clients; cl; cl = next) {
		next = cl->next;
		/* A subscriber too slow to take one line loses its stream; its
		 * pending recv then completes and frees it. */
		if (cl->subscribed && ctl_send_line(cl->fd, event, MSG_DONTWAIT) < 0) {
			cl->closing = 1;
			shutdown(cl->fd, SHUT_RDWR);
		}
	}
}

void
ctl_close(struct ctl *c)
{
	struct ctl_client *cl, *next;

	if (!c)
		return;
	for (cl = c->clients; cl; cl = next) {
		next = cl->next;
		close(cl->fd);
		free(cl);
	}
	close(c->fd);
	unlink(c->path);
	free(c);
}
