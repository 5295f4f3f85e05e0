#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests (tests/test_sources.py).
#
#   eval "$(bash tests/services/postgres.sh)"    # start (or reuse) it; sets TRIALS_TEST_POSTGRES_URL
#   bash tests/services/postgres.sh stop          # stop it and delete its files
#
# Installs PostgreSQL with apt-get when it is missing (Debian), creates a cluster in a temporary
# folder owned by the `postgres` user (initdb refuses to run as root), starts it on 127.0.0.1 on a
# free port (55432 or the next free one), with a database and a password user, and prints one
# `export TRIALS_TEST_POSTGRES_URL=...` line on stdout; everything else goes to stderr. Running it
# again while the server runs only prints the line again.
set -euo pipefail

ROOT="${TRIALS_PG_DIR:-/tmp/trials-postgres}"
FIRST_PORT="${TRIALS_PG_PORT:-55432}"
NAME=trials_test
log() { echo "postgres.sh: $*" >&2; }

exec 9>"$ROOT.lock"
flock 9  # two runs at once must not both create the cluster

if [ "$(id -u)" = 0 ]; then
    OWNER=postgres
    as_owner() { runuser -u postgres -- "$@"; }
else
    OWNER="$(id -un)"
    as_owner() { "$@"; }
fi

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

if [ "${1:-}" = stop ]; then
    BIN="$(find_bin)"
    if [ -n "$BIN" ] && [ -f "$ROOT/data/PG_VERSION" ]; then
        as_owner "$BIN/pg_ctl" -D "$ROOT/data" -m fast -w stop >&2 || true
    fi
    rm -rf "$ROOT"
    log "stopped; removed $ROOT"
    exit 0
fi

print_url() {
    echo "export TRIALS_TEST_POSTGRES_URL='postgresql+psycopg://$NAME:$(cat "$ROOT/password")@127.0.0.1:$(cat "$ROOT/port")/$NAME'"
}

BIN="$(find_bin)"
# Quick path: our server already answers.
if [ -n "$BIN" ] && [ -s "$ROOT/port" ] && [ -s "$ROOT/password" ] \
   && as_owner "$BIN/pg_ctl" -D "$ROOT/data" status >/dev/null 2>&1 \
   && "$BIN/pg_isready" -q -h 127.0.0.1 -p "$(cat "$ROOT/port")"; then
    print_url
    exit 0
fi

if [ -z "$BIN" ]; then
    [ "$(id -u)" = 0 ] || { log "PostgreSQL is not installed; run as root to install it"; exit 1; }
    log "installing PostgreSQL with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q postgresql >&2; then
        apt-get update -q >&2
        apt-get install -y -q postgresql >&2
    fi
    BIN="$(find_bin)"
    [ -n "$BIN" ] || { log "apt-get installed no /usr/lib/postgresql/*/bin"; exit 1; }
fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [ -d "$ROOT" ] && [ "$(stat -c %U "$ROOT")" != "$OWNER" ]; then
    log "$ROOT exists but is not owned by $OWNER; remove it or set TRIALS_PG_DIR"
    exit 1
fi
mkdir -p "$ROOT/run"
chown "$OWNER" "$ROOT" "$ROOT/run"
chmod 700 "$ROOT"

if [ ! -f "$ROOT/data/PG_VERSION" ]; then
    rm -rf "$ROOT/data"
    log "creating a cluster in $ROOT/data"
    head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$ROOT/password"
    as_owner "$BIN/initdb" -D "$ROOT/data" -A peer --auth-host=scram-sha-256 -E UTF8 \
        --locale=C.UTF-8 --no-sync >"$ROOT/initdb.log" 2>&1 \
        || { cat "$ROOT/initdb.log" >&2; exit 1; }
    rm -f "$ROOT/port"
fi

PORT="$(cat "$ROOT/port" 2>/dev/null || echo "$FIRST_PORT")"
if ! as_owner "$BIN/pg_ctl" -D "$ROOT/data" status >/dev/null 2>&1; then
    for _ in $(seq 100); do port_free "$PORT" && break; PORT=$((PORT + 1)); done
    port_free "$PORT" || { log "no free port from $FIRST_PORT on"; exit 1; }
    log "starting on 127.0.0.1:$PORT"
    # 9>&-: the server must not inherit the lock, or the next run would wait for it forever.
    as_owner "$BIN/pg_ctl" -D "$ROOT/data" -l "$ROOT/data/server.log" -w -t 60 start \
        -o "-p $PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$ROOT/run -c fsync=off" >&2 9>&- \
        || { tail -n 20 "$ROOT/data/server.log" >&2; exit 1; }
    echo "$PORT" >"$ROOT/port"
fi

# Idempotent: the role gets the stored password, the database is created once.
PSQL=("$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$ROOT/run" -p "$PORT" -d postgres)
as_owner "${PSQL[@]}" >&2 <<SQL
SELECT format('CREATE ROLE $NAME LOGIN') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$NAME')\gexec
ALTER ROLE $NAME LOGIN PASSWORD '$(cat "$ROOT/password")';
SELECT 'CREATE DATABASE $NAME OWNER $NAME' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$NAME')\gexec
SQL
print_url
