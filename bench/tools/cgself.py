#!/usr/bin/env python3
"""Self cost per function from a callgrind dump (callgrind_annotate's self view stops at the first
thread-entry function for these Rust dumps). usage: cgself.py DUMP [TOP] [DIVISOR]"""
import sys
from collections import defaultdict
from cgdump import records
path = sys.argv[1]; top = int(sys.argv[2]) if len(sys.argv) > 2 else 40
div = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
selfc = defaultdict(int)
for function, callee, cost, _ in records(path):
    if callee is None:
        selfc[function] += cost
total = sum(selfc.values())
print(f"total self {total:,}  ({total/div:,.0f} per request)")
for f, c in sorted(selfc.items(), key=lambda x: -x[1])[:top]:
    print(f"{c/div:10,.0f} {100*c/total:5.1f}%  {f[:170]}")
