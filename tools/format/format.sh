#!/bin/bash
# make format / make format-check: the C sources in PostgreSQL's layout, as
# pgindent lays them out: pg_bsd_indent (Debian package pg-bsd-indent) with
# pgindent's options and a list of typedef names, then a few fixes of what
# pg_bsd_indent alone does differently (postfix.py).  The typedef lists are
# made from the tree each run, one per file (typedefs.py).
#
#   tools/format/format.sh           rewrite the files that are not in layout
#   tools/format/format.sh --check   list them and show the diff; exit 1 if any
set -euo pipefail
cd "$(dirname "$0")/../.."
check=0
[ "${1:-}" = "--check" ] && check=1
INDENT=${PG_BSD_INDENT:-pg_bsd_indent}
if ! command -v "$INDENT" >/dev/null; then
	echo "format: $INDENT not found (apt-get install pg-bsd-indent)" >&2
	exit 2
fi
PG_INC=$(pg_config --includedir-server)
OPTS="-bad -bap -bbb -bc -bl -cli1 -cp33 -cdb -nce -d0 -di12 -nfc1 -i4 -l79 -lp -lpl -nip -npro -sac -tpg -ts4"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
files=$(git ls-files 'src/*.c' 'src/*.h' 'kernels/*.c' 'kernels/*.h')
python3 tools/format/typedefs.py "$PG_INC" "$tmp/lists" $files

# every file through pg_bsd_indent, then the fixes on all of them at once
mkdir -p "$tmp/out"
for f in $files; do
	out="$tmp/out/${f//\//__}"
	"$INDENT" $OPTS -U"$tmp/lists/${f//\//__}.list" "$f" "$out" 2>"$tmp/err" || true
	if [ -s "$tmp/err" ]; then
		echo "format: $f: pg_bsd_indent: $(head -c 300 "$tmp/err")" >&2
		exit 2
	fi
done
python3 tools/format/postfix.py "$tmp"/out/*

changed=0
for f in $files; do
	out="$tmp/out/${f//\//__}"
	if ! cmp -s "$f" "$out"; then
		changed=$((changed + 1))
		if [ $check = 1 ]; then
			diff -u "$f" "$out" | sed "s|$out|$f (formatted)|" || true
		else
			cp "$out" "$f"
			echo "formatted $f"
		fi
	fi
done
if [ $check = 1 ] && [ $changed -gt 0 ]; then
	echo "format: $changed files are not in layout: run make format" >&2
	exit 1
fi
