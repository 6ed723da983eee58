//! The `date` header both downstream protocols give a response that has none (as nginx, and so
//! Kong, does): formatted once per second per worker thread, not per response.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;

use crate::memo;

thread_local! {
    /// The second last formatted and its text.
    static CACHED: RefCell<Option<(u64, HeaderValue)>> = const { RefCell::new(None) };
}

/// The current time as an HTTP date (RFC 9110 §5.6.7).
pub(crate) fn now() -> HeaderValue {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|c| memo::last(&mut c.borrow_mut(), secs, |_| render(now)))
}

fn render(now: SystemTime) -> HeaderValue {
    HeaderValue::from_str(&httpdate::fmt_http_date(now)).expect("an HTTP date is a valid header value")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_date_is_an_http_date_of_now() {
        let now = super::now();
        let text = now.to_str().unwrap();
        let t = httpdate::parse_http_date(text).unwrap();
        let age = std::time::SystemTime::now().duration_since(t).unwrap();
        assert!(age.as_secs() < 5, "{text}");
    }
}
