#!/usr/bin/env bash
# Secret-read benchmark: credvault's authenticated, decrypted, durably audited secret read against a
# bare axum JSON hello-world, in the same run, with the same load tool (wrk) and the same pinning:
# servers on core 0, load generator on core 1.
#
#   bench/run.sh                       # 1,000 credentials, 16 and 64 connections, 10 s each
#   CREDS=10000 DURATION=30s bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CREDS=${CREDS:-1000}
CONNS=${CONNS:-"16 64"}
SERVER_CORE=${SERVER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}

if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk
fi
cargo build --release -q -p credvault -p bench-hello

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 did not open" >&2; exit 1; }

taskset -c "$SERVER_CORE" target/release/bench-hello 127.0.0.1:8300 & pids+=($!)
taskset -c "$SERVER_CORE" target/release/credvault server --dev --listen 127.0.0.1:8301 \
  --data-dir "$work/data" --log-level warn 2>"$work/server.log" & pids+=($!)
cv_pid=$!
wait_port 8300
wait_port 8301

export TOKEN
TOKEN=$(cat "$work/data/dev-root-token")
export IDS_FILE="$work/ids.txt"
python3 bench/seed.py http://127.0.0.1:8301 "$TOKEN" "$CREDS" > "$IDS_FILE"
echo "seeded $(wc -l < "$IDS_FILE") credentials" >&2

run() { # name url script conns
  local out
  if [ -n "$3" ]; then
    out=$(taskset -c "$LOAD_CORE" wrk -t1 -c"$4" -d"$DURATION" --latency -s "$3" "$2")
  else
    out=$(taskset -c "$LOAD_CORE" wrk -t1 -c"$4" -d"$DURATION" --latency "$2")
  fi
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$4" "$rps" "$p50" "$p99" "${non2xx:-0}"
}

echo "| target | connections | requests/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|---|"
for c in $CONNS; do
  run "axum hello-world (ceiling)" "http://127.0.0.1:8300/hello" "" "$c"
  run "credvault secret read, $CREDS creds" "http://127.0.0.1:8301" bench/secret_read.lua "$c"
done
rss=$(awk '/VmRSS/ {print $2, $3}' "/proc/$cv_pid/status")
echo
echo "credvault server RSS after the run: $rss"
audit=$(curl -s -H "X-Vault-Token: $TOKEN" http://127.0.0.1:8301/api/v1/audit/verify -X POST)
echo "audit chain after the run: $audit"
