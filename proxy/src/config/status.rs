//! The status listener (`KONG_STATUS_LISTEN`): `/status`, `/status/ready` (503 until a non-empty
//! config is live), `/metrics`. It never proxies, and the config API is not here (unix socket only).

use std::convert::Infallible;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use crate::body::ProxyBody;
use crate::downstream::ConnInfo;
use crate::downstream::request_body::ClientBody;
use crate::respond::json_response;
use crate::downstream::Handler;
use crate::config::state::State;

pub struct StatusHandler {
    pub state: Arc<State>,
}

impl Handler for StatusHandler {
    async fn call(
        self: Arc<Self>,
        req: Request<ClientBody>,
        _conn: Arc<ConnInfo>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        Ok(self.respond(req.method(), req.uri().path()))
    }
}

impl StatusHandler {
    pub fn respond(&self, method: &Method, path: &str) -> Response<ProxyBody> {
        if method != Method::GET && method != Method::HEAD {
            return json_response(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
        }
        match path {
            "/status" => crate::config::admin::status_body(&self.state),
            "/status/ready" => {
                if self.state.current().is_empty() {
                    json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no configuration available (empty configuration present)",
                    )
                } else {
                    json_response(StatusCode::OK, "ready")
                }
            }
            "/metrics" => {
                let mut r = Response::new(ProxyBody::full(self.state.metrics.render_live(&self.state.load())));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
                r
            }
            _ => json_response(StatusCode::NOT_FOUND, "Not found"),
        }
    }
}
