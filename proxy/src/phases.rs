//! A proxied request's life in Kong's phases, one module each, called in this order by
//! [`serve`]:
//!
//! 1. [`route`] (Kong's `access.before`): the router on the config snapshot, then Kong's
//!    post-routing protocol checks;
//! 2. [`access`]: the route's plugin chain, which may answer the request itself, then the
//!    plugins' filters on the request body (request-size-limiting's count);
//! 3. [`upstream_request`] (Kong's `access.after`): the request as the upstream gets it (path,
//!    Host, X-Forwarded-*, hop-by-hop headers), then, only when request-transformer left one,
//!    its edit of that request (path, host, the body collected and rewritten);
//! 4. [`balancer`]: target choice, connection, sending, retries;
//! 5. [`header_filter`]: the response head (hop-by-hop headers, the plugins' header_filter), also
//!    for the proxy's own replies;
//! 6. [`body_filter`]: the response body, frame by frame, with deadlines (collected whole only
//!    for response-transformer's JSON edit);
//! 7. [`log`]: the request's record to metrics and the access log.
//!
//! [`serve`] runs them: [`before_balancer`] (1-3), the balancer awaited in place, and
//! [`after_balancer`] (5-6).
//!
//! Kong's `rewrite` phase runs only global plugins' rewrite handlers; none of the plugins sluice
//! supports has one, so there is no such step. Every failure is a [`ProxyError`] that `respond`
//! turns into the reply.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response, Version};
use tokio::time::Instant;

use crate::config::state::{LiveConfig, RouteRt, ServiceRt, State};
use crate::downstream::request_body::{ClientBody, RequestBody};
use crate::downstream::ConnInfo;
use crate::plugins::{grpc_gateway, rate_limiting, request_transformer, RequestState};
use crate::respond::{error_response, ProxyError};
use crate::response_body::ProxyBody;
use crate::settings::trust::TrustedIps;
use crate::telemetry::observe::{Completion, LogDetails, Observer};
use crate::telemetry::ClientProtocol;
use crate::upstream::pool::Pool;
use crate::wire::{grpc, grpc_web};
use body_filter::UpstreamStream;

pub(crate) mod access;
pub(crate) mod balancer;
pub(crate) mod body_filter;
pub(crate) mod buffering;
pub(crate) mod header_filter;
pub(crate) mod log;
pub(crate) mod route;
pub(crate) mod upstream_request;

/// The proxy listeners' request handler: what every request shares (the config state, the upstream
/// connection pool, telemetry, the trusted addresses).
pub(crate) struct ProxyHandler {
    pub state: Arc<State>,
    pub pool: Pool,
    pub observer: Arc<Observer>,
    pub trusted: TrustedIps,
}

/// One request's facts that outlive a failing phase: its record, the route it matched once the
/// access phase started (its header_filter plugins still see the proxy's own reply, as in Kong),
/// and the plugins' per-request state.
pub(crate) struct Ctx {
    pub done: Option<Completion>,
    pub route: Option<usize>,
    pub plugins: RequestState,
}

