//! A linear pre-check of a YAML config's nesting depth, run before the YAML parser. The parser's
//! cost grows with the square of the depth of nested flow collections (`[[[[…]]]]`: 20,000
//! levels took 3.7 s and 50,000 levels 25 s of one core), so one hostile push could hold a core
//! for minutes. Kong configs nest about a dozen levels deep; past [`MAX_DEPTH`] the text is
//! refused at once with the line where it went too deep. (JSON needs no such check: serde_json
//! stops at 128 levels by itself, in linear time.)
//!
//! The scan knows just enough YAML to count nesting: block indentation and compact `- - x`
//! sequences, flow brackets outside quoted scalars and comments, and the lines of block scalars
//! (`|`, `>`), whose text is data and is skipped. It can over-count only on exotic plain
//! scalars, and only by the brackets they contain.

use crate::errors::ParseError;

/// Deepest nesting (block levels + flow levels) accepted in a YAML config.
pub const MAX_DEPTH: usize = 64;

/// `Err` naming the first line where the nesting passes `max`.
pub(crate) fn check(text: &str, max: usize) -> Result<(), ParseError> {
    let mut scan = Scan::default();
    for (i, line) in text.lines().enumerate() {
        if scan.line(line) > max {
            return Err(ParseError::TooDeep { line: i + 1, max });
        }
    }
    Ok(())
}

#[derive(Default)]
struct Scan {
    /// Indents of the open block nodes.
    blocks: Vec<usize>,
    /// Open flow collections (`[`, `{`).
    flow: usize,
    /// Inside a quoted scalar that spans lines: its quote character.
    quote: Option<u8>,
    /// Inside a block scalar whose parent line had this indent.
    block_scalar: Option<usize>,
}

impl Scan {
    /// Scans one line; returns the depth reached on it.
    fn line(&mut self, line: &str) -> usize {
        let bytes = line.as_bytes();
        let indent = bytes.iter().take_while(|&&b| b == b' ').count();
        let rest = &bytes[indent..];
        if let Some(parent) = self.block_scalar {
            if rest.is_empty() || indent > parent {
                return 0;
            }
            self.block_scalar = None;
        }
        if self.quote.is_none() && self.flow == 0 {
            if rest.is_empty() || rest[0] == b'#' {
                return 0;
            }
            while self.blocks.last().is_some_and(|&b| b >= indent) {
                self.blocks.pop();
            }
            self.blocks.push(indent);
        }
        let mut depth = self.blocks.len() + self.flow;
        let mut deepest = depth;
        // Compact nested sequences (`- - - x`) open one level per dash.
        let mut at = 0;
        if self.quote.is_none() && self.flow == 0 {
            while rest.get(at) == Some(&b'-') && matches!(rest.get(at + 1), Some(b' ') | None) {
                depth += 1;
                at += 2;
                while rest.get(at) == Some(&b' ') {
                    at += 1;
                }
            }
            deepest = deepest.max(depth);
        }
        let mut scalar_start = true;
        while at < rest.len() {
            let c = rest[at];
            match self.quote {
                Some(b'\'') => {
                    if c == b'\'' {
                        if rest.get(at + 1) == Some(&b'\'') {
                            at += 1;
                        } else {
                            self.quote = None;
                        }
                    }
                }
                Some(_) => {
                    if c == b'\\' {
                        at += 1;
                    } else if c == b'"' {
                        self.quote = None;
                    }
                }
                None => match c {
                    b'#' if at == 0 || rest[at - 1] == b' ' || rest[at - 1] == b'\t' => break,
                    b'\'' | b'"' if scalar_start => self.quote = Some(c),
                    b'[' | b'{' if scalar_start || self.flow > 0 => {
                        self.flow += 1;
                        deepest = deepest.max(self.blocks.len() + self.flow);
                    }
                    b']' | b'}' if self.flow > 0 => self.flow -= 1,
                    b'|' | b'>' if scalar_start && self.flow == 0 && block_indicator(&rest[at + 1..]) => {
                        self.block_scalar = Some(indent);
                        break;
                    }
                    _ => {}
                },
            }
            // A scalar starts after an indicator (`:`, `-`, `,`, `[`, `{`, `?`) and the spaces that follow it.
            scalar_start = self.quote.is_none()
                && match c {
                    b' ' | b'\t' => {
                        scalar_start || matches!(at.checked_sub(1).map(|p| rest[p]), Some(b':' | b'-' | b'?'))
                    }
                    b'[' | b'{' | b',' => self.flow > 0,
                    _ => false,
                };
            at += 1;
        }
        deepest
    }
}

/// What may follow `|` or `>` on a block scalar's header line: chomping and indentation
/// indicators, then spaces and an optional comment.
fn block_indicator(after: &[u8]) -> bool {
    let head = after.iter().take_while(|&&b| matches!(b, b'-' | b'+' | b'1'..=b'9')).count();
    let tail = &after[head..];
    let spaces = tail.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    spaces == tail.len() || (spaces > 0 && tail[spaces] == b'#')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(text: &str) -> usize {
        let mut scan = Scan::default();
        text.lines().map(|l| scan.line(l)).max().unwrap_or(0)
    }

    #[test]
    fn counts_block_and_flow_levels() {
        assert_eq!(depth("a: 1\n"), 1);
        assert_eq!(depth("a:\n  b:\n    c: 1\n"), 3);
        assert_eq!(depth("a:\n- - - x\n"), 4);
        assert_eq!(depth("a: [1, [2, {b: [3]}]]\n"), 5);
        assert_eq!(depth("a: [\n  [\n    1\n  ]\n]\nb: 1\n"), 3);
    }

    #[test]
    fn brackets_in_quotes_plain_scalars_comments_and_block_scalars_do_not_count() {
        assert_eq!(depth("a: '[[[['\nb: \"{{[[\\\"\"\n"), 1);
        assert_eq!(depth("a: it's [not] a flow\n"), 1);
        assert_eq!(depth("a: x # [[[[\n# [[[[[[\n"), 1);
        assert_eq!(depth("a: |\n  [[[[[[\n  {{{{\nb: [1]\n"), 2);
        assert_eq!(depth("a: >-\n  [[[[\n\n  [[[\nb: 1\n"), 1);
        assert_eq!(depth("a: 'it''s [x'\n"), 1);
    }

    #[test]
    fn refuses_deep_flow_nesting_naming_the_line_without_parsing_it() {
        let text = format!("_format_version: \"3.0\"\nservices: {}{}\n", "[".repeat(200_000), "]".repeat(200_000));
        assert_eq!(check(&text, MAX_DEPTH), Err(ParseError::TooDeep { line: 2, max: MAX_DEPTH }));
        let indented: String = (0..100).map(|i| format!("{}- \n", " ".repeat(i))).collect();
        assert_eq!(
            check(&format!("services:\n{indented}"), MAX_DEPTH),
            Err(ParseError::TooDeep { line: 65, max: MAX_DEPTH })
        );
    }

    #[test]
    fn a_realistic_config_passes() {
        let text = "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://a:80\n  routes:\n  - name: r\n    paths: [\"~/v[0-9]+/x\"]\n    plugins:\n    - name: cors\n      config: {origins: [\"*\"], headers: [a, b]}\n";
        assert!(check(text, MAX_DEPTH).is_ok());
        assert_eq!(depth(text), 6);
    }
}
