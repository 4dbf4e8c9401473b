#!/usr/bin/python3
"""bench/qmp.py: a tiny QMP client (standard library only) for bench/run.

Drives qemu-storage-daemon's blockdev-mirror job over its QMP unix socket:

  qmp.py SOCK start-mirror JOB SRC-NODE TARGET-NBD-SOCK TIMEOUT
      blockdev-add an nbd node for the target, start blockdev-mirror
      (sync=full, copy-mode=write-blocking, granularity=4096), and wait until
      the job is ready (the initial full copy is done).  Prints the seconds
      from the blockdev-mirror command to "ready".
  qmp.py SOCK check JOB
      exit 0 if JOB still exists, is ready and reports no I/O error; else
      print what is wrong and exit 1.
  qmp.py SOCK finish JOB TIMEOUT
      block-job-cancel on the ready job (the mirror then completes with the
      target in sync) and wait for BLOCK_JOB_COMPLETED without an error.
  qmp.py SOCK quit
      ask the daemon to exit.

Exit status 0 on success, 1 on any failure (message on stderr).
"""
import json
import socket
import sys
import time


class QMP:
    def __init__(self, path, timeout=30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        greeting = self._read()
        if "QMP" not in greeting:
            raise SystemExit(f"qmp: no QMP greeting: {greeting}")
        self.cmd("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SystemExit("qmp: the daemon closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read()
            if "event" in r:
                self.events.append(r)
                continue
            if "error" in r:
                raise SystemExit(f"qmp: {name}: {r['error'].get('class')}: "
                                 f"{r['error'].get('desc')}")
            return r.get("return")

    def wait_event(self, name, deadline):
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == name:
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemExit(f"qmp: no {name} event in time")
            self.sock.settimeout(left)
            r = self._read()
            if "event" in r:
                self.events.append(r)

    def job(self, job_id):
        for j in self.cmd("query-block-jobs"):
            if j.get("device") == job_id:
                return j
        return None


def start_mirror(q, job_id, src, target_sock, timeout):
    q.cmd("blockdev-add", driver="nbd", **{"node-name": "mirror-target"},
          server={"type": "unix", "path": target_sock})
    t0 = time.monotonic()
    q.cmd("blockdev-mirror", **{"job-id": job_id, "device": src,
                                "target": "mirror-target", "sync": "full",
                                "copy-mode": "write-blocking", "granularity": 4096})
    deadline = t0 + timeout
    while True:
        j = q.job(job_id)
        if j is None:
            raise SystemExit(f"qmp: mirror job {job_id} ended before it was ready "
                             f"(events: {q.events})")
        if j.get("ready"):
            break
        if j.get("io-status", "ok") != "ok":
            raise SystemExit(f"qmp: mirror job {job_id}: io-status {j['io-status']}")
        if time.monotonic() > deadline:
            raise SystemExit(f"qmp: mirror job {job_id} not ready after {timeout} s "
                             f"({j.get('offset')}/{j.get('len')} bytes)")
        time.sleep(0.05)
    print(f"{time.monotonic() - t0:.3f}")


def check(q, job_id):
    j = q.job(job_id)
    if j is None:
        raise SystemExit(f"qmp: mirror job {job_id} is gone (it failed or ended; "
                         f"writes no longer reach the target)")
    if not j.get("ready") or j.get("status") != "ready":
        raise SystemExit(f"qmp: mirror job {job_id} is {j.get('status')}, not ready")
    if j.get("io-status", "ok") != "ok":
        raise SystemExit(f"qmp: mirror job {job_id}: io-status {j['io-status']}")


def finish(q, job_id, timeout):
    check(q, job_id)
    deadline = time.monotonic() + timeout
    q.cmd("block-job-cancel", device=job_id)
    while True:
        e = q.wait_event("BLOCK_JOB_COMPLETED", deadline)
        d = e.get("data", {})
        if d.get("device") != job_id:
            continue
        if d.get("error"):
            raise SystemExit(f"qmp: mirror job {job_id} completed with an error: "
                             f"{d['error']}")
        if d.get("offset") != d.get("len"):
            raise SystemExit(f"qmp: mirror job {job_id} completed at "
                             f"{d.get('offset')}/{d.get('len')} bytes")
        return


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    path, op, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    q = QMP(path)
    if op == "start-mirror" and len(args) == 4:
        start_mirror(q, args[0], args[1], args[2], float(args[3]))
    elif op == "check" and len(args) == 1:
        check(q, args[0])
    elif op == "finish" and len(args) == 2:
        finish(q, args[0], float(args[1]))
    elif op == "quit" and not args:
        q.cmd("quit")
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
