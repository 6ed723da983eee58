// The Node.js gRPC-Web client of proxy/tests/grpc_web.rs: connect-node's gRPC-Web transport.
// Usage: node client.mjs http://127.0.0.1:PORT 1.1|2 -> one JSON line (see hello.mjs).
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import { calls } from "./hello.mjs";

const [baseUrl, httpVersion] = process.argv.slice(2);
console.log(JSON.stringify(await calls(createGrpcWebTransport({ baseUrl, httpVersion: httpVersion || "1.1" }))));
