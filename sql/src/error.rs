//! Errors of the job-file dialect. Every error names the file and line at fault.

use std::fmt;

/// An error in a job file: where it is, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// The job file's name as the user gave it (e.g. `jobs/ohlc_1m.sql`).
    pub file: String,
    /// 1-based line of the statement or option at fault (0 when not known).
    pub line: usize,
    /// What is wrong, naming the statement, option or column.
    pub message: String,
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(f, "{}: {}", self.file, self.message)
        }
    }
}

impl std::error::Error for SqlError {}

/// Result type of this crate.
pub type Result<T, E = SqlError> = std::result::Result<T, E>;

/// A located error before the file name is known: `(line, message)`.
/// Parsing helpers return it; [`crate::JobFile::parse`] attaches the file name.
pub type LineError = (usize, String);

/// Return early with a [`LineError`], in the spirit of DataFusion's `plan_err!`.
macro_rules! line_err {
    ($line:expr, $($arg:tt)*) => {
        return Err(($line, format!($($arg)*)))
    };
}
pub(crate) use line_err;

/// A sqlparser error as a [`LineError`]: the line is the one the parser
/// names (our statement text is padded so its lines are the file's), else
/// the statement's `line`.
pub(crate) fn parser_error(line: usize, e: impl std::fmt::Display) -> LineError {
    let text = e.to_string();
    let text = text.strip_prefix("sql parser error: ").unwrap_or(&text);
    match text.rsplit_once(" at Line: ") {
        Some((message, position)) => {
            let mut parts = position.split(", Column: ");
            let at_line = parts
                .next()
                .and_then(|l| l.trim().parse().ok())
                .unwrap_or(line);
            match parts.next() {
                Some(column) => (at_line, format!("{message} (column {})", column.trim())),
                None => (at_line, message.to_string()),
            }
        }
        None => (line, text.to_string()),
    }
}
