#!/bin/bash
# Run the r1_pg extension's tests: build and install, create a throwaway
# cluster (initdb in a temp dir, shared_preload_libraries = r1_pg, r1.model =
# the generated demo model), run pg_regress (test/sql, expected/), pgTAP
# (test/pgtap, pg_prove) and the fault tests (test/t, Perl TAP with IPC::Run),
# then stop and remove the cluster.  Exits non-zero on any failure.
#
# As root (CI) the server runs as the OS user "postgres".  Set R1_KEEP_TMP=1
# to keep the temp dir (cluster, logs, regression diffs) for inspection, and
# R1_TEST_PARTS to a subset of "regress pgtap prove" to run only those, and
# R1_TEST_FILES to the Perl tests to run (e.g. test/t/010_upgrade.pl).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
export PG_CONFIG=${PG_CONFIG:-pg_config}

# one run at a time per machine: `make install` writes the system's
# PostgreSQL directories
exec 9>/tmp/r1_pg_extension_tests.lock
flock 9

echo "== build and install"
make -j2 >/dev/null
make install >/dev/null

TMP=$(mktemp -d /tmp/r1_pg_test.XXXXXX)
chmod 755 "$TMP"
. test/lib/cluster.sh
cleanup() {
	local rc=$?
	r1_cluster_stop
	if [ "$rc" -ne 0 ] || [ -n "${R1_KEEP_TMP:-}" ]; then
		[ -f "$TMP/regress/regression.diffs" ] && cat "$TMP/regress/regression.diffs"
		if [ -n "${R1_KEEP_TMP:-}" ]; then
			echo "kept $TMP"
		else
			echo "== server log (tail)"; tail -n 40 "$TMP/server.log" 2>/dev/null || true
			rm -rf "$TMP"
		fi
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT

echo "== demo model and cluster in $TMP"
bin/r1 demo-model --out "$TMP/model" >/dev/null
chmod -R a+rX "$TMP/model"
export R1_TEST_MODEL=$TMP/model R1_TEST_TMP=$TMP
# max_worker_processes: the static workers (engine, jobs launcher, 2 trace
# writers, logical replication launcher), 4 job workers, and room for
# parallel queries (test/t/011_trace_writer.pl fills it up)
r1_cluster_start "$TMP" "$TMP/model" "r1.device = 'cpu'" "r1.threads = 2" "r1.max_ctx = 4096" \
	"r1.jobs_database = 'r1_jobs'" "max_worker_processes = 16"
# durable jobs run in their own database (test/sql/r1_jobs.sql, test/t/016_jobs.pl)
"$R1_PGBIN/psql" -XqAt -c "CREATE DATABASE r1_jobs" >/dev/null
r1_wait_state ready 60

failed=0
PARTS=" ${R1_TEST_PARTS:-regress pgtap prove} "
if [[ $PARTS == *" regress "* ]]; then
echo "== pg_regress"
PGXS_DIR=$(dirname "$($PG_CONFIG --pgxs)")/..
REGRESS=$(sed -n 's/^REGRESS = //p' Makefile)
test/regress-inputs.sh "$TMP/regress-in"
"$PGXS_DIR/test/regress/pg_regress" --inputdir="$TMP/regress-in" --outputdir="$TMP/regress" \
	--bindir="$R1_PGBIN" --host="$PGHOST" --port="$PGPORT" --user=postgres \
	--dbname=contrib_regression $REGRESS || failed=1
fi

if [[ $PARTS == *" pgtap "* ]]; then
echo "== pgTAP (pg_prove)"
"$R1_PGBIN/psql" -XqAt -c "DROP DATABASE IF EXISTS r1_tap" -c "CREATE DATABASE r1_tap" >/dev/null
"$R1_PGBIN/psql" -XqAt -d r1_tap -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION r1_pg" >/dev/null
pg_prove --dbname r1_tap --host "$PGHOST" --port "$PGPORT" --username postgres test/pgtap/*.sql || failed=1
fi

if [[ $PARTS == *" prove "* ]]; then
echo "== fault tests (prove)"
prove -v ${R1_TEST_FILES:-test/t/*.pl} || failed=1
fi

if [ "$failed" -ne 0 ]; then
	echo "run-extension-tests: FAILED"
	exit 1
fi
echo "run-extension-tests: all extension tests passed"
