#include "daemon/hooks.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/peer.h"
#include "daemon/resource.h"
#include "lib/log.h"
#include "lib/util.h"

/* More pending hooks than this: events are merged (hook_compact), so a
 * flapping link cannot queue a hook per flap.  Below it every event runs. */
#define HOOK_MERGE_AT  16
/* Pending hooks at most.  Merging already keeps the queue far below this;
 * the cap is the guard should that ever fail. */
#define HOOK_QUEUE_MAX 64

extern char **environ;

static const char *const hook_names[HOOK_N] = {
	"role-change", "connect", "disconnect", "resync-start", "resync-end", "split-brain",
	"fence-peer",
};

/* Hooks run one at a time, in the order of their events, on one worker
 * thread: a script that reacts to "disconnect" must not run after the
 * one for the "resync-end" that followed it (a cluster hook would leave a
 * ban in place).  hook_running counts the queued and running ones, so
 * that shutdown can wait for them.  Under a flood of events the queue is
 * compacted (hook_compact), keeping the order of what remains. */
static pthread_mutex_t hook_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hook_cond = PTHREAD_COND_INITIALIZER;
static unsigned hook_running;
static struct hook_job *hook_head, **hook_tail = &hook_head;
static int hook_worker_up;
static unsigned hook_held;      /* hook_hold() calls not yet released */
static unsigned hook_queued;    /* jobs in the queue, not yet started */
static unsigned long hook_merged; /* events merged into a later one, in all */
static int hook_draining;       /* shutting down: merge whatever is pending */

struct hook_job {
	struct hook_job *next;
	struct res *res;
	enum hook_event ev;
	struct rsm_state state;
	char path[CONF_PATH_MAX];
};

const char *
hook_event_name(enum hook_event ev)
{
	return hook_names[ev];
}

static const char *
hook_path(const struct conf *c, enum hook_event ev)
{
	switch (ev) {
	case HOOK_ROLE_CHANGE:  return c->handler_role_change;
	case HOOK_CONNECT:      return c->handler_connect;
	case HOOK_DISCONNECT:   return c->handler_disconnect;
	case HOOK_RESYNC_START: return c->handler_resync_start;
	case HOOK_RESYNC_END:   return c->handler_resync_end;
	case HOOK_SPLIT_BRAIN:  return c->handler_split_brain;
	case HOOK_FENCE_PEER:   return c->handler_fence_peer;
	default:                return "";
	}
}

