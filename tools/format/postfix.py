#!/usr/bin/env python3
"""What pgindent does after pg_bsd_indent, as far as this tree needs it:
a function definition's return type keeps a single space before its '*'s
(pg_bsd_indent lines it up like a declaration)."""
import re, sys

for path in sys.argv[1:]:
    s = open(path).read()
    # "Jsonb\t   *\nr1_call(" -> "Jsonb *\nr1_call("
    t = re.sub(r'^([A-Za-z_][\w ]*?)[ \t]+(\*+)\n(?=[A-Za-z_]\w*\()', r'\1 \2\n', s, flags=re.M)
    if t != s:
        open(path, 'w').write(t)
