//! Trailing clauses of a windowed statement, which say when its rows come
//! out and what happens to rows that come too late:
//!
//! ```text
//! INSERT INTO candles SELECT ... GROUP BY symbol, TUMBLE(ts, INTERVAL '1' MINUTE)
//!     EMIT EVERY INTERVAL '1' SECOND         -- or EMIT ON WINDOW CLOSE (default), EMIT ON UPDATE
//!     ALLOW LATENESS INTERVAL '30' SECOND    -- keep a window's state 30 s past its end
//!     LATE DATA TO trades_late;              -- rows later than that go to this sink table
//! ```
//!
//! They are not SQL that DataFusion knows, so they are cut off the statement
//! text (here, by tokens, so that a string or comment holding the words is
//! left alone) before the query is parsed.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use serde::{Deserialize, Serialize};

use crate::error::{line_err, parser_error, LineError};
use crate::window::interval_ms;

/// The shortest `EMIT EVERY` interval: each emission computes every changed
/// window, so a shorter one would spend the job on provisional rows (`EMIT ON
/// UPDATE` emits after every batch instead).
pub const MIN_EMIT_INTERVAL_MS: i64 = 100;

/// When a windowed statement emits a window's row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EmitPolicy {
    /// `EMIT ON WINDOW CLOSE`: once, when the watermark passes the window's end.
    #[default]
    OnWindowClose,
    /// `EMIT EVERY INTERVAL ...`: besides the final row, every interval
    /// (processing time) the current row of each window that changed since.
    Every {
        /// The interval in milliseconds.
        interval_ms: i64,
    },
    /// `EMIT ON UPDATE`: besides the final row, after every input batch the
    /// current row of each window the batch changed.
    OnUpdate,
}

impl std::fmt::Display for EmitPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OnWindowClose => write!(f, "EMIT ON WINDOW CLOSE"),
            Self::Every { interval_ms } => write!(f, "EMIT EVERY {interval_ms} ms"),
            Self::OnUpdate => write!(f, "EMIT ON UPDATE"),
        }
    }
}

/// The trailing clauses of one statement (all defaults when it has none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamClauses {
    /// `EMIT ...`.
    pub emit: EmitPolicy,
    /// `ALLOW LATENESS INTERVAL ...` in milliseconds (0 without the clause).
    pub lateness_ms: i64,
    /// `LATE DATA TO table`: the sink table rows too late for every window go to.
    pub late_data_to: Option<String>,
    /// The line of the first clause (for errors about them).
    pub line: usize,
}

impl StreamClauses {
    /// Whether the statement has any trailing clause.
    pub fn any(&self) -> bool {
        *self != Self::default()
    }
}

/// The columns a late row gets after its own (the source table's), in order.
pub const LATE_COLUMNS: [&str; 3] = ["late_reason", "watermark_at_arrival", "statement"];

/// The rows `LATE DATA TO` writes: the source's columns, then why the row
/// was late, the watermark when it arrived, and the statement's name.
pub fn late_row_schema(source: &arrow::datatypes::Schema) -> arrow::datatypes::Schema {
    use arrow::datatypes::{DataType, Field};
    let mut fields: Vec<Field> = source.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(LATE_COLUMNS[0], DataType::Utf8, false));
    fields.push(Field::new(
        LATE_COLUMNS[1],
        crate::ddl::timestamp_type(),
        false,
    ));
    fields.push(Field::new(LATE_COLUMNS[2], DataType::Utf8, false));
    arrow::datatypes::Schema::new(fields)
}

/// Splits the trailing clauses off statement `text` (starting on `line`):
/// returns the text without them (blanked out, so positions stay the
/// file's) and the clauses.
pub fn split_clauses(text: &str, line: usize) -> Result<(String, StreamClauses), LineError> {
    let tokens: Vec<TokenWithSpan> = Tokenizer::new(&GenericDialect {}, text)
        .tokenize_with_location()
        .map_err(|e| parser_error(line, e))?
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let (mut depth, mut grouped) = (0i32, false);
    for (i, t) in tokens.iter().enumerate() {
        match &t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ if depth == 0 && starts_clause(&tokens[i..]) => {
                // After the GROUP BY, the words are clauses and their errors are ours;
                // before it (or without one) only if they parse as clauses to the
                // end, so that a column `late` aliased `data` stays SQL.
                let clauses = match parse_clauses(&tokens[i..]) {
                    Ok(c) => c,
                    Err(e) if grouped => return Err(e),
                    Err(_) => continue,
                };
                let cut = byte_offset(text, t.span.start.line, t.span.start.column);
                let mut kept = text[..cut].to_string();
                kept.extend(
                    text[cut..]
                        .chars()
                        .map(|c| if c == '\n' { '\n' } else { ' ' }),
                );
                return Ok((kept, clauses));
            }
            _ if depth == 0 && word(Some(t)).as_deref() == Some("GROUP") => {
                grouped |= word(tokens.get(i + 1)).as_deref() == Some("BY");
            }
            _ => {}
        }
    }
    Ok((text.to_string(), StreamClauses::default()))
}

