/* fault: failpoints for the fault-injection tests, from Debian's libfiu.
 * The test build (make SAN=1, what make check runs) defines FIU_ENABLE and
 * links libfiu; in every other build FAULT() is 0 and costs nothing.
 *
 *   if (FAULT("disk/write/eio")) res = -EIO;
 *
 * Names are "area/what[/how]"; every one in use is listed in mirrord(8)
 * (FAILPOINTS) for the tests' sake.  Tests switch them on at start-up
 * (BM_FAULTS="enable name=X;enable_random name=Y,probability=0.1") or in a
 * running daemon with fiu-ctrl -f PREFIX PID, PREFIX from BM_FAULT_FIFO. */
#ifndef BLKMIRROR_FAULT_H
#define BLKMIRROR_FAULT_H

#include <stddef.h>

#include <fiu-local.h>

#define FAULT(name) fiu_fail(name)

/* Start-up: reads BM_FAULTS and BM_FAULT_FIFO.  0, or -errno with err
 * set: a bad command, or failpoints asked of a build without them. */
int fault_init(char *err, size_t errlen);

#endif
