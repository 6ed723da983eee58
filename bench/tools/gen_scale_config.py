#!/usr/bin/env python3
"""Writes a Kong declarative config (JSON) shaped like a large shared gateway: N routes over S
services (default 1,000), every service pointing at the bench backend.

  gen_scale_config.py N BACKEND_HOST BACKEND_PORT OUT.json [SERVICES]

Even services are gRPC (protocol grpc, routes [grpc, grpcs]) with gRPC method paths
(`/pkgS.SvcK/MethodJ`) under one host: exact `grpc-S.example.com` (S % 4 == 0) or wildcard
`*.grpc-S.example.com` (S % 4 == 2); the first route of each is `/bench.Echo/` (the method the
backend answers). Odd services are HTTP: a third prefix paths on `app-S.example.com`
(`/api/rJ/`), a third prefix paths on the wildcard `*.tenant-S.example.com` (`/t/rJ/`), a third
regex paths on `app-S.example.com` (`~/items/rJ/[0-9]+$`). The last gRPC service's bench route,
host `grpc-L.example.com` (printed), is the one scale100k.sh measures: the end of the table.
"""
import json
import sys


def service(s, per, host, port):
    routes = []
    if s % 2 == 0:
        grpc_host = f"grpc-{s}.example.com" if s % 4 == 0 else f"*.grpc-{s}.example.com"
        for j in range(per):
            path = "/bench.Echo/" if j == 0 else f"/pkg{s}.Svc{j % 10}/Method{j}"
            routes.append({"name": f"s{s}.r{j}", "protocols": ["grpc", "grpcs"], "hosts": [grpc_host],
                           "paths": [path]})
        return {"name": f"s{s}", "protocol": "grpc", "host": host, "port": port, "routes": routes}
    for j in range(per):
        kind = j % 3
        if kind == 0:
            hosts, path = [f"app-{s}.example.com"], f"/api/r{j}/"
        elif kind == 1:
            hosts, path = [f"*.tenant-{s}.example.com"], f"/t/r{j}/"
        else:
            hosts, path = [f"app-{s}.example.com"], f"~/items/r{j}/[0-9]+$"
        routes.append({"name": f"s{s}.r{j}", "protocols": ["http", "https"], "hosts": hosts, "paths": [path],
                       "strip_path": False})
    return {"name": f"s{s}", "protocol": "http", "host": host, "port": port, "routes": routes}


def main():
    n, host, port, out = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    services = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
    services = max(1, min(services, n))
    per, extra = divmod(n, services)
    config = [service(s, per + (1 if s < extra else 0), host, port) for s in range(services)]
    with open(out, "w") as f:
        json.dump({"_format_version": "3.0", "services": config}, f, separators=(",", ":"))
    last = max(s for s in range(services) if s % 4 == 0)
    print(f"grpc-{last}.example.com")


if __name__ == "__main__":
    main()
