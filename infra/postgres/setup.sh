#!/usr/bin/env bash
# Installs PostgreSQL 15 (+ wal2json for CDC) from Debian's packages if missing, then starts a
# private cluster for the tests under $HEADRACE_HOME/postgres on 127.0.0.1:$HEADRACE_PG_PORT.
# Idempotent. `setup.sh stop` stops the cluster. Prints the URL the tests read from
# HEADRACE_TEST_PG_URL (default postgresql://postgres@127.0.0.1:54329/postgres).
set -euo pipefail
HEADRACE_HOME=${HEADRACE_HOME:-$(pwd)/.headrace}
PORT=${HEADRACE_PG_PORT:-54329}
PGVER=15
BIN=/usr/lib/postgresql/$PGVER/bin
DATA=$HEADRACE_HOME/postgres/data
LOG=$HEADRACE_HOME/postgres/server.log

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if [ "${1:-}" = stop ]; then
  if [ -f "$DATA/postmaster.pid" ]; then as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop; fi
  exit 0
fi

need=()
[ -x "$BIN/postgres" ] || need+=("postgresql-$PGVER")
dpkg -s "postgresql-$PGVER-wal2json" >/dev/null 2>&1 || need+=("postgresql-$PGVER-wal2json")
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} from Debian's packages"
  if [ "$(id -u)" != 0 ]; then echo "need root to apt-get install ${need[*]}" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

mkdir -p "$HEADRACE_HOME/postgres"
if [ "$(id -u)" = 0 ]; then chown postgres "$HEADRACE_HOME/postgres"; fi
if [ ! -f "$DATA/PG_VERSION" ]; then
  as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  cat >> "$DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$HEADRACE_HOME/postgres'
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
timezone = 'UTC'
CONF
  echo "host replication all 127.0.0.1/32 trust" >> "$DATA/pg_hba.conf"
fi
if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" 2>/dev/null; then
  :  # a server (ours from an earlier run, or another checkout's) already answers on this port
elif ! as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null
fi
"$BIN/pg_isready" -h 127.0.0.1 -p "$PORT" -t 30 >/dev/null
echo "postgresql://postgres@127.0.0.1:$PORT/postgres"
