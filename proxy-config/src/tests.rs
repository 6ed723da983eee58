use super::*;

const GOOD: &str = r#"
_format_version: "3.0"
services:
- name: default.grpcbin.9000
  protocol: grpc
  host: grpcbin.default.9000.svc
  port: 9000
  routes:
  - name: default.grpc.grpcbin..9000
    protocols: [grpc, grpcs]
    paths: ["/"]
upstreams:
- name: grpcbin.default.9000.svc
  targets:
  - target: 10.0.0.1:9000
  - target: "[::1]:9000"
    weight: 0
"#;

#[test]
fn parses_yaml_and_fills_kong_defaults() {
    let c = parse(GOOD).unwrap();
    validate(&c).unwrap();
    let s = &c.services[0];
    assert_eq!((s.connect_timeout, s.read_timeout, s.write_timeout, s.retries), (60_000, 60_000, 60_000, 5));
    let r = &s.routes[0];
    assert!(r.is_grpc());
    assert!(!r.strips_path(), "gRPC routes default to strip_path false");
    assert_eq!(r.https_redirect_status_code, 426);
    assert_eq!(c.upstreams[0].targets[0].weight, 100);
}

#[test]
fn json_and_yaml_of_the_same_config_hash_the_same() {
    let c = parse(GOOD).unwrap();
    let json = serde_json::to_string(&c).unwrap();
    let c2 = parse(&json).unwrap();
    assert_eq!(config_hash(&c), config_hash(&c2));
    assert_eq!(config_hash(&c).len(), 32);
    assert_ne!(config_hash(&c), EMPTY_HASH);
}

#[test]
fn empty_config_has_the_zero_hash() {
    assert_eq!(config_hash(&parse("_format_version: '3.0'").unwrap()), EMPTY_HASH);
}

#[test]
fn unknown_fields_are_rejected_with_their_name() {
    let err = parse("_format_version: '3.0'\nservices:\n- host: a\n  bogus_field: 1\n").unwrap_err();
    assert!(err.to_string().contains("bogus_field"), "{err}");
}

fn errors_of(yaml: &str) -> Vec<EntityError> {
    validate(&parse(yaml).unwrap()).unwrap_err().flattened_errors
}

#[test]
fn bad_regex_duplicate_name_and_unknown_service_each_name_their_entity() {
    let errs = errors_of(
        r#"
_format_version: "3.0"
services:
- name: s1
  host: example.com
  routes:
  - name: bad-regex
    paths: ["~/(unclosed"]
  - name: dup
    paths: ["/a"]
  - name: dup
    paths: ["/b"]
routes:
- name: orphan
  service: nope
  paths: ["/c"]
"#,
    );
    let find = |name: &str| {
        errs.iter().find(|e| e.entity_name == name).unwrap_or_else(|| panic!("no error for {name}: {errs:?}"))
    };
    assert_eq!(find("bad-regex").errors[0].field, "paths.1");
    assert!(find("dup").errors[0].message.contains("duplicate route name"));
    assert_eq!(find("orphan").errors[0].field, "service");
    assert!(errs.iter().all(|e| e.entity_type == "route"));
    assert_eq!(errs.len(), 3);
}

#[test]
fn grpc_routes_reject_methods_and_strip_path() {
    let errs = errors_of(
        r#"
_format_version: "3.0"
services:
- name: s
  host: h
  protocol: grpc
  path: /x
  routes:
  - name: r
    protocols: [grpc]
    paths: ["/"]
    methods: [GET]
    strip_path: true
"#,
    );
    let fields: Vec<(&str, &str)> =
        errs.iter().flat_map(|e| e.errors.iter().map(move |f| (e.entity_type.as_str(), f.field.as_str()))).collect();
    assert!(fields.contains(&("service", "path")));
    assert!(fields.contains(&("route", "methods")));
    assert!(fields.contains(&("route", "strip_path")));
}

#[test]
fn route_timeouts_are_bounded_and_grpc_routes_do_not_buffer() {
    let errs = errors_of(
        r#"
_format_version: "3.0"
services:
- name: s
  host: h
  protocol: grpc
  routes:
  - name: g
    protocols: [grpc]
    paths: ["/"]
    request_buffering: true
    response_buffering: true
    request_timeout: 0
    backend_request_timeout: 2147483647
  - name: h
    protocols: [http]
    paths: ["/h"]
    request_buffering: true
    response_buffering: true
    request_timeout: 1
    backend_request_timeout: 2147483646
"#,
    );
    let fields: Vec<(&str, &str, &str)> = errs
        .iter()
        .flat_map(|e| e.errors.iter().map(move |f| (e.entity_type.as_str(), e.entity_name.as_str(), f.field.as_str())))
        .collect();
    let expected = [
        ("route", "g", "request_buffering"),
        ("route", "g", "response_buffering"),
        ("route", "g", "request_timeout"),
        ("route", "g", "backend_request_timeout"),
    ];
    assert_eq!(fields, expected, "{errs:?}");
}

