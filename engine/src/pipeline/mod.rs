//! A job, wired: sources -> operators -> sinks.
//!
//! ```text
//!  source runner (thread) --mpsc--> statement task (operator) --mpsc--> sink task
//!                         \--mpsc--> statement task (operator) --mpsc--> sink task, sink task (a shared view)
//! ```
//! A source feeds every statement that reads it, a statement every sink it
//! writes, each over its own bounded channel. Positions are committed only
//! once a checkpoint covering them is written (or, without checkpoints,
//! after every sink has flushed), so committed input always has durable output.
//!
//! # Layout
//! - this file: the job (load, plan, check, fingerprint) and its run options;
//! - `graph`: the job as sources -> statements -> sinks (what `engine check` prints);
//! - `run`: building, restoring, starting and joining the tasks; the final checkpoint;
//! - `supervisor`: the run's tasks on one `JoinSet` under a cancellation token;
//! - `restore`: the state dir at start (restore, fall back, refuse, reset);
//! - `statement`: a statement's task and its sinks' tasks;
//! - `rejects`: rows a statement cannot compute or write, to the dead letters;
//! - `lanes`: `--scale-out`, one lane per source partition.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use engine_sql::{plan_job, JobFile, PlannedStatement, SqlError, TableDef};
use tokio::task::JoinHandle;

use crate::error::{EngineError, Result};
use crate::metrics::Metrics;
use crate::sink::lake::LakeSinkConfig;
use crate::sink::SinkSpec;
use crate::source::kafka::{GroupCommits, KafkaSourceConfig};
use crate::source::{SourceSpec, StartupMode};

mod graph;
mod lanes;
mod rejects;
mod restore;
mod run;
mod statement;
mod supervisor;

pub use graph::JobGraph;

/// Batches in flight between a source and one statement: the backpressure bound.
const CHANNEL_CAPACITY: usize = 16;

/// How a job runs.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Read each source up to its end offsets at start, emit every window, flush, commit, and return.
    pub bounded: bool,
    /// Take checkpoints (and restore from the newest at start); `None`: none.
    pub checkpoint: Option<CheckpointOptions>,
    /// Set by [`Job::run_scaled_out`] for each of its lanes: run over one source partition.
    pub lane: Option<Lane>,
    /// Start over (`--reset`): discard the state dir's checkpoints and read
    /// every source from here instead of a checkpoint or the group's offsets.
    pub reset: Option<StartupMode>,
}

/// One lane of a job scaled out over the consumer group: the whole job over
/// one source partition, with its own checkpoints.
#[derive(Debug, Clone)]
pub struct Lane {
    /// The source partition.
    pub partition: i32,
    /// Where the lane's durable offsets go for the group member to commit.
    pub commits: GroupCommits,
    /// The state dir of the job run whole (the lanes' dirs are inside it): a
    /// lane without checkpoints may take over from its finished run.
    pub job_state_dir: String,
}

impl Lane {
    /// The lane's name in lake file names and markers: `p<partition>`.
    pub fn tag(&self) -> String {
        format!("p{}", self.partition)
    }
}

/// Where and how often a job checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointOptions {
    /// The state directory: `s3://bucket/prefix`, `file:///dir` or a directory.
    pub state_dir: String,
    /// Time between checkpoints.
    pub interval: std::time::Duration,
    /// How long a checkpoint whose store fails is retried before the job
    /// stops with the error (`--checkpoint-retry-for`).
    pub retry_for: std::time::Duration,
}

impl CheckpointOptions {
    /// Checkpoints into `state_dir` every `interval`, retried for [`DEFAULT_RETRY_FOR`].
    pub fn new(state_dir: impl Into<String>, interval: std::time::Duration) -> Self {
        Self {
            state_dir: state_dir.into(),
            interval,
            retry_for: DEFAULT_RETRY_FOR,
        }
    }
}

/// Default `--checkpoint-retry-for`: a store that fails for a few minutes
/// (a restart, a network blip) is ridden out; one down for longer stops the
/// job with its error instead of running on without checkpoints.
pub const DEFAULT_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(300);

/// What a finished run did.
#[derive(Debug)]
pub struct RunReport {
    /// The job's counters.
    pub metrics: Arc<Metrics>,
    /// Offsets committed per source topic and partition (next offset to read).
    pub committed: BTreeMap<String, BTreeMap<i32, i64>>,
}

/// A topic a job's Kafka sink table writes, as a tool reading it needs it.
#[derive(Debug, Clone)]
pub struct OutputTopic {
    /// The topic.
    pub topic: String,
    /// Its cluster: brokers and how to sign in.
    pub client: crate::kafka::KafkaClientOptions,
    /// The sink table's columns, by name.
    pub columns: Vec<String>,
}

