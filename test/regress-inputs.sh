#!/bin/bash
# pg_regress's input directory DIR: DIR/sql -> test/sql (the queries) and
# DIR/expected -> expected/ (their outputs, at the top level as PGXS lays
# them out).  PostgreSQL 15's pg_regress reads both under one --inputdir and
# the top-level sql/ holds the extension's scripts, hence the links.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: test/regress-inputs.sh DIR}
mkdir -p "$dir"
ln -sfn "$(pwd)/test/sql" "$dir/sql"
ln -sfn "$(pwd)/expected" "$dir/expected"
chmod a+rx "$dir"
