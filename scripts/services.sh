#!/usr/bin/env bash
# Install (as root, on Debian) and start the throw-away services the tests use: a PostgreSQL cluster.
# Source it: it exports MEDTWIN_TEST_POSTGRES_URL and registers cleanup in the caller's EXIT trap.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"; else return 1; fi; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

ensure_packages() {
  local missing=()
  [ -n "$(pg_bin)" ] || missing+=(postgresql)
  if [ ${#missing[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null && as_root true; then
      echo "installing ${missing[*]} ..." >&2
      as_root apt-get update -qq
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      echo "cannot install ${missing[*]} (not root / no apt-get): service tests will skip" >&2
    fi
  fi
}

start_postgres() {
  local bin; bin="$(pg_bin)"
  [ -n "$bin" ] || return 0
  local dir port run
  dir="$(mktemp -d /tmp/medtwin-pg.XXXXXX)"
  port="${MEDTWIN_TEST_PG_PORT:-$((20000 + RANDOM % 20000))}"
  run=()
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home "$dir" postgres
    chown postgres "$dir"; run=(runuser -u postgres --)
  fi
  "${run[@]}" "$bin/initdb" -D "$dir/data" -U medtwin --auth=trust -E UTF8 >/dev/null
  "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null
  "${run[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U medtwin medtwin_test
  export MEDTWIN_TEST_POSTGRES_URL="postgresql+psycopg://medtwin@127.0.0.1:$port/medtwin_test"
  export MEDTWIN_TEST_PG_BIN="$bin"
  PG_STOP=("${run[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop)
  PG_DIR="$dir"
  echo "PostgreSQL test server on port $port" >&2
}

stop_services() {
  if [ -n "${PG_DIR:-}" ]; then "${PG_STOP[@]}" >/dev/null 2>&1 || true; rm -rf "$PG_DIR"; fi
}