/// The request handler of proxy listeners (both HTTP versions).
pub(crate) async fn serve(
    req: Request<ClientBody>,
    conn: Arc<ConnInfo>,
    shared: Arc<ProxyHandler>,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    let rt = shared.state.load();
    let content_type = req.headers().get(http::header::CONTENT_TYPE);
    let grpc = grpc::is_grpc_content_type(content_type);
    let h2 = req.version() == Version::HTTP_2;
    // A gRPC-Web call (looked at only for gRPC content types).
    let web = if grpc { content_type.and_then(grpc_web::Mode::of_content_type) } else { None };
    let mut done = Completion::new(shared.observer.clone(), start, conn.client);
    if web.is_some() {
        done.set_client_protocol(ClientProtocol::GrpcWeb);
    }
    if done.wants_details() {
        done.set_details(LogDetails {
            method: req.method().clone(),
            host: route::host_of(req.uri(), req.headers()).to_string(),
            path: req.uri().path().to_string(),
            protocol: protocol_label(grpc, conn.tls, h2),
        });
    }
    let mut ctx = Ctx { done: Some(done), route: None, plugins: RequestState::default() };
    // The upstream request is written into this slot, and the balancer phase takes it from there:
    // moved through return values and arguments instead, it would cost a memcpy per hop.
    let mut upstream = None;
    // The balancer phase is awaited here, not in a helper `async fn`: its future (which holds the
    // send futures) would be moved once more per request (bench/callgrind.sh). It runs the
    // response phases itself (`after_balancer`), so the upstream response never travels through
    // its output.
    let mut gateway = None;
    let result = match before_balancer(req, &conn, &shared, &rt, grpc, h2, start, &mut ctx, &mut upstream) {
        Ok(Prepared { route, service, deadline }) => {
            // rate-limiting's Redis check, left by the access phase (only that plugin awaits).
            let counted = match rate_limiting::pending(&ctx.plugins) {
                true => Box::pin(rate_limiting::settle(&mut ctx.plugins)).await,
                false => Ok(()),
            };
            // request-transformer's edits of the built upstream request (path, host, body), in
            // place in the slot.
            let mut edited = match (counted, ctx.plugins.upstream_edit.take(), upstream.as_mut()) {
                (Err(err), _, _) => Err(err),
                (Ok(()), Some(edit), Some(request)) => Box::pin(request_transformer::finish(request, *edit)).await,
                _ => Ok(()),
            };
            // grpc-gateway's transcoding of the request (JSON to a gRPC call).
            gateway = ctx.plugins.grpc_gateway.take();
            if let (Some(t), Some(request), Ok(())) = (gateway.as_deref_mut(), upstream.as_mut(), &edited) {
                edited = Box::pin(grpc_gateway::request::finish(request, t)).await;
                // Counted as the gRPC call it became (sluice_grpc_requests_total), from a JSON client.
                if let Some(done) = ctx.done.as_mut() {
                    done.set_grpc_path(&t.binding.grpc_path);
                    done.set_client_protocol(ClientProtocol::Json);
                }
            }
            // request_buffering: the body collected whole before the upstream request goes.
            if let (true, Some(request), Ok(())) = (route.request_buffering, upstream.as_mut(), &edited) {
                edited = Box::pin(buffering::buffer_request(request)).await;
            }
            match edited {
                Ok(()) => {
                    let attempts = ctx.plugins.trace_attempts.take();
                    // gRPC-Web over HTTP/1.1 gets gRPC's end-of-stream trailers too (as its last frame).
                    let grpc = grpc && (h2 || ctx.plugins.grpc_web.is_some());
                    let ctx = &mut ctx;
                    balancer::balance_and_send(
                        &mut upstream,
                        service,
                        &conn,
                        &shared.pool,
                        deadline,
                        route.backend_request_timeout,
                        attempts.as_deref(),
                        |response, sent| after_balancer(response, sent, route, service, grpc, deadline, ctx),
                    )
                    .await
                }
                Err(err) => Err(err),
            }
        }
        Err(err) => Err(err),
    };
    // response_buffering: the body collected whole before the client gets the head.
    let result = match (result, ctx.route.map(|i| &rt.routes[i])) {
        (Ok(resp), Some(route)) if route.response_buffering => Box::pin(buffering::buffer_response(resp)).await,
        (result, _) => result,
    };
    match result {
        Ok(resp) => match gateway {
            // grpc-gateway's transcoding of the response (the gRPC answer to JSON).
            Some(t) => Ok(Box::pin(grpc_gateway::response::respond(resp, &t.binding)).await),
            None => Ok(resp),
        },
        Err(err) => {
            // A failure the plugins' body filter caused gets the plugin's answer instead.
            let err = match ctx.plugins.body_refusal() {
                Some(reply) => ProxyError::Plugin(reply),
                None => err,
            };
            let route = ctx.route.map(|i| &rt.routes[i]);
            // A gRPC-Web call on a grpc-web route gets a gRPC-Web trailers-only reply (also over
            // HTTP/1.1: it reads the status from the headers), whichever phase failed.
            let web = web.filter(|_| route.is_some_and(|r| r.plugins.has_grpc_web()));
            if web.is_some() {
                ctx.plugins.grpc_web = web;
            }
            let mut resp = error_response(&err, grpc && (h2 || web.is_some()));
            if let Some(route) = route {
                header_filter::run_plugins(route, resp.status().as_u16(), resp.headers_mut(), &mut ctx.plugins);
                header_filter::local_body(&mut resp, &mut ctx.plugins);
            }
            log::local_reply(ctx.done, &resp, &err);
            Ok(resp)
        }
    }
}

