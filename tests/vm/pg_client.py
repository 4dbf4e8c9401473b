#!/usr/bin/python3
# tests/vm/pg_client.py: a PostgreSQL client for tests/vm/test-vm-postgres.sh
# that logs every commit acknowledged to it.
#
#   pg_client.py --host SOCKDIR --port PORT --log FILE numbered
#   pg_client.py --host SOCKDIR --port PORT --log FILE load --payload BYTES
#
# One connection, one transaction at a time, ids 1, 2, 3... in order, until
# killed:
#   numbered  INSERT INTO acked (id, note) VALUES (id, ...), autocommit: one
#             row per transaction.
#   load      BEGIN; INSERT INTO load (id) VALUES (id);
#             pg_logical_emit_message(true, 'load', BYTES random bytes);
#             COMMIT: each commit puts at least BYTES of incompressible data
#             into the WAL (the message is transactional, WAL only, so the
#             tables stay small), to make the link to the peer lag.
# Only once commit() has returned is the id appended to FILE, one line per
# id, with a single write(2) on a file opened O_APPEND (no buffering in
# Python: the line is in the file before the next transaction begins).
# FILE therefore lists exactly the commits the server acknowledged, except
# possibly the last one (committed, then killed before the line was
# written), which the test allows for.
import argparse
import os
import sys

import psycopg2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True, help="the server's socket directory")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dbname", default="postgres")
    ap.add_argument("--user", default="postgres")
    ap.add_argument("--log", required=True, help="acknowledged ids go here")
    ap.add_argument("--payload", type=int, default=32768, help="load: bytes per commit")
    ap.add_argument("mode", choices=["numbered", "load"])
    a = ap.parse_args()

    conn = psycopg2.connect(host=a.host, port=a.port, dbname=a.dbname, user=a.user)
    conn.autocommit = a.mode == "numbered"
    cur = conn.cursor()
    fd = os.open(a.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o644)
    i = 0
    while True:
        i += 1
        if a.mode == "numbered":
            # autocommit: execute() returns once the COMMIT is acknowledged.
            cur.execute("INSERT INTO acked (id, note) VALUES (%s, %s)",
                        (i, "commit %d" % i))
        else:
            cur.execute("INSERT INTO load (id) VALUES (%s)", (i,))
            cur.execute("SELECT pg_logical_emit_message(true, 'load', %s)",
                        (psycopg2.Binary(os.urandom(a.payload)),))
            conn.commit()
        if os.write(fd, b"%d\n" % i) <= 0:
            sys.exit("pg_client: cannot write %s" % a.log)


if __name__ == "__main__":
    main()
