#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests: installs Debian's server when missing, runs it as the
# `postgres` user from a temporary directory on a loopback port.
#   source scripts/pg.sh && pg_start && echo "$CREDVAULT_TEST_DATABASE_URL" ; pg_stop
PG_PORT=${PG_PORT:-55432}

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$d" ] && echo "$d"
}

pg_start() {
  if [ -z "$(pg_bin)" ]; then
    echo "installing PostgreSQL from Debian's packages" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  local bin; bin=$(pg_bin)
  PG_DIR=$(mktemp -d /tmp/credvault-pg.XXXXXX)
  chown postgres "$PG_DIR"
  local as=(runuser -u postgres --)
  [ "$(id -u)" = 0 ] || as=()
  "${as[@]}" "$bin/initdb" -D "$PG_DIR/data" --auth=trust -U postgres >/dev/null
  # PG_WRAP (for example "taskset -c 0") wraps the server start, for benchmarks.
  ${PG_WRAP:-} "${as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=on" start >/dev/null
  export PG_DIR PG_BIN="$bin"
  export CREDVAULT_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
}

pg_stop() {
  [ -n "${PG_DIR:-}" ] || return 0
  local as=(runuser -u postgres --)
  [ "$(id -u)" = 0 ] || as=()
  "${as[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
