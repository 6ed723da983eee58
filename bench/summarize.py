#!/usr/bin/env python3
"""Summarize a run.sh scratch directory: medians over rounds, ratios vs direct.

usage: summarize.py RUN_DIR PARAMS_STRING OUT_MD
Prints a compact table and writes OUT_MD (relative to this directory).
"""
import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from idle_summary import idle_section

run, params, out = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
rows = list(csv.DictReader(open(run / "raw.tsv"), delimiter="\t"))
hwm = defaultdict(list)
for r in csv.DictReader(open(run / "hwm.tsv"), delimiter="\t"):
    hwm[r["target"]].append(int(r["peak_rss_kb"]))

def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None

def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None

groups = defaultdict(list)
order = []
for r in rows:
    k = (r["target"], r["test"])
    if k not in groups:
        order.append(k)
    groups[k].append(r)
tests = ["grpc", "http1", "grpc-tls", "grpc-stream", "tls-hs", "json"]
# Latency at equal load (run.sh FIXED=1): the same offered rate for every target, per test.
FIXED = ["grpc", "http1", "grpc-tls", "grpc-stream"]
offered = {}
if (run / "fixed-rates.tsv").exists():
    for line in open(run / "fixed-rates.tsv"):
        test, rate = line.split()
        offered[test] = float(rate)
# Which direct test each proxied test is compared with (tls-hs has no direct counterpart).
DIRECT = {"grpc": "grpc", "http1": "http1", "grpc-tls": "grpc", "grpc-stream": "grpc-stream", "grpc-web": "grpc",
          "grpc-web-h1": "grpc"}
targets = []
for t, _ in order:
    if t not in targets:
        targets.append(t)

summary = {}
for k, rs in groups.items():
    rps = [num(r["rps"]) for r in rs]
    m = med(rps)
    spread = (max(rps) - min(rps)) / m * 100 if m else None
    summary[k] = dict(
        n=len(rs), rps=m, spread=spread,
        mean=med([num(r["mean_us"]) for r in rs]), p50=med([num(r.get("p50_us")) for r in rs]),
        p99=med([num(r["p99_us"]) for r in rs]),
        errors=sum(int(num(r["errors"]) or 0) for r in rs),
        cpureq=med([num(r["proxy_cpu_us_per_req"]) for r in rs]),
        cpureq_all=[v for v in (num(r["proxy_cpu_us_per_req"]) for r in rs) if v is not None],
        b0=med([num(r.get("cpu0_busy_pct")) for r in rs]), b1=med([num(r.get("cpu1_busy_pct")) for r in rs]),
    )

def f(v, fmt="{:,.0f}"):
    return "-" if v is None else fmt.format(v)

hdr = ["target", "test", "rate/s (median)", "vs direct", "spread", "mean us", "p50 us", "p99 us",
       "errors", "proxy us/unit", "busy cpu0/1", "peak RSS MiB"]
lines = []
for t in targets:
    for test in tests:
        s = summary.get((t, test))
        if not s:
            continue
        d = summary.get(("direct", DIRECT[test])) if test in DIRECT else None
        ratio = s["rps"] / d["rps"] if d and d["rps"] and s["rps"] else None
        rss = med(hwm.get(t, [])) if t != "direct" else None
        lines.append([t, test, f(s["rps"]), f(ratio, "{:.2f}x"), f(s["spread"], "{:.0f}%"),
                      f(s["mean"]), f(s["p50"]), f(s["p99"]), str(s["errors"]),
                      (f(s["cpureq"], "{:.1f}") + (" ({:.1f}-{:.1f})".format(min(s["cpureq_all"]), max(s["cpureq_all"])) if len(s["cpureq_all"]) > 1 else "")), f(s["b0"]) + "/" + f(s["b1"]) + "%", f(rss / 1024 if rss else None, "{:.1f}")])

fixed_hdr = ["target", "test", "offered/s", "achieved/s (median)", "mean us", "p50 us", "p99 us", "errors",
             "proxy us/unit", "busy cpu0/1"]
fixed_lines = []
for t in targets:
    for test in FIXED:
        s = summary.get((t, test + "-fixed"))
        if not s:
            continue
        fixed_lines.append([t, test, f(offered.get(test)), f(s["rps"]), f(s["mean"]), f(s["p50"]), f(s["p99"]),
                            str(s["errors"]), f(s["cpureq"], "{:.1f}"), f(s["b0"]) + "/" + f(s["b1"]) + "%"])

def md_table(h, ls):
    out = ["| " + " | ".join(h) + " |", "|" + "|".join("---" for _ in h) + "|"]
    out += ["| " + " | ".join(l) + " |" for l in ls]
    return "\n".join(out)

def print_table(h, ls):
    widths = [max(len(x) for x in col) for col in zip(h, *ls)]
    for l in [h] + ls:
        print("  ".join(x.rjust(w) if i > 1 else x.ljust(w) for i, (x, w) in enumerate(zip(l, widths))))

print_table(hdr, lines)
if fixed_lines:
    print("\nlatency at equal load:")
    print_table(fixed_hdr, fixed_lines)

