/* resume: see resume.h.
 *
 * Threads: resume_start() and resume_stop() and the verdict's message run
 * on the control thread; the waiter is a thread of its own, woken by every
 * state change (rsm broadcasts r->cond) and every 250 ms.  It posts its
 * verdict to the control loop, which talks to the kernel (the front end's
 * control commands belong to the control thread).  The posted message owns
 * the struct: ev_free() may run it after the loop stopped, and then it
 * only frees it. */
#include "daemon/resume.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/frontend.h"
#include "daemon/peer.h"
#include "daemon/resource.h"
#include "lib/log.h"
#include "lib/util.h"

#define RESUME_POLL_MS 250

struct resume {
	struct res *r;
	pthread_t thread;
	struct ev_msg done;          /* posted to the control loop */
	int stop;                    /* (r->lock) resume_stop() asked */
	int posted;                  /* the waiter posted done (read after join) */
	int cancelled;               /* control thread: done only frees */
	enum resume_verdict verdict; /* set by the waiter before it posts */
	const char *why;
};

enum resume_verdict
resume_decide(const struct rsm_state *s, int peer_known, int peer_primary, const char **why)
{
	if (s->conn == RSM_C_SPLITBRAIN) {
		*why = "split brain with the peer";
		return RESUME_NO;
	}
	if (s->conn != RSM_C_CONNECTED || !peer_known) {
		*why = "no answer from the peer";
		return RESUME_WAIT;
	}
	if (peer_primary) {
		*why = "the peer is primary";
		return RESUME_NO;
	}
	/* The handshake (gen_compare) made this node sync target: the peer
	 * went on without it. */
	if (s->repl == RSM_R_SYNCTARGET || s->repl == RSM_R_BEHIND || s->disk != RSM_D_UPTODATE) {
		*why = "the peer has newer data (this node is sync target)";
		return RESUME_NO;
	}
	*why = "the peer is secondary and this node is sync source or in sync";
	return RESUME_YES;
}

static enum resume_verdict
resume_now(struct res *r, const char **why)
{
	struct rsm_state s;
	int role = 0, disk = 0, known;

	rsm_get(r, &s);
	known = peer_info(r, &role, &disk) == 0;
	return resume_decide(&s, known, role, why);
}

/* Under r->lock: waits for a state change, at most until end. */
static void
resume_sleep_locked(struct res *r, uint64_t end)
{
	uint64_t now = util_now_ms(), ms = MIN(end > now ? end - now : 0, RESUME_POLL_MS);
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&r->cond, &r->lock, &ts);
}

static void *
resume_main(void *arg)
{
	struct resume *p = arg;
	struct res *r = p->r;
	uint64_t end = util_now_ms() + RESUME_WAIT_MS;
	enum resume_verdict v;
	const char *why;
	int stop;

	pthread_setname_np(pthread_self(), "mirrord-resume");
	for (;;) {
		v = resume_now(r, &why);
		if (v != RESUME_WAIT)
			break;
		if (util_now_ms() >= end) {
			v = RESUME_NO;
			why = "no answer from the peer before the wait ended";
			break;
		}
		pthread_mutex_lock(&r->lock);
		if (!p->stop)
			resume_sleep_locked(r, end);
		stop = p->stop;
		pthread_mutex_unlock(&r->lock);
		if (stop)
			return NULL;
	}
	p->verdict = v;
	p->why = why;
	p->posted = 1;
	ev_post(r->ctl_loop, &p->done);
	return NULL;
}

/* Control thread: acts on the verdict, which is checked once more here (the
 * connection may have changed since). */
static void
resume_done(struct ev_msg *m)
{
	struct resume *p = container_of(m, struct resume, done);
	struct res *r = p->r;
	const char *why = p->why;
	char err[512];
	int yes;

	if (p->cancelled) {
		free(p);
		return;
	}
	pthread_join(p->thread, NULL);
	r->resume = NULL;
	yes = p->verdict == RESUME_YES && resume_now(r, &why) == RESUME_YES;
	free(p);
	if (yes)
		LOG_INFO("resume: %s: the held device serves again", why);
	else
		LOG_WARN("resume: %s: not resuming as primary; the held I/O fails", why);
	if (fe_for(r)->resolve(r, yes, err, sizeof(err))) {
		LOG_ERROR("%s", err);
		return;
	}
	if (yes) {
		fe_link_add(r);
		peer_state_changed(r);
	}
}

int
resume_start(struct res *r)
{
	struct resume *p;
	char err[512];
	int rc;

	if (!fe_for(r)->resolve)
		return 0;
	/* No peer thread (no [node] for a peer, or no secret-file): nobody
	 * can answer, and nobody replicates from this node either. */
	if (!r->peer) {
		LOG_INFO("resume: no peer configured: the held device serves again");
		/* A failure leaves the node secondary without the device (its
		 * held I/O failed): a state to run in, not a reason to exit. */
		if (fe_for(r)->resolve(r, 1, err, sizeof(err)))
			LOG_ERROR("%s", err);
		else
			fe_link_add(r);
		return 0;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->r = r;
	p->done.fn = resume_done;
	LOG_INFO("resume: waiting up to %u s for the peer before the held device may serve",
		 RESUME_WAIT_MS / 1000);
	rc = pthread_create(&p->thread, NULL, resume_main, p);
	if (rc) {
		free(p);
		return -rc;
	}
	r->resume = p;
	return 0;
}

void
resume_stop(struct res *r)
{
	struct resume *p = r->resume;

	if (!p)
		return;
	pthread_mutex_lock(&r->lock);
	p->stop = 1;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	pthread_join(p->thread, NULL);
	r->resume = NULL;
	if (p->posted)
		p->cancelled = 1;	/* ev_free() runs done, which frees it */
	else
		free(p);
}
