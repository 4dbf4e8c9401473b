/* hook: the operator's scripts (handler-* keys) run on events, with the
 * resource, node and event in the environment (blkmirror.conf(5) HOOKS).
 * Events never block their caller: their scripts run one at a time, in
 * event order, on a worker thread that waits for each with a time limit. */
#ifndef BLKMIRROR_HOOKS_H
#define BLKMIRROR_HOOKS_H

#include "daemon/rsm.h"

enum hook_event {
	HOOK_ROLE_CHANGE,
	HOOK_CONNECT,
	HOOK_DISCONNECT,
	HOOK_RESYNC_START,
	HOOK_RESYNC_END,
	HOOK_SPLIT_BRAIN,
	HOOK_FENCE_PEER,
	HOOK_N
};

struct res;

/* Fires the hooks a state change calls for (prev -> next).  Any thread. */
void hook_transition(struct res *r, const struct rsm_state *prev, const struct rsm_state *next);
/* Runs the hook for ev now and waits for it (at most timeout_s seconds,
 * then it is killed).  Returns its exit status, -ENOENT when no hook is
 * configured, or -errno. */
int hook_run_sync(struct res *r, enum hook_event ev, int timeout_s);
/* Queued hooks wait until the matching hook_release(): promote holds
 * them until its device exists, so that role-change sees
 * BLKMIRROR_DEVICE. */
void hook_hold(void);
void hook_release(void);
/* Waits (bounded) for hooks still running; at shutdown. */
void hook_drain(struct res *r);
const char *hook_event_name(enum hook_event ev);

#endif
