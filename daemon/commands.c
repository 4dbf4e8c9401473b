#include "daemon/commands.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/peer.h"
#include "daemon/resync.h"
#include "daemon/rsm.h"
#include "lib/util.h"
#include "lib/log.h"

static json_object *
cmd_reply(int ok, int code, const char *error)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "ok", json_object_new_boolean(ok));
	if (!ok) {
		json_object_object_add(o, "code", json_object_new_int(code));
		json_object_object_add(o, "error", json_object_new_string(error));
	}
	return o;
}

/* Done, with a warning the operator should know when why is not empty. */
static json_object *
cmd_done(const char *cmd, const char *why)
{
	json_object *o = cmd_reply(1, 0, NULL);

	if (why[0]) {
		LOG_WARN("%s: %s", cmd, why);
		json_object_object_add(o, "warning", json_object_new_string(why));
	}
	return o;
}

/* Progress of the resync; null while not connected. */
static json_object *
cmd_resync(struct res *r, const struct rsm_state *s, uint64_t oos)
{
	json_object *o;
	uint64_t total, elapsed_ms, done, rate = 0, eta = 0;
	double pct = 100.0;

	if (s->conn != RSM_C_CONNECTED)
		return NULL;
	pthread_mutex_lock(&r->lock);
	total = r->rs_total_bytes;
	elapsed_ms = util_now_ms() - r->rs_start_ms;
	pthread_mutex_unlock(&r->lock);
	if (s->repl == RSM_R_SYNCSOURCE || s->repl == RSM_R_SYNCTARGET) {
		if (total < oos)
			total = oos;
		done = total - oos;
		pct = total ? 100.0 * (double)done / (double)total : 100.0;
		if (elapsed_ms)
			rate = done * 1000 / elapsed_ms;
		eta = rate ? oos / rate : 0;
	}
	o = json_object_new_object();
	json_object_object_add(o, "done_percent", json_object_new_double(pct));
	json_object_object_add(o, "bytes_per_sec", json_object_new_int64((int64_t)rate));
	json_object_object_add(o, "eta_s", json_object_new_int64((int64_t)eta));
	return o;
}

json_object *
cmd_status(struct res *r)
{
	json_object *o = json_object_new_object(), *inf, *peer;
	struct wp_inflight sum = { 0 }, q;
	struct dm_stats st;
	struct rsm_state s;

	rsm_get(r, &s);
	dm_get_stats(r->dm, &st);
	for (unsigned i = 0; i < r->nqueues; i++) {
		wp_get_inflight(r->queues[i].wp, &q);
		sum.requests += q.requests;
		sum.bytes += q.bytes;
		sum.oldest_ms = q.oldest_ms > sum.oldest_ms ? q.oldest_ms : sum.oldest_ms;
	}
	json_object_object_add(o, "resource", json_object_new_string(r->conf.name));
	json_object_object_add(o, "node", json_object_new_string(r->conf.nodes[r->conf.self].name));
	json_object_object_add(o, "role", json_object_new_string(rsm_role_name(s.role)));
	json_object_object_add(o, "disk", json_object_new_string(rsm_disk_name(s.disk)));
	json_object_object_add(o, "connection", json_object_new_string(rsm_conn_name(s.conn)));
	json_object_object_add(o, "replication", json_object_new_string(rsm_repl_name(s.repl)));
	json_object_object_add(o, "protocol",
			       json_object_new_string(conf_protocol_name(r->conf.protocol)));
	json_object_object_add(o, "size_bytes", json_object_new_int64((int64_t)r->size));
	json_object_object_add(o, "out_of_sync_bytes", json_object_new_int64((int64_t)st.oos_bytes));
	json_object_object_add(o, "resync", cmd_resync(r, &s, st.oos_bytes));
	inf = json_object_new_object();
	json_object_object_add(inf, "requests", json_object_new_int64((int64_t)sum.requests));
	json_object_object_add(inf, "bytes", json_object_new_int64((int64_t)sum.bytes));
	json_object_object_add(inf, "oldest_ms", json_object_new_int64((int64_t)sum.oldest_ms));
	json_object_object_add(o, "inflight", inf);
	if (r->conf.peer >= 0) {
		peer = json_object_new_object();
		json_object_object_add(peer, "node",
				       json_object_new_string(r->conf.nodes[r->conf.peer].name));
		int prole, pdisk;
		/* Unknown while not connected. */
		if (s.conn == RSM_C_CONNECTED && peer_info(r, &prole, &pdisk) == 0) {
			json_object_object_add(peer, "role", json_object_new_string(
				rsm_role_name((enum rsm_role)prole)));
			json_object_object_add(peer, "disk", json_object_new_string(
				rsm_disk_name((enum rsm_disk)pdisk)));
		} else {
			json_object_object_add(peer, "role", NULL);
			json_object_object_add(peer, "disk", NULL);
		}
		json_object_object_add(o, "peer", peer);
	} else {
		json_object_object_add(o, "peer", NULL);
	}
	json_object_object_add(o, "device", r->device[0] ? json_object_new_string(r->device) : NULL);
	return o;
}

