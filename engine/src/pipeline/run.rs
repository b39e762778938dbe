//! Running a job: build every task, restore it, start it under a
//! supervisor, join it, and end with the final checkpoint (or, without
//! checkpoints, the positions committed).
//!
//! ```text
//!  prepare: check sinks, open the job's transaction, open the state dir
//!  build:   per source: its reader, its statements' operators, their sinks (open)
//!  restore: committers recover, then operators and sinks load their snapshots
//!  start:   source threads, statement tasks, sink tasks, periodic checkpoints
//!  finish:  join all; final checkpoint and its commit phase, or positions committed
//! ```
//! Everything that can fail happens before the first task starts, so a
//! start that fails half way leaves nothing running.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::rejects::Rejects;
use super::restore::StateAtStart;
use super::statement::{SinkInput, SinkTask, Snapshots, StatementTask};
use super::supervisor::Supervisor;
use super::{join, Job, Lane, RunOptions, RunReport, CHANNEL_CAPACITY, DEFAULT_RETRY_FOR};
use crate::checkpoint::{
    run_periodic, BarrierRequests, Committer, Coordinator, Manifest, Participant, Report,
};
use crate::decode::BadKind;
use crate::error::{EngineError, Result};
use crate::message::Message;
use crate::metrics::Metrics;
use crate::operator::LATE;
use crate::resources::Resources;
use crate::sink::{CheckpointScope, JobContext, SinkContext, SinkWriter};
use crate::source::kafka::GROUP_COMMITS;
use crate::source::{
    DeadLetterSink, OpenedSource, SourceBarriers, SourceContext, SourceReader, SourceRunner,
    SourceSpec, SourceState,
};

/// The periodic checkpoints' task: the coordinator back, and the epoch left in flight.
type Periodic = JoinHandle<Result<(Coordinator, Option<u64>)>>;

/// One source and what it feeds, built but not started.
struct SourcePlan {
    reader: Box<dyn SourceReader>,
    /// The source's commit phase.
    committer: Arc<dyn Committer>,
    /// The commit phases of its statements' sinks.
    sink_committers: Vec<(Participant, Arc<dyn Committer>)>,
    tasks: SourceTasks,
}

/// The tasks a source's runner feeds, and what they share with it.
struct SourceTasks {
    table: String,
    dead_letters: Arc<dyn DeadLetterSink>,
    statements: Vec<(StatementTask, mpsc::Receiver<Message>)>,
    sinks: Vec<(SinkTask, SinkInput)>,
    outputs: Vec<mpsc::Sender<Message>>,
}

/// One statement's task and its sinks' tasks, built but not started.
struct StatementPlan {
    task: StatementTask,
    sinks: Vec<(SinkTask, SinkInput)>,
    committers: Vec<(Participant, Arc<dyn Committer>)>,
}

/// What a task of the run ends with.
enum TaskEnd {
    /// A source: where it stopped.
    Source(SourceEnd),
    /// A statement or sink: its final snapshots (none without checkpoints).
    State(Snapshots),
}

/// How a source ended.
struct SourceEnd {
    table: String,
    reader: Box<dyn SourceReader>,
    state: SourceState,
    reached_end: bool,
    dead_letters: Arc<dyn DeadLetterSink>,
}

/// With checkpoints: the coordinator, the checkpoint restored, and how this run names its output.
struct Checkpointing {
    coordinator: Coordinator,
    manifest: Option<Manifest>,
    scope: CheckpointScope,
}

impl Job {
    /// Runs the job until its bounded input ends or `stop` is cancelled
    /// (a clean stop: the final checkpoint is written).
    pub async fn run(self, options: RunOptions, stop: CancellationToken) -> Result<RunReport> {
        self.run_with_metrics(options, stop, Arc::new(Metrics::new()))
            .await
    }

