#!/usr/bin/env bash
# tools/bench-scale-out.sh - the same 80-prompt durable job on 1, 2 and 3 local r1_pg servers
# (issue 16): a primary whose job workers also use r1.job_servers, plus independent nodes.
#
#   sudo tools/bench-scale-out.sh [PROMPTS] [MAX_TOKENS]     # defaults 80 and 64
#
# Every server runs the demo model on the CPU with r1.threads = 1 and 4 job workers
# (max_running=4), so each server stands for one GPU; generation runs to max_tokens
# (r1.debug_ignore_eos) so that every prompt costs the same.  Prints the wall time of the job
# (r1.jobs.finished_at - created_at) and the speed-up over one server.  On a machine with fewer
# cores than servers the speed-up is bounded by the cores.  Takes the extension tests' lock
# and installs the build (make install), like test/run-extension-tests.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PROMPTS=${1:-80}
MAX_TOKENS=${2:-64}
export PG_CONFIG=${PG_CONFIG:-pg_config}

exec 9>/tmp/r1_pg_extension_tests.lock
flock 9
make -j2 >/dev/null
make install >/dev/null

TMP=$(mktemp -d /tmp/r1_bench_scale.XXXXXX)
chmod 755 "$TMP"
. test/lib/cluster.sh
NODES=()
cleanup() {
	for d in "${NODES[@]}"; do
		r1_as_server "$R1_PGBIN/pg_ctl" -D "$d/data" -m immediate -w stop >/dev/null 2>&1 || true
	done
	r1_cluster_stop
	rm -rf "$TMP"
}
trap cleanup EXIT

bin/r1 demo-model --out "$TMP/model" >/dev/null
chmod -R a+rX "$TMP/model"
r1_cluster_start "$TMP" "$TMP/model" "r1.device = 'cpu'" "r1.threads = 1" "r1.max_ctx = 4096" \
	"r1.jobs_database = 'postgres'" "r1.job_workers = 4" "max_worker_processes = 32"
r1_wait_state ready 60

# an independent node: DIR PORT
start_node() {
	local dir=$1 port=$2
	mkdir -p "$dir"
	chmod 777 "$dir"
	r1_as_server "$R1_PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
	cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$dir'
port = $port
shared_preload_libraries = 'r1_pg'
r1.model = '$TMP/model'
r1.device = 'cpu'
r1.threads = 1
r1.max_ctx = 4096
fsync = off
CONF
	r1_as_server "$R1_PGBIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 start >/dev/null 9>&-
	NODES+=("$dir")
	"$R1_PGBIN/psql" -XqAt -h "$dir" -p "$port" -c "CREATE EXTENSION r1_pg" >/dev/null
	for _ in $(seq 1 600); do
		[ "$("$R1_PGBIN/psql" -XqAt -h "$dir" -p "$port" -c "SELECT state FROM r1_status()")" = ready ] && return 0
		sleep 0.1
	done
	echo "node $dir: engine not ready" >&2
	return 1
}
start_node "$TMP/node1" 5441
start_node "$TMP/node2" 5442
SERVERS=("" "host=$TMP/node1 port=5441 dbname=postgres max_running=4"
	"host=$TMP/node2 port=5442 dbname=postgres max_running=4")

psql_p() { "$R1_PGBIN/psql" -XqAt -v ON_ERROR_STOP=1 "$@"; }

# run the job with the first N servers (1 = the primary alone); prints its seconds
run_job() {
	local n=$1 list="" i
	for ((i = 1; i < n; i++)); do list+="${list:+; }${SERVERS[$i]}"; done
	psql_p -c "ALTER SYSTEM SET r1.job_servers = '$list'" -c "SELECT pg_reload_conf()" >/dev/null
	sleep 3    # the launcher starts the workers for the new list
	local job
	job=$(psql_p -c "SET r1.debug_ignore_eos = on" -c "SELECT r1_submit_query(\$\$SELECT k, format('Problem %s: what is %s times %s?', k, k, k + 1)
		FROM generate_series(1, $PROMPTS) k\$\$, max_tokens => $MAX_TOKENS, temperature => 0)")
	while [ "$(psql_p -c "SELECT state FROM r1.jobs WHERE id = $job")" != done ]; do sleep 0.2; done
	psql_p -c "SELECT round(extract(epoch FROM finished_at - created_at)::numeric, 2) FROM r1.jobs WHERE id = $job"
	psql_p -c "SELECT string_agg(format('%s=%s', coalesce(server, '?'), c), ' ' ORDER BY server) FROM
		(SELECT server, count(*) c FROM r1.job_items WHERE job_id = $job GROUP BY server) s" >&2
}

echo "# $PROMPTS prompts, max_tokens $MAX_TOKENS, demo model, CPU, r1.threads = 1 and 4 job workers per server; $(nproc) cores"
run_job 1 >/dev/null 2>&1    # warm-up
base=""
for n in 1 2 3; do
	t=$(run_job "$n" 2>"$TMP/where")
	base=${base:-$t}
	printf 'servers=%d wall_s=%s speedup=%s items: %s\n' "$n" "$t" "$(echo "scale=2; $base / $t" | bc)" "$(cat "$TMP/where")"
done
