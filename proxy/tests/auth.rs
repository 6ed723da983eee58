//! Consumers and the authentication plugins with real clients (hyper for HTTP, tonic for gRPC):
//! key-auth, basic-auth, jwt (HS256, and RS256 / ES256 keys generated here), acl, the upstream
//! `X-Consumer-*` headers, gRPC refusals as UNAUTHENTICATED / PERMISSION_DENIED with Kong's
//! message (tonic, and grpcio with RESOURCE_EXHAUSTED and its rate-limit metadata too), and
//! Kong's plugin precedence with consumer scopes (every row of its table).

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use sluice_demo::hello::hello_service_client::HelloServiceClient;
use sluice_demo::hello::HelloRequest;
use sluice_demo::{spawn, BackendOptions};

/// The proxy in front of an echo backend (route `web`) and a gRPC backend (route `grpc`), with
/// `extra` (YAML: `consumers:`, `plugins:`) pushed.
async fn stack(extra: &str) -> (TestProxy, EchoHttp, sluice_demo::Backend) {
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&format!("{}{extra}", basic_config(web.addr, grpc.addr()))).await;
    (p, web, grpc)
}

/// `consumers:` as a YAML line (JSON is YAML).
fn consumers(v: serde_json::Value) -> String {
    format!("consumers: {v}\n")
}

fn get_with(uri: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::builder().uri(uri).header("host", "example.com");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

/// The request headers the echo backend saw.
fn upstream_headers(got: &Got) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&got.body).unwrap_or_else(|_| panic!("{}", got.body));
    v["headers"].clone()
}

fn message(got: &Got) -> String {
    let v: serde_json::Value = serde_json::from_str(&got.body).unwrap_or_else(|_| panic!("{}", got.body));
    v["message"].as_str().unwrap_or_default().to_string()
}

/// A unary call with `metadata`; the status on failure.
async fn call(p: &TestProxy, metadata: &[(&'static str, &str)]) -> Result<(), tonic::Status> {
    let mut client = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);
    let mut req = tonic::Request::new(HelloRequest { greeting: "hi".into() });
    for (k, v) in metadata {
        req.metadata_mut().insert(*k, v.parse().unwrap());
    }
    client.say_hello(req).await.map(|_| ())
}

fn alice_and_bob() -> serde_json::Value {
    json!([
        {"id": "c-alice", "username": "alice", "custom_id": "a-1",
         "keyauth_credentials": [{"id": "k-alice", "key": "alice-key"}],
         "basicauth_credentials": [{"username": "alice", "password": "open sesame"}],
         "acls": [{"group": "gold"}, {"group": "eu"}]},
        {"username": "bob", "keyauth_credentials": [{"key": "bob-key"}], "acls": [{"group": "silver"}]},
        {"username": "guest"}
    ])
}

#[tokio::test]
async fn key_auth_refuses_grpc_without_or_with_a_wrong_key_and_passes_the_right_one() {
    let extra = format!("{}plugins:\n- name: key-auth\n", consumers(alice_and_bob()));
    let (p, _web, _grpc) = stack(&extra).await;
    let err = call(&p, &[]).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (tonic::Code::Unauthenticated, "No API key found in request"));
    let err = call(&p, &[("apikey", "nope")]).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (tonic::Code::Unauthenticated, "Unauthorized"));
    call(&p, &[("apikey", "alice-key")]).await.unwrap();
}

