#!/usr/bin/env python3
"""Gaps in a busy loop's own progress (usage: gaps.py SECONDS): how often and how long this vCPU is
not running although the loop wants it. Run pinned (taskset -c N), alone and with the other core
busy, to see the machine's stalls (bench/RESULTS.md, the HTTP/1.1 tail)."""
import time, sys
end = time.perf_counter() + float(sys.argv[1]); last = time.perf_counter(); gaps = []
while True:
    now = time.perf_counter()
    if now - last > 0.0005: gaps.append(now - last)
    last = now
    if now > end: break
gaps.sort()
print(f"gaps>0.5ms: {len(gaps)}  >2ms: {sum(g>0.002 for g in gaps)}  >5ms: {sum(g>0.005 for g in gaps)}  max {max(gaps)*1000 if gaps else 0:.1f} ms  total {sum(gaps)*1000:.1f} ms")
