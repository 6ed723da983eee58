//! Kubernetes `Status` failures.
//!
//! Every error the test API server returns to a client is a `Status` object (kind `Status`, apiVersion
//! `v1`, `status: Failure`, `reason`, `code`, `details`), because kubectl and kube-rs decode those to show
//! and classify errors (`NotFound`, `AlreadyExists`, `Conflict`, ...).

use serde_json::{json, Value};

/// An API failure, rendered as a Kubernetes `Status` with the matching HTTP code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code, also `Status.code`.
    pub code: u16,
    /// `Status.reason` (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`, ...).
    pub reason: &'static str,
    /// Human readable message.
    pub message: String,
    /// `Status.details`, when the failure concerns one object.
    pub details: Option<Value>,
}

/// What a `details` block names: the resource's group, its plural and the object name.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub group: &'a str,
    pub plural: &'a str,
    pub name: &'a str,
}

impl Subject<'_> {
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn details(&self) -> Value {
        let mut d = json!({ "name": self.name, "kind": self.plural });
        if !self.group.is_empty() {
            d["group"] = json!(self.group);
        }
        d
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self { code, reason, message: message.into(), details: None }
    }

    /// 404 for an object that does not exist.
    pub fn not_found(s: Subject<'_>) -> Self {
        Self {
            details: Some(s.details()),
            ..Self::new(404, "NotFound", format!("{} \"{}\" not found", s.qualified(), s.name))
        }
    }

    /// 404 for a path the server does not serve.
    pub fn no_route(path: &str) -> Self {
        Self::new(404, "NotFound", format!("the server could not find the requested resource ({path})"))
    }

    /// 409 when creating a name that exists.
    pub fn already_exists(s: Subject<'_>) -> Self {
        Self {
            details: Some(s.details()),
            ..Self::new(409, "AlreadyExists", format!("{} \"{}\" already exists", s.qualified(), s.name))
        }
    }

    /// 409 when an update carries a stale `metadata.resourceVersion`.
    pub fn conflict(s: Subject<'_>) -> Self {
        Self {
            details: Some(s.details()),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your \
                     changes to the latest version and try again",
                    s.qualified(),
                    s.name
                ),
            )
        }
    }

    /// 422 for a body that parses but breaks a rule (missing name, mismatched namespace, ...).
    pub fn invalid(kind: &str, s: Subject<'_>, field: &str, why: &str) -> Self {
        let mut details = s.details();
        details["kind"] = json!(kind);
        details["causes"] = json!([{ "reason": "FieldValueInvalid", "message": why, "field": field }]);
        Self {
            details: Some(details),
            ..Self::new(422, "Invalid", format!("{kind} \"{}\" is invalid: {field}: {why}", s.name))
        }
    }

    /// 400 for a body that cannot be decoded or a malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 405 for a verb the resource does not support.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// 415 for a patch or body content type the server does not understand.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format: {content_type}"),
        )
    }

    /// 410 when a watch asks for history the server no longer keeps.
    pub fn gone(requested: u64, oldest: u64) -> Self {
        Self::new(410, "Expired", format!("too old resource version: {requested} ({oldest})"))
    }

    /// The `Status` object for this failure.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        status
    }
}
