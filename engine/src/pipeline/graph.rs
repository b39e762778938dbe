//! The job as a graph: sources -> statements -> sinks, a plain value built
//! once from the plan. `engine check` prints it; the run builds one task per
//! node (a thread per source, a task per statement and per sink) and one
//! bounded channel per edge.

use super::Job;

/// A job's sources, statements and sinks, and how they connect.
#[derive(Debug, Clone, PartialEq)]
pub struct JobGraph {
    /// Source tables, by name order.
    pub sources: Vec<Node>,
    /// Statements, in file order.
    pub statements: Vec<StatementNode>,
    /// Sink tables, by name order.
    pub sinks: Vec<Node>,
}

/// A source or sink table.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The table's name.
    pub table: String,
    /// Its `connector`.
    pub connector: String,
    /// What it reads or writes (never a secret).
    pub describe: String,
}

/// A statement: the source it reads, its window, the sinks it writes.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementNode {
    /// Its key in checkpoints (its index).
    pub key: String,
    /// The line of its (first) `INSERT`.
    pub line: usize,
    /// The source table read.
    pub source: String,
    /// `TUMBLE(ts, 60000 ms)` or `HOP(...)`, if windowed.
    pub window: Option<String>,
    /// When it emits, its allowed lateness and late-data table, if windowed:
    /// `EMIT EVERY 1000 ms, lateness 30000 ms, late rows to trades_late`.
    pub emission: Option<String>,
    /// The sink tables written.
    pub sinks: Vec<String>,
    /// Its physical plan, indented.
    pub plan: String,
}

impl JobGraph {
    /// The graph of `job`.
    pub fn of(job: &Job) -> Self {
        let table = |name: &String, describe: String| Node {
            table: name.clone(),
            connector: job
                .file
                .table(name)
                .map(|t| t.connector.clone())
                .unwrap_or_default(),
            describe,
        };
        let statements = job
            .statements
            .iter()
            .enumerate()
            .map(|(index, st)| StatementNode {
                key: index.to_string(),
                line: st.insert.line,
                source: st.insert.source.clone(),
                window: st.window().map(|w| w.kind.describe(&w.time_column)),
                emission: st.window().map(|_| {
                    let c = &st.insert.clauses;
                    let late = match &c.late_data_to {
                        Some(t) => format!("late rows to {t}"),
                        None => "late rows counted and dropped".to_string(),
                    };
                    format!("{}, lateness {} ms, {late}", c.emit, c.lateness_ms)
                }),
                sinks: st.sinks.clone(),
                plan: datafusion::physical_plan::displayable(st.plan.root().as_ref())
                    .indent(true)
                    .to_string(),
            })
            .collect();
        Self {
            sources: job
                .sources
                .iter()
                .map(|(n, s)| table(n, s.describe()))
                .collect(),
            statements,
            sinks: job
                .sinks
                .iter()
                .map(|(n, s)| table(n, s.describe()))
                .collect(),
        }
    }

    /// A readable account: sources, statements with their plans, sinks.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for s in &self.sources {
            out.push_str(&format!("source {}: {}\n", s.table, s.describe));
        }
        for st in &self.statements {
            let window = match (&st.window, &st.emission) {
                (Some(w), Some(e)) => format!(" {w}\n  {e}"),
                (Some(w), None) => format!(" {w}"),
                _ => String::new(),
            };
            out.push_str(&format!(
                "\nINSERT INTO {} (line {}) FROM {}{window}\n{}",
                st.sinks.join(", "),
                st.line,
                st.source,
                st.plan
            ));
        }
        out.push('\n');
        for s in &self.sinks {
            out.push_str(&format!("sink {}: {}\n", s.table, s.describe));
        }
        out
    }
}
