# test/lib/cluster.sh - a throwaway PostgreSQL cluster with r1_pg preloaded.
# Sourced by test/run-extension-tests.sh and tools/demo.sh.
#
#   r1_cluster_start DIR MODEL [CONF_LINE...]   initdb DIR/data, start, create r1_pg in
#                                               database "postgres", wait for the engine
#   r1_cluster_stop                             stop the server (for an EXIT trap)
#   r1_wait_state STATE [SECONDS]               wait until r1_status().state = STATE
#
# The server runs as the OS user "postgres" when invoked as root (initdb refuses
# root), so DIR must be world-readable.  No TCP: the socket lives in DIR/sock.
# Exports PGHOST, PGPORT, PGUSER, PGDATABASE, R1_PGDATA, R1_PGBIN, R1_SERVER_LOG.

R1_PGBIN=$(${PG_CONFIG:-pg_config} --bindir)
export R1_PGBIN

r1_as_server() {
	if [ "$(id -u)" -eq 0 ]; then
		(cd / && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

r1_cluster_start() {
	local dir=$1 model=$2
	shift 2
	export R1_PGDATA=$dir/data R1_SERVER_LOG=$dir/server.log
	export PGHOST=$dir/sock PGPORT=5432 PGUSER=postgres PGDATABASE=postgres
	chmod 755 "$dir"
	mkdir -p "$R1_PGDATA" "$PGHOST"
	touch "$R1_SERVER_LOG"
	if [ "$(id -u)" -eq 0 ]; then
		chown postgres: "$R1_PGDATA" "$PGHOST" "$R1_SERVER_LOG"
	fi
	r1_as_server "$R1_PGBIN/initdb" -D "$R1_PGDATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log"; return 1; }
	{
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$PGHOST'"
		echo "port = 5432"
		echo "shared_preload_libraries = 'r1_pg'"
		echo "r1.model = '$model'"
		echo "fsync = off"
		echo "max_connections = 60"
		for line in "$@"; do echo "$line"; done
	} >>"$R1_PGDATA/postgresql.conf"
	# fd 9 is the caller's test lock: a server that inherits it would hold it after the run
	r1_as_server "$R1_PGBIN/pg_ctl" -D "$R1_PGDATA" -l "$R1_SERVER_LOG" -w -t 60 start >/dev/null 9>&- ||
		{ cat "$R1_SERVER_LOG"; return 1; }
	"$R1_PGBIN/psql" -XqAt -v ON_ERROR_STOP=1 -c "CREATE EXTENSION IF NOT EXISTS r1_pg" >/dev/null
}

r1_wait_state() {
	local want=$1 secs=${2:-60} state=""
	for _ in $(seq 1 $((secs * 10))); do
		state=$("$R1_PGBIN/psql" -XqAt -c "SELECT state FROM r1_status()" 2>/dev/null || true)
		[ "$state" = "$want" ] && return 0
		sleep 0.1
	done
	echo "r1 engine state is '$state', not '$want', after ${secs}s; server log:" >&2
	tail -n 30 "$R1_SERVER_LOG" >&2
	return 1
}

r1_cluster_stop() {
	if [ -n "${R1_PGDATA:-}" ] && [ -f "$R1_PGDATA/postmaster.pid" ]; then
		r1_as_server "$R1_PGBIN/pg_ctl" -D "$R1_PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
	fi
}
