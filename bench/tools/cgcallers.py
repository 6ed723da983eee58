#!/usr/bin/env python3
"""Callers of a function (by substring) in a callgrind dump, with inclusive cost and call counts.
usage: cgcallers.py DUMP SUBSTRING [DIVISOR]"""
import sys
from collections import defaultdict
from cgdump import records
path, needle = sys.argv[1], sys.argv[2]
div = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
cost = defaultdict(int); count = defaultdict(int)
for function, callee, c, calls in records(path):
    if callee and needle in callee:
        cost[(function, callee)] += c; count[(function, callee)] += calls
for k, c in sorted(cost.items(), key=lambda x: -x[1])[:25]:
    print(f"{c/div:10,.0f} calls {count[k]/div:8.2f}  {k[0][:150]}  ->  {k[1][:60]}")
