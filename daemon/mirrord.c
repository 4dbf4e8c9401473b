/* mirrord: the daemon, one process per resource.  See mirrord(8).
 * Start-up checks everything (configuration, disk, metadata) before it
 * writes a byte; then it runs a control thread (control socket, front-end
 * listener, signals) and one data-plane thread per queue. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/commands.h"
#include "daemon/conflict.h"
#include "daemon/peer.h"
#include "daemon/export.h"
#include "daemon/frontend.h"
#include "daemon/hooks.h"
#include "daemon/queue.h"
#include "daemon/resource.h"
#include "daemon/resume.h"
#include "lib/fault.h"
#include "lib/log.h"
#include "lib/util.h"

#define EXIT_CONFIG  1
#define EXIT_RUNTIME 2

struct sigwatch {
	struct ev_op op;
	int fd;
	struct signalfd_siginfo si;
	struct ev_loop *loop;
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: mirrord -c FILE [--node NAME] [--foreground] "
		   "[--log-level debug|info|warn|error]\n"
		   "       mirrord --check [--dump] -c FILE [--node NAME]\n");
}

static void
sig_done(struct ev_op *op, int res, uint32_t flags)
{
	struct sigwatch *w = container_of(op, struct sigwatch, op);

	(void)flags;
	if (res == (int)sizeof(w->si))
		LOG_INFO("signal %u: shutting down", w->si.ssi_signo);
	ev_stop(w->loop);
}

/* Opens the metadata device: the disk itself (internal) or the meta-disk
 * file.  O_DIRECT when possible so metadata writes bypass the page cache. */
static int
open_md(const struct conf *c, uint64_t *size, char *err, size_t len)
{
	const char *path = c->meta_internal ? c->disk : c->meta_disk;
	struct stat st;
	int fd;

	fd = open(path, O_RDWR | O_CLOEXEC | O_DIRECT);
	if (fd < 0)
		fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, len, "cannot open meta-disk %s: %s", path, strerror(errno));
		return -errno;
	}
	if (fstat(fd, &st) < 0) {
		close(fd);
		return -errno;
	}
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(fd, 0, SEEK_END);
		*size = end < 0 ? 0 : (uint64_t)end;
	} else {
		*size = (uint64_t)st.st_size;
	}
	return fd;
}

/* The dirty map's metadata write failed: always a detach. */
static void
res_md_error(void *arg, int err)
{
	rsm_meta_error(arg, err);
}

static void
initial_state(struct res *r, const struct meta_sb *sb)
{
	r->state.role = RSM_SECONDARY;
	r->state.conn = RSM_C_STANDALONE;
	r->state.repl = RSM_R_OFF;
	if ((sb->flags & META_F_JUST_CREATED) || !(sb->flags & META_F_CONSISTENT))
		r->state.disk = RSM_D_INCONSISTENT;
	else if (sb->flags & META_F_UPTODATE)
		r->state.disk = RSM_D_UPTODATE;
	else
		r->state.disk = RSM_D_OUTDATED;
}

/* Without --foreground: fork once set-up has been checked; the parent
 * exits with the child's start-up result. */
static int
daemonize(int *notify_fd)
{
	int p[2];
	pid_t pid;
	char c = 1;

	if (pipe(p) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		close(p[1]);
		if (read(p[0], &c, 1) != 1)
			c = EXIT_RUNTIME;
		_exit(c);
	}
	close(p[0]);
	setsid();
	*notify_fd = p[1];
	return 0;
}

