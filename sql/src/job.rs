//! A parsed job file: its tables and its `INSERT` statements.

use datafusion::sql::sqlparser::{
    ast::{GroupByExpr, Query, SelectItem, SetExpr, Statement, TableFactor, TableObject},
    dialect::GenericDialect,
    parser::Parser,
};

use crate::clauses::{split_clauses, StreamClauses};
use crate::ddl::{parse_create_table, TableDef};
use crate::error::{line_err, parser_error, LineError, Result, SqlError};
use crate::split::split_statements;
use crate::substitute::substitute;
use crate::window::{rewrite_window, FoundWindow};

/// One `INSERT INTO sink SELECT ...` statement.
#[derive(Debug, Clone, PartialEq)]
pub struct InsertDef {
    /// Line of the statement.
    pub line: usize,
    /// The sink table written to.
    pub sink: String,
    /// The source table read from.
    pub source: String,
    /// The query, with any TUMBLE/HOP already rewritten to window columns.
    pub query: Box<Query>,
    /// The event-time window, if the query groups by one.
    pub window: Option<FoundWindow>,
    /// The view the statement reads with `SELECT * FROM view`, if any:
    /// statements reading the same view share one computation.
    pub view: Option<String>,
    /// Its trailing `EMIT` / `ALLOW LATENESS` / `LATE DATA TO` clauses (the view's, for a view).
    pub clauses: StreamClauses,
}

/// `CREATE VIEW name AS SELECT ...`: a query several `INSERT`s can share.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewDef {
    /// Normalized view name.
    pub name: String,
    /// Line of the statement.
    pub line: usize,
    /// The source table the view reads.
    pub source: String,
    /// The query, with any TUMBLE/HOP already rewritten to window columns.
    pub query: Box<Query>,
    /// The event-time window, if the query groups by one.
    pub window: Option<FoundWindow>,
    /// Its trailing `EMIT` / `ALLOW LATENESS` / `LATE DATA TO` clauses.
    pub clauses: StreamClauses,
}

/// A job file after variable substitution and parsing.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFile {
    /// The file name, for error messages.
    pub file: String,
    /// `CREATE TABLE` statements, in file order.
    pub tables: Vec<TableDef>,
    /// `CREATE VIEW` statements, in file order.
    pub views: Vec<ViewDef>,
    /// `INSERT` statements, in file order.
    pub inserts: Vec<InsertDef>,
}

impl JobFile {
    /// Parses `text` (the contents of `file`), substituting `${VAR}` with `env`.
    pub fn parse(file: &str, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let at = |(line, message): LineError| SqlError {
            file: file.to_string(),
            line,
            message,
        };
        let text = substitute(text, env).map_err(at)?;
        let mut job = JobFile {
            file: file.to_string(),
            tables: Vec::new(),
            views: Vec::new(),
            inserts: Vec::new(),
        };
        for stmt in split_statements(&text) {
            check_size(&stmt.text, stmt.line).map_err(at)?;
            let first_words: Vec<String> = stmt
                .text
                .split_whitespace()
                .take(2)
                .map(|w| w.to_ascii_uppercase())
                .collect();
            match first_words
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .as_slice()
            {
                ["CREATE", "TABLE"] => {
                    let table = parse_create_table(&stmt.text, stmt.line).map_err(at)?;
                    job.check_new_name(&table.name, stmt.line).map_err(at)?;
                    job.tables.push(table);
                }
                ["CREATE", "VIEW"] => {
                    let view = parse_view(&stmt.text, stmt.line).map_err(at)?;
                    job.check_new_name(&view.name, stmt.line).map_err(at)?;
                    if job.view(&view.source).is_some() {
                        return Err(at((
                            stmt.line,
                            format!(
                                "view `{}` reads view `{}`: views over views are not supported yet",
                                view.name, view.source
                            ),
                        )));
                    }
                    job.views.push(view);
                }
                ["INSERT", ..] => {
                    let insert = parse_insert(&stmt.text, stmt.line, &job.views).map_err(at)?;
                    job.inserts.push(insert);
                }
                _ => {
                    return Err(at((
                        stmt.line,
                        format!(
                            "expected CREATE TABLE, CREATE VIEW or INSERT INTO, found `{}`",
                            first_words.join(" ")
                        ),
                    )))
                }
            }
        }
        job.validate().map_err(at)?;
        Ok(job)
    }

