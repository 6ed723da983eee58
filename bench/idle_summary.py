"""The idle-connections table of the results file (run.sh's `idle` test, idle.sh): RSS growth per
idle h2c and TLS h2 connection for each target, median over rounds, and the memory targets: sluice
at most 4 KiB per idle h2c and 12 KiB per idle TLS connection, and below every peer."""
import csv
import statistics
from collections import defaultdict
from pathlib import Path

TARGETS = {"h2c": 4.0, "tls": 12.0}
PEERS = ("nginx", "envoy", "haproxy")


def idle_section(run: Path, md_table) -> str:
    path = run / "idle.tsv"
    if not path.exists():
        return ""
    per = defaultdict(list)
    info = {}
    for r in csv.DictReader(open(path), delimiter="\t"):
        try:
            per[(r["target"], r["kind"])].append(float(r["kib_per_conn"]))
        except ValueError:
            continue
        info[(r["target"], r["kind"])] = r
    if not per:
        return ""
    targets = sorted({t for t, _ in per}, key=lambda t: (t.startswith("sluice"), t))
    med = {k: statistics.median(v) for k, v in per.items()}
    hdr = ["target", "KiB / idle h2c", "KiB / idle TLS", "held h2c / TLS", "new connection served (h2c / TLS phase)"]
    lines = []
    for t in targets:
        h, s = info.get((t, "h2c"), {}), info.get((t, "tls"), {})
        lines.append([t, f"{med[(t, 'h2c')]:.1f}" if (t, "h2c") in med else "-",
                      f"{med[(t, 'tls')]:.1f}" if (t, "tls") in med else "-",
                      f"{h.get('open', '-')} / {s.get('open', '-')}",
                      f"{h.get('check', '-')} ({h.get('check_ms', '-')} ms) / {s.get('check', '-')} ({s.get('check_ms', '-')} ms)"])
    checks = []
    for t in (t for t in targets if t.startswith("sluice")):
        for kind, limit in TARGETS.items():
            if (t, kind) not in med:
                continue
            v = med[(t, kind)]
            peers = {p: med[(p, kind)] for p in PEERS if (p, kind) in med}
            below = all(v < p for p in peers.values())
            ok = v <= limit and below and bool(peers)
            checks.append(f"- {t} {kind}: {v:.1f} KiB per idle connection, target <= {limit:.0f} "
                          f"and below {', '.join(f'{p} {x:.1f}' for p, x in peers.items()) or '(no peer measured)'}: "
                          f"{'MET' if ok else 'NOT MET'}")
    return f"""## Idle connections

Each target holds IDLE_N idle HTTP/2 connections, h2c first and then TLS (ALPN h2), opened by
`tools/idle_conns.py` from several loopback source addresses (client preface and SETTINGS
exchanged both ways, then silent); the figure is the growth of the proxy's RSS (VmRSS summed over
its processes) divided by the connections held. While they are held, gRPC calls on a new connection
must succeed (`bench-check grpc`, IDLE_CHECK calls).

{md_table(hdr, lines)}

{chr(10).join(checks) if checks else "(no sluice target)"}
"""
