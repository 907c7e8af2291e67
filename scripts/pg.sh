#!/usr/bin/env bash
# Project-local PostgreSQL (+PostGIS) cluster for development and tests.
#
# Usage: scripts/pg.sh <command> [args]
#   install          install PostgreSQL + PostGIS from OS packages (apt) if missing
#   start            initdb on first use, then start (idempotent)
#   stop             fast shutdown (idempotent)
#   status           print state; exit 0 when running, 3 when stopped
#   url [DBNAME]     print postgresql+psycopg://postgres@127.0.0.1:PORT/DBNAME (default: postgres)
#   createdb NAME    create database NAME if it does not exist
#   psql [ARGS...]   run psql against the cluster (defaults: user postgres, db postgres)
#   destroy          stop and delete the cluster's files (used by `make distclean`)
#   replica start    a streaming replica of the running cluster: pg_basebackup -R into
#                    <base>/replica on first use, then start it as a hot standby (idempotent),
#                    through a replication slot of its own that only `replica destroy` drops
#   replica stop|status|destroy, replica url [DBNAME]   as for the cluster, for the replica
#
# Environment:
#   STREETLOOP_PGDATA   base dir (default <project>/.pgdata): data/, run/ (socket), log/
#   STREETLOOP_PGPORT   TCP port on 127.0.0.1 (default 54329)
#   STREETLOOP_PG_BINDIR  directory with pg_ctl/initdb/postgres (default: auto-detect)
#   STREETLOOP_REPLICA_PGPORT  the replica's port on 127.0.0.1 (default: the cluster's + 1)
#   PGUSER              the role that copies the server for a replica (default: postgres)
#
# The replica copies whatever PostgreSQL listens on 127.0.0.1:STREETLOOP_PGPORT (the
# project's cluster, or another one there that allows replication connections: the tests
# point it at theirs). `replica start` exits with status 4 when that server cannot serve a
# replica (wal_level, max_wal_senders, pg_hba's replication line, the role) or this machine
# cannot run one (no server programs of its major version), naming which. A copy already
# there is reused only when it is of that server (same system identifier), and `replica
# start` returns once the replica streams.
#
# Authentication is `trust`, for the unix socket and 127.0.0.1 only; the
# server listens on nothing else. Superuser: postgres.
#
# Run as root, the server runs as the `postgres` OS user (files chowned to it);
# if that user cannot reach <project>/.pgdata, the cluster lives in
# ${TMPDIR:-/tmp}/streetloop-pg-<hash of project path> instead.
set -euo pipefail

PROJECT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PORT=${STREETLOOP_PGPORT:-54329}
SUPERUSER=postgres
PG_OS_USER=postgres

die() { echo "pg.sh: error: $*" >&2; exit 1; }
note() { echo "pg.sh: $*" >&2; }

[[ "$PORT" =~ ^[0-9]+$ ]] || die "STREETLOOP_PGPORT must be a number, got '$PORT'"

IS_ROOT=0
[[ "$(id -u)" == 0 ]] && IS_ROOT=1

# ---------------------------------------------------------------- helpers --

# Run a command as the OS user that owns the cluster.
as_pg() {
    if ((IS_ROOT)); then
        id -u "$PG_OS_USER" >/dev/null 2>&1 ||
            die "running as root but OS user '$PG_OS_USER' does not exist (install PostgreSQL: scripts/pg.sh install)"
        # cd / so the server/initdb do not inherit an unreadable cwd (e.g. /root).
        if command -v runuser >/dev/null 2>&1; then
            (cd / && runuser -u "$PG_OS_USER" -- "$@")
        else
            (cd / && su "$PG_OS_USER" -s /bin/bash -c "$(printf '%q ' "$@")")
        fi
    else
        "$@"
    fi
}

project_hash() { printf '%s' "$PROJECT_ROOT" | sha256sum | cut -c1-12; }

