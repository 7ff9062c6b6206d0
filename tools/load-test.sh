#!/bin/bash
# Load test of r1_pg: pgbench with LOAD_CLIENTS (32) clients calling
# r1_reason() for LOAD_SECONDS (60) on the demo model, CPU.  Reports calls/s,
# p50/p99 latency, failed calls, the engine's queue at the end and the RSS of
# the engine host and of the postmaster's children before, during (max) and
# after the run.  Every call checks its own result against the greedy
# reference (a wrong result is a division by zero, which pgbench counts).
#
#   tools/load-test.sh              build, install and run on a throwaway cluster
#   tools/load-test.sh --existing   use the running cluster of test/lib/cluster.sh
#                                   (PGHOST, PGPORT, R1_PGDATA in the environment;
#                                   test/t/006_load.pl runs it so)
#
# The last lines are "LOAD key=value" pairs for scripts.  Exits non-zero when
# a call failed, pgbench failed or the queue is not empty at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export PG_CONFIG=${PG_CONFIG:-pg_config}
SECONDS_=${LOAD_SECONDS:-60}
CLIENTS=${LOAD_CLIENTS:-32}
JOBS=${LOAD_JOBS:-2}

. test/lib/cluster.sh
PGBENCH=$R1_PGBIN/pgbench
psql_() { "$R1_PGBIN/psql" -XqAt -v ON_ERROR_STOP=1 "$@"; }

if [ "${1:-}" = "--existing" ]; then
	[ -n "${R1_PGDATA:-}" ] && [ -n "${PGHOST:-}" ] || { echo "load-test: --existing needs R1_PGDATA and PGHOST" >&2; exit 2; }
	WORK=$(mktemp -d /tmp/r1_load.XXXXXX)
	trap 'rm -rf "$WORK"' EXIT
else
	# `make install` writes the system's PostgreSQL directories: one at a time
	exec 9>/tmp/r1_pg_extension_tests.lock
	flock 9
	make -j2 >/dev/null
	make install >/dev/null
	WORK=$(mktemp -d /tmp/r1_load.XXXXXX)
	chmod 755 "$WORK"
	trap 'r1_cluster_stop; rm -rf "$WORK"' EXIT
	bin/r1 demo-model --out "$WORK/model" >/dev/null
	chmod -R a+rX "$WORK/model"
	r1_cluster_start "$WORK" "$WORK/model" "r1.device = 'cpu'" "r1.threads = 2" "r1.max_ctx = 4096"
	r1_wait_state ready 60
fi

# RSS in kB: the engine host, and the sum over the postmaster's children
host_pid() { psql_ -c "SELECT coalesce(host_pid, 0) FROM r1_status()"; }
rss_of() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
children_rss() {
	local pm sum=0 n=0 pid
	pm=$(head -1 "$R1_PGDATA/postmaster.pid")
	for pid in $(ps -o pid= --ppid "$pm"); do
		sum=$((sum + $(rss_of "$pid"))); n=$((n + 1))
	done
	echo "$sum $n"
}

