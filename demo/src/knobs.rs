//! Request metadata that changes how a demo handler answers, so proxy and end-to-end tests can provoke slow,
//! failing or long-streaming upstreams without a special backend:
//!
//! | header | effect |
//! |---|---|
//! | `x-delay-ms: N` | sleep N ms before answering; the sleep ends when the client cancels |
//! | `x-fail-code: N` | after the delay, answer with gRPC status N and message `failed on purpose` (0 = no failure) |
//! | `x-reply-count: N` | number of server-stream replies (default 3) |
//! | `x-reply-interval-ms: N` | gap between streamed replies (default 0) |
//! | `x-echo-*` | echoed back as response headers, and as trailers named `x-trailer-echo-*` |
//! | `x-reset-after-ms: N` | N ms after the response headers, reset the stream (RST_STREAM INTERNAL_ERROR) instead of finishing it; 0 = before any message |
//!
//! Every response also carries `x-backend-name: <name>` (added by the observing layer, with the echoes).

use std::time::Duration;

use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

pub const DELAY_MS: &str = "x-delay-ms";
pub const FAIL_CODE: &str = "x-fail-code";
pub const REPLY_COUNT: &str = "x-reply-count";
pub const REPLY_INTERVAL_MS: &str = "x-reply-interval-ms";
pub const RESET_AFTER_MS: &str = "x-reset-after-ms";
pub const ECHO_PREFIX: &str = "x-echo-";
pub const TRAILER_ECHO_PREFIX: &str = "x-trailer-echo-";
pub const BACKEND_NAME: &str = "x-backend-name";
/// The message of a status produced by `x-fail-code`.
pub const FAIL_MESSAGE: &str = "failed on purpose";
/// Server-stream replies when `x-reply-count` is absent.
pub const DEFAULT_REPLY_COUNT: u64 = 3;

/// The knobs of one request, parsed from its metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Knobs {
    pub delay: Option<Duration>,
    pub fail_code: Option<Code>,
    pub reply_count: Option<u64>,
    pub reply_interval: Option<Duration>,
}

fn number(metadata: &MetadataMap, key: &str) -> Result<Option<u64>, Status> {
    match metadata.get(key) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| Status::invalid_argument(format!("{key} must be a non-negative integer"))),
    }
}

impl Knobs {
    /// Parses the knobs; a malformed value is an `INVALID_ARGUMENT` status naming the header.
    pub fn from_metadata(metadata: &MetadataMap) -> Result<Self, Status> {
        let fail_code = match number(metadata, FAIL_CODE)? {
            None | Some(0) => None,
            Some(n) => {
                let n = i32::try_from(n).map_err(|_| Status::invalid_argument("x-fail-code out of range"))?;
                Some(Code::from_i32(n))
            }
        };
        Ok(Self {
            delay: number(metadata, DELAY_MS)?.map(Duration::from_millis),
            fail_code,
            reply_count: number(metadata, REPLY_COUNT)?,
            reply_interval: number(metadata, REPLY_INTERVAL_MS)?.map(Duration::from_millis),
        })
    }

    /// Sleeps for `x-delay-ms`, then fails if `x-fail-code` asks for it. Dropping the future (the client
    /// cancelled) ends the sleep.
    pub async fn before_reply(&self) -> Result<(), Status> {
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        match self.fail_code {
            Some(code) => Err(Status::new(code, FAIL_MESSAGE)),
            None => Ok(()),
        }
    }

    pub fn reply_count(&self) -> u64 {
        self.reply_count.unwrap_or(DEFAULT_REPLY_COUNT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let mut md = MetadataMap::new();
        assert_eq!(Knobs::from_metadata(&md).ok(), Some(Knobs::default()));
        md.insert(DELAY_MS, "25".parse().unwrap());
        md.insert(FAIL_CODE, "14".parse().unwrap());
        md.insert(REPLY_COUNT, "1000".parse().unwrap());
        let knobs = Knobs::from_metadata(&md).unwrap();
        assert_eq!(knobs.delay, Some(Duration::from_millis(25)));
        assert_eq!(knobs.fail_code, Some(Code::Unavailable));
        assert_eq!(knobs.reply_count(), 1000);
        md.insert(REPLY_INTERVAL_MS, "soon".parse().unwrap());
        let err = Knobs::from_metadata(&md).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(REPLY_INTERVAL_MS));
    }

    #[tokio::test]
    async fn fail_code_zero_is_success() {
        let mut md = MetadataMap::new();
        md.insert(FAIL_CODE, "0".parse().unwrap());
        assert!(Knobs::from_metadata(&md).unwrap().before_reply().await.is_ok());
    }
}