/// A parsed, planned and checked job.
#[derive(Debug)]
pub struct Job {
    /// The job file's name, for error messages.
    name: String,
    file: JobFile,
    statements: Vec<PlannedStatement>,
    sources: BTreeMap<String, Box<dyn SourceSpec>>,
    sinks: BTreeMap<String, Box<dyn SinkSpec>>,
}

impl Job {
    /// Reads, parses and plans the job file at `path`, with `${VAR}` from the process environment.
    pub async fn load(path: &Path) -> Result<Self> {
        Self::load_with_env(path, &|var| std::env::var(var).ok()).await
    }

    /// [`Job::load`] with `${VAR}` from `env`.
    pub async fn load_with_env(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            EngineError::Config(SqlError {
                file: name.clone(),
                line: 0,
                message: format!("cannot read job file: {e}"),
            })
        })?;
        Self::from_text(&name, &text, env).await
    }

    /// Parses and plans job text; `name` is used in error messages.
    pub async fn from_text(
        name: &str,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        Self::from_parsed(name, JobFile::parse(name, text, env)?).await
    }

    /// The same job planned afresh: a lane runs its own plans.
    pub async fn replan(&self) -> Result<Self> {
        Self::from_parsed(&self.name, self.file.clone()).await
    }

    /// Plans a parsed job file and checks its tables.
    async fn from_parsed(name: &str, file: JobFile) -> Result<Self> {
        let statements = plan_job(&file).await?;
        let at = |t: &TableDef, (line, message): (usize, String)| {
            EngineError::Config(SqlError {
                file: name.to_string(),
                line,
                message: format!("table `{}`: {message}", t.name),
            })
        };
        let mut sources = BTreeMap::new();
        for table in file.sources() {
            let spec = crate::source::registry::spec(name, table)?;
            // What the source compiles when it starts: `check` must fail where `run` would.
            crate::source::row_rules(name, table, spec.read_options())?;
            crate::watermark::WatermarkExpr::for_table(name, table, &table.schema())?;
            sources.insert(table.name.clone(), spec);
        }
        let mut sinks = BTreeMap::new();
        for table in file.sinks() {
            if let Some(check) = table.checks.first() {
                return Err(at(
                    table,
                    (
                        check.line,
                        format!(
                            "{} on a sink table: CHECK constraints are checked on source tables",
                            check.label()
                        ),
                    ),
                ));
            }
            let sink = crate::sink::registry::spec(name, table)?;
            sinks.insert(table.name.clone(), sink);
        }
        // One writer per sink table: its state and file names are the writer's own.
        let mut writers = BTreeMap::new();
        for st in &statements {
            let late = st.insert.clauses.late_data_to.iter();
            for sink in st.sinks.iter().chain(late) {
                if let Some(first) = writers.insert(sink.clone(), st.insert.line) {
                    return Err(EngineError::Config(SqlError {
                        file: name.to_string(),
                        line: st.insert.line,
                        message: format!(
                            "sink `{sink}` is already written by the statement on line {first}; \
                             a sink table has one writer (write a second table, or UNION ALL the queries)"
                        ),
                    }));
                }
            }
        }
        Ok(Self {
            name: name.to_string(),
            file,
            statements,
            sources,
            sinks,
        })
    }

    /// The job's lake sink tables: their options and columns (for the catalog and queries).
    pub fn lake_tables(&self) -> Vec<(LakeSinkConfig, arrow::datatypes::SchemaRef)> {
        self.sinks
            .iter()
            .filter_map(|(name, sink)| {
                let config = sink.as_any().downcast_ref::<LakeSinkConfig>()?;
                let table = self.file.table(name)?;
                Some((config.clone(), table.schema()))
            })
            .collect()
    }

    /// The job's Kafka source tables, by name.
    pub fn kafka_sources(&self) -> BTreeMap<String, &KafkaSourceConfig> {
        self.sources
            .iter()
            .filter_map(|(name, s)| Some((name.clone(), s.as_any().downcast_ref()?)))
            .collect()
    }

    /// The job's Kafka sink tables, in table-name order: the topic each
    /// writes, its cluster's client options and its columns.
    pub fn kafka_outputs(&self) -> Vec<OutputTopic> {
        self.sinks
            .iter()
            .filter_map(|(name, s)| {
                let config = s
                    .as_any()
                    .downcast_ref::<crate::sink::kafka::KafkaSinkConfig>()?;
                let columns = (self.file.table(name)?.columns.iter())
                    .map(|c| c.name.clone())
                    .collect();
                Some(OutputTopic {
                    topic: config.topic.clone(),
                    client: config.client.clone(),
                    columns,
                })
            })
            .collect()
    }

    /// Kafka topics the job reads, and the ones it writes (sinks and dead letters).
    pub fn kafka_topics(&self) -> (Vec<String>, Vec<String>) {
        let kafka = self.kafka_sources();
        let read = kafka.values().map(|s| s.topic.clone()).collect();
        let mut written: Vec<String> = kafka.values().map(|s| s.dlq_topic.clone()).collect();
        written.extend(
            self.sinks
                .values()
                .filter_map(|s| crate::sink::kafka::topic_of(s.as_ref()).map(str::to_string)),
        );
        (read, written)
    }

    /// The job's sources, statements and sinks as a graph.
    pub fn graph(&self) -> JobGraph {
        JobGraph::of(self)
    }

    /// A readable account of the job: sources, statements with their plans, sinks.
    pub fn explain(&self) -> String {
        self.graph().render()
    }

    /// Identifies the job's definition (its tables, their non-secret
    /// options, its views and statements, without line numbers): state is
    /// only restored into the job that wrote it, and a new engine or
    /// DataFusion version does not change it.
    fn fingerprint(&self) -> String {
        let mut text = String::new();
        for t in &self.file.tables {
            text.push_str(&format!("table {} {}\n", t.name, t.connector));
            for c in &t.columns {
                text.push_str(&format!(
                    " column {} {} {} {:?}\n",
                    c.name, c.data_type, c.not_null, c.metadata
                ));
            }
            if let Some(w) = &t.watermark {
                text.push_str(&format!(" watermark {} {}\n", w.column, w.expr));
            }
            for check in &t.checks {
                text.push_str(&format!(" check {:?} {}\n", check.name, check.expr));
            }
            for (key, value) in t.options.public_entries() {
                if !RUNTIME_OPTIONS.contains(&key) {
                    text.push_str(&format!(" option {key}={value}\n"));
                }
            }
        }
        for v in &self.file.views {
            text.push_str(&format!("view {} {} {}\n", v.name, v.source, v.query));
        }
        for i in &self.file.inserts {
            text.push_str(&format!(
                "insert {} {} {:?} {}\n",
                i.sink, i.source, i.view, i.query
            ));
            // The rewritten query no longer says which kind of window it groups
            // by: SESSION and CUMULATE state restored into another kind would be
            // dropped unread. (TUMBLE and HOP are left out so that their jobs
            // keep the fingerprints they had.)
            if let Some(w) = i.window.as_ref().filter(|w| w.kind.fixed().is_none()) {
                text.push_str(&format!(" window {}\n", w.kind.describe(&w.time_column)));
            }
            // Only when given, so that jobs without the clauses keep their fingerprints.
            let c = &i.clauses;
            if c.any() {
                text.push_str(&format!(
                    " clauses {:?} {} {:?}\n",
                    c.emit, c.lateness_ms, c.late_data_to
                ));
            }
        }
        // FNV-1a: stable across Rust versions, unlike the std hasher.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            hash = (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        format!("{hash:016x}")
    }
}

