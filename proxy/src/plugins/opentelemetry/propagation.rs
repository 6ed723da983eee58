//! Trace-context headers in the formats Kong's `propagation` offers: read the first format of
//! `extract` found on the request, write every format of `inject` on the upstream request (with
//! `preserve` meaning the format the context came in, else `default_format`).

use http::header::{HeaderMap, HeaderName, HeaderValue};
use proxy_config::plugins::opentelemetry::{Format, Inject, Propagation};

use super::ids::{from_hex, hex, hex_into};

/// A trace context as a header carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Context {
    pub trace_id: [u8; 16],
    /// The span that sent the request (the parent of the proxy's server span).
    pub span_id: [u8; 8],
    /// The sender's sampling decision, when the header carries one.
    pub sampled: Option<bool>,
}

/// What is written on the upstream request: the trace, the proxy's span that is the upstream's
/// parent, the decision, and the proxy's own parent (b3's `parentspanid`, jaeger's parent id).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outgoing {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_id: [u8; 8],
    pub sampled: bool,
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const B3: HeaderName = HeaderName::from_static("b3");
const B3_TRACE: HeaderName = HeaderName::from_static("x-b3-traceid");
const B3_SPAN: HeaderName = HeaderName::from_static("x-b3-spanid");
const B3_PARENT: HeaderName = HeaderName::from_static("x-b3-parentspanid");
const B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
const B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");
const JAEGER: HeaderName = HeaderName::from_static("uber-trace-id");
const OT_TRACE: HeaderName = HeaderName::from_static("ot-tracer-traceid");
const OT_SPAN: HeaderName = HeaderName::from_static("ot-tracer-spanid");
const OT_SAMPLED: HeaderName = HeaderName::from_static("ot-tracer-sampled");
const AWS: HeaderName = HeaderName::from_static("x-amzn-trace-id");
const GCP: HeaderName = HeaderName::from_static("x-cloud-trace-context");

/// The first of `formats` that the headers carry, with the context it carries.
pub(crate) fn extract(formats: &[Format], h: &HeaderMap) -> Option<(Format, Context)> {
    formats.iter().find_map(|f| extract_one(*f, h).map(|c| (*f, c)))
}

fn get<'h>(h: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn flag(s: &str) -> Option<bool> {
    match s.trim() {
        "1" | "true" | "d" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

fn extract_one(f: Format, h: &HeaderMap) -> Option<Context> {
    match f {
        Format::W3c => {
            let v = get(h, &TRACEPARENT)?;
            let mut it = v.trim().split('-');
            let (version, trace, span, flags) = (it.next()?, it.next()?, it.next()?, it.next()?);
            if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
                return None;
            }
            let flags = u8::from_str_radix(flags, 16).ok()?;
            Some(Context { trace_id: from_hex(trace)?, span_id: from_hex(span)?, sampled: Some(flags & 1 == 1) })
        }
        Format::B3 | Format::B3Single => match get(h, &B3) {
            Some(single) => {
                let mut it = single.trim().split('-');
                let (trace, span) = (it.next()?, it.next()?);
                Some(Context {
                    trace_id: from_hex(trace)?,
                    span_id: from_hex(span)?,
                    sampled: it.next().and_then(flag),
                })
            }
            None => {
                let sampled = match get(h, &B3_FLAGS).map(str::trim) {
                    Some("1") => Some(true),
                    _ => get(h, &B3_SAMPLED).and_then(flag),
                };
                Some(Context {
                    trace_id: from_hex(get(h, &B3_TRACE)?)?,
                    span_id: from_hex(get(h, &B3_SPAN)?)?,
                    sampled,
                })
            }
        },
        Format::Jaeger => {
            let v = get(h, &JAEGER)?.replace("%3A", ":").replace("%3a", ":");
            let mut it = v.trim().split(':');
            let (trace, span, _parent, flags) = (it.next()?, it.next()?, it.next()?, it.next()?);
            let flags = u8::from_str_radix(flags, 16).ok()?;
            Some(Context { trace_id: from_hex(trace)?, span_id: from_hex(span)?, sampled: Some(flags & 1 == 1) })
        }
        Format::Ot => Some(Context {
            trace_id: from_hex(get(h, &OT_TRACE)?)?,
            span_id: from_hex(get(h, &OT_SPAN)?)?,
            sampled: get(h, &OT_SAMPLED).and_then(flag),
        }),
        Format::Aws => {
            let (mut trace, mut span, mut sampled) = (None, None, None);
            for part in get(h, &AWS)?.split(';') {
                match part.trim().split_once('=') {
                    Some(("Root", root)) => {
                        let mut it = root.split('-');
                        let (version, time, rest) = (it.next()?, it.next()?, it.next()?);
                        if version != "1" || time.len() != 8 || rest.len() != 24 {
                            return None;
                        }
                        trace = from_hex::<16>(&format!("{time}{rest}"));
                    }
                    Some(("Parent", p)) if p.len() == 16 => span = from_hex::<8>(p),
                    Some(("Sampled", s)) => sampled = flag(s),
                    _ => {}
                }
            }
            Some(Context { trace_id: trace?, span_id: span?, sampled })
        }
        Format::Gcp => {
            let v = get(h, &GCP)?.trim();
            let (trace, rest) = v.split_once('/')?;
            let (span, options) = match rest.split_once(";o=") {
                Some((s, o)) => (s, Some(o)),
                None => (rest, None),
            };
            if trace.len() != 32 {
                return None;
            }
            let span: u64 = span.parse().ok().filter(|s| *s != 0)?;
            Some(Context { trace_id: from_hex(trace)?, span_id: span.to_be_bytes(), sampled: options.and_then(flag) })
        }
    }
}

