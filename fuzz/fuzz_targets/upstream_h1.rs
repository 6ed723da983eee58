//! Upstream HTTP/1.1 responses: whatever an upstream sends (the first byte picks GET or HEAD,
//! the rest is the response as it arrives, its end the connection's end) is parsed and its body
//! decoded by its framing. Nothing may panic, and the body can never be longer than what came.
#![no_main]

use http::Method;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, wire)) = data.split_first() else { return };
    let method = if first & 1 == 0 { Method::GET } else { Method::HEAD };
    if let Ok((status, headers, body, _trailers)) = proxy::upstream::h1::decode_response(wire, method.clone()) {
        assert!(body.len() <= wire.len());
        assert!(!status.is_informational(), "1xx responses are skipped, never returned");
        if method == Method::HEAD {
            assert!(body.is_empty(), "a HEAD response has no body");
        }
        let _ = headers.len();
    }
});
