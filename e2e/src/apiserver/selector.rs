//! Label and field selectors for list and watch.
//!
//! kubectl (`-l`, `--field-selector`) and kube-rs (`ListParams::labels/fields`) filter on the server, so
//! the test server evaluates equality (`=`, `==`, `!=`) and set-based (`in`, `notin`, `key`, `!key`)
//! label requirements, and equality field requirements on any dotted path (`metadata.name`, ...).

use serde_json::Value;

use super::status::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

/// A parsed field selector (equality and inequality only, as Kubernetes supports).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<Requirement>);

/// Splits on commas outside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().map(str::trim).filter(|t| !t.is_empty()).collect()
}

fn parse_equality(term: &str) -> Option<Requirement> {
    let (key, op) = if let Some((k, v)) = term.split_once("!=") {
        (k, Op::NotEq(v.trim().to_string()))
    } else if let Some((k, v)) = term.split_once("==") {
        (k, Op::Eq(v.trim().to_string()))
    } else if let Some((k, v)) = term.split_once('=') {
        (k, Op::Eq(v.trim().to_string()))
    } else {
        return None;
    };
    Some(Requirement { key: key.trim().to_string(), op })
}

fn parse_set(term: &str) -> Result<Requirement, ApiError> {
    let bad = || ApiError::bad_request(format!("unable to parse requirement: {term:?}"));
    for (word, negate) in [(" notin ", true), (" in ", false)] {
        if let Some((k, rest)) = term.split_once(word) {
            let values = rest.trim().strip_prefix('(').and_then(|r| r.strip_suffix(')')).ok_or_else(bad)?;
            let values: Vec<String> =
                values.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect();
            let op = if negate { Op::NotIn(values) } else { Op::In(values) };
            return Ok(Requirement { key: k.trim().to_string(), op });
        }
    }
    let valid_key = |k: &str| !k.is_empty() && !k.contains(char::is_whitespace);
    if let Some(k) = term.strip_prefix('!') {
        if valid_key(k.trim()) {
            return Ok(Requirement { key: k.trim().to_string(), op: Op::NotExists });
        }
    } else if valid_key(term) {
        return Ok(Requirement { key: term.to_string(), op: Op::Exists });
    }
    Err(bad())
}

impl Op {
    fn matches(&self, value: Option<&str>) -> bool {
        match self {
            Op::Eq(v) => value == Some(v.as_str()),
            Op::NotEq(v) => value != Some(v.as_str()),
            Op::In(vs) => value.is_some_and(|x| vs.iter().any(|v| v == x)),
            Op::NotIn(vs) => value.is_none_or(|x| vs.iter().all(|v| v != x)),
            Op::Exists => value.is_some(),
            Op::NotExists => value.is_none(),
        }
    }
}

impl LabelSelector {
    /// Parses the `labelSelector` query value.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        split_terms(s)
            .into_iter()
            .map(|t| {
                if t.contains(" in ") || t.contains(" notin ") || !t.contains('=') {
                    parse_set(t)
                } else {
                    parse_equality(t).ok_or_else(|| ApiError::bad_request(format!("bad label requirement {t:?}")))
                }
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether the object's labels satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        self.0.iter().all(|r| r.op.matches(labels.and_then(|l| l.get(&r.key)).and_then(Value::as_str)))
    }
}

impl FieldSelector {
    /// Parses the `fieldSelector` query value.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        split_terms(s)
            .into_iter()
            .map(|t| parse_equality(t).ok_or_else(|| ApiError::bad_request(format!("invalid field selector {t:?}"))))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether the object's fields (dotted paths, compared as strings) satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|r| {
            let mut cur = Some(obj);
            for part in r.key.split('.') {
                cur = cur.and_then(|c| c.get(part));
            }
            let text = match cur {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Null) | None => {
                    // An absent namespace is the empty namespace, as Kubernetes reports it.
                    if r.key == "metadata.namespace" {
                        Some(String::new())
                    } else {
                        None
                    }
                }
                Some(other) => Some(other.to_string()),
            };
            r.op.matches(text.as_deref())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let obj = json!({"metadata": {"name": "a", "labels": {"app": "web", "tier": "front"}}});
        let yes = ["", "app=web", "app==web,tier", "app in (web, api)", "tier notin (back)", "!missing", "app!=x"];
        for s in yes {
            assert!(LabelSelector::parse(s).unwrap().matches(&obj), "{s}");
        }
        for s in ["app=api", "missing", "!app", "app notin (web)", "app in (x),tier"] {
            assert!(!LabelSelector::parse(s).unwrap().matches(&obj), "{s}");
        }
        assert!(LabelSelector::parse("app in web").is_err());
    }

    #[test]
    fn field_selectors() {
        let obj = json!({"metadata": {"name": "a", "namespace": "ns"}, "spec": {"type": "ClusterIP"}});
        assert!(FieldSelector::parse("metadata.name=a,metadata.namespace==ns").unwrap().matches(&obj));
        assert!(FieldSelector::parse("spec.type=ClusterIP").unwrap().matches(&obj));
        assert!(!FieldSelector::parse("metadata.name!=a").unwrap().matches(&obj));
        assert!(FieldSelector::parse("metadata.namespace=").unwrap().matches(&json!({"metadata": {}})));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
