//! Scale-out: a job run as lanes, one per source partition this process owns.
//!
//! ```text
//!  GroupMember (thread: subscribe, rebalance callbacks, group commits)
//!      | Assigned([1, 3]) / Revoked([1, 3], done)
//!      v
//!  run_scaled_out ---> lane p1: the whole job over partition 1, checkpoints in <state dir>/<topic>-1
//!                 \--> lane p3: ...                                                   <state dir>/<topic>-3
//! ```
//! The topic is keyed by symbol, so a partition holds every trade of its
//! symbols and a lane's windows are complete on their own. A lane's state
//! (windows, offsets, open lake files) lives in its own checkpoints, so when a
//! partition moves to another process, its new lane restores from exactly
//! where the old one stopped (or, after a crash, from its last checkpoint).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{join, CheckpointOptions, Job, Lane, RunOptions, RunReport};
use crate::checkpoint::CheckpointStore;
use crate::error::{Chain, EngineError, Result};
use crate::metrics::Metrics;
use crate::source::kafka::{
    end_offsets, GroupCommits, GroupEvent, GroupMember, KafkaPositions, KafkaSourceConfig,
};

/// How often the loop looks for lanes that ended and for a stop request.
const CHECK_EVERY: Duration = Duration::from_millis(200);

/// How often a bounded run reads the lanes' newest checkpoints to see whether the group is done.
const DONE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// A running lane.
struct RunningLane {
    stop: CancellationToken,
    handle: JoinHandle<Result<RunReport>>,
}

/// The lanes this process runs, and the first error any of them met.
struct Lanes<'a> {
    job: &'a Job,
    options: &'a RunOptions,
    checkpoint: &'a CheckpointOptions,
    topic: &'a str,
    commits: GroupCommits,
    metrics: Arc<Metrics>,
    running: BTreeMap<i32, RunningLane>,
    first_error: Option<EngineError>,
}

impl Lanes<'_> {
    /// Starts a lane for each newly assigned partition.
    async fn start(&mut self, partitions: Vec<i32>) {
        for p in partitions {
            if self.running.contains_key(&p) {
                continue;
            }
            let lane = lane_options(self.options, self.checkpoint, self.topic, p, &self.commits);
            match self.job.start_lane(lane, &self.metrics).await {
                Ok(running) => {
                    self.running.insert(p, running);
                }
                Err(e) => self.failed(e),
            }
        }
    }

    /// Stops the lanes of revoked partitions (final checkpoints, offsets recorded).
    async fn stop(&mut self, partitions: Vec<i32>) {
        for p in partitions {
            if let Some(lane) = self.running.remove(&p) {
                if let Err(e) = stop_lane(p, lane).await {
                    self.failed(e);
                }
            }
        }
    }

    /// Stops every lane.
    async fn stop_all(&mut self) {
        let all = self.running.keys().copied().collect();
        self.stop(all).await;
    }

    /// Joins the lanes that ended: a bounded lane at its partition's end, or one that failed.
    async fn join_ended(&mut self) {
        let ended: Vec<i32> = (self.running.iter())
            .filter(|(_, l)| l.handle.is_finished())
            .map(|(&p, _)| p)
            .collect();
        for p in ended {
            let lane = self.running.remove(&p).expect("listed above");
            match join(lane.handle).await {
                Ok(_) => tracing::info!(partition = p, "lane finished"),
                Err(e) => {
                    tracing::error!(partition = p, error = %Chain(&e), "lane failed");
                    self.failed(e);
                }
            }
        }
    }

    fn failed(&mut self, e: EngineError) {
        self.first_error.get_or_insert(e);
    }
}

/// In a bounded run: whether every partition's lane, in whichever process,
/// has finished its input up to the end offsets listed at the start.
struct GroupDone {
    ends: BTreeMap<i32, i64>,
    done: bool,
    last_check: tokio::time::Instant,
}

impl GroupDone {
    /// Not done: the end offsets of `source`'s topic are listed now.
    async fn new(source: &KafkaSourceConfig) -> Result<Self> {
        let config = source.clone();
        let ends = join(tokio::task::spawn_blocking(move || end_offsets(&config))).await?;
        Ok(Self {
            ends,
            done: false,
            last_check: tokio::time::Instant::now(),
        })
    }

    /// Looks at the lanes' newest checkpoints at most every [`DONE_CHECK_EVERY`].
    async fn check(&mut self, state_dir: &str, table: &str, topic: &str) -> bool {
        if !self.done && self.last_check.elapsed() >= DONE_CHECK_EVERY {
            self.last_check = tokio::time::Instant::now();
            self.done = group_finished(state_dir, table, topic, &self.ends).await;
            if self.done {
                tracing::info!(topic, "every partition's lane has finished its input");
            }
        }
        self.done
    }
}

