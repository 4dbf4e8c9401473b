/* rsm: the resource state machine.  The state is four fields users see in
 * `mirrorctl status` (role, disk, connection, replication); one function,
 * rsm_update(), changes them field by field, logs every transition and
 * emits one event.
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

/* Any thread: sets only the fields named in mask (RSM_F_*) from v, on the
 * current state, read and written under r->lock; with ok, only when
 * ok(arg, current) holds (called under r->lock).  Returns 1 when stored.
 * Logs "role secondary -> primary (promote)" for each field that changed
 * and broadcasts one event.  There is deliberately no call that stores a
 * whole state: a copy taken with rsm_get and written back would undo
 * fields another thread changed in between. */
#define RSM_F_ROLE 1u
#define RSM_F_DISK 2u
#define RSM_F_CONN 4u
#define RSM_F_REPL 8u
int rsm_update(struct res *r, unsigned mask, const struct rsm_state *v, const char *why,
	       int (*ok)(void *arg, const struct rsm_state *cur), void *arg);
/* ok for rsm_update: the replication state is *(enum rsm_repl *)arg. */
int rsm_repl_is(void *arg, const struct rsm_state *cur);
/* Sets only the role, and the disk state unless disk < 0, on the current
 * state (read and written under r->lock): for promote and demote, whose
 * slow work must not write back a connection state the peer thread
 * changed meanwhile. */
void rsm_set_role(struct res *r, enum rsm_role role, int disk, const char *why);
/* Sets the connection and replication fields when ok(arg, current state),
 * evaluated under r->lock, holds: a transition that must not overwrite one
 * another thread made meanwhile (connect against the peer thread's
 * "standalone").  Returns 1 when it set them, 0 when ok refused. */
int rsm_set_conn_if(struct res *r, enum rsm_conn conn, enum rsm_repl repl, const char *why,
		    int (*ok)(void *arg, const struct rsm_state *cur), void *arg);
/* Current state (any thread). */
void rsm_get(struct res *r, struct rsm_state *out);

/* The operator's commands.  Return 0, or -errno with why filled in
 * words for the operator (mirrorctl exits 1 with it). */
int rsm_promote(struct res *r, int force, char *why, size_t len);
/* demote returns once the connected peer has processed the new role (at
 * most ping-timeout); when it did not answer in time the node is
 * secondary all the same, 0 is returned and why holds a warning. */
int rsm_demote(struct res *r, char *why, size_t len);
/* Outdated, as DRBD has it: consistent data that misses writes a primary
 * made without this node.  Recorded in the metadata (META_F_UPTODATE
 * cleared, META_F_CONSISTENT kept) before the state says so; only a resync
 * (or promote --force) makes the disk up to date again, and promote
 * refuses it without --force.  No-op unless secondary and up to date;
 * -EBUSY on a primary.  Any thread but the queue threads (it writes the
 * superblock). */
int rsm_outdate(struct res *r, const char *why);
/* A local disk or metadata I/O error (err < 0) of `what` ("a write at
 * 4096+512").  on-io-error = pass-on: returns 0, the caller passes the
 * error on.  detach: the first one logs, detaches the metadata
 * (dm_detach), sets the disk failed and tells the peer; it becomes
 * diskless once the disk I/O in flight has drained (rsm_disk_io_end).
 * Returns 1: the disk is detached, no more local I/O.  Any thread that
 * holds no lock. */
int rsm_disk_error(struct res *r, int err, const char *what);
/* A metadata write error: detaches whatever on-io-error says (as DRBD
 * does): metadata that cannot be written cannot record what is out of
 * sync, and the error would stay, failing every later write.  Returns 1.
 * Any thread that holds no lock. */
int rsm_meta_error(struct res *r, int err);
/* The write path's local disk I/O: begin before it is issued, end once
 * it completed (n = 1).  The last end on a detached disk makes it
 * diskless.  Any thread. */
void rsm_disk_io_begin(struct res *r);
void rsm_disk_io_end(struct res *r, int n);
/* The front end re-attaches a device left by a crashed daemon (ublk user
 * recovery) once daemon/resume.c allowed it: this node is primary again,
 * no longer a crashed primary, and its first write without the peer
 * starts a new generation.  Control thread. */
void rsm_resume_primary(struct res *r);
/* The re-attach failed after rsm_resume_primary(): secondary again, and a
 * crashed primary again in the metadata.  Control thread. */
void rsm_resume_failed(struct res *r);

#endif