/* Runs path with the event in its environment; waits at most timeout_s. */
static int
hook_exec(struct res *r, const char *path, enum hook_event ev, const struct rsm_state *s,
	  int timeout_s)
{
	const struct conf *c = &r->conf;
	char vars[10][CONF_PATH_MAX + 32];
	char *envp[256], *argv[] = { (char *)path, (char *)hook_names[ev], NULL };
	size_t n = 0;
	uint64_t end;
	pid_t pid;
	int rc, status;

	snprintf(vars[0], sizeof(vars[0]), "BLKMIRROR_RESOURCE=%s", c->name);
	snprintf(vars[1], sizeof(vars[1]), "BLKMIRROR_NODE=%s", c->nodes[c->self].name);
	snprintf(vars[2], sizeof(vars[2]), "BLKMIRROR_PEER=%s",
		 c->peer >= 0 ? c->nodes[c->peer].name : "");
	snprintf(vars[3], sizeof(vars[3]), "BLKMIRROR_EVENT=%s", hook_names[ev]);
	snprintf(vars[4], sizeof(vars[4]), "BLKMIRROR_ROLE=%s", rsm_role_name(s->role));
	snprintf(vars[5], sizeof(vars[5]), "BLKMIRROR_DISK=%s", rsm_disk_name(s->disk));
	snprintf(vars[6], sizeof(vars[6]), "BLKMIRROR_CONNECTION=%s", rsm_conn_name(s->conn));
	snprintf(vars[7], sizeof(vars[7]), "BLKMIRROR_REPLICATION=%s", rsm_repl_name(s->repl));
	snprintf(vars[8], sizeof(vars[8]), "BLKMIRROR_CONFIG=%s", c->file);
	/* The control thread may be replacing it (promote, demote). */
	pthread_mutex_lock(&r->lock);
	snprintf(vars[9], sizeof(vars[9]), "BLKMIRROR_DEVICE=%s", r->device);
	pthread_mutex_unlock(&r->lock);
	for (size_t i = 0; i < ARRAY_SIZE(vars); i++)
		envp[n++] = vars[i];
	/* The daemon's own environment (PATH...) follows, bounded. */
	for (char **e = environ; *e && n < ARRAY_SIZE(envp) - 1; e++)
		if (strncmp(*e, "BLKMIRROR_", 10) != 0)
			envp[n++] = *e;
	envp[n] = NULL;
	{
		/* mirrord blocks the signals it reads with signalfd: the hook
		 * gets a clean mask and default dispositions.  Its own process
		 * group (pgid = its pid), so that a timeout kills whatever it
		 * started too ("sleep 1000 &" would outlive it otherwise). */
		posix_spawnattr_t attr;
		sigset_t none, all;

		sigemptyset(&none);
		sigfillset(&all);
		posix_spawnattr_init(&attr);
		posix_spawnattr_setsigmask(&attr, &none);
		posix_spawnattr_setsigdefault(&attr, &all);
		posix_spawnattr_setpgroup(&attr, 0);
		posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
					 POSIX_SPAWN_SETPGROUP);
		rc = posix_spawn(&pid, path, NULL, &attr, argv, envp);
		posix_spawnattr_destroy(&attr);
	}
	if (rc) {
		LOG_ERROR("hook %s: cannot run %s: %s", hook_names[ev], path, strerror(rc));
		return -rc;
	}
	end = util_now_ms() + (uint64_t)timeout_s * 1000;
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);

		if (w == pid)
			break;
		if (w < 0 && errno != EINTR)
			return -errno;
		if (util_now_ms() >= end) {
			LOG_ERROR("hook %s: %s still running after %d s: killed", hook_names[ev], path,
				  timeout_s);
			kill(-pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -ETIMEDOUT;
		}
		usleep(20 * 1000);
	}
	rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	if (rc)
		LOG_WARN("hook %s: %s exited with status %d", hook_names[ev], path, rc);
	else
		LOG_INFO("hook %s: %s succeeded", hook_names[ev], path);
	return rc;
}

static void *
hook_worker(void *arg)
{
	struct hook_job *j;

	(void)arg;
	pthread_mutex_lock(&hook_lock);
	for (;;) {
		while (!hook_head || hook_held)
			pthread_cond_wait(&hook_cond, &hook_lock);
		j = hook_head;
		hook_head = j->next;
		if (!hook_head)
			hook_tail = &hook_head;
		hook_queued--;
		pthread_mutex_unlock(&hook_lock);
		hook_exec(j->res, j->path, j->ev, &j->state, (int)j->res->conf.handler_timeout_s);
		free(j);
		pthread_mutex_lock(&hook_lock);
		hook_running--;
		pthread_cond_broadcast(&hook_cond);
	}
	return NULL;
}

/* Whether the pending job old is made redundant by a new event of kind
 * ev with state s.  An event carries the state in its environment, so the
 * later one of a kind says all the earlier one would: a flapping link
 * must not queue a hook per flap.  A split brain is merged only into one
 * with the same state, so every distinct one is reported; fence-peer
 * never is (it runs synchronously, not from the queue). */
static int
hook_supersedes(const struct hook_job *old, struct res *r, enum hook_event ev,
		const struct rsm_state *s)
{
	if (old->res != r || old->ev != ev || ev == HOOK_FENCE_PEER)
		return 0;
	if (ev != HOOK_SPLIT_BRAIN)
		return 1;
	return old->state.role == s->role && old->state.disk == s->disk &&
	       old->state.conn == s->conn && old->state.repl == s->repl;
}

static int
hook_superseded(const struct hook_job *j)
{
	for (const struct hook_job *k = j->next; k; k = k->next)
		if (hook_supersedes(j, k->res, k->ev, &k->state))
			return 1;
	return 0;
}

/* Drops every pending job that a later pending one supersedes: the
 * survivors keep the order of their events, each merged one runs where
 * its latest event puts it.  hook_lock held. */
static void
hook_compact(void)
{
	struct hook_job **pp = &hook_head, *j;
	unsigned n = 0;

	while ((j = *pp)) {
		if (hook_superseded(j)) {
			*pp = j->next;
			free(j);
			n++;
		} else {
			pp = &j->next;
		}
	}
	hook_tail = pp;
	hook_queued -= n;
	hook_running -= n;
	hook_merged += n;
	if (n)
		LOG_DEBUG("hooks: %u pending events merged into later ones of their kind "
			  "(%lu merged in all, %u queued)", n, hook_merged, hook_queued);
}

