#include "daemon/rsm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/frontend.h"
#include "daemon/hooks.h"
#include "daemon/link.h"
#include "daemon/peer.h"
#include "daemon/resource.h"
#include "daemon/resume.h"
#include "lib/log.h"
#include "lib/util.h"

/* An event built on any thread, broadcast on the control thread (ctl is
 * not shared). */
struct rsm_evmsg {
	struct ev_msg msg;
	struct res *res;
	json_object *ev;
};

static const char *const role_names[] = { "secondary", "primary" };
static const char *const disk_names[] = { "uptodate", "inconsistent", "outdated", "diskless",
					   "failed" };
static const char *const conn_names[] = { "standalone", "connecting", "connected",
					   "splitbrain" };
static const char *const repl_names[] = { "off", "established", "syncsource", "synctarget",
					   "verifying", "ahead", "behind" };

const char *
rsm_role_name(enum rsm_role r)
{
	return role_names[r];
}

const char *
rsm_disk_name(enum rsm_disk d)
{
	return disk_names[d];
}

const char *
rsm_conn_name(enum rsm_conn c)
{
	return conn_names[c];
}

const char *
rsm_repl_name(enum rsm_repl r)
{
	return repl_names[r];
}

void
rsm_get(struct res *r, struct rsm_state *out)
{
	pthread_mutex_lock(&r->lock);
	*out = r->state;
	pthread_mutex_unlock(&r->lock);
}

static json_object *
rsm_event(struct res *r, const struct rsm_state *s, const char *why)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "event", json_object_new_string("state"));
	json_object_object_add(o, "resource", json_object_new_string(r->conf.name));
	json_object_object_add(o, "role", json_object_new_string(role_names[s->role]));
	json_object_object_add(o, "disk", json_object_new_string(disk_names[s->disk]));
	json_object_object_add(o, "connection", json_object_new_string(conn_names[s->conn]));
	json_object_object_add(o, "replication", json_object_new_string(repl_names[s->repl]));
	json_object_object_add(o, "reason", json_object_new_string(why));
	return o;
}

static void
rsm_broadcast_run(struct ev_msg *m)
{
	struct rsm_evmsg *e = container_of(m, struct rsm_evmsg, msg);

	ctl_broadcast(e->res->ctl, e->ev);
	json_object_put(e->ev);
	free(e);
}

/* Under r->lock: stores next and the write permission that goes with it. */
static void
rsm_store_locked(struct res *r, const struct rsm_state *next)
{
	r->state = *next;
	/* Writes are allowed exactly when primary with a usable disk, or
	 * with a detached one: then they go to the peer alone (the write path
	 * fails them when there is no peer). */
	atomic_store(&r->writable, next->role == RSM_PRIMARY &&
		     (next->disk == RSM_D_UPTODATE || next->disk == RSM_D_FAILED ||
		      next->disk == RSM_D_DISKLESS));
	pthread_cond_broadcast(&r->cond);
}

/* After a store: logs each field that changed, fires the hooks, posts the
 * event. */
static void
rsm_announce(struct res *r, const struct rsm_state *prev, const struct rsm_state *next,
	     const char *why)
{
	json_object *ev;

	if (prev->role != next->role)
		LOG_INFO("role %s -> %s (%s)", role_names[prev->role], role_names[next->role], why);
	if (prev->disk != next->disk)
		LOG_INFO("disk %s -> %s (%s)", disk_names[prev->disk], disk_names[next->disk], why);
	if (prev->conn != next->conn)
		LOG_INFO("connection %s -> %s (%s)", conn_names[prev->conn], conn_names[next->conn], why);
	if (prev->repl != next->repl)
		LOG_INFO("replication %s -> %s (%s)", repl_names[prev->repl], repl_names[next->repl], why);
	if (!memcmp(prev, next, sizeof(*prev)))
		return;
	hook_transition(r, prev, next);
	ev = rsm_event(r, next, why);
	{
		struct rsm_evmsg *e = calloc(1, sizeof(*e));
		if (!e || !r->ctl_loop) {
			json_object_put(ev);
			free(e);
			return;
		}
		e->msg.fn = rsm_broadcast_run;
		e->res = r;
		e->ev = ev;
		ev_post(r->ctl_loop, &e->msg);
	}
}