    /// The table called `name`.
    pub fn table(&self, name: &str) -> Option<&TableDef> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// The view called `name`.
    pub fn view(&self, name: &str) -> Option<&ViewDef> {
        self.views.iter().find(|v| v.name == name)
    }

    fn check_new_name(&self, name: &str, line: usize) -> Result<(), LineError> {
        if self.table(name).is_some() || self.view(name).is_some() {
            line_err!(line, "`{name}` is created twice");
        }
        Ok(())
    }

    /// Tables read by some `INSERT`, in file order.
    pub fn sources(&self) -> impl Iterator<Item = &TableDef> {
        self.tables
            .iter()
            .filter(|t| self.inserts.iter().any(|i| i.source == t.name))
    }

    /// Tables written by some `INSERT` or `LATE DATA TO`, in file order.
    pub fn sinks(&self) -> impl Iterator<Item = &TableDef> {
        self.tables.iter().filter(|t| {
            self.inserts.iter().any(|i| {
                i.sink == t.name || i.clauses.late_data_to.as_deref() == Some(t.name.as_str())
            })
        })
    }

    fn validate(&self) -> Result<(), LineError> {
        if self.inserts.is_empty() {
            line_err!(
                0,
                "the job has no INSERT INTO statement, so it would compute nothing"
            );
        }
        for insert in &self.inserts {
            for name in [&insert.sink, &insert.source] {
                if self.table(name).is_none() {
                    line_err!(
                        insert.line,
                        "table `{name}` is not created in this job (add a CREATE TABLE for it)"
                    );
                }
            }
            if self.inserts.iter().any(|i| i.sink == insert.source) {
                line_err!(
                    insert.line,
                    "table `{}` is both written and read; read the topic in a separate job",
                    insert.source
                );
            }
            let source = self.table(&insert.source).expect("checked above");
            let clauses = &insert.clauses;
            if clauses.any() && insert.window.is_none() {
                line_err!(
                    clauses.line,
                    "EMIT, ALLOW LATENESS and LATE DATA TO belong to a windowed GROUP BY, which this statement has not"
                );
            }
            let early_or_late = clauses.emit != crate::clauses::EmitPolicy::OnWindowClose
                || clauses.lateness_ms > 0;
            if early_or_late && has_having(&insert.query) {
                line_err!(
                    clauses.line,
                    "HAVING cannot be combined with EMIT EVERY, EMIT ON UPDATE or ALLOW LATENESS: \
                     a later revision of a window's row that HAVING filters out would leave readers \
                     with the earlier one (filter where the rows are read instead)"
                );
            }
            if let Some(window) = insert.window.as_ref().filter(|w| w.kind.fixed().is_none()) {
                let kind = window.kind.describe(&window.time_column);
                if early_or_late {
                    line_err!(
                        clauses.line,
                        "{kind} emits each window once, when the watermark passes its end: \
                         EMIT EVERY, EMIT ON UPDATE and ALLOW LATENESS need TUMBLE or HOP"
                    );
                }
                if window.revision_columns {
                    line_err!(
                        insert.line,
                        "window_final and window_revision need TUMBLE or HOP: {kind} emits each window once"
                    );
                }
            }
            if let Some(late) = &clauses.late_data_to {
                if self.table(late).is_none() {
                    line_err!(
                        clauses.line,
                        "LATE DATA TO `{late}`: the table is not created in this job (add a CREATE TABLE for it)"
                    );
                }
                if *late == insert.sink || *late == insert.source {
                    line_err!(
                        clauses.line,
                        "LATE DATA TO `{late}`: late rows go to a table of their own, not the statement's {}",
                        if *late == insert.sink { "sink" } else { "source" }
                    );
                }
                if self.inserts.iter().any(|i| i.source == *late) {
                    line_err!(
                        clauses.line,
                        "table `{late}` is both written (LATE DATA TO) and read; read the topic in a separate job"
                    );
                }
            }
            if let Some(window) = &insert.window {
                match &source.watermark {
                    Some(w) if w.column == window.time_column => {}
                    Some(w) => line_err!(
                        insert.line,
                        "the window is over `{}` but source `{}` declares its WATERMARK FOR `{}`",
                        window.time_column, source.name, w.column
                    ),
                    None => line_err!(
                        insert.line,
                        "a window needs event time: declare `WATERMARK FOR {} AS {} - INTERVAL '2' SECOND` in table `{}`",
                        window.time_column, window.time_column, source.name
                    ),
                }
            }
        }
        Ok(())
    }
}

