#!/usr/bin/env bash
# Install (as root, on Debian) and start the throw-away services the tests use: a PostgreSQL cluster, a
# mosquitto MQTT broker (with medtwin's broker config) and headless Chromium + chromedriver for browser tests.
# Source it: it exports MEDTWIN_TEST_POSTGRES_URL, MEDTWIN_TEST_MQTT_URL, MEDTWIN_TEST_CHROMIUM and
# MEDTWIN_TEST_CHROMEDRIVER; stop_services stops what it started.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"; else return 1; fi; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

ensure_packages() {
  local missing=()
  [ -n "$(pg_bin)" ] || missing+=(postgresql)
  [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
  fc-list 2>/dev/null | grep -qi dejavu || missing+=(fonts-dejavu-core)
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

# The broker runs with deploy/mosquitto/medtwin.conf (no QoS 1 queue limits) on a random port.
# MEDTWIN_TEST_MOSQUITTO_CONF lets broker-restart tests start it again with the same config.
start_mosquitto() {
  [ -x /usr/sbin/mosquitto ] || return 0
  local dir port here
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  dir="$(mktemp -d /tmp/medtwin-mqtt.XXXXXX)"
  port="${MEDTWIN_TEST_MQTT_PORT:-$((20000 + RANDOM % 20000))}"
  { cat "$here/deploy/mosquitto/medtwin.conf"
    echo "listener $port 127.0.0.1"
    echo "persistence_location $dir/"
    echo "pid_file $dir/mosquitto.pid"
    echo "log_dest file $dir/mosquitto.log"
  } > "$dir/mosquitto.conf"
  # As root mosquitto drops to the `mosquitto` user, which must own the persistence folder.
  if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then chown mosquitto "$dir"; fi
  /usr/sbin/mosquitto -c "$dir/mosquitto.conf" -d
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  export MEDTWIN_TEST_MQTT_URL="mqtt://127.0.0.1:$port"
  export MEDTWIN_TEST_MOSQUITTO_CONF="$dir/mosquitto.conf"
  MQTT_DIR="$dir"
  echo "mosquitto test broker on port $port" >&2
}

find_browser() {
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    export MEDTWIN_TEST_CHROMIUM=/usr/bin/chromium MEDTWIN_TEST_CHROMEDRIVER=/usr/bin/chromedriver
  fi
}

stop_services() {
  if [ -n "${PG_DIR:-}" ]; then "${PG_STOP[@]}" >/dev/null 2>&1 || true; rm -rf "$PG_DIR"; fi
  if [ -n "${MQTT_DIR:-}" ]; then
    [ -f "$MQTT_DIR/mosquitto.pid" ] && kill "$(cat "$MQTT_DIR/mosquitto.pid")" 2>/dev/null || true
    rm -rf "$MQTT_DIR"
  fi
}
