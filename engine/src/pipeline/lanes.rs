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
use crate::error::{EngineError, Result};
use crate::metrics::Metrics;
use crate::source::kafka::{end_offsets, GroupCommits, GroupEvent, GroupMember, KafkaPositions};

/// How often the loop looks for lanes that ended and for a stop request.
const CHECK_EVERY: Duration = Duration::from_millis(200);

/// How often a bounded run reads the lanes' newest checkpoints to see whether the group is done.
const DONE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// A running lane.
struct RunningLane {
    stop: CancellationToken,
    handle: JoinHandle<Result<RunReport>>,
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
        let ends = match options.bounded {
            true => {
                let config = source.clone();
                Some(join(tokio::task::spawn_blocking(move || end_offsets(&config))).await?)
            }
            false => None,
        };
        let (mut group_done, mut last_done_check) = (false, tokio::time::Instant::now());
        let commits = GroupCommits::default();
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let member_stop = CancellationToken::new();
        let member = {
            let member = GroupMember::new(source.clone(), commits.clone());
            let stop = member_stop.clone();
            tokio::task::spawn_blocking(move || member.run(events_tx, stop))
        };

        let mut lanes: BTreeMap<i32, RunningLane> = BTreeMap::new();
        let mut first_error: Option<EngineError> = None;
        let mut tick = tokio::time::interval(CHECK_EVERY);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    // The member left the group: stopped, or the bounded input is done.
                    None => break,
                    Some(GroupEvent::Assigned(partitions)) => {
                        if stop.is_cancelled() || member_stop.is_cancelled() {
                            continue; // stopping: start nothing new
                        }
                        for p in partitions {
                            if lanes.contains_key(&p) {
                                continue;
                            }
                            let lane = lane_options(&options, &checkpoint, &source.topic, p, &commits);
                            match self.start_lane(lane, &metrics).await {
                                Ok(running) => {
                                    lanes.insert(p, running);
                                }
                                Err(e) => {
                                    first_error.get_or_insert(e);
                                }
                            }
                        }
                    }
                    Some(GroupEvent::Revoked(partitions, done)) => {
                        for p in partitions {
                            if let Some(lane) = lanes.remove(&p) {
                                if let Err(e) = stop_lane(p, lane).await {
                                    first_error.get_or_insert(e);
                                }
                            }
                        }
                        let _ = done.send(());
                    }
                },
                _ = tick.tick() => {}
            }
            join_ended(&mut lanes, &mut first_error).await;
            if let Some(ends) = &ends {
                if !group_done && last_done_check.elapsed() >= DONE_CHECK_EVERY {
                    last_done_check = tokio::time::Instant::now();
                    group_done =
                        group_finished(&checkpoint.state_dir, &source.table, &source.topic, ends)
                            .await;
                    if group_done {
                        tracing::info!(topic = %source.topic, "every partition's lane has finished its input");
                    }
                }
            }
            // Bounded lanes still running end by themselves: stopping them would
            // leave a newest checkpoint that is not the finished one.
            let stopping =
                stop.is_cancelled() || first_error.is_some() || (group_done && lanes.is_empty());
            if stopping && !member_stop.is_cancelled() {
                // Lanes first: their final checkpoints and offsets, then the member commits and leaves.
                stop_all(&mut lanes, &mut first_error).await;
                member_stop.cancel();
            }
        }
        stop_all(&mut lanes, &mut first_error).await;
        let left = join(member).await;
        match first_error {
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
    ) -> Result<(crate::source::kafka::KafkaSourceConfig, CheckpointOptions)> {
        let Some(checkpoint) = options.checkpoint.clone() else {
            return Err(EngineError::Execution(
                "--scale-out needs checkpoints: a partition's state moves between processes through them"
                    .into(),
            ));
        };
        if let Some(sink) = self.exactly_once_sinks().keys().next() {
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
    fn check_partitioned_by_key(
        &self,
        source: &crate::source::kafka::KafkaSourceConfig,
    ) -> Result<()> {
        let table = self
            .file
            .table(&source.table)
            .expect("sources come from the job's tables");
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

/// Joins the lanes that ended: a bounded lane at its partition's end, or one that failed.
async fn join_ended(lanes: &mut BTreeMap<i32, RunningLane>, first_error: &mut Option<EngineError>) {
    let ended: Vec<i32> = lanes
        .iter()
        .filter(|(_, l)| l.handle.is_finished())
        .map(|(&p, _)| p)
        .collect();
    for p in ended {
        let lane = lanes.remove(&p).expect("listed above");
        match join(lane.handle).await {
            Ok(_) => tracing::info!(partition = p, "lane finished"),
            Err(e) => {
                tracing::error!(partition = p, error = %e, "lane failed");
                first_error.get_or_insert(e);
            }
        }
    }
}

/// Stops a lane as a clean stop does: final checkpoint, offsets recorded.
async fn stop_lane(partition: i32, lane: RunningLane) -> Result<()> {
    lane.stop.cancel();
    join(lane.handle).await?;
    tracing::info!(partition, "lane stopped");
    Ok(())
}

/// Stops every lane in `lanes`, keeping the first error.
async fn stop_all(lanes: &mut BTreeMap<i32, RunningLane>, first_error: &mut Option<EngineError>) {
    for (p, lane) in std::mem::take(lanes) {
        if let Err(e) = stop_lane(p, lane).await {
            first_error.get_or_insert(e);
        }
    }
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