static void
hook_enqueue(struct hook_job *j)
{
	*hook_tail = j;
	hook_tail = &j->next;
	hook_queued++;
	hook_running++;
	if (hook_queued > HOOK_MERGE_AT || hook_draining)
		hook_compact();
}

static void
hook_fire(struct res *r, enum hook_event ev, const struct rsm_state *s)
{
	const char *path = hook_path(&r->conf, ev);
	struct hook_job *j;
	pthread_attr_t attr;
	pthread_t t;
	int rc = 0;

	if (!path[0])
		return;
	j = calloc(1, sizeof(*j));
	if (!j) {
		LOG_ERROR("hook %s: out of memory: not run", hook_names[ev]);
		return;
	}
	j->res = r;
	j->ev = ev;
	j->state = *s;
	snprintf(j->path, sizeof(j->path), "%s", path);
	pthread_mutex_lock(&hook_lock);
	if (!hook_worker_up) {
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		rc = pthread_create(&t, &attr, hook_worker, NULL);
		pthread_attr_destroy(&attr);
		hook_worker_up = rc == 0;
	}
	if (!rc && hook_queued >= HOOK_QUEUE_MAX && ev != HOOK_SPLIT_BRAIN)
		rc = ENOBUFS;
	if (rc) {
		pthread_mutex_unlock(&hook_lock);
		LOG_ERROR("hook %s: %s: not run", hook_names[ev], rc == ENOBUFS ?
			  "too many hooks pending" : strerror(rc));
		free(j);
		return;
	}
	hook_enqueue(j);
	pthread_cond_broadcast(&hook_cond);
	pthread_mutex_unlock(&hook_lock);
}

void
hook_hold(void)
{
	pthread_mutex_lock(&hook_lock);
	hook_held++;
	pthread_mutex_unlock(&hook_lock);
}

void
hook_release(void)
{
	pthread_mutex_lock(&hook_lock);
	assert(hook_held > 0);
	hook_held--;
	pthread_cond_broadcast(&hook_cond);
	pthread_mutex_unlock(&hook_lock);
}

static int
hook_syncing(enum rsm_repl r)
{
	return r == RSM_R_SYNCSOURCE || r == RSM_R_SYNCTARGET;
}

void
hook_transition(struct res *r, const struct rsm_state *prev, const struct rsm_state *next)
{
	if (prev->role != next->role)
		hook_fire(r, HOOK_ROLE_CHANGE, next);
	if (prev->conn != RSM_C_CONNECTED && next->conn == RSM_C_CONNECTED)
		hook_fire(r, HOOK_CONNECT, next);
	if (prev->conn == RSM_C_CONNECTED && next->conn != RSM_C_CONNECTED)
		hook_fire(r, HOOK_DISCONNECT, next);
	if (prev->conn != RSM_C_SPLITBRAIN && next->conn == RSM_C_SPLITBRAIN)
		hook_fire(r, HOOK_SPLIT_BRAIN, next);
	if (!hook_syncing(prev->repl) && hook_syncing(next->repl))
		hook_fire(r, HOOK_RESYNC_START, next);
	if (hook_syncing(prev->repl) && next->repl == RSM_R_ESTABLISHED)
		hook_fire(r, HOOK_RESYNC_END, next);
}

int
hook_run_sync(struct res *r, enum hook_event ev, int timeout_s)
{
	const char *path = hook_path(&r->conf, ev);
	struct rsm_state s;

	if (!path[0])
		return -ENOENT;
	rsm_get(r, &s);
	return hook_exec(r, path, ev, &s, timeout_s);
}

void
hook_drain(struct res *r)
{
	uint64_t end = util_now_ms() + (r->conf.handler_timeout_s + 5) * 1000ull;

	pthread_mutex_lock(&hook_lock);
	/* Only the latest state of each kind still matters: stop in time. */
	hook_draining = 1;
	hook_compact();
	while (hook_running && util_now_ms() < end) {
		pthread_mutex_unlock(&hook_lock);
		usleep(50 * 1000);
		pthread_mutex_lock(&hook_lock);
	}
	pthread_mutex_unlock(&hook_lock);
}
