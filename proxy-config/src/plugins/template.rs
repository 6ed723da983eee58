//! The value templates of `request-transformer`: Kong renders `$(...)` in a value as Lua over the
//! request (`headers`, `query_params`, `uri_captures`, `shared`). sluice has no Lua, so it
//! implements the lookups people write and rejects every other expression at config time:
//!
//! - `$(headers.name)`, `$(headers["name"])` (case-insensitive; `_` also matches `-`, as nginx does)
//! - `$(query_params.name)`, `$(query_params["name"])`
//! - `$(uri_captures.name)`, `$(uri_captures["name"])`, `$(uri_captures[1])` (`[0]` = whole match)
//! - any of these followed by `or "fallback"` (or `'fallback'`), used when the value is absent
//!
//! An absent value without a fallback renders as the empty string. Text outside `$(...)` is kept
//! as is, as is a `$` not followed by `(`.

use std::borrow::Cow;
use std::fmt;

/// Where a template variable reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Headers,
    QueryParams,
    UriCaptures,
}

/// A variable's key: a name, or a capture group's number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Name(String),
    Index(usize),
}

/// One `$(...)` of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var {
    pub source: Source,
    pub key: Key,
    pub fallback: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

/// A parsed value template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses a value; `Err` says which expression sluice cannot render.
    pub fn parse(value: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = value;
        while let Some(at) = rest.find("$(") {
            text.push_str(&rest[..at]);
            let inner = &rest[at + 2..];
            let end = closing_paren(inner).ok_or_else(|| format!("value '{value}' has an unclosed '$('"))?;
            let expr = &inner[..end];
            let var = parse_expr(expr).ok_or_else(|| {
                format!(
                    "template '$({expr})' is not supported by sluice: use $(headers.<name>), \
                     $(query_params.<name>) or $(uri_captures.<name>|[<n>]), optionally followed by or \"<fallback>\""
                )
            })?;
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Var(var));
            rest = &inner[end + 1..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template { parts })
    }

    /// The value when it has no variables.
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// The variables the template reads.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v),
            Part::Text(_) => None,
        })
    }

    /// Renders with `lookup` answering each variable (`None` = absent).
    pub fn render<'v>(&self, mut lookup: impl FnMut(Source, &Key) -> Option<Cow<'v, str>>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => match lookup(v.source, &v.key) {
                    Some(s) => out.push_str(&s),
                    None => out.push_str(v.fallback.as_deref().unwrap_or("")),
                },
            }
        }
        out
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Headers => "headers",
            Source::QueryParams => "query_params",
            Source::UriCaptures => "uri_captures",
        })
    }
}

/// The index of the `)` closing a `$(` whose inside starts `s`, skipping quoted strings and
/// nested parentheses.
fn closing_paren(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for (i, ch) in s.char_indices() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(ch),
            (None, '(') => depth += 1,
            (None, ')') if depth == 0 => return Some(i),
            (None, ')') => depth -= 1,
            _ => {}
        }
    }
    None
}

fn parse_expr(expr: &str) -> Option<Var> {
    let expr = expr.trim();
    let (reference, fallback) = match split_or(expr) {
        Some((r, f)) => (r.trim_end(), Some(parse_string(f.trim())?)),
        None => (expr, None),
    };
    let (source, rest) =
        [("headers", Source::Headers), ("query_params", Source::QueryParams), ("uri_captures", Source::UriCaptures)]
            .into_iter()
            .find_map(|(name, src)| reference.strip_prefix(name).map(|rest| (src, rest)))?;
    let key = if let Some(name) = rest.strip_prefix('.') {
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || name.as_bytes()[0].is_ascii_digit()
        {
            return None;
        }
        Key::Name(name.to_string())
    } else {
        let inner = rest.strip_prefix('[')?.strip_suffix(']')?.trim();
        match parse_string(inner) {
            Some(s) => Key::Name(s),
            None if source == Source::UriCaptures => Key::Index(inner.parse().ok()?),
            None => return None,
        }
    };
    Some(Var { source, key, fallback })
}

/// Splits `ref or "x"` at the ` or ` outside quotes.
fn split_or(expr: &str) -> Option<(&str, &str)> {
    let mut quote: Option<char> = None;
    for (i, ch) in expr.char_indices() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(ch),
            (None, c) if c.is_whitespace() => {
                let after = expr[i..].trim_start();
                if let Some(f) = after.strip_prefix("or") {
                    if f.starts_with(char::is_whitespace) || f.starts_with(['"', '\'']) {
                        return Some((&expr[..i], f));
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// A Lua string literal in double or single quotes, without escapes.
fn parse_string(s: &str) -> Option<String> {
    let q = s.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let inner = s.strip_prefix(q)?.strip_suffix(q)?;
    if inner.contains(q) || inner.contains('\\') {
        return None;
    }
    Some(inner.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str) -> String {
        Template::parse(t).unwrap().render(|src, key| match (src, key) {
            (Source::Headers, Key::Name(n)) if n == "x-user" => Some(Cow::Borrowed("ann")),
            (Source::QueryParams, Key::Name(n)) if n == "q" => Some(Cow::Borrowed("42")),
            (Source::UriCaptures, Key::Index(1)) => Some(Cow::Borrowed("7")),
            (Source::UriCaptures, Key::Name(n)) if n == "id" => Some(Cow::Borrowed("9")),
            _ => None,
        })
    }

    #[test]
    fn supported_forms_render() {
        for (template, want) in [
            ("plain", "plain"),
            ("", ""),
            ("cost $5", "cost $5"),
            ("$(headers[\"x-user\"])", "ann"),
            ("$(headers['x-user'])!", "ann!"),
            ("u=$(headers.x_user)", "u="), // the name as written; the caller maps `_` to `-`
            ("$(query_params.q)-$(query_params[\"q\"])", "42-42"),
            ("/users/$(uri_captures[1])/$(uri_captures.id)", "/users/7/9"),
            ("$(uri_captures[\"id\"])", "9"),
            ("$(headers.missing)", ""),
            ("$(headers.missing or \"anon\")", "anon"),
            ("$( headers[\"missing\"] or 'x y' )", "x y"),
            ("$(headers[\"x-user\"] or \"anon\")", "ann"),
        ] {
            assert_eq!(render(template), want, "{template}");
        }
    }

    #[test]
    fn literal_and_vars() {
        assert_eq!(Template::parse("a").unwrap().literal(), Some("a"));
        let t = Template::parse("$(headers.a)$(uri_captures[2])").unwrap();
        assert_eq!(t.literal(), None);
        let vars: Vec<_> = t.vars().map(|v| (v.source, v.key.clone())).collect();
        assert_eq!(vars, [(Source::Headers, Key::Name("a".into())), (Source::UriCaptures, Key::Index(2))]);
    }

    #[test]
    fn lua_beyond_lookups_is_rejected() {
        for bad in [
            "$(shared.x)",
            "$(headers)",
            "$(headers[1])",
            "$(query_params[2])",
            "$(headers.a:upper())",
            "$((function() return 1 end)())",
            "$(headers.a .. 'x')",
            "$(headers.a or b)",
            "$(uri_captures[x])",
            "$(headers['a\\'b'])",
            "$(headers.a",
            "$(os.time())",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}
