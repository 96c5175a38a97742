#!/usr/bin/env bash
# Read benchmarks: credvault's authenticated, decrypted, durably audited secret read (native API, token)
# and application read (CCP door, AppID + source rule) on SQLite and on PostgreSQL, against a bare axum JSON hello-world, in the same run, with the same load tool (wrk)
# and the same pinning: servers (and PostgreSQL) on core 0, load generator on core 1.
#
#   bench/run.sh                       # 1,000 credentials, 16 and 64 connections, 10 s each
#   CREDS=1000000 BACKENDS=sqlite bench/run.sh   # seeded with bench/gen.py | credvault cred import -
#   BACKENDS=sqlite bench/run.sh       # skip PostgreSQL
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CREDS=${CREDS:-1000}
CONNS=${CONNS:-"16 64"}
SERVER_CORE=${SERVER_CORE:-0}
BACKENDS=${BACKENDS:-"sqlite postgres"}
LOAD_CORE=${LOAD_CORE:-1}

if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk
fi
cargo build --release -q -p credvault -p bench-hello

work=$(mktemp -d)
pids=()
# shellcheck source=scripts/pg.sh
source scripts/pg.sh
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; pg_stop; rm -rf "$work"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 did not open" >&2; exit 1; }

taskset -c "$SERVER_CORE" target/release/bench-hello 127.0.0.1:8300 & pids+=($!)
wait_port 8300

declare -A port spid
p=8301
for backend in $BACKENDS; do
  args=(--dev --listen "127.0.0.1:$p" --data-dir "$work/$backend" --log-level warn)
  if [ "$backend" = postgres ]; then
    PG_PORT=55490 PG_WRAP="taskset -c $SERVER_CORE" pg_start
    args+=(--storage postgres --database-url "$CREDVAULT_TEST_DATABASE_URL")
  fi
  taskset -c "$SERVER_CORE" target/release/credvault server "${args[@]}" 2>"$work/$backend.log" & pids+=($!)
  spid[$backend]=$!
  wait_port "$p"
  port[$backend]=$p
  p=$((p + 1))
done

export TOKEN IDS_FILE
for backend in $BACKENDS; do
  url="http://127.0.0.1:${port[$backend]}"
  root=$(cat "$work/$backend/dev-root-token")
  curl -sf -o /dev/null -H "X-Vault-Token: $root" -H 'content-type: application/json' -d '{"name":"BenchSafe"}' "$url/api/v1/safes"
  curl -sf -o /dev/null -H "X-Vault-Token: $root" -H 'content-type: application/json' -d '{"app_id":"Bench","sources":["127.0.0.1"]}' "$url/api/v1/apps"
  curl -sf -o /dev/null -H "X-Vault-Token: $root" -H 'content-type: application/json' -d '{"type":"safe","name":"BenchSafe"}' "$url/api/v1/apps/Bench/allow"
  python3 bench/gen.py "$CREDS" BenchSafe |
    CREDVAULT_ADDR="$url" CREDVAULT_TOKEN="$root" target/release/credvault cred import - --ids-out "$work/ids-$backend.txt"
  echo "seeded $(wc -l < "$work/ids-$backend.txt") credentials on $backend" >&2
done
export N=$CREDS

warm() { # url script: an unrecorded run first, so caches and the page cache are warm
  taskset -c "$LOAD_CORE" wrk -t1 -c16 -d"${WARMUP:-5s}" -s "$2" "$1" >/dev/null
}

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

for backend in $BACKENDS; do
  TOKEN=$(cat "$work/$backend/dev-root-token") IDS_FILE="$work/ids-$backend.txt" \
    warm "http://127.0.0.1:${port[$backend]}" bench/secret_read.lua
  warm "http://127.0.0.1:${port[$backend]}" bench/ccp_read.lua
done

echo "| target | connections | requests/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|---|"
for c in $CONNS; do
  run "axum hello-world (ceiling)" "http://127.0.0.1:8300/hello" "" "$c"
  for backend in $BACKENDS; do
    TOKEN=$(cat "$work/$backend/dev-root-token")
    IDS_FILE="$work/ids-$backend.txt"
    run "credvault secret read, $backend, $CREDS creds" "http://127.0.0.1:${port[$backend]}" bench/secret_read.lua "$c"
    run "credvault CCP AppID read, $backend, $CREDS creds" "http://127.0.0.1:${port[$backend]}" bench/ccp_read.lua "$c"
  done
done
echo
for backend in $BACKENDS; do
  echo "credvault server on $backend, RSS after the run: $(awk '/VmRSS/ {print $2, $3}' "/proc/${spid[$backend]}/status")"
done
for backend in $BACKENDS; do
  echo "audit chain on $backend after the run: $(curl -s -X POST -H "X-Vault-Token: $(cat "$work/$backend/dev-root-token")" "http://127.0.0.1:${port[$backend]}/api/v1/audit/verify")"
done
