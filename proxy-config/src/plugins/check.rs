//! The field walker behind every plugin schema: reads a plugin's `config` as JSON, names every
//! problem with its full path (`config.remove.headers.2`) in Kong's words, and keeps going, so one
//! answer lists every broken field. serde alone stops at the first error and words it its own way;
//! the typed parse runs only once this walk found nothing.

use serde_json::{Map, Value};

use crate::errors::FieldError;

/// A field Kong has that sluice does not honour: present (and not its neutral value) → error.
pub(crate) struct LeftOut {
    pub name: &'static str,
    pub why: &'static str,
}

/// Collects the errors of one plugin config.
#[derive(Default)]
pub(crate) struct Checker {
    pub errors: Vec<FieldError>,
}

/// `a.b` (or `b` when `a` is empty).
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl Checker {
    pub(crate) fn err(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// A record at `path`: absent or null → `None` without error (Kong fills defaults); anything
    /// but an object → "expected a record". Every key not in `fields` is an error: a field sluice
    /// leaves out names the reason, any other "unknown field".
    pub(crate) fn record<'v>(
        &mut self,
        path: &str,
        v: Option<&'v Value>,
        fields: &[&str],
        left_out: &[LeftOut],
    ) -> Option<&'v Map<String, Value>> {
        let map = match v {
            None | Some(Value::Null) => return None,
            Some(Value::Object(m)) => m,
            Some(_) => {
                self.err(path, "expected a record");
                return None;
            }
        };
        for key in map.keys() {
            if fields.contains(&key.as_str()) {
                continue;
            }
            match left_out.iter().find(|l| l.name == key) {
                // Kong's own default for a left-out field is null: harmless.
                Some(_) if map[key].is_null() => {}
                Some(l) => self.err(join(path, key), format!("not supported by sluice: {}", l.why)),
                None => self.err(join(path, key), "unknown field"),
            }
        }
        Some(map)
    }

    pub(crate) fn string<'v>(&mut self, m: &'v Map<String, Value>, path: &str, key: &str) -> Option<&'v str> {
        match m.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                self.err(join(path, key), "expected a string");
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, m: &Map<String, Value>, path: &str, key: &str) -> Option<bool> {
        match m.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                self.err(join(path, key), "expected a boolean");
                None
            }
        }
    }

    pub(crate) fn integer(&mut self, m: &Map<String, Value>, path: &str, key: &str) -> Option<i64> {
        match m.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.is_i64() => n.as_i64(),
            Some(_) => {
                self.err(join(path, key), "expected an integer");
                None
            }
        }
    }

    pub(crate) fn number(&mut self, m: &Map<String, Value>, path: &str, key: &str) -> Option<f64> {
        match m.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(_) => {
                self.err(join(path, key), "expected a number");
                None
            }
        }
    }

    /// An integer field bounded like Kong's `between`.
    pub(crate) fn between(&mut self, m: &Map<String, Value>, path: &str, key: &str, lo: i64, hi: i64) -> Option<i64> {
        let n = self.integer(m, path, key)?;
        if n < lo || n > hi {
            self.err(join(path, key), format!("value should be between {lo} and {hi}"));
            return None;
        }
        Some(n)
    }

    /// A string field restricted to `options` (Kong's `one_of`).
    pub(crate) fn one_of<'v>(
        &mut self,
        m: &'v Map<String, Value>,
        path: &str,
        key: &str,
        options: &[&str],
    ) -> Option<&'v str> {
        let s = self.string(m, path, key)?;
        if !options.contains(&s) {
            self.err(join(path, key), format!("expected one of: {}", options.join(", ")));
            return None;
        }
        Some(s)
    }

    /// An array of strings: each element with its path (`path.key.N`, 1-based like Kong's
    /// flattened errors). Non-string elements are errors and left out of the answer.
    pub(crate) fn strings<'v>(&mut self, m: &'v Map<String, Value>, path: &str, key: &str) -> Vec<(String, &'v str)> {
        let field = join(path, key);
        match m.get(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let at = format!("{field}.{}", i + 1);
                    match item {
                        Value::String(s) => out.push((at, s.as_str())),
                        _ => self.err(at, "expected a string"),
                    }
                }
                out
            }
            Some(_) => {
                self.err(field, "expected an array");
                Vec::new()
            }
        }
    }
}

/// Kong's `validate_header_name`: `^[a-zA-Z0-9-_]+$`.
pub(crate) fn valid_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Kong's message for a header name that fails [`valid_header_name`].
pub(crate) fn bad_header(name: &str) -> String {
    format!("'{name}' is not a valid header")
}

/// Removes `null` members from every object, so that serde fills defaults for them as Kong does.
pub(crate) fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// An HTTP token (RFC 9110 field name): what a header name may be on the wire.
pub(crate) fn valid_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
