//! Downstream HTTP/1.x requests: whatever a client sends is parsed as a request head and its body
//! decoded by its framing. Nothing may panic; a parsed head keeps the limits it was parsed under,
//! and a body can never be longer than what came.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A small head limit, so that the 431 path is reached too.
    if let Ok(Some((head, body, used))) = proxy::downstream::h1::decode_request(data, 1024) {
        assert!(head.parts.headers.len() <= 100);
        if head.body.is_none() {
            assert_eq!(body.as_deref(), Some(&[][..]), "no framing, no body");
        }
        if let Some(body) = body {
            assert!(body.len() <= data.len());
        }
        assert!(used <= data.len());
        if head.parts.headers.contains_key(http::header::TRANSFER_ENCODING) {
            assert!(!head.parts.headers.contains_key(http::header::CONTENT_LENGTH), "CL dropped under TE");
        }
    }
});
