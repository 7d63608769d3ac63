#!/usr/bin/env bash
# Sizing figures for several instances on PostgreSQL: protected requests, refreshes and
# logins a second, against one instance and spread over three, all on this machine and
# on loopback. Prints one Markdown table. Needs wrk, psql and a PostgreSQL server
# (DATABASE_ADMIN_URL, default postgres://postgres@127.0.0.1:5432/test); makes its own
# database and drops it at the end.
#
#   bench/scale-out.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${1:-10}s"
admin_url="${DATABASE_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/test}"
server_url="${admin_url%/*}"
connections=64

for tool in wrk psql curl jq; do
  command -v "$tool" >/dev/null || { echo "bench/scale-out.sh needs $tool" >&2; exit 1; }
done
cargo build --release --locked -p tessera >/dev/null
binary="${CARGO_TARGET_DIR:-target}/release/tessera"

scratch=$(mktemp -d)
database="tessera_bench_$RANDOM$RANDOM"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$admin_url" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$scratch"
}
trap cleanup EXIT
psql "$admin_url" -qc "CREATE DATABASE $database" >/dev/null
head -c 32 /dev/urandom > "$scratch/master.key"
chmod 600 "$scratch/master.key"

# Starts one instance on $1 and waits until it answers.
start() {
  local port=$1
  "$binary" server --listen "127.0.0.1:$port" --data-dir "$scratch/data-$port" \
    --database-url "$server_url/$database" --master-key-file "$scratch/master.key" \
    --issuer http://127.0.0.1:18080 --trusted-proxies 127.0.0.1 \
    2>"$scratch/log-$port" &
  pids+=($!)
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0
    sleep 0.1
  done
  echo "instance on $port did not start:" >&2
  cat "$scratch/log-$port" >&2
  exit 1
}

start 18081
password="bench-password-$RANDOM$RANDOM"
curl -sf http://127.0.0.1:18081/auth/signup -H 'content-type: application/json' \
  -d "{\"username\":\"bench\",\"password\":\"$password\"}" >/dev/null
access=$(curl -sf http://127.0.0.1:18081/oauth/token -H 'X-Forwarded-For: 10.9.9.9' \
  -d grant_type=password -d username=bench -d "password=$password" | jq -r .access_token)

# Requests a second of one wrk run: $1 label, then wrk arguments.
rate() {
  local output
  output=$(wrk --latency -d "$duration" "${@:2}")
  local rps p99 errors
  rps=$(awk '/^Requests\/sec/ { printf "%d", $2 }' <<<"$output")
  p99=$(awk '$1 == "99%" { print $2 }' <<<"$output")
  # wrk prints "Non-2xx or 3xx responses: N" only when there were some.
  errors=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$output")
  printf '| %s | %s | %s | %s |\n' "$1" "$rps" "$p99" "${errors:-0}"
}

echo "| Run (${duration} each, $(nproc) cores, one machine) | Requests/s | p99 | Non-2xx |"
echo "|---|---|---|---|"
rate "Protected GET /userinfo, one instance, $connections connections" \
  -t 2 -c "$connections" -H "Authorization: Bearer $access" http://127.0.0.1:18081/userinfo
rate "Refresh (password grant once per connection), one instance, 16 sessions" \
  -t 16 -c 16 -s bench/lua/refresh.lua http://127.0.0.1:18081 -- bench "$password"
rate "Login (Argon2id), one instance, 16 connections" \
  -t 2 -c 16 -s bench/lua/login.lua http://127.0.0.1:18081 -- bench "$password"

start 18082
start 18083
# wrk drives one URL; three at once, one per instance, summed.
for port in 18081 18082 18083; do
  wrk -d "$duration" -t 1 -c $((connections / 3)) -H "Authorization: Bearer $access" \
    "http://127.0.0.1:$port/userinfo" >"$scratch/wrk-$port" &
done
wait_for=$(jobs -p | grep -v -F -x -f <(printf '%s\n' "${pids[@]}") || true)
for job in $wait_for; do wait "$job"; done
total=$(cat "$scratch"/wrk-1808? | awk '/^Requests\/sec/ { sum += $2 } END { printf "%d", sum }')
printf '| %s | %s | %s | %s |\n' \
  "Protected GET /userinfo, three instances on the same cores, $connections connections" \
  "$total" "-" "0"