    /// [`Job::run`], counting into `metrics`, which callers can watch while it runs.
    pub async fn run_with_metrics(
        self,
        options: RunOptions,
        stop: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> Result<RunReport> {
        let resources = Resources::new();
        if let Some(lane) = &options.lane {
            resources.insert(GROUP_COMMITS, Arc::new(lane.commits.clone()));
        }
        self.prepare_sinks(&options, &resources, &metrics).await?;
        let mut checkpointing = self.open_checkpoints(&options, &metrics).await?;
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let reports = checkpointing.as_ref().map(|_| reports_tx.clone());
        let scope = checkpointing.as_ref().map(|c| c.scope.clone());
        let mut plans = Vec::new();
        for (table, spec) in &self.sources {
            let ctx = BuildContext {
                options: &options,
                resources: &resources,
                metrics: &metrics,
                scope: &scope,
                reports: &reports,
            };
            plans.push(self.build_source(table, spec.as_ref(), ctx).await?);
        }
        if let Some(c) = &mut checkpointing {
            restore(c, &mut plans).await?;
        }
        let barriers = BarrierRequests::default();
        let first_epoch = scope.as_ref().map_or(1, |s| s.first_epoch);
        barriers.requested.store(first_epoch - 1, Ordering::Release);
        let participants = plans
            .iter()
            .map(|p| 1 + p.tasks.statements.len() + p.tasks.sinks.len())
            .sum();
        let manifest = checkpointing.as_ref().and_then(|c| c.manifest.clone());
        let mut runners = Vec::new();
        for plan in plans {
            let barriers = reports.as_ref().map(|r| SourceBarriers {
                requests: barriers.clone(),
                reports: r.clone(),
            });
            runners.push(self.runner(plan, &options, &metrics, manifest.as_ref(), barriers)?);
        }
        drop((reports_tx, reports)); // the coordinator stops once every task has ended
                                     // From here nothing fails before every task is started and joined.
        let cancel = stop.child_token();
        let mut supervisor = Supervisor::new(cancel.clone());
        for (runner, plan) in runners {
            start(&mut supervisor, runner, plan, &cancel);
        }
        let periodic = match (&options.checkpoint, checkpointing) {
            (Some(c), Some(ck)) => {
                let on_fatal = cancel.clone();
                Some(tokio::spawn(run_periodic(
                    ck.coordinator,
                    c.interval,
                    c.retry_for,
                    barriers,
                    reports_rx,
                    participants,
                    move || on_fatal.cancel(),
                )))
            }
            _ => None,
        };
        let (ends, first_error) = supervisor.join_all().await;
        let (mut sources, mut snapshots) = (Vec::new(), Vec::new());
        for end in ends {
            match end {
                TaskEnd::Source(s) => sources.push(s),
                TaskEnd::State(s) => snapshots.extend(s),
            }
        }
        self.finish(options, metrics, periodic, sources, snapshots, first_error)
            .await
    }

    /// Prepares every sink against the whole job: checks what only the job
    /// tells, and sets up what sinks share with it (a Kafka transaction).
    async fn prepare_sinks(
        &self,
        options: &RunOptions,
        resources: &Resources,
        metrics: &Arc<Metrics>,
    ) -> Result<()> {
        for (table, sink) in &self.sinks {
            let job = JobContext {
                job: &self.name,
                table,
                checkpoints: options.checkpoint.is_some(),
                lane: options.lane.is_some(),
                sources: &self.sources,
                sinks: &self.sinks,
                resources,
                metrics,
            };
            sink.prepare(&job).await?;
        }
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
            metrics.checkpoints(c.interval),
        );
        Ok(Some(Checkpointing {
            coordinator,
            manifest,
            scope,
        }))
    }

    /// Opens source `table` and builds the statements that read it, with their sinks open.
    async fn build_source(
        &self,
        table: &str,
        spec: &dyn SourceSpec,
        ctx: BuildContext<'_>,
    ) -> Result<SourcePlan> {
        let OpenedSource {
            reader,
            dead_letters,
            committer,
        } = spec
            .open(SourceContext {
                table: self.table(table),
                bounded: ctx.options.bounded,
                start: ctx.options.reset,
                lane: ctx.options.lane.as_ref().map(|l| l.partition),
                checkpoints: ctx.options.checkpoint.is_some(),
                metrics: Arc::clone(ctx.metrics),
                resources: ctx.resources,
            })
            .await?;
        let mut plan = SourcePlan {
            committer,
            sink_committers: Vec::new(),
            tasks: SourceTasks {
                table: table.to_string(),
                dead_letters,
                statements: Vec::new(),
                sinks: Vec::new(),
                outputs: Vec::new(),
            },
            reader,
        };
        for (index, st) in self.statements.iter().enumerate() {
            if st.insert.source != table {
                continue;
            }
            let input = (&plan.tasks.dead_letters, plan.reader.name().to_string());
            let built = self.build_statement(index, st, input, ctx).await?;
            let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
            plan.tasks.outputs.push(tx);
            plan.tasks.statements.push((built.task, rx));
            plan.tasks.sinks.extend(built.sinks);
            plan.sink_committers.extend(built.committers);
        }
        Ok(plan)
    }

