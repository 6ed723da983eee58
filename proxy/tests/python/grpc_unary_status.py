"""Unary gRPC calls with grpcio and no generated stubs: prints, as one JSON array, each call's
status code name, details, and initial and trailing metadata.

Usage: grpc_unary_status.py TARGET AUTHORITY METHOD CALLS_JSON
  CALLS_JSON: a JSON array with one entry per call, each a list of [key, value] metadata pairs.
The request body is an empty protobuf message (zero bytes), valid for any request type.
"""

import json
import sys

import grpc


def metadata(md):
    return {k: v for k, v in (md or ())}


def main():
    target, authority, method, calls = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    channel = grpc.insecure_channel(target, options=[("grpc.default_authority", authority)])
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    out = []
    for md in calls:
        try:
            _, c = call.with_call(b"", timeout=10, metadata=[tuple(p) for p in md])
            code, details = "OK", c.details() or ""
        except grpc.RpcError as e:
            c, code, details = e, e.code().name, e.details()
        out.append({"code": code, "details": details,
                    "initial": metadata(c.initial_metadata()), "trailing": metadata(c.trailing_metadata())})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