#[tokio::test]
async fn key_auth_http_sets_kong_upstream_headers_and_challenges() {
    let extra = format!(
        "{}plugins:\n- name: key-auth\n  config: {{key_names: [apikey, x-key], hide_credentials: true}}\n",
        consumers(alice_and_bob())
    );
    let (p, _web, _grpc) = stack(&extra).await;
    let got = h1(p.addr(0), get("/", "example.com")).await;
    assert_eq!((got.status, message(&got).as_str()), (401, "No API key found in request"));
    assert_eq!(got.headers["www-authenticate"], "Key");
    assert_eq!(got.headers["content-type"], "application/json; charset=utf-8");

    // The client's own X-Consumer-* headers are replaced or removed.
    let got = h1(
        p.addr(0),
        get_with("/", &[("apikey", "alice-key"), ("x-consumer-username", "mallory"), ("x-anonymous-consumer", "true")]),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.body);
    let h = upstream_headers(&got);
    assert_eq!(h["x-consumer-id"], "c-alice");
    assert_eq!(h["x-consumer-username"], "alice");
    assert_eq!(h["x-consumer-custom-id"], "a-1");
    assert_eq!(h["x-credential-identifier"], "k-alice");
    assert!(h.get("x-anonymous-consumer").is_none(), "{h}");
    assert!(h.get("apikey").is_none(), "hide_credentials: {h}");

    // The second key name, and the query string (stripped too).
    let got = h1(p.addr(0), get_with("/", &[("x-key", "bob-key")])).await;
    assert_eq!(upstream_headers(&got)["x-consumer-username"], "bob");
    let got = h1(p.addr(0), get("/x?a=1&apikey=bob-key", "example.com")).await;
    assert_eq!(got.status, 200);
    let v: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    assert!(!got.body.contains("bob-key"), "{v}");
    assert_eq!(upstream_headers(&got)["x-consumer-username"], "bob");
    assert!(upstream_headers(&got).get("x-consumer-custom-id").is_none());

    let got = h1(p.addr(0), get_with("/", &[("apikey", "alice-key"), ("apikey", "bob-key")])).await;
    assert_eq!((got.status, message(&got).as_str()), (401, "Duplicate API key found"));
}

#[tokio::test]
async fn anonymous_consumer_is_used_without_credentials_and_auth_plugins_are_ored() {
    let extra = format!(
        "{}plugins:\n- name: key-auth\n  config: {{anonymous: guest}}\n- name: basic-auth\n  config: {{anonymous: guest}}\n",
        consumers(alice_and_bob())
    );
    let (p, _web, _grpc) = stack(&extra).await;
    let h = upstream_headers(&h1(p.addr(0), get("/", "example.com")).await);
    assert_eq!((h["x-consumer-username"].as_str(), h["x-anonymous-consumer"].as_str()), (Some("guest"), Some("true")));
    // key-auth found a credential: basic-auth (anonymous set) is skipped.
    let h = upstream_headers(&h1(p.addr(0), get_with("/", &[("apikey", "bob-key")])).await);
    assert_eq!(h["x-consumer-username"], "bob");
    assert!(h.get("x-anonymous-consumer").is_none());
    // No key, but basic credentials: basic-auth identifies alice.
    let basic = "Basic YWxpY2U6b3BlbiBzZXNhbWU="; // alice:open sesame
    let h = upstream_headers(&h1(p.addr(0), get_with("/", &[("authorization", basic)])).await);
    assert_eq!(
        (h["x-consumer-username"].as_str(), h["x-credential-identifier"].as_str()),
        (Some("alice"), Some("alice"))
    );
}

#[tokio::test]
async fn basic_auth_checks_passwords() {
    let extra =
        format!("{}plugins:\n- name: basic-auth\n  config: {{hide_credentials: true}}\n", consumers(alice_and_bob()));
    let (p, _web, _grpc) = stack(&extra).await;
    let got = h1(p.addr(0), get("/", "example.com")).await;
    assert_eq!((got.status, message(&got).as_str()), (401, "Unauthorized"));
    assert_eq!(got.headers["www-authenticate"], "Basic realm=\"service\"");
    let wrong = "Basic YWxpY2U6b3BlbiBzZXNhbWUh"; // alice:open sesame!
    assert_eq!(h1(p.addr(0), get_with("/", &[("authorization", wrong)])).await.status, 401);
    let got = h1(p.addr(0), get_with("/", &[("proxy-authorization", "Basic YWxpY2U6b3BlbiBzZXNhbWU=")])).await;
    assert_eq!(got.status, 200);
    let h = upstream_headers(&got);
    assert_eq!(h["x-consumer-username"], "alice");
    assert!(h.get("proxy-authorization").is_none(), "{h}");
    let err = call(&p, &[("authorization", wrong)]).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (tonic::Code::Unauthenticated, "Unauthorized"));
    call(&p, &[("authorization", "Basic YWxpY2U6b3BlbiBzZXNhbWU=")]).await.unwrap();
}

