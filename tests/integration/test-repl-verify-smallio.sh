#!/usr/bin/env bash
# test-repl-verify.sh with max-io-size = 16K, below the 64 KiB one checksum
# covers by default: resync buffers are max-io-size long, and the peer
# refuses checksum requests longer than that.
# timeout: 180
VERIFY_MAXIO=16384 exec bash "$(dirname "$0")/test-repl-verify.sh"