impl Job {
    /// Runs the job as one member of its source's consumer group: one lane
    /// per partition the group assigns to this process, each checkpointing
    /// into `<state dir>/<topic>-<partition>`. Several processes started
    /// alike share the partitions; when one leaves or dies, the others take
    /// its partitions over from their checkpoints.
    ///
    /// `options.bounded`: ends once every partition's lane, in whichever
    /// process, has finished its input up to at least the end offsets listed
    /// now (its newest checkpoint says so), so a member that dies is made up for.
    pub async fn run_scaled_out(
        self,
        options: RunOptions,
        stop: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> Result<RunReport> {
        let (source, checkpoint) = self.scale_out_source(&options)?;
        let mut group_done = match options.bounded {
            true => Some(GroupDone::new(&source).await?),
            false => None,
        };
        let commits = GroupCommits::default();
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let member_stop = CancellationToken::new();
        let member = {
            let member = GroupMember::new(source.clone(), commits.clone());
            let stop = member_stop.clone();
            tokio::task::spawn_blocking(move || member.run(events_tx, stop))
        };
        let mut lanes = Lanes {
            job: &self,
            options: &options,
            checkpoint: &checkpoint,
            topic: &source.topic,
            commits,
            metrics: Arc::clone(&metrics),
            running: BTreeMap::new(),
            first_error: None,
        };
        let mut tick = tokio::time::interval(CHECK_EVERY);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    // The member left the group: stopped, or the bounded input is done.
                    None => break,
                    // Stopping: start nothing new.
                    Some(GroupEvent::Assigned(_)) if stop.is_cancelled() || member_stop.is_cancelled() => continue,
                    Some(GroupEvent::Assigned(partitions)) => lanes.start(partitions).await,
                    Some(GroupEvent::Revoked(partitions, done)) => {
                        lanes.stop(partitions).await;
                        let _ = done.send(());
                    }
                },
                _ = tick.tick() => {}
            }
            lanes.join_ended().await;
            let finished = match &mut group_done {
                Some(g) => {
                    g.check(&checkpoint.state_dir, &source.table, &source.topic)
                        .await
                }
                None => false,
            };
            // Bounded lanes still running end by themselves: stopping them would
            // leave a newest checkpoint that is not the finished one.
            let stopping = stop.is_cancelled()
                || lanes.first_error.is_some()
                || (finished && lanes.running.is_empty());
            if stopping && !member_stop.is_cancelled() {
                // Lanes first: their final checkpoints and offsets, then the member commits and leaves.
                lanes.stop_all().await;
                member_stop.cancel();
            }
        }
        lanes.stop_all().await;
        let left = join(member).await;
        match lanes.first_error {
            Some(e) => Err(e),
            None => left.map(|()| RunReport {
                metrics,
                committed: BTreeMap::new(),
            }),
        }
    }

    /// The one Kafka source a job scaled out reads, and its checkpoints:
    /// what `--scale-out` needs, or the error saying why it cannot run.
    fn scale_out_source(
        &self,
        options: &RunOptions,
    ) -> Result<(KafkaSourceConfig, CheckpointOptions)> {
        let Some(checkpoint) = options.checkpoint.clone() else {
            return Err(EngineError::Execution(
                "--scale-out needs checkpoints: a partition's state moves between processes through them"
                    .into(),
            ));
        };
        if let Some(sink) = crate::sink::kafka::exactly_once_sinks(&self.sinks)
            .keys()
            .next()
        {
            return Err(EngineError::Execution(format!(
                "--scale-out cannot run {}: sink `{sink}` has sink.commit_mode = 'exactly_once', \
                 whose transactions commit every source partition's offsets at once (one process)",
                self.name
            )));
        }
        let kafka = self.kafka_sources();
        let source = match (
            kafka.values().collect::<Vec<_>>().as_slice(),
            self.sources.len(),
        ) {
            ([one], 1) => (**one).clone(),
            _ => {
                return Err(EngineError::Execution(format!(
                    "--scale-out runs jobs with one Kafka source table; {} reads {}",
                    self.name,
                    self.sources.len()
                )))
            }
        };
        if options.reset.is_some() {
            return Err(EngineError::Execution(format!(
                "--reset cannot run with --scale-out: every lane that moves would start over again. \
                 Start {} over in one process (e.g. engine run --reset --start ... --bounded), then scale out",
                self.name
            )));
        }
        self.check_partitioned_by_key(&source)?;
        Ok((source, checkpoint))
    }

    /// A lane sees one partition, so a windowed `GROUP BY` is complete in
    /// each lane only if all of a group's records are in one partition: its
    /// keys must include the record key, as a `METADATA FROM 'key'` column
    /// or the column the source declares as `key_field` (which the source
    /// enforces). Otherwise every lane would emit its own partial row for
    /// the same window.
    fn check_partitioned_by_key(&self, source: &KafkaSourceConfig) -> Result<()> {
        let table = self.table(&source.table);
        let mut key_columns: Vec<&str> = table
            .columns
            .iter()
            .filter(|c| c.metadata == Some(engine_sql::MetadataField::Key))
            .map(|c| c.name.as_str())
            .collect();
        key_columns.extend(source.read.key_field.as_deref());
        for st in self.statements.iter().filter(|st| st.window().is_some()) {
            let groups = st.plan.group_columns();
            if !groups.iter().any(|g| key_columns.contains(&g.as_str())) {
                return Err(EngineError::Execution(format!(
                    "{}:{}: --scale-out runs each source partition on its own, but this statement's \
                     GROUP BY ({}) does not include the record key of `{}`, so each lane would emit \
                     its own partial row for every window. Group by the key: declare it on the source \
                     table (`key_field = 'symbol'` when records are keyed by symbol, or a column \
                     `METADATA FROM 'key'`) and include that column in the GROUP BY, or run without --scale-out",
                    self.name,
                    st.insert.line,
                    groups.join(", "),
                    source.table
                )));
            }
        }
        Ok(())
    }

    /// Plans the job afresh and runs it as the lane in `options`.
    async fn start_lane(&self, options: RunOptions, metrics: &Arc<Metrics>) -> Result<RunningLane> {
        let job = self.replan().await?;
        let stop = CancellationToken::new();
        let partition = options.lane.as_ref().map_or(-1, |l| l.partition);
        tracing::info!(
            partition,
            state_dir = options.checkpoint.as_ref().map(|c| c.state_dir.as_str()),
            "lane starting"
        );
        let handle = tokio::spawn(job.run_with_metrics(options, stop.clone(), Arc::clone(metrics)));
        Ok(RunningLane { stop, handle })
    }
}

