//! Router tests: one test per precedence rule, matching rules, build errors, Kong's upstream path
//! table, and a comparison with a linear-scan oracle on generated routes and requests.

use http::{HeaderMap, HeaderName, HeaderValue};
use proxy_config::patterns::{compile_header_regex, compile_path_regex};
use proxy_config::{Config, PathHandling, Route};
use serde_json::{json, Value};

use super::*;

// ---------------------------------------------------------------------------------------------
// helpers

/// A validated config with one service holding `routes`, and its router.
fn setup(routes: Value) -> (Router, Config) {
    let config: Config = serde_json::from_value(json!({
        "_format_version": "3.0",
        "services": [{ "name": "svc", "host": "backend", "routes": routes }],
    }))
    .expect("config parses");
    proxy_config::validate(&config).expect("config is valid");
    let router = Router::build(&config).expect("router builds");
    (router, config)
}

struct Req {
    host: String,
    path: String,
    method: String,
    headers: HeaderMap,
    sni: Option<String>,
    grpc: bool,
}

fn req(host: &str, path: &str) -> Req {
    Req {
        host: host.to_string(),
        path: path.to_string(),
        method: "GET".to_string(),
        headers: HeaderMap::new(),
        sni: None,
        grpc: false,
    }
}

impl Req {
    fn method(mut self, m: &str) -> Self {
        self.method = m.to_string();
        self
    }
    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
        self
    }
    fn sni(mut self, sni: &str) -> Self {
        self.sni = Some(sni.to_string());
        self
    }
    fn grpc(mut self) -> Self {
        self.grpc = true;
        self
    }
    fn as_request(&self) -> RouteRequest<'_> {
        RouteRequest {
            host: &self.host,
            path: &self.path,
            method: &self.method,
            headers: &self.headers,
            sni: self.sni.as_deref(),
            grpc: self.grpc,
        }
    }
}

/// The name of the route `r` matches, if any.
fn route_for(router: &Router, config: &Config, r: &Req) -> Option<String> {
    let m = router.find(&r.as_request())?;
    let (route, _) = config.all_routes().nth(m.route).expect("route index in range");
    Some(route.display_name().to_string())
}

fn matched(router: &Router, r: &Req) -> Option<RouteMatch> {
    router.find(&r.as_request())
}

// ---------------------------------------------------------------------------------------------
// hosts

#[test]
fn exact_host_beats_wildcard_host() {
    let (router, config) = setup(json!([
        { "name": "a-wild", "hosts": ["*.example.com"] },
        { "name": "z-exact", "hosts": ["api.example.com"] },
    ]));
    assert_eq!(route_for(&router, &config, &req("api.example.com", "/")).as_deref(), Some("z-exact"));
    assert_eq!(route_for(&router, &config, &req("web.example.com", "/")).as_deref(), Some("a-wild"));
}

#[test]
fn mixed_plain_and_wildcard_hosts_lose_the_plain_host_bit() {
    // "z-mixed" lists the exact host too, but one wildcard costs it Kong's plain-hosts-only bit.
    let (router, config) = setup(json!([
        { "name": "a-mixed", "hosts": ["api.example.com", "*.example.org"] },
        { "name": "z-plain", "hosts": ["api.example.com", "www.example.com"] },
    ]));
    assert_eq!(route_for(&router, &config, &req("api.example.com", "/")).as_deref(), Some("z-plain"));
    assert_eq!(route_for(&router, &config, &req("x.example.org", "/")).as_deref(), Some("a-mixed"));
}

#[test]
fn leading_wildcard_matches_one_or_more_labels() {
    let (router, config) = setup(json!([{ "name": "wild", "hosts": ["*.example.com"] }]));
    for host in ["a.example.com", "a.b.example.com", "A.Example.COM:8000"] {
        assert_eq!(route_for(&router, &config, &req(host, "/")).as_deref(), Some("wild"), "{host}");
    }
    for host in ["example.com", "aexample.com", "example.com.evil", ""] {
        assert_eq!(route_for(&router, &config, &req(host, "/")), None, "{host}");
    }
}

#[test]
fn trailing_wildcard_matches_any_ending() {
    let (router, config) = setup(json!([{ "name": "wild", "hosts": ["example.*"] }]));
    for host in ["example.com", "example.co.uk", "EXAMPLE.org:443"] {
        assert_eq!(route_for(&router, &config, &req(host, "/")).as_deref(), Some("wild"), "{host}");
    }
    for host in ["example", "www.example.com", "notexample.com"] {
        assert_eq!(route_for(&router, &config, &req(host, "/")), None, "{host}");
    }
}

#[test]
fn multi_label_trailing_wildcard() {
    let (router, config) = setup(json!([{ "name": "wild", "hosts": ["api.example.*"] }]));
    assert_eq!(route_for(&router, &config, &req("api.example.net", "/")).as_deref(), Some("wild"));
    assert_eq!(route_for(&router, &config, &req("api.other.net", "/")), None);
}

#[test]
fn host_match_ignores_case_and_port() {
    let (router, config) = setup(json!([{ "name": "r", "hosts": ["API.Example.com"] }]));
    assert_eq!(route_for(&router, &config, &req("api.EXAMPLE.com:8443", "/")).as_deref(), Some("r"));
    assert_eq!(route_for(&router, &config, &req("api.example.com", "/")).as_deref(), Some("r"));
    assert_eq!(route_for(&router, &config, &req("api.example.co", "/")), None);
}

#[test]
fn port_in_route_host() {
    let (router, config) = setup(json!([
        { "name": "a-ported", "hosts": ["example.com:8080"] },
        { "name": "b-wild-ported", "hosts": ["*.example.com:9000"] },
    ]));
    assert_eq!(route_for(&router, &config, &req("example.com:8080", "/")).as_deref(), Some("a-ported"));
    assert_eq!(route_for(&router, &config, &req("example.com:9090", "/")), None);
    assert_eq!(route_for(&router, &config, &req("example.com", "/")), None);
    assert_eq!(route_for(&router, &config, &req("x.example.com:9000", "/")).as_deref(), Some("b-wild-ported"));
    assert_eq!(route_for(&router, &config, &req("x.example.com:8080", "/")), None);
}

