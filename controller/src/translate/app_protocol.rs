//! Which protocol sluice speaks to a backend, from what the Service says about itself.
//!
//! Gateway API GEP-1911: a Service port's `appProtocol` names the protocol its pods speak
//! (`kubernetes.io/h2c`, `kubernetes.io/ws`, `kubernetes.io/wss`, and the IANA names `http`,
//! `https`, `grpc`, `grpcs`). For HTTPRoute and GRPCRoute backends it chooses the upstream
//! protocol when no `konghq.com/protocol` annotation says otherwise (the annotation is the
//! explicit, Kong-specific choice and wins). An `appProtocol` sluice cannot speak is reported by
//! name and the route's default stays.
//!
//! Also here: the check that a gRPC route does not end on a service spoken to over HTTP/1.1 (an
//! Ingress gRPC route to a Service without `konghq.com/protocol`), which can never work: it is
//! reported as an Event and a warning in the log instead of failing every call at run time.

use proxy_config::Protocol;

use super::{Context, ObjectRef};

/// The upstream protocol a Service port's `appProtocol` asks for: `Ok(None)` when it says
/// nothing, `Err` (the message of the Event) when sluice cannot honour it.
pub(crate) fn from_app_protocol(app_protocol: Option<&str>, grpc_route: bool) -> Result<Option<Protocol>, String> {
    let Some(raw) = app_protocol.map(str::trim).filter(|a| !a.is_empty()) else { return Ok(None) };
    let p = match raw.to_ascii_lowercase().as_str() {
        // HTTP/2 without TLS: sluice's grpc transport is exactly that (h2c).
        "kubernetes.io/h2c" | "h2c" | "grpc" => Protocol::Grpc,
        "https" | "kubernetes.io/wss" | "wss" if !grpc_route => Protocol::Https,
        "https" | "grpcs" => Protocol::Grpcs,
        "http" | "kubernetes.io/ws" | "ws" if !grpc_route => Protocol::Http,
        "http" | "kubernetes.io/ws" | "ws" | "kubernetes.io/wss" | "wss" => {
            return Err(format!("appProtocol '{raw}' is HTTP/1.1, which cannot carry gRPC; speaking h2c (grpc) instead"))
        }
        _ => {
            return Err(format!(
                "appProtocol '{raw}' is not supported (kubernetes.io/h2c, kubernetes.io/ws, kubernetes.io/wss, http, https, grpc, grpcs); the default protocol stays"
            ))
        }
    };
    Ok(Some(p))
}

/// Reports a gRPC route whose service is spoken to over HTTP/1.1 (an Event on `route_obj` and a
/// warning in the log): every call through it would fail.
pub(crate) fn check_grpc_upstream(
    ctx: &mut Context<'_>,
    route_obj: &ObjectRef,
    route: &proxy_config::Route,
    service: &str,
    k8s_service: &str,
) {
    let Some(ks) = ctx.kong_services.get(service) else { return };
    if !route.is_grpc() || ks.service.protocol.is_grpc() {
        return;
    }
    let protocol = ks.service.protocol;
    let message = format!(
        "gRPC route {} goes to Service {k8s_service}, which is spoken to over HTTP/1.1 ({protocol}): gRPC needs HTTP/2; annotate the Service konghq.com/protocol: grpc (or grpcs)",
        route.display_name()
    );
    tracing::warn!(object = %route_obj, service = %k8s_service, "{message}");
    ctx.problem(route_obj, super::annotations::field(super::annotations::PROTOCOLS), message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_protocols_map_to_upstream_protocols() {
        let http = |a| from_app_protocol(Some(a), false);
        let grpc = |a| from_app_protocol(Some(a), true);
        assert_eq!(http("kubernetes.io/h2c"), Ok(Some(Protocol::Grpc)));
        assert_eq!(http("kubernetes.io/ws"), Ok(Some(Protocol::Http)));
        assert_eq!(http("kubernetes.io/wss"), Ok(Some(Protocol::Https)));
        assert_eq!(http("https"), Ok(Some(Protocol::Https)));
        assert_eq!(http("grpc"), Ok(Some(Protocol::Grpc)));
        assert_eq!(grpc("grpc"), Ok(Some(Protocol::Grpc)));
        assert_eq!(grpc("https"), Ok(Some(Protocol::Grpcs)));
        assert_eq!(grpc("kubernetes.io/h2c"), Ok(Some(Protocol::Grpc)));
        assert!(grpc("kubernetes.io/ws").unwrap_err().contains("cannot carry gRPC"));
        assert!(http("mysql").unwrap_err().contains("'mysql' is not supported"));
        assert_eq!(from_app_protocol(None, true), Ok(None));
        assert_eq!(from_app_protocol(Some(" "), false), Ok(None));
    }
}
