/* cmd: what mirrorctl can ask of a running mirrord, over ctl. */
#ifndef BLKMIRROR_COMMANDS_H
#define BLKMIRROR_COMMANDS_H

#include <json-c/json.h>

#include "daemon/resource.h"

/* ctl_handler_t for a resource (arg is the struct res). */
json_object *cmd_handle(void *arg, json_object *req, int *subscribe);
/* The `status --json` object, exactly the fields of the interface spec. */
json_object *cmd_status(struct res *r);

#endif