#[test]
fn port_less_route_host_matches_any_port() {
    let (router, config) = setup(json!([{ "name": "r", "hosts": ["example.com"] }]));
    for host in ["example.com", "example.com:1", "example.com:65535"] {
        assert_eq!(route_for(&router, &config, &req(host, "/")).as_deref(), Some("r"), "{host}");
    }
}

#[test]
fn ipv6_request_host_is_split_from_its_port() {
    assert_eq!(host::split_host_port("[::1]:8443"), ("[::1]", Some(8443)));
    assert_eq!(host::split_host_port("[::1]"), ("[::1]", None));
    assert_eq!(host::split_host_port("::1"), ("::1", None));
    assert_eq!(host::split_host_port("a.com:80"), ("a.com", Some(80)));
    assert_eq!(host::split_host_port("a.com:x"), ("a.com", None));
}

#[test]
fn route_without_hosts_matches_any_host() {
    let (router, config) = setup(json!([{ "name": "any", "paths": ["/"] }]));
    for host in ["", "a.com", "b.org:8000", "[::1]:80"] {
        assert_eq!(route_for(&router, &config, &req(host, "/x")).as_deref(), Some("any"), "{host}");
    }
}

#[test]
fn very_long_host_is_still_matched() {
    let long = format!("{}.example.com", "a".repeat(300));
    let (router, config) = setup(json!([{ "name": "wild", "hosts": ["*.example.com"] }]));
    assert!(long.len() > host::STACK_HOST_LEN);
    assert_eq!(route_for(&router, &config, &req(&long.to_uppercase(), "/")).as_deref(), Some("wild"));
}

// ---------------------------------------------------------------------------------------------
// Kong's derived precedence

#[test]
fn more_fields_win() {
    let (router, config) = setup(json!([
        { "name": "a-host", "hosts": ["example.com"] },
        { "name": "b-host-path", "hosts": ["example.com"], "paths": ["/"] },
        { "name": "c-host-path-method", "hosts": ["example.com"], "paths": ["/"], "methods": ["POST"] },
    ]));
    assert_eq!(
        route_for(&router, &config, &req("example.com", "/x").method("POST")).as_deref(),
        Some("c-host-path-method")
    );
    assert_eq!(route_for(&router, &config, &req("example.com", "/x")).as_deref(), Some("b-host-path"));
}

#[test]
fn hostless_route_with_more_fields_beats_host_route() {
    // The best across buckets wins: the host-less bucket is consulted after the exact one.
    let (router, config) = setup(json!([
        { "name": "a-host", "hosts": ["example.com"] },
        { "name": "b-hostless", "paths": ["/api"], "methods": ["GET"] },
    ]));
    assert_eq!(route_for(&router, &config, &req("example.com", "/api")).as_deref(), Some("b-hostless"));
    assert_eq!(route_for(&router, &config, &req("example.com", "/web")).as_deref(), Some("a-host"));
}

#[test]
fn more_headers_wins() {
    let (router, config) = setup(json!([
        { "name": "a-one", "hosts": ["h"], "headers": { "x-a": ["1"] } },
        { "name": "b-two", "hosts": ["h"], "headers": { "x-a": ["1"], "x-b": ["1"] } },
    ]));
    let both = req("h", "/").header("x-a", "1").header("x-b", "1");
    assert_eq!(route_for(&router, &config, &both).as_deref(), Some("b-two"));
    assert_eq!(route_for(&router, &config, &req("h", "/").header("x-a", "1")).as_deref(), Some("a-one"));
}

#[test]
fn regex_beats_prefix_when_weights_tie() {
    let (router, config) = setup(json!([
        { "name": "a-prefix", "paths": ["/users/123/profile/long"] },
        { "name": "b-regex", "paths": ["~/users/\\d+"] },
    ]));
    let r = req("h", "/users/123/profile/long/x");
    assert_eq!(route_for(&router, &config, &r).as_deref(), Some("b-regex"));
    assert_eq!(route_for(&router, &config, &req("h", "/users/abc/profile/long")), None);
}

#[test]
fn regex_priority_orders_regexes() {
    let (router, config) = setup(json!([
        { "name": "a-low", "paths": ["~/v\\d"], "regex_priority": 1 },
        { "name": "b-high", "paths": ["~/v1"], "regex_priority": 5 },
        { "name": "c-negative", "paths": ["~/v"], "regex_priority": -3 },
    ]));
    assert_eq!(route_for(&router, &config, &req("h", "/v1/x")).as_deref(), Some("b-high"));
    assert_eq!(route_for(&router, &config, &req("h", "/v2/x")).as_deref(), Some("a-low"));
    assert_eq!(route_for(&router, &config, &req("h", "/vx")).as_deref(), Some("c-negative"));
}

#[test]
fn regex_priority_is_ignored_for_plain_paths() {
    // Kong counts regex_priority only for regex paths: the longer prefix wins despite it.
    let (router, config) = setup(json!([
        { "name": "a-short", "paths": ["/a"], "regex_priority": 100 },
        { "name": "b-long", "paths": ["/a/b"] },
    ]));
    assert_eq!(route_for(&router, &config, &req("h", "/a/b/c")).as_deref(), Some("b-long"));
}

#[test]
fn longer_prefix_wins() {
    let (router, config) = setup(json!([
        { "name": "a-api", "paths": ["/api"] },
        { "name": "b-api-v1", "paths": ["/api/v1"] },
        { "name": "c-root", "paths": ["/"] },
    ]));
    assert_eq!(route_for(&router, &config, &req("h", "/api/v1/users")).as_deref(), Some("b-api-v1"));
    assert_eq!(route_for(&router, &config, &req("h", "/api/v2")).as_deref(), Some("a-api"));
    assert_eq!(route_for(&router, &config, &req("h", "/other")).as_deref(), Some("c-root"));
}

