#include "lib/fault.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef FIU_ENABLE
#include <fiu-control.h>

/* Each ';'-separated command as fiu-ctrl would send it. */
static int
fault_apply(const char *cmds, char *err, size_t errlen)
{
	char *copy = strdup(cmds), *save = NULL, *cmd;
	int rc = 0;

	if (!copy)
		return -ENOMEM;
	for (cmd = strtok_r(copy, ";", &save); cmd && !rc; cmd = strtok_r(NULL, ";", &save)) {
		char *why = NULL;

		if (fiu_rc_string(cmd, &why) < 0) {
			snprintf(err, errlen, "BM_FAULTS: '%s': %s", cmd, why ? why : "refused");
			rc = -EINVAL;
		}
	}
	free(copy);
	return rc;
}

/* libfiu's remote control is a thread of its own: it must not take the
 * signals the daemon reads through signalfd (SIGTERM would kill it). */
static int
fault_rc_fifo(const char *fifo)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = fiu_rc_fifo(fifo);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

int
fault_init(char *err, size_t errlen)
{
	const char *cmds = getenv("BM_FAULTS"), *fifo = getenv("BM_FAULT_FIFO");
	int rc;

	fiu_init(0);
	if (cmds && *cmds && (rc = fault_apply(cmds, err, errlen)))
		return rc;
	if (fifo && *fifo && fault_rc_fifo(fifo) < 0) {
		snprintf(err, errlen, "BM_FAULT_FIFO: cannot make the control pipes %s-PID", fifo);
		return -EIO;
	}
	return 0;
}
#else
int
fault_init(char *err, size_t errlen)
{
	const char *cmds = getenv("BM_FAULTS"), *fifo = getenv("BM_FAULT_FIFO");

	/* A test that asks for faults must not pass on a build without them. */
	if ((cmds && *cmds) || (fifo && *fifo)) {
		snprintf(err, errlen, "BM_FAULTS/BM_FAULT_FIFO: this build has no failpoints "
			 "(build with make SAN=1 or FIU=1)");
		return -ENOTSUP;
	}
	return 0;
}
#endif
