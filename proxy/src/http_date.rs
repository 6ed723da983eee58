//! The `date` header both downstream protocols give a response that has none (as nginx, and so
//! Kong, does): formatted once per second per worker thread, not per response.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;

thread_local! {
    /// The second last formatted and its text.
    static CACHED: RefCell<Option<(u64, HeaderValue)>> = const { RefCell::new(None) };
}

/// Calls `f` with the current time as an HTTP date (RFC 9110 §5.6.7).
pub fn with_now<R>(f: impl FnOnce(&HeaderValue) -> R) -> R {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|c| {
        let mut c = c.borrow_mut();
        if !matches!(c.as_ref(), Some((s, _)) if *s == secs) {
            *c = Some((secs, render(now)));
        }
        f(&c.as_ref().expect("set above").1)
    })
}

fn render(now: SystemTime) -> HeaderValue {
    HeaderValue::from_str(&httpdate::fmt_http_date(now)).expect("an HTTP date is a valid header value")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_date_is_an_http_date_of_now() {
        let text = super::with_now(|v| v.to_str().unwrap().to_owned());
        let t = httpdate::parse_http_date(&text).unwrap();
        let age = std::time::SystemTime::now().duration_since(t).unwrap();
        assert!(age.as_secs() < 5, "{text}");
    }
}