#[test]
fn paths_are_split_into_groups_like_kong() {
    // Kong ranks "a-multi" once per path group: its "/a" group (length 2) loses to "/abc" (4),
    // its "/abcdef" group (7) beats it. A route ranked by its longest path would win both.
    let (router, config) = setup(json!([
        { "name": "a-multi", "paths": ["/a", "/abcdef", "~/regex"] },
        { "name": "b-mid", "paths": ["/abc"] },
    ]));
    assert_eq!(route_for(&router, &config, &req("h", "/abcd")).as_deref(), Some("b-mid"));
    assert_eq!(route_for(&router, &config, &req("h", "/abcdefg")).as_deref(), Some("a-multi"));
    assert_eq!(route_for(&router, &config, &req("h", "/ax")).as_deref(), Some("a-multi"));
    let m = matched(&router, &req("h", "/abcdefg")).expect("match");
    assert_eq!(m.matched_path_len, 7);
    let m = matched(&router, &req("h", "/regex/x")).expect("match");
    assert_eq!(m.matched_path_len, 6);
    assert_eq!(router.len(), 2);
}

#[test]
fn explicit_priority_outranks_kong_order() {
    let (router, config) = setup(json!([
        { "name": "a-rich", "hosts": ["h"], "paths": ["/api/v1"], "methods": ["GET"], "headers": { "x": ["1"] } },
        { "name": "b-explicit-low", "paths": ["/"], "priority": 0 },
        { "name": "c-explicit-high", "paths": ["/api"], "priority": 7 },
    ]));
    let r = req("h", "/api/v1").header("x", "1");
    assert_eq!(route_for(&router, &config, &r).as_deref(), Some("c-explicit-high"));
    assert_eq!(route_for(&router, &config, &req("h", "/web").header("x", "1")).as_deref(), Some("b-explicit-low"));
}

#[test]
fn equal_explicit_priority_falls_back_to_kong_order() {
    let (router, config) = setup(json!([
        { "name": "a-short", "paths": ["/a"], "priority": 3 },
        { "name": "b-long", "paths": ["/a/b"], "priority": 3 },
    ]));
    assert_eq!(route_for(&router, &config, &req("h", "/a/b")).as_deref(), Some("b-long"));
}

#[test]
fn grpc_request_prefers_grpc_route_on_identical_match() {
    // Names would pick "a-http"; the protocol family decides first (Kong picks by its priority alone, and can send a gRPC call to the http route).
    let (router, config) = setup(json!([
        { "name": "a-http", "hosts": ["h"], "paths": ["/svc.Echo/"] },
        { "name": "b-grpc", "hosts": ["h"], "paths": ["/svc.Echo/"], "protocols": ["grpc", "grpcs"] },
    ]));
    assert_eq!(route_for(&router, &config, &req("h", "/svc.Echo/Say").grpc()).as_deref(), Some("b-grpc"));
    assert_eq!(route_for(&router, &config, &req("h", "/svc.Echo/Say")).as_deref(), Some("a-http"));
}

#[test]
fn protocol_family_does_not_outrank_kong_order() {
    // A more specific http route still wins over a grpc route for a grpc request: the family is
    // only a tie-breaker (the proxy then answers 415/426 as Kong would).
    let (router, config) = setup(json!([
        { "name": "a-http", "hosts": ["h"], "paths": ["/svc.Echo/Say"] },
        { "name": "b-grpc", "hosts": ["h"], "paths": ["/svc.Echo/"], "protocols": ["grpc"] },
    ]));
    assert_eq!(route_for(&router, &config, &req("h", "/svc.Echo/Say").grpc()).as_deref(), Some("a-http"));
}

#[test]
fn grpc_route_is_found_across_buckets_on_tie() {
    // The fitting route sits in another bucket (trailing vs leading wildcard), equal otherwise.
    let (router, config) = setup(json!([
        { "name": "a-http", "hosts": ["*.h"], "paths": ["/p"] },
        { "name": "b-grpc", "hosts": ["x.*"], "paths": ["/p"], "protocols": ["grpc"] },
    ]));
    assert_eq!(route_for(&router, &config, &req("x.h", "/p").grpc()).as_deref(), Some("b-grpc"));
    assert_eq!(route_for(&router, &config, &req("x.h", "/p")).as_deref(), Some("a-http"));
}

#[test]
fn name_breaks_ties() {
    let (router, config) = setup(json!([
        { "name": "b-route", "hosts": ["h"], "paths": ["/p"] },
        { "name": "a-route", "hosts": ["h"], "paths": ["/p"] },
    ]));
    assert_eq!(route_for(&router, &config, &req("h", "/p")).as_deref(), Some("a-route"));
}

#[test]
fn config_position_breaks_ties_between_unnamed_routes() {
    let config: Config = serde_json::from_value(json!({
        "_format_version": "3.0",
        "services": [{ "name": "svc", "host": "backend", "routes": [
            { "paths": ["/p"] }, { "paths": ["/p"] },
        ]}],
    }))
    .expect("config parses");
    let router = Router::build(&config).expect("router builds");
    assert_eq!(matched(&router, &req("h", "/p")).map(|m| m.route), Some(0));
}

