//! The router: a small config whose route fields (paths incl. regexes, hosts incl. wildcards,
//! methods, headers, SNIs) come from the input is validated and built, then requests whose host,
//! path, method, SNI and header come from the input are matched. Nothing may panic, and a match
//! must point at a real route and consume at most the whole path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy::router::{RouteRequest, Router};
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut f = text.split('\0');
    let mut next = || f.next().unwrap_or("");
    let mut routes = Vec::new();
    for i in 0..3 {
        let (path, host, method, header, value, sni) = (next(), next(), next(), next(), next(), next());
        let mut r = json!({ "name": format!("r{i}"), "protocols": ["http", "https", "grpc", "grpcs"] });
        if !path.is_empty() {
            r["paths"] = json!([path]);
        }
        if !host.is_empty() {
            r["hosts"] = json!([host]);
        }
        if !method.is_empty() {
            r["methods"] = json!([method]);
        }
        if !header.is_empty() {
            r["headers"] = json!({ header: [value] });
        }
        if !sni.is_empty() {
            r["snis"] = json!([sni]);
        }
        routes.push(r);
    }
    let config = json!({
        "_format_version": "3.0",
        "services": [{ "name": "s", "host": "127.0.0.1", "port": 80, "routes": routes }],
    });
    let Ok(config) = serde_json::from_value::<proxy_config::Config>(config) else { return };
    if proxy_config::validate(&config).is_err() {
        return;
    }
    let Ok(router) = Router::build(&config) else { return };
    let count = config.all_routes().count();
    for _ in 0..4 {
        let (host, path, method, sni, header) = (next(), next(), next(), next(), next());
        let mut headers = http::HeaderMap::new();
        if let (Ok(n), Ok(v)) = (http::HeaderName::from_bytes(header.as_bytes()), http::HeaderValue::from_str(path)) {
            headers.insert(n, v);
        }
        let req = RouteRequest {
            host,
            path,
            method,
            headers: &headers,
            sni: (!sni.is_empty()).then_some(sni),
            grpc: method.len() % 2 == 0,
        };
        if let Some(m) = router.find(&req) {
            assert!(m.route < count, "route {} of {count}", m.route);
            assert!(m.matched_path_len <= path.len(), "consumed {} of {path:?}", m.matched_path_len);
        }
    }
});
