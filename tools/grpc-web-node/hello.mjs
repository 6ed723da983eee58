// hello.HelloService of demo/proto/hello.proto for the connect clients (no code generation: the
// message types are described at run time), and the calls both clients make.
import { proto3, MethodKind } from "@bufbuild/protobuf";
import { createPromiseClient, ConnectError } from "@connectrpc/connect";

const HelloRequest = proto3.makeMessageType("hello.HelloRequest", [
  { no: 1, name: "greeting", kind: "scalar", T: 9 },
]);
const HelloResponse = proto3.makeMessageType("hello.HelloResponse", [
  { no: 1, name: "reply", kind: "scalar", T: 9 },
]);
export const HelloService = {
  typeName: "hello.HelloService",
  methods: {
    sayHello: { name: "SayHello", I: HelloRequest, O: HelloResponse, kind: MethodKind.Unary },
    lotsOfReplies: { name: "LotsOfReplies", I: HelloRequest, O: HelloResponse, kind: MethodKind.ServerStreaming },
  },
};

// A unary call and a server-streaming call with their trailers, then a call failing with
// PERMISSION_DENIED (the demo backend's x-fail-code): what came back, for the Rust test to check.
export async function calls(transport) {
  const client = createPromiseClient(HelloService, transport);
  const out = {};
  let trailer = new Headers();
  const unary = await client.sayHello(
    { greeting: "web" },
    { headers: { "x-echo-color": "blue" }, onTrailer: (t) => (trailer = t) },
  );
  out.unary = unary.reply;
  out.unaryTrailer = trailer.get("x-trailer-echo-color");
  out.stream = [];
  let streamTrailer = new Headers();
  for await (const m of client.lotsOfReplies(
    { greeting: "s" },
    { headers: { "x-reply-count": "10", "x-echo-trace": "t9" }, onTrailer: (t) => (streamTrailer = t) },
  )) {
    out.stream.push(m.reply);
  }
  out.streamTrailer = streamTrailer.get("x-trailer-echo-trace");
  try {
    await client.sayHello({ greeting: "x" }, { headers: { "x-fail-code": "7" } });
    out.error = null;
  } catch (e) {
    const err = ConnectError.from(e);
    out.error = { code: err.code, message: err.rawMessage };
  }
  return out;
}
