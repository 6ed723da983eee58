//! grpc-gateway with real clients: hyper sends JSON/REST requests through the proxy to the demo
//! backend's tonic `library.Library` service (demo/proto/library.proto), one test per
//! `google.api.http` rule form, the proto3 JSON mapping of a message with every feature, Google's
//! status mapping of gRPC errors, a server stream sent as a JSON array that streams (against a
//! tonic backend the test paces), and bad protos and rules refused by the admin push with their
//! position.

mod common;

use base64::Engine;
use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use sluice_demo::library_pb::library_server::{Library, LibraryServer};
use sluice_demo::library_pb::{
    Book, CreateBookRequest, DeleteBookRequest, GetBookRequest, ListBooksRequest, UpdateBookRequest,
};
use sluice_demo::{spawn, BackendOptions};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tonic::Status;

fn library_proto() -> String {
    format!("{}/../demo/proto/library.proto", env!("CARGO_MANIFEST_DIR"))
}

/// A config routing `/v1` (http) to the backend's gRPC port with grpc-gateway `plugin_config`.
fn config(backend: std::net::SocketAddr, plugin_config: Value) -> String {
    json!({
        "_format_version": "3.0",
        "services": [{
            "name": "library", "protocol": "grpc", "host": backend.ip().to_string(), "port": backend.port(),
            "routes": [{"name": "library", "protocols": ["http", "https"], "paths": ["/v1"]}]
        }],
        "plugins": [{"name": "grpc-gateway", "route": "library", "config": plugin_config}]
    })
    .to_string()
}

/// The proxy in front of the demo backend, with grpc-gateway reading library.proto from disk.
async fn stack() -> (TestProxy, sluice_demo::Backend) {
    let backend = spawn(BackendOptions::named("lib")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0", &[]).await;
    p.push_ok(&config(backend.addr(), json!({"proto": library_proto()}))).await;
    (p, backend)
}

/// `method uri` with a JSON `body`; returns the status and the parsed JSON answer.
async fn call(p: &TestProxy, method: &str, uri: &str, body: Option<Value>) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "api.example")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default())))
        .unwrap();
    let got = h1(p.addr(0), req).await;
    let ct = got.headers.get("content-type").map(|v| v.to_str().unwrap().to_string());
    assert!(ct.as_deref().is_some_and(|c| c.starts_with("application/json")), "{ct:?}: {}", got.body);
    (got.status, serde_json::from_str(&got.body).unwrap_or_else(|e| panic!("{e}: {}", got.body)))
}

#[tokio::test]
async fn get_with_nested_template_and_query_parameters() {
    let (p, _b) = stack().await;
    let uri =
        "/v1/shelves/1/books/2?version=9007199254740993&full=true&genre=SCIENCE&tags=a&tags=b%20c&author.born=1950";
    let (status, v) = call(&p, "GET", uri, None).await;
    assert_eq!(status, 200, "{v}");
    let want = json!({
        "name": "shelves/1/books/2", "pages": "9007199254740993", "available": true, "genre": "SCIENCE",
        "tags": ["a", "b c"], "author": {"born": 1950}
    });
    assert_eq!(v, want);
}

#[tokio::test]
async fn additional_binding_with_nested_field_variable_and_verb() {
    let (p, _b) = stack().await;
    let (status, v) = call(&p, "GET", "/v1/authors/Ursula%20K.%20Le%20Guin/books:latest", None).await;
    assert_eq!((status, v), (200, json!({"author": {"name": "Ursula K. Le Guin"}})));
}

#[tokio::test]
async fn response_body_sends_one_field() {
    let (p, _b) = stack().await;
    let (status, v) = call(&p, "GET", "/v1/shelves/1/books/2/title", None).await;
    assert_eq!((status, v), (200, json!("The title of shelves/1/books/2")));
}

