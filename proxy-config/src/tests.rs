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
