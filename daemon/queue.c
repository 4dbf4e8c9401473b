#include "daemon/queue.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/link.h"
#include "daemon/resync.h"
#include "lib/log.h"
#include "lib/util.h"
#include "ublk/nbd_srv.h"

struct res_conn {
	struct res_queue *q;
	struct nbds_conn *c;
	int read_only, export_conn;
	struct res_conn *next;
};

struct adopt_msg {
	struct ev_msg msg;
	struct res_queue *q;
	int fd;
	struct queue_nbd o;
	char name[96];
};

/* Gives back what the caller of queue_adopt_nbd counted. */
static void
queue_uncount(struct res *r, int read_only, int export_conn)
{
	if (!read_only)
		atomic_fetch_sub(&r->writers, 1);
	if (export_conn)
		atomic_fetch_sub(&r->export_conns, 1);
}

static void
queue_conn_closed(struct nbds_conn *c, void *arg)
{
	struct res_conn *rc = arg, **pp;
	struct res_queue *q = rc->q;

	(void)c;
	for (pp = &q->conns; *pp; pp = &(*pp)->next) {
		if (*pp == rc) {
			*pp = rc->next;
			break;
		}
	}
	q->nconns--;
	queue_uncount(q->res, rc->read_only, rc->export_conn);
	free(rc);
	if (q->stopping && q->nconns == 0)
		ev_stop(q->loop);
}

static void
queue_adopt_run(struct ev_msg *m)
{
	struct adopt_msg *a = container_of(m, struct adopt_msg, msg);
	struct res_queue *q = a->q;
	struct res *r = q->res;
	struct nbds_params p = {
		.fd = a->fd,
		.loop = q->loop,
		.sink = wp_sink(q->wp),
		.size = r->size,
		.max_payload = r->conf.max_io_size,
		.max_request = a->o.max_request,
		.depth = r->conf.queue_depth,
		.structured = a->o.structured,
		.read_only = a->o.read_only,
		.name = a->name,
		.closed = queue_conn_closed,
	};
	struct res_conn *rc = calloc(1, sizeof(*rc));

	if (!rc || q->stopping) {
		close(a->fd);
		queue_uncount(r, a->o.read_only, a->o.export_conn);
		free(rc);
		free(a);
		return;
	}
	rc->q = q;
	rc->read_only = a->o.read_only;
	rc->export_conn = a->o.export_conn;
	p.arg = rc;
	/* Listed before it starts: it may close (and unlist) at once. */
	rc->next = q->conns;
	q->conns = rc;
	q->nconns++;
	LOG_INFO("nbd %s: connected on queue %u (%s)", a->name, q->index,
		 a->o.read_only ? "read-only" : "read-write");
	if (nbds_conn_new(&rc->c, &p) < 0) {
		LOG_WARN("nbd %s: out of memory for the connection", a->name);
		queue_conn_closed(NULL, rc);
	}
	free(a);
}

void
queue_adopt_nbd(struct res *r, int fd, const struct queue_nbd *o, const char *name)
{
	struct adopt_msg *a = calloc(1, sizeof(*a));
	unsigned i = atomic_fetch_add(&r->next_queue, 1) % r->nqueues;

	if (!a) {
		close(fd);
		queue_uncount(r, o->read_only, o->export_conn);
		return;
	}
	a->msg.fn = queue_adopt_run;
	a->q = &r->queues[i];
	a->fd = fd;
	a->o = *o;
	snprintf(a->name, sizeof(a->name), "%s", name);
	ev_post(a->q->loop, &a->msg);
}

static void
queue_stop_run(struct ev_msg *m)
{
	struct res_queue *q = container_of(m, struct res_queue, stop_msg);
	struct res_conn *rc, *next;

	q->stopping = 1;
	if (q->link)
		lk_fail(q->link, NULL);
	for (rc = q->conns; rc; rc = next) {
		next = rc->next;	/* shutdown may free rc */
		nbds_conn_shutdown(rc->c);
	}
	if (q->nconns == 0)
		ev_stop(q->loop);
}

static void *
queue_main(void *arg)
{
	struct res_queue *q = arg;
	struct res *r = q->res;
	char name[16];
	int rc;

	snprintf(name, sizeof(name), "mirrord-q%u", q->index);
	pthread_setname_np(pthread_self(), name);
	/* ublk's commands are 128-byte SQEs on the same ring. */
	rc = ev_new(&q->loop, 256, r->conf.frontend == CONF_FE_UBLK ? EV_SQE128 : 0);
	if (!rc)
		rc = wp_queue_new(&q->wp, q);
	if (!rc && q->index == 0)
		rc = resync_init(q);
	pthread_mutex_lock(&r->lock);
	q->ready = rc ? rc : 1;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	if (rc)
		return NULL;
	rc = ev_run(q->loop);
	if (rc)
		LOG_ERROR("queue %u: event loop failed: %s", q->index, strerror(-rc));
	return NULL;
}

int
queue_start_all(struct res *r)
{
	int rc = 0;

	for (unsigned i = 0; i < r->nqueues; i++) {
		struct res_queue *q = &r->queues[i];

		q->res = r;
		q->index = i;
		q->stop_msg.fn = queue_stop_run;
		rc = -pthread_create(&q->thread, NULL, queue_main, q);
		if (rc)
			return rc;
		pthread_mutex_lock(&r->lock);
		while (!q->ready)
			pthread_cond_wait(&r->cond, &r->lock);
		rc = q->ready < 0 ? q->ready : 0;
		pthread_mutex_unlock(&r->lock);
		if (rc) {
			pthread_join(q->thread, NULL);
			q->thread = 0;
			return rc;
		}
	}
	return 0;
}

void
queue_stop_all(struct res *r)
{
	for (unsigned i = 0; i < r->nqueues; i++) {
		struct res_queue *q = &r->queues[i];

		if (!q->thread)
			continue;
		ev_post(q->loop, &q->stop_msg);
		pthread_join(q->thread, NULL);
		q->thread = 0;
		resync_fini(q);
		wp_queue_free(q->wp);
		ev_free(q->loop);
		q->wp = NULL;
		q->loop = NULL;
	}
}