static void
notify_parent(int fd, char code)
{
	if (fd < 0)
		return;
	if (write(fd, &code, 1) < 0) {
		/* the parent is gone: nothing to tell */
	}
	close(fd);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "node", required_argument, NULL, 'n' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "check", no_argument, NULL, 'C' },
		{ "dump", no_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct res res;
	struct res *r = &res;
	const char *file = NULL, *node = NULL;
	int foreground = 0, check = 0, dump = 0, notify_fd = -1, lock_fd, opt, rc, code = 0, held = 0;
	enum log_level lvl = LOG_LVL_INFO;
	char err[512], ident[96];
	struct meta_sb sb;
	uint64_t md_size = 0;
	struct sigwatch sw = { 0 };
	sigset_t mask;

	while ((opt = getopt_long(argc, argv, "c:n:fl:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': file = optarg; break;
		case 'n': node = optarg; break;
		case 'f': foreground = 1; break;
		case 'C': check = 1; break;
		case 'D': dump = 1; break;
		case 'l':
			if (log_level_parse(optarg, &lvl)) {
				fprintf(stderr, "mirrord: --log-level '%s': expected debug, info, "
					"warn or error\n", optarg);
				return EXIT_CONFIG;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_CONFIG;
		}
	}
	if (!file || optind != argc) {
		usage(stderr);
		return EXIT_CONFIG;
	}
	if (conf_load(file, node, &r->conf, err, sizeof(err))) {
		fprintf(stderr, "mirrord: %s\n", err);
		return EXIT_CONFIG;
	}
	if (check) {
		if (dump)
			conf_dump(&r->conf, stdout);
		return 0;
	}
	/* The files the configuration names, before any disk is touched. */
	if (peer_check_config(&r->conf, err, sizeof(err))) {
		fprintf(stderr, "mirrord: %s\n", err);
		return EXIT_CONFIG;
	}
	/* Refused before the disk is touched. */
	if (!fe_for(r)) {
		fprintf(stderr, "mirrord: %s: frontend = %s is not available in this build "
			"(use frontend = export)\n", file, conf_frontend_name(r->conf.frontend));
		return EXIT_CONFIG;
	}
	/* Another daemon of this resource: refuse before touching anything.
	 * The lock stays held (and is inherited by the daemonized child)
	 * until this process exits. */
	lock_fd = ctl_lock(r->conf.control, err, sizeof(err));
	if (lock_fd < 0) {
		fprintf(stderr, "mirrord: %s\n", err);
		return EXIT_CONFIG;
	}
	log_set_level(lvl);
	snprintf(ident, sizeof(ident), "mirrord[%s]", r->conf.name);
	log_set_ident(ident);
	signal(SIGPIPE, SIG_IGN);
	if (fault_init(err, sizeof(err))) {
		LOG_ERROR("%s", err);
		return EXIT_CONFIG;
	}

	/* Everything about the disk is checked before anything is written. */
	rc = disk_open(r->conf.disk, r->conf.direct_io, &r->disk, err, sizeof(err));
	if (rc) {
		LOG_ERROR("%s", err);
		return EXIT_CONFIG;
	}
	if (flock(disk_fd(r->disk), LOCK_EX | LOCK_NB) < 0) {
		LOG_ERROR("disk %s is in use by another process (%s)", r->conf.disk,
			  strerror(errno));
		return EXIT_CONFIG;
	}
	r->md_fd = open_md(&r->conf, &md_size, err, sizeof(err));
	if (r->md_fd < 0) {
		LOG_ERROR("%s", err);
		return EXIT_CONFIG;
	}
	r->md_size = md_size;
	rc = meta_read_sb(r->md_fd, md_size, r->conf.meta_internal, disk_size(r->disk), &sb, err,
			  sizeof(err));
	if (rc) {
		LOG_ERROR("%s: %s", r->conf.disk, err);
		return EXIT_CONFIG;
	}
	r->size = sb.data_size;
	r->export_fd = -1;
	r->nqueues = r->conf.queues;
	pthread_mutex_init(&r->role_lock, NULL);
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	LOG_INFO("disk %s: %llu bytes of data, %s I/O, bitmap granularity %u", r->conf.disk,
		 (unsigned long long)r->size, disk_is_direct(r->disk) ? "direct" : "buffered",
		 sb.granularity);

	if (!foreground && daemonize(&notify_fd) < 0) {
		LOG_ERROR("cannot fork: %s", strerror(errno));
		return EXIT_RUNTIME;
	}
	/* The lock file names the daemon, not the parent that just exited. */
	if (!foreground)
		ctl_lock_pid(lock_fd);
	rc = dm_open(&r->dm, r->md_fd, &sb, r->conf.al_extents, err, sizeof(err));
	if (rc) {
		LOG_ERROR("%s: %s", r->conf.disk, err);
		notify_parent(notify_fd, EXIT_RUNTIME);
		return EXIT_RUNTIME;
	}
	dm_set_error_cb(r->dm, res_md_error, r);
	if (sb.flags & META_F_PRIMARY) {
		/* It was primary and did not stop cleanly. */
		LOG_WARN("this node was primary and stopped uncleanly (crashed primary)");
		sb.flags = (sb.flags & ~META_F_PRIMARY) | META_F_CRASHED_PRIMARY;
		if (dm_sb_write(r->dm, &sb)) {
			notify_parent(notify_fd, EXIT_RUNTIME);
			return EXIT_RUNTIME;
		}
	}
	initial_state(r, &sb);

	/* Signals arrive on the control loop only. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	sw.fd = signalfd(-1, &mask, SFD_CLOEXEC);
	rc = ev_new(&r->ctl_loop, 64, 0);
	if (rc || sw.fd < 0) {
		LOG_ERROR("cannot set up the control loop: %s", strerror(rc ? -rc : errno));
		code = EXIT_RUNTIME;
		goto out;
	}
	sw.loop = r->ctl_loop;
	sw.op.cb = sig_done;
	{
		struct io_uring_sqe *sqe = ev_get_sqe(r->ctl_loop);
		io_uring_prep_read(sqe, sw.fd, &sw.si, sizeof(sw.si), 0);
		ev_sqe_set_op(sqe, &sw.op);
	}
	rc = cf_new(&r->cf);
	if (!rc)
		rc = dm_start(r->dm);
	if (!rc)
		rc = queue_start_all(r);
	if (rc) {
		LOG_ERROR("cannot start the data plane: %s", strerror(-rc));
		code = EXIT_RUNTIME;
		goto out;
	}
	/* A device held from a crashed primary stays held (this node
	 * secondary) until the peer is heard: resume_start() below. */
	rc = fe_for(r)->open(r, &held, err, sizeof(err));
	if (rc) {
		LOG_ERROR("%s", err);
		code = EXIT_CONFIG;
		goto out;
	}
	rc = ctl_open(&r->ctl, r->conf.control, r->ctl_loop, cmd_handle, r, err, sizeof(err));
	if (rc) {
		LOG_ERROR("%s", err);
		code = EXIT_CONFIG;
		goto out;
	}
	rc = peer_start(r, err, sizeof(err));
	if (rc) {
		LOG_ERROR("%s", err);
		code = EXIT_CONFIG;
		goto out;
	}
	if (held && (rc = resume_start(r)) != 0) {
		LOG_ERROR("cannot decide about the held device: %s", strerror(-rc));
		code = EXIT_RUNTIME;
		goto out;
	}
	{
		struct rsm_state st;

		/* The peer thread runs: the state is read under its lock. */
		rsm_get(r, &st);
		LOG_INFO("ready: role %s, disk %s, device %s", rsm_role_name(st.role),
			 rsm_disk_name(st.disk), r->device);
	}
	notify_parent(notify_fd, 0);
	notify_fd = -1;
	rc = ev_run(r->ctl_loop);
	if (rc)
		code = EXIT_RUNTIME;

out:
	atomic_store(&r->shutting_down, 1);
	resume_stop(r);
	{
		char dev[sizeof(r->device)];

		snprintf(dev, sizeof(dev), "%s", r->device);
		fe_for(r)->close(r);
		if (!r->device[0])
			fe_link_del(r, dev);	/* kept while a device stays */
	}
	peer_stop(r);
	queue_stop_all(r);
	cf_free(r->cf);
	if (r->dm) {
		/* Clean stop: bitmap on disk, activity map empty, not primary. */
		if (dm_stop(r->dm))
			code = EXIT_RUNTIME;
		dm_sb_get(r->dm, &sb);
		if (sb.flags & META_F_PRIMARY) {
			dm_leave_primary(r->dm, &sb);
			if (dm_sb_write(r->dm, &sb))
				code = EXIT_RUNTIME;
		}
		dm_free(r->dm);
	}
	hook_drain(r);
	ctl_close(r->ctl);
	r->ctl = NULL;
	ev_free(r->ctl_loop);
	if (sw.fd >= 0)
		close(sw.fd);
	close(r->md_fd);
	disk_close(r->disk);
	LOG_INFO("stopped (exit %d)", code);
	close(lock_fd);	/* last: the next daemon may start from here on */
	notify_parent(notify_fd, (char)(code ? code : EXIT_RUNTIME));
	return code;
}
