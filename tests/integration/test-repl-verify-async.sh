#!/usr/bin/env bash
# test-repl-verify.sh with protocol = async: verify and checksum resync send
# checksum requests, which async must not complete as writes.
# timeout: 180
VERIFY_PROTO=async exec bash "$(dirname "$0")/test-repl-verify.sh"
