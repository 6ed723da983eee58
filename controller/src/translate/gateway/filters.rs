//! Gateway API header matches and filters in Kong terms.
//!
//! - Header matches: Kong compares plain header values case-insensitively, but the Gateway API's
//!   Exact is case-sensitive, so every value becomes a `~*` regex with case-insensitivity switched
//!   back off inside (`(?-i:...)`), anchored as a full match.
//! - RequestHeaderModifier / ResponseHeaderModifier → `request-transformer` /
//!   `response-transformer` plugins on the route: `set` = `replace` + `add` (replace acts when the
//!   header exists, add when it is absent: together they overwrite), `add` = Kong's `append`,
//!   `remove` = `remove`. Kong applies remove → rename → replace → add → append, which is the
//!   order the Gateway API expects.
//! - Rules whose refs cannot be honoured answer with `request-termination`.

use proxy_config::patterns::{compile_header_regex, REGEX_HEADER_PREFIX};
use proxy_config::{Plugin, TerminationConfig, TransformOps, TransformerConfig};

use super::model::HeaderMods;

/// A case-sensitive exact header value condition.
pub(crate) fn header_value_exact(value: &str) -> Result<String, String> {
    let pattern = format!("^(?-i:{})$", regex::escape(value));
    compile_header_regex(&pattern)?;
    Ok(format!("{REGEX_HEADER_PREFIX}{pattern}"))
}

/// A case-sensitive regex header value condition, anchored as a full match.
pub(crate) fn header_value_regex(value: &str) -> Result<String, String> {
    let pattern = format!("^(?-i:(?:{value}))$");
    compile_header_regex(&pattern)?;
    Ok(format!("{REGEX_HEADER_PREFIX}{pattern}"))
}

/// Whether a header name is an HTTP token (what Kong accepts).
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A transformer plugin for a header modifier; `Err` names the first bad header.
pub(crate) fn transformer(name: &str, mods: &HeaderMods, tags: &[String]) -> Result<Plugin, String> {
    let mut config = TransformerConfig::default();
    let pair = |n: &str, v: &str| -> Result<String, String> {
        if !valid_name(n) {
            return Err(format!("invalid header name '{n}'"));
        }
        if v.chars().any(|c| c.is_control()) {
            return Err(format!("invalid value for header '{n}'"));
        }
        Ok(format!("{}:{v}", n.to_ascii_lowercase()))
    };
    let ops =
        |list: &[(String, String)]| -> Result<Vec<String>, String> { list.iter().map(|(n, v)| pair(n, v)).collect() };
    let set = ops(&mods.set)?;
    config.replace = TransformOps { headers: set.clone(), ..Default::default() };
    config.add = TransformOps { headers: set, ..Default::default() };
    config.append = TransformOps { headers: ops(&mods.add)?, ..Default::default() };
    let mut remove = Vec::new();
    for n in &mods.remove {
        if !valid_name(n) {
            return Err(format!("invalid header name '{n}'"));
        }
        remove.push(n.to_ascii_lowercase());
    }
    config.remove = TransformOps { headers: remove, ..Default::default() };
    let config = serde_json::to_value(&config).map_err(|e| e.to_string())?;
    Ok(plugin(name, config, tags))
}

/// A `request-termination` plugin.
pub(crate) fn termination(status_code: u16, message: &str, tags: &[String]) -> Plugin {
    let config = TerminationConfig { status_code, message: Some(message.to_string()), body: None, content_type: None };
    // Serializing a plain struct of strings and integers cannot fail.
    plugin("request-termination", serde_json::to_value(&config).unwrap_or_default(), tags)
}

fn plugin(name: &str, config: serde_json::Value, tags: &[String]) -> Plugin {
    Plugin {
        id: None,
        name: name.to_string(),
        instance_name: None,
        route: None,
        service: None,
        consumer: None,
        enabled: true,
        protocols: None,
        config,
        tags: tags.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_header_values_are_case_sensitive() {
        let v = header_value_exact("Blue.1").unwrap();
        let re = compile_header_regex(v.strip_prefix(REGEX_HEADER_PREFIX).unwrap()).unwrap();
        assert!(re.is_match("Blue.1"));
        assert!(!re.is_match("blue.1"));
        assert!(!re.is_match("BlueX1"));
        assert!(!re.is_match("Blue.12"));
    }

    #[test]
    fn regex_header_values_are_full_matches() {
        let v = header_value_regex("v[12]").unwrap();
        let re = compile_header_regex(v.strip_prefix(REGEX_HEADER_PREFIX).unwrap()).unwrap();
        assert!(re.is_match("v1") && !re.is_match("v10") && !re.is_match("V1"));
        assert!(header_value_regex("(").is_err());
    }

    #[test]
    fn set_add_remove_map_to_kong_operations() {
        let mods = HeaderMods {
            set: vec![("X-Set".into(), "a".into())],
            add: vec![("X-Add".into(), "b".into())],
            remove: vec!["X-Remove".into()],
        };
        let p = transformer("request-transformer", &mods, &[]).unwrap();
        let c: TransformerConfig = serde_json::from_value(p.config).unwrap();
        assert_eq!(c.replace.headers, vec!["x-set:a"]);
        assert_eq!(c.add.headers, vec!["x-set:a"]);
        assert_eq!(c.append.headers, vec!["x-add:b"]);
        assert_eq!(c.remove.headers, vec!["x-remove"]);
        assert!(transformer(
            "request-transformer",
            &HeaderMods { remove: vec!["bad name".into()], ..Default::default() },
            &[]
        )
        .is_err());
    }
}
