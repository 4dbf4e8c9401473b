#!/usr/bin/env bash
# Sync protocol: a FLUSH (and a FUA write) through the primary completes
# only once the data is on the peer's disk too, and the peer logs every
# application flush it made durable (the link's own flushes are not
# counted).
# timeout: 60
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
bm_setup
bm_pair 32M
bm_pair_initial_sync

flushes() { grep -c "flush from the peer's application" "$T/rb-beta.log" || true; }
before=$(flushes)
"$PYTHON" - "$UA" "$T/rb.img" <<'PY'
import nbd, os, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
fd = os.open(sys.argv[2], os.O_RDONLY)
h.pwrite(b"F" * 8192, 1 << 20)
h.flush()
# The flush returned: the peer has the data (read its backing file directly).
assert os.pread(fd, 8192, 1 << 20) == b"F" * 8192, "flushed data not on the peer's disk"
h.pwrite(b"U" * 4096, 2 << 20, flags=nbd.CMD_FLAG_FUA)
assert os.pread(fd, 4096, 2 << 20) == b"U" * 4096, "FUA write not on the peer's disk"
h.flush()
h.flush()
PY
after=$(flushes)
assert_eq "$after" $((before + 3)) "the peer logged each of the three application flushes"
assert_contains "$T/rb-beta.log" "flush from the peer's application #$after: disk synced" "numbered"