#[tokio::test]
async fn acl_allows_by_group_and_refuses_grpc_with_permission_denied() {
    let extra =
        format!("{}plugins:\n- name: key-auth\n- name: acl\n  config: {{allow: [gold]}}\n", consumers(alice_and_bob()));
    let (p, _web, _grpc) = stack(&extra).await;
    let got = h1(p.addr(0), get_with("/", &[("apikey", "alice-key"), ("x-consumer-groups", "admin")])).await;
    assert_eq!(got.status, 200);
    assert_eq!(upstream_headers(&got)["x-consumer-groups"], "gold, eu");
    let got = h1(p.addr(0), get_with("/", &[("apikey", "bob-key")])).await;
    assert_eq!((got.status, message(&got).as_str()), (403, "You cannot consume this service"));
    let err = call(&p, &[("apikey", "bob-key")]).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (tonic::Code::PermissionDenied, "You cannot consume this service"));
    call(&p, &[("apikey", "alice-key")]).await.unwrap();

    // Kong's request counter carries the consumer (also for bob, refused after authenticating).
    let metrics = h1(p.status_addr(), get("/metrics", "status")).await.body;
    let count = |route: &str, code: &str, consumer: &str| {
        let want = format!(
            "kong_http_requests_total{{code=\"{code}\",consumer=\"{consumer}\",route=\"{route}\",service=\"{route}\",source=\"{}\",workspace=\"default\"}}",
            if code == "200" { "service" } else { "kong" }
        );
        metrics.lines().find_map(|l| l.strip_prefix(want.as_str())).map(|v| v.trim().to_string())
    };
    assert_eq!(count("web", "200", "alice").as_deref(), Some("1"), "{metrics}");
    assert_eq!(count("web", "403", "bob").as_deref(), Some("1"), "{metrics}");
    assert_eq!(count("grpc", "200", "alice").as_deref(), Some("1"), "{metrics}");
}

/// With a prometheus plugin, Kong's `per_consumer` decides whether the request counter carries the
/// consumer (without any prometheus plugin sluice fills it, as the test above shows).
#[tokio::test]
async fn the_consumer_label_follows_prometheus_per_consumer() {
    for (per_consumer, label) in [(false, ""), (true, "alice")] {
        let extra = format!(
            "{}plugins:\n- name: key-auth\n- name: prometheus\n  config: {{status_code_metrics: true, per_consumer: {per_consumer}}}\n",
            consumers(alice_and_bob())
        );
        let (p, _web, _grpc) = stack(&extra).await;
        assert_eq!(h1(p.addr(0), get_with("/", &[("apikey", "alice-key")])).await.status, 200);
        let metrics = h1(p.status_addr(), get("/metrics", "status")).await.body;
        let want = format!(
            "kong_http_requests_total{{code=\"200\",consumer=\"{label}\",route=\"web\",service=\"web\",source=\"service\",workspace=\"default\"}} 1"
        );
        assert!(metrics.lines().any(|l| l == want), "per_consumer {per_consumer}: no {want}\n{metrics}");
    }
}

#[tokio::test]
async fn acl_without_an_auth_plugin_is_unauthorized() {
    let extra = format!("{}plugins:\n- name: acl\n  config: {{deny: [silver]}}\n", consumers(alice_and_bob()));
    let (p, _web, _grpc) = stack(&extra).await;
    let err = call(&p, &[]).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (tonic::Code::Unauthenticated, "Unauthorized"));
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// An RSA key pair (PKCS#8 private PEM, SPKI public PEM) made by the openssl command line.
fn rsa_keys() -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).output().expect("openssl");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    run(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key.to_str().unwrap()]);
    let public = run(&["pkey", "-in", key.to_str().unwrap(), "-pubout"]);
    (std::fs::read_to_string(&key).unwrap(), String::from_utf8(public).unwrap())
}

/// A P-256 key pair (PKCS#8 private PEM, SPKI public PEM).
fn ec_keys() -> (String, String) {
    let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    (k.serialize_pem(), k.public_key_pem())
}

fn token(alg: Algorithm, key: &EncodingKey, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
}

