#!/usr/bin/env python3
"""Holds N idle HTTP/2 connections to a proxy: the idle-connections scenario of bench/idle.sh.

Each connection sends the client preface and an empty SETTINGS frame, waits for the server's
SETTINGS and its ACK of ours, ACKs the server's SETTINGS, and then stays silent (it only answers
a PING, as any client would, so keepalive does not close it). Plaintext connections are h2c with
prior knowledge; --tls opens TLS with ALPN h2 (certificate not verified: the bench's own).
Connections come from --sources loopback addresses (127.0.0.2, 127.0.0.3, ...) so that N is not
bounded by one address's ephemeral ports.

    idle_conns.py HOST:PORT N [--tls] [--sources 8] [--parallel 256] --ready FILE

Once all are open (or have failed) it writes "OPEN FAILED SECONDS" to FILE and holds them until
SIGTERM/SIGINT. Exit status 1 if any connection failed or closed while held.
"""
import argparse
import asyncio
import resource
import signal
import ssl
import struct
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, PING, GOAWAY = 0x4, 0x6, 0x7
ACK = 0x1


def frame(kind, flags, payload=b"", stream=0):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


async def read_frame(reader):
    head = await reader.readexactly(9)
    length = int.from_bytes(head[:3], "big")
    return head[3], head[4], await reader.readexactly(length)


class Conns:
    def __init__(self):
        self.open = 0
        self.failed = 0
        self.closed_while_held = 0
        self.errors = {}
        self.held = []

    def fail(self, e):
        self.failed += 1
        key = type(e).__name__ + ": " + str(e)[:80]
        self.errors[key] = self.errors.get(key, 0) + 1


async def one(host, port, src, tls_ctx, conns, gate):
    async with gate:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, local_addr=(src, 0), ssl=tls_ctx,
                                        server_hostname="localhost" if tls_ctx else None), 30)
            if tls_ctx and writer.get_extra_info("ssl_object").selected_alpn_protocol() != "h2":
                raise RuntimeError("ALPN did not select h2")
            writer.write(PREFACE + frame(SETTINGS, 0))
            got_settings = got_ack = False
            while not (got_settings and got_ack):
                kind, flags, _ = await asyncio.wait_for(read_frame(reader), 30)
                if kind == SETTINGS and flags & ACK:
                    got_ack = True
                elif kind == SETTINGS:
                    got_settings = True
                    writer.write(frame(SETTINGS, ACK))
                elif kind == GOAWAY:
                    raise RuntimeError("GOAWAY during the handshake")
            await writer.drain()
        except Exception as e:  # noqa: BLE001 - counted and reported by kind
            conns.fail(e)
            return
        conns.open += 1
    conns.held.append(writer)
    # Silent from here on; a PING is answered (keepalive), anything else is read and dropped.
    try:
        while True:
            kind, flags, payload = await read_frame(reader)
            if kind == PING and not flags & ACK:
                writer.write(frame(PING, ACK, payload))
    except Exception:  # noqa: BLE001 - the server closed it
        conns.closed_while_held += 1


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("addr")
    ap.add_argument("n", type=int)
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--sources", type=int, default=8)
    ap.add_argument("--parallel", type=int, default=256)
    ap.add_argument("--ready", required=True)
    a = ap.parse_args()
    need = a.n + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(need, soft), max(need, hard)))
    host, port = a.addr.rsplit(":", 1)
    tls_ctx = None
    if a.tls:
        tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls_ctx.check_hostname = False
        tls_ctx.verify_mode = ssl.CERT_NONE
        tls_ctx.set_alpn_protocols(["h2"])
    conns = Conns()
    gate = asyncio.Semaphore(a.parallel)
    sources = ["127.0.0.%d" % (2 + i) for i in range(a.sources)]
    t0 = time.monotonic()
    tasks = [asyncio.create_task(one(host, int(port), sources[i % len(sources)], tls_ctx, conns, gate))
             for i in range(a.n)]
    while conns.open + conns.failed < a.n:
        await asyncio.sleep(0.05)
    secs = time.monotonic() - t0
    for k, v in conns.errors.items():
        print("  %d x %s" % (v, k), file=sys.stderr)
    with open(a.ready, "w") as f:
        f.write("%d %d %.1f\n" % (conns.open, conns.failed, secs))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    await stop.wait()
    if conns.closed_while_held:
        print("%d connections closed by the server while held" % conns.closed_while_held, file=sys.stderr)
    for t in tasks:
        t.cancel()
    for w in conns.held:
        w.transport.abort()
    return 1 if conns.failed or conns.closed_while_held else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
