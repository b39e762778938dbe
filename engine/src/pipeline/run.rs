//! Running a job: build every task, restore it, start it, join it, and end
//! with the final checkpoint (or, without checkpoints, the offset commits).
//!
//! ```text
//!  prepare: check sinks, open the job's transaction, open the state dir
//!  build:   per source: its statements (operator + sinks) and offset committer
//!  restore: committers recover, then operators and sinks load their snapshots
//!  start:   statement tasks, source threads, periodic checkpoints
//!  finish:  join all; final checkpoint and its commit phase, or offsets committed
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::rejects::Rejects;
use super::restore::StateAtStart;
use super::statement::{Snapshots, StatementTask};
use super::{join, Job, Lane, RunOptions, RunReport, CHANNEL_CAPACITY, DEFAULT_RETRY_FOR};
use crate::checkpoint::{
    run_periodic, BarrierRequests, Committer, Coordinator, Manifest, Participant, Report, Snapshot,
};
use crate::error::{EngineError, Result};
use crate::kafka::transaction::{SharedTransaction, Transactions, RESOURCE};
use crate::message::Message;
use crate::metrics::Metrics;
use crate::operator::Operator;
use crate::resources::Resources;
use crate::sink::{CheckpointScope, JobContext, SinkContext, SinkWriter};
use crate::source::kafka::{
    DeadLetters, KafkaPositions, KafkaSource, KafkaSourceConfig, OffsetCommitter, SourceBarriers,
    SourceProgress,
};

/// One source and what it feeds, built but not started.
struct SourcePlan {
    table: String,
    config: KafkaSourceConfig,
    statements: Vec<(StatementTask, mpsc::Receiver<Message>, bool)>,
    outputs: Vec<mpsc::Sender<Message>>,
    committer: OffsetCommitter,
    /// The commit phases of its statements' sinks.
    sink_committers: Vec<(Participant, Arc<dyn Committer>)>,
}

/// A started source: its thread and its statements' tasks.
struct SourceRun {
    table: String,
    source: JoinHandle<Result<SourceProgress>>,
    /// Each statement's task, and whether it keeps windows.
    statements: Vec<(JoinHandle<Result<Snapshots>>, bool)>,
    committer: OffsetCommitter,
}

/// How a source ended, once its statements have.
struct SourceEnd {
    table: String,
    progress: SourceProgress,
    stateful: bool,
    committer: OffsetCommitter,
}

/// With checkpoints: the coordinator, the checkpoint restored, and how this run names its output.
struct Checkpointing {
    coordinator: Coordinator,
    manifest: Option<Manifest>,
    scope: CheckpointScope,
}

