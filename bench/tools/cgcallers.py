#!/usr/bin/env python3
"""Callers of a function (by substring) in a callgrind dump, with inclusive cost and call counts.
usage: cgcallers.py DUMP SUBSTRING [DIVISOR]"""
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
cost = defaultdict(int); count = defaultdict(int)
cur = None; callee = None; pending = None
for line in open(path, errors="replace"):
    line = line.rstrip("\n")
    if line.startswith("fn="):
        cur = name(line[3:]); continue
    if line.startswith("cfn="):
        callee = name(line[4:]); continue
    if line.startswith("calls="):
        pending = int(line[6:].split()[0]); continue
    if pending is not None and line and (line[0].isdigit() or line[0] in "+-*"):
        parts = line.split()
        if callee and needle in callee:
            cost[(cur, callee)] += int(parts[1]); count[(cur, callee)] += pending
        pending = None
for k, c in sorted(cost.items(), key=lambda x: -x[1])[:25]:
    print(f"{c/div:10,.0f} calls {count[k]/div:8.2f}  {k[0][:150]}  ->  {k[1][:60]}")