/// A Book using every proto3 JSON feature: int64/uint64 as strings, enums by name, bytes as
/// base64, repeated, map, Timestamp, Duration, a wrapper, Struct, a oneof member, a message.
fn full_book() -> Value {
    json!({
        "title": "The Dispossessed", "pages": "387", "isbn": "18446744073709551615", "rating": 4.5,
        "available": true, "cover": "AAEC/w==", "genre": "FICTION", "tags": ["anarchy", "physics"],
        "stock": {"paris": 3, "oslo": 0}, "published": "1974-05-01T00:00:00Z", "readTime": "36000s",
        "subtitle": "An Ambiguous Utopia", "extra": {"award": ["Hugo", "Nebula"], "year": 1975.0},
        "ebookUrl": "https://books.example/dispossessed", "author": {"name": "Ursula K. Le Guin", "born": 1929}
    })
}

#[tokio::test]
async fn post_with_field_body_and_query_maps_every_proto3_feature() {
    let (p, _b) = stack().await;
    let (status, v) = call(&p, "POST", "/v1/shelves/7/books?book_id=b1", Some(full_book())).await;
    assert_eq!(status, 200, "{v}");
    let mut want = full_book();
    want["name"] = json!("shelves/7/books/b1");
    // A map entry with the default value is still an entry; Struct numbers are doubles.
    assert_eq!(v, want);
    // The other oneof member replaces the first.
    let mut book = full_book();
    book.as_object_mut().unwrap().remove("ebookUrl");
    book["hardcoverGrams"] = json!(640);
    let (status, v) = call(&p, "POST", "/v1/shelves/7/books?book_id=b2", Some(book)).await;
    assert_eq!((status, v["hardcoverGrams"].clone(), v.get("ebookUrl")), (200, json!(640), None));
}

#[tokio::test]
async fn patch_with_whole_body_and_put_additional_binding() {
    let (p, _b) = stack().await;
    let body = json!({"book": {"name": "ignored", "title": "T", "genre": 2}});
    let (status, v) = call(&p, "PATCH", "/v1/shelves/3/books/4", Some(body)).await;
    // The path's field wins over the body's; enum numbers are read, names are written.
    assert_eq!((status, v), (200, json!({"name": "shelves/3/books/4", "title": "T", "genre": "SCIENCE"})));
    let (status, v) = call(&p, "PUT", "/v1/books", Some(json!({"book": {"name": "n", "title": "U"}}))).await;
    assert_eq!((status, v), (200, json!({"name": "n", "title": "U"})));
}

#[tokio::test]
async fn delete_and_grpc_errors_map_to_googles_http_statuses() {
    let (p, _b) = stack().await;
    assert_eq!(call(&p, "DELETE", "/v1/shelves/1/books/2", None).await, (200, json!({})));
    let (status, v) = call(&p, "DELETE", "/v1/shelves/1/books/missing", None).await;
    assert_eq!((status, v), (404, json!({"code": 5, "message": "no book shelves/1/books/missing"})));
    let (status, v) = call(&p, "GET", "/v1/shelves/locked/books/1", None).await;
    assert_eq!((status, v), (403, json!({"code": 7, "message": "shelf of shelves/locked/books/1 is locked"})));
}

#[tokio::test]
async fn server_stream_is_a_json_array() {
    let (p, _b) = stack().await;
    let (status, v) = call(&p, "GET", "/v1/shelves/9/books?count=3", None).await;
    assert_eq!(status, 200, "{v}");
    let names: Vec<&str> = v.as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["shelves/9/books/0", "shelves/9/books/1", "shelves/9/books/2"]);
    assert_eq!(call(&p, "GET", "/v1/shelves/9/books?count=0", None).await, (200, json!([])));
}

/// `library.Library` whose ListBooks streams whatever the test sends down the channel it queued
/// for the call (the channel closing ends the stream with OK), so a test decides when each message
/// leaves the backend.
#[derive(Clone, Default)]
struct GatedLibrary {
    calls: Arc<Mutex<Vec<BookChannel>>>,
}

/// What one ListBooks call streams.
type BookChannel = mpsc::Receiver<Result<Book, Status>>;

