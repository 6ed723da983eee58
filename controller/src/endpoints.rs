//! Small HTTP endpoints on their own listeners: `/healthz` and `/readyz` on
//! `--health-probe-bind-address` (ready once the proxy has accepted a config), and `/metrics` on
//! `--metrics-bind-address`. Nothing here can change the controller's state.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Answers one path: status, content type, body; `None` = 404.
pub type Handler = Arc<dyn Fn(&str) -> Option<(StatusCode, &'static str, String)> + Send + Sync>;

/// Readiness: set after the first config the proxy accepted.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub(crate) fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// `/healthz` (always 200 while the process serves) and `/readyz`.
pub fn probes(ready: Readiness) -> Handler {
    Arc::new(move |path| match path {
        "/healthz" => Some((StatusCode::OK, "text/plain", "ok".into())),
        "/readyz" if ready.is_ready() => Some((StatusCode::OK, "text/plain", "ok".into())),
        "/readyz" => Some((StatusCode::SERVICE_UNAVAILABLE, "text/plain", "no configuration applied yet".into())),
        _ => None,
    })
}

/// `/metrics` in the Prometheus text format.
pub fn metrics(m: Metrics) -> Handler {
    Arc::new(move |path| (path == "/metrics").then(|| (StatusCode::OK, "text/plain; version=0.0.4", m.render())))
}

/// Binds `addr` and serves `handler` until `shutdown`; returns the bound address.
pub async fn serve(addr: SocketAddr, handler: Handler, shutdown: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = listener.accept() => a,
            };
            let Ok((stream, _)) = accepted else { continue };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let answer = handler(req.uri().path());
                    async move {
                        let (status, ctype, body) =
                            answer.unwrap_or((StatusCode::NOT_FOUND, "text/plain", "not found".to_string()));
                        let mut resp = Response::new(Full::new(Bytes::from(body)));
                        *resp.status_mut() = status;
                        if let Ok(v) = http::HeaderValue::from_str(ctype) {
                            resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn probes_answer() {
        let ready = Readiness::default();
        let h = probes(ready.clone());
        assert_eq!(h("/healthz").unwrap().0, StatusCode::OK);
        assert_eq!(h("/readyz").unwrap().0, StatusCode::SERVICE_UNAVAILABLE);
        ready.set_ready();
        assert_eq!(h("/readyz").unwrap().0, StatusCode::OK);
        assert!(h("/other").is_none());

        let shutdown = CancellationToken::new();
        let addr = serve("127.0.0.1:0".parse().unwrap(), h, shutdown.clone()).await.unwrap();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let req = Request::get("/readyz").header("host", "x").body(Full::new(Bytes::new())).unwrap();
        assert_eq!(sender.send_request(req).await.unwrap().status(), StatusCode::OK);
        shutdown.cancel();
    }
}