/// The word `t` is, upper-cased, if it is an unquoted word.
fn word(t: Option<&TokenWithSpan>) -> Option<String> {
    match t.map(|t| &t.token) {
        Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

fn starts_clause(tokens: &[TokenWithSpan]) -> bool {
    matches!(
        (
            word(tokens.first()).as_deref(),
            word(tokens.get(1)).as_deref()
        ),
        (Some("EMIT"), Some("ON" | "EVERY"))
            | (Some("ALLOW"), Some("LATENESS"))
            | (Some("LATE"), Some("DATA"))
    )
}

fn line_of(t: &TokenWithSpan) -> usize {
    t.span.start.line as usize
}

/// Parses clauses until the end of the statement; each may appear once.
fn parse_clauses(tokens: &[TokenWithSpan]) -> Result<StreamClauses, LineError> {
    let mut clauses = StreamClauses {
        line: line_of(&tokens[0]),
        ..Default::default()
    };
    let (mut emit, mut lateness, mut late) = (false, false, false);
    let mut at = 0;
    while at < tokens.len() {
        let line = line_of(&tokens[at]);
        let words: Vec<Option<String>> = (0..4).map(|k| word(tokens.get(at + k))).collect();
        let w = |k: usize| words[k].as_deref();
        let once = |seen: &mut bool, name: &str| {
            if std::mem::replace(seen, true) {
                Err((line, format!("{name} is given twice")))
            } else {
                Ok(())
            }
        };
        match (w(0), w(1)) {
            (Some("EMIT"), Some("ON")) if w(2) == Some("WINDOW") && w(3) == Some("CLOSE") => {
                once(&mut emit, "EMIT")?;
                clauses.emit = EmitPolicy::OnWindowClose;
                at += 4;
            }
            (Some("EMIT"), Some("ON")) if w(2) == Some("UPDATE") => {
                once(&mut emit, "EMIT")?;
                clauses.emit = EmitPolicy::OnUpdate;
                at += 3;
            }
            (Some("EMIT"), Some("EVERY")) => {
                once(&mut emit, "EMIT")?;
                let (interval_ms, used) = interval(&tokens[at + 2..], line, "EMIT EVERY")?;
                if interval_ms < MIN_EMIT_INTERVAL_MS {
                    line_err!(
                        line,
                        "EMIT EVERY {interval_ms} ms is too often: at least {MIN_EMIT_INTERVAL_MS} ms \
                         (EMIT ON UPDATE emits after every batch)"
                    );
                }
                clauses.emit = EmitPolicy::Every { interval_ms };
                at += 2 + used;
            }
            (Some("ALLOW"), Some("LATENESS")) => {
                once(&mut lateness, "ALLOW LATENESS")?;
                let (ms, used) = interval(&tokens[at + 2..], line, "ALLOW LATENESS")?;
                clauses.lateness_ms = ms;
                at += 2 + used;
            }
            (Some("LATE"), Some("DATA")) if w(2) == Some("TO") => {
                once(&mut late, "LATE DATA TO")?;
                let table = match tokens.get(at + 3).map(|t| &t.token) {
                    Some(Token::Word(name)) => match name.quote_style {
                        Some(_) => name.value.clone(),
                        None => name.value.to_ascii_lowercase(),
                    },
                    _ => line_err!(
                        line,
                        "LATE DATA TO needs a table name: LATE DATA TO trades_late"
                    ),
                };
                clauses.late_data_to = Some(table);
                at += 4;
            }
            _ => line_err!(
                line,
                "expected EMIT ON WINDOW CLOSE, EMIT EVERY INTERVAL ..., EMIT ON UPDATE, \
                 ALLOW LATENESS INTERVAL ... or LATE DATA TO table after the query, found `{}`",
                tokens[at].token
            ),
        }
    }
    Ok(clauses)
}

/// `INTERVAL '30' SECOND` or `INTERVAL '30 seconds'` at the start of
/// `tokens`: its milliseconds and how many tokens it took.
fn interval(
    tokens: &[TokenWithSpan],
    line: usize,
    clause: &str,
) -> Result<(i64, usize), LineError> {
    let usage = format!("{clause} INTERVAL '30' SECOND");
    let (Some("INTERVAL"), Some(Token::SingleQuotedString(value))) = (
        word(tokens.first()).as_deref(),
        tokens.get(1).map(|t| &t.token),
    ) else {
        line_err!(line, "{clause} needs an interval: {usage}");
    };
    let unit = word(tokens.get(2)).filter(|u| !matches!(u.as_str(), "EMIT" | "ALLOW" | "LATE"));
    let text = format!("INTERVAL '{value}' {}", unit.as_deref().unwrap_or(""));
    match interval_ms(&text) {
        Some(ms) => Ok((ms, 2 + usize::from(unit.is_some()))),
        None => line_err!(
            line,
            "{clause}: `{}` is not a positive interval of whole milliseconds, at most 366 days ({usage})",
            text.trim()
        ),
    }
}

/// The byte offset in `text` of 1-based `line` and `column` (in characters).
fn byte_offset(text: &str, line: u64, column: u64) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1) as usize)
        .map(str::len)
        .sum();
    let rest = &text[line_start..];
    rest.char_indices()
        .nth(column.saturating_sub(1) as usize)
        .map_or(text.len(), |(i, _)| line_start + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUERY: &str = "\nINSERT INTO out SELECT symbol, 'EMIT ON UPDATE' AS s, count(*) FROM t -- LATE DATA TO x\n\
                         GROUP BY symbol, TUMBLE(ts, INTERVAL '1' MINUTE)";

    #[test]
    fn clauses_are_cut_off_the_query() {
        let text = format!(
            "{QUERY}\n  EMIT EVERY INTERVAL '1' SECOND ALLOW LATENESS INTERVAL '30 seconds'\n  LATE DATA TO Late_Trades"
        );
        let (kept, clauses) = split_clauses(&text, 2).unwrap();
        assert_eq!(kept.trim_end(), QUERY.trim_end());
        assert_eq!(kept.lines().count(), text.lines().count(), "lines kept");
        assert_eq!(
            clauses,
            StreamClauses {
                emit: EmitPolicy::Every { interval_ms: 1000 },
                lateness_ms: 30_000,
                late_data_to: Some("late_trades".into()),
                line: 4,
            }
        );
        let (kept, clauses) = split_clauses(QUERY, 2).unwrap();
        assert_eq!((kept.as_str(), clauses.any()), (QUERY, false));
        let (_, c) = split_clauses(&format!("{QUERY} EMIT ON UPDATE"), 2).unwrap();
        assert_eq!(c.emit, EmitPolicy::OnUpdate);
        let (_, c) = split_clauses(&format!("{QUERY} emit on window close"), 2).unwrap();
        assert_eq!((c.emit, c.any()), (EmitPolicy::OnWindowClose, true));
    }

    #[test]
    fn bad_clauses_name_their_line() {
        let bad = |tail: &str| split_clauses(&format!("{QUERY}\n{tail}"), 2).unwrap_err();
        assert_eq!(bad("EMIT EVERY INTERVAL '10' MILLISECOND").0, 4);
        assert!(bad("EMIT EVERY INTERVAL '10' MILLISECOND")
            .1
            .contains("too often"));
        assert!(bad("EMIT ON UPDATE EMIT ON UPDATE")
            .1
            .contains("EMIT is given twice"));
        assert!(bad("ALLOW LATENESS 30").1.contains("needs an interval"));
        assert!(bad("ALLOW LATENESS INTERVAL '1e30' DAY")
            .1
            .contains("at most 366 days"));
        assert!(bad("LATE DATA TO").1.contains("needs a table name"));
        assert!(bad("EMIT ON UPDATE LIMIT 5").1.contains("found `LIMIT`"));
        // Before a GROUP BY the words may be SQL: a column `late` aliased `data`.
        let sql = "\nSELECT symbol, late data FROM t";
        assert_eq!(
            split_clauses(sql, 2).unwrap(),
            (sql.to_string(), StreamClauses::default())
        );
    }
}