/// The formats `inject` resolves to for a request whose context came in `extracted`.
pub(crate) fn inject_formats(p: &Propagation, extracted: Option<Format>) -> Vec<Format> {
    let mut out = Vec::with_capacity(p.inject.len());
    for i in &p.inject {
        let f = match i {
            Inject::Format(f) => *f,
            Inject::Preserve(_) => extracted.unwrap_or(p.default_format),
        };
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

/// Writes the context in each of `formats` on `h`, replacing what the client sent in them.
pub(crate) fn inject(formats: &[Format], out: &Outgoing, h: &mut HeaderMap) {
    // W3C alone (the default): one header written straight into a buffer, no strings.
    if let [Format::W3c] = formats {
        h.insert(TRACEPARENT, traceparent(out));
        return;
    }
    let trace = hex(&out.trace_id);
    let span = hex(&out.span_id);
    let parent = hex(&out.parent_id);
    let s = if out.sampled { "1" } else { "0" };
    for f in formats {
        match f {
            Format::W3c => {
                h.insert(TRACEPARENT, traceparent(out));
            }
            Format::B3 => {
                set(h, B3_TRACE, trace.clone());
                set(h, B3_SPAN, span.clone());
                set(h, B3_PARENT, parent.clone());
                h.remove(&B3_FLAGS);
                set(h, B3_SAMPLED, s.to_string());
            }
            Format::B3Single => set(h, B3, format!("{trace}-{span}-{s}-{parent}")),
            Format::Jaeger => set(h, JAEGER, format!("{trace}:{span}:{parent}:0{s}")),
            Format::Ot => {
                set(h, OT_TRACE, trace.clone());
                set(h, OT_SPAN, span.clone());
                set(h, OT_SAMPLED, s.to_string());
            }
            Format::Aws => set(h, AWS, format!("Root=1-{}-{};Parent={span};Sampled={s}", &trace[..8], &trace[8..])),
            Format::Gcp => set(h, GCP, format!("{trace}/{};o={s}", u64::from_be_bytes(out.span_id))),
        }
    }
}

/// `00-<trace>-<span>-<flags>`.
fn traceparent(out: &Outgoing) -> HeaderValue {
    let mut b = [b'-'; 55];
    b[..2].copy_from_slice(b"00");
    hex_into(&mut b[3..35], &out.trace_id);
    hex_into(&mut b[36..52], &out.span_id);
    b[53] = b'0';
    b[54] = if out.sampled { b'1' } else { b'0' };
    // Hex digits and dashes: always a valid header value.
    HeaderValue::from_bytes(&b)
        .unwrap_or(HeaderValue::from_static("00-00000000000000000000000000000000-0000000000000000-00"))
}

fn set(h: &mut HeaderMap, name: HeaderName, value: String) {
    // Hex digits, separators and decimal digits only: always a valid header value.
    if let Ok(v) = HeaderValue::try_from(value) {
        h.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Format; 7] =
        [Format::W3c, Format::B3, Format::B3Single, Format::Jaeger, Format::Ot, Format::Aws, Format::Gcp];

    #[test]
    fn every_format_round_trips() {
        for f in ALL {
            for sampled in [true, false] {
                let out = Outgoing {
                    trace_id: *b"\x4b\xf9\x2f\x35\x77\xb3\x4d\xa6\xa3\xce\x92\x9d\x0e\x0e\x47\x36",
                    span_id: *b"\x00\xf0\x67\xaa\x0b\xa9\x02\xb7",
                    parent_id: *b"\x01\x02\x03\x04\x05\x06\x07\x08",
                    sampled,
                };
                let mut h = HeaderMap::new();
                inject(&[f], &out, &mut h);
                let got = extract(&[f], &h).unwrap_or_else(|| panic!("{f:?}: {h:?}"));
                assert_eq!(got.1, Context { trace_id: out.trace_id, span_id: out.span_id, sampled: Some(sampled) });
            }
        }
    }

    #[test]
    fn traceparent_is_written_exactly() {
        let out = Outgoing { trace_id: [0xab; 16], span_id: [0x01; 8], parent_id: [2; 8], sampled: true };
        let mut h = HeaderMap::new();
        inject(&[Format::W3c], &out, &mut h);
        assert_eq!(h["traceparent"], "00-abababababababababababababababab-0101010101010101-01");
    }

    #[test]
    fn known_headers_parse() {
        let mut h = HeaderMap::new();
        h.insert("x-b3-traceid", "80f198ee56343ba8".parse().unwrap());
        h.insert("x-b3-spanid", "e457b5a2e4d86bd1".parse().unwrap());
        h.insert("x-b3-sampled", "1".parse().unwrap());
        let (f, c) = extract(&[Format::W3c, Format::B3], &h).unwrap();
        assert_eq!(
            (f, hex(&c.trace_id).as_str(), c.sampled),
            (Format::B3, "000000000000000080f198ee56343ba8", Some(true))
        );
        let mut h = HeaderMap::new();
        h.insert(
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".parse().unwrap(),
        );
        let (_, c) = extract(&[Format::Aws], &h).unwrap();
        assert_eq!(hex(&c.trace_id), "5759e988bd862e3fe1be46a994272793");
        assert_eq!(hex(&c.span_id), "53995c3f42cd8ad8");
        let mut h = HeaderMap::new();
        h.insert("x-cloud-trace-context", "105445aa7843bc8bf206b12000100000/1;o=1".parse().unwrap());
        let (_, c) = extract(&[Format::Gcp], &h).unwrap();
        assert_eq!((c.span_id, c.sampled), (1u64.to_be_bytes(), Some(true)));
        let mut h = HeaderMap::new();
        h.insert("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01".parse().unwrap());
        assert_eq!(extract(&[Format::W3c], &h), None, "an all-zero trace id is invalid");
    }
}