#[test]
fn large_bucket_path_filter_keeps_precedence() {
    // 40 prefixes under one host (more than the filter threshold), plus routes the filter cannot
    // hash (regex, no paths) and a host-less one; each must still win exactly where it should.
    let mut routes: Vec<Value> =
        (0..40).map(|i| json!({ "name": format!("p{i:02}"), "hosts": ["h"], "paths": [format!("/p{i}/")] })).collect();
    routes.push(json!({ "name": "regex", "hosts": ["h"], "paths": ["~/p1\\d/x"] }));
    routes.push(json!({ "name": "host-only", "hosts": ["h"] }));
    routes.push(json!({ "name": "multi", "hosts": ["h"], "paths": ["/p3/deeper/", "/q/"] }));
    routes.push(json!({ "name": "hostless-method", "paths": ["/p2/"], "methods": ["DELETE"] }));
    let (router, config) = setup(Value::Array(routes));
    assert_eq!(router.index.filtered_buckets(), 1);
    let find = |path: &str, method: &str| route_for(&router, &config, &req("h", path).method(method));
    assert_eq!(find("/p7/x", "GET").as_deref(), Some("p07"));
    assert_eq!(find("/p17/", "GET").as_deref(), Some("p17"));
    assert_eq!(find("/p15/x", "GET").as_deref(), Some("regex"));
    assert_eq!(find("/p3/deeper/y", "GET").as_deref(), Some("multi"));
    assert_eq!(find("/p3/shallow", "GET").as_deref(), Some("p03"));
    assert_eq!(find("/q/", "GET").as_deref(), Some("multi"));
    assert_eq!(find("/p2/", "DELETE").as_deref(), Some("p02"));
    assert_eq!(find("/p99/", "GET").as_deref(), Some("host-only"));
    assert_eq!(find("/", "GET").as_deref(), Some("host-only"));
    assert_eq!(route_for(&router, &config, &req("other", "/p2/").method("DELETE")).as_deref(), Some("hostless-method"));
}

// ---------------------------------------------------------------------------------------------
// paths, methods, headers, snis

#[test]
fn plain_path_is_a_prefix_match() {
    let (router, config) = setup(json!([{ "name": "foo", "paths": ["/foo"] }]));
    for path in ["/foo", "/foobar", "/foo/x"] {
        assert_eq!(route_for(&router, &config, &req("h", path)).as_deref(), Some("foo"), "{path}");
    }
    for path in ["/fo", "/Foo", "/x/foo", ""] {
        assert_eq!(route_for(&router, &config, &req("h", path)), None, "{path}");
    }
}

#[test]
fn regex_path_is_anchored_at_start_only() {
    let (router, config) = setup(json!([{ "name": "v", "paths": ["~/v\\d+"] }]));
    assert_eq!(route_for(&router, &config, &req("h", "/v12/rest")).as_deref(), Some("v"));
    assert_eq!(route_for(&router, &config, &req("h", "/api/v1")), None);
}

#[test]
fn matched_path_len_reports_what_the_path_consumed() {
    let (router, _) = setup(json!([
        { "name": "prefix", "hosts": ["p"], "paths": ["/api"] },
        { "name": "regex", "hosts": ["r"], "paths": ["~/users/\\d+"] },
        { "name": "exact", "hosts": ["e"], "paths": ["~/exact$"] },
        { "name": "none", "hosts": ["n"] },
    ]));
    let len = |host: &str, path: &str| matched(&router, &req(host, path)).map(|m| m.matched_path_len);
    assert_eq!(len("p", "/api/x"), Some(4));
    assert_eq!(len("r", "/users/42/profile"), Some(9));
    assert_eq!(len("e", "/exact"), Some(6));
    assert_eq!(len("e", "/exact/"), None);
    assert_eq!(len("n", "/anything"), Some(0));
}

#[test]
fn first_matching_regex_of_a_route_sets_the_length() {
    let (router, _) = setup(json!([{ "name": "r", "paths": ["~/a/b", "~/a"] }]));
    assert_eq!(matched(&router, &req("h", "/a/b/c")).map(|m| m.matched_path_len), Some(4));
    assert_eq!(matched(&router, &req("h", "/a/c")).map(|m| m.matched_path_len), Some(2));
}

#[test]
fn method_must_match_exactly() {
    let (router, config) = setup(json!([{ "name": "post", "methods": ["POST", "PUT"] }]));
    assert_eq!(route_for(&router, &config, &req("h", "/").method("POST")).as_deref(), Some("post"));
    assert_eq!(route_for(&router, &config, &req("h", "/").method("PUT")).as_deref(), Some("post"));
    assert_eq!(route_for(&router, &config, &req("h", "/").method("GET")), None);
    assert_eq!(route_for(&router, &config, &req("h", "/").method("post")), None);
}

#[test]
fn header_names_and_values_and_or() {
    let (router, config) = setup(json!([
        { "name": "r", "headers": { "X-Env": ["prod", "staging"], "x-team": ["a"] } },
    ]));
    let ok = req("h", "/").header("x-env", "STAGING").header("X-Team", "A");
    assert_eq!(route_for(&router, &config, &ok).as_deref(), Some("r"));
    assert_eq!(route_for(&router, &config, &req("h", "/").header("x-env", "prod")), None);
    assert_eq!(route_for(&router, &config, &req("h", "/").header("x-env", "dev").header("x-team", "a")), None);
    assert_eq!(route_for(&router, &config, &req("h", "/").header("x-env", "production").header("x-team", "a")), None);
}

#[test]
fn header_regex_values_are_case_insensitive_and_unanchored() {
    let (router, config) = setup(json!([{ "name": "r", "headers": { "x-version": ["~*^v[12]$", "~*beta"] } }]));
    for v in ["v1", "V2", "pre-BETA-3"] {
        assert_eq!(route_for(&router, &config, &req("h", "/").header("x-version", v)).as_deref(), Some("r"), "{v}");
    }
    for v in ["v3", "v12", ""] {
        assert_eq!(route_for(&router, &config, &req("h", "/").header("x-version", v)), None, "{v}");
    }
}

#[test]
fn header_with_several_values_matches_if_any_does() {
    let (router, config) = setup(json!([{ "name": "r", "headers": { "x-env": ["prod", "~*^canary-\\d$"] } }]));
    let repeated = req("h", "/").header("x-env", "dev").header("x-env", "prod");
    assert_eq!(route_for(&router, &config, &repeated).as_deref(), Some("r"));
    let joined = req("h", "/").header("x-env", "dev, Prod");
    assert_eq!(route_for(&router, &config, &joined).as_deref(), Some("r"));
    let joined_regex = req("h", "/").header("x-env", "dev,canary-1");
    assert_eq!(route_for(&router, &config, &joined_regex).as_deref(), Some("r"));
    let none = req("h", "/").header("x-env", "dev, test");
    assert_eq!(route_for(&router, &config, &none), None);
}