/* A detached disk stays failed or diskless whatever a caller sets: its
 * superblock writes "succeed" without touching the failed disk (dm), so a
 * promote or a resync end would otherwise call it up to date.  Only attach
 * (detached cleared first) brings it back. */
static void
rsm_keep_detached(struct res *r, const struct rsm_state *prev, struct rsm_state *next)
{
	if (atomic_load(&r->detached) && next->disk != RSM_D_FAILED &&
	    next->disk != RSM_D_DISKLESS)
		next->disk = prev->disk == RSM_D_DISKLESS ? RSM_D_DISKLESS : RSM_D_FAILED;
}

int
rsm_update(struct res *r, unsigned mask, const struct rsm_state *v, const char *why,
	   int (*ok)(void *arg, const struct rsm_state *cur), void *arg)
{
	struct rsm_state prev, next;

	pthread_mutex_lock(&r->lock);
	prev = next = r->state;
	if (ok && !ok(arg, &prev)) {
		pthread_mutex_unlock(&r->lock);
		return 0;
	}
	if (mask & RSM_F_ROLE)
		next.role = v->role;
	if (mask & RSM_F_DISK)
		next.disk = v->disk;
	if (mask & RSM_F_CONN)
		next.conn = v->conn;
	if (mask & RSM_F_REPL)
		next.repl = v->repl;
	rsm_keep_detached(r, &prev, &next);
	rsm_store_locked(r, &next);
	pthread_mutex_unlock(&r->lock);
	rsm_announce(r, &prev, &next, why);
	return 1;
}

int
rsm_repl_is(void *arg, const struct rsm_state *cur)
{
	return cur->repl == *(const enum rsm_repl *)arg;
}

/* ok for rsm_update: the disk state is *(enum rsm_disk *)arg. */
static int
rsm_disk_is(void *arg, const struct rsm_state *cur)
{
	return cur->disk == *(const enum rsm_disk *)arg;
}

void
rsm_disk_io_begin(struct res *r)
{
	atomic_fetch_add(&r->disk_inflight, 1);
}

void
rsm_disk_io_end(struct res *r, int n)
{
	enum rsm_disk from = RSM_D_FAILED;
	struct rsm_state v = { .disk = RSM_D_DISKLESS };

	/* Whoever sees the count at 0 after the detach says diskless: the
	 * failed disk is no longer touched.  Both sides (the detach and the
	 * last completion) check, so neither order misses it. */
	if (atomic_fetch_sub(&r->disk_inflight, n) - n == 0 && atomic_load(&r->detached) &&
	    rsm_update(r, RSM_F_DISK, &v, "no I/O in flight on the failed disk", rsm_disk_is,
		       &from))
		peer_state_changed(r);
}

static int rsm_detach(struct res *r, int err, const char *what, const char *policy);

int
rsm_disk_error(struct res *r, int err, const char *what)
{
	if (r->conf.on_io_error_pass_on)
		return 0;
	return rsm_detach(r, err, what, "detach");
}

int
rsm_meta_error(struct res *r, int err)
{
	return rsm_detach(r, err, "a metadata write", r->conf.on_io_error_pass_on ?
			  "pass-on; a metadata error detaches all the same" : "detach");
}

static int
rsm_detach(struct res *r, int err, const char *what, const char *policy)
{
	struct rsm_state v = { .disk = RSM_D_FAILED };

	if (atomic_exchange(&r->detached, 1))
		return 1;	/* the first error said it */
	LOG_ERROR("disk: %s failed: %s: detaching the disk (on-io-error = %s)", what,
		  strerror(-err), policy);
	dm_detach(r->dm);
	rsm_update(r, RSM_F_DISK, &v, "disk I/O error", NULL, NULL);
	/* The peer must know: it is the only copy now, and this node may
	 * not be its sync source. */
	peer_state_changed(r);
	rsm_disk_io_end(r, 0);
	return 1;
}

void
rsm_set_role(struct res *r, enum rsm_role role, int disk, const char *why)
{
	struct rsm_state v = { .role = role, .disk = disk >= 0 ? (enum rsm_disk)disk : 0 };

	rsm_update(r, RSM_F_ROLE | (disk >= 0 ? RSM_F_DISK : 0), &v, why, NULL, NULL);
}