def get(t, test, k):
    v = summary.get((t, test))
    return v[k] if v else None

def verdict(ok):
    return "-" if ok is None else ("yes" if ok else "NO")

def cmp(a, b, f):
    return None if a is None or b is None else f(a, b)

checks_md = []
for ours in [t for t in targets if t.startswith("sluice") and t not in ("sluice-nometrics", "sluice-plugins", "sluice-otel", "sluice-otel-full", "sluice-grpcweb", "sluice-json", "sluice-auth")]:
    trows = [
        ("gRPC unary proxy CPU/request below HAProxy's and <= 12 us",
         f"{f(get(ours, 'grpc', 'cpureq'), '{:.1f}')} vs {f(get('haproxy', 'grpc', 'cpureq'), '{:.1f}')} us",
         cmp(get(ours, "grpc", "cpureq"), get("haproxy", "grpc", "cpureq"), lambda a, b: a < b and a <= 12)),
        ("gRPC unary req/s >= 1.3x Envoy's",
         f"{f(get(ours, 'grpc', 'rps'))} vs 1.3 x {f(get('envoy', 'grpc', 'rps'))}",
         cmp(get(ours, "grpc", "rps"), get("envoy", "grpc", "rps"), lambda a, b: a >= 1.3 * b)),
        ("HTTP/1.1 proxy CPU/request <= nginx's",
         f"{f(get(ours, 'http1', 'cpureq'), '{:.1f}')} vs {f(get('nginx', 'http1', 'cpureq'), '{:.1f}')} us",
         cmp(get(ours, "http1", "cpureq"), get("nginx", "http1", "cpureq"), lambda a, b: a <= b)),
        ("gRPC over TLS req/s >= HAProxy's",
         f"{f(get(ours, 'grpc-tls', 'rps'))} vs {f(get('haproxy', 'grpc-tls', 'rps'))}",
         cmp(get(ours, "grpc-tls", "rps"), get("haproxy", "grpc-tls", "rps"), lambda a, b: a >= b)),
    ]
    for test in FIXED:
        trows.append((f"p99 <= Envoy's ({test}, closed loop)",
                     f"{f(get(ours, test, 'p99'))} vs {f(get('envoy', test, 'p99'))} us",
                     cmp(get(ours, test, "p99"), get("envoy", test, "p99"), lambda a, b: a <= b)))
    for test in FIXED:
        fx, rate = test + "-fixed", offered.get(test)
        if get(ours, fx, "p99") is None:
            continue
        # A target that fell behind the offered rate would have its p99 understated: it must keep up.
        held = cmp(get(ours, fx, "rps"), rate, lambda a, b: a >= 0.95 * b)
        trows.append((f"p99 <= Envoy's ({test}, equal load {f(rate)}/s)",
                      f"{f(get(ours, fx, 'p99'))} vs {f(get('envoy', fx, 'p99'))} us"
                      + ("" if held else f" (rate not held: {f(get(ours, fx, 'rps'))}/s)"),
                      cmp(get(ours, fx, "p99"), get("envoy", fx, "p99"), lambda a, b: a <= b and bool(held))))
    errs = sum(s["errors"] for (t, _), s in summary.items() if t == ours)
    trows.append(("zero errors", str(errs), errs == 0))
    checks_md.append(f"### {ours}\n\n" + md_table(["performance target", "this run", "met"],
                                                   [[a, b, verdict(c)] for a, b, c in trows]))


def cpu_compare(a, b, title, a_label, b_label):
    """A table of proxy CPU per unit, target a against target b, per test (when both ran)."""
    if a not in targets or b not in targets:
        return
    crows = []
    for test in tests:
        x, y = get(a, test, "cpureq"), get(b, test, "cpureq")
        if x and y:
            crows.append([test, f"{x:.2f}", f"{y:.2f}", f"{100 * (x - y) / y:+.1f}%"])
    checks_md.append(f"### {title}\n\n" + md_table(["test", f"{a_label} us/unit", f"{b_label} us/unit", "difference"], crows))

cpu_compare("sluice", "sluice-nometrics", "Metrics cost (SLUICE_METRICS=on vs off; target < 3%)", "on", "off")
cpu_compare("sluice", "sluice-nopgo",
            "Profile-guided build (`sluice`, as shipped) vs the same code without PGO (`sluice-nopgo`)", "PGO", "no PGO")
cpu_compare("sluice-plugins", "sluice",
            "Plugins cost (`cors` + `correlation-id` on the routes vs none; target: gRPC at most 1.10x)", "plugins", "none")
cpu_compare("sluice-otel", "sluice",
            "Tracing cost (`opentelemetry` at sampling_rate 0.01 vs none; target: gRPC at most 1.10x)", "otel 0.01", "none")
cpu_compare("sluice-otel-full", "sluice",
            "Tracing cost at sampling_rate 1 (every request exported; reported, no target)", "otel 1", "none")