#[test]
fn mixed_protocol_families_are_rejected() {
    let errs = errors_of("_format_version: '3.0'\nservices:\n- name: s\n  host: h\n  routes:\n  - name: r\n    protocols: [grpc, https]\n    paths: ['/']\n");
    assert_eq!(errs[0].errors[0].field, "protocols");
}

#[test]
fn host_wildcards_follow_kong() {
    for ok in ["example.com", "*.example.com", "example.*", "example.com:8080", "localhost"] {
        patterns::valid_host_pattern(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in ["*.*.com", "a.*.com", "*", "ex ample.com", "", "a..b"] {
        assert!(patterns::valid_host_pattern(bad).is_err(), "{bad} should be invalid");
    }
}

#[test]
fn targets_parse_with_kong_default_port() {
    use validate::parse_target;
    assert_eq!(parse_target("10.0.0.1").unwrap(), ("10.0.0.1".into(), 8000));
    assert_eq!(parse_target("[::1]:9000").unwrap(), ("[::1]".into(), 9000));
    assert_eq!(parse_target("svc.ns.svc:80").unwrap(), ("svc.ns.svc".into(), 80));
    assert!(parse_target("a:b").is_err());
    assert!(parse_target("[zz]:1").is_err());
}

#[test]
fn header_regex_and_host_header_are_checked() {
    let errs = errors_of("_format_version: '3.0'\nservices:\n- name: s\n  host: h\n  routes:\n  - name: r\n    headers:\n      Host: [a]\n      x-v: ['~*(']\n");
    let fields: Vec<&str> = errs[0].errors.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, ["headers.Host", "headers.x-v"]);
}

#[test]
fn unsupported_plugins_and_bad_transformer_headers_are_rejected() {
    let errs = errors_of(
        r#"
_format_version: "3.0"
services:
- name: s
  host: h
  routes:
  - name: r
    paths: ["/"]
plugins:
- name: proxy-cache
  route: r
- name: request-transformer
  route: r
  config: {add: {headers: ["no-colon"]}}
- name: response-transformer
  route: missing
"#,
    );
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert_eq!(errs[0].errors[0].field, "name");
    assert_eq!(errs[1].errors[0].field, "config.add.headers.1");
    assert_eq!(errs[2].errors[0].field, "route");
}

#[test]
fn flattened_error_serializes_in_kongs_shape() {
    let err = validate(&parse("_format_version: '3.0'\nroutes:\n- name: x\n  service: y\n  paths: ['/']\n").unwrap())
        .unwrap_err();
    let v = serde_json::to_value(&err).unwrap();
    assert_eq!(v["code"], 14);
    assert_eq!(v["name"], "invalid declarative configuration");
    assert_eq!(v["flattened_errors"][0]["entity_type"], "route");
    assert_eq!(v["flattened_errors"][0]["entity_name"], "x");
    assert_eq!(v["flattened_errors"][0]["errors"][0]["field"], "service");
    assert_eq!(v["flattened_errors"][0]["errors"][0]["type"], "field");
}

#[test]
fn health_check_fields_are_checked_and_named() {
    let errs = errors_of(
        "_format_version: '3.0'\nupstreams:\n- name: u\n  healthchecks:\n    threshold: 120\n    passive: {type: udp}\n    \
         active: {type: grpc, timeout: 0, concurrency: 0, http_path: x, headers: {'bad name': [v]}, \
         healthy: {interval: -1, http_statuses: [99]}}\n",
    );
    let fields: Vec<&str> = errs[0].errors.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "healthchecks.active.timeout",
            "healthchecks.active.concurrency",
            "healthchecks.active.http_path",
            "healthchecks.active.healthy.interval",
            "healthchecks.active.healthy.http_statuses",
            "healthchecks.active.headers",
            "healthchecks.passive.type",
            "healthchecks.threshold",
        ]
    );
    let err =
        parse("_format_version: '3.0'\nupstreams:\n- name: u\n  healthchecks: {active: {type: udp}}\n").unwrap_err();
    assert!(err.to_string().contains("udp"), "{err}");
    let ok = parse(
        "_format_version: '3.0'\nupstreams:\n- name: u\n  healthchecks:\n    active: {type: grpcs, grpc_service: echo.Echo, \
         https_sni: a.example, healthy: {interval: 1, successes: 2}, unhealthy: {interval: 1, http_failures: 3}}\n",
    )
    .unwrap();
    validate(&ok).unwrap();
    let a = ok.upstreams[0].healthchecks.as_ref().unwrap().active.as_ref().unwrap();
    assert_eq!((a.kind, a.grpc_service.as_str(), a.concurrency, a.timeout), (ActiveKind::Grpcs, "echo.Echo", 10, 1.0));
    assert_eq!(a.unhealthy.http_statuses, [429, 404, 500, 501, 502, 503, 504, 505], "Kong's defaults");
}