int
rsm_set_conn_if(struct res *r, enum rsm_conn conn, enum rsm_repl repl, const char *why,
		int (*ok)(void *arg, const struct rsm_state *cur), void *arg)
{
	struct rsm_state v = { .conn = conn, .repl = repl };

	return rsm_update(r, RSM_F_CONN | RSM_F_REPL, &v, why, ok, arg);
}

/* Under role_lock, once a promote has passed its checks: the peer's
 * writes that arrived before (a demote waits for them only so long, a
 * teardown may still be draining the links) are on the disk, and the
 * links refuse new ones (res.promoting, cleared by rsm_promote).  Landing
 * after the promote, one would overwrite a write acknowledged here.
 * Queue threads finish them without role_lock.  0 when there were none,
 * 1 when it waited for them, -EBUSY (why set) when they took too long. */
static int
rsm_promote_drain(struct res *r, char *why, size_t len)
{
	uint64_t n;

	atomic_store(&r->promoting, 1);
	n = atomic_load(&r->peer_writes);
	if (!n)
		return 0;
	LOG_INFO("promote: waiting for %llu write(s) received from the peer to reach the disk",
		 (unsigned long long)n);
	if (lk_wait_applied(r, r->conf.ping_timeout_ms) == 0)
		return 1;
	snprintf(why, len, "writes received from the peer are not on the local disk after "
		 "%u ms: try again", r->conf.ping_timeout_ms);
	return -EBUSY;
}

/* Promotion table.  Refused when:
 *   the disk has failed or is absent               (nothing to serve)
 *   a held device waits for the peer (resume.h)    (even with --force)
 *   the peer is connected and primary              (issue: replication)
 *   the data is not up to date, unless --force     (DRBD's rule)
 *   writes of the peer are not on the disk within ping-timeout
 *                                                  (rsm_promote_drain)
 * Promoting starts a new generation: the old current identifier becomes
 * the bitmap identifier (what the peer last had in common), so a later
 * connect can tell which side changed. */
/* The checks, on the state now (*s).  0: primary already, 1: may be
 * promoted, -errno: refused (why set). */
static int
rsm_promote_check(struct res *r, int force, struct rsm_state *s, char *why, size_t len)
{
	int prole = 0, pdisk = 0;

	rsm_get(r, s);
	if (s->role == RSM_PRIMARY)
		return 0;
	if (s->disk == RSM_D_FAILED || s->disk == RSM_D_DISKLESS) {
		snprintf(why, len, "local disk is %s", disk_names[s->disk]);
		return -EIO;
	}
	/* Not even with --force: the held I/O would run as this node's
	 * writes before the peer said whether it went on without us. */
	if (r->resume) {
		snprintf(why, len, "the device of the crashed mirrord still holds its I/O, waiting "
			 "for the peer's answer (up to %u s): see mirrord(8), ublk device",
			 RESUME_WAIT_MS / 1000);
		return -EBUSY;
	}
	if (s->conn == RSM_C_CONNECTED) {
		if (peer_info(r, &prole, &pdisk) == 0 && prole) {
			snprintf(why, len, "peer is primary");
			return -EBUSY;
		}
		if (s->repl == RSM_R_SYNCTARGET && !force) {
			snprintf(why, len, "resync from the peer is still running (local data is "
				 "inconsistent): wait-sync first");
			return -EPERM;
		}
		if (s->repl == RSM_R_BEHIND && !force) {
			snprintf(why, len, "this node is behind the peer (pull-ahead): its data "
				 "misses writes until it has caught up: wait-sync first");
			return -EPERM;
		}
	}
	if (s->disk != RSM_D_UPTODATE && !force) {
		snprintf(why, len, "local data is %s, not known to be up to date "
			 "(use promote --force to promote it anyway)", disk_names[s->disk]);
		return -EPERM;
	}
	return 1;
}

/* Under role_lock.  0: nothing to do (primary already), -errno: refused
 * (why set), 1: recorded primary; *sbp is what was written, and the hooks
 * are held until the caller has made the device. */
static int
rsm_promote_decide(struct res *r, int force, char *why, size_t len, int *in_syncp,
		   struct meta_sb *sbp)
{
	struct rsm_state s;
	struct meta_sb sb;
	int rc, in_sync, prole = 0, pdisk = 0;

