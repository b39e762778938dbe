//! `${VAR}` and `${VAR:-default}` substitution, so that brokers, lake URLs and
//! credentials come from the environment and are never written in job files.

use crate::error::{line_err, LineError};

/// Replaces every `${NAME}` / `${NAME:-default}` in `text` using `lookup`.
///
/// An unset variable without a default is an error naming its line: a job
/// that silently ran against an empty broker list would be worse.
/// `$$` stands for a literal `$`. Inside a quoted literal (`'${PW}'`) a
/// value's `'` is doubled, so any value stays one literal: a password with a
/// quote in it neither breaks the statement nor shows up in a parse error.
pub fn substitute(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, LineError> {
    let mut out = String::with_capacity(text.len());
    let mut quotes = QuoteState::default();
    let mut line = 1;
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        let (before, after) = rest.split_at(pos);
        line += before.matches('\n').count();
        quotes.scan(before);
        out.push_str(before);
        if let Some(tail) = after.strip_prefix("$$") {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body_and_tail) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        let Some(end) = body_and_tail.find('}') else {
            line_err!(
                line,
                "unterminated `${{` (expected `${{NAME}}` or `${{NAME:-default}}`)"
            );
        };
        let body = &body_and_tail[..end];
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            line_err!(line, "invalid variable name `{name}` in `${{{body}}}`");
        }
        let quoted = |v: &str| match quotes.in_literal() {
            true => v.replace('\'', "''"),
            false => v.to_string(),
        };
        let value = match (lookup(name), default) {
            (Some(value), _) if !value.is_empty() => quoted(&value),
            (_, Some(default)) => default.to_string(),
            (Some(empty), None) => empty,
            (None, None) => line_err!(
                line,
                "environment variable `{name}` is not set (write `${{{name}:-default}}` to give a default)"
            ),
        };
        quotes.scan(&value);
        out.push_str(&value);
        rest = &body_and_tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Where a scan of SQL text stands: inside a `'...'` literal, or a comment.
#[derive(Default)]
struct QuoteState {
    in_quote: bool,
    line_comment: bool,
    block_comment: bool,
    /// The last byte seen, to find `--`, `/*` and `*/` across chunks.
    last: u8,
}

impl QuoteState {
    /// Follows `chunk`, the text that comes next.
    fn scan(&mut self, chunk: &str) {
        for &b in chunk.as_bytes() {
            if self.line_comment {
                self.line_comment = b != b'\n';
            } else if self.block_comment {
                self.block_comment = !(self.last == b'*' && b == b'/');
            } else if b == b'\'' {
                self.in_quote = !self.in_quote; // `''` toggles twice: still inside
            } else if !self.in_quote && self.last == b'-' && b == b'-' {
                self.line_comment = true;
            } else if !self.in_quote && self.last == b'/' && b == b'*' {
                self.block_comment = true;
            }
            self.last = b;
        }
    }

    fn in_literal(&self) -> bool {
        self.in_quote && !self.line_comment && !self.block_comment
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "BROKERS" => Some("k1:9092".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_set_variables_and_defaults() {
        let s = substitute("a ${BROKERS} b ${LAKE:-./lake} ${EMPTY:-x} $$ $5", &env).unwrap();
        assert_eq!(s, "a k1:9092 b ./lake x $ $5");
    }

    #[test]
    fn unset_variable_names_its_line() {
        let err = substitute("one\ntwo ${NOPE}\n", &env).unwrap_err();
        assert_eq!(err.0, 2);
        assert!(err.1.contains("`NOPE` is not set"), "{}", err.1);
    }

    #[test]
    fn quotes_in_values_stay_inside_their_literal() {
        let env = |name: &str| (name == "PW").then(|| "ab'cd".to_string());
        let s = substitute("-- it's a comment\npassword = '${PW}', other = ${PW}", &env).unwrap();
        assert_eq!(s, "-- it's a comment\npassword = 'ab''cd', other = ab'cd");
    }

    #[test]
    fn unterminated_is_an_error() {
        assert!(substitute("x ${A", &env).is_err());
    }
}
