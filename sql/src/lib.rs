//! # engine-sql: the job-file dialect and its planner on DataFusion
//!
//! A job file is a list of statements in the conventions of Flink SQL and Arroyo:
//!
//! ```text
//! job.sql --substitute ${VAR}--> text --split--> statements
//!   CREATE TABLE ... WITH (...)   --ddl-->      TableDef (columns, WATERMARK, options)
//!   CREATE VIEW v AS SELECT ...   --window-->   query with its window rewritten
//!   INSERT INTO sink SELECT ...   --window-->   (or SELECT * FROM v: statements share the view)
//!                                 --planner-->  DataFusion LogicalPlan -> ExecutionPlan
//!                                 --physical--> StreamPlan (partial / final pieces)
//! ```
//!
//! # Layout
//! - [`substitute`]: `${VAR}` / `${VAR:-default}` from the environment.
//! - [`split`]: statements and the line each starts on.
//! - [`ddl`]: `CREATE TABLE` with `WATERMARK FOR` and `METADATA FROM`.
//! - [`options`]: typed `WITH (...)` options; unknown keys are errors.
//! - [`window`]: `TUMBLE` / `HOP` / `CUMULATE` / `SESSION` in `GROUP BY`.
//! - [`clauses`]: `EMIT`, `ALLOW LATENESS`, `LATE DATA TO` after a windowed query.
//! - [`job`]: the parsed job file.
//! - [`planner`]: planning each `INSERT` on DataFusion.
//! - [`physical`]: the physical plan split into the pieces a stream runs.
//!
//! # Example
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use engine_sql::{plan_job, JobFile};
//! let job = JobFile::parse("example.sql", "
//!     CREATE TABLE trades (symbol TEXT, price DOUBLE, ts TIMESTAMP,
//!         WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
//!     WITH (connector = 'kafka', topic = 'trades');
//!     CREATE TABLE highs (symbol TEXT, window_start TIMESTAMP, high DOUBLE)
//!     WITH (connector = 'kafka', topic = 'highs');
//!     INSERT INTO highs SELECT symbol, window_start, max(price) FROM trades
//!     GROUP BY symbol, TUMBLE(ts, INTERVAL '1' MINUTE);
//! ", &|_| None).unwrap();
//! let planned = plan_job(&job).await.unwrap();
//! assert!(planned[0].plan.is_aggregate());
//! assert_eq!(planned[0].window().unwrap().kind.fixed().unwrap().size_ms, 60_000);
//! # });
//! ```
#![warn(missing_docs)]

pub mod clauses;
pub mod ddl;
pub mod error;
pub mod job;
pub mod options;
pub mod physical;
pub mod planner;
pub mod split;
pub mod substitute;
pub mod window;

pub use clauses::{EmitPolicy, StreamClauses};
pub use ddl::{timestamp_type, CheckDef, ColumnDef, MetadataField, TableDef, WatermarkDef};
pub use error::{LineError, Result, SqlError};
pub use job::{InsertDef, JobFile, ViewDef};
pub use options::Options;
pub use physical::StreamPlan;
pub use planner::{plan_job, streaming_session, PlannedStatement};
pub use window::{
    with_window_columns, CumulateSpec, FoundWindow, SessionSpec, WindowKind, WindowSpec,
    WINDOW_END, WINDOW_FINAL, WINDOW_REVISION, WINDOW_START,
};
