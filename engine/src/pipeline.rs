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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use engine_sql::{plan_job, JobFile, PlannedStatement, SqlError, TableDef};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::checkpoint::{
    batches_from_ipc, run_periodic, CheckpointStore, Coordinator, Report, SourcePositions,
    StatementSnapshot,
};
use crate::error::{EngineError, Result};
use crate::message::{Message, Signal};
use crate::metrics::Metrics;
use crate::operator::Operator;
use crate::sink::kafka::{CommitMode, KafkaSinkConfig, Transactions};
use crate::sink::lake::{staging, LakeSinkConfig};
use crate::sink::{Sink, SinkCheckpoint, SinkConfig};
use crate::source::kafka::{
    committed_offsets, GroupCommits, KafkaSource, KafkaSourceConfig, SourceBarriers, StartupMode,
};

mod lanes;
mod rejects;

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

/// A parsed, planned and checked job.
#[derive(Debug)]
pub struct Job {
    /// The job file's name, for error messages.
    name: String,
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
            let config = KafkaSourceConfig::from_table(table).map_err(|e| at(table, e))?;
            check_properties(table, &config.client).map_err(|e| at(table, e))?;
            // What the source compiles when it starts: `check` must fail where `run` would.
            crate::source::kafka::row_rules(name, table, &config)?;
            crate::watermark::WatermarkExpr::for_table(name, table, &table.schema())?;
            sources.insert(table.name.clone(), config);
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
            let sink = SinkConfig::from_table(name, table)?;
            if let SinkConfig::Kafka(k) = &sink {
                check_properties(table, &k.client).map_err(|e| at(table, e))?;
            }
            sinks.insert(table.name.clone(), sink);
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

