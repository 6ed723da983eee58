#!/usr/bin/env python3
"""Writes a Kong declarative config (JSON) with N routes, one per host like one Ingress per host:
route i matches host host-i.example.com and path /r<i>/, to one of N/10 services that all point at
the backend. usage: gen_config.py N BACKEND_HOST BACKEND_PORT OUT.json"""
import json, sys
n, host, port, out = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
per = 10
services = []
for s in range((n + per - 1) // per):
    routes = []
    for i in range(s * per, min(n, (s + 1) * per)):
        routes.append({"name": f"bench.route-{i}", "hosts": [f"host-{i}.example.com"], "paths": [f"/r{i}/"],
                       "protocols": ["http", "https"], "strip_path": False})
    services.append({"name": f"bench.svc-{s}", "protocol": "http", "host": host, "port": port, "routes": routes})
json.dump({"_format_version": "3.0", "services": services}, open(out, "w"))
