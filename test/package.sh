#!/bin/bash
# The Debian package as a DBA installs it: `make deb` builds
# postgresql-15-r1-pg_*.deb, dpkg installs it, a fresh cluster preloads the
# packaged library, CREATE EXTENSION and one r1_reason() call on the demo
# model made with the packaged r1 tool; then the package is removed and this
# tree's `make install` put back.  Needs root (dpkg).  TAP output for prove.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PG_BIN=/usr/lib/postgresql/15/bin
exec 9>/tmp/r1_pg_extension_tests.lock	# the system's PostgreSQL directories are shared
flock 9

n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; echo "1..$n"; exit 1; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else not_ok "$what"; fi; }

if [ "$(id -u)" -ne 0 ]; then echo "1..0 # SKIP needs root for dpkg"; exit 0; fi
for p in dpkg-dev debhelper postgresql-server-dev-all; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		{ echo "1..0 # SKIP $p is not installed (tools/install-deps.sh installs it)"; exit 0; }
done

TMP=$(mktemp -d /tmp/r1_pg_deb.XXXXXX)
chmod 755 "$TMP"
cleanup() {
	rc=$?
	[ -f "$TMP/data/postmaster.pid" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$TMP/data" -m immediate -w stop >/dev/null 2>&1 || true
	dpkg -r postgresql-15-r1-pg >/dev/null 2>&1 || true
	make -s install >/dev/null 2>&1 || true	# this tree's build, as before
	[ "$rc" -ne 0 ] && [ -f "$TMP/log" ] && tail -n 30 "$TMP/log"
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT

make deb >"$TMP/build.log" 2>&1 || { tail -n 40 "$TMP/build.log"; not_ok "make deb"; }
deb=$(ls build/deb/postgresql-15-r1-pg_*.deb)
ok "make deb builds $(basename "$deb")"
check "the package holds the library, the control file, every SQL script and the r1 tool" \
	bash -c "dpkg-deb -c '$deb' | grep -q 'lib/postgresql/15/lib/r1_pg.so' &&
	         dpkg-deb -c '$deb' | grep -q 'extension/r1_pg.control' &&
	         dpkg-deb -c '$deb' | grep -q 'extension/r1_pg--[0-9.]*--[0-9.]*.sql' &&
	         dpkg-deb -c '$deb' | grep -q 'lib/postgresql/15/bin/r1'"
dpkg -i "$deb" >"$TMP/dpkg.log" 2>&1 || { cat "$TMP/dpkg.log"; not_ok "dpkg -i"; }
ok "dpkg -i installs it"
check "dpkg owns the installed library" bash -c "dpkg -S /usr/lib/postgresql/15/lib/r1_pg.so >/dev/null"

"$PG_BIN/r1" demo-model --out "$TMP/model" --tokenizer "$REPO/test/fixtures/tokenizer" >/dev/null
chmod -R a+rX "$TMP/model"
mkdir "$TMP/sock" "$TMP/data" && chown postgres: "$TMP/sock" "$TMP/data"
runuser -u postgres -- "$PG_BIN/initdb" -D "$TMP/data" -U postgres -A trust --no-sync >"$TMP/initdb.log" 2>&1 ||
	{ cat "$TMP/initdb.log"; not_ok "initdb"; }
cat >>"$TMP/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$TMP/sock'
port = 5434
shared_preload_libraries = 'r1_pg'
r1.model = '$TMP/model'
r1.device = 'cpu'
r1.threads = 2
CONF
touch "$TMP/log" && chown postgres: "$TMP/log"
check "a fresh cluster starts with the packaged library preloaded" \
	bash -c "runuser -u postgres -- '$PG_BIN/pg_ctl' -D '$TMP/data' -l '$TMP/log' -w start >/dev/null 9>&-"
psql() { "$PG_BIN/psql" -XAtq -h "$TMP/sock" -p 5434 -U postgres -v ON_ERROR_STOP=1 "$@"; }
psql -c "CREATE EXTENSION r1_pg" >/dev/null
ok "CREATE EXTENSION r1_pg"
for _ in $(seq 1 600); do
	[ "$(psql -c "SELECT state FROM r1_status()")" = ready ] && break
	sleep 0.1
done
check "the engine is ready" test "$(psql -c "SELECT state FROM r1_status()")" = ready
boxed=$(psql -c "SELECT boxed FROM r1_reason('What is 6*7?', temperature => 0)")
check "r1_reason() answers \\boxed{$boxed}" test "$boxed" = 42
echo "1..$n"
