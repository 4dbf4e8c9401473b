#include "daemon/conflict.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "lib/log.h"

/* Requests in flight are few (bounded by the queues' depths); a list scan
 * costs less than keeping a tree balanced. */
struct cf {
	pthread_mutex_t lock;
	struct req *active;   /* registered and running */
	struct req *waiting;  /* parked, in arrival order */
};

int
cf_new(struct cf **out)
{
	struct cf *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	*out = c;
	return 0;
}

void
cf_free(struct cf *c)
{
	if (!c)
		return;
	VERIFY(!c->active && !c->waiting);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static int
cf_overlap(const struct req *a, const struct req *b)
{
	return a->off < b->off + b->len && b->off < a->off + a->len;
}

/* Overlaps an active request, or one that arrived earlier and still waits
 * (so a later writer cannot overtake an earlier waiting one). */
static int
cf_blocked(struct cf *c, const struct req *r, const struct req *stop)
{
	for (const struct req *a = c->active; a; a = a->cf_next)
		if (cf_overlap(a, r))
			return 1;
	for (const struct req *w = c->waiting; w && w != stop; w = w->cf_next)
		if (cf_overlap(w, r))
			return 1;
	return 0;
}

int
cf_begin(struct cf *c, struct req *r)
{
	struct req **pp;
	int blocked;

	pthread_mutex_lock(&c->lock);
	blocked = cf_blocked(c, r, NULL);
	if (blocked) {
		for (pp = &c->waiting; *pp; pp = &(*pp)->cf_next)
			;
		r->cf_next = NULL;
		*pp = r;
	} else {
		r->cf_next = c->active;
		c->active = r;
	}
	pthread_mutex_unlock(&c->lock);
	return blocked;
}

void
cf_end(struct cf *c, struct req *r)
{
	struct req **pp, *w, *wake = NULL, **wtail = &wake;

	pthread_mutex_lock(&c->lock);
	for (pp = &c->active; *pp && *pp != r; pp = &(*pp)->cf_next)
		;
	/* Not found: the active list lost it, and with it the ordering of
	 * every write that overlaps it.  Never go on from there. */
	VERIFY(*pp == r);
	*pp = r->cf_next;
	/* Admit, in order, every waiter no longer blocked by an active request
	 * or by an earlier waiter. */
	pp = &c->waiting;
	while ((w = *pp)) {
		if (!cf_blocked(c, w, w)) {
			*pp = w->cf_next;
			w->cf_next = c->active;
			c->active = w;
			*wtail = w;
			wtail = &w->wait.next_ready;
			w->wait.next_ready = NULL;
		} else {
			pp = &w->cf_next;
		}
	}
	pthread_mutex_unlock(&c->lock);
	for (w = wake; w; ) {
		struct req *next = w->wait.next_ready;
		w->wait.res = 0;
		ev_post(w->wait.loop, &w->wait.msg);
		w = next;
	}
}
