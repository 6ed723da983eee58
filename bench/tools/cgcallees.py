#!/usr/bin/env python3
"""Callees of a function (exact name) in a callgrind dump, inclusive, and its self cost.
usage: cgcallees.py DUMP NAME [DIVISOR]"""
import sys
from collections import defaultdict
from cgdump import records
path, needle = sys.argv[1], sys.argv[2]
div = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
cost = defaultdict(int); selfc = 0
for function, callee, c, _ in records(path):
    if function == needle:
        if callee is None:
            selfc += c
        else:
            cost[callee] += c
print(f"self {selfc/div:10,.0f}")
for k, c in sorted(cost.items(), key=lambda x: -x[1])[:30]:
    print(f"{c/div:10,.0f}  {k[:160]}")