impl Job {
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
        let resources = Resources::new();
        self.check_sinks(&options, &resources)?;
        self.open_transaction(&options, &resources, &metrics)
            .await?;
        let mut checkpointing = self.open_checkpoints(&options, &metrics).await?;
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let reports = checkpointing.as_ref().map(|_| reports_tx.clone());
        let scope = checkpointing.as_ref().map(|c| c.scope.clone());
        let mut plans = Vec::new();
        for (table, config) in &self.sources {
            let plan = self
                .build_source(
                    table, config, &options, &resources, &metrics, &scope, &reports,
                )
                .await?;
            plans.push(plan);
        }
        if let Some(c) = &mut checkpointing {
            restore(c, &mut plans).await?;
        }
        let barriers = BarrierRequests::default();
        let first_epoch = scope.as_ref().map_or(1, |s| s.first_epoch);
        barriers.requested.store(first_epoch - 1, Ordering::Release);
        let participants = plans
            .iter()
            .map(|p| {
                1 + p
                    .statements
                    .iter()
                    .map(|(t, _, _)| t.participants())
                    .sum::<usize>()
            })
            .sum();
        let manifest = checkpointing.as_ref().and_then(|c| c.manifest.clone());
        let mut runs = Vec::new();
        for plan in plans {
            let barriers = reports.as_ref().map(|r| SourceBarriers {
                requests: barriers.clone(),
                reports: r.clone(),
            });
            runs.push(self.start_source(
                plan,
                &options,
                &metrics,
                manifest.as_ref(),
                barriers,
                &stop,
            )?);
        }
        drop((reports_tx, reports)); // the coordinator stops once every task has ended
        let periodic = match (&options.checkpoint, checkpointing) {
            (Some(c), Some(ck)) => {
                let stop = Arc::clone(&stop);
                Some(tokio::spawn(run_periodic(
                    ck.coordinator,
                    c.interval,
                    c.retry_for,
                    barriers,
                    reports_rx,
                    participants,
                    move || stop.store(true, Ordering::Relaxed),
                )))
            }
            _ => None,
        };
        let (ends, snapshots, first_error) = join_all(runs).await;
        self.finish(options, metrics, periodic, ends, snapshots, first_error)
            .await
    }

    /// Checks every sink against the whole job (e.g. `exactly_once` needs checkpoints).
    fn check_sinks(&self, options: &RunOptions, resources: &Resources) -> Result<()> {
        for (table, sink) in &self.sinks {
            sink.check(&JobContext {
                job: &self.name,
                table,
                checkpoints: options.checkpoint.is_some(),
                resources,
            })?;
        }
        Ok(())
    }

    /// With `exactly_once` Kafka sinks: checks that they can run as asked
    /// (one consumer group, on the source's brokers: a transaction commits
    /// the group's offsets there) and opens the job's transaction, shared by
    /// the sources and those sinks through `resources`.
    async fn open_transaction(
        &self,
        options: &RunOptions,
        resources: &Resources,
        metrics: &Arc<Metrics>,
    ) -> Result<()> {
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
        if options.lane.is_some() {
            return fail(
                "--scale-out cannot run it (its transactions commit every partition at once)"
                    .into(),
            );
        }
        let groups: std::collections::BTreeSet<&str> =
            self.sources.values().map(|s| s.group_id.as_str()).collect();
        let Some(source) = self.sources.values().next().filter(|_| groups.len() == 1) else {
            return fail(format!(
                "its transactions commit the offsets of one consumer group, but the sources use {groups:?}"
            ));
        };
        for (name, sink) in &sinks {
            if sink.client.bootstrap_servers != source.client.bootstrap_servers {
                return fail(format!(
                    "sink `{name}` writes to {} but the source reads from {}: a transaction \
                     commits the source offsets on the cluster it writes to, so they must be the same",
                    sink.client.bootstrap_servers, source.client.bootstrap_servers
                ));
            }
        }
        let participants = sinks.len() + self.sources.len();
        let (client, group) = (source.client.clone(), source.group_id.clone());
        let open = tokio::task::spawn_blocking(move || Transactions::open(&client, &group, sinks));
        let transactions = join(open).await?;
        let shared = SharedTransaction::new(transactions, participants, Arc::clone(metrics));
        resources.insert(RESOURCE, Arc::new(shared));
        Ok(())
    }

    /// Opens the state dir and the coordinator, when the job takes checkpoints.
    async fn open_checkpoints(
        &self,
        options: &RunOptions,
        metrics: &Arc<Metrics>,
    ) -> Result<Option<Checkpointing>> {
        let Some(c) = &options.checkpoint else {
            return Ok(None);
        };
        let StateAtStart {
            store,
            manifest,
            generation,
        } = self
            .open_state(c, options.reset.is_some(), options.lane.as_ref())
            .await?;
        let lane = options.lane.as_ref().map(Lane::tag).unwrap_or_default();
        let scope = CheckpointScope {
            first_epoch: manifest.as_ref().map_or(1, |m| m.epoch + 1),
            scope: crate::sink::lake::staging::scope(&lane, &generation),
            lane,
        };
        let coordinator = Coordinator::new(
            store,
            self.fingerprint(),
            &generation,
            manifest.clone(),
            Arc::clone(metrics),
        );
        Ok(Some(Checkpointing {
            coordinator,
            manifest,
            scope,
        }))
    }

    /// Builds source `table` and the statements that read it, with their sinks open.
    #[allow(clippy::too_many_arguments)]
    async fn build_source(
        &self,
        table: &str,
        config: &KafkaSourceConfig,
        options: &RunOptions,
        resources: &Resources,
        metrics: &Arc<Metrics>,
        scope: &Option<CheckpointScope>,
        reports: &Option<mpsc::UnboundedSender<Report>>,
    ) -> Result<SourcePlan> {
        let mut plan = SourcePlan {
            table: table.to_string(),
            config: config.clone(),
            statements: Vec::new(),
            outputs: Vec::new(),
            committer: self.offset_committer(config, options, resources)?,
            sink_committers: Vec::new(),
        };
        for (index, st) in self.statements.iter().enumerate() {
            if st.insert.source != table {
                continue;
            }
            let mut sinks = Vec::with_capacity(st.sinks.len());
            for name in &st.sinks {
                let sink_table = self
                    .file
                    .table(name)
                    .expect("sinks come from the job's tables");
                let opened = self.sinks[name]
                    .open(SinkContext {
                        table: sink_table,
                        window: st.window().map(|w| w.spec.clone()),
                        checkpoints: scope.clone(),
                        metrics: Arc::clone(metrics),
                        resources,
                    })
                    .await?;
                if let Some(committer) = opened.committer {
                    plan.sink_committers
                        .push((Participant::Sink(name.clone()), committer));
                }
                sinks.push((name.clone(), SinkWriter::new(sink_table, opened.sink)));
            }
            let dead_letters = {
                let (client, topic) = (config.client.clone(), config.dlq_topic.clone());
                join(tokio::task::spawn_blocking(move || {
                    DeadLetters::new(&client, &topic)
                }))
                .await?
            };
            let task = StatementTask {
                key: index.to_string(),
                operator: Operator::for_statement(st, Arc::clone(metrics))?,
                sinks,
                rejects: Rejects::new(
                    dead_letters,
                    &config.topic,
                    format!("{}:{}", self.name, st.insert.line),
                    Arc::clone(metrics),
                ),
                metrics: Arc::clone(metrics),
                reports: reports.clone(),
            };
            let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
            plan.outputs.push(tx);
            plan.statements.push((task, rx, st.window().is_some()));
        }
        Ok(plan)
    }

    /// How source `config`'s offsets reach its consumer group.
    fn offset_committer(
        &self,
        config: &KafkaSourceConfig,
        options: &RunOptions,
        resources: &Resources,
    ) -> Result<OffsetCommitter> {
        if let Some(t) = resources.get::<SharedTransaction>(RESOURCE) {
            return Ok(OffsetCommitter::InTransaction(t));
        }
        match &options.lane {
            Some(lane) => Ok(OffsetCommitter::Lane(lane.commits.clone())),
            None => OffsetCommitter::direct(config),
        }
    }

    /// Starts a built source's statements and its reading thread.
    fn start_source(
        &self,
        plan: SourcePlan,
        options: &RunOptions,
        metrics: &Arc<Metrics>,
        manifest: Option<&Manifest>,
        barriers: Option<SourceBarriers>,
        stop: &Arc<AtomicBool>,
    ) -> Result<SourceRun> {
        let mut config = plan.config;
        if let Some(start) = options.reset {
            config.startup = start;
        }
        let table = self
            .file
            .table(&plan.table)
            .expect("sources come from the job's tables");
        let mut source = KafkaSource::new(
            &self.name,
            table,
            config,
            Arc::clone(metrics),
            options.bounded,
        )?;
        if let Some(p) = manifest.and_then(|m| KafkaPositions::in_manifest(m, &plan.table)) {
            source = source
                .with_start_offsets(p.offsets)
                .with_start_clocks(p.clocks);
        }
        if let Some(l) = &options.lane {
            source = source.with_lane(l.partition);
        }
        if let Some(b) = barriers {
            source = source.with_barriers(b);
        }
        let statements = plan
            .statements
            .into_iter()
            .map(|(task, rx, windowed)| (tokio::spawn(task.run(rx)), windowed))
            .collect();
        let (outputs, stop) = (plan.outputs, Arc::clone(stop));
        Ok(SourceRun {
            table: plan.table,
            source: tokio::task::spawn_blocking(move || source.run(outputs, stop)),
            statements,
            committer: plan.committer,
        })
    }

    /// Ends a run: the final checkpoint on a clean stop or at the end of a
    /// bounded input, or (without checkpoints) the offsets committed.
    async fn finish(
        &self,
        options: RunOptions,
        metrics: Arc<Metrics>,
        periodic: Option<JoinHandle<Result<(Coordinator, Option<u64>)>>>,
        ends: Vec<SourceEnd>,
        snapshots: Snapshots,
        mut first_error: Option<EngineError>,
    ) -> Result<RunReport> {
        let mut committed = BTreeMap::new();
        if let Some(periodic) = periodic {
            let (mut coordinator, in_flight) = join(periodic).await?;
            if first_error.is_none() {
                let epoch = coordinator.next_epoch().max(in_flight.map_or(0, |e| e + 1));
                if ends.iter().all(|e| e.progress.reached_end()) {
                    coordinator.finish_input();
                }
                let mut reports = snapshots;
                for end in &ends {
                    end.progress.flush_dead_letters()?;
                    reports.push((
                        Participant::Source(end.table.clone()),
                        end.progress.positions().snapshot(),
                    ));
                }
                let retry_for = options
                    .checkpoint
                    .as_ref()
                    .map_or(DEFAULT_RETRY_FOR, |c| c.retry_for);
                coordinator.complete(epoch, reports, retry_for).await?;
                tracing::info!(epoch, "final checkpoint written");
                for end in &ends {
                    let p = end.progress.positions();
                    tracing::info!(topic = %p.topic, offsets = ?p.offsets, "offsets committed with the final checkpoint");
                    committed.insert(p.topic.clone(), p.offsets.clone());
                }
            }
        } else if first_error.is_none() {
            for end in ends {
                // Without checkpoints, open windows live only in memory: after a stop their
                // input must be read again, so only bounded runs and stateless statements commit.
                let p = end.progress.positions().clone();
                if end.stateful && !options.bounded {
                    tracing::info!(topic = %p.topic, "offsets not committed: open windows would be lost");
                    continue;
                }
                end.progress.flush_dead_letters()?;
                let (committer, positions) = (end.committer, p.clone());
                if let Err(e) = join(tokio::task::spawn_blocking(move || {
                    committer.commit_now(&positions)
                }))
                .await
                {
                    first_error.get_or_insert(e);
                    continue;
                }
                tracing::info!(topic = %p.topic, offsets = ?p.offsets, "offsets committed");
                committed.insert(p.topic, p.offsets);
            }
        }
        tracing::info!("{}", metrics.summary());
        match first_error {
            Some(e) => Err(e),
            None => Ok(RunReport { metrics, committed }),
        }
    }
}