	rc = rsm_promote_check(r, force, &s, why, len);
	if (rc <= 0)
		return rc;
	rc = rsm_promote_drain(r, why, len);
	if (rc < 0)
		return rc;
	/* It waited: the state may have moved meanwhile (the peer lost). */
	if (rc > 0 && (rc = rsm_promote_check(r, force, &s, why, len)) <= 0)
		return rc;
	/* Connected and in sync with an up-to-date peer, the peer gets every
	 * write: the generation stays shared.  Otherwise this node starts a new
	 * one; if connected, the session restarts so the peer syncs from it
	 * (a fresh peer gets a full sync: DRBD's initial set-up). */
	in_sync = s.conn == RSM_C_CONNECTED && s.repl == RSM_R_ESTABLISHED &&
		  s.disk == RSM_D_UPTODATE && peer_info(r, &prole, &pdisk) == 0 &&
		  pdisk == RSM_D_UPTODATE;
	dm_sb_begin(r->dm, &sb);
	if (!in_sync)
		meta_start_generation(&sb);
	sb.flags |= META_F_PRIMARY | META_F_UPTODATE | META_F_CONSISTENT;
	sb.flags &= ~(META_F_JUST_CREATED | META_F_CRASHED_PRIMARY);
	/* Durable before the first write is accepted: a crash from here on is
	 * a crashed primary. */
	rc = dm_sb_commit(r->dm, &sb);
	if (rc) {
		snprintf(why, len, "cannot write the metadata: %s", strerror(-rc));
		return rc;
	}
	/* The device appears once the data may be written. */
	hook_hold();
	rsm_set_role(r, RSM_PRIMARY, RSM_D_UPTODATE, force ? "promote --force" : "promote");
	*in_syncp = in_sync;
	*sbp = sb;
	return 1;
}

int
rsm_promote(struct res *r, int force, char *why, size_t len)
{
	struct rsm_state s;
	struct meta_sb sb;
	int rc, in_sync = 0;

	/* Decided, recorded and stored under role_lock; the device is made
	 * after, so the peer thread (outdate) never waits for it. */
	pthread_mutex_lock(&r->role_lock);
	rc = rsm_promote_decide(r, force, why, len, &in_sync, &sb);
	/* Primary now, or refused: the role says whether the peer may write. */
	atomic_store(&r->promoting, 0);
	pthread_mutex_unlock(&r->role_lock);
	if (rc <= 0)
		return rc;
	rc = fe_for(r)->activate(r, why, len);
	if (rc) {
		LOG_ERROR("promote: the device could not be created: %s", why);
		rsm_set_role(r, RSM_SECONDARY, -1, "device failed");
		hook_release();
		dm_sb_begin(r->dm, &sb);
		sb.flags &= ~META_F_PRIMARY;
		dm_sb_commit(r->dm, &sb);
		return rc;
	}
	fe_link_add(r);
	hook_release();
	rsm_get(r, &s);
	if (!in_sync && s.conn == RSM_C_CONNECTED)
		peer_reconnect(r);
	else
		peer_state_changed(r);
	return 0;
}

/* Both resume paths run while the peer thread may be bringing a session
 * up and committing its own superblock changes (peer_in_sync): the
 * superblock is changed inside dm_sb_begin/commit, never read and written
 * back, and role_lock keeps a promote or demote from interleaving. */
void
rsm_resume_primary(struct res *r)
{
	struct rsm_state s;
	struct meta_sb sb;

	pthread_mutex_lock(&r->role_lock);
	rsm_get(r, &s);
	if (s.role == RSM_PRIMARY) {
		pthread_mutex_unlock(&r->role_lock);
		return;
	}
	dm_sb_begin(r->dm, &sb);
	sb.flags |= META_F_PRIMARY;
	/* Its writes are acknowledged again from here: no longer only the
	 * unacknowledged activity extents of a crash, which a peer that
	 * moved on may overwrite without a split-brain report (gen.c rows
	 * 33, 40, 43). */
	sb.flags &= ~META_F_CRASHED_PRIMARY;
	dm_sb_commit(r->dm, &sb);
	rsm_set_role(r, RSM_PRIMARY, RSM_D_UPTODATE, "device re-attached after a restart");
	/* Read after the role is set: a session torn down from now on arms
	 * the same itself (peer_teardown).  Without the peer, the first write
	 * starts a new generation, so that a later connect tells this node's
	 * writes from the peer's. */
	rsm_get(r, &s);
	if (s.conn != RSM_C_CONNECTED)
		dm_new_gen_on_write(r->dm, 1);
	pthread_mutex_unlock(&r->role_lock);
}

