//! The tower layer in front of every demo service. It records each call in [`Stats`] (start, request head,
//! completion or cancellation), adds `x-backend-name`, echoes `x-echo-*` request headers back as response
//! headers and as `x-trailer-echo-*` trailers, and resets the stream on `x-reset-after-ms`.
//!
//! Cancellation is observed with a drop guard that travels from the request into the response body: hyper drops the
//! service future or the body when the client resets the stream or closes the connection, and a guard dropped before
//! the response finished counts as a cancellation at that instant.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::{HeaderName, HeaderValue, HOST};
use http::{HeaderMap, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tower::{Layer, Service};

use crate::knobs::{BACKEND_NAME, ECHO_PREFIX, RESET_AFTER_MS, TRAILER_ECHO_PREFIX};
use crate::stats::{RequestSeen, Stats};

/// Builds [`Observe`] services.
#[derive(Clone)]
pub(crate) struct ObserveLayer {
    stats: Stats,
    backend_name: HeaderValue,
}

impl ObserveLayer {
    pub(crate) fn new(stats: Stats, name: &str) -> Self {
        let backend_name = HeaderValue::from_str(name).unwrap_or_else(|_| HeaderValue::from_static("invalid-name"));
        Self { stats, backend_name }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe { inner, stats: self.stats.clone(), backend_name: self.backend_name.clone() }
    }
}

/// See the module documentation.
#[derive(Clone)]
pub(crate) struct Observe<S> {
    inner: S,
    stats: Stats,
    backend_name: HeaderValue,
}

/// Marks one call finished; counts a cancellation if dropped first.
struct CallGuard {
    stats: Stats,
    method: Arc<str>,
    done: bool,
}

impl CallGuard {
    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            self.stats.record_completed(&self.method);
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if !self.done {
            let at = Instant::now();
            tracing::debug!(method = %self.method, "client cancelled the call");
            self.stats.record_cancelled(&self.method, at);
        }
    }
}

/// `x-echo-*` request headers, as (header name, trailer name, value).
fn echoes(headers: &HeaderMap) -> Vec<(HeaderName, Option<HeaderName>, HeaderValue)> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let suffix = name.as_str().strip_prefix(ECHO_PREFIX)?;
            let trailer = HeaderName::from_bytes(format!("{TRAILER_ECHO_PREFIX}{suffix}").as_bytes()).ok();
            Some((name.clone(), trailer, value.clone()))
        })
        .collect()
}

impl<S, B> Service<Request<B>> for Observe<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let method: Arc<str> = Arc::from(request.uri().path());
        let authority = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| request.headers().get(HOST).and_then(|h| h.to_str().ok()).map(str::to_owned));
        let seen = RequestSeen { authority, headers: request.headers().clone(), at: Instant::now() };
        let echo = echoes(request.headers());
        let reset_after = request
            .headers()
            .get(RESET_AFTER_MS)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_millis);
        self.stats.record_start(&method, seen);
        let mut guard = CallGuard { stats: self.stats.clone(), method, done: false };
        let backend_name = self.backend_name.clone();

        // The service that was polled ready is the one to call; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await?;
            let (mut parts, body) = response.into_parts();
            parts.headers.insert(HeaderName::from_static(BACKEND_NAME), backend_name);
            for (name, _, value) in &echo {
                parts.headers.append(name.clone(), value.clone());
            }
            let trailers: Vec<(HeaderName, HeaderValue)> =
                echo.into_iter().filter_map(|(_, trailer, value)| Some((trailer?, value))).collect();
            // A trailers-only response (an error status in the headers) is finished once its head is out.
            if parts.headers.contains_key("grpc-status") {
                for (name, value) in &trailers {
                    parts.headers.append(name.clone(), value.clone());
                }
                guard.finish();
            }
            let reset = reset_after.map(|after| {
                if after.is_zero() {
                    Reset::Now
                } else {
                    Reset::After(Box::pin(tokio::time::sleep(after)))
                }
            });
            let body = ObservedBody { inner: body, guard, trailers, reset };
            Ok(Response::from_parts(parts, Body::new(body)))
        })
    }
}

/// The response body with the call's guard and the trailers to add.
struct ObservedBody {
    inner: Body,
    guard: CallGuard,
    trailers: Vec<(HeaderName, HeaderValue)>,
    /// `x-reset-after-ms`: when it fires, the body fails, and hyper resets the stream with INTERNAL_ERROR.
    reset: Option<Reset>,
}

/// When to reset the response stream.
enum Reset {
    /// Before the first frame (a timer of 0 ms would still wait for the next timer tick).
    Now,
    After(Pin<Box<tokio::time::Sleep>>),
}

impl HttpBody for ObservedBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Some(reset) = this.reset.as_mut() {
            let due = match reset {
                Reset::Now => true,
                Reset::After(sleep) => sleep.as_mut().poll(cx).is_ready(),
            };
            if due {
                this.reset = None;
                // The backend ended the call itself: not a client cancellation.
                this.guard.finish();
                return Poll::Ready(Some(Err(tonic::Status::internal("reset on purpose (x-reset-after-ms)"))));
            }
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_trailers() {
                Ok(mut trailers) => {
                    for (name, value) in this.trailers.drain(..) {
                        trailers.append(name, value);
                    }
                    this.guard.finish();
                    Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Poll::Ready(Some(Err(status))) => {
                this.guard.finish();
                Poll::Ready(Some(Err(status)))
            }
            Poll::Ready(None) => {
                this.guard.finish();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.reset.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
