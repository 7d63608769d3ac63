#!/usr/bin/env bash
# Soak test: a bounded run of mixed traffic (logins, failed logins, renewals, protected
# reads and writes, logouts) against a real server on SQLite; fails on any unexpected
# answer or connection error, or when the server's resident memory grows by 10 % or
# more from the first window after warm-up to the last. Prints a summary either way.
#
#   bench/soak.sh [seconds, default 600]
#
# SOAK_CLIENTS (default 16) sets the concurrent clients; SOAK_PROFILE=debug skips the
# release build (CI does, for its short run).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-600}"
profile=(--release)
[ "${SOAK_PROFILE:-release}" = debug ] && profile=()

SOAK_SECS="$seconds" cargo test "${profile[@]}" --locked -p tessera --test soak \
  -- --ignored --nocapture
