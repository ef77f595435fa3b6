#!/usr/bin/env bash
# Throwaway PostgreSQL cluster for tests and benchmarks.
#
#   pg-cluster.sh start DIR [WATCH_PID]   init + start a cluster in DIR; prints its URL (one line)
#   pg-cluster.sh stop DIR                stop the cluster in DIR and remove DIR (idempotent)
#   pg-cluster.sh bindir                  print the PostgreSQL bin dir that would be used
#
# Only the URL (`postgres://postgres@127.0.0.1:PORT/postgres`) goes to stdout; all diagnostics go
# to stderr. The cluster uses trust auth for the `postgres` superuser, listens on 127.0.0.1 on a
# free port and has its unix socket in DIR. It also has the Supabase API roles (`anon`,
# `authenticated`, `service_role`, `authenticator`).
#
# PG_CLUSTER_OPTIONS adds server options (e.g. `-c wal_level=logical` for a test that decodes
# the WAL through a logical replication slot).
#
# With WATCH_PID, a detached watchdog stops the cluster and removes DIR once that process is gone,
# so a test process that dies without cleaning up does not leak a postmaster.
#
# PostgreSQL refuses to run as root: when run as root, DIR is chowned to `postgres` and the
# server binaries run through `runuser -u postgres --`.
#
# Exit codes: 0 ok, 1 failure, 2 usage, 3 no PostgreSQL server binaries found.
set -euo pipefail

SELF="$(readlink -f "${BASH_SOURCE[0]}")"
MARKER=".pg-cluster"

log() { printf 'pg-cluster: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    cat >&2 <<EOF
usage: $(basename "$0") start DIR [WATCH_PID]
       $(basename "$0") stop DIR
       $(basename "$0") bindir
EOF
    exit 2
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# Prints the PostgreSQL bin dir (one containing initdb, pg_ctl and postgres), or returns 1.
find_bindir() {
    local d
    if command -v pg_config >/dev/null 2>&1; then
        d="$(pg_config --bindir 2>/dev/null || true)"
        if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
            printf '%s\n' "$d"
            return 0
        fi
    fi
    d="$(printf '%s\n' /usr/lib/postgresql/*/bin | grep -v '\*' | sort -V | tail -n 1 || true)"
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
        printf '%s\n' "$d"
        return 0
    fi
    if command -v initdb >/dev/null 2>&1; then
        d="$(dirname "$(readlink -f "$(command -v initdb)")")"
        if [ -x "$d/pg_ctl" ]; then
            printf '%s\n' "$d"
            return 0
        fi
    fi
    return 1
}

require_bindir() {
    if ! BINDIR="$(find_bindir)"; then
        log "error: no PostgreSQL server binaries found (looked at \`pg_config --bindir\`,"
        log "       /usr/lib/postgresql/*/bin and initdb on PATH)."
        log "       Install them, e.g. \`apt-get install -y postgresql\`, or run \`bash scripts/test.sh\`."
        exit 3
    fi
    PSQL="$BINDIR/psql"
    if [ ! -x "$PSQL" ]; then
        PSQL="$(command -v psql || true)"
        [ -n "$PSQL" ] || die "psql not found (neither in $BINDIR nor on PATH)"
    fi
}

# Runs a server binary, as `postgres` when we are root. Runs from / so that an unreadable cwd
# (e.g. /root) does not bother the postgres user.
as_pg() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

# Prints a TCP port on 127.0.0.1 that is free right now.
free_port() {
    local p
    if command -v python3 >/dev/null 2>&1 &&
        p="$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' 2>/dev/null)" && [ -n "$p" ]; then
        printf '%s\n' "$p"
        return 0
    fi
    # Fallback: probe random ports with bash's /dev/tcp (a refused connect means nobody listens).
    local _
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            printf '%s\n' "$p"
            return 0
        fi
    done
    return 1
}

# Refuses to operate on paths that could not be one of our cluster directories.
check_dir_sane() {
    case "$1" in
        "" | / | /tmp | /var | /var/tmp | /root | /home | /usr | /etc)
            die "refusing to use '$1' as cluster directory"
            ;;
    esac
}

abspath() {
    # DIR may not exist yet; resolve its parent.
    local d="$1"
    if [ -d "$d" ]; then
        (cd "$d" && pwd -P)
    else
        local parent base
        parent="$(dirname "$d")"
        base="$(basename "$d")"
        mkdir -p "$parent"
        printf '%s/%s\n' "$(cd "$parent" && pwd -P)" "$base"
    fi
}

# Stops the server in $1/data (fast, then immediate), quietly. Works even if the binaries are gone.
stop_server() {
    local dir="$1" data="$1/data" pid
    [ -f "$data/postmaster.pid" ] || return 0
    if BINDIR="$(find_bindir)"; then
        as_pg "$BINDIR/pg_ctl" -D "$data" -m fast -w -t 20 stop >&2 ||
            as_pg "$BINDIR/pg_ctl" -D "$data" -m immediate -w -t 20 stop >&2 || true
    fi
    if [ -f "$data/postmaster.pid" ]; then
        pid="$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)"
        case "$pid" in
            '' | *[!0-9]*) ;;
            *) kill -QUIT "$pid" 2>/dev/null || true ;;
        esac
    fi
    return 0
}

# Stops the cluster and removes DIR if it is ours (has the marker) or is empty.
remove_cluster() {
    local dir="$1"
    [ -e "$dir" ] || return 0
    stop_server "$dir"
    if [ -e "$dir/$MARKER" ] || [ -z "$(ls -A "$dir" 2>/dev/null)" ]; then
        rm -rf -- "$dir"
    else
        log "not removing $dir: it was not created by pg-cluster.sh (no $MARKER)"
    fi
}