impl GatedLibrary {
    /// Starts the backend; returns it and its address.
    async fn start() -> (GatedLibrary, std::net::SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let lib = GatedLibrary::default();
        let svc = LibraryServer::new(lib.clone());
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        tokio::spawn(tonic::transport::Server::builder().add_service(svc).serve_with_incoming(incoming));
        (lib, addr)
    }

    /// The sender of the next ListBooks call's messages.
    fn next_call(&self, capacity: usize) -> mpsc::Sender<Result<Book, Status>> {
        let (tx, rx) = mpsc::channel(capacity);
        self.calls.lock().unwrap().push(rx);
        tx
    }
}

#[tonic::async_trait]
impl Library for GatedLibrary {
    async fn get_book(&self, _: tonic::Request<GetBookRequest>) -> Result<tonic::Response<Book>, Status> {
        Err(Status::unimplemented("gated"))
    }
    async fn get_title(&self, _: tonic::Request<GetBookRequest>) -> Result<tonic::Response<Book>, Status> {
        Err(Status::unimplemented("gated"))
    }
    async fn create_book(&self, _: tonic::Request<CreateBookRequest>) -> Result<tonic::Response<Book>, Status> {
        Err(Status::unimplemented("gated"))
    }
    async fn update_book(&self, _: tonic::Request<UpdateBookRequest>) -> Result<tonic::Response<Book>, Status> {
        Err(Status::unimplemented("gated"))
    }
    async fn delete_book(&self, _: tonic::Request<DeleteBookRequest>) -> Result<tonic::Response<()>, Status> {
        Err(Status::unimplemented("gated"))
    }
    type ListBooksStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Book, Status>> + Send>>;
    async fn list_books(
        &self,
        _: tonic::Request<ListBooksRequest>,
    ) -> Result<tonic::Response<Self::ListBooksStream>, Status> {
        let rx = self.calls.lock().unwrap().pop().expect("a call queued by the test");
        let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        Ok(tonic::Response::new(Box::pin(stream)))
    }
}

fn book(i: usize, title: &str) -> Result<Book, Status> {
    Ok(Book { name: format!("shelves/1/books/{i}"), title: title.to_string(), ..Book::default() })
}

/// `GET /v1/shelves/1/books` over HTTP/1.1: the response head, and its body still streaming.
async fn list_books(addr: std::net::SocketAddr) -> http::Response<hyper::body::Incoming> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    send.send_request(get("/v1/shelves/1/books", "api.example")).await.unwrap()
}

/// Reads `body` until `want` bytes (at least) arrived; fails if they do not come within 10 s
/// (a proxy that held the stream until its end would never send them, as the backend waits).
async fn read_at_least(body: &mut hyper::body::Incoming, got: &mut Vec<u8>, want: usize) {
    let read = async {
        while got.len() < want {
            let frame = body.frame().await.expect("the body ended early").unwrap();
            got.extend_from_slice(&frame.into_data().unwrap_or_default());
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read).await.expect("the first book was held back");
}

/// Each element's `name`, or the `error` element as it is.
fn names(body: &[u8]) -> Vec<Value> {
    let v: Value = serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)));
    v.as_array().unwrap().iter().map(|b| b.get("name").cloned().unwrap_or_else(|| b.clone())).collect()
}