    /// Builds statement `index`, with its sinks open; what it rejects goes
    /// to the dead letters of its source (`source` names it).
    async fn build_statement(
        &self,
        index: usize,
        st: &engine_sql::PlannedStatement,
        (dead_letters, source): (&Arc<dyn DeadLetterSink>, String),
        ctx: BuildContext<'_>,
    ) -> Result<StatementPlan> {
        let statement = format!("{}:{}", self.name, st.insert.line);
        let rejects = |kind| {
            Rejects::new(
                Arc::clone(dead_letters),
                &source,
                statement.clone(),
                (ctx.metrics.as_ref(), kind),
            )
        };
        let metrics = ctx.metrics.statement(&statement);
        let mut built = StatementPlan {
            task: StatementTask::new(
                index.to_string(),
                crate::operator::for_statement(st, metrics.clone())?,
                rejects(BadKind::RejectedByStatement),
                metrics,
                ctx.reports.clone(),
            ),
            sinks: Vec::new(),
            committers: Vec::new(),
        };
        // The statement's sinks take its main or final rows; a `LATE DATA TO`
        // table takes the late ones.
        let late = st.insert.clauses.late_data_to.iter().map(|t| (t, LATE));
        let sinks = st
            .sinks
            .iter()
            .map(|t| (t, self.sinks[t].revisions().output()));
        for (name, output) in sinks.chain(late) {
            let sink_table = self.table(name);
            let window = match output {
                LATE => None,
                _ => st.window().map(|w| w.kind),
            };
            let opened = self.sinks[name]
                .open(SinkContext {
                    table: sink_table,
                    window,
                    lateness_ms: st.insert.clauses.lateness_ms,
                    checkpoints: ctx.scope.clone(),
                    metrics: Arc::clone(ctx.metrics),
                    resources: ctx.resources,
                })
                .await?;
            if let Some(committer) = opened.committer {
                (built.committers).push((Participant::Sink(name.clone()), committer));
            }
            let sink = built.task.attach(
                SinkTask {
                    key: name.clone(),
                    writer: SinkWriter::new(sink_table, opened.sink),
                    rejects: rejects(BadKind::RejectedBySink),
                    reports: ctx.reports.clone(),
                    metrics: ctx.metrics.sink(name),
                },
                output,
            );
            built.sinks.push(sink);
        }
        Ok(built)
    }

    /// A table the job declares (sources and sinks come from them).
    pub(super) fn table(&self, name: &str) -> &engine_sql::TableDef {
        self.file
            .table(name)
            .expect("sources and sinks come from the job's tables")
    }

    /// The runner of a built source, restored and taking part in checkpoints.
    fn runner(
        &self,
        plan: SourcePlan,
        options: &RunOptions,
        metrics: &Arc<Metrics>,
        manifest: Option<&Manifest>,
        barriers: Option<SourceBarriers>,
    ) -> Result<(SourceRunner, SourceTasks)> {
        let tasks = plan.tasks;
        let mut runner = SourceRunner::new(
            &self.name,
            self.table(&tasks.table),
            plan.reader,
            Arc::clone(&tasks.dead_letters),
            self.sources[&tasks.table].read_options().clone(),
            Arc::clone(metrics),
            options.bounded,
        )?;
        if let Some(state) = manifest.and_then(|m| SourceState::in_manifest(m, &tasks.table)) {
            runner = runner.with_restored(state);
        }
        if let Some(b) = barriers {
            runner = runner.with_barriers(b);
        }
        Ok((runner, tasks))
    }

    /// Ends a run: the final checkpoint on a clean stop or at the end of a
    /// bounded input, or (without checkpoints) the positions committed.
    async fn finish(
        &self,
        options: RunOptions,
        metrics: Arc<Metrics>,
        periodic: Option<Periodic>,
        ends: Vec<SourceEnd>,
        snapshots: Snapshots,
        mut first_error: Option<EngineError>,
    ) -> Result<RunReport> {
        let mut committed = BTreeMap::new();
        if let Some(periodic) = periodic {
            let (coordinator, in_flight) = join(periodic).await?;
            if first_error.is_none() {
                final_checkpoint(&options, coordinator, in_flight, &ends, snapshots).await?;
                for end in &ends {
                    committed.extend(offsets_of(&end.state));
                }
            }
        } else if first_error.is_none() {
            for end in ends {
                // Without checkpoints, open windows live only in memory: after a stop their
                // input must be read again, so only bounded runs and stateless statements commit.
                if self.is_stateful(&end.table) && !options.bounded {
                    tracing::info!(table = %end.table, "offsets not committed: open windows would be lost");
                    continue;
                }
                let offsets = offsets_of(&end.state);
                if let Err(e) = commit_positions(end).await {
                    first_error.get_or_insert(e);
                    continue;
                }
                tracing::info!(?offsets, "offsets committed");
                committed.extend(offsets);
            }
        }
        tracing::info!("{}", metrics.summary());
        match first_error {
            Some(e) => Err(e),
            None => Ok(RunReport { metrics, committed }),
        }
    }