/* invalidate throws the local data away: only when a peer holds a good
 * copy to resync from, or the operator says --force (DRBD asks for a
 * connected, up-to-date peer too).  Otherwise no node would be left up to
 * date.  0 or -errno with why set. */
static int
cmd_invalidate_allowed(struct res *r, const struct rsm_state *s, int force, char *why,
		       size_t len)
{
	int prole, pdisk;

	if (force)
		return 0;
	if (s->conn != RSM_C_CONNECTED || peer_info(r, &prole, &pdisk) != 0) {
		snprintf(why, len, "the peer is not connected, so no up-to-date copy would be left "
			 "to resync from (connect first, or use invalidate --force)");
		return -ENOTCONN;
	}
	if (pdisk != RSM_D_UPTODATE) {
		snprintf(why, len, "the peer's disk is %s, not up to date: no up-to-date copy would "
			 "be left (wait-sync first, or use invalidate --force)",
			 rsm_disk_name((enum rsm_disk)pdisk));
		return -EAGAIN;
	}
	return 0;
}

/* Replication commands: connect, disconnect, discard-my-data, invalidate. */
static int
cmd_peer(struct res *r, const char *cmd, int force, char *why, size_t len)
{
	struct rsm_state s;
	struct meta_sb sb;
	int rc;

	if (strcmp(cmd, "connect") == 0)
		return peer_connect(r, 0, why, len);
	if (strcmp(cmd, "disconnect") == 0)
		return peer_disconnect(r, why, len);
	rsm_get(r, &s);
	if (s.role == RSM_PRIMARY) {
		snprintf(why, len, "this node is primary: demote it first");
		return -EBUSY;
	}
	if (!r->peer) {
		snprintf(why, len, "no peer: configure a second [node] and a secret-file");
		return -ENOTCONN;
	}
	if (strcmp(cmd, "discard-my-data") == 0) {
		return peer_discard_my_data(r, why, len);
	}
	/* invalidate: every block comes again from the peer. */
	rc = cmd_invalidate_allowed(r, &s, force, why, len);
	if (rc)
		return rc;
	dm_mark_all(r->dm);
	/* The bits on disk before the superblock says inconsistent: after a
	 * crash an inconsistent node with an empty bitmap would resync
	 * nothing and call itself up to date. */
	rc = dm_sync_bitmap(r->dm);
	if (rc) {
		snprintf(why, len, "cannot write the bitmap: %s", strerror(-rc));
		return rc;
	}
	dm_sb_begin(r->dm, &sb);
	sb.flags &= ~(META_F_UPTODATE | META_F_CONSISTENT);
	rc = dm_sb_commit(r->dm, &sb);
	if (rc) {
		snprintf(why, len, "cannot write the metadata: %s", strerror(-rc));
		return rc;
	}
	s.disk = RSM_D_INCONSISTENT;
	rsm_update(r, RSM_F_DISK, &s, "invalidate", NULL, NULL);
	if ((rc = peer_connect(r, 1, why, len)))
		return rc;
	return peer_reconnect(r);
}