/// Options that change how a run goes on, not what its state means: a
/// checkpoint restores whichever value they have (e.g. the embedded default
/// turns `watermark.idle_advance` on, a run against a cluster may not; a
/// rotated certificate or a new SASL user reads the same topics).
const RUNTIME_OPTIONS: &[&str] = &[
    "watermark.idle_advance",
    "security.protocol",
    "sasl.mechanism",
    "sasl.username",
    "ssl.ca.location",
    "ssl.certificate.location",
    "aws.region",
];

async fn join<T>(handle: JoinHandle<Result<T>>) -> Result<T> {
    handle
        .await
        .map_err(|e| EngineError::Internal(format!("task panicked or was cancelled: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fingerprint of a one-statement Kafka job whose source reads
    /// `topic` with `security` among its options.
    async fn fingerprint_of(topic: &str, security: &str) -> String {
        let text = format!(
            "CREATE TABLE t (symbol TEXT, ts TIMESTAMP) WITH (connector = 'kafka', topic = '{topic}', bootstrap_servers = 'b:9092'{security});
             CREATE TABLE o (symbol TEXT) WITH (connector = 'kafka', topic = 'o', bootstrap_servers = 'b:9092');
             INSERT INTO o SELECT symbol FROM t;"
        );
        let job = Job::from_text("job.sql", &text, &|_| None).await.unwrap();
        job.fingerprint()
    }

    #[tokio::test]
    async fn a_rotated_certificate_or_login_keeps_the_fingerprint_a_new_topic_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("old.pem"), dir.path().join("new.pem"));
        std::fs::write(&old, "x").unwrap();
        std::fs::write(&new, "y").unwrap();
        let login = |ca: &std::path::Path, user: &str| {
            format!(", ssl.ca.location = '{}', sasl.mechanism = 'SCRAM-SHA-512', sasl.username = '{user}', sasl.password = 'p-{user}'", ca.display())
        };
        let before = fingerprint_of("trades", &login(&old, "engine")).await;
        assert_eq!(
            before,
            fingerprint_of("trades", &login(&new, "engine2")).await
        );
        assert_eq!(before, fingerprint_of("trades", "").await);
        assert_ne!(
            before,
            fingerprint_of("quotes", &login(&old, "engine")).await
        );
    }
}