#[test]
fn shorthands_expand_to_the_canonical_config() {
    let short = parse(
        r#"
_format_version: "3.0"
services:
- name: g
  url: grpc://grpcbin.default.svc:9000
  routes:
  - name: g
    protocols: [grpc]
    paths: ["/"]
upstreams:
- name: grpcbin.default.svc
  id: u1
certificates:
- id: c1
  cert: "-----BEGIN CERTIFICATE-----"
  key: "-----BEGIN PRIVATE KEY-----"
targets:
- upstream: grpcbin.default.svc
  target: 10.0.0.1:9000
- upstream: {id: u1}
  target: 10.0.0.2:9000
  weight: 5
snis:
- certificate: {id: c1}
  name: example.com
"#,
    )
    .unwrap();
    validate(&short).unwrap();
    let long = parse(
        r#"
_format_version: "3.0"
services:
- name: g
  protocol: grpc
  host: grpcbin.default.svc
  port: 9000
  routes:
  - name: g
    protocols: [grpc]
    paths: ["/"]
upstreams:
- name: grpcbin.default.svc
  id: u1
  targets:
  - target: 10.0.0.1:9000
  - target: 10.0.0.2:9000
    weight: 5
certificates:
- id: c1
  cert: "-----BEGIN CERTIFICATE-----"
  key: "-----BEGIN PRIVATE KEY-----"
  snis:
  - name: example.com
"#,
    )
    .unwrap();
    assert_eq!(short, long);
    assert_eq!(config_hash(&short), config_hash(&long));
}

#[test]
fn shorthands_that_cannot_expand_are_errors_naming_the_field() {
    let errs = errors_of(
        r#"
_format_version: "3.0"
services:
- name: a
  url: ftp://x
- name: b
  url: http://x
  host: y
targets:
- upstream: nope
  target: 10.0.0.1:80
snis:
- certificate: missing
  name: example.com
"#,
    );
    let fields: Vec<(String, String, String)> = errs
        .iter()
        .flat_map(|e| e.errors.iter().map(move |f| (e.entity_type.clone(), e.entity_name.clone(), f.field.clone())))
        .collect();
    for want in [
        ("service", "a", "url"),
        ("service", "b", "url"),
        ("target", "10.0.0.1:80", "upstream"),
        ("sni", "example.com", "certificate"),
    ] {
        assert!(
            fields.contains(&(want.0.to_string(), want.1.to_string(), want.2.to_string())),
            "{want:?} not in {fields:?}"
        );
    }
}

/// Every field of every schema type, as `Type.field`, read from the types themselves (their JSON
/// schema, which follows the serde attributes): a field added to the schema shows up here.
fn schema_fields() -> std::collections::BTreeSet<String> {
    let schema = serde_json::to_value(schemars::schema_for!(Config)).unwrap();
    let mut out = std::collections::BTreeSet::new();
    let mut add = |ty: &str, def: &serde_json::Value| {
        let mut objects = vec![def];
        // Untagged enums (EntityRef, Sni) are one of several shapes; their object shapes have fields.
        for key in ["anyOf", "oneOf"] {
            if let Some(alts) = def.get(key).and_then(|v| v.as_array()) {
                objects.extend(alts.iter());
            }
        }
        for o in objects {
            if let Some(props) = o.get("properties").and_then(|p| p.as_object()) {
                for name in props.keys() {
                    out.insert(format!("{ty}.{name}"));
                }
            }
        }
    };
    add("Config", &schema);
    for (name, def) in schema["$defs"].as_object().unwrap() {
        add(name, def);
    }
    out
}

/// The first column of docs/field-audit.md's tables: `Type.field` in backticks.
fn audited_fields() -> std::collections::BTreeSet<String> {
    let doc = include_str!("../../docs/field-audit.md");
    doc.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(name, _)| name.to_string())
        .filter(|name| name.contains('.') && !name.contains(' ') && name.chars().next().is_some_and(char::is_uppercase))
        .collect()
}

#[test]
fn every_schema_field_is_in_the_field_audit() {
    let fields = schema_fields();
    assert!(fields.contains("Service.write_timeout") && fields.contains("Config.targets"), "{fields:?}");
    let audited = audited_fields();
    let missing: Vec<&String> = fields.difference(&audited).collect();
    let stale: Vec<&String> = audited.difference(&fields).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/field-audit.md is out of date.\nmissing (add a row: field | effect | test): {missing:#?}\nno longer in the schema: {stale:#?}"
    );
}