/// The most tokens one statement may have. Expressions are trees as deep as
/// their chains of operators are long, and parsing, planning and evaluating
/// them recurse over that depth: a 10,000-term sum overflows the stack. Real
/// statements are a few hundred tokens.
pub const MAX_STATEMENT_TOKENS: usize = 4096;

/// Refuses a statement too large to parse and plan safely.
fn check_size(text: &str, line: usize) -> Result<(), LineError> {
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&GenericDialect {}, text)
        .tokenize()
        .map_err(|e| parser_error(line, e))?;
    let n = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .count();
    if n > MAX_STATEMENT_TOKENS {
        line_err!(
            line,
            "the statement has {n} tokens; at most {MAX_STATEMENT_TOKENS} are allowed \
             (an expression that long nests too deep to plan safely)"
        );
    }
    Ok(())
}

fn parse_view(text: &str, line: usize) -> Result<ViewDef, LineError> {
    let (text, clauses) = split_clauses(text, line)?;
    let mut statements =
        Parser::parse_sql(&GenericDialect {}, &text).map_err(|e| parser_error(line, e))?;
    let (Some(Statement::CreateView(view)), None) = (statements.pop(), statements.pop()) else {
        line_err!(
            line,
            "expected one CREATE VIEW name AS SELECT ... statement"
        );
    };
    if view.materialized || !view.columns.is_empty() {
        line_err!(
            line,
            "CREATE VIEW {}: only `CREATE VIEW name AS SELECT ...` is supported",
            view.name
        );
    }
    let mut query = view.query;
    let window = rewrite_window(&mut query).map_err(|m| (line, m))?;
    let Some(source) = from_table(&query) else {
        line_err!(line, "the view's SELECT must read FROM exactly one table (joins and subqueries are not supported yet)");
    };
    Ok(ViewDef {
        name: normalize_name(&view.name.to_string()),
        line,
        source,
        query,
        window,
        clauses,
    })
}

fn parse_insert(text: &str, line: usize, views: &[ViewDef]) -> Result<InsertDef, LineError> {
    let (text, clauses) = split_clauses(text, line)?;
    let mut statements =
        Parser::parse_sql(&GenericDialect {}, &text).map_err(|e| parser_error(line, e))?;
    let (Some(Statement::Insert(insert)), None) = (statements.pop(), statements.pop()) else {
        line_err!(line, "expected one INSERT INTO sink SELECT ... statement");
    };
    let TableObject::TableName(name) = &insert.table else {
        line_err!(line, "INSERT INTO must name a table");
    };
    if !insert.columns.is_empty() {
        line_err!(
            line,
            "INSERT INTO {name} (columns...) is not supported: select the sink's columns in order"
        );
    }
    let Some(mut query) = insert.source.clone() else {
        line_err!(line, "INSERT INTO {name} needs a SELECT");
    };
    let sink = normalize_name(&name.to_string());
    if let Some(view) = from_table(&query).and_then(|f| views.iter().find(|v| v.name == f)) {
        if !is_select_star(&query) {
            line_err!(line, "write `INSERT INTO {sink} SELECT * FROM {}`: a view is shared as a whole (put filters and columns in the view)", view.name);
        }
        if clauses.any() {
            line_err!(
                clauses.line,
                "EMIT, ALLOW LATENESS and LATE DATA TO of a view go on its CREATE VIEW (line {}): \
                 a view is computed once for every INSERT that reads it",
                view.line
            );
        }
        return Ok(InsertDef {
            line,
            sink,
            source: view.source.clone(),
            query: view.query.clone(),
            window: view.window.clone(),
            view: Some(view.name.clone()),
            clauses: view.clauses.clone(),
        });
    }
    let window = rewrite_window(&mut query).map_err(|m| (line, m))?;
    let Some(source) = from_table(&query) else {
        line_err!(line, "the SELECT must read FROM exactly one table (joins and subqueries are not supported yet)");
    };
    Ok(InsertDef {
        line,
        sink,
        source,
        query,
        window,
        view: None,
        clauses,
    })
}

/// Whether the query's top-level SELECT has a HAVING.
fn has_having(query: &Query) -> bool {
    matches!(query.body.as_ref(), SetExpr::Select(select) if select.having.is_some())
}

/// `SELECT * FROM x` and nothing more.
fn is_select_star(query: &Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    matches!(select.projection.as_slice(), [SelectItem::Wildcard(_)])
        && select.selection.is_none()
        && select.having.is_none()
        && matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty())
        && query.order_by.is_none()
        && query.limit_clause.is_none()
}

