use serde_json::{json, Value};

use super::*;

/// The `(field, message)` pairs of a config's errors.
fn errors(name: &str, config: Value) -> Vec<(String, String)> {
    check_plugin_config(name, &config).into_iter().map(|e| (e.field, e.message)).collect()
}

fn one_error(name: &str, config: Value) -> (String, String) {
    let errs = errors(name, config.clone());
    assert_eq!(errs.len(), 1, "{name} {config}: {errs:?}");
    errs.into_iter().next().unwrap()
}

const GATEWAY_PROTO: &str = r#"syntax = "proto3";
import "google/api/annotations.proto";
message M { string id = 1; }
service S { rpc Get(M) returns (M) { option (google.api.http) = { get: "/m/{id}" }; } }
"#;

#[test]
fn grpc_gateway_needs_one_source_and_names_the_bad_line() {
    let errors = check_plugin_config("grpc-gateway", &Value::Null);
    assert_eq!(errors[0].field, "config");
    let both = check_plugin_config("grpc-gateway", &json!({"proto": "/a.proto", "proto_text": GATEWAY_PROTO}));
    assert!(both[0].message.starts_with("exactly one of"), "{both:?}");
    let bad = GATEWAY_PROTO.replace("{id}", "{nope}");
    let errors = check_plugin_config("grpc-gateway", &json!({"proto_text": bad, "proto_name": "m.proto"}));
    assert_eq!(errors[0].field, "config.proto_text");
    assert!(errors[0].message.starts_with("m.proto:4: rpc S.Get: field 'nope' not found"), "{errors:?}");
}

#[test]
fn defaults_are_kongs() {
    for name in PLUGIN_NAMES {
        let config = match *name {
            "ip-restriction" => json!({"allow": ["10.0.0.0/8"]}),
            "opentelemetry" => json!({"traces_endpoint": "http://collector:4318/v1/traces"}),
            "grpc-gateway" => json!({"proto_text": GATEWAY_PROTO}),
            "acl" => json!({"allow": ["g"]}),
            "rate-limiting" => json!({"minute": 5}),
            _ => Value::Null,
        };
        let parsed = PluginConfig::from_entity(name, &config).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(parsed.name(), *name);
        assert_eq!(Some(parsed.priority()), priority(name));
        match parsed {
            PluginConfig::Acl(c) => assert!(!c.hide_groups_header && c.deny.is_empty()),
            PluginConfig::BasicAuth(c) => assert_eq!((c.realm.as_str(), c.hide_credentials), ("service", false)),
            PluginConfig::Jwt(c) => {
                assert_eq!((c.uri_param_names, c.header_names), (vec!["jwt".into()], vec!["authorization".into()]));
                assert_eq!((c.key_claim_name.as_str(), c.maximum_expiration), ("iss", 0));
                assert!(c.claims_to_verify.is_empty() && c.cookie_names.is_empty() && c.run_on_preflight);
            }
            PluginConfig::KeyAuth(c) => assert_eq!(c.key_names, vec!["apikey".to_string()]),
            PluginConfig::Cors(c) => {
                assert_eq!(c, CorsConfig::default());
                let methods: Vec<&str> = c.methods.iter().map(|m| m.as_str()).collect();
                assert_eq!(methods, cors::METHODS);
                assert!(c.origins.is_empty() && c.headers.is_empty() && c.exposed_headers.is_empty());
                assert_eq!((c.max_age, c.credentials, c.private_network), (None, false, false));
                assert_eq!((c.preflight_continue, c.allow_origin_absent), (false, true));
            }
            PluginConfig::GrpcGateway(c) => assert_eq!(c.proto_name, "api.proto"),
            PluginConfig::CorrelationId(c) => {
                assert_eq!(c.header_name, "Kong-Request-ID");
                assert_eq!(c.generator, Generator::UuidCounter);
                assert!(!c.echo_downstream);
            }
            PluginConfig::GrpcWeb(c) => {
                assert_eq!((c.allow_origin_header.as_str(), c.pass_stripped_path), ("*", false));
            }
            PluginConfig::IpRestriction(c) => {
                assert_eq!(
                    (c.status(), c.message("192.0.2.1".parse().unwrap())),
                    (403, "IP address not allowed: 192.0.2.1".into())
                );
            }
            PluginConfig::Opentelemetry(c) => {
                assert_eq!(c, OpentelemetryConfig::new("http://collector:4318/v1/traces"));
            }
            PluginConfig::Prometheus(c) => assert_eq!(c, PrometheusConfig::default()),
            PluginConfig::RateLimiting(c) => assert_eq!(c.limits(), vec![(1, 5)]),
            PluginConfig::RequestSizeLimiting(c) => {
                assert_eq!(
                    (c.allowed_payload_size, c.size_unit, c.require_content_length),
                    (128, SizeUnit::Megabytes, false)
                );
                assert_eq!(c.limit_bytes(), 128 * 1024 * 1024);
            }
            PluginConfig::RequestTermination(c) => {
                assert_eq!((c.status_code, c.message, c.body, c.content_type), (503, None, None, None));
            }
            PluginConfig::RequestTransformer(c) => {
                assert_eq!(c, RequestTransformerConfig::default());
                assert!(!c.has_body_ops());
            }
            PluginConfig::ResponseTransformer(c) => {
                assert_eq!(c, ResponseTransformerConfig::default());
                assert!(!c.has_json_ops());
            }
        }
    }
}

