#!/usr/bin/env python3
"""Sends one GET to each route of gen_config.py's config (host-i.example.com, /r<i>/) over one
keep-alive connection, so every route has served a request (and has its metric series).
usage: hit_routes.py N PROXY_HOST PROXY_PORT   prints how many answered 200; exits 1 if any did not."""
import http.client, sys
n, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
conn = http.client.HTTPConnection(host, port, timeout=10)
ok = 0
for i in range(n):
    conn.request("GET", f"/r{i}/", headers={"Host": f"host-{i}.example.com"})
    r = conn.getresponse()
    r.read()
    ok += r.status == 200
print(ok)
sys.exit(0 if ok == n else 1)
