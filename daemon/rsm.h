/* rsm: the resource state machine.  The state is four fields users see in
 * `mirrorctl status` (role, disk, connection, replication); one function,
 * rsm_set(), assigns them, logs every transition and emits one event.
 * The decisions (may this node be promoted? demoted?) are tables of
 * conditions in rsm.c. */
#ifndef BLKMIRROR_RSM_H
#define BLKMIRROR_RSM_H

#include <pthread.h>
#include <stddef.h>

enum rsm_role { RSM_SECONDARY, RSM_PRIMARY };
enum rsm_disk { RSM_D_UPTODATE, RSM_D_INCONSISTENT, RSM_D_OUTDATED, RSM_D_DISKLESS, RSM_D_FAILED };
enum rsm_conn { RSM_C_STANDALONE, RSM_C_CONNECTING, RSM_C_CONNECTED, RSM_C_SPLITBRAIN };
enum rsm_repl { RSM_R_OFF, RSM_R_ESTABLISHED, RSM_R_SYNCSOURCE, RSM_R_SYNCTARGET,
		RSM_R_VERIFYING, RSM_R_AHEAD, RSM_R_BEHIND };

struct rsm_state {
	enum rsm_role role;
	enum rsm_disk disk;
	enum rsm_conn conn;
	enum rsm_repl repl;
};

const char *rsm_role_name(enum rsm_role r);
const char *rsm_disk_name(enum rsm_disk d);
const char *rsm_conn_name(enum rsm_conn c);
const char *rsm_repl_name(enum rsm_repl r);

struct res;

/* Control thread.  Assigns the new state, logs "role secondary -> primary
 * (promote)" for each field that changed and broadcasts one event. */
void rsm_set(struct res *r, const struct rsm_state *next, const char *why);
/* Sets only the role, and the disk state unless disk < 0, on the current
 * state (read and written under r->lock): for promote and demote, whose
 * slow work must not write back a connection state the peer thread
 * changed meanwhile. */
void rsm_set_role(struct res *r, enum rsm_role role, int disk, const char *why);
/* Current state (any thread). */
void rsm_get(struct res *r, struct rsm_state *out);

/* The operator's commands.  Return 0, or -errno with why filled in
 * words for the operator (mirrorctl exits 1 with it). */
int rsm_promote(struct res *r, int force, char *why, size_t len);
int rsm_demote(struct res *r, char *why, size_t len);
/* The front end re-attaches a device left by a crashed daemon (ublk user
 * recovery) once daemon/resume.c allowed it: this node is primary again,
 * no longer a crashed primary, and its first write without the peer
 * starts a new generation.  Control thread. */
void rsm_resume_primary(struct res *r);
/* The re-attach failed after rsm_resume_primary(): secondary again, and a
 * crashed primary again in the metadata.  Control thread. */
void rsm_resume_failed(struct res *r);

#endif
