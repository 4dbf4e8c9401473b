#!/usr/bin/python3
"""ctl_raw.py: send raw bytes to mirrord's control socket.

    ctl_raw.py SOCKET < REQUEST-BYTES

Sends standard input as it is (any bytes, any number of lines), closes the
sending side, and prints every line the daemon sends back, then "<closed>"
once the daemon has closed the connection, or "<open>" if it has not after
5 s.  The daemon may close the connection while the request is still being
sent (a request too long to take): that is a close, not an error.
"""
import socket
import sys
import time


def main(path):
    data = sys.stdin.buffer.read()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    got = b""
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass
    end = time.monotonic() + 5
    state = "<open>"
    try:
        while time.monotonic() < end:
            chunk = s.recv(65536)
            if not chunk:
                state = "<closed>"
                break
            got += chunk
    except (BrokenPipeError, ConnectionResetError):
        state = "<closed>"
    except socket.timeout:
        pass
    sys.stdout.write(got.decode("utf-8", "replace"))
    if got and not got.endswith(b"\n"):
        sys.stdout.write("\n")
    print(state)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
