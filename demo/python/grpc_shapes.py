#!/usr/bin/env python3
"""Exercise the four gRPC call shapes of hello.HelloService with grpcio, as users run it.

The Python stubs are generated at run time with grpcio-tools from demo/proto into a temporary directory, so
nothing generated is checked in. Prints one line per shape and exits non-zero on the first failure.

    pip install grpcio grpcio-tools
    python3 demo/python/grpc_shapes.py 127.0.0.1:8000
    python3 demo/python/grpc_shapes.py --tls --ca ca.pem --authority grpc.example.com 127.0.0.1:8443
"""

import argparse
import os
import sys
import tempfile

PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "proto")


def generate_stubs(out_dir):
    """Compile hello.proto into hello_pb2 / hello_pb2_grpc in out_dir and make them importable."""
    try:
        from grpc_tools import protoc
    except ImportError:
        sys.exit("grpc_shapes: grpcio-tools is missing: pip install grpcio grpcio-tools")
    import importlib.resources

    # protoc needs the well-known types' include path, shipped inside grpc_tools.
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    code = protoc.main([
        "grpc_tools.protoc",
        f"-I{os.path.normpath(PROTO_DIR)}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        "hello.proto",
    ])
    if code != 0:
        sys.exit(f"grpc_shapes: protoc failed with code {code}")
    sys.path.insert(0, out_dir)


def open_channel(args):
    import grpc

    options = []
    if args.authority:
        options.append(("grpc.default_authority", args.authority))
    if not args.tls:
        return grpc.insecure_channel(args.target, options=options)
    root = None
    if args.ca:
        with open(args.ca, "rb") as f:
            root = f.read()
    if args.authority:
        options.append(("grpc.ssl_target_name_override", args.authority))
    credentials = grpc.ssl_channel_credentials(root_certificates=root)
    return grpc.secure_channel(args.target, credentials, options=options)


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def run_shapes(stub, pb, count, timeout):
    greeting = "python"

    reply = stub.SayHello(pb.HelloRequest(greeting=greeting), timeout=timeout)
    check(reply.reply == f"hello {greeting}", f"unexpected reply {reply.reply!r}")
    print(f"unary: ok ({reply.reply})", flush=True)

    replies = stub.LotsOfReplies(
        pb.HelloRequest(greeting=greeting), timeout=timeout, metadata=[("x-reply-count", str(count))]
    )
    got = 0
    for got, message in enumerate(replies, start=1):
        check(message.reply == f"hello {greeting} #{got}", f"reply {got} was {message.reply!r}")
    check(got == count, f"expected {count} replies, got {got}")
    print(f"server-streaming: ok ({got} replies)", flush=True)

    greetings = (pb.HelloRequest(greeting=f"g{i}") for i in range(count))
    reply = stub.LotsOfGreetings(greetings, timeout=timeout)
    names = reply.reply.removeprefix("hello ").split(",")
    check(len(names) == count, f"backend saw {len(names)} greetings, sent {count}")
    check(names[0] == "g0" and names[-1] == f"g{count - 1}", "greetings out of order")
    print(f"client-streaming: ok ({len(names)} messages)", flush=True)

    requests = (pb.HelloRequest(greeting=f"b{i}") for i in range(count))
    got = 0
    for i, message in enumerate(stub.BidiHello(requests, timeout=timeout)):
        check(message.reply == f"hello b{i}", f"bidi reply {i} was {message.reply!r}")
        got = i + 1
    check(got == count, f"expected {count} bidi replies, got {got}")
    print(f"bidi-streaming: ok ({got} messages)", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="host:port of the backend or proxy")
    parser.add_argument("--tls", action="store_true", help="HTTP/2 over TLS")
    parser.add_argument("--ca", help="CA certificate (PEM) to trust, with --tls")
    parser.add_argument("--authority", help=":authority to send (and TLS name to check)")
    parser.add_argument("--count", type=int, default=1000, help="messages in the streaming shapes (default 1000)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per call (default 60)")
    args = parser.parse_args()
    if args.ca and not args.tls:
        parser.error("--ca needs --tls")

    try:
        import grpc
    except ImportError:
        sys.exit("grpc_shapes: grpcio is missing: pip install grpcio grpcio-tools")

    with tempfile.TemporaryDirectory(prefix="grpc_shapes_") as out_dir:
        generate_stubs(out_dir)
        import hello_pb2
        import hello_pb2_grpc

        with open_channel(args) as channel:
            stub = hello_pb2_grpc.HelloServiceStub(channel)
            try:
                run_shapes(stub, hello_pb2, args.count, args.timeout)
            except grpc.RpcError as error:
                print(f"FAILED: code={error.code().name} message={error.details()}", file=sys.stderr)
                return 1
            except AssertionError as error:
                print(f"FAILED: {error}", file=sys.stderr)
                return 1
    print("all shapes ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