/// Registers every committer (sinks first: output is published before the
/// offsets past its input are committed), recovers them, then loads each
/// operator's and sink's snapshot from the restored checkpoint.
async fn restore(c: &mut Checkpointing, plans: &mut [SourcePlan]) -> Result<()> {
    for plan in plans.iter_mut() {
        for (who, committer) in plan.sink_committers.drain(..) {
            c.coordinator.add_committer(who, committer);
        }
    }
    for plan in plans.iter() {
        c.coordinator.add_committer(
            Participant::Source(plan.table.clone()),
            Arc::new(plan.committer.clone()),
        );
    }
    c.coordinator.recover().await?;
    let Some(manifest) = &c.manifest else {
        return Ok(());
    };
    for plan in plans.iter_mut() {
        for (task, _, _) in &mut plan.statements {
            let operator = Participant::Operator(task.key.clone());
            let snapshot = c.coordinator.snapshot_of(manifest, &operator).await?;
            task.restore_operator(&snapshot).await?;
            for (key, sink) in &mut task.sinks {
                let snapshot: Snapshot = c
                    .coordinator
                    .snapshot_of(manifest, &Participant::Sink(key.clone()))
                    .await?;
                sink.sink().restore(&snapshot).await?;
            }
        }
    }
    Ok(())
}

/// Joins every source and its statements; the first error wins.
async fn join_all(runs: Vec<SourceRun>) -> (Vec<SourceEnd>, Snapshots, Option<EngineError>) {
    let (mut ends, mut snapshots, mut first_error) = (Vec::new(), Vec::new(), None);
    for run in runs {
        let progress = join(run.source).await;
        let (mut statements_ok, mut stateful) = (true, false);
        for (task, windowed) in run.statements {
            stateful |= windowed;
            match join(task).await {
                Ok(s) => snapshots.extend(s),
                Err(e) => {
                    statements_ok = false;
                    first_error.get_or_insert(e);
                }
            }
        }
        match progress {
            Ok(progress) if statements_ok => ends.push(SourceEnd {
                table: run.table,
                progress,
                stateful,
                committer: run.committer,
            }),
            Ok(_) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    (ends, snapshots, first_error)
}
