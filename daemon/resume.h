/* resume: whether a kernel device that outlived a crashed primary's
 * daemon (ublk user recovery) may serve again.  Its users' I/O waits in
 * the kernel; this node stays secondary until the peer confirms that
 * nobody was promoted without it, then the device serves again as
 * primary.  Otherwise the held I/O fails and the device goes: resuming
 * blindly would acknowledge writes on a stale copy while the peer is
 * primary (two primaries).  See mirrord(8), "ublk device". */
#ifndef BLKMIRROR_RESUME_H
#define BLKMIRROR_RESUME_H

#include "daemon/rsm.h"

/* How long a restarted daemon waits for the peer's answer before it
 * fails the held I/O: room for the connect back-off and a handshake,
 * short enough that the users of the device get their error while a
 * cluster manager still waits for the start. */
#define RESUME_WAIT_MS 30000

enum resume_verdict {
	RESUME_WAIT,	/* no answer from the peer yet */
	RESUME_YES,	/* connected, peer secondary, this node source or in sync */
	RESUME_NO,	/* the peer moved on, is primary, or this node is behind */
};

/* Pure: the verdict from this node's state and what it knows of the
 * peer (peer_known 0: no state exchanged on this connection).  *why gets
 * the reason, for the log. */
enum resume_verdict resume_decide(const struct rsm_state *s, int peer_known,
				  int peer_primary, const char **why);

struct res;

/* Control thread, after peer_start(): the front end's open() reported a
 * held device.  Without a peer (no peer node, or no secret-file: no
 * replication at all) the device resumes at once.  Otherwise a thread waits
 * (at most RESUME_WAIT_MS) for the verdict and the control loop resolves
 * the device.  0, also when resolving failed (logged; the node is then
 * secondary without the device: its held I/O failed), or -errno when the
 * wait could not start (the device stays held: close fails its I/O). */
int resume_start(struct res *r);
/* Control thread, after the control loop ended and before the front end
 * closes: ends the wait; the device, still held, is then removed by
 * close(). */
void resume_stop(struct res *r);

#endif
