#!/usr/bin/env python3
"""Self cost per function from a callgrind dump (callgrind_annotate's self view stops at the first
thread-entry function for these Rust dumps). usage: cgself.py DUMP [TOP] [DIVISOR]"""
import re, sys
from collections import defaultdict
path = sys.argv[1]; top = int(sys.argv[2]) if len(sys.argv) > 2 else 40
div = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
names = {}
selfc = defaultdict(int)
cur = None; after_calls = False; total = 0
def name(kind, rest):
    m = re.match(r"\((\d+)\)(?: (.*))?", rest)
    if m:
        if m.group(2) is not None:
            names[(kind, m.group(1))] = m.group(2)
        return names.get((kind, m.group(1)), rest)
    return rest
for line in open(path, errors="replace"):
    line = line.rstrip("\n")
    if line.startswith("fn="):
        cur = name("fn", line[3:]); after_calls = False; continue
    if line.startswith(("cfn=", "cfi=", "cfl=", "cob=")):
        if line.startswith("cfn="): name("fn", line[4:])
        continue
    if line.startswith(("fl=", "fi=", "fe=", "ob=")):
        continue
    if line.startswith("calls="):
        after_calls = True; continue
    if line and (line[0].isdigit() or line[0] in "+-*"):
        parts = line.split()
        if len(parts) >= 2:
            c = int(parts[1])
            if after_calls:
                after_calls = False
            else:
                selfc[cur] += c; total += c
        continue
print(f"total self {total:,}  ({total/div:,.0f} per request)")
for f, c in sorted(selfc.items(), key=lambda x: -x[1])[:top]:
    print(f"{c/div:10,.0f} {100*c/total:5.1f}%  {f[:170]}")