#[tokio::test]
async fn server_stream_is_sent_as_it_arrives_and_an_error_after_messages_ends_the_array() {
    let (lib, backend) = GatedLibrary::start().await;
    let p = TestProxy::start("127.0.0.1:0", &[]).await;
    p.push_ok(&config(backend, json!({"proto": library_proto()}))).await;

    // The first book reaches the client while the backend holds the rest.
    let tx = lib.next_call(4);
    tx.send(book(0, "")).await.unwrap();
    let resp = list_books(p.addr(0)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(!resp.headers().contains_key("content-length"), "{:?}", resp.headers());
    let mut body = resp.into_body();
    let first = br#"[{"name":"shelves/1/books/0"}"#;
    let mut got = Vec::new();
    read_at_least(&mut body, &mut got, first.len()).await;
    assert_eq!(got, first);
    for i in 1..3 {
        tx.send(book(i, "")).await.unwrap();
    }
    drop(tx);
    got.extend_from_slice(&body.collect().await.unwrap().to_bytes());
    assert_eq!(names(&got), [json!("shelves/1/books/0"), json!("shelves/1/books/1"), json!("shelves/1/books/2")]);

    // A status after some books: the last element is the error, and the array is closed.
    let tx = lib.next_call(4);
    tx.send(book(0, "")).await.unwrap();
    let resp = list_books(p.addr(0)).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = Vec::new();
    read_at_least(&mut body, &mut got, first.len()).await;
    tx.send(Err(Status::not_found("shelf 1 burned"))).await.unwrap();
    got.extend_from_slice(&body.collect().await.unwrap().to_bytes());
    let error = json!({"error": {"code": 5, "message": "shelf 1 burned"}});
    assert_eq!(names(&got), [json!("shelves/1/books/0"), error]);

    // A status before any book: Google's HTTP status and error body.
    let tx = lib.next_call(1);
    tx.send(Err(Status::permission_denied("locked"))).await.unwrap();
    let resp = list_books(p.addr(0)).await;
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        (status.as_u16(), serde_json::from_slice::<Value>(&body).unwrap()),
        (403, json!({"code": 7, "message": "locked"}))
    );
}

/// The real binary (its memory is its own): 2,000 books of 16 KiB (32 MiB of JSON), produced
/// only as fast as the client reads them, leave the proxy's RSS flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_server_stream_keeps_proxy_memory_flat() {
    let (lib, backend) = GatedLibrary::start().await;
    let p = common::process::proxy_process(&config(backend, json!({"proto": library_proto()}))).await;
    let pid = p.child.id().unwrap();
    let rss = || common::process::vm_rss_kib(pid);
    let tx = lib.next_call(8);
    let title = "x".repeat(16 * 1024);
    let producer = tokio::spawn(async move {
        for i in 0..2000 {
            tx.send(book(i, &title)).await.unwrap();
        }
    });
    let resp = list_books(p.addr).await;
    assert_eq!(resp.status(), 200);
    let before = rss();
    let mut body = resp.into_body();
    let (mut bytes, mut peak, mut frames, mut last) = (0usize, before, 0u64, 0u8);
    while let Some(f) = body.frame().await {
        if let Ok(d) = f.unwrap().into_data() {
            bytes += d.len();
            last = d.last().copied().unwrap_or(last);
            frames += 1;
            if frames % 128 == 0 {
                peak = peak.max(rss());
            }
        }
    }
    producer.await.unwrap();
    assert!(bytes > 2000 * 16 * 1024, "{bytes} bytes");
    assert_eq!(last, b']');
    println!("{bytes} bytes in {frames} frames, RSS {before} KiB -> peak {peak} KiB");
    assert!(peak < before + 12 * 1024, "RSS grew from {before} to {peak} KiB");
}

#[tokio::test]
async fn bad_requests_are_refused_naming_what_is_wrong() {
    let (p, _b) = stack().await;
    let msg = |v: Value| v["message"].as_str().unwrap().to_string();
    let (status, v) = call(&p, "GET", "/v1/nowhere", None).await;
    assert_eq!((status, msg(v)), (404, "grpc-gateway: no google.api.http rule matches GET /v1/nowhere".into()));
    let (status, v) = call(&p, "GET", "/v1/shelves/1/books/2?colour=red", None).await;
    assert_eq!(status, 400);
    assert!(msg(v).starts_with("grpc-gateway: query parameter 'colour': field 'colour' not found"));
    let (status, v) = call(&p, "GET", "/v1/shelves/1/books/2?full=maybe", None).await;
    assert_eq!((status, msg(v)), (400, "grpc-gateway: field 'full': 'maybe' is not a bool".into()));
    let body = json!({"title": "x", "author": {"name": "y", "born": "many"}});
    let (status, v) = call(&p, "POST", "/v1/shelves/7/books", Some(body)).await;
    assert_eq!(status, 400);
    assert!(msg(v.clone()).starts_with("grpc-gateway: field 'book.author.born': "), "{v}");
    let (status, v) = call(&p, "POST", "/v1/shelves/7/books", Some(json!({"colour": 1}))).await;
    assert_eq!(status, 400);
    assert!(msg(v.clone()).starts_with("grpc-gateway: field 'book.colour': "), "{v}");
    let req = Request::builder().method("POST").uri("/v1/shelves/7/books").header("host", "a");
    let req = req.body(Full::new(Bytes::from("{nope"))).unwrap();
    let got = h1(p.addr(0), req).await;
    assert_eq!(got.status, 400);
    assert!(got.body.contains("grpc-gateway: the request body is not JSON"), "{}", got.body);
}

