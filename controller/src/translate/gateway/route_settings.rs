//! Which `konghq.com/*` route annotations a Gateway API route can honour, and the problems of
//! those it cannot (strip-path or methods on a GRPCRoute, protocols of the other family,
//! host-aliases, snis without a TLS protocol, the Ingress-only regex-priority, regex-prefix and
//! force-ssl-redirect). One function, used by translation and by the
//! admission webhook, so that the two can never disagree about a route's annotations.

use proxy_config::Protocol;

use super::model::RouteKind;
use crate::translate::annotations::{self, RouteAnnotations};
use crate::translate::{ObjectRef, Problem};

/// The route-level settings taken from the annotations, once the inapplicable ones are dropped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RouteSettings {
    pub(crate) protocols: Vec<Protocol>,
    pub(crate) snis: Vec<String>,
}

/// The settings a route of `kind` gets from its parsed annotations `ann`; every annotation it
/// cannot honour is reported on `object` in `problems`.
pub(crate) fn route_settings(
    object: &ObjectRef,
    kind: RouteKind,
    ann: &RouteAnnotations,
    problems: &mut Vec<Problem>,
) -> RouteSettings {
    let grpc = kind == RouteKind::Grpc;
    let mut problem =
        |key: &str, message: String| problems.push(Problem::new(object, annotations::field(key), message));
    let protocols = match &ann.protocols {
        Some(list) if list.iter().all(|p| p.is_grpc() == grpc) => list.clone(),
        Some(_) => {
            let family = if grpc { "grpc/grpcs" } else { "http/https" };
            problem(annotations::PROTOCOLS, format!("ignored: a {} needs {family} protocols", kind.kind()));
            default_protocols(grpc)
        }
        None => default_protocols(grpc),
    };
    if grpc && ann.strip_path == Some(true) {
        problem(annotations::STRIP_PATH, "dropped: gRPC routes cannot strip the path".into());
    }
    if grpc && ann.methods.is_some() {
        problem(annotations::METHODS, "dropped: gRPC routes cannot match HTTP methods".into());
    }
    if !ann.host_aliases.is_empty() {
        problem(annotations::HOST_ALIASES, "ignored on Gateway API routes: use spec.hostnames".into());
    }
    // Ingress-only: Gateway API routes order themselves by the spec's precedence rules, match
    // regexes by `type: RegularExpression`, and redirect with a RequestRedirect filter.
    for (key, set) in [
        (annotations::REGEX_PRIORITY, ann.regex_priority.is_some()),
        (annotations::REGEX_PREFIX, ann.regex_prefix.is_some()),
        (annotations::FORCE_SSL_REDIRECT, ann.force_ssl_redirect),
    ] {
        if set {
            problem(key, "ignored on Gateway API routes: it applies to Ingresses only".into());
        }
    }
    let snis = match &ann.snis {
        Some(s) if protocols.iter().any(|p| matches!(p, Protocol::Https | Protocol::Grpcs)) => s.clone(),
        Some(_) => {
            problem(annotations::SNIS, "dropped: snis need protocols https or grpcs".into());
            Vec::new()
        }
        None => Vec::new(),
    };
    RouteSettings { protocols, snis }
}

fn default_protocols(grpc: bool) -> Vec<Protocol> {
    if grpc {
        vec![Protocol::Grpc, Protocol::Grpcs]
    } else {
        vec![Protocol::Http, Protocol::Https]
    }
}
