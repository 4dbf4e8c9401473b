#include "daemon/commands.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/rsm.h"
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
	/* No resync without a peer connection. */
	json_object_object_add(o, "resync", NULL);
	inf = json_object_new_object();
	json_object_object_add(inf, "requests", json_object_new_int64((int64_t)sum.requests));
	json_object_object_add(inf, "bytes", json_object_new_int64((int64_t)sum.bytes));
	json_object_object_add(inf, "oldest_ms", json_object_new_int64((int64_t)sum.oldest_ms));
	json_object_object_add(o, "inflight", inf);
	if (r->conf.peer >= 0) {
		peer = json_object_new_object();
		json_object_object_add(peer, "node",
				       json_object_new_string(r->conf.nodes[r->conf.peer].name));
		/* Unknown while not connected. */
		json_object_object_add(peer, "role", NULL);
		json_object_object_add(peer, "disk", NULL);
		json_object_object_add(o, "peer", peer);
	} else {
		json_object_object_add(o, "peer", NULL);
	}
	json_object_object_add(o, "device", r->device[0] ? json_object_new_string(r->device) : NULL);
	return o;
}

static int
cmd_flag(json_object *req, const char *name)
{
	json_object *v;

	return json_object_object_get_ex(req, name, &v) && json_object_get_boolean(v);
}

json_object *
cmd_handle(void *arg, json_object *req, int *subscribe)
{
	struct res *r = arg;
	json_object *cmdv, *o;
	const char *cmd;
	char why[256];
	int rc;

	json_object_object_get_ex(req, "cmd", &cmdv);
	if (!json_object_is_type(cmdv, json_type_string))
		return cmd_reply(0, 2, "malformed request: \"cmd\" must be a string");
	cmd = json_object_get_string(cmdv);
	if (strcmp(cmd, "status") == 0) {
		o = cmd_reply(1, 0, NULL);
		json_object_object_add(o, "status", cmd_status(r));
		return o;
	}
	if (strcmp(cmd, "events") == 0) {
		*subscribe = 1;
		o = cmd_reply(1, 0, NULL);
		json_object_object_add(o, "status", cmd_status(r));
		return o;
	}
	if (strcmp(cmd, "promote") == 0 || strcmp(cmd, "demote") == 0) {
		why[0] = '\0';
		rc = cmd[0] == 'p' ? rsm_promote(r, cmd_flag(req, "force"), why, sizeof(why))
				   : rsm_demote(r, why, sizeof(why));
		if (rc) {
			LOG_WARN("%s refused: %s", cmd, why);
			return cmd_reply(0, 1, why);
		}
		return cmd_reply(1, 0, NULL);
	}
	if (strcmp(cmd, "connect") == 0 || strcmp(cmd, "disconnect") == 0 ||
	    strcmp(cmd, "invalidate") == 0 || strcmp(cmd, "verify") == 0 ||
	    strcmp(cmd, "discard-my-data") == 0 || strcmp(cmd, "wait-sync") == 0 ||
	    strcmp(cmd, "wait-connect") == 0) {
		snprintf(why, sizeof(why), "%s: this mirrord has no replication link yet "
			 "(standalone node)", cmd);
		return cmd_reply(0, 1, why);
	}
	snprintf(why, sizeof(why), "unknown command '%.64s'", cmd);
	return cmd_reply(0, 2, why);
}