fn protocol_label(grpc: bool, tls: bool, h2: bool) -> &'static str {
    match (grpc, tls, h2) {
        (true, true, _) => "grpcs",
        (true, false, _) => "grpc",
        (false, true, true) => "https/2",
        (false, true, false) => "https",
        (false, false, true) => "http/2",
        (false, false, false) => "http",
    }
}

/// What the phases before the balancer leave for it, besides the upstream request.
struct Prepared<'a> {
    route: &'a RouteRt,
    service: &'a ServiceRt,
    deadline: Option<Instant>,
}

/// route → access → upstream_request, which leaves the upstream request in `upstream`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn before_balancer<'a>(
    req: Request<ClientBody>,
    conn: &ConnInfo,
    shared: &ProxyHandler,
    rt: &'a LiveConfig,
    grpc: bool,
    h2: bool,
    start: Instant,
    ctx: &mut Ctx,
    upstream: &mut Option<Request<RequestBody>>,
) -> Result<Prepared<'a>, ProxyError> {
    let (mut parts, mut body) = req.into_parts();
    let routed = route::route(&parts, conn, rt, grpc, h2, &mut ctx.done)?;
    let route = &rt.routes[routed.route];
    access::access(route, routed.route, &mut parts, conn, &shared.trusted, grpc, &rt.consumers, ctx)?;
    if !route.plugins.request_body().is_empty() {
        body = access::request_body(route, &parts, body, ctx);
    }
    // `let else`, not `ok_or(error)?`: an error built eagerly is dropped on every request.
    let Some(service) = route.service.map(|i| &rt.services[i]) else { return Err(ProxyError::NoService) };
    // The deadline of a gRPC call starts when the proxy receives it.
    let deadline = if grpc { grpc::parse_timeout(&parts.headers).map(|d| start + d) } else { None };
    // The route's `request_timeout` (HTTPRoute `timeouts.request`) bounds the call too.
    let deadline = match route.request_timeout {
        Some(t) => Some(deadline.map_or(start + t, |d| d.min(start + t))),
        None => deadline,
    };
    *upstream = Some(upstream_request::upstream_request(
        parts,
        body,
        route,
        service,
        &routed,
        conn,
        &shared.trusted,
        &mut ctx.done,
    )?);
    Ok(Prepared { route, service, deadline })
}

/// header_filter → body_filter (which ends in log).
#[inline(always)]
fn after_balancer(
    response: Response<UpstreamStream>,
    sent: balancer::Sent,
    route: &RouteRt,
    service: &ServiceRt,
    grpc: bool,
    deadline: Option<Instant>,
    ctx: &mut Ctx,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (mut head, body) = response.into_parts();
    // The route's per-attempt timeout also bounds the response body of the attempt that answered.
    let deadline = match route.backend_request_timeout {
        Some(t) => Some(deadline.map_or(sent.sent_at + t, |d| d.min(sent.sent_at + t))),
        None => deadline,
    };
    header_filter::header_filter(route, &mut head, &mut ctx.plugins);
    body_filter::respond(head, body, sent, route, service, grpc, deadline, ctx)
}

impl crate::downstream::Handler for ProxyHandler {
    // `serve` itself, not a future awaiting it: one state machine less to build and move.
    fn call(
        self: Arc<Self>,
        req: Request<ClientBody>,
        conn: Arc<ConnInfo>,
    ) -> impl std::future::Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static {
        serve(req, conn, self)
    }
}
