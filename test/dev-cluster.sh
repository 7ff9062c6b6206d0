#!/bin/bash
# A test cluster that stays up while you iterate on one test:
#
#   eval "$(test/dev-cluster.sh start)"   # build, install, start (demo model), print the exports
#   prove -v test/t/013_reload.pl          # one Perl test, as often as you like
#   test/dev-cluster.sh regress r1_basic   # one pg_regress file (test/sql/r1_basic.sql)
#   pg_prove -d r1_tap test/pgtap/r1_api.sql
#   test/dev-cluster.sh stop
#
# One unit test needs no cluster: `make build/test/test_chat && build/test/test_chat`.
# The cluster lives in /tmp/r1_dev (R1_DEV_DIR); settings as in test/run-extension-tests.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${R1_DEV_DIR:-/tmp/r1_dev}
export PG_CONFIG=${PG_CONFIG:-pg_config}
. test/lib/cluster.sh
case "${1:-}" in
start)
	make -j2 >/dev/null && make install >/dev/null
	if [ -f "$DIR/data/postmaster.pid" ]; then
		echo "test/dev-cluster.sh: already running in $DIR" >&2
	else
		rm -rf "$DIR" && mkdir -p "$DIR" && chmod 755 "$DIR"
		bin/r1 demo-model --out "$DIR/model" >/dev/null
		chmod -R a+rX "$DIR/model"
		r1_cluster_start "$DIR" "$DIR/model" "r1.device = 'cpu'" "r1.threads = 2" "r1.max_ctx = 4096" \
			"r1.jobs_database = 'r1_jobs'" >&2
		"$R1_PGBIN/psql" -XqAt -c "CREATE DATABASE r1_jobs" >/dev/null
		"$R1_PGBIN/psql" -XqAt -c "CREATE DATABASE r1_tap" >/dev/null
		"$R1_PGBIN/psql" -XqAt -d r1_tap -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION r1_pg" >/dev/null
		r1_wait_state ready 60 >&2
	fi
	echo "export PGHOST=$DIR/sock PGPORT=5432 PGUSER=postgres PGDATABASE=postgres R1_PGDATA=$DIR/data" \
		"R1_PGBIN=$R1_PGBIN R1_SERVER_LOG=$DIR/server.log R1_TEST_MODEL=$DIR/model R1_TEST_TMP=$DIR"
	;;
regress)
	shift
	export PGHOST=$DIR/sock PGPORT=5432
	PGXS_DIR=$(dirname "$($PG_CONFIG --pgxs)")/..
	test/regress-inputs.sh "$DIR/regress-in"
	"$PGXS_DIR/test/regress/pg_regress" --inputdir="$DIR/regress-in" --outputdir="$DIR/regress" --bindir="$R1_PGBIN" \
		--host="$PGHOST" --port="$PGPORT" --user=postgres --dbname=contrib_regression "$@"
	;;
stop)
	export R1_PGDATA=$DIR/data
	r1_cluster_stop
	;;
*)
	sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