# Decide the base directory (sets BASE, DATA, RUN, LOGDIR, LOGFILE).
resolve_paths() {
    local explicit=0
    if [[ -n "${STREETLOOP_PGDATA:-}" ]]; then
        BASE=$STREETLOOP_PGDATA
        explicit=1
        [[ "$BASE" == /* ]] || BASE="$PWD/$BASE"
    else
        BASE="$PROJECT_ROOT/.pgdata"
    fi
    if ((IS_ROOT)) && id -u "$PG_OS_USER" >/dev/null 2>&1; then
        # Can the postgres user reach (and later own) the base dir?
        local probe=$BASE
        [[ -d "$BASE" ]] || probe=$(dirname "$BASE")
        if ! (cd / && runuser -u "$PG_OS_USER" -- test -x "$probe") 2>/dev/null; then
            if ((explicit)); then
                die "STREETLOOP_PGDATA=$BASE is not reachable by OS user '$PG_OS_USER'"
            fi
            BASE="${TMPDIR:-/tmp}/streetloop-pg-$(project_hash)"
        fi
    fi
    DATA="$BASE/data"
    RUN="$BASE/run"
    LOGDIR="$BASE/log"
    LOGFILE="$LOGDIR/postgresql.log"
    # Unix socket paths are limited to ~107 bytes; use a short dir if needed.
    if (( ${#RUN} + 20 > 100 )); then
        RUN="${TMPDIR:-/tmp}/streetloop-pg-$(project_hash)-run"
    fi
}

# Locate server binaries (sets BINDIR). Prefers, in order: $STREETLOOP_PG_BINDIR,
# the major version matching an existing data dir, `pg_config --bindir`, the
# newest /usr/lib/postgresql/*/bin, pg_ctl on PATH. Among the automatic choices
# one that has PostGIS installed wins.
server_bindir_ok() { [[ -x "$1/pg_ctl" && -x "$1/initdb" && -x "$1/postgres" ]]; }

bin_major() { "$1/postgres" --version 2>/dev/null | sed -nE '1s/^[^0-9]*([0-9]+).*/\1/p'; }

sharedir_of() {
    local b=$1
    if [[ -x "$b/pg_config" ]]; then "$b/pg_config" --sharedir 2>/dev/null && return; fi
    if [[ "$b" =~ ^/usr/lib/postgresql/([0-9]+)/bin$ ]]; then
        echo "/usr/share/postgresql/${BASH_REMATCH[1]}"; return
    fi
    if [[ -d "${b%/bin}/share/postgresql" ]]; then echo "${b%/bin}/share/postgresql"; else echo "${b%/bin}/share"; fi
}

has_postgis() { [[ -f "$(sharedir_of "$1")/extension/postgis.control" ]]; }

candidate_bindirs() {
    local d
    if command -v pg_config >/dev/null 2>&1; then
        d=$(pg_config --bindir 2>/dev/null || true)
        [[ -n "$d" ]] && echo "$d"
    fi
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r || true
    d=$(command -v pg_ctl 2>/dev/null || true)
    [[ -n "$d" ]] && dirname "$(readlink -f "$d")"
    return 0
}

find_bindir() {
    BINDIR=""
    if [[ -n "${STREETLOOP_PG_BINDIR:-}" ]]; then
        server_bindir_ok "$STREETLOOP_PG_BINDIR" || die "STREETLOOP_PG_BINDIR=$STREETLOOP_PG_BINDIR has no pg_ctl/initdb/postgres"
        BINDIR=$STREETLOOP_PG_BINDIR
        return 0
    fi
    local want="" d first="" gis=""
    [[ -n "${DATA:-}" && -f "$DATA/PG_VERSION" ]] && want=$(cat "$DATA/PG_VERSION" 2>/dev/null || true)
    while IFS= read -r d; do
        [[ -n "$d" ]] && server_bindir_ok "$d" || continue
        if [[ -n "$want" && "$(bin_major "$d")" != "$want" ]]; then continue; fi
        [[ -z "$first" ]] && first=$d
        if [[ -z "$gis" ]] && has_postgis "$d"; then gis=$d; fi
    done < <(candidate_bindirs)
    BINDIR=${gis:-$first}
    if [[ -z "$BINDIR" ]]; then
        if [[ -n "$want" ]]; then
            die "the cluster in $DATA was created by PostgreSQL $want, but no PostgreSQL $want server binaries were found.
  Install them (e.g. apt-get install postgresql-$want postgresql-$want-postgis-3) or drop the cluster with: make distclean"
        fi
        return 1
    fi
}

require_bindir() {
    find_bindir || die "PostgreSQL server binaries not found (no pg_ctl/initdb/postgres). Run: make pg-install (or scripts/pg.sh install)"
}

psql_bin() {
    if [[ -n "${BINDIR:-}" && -x "$BINDIR/psql" ]]; then echo "$BINDIR/psql"; return; fi
    command -v psql >/dev/null 2>&1 || die "psql not found"
    command -v psql
}

# Prints the PID when the postmaster in $DATA is alive; removes a stale
# postmaster.pid (process gone, or PID reused by something that is not postgres).
running_pid() {
    local pidfile="${1:-$DATA}/postmaster.pid" pid comm
    [[ -f "$pidfile" ]] || return 1
    pid=$(head -n1 "$pidfile" 2>/dev/null || true)
    if [[ "$pid" =~ ^[0-9]+$ ]]; then
        if [[ -d /proc/$pid ]]; then
            comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
            if [[ "$comm" == postgres || "$comm" == postmaster ]]; then
                echo "$pid"; return 0
            fi
        elif [[ ! -d /proc/self ]] && kill -0 "$pid" 2>/dev/null; then
            echo "$pid"; return 0   # no /proc: best effort
        fi
    fi
    note "removing stale $pidfile (pid ${pid:-?} is not a running postgres)"
    rm -f "$pidfile"
    return 1
}

# Port the running server actually uses (line 4 of postmaster.pid), else $PORT
# (for another data dir and default port: effective_port DIR DEFAULT).
effective_port() {
    local data=${1:-$DATA} p=""
    if [[ -f "$data/postmaster.pid" ]]; then p=$(sed -n 4p "$data/postmaster.pid" 2>/dev/null || true); fi
    if [[ "$p" =~ ^[0-9]+$ ]]; then echo "$p"; else echo "${2:-$PORT}"; fi
}

conf_quote() { printf "'%s'" "${1//\'/\'\'}"; }

# --------------------------------------------------------------- commands --

cmd_install() {
    if find_bindir && has_postgis "$BINDIR"; then
        note "PostgreSQL $(bin_major "$BINDIR") with PostGIS already installed ($BINDIR)"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 ||
        die "PostgreSQL server and/or PostGIS missing and apt-get is not available.
  Install PostgreSQL (>= 14) with PostGIS 3 using your OS package manager, or set DATABASE_URL."
    local sudo=()
    if ((!IS_ROOT)); then
        command -v sudo >/dev/null 2>&1 || die "need root or sudo to install OS packages"
        sudo=(sudo)
    fi
    # Never upgrade binaries underneath our own running server.
    if [[ -f "$DATA/postmaster.pid" ]] && find_bindir && running_pid >/dev/null; then
        note "stopping the local cluster before installing packages"
        cmd_stop
    fi
    export DEBIAN_FRONTEND=noninteractive
    local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    note "installing PostgreSQL/PostGIS OS packages (apt-get)"
    "${apt[@]}" update
    if ! find_bindir; then
        "${apt[@]}" install postgresql postgresql-contrib
        find_bindir || die "PostgreSQL server binaries still not found after apt-get install"
    fi
    local major
    major=$(bin_major "$BINDIR")
    if ! has_postgis "$BINDIR"; then
        "${apt[@]}" install "postgresql-$major-postgis-3"
    fi
    find_bindir && has_postgis "$BINDIR" ||
        die "PostGIS extension still missing for PostgreSQL $major ($(sharedir_of "$BINDIR")/extension/postgis.control)"
    note "PostgreSQL $major with PostGIS installed ($BINDIR)"
}

init_cluster() {
    # A cluster is complete once our config (written last) is present.
    if [[ -f "$DATA/PG_VERSION" && -f "$DATA/streetloop.conf" ]]; then
        return 0
    fi
    if [[ -e "$DATA" ]]; then
        note "removing incomplete data directory $DATA"
        rm -rf "$DATA"
    fi
    local locale=C
    if command -v locale >/dev/null 2>&1 && locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then
        locale=C.UTF-8
    fi
    mkdir -p "$DATA"
    chmod 700 "$DATA"
    ((IS_ROOT)) && chown "$PG_OS_USER:" "$DATA"
    note "initializing cluster in $DATA (PostgreSQL $(bin_major "$BINDIR"), locale $locale)"
    if ! as_pg "$BINDIR/initdb" -D "$DATA" -U "$SUPERUSER" --encoding=UTF8 --locale="$locale" \
            --auth-local=trust --auth-host=trust >"$LOGDIR/initdb.log" 2>&1; then
        cat "$LOGDIR/initdb.log" >&2
        rm -rf "$DATA"
        die "initdb failed (log: $LOGDIR/initdb.log)"
    fi
    # Only the socket and 127.0.0.1; nothing else is allowed in.
    as_pg tee "$DATA/pg_hba.conf" >/dev/null <<'HBA'
# StreetLoop local dev cluster: trust, socket and loopback (IPv4) only.
# TYPE  DATABASE     USER  ADDRESS        METHOD
local   all          all                  trust
host    all          all   127.0.0.1/32   trust
local   replication  all                  trust
host    replication  all   127.0.0.1/32   trust
HBA
    as_pg tee -a "$DATA/postgresql.conf" >/dev/null <<'CONF'

# --- StreetLoop dev settings (scripts/pg.sh) ---
shared_buffers = 128MB
max_connections = 100
fsync = on
log_timezone = 'UTC'
timezone = 'UTC'
# A streaming replica can be made from it (`scripts/pg.sh replica start`).
wal_level = replica
max_wal_senders = 10
# listen address, port and socket dir are (re)written on every start:
include_if_exists = 'streetloop.conf'
CONF
    write_runtime_conf
}

write_runtime_conf() {
    as_pg tee "$DATA/streetloop.conf" >/dev/null <<CONF
# Written by scripts/pg.sh on every start; do not edit.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = $(conf_quote "$RUN")
CONF
}

prepare_dirs() {
    mkdir -p "$BASE" "$RUN" "$LOGDIR"
    if ((IS_ROOT)); then
        chown "$PG_OS_USER:" "$BASE" "$RUN" "$LOGDIR"
        [[ -e "$LOGFILE" ]] && chown "$PG_OS_USER:" "$LOGFILE"
        as_pg test -w "$BASE" || die "OS user '$PG_OS_USER' cannot write to $BASE"
    fi
    chmod 700 "$BASE" 2>/dev/null || true
    chmod 755 "$RUN" 2>/dev/null || true
    return 0
}

cmd_start() {
    require_bindir
    local pid
    if pid=$(running_pid); then
        local p
        p=$(effective_port)
        [[ "$p" != "$PORT" ]] && note "note: already running on port $p (STREETLOOP_PGPORT=$PORT ignored)"
        note "already running (pid $pid, port $p, data $DATA)"
        return 0
    fi
    prepare_dirs
    init_cluster
    write_runtime_conf
    # Keep the log from growing forever.
    if [[ -f "$LOGFILE" ]] && (( $(stat -c %s "$LOGFILE" 2>/dev/null || echo 0) > 10485760 )); then
        mv -f "$LOGFILE" "$LOGFILE.1"
    fi
    note "starting PostgreSQL $(bin_major "$BINDIR") on 127.0.0.1:$PORT (data $DATA, log $LOGFILE)"
    if ! as_pg "$BINDIR/pg_ctl" -D "$DATA" -l "$LOGFILE" -w -t 60 start >/dev/null; then
        echo "---- last lines of $LOGFILE ----" >&2
        tail -n 25 "$LOGFILE" >&2 || true
        die "could not start PostgreSQL (port $PORT in use? set STREETLOOP_PGPORT)"
    fi
    note "running: $(cmd_url postgres)"
}

cmd_stop() {
    if [[ ! -d "$DATA" ]]; then note "not running (no cluster at $DATA)"; return 0; fi
    local pid
    if ! pid=$(running_pid); then note "not running"; return 0; fi
    require_bindir
    note "stopping PostgreSQL (pid $pid)"
    if ! as_pg "$BINDIR/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null; then
        running_pid >/dev/null || return 0
        die "could not stop PostgreSQL (pid $pid); see $LOGFILE"
    fi
}

cmd_status() {
    local pid
    if [[ -d "$DATA" ]] && pid=$(running_pid 2>/dev/null); then
        echo "running: pid $pid, port $(effective_port), data $DATA, log $LOGFILE"
        echo "url: $(cmd_url postgres)"
        return 0
    fi
    if [[ -f "$DATA/PG_VERSION" ]]; then
        echo "stopped: data $DATA"
    else
        echo "stopped: no cluster yet (would be created in $DATA)"
    fi
    return 3
}

cmd_url() {
    local db=${1:-postgres}
    echo "postgresql+psycopg://$SUPERUSER@127.0.0.1:$(effective_port)/$db"
}

cmd_psql() {
    find_bindir || true
    local bin
    bin=$(psql_bin)
    PGHOST=127.0.0.1 PGPORT=$(effective_port) PGUSER=$SUPERUSER PGDATABASE=postgres \
        PGSSLMODE=disable exec "$bin" "$@"
}

cmd_createdb() {
    local name=${1:-}
    [[ -n "$name" ]] || die "usage: pg.sh createdb NAME"
    running_pid >/dev/null || die "cluster is not running (scripts/pg.sh start)"
    find_bindir || true
    local bin exists
    bin=$(psql_bin)
    export PGHOST=127.0.0.1 PGPORT PGUSER=$SUPERUSER PGDATABASE=postgres PGSSLMODE=disable
    PGPORT=$(effective_port)
    exists=$("$bin" -X -q -At -v ON_ERROR_STOP=1 -v "dbname=$name" <<'SQL'
SELECT 1 FROM pg_database WHERE datname = :'dbname';
SQL
)
    if [[ "$exists" == 1 ]]; then
        note "database '$name' exists"
        return 0
    fi
    "$bin" -X -q -v ON_ERROR_STOP=1 -v "dbname=$name" >/dev/null <<'SQL'
SELECT format('CREATE DATABASE %I', :'dbname') \gexec
SQL
    note "created database '$name'"
}

cmd_destroy() {
    # Its replica (under $BASE) first: a standby whose primary is gone only waits.
    [[ -d "$BASE/replica" ]] && (cmd_replica destroy)
    if [[ -d "$DATA" ]] && running_pid >/dev/null 2>&1; then cmd_stop; fi
    for d in "$BASE" "$RUN"; do
        if [[ -e "$d" ]]; then
            note "removing $d"
            rm -rf "$d"
        fi
    done
}

# ---------------------------------------------------------------- replica --
# A hot standby of the server on 127.0.0.1:$(effective_port), for DATABASE_REPLICA_URL:
# `pg_basebackup -R` (which writes standby.signal and primary_conninfo) into
# $BASE/replica/data, then streaming. Through a replication slot of its own (named after
# its base dir): a busy primary otherwise recycles the WAL written between the end of the
# copy and the start of streaming, or while the replica is stopped, and the copy can
# never catch up. `replica destroy` drops the slot (a slot left behind would keep the
# primary's WAL for ever); `replica stop` keeps it, so a stopped replica holds WAL back.

resolve_replica_paths() {
    PRIMARY_PORT=$(effective_port)
    RBASE="$BASE/replica"
    RDATA="$RBASE/data"
    RLOGDIR="$RBASE/log"
    RLOGFILE="$RLOGDIR/postgresql.log"
    RRUN="$RBASE/run"
    if (( ${#RRUN} + 20 > 100 )); then
        # Keyed on the replica's own base: two bases of one project get two sockets.
        RRUN="${TMPDIR:-/tmp}/streetloop-pg-$(printf '%s' "$RBASE" | sha256sum | cut -c1-12)-replica-run"
    fi
    # The role that copies the primary (it needs REPLICATION): libpq's PGUSER, as the
    # tests pass their DATABASE_URL's user, else the project cluster's superuser.
    REPL_USER=${PGUSER:-$SUPERUSER}
    SLOT="streetloop_replica_$(printf '%s' "$RBASE" | sha256sum | cut -c1-12)"
    REPLICA_PORT=$(effective_port "$RDATA" "${STREETLOOP_REPLICA_PGPORT:-$((PRIMARY_PORT + 1))}")
    [[ "$REPLICA_PORT" =~ ^[0-9]+$ ]] || die "STREETLOOP_REPLICA_PGPORT must be a number, got '$REPLICA_PORT'"
}

# psql against the primary; prints the single value of a query.
primary_value() {
    local bin
    bin=$(psql_bin)
    PGHOST=127.0.0.1 PGPORT=${2:-$PRIMARY_PORT} PGUSER=$REPL_USER PGDATABASE=postgres PGSSLMODE=disable \
        PGCONNECT_TIMEOUT=5 "$bin" -X -q -At -v ON_ERROR_STOP=1 -c "$1"
}

# Status 4: no replica can be made here (the server cannot serve one, or this machine
# lacks the programs to run one); the tests skip their replica stage on it.
cannot_replicate() { echo "pg.sh: error: the server on 127.0.0.1:$PRIMARY_PORT cannot serve a replica: $*" >&2; exit 4; }
cannot_run_replica() { echo "pg.sh: error: no replica can run on this machine: $*" >&2; exit 4; }

# Drop the replica's slot on the primary once nothing streams from it (the walsender of a
# replica just stopped takes a moment to go); quietly nothing when the primary is away.
drop_slot() {
    local i left
    for ((i = 0; i < 40; i++)); do
        left=$(primary_value "SELECT count(pg_drop_replication_slot(slot_name)) FILTER (WHERE NOT active), count(*) FILTER (WHERE active) FROM pg_replication_slots WHERE slot_name = '$SLOT'" 2>/dev/null) || return 0
        [[ "$left" == *"|0" ]] && return 0
        sleep 0.25
    done
    note "the replica's slot $SLOT is still in use on 127.0.0.1:$PRIMARY_PORT: not dropped"
}

# The copy's system identifier (from its pg_control), empty when it has none.
copy_system_identifier() {
    as_pg env LC_ALL=C "$BINDIR/pg_controldata" "$RDATA" 2>/dev/null |
        sed -nE 's/^Database system identifier: *([0-9]+).*/\1/p' || true
}

# Where the copy listens, for pg_ctl here and for anyone who starts it by hand: the
# primary's copied files say the primary's port and socket. A data dir made elsewhere
# (Debian keeps postgresql.conf and pg_hba.conf in /etc) gets files of its own.
write_replica_conf() {
    if [[ ! -f "$RDATA/pg_hba.conf" ]]; then
        as_pg tee "$RDATA/pg_hba.conf" >/dev/null <<'HBA'
# StreetLoop local replica (scripts/pg.sh): trust, socket and loopback (IPv4) only.
local   all          all                  trust
host    all          all   127.0.0.1/32   trust
HBA
    fi
    [[ -f "$RDATA/pg_ident.conf" ]] || as_pg touch "$RDATA/pg_ident.conf"
    [[ -f "$RDATA/postgresql.conf" ]] || as_pg touch "$RDATA/postgresql.conf"
    if ! grep -qxF "include_if_exists = 'streetloop.conf'" "$RDATA/postgresql.conf"; then
        printf "\n# listen address, port and socket dir (scripts/pg.sh replica start):\ninclude_if_exists = 'streetloop.conf'\n" |
            as_pg tee -a "$RDATA/postgresql.conf" >/dev/null
    fi
    as_pg tee "$RDATA/streetloop.conf" >/dev/null <<CONF
# Written by scripts/pg.sh replica start; do not edit.
listen_addresses = '127.0.0.1'
port = $REPLICA_PORT
unix_socket_directories = $(conf_quote "$RRUN")
hot_standby = on
cluster_name = 'streetloop_replica'
# The primary keeps the row versions the replica's queries still see, so replaying its
# vacuums does not cancel them ("conflict with recovery"), as the README advises.
hot_standby_feedback = on
CONF
}

# The server binaries of the primary's major version (a physical copy runs on no other).
replica_bindir() {
    local major=$1 d
    if [[ -n "${STREETLOOP_PG_BINDIR:-}" ]]; then BINDIR=$STREETLOOP_PG_BINDIR; return 0; fi
    while IFS= read -r d; do
        if [[ -n "$d" ]] && server_bindir_ok "$d" && [[ -x "$d/pg_basebackup" && -x "$d/pg_controldata" ]] &&
                [[ "$(bin_major "$d")" == "$major" ]]; then
            BINDIR=$d
            return 0
        fi
    done < <(candidate_bindirs)
    cannot_run_replica "no PostgreSQL $major server binaries (pg_ctl, postgres, pg_basebackup) for a copy of the server on 127.0.0.1:$PRIMARY_PORT"
}

cmd_replica_start() {
    local pid
    if pid=$(running_pid "$RDATA" 2>/dev/null); then
        note "replica already running (pid $pid, port $REPLICA_PORT, data $RDATA)"
        return 0
    fi
    find_bindir || true
    if [[ -z "${BINDIR:-}" || ! -x "$BINDIR/psql" ]] && ! command -v psql >/dev/null 2>&1; then
        cannot_run_replica "psql not found"
    fi
    local facts major level senders recovery system
    facts=$(primary_value "SELECT current_setting('server_version_num')::int / 10000, current_setting('wal_level'), current_setting('max_wal_senders'), pg_is_in_recovery(), (SELECT system_identifier FROM pg_control_system()), current_setting('max_replication_slots')") ||
        die "no server answers on 127.0.0.1:$PRIMARY_PORT as $REPL_USER (start it first: scripts/pg.sh start)"
    IFS='|' read -r major level senders recovery system slots <<<"$facts"
    [[ "$level" == minimal ]] && cannot_replicate "wal_level is minimal (set wal_level = replica and restart it)"
    [[ "$senders" == 0 ]] && cannot_replicate "max_wal_senders is 0 (set it to 10 and restart it)"
    [[ "$slots" == 0 ]] && cannot_replicate "max_replication_slots is 0 (set it to 10 and restart it)"
    [[ "$recovery" == t ]] && cannot_replicate "it is itself a standby"
    replica_bindir "$major"
    mkdir -p "$RBASE" "$RLOGDIR" "$RRUN"
    if ((IS_ROOT)); then
        chown "$PG_OS_USER:" "$BASE" "$RBASE" "$RLOGDIR" "$RRUN"
        [[ -e "$RLOGFILE" ]] && chown "$PG_OS_USER:" "$RLOGFILE"
    fi
    chmod 700 "$RBASE" 2>/dev/null || true
    # A copy is complete once pg_basebackup has written standby.signal (it does so last),
    # and it is a copy of this server only when it has the server's system identifier.
    if [[ -f "$RDATA/PG_VERSION" && -f "$RDATA/standby.signal" ]]; then
        local copied
        copied=$(copy_system_identifier)
        if [[ "$copied" != "$system" ]]; then
            note "the copy in $RDATA is not of the server on 127.0.0.1:$PRIMARY_PORT (system identifier ${copied:-unreadable}, the server's $system): copying it anew"
            rm -rf "$RDATA"
        fi
    fi
    if [[ ! -f "$RDATA/PG_VERSION" || ! -f "$RDATA/standby.signal" ]]; then
        rm -rf "$RDATA"
        note "copying the server on 127.0.0.1:$PRIMARY_PORT into $RDATA (pg_basebackup -R)"
        local out
        drop_slot  # of an earlier copy that did not finish
        if ! out=$(as_pg "$BINDIR/pg_basebackup" -h 127.0.0.1 -p "$PRIMARY_PORT" -U "$REPL_USER" \
                -D "$RDATA" -R -X stream -C -S "$SLOT" -c fast --no-password 2>&1); then
            drop_slot
            rm -rf "$RDATA"
            if [[ "$out" == *"pg_hba.conf"* || "$out" == *"replication connection"* ]]; then
                cannot_replicate "pg_hba.conf refuses replication from 127.0.0.1 (add 'host replication $REPL_USER 127.0.0.1/32 trust' and reload it): $out"
            fi
            if [[ "$out" == *"permission to start WAL sender"* || "$out" == *"must be superuser or replication role"* ]]; then
                cannot_replicate "role $REPL_USER may not replicate (ALTER ROLE $REPL_USER REPLICATION): $out"
            fi
            die "pg_basebackup failed: $out"
        fi
    fi
    # A copy made with a slot streams through it: the slot is made again if it went.
    if grep -q "^primary_slot_name" "$RDATA/postgresql.auto.conf" 2>/dev/null; then
        primary_value "SELECT pg_create_physical_replication_slot('$SLOT', true) WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = '$SLOT')" >/dev/null ||
            die "could not make the replica's slot $SLOT on 127.0.0.1:$PRIMARY_PORT"
    fi
    write_replica_conf
    note "starting the replica on 127.0.0.1:$REPLICA_PORT (data $RDATA, log $RLOGFILE)"
    # Address and port on the command line as well: they beat an ALTER SYSTEM of the
    # primary's that came along in postgresql.auto.conf.
    if ! as_pg "$BINDIR/pg_ctl" -D "$RDATA" -l "$RLOGFILE" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -c port=$REPLICA_PORT" start >/dev/null; then
        echo "---- last lines of $RLOGFILE ----" >&2
        tail -n 25 "$RLOGFILE" >&2 || true
        die "could not start the replica (port $REPLICA_PORT in use? set STREETLOOP_REPLICA_PGPORT)"
    fi
    # Running is not streaming: a copy too old for the primary's WAL (its slot was dropped)
    # starts, then waits for WAL that is gone.
    local i receiver=""
    for ((i = 0; i < 60; i++)); do
        # Without pg_read_all_stats the status is hidden, but a receiver's pid shows.
        receiver=$(primary_value "SELECT coalesce(status, 'receiving') FROM pg_stat_wal_receiver WHERE pid IS NOT NULL" "$REPLICA_PORT" 2>/dev/null || true)
        [[ "$receiver" == streaming || "$receiver" == receiving ]] && break
        sleep 0.25
    done
    if [[ "$receiver" != streaming && "$receiver" != receiving ]]; then
        echo "---- last lines of $RLOGFILE ----" >&2
        tail -n 15 "$RLOGFILE" >&2 || true
        die "the replica runs but does not stream from 127.0.0.1:$PRIMARY_PORT (WAL receiver: ${receiver:-none}); if its copy is too old, make a new one: scripts/pg.sh replica destroy, then scripts/pg.sh replica start"
    fi
    note "replica running: $(cmd_replica_url postgres)"
}

cmd_replica_stop() {
    local pid
    if ! pid=$(running_pid "$RDATA" 2>/dev/null); then note "replica not running"; return 0; fi
    find_bindir || true
    [[ -n "${BINDIR:-}" ]] || BINDIR=$(dirname "$(readlink -f "/proc/$pid/exe" 2>/dev/null || command -v pg_ctl)")
    note "stopping the replica (pid $pid)"
    if ! as_pg "$BINDIR/pg_ctl" -D "$RDATA" -m fast -w -t 60 stop >/dev/null; then
        running_pid "$RDATA" >/dev/null 2>&1 || return 0
        die "could not stop the replica (pid $pid); see $RLOGFILE"
    fi
}

cmd_replica_status() {
    local pid
    if pid=$(running_pid "$RDATA" 2>/dev/null); then
        echo "replica running: pid $pid, port $REPLICA_PORT, data $RDATA, log $RLOGFILE"
        echo "url: $(cmd_replica_url postgres)"
        return 0
    fi
    if [[ -f "$RDATA/standby.signal" ]]; then echo "replica stopped: data $RDATA"; else echo "replica stopped: none yet (would be made in $RDATA)"; fi
    return 3
}

cmd_replica_url() { echo "postgresql+psycopg://$REPL_USER@127.0.0.1:$REPLICA_PORT/${1:-postgres}"; }

cmd_replica_destroy() {
    cmd_replica_stop
    drop_slot
    for d in "$RBASE" "$RRUN"; do
        if [[ -e "$d" ]]; then
            note "removing $d"
            rm -rf "$d"
        fi
    done
}

cmd_replica() {
    local sub=${1:-}
    [[ $# -gt 0 ]] && shift
    resolve_replica_paths
    case "$sub" in
        start) cmd_replica_start ;;
        stop) cmd_replica_stop ;;
        status) cmd_replica_status ;;
        url) cmd_replica_url "$@" ;;
        destroy) cmd_replica_destroy ;;
        *) usage >&2; exit 2 ;;
    esac
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

# ------------------------------------------------------------------- main --

cmd=${1:-}
[[ $# -gt 0 ]] && shift
resolve_paths
case "$cmd" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    url) cmd_url "$@" ;;
    createdb) cmd_createdb "$@" ;;
    psql) cmd_psql "$@" ;;
    destroy) cmd_destroy ;;
    replica) cmd_replica "$@" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
esac
