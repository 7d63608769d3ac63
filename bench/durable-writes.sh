#!/usr/bin/env bash
# What durable commits cost on this machine's disk: refresh-token rotations a second
# through the real SQLite store with synchronous=FULL (what the server runs) and with
# NORMAL, 16 concurrent clients, in release mode. The database goes in the temporary
# folder, so point TMPDIR at the disk the data dir will live on; on tmpfs both figures
# are the same, since nothing is ever synced.
#
#   bench/durable-writes.sh [seconds per setting, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."

DURABLE_WRITES_SECS="${1:-10}" cargo test --release --locked -p tessera-server \
  --test durable_writes -- --ignored --nocapture 2>&1 \
  | grep -E '^(refresh rotations|  [a-z])'