#[test]
fn explicit_nulls_mean_defaults() {
    let c =
        PluginConfig::from_entity("correlation-id", &json!({"header_name": null, "echo_downstream": null})).unwrap();
    assert_eq!(c, PluginConfig::CorrelationId(CorrelationIdConfig::default()));
    let c = PluginConfig::from_entity("request-termination", &json!({"trigger": null, "echo": false})).unwrap();
    assert_eq!(c, PluginConfig::RequestTermination(RequestTerminationConfig::default()));
    let c = PluginConfig::from_entity("request-transformer", &json!({"add": null, "replace": {"uri": null}})).unwrap();
    assert_eq!(c, PluginConfig::RequestTransformer(RequestTransformerConfig::default()));
}

#[test]
fn full_configs_parse_into_their_types() {
    let PluginConfig::Cors(c) = PluginConfig::from_entity(
        "cors",
        &json!({"origins": ["*", "https://a.example", "https://.*\\.b\\.example"], "methods": ["GET", "POST"],
                "headers": ["x-a"], "exposed_headers": ["grpc-status"], "max_age": 3600, "credentials": true,
                "private_network": true, "preflight_continue": true, "allow_origin_absent": false}),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(c.methods, [CorsMethod::Get, CorsMethod::Post]);
    assert_eq!((c.max_age, c.credentials, c.allow_origin_absent), (Some(3600.0), true, false));
    assert!(cors::compile_origin("https://.*\\.b\\.example").unwrap().is_match("https://x.b.example"));
    assert!(!cors::compile_origin("https://a.example").unwrap().is_match("https://a.example.evil"));
    assert!(cors::is_plain_origin("https://a.example:8443") && !cors::is_plain_origin("https://.*\\.b\\.example"));

    let c = PluginConfig::from_entity(
        "grpc-web",
        &json!({"allow_origin_header": "https://app.example", "pass_stripped_path": true, "proto": null}),
    )
    .unwrap();
    let want = GrpcWebConfig { allow_origin_header: "https://app.example".into(), pass_stripped_path: true };
    assert_eq!(c, PluginConfig::GrpcWeb(want));
    assert_eq!(PluginConfig::from_entity("grpc-web", &Value::Null).unwrap(), PluginConfig::GrpcWeb(Default::default()));

    let PluginConfig::IpRestriction(c) = PluginConfig::from_entity(
        "ip-restriction",
        &json!({"deny": ["10.1.0.0/16"], "allow": ["10.0.0.0/8", "::1"], "status": 401, "message": "no"}),
    )
    .unwrap() else {
        panic!()
    };
    assert!(c.allows("10.2.3.4".parse().unwrap()));
    assert!(!c.allows("10.1.3.4".parse().unwrap()), "deny wins over allow");
    assert!(!c.allows("192.0.2.1".parse().unwrap()), "not in allow");
    assert!(c.allows("::1".parse().unwrap()));
    assert!(c.allows("::ffff:10.2.3.4".parse().unwrap()), "v4-mapped client matches a v4 range");
    assert_eq!((c.status(), c.message("::1".parse().unwrap())), (401, "no".to_string()));

    let PluginConfig::RequestSizeLimiting(c) = PluginConfig::from_entity(
        "request-size-limiting",
        &json!({"allowed_payload_size": 3, "size_unit": "kilobytes", "require_content_length": true}),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!((c.limit_bytes(), c.require_content_length), (3072, true));

    let PluginConfig::RequestTransformer(c) = PluginConfig::from_entity(
        "request-transformer",
        &json!({"http_method": "POST", "remove": {"headers": ["x-a"], "querystring": ["q"], "body": ["b"]},
                "rename": {"headers": ["x-b:x-c"]}, "replace": {"uri": "/v2/$(uri_captures[1])", "headers": ["host:h.example"]},
                "add": {"body": ["who:$(headers.x_user or \"anon\")"]}, "append": {"querystring": ["q:1"]}}),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(c.http_method.as_deref(), Some("POST"));
    assert_eq!(c.replace.uri.as_deref(), Some("/v2/$(uri_captures[1])"));
    assert!(c.has_body_ops());

    let PluginConfig::ResponseTransformer(c) = PluginConfig::from_entity(
        "response-transformer",
        &json!({"add": {"json": ["n:1", "s:x"], "json_types": ["number"]}, "remove": {"json": ["secret"], "headers": ["server"]}}),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(c.add.json_types, [JsonType::Number]);
    assert!(c.has_json_ops());

    let PluginConfig::ResponseTransformer(c) = PluginConfig::from_entity(
        "response-transformer",
        &json!({"add": {"trailers": ["x-served-by:edge"]}, "append": {"trailers": ["x-hop:a", "X-Hop:b"]}}),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(c.add.trailers, ["x-served-by:edge"]);
    assert_eq!(c.append.trailers, ["x-hop:a", "X-Hop:b"]);
    assert!(c.add.headers.is_empty() && !c.has_json_ops());
}

#[test]
fn each_error_names_its_field() {
    let cases: &[(&str, Value, &str, &str)] = &[
        (
            "hmac-auth",
            json!({}),
            "name",
            "plugin 'hmac-auth' not enabled; sluice supports: acl, basic-auth, correlation-id, cors",
        ),
        ("cors", json!([]), "config", "expected a record"),
        ("cors", json!({"origin": ["*"]}), "config.origin", "unknown field"),
        ("cors", json!({"origins": ["("]}), "config.origins.1", "'(' is not a valid regex"),
        ("cors", json!({"origins": "*"}), "config.origins", "expected an array"),
        ("cors", json!({"origins": ["*", 5]}), "config.origins.2", "expected a string"),
        ("cors", json!({"methods": ["GET", "BREW"]}), "config.methods.2", "expected one of: GET, HEAD, PUT"),
        ("cors", json!({"max_age": "1h"}), "config.max_age", "expected a number"),
        ("cors", json!({"max_age": -1}), "config.max_age", "greater than or equal to 0"),
        ("cors", json!({"credentials": "yes"}), "config.credentials", "expected a boolean"),
        ("cors", json!({"headers": [""]}), "config.headers.1", "invalid header ''"),
        ("grpc-web", json!({"proto": "a.proto"}), "config.proto", "not supported by sluice: grpc-web carries"),
        ("grpc-web", json!({"allow_origin_header": ""}), "config.allow_origin_header", "invalid header value"),
        ("grpc-web", json!({"pass_stripped_path": 1}), "config.pass_stripped_path", "expected a boolean"),
        (
            "correlation-id",
            json!({"generator": "ulid"}),
            "config.generator",
            "expected one of: uuid, uuid#counter, tracker",
        ),
        (
            "correlation-id",
            json!({"header_name": "bad name"}),
            "config.header_name",
            "'bad name' is not a valid header",
        ),
        ("correlation-id", json!({"echo_downstream": 1}), "config.echo_downstream", "expected a boolean"),
        (
            "ip-restriction",
            json!({}),
            "@entity",
            "at least one of these fields must be non-empty: 'config.allow', 'config.deny'",
        ),
        ("ip-restriction", json!({"allow": []}), "@entity", "at least one of these fields must be non-empty"),
        ("ip-restriction", json!({"allow": ["10.0.0.1", "x"]}), "config.allow.2", "invalid ip or cidr range: 'x'"),
        (
            "ip-restriction",
            json!({"deny": ["10.0.0.0/33"]}),
            "config.deny.1",
            "invalid ip or cidr range: '10.0.0.0/33'",
        ),
        ("ip-restriction", json!({"deny": ["::/129"]}), "config.deny.1", "invalid ip or cidr range: '::/129'"),
        ("ip-restriction", json!({"deny": ["10.0.0.0/"]}), "config.deny.1", "invalid ip or cidr range"),
        (
            "ip-restriction",
            json!({"allow": ["::1"], "status": 99}),
            "config.status",
            "value should be between 100 and 599",
        ),
        ("ip-restriction", json!({"allow": ["::1"], "status": 403.5}), "config.status", "expected an integer"),
        ("ip-restriction", json!({"allow": ["::1"], "message": 1}), "config.message", "expected a string"),
        (
            "request-size-limiting",
            json!({"size_unit": "gigabytes"}),
            "config.size_unit",
            "expected one of: megabytes, kilobytes, bytes",
        ),
        (
            "request-size-limiting",
            json!({"allowed_payload_size": -1}),
            "config.allowed_payload_size",
            "greater than or equal to 0",
        ),
        (
            "request-size-limiting",
            json!({"allowed_payload_size": "1"}),
            "config.allowed_payload_size",
            "expected an integer",
        ),
        (
            "request-size-limiting",
            json!({"require_content_length": "no"}),
            "config.require_content_length",
            "expected a boolean",
        ),
        (
            "request-termination",
            json!({"status_code": 600}),
            "config.status_code",
            "value should be between 100 and 599",
        ),
        (
            "request-termination",
            json!({"message": "m", "body": "b"}),
            "config",
            "message cannot be used with content_type or body",
        ),
        ("request-termination", json!({"content_type": "text/plain"}), "config", "content_type requires a body"),
        ("request-termination", json!({"echo": true}), "config.echo", "not supported by sluice"),
        ("request-termination", json!({"trigger": "x-stop"}), "config.trigger", "not supported by sluice"),
        ("request-transformer", json!({"http_method": "get"}), "config.http_method", "invalid value: get"),
        ("request-transformer", json!({"remove": {"uri": "/"}}), "config.remove.uri", "unknown field"),
        (
            "request-transformer",
            json!({"remove": {"headers": ["bad name"]}}),
            "config.remove.headers.1",
            "'bad name' is not a valid header",
        ),
        (
            "request-transformer",
            json!({"remove": {"headers": ["Host"]}}),
            "config.remove.headers.1",
            "'host' cannot be removed",
        ),
        (
            "request-transformer",
            json!({"add": {"headers": ["no-colon"]}}),
            "config.add.headers.1",
            "invalid value: no-colon",
        ),
        (
            "request-transformer",
            json!({"add": {"headers": ["x-a:"]}}),
            "config.add.headers.1",
            "key 'x-a' has no value",
        ),
        (
            "request-transformer",
            json!({"add": {"headers": ["host:x"]}}),
            "config.add.headers.1",
            "'host' cannot be used with add",
        ),
        (
            "request-transformer",
            json!({"append": {"body": ["a:$(shared.x)"]}}),
            "config.append.body.1",
            "template '$(shared.x)' is not supported by sluice",
        ),
        (
            "request-transformer",
            json!({"replace": {"querystring": ["q:$(headers.a"]}}),
            "config.replace.querystring.1",
            "unclosed",
        ),
        (
            "request-transformer",
            json!({"rename": {"headers": ["x-a:bad name"]}}),
            "config.rename.headers.1",
            "'bad name' is not a valid header",
        ),
        (
            "request-transformer",
            json!({"rename": {"body": ["a:$(headers.b)"]}}),
            "config.rename.body.1",
            "must be a plain name",
        ),
        ("request-transformer", json!({"replace": {"uri": "v2"}}), "config.replace.uri", "should start with: /"),
        (
            "request-transformer",
            json!({"replace": {"uri": "/$(headers.a:lower())"}}),
            "config.replace.uri",
            "is not supported by sluice",
        ),
        ("request-transformer", json!({"add": {"json": ["a:b"]}}), "config.add.json", "unknown field"),
        ("response-transformer", json!({"add": {"body": ["a:b"]}}), "config.add.body", "unknown field"),
        (
            "response-transformer",
            json!({"remove": {"json_types": ["string"]}}),
            "config.remove.json_types",
            "unknown field",
        ),
        ("response-transformer", json!({"replace": {"json": ["a"]}}), "config.replace.json.1", "invalid value: a"),
        ("response-transformer", json!({"add": {"json": ["a:"]}}), "config.add.json.1", "key 'a' has no value"),
        (
            "response-transformer",
            json!({"add": {"json": ["a:x"], "json_types": ["number"]}}),
            "config.add.json.1",
            "value 'x' of 'a' is not a number",
        ),
        (
            "response-transformer",
            json!({"append": {"json": ["a:1"], "json_types": ["int"]}}),
            "config.append.json_types.1",
            "expected one of: boolean, number, string",
        ),
        (
            "response-transformer",
            json!({"add": {"json": ["a:1"], "json_types": ["string", "string"]}}),
            "config.add.json_types",
            "has 2 entries but config.add.json has 1",
        ),
        (
            "response-transformer",
            json!({"rename": {"headers": ["x-a:bad name"]}}),
            "config.rename.headers.1",
            "'bad name' is not a valid header",
        ),
        (
            "response-transformer",
            json!({"remove": {"headers": ["bad name"]}}),
            "config.remove.headers.1",
            "'bad name' is not a valid header",
        ),
        (
            "response-transformer",
            json!({"append": {"headers": ["x-a"]}}),
            "config.append.headers.1",
            "invalid value: x-a",
        ),
        (
            "response-transformer",
            json!({"replace": {"trailers": ["x-a:1"]}}),
            "config.replace.trailers",
            "unknown field",
        ),
        ("response-transformer", json!({"remove": {"trailers": ["x-a"]}}), "config.remove.trailers", "unknown field"),
        (
            "response-transformer",
            json!({"add": {"trailers": ["Grpc-Status:0"]}}),
            "config.add.trailers.1",
            "trailer 'grpc-status' may not be added",
        ),
        (
            "response-transformer",
            json!({"append": {"trailers": ["x-ok:1", "grpc-message:hi"]}}),
            "config.append.trailers.2",
            "trailer 'grpc-message' may not be added",
        ),
        (
            "response-transformer",
            json!({"add": {"trailers": ["content-length:3"]}}),
            "config.add.trailers.1",
            "trailer 'content-length' may not be added",
        ),
        ("response-transformer", json!({"add": {"trailers": ["x-a"]}}), "config.add.trailers.1", "invalid value: x-a"),
        (
            "response-transformer",
            json!({"append": {"trailers": ["bad name:1"]}}),
            "config.append.trailers.1",
            "'bad name' is not a valid header",
        ),
        (
            "response-transformer",
            json!({"add": {"trailers": ["x-a:"]}}),
            "config.add.trailers.1",
            "key 'x-a' has no value",
        ),
        ("response-transformer", json!({"add": {"trailers": "x-a:1"}}), "config.add.trailers", "expected an array"),
        (
            "response-transformer",
            json!({"append": {"headers": ["x-a:\u{1}"]}}),
            "config.append.headers.1",
            "invalid header value for 'x-a'",
        ),
    ];
    for (name, config, field, message) in cases {
        let (f, m) = one_error(name, config.clone());
        assert_eq!(f, *field, "{name} {config}: {m}");
        assert!(m.contains(message), "{name} {config}: {m:?} lacks {message:?}");
    }
}

#[test]
fn every_broken_field_is_named_at_once() {
    let errs = errors(
        "request-transformer",
        json!({"http_method": "x", "nope": 1, "add": {"headers": ["a", "b:1", "c"], "extra": []}, "remove": 5}),
    );
    let fields: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        [
            "config.nope",
            "config.http_method",
            "config.remove",
            "config.add.extra",
            "config.add.headers.1",
            "config.add.headers.3"
        ]
    );
}

#[test]
fn kongs_pair_split() {
    for (entry, want) in [
        ("a:b", Some(("a", "b"))),
        ("a::b", Some(("a", "b"))),
        ("a:b:c", Some(("a", "b:c"))),
        ("a:", Some(("a", ""))),
        (":b", None),
        ("ab", None),
    ] {
        assert_eq!(request_transformer::split_pair(entry), want, "{entry}");
    }
}

#[test]
fn cidr_ranges() {
    for (cidr, ip, inside) in [
        ("10.0.0.0/8", "10.255.0.1", true),
        ("10.0.0.0/8", "11.0.0.1", false),
        ("0.0.0.0/0", "203.0.113.9", true),
        ("192.0.2.7", "192.0.2.7", true),
        ("192.0.2.7/32", "192.0.2.8", false),
        ("2001:db8::/32", "2001:db8:1::1", true),
        ("2001:db8::/32", "2001:db9::1", false),
        ("::/0", "::1", true),
        ("10.0.0.0/8", "::1", false),
    ] {
        let c: IpCidr = cidr.parse().unwrap();
        assert_eq!(c.contains(ip.parse().unwrap()), inside, "{cidr} {ip}");
    }
}

#[test]
fn what_the_proxy_does_not_run_yet_is_refused_by_field() {
    let fields = |name: &str, config: Value| -> Vec<String> {
        check_plugin_config(name, &config).into_iter().map(|e| e.field).collect()
    };
    assert!(fields("request-size-limiting", Value::Null).is_empty());
    assert!(fields(
        "request-transformer",
        json!({"http_method": "POST", "add": {"headers": ["a:1"], "querystring": ["q:1"], "body": ["b:1"]}, "replace": {"uri": "/x"}})
    )
    .is_empty());
    assert!(fields("response-transformer", json!({"remove": {"json": ["a"]}, "add": {"headers": ["a:1"]}})).is_empty());
    assert_eq!(fields("correlation-id", json!({"generator": "tracker"})), ["config.generator"]);
    assert!(fields("correlation-id", json!({"generator": "uuid#counter"})).is_empty());
}

#[test]
fn opentelemetry_schema() {
    let name = "opentelemetry";
    let ok = PluginConfig::from_entity(
        name,
        &json!({"traces_endpoint": "http://collector:4318/v1/traces", "sampling_rate": 0.5,
                "propagation": {"extract": ["b3", "w3c"], "inject": ["preserve", "b3-single"], "default_format": "gcp"},
                "otlp_protocol": "grpc"}),
    )
    .unwrap();
    let PluginConfig::Opentelemetry(c) = ok else { panic!() };
    assert_eq!((c.batch_span_count, c.batch_flush_delay, c.connect_timeout), (200, 3, 1000));
    assert_eq!((c.send_timeout, c.read_timeout, c.sampling_rate), (5000, 5000, 0.5));
    assert_eq!(c.propagation.extract, vec![opentelemetry::Format::B3, opentelemetry::Format::W3c]);
    assert_eq!(c.propagation.default_format, opentelemetry::Format::Gcp);
    assert_eq!(c.otlp_protocol, opentelemetry::OtlpProtocol::Grpc);
    assert_eq!(one_error(name, Value::Null).0, "config.traces_endpoint");
    let e = one_error(name, json!({"traces_endpoint": "https://c/v1/traces"}));
    assert_eq!(e.0, "config.traces_endpoint");
    assert!(e.1.contains("not supported by sluice"), "{e:?}");
    let e = one_error(name, json!({"traces_endpoint": "http://c:4318", "queue": {"max_batch_size": 1}}));
    assert_eq!(e.0, "config.queue");
    let e = one_error(name, json!({"traces_endpoint": "http://c:4318", "sampling_rate": 1.5}));
    assert_eq!(e, ("config.sampling_rate".into(), "value should be between 0 and 1".into()));
    let e = one_error(name, json!({"traces_endpoint": "http://c:4318", "propagation": {"inject": ["w3c", "datadog"]}}));
    assert_eq!(e, ("config.propagation.inject.2".into(), "not supported by sluice: the 'datadog' format".into()));
    let e = one_error(name, json!({"traces_endpoint": "http://c:4318", "propagation": {"extract": ["b3-single"]}}));
    assert_eq!(e.0, "config.propagation.extract.1");
    let e = one_error(name, json!({"traces_endpoint": "http://c:4318", "headers": {"bad header": "x"}}));
    assert_eq!(e.0, "config.headers.bad header");
    let e = one_error(name, json!({"traces_endpoint": "http://c:4318", "otlp_protocol": "zipkin"}));
    assert_eq!(e.0, "config.otlp_protocol");
}

#[test]
fn prometheus_flags_default_off_and_are_checked() {
    let PluginConfig::Prometheus(c) = PluginConfig::from_entity("prometheus", &Value::Null).unwrap() else { panic!() };
    assert_eq!(c, PrometheusConfig::default());
    assert!(!(c.per_consumer || c.status_code_metrics || c.latency_metrics || c.bandwidth_metrics));
    let PluginConfig::Prometheus(c) = PluginConfig::from_entity(
        "prometheus",
        &json!({"status_code_metrics": true, "bandwidth_metrics": true, "upstream_health_metrics": true,
                "per_consumer": null, "ai_metrics": false}),
    )
    .unwrap() else {
        panic!()
    };
    assert!(c.status_code_metrics && c.bandwidth_metrics && c.upstream_health_metrics);
    assert!(!c.latency_metrics && !c.per_consumer);
    assert_eq!(priority("prometheus"), Some(13));
    for (config, field, message) in [
        (json!({"latency_metrics": "yes"}), "config.latency_metrics", "expected a boolean"),
        (json!({"ai_metrics": true}), "config.ai_metrics", "not supported by sluice"),
        (json!({"wasm_metrics": true}), "config.wasm_metrics", "unknown field"),
        (json!([]), "config", "expected a record"),
    ] {
        let (f, m) = one_error("prometheus", config.clone());
        assert_eq!(f, field, "{config}: {m}");
        assert!(m.contains(message), "{config}: {m:?} lacks {message:?}");
    }
}
