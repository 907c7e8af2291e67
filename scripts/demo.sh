#!/usr/bin/env bash
# Run the StreetLoop demo: local PostgreSQL (unless DATABASE_URL is set),
# migrations, demo seed data, the background worker and gunicorn.
# Normally started by `make demo` (which first runs `make venv pg-install`).
# Ctrl-C stops everything this script started.
#
# Environment: PORT (5000), DATABASE_URL (default: local cluster, db streetloop),
#              STREETLOOP_SECRET_KEY (default: generated once into var/secret_key),
#              STREETLOOP_PGPORT / STREETLOOP_PGDATA (see scripts/pg.sh),
#              STREETLOOP_DEMO_BIN (default .venv/bin): where streetloop and gunicorn are.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"

PG="$ROOT/scripts/pg.sh"
BIN=${STREETLOOP_DEMO_BIN:-$ROOT/.venv/bin}
HTTP_PORT=${PORT:-5000}

say() { echo "demo: $*" >&2; }
die() { echo "demo: error: $*" >&2; exit 1; }

[[ -x "$BIN/streetloop" && -x "$BIN/gunicorn" ]] || die "$BIN/streetloop or gunicorn missing; run: make venv"

started_db=0
worker_pid=""
web_pid=""
cleaning=0

stop_proc() {  # stop_proc PID NAME: TERM, wait up to 15s, then KILL
    local pid=$1 name=$2 i
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$name did not stop in 15s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    ((cleaning)) && return
    cleaning=1
    trap '' INT TERM
    stop_proc "$web_pid" "gunicorn"
    stop_proc "$worker_pid" "worker"
    if ((started_db)); then
        "$PG" stop || true
    fi
    exit "$rc"
}
trap cleanup EXIT
# Ctrl-C / TERM is the normal way to stop the demo: clean up and exit 0.
trap 'say "interrupted; shutting down"; exit 0' INT TERM

# --- database -------------------------------------------------------------
if [[ -z "${DATABASE_URL:-}" ]]; then
    if ! "$PG" status >/dev/null; then
        "$PG" start
        started_db=1
    fi
    "$PG" createdb streetloop
    DATABASE_URL=$("$PG" url streetloop)
    export DATABASE_URL
else
    say "using DATABASE_URL from the environment"
fi

# --- secret key -----------------------------------------------------------
if [[ -z "${STREETLOOP_SECRET_KEY:-}" ]]; then
    keyfile="$ROOT/var/secret_key"
    if [[ ! -s "$keyfile" ]]; then
        mkdir -p "$ROOT/var"
        (umask 077 && "$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(48))' >"$keyfile.tmp")
        mv -f "$keyfile.tmp" "$keyfile"
        say "generated a secret key in $keyfile"
    fi
    STREETLOOP_SECRET_KEY=$(<"$keyfile")
    export STREETLOOP_SECRET_KEY
fi

# The demo city is Andorra: show Open311 times in its local time.
export STREETLOOP_TIMEZONE=${STREETLOOP_TIMEZONE:-Europe/Andorra}

# Road travel times for dispatch: Valhalla tiles from the Andorra extract (about a
# second to build; later runs see they match the extract and skip the build).
export STREETLOOP_ROAD_DATA=${STREETLOOP_ROAD_DATA:-$ROOT/var/roads}

# --- schema and demo data -------------------------------------------------
say "migrating database"
"$BIN/streetloop" db upgrade
say "building road data"
"$BIN/streetloop" roads build --pbf "$ROOT/data/osm/andorra.osm.pbf" --out "$STREETLOOP_ROAD_DATA"
# The maps' offline basemap, from the same extract (about a second; later runs see it was
# built from this same file and skip it).
say "building the basemap"
"$BIN/streetloop" basemap build --pbf "$ROOT/data/osm/andorra.osm.pbf"
say "seeding demo data"
"$BIN/streetloop" seed demo
if ! credentials=$("$BIN/streetloop" seed credentials); then
    credentials="(could not list them: '$BIN/streetloop seed credentials' failed)"
fi

# --- processes ------------------------------------------------------------
# The worker outlives a database restart by itself; if it still exits (a crash, status
# != 0, or killed), it is started again after a back-off (1 s, doubling to 30 s, reset
# after a minute of running) instead of taking the demo down with it.
worker_started=0
worker_backoff=1
worker_due=0
start_worker() {
    "$BIN/streetloop" worker &
    worker_pid=$!
    worker_started=$SECONDS
}
start_worker
base="http://127.0.0.1:$HTTP_PORT"
cat <<BANNER

==========================================================================
 StreetLoop demo: $base
   Console (dispatch, rosters, review, intake): $base/console/
   Crew app (open on a phone, or a 390x844 window): $base/crew/
   API docs:          $base/docs
   OpenAPI:           $base/openapi.json
   Open311 discovery: $base/open311/v2/discovery.json
   Open311 api_key:   demo-open311-key

 Logins (password for all: demo)
   dispatcher@demo   supervisor@demo   admin@demo   calltaker@demo
   crews: <crew code>@demo
$(sed 's/^/     /' <<<"$credentials")

 Database: $(sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$DATABASE_URL")
 Ctrl-C stops the server and the worker$( ((started_db)) && echo " and the local PostgreSQL")
==========================================================================

BANNER

# --limit-request-line 0: an Open311 GET may name 1,000 service_request_id values (about
# 10 KB of URL), more than gunicorn's largest fixed limit (8,190 bytes); the app bounds
# the query string itself (api/open311/routes.py, MAX_QUERY_BYTES), with a GeoReport 400.
"$BIN/gunicorn" -w 2 --threads 4 --limit-request-line 0 -b "127.0.0.1:$HTTP_PORT" 'api:create_app()' &
web_pid=$!

# Run until gunicorn exits (or we get a signal, see the traps); a dead worker is restarted.
while kill -0 "$web_pid" 2>/dev/null; do
    if [[ -n "$worker_pid" ]] && ! kill -0 "$worker_pid" 2>/dev/null; then
        wait "$worker_pid" && wrc=0 || wrc=$?
        worker_pid=""
        ((SECONDS - worker_started >= 60)) && worker_backoff=1
        say "worker exited (status $wrc); restarting it in ${worker_backoff}s"
        worker_due=$((SECONDS + worker_backoff))
        worker_backoff=$((worker_backoff * 2 > 30 ? 30 : worker_backoff * 2))
    fi
    if [[ -z "$worker_pid" ]] && ((SECONDS >= worker_due)); then
        start_worker
        say "worker restarted (pid $worker_pid)"
    fi
    sleep 1 &
    wait $! || true
done
wait "$web_pid" && rc=0 || rc=$?
say "gunicorn exited (status $rc)"
# Ctrl-C in a terminal reaches gunicorn and the worker too (one process group);
# they stop gracefully with status 0, which is a clean stop, not an error.
exit "$rc"
