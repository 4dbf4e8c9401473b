#!/usr/bin/env bash
# test-disk-meta-eio.sh with on-io-error = pass-on: a metadata error still
# detaches (only data errors are passed on); before, the error stayed and
# every later write failed with EIO.
# timeout: 120
META_EIO_POLICY=pass-on exec bash "$(dirname "$0")/test-disk-meta-eio.sh"