#[test]
fn sni_requires_tls_with_a_listed_name() {
    let (router, config) = setup(json!([
        { "name": "exact", "snis": ["secure.example.com"], "protocols": ["https"] },
        { "name": "wild", "snis": ["*.example.org"], "protocols": ["https"] },
    ]));
    assert_eq!(route_for(&router, &config, &req("h", "/")), None);
    assert_eq!(route_for(&router, &config, &req("h", "/").sni("SECURE.example.com")).as_deref(), Some("exact"));
    assert_eq!(route_for(&router, &config, &req("h", "/").sni("a.example.org")).as_deref(), Some("wild"));
    assert_eq!(route_for(&router, &config, &req("h", "/").sni("other.example.com")), None);
}

#[test]
fn sni_counts_in_match_weight() {
    let (router, config) = setup(json!([
        { "name": "a-host", "hosts": ["h"] },
        { "name": "b-host-sni", "hosts": ["h"], "snis": ["h"] },
    ]));
    assert_eq!(route_for(&router, &config, &req("h", "/").sni("h")).as_deref(), Some("b-host-sni"));
    assert_eq!(route_for(&router, &config, &req("h", "/")).as_deref(), Some("a-host"));
}

// ---------------------------------------------------------------------------------------------
// build

#[test]
fn routes_of_disabled_services_are_left_out() {
    let config: Config = serde_json::from_value(json!({
        "_format_version": "3.0",
        "services": [
            { "name": "off", "host": "a", "enabled": false, "routes": [{ "name": "nested-off", "paths": ["/"] }] },
            { "name": "on", "host": "b", "routes": [{ "name": "nested-on", "paths": ["/on"] }] },
        ],
        "routes": [
            { "name": "top-off", "service": "off", "paths": ["/top"] },
            { "name": "top-on", "service": "on", "paths": ["/top/on"] },
        ],
    }))
    .expect("config parses");
    proxy_config::validate(&config).expect("valid");
    let router = Router::build(&config).expect("builds");
    assert_eq!(router.len(), 2);
    assert!(!router.is_empty());
    assert_eq!(matched(&router, &req("h", "/on")).map(|m| m.route), Some(1));
    assert_eq!(matched(&router, &req("h", "/top/on")).map(|m| m.route), Some(3));
    assert_eq!(matched(&router, &req("h", "/top")), None);
    assert_eq!(matched(&router, &req("h", "/")), None);
}

#[test]
fn empty_config_builds_an_empty_router() {
    let router = Router::build(&Config::empty()).expect("builds");
    assert!(router.is_empty());
    assert_eq!(router.len(), 0);
    assert_eq!(matched(&router, &req("h", "/")), None);
}

#[test]
fn build_reports_uncompilable_regexes_per_route() {
    // Not validated on purpose: the router must still refuse, naming route and field.
    let config: Config = serde_json::from_value(json!({
        "_format_version": "3.0",
        "services": [{ "name": "svc", "host": "backend", "routes": [
            { "name": "good", "paths": ["/"] },
            { "name": "bad", "id": "id-1", "paths": ["/ok", "~/(?<=x)y"], "headers": { "x-a": ["~*(unclosed"] } },
        ]}],
    }))
    .expect("config parses");
    let errors = Router::build(&config).expect_err("must fail");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].entity_type, "route");
    assert_eq!(errors[0].entity_name, "bad");
    assert_eq!(errors[0].entity_id.as_deref(), Some("id-1"));
    let fields: Vec<&str> = errors[0].errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["headers.x-a", "paths.2"]);
}

#[test]
fn router_is_send_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Router>();
}

// ---------------------------------------------------------------------------------------------
// upstream path

/// Kong's path-handling table (spec/fixtures/router_path_handling_tests.lua in Kong/kong),
/// minus the percent-encoded rows (the proxy normalizes the path before routing):
/// (service path, route path, strip_path values, handlings, request path, expected).
type PathRow =
    (&'static str, Option<&'static str>, &'static [bool], &'static [PathHandling], &'static str, &'static str);