# gRPC-Web (the grpcweb target): µs per call against plain gRPC on the same proxy in the same run, and
# against Envoy's grpc_web filter.
if "sluice-grpcweb" in targets:
    wrows = []
    for test in ("grpc-web", "grpc-web-h1"):
        web, plain, envoy = (get("sluice-grpcweb", test, "cpureq"), get("sluice-grpcweb", "grpc", "cpureq"),
                             get("envoy", test, "cpureq"))
        wrows.append((f"{test} proxy CPU/call within 1.25x of plain gRPC",
                      f"{f(web, '{:.1f}')} vs 1.25 x {f(plain, '{:.1f}')} us", cmp(web, plain, lambda a, b: a <= 1.25 * b)))
        wrows.append((f"{test} proxy CPU/call <= 0.7x Envoy's grpc_web",
                      f"{f(web, '{:.1f}')} vs 0.7 x {f(envoy, '{:.1f}')} us", cmp(web, envoy, lambda a, b: a <= 0.7 * b)))
    checks_md.append("### sluice-grpcweb (gRPC-Web)\n\n" + md_table(["performance target", "this run", "met"],
                                                                   [[a, b, verdict(c)] for a, b, c in wrows]))
json_us, grpc_us = get("sluice-json", "json", "cpureq"), get("sluice", "grpc", "cpureq")
if json_us and grpc_us:
    checks_md.append("### Transcoding cost (grpc-gateway: a JSON call to `/v1/echo` vs the same gRPC call)\n\n" + md_table(
        ["test", "JSON us/call", "gRPC us/call", "ratio"], [["json vs grpc", f"{json_us:.2f}", f"{grpc_us:.2f}", f"{json_us / grpc_us:.2f}x"]]))
cpu_compare("sluice-auth", "sluice",
            "Auth cost (`sluice-auth`: AUTH_PLUGINS, default key-auth, on the gRPC route vs none; target: gRPC at most 1.15x)",
            "auth", "none")
cpu_compare("sluice-auth", "envoy-auth",
            "sluice-auth vs Envoy with its equivalent filters (`envoy-auth`: RBAC key check; target: gRPC at most 0.6x)",
            "sluice", "envoy")
checks_text = "\n\n".join(checks_md) if checks_md else "(no sluice target in this run)"
versions = (run / "versions.txt").read_text() if (run / "versions.txt").exists() else ""
checks = (run / "checks.txt").read_text() if (run / "checks.txt").exists() else ""
raw_h = ["target", "round", "test", "rps", "mean_us", "p50_us", "p99_us", "errors", "proxy_cpu_pct", "proxy_cpu_us_per_req",
         "cpu0_busy_pct", "cpu1_busy_pct", "bg_before", "others_pct", "proxy_sys_pct"]
raw_l = [[r.get(c) or "" for c in raw_h] for r in rows]
md = f"""# Proxy benchmark results ({Path(out).stem.replace('results-', '')})

Parameters: `{params}`. Medians over rounds; `spread` = (max - min) / median of req/s;
`vs direct` = req/s / direct backend req/s (grpc-tls is compared with direct h2c grpc);
`rate/s` = requests/s, except grpc-stream: messages/s (server-streaming calls of STREAM_MSGS
messages) and tls-hs: new TLS handshakes/s (parallel `openssl s_time -new`, no resumption);
`proxy us/unit` = proxy CPU time (user+sys, all its threads/processes) per request (per message for
grpc-stream, per handshake for tls-hs), median (min-max):
the steadiest number here, as it barely depends on what else the machine is doing;
`busy cpu0/1` = how busy each core was during the test (/proc/stat; with PIN=1 cpu1 runs only the
proxy, cpu0 the backend + load generator: the core near 100% is the bottleneck); `peak RSS` = VmHWM summed over the proxy's processes.
gRPC tests: h2load, 10 connections x 5 streams, 105-byte gRPC frame; latency = per-request time from
h2load's log. http1: wrk, 1 thread, 50 connections; latency from wrk --latency. `bg_before` (raw runs) =
background busy cpu0/cpu1 in the quiet check just before a test; `others_pct` = CPU used during the
test by processes not started by run.sh, in % of one core (other tenants; a test is redone while > 10%);
`proxy_sys_pct` (raw runs) = share of the proxy's CPU time spent in the kernel.

{md_table(hdr, lines)}

{idle_section(run, md_table)}
## Latency at equal load

Every target gets the same offered rate per test: FIXED_PCT% of the lowest closed-loop median
among the proxies above, sent open loop (h2load `--rps`: each client sends on schedule; HTTP/1.1 with
h2load `--h1`, 50 connections; gRPC 10 connections x 5 streams). The closed-loop rows above run each
proxy flat out; a fast one keeps both cores busy and its p99 then mostly measures the load generator
and backend waiting for each other on core 0. `achieved/s` below 95% of `offered/s` means the target
fell behind and its latency is understated (h2load times a request from when it is sent).

{md_table(fixed_hdr, fixed_lines) if fixed_lines else "(not run: FIXED=0)"}

## Targets

{checks_text}

## Versions

```
{versions.strip()}
```

## Correctness checks (before each measurement)

```
{checks.strip()}
```

## Raw runs

{md_table(raw_h, raw_l)}
"""
Path(out).write_text(md)
print(f"wrote {out}")
