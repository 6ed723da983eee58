//! `google.api.http` path templates (`/v1/{name=shelves/*}/books/{book.id}:verb`): parsed once
//! at config time into segments, matched per request without allocating for literal segments.
//! The grammar is googleapis' `http.proto`: `*` is one segment, `**` the rest of the path (last
//! only), `{field.path}` is `{field.path=*}`.

use thiserror::Error;

/// Why a template does not parse; the message names the template.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("path template '{template}': {why}")]
pub struct TemplateError {
    pub template: String,
    pub why: String,
}

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `*`: exactly one segment.
    Star,
    /// `**`: every remaining segment (zero or more).
    Rest,
}

/// A parsed template: its segments, each tagged with the variable (index into `variables`) it
/// belongs to, and the custom verb after `:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    pub segments: Vec<(Segment, Option<usize>)>,
    /// Field paths of the variables, as written (`book.id`).
    pub variables: Vec<String>,
    pub verb: Option<String>,
}

impl PathTemplate {
    pub fn parse(template: &str) -> Result<PathTemplate, TemplateError> {
        let err = |why: &str| TemplateError { template: template.to_string(), why: why.to_string() };
        let Some(rest) = template.strip_prefix('/') else { return Err(err("must start with '/'")) };
        // The verb is after the last ':' outside braces.
        let (path, verb) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('}') => (&rest[..i], Some(rest[i + 1..].to_string())),
            _ => (rest, None),
        };
        let mut segments = Vec::new();
        let mut variables = Vec::new();
        let mut chars = path;
        while !chars.is_empty() {
            if let Some(inner) = chars.strip_prefix('{') {
                let end = inner.find('}').ok_or_else(|| err("'{' without '}'"))?;
                let (field, pattern) = match inner[..end].split_once('=') {
                    Some((f, p)) => (f, p),
                    None => (&inner[..end], "*"),
                };
                if field.is_empty() || !field.split('.').all(is_ident) {
                    return Err(err(&format!("'{field}' is not a field path")));
                }
                let var = variables.len();
                variables.push(field.to_string());
                for s in pattern.split('/') {
                    segments.push((segment(s).map_err(|w| err(&w))?, Some(var)));
                }
                chars = &inner[end + 1..];
            } else {
                let end = chars.find('/').unwrap_or(chars.len());
                segments.push((segment(&chars[..end]).map_err(|w| err(&w))?, None));
                chars = &chars[end..];
            }
            if let Some(next) = chars.strip_prefix('/') {
                if next.is_empty() {
                    return Err(err("ends with '/'"));
                }
                chars = next;
            } else if !chars.is_empty() {
                return Err(err("a variable must be a whole segment"));
            }
        }
        if segments.iter().rev().skip(1).any(|(s, _)| *s == Segment::Rest) {
            return Err(err("'**' must be the last segment"));
        }
        Ok(PathTemplate { segments, variables, verb })
    }

    /// Matches a request path (without query); `Some` holds each variable's value (its segments
    /// joined with '/', still percent-encoded).
    pub fn matches<'p>(&self, path: &'p str) -> Option<Vec<&'p str>> {
        let rest = path.strip_prefix('/')?;
        let rest = match &self.verb {
            Some(v) => rest.strip_suffix(v.as_str())?.strip_suffix(':')?,
            None => rest,
        };
        let parts: Vec<&str> = if rest.is_empty() { Vec::new() } else { rest.split('/').collect() };
        // Byte ranges of each variable within `rest`.
        let mut spans: Vec<Option<(usize, usize)>> = vec![None; self.variables.len()];
        let mut offset = 0;
        let mut i = 0;
        for (seg, var) in &self.segments {
            let (start, end) = match seg {
                Segment::Rest => {
                    let end = rest.len();
                    i = parts.len();
                    (offset.min(end), end)
                }
                _ => {
                    let p = parts.get(i)?;
                    if let Segment::Literal(l) = seg {
                        if l != p {
                            return None;
                        }
                    } else if p.is_empty() {
                        return None;
                    }
                    i += 1;
                    (offset, offset + p.len())
                }
            };
            offset = end + 1;
            if let Some(v) = var {
                let span = spans[*v].get_or_insert((start, end));
                span.1 = end;
            }
        }
        if i != parts.len() {
            return None;
        }
        Some(spans.into_iter().map(|s| s.map_or("", |(a, b)| &rest[a..b])).collect())
    }
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_') && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

fn segment(s: &str) -> Result<Segment, String> {
    Ok(match s {
        "*" => Segment::Star,
        "**" => Segment::Rest,
        "" => return Err("empty segment".into()),
        _ if s.contains(['{', '}', '*']) => return Err(format!("bad segment '{s}'")),
        _ => Segment::Literal(s.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_variables_and_verbs() {
        let t = PathTemplate::parse("/v1/{name=shelves/*/books/*}:publish").unwrap();
        assert_eq!(t.matches("/v1/shelves/1/books/2:publish"), Some(vec!["shelves/1/books/2"]));
        assert_eq!(t.matches("/v1/shelves/1/books/2"), None);
        let t = PathTemplate::parse("/v1/shelves/{shelf.id}/files/{path=**}").unwrap();
        assert_eq!(t.matches("/v1/shelves/7/files/a/b/c"), Some(vec!["7", "a/b/c"]));
        assert_eq!(t.matches("/v1/shelves//files/a"), None);
        assert!(PathTemplate::parse("/v1/{a=**}/x").is_err());
        assert!(PathTemplate::parse("v1").is_err());
        assert!(PathTemplate::parse("/v1/x{a}").is_err());
    }
}
