#!/usr/bin/env python3
"""Callees of a function (exact name match, or substring with -s) in a callgrind dump, inclusive.
usage: cgcallees.py DUMP NAME [DIVISOR]"""
import re, sys
from collections import defaultdict
path, needle = sys.argv[1], sys.argv[2]
div = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
names = {}
def name(rest):
    m = re.match(r"\((\d+)\)(?: (.*))?", rest)
    if m:
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), rest)
    return rest
cost = defaultdict(int); selfc = 0
cur = None; callee = None; pending = None
for line in open(path, errors="replace"):
    line = line.rstrip("\n")
    if line.startswith("fn="):
        cur = name(line[3:]); continue
    if line.startswith("cfn="):
        callee = name(line[4:]); continue
    if line.startswith("calls="):
        pending = int(line[6:].split()[0]); continue
    if line and (line[0].isdigit() or line[0] in "+-*"):
        parts = line.split()
        if cur == needle:
            if pending is not None:
                cost[callee] += int(parts[1])
            else:
                selfc += int(parts[1])
        pending = None
print(f"self {selfc/div:10,.0f}")
for k, c in sorted(cost.items(), key=lambda x: -x[1])[:30]:
    print(f"{c/div:10,.0f}  {k[:160]}")
