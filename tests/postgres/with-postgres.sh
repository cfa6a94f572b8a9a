#!/bin/sh
# Runs a command beside a PostgreSQL server of its own: Debian's PostgreSQL 15, a fresh cluster
# in a temporary directory, listening on loopback only, stopped (and removed) when the command
# ends, whatever its outcome. The command finds it in ARBITER_TEST_POSTGRES (a connection
# string). PostgreSQL refuses to run as root, so as root the cluster belongs to `postgres`.
#   usage: tests/postgres/with-postgres.sh COMMAND [ARGS...]
set -eu
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bin/initdb" ] || { echo "with-postgres: PostgreSQL's server is not installed" >&2; exit 2; }
dir=$(mktemp -d /tmp/arbiter-pg.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_owner() { "$@"; }
if [ "$(id -u)" = 0 ]; then
	chown postgres "$dir"
	as_owner() { runuser -u postgres -- "$@"; }
fi
stop() {
	as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap stop EXIT INT TERM
as_owner "$bin/initdb" -D "$dir/data" -U arbiter --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 ||
	{ cat "$dir/initdb.log" >&2; exit 2; }
as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
	-o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null ||
	{ cat "$dir/server.log" >&2; exit 2; }
ARBITER_TEST_POSTGRES="host=127.0.0.1 port=$port user=arbiter dbname=postgres"
export ARBITER_TEST_POSTGRES
"$@"