void
rsm_resume_failed(struct res *r)
{
	struct meta_sb sb;

	/* Back to what the start found: no write ran on the device (the
	 * kernel lets none through before END_USER_RECOVERY succeeds), so
	 * this node is still a crashed primary that must not move on. */
	pthread_mutex_lock(&r->role_lock);
	dm_new_gen_on_write(r->dm, 0);
	dm_sb_begin(r->dm, &sb);
	sb.flags = (sb.flags & ~META_F_PRIMARY) | META_F_CRASHED_PRIMARY;
	dm_sb_commit(r->dm, &sb);
	rsm_set_role(r, RSM_SECONDARY, -1, "device re-attach failed");
	pthread_mutex_unlock(&r->role_lock);
}

int
rsm_outdate(struct res *r, const char *why)
{
	struct rsm_state s;
	struct meta_sb sb;
	int rc = 0;

	pthread_mutex_lock(&r->role_lock);
	rsm_get(r, &s);
	if (s.role == RSM_PRIMARY) {
		rc = -EBUSY;
	} else if (s.disk == RSM_D_UPTODATE) {
		dm_sb_begin(r->dm, &sb);
		sb.flags &= ~META_F_UPTODATE;
		/* On disk first: a crash right after must not forget it. */
		rc = dm_sb_commit(r->dm, &sb);
		if (!rc)
			rsm_set_role(r, RSM_SECONDARY, RSM_D_OUTDATED, why);
	}
	pthread_mutex_unlock(&r->role_lock);
	return rc;
}

int
rsm_demote(struct res *r, char *why, size_t len)
{
	struct rsm_state s;
	struct meta_sb sb;
	char dev[sizeof(r->device)];
	int rc, unacked;

	rsm_get(r, &s);
	if (s.role == RSM_SECONDARY)
		return 0;
	snprintf(dev, sizeof(dev), "%s", r->device);
	/* Not under r->lock: removing a kernel device waits for the requests
	 * it holds, which queue threads finish, and they may need r->lock.
	 * Each front end closes its own window against new writers (the
	 * export does it under r->lock); once the device is gone, the write
	 * path refuses writes too. */
	rc = fe_for(r)->deactivate(r, why, len);
	if (rc)
		return rc;
	fe_link_del(r, dev);
	atomic_store(&r->writable, 0);
	/* The peer must have every write before it hears of the new role: it
	 * may be promoted the moment it does.  Bounded by half the ping
	 * timeout: a peer that takes longer is stuck, and the demote must not
	 * outlast the link's own verdict on it. */
	unacked = lk_wait_acked(r, r->conf.ping_timeout_ms / 2) != 0;
	if (unacked)
		LOG_WARN("demote: the peer has not written every replicated write within %u ms: "
			 "recorded as local changes", r->conf.ping_timeout_ms / 2);
	/* No write of ours is in flight now: the activity marks go, so that a
	 * crash as secondary does not bring them back as blocks out of sync.
	 * A failure is logged and sticky in dm; the marks then only cost a
	 * needless resync. */
	(void)dm_drain_activity(r->dm);
	pthread_mutex_lock(&r->role_lock);
	dm_sb_begin(r->dm, &sb);
	dm_leave_primary(r->dm, &sb);
	/* Writes the peer may never get are this node's alone: a later
	 * connect must not make it a sync target without a split-brain
	 * report (gen_compare row 43). */
	if (unacked)
		sb.flags |= META_F_LOCAL_CHANGES;
	rc = dm_sb_commit(r->dm, &sb);
	if (!rc)
		rsm_set_role(r, RSM_SECONDARY, -1, "demote");
	pthread_mutex_unlock(&r->role_lock);
	if (rc) {
		snprintf(why, len, "cannot write the metadata: %s", strerror(-rc));
		return rc;
	}
	peer_state_changed(r);
	/* Returns once the peer knows, so that a promote there right after
	 * is not refused with "peer is primary"; bounded: a peer that does
	 * not answer within ping-timeout is about to be dropped anyway. */
	if (peer_state_wait_acked(r, r->conf.ping_timeout_ms))
		snprintf(why, len, "demoted, but the peer has not confirmed it within %u ms: "
			 "a promote there may be refused until it has", r->conf.ping_timeout_ms);
	return 0;
}
