#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the test suite's PostgreSQL runs (tests/backends.py).
#
#   eval "$(scripts/postgres_for_tests.sh start)"   # installs Debian's postgresql if missing (needs root),
#                                                  # starts a server in a new temp dir, prints the exports:
#                                                  # ARMIN_TEST_POSTGRES_URL and ARMIN_TEST_POSTGRES_DIR
#   scripts/postgres_for_tests.sh stop "$ARMIN_TEST_POSTGRES_DIR"   # stops it and deletes its files
#
# Trust authentication on 127.0.0.1 only, superuser `armin`, no password: a server for tests, never data.
# As root the server runs as the `postgres` user (PostgreSQL refuses to run as root). Messages go to stderr;
# stdout is only the export lines.
set -euo pipefail

bindir() {
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [[ -z "$found" ]] && command -v pg_config >/dev/null; then found=$(pg_config --bindir); fi
    [[ -n "$found" && -x "$found/initdb" ]] && echo "$found"
}

as_server_user() {  # run "$@" as the user that owns the server
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local bin dir port
    if ! bin=$(bindir); then
        if [[ $(id -u) -ne 0 ]]; then
            echo "postgres_for_tests: PostgreSQL is not installed, and installing it needs root (apt-get install postgresql)" >&2
            exit 1
        fi
        echo "postgres_for_tests: installing Debian's postgresql package" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
        bin=$(bindir) || { echo "postgres_for_tests: no initdb after installing postgresql" >&2; exit 1; }
    fi
    dir=$(mktemp -d /tmp/armin-postgres.XXXXXX)
    chmod 755 "$dir"
    [[ $(id -u) -eq 0 ]] && chown postgres "$dir"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_server_user "$bin/initdb" -D "$dir/data" -U armin -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    as_server_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c full_page_writes=off" start >&2 ||
        { cat "$dir/server.log" >&2; exit 1; }
    echo "postgres_for_tests: server on 127.0.0.1:$port (files in $dir)" >&2
    echo "export ARMIN_TEST_POSTGRES_URL=postgresql+psycopg://armin@127.0.0.1:$port/postgres"
    echo "export ARMIN_TEST_POSTGRES_DIR=$dir"
}

stop() {
    local dir=${1:?usage: postgres_for_tests.sh stop DIR}
    local bin
    bin=$(bindir)
    [[ -d "$dir/data" ]] && as_server_user "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    rm -rf "$dir"
}

case "${1:-}" in
    start) start ;;
    stop) stop "${2:-}" ;;
    *) echo "usage: $0 start | stop DIR" >&2; exit 2 ;;
esac
