//! Splits a job file into statements, remembering the line each one starts on.

/// One statement of a job file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawStatement {
    /// Line (1-based) of the statement's first token.
    pub line: usize,
    /// The statement text, preceded by as many newlines as lines before it, so
    /// that positions reported by the SQL parser are positions in the file.
    pub text: String,
}

/// Splits on `;` outside quotes and comments; empty statements are dropped.
pub fn split_statements(text: &str) -> Vec<RawStatement> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    // `first` is the (line, byte) of the statement's first token: leading
    // comments and blank lines are not part of the statement.
    let (mut i, mut line, mut first) = (0, 1, None::<(usize, usize)>);
    let mut push = |to: usize, first: Option<(usize, usize)>| {
        if let Some((l, from)) = first {
            let body = &text[from..to];
            let lines_before = text[..from].matches('\n').count();
            out.push(RawStatement {
                line: l,
                text: format!("{}{}", "\n".repeat(lines_before), body),
            });
        }
    };
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\n' => line += 1,
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    line += (bytes[i] == b'\n') as usize;
                    i += 1;
                }
                i += 2;
                continue;
            }
            b'\'' | b'"' | b'`' => {
                first.get_or_insert((line, i));
                i += 1;
                while i < bytes.len() && bytes[i] != c {
                    line += (bytes[i] == b'\n') as usize;
                    i += 1;
                }
            }
            b';' => push(i, first.take()),
            c if !c.is_ascii_whitespace() => {
                first.get_or_insert((line, i));
            }
            _ => {}
        }
        i += 1;
    }
    push(text.len(), first);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_quotes_and_comments() {
        let text = "-- a; comment\nCREATE TABLE a (x TEXT) WITH (p = 'a;b');\n\n/* ; */ INSERT INTO b\nSELECT 1;  \n";
        let stmts = split_statements(text);
        assert_eq!(stmts.len(), 2);
        assert_eq!(stmts[0].line, 2);
        assert!(stmts[0].text.contains("'a;b'"));
        assert_eq!(stmts[1].line, 4);
        assert!(stmts[1].text.trim_start().starts_with("INSERT"));
        // Positions inside the text are positions in the file.
        assert_eq!(
            stmts[1].text.lines().position(|l| l.contains("INSERT")),
            Some(3)
        );
    }
}
