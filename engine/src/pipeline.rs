//! A job, wired: sources -> operators -> sinks, each statement a task.
//!
//! ```text
//!  KafkaSource (blocking thread) --mpsc--> statement task: Operator -> Sink
//!                                \--mpsc--> statement task: Operator -> Sink, Sink (a shared view)
//! ```
//! A source feeds every statement that reads it (each has its own bounded
//! channel). Offsets are committed only after every sink fed by the source
//! has flushed, so committed input always has durable output.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use engine_sql::{plan_job, JobFile, PlannedStatement, SqlError, TableDef};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{EngineError, Result};
use crate::message::{Message, Signal};
use crate::metrics::Metrics;
use crate::operator::Operator;
use crate::sink::lake::LakeSinkConfig;
use crate::sink::{Sink, SinkConfig};
use crate::source::kafka::{KafkaSource, KafkaSourceConfig};

/// Batches in flight between a source and one statement: the backpressure bound.
const CHANNEL_CAPACITY: usize = 16;

/// How a job runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Read each source up to its end offsets at start, emit every window, flush, commit, and return.
    pub bounded: bool,
}

/// What a finished run did.
#[derive(Debug)]
pub struct RunReport {
    /// The job's counters.
    pub metrics: Arc<Metrics>,
    /// Offsets committed per source topic and partition (next offset to read).
    pub committed: BTreeMap<String, BTreeMap<i32, i64>>,
}

