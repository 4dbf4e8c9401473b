/* cmd: what mirrorctl can ask of a running mirrord, over ctl. */
#ifndef BLKMIRROR_COMMANDS_H
#define BLKMIRROR_COMMANDS_H

#include <json-c/json.h>

#include "daemon/resource.h"

enum cmd_id {
	CMD_NONE,
	CMD_STATUS,
	CMD_EVENTS,
	CMD_PROMOTE,
	CMD_DEMOTE,
	CMD_CONNECT,          /* CMD_CONNECT .. CMD_INVALIDATE go to cmd_peer */
	CMD_DISCONNECT,
	CMD_DISCARD_MY_DATA,
	CMD_INVALIDATE,
	CMD_OUTDATE,
	CMD_RESUME_IO,
	CMD_VERIFY,
	CMD_ATTACH,
};

/* Checks a request without touching any resource: "cmd" a string naming
 * a known command, "force" (promote, demote, connect, disconnect,
 * discard-my-data, invalidate) true or false when present.  Returns NULL
 * with *id and *force set, or the error response (code 2, ownership to the
 * caller) with *id CMD_NONE.  Any thread; the fuzzing seam of the control
 * socket (tests/fuzz/fuzz_ctl.c). */
json_object *cmd_parse(json_object *req, enum cmd_id *id, int *force);

/* ctl_handler_t for a resource (arg is the struct res). */
json_object *cmd_handle(void *arg, json_object *req, int *subscribe);
/* The `status --json` object, exactly the fields of the interface spec. */
json_object *cmd_status(struct res *r);

#endif