#[tokio::test]
async fn jwt_verifies_hs256_rs256_and_es256_tokens_and_their_claims() {
    let (rsa_private, rsa_public) = rsa_keys();
    let (ec_private, ec_public) = ec_keys();
    let (_, other_ec_public) = ec_keys();
    let c = json!([
        {"username": "alice", "jwt_secrets": [
            {"key": "hs-issuer", "algorithm": "HS256", "secret": "s3cret-s3cret-s3cret-s3cret-s3cr"},
            {"key": "rs-issuer", "algorithm": "RS256", "rsa_public_key": rsa_public}]},
        {"username": "bob", "jwt_secrets": [{"key": "es-issuer", "algorithm": "ES256", "rsa_public_key": ec_public}]},
        {"username": "carol", "jwt_secrets": [{"key": "wrong-es", "algorithm": "ES256", "rsa_public_key": other_ec_public}]}
    ]);
    let extra = format!(
        "{}plugins:\n- name: jwt\n  config: {{claims_to_verify: [exp], maximum_expiration: 3600}}\n",
        consumers(c)
    );
    let (p, _web, _grpc) = stack(&extra).await;
    let exp = now() + 600;
    let hs = EncodingKey::from_secret(b"s3cret-s3cret-s3cret-s3cret-s3cr");
    let rs = EncodingKey::from_rsa_pem(rsa_private.as_bytes()).unwrap();
    let es = EncodingKey::from_ec_pem(ec_private.as_bytes()).unwrap();
    let bearer = |t: &str| format!("Bearer {t}");

    let t = token(Algorithm::HS256, &hs, json!({"iss": "hs-issuer", "exp": exp}));
    let got = h1(p.addr(0), get_with("/", &[("authorization", &bearer(&t))])).await;
    assert_eq!(got.status, 200, "{}", got.body);
    let h = upstream_headers(&got);
    assert_eq!(
        (h["x-consumer-username"].as_str(), h["x-credential-identifier"].as_str()),
        (Some("alice"), Some("hs-issuer"))
    );

    let t = token(Algorithm::RS256, &rs, json!({"iss": "rs-issuer", "exp": exp}));
    call(&p, &[("authorization", &bearer(&t))]).await.unwrap();
    let got = h1(p.addr(0), get(&format!("/?jwt={t}"), "example.com")).await;
    assert_eq!(upstream_headers(&got)["x-consumer-username"], "alice");

    let t = token(Algorithm::ES256, &es, json!({"iss": "es-issuer", "exp": exp}));
    call(&p, &[("authorization", &bearer(&t))]).await.unwrap();

    // Expired; over maximum_expiration; no exp: Kong's claim errors, body {"exp": ...}.
    for (claims, reason) in [
        (json!({"iss": "es-issuer", "exp": now() - 10}), "token expired"),
        (json!({"iss": "es-issuer", "exp": now() + 7200}), "exceeds maximum allowed expiration"),
        (json!({"iss": "es-issuer"}), "must be a number"),
    ] {
        let t = token(Algorithm::ES256, &es, claims);
        let err = call(&p, &[("authorization", &bearer(&t))]).await.unwrap_err();
        assert_eq!((err.code(), err.message()), (tonic::Code::Unauthenticated, reason));
        let got = h1(p.addr(0), get_with("/", &[("authorization", &bearer(&t))])).await;
        assert_eq!((got.status, got.body.as_str()), (401, json!({"exp": reason}).to_string().as_str()));
    }

    // Signed with the wrong key: another consumer's key id, bob's private key.
    let t = token(Algorithm::ES256, &es, json!({"iss": "wrong-es", "exp": exp}));
    let err = call(&p, &[("authorization", &bearer(&t))]).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (tonic::Code::Unauthenticated, "Invalid signature"));
    // The right key id with another algorithm (alg confusion): refused before any verification.
    let t = token(Algorithm::HS256, &EncodingKey::from_secret(ec_public.as_bytes()), json!({"iss": "es-issuer"}));
    let err = call(&p, &[("authorization", &bearer(&t))]).await.unwrap_err();
    assert_eq!(err.message(), "Invalid algorithm");
    let t = token(Algorithm::HS256, &hs, json!({"iss": "nobody", "exp": exp}));
    let err = call(&p, &[("authorization", &bearer(&t))]).await.unwrap_err();
    assert_eq!(err.message(), "No credentials found for given 'iss'");
    let t = token(Algorithm::HS256, &hs, json!({"sub": "x"}));
    assert_eq!(
        call(&p, &[("authorization", &bearer(&t))]).await.unwrap_err().message(),
        "No mandatory 'iss' in claims"
    );
    assert!(call(&p, &[("authorization", "Bearer not.a.token")])
        .await
        .unwrap_err()
        .message()
        .starts_with("Bad token; "));
    let got = h1(p.addr(0), get("/", "example.com")).await;
    assert_eq!((got.status, message(&got).as_str()), (401, "Unauthorized"));
    assert_eq!(got.headers["www-authenticate"], "Bearer");
}