#[test]
fn hash_fallback_is_checked_and_unsupported_inputs_are_named() {
    let base = "_format_version: '3.0'\nupstreams:\n- name: u\n  algorithm: consistent-hashing\n";
    let fields_of = |extra: &str| -> Vec<String> {
        match validate(&parse(&format!("{base}{extra}")).unwrap()) {
            Ok(()) => Vec::new(),
            Err(e) => e.flattened_errors.iter().flat_map(|e| e.errors.iter().map(|f| f.field.clone())).collect(),
        }
    };
    assert!(fields_of("  hash_on: header\n  hash_on_header: x-a\n  hash_fallback: ip\n").is_empty());
    assert!(fields_of("  hash_on: ip\n  hash_fallback: header\n  hash_fallback_header: x-b\n").is_empty());
    assert_eq!(fields_of("  hash_fallback: ip\n"), ["hash_fallback"]);
    assert_eq!(fields_of("  hash_on: ip\n  hash_fallback: ip\n"), ["hash_fallback"]);
    assert_eq!(fields_of("  hash_on: ip\n  hash_fallback: header\n"), ["hash_fallback_header"]);
    assert_eq!(
        fields_of("  hash_on: header\n  hash_on_header: x-a\n  hash_fallback: header\n  hash_fallback_header: X-A\n"),
        ["hash_fallback_header"]
    );
    for unsupported in ["cookie", "path", "consumer", "query_arg", "uri_capture"] {
        assert_eq!(
            fields_of(&format!("  hash_on: ip\n  hash_fallback: {unsupported}\n")),
            ["hash_fallback"],
            "{unsupported}"
        );
        assert_eq!(fields_of(&format!("  hash_on: {unsupported}\n")), ["hash_on"], "{unsupported}");
    }
}

#[test]
fn route_regex_errors_name_the_pattern_and_the_cause() {
    let unclosed = patterns::compile_path_regex("/(unclosed").unwrap_err();
    assert!(unclosed.starts_with("invalid regex: '/(unclosed' (error: unclosed group"), "{unclosed}");
    let lookahead = patterns::compile_header_regex("a(?=b)").unwrap_err();
    assert!(lookahead.contains("'a(?=b)'") && lookahead.contains("look-around"), "{lookahead}");
    let huge = patterns::compile_path_regex(r"\w{1000}\w{1000}").unwrap_err();
    assert!(huge.contains("exceeds size limit of 1048576 bytes"), "{huge}");
}

#[test]
fn a_route_regex_is_small_and_built_without_a_full_dfa() {
    // A full DFA per route is what made 16,000 regex routes cost over 250 MiB: this regex is
    // ~2 KiB without one and ~6 KiB with it. It still matches from the start only.
    let re = patterns::compile_path_regex("/items/r5/[0-9]+$").unwrap();
    assert!(re.memory_usage() < 4 << 10, "{} bytes", re.memory_usage());
    assert_eq!(re.find("/items/r5/42").map(|m| m.end()), Some(12));
    assert!(re.find("/x/items/r5/42").is_none());
    assert!(patterns::compile_header_regex("^V[12]$").unwrap().is_match("v2"));
}

#[test]
fn retry_settings_are_checked() {
    let base = "_format_version: '3.0'\nservices:\n- name: s\n  host: h\n  protocol: grpc\n";
    let fields_of = |extra: &str| -> Vec<String> {
        match validate(&parse(&format!("{base}{extra}")).map_err(|e| e.to_string()).unwrap()) {
            Ok(()) => Vec::new(),
            Err(e) => e.flattened_errors.iter().flat_map(|e| e.errors.iter().map(|f| f.field.clone())).collect(),
        }
    };
    let c = parse(&format!("{base}  retry_on_unavailable: true\n  retry_buffer_size: 0\n")).unwrap();
    assert_eq!((c.services[0].retry_on_unavailable, c.services[0].retry_buffer_size), (Some(true), Some(0)));
    assert!(fields_of("  retry_buffer_size: 16777216\n").is_empty());
    assert_eq!(fields_of("  retry_buffer_size: 16777217\n"), ["retry_buffer_size"]);
    assert!(parse(&format!("{base}  retry_on_unavailable: 'yes'\n")).is_err(), "not a boolean");
    let http = base.replace("grpc", "http");
    let c = parse(&format!("{http}  retry_on_unavailable: false\n  retry_buffer_size: 10\n")).unwrap();
    let e = validate(&c).unwrap_err();
    let fields: Vec<&str> = e.flattened_errors[0].errors.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, ["retry_on_unavailable", "retry_buffer_size"], "no effect on an http service");
}