cmd_stop() {
    [ $# -eq 1 ] || usage
    local dir
    check_dir_sane "$1"
    [ -e "$1" ] || return 0
    dir="$(abspath "$1")"
    check_dir_sane "$dir"
    remove_cluster "$dir"
}

# Hidden: `_watch DIR PID`, the detached watchdog loop.
cmd_watch() {
    local dir="$1" pid="$2"
    while kill -0 "$pid" 2>/dev/null; do
        # Somebody already stopped the cluster: nothing left to watch.
        [ -d "$dir/data" ] || exit 0
        sleep 0.5
    done
    [ -e "$dir" ] || exit 0
    if [ -f "$dir/data/postmaster.pid" ] && BINDIR="$(find_bindir)"; then
        as_pg "$BINDIR/pg_ctl" -D "$dir/data" -m immediate -w -t 20 stop || true
    fi
    remove_cluster "$dir"
}

START_DIR=""
START_OK=0
on_start_exit() {
    if [ "$START_OK" -ne 1 ] && [ -n "$START_DIR" ]; then
        if [ -s "$START_DIR/log" ]; then
            log "server log (tail):"
            tail -n 30 "$START_DIR/log" >&2 || true
        fi
        remove_cluster "$START_DIR"
    fi
}

ROLES_SQL="
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        CREATE ROLE anon NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticator') THEN
        CREATE ROLE authenticator LOGIN NOINHERIT;
    END IF;
END
\$\$;
GRANT anon, authenticated, service_role TO authenticator;
"

cmd_start() {
    if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
    local dir watch_pid="${2:-}"
    if [ -n "$watch_pid" ]; then
        case "$watch_pid" in *[!0-9]*) die "WATCH_PID must be a process id, got '$watch_pid'" ;; esac
        kill -0 "$watch_pid" 2>/dev/null || die "WATCH_PID $watch_pid is not a running process"
    fi
    check_dir_sane "$1"
    require_bindir

    if is_root && ! id -u postgres >/dev/null 2>&1; then
        die "running as root, but there is no 'postgres' user to run the server as (PostgreSQL refuses to run as root); install the postgresql package or create the user"
    fi

    mkdir -p "$1"
    dir="$(abspath "$1")"
    check_dir_sane "$dir"
    [ ! -e "$dir/data" ] || die "$dir/data already exists; pass an empty directory"
    : >"$dir/$MARKER"
    # From here on, clean up after ourselves on failure.
    START_DIR="$dir"
    START_OK=0
    trap on_start_exit EXIT
    if is_root; then
        chown -R postgres: "$dir"
        chmod 0700 "$dir"
        runuser -u postgres -- test -w "$dir" ||
            die "user postgres cannot write $dir (a parent directory is not searchable?); use a directory under /tmp"
    fi

    log "initdb in $dir/data ($BINDIR)"
    as_pg "$BINDIR/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync --locale=C >&2 ||
        die "initdb failed"

    # The unix socket lives in DIR; socket paths are limited to ~107 bytes, so with a very long DIR
    # go TCP-only (nothing here needs the socket).
    local sockdir="$dir"
    if [ "${#dir}" -gt 90 ]; then
        log "$dir is too long for a unix socket path; listening on TCP only"
        sockdir="''"
    fi

    local port="" attempt started=0
    for attempt in 1 2 3 4 5; do
        port="$(free_port)" || die "could not find a free TCP port"
        if is_root; then
            : >"$dir/log"
            chown postgres: "$dir/log"
        else
            : >"$dir/log"
        fi
        if as_pg "$BINDIR/pg_ctl" -w -t 60 -D "$dir/data" -l "$dir/log" \
            -o "-p $port -k $sockdir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400 -c shared_buffers=256MB ${PG_CLUSTER_OPTIONS:-}" \
            start >&2; then
            started=1
            break
        fi
        # Only a port clash is worth retrying.
        if grep -qiE 'could not bind|already in use|could not create any TCP/IP sockets' "$dir/log"; then
            log "port $port was taken, retrying (attempt $attempt)"
            stop_server "$dir"
            continue
        fi
        die "pg_ctl start failed"
    done
    [ "$started" -eq 1 ] || die "pg_ctl start failed (no free port after 5 attempts)"

    local url="postgres://postgres@127.0.0.1:$port/postgres"
    "$PSQL" -X -q -v ON_ERROR_STOP=1 "$url" -c "$ROLES_SQL" >&2 ||
        die "creating the Supabase API roles failed"

    if [ -n "$watch_pid" ]; then
        # Fully detached: own session, no inherited stdio, so it never holds the caller's pipes.
        setsid nohup bash "$SELF" _watch "$dir" "$watch_pid" </dev/null >/dev/null 2>&1 &
        disown || true
    fi

    START_OK=1
    trap - EXIT
    log "started PostgreSQL on 127.0.0.1:$port (dir $dir)"
    printf '%s\n' "$url"
}

main() {
    [ $# -ge 1 ] || usage
    local cmd="$1"
    shift
    case "$cmd" in
        start) cmd_start "$@" ;;
        stop) cmd_stop "$@" ;;
        bindir)
            require_bindir
            printf '%s\n' "$BINDIR"
            ;;
        _watch)
            [ $# -eq 2 ] || usage
            cmd_watch "$@"
            ;;
        -h | --help | help) usage ;;
        *) usage ;;
    esac
}

main "$@"
