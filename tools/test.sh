#!/bin/bash
# Build r1_pg and run every test: the engine's unit and golden tests, the r1
# tool's interface tests (r1 pull's against fake servers on 127.0.0.1), and the
# extension's pg_regress, pgTAP and fault tests against a throwaway PostgreSQL
# cluster, then the engine under ASan+UBSan,
# valgrind and a bounded libFuzzer run of each loader.  Installs missing
# Debian packages first (needs root or sudo).  This is the README's test command; CI runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
make -j2
echo "== the C sources are in PostgreSQL's layout (make format)"
make -s format-check
echo "== engine unit and golden tests"
make unit
echo "== r1 tool interface tests"
prove --exec python3 test/cli/test_cli.py
prove --exec python3 test/cli/test_pull.py   # r1 pull against a fake hub and registry on 127.0.0.1
echo "== r1's GGUF files in llama.cpp (skips where npm or the peer build fails)"
prove --exec python3 test/cli/test_llamacpp.py
echo "== extension tests"
test/run-extension-tests.sh
echo "== the Debian package: build, install into a fresh cluster, one call"
prove --exec bash test/package.sh
echo "== sanitizers, valgrind and fuzzing"
test/fuzz/run.sh
echo "tools/test.sh: all tests passed"