/// A parsed, planned and checked job.
#[derive(Debug)]
pub struct Job {
    file: JobFile,
    statements: Vec<PlannedStatement>,
    sources: BTreeMap<String, KafkaSourceConfig>,
    sinks: BTreeMap<String, SinkConfig>,
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
        let file = JobFile::parse(name, text, env)?;
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
            if table.connector != "kafka" {
                return Err(at(
                    table,
                    (
                        table.line,
                        format!(
                            "unknown source connector '{}' (known: 'kafka')",
                            table.connector
                        ),
                    ),
                ));
            }
            sources.insert(
                table.name.clone(),
                KafkaSourceConfig::from_table(table).map_err(|e| at(table, e))?,
            );
        }
        let mut sinks = BTreeMap::new();
        for table in file.sinks() {
            sinks.insert(table.name.clone(), SinkConfig::from_table(name, table)?);
        }
        Ok(Self {
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
            .filter_map(|(name, sink)| match sink {
                SinkConfig::Lake(c) => {
                    let table = self
                        .file
                        .table(name)
                        .expect("sinks come from the job's tables");
                    Some((c.clone(), table.schema()))
                }
                SinkConfig::Kafka(_) => None,
            })
            .collect()
    }

    /// Kafka topics the job reads, and the ones it writes (sinks and dead letters).
    pub fn kafka_topics(&self) -> (Vec<String>, Vec<String>) {
        let read = self.sources.values().map(|s| s.topic.clone()).collect();
        let mut written: Vec<String> = self.sources.values().map(|s| s.dlq_topic.clone()).collect();
        written.extend(self.sinks.values().filter_map(|s| match s {
            SinkConfig::Kafka(k) => Some(k.topic.clone()),
            SinkConfig::Lake(_) => None,
        }));
        (read, written)
    }

    /// A readable account of the job: sources, statements with their plans, sinks.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        for (name, s) in &self.sources {
            out.push_str(&format!(
                "source {name}: kafka topic `{}` on {} (group {})\n",
                s.topic, s.client.bootstrap_servers, s.group_id
            ));
        }
        for st in &self.statements {
            let window = match st.window() {
                Some(w) if w.spec.size_ms == w.spec.slide_ms => {
                    format!(" TUMBLE({}, {} ms)", w.time_column, w.spec.size_ms)
                }
                Some(w) => format!(
                    " HOP({}, slide {} ms, size {} ms)",
                    w.time_column, w.spec.slide_ms, w.spec.size_ms
                ),
                None => String::new(),
            };
            out.push_str(&format!(
                "\nINSERT INTO {} (line {}) FROM {}{window}\n{}",
                st.sinks.join(", "),
                st.insert.line,
                st.insert.source,
                datafusion::physical_plan::displayable(st.plan.root().as_ref()).indent(true)
            ));
        }
        out.push('\n');
        for (name, s) in &self.sinks {
            out.push_str(&format!("sink {name}: {}\n", s.describe()));
        }
        out
    }

    /// Runs the job until its bounded input ends or `stop` is set.
    pub async fn run(self, options: RunOptions, stop: Arc<AtomicBool>) -> Result<RunReport> {
        self.run_with_metrics(options, stop, Arc::new(Metrics::new()))
            .await
    }

    /// [`Job::run`], counting into `metrics`, which callers can watch while it runs.
    pub async fn run_with_metrics(
        self,
        options: RunOptions,
        stop: Arc<AtomicBool>,
        metrics: Arc<Metrics>,
    ) -> Result<RunReport> {
        let mut committed = BTreeMap::new();
        let mut first_error: Option<EngineError> = None;
        let mut runs = Vec::new();
        for (name, config) in &self.sources {
            let table = self
                .file
                .table(name)
                .expect("sources come from the job's tables");
            let mut outputs = Vec::new();
            let mut tasks: Vec<(bool, JoinHandle<Result<()>>)> = Vec::new();
            for st in self.statements.iter().filter(|s| &s.insert.source == name) {
                let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
                outputs.push(tx);
                let mut sinks = Vec::with_capacity(st.sinks.len());
                for name in &st.sinks {
                    let table = self
                        .file
                        .table(name)
                        .expect("sinks come from the job's tables");
                    let mut sink =
                        Sink::open(self.sinks[name].clone(), table, Arc::clone(&metrics)).await?;
                    // A HOP window starting in a partition closes `size - slide` after the
                    // partition's end; the partition is complete only then.
                    if let Some(w) = st.window() {
                        if sink.partition_time_column() == Some(engine_sql::WINDOW_START) {
                            sink.set_partition_commit_lag(w.spec.size_ms - w.spec.slide_ms);
                        }
                    }
                    sinks.push(sink);
                }
                let operator = Operator::for_statement(st, Arc::clone(&metrics))?;
                tasks.push((
                    st.window().is_some(),
                    tokio::spawn(run_statement(rx, operator, sinks, Arc::clone(&metrics))),
                ));
            }
            let source =
                KafkaSource::new(table, config.clone(), Arc::clone(&metrics), options.bounded)?;
            let stop = Arc::clone(&stop);
            let handle = tokio::task::spawn_blocking(move || source.run(outputs, stop));
            runs.push((config.topic.clone(), handle, tasks));
        }
        for (topic, source, tasks) in runs {
            let progress = join(source).await;
            let mut statements_ok = true;
            let mut stateful = false;
            for (windowed, task) in tasks {
                stateful |= windowed;
                if let Err(e) = join(task).await {
                    statements_ok = false;
                    first_error.get_or_insert(e);
                }
            }
            match progress {
                // Without checkpoints (yet), open windows live only in memory: after a
                // stop, their input must be read again, so only bounded runs and
                // stateless statements commit.
                Ok(progress) if statements_ok && (options.bounded || !stateful) => {
                    let offsets = progress.next_offsets().clone();
                    join(tokio::task::spawn_blocking(move || progress.commit())).await?;
                    tracing::info!(topic = %topic, ?offsets, "offsets committed");
                    committed.insert(topic, offsets);
                }
                Ok(_) => {
                    tracing::info!(topic = %topic, "offsets not committed: open windows would be lost")
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        tracing::info!("{}", metrics.summary());
        match first_error {
            Some(e) => Err(e),
            None => Ok(RunReport { metrics, committed }),
        }
    }
}

/// One statement: feed its operator, write what it emits to every sink, flush at the end.
async fn run_statement(
    mut input: mpsc::Receiver<Message>,
    mut operator: Operator,
    mut sinks: Vec<Sink>,
    metrics: Arc<Metrics>,
) -> Result<()> {
    while let Some(message) = input.recv().await {
        let end_of_data = matches!(message, Message::Signal(Signal::EndOfData));
        let (rows, watermark) = match message {
            Message::Data(batch) => (operator.process_batch(batch).await?, None),
            Message::Signal(Signal::Watermark(w)) => {
                metrics.watermark.fetch_max(w, Ordering::Relaxed);
                (operator.handle_watermark(w).await?, Some(w))
            }
            Message::Signal(Signal::Barrier(_)) => (Vec::new(), None),
            Message::Signal(Signal::EndOfData) => (operator.handle_end_of_data().await?, None),
        };
        Metrics::add(
            &metrics.rows_emitted,
            rows.iter().map(|b| b.num_rows() as u64).sum(),
        );
        for batch in &rows {
            for sink in &mut sinks {
                sink.write(batch).await?;
            }
        }
        if let Some(w) = watermark {
            for sink in &mut sinks {
                sink.handle_watermark(w).await?;
            }
        }
        if end_of_data {
            for sink in &mut sinks {
                sink.end_of_data().await?;
            }
            return Ok(());
        }
    }
    // Stopped: what was written is made durable; partitions stay open unless complete.
    for sink in &mut sinks {
        sink.flush().await?;
    }
    Ok(())
}

async fn join<T>(handle: JoinHandle<Result<T>>) -> Result<T> {
    handle
        .await
        .map_err(|e| EngineError::Internal(format!("task panicked or was cancelled: {e}")))?
}