/* attach: the disk is back after a detach (repaired or replaced).  Its
 * metadata is read back through the open descriptors, and refused if
 * unreadable.  The node is then inconsistent and gets a full resync from
 * the peer: what it missed is recorded only in the peer's bitmap, and a
 * replaced disk holds nothing at all.  Secondary only: a primary cannot be
 * a sync target.  0 or -errno with why set. */
static int
cmd_attach(struct res *r, char *why, size_t len)
{
	struct rsm_state s;
	struct meta_sb sb;
	char err[200];
	int rc;

	rsm_get(r, &s);
	if (!atomic_load(&r->detached)) {
		snprintf(why, len, "the disk is attached");
		return -EALREADY;
	}
	if (s.role == RSM_PRIMARY) {
		snprintf(why, len, "this node is primary: demote it first");
		return -EBUSY;
	}
	if (s.disk != RSM_D_DISKLESS) {
		snprintf(why, len, "the I/O in flight on the failed disk has not completed yet");
		return -EAGAIN;
	}
	rc = meta_read_sb(r->md_fd, r->md_size, r->conf.meta_internal, disk_size(r->disk), &sb,
			  err, sizeof(err));
	if (rc) {
		snprintf(why, len, "the metadata cannot be read back: %s (recreate it with "
			 "create-md, daemon stopped)", err);
		return rc;
	}
	/* Inconsistent, durably, before anything is written to the disk; the
	 * superblock in memory is the current one (it changed while detached). */
	dm_reattach(r->dm);
	dm_mark_all(r->dm);
	dm_sb_begin(r->dm, &sb);
	sb.flags &= ~(META_F_UPTODATE | META_F_CONSISTENT);
	rc = dm_sb_commit(r->dm, &sb);
	if (!rc)
		rc = dm_sync_bitmap(r->dm);
	if (rc) {
		dm_detach(r->dm);
		snprintf(why, len, "cannot write the metadata: %s", strerror(-rc));
		return rc;
	}
	atomic_store(&r->detached, 0);
	s.disk = RSM_D_INCONSISTENT;
	rsm_update(r, RSM_F_DISK, &s, "attach", NULL, NULL);
	LOG_INFO("attach: the disk is back; a full resync from the peer follows");
	if (!r->peer)
		return 0;
	if ((rc = peer_connect(r, 1, why, len)))
		return rc;
	return peer_reconnect(r);
}

static int
cmd_verify_ok(void *arg, const struct rsm_state *cur)
{
	(void)arg;
	return cur->conn == RSM_C_CONNECTED && cur->repl == RSM_R_ESTABLISHED;
}

/* A boolean member: 1, 0 when absent, -1 when present but not a boolean
 * (json-c would call "no" true). */
static int
cmd_flag(json_object *req, const char *name)
{
	json_object *v;

	if (!json_object_object_get_ex(req, name, &v))
		return 0;
	if (!json_object_is_type(v, json_type_boolean))
		return -1;
	return json_object_get_boolean(v);
}

/* The names cmd_parse knows, in enum cmd_id order (CMD_NONE has none). */
static const char *const cmd_names[] = {
	NULL, "status", "events", "promote", "demote", "connect", "disconnect",
	"discard-my-data", "invalidate", "outdate", "resume-io", "verify", "attach",
};