/// The options of the lane of partition `p`: the job's, checkpointing into
/// the lane's own state dir inside the job's.
fn lane_options(
    options: &RunOptions,
    checkpoint: &CheckpointOptions,
    topic: &str,
    p: i32,
    commits: &GroupCommits,
) -> RunOptions {
    RunOptions {
        bounded: options.bounded,
        checkpoint: Some(CheckpointOptions {
            state_dir: lane_state_dir(&checkpoint.state_dir, topic, p),
            interval: checkpoint.interval,
            retry_for: checkpoint.retry_for,
        }),
        lane: Some(Lane {
            partition: p,
            commits: commits.clone(),
            job_state_dir: checkpoint.state_dir.clone(),
        }),
        reset: None,
    }
}

/// Stops a lane as a clean stop does: final checkpoint, offsets recorded.
async fn stop_lane(partition: i32, lane: RunningLane) -> Result<()> {
    lane.stop.cancel();
    join(lane.handle).await?;
    tracing::info!(partition, "lane stopped");
    Ok(())
}

/// Whether every partition's newest checkpoint was taken at the end of a
/// bounded input at or past its end offset in `ends`. A finished checkpoint
/// from an earlier run does not count once new records arrived: the listed
/// end then lies past its offsets.
async fn group_finished(
    state_dir: &str,
    table: &str,
    topic: &str,
    ends: &BTreeMap<i32, i64>,
) -> bool {
    for (&p, &end) in ends {
        let Ok(store) = CheckpointStore::open(&lane_state_dir(state_dir, topic, p)) else {
            return false;
        };
        let done = match store.latest().await {
            Ok(Some(m)) => {
                m.finished
                    && KafkaPositions::in_manifest(&m, table)
                        .and_then(|o| o.offsets.get(&p).copied())
                        .is_some_and(|next| next >= end)
            }
            _ => false,
        };
        if !done {
            return false;
        }
    }
    true
}

/// `<state dir>/<topic>-<partition>`: each lane's own checkpoints.
pub(super) fn lane_state_dir(state_dir: &str, topic: &str, partition: i32) -> String {
    format!("{}/{topic}-{partition}", state_dir.trim_end_matches('/'))
}