    /// Whether a statement reading source `table` keeps windows.
    fn is_stateful(&self, table: &str) -> bool {
        self.statements
            .iter()
            .any(|st| st.insert.source == table && st.window().is_some())
    }
}

/// The final checkpoint: after the one in flight (if any), carrying every
/// source's end state and every statement's final snapshot.
async fn final_checkpoint(
    options: &RunOptions,
    mut coordinator: Coordinator,
    in_flight: Option<u64>,
    ends: &[SourceEnd],
    mut reports: Snapshots,
) -> Result<()> {
    let epoch = coordinator.next_epoch().max(in_flight.map_or(0, |e| e + 1));
    coordinator.barrier_requested(); // its barrier is the end of every task
    if ends.iter().all(|e| e.reached_end) {
        coordinator.finish_input();
    }
    for end in ends {
        let dead_letters = Arc::clone(&end.dead_letters);
        join(tokio::task::spawn_blocking(move || dead_letters.flush())).await?;
        reports.push((Participant::Source(end.table.clone()), end.state.snapshot()));
    }
    let retry_for = options
        .checkpoint
        .as_ref()
        .map_or(DEFAULT_RETRY_FOR, |c| c.retry_for);
    coordinator.complete(epoch, reports, retry_for).await?;
    tracing::info!(epoch, "final checkpoint written; offsets committed with it");
    Ok(())
}

/// A run without checkpoints: every dead letter stored, then the source's
/// positions committed where it keeps them.
async fn commit_positions(end: SourceEnd) -> Result<()> {
    let SourceEnd {
        mut reader,
        state,
        dead_letters,
        ..
    } = end;
    join(tokio::task::spawn_blocking(move || {
        dead_letters.flush()?;
        reader.commit(&state.positions)
    }))
    .await
}

/// A Kafka source's next offsets by topic, for the run's report.
fn offsets_of(state: &SourceState) -> BTreeMap<String, BTreeMap<i32, i64>> {
    serde_json::from_value::<crate::source::kafka::KafkaPositions>(state.positions.clone())
        .map(|p| BTreeMap::from([(p.topic, p.offsets)]))
        .unwrap_or_default()
}

/// What building a source's tasks needs from the run.
#[derive(Clone, Copy)]
struct BuildContext<'a> {
    options: &'a RunOptions,
    resources: &'a Resources,
    metrics: &'a Arc<Metrics>,
    scope: &'a Option<CheckpointScope>,
    reports: &'a Option<mpsc::UnboundedSender<Report>>,
}

/// Starts a source's thread and its statements' and sinks' tasks.
fn start(
    supervisor: &mut Supervisor<TaskEnd>,
    runner: SourceRunner,
    plan: SourceTasks,
    cancel: &CancellationToken,
) {
    for (task, rx) in plan.statements {
        let name = format!("statement {}", task.key);
        supervisor.spawn(name, async move { task.run(rx).await.map(TaskEnd::State) });
    }
    for (task, input) in plan.sinks {
        let name = format!("sink {}", task.key);
        supervisor.spawn(
            name,
            async move { task.run(input).await.map(TaskEnd::State) },
        );
    }
    let (outputs, stop) = (plan.outputs, cancel.clone());
    let (table, dead_letters) = (plan.table, plan.dead_letters);
    supervisor.spawn_blocking(format!("source {table}"), move || {
        let end = runner.run(outputs, stop)?;
        Ok(TaskEnd::Source(SourceEnd {
            table,
            reader: end.reader,
            state: end.state,
            reached_end: end.reached_end,
            dead_letters,
        }))
    });
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
            Participant::Source(plan.tasks.table.clone()),
            Arc::clone(&plan.committer),
        );
    }
    c.coordinator.recover().await?;
    let Some(manifest) = &c.manifest else {
        return Ok(());
    };
    for plan in plans.iter_mut() {
        for (task, _) in &mut plan.tasks.statements {
            let operator = Participant::Operator(task.key.clone());
            let snapshot = c.coordinator.snapshot_of(manifest, &operator).await?;
            task.restore(&snapshot).await?;
        }
        for (task, _) in &mut plan.tasks.sinks {
            let sink = Participant::Sink(task.key.clone());
            let snapshot = c.coordinator.snapshot_of(manifest, &sink).await?;
            task.writer.sink().restore(&snapshot).await?;
        }
    }
    Ok(())
}
