/* ctl: the control socket.  A unix stream socket (mode 0600) speaking one
 * JSON object per line: a request {"cmd": "...", ...} gets one response
 * {"ok": true, ...} or {"ok": false, "code": N, "error": "..."}.  After
 * {"cmd": "events"} the connection receives one JSON line per state change
 * until it closes.  Runs on the control thread's event loop. */
#ifndef BLKMIRROR_CTL_H
#define BLKMIRROR_CTL_H

#include <json-c/json.h>

#include "lib/ev.h"

struct ctl;

/* Handles one request; returns a new response object (ownership passes to
 * ctl).  *subscribe = 1 turns the connection into an event stream. */
typedef json_object *(*ctl_handler_t)(void *arg, json_object *req, int *subscribe);

/* Takes the lock that marks the daemon of the control socket at path:
 * flock on "path.lock" (created with its directory), which the kernel drops
 * when the process dies, unlike a socket file or its listener.  When the
 * holder was killed and is still exiting, waits up to 10 s for it.  Writes
 * this process's pid into the file.  Returns the lock's descriptor (keep it
 * open while running), -EADDRINUSE when another daemon runs, or -errno;
 * err says which. */
int ctl_lock(const char *path, char *err, size_t errlen);
/* Writes this process's pid into the lock file fd (after a fork). */
int ctl_lock_pid(int fd);
/* Creates the socket at path (its directory too), replacing any socket
 * left there: call with ctl_lock() held.  Returns 0 or -errno with err set. */
int ctl_open(struct ctl **out, const char *path, struct ev_loop *loop, ctl_handler_t fn,
	     void *arg, char *err, size_t errlen);
/* 0 when something answers on the unix socket at path (a running daemon),
 * else -errno. */
int ctl_probe(const char *path);
/* Sends one line to every event subscriber (control thread only). */
void ctl_broadcast(struct ctl *c, json_object *event);
/* Closes every connection, removes the socket file, frees c.  Only once
 * the loop has stopped running (its pending operations reference c). */
void ctl_close(struct ctl *c); /* NULL is a no-op */

#endif
