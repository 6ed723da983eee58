//! Headers that describe one hop (RFC 9110 §7.6.1): never forwarded, in either direction. Used
//! on requests going upstream (`phases`) and on responses going downstream (`downstream::h2`).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Whether a header is one [`strip_hop_by_hop`] would act on.
fn is_hop_by_hop(name: &HeaderName, value: &HeaderValue) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::PROXY_AUTHENTICATE
        || name == header::TRAILER
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
        || (name == header::TE && !value.as_bytes().eq_ignore_ascii_case(b"trailers"))
}

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1), plus those named by `Connection`.
pub(crate) fn strip_hop_by_hop(h: &mut HeaderMap) {
    // One pass over the few headers a request has is cheaper than nine hashed removals, and most
    // requests carry none of these (HTTP/2 forbids most of them outright).
    if !h.iter().any(|(n, v)| is_hop_by_hop(n, v)) {
        return;
    }
    if let Some(conn) = h.get(header::CONNECTION).and_then(|v| v.to_str().ok()).map(str::to_owned) {
        for name in conn.split(',') {
            if let Ok(n) = HeaderName::from_bytes(name.trim().as_bytes()) {
                if n != header::TE {
                    h.remove(n);
                }
            }
        }
    }
    for n in
        [header::CONNECTION, header::TRANSFER_ENCODING, header::UPGRADE, header::PROXY_AUTHENTICATE, header::TRAILER]
    {
        h.remove(n);
    }
    h.remove(KEEP_ALIVE);
    h.remove(PROXY_CONNECTION);
    // `te: trailers` is what gRPC needs; any other TE value is hop-by-hop.
    if let Some(te) = h.get(header::TE) {
        if !te.as_bytes().eq_ignore_ascii_case(b"trailers") {
            h.remove(header::TE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed_but_te_trailers_stays() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h["te"], "trailers");
        let mut h = HeaderMap::new();
        h.insert("te", "gzip".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty());
    }
}