json_object *
cmd_parse(json_object *req, enum cmd_id *id, int *force)
{
	json_object *cmdv;
	const char *cmd;
	char why[128];

	*id = CMD_NONE;
	*force = 0;
	if (!json_object_object_get_ex(req, "cmd", &cmdv) ||
	    !json_object_is_type(cmdv, json_type_string))
		return cmd_reply(0, 2, "malformed request: \"cmd\" must be a string");
	cmd = json_object_get_string(cmdv);
	/* "status\u0000x" is not "status": a JSON string may hold a NUL. */
	for (unsigned i = 1; i < ARRAY_SIZE(cmd_names); i++) {
		if (strcmp(cmd, cmd_names[i]) == 0 &&
		    strlen(cmd) == (size_t)json_object_get_string_len(cmdv)) {
			*id = (enum cmd_id)i;
			break;
		}
	}
	if (*id == CMD_NONE) {
		snprintf(why, sizeof(why), "unknown command '%.64s'", cmd);
		return cmd_reply(0, 2, why);
	}
	if (*id >= CMD_PROMOTE && *id <= CMD_INVALIDATE) {
		*force = cmd_flag(req, "force");
		if (*force < 0) {
			*id = CMD_NONE;
			*force = 0;
			return cmd_reply(0, 2, "malformed request: \"force\" must be true or false");
		}
	}
	return NULL;
}

json_object *
cmd_handle(void *arg, json_object *req, int *subscribe)
{
	struct res *r = arg;
	json_object *o;
	enum cmd_id id;
	const char *cmd;
	char why[256];
	int rc, force;

	o = cmd_parse(req, &id, &force);
	if (o)
		return o;
	cmd = cmd_names[id];
	if (id == CMD_STATUS) {
		o = cmd_reply(1, 0, NULL);
		json_object_object_add(o, "status", cmd_status(r));
		return o;
	}
	if (id == CMD_EVENTS) {
		*subscribe = 1;
		o = cmd_reply(1, 0, NULL);
		json_object_object_add(o, "status", cmd_status(r));
		return o;
	}
	if (id == CMD_PROMOTE || id == CMD_DEMOTE) {
		why[0] = '\0';
		rc = cmd[0] == 'p' ? rsm_promote(r, force, why, sizeof(why))
				   : rsm_demote(r, why, sizeof(why));
		if (rc) {
			LOG_WARN("%s refused: %s", cmd, why);
			return cmd_reply(0, 1, why);
		}
		return cmd_done(cmd, why);
	}
	if (id >= CMD_CONNECT && id <= CMD_INVALIDATE) {
		why[0] = '\0';
		rc = cmd_peer(r, cmd, force, why, sizeof(why));
		if (rc) {
			LOG_WARN("%s refused: %s", cmd, why);
			return cmd_reply(0, 1, why);
		}
		return cmd_done(cmd, why);
	}
	if (id == CMD_OUTDATE) {
		rc = rsm_outdate(r, "outdate");
		if (rc == -EBUSY)
			return cmd_reply(0, 1, "this node is primary: demote it first");
		if (rc)
			return cmd_reply(0, 1, "cannot write the metadata");
		peer_state_changed(r);
		return cmd_reply(1, 0, NULL);
	}
	if (id == CMD_ATTACH) {
		why[0] = '\0';
		rc = cmd_attach(r, why, sizeof(why));
		if (rc) {
			LOG_WARN("attach refused: %s", why);
			return cmd_reply(0, 1, why);
		}
		return cmd_reply(1, 0, NULL);
	}
	if (id == CMD_RESUME_IO) {
		if (!atomic_load(&r->frozen))
			return cmd_reply(0, 1, "I/O is not frozen");
		LOG_WARN("resume-io: resuming frozen I/O without fencing the peer");
		atomic_store(&r->frozen, RES_FROZEN_NO);	/* the operator's word */
		wp_thaw_all(r);
		return cmd_reply(1, 0, NULL);
	}
	/* CMD_VERIFY: checked and set at once, so that a link loss or a
	 * resync starting meanwhile is not overwritten with "verifying". */
	if (!rsm_update(r, RSM_F_REPL, &(struct rsm_state){ .repl = RSM_R_VERIFYING },
			"verify", cmd_verify_ok, NULL))
		return cmd_reply(0, 1, "verify needs an established connection in sync "
				 "(not resyncing or verifying)");
	resync_verify(r);
	return cmd_reply(1, 0, NULL);
}