#[rustfmt::skip]
const KONG_PATH_TABLE: &[PathRow] = {
    use PathHandling::{V0, V1};
    const BOTH: &[bool] = &[false, true];
    const F: &[bool] = &[false];
    const T: &[bool] = &[true];
    &[
        ("/", Some("/"), BOTH, &[V0, V1], "/", "/"),
        ("/", Some("/"), BOTH, &[V0, V1], "/route", "/route"),
        ("/", Some("/"), BOTH, &[V0, V1], "/route/", "/route/"),
        ("/", Some("/"), BOTH, &[V0, V1], "/routereq", "/routereq"),
        ("/", Some("/"), BOTH, &[V0, V1], "/route/req", "/route/req"),
        ("/", Some("/route"), F, &[V0, V1], "/route", "/route"),
        ("/", Some("/route"), F, &[V0, V1], "/route/", "/route/"),
        ("/", Some("/route"), F, &[V0, V1], "/routereq", "/routereq"),
        ("/", Some("/route"), T, &[V0, V1], "/route", "/"),
        ("/", Some("/route"), T, &[V0, V1], "/route/", "/"),
        ("/", Some("/route"), T, &[V0, V1], "/routereq", "/req"),
        ("/", Some("/route/"), F, &[V0, V1], "/route/", "/route/"),
        ("/", Some("/route/"), F, &[V0, V1], "/route/req", "/route/req"),
        ("/", Some("/route/"), T, &[V0, V1], "/route/", "/"),
        ("/", Some("/route/"), T, &[V0, V1], "/route/req", "/req"),
        ("/srv", Some("/rou"), F, &[V0], "/roureq", "/srv/roureq"),
        ("/srv", Some("/rou"), F, &[V1], "/roureq", "/srvroureq"),
        ("/srv", Some("/rou"), T, &[V0], "/roureq", "/srv/req"),
        ("/srv", Some("/rou"), T, &[V1], "/roureq", "/srvreq"),
        ("/srv/", Some("/rou"), F, &[V0, V1], "/rou", "/srv/rou"),
        ("/srv/", Some("/rou"), T, &[V0], "/rou", "/srv"),
        ("/srv/", Some("/rou"), T, &[V1], "/rou", "/srv/"),
        ("/service", Some("/"), BOTH, &[V0, V1], "/", "/service"),
        ("/service", Some("/"), BOTH, &[V0], "/route", "/service/route"),
        ("/service", Some("/"), BOTH, &[V1], "/route", "/serviceroute"),
        ("/service", Some("/"), BOTH, &[V0], "/route/", "/service/route/"),
        ("/service", Some("/"), BOTH, &[V1], "/route/", "/serviceroute/"),
        ("/service", Some("/"), BOTH, &[V0], "/routereq", "/service/routereq"),
        ("/service", Some("/"), BOTH, &[V1], "/routereq", "/serviceroutereq"),
        ("/service", Some("/"), BOTH, &[V0], "/route/req", "/service/route/req"),
        ("/service", Some("/"), BOTH, &[V1], "/route/req", "/serviceroute/req"),
        ("/service", Some("/route"), F, &[V0], "/route", "/service/route"),
        ("/service", Some("/route"), F, &[V1], "/route", "/serviceroute"),
        ("/service", Some("/route"), F, &[V0], "/route/", "/service/route/"),
        ("/service", Some("/route"), F, &[V1], "/route/", "/serviceroute/"),
        ("/service", Some("/route"), F, &[V0], "/routereq", "/service/routereq"),
        ("/service", Some("/route"), F, &[V1], "/routereq", "/serviceroutereq"),
        ("/service", Some("/route"), T, &[V0, V1], "/route", "/service"),
        ("/service", Some("/route"), T, &[V0, V1], "/route/", "/service/"),
        ("/service", Some("/route"), T, &[V0], "/routereq", "/service/req"),
        ("/service", Some("/route"), T, &[V1], "/routereq", "/servicereq"),
        ("/service", Some("/route/"), F, &[V0], "/route/", "/service/route/"),
        ("/service", Some("/route/"), F, &[V1], "/route/", "/serviceroute/"),
        ("/service", Some("/route/"), F, &[V0], "/route/req", "/service/route/req"),
        ("/service", Some("/route/"), F, &[V1], "/route/req", "/serviceroute/req"),
        ("/service", Some("/route/"), T, &[V0], "/route/", "/service/"),
        ("/service", Some("/route/"), T, &[V1], "/route/", "/service"),
        ("/service", Some("/route/"), T, &[V0], "/route/req", "/service/req"),
        ("/service", Some("/route/"), T, &[V1], "/route/req", "/servicereq"),
        ("/service/", Some("/"), BOTH, &[V0, V1], "/route/", "/service/route/"),
        ("/service/", Some("/"), BOTH, &[V0, V1], "/", "/service/"),
        ("/service/", Some("/"), BOTH, &[V0, V1], "/route", "/service/route"),
        ("/service/", Some("/"), BOTH, &[V0, V1], "/routereq", "/service/routereq"),
        ("/service/", Some("/"), BOTH, &[V0, V1], "/route/req", "/service/route/req"),
        ("/service/", Some("/route"), F, &[V0, V1], "/route", "/service/route"),
        ("/service/", Some("/route"), F, &[V0, V1], "/route/", "/service/route/"),
        ("/service/", Some("/route"), F, &[V0, V1], "/routereq", "/service/routereq"),
        ("/service/", Some("/route"), T, &[V0], "/route", "/service"),
        ("/service/", Some("/route"), T, &[V1], "/route", "/service/"),
        ("/service/", Some("/route"), T, &[V0, V1], "/route/", "/service/"),
        ("/service/", Some("/route"), T, &[V0, V1], "/routereq", "/service/req"),
        ("/service/", Some("/route/"), F, &[V0, V1], "/route/", "/service/route/"),
        ("/service/", Some("/route/"), F, &[V0, V1], "/route/req", "/service/route/req"),
        ("/service/", Some("/route/"), T, &[V0, V1], "/route/", "/service/"),
        ("/service/", Some("/route/"), T, &[V0, V1], "/route/req", "/service/req"),
        ("/", None, BOTH, &[V0, V1], "/", "/"),
        ("/", None, BOTH, &[V0, V1], "/route", "/route"),
        ("/", None, BOTH, &[V0, V1], "/route/", "/route/"),
        ("/service", None, BOTH, &[V0, V1], "/", "/service"),
        ("/service", None, BOTH, &[V0], "/route", "/service/route"),
        ("/service", None, BOTH, &[V1], "/route", "/serviceroute"),
        ("/service", None, BOTH, &[V0], "/route/", "/service/route/"),
        ("/service", None, BOTH, &[V1], "/route/", "/serviceroute/"),
        ("/service/", None, BOTH, &[V0, V1], "/", "/service/"),
        ("/service/", None, BOTH, &[V0, V1], "/route", "/service/route"),
        ("/service/", None, BOTH, &[V0, V1], "/route/", "/service/route/"),
        ("/service", Some("/route"), T, &[V0], "/route./req", "/service/req"),
        ("/service", Some("/route"), T, &[V1], "/route./req", "/servicereq"),
        ("/service/", Some("/route"), T, &[V0, V1], "/route./req", "/service/req"),
        ("/service", Some("/route"), T, &[V0], "/route../req", "/service/req"),
        ("/service", Some("/route"), T, &[V1], "/route../req", "/servicereq"),
        ("/service/", Some("/route"), T, &[V0, V1], "/route../req", "/service/req"),
        ("/service", Some("/route"), F, &[V0], "/route./req", "/service/route./req"),
        ("/service", Some("/route"), F, &[V1], "/route./req", "/serviceroute./req"),
        ("/service/", Some("/route"), F, &[V0, V1], "/route./req", "/service/route./req"),
        ("/service", Some("/route"), F, &[V0], "/route../req", "/service/route../req"),
        ("/service", Some("/route"), F, &[V1], "/route../req", "/serviceroute../req"),
        ("/service/", Some("/route"), F, &[V0, V1], "/route../req", "/service/route../req"),
    ]
};