#[tokio::test]
async fn descriptor_set_and_proto_text_sources() {
    let backend = spawn(BackendOptions::named("lib")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0", &[]).await;
    let set = base64::engine::general_purpose::STANDARD.encode(sluice_demo::LIBRARY_DESCRIPTOR_SET);
    p.push_ok(&config(backend.addr(), json!({"descriptor_set": set}))).await;
    let (status, v) = call(&p, "GET", "/v1/shelves/1/books/2/title", None).await;
    assert_eq!((status, v), (200, json!("The title of shelves/1/books/2")));
    let text = std::fs::read_to_string(library_proto()).unwrap();
    p.push_ok(&config(backend.addr(), json!({"proto_text": text, "proto_name": "library.proto"}))).await;
    let (status, v) = call(&p, "GET", "/v1/shelves/1/books/2/title", None).await;
    assert_eq!((status, v), (200, json!("The title of shelves/1/books/2")));
}

/// The first flattened error of a refused push: (field, message).
async fn refused(p: &TestProxy, config: String) -> (String, String) {
    let (status, body) = p.push(&config).await;
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let e = &v["flattened_errors"][0]["errors"][0];
    (e["field"].as_str().unwrap().to_string(), e["message"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn bad_proto_and_bad_rule_are_refused_with_their_position() {
    let backend = spawn(BackendOptions::named("lib")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0", &[]).await;
    let text = std::fs::read_to_string(library_proto()).unwrap();
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;

    let bad = text.replace("Author author = 17;", "Writer author = 17;");
    let (field, message) =
        refused(&p, config(backend.addr(), json!({"proto_text": bad, "proto_name": "lib.proto"}))).await;
    assert_eq!(field, "config.proto_text");
    assert!(message.starts_with(&format!("lib.proto:{}:", line_of("Author author = 17;"))), "{message}");
    assert!(message.contains("Writer"), "{message}");

    let bad = text.replace("{author.name}", "{author.nickname}");
    let (field, message) =
        refused(&p, config(backend.addr(), json!({"proto_text": bad, "proto_name": "lib.proto"}))).await;
    assert_eq!(field, "config.proto_text");
    let line = line_of("rpc GetBook(");
    assert!(
        message.starts_with(&format!("lib.proto:{line}: rpc library.Library.GetBook: additional_bindings: ")),
        "{message}"
    );
    assert!(message.contains("field 'author.nickname' not found: library.Author has no field 'nickname'"), "{message}");
}

#[tokio::test]
async fn transcoded_calls_count_as_grpc_calls_with_their_status() {
    let (p, _b) = stack().await;
    assert_eq!(call(&p, "DELETE", "/v1/shelves/1/books/missing", None).await.0, 404);
    assert_eq!(call(&p, "DELETE", "/v1/shelves/1/books/1", None).await.0, 200);
    let text = h1(p.status_addr(), get("/metrics", "status")).await.body;
    let series = |status: &str| {
        text.lines()
            .filter(|l| l.starts_with("sluice_grpc_requests_total{"))
            .filter(|l| l.contains("grpc_method=\"DeleteBook\"") && l.contains("grpc_service=\"library.Library\""))
            .filter(|l| l.contains("client_protocol=\"json\""))
            .find(|l| l.contains(&format!("grpc_status=\"{status}\"")))
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
    };
    assert_eq!((series("5"), series("0")), (Some("1".into()), Some("1".into())), "{text}");
}