    /// The Kafka sinks with `sink.commit_mode = 'exactly_once'`, by table name.
    pub fn exactly_once_sinks(&self) -> BTreeMap<String, KafkaSinkConfig> {
        self.sinks
            .iter()
            .filter_map(|(name, sink)| match sink {
                SinkConfig::Kafka(k) if k.commit_mode == CommitMode::ExactlyOnce => {
                    Some((name.clone(), k.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Checks that the job's `exactly_once` sinks can run as asked: with
    /// checkpoints, one consumer group, and on the source's brokers (a
    /// transaction commits the group's offsets there).
    fn check_exactly_once(&self, options: &RunOptions) -> Result<()> {
        let sinks = self.exactly_once_sinks();
        let Some(first) = sinks.keys().next() else {
            return Ok(());
        };
        let fail = |message: String| {
            Err(EngineError::Execution(format!(
                "{}: sink `{first}` has sink.commit_mode = 'exactly_once'; {message}",
                self.name
            )))
        };
        if options.checkpoint.is_none() {
            return fail(
                "it needs checkpoints (its records are sent when a checkpoint completes): remove --no-checkpoints".into(),
            );
        }
        let groups: std::collections::BTreeSet<&str> =
            self.sources.values().map(|s| s.group_id.as_str()).collect();
        if groups.len() != 1 {
            return fail(format!(
                "its transactions commit the offsets of one consumer group, but the sources use {groups:?}"
            ));
        }
        let source = self
            .sources
            .values()
            .next()
            .expect("one group, so a source");
        for (name, sink) in &sinks {
            if sink.client.bootstrap_servers != source.client.bootstrap_servers {
                return fail(format!(
                    "sink `{name}` writes to {} but the source reads from {}: a transaction \
                     commits the source offsets on the cluster it writes to, so they must be the same",
                    sink.client.bootstrap_servers, source.client.bootstrap_servers
                ));
            }
        }
        Ok(())
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
        self.check_exactly_once(&options)?;
        let transactional = !self.exactly_once_sinks().is_empty();
        let lane = options.lane.as_ref().map(Lane::tag).unwrap_or_default();
        let restored = match &options.checkpoint {
            Some(c) => Some(
                self.restore(c, options.reset.is_some(), &metrics, options.lane.as_ref())
                    .await?,
            ),
            None => None,
        };
        let scope = restored
            .as_ref()
            .map(|r| r.scope.clone())
            .unwrap_or_default();
        let first_epoch = restored.as_ref().map_or(1, |r| r.coordinator.next_epoch());
        let requested = Arc::new(AtomicU64::new(first_epoch - 1));
        let completed = Arc::new(AtomicU64::new(first_epoch - 1));
        let (report_tx, report_rx) = mpsc::unbounded_channel();
        let manifest = restored.as_ref().and_then(|r| r.manifest.as_ref());

        let mut first_error: Option<EngineError> = None;
        let mut runs = Vec::new();
        let mut statement_count = 0;
        for (name, config) in &self.sources {
            let table = self
                .file
                .table(name)
                .expect("sources come from the job's tables");
            let mut outputs = Vec::new();
            let mut tasks: Vec<(bool, JoinHandle<Result<StatementSnapshot>>)> = Vec::new();
            for (index, st) in self.statements.iter().enumerate() {
                if &st.insert.source != name {
                    continue;
                }
                statement_count += 1;
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
                    if restored.is_some() {
                        if let Some(state) = manifest.and_then(|m| m.sinks.get(name)) {
                            sink.restore(state).await?;
                        }
                        sink.enable_checkpoints(first_epoch, &lane, &scope);
                    }
                    sinks.push(sink);
                }
                let mut operator = Operator::for_statement(st, Arc::clone(&metrics))?;
                if let (Some(r), Some(state)) =
                    (&restored, manifest.and_then(|m| m.statements.get(&index)))
                {
                    let rows = match &state.windows {
                        Some(file) => batches_from_ipc(r.coordinator.store().read(file).await?)?,
                        None => Vec::new(),
                    };
                    // Checkpoints of bounded runs before this version kept the end of
                    // time as the watermark: the latest source clock says how far
                    // event time had come (every window before it was emitted).
                    let watermark = match state.watermark {
                        Some(w) if w > crate::message::MAX_EVENT_TIME => manifest
                            .and_then(|m| m.watermarks.get(&config.topic))
                            .and_then(|c| c.values().max().copied()),
                        w => w,
                    };
                    operator.restore(watermark, rows).await?;
                }
                let reports = restored.is_some().then(|| report_tx.clone());
                let dead_letters = {
                    let (client, topic) = (config.client.clone(), config.dlq_topic.clone());
                    join(tokio::task::spawn_blocking(move || {
                        crate::source::kafka::DeadLetters::new(&client, &topic)
                    }))
                    .await?
                };
                let rejects = rejects::Rejects::new(
                    dead_letters,
                    &config.topic,
                    format!("{}:{}", self.name, st.insert.line),
                    Arc::clone(&metrics),
                );
                tasks.push((
                    st.window().is_some(),
                    tokio::spawn(run_statement(
                        StatementTask {
                            index,
                            operator,
                            sinks,
                            rejects,
                            metrics: Arc::clone(&metrics),
                            reports,
                        },
                        rx,
                    )),
                ));
            }
            let mut config = config.clone();
            if let Some(start) = options.reset {
                config.startup = start;
            }
            let mut source = KafkaSource::new(
                &self.name,
                table,
                config.clone(),
                Arc::clone(&metrics),
                options.bounded,
            )?;
            if let Some(offsets) = manifest.and_then(|m| m.offsets.get(&config.topic)) {
                source = source.with_start_offsets(offsets.clone());
            }
            if let Some(clocks) = manifest.and_then(|m| m.watermarks.get(&config.topic)) {
                source = source.with_start_clocks(clocks.clone());
            }
            if let Some(l) = &options.lane {
                source = source.with_lane(l.partition, l.commits.clone());
            }
            if transactional {
                source = source.with_offsets_in_transactions();
            }
            if restored.is_some() {
                source = source.with_barriers(SourceBarriers {
                    requested: Arc::clone(&requested),
                    completed: Arc::clone(&completed),
                    reports: report_tx.clone(),
                });
            }
            let stop = Arc::clone(&stop);
            let handle = tokio::task::spawn_blocking(move || source.run(outputs, stop));
            runs.push((config.topic.clone(), handle, tasks));
        }
        drop(report_tx); // the coordinator stops once every task has ended
        let periodic = match (&options.checkpoint, restored) {
            (Some(c), Some(r)) => Some(tokio::spawn(run_periodic(
                r.coordinator,
                c.interval,
                c.retry_for,
                Arc::clone(&requested),
                Arc::clone(&completed),
                report_rx,
                self.sources.len(),
                statement_count,
                Arc::clone(&stop),
            ))),
            _ => None,
        };

        let mut finished = Vec::new();
        let mut snapshots = Vec::new();
        for (topic, source, tasks) in runs {
            let progress = join(source).await;
            let mut statements_ok = true;
            let mut stateful = false;
            for (windowed, task) in tasks {
                stateful |= windowed;
                match join(task).await {
                    Ok(snapshot) => snapshots.push(snapshot),
                    Err(e) => {
                        statements_ok = false;
                        first_error.get_or_insert(e);
                    }
                }
            }
            match progress {
                Ok(progress) if statements_ok => finished.push((topic, progress, stateful)),
                Ok(_) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let mut committed = BTreeMap::new();
        if let Some(periodic) = periodic {
            let (mut coordinator, in_flight, leftover) = join(periodic).await?;
            if first_error.is_none() {
                // The final checkpoint, on a clean stop or at the end of a bounded input.
                let epoch = coordinator.next_epoch().max(in_flight.map_or(0, |e| e + 1));
                if finished.iter().all(|(_, p, _)| p.reached_end()) {
                    coordinator.finish_input();
                }
                let positions = SourcePositions {
                    offsets: finished
                        .iter()
                        .map(|(t, p, _)| (t.clone(), p.next_offsets().clone()))
                        .collect(),
                    watermarks: finished
                        .iter()
                        .map(|(t, p, _)| (t.clone(), p.clocks().clone()))
                        .collect(),
                };
                let retry_for = options
                    .checkpoint
                    .as_ref()
                    .map_or(DEFAULT_RETRY_FOR, |c| c.retry_for);
                coordinator
                    .complete(
                        epoch,
                        positions,
                        merge_leftover(leftover, snapshots),
                        retry_for,
                    )
                    .await?;
                tracing::info!(epoch, "final checkpoint written");
            }
        }
        for (topic, progress, stateful) in finished {
            // Without checkpoints, open windows live only in memory: after a stop their
            // input must be read again, so only bounded runs and stateless statements commit.
            if first_error.is_some()
                || !(options.bounded || !stateful || options.checkpoint.is_some())
            {
                tracing::info!(topic = %topic, "offsets not committed: open windows would be lost");
                continue;
            }
            let offsets = progress.next_offsets().clone();
            join(tokio::task::spawn_blocking(move || progress.commit())).await?;
            match transactional {
                true => {
                    tracing::info!(topic = %topic, ?offsets, "offsets committed (in the final checkpoint's transaction)")
                }
                false => tracing::info!(topic = %topic, ?offsets, "offsets committed"),
            }
            committed.insert(topic, offsets);
        }
        tracing::info!("{}", metrics.summary());
        match first_error {
            Some(e) => Err(e),
            None => Ok(RunReport { metrics, committed }),
        }
    }

    /// Opens the state directory and the newest complete checkpoint: files
    /// published by later (lost or damaged) checkpoints of its generation are
    /// removed, the checkpoint's own files published again (in case a crash
    /// cut that short), and staged leftovers of interrupted checkpoints
    /// deleted. `reset`: every checkpoint is discarded and a new generation
    /// begins. Without a usable checkpoint, a consumer group that has
    /// committed offsets is an error: starting from them would publish
    /// windows and lake files without the trades read before them.
    async fn restore(
        &self,
        options: &CheckpointOptions,
        reset: bool,
        metrics: &Arc<Metrics>,
        lane_of: Option<&Lane>,
    ) -> Result<Restored> {
        let lane = lane_of.map(Lane::tag).unwrap_or_default();
        let lane = lane.as_str();
        let store = CheckpointStore::open(&options.state_dir)?;
        let (manifest, damaged) = if reset {
            store.discard_all().await?;
            tracing::warn!(state_dir = %options.state_dir, "--reset: checkpoints discarded; the job starts over");
            (None, Vec::new())
        } else {
            store.newest().await?
        };
        let fingerprint = self.fingerprint();
        if let Some(m) = &manifest {
            if m.job_fingerprint != fingerprint {
                return Err(EngineError::Execution(format!(
                    "state dir {} holds checkpoints of a different job (or an older version of it), \
                     whose windows and open files cannot be restored into this one. Run this job with the \
                     state dir of its own version, or start it over with --reset --start \
                     earliest|latest|group-offsets|<RFC 3339 time> (the lake keeps what was published; \
                     see README, \"Starting over\")",
                    options.state_dir
                )));
            }
        } else if !reset {
            self.refuse_partial_start(&options.state_dir, &damaged, lane_of)
                .await?;
        } else if lane_of.is_none() {
            // Lanes of an earlier --scale-out run must not restore into the new start.
            for config in self.sources.values() {
                store.discard_lanes(&config.topic).await?;
            }
        }
        let generation = manifest
            .as_ref()
            .map_or_else(staging::new_generation, |m| m.generation.clone());
        let scope = staging::scope(lane, &generation);
        let mut lake = BTreeMap::new();
        for (name, config) in &self.sinks {
            if let SinkConfig::Lake(c) = config {
                lake.insert(name.clone(), crate::sink::lake::store::open(&c.path)?);
            }
        }
        // Later checkpoints are damaged or interrupted: their epochs are written again.
        store
            .discard_after(manifest.as_ref().map_or(0, |m| m.epoch))
            .await?;
        if let Some(m) = &manifest {
            for (name, location) in &lake {
                staging::roll_back_after(location, name, m.epoch, &scope).await?;
            }
            tracing::info!(state_dir = %options.state_dir, epoch = m.epoch, generation = %generation, "restoring from checkpoint");
        } else {
            tracing::info!(state_dir = %options.state_dir, generation = %generation, "no checkpoint: starting a new generation");
        }
        let mut coordinator = Coordinator::new(
            store,
            fingerprint,
            lake.clone(),
            manifest.clone(),
            Arc::clone(metrics),
            lane,
            &generation,
        );
        let exactly_once = self.exactly_once_sinks();
        if let Some(source) = self
            .sources
            .values()
            .next()
            .filter(|_| !exactly_once.is_empty())
        {
            let (client, group) = (source.client.clone(), source.group_id.clone());
            let open = tokio::task::spawn_blocking(move || {
                Transactions::open(&client, &group, exactly_once)
            });
            let transactions = join(open).await?;
            coordinator = coordinator.with_transactions(transactions);
        }
        if let Some(m) = &manifest {
            coordinator.publish(m).await?;
            coordinator.recover_transaction(m).await?;
        }
        for (name, location) in &lake {
            let kept: Vec<&crate::checkpoint::SinkState> =
                manifest.iter().filter_map(|m| m.sinks.get(name)).collect();
            staging::remove_garbage(location, &kept, u64::MAX, &scope).await?;
        }
        Ok(Restored {
            coordinator,
            manifest,
            scope,
        })
    }

    /// Fails when the job would start without a checkpoint although it has
    /// run before: some checkpoints are damaged, or the consumer group has
    /// committed offsets (a lane: on its partition), which lie past the
    /// trades of the windows and lake files that were open then.
    async fn refuse_partial_start(
        &self,
        state_dir: &str,
        damaged: &[(u64, String)],
        lane: Option<&Lane>,
    ) -> Result<()> {
        let partition = lane.map(|l| l.partition);
        let mut committed = Vec::new();
        for config in self.sources.values() {
            let c = config.clone();
            let offsets = join(tokio::task::spawn_blocking(move || {
                committed_offsets(&c, partition)
            }))
            .await?;
            if damaged.is_empty() && handed_over(state_dir, lane, &config.topic, &offsets).await {
                continue;
            }
            if !offsets.is_empty() {
                committed.push(format!(
                    "consumer group `{}` has committed offsets on topic `{}` ({})",
                    config.group_id,
                    config.topic,
                    offsets
                        .iter()
                        .map(|(p, o)| format!("partition {p} at {o}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        if damaged.is_empty() && committed.is_empty() {
            return Ok(()); // a first run
        }
        let mut why: Vec<String> = damaged
            .iter()
            .map(|(epoch, reason)| format!("checkpoint {epoch} is damaged ({reason})"))
            .collect();
        if damaged.is_empty() {
            why.push("it holds no complete checkpoint".into());
        }
        why.extend(committed);
        Err(EngineError::Execution(format!(
            "state dir {state_dir} has no usable checkpoint of {}, but the job has run before: {}. \
             Starting from the group's offsets would publish candles and lake files without the \
             trades read before them. Either restore: run with --state-dir pointing at the state \
             dir this job ran with (or put its checkpoints back); or start over: --reset --start \
             earliest|latest|group-offsets|<RFC 3339 time> (see README, \"Starting over\")",
            self.name,
            why.join("; ")
        )))
    }

    /// Identifies the job's computation (its statements' plans): state is only
    /// restored into the job that wrote it.
    fn fingerprint(&self) -> String {
        // FNV-1a: stable across Rust versions, unlike the std hasher.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for st in &self.statements {
            let text = datafusion::physical_plan::displayable(st.plan.root().as_ref())
                .indent(true)
                .to_string();
            for b in text.bytes().chain(st.sinks.join(",").bytes()) {
                hash = (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{hash:016x}")
    }
}

/// Whether the group's `committed` offsets on `topic` were left by a run
/// that finished its input cleanly in the other mode, so that starting from
/// them loses nothing: for a lane, the job run whole (its newest checkpoint
/// finished at exactly that offset); for the job run whole, every partition's
/// lane. A finished checkpoint has no open window or file.
async fn handed_over(
    state_dir: &str,
    lane: Option<&Lane>,
    topic: &str,
    committed: &BTreeMap<i32, i64>,
) -> bool {
    if committed.is_empty() {
        return false;
    }
    let finished_at = |dir: String, partition: i32, offset: i64| async move {
        let Ok(store) = CheckpointStore::open(&dir) else {
            return false;
        };
        match store.newest().await {
            Ok((Some(m), _)) => {
                m.finished && m.offsets.get(topic).and_then(|o| o.get(&partition)) == Some(&offset)
            }
            _ => false,
        }
    };
    match lane {
        Some(l) => {
            let offset = committed.get(&l.partition).copied().unwrap_or(-1);
            finished_at(l.job_state_dir.clone(), l.partition, offset).await
        }
        None => {
            for (&p, &offset) in committed {
                if !finished_at(lanes::lane_state_dir(state_dir, topic, p), p, offset).await {
                    return false;
                }
            }
            true
        }
    }
}

/// librdkafka's verdict on a table's `properties.*`, at the line of the
/// property at fault, without its value.
fn check_properties(
    table: &TableDef,
    client: &crate::kafka::KafkaClientOptions,
) -> std::result::Result<(), (usize, String)> {
    client.validate().map_err(|(key, message)| {
        let line = table
            .options
            .line_of(&format!("properties.{key}"), table.line);
        (line, message)
    })
}

/// What restoring found: the coordinator (with the state directory) and the checkpoint.
struct Restored {
    coordinator: Coordinator,
    manifest: Option<crate::checkpoint::Manifest>,
    /// The names this run's lake files carry: lane and generation.
    scope: String,
}

/// The final snapshots, each with the staged files and transaction rows of
/// an incomplete checkpoint's snapshot of the same statement put first.
fn merge_leftover(
    leftover: Vec<StatementSnapshot>,
    mut last: Vec<StatementSnapshot>,
) -> Vec<StatementSnapshot> {
    for old in leftover {
        if let Some(new) = last.iter_mut().find(|s| s.statement == old.statement) {
            for (name, mut rows) in old.records {
                let newer = new.records.entry(name).or_default();
                rows.append(newer);
                *newer = rows;
            }
            for (name, state) in old.sinks {
                if let Some(n) = new.sinks.get_mut(&name) {
                    let mut publish = state.publish;
                    publish.append(&mut n.publish);
                    n.publish = publish;
                }
            }
        }
    }
    last
}

/// One statement's task: its operator and sinks, and where it reports at barriers.
struct StatementTask {
    index: usize,
    operator: Operator,
    sinks: Vec<Sink>,
    /// Rows it cannot compute or write go to the source's dead-letter topic.
    rejects: rejects::Rejects,
    metrics: Arc<Metrics>,
    /// With checkpoints: the coordinator.
    reports: Option<mpsc::UnboundedSender<Report>>,
}

impl StatementTask {
    /// The statement's state at barrier `epoch` (the rows it rejected before
    /// the barrier are stored first: the checkpoint covers them).
    async fn snapshot(&mut self, epoch: u64) -> Result<StatementSnapshot> {
        self.rejects.flush().await?;
        let (watermark, windows) = self.operator.snapshot().unwrap_or_default();
        let mut sinks = BTreeMap::new();
        let mut records = BTreeMap::new();
        for sink in &mut self.sinks {
            match sink.checkpoint(epoch).await? {
                SinkCheckpoint::Flushed => {}
                SinkCheckpoint::Lake(state) => {
                    sinks.insert(sink.name().to_string(), state);
                }
                SinkCheckpoint::Transaction(rows) => {
                    records.insert(sink.name().to_string(), rows);
                }
            }
        }
        Ok(StatementSnapshot {
            statement: self.index,
            watermark,
            windows,
            sinks,
            records,
        })
    }
}

/// One statement: feed its operator, write what it emits to every sink,
/// report at barriers, and end with its final state.
async fn run_statement(
    mut task: StatementTask,
    mut input: mpsc::Receiver<Message>,
) -> Result<StatementSnapshot> {
    while let Some(message) = input.recv().await {
        let end_of_data = matches!(message, Message::Signal(Signal::EndOfData));
        let (rows, watermark) = match message {
            Message::Data(batch) => {
                let processed = task.operator.process_batch(batch).await?;
                for r in &processed.rejected {
                    task.rejects.send(&r.row, &r.error)?;
                }
                (processed.rows, None)
            }
            Message::Signal(Signal::Watermark(w)) => {
                task.metrics.watermark.fetch_max(w, Ordering::Relaxed);
                (task.operator.handle_watermark(w).await?, Some(w))
            }
            Message::Signal(Signal::Barrier(epoch)) => {
                if task.reports.is_some() {
                    let snapshot = task.snapshot(epoch).await?;
                    if let Some(reports) = &task.reports {
                        let _ = reports.send(Report::Statement(epoch, snapshot));
                    }
                }
                (Vec::new(), None)
            }
            Message::Signal(Signal::EndOfData) => (task.operator.handle_end_of_data().await?, None),
        };
        Metrics::add(
            &task.metrics.rows_emitted,
            rows.iter().map(|b| b.num_rows() as u64).sum(),
        );
        for batch in &rows {
            for sink in &mut task.sinks {
                for (row, why) in sink.write(batch).await? {
                    task.rejects.send(&batch.slice(row, 1), &why)?;
                }
            }
        }
        if let Some(w) = watermark {
            for sink in &mut task.sinks {
                sink.handle_watermark(w).await?;
            }
        }
        if end_of_data {
            for sink in &mut task.sinks {
                sink.end_of_data().await?;
            }
            return task.final_state().await;
        }
    }
    // Stopped. With checkpoints, open files and windows go into the final
    // checkpoint as they are; without, what was written is made durable and
    // partitions stay open unless complete.
    if task.reports.is_none() {
        for sink in &mut task.sinks {
            sink.flush().await?;
        }
    }
    task.final_state().await
}

impl StatementTask {
    /// The state for the final checkpoint (empty without checkpoints).
    async fn final_state(mut self) -> Result<StatementSnapshot> {
        self.rejects.flush().await?;
        if self.reports.is_none() {
            return Ok(StatementSnapshot::default());
        }
        self.snapshot(0).await
    }
}

async fn join<T>(handle: JoinHandle<Result<T>>) -> Result<T> {
    handle
        .await
        .map_err(|e| EngineError::Internal(format!("task panicked or was cancelled: {e}")))?
}