/// request-termination instances at the listed scopes (each answering with its scope's name)
/// plus a global key-auth; which one answers alice's request on route `web`.
async fn consumer_scope_winner(p: &TestProxy, web: &EchoHttp, grpc: &sluice_demo::Backend, rows: &[&str]) -> String {
    let mut plugins = String::from("plugins:\n- name: key-auth\n");
    for row in rows {
        plugins.push_str(&format!("- name: request-termination\n  config: {{status_code: 418, message: '{row}'}}\n"));
        for part in row.split('+') {
            match part {
                "route" => plugins.push_str("  route: web\n"),
                "service" => plugins.push_str("  service: web\n"),
                "consumer" => plugins.push_str("  consumer: alice\n"),
                _ => {}
            }
        }
    }
    let config = format!("{}{}{plugins}", basic_config(web.addr, grpc.addr()), consumers(alice_and_bob()));
    p.push_ok(&config).await;
    let got = h1(p.addr(0), get_with("/", &[("apikey", "alice-key")])).await;
    assert_eq!(got.status, 418, "{rows:?}: {}", got.body);
    message(&got)
}

#[tokio::test]
async fn precedence_with_consumer_scopes_follows_every_row_of_kongs_table() {
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    // Kong's lookup order, most specific first.
    let table = [
        "route+service+consumer",
        "route+consumer",
        "service+consumer",
        "route+service",
        "consumer",
        "route",
        "service",
        "global",
    ];
    for (i, row) in table.iter().enumerate() {
        assert_eq!(consumer_scope_winner(&p, &web, &grpc, &table[i..]).await, *row, "rows {:?}", &table[i..]);
    }
    // A plugin scoped to another consumer does not apply to alice, and consumer scopes apply to
    // bob only once bob authenticated.
    let config = format!(
        "{}{}plugins:\n- name: key-auth\n- name: request-termination\n  consumer: bob\n  config: {{status_code: 418, message: bob}}\n",
        basic_config(web.addr, grpc.addr()),
        consumers(alice_and_bob())
    );
    p.push_ok(&config).await;
    assert_eq!(h1(p.addr(0), get_with("/", &[("apikey", "alice-key")])).await.status, 200);
    assert_eq!(h1(p.addr(0), get_with("/", &[("apikey", "bob-key")])).await.status, 418);
    assert_eq!(h1(p.addr(0), get("/", "example.com")).await.status, 401);
    // Nested under the consumer: the same scope.
    let c = json!([{"username": "alice", "keyauth_credentials": [{"key": "alice-key"}],
        "plugins": [{"name": "request-termination", "route": "web", "config": {"status_code": 418, "message": "nested"}}]}]);
    p.push_ok(&format!("{}{}plugins:\n- name: key-auth\n", basic_config(web.addr, grpc.addr()), consumers(c))).await;
    let got = h1(p.addr(0), get_with("/", &[("apikey", "alice-key")])).await;
    assert_eq!((got.status, message(&got).as_str()), (418, "nested"));
    // Route `grpc` is not in that instance's scope.
    call(&p, &[("apikey", "alice-key")]).await.unwrap();
}