/// The one table a simple `SELECT ... FROM t` reads.
fn from_table(query: &Query) -> Option<String> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let [from] = select.from.as_slice() else {
        return None;
    };
    if !from.joins.is_empty() {
        return None;
    }
    match &from.relation {
        TableFactor::Table { name, .. } => Some(normalize_name(&name.to_string())),
        _ => None,
    }
}

fn normalize_name(name: &str) -> String {
    match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) => quoted.to_string(),
        None => name.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = "
CREATE TABLE trades (symbol TEXT, price DOUBLE, ts TIMESTAMP,
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'kafka', topic = '${TOPIC:-trades}', bootstrap_servers = '${BROKERS}');

CREATE TABLE out (symbol TEXT, window_start TIMESTAMP, n BIGINT)
WITH (connector = 'lake', path = './lake/out');

INSERT INTO out
SELECT symbol, window_start, count(*) FROM trades
GROUP BY symbol, TUMBLE(ts, INTERVAL '1' MINUTE);
";

    fn env(name: &str) -> Option<String> {
        (name == "BROKERS").then(|| "b:9092".to_string())
    }

    #[test]
    fn parses_a_job() {
        let job = JobFile::parse("job.sql", JOB, &env).unwrap();
        assert_eq!(job.tables.len(), 2);
        let mut o = job.tables[0].options.clone();
        assert_eq!(o.get("topic").as_deref(), Some("trades"));
        assert_eq!(o.get("bootstrap_servers").as_deref(), Some("b:9092"));
        let insert = &job.inserts[0];
        assert_eq!(
            (insert.line, insert.sink.as_str(), insert.source.as_str()),
            (9, "out", "trades")
        );
        assert_eq!(
            insert
                .window
                .as_ref()
                .unwrap()
                .kind
                .fixed()
                .unwrap()
                .size_ms,
            60_000
        );
        assert_eq!(job.sources().count(), 1);
    }

    #[test]
    fn inserts_from_a_view_share_its_query() {
        let text = JOB.replace(
            "INSERT INTO out\nSELECT symbol, window_start, count(*) FROM trades\nGROUP BY symbol, TUMBLE(ts, INTERVAL '1' MINUTE);",
            "CREATE VIEW per_minute AS SELECT symbol, window_start, count(*) FROM trades\nGROUP BY symbol, TUMBLE(ts, INTERVAL '1' MINUTE);\nINSERT INTO out SELECT * FROM per_minute;",
        );
        let job = JobFile::parse("job.sql", &text, &env).unwrap();
        let insert = &job.inserts[0];
        assert_eq!(
            (insert.view.as_deref(), insert.source.as_str()),
            (Some("per_minute"), "trades")
        );
        assert_eq!(
            insert
                .window
                .as_ref()
                .unwrap()
                .kind
                .fixed()
                .unwrap()
                .size_ms,
            60_000
        );
        let bad = text.replace("SELECT * FROM per_minute", "SELECT symbol FROM per_minute");
        let err = JobFile::parse("job.sql", &bad, &env).unwrap_err();
        assert!(err.message.contains("a view is shared as a whole"), "{err}");
    }

    #[test]
    fn huge_expressions_are_refused_with_their_line() {
        let terms = vec!["price"; 10_000].join(" + ");
        let text = JOB.replace("count(*) FROM trades", &format!("{terms} FROM trades"));
        let err = JobFile::parse("job.sql", &text, &env).unwrap_err();
        assert_eq!(err.line, 9, "{err}");
        assert!(err.message.contains("at most 4096 are allowed"), "{err}");
    }

    #[test]
    fn errors_carry_file_and_line() {
        let err = JobFile::parse("job.sql", JOB, &|_| None).unwrap_err();
        assert_eq!((err.file.as_str(), err.line), ("job.sql", 4));
        let bad = JOB.replace("FROM trades", "FROM tardes");
        let err = JobFile::parse("job.sql", &bad, &env).unwrap_err();
        assert_eq!(err.line, 9);
        assert!(
            err.to_string()
                .starts_with("job.sql:9: table `tardes` is not created"),
            "{err}"
        );
        let err = JobFile::parse("job.sql", "SELECT 1;", &env).unwrap_err();
        assert!(
            err.message
                .contains("expected CREATE TABLE, CREATE VIEW or INSERT INTO"),
            "{err}"
        );
    }
}