#[test]
fn upstream_path_follows_kongs_table() {
    let mut checked = 0;
    for &(service, route_path, strips, handlings, request, expected) in KONG_PATH_TABLE {
        // Route the request for real, so the matched length is the router's.
        let routes = match route_path {
            Some(p) => json!([{ "name": "r", "paths": [p] }]),
            None => json!([{ "name": "r", "hosts": ["h"] }]),
        };
        let (router, _) = setup(routes);
        let m = matched(&router, &req("h", request)).expect("request matches its route");
        for &strip in strips {
            for &handling in handlings {
                let got = upstream_path(Some(service), request, m.matched_path_len, strip, handling);
                assert_eq!(
                    got, expected,
                    "service {service:?} route {route_path:?} strip {strip} {handling:?} request {request:?}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 150, "only {checked} cases");
}

#[test]
fn upstream_path_without_service_path_uses_root() {
    for handling in [PathHandling::V0, PathHandling::V1] {
        assert_eq!(upstream_path(None, "/svc.Echo/Say", 0, false, handling), "/svc.Echo/Say");
        assert_eq!(upstream_path(None, "/api/users", 4, true, handling), "/users");
        assert_eq!(upstream_path(None, "/api", 4, true, handling), "/");
    }
}

#[test]
fn upstream_path_strips_a_regex_match() {
    let (router, _) = setup(json!([{ "name": "r", "paths": ["~/users/\\d+"] }]));
    let m = matched(&router, &req("h", "/users/42/profile")).expect("match");
    assert_eq!(upstream_path(Some("/"), "/users/42/profile", m.matched_path_len, true, PathHandling::V0), "/profile");
    assert_eq!(
        upstream_path(Some("/u"), "/users/42/profile", m.matched_path_len, true, PathHandling::V0),
        "/u/profile"
    );
    assert_eq!(upstream_path(Some("/u"), "/users/42", m.matched_path_len, true, PathHandling::V0), "/u");
    assert_eq!(
        upstream_path(Some("/u"), "/users/42/profile", m.matched_path_len, false, PathHandling::V0),
        "/u/users/42/profile"
    );
}

// ---------------------------------------------------------------------------------------------
// oracle: a linear scan over every internal route, sorted by the same precedence

/// xorshift64*: deterministic, no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const HOSTS: &[&str] =
    &["a.com", "b.com", "*.a.com", "a.*", "x.a.com", "a.com:8080", "*.x.a.com", "b.*", "x.a.*", "*.com:9090"];
const PATHS: &[&str] = &["/", "/api", "/api/v1", "/apx", "/b", "~/api/v\\d", "~/b+", "~/api", "/api/", "~/(?:a|b)"];
const HEADER_VALUES: &[&str] = &["1", "2", "~*^3$", "on", "~*o"];

fn random_route(rng: &mut Rng, i: usize) -> Value {
    let grpc = rng.chance(20);
    let mut route = serde_json::Map::new();
    route.insert("name".into(), json!(format!("{}-{i}", rng.pick(&["a", "b", "c"]))));
    if grpc {
        route.insert("protocols".into(), json!(["grpc", "grpcs"]));
    }
    let pick_some = |rng: &mut Rng, items: &[&str], max: usize| -> Vec<String> {
        let n = rng.below(max + 1);
        (0..n).map(|_| rng.pick(items).to_string()).collect()
    };
    let hosts = pick_some(rng, HOSTS, 2);
    let paths = pick_some(rng, PATHS, 3);
    let methods = if grpc || !rng.chance(25) { Vec::new() } else { vec![rng.pick(&["GET", "POST"]).to_string()] };
    let mut headers = serde_json::Map::new();
    for name in ["x-a", "x-b"] {
        if rng.chance(20) {
            headers.insert(
                name.into(),
                json!(pick_some(rng, HEADER_VALUES, 2).into_iter().chain(["1".into()]).collect::<Vec<_>>()),
            );
        }
    }
    let snis = if rng.chance(10) { vec![rng.pick(&["a.com", "*.a.com"]).to_string()] } else { Vec::new() };
    if hosts.is_empty() && paths.is_empty() && methods.is_empty() && headers.is_empty() && snis.is_empty() {
        route.insert("paths".into(), json!(["/"]));
    }
    for (key, value) in [("hosts", hosts), ("paths", paths), ("methods", methods), ("snis", snis)] {
        if !value.is_empty() {
            route.insert(key.into(), json!(value));
        }
    }
    if !headers.is_empty() {
        route.insert("headers".into(), Value::Object(headers));
    }
    if rng.chance(30) {
        route.insert("regex_priority".into(), json!(rng.below(3) as i64 - 1));
    }
    if rng.chance(8) {
        route.insert("priority".into(), json!(rng.below(3)));
    }
    Value::Object(route)
}

fn random_request(rng: &mut Rng) -> Req {
    let host = rng.pick(&["a.com", "A.com:8080", "x.a.com", "y.x.a.com", "a.net", "b.org", "", "a.com:9090", "x.a.b"]);
    let path = rng.pick(&["/", "/api", "/api/v1/x", "/api/v2", "/apxy", "/bbb", "/b", "/c", "/api/"]);
    let mut r = req(host, path).method(rng.pick(&["GET", "POST"]));
    for name in ["x-a", "x-b"] {
        if rng.chance(40) {
            let value = rng.pick(&["1", "2", "3", "on", "O", "1, 3", "zz"]);
            r = r.header(name, value);
        }
    }
    if rng.chance(30) {
        let sni = rng.pick(&["a.com", "x.a.com", "b.com"]);
        r = r.sni(sni);
    }
    if rng.chance(30) {
        r = r.grpc();
    }
    r
}

/// The oracle's own notion of a route host matching.
fn oracle_host(pattern: &str, host: &str) -> bool {
    let (req_name, req_port) = match host.rsplit_once(':') {
        Some((n, p)) => (n.to_ascii_lowercase(), p.parse::<u16>().ok()),
        None => (host.to_ascii_lowercase(), None),
    };
    let (name, port) = match pattern.rsplit_once(':') {
        Some((n, p)) => (n.to_ascii_lowercase(), Some(p.parse::<u16>().expect("port"))),
        None => (pattern.to_ascii_lowercase(), None),
    };
    if port.is_some() && port != req_port {
        return false;
    }
    if let Some(suffix) = name.strip_prefix('*') {
        req_name.ends_with(suffix)
    } else if let Some(prefix) = name.strip_suffix('*') {
        req_name.starts_with(prefix)
    } else {
        req_name == name
    }
}

fn oracle_header(values: &[String], actual: &str) -> bool {
    let one = |v: &str| {
        let v = v.trim();
        values.iter().any(|want| match want.strip_prefix("~*") {
            Some(p) => compile_header_regex(p).expect("regex").is_match(v),
            None => want.eq_ignore_ascii_case(v),
        })
    };
    one(actual) || actual.split(',').any(one)
}

type OracleKey = (Option<u64>, usize, bool, usize, bool, i64, usize);

/// Kong's order, computed independently of `priority.rs`.
fn oracle_groups(route: &Route) -> Vec<(OracleKey, Vec<String>)> {
    let mut groups: Vec<Vec<String>> = Vec::new();
    for p in &route.paths {
        let slot = groups.iter_mut().find(|g| {
            let first = &g[0];
            (first.starts_with('~') && p.starts_with('~'))
                || (!first.starts_with('~') && !p.starts_with('~') && first.len() == p.len())
        });
        match slot {
            Some(g) => g.push(p.clone()),
            None => groups.push(vec![p.clone()]),
        }
    }
    if groups.is_empty() {
        groups.push(Vec::new());
    }
    let weight = [
        !route.methods.is_empty(),
        !route.hosts.is_empty(),
        !route.headers.is_empty(),
        !route.snis.is_empty(),
        !route.paths.is_empty(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    let plain_hosts = !route.hosts.is_empty() && !route.hosts.iter().any(|h| h.contains('*'));
    groups
        .into_iter()
        .map(|g| {
            let regex = g.first().is_some_and(|p| p.starts_with('~'));
            let len = if regex { 0 } else { g.first().map_or(0, String::len) };
            let key = (
                route.priority,
                weight,
                plain_hosts,
                route.headers.len(),
                regex,
                if regex { route.regex_priority } else { 0 },
                len,
            );
            (key, g)
        })
        .collect()
}

fn oracle_find(config: &Config, r: &Req) -> Option<(usize, usize)> {
    let mut candidates = Vec::new();
    for (index, (route, _)) in config.all_routes().enumerate() {
        for (key, paths) in oracle_groups(route) {
            let fits = if r.grpc { route.is_grpc() } else { !route.is_grpc() };
            candidates.push((key, fits, route.display_name().to_string(), index, route, paths));
        }
    }
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)).then(a.3.cmp(&b.3)));
    candidates.into_iter().find_map(|(_, _, _, index, route, paths)| {
        if !route.hosts.is_empty() && !route.hosts.iter().any(|h| oracle_host(h, &r.host)) {
            return None;
        }
        if !route.methods.is_empty() && !route.methods.contains(&r.method) {
            return None;
        }
        if !route.snis.is_empty() {
            let sni = r.sni.as_deref()?;
            if !route.snis.iter().any(|s| oracle_host(s, sni)) {
                return None;
            }
        }
        for (name, values) in &route.headers {
            let any =
                r.headers.get_all(name.as_str()).iter().any(|v| oracle_header(values, v.to_str().expect("ascii")));
            if !any {
                return None;
            }
        }
        if paths.is_empty() {
            return Some((index, 0));
        }
        paths.iter().find_map(|p| match p.strip_prefix('~') {
            Some(re) => compile_path_regex(re).expect("regex").find(&r.path).map(|m| (index, m.end())),
            None => r.path.starts_with(p.as_str()).then_some((index, p.len())),
        })
    })
}

#[test]
fn index_agrees_with_linear_scan_oracle() {
    let mut matched_some = 0;
    let mut filtered = 0;
    for (seed, route_count, request_count) in [(1u64, 40, 400), (2, 60, 400), (3, 300, 600), (4, 15, 400)] {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
        let routes: Vec<Value> = (0..route_count).map(|i| random_route(&mut rng, i)).collect();
        let (router, config) = setup(Value::Array(routes));
        filtered += router.index.filtered_buckets();
        for _ in 0..request_count {
            let r = random_request(&mut rng);
            let got = router.find(&r.as_request()).map(|m| (m.route, m.matched_path_len));
            let want = oracle_find(&config, &r);
            assert_eq!(
                got, want,
                "seed {seed}: host {:?} path {:?} method {} headers {:?} sni {:?} grpc {}",
                r.host, r.path, r.method, r.headers, r.sni, r.grpc
            );
            matched_some += usize::from(got.is_some());
        }
    }
    // The generator must exercise matches, not only misses.
    assert!(matched_some > 500, "only {matched_some} matches");
    // Large buckets (path filters) and small ones (plain lists) must both be exercised.
    assert!(filtered > 3, "only {filtered} filtered buckets");
}