#[tokio::test]
async fn bad_consumers_and_auth_configs_are_refused_naming_the_field_never_the_secret() {
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0", &[]).await;
    let push = |extra: String| {
        let config = format!("{}{extra}", basic_config(web.addr, grpc.addr()));
        let p = &p;
        async move { p.push(&config).await }
    };
    let cases = [
        (
            format!("{}plugins:\n- name: key-auth\n  config: {{anonymous: nobody}}\n", consumers(alice_and_bob())),
            "config.anonymous",
        ),
        (format!("{}plugins:\n- name: key-auth\n  consumer: alice\n", consumers(alice_and_bob())), "consumer"),
        (
            consumers(json!([{"username": "a", "keyauth_credentials": [{"key": "top-secret-1"}]},
                             {"username": "b", "keyauth_credentials": [{"key": "top-secret-1"}]}])),
            "keyauth_credentials.1.key",
        ),
        (
            consumers(json!([{"username": "a", "jwt_secrets": [{"key": "i", "algorithm": "RS256",
                "rsa_public_key": "-----BEGIN PUBLIC KEY-----\ntop-secret-2\n-----END PUBLIC KEY-----\n"}]}])),
            "jwt_secrets.1.rsa_public_key",
        ),
        (consumers(json!([{"tags": ["x"]}])), "@entity"),
        ("plugins:\n- name: acl\n  config: {allow: [a], deny: [b]}\n".to_string(), "@entity"),
        ("plugins:\n- name: key-auth\n  config: {key_in_body: true}\n".to_string(), "config.key_in_body"),
    ];
    for (extra, field) in cases {
        let (status, body) = push(extra.clone()).await;
        assert_eq!(status, 400, "{extra}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let fields: Vec<&str> = v["flattened_errors"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|e| e["errors"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()))
            .collect();
        assert!(fields.contains(&field), "{field} in {body}");
        assert!(!body.contains("top-secret"), "a secret in the error: {body}");
    }
}

/// grpcio (the Python client users run; proxy/tests/python/grpc_unary_status.py, a generic
/// unary call without generated stubs) sees exactly UNAUTHENTICATED / PERMISSION_DENIED /
/// RESOURCE_EXHAUSTED with Kong's message, and the rate-limit headers as response metadata.
/// Needs python3 with grpcio (`make test` installs it): fails, never skips, without it.
#[tokio::test]
async fn grpcio_sees_unauthenticated_permission_denied_and_resource_exhausted_with_the_message() {
    let extra = format!(
        "{}plugins:\n- name: key-auth\n- name: acl\n  config: {{allow: [gold]}}\n\
         - name: rate-limiting\n  config: {{year: 2, limit_by: consumer}}\n",
        consumers(alice_and_bob())
    );
    let (p, _web, _grpc) = stack(&extra).await;
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/grpc_unary_status.py");
    let alice = json!([["apikey", "alice-key"]]);
    let calls = json!([[], [["apikey", "bob-key"]], alice, alice, alice]);
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new("python3")
            .arg(&script)
            .args([&p.addr(0).to_string(), "example.com", "/hello.HelloService/SayHello", &calls.to_string()])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("python finished in time")
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "grpcio is required (`make deps`): {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let status: Vec<(&str, &str)> =
        got.iter().map(|c| (c["code"].as_str().unwrap(), c["details"].as_str().unwrap())).collect();
    assert_eq!(
        status,
        [
            ("UNAUTHENTICATED", "No API key found in request"),
            ("PERMISSION_DENIED", "You cannot consume this service"),
            ("OK", ""),
            ("OK", ""),
            ("RESOURCE_EXHAUSTED", "API rate limit exceeded"),
        ]
    );
    assert_eq!(got[3]["initial"]["x-ratelimit-remaining-year"], "0", "{}", got[3]);
    // A trailers-only refusal: grpcio may report its headers as initial or trailing metadata.
    let refused = &got[4];
    let md = |k: &str| refused["trailing"].get(k).or_else(|| refused["initial"].get(k)).cloned();
    assert_eq!(md("x-ratelimit-limit-year"), Some(json!("2")), "{refused}");
    assert_eq!(md("x-ratelimit-remaining-year"), Some(json!("0")), "{refused}");
    assert_eq!(md("ratelimit-limit"), Some(json!("2")), "{refused}");
    assert_eq!(md("ratelimit-remaining"), Some(json!("0")), "{refused}");
    let reset = md("ratelimit-reset").and_then(|v| v.as_str()?.parse::<u64>().ok());
    assert!(reset.is_some_and(|r| r >= 1), "{refused}");
    assert_eq!(md("retry-after").and_then(|v| v.as_str()?.parse::<u64>().ok()), reset, "{refused}");
}