REF=$(psql_ -c "SELECT md5(format('%s|%s|%s|%s', think, answer, boxed, finish_reason))
                FROM r1_reason('What is 6*7?', temperature => 0)")
psql_ -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS r1_load_ref" -c "CREATE TABLE r1_load_ref AS SELECT '$REF'::text AS v" >/dev/null
cat >"$WORK/call.sql" <<'SQL'
SELECT 1 / (md5(format('%s|%s|%s|%s', r.think, r.answer, r.boxed, r.finish_reason)) = ref.v)::int AS ok
FROM r1_reason('What is 6*7?', temperature => 0) r, r1_load_ref ref;
SQL

# warm up (first connections, the host's buffers), then measure
"$PGBENCH" -n -c "$CLIENTS" -j "$JOBS" -T 2 -f "$WORK/call.sql" >/dev/null 2>&1 || true
HOST=$(host_pid)
HOST_BEFORE=$(rss_of "$HOST")
read -r CH_BEFORE N_BEFORE < <(children_rss)

: >"$WORK/samples"
(
	while :; do
		echo "$(rss_of "$HOST") $(children_rss)" >>"$WORK/samples"
		sleep 1
	done
) &
SAMPLER=$!

set +e
"$PGBENCH" -n -c "$CLIENTS" -j "$JOBS" -T "$SECONDS_" -f "$WORK/call.sql" \
	--log --log-prefix="$WORK/txn" >"$WORK/pgbench.out" 2>&1
PGB_RC=$?
set -e
kill "$SAMPLER" 2>/dev/null || true
wait "$SAMPLER" 2>/dev/null || true

sleep 1
HOST_AFTER=$(rss_of "$HOST")
read -r CH_AFTER N_AFTER < <(children_rss)
HOST_MAX=$(awk 'BEGIN {m = 0} $1 > m {m = $1} END {print m}' "$WORK/samples")
CH_MAX=$(awk 'BEGIN {m = 0} $2 > m {m = $2} END {print m}' "$WORK/samples")
HOST_NOW=$(host_pid)
QUEUE=$(psql_ -c "SELECT coalesce(queue_depth, -1) + coalesce(active_requests, -1) FROM r1_status()")
psql_ -c "DROP TABLE r1_load_ref" >/dev/null

DONE=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$WORK/pgbench.out")
FAILED=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$WORK/pgbench.out")
ABORTED=$(grep -c 'aborted in command' "$WORK/pgbench.out" || true)
TPS=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$WORK/pgbench.out")
# per-transaction log lines: client_id transaction_no latency_us script_no epoch_s epoch_us
cat "$WORK"/txn.* 2>/dev/null | awk '{print $3}' | sort -n >"$WORK/lat"
N_LAT=$(wc -l <"$WORK/lat")
pct() { [ "$N_LAT" -gt 0 ] && awk -v n="$N_LAT" -v p="$1" 'NR == int((n - 1) * p / 100) + 1 {printf "%.1f", $1 / 1000}' "$WORK/lat" || echo nan; }
P50=$(pct 50)
P99=$(pct 99)
MAX=$(tail -1 "$WORK/lat" | awk '{printf "%.1f", $1 / 1000}')

echo "== pgbench: $CLIENTS clients, $JOBS threads, ${SECONDS_}s, r1_reason('What is 6*7?', temperature => 0), checked against the reference"
grep -E '^(number of|latency average|tps)' "$WORK/pgbench.out" || cat "$WORK/pgbench.out"
echo "== results"
printf 'calls/s           %s\n' "${TPS:-?}"
printf 'calls completed   %s (latency log lines: %s)\n' "${DONE:-?}" "$N_LAT"
printf 'calls failed      %s (aborted clients: %s)\n' "${FAILED:-0}" "$ABORTED"
printf 'latency ms        p50 %s  p99 %s  max %s\n' "$P50" "$P99" "$MAX"
printf 'engine queue      %s at the end (waiting + running)\n' "$QUEUE"
printf 'host RSS kB       before %s  max %s  after %s (pid %s, after the run %s)\n' "$HOST_BEFORE" "$HOST_MAX" "$HOST_AFTER" "$HOST" "$HOST_NOW"
printf 'children RSS kB   before %s (%s procs)  max %s  after %s (%s procs)\n' "$CH_BEFORE" "$N_BEFORE" "$CH_MAX" "$CH_AFTER" "$N_AFTER"
for kv in "tps=${TPS:-0}" "done=${DONE:-0}" "failed=${FAILED:-0}" "aborted=$ABORTED" "latencies=$N_LAT" \
	"p50_ms=$P50" "p99_ms=$P99" "queue=$QUEUE" "pgbench_rc=$PGB_RC" "host_pid_before=$HOST" "host_pid_after=$HOST_NOW" \
	"host_rss_before_kb=$HOST_BEFORE" "host_rss_max_kb=$HOST_MAX" "host_rss_after_kb=$HOST_AFTER" \
	"children_rss_before_kb=$CH_BEFORE" "children_rss_after_kb=$CH_AFTER"; do
	echo "LOAD $kv"
done
[ "$PGB_RC" -eq 0 ] && [ "${FAILED:-0}" -eq 0 ] && [ "$ABORTED" -eq 0 ] && [ "$QUEUE" -eq 0 ] && [ "${DONE:-0}" -gt 0 ]
