//! Membership of the source's consumer group, for `engine run --scale-out`.
//!
//! Kafka's group protocol decides which process reads which partitions. The
//! [`GroupMember`] joins the group with `subscribe`, but reads nothing itself:
//! it pauses what it is given and reports assignments and revocations, and the
//! job runs one lane per assigned partition (see `crate::lanes`). A revocation
//! waits until the lanes of the revoked partitions have stopped and written
//! their final checkpoint, so the next owner starts from exactly there.
//!
//! Only a group member may commit the group's offsets (brokers reject commits
//! from outside while the group has members), so lanes hand their durable
//! offsets to [`GroupCommits`], and the member commits them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc::UnboundedSender;

use super::config::KafkaSourceConfig;
use crate::error::{EngineError, Result};
use crate::kafka::{ConsumerLogs, METADATA_TIMEOUT};

/// Member defaults that `properties.*` may override. librdkafka's 45 s session
/// timeout would leave a dead process's partitions unread for that long.
const MEMBER_DEFAULTS: &[(&str, &str)] = &[
    ("session.timeout.ms", "10000"),
    ("heartbeat.interval.ms", "1000"),
];

/// How often the member commits new offsets and, bounded, checks whether the group is done.
const TICK: Duration = Duration::from_secs(1);

/// How long the end-of-input probe may take before the check is left for the next tick.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Offsets made durable by lanes (covered by a complete checkpoint), waiting
/// for the group member to commit them.
#[derive(Debug, Clone, Default)]
pub struct GroupCommits(Arc<Mutex<PendingCommits>>);

#[derive(Debug, Default)]
struct PendingCommits {
    offsets: BTreeMap<i32, i64>,
    changed: bool,
}

impl GroupCommits {
    /// Records the next offset to read of each partition in `offsets`.
    pub fn record(&self, offsets: &BTreeMap<i32, i64>) {
        let mut pending = self.0.lock().expect("no panics while locked");
        for (&p, &next) in offsets {
            let entry = pending.offsets.entry(p).or_insert(next);
            *entry = (*entry).max(next);
        }
        pending.changed = true;
    }

    /// The recorded offsets, if any changed since the last call.
    fn take_changed(&self) -> Option<BTreeMap<i32, i64>> {
        let mut pending = self.0.lock().expect("no panics while locked");
        if !std::mem::take(&mut pending.changed) {
            return None;
        }
        Some(pending.offsets.clone())
    }

    /// The recorded offsets of `partitions`.
    fn of(&self, partitions: &[i32]) -> BTreeMap<i32, i64> {
        let pending = self.0.lock().expect("no panics while locked");
        partitions
            .iter()
            .filter_map(|p| pending.offsets.get(p).map(|&o| (*p, o)))
            .collect()
    }
}

/// What the group tells this process.
#[derive(Debug)]
pub enum GroupEvent {
    /// These partitions are now this process's: start their lanes.
    Assigned(Vec<i32>),
    /// These partitions are being taken away: stop their lanes (final
    /// checkpoint written), then send on the channel; the rebalance waits.
    Revoked(Vec<i32>, std::sync::mpsc::Sender<()>),
}

/// One process's membership of the source's consumer group.
pub struct GroupMember {
    config: KafkaSourceConfig,
    commits: GroupCommits,
    bounded: bool,
}

impl GroupMember {
    /// A member for the source `config`, committing what lanes record in `commits`.
    /// `bounded`: end once the group has committed every partition up to the
    /// end offsets listed at start (whichever process read them).
    pub fn new(config: KafkaSourceConfig, commits: GroupCommits, bounded: bool) -> Self {
        Self {
            config,
            commits,
            bounded,
        }
    }

    /// Stays in the group until `stop` is set (or, bounded, the group is
    /// done), reporting assignments to `events`. Blocking: run it on its own thread.
    pub fn run(self, events: UnboundedSender<GroupEvent>, stop: Arc<AtomicBool>) -> Result<()> {
        let topic = self.config.topic.clone();
        let err = |what: &str, e: KafkaError| {
            EngineError::Kafka(format!(
                "{what} (group `{}`, topic `{topic}`): {e}",
                self.config.group_id
            ))
        };
        let context = MemberContext {
            topic: topic.clone(),
            events,
            commits: self.commits.clone(),
        };
        let consumer: BaseConsumer<MemberContext> = self
            .config
            .client
            .client_config_with(MEMBER_DEFAULTS)
            .set("group.id", &self.config.group_id)
            .set("enable.auto.commit", "false")
            .create_with_context(context)
            .map_err(|e| err("creating the group member", e))?;
        let ends = if self.bounded {
            Some(self.end_offsets(&consumer)?)
        } else {
            None
        };
        consumer
            .subscribe(&[&topic])
            .map_err(|e| err("joining the consumer group", e))?;
        tracing::info!(group = %self.config.group_id, topic = %topic, "joined the consumer group");
        let mut last_tick = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            // Partitions are paused: polling serves the group protocol and the callbacks.
            match consumer.poll(Duration::from_millis(100)) {
                Some(Err(e)) if e.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) => {
                    tracing::warn!(group = %self.config.group_id, error = %e, "consumer group (librdkafka retries)")
                }
                _ => {}
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                self.commit_changed(&consumer, CommitMode::Async);
                if let Some(ends) = &ends {
                    if self.group_done(&consumer, ends) {
                        tracing::info!(group = %self.config.group_id, "the group has read every partition to its end");
                        break;
                    }
                }
            }
        }
        self.commit_changed(&consumer, CommitMode::Sync);
        // Dropping the consumer leaves the group (the revoke callback runs once more).
        Ok(())
    }

    /// The end offset of every partition of the topic now.
    fn end_offsets(&self, consumer: &BaseConsumer<MemberContext>) -> Result<BTreeMap<i32, i64>> {
        let topic = &self.config.topic;
        let err = |e: KafkaError| {
            EngineError::Kafka(format!(
                "reading end offsets of topic `{topic}` on {}: {e}",
                self.config.client.bootstrap_servers
            ))
        };
        let metadata = consumer
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .map_err(err)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default();
        if partitions.is_empty() {
            return Err(EngineError::Kafka(format!(
                "topic `{topic}` does not exist on {}",
                self.config.client.bootstrap_servers
            )));
        }
        partitions
            .into_iter()
            .map(|p| {
                let (_, high) = consumer
                    .fetch_watermarks(topic, p, METADATA_TIMEOUT)
                    .map_err(err)?;
                Ok((p, high))
            })
            .collect()
    }

    /// Whether the group has committed every partition to its end: its
    /// committed offsets reached `ends`, and nothing is there to read after
    /// them. (The listed ends are only a lower bound on some brokers, Tansu
    /// among them, so a dead member's lane could have committed past the
    /// listed end and still left records unread.)
    fn group_done(
        &self,
        consumer: &BaseConsumer<MemberContext>,
        ends: &BTreeMap<i32, i64>,
    ) -> bool {
        let mut tpl = TopicPartitionList::new();
        for &p in ends.keys() {
            tpl.add_partition(&self.config.topic, p);
        }
        let Ok(committed) = consumer.committed_offsets(tpl, METADATA_TIMEOUT) else {
            return false; // asked again at the next tick
        };
        let mut offsets = BTreeMap::new();
        for (&p, &end) in ends {
            match committed
                .find_partition(&self.config.topic, p)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(n)) if n >= end => offsets.insert(p, n),
                _ if end == 0 => offsets.insert(p, 0),
                _ => return false,
            };
        }
        match self.nothing_after(&offsets) {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(group = %self.config.group_id, error = %e, "checking the ends of the partitions");
                false
            }
        }
    }

    /// Whether reading every partition from `offsets` finds no record.
    fn nothing_after(&self, offsets: &BTreeMap<i32, i64>) -> Result<bool> {
        let topic = &self.config.topic;
        let err = |e: KafkaError| EngineError::Kafka(format!("probing topic `{topic}`: {e}"));
        // Assigned, never subscribed: it does not join the group (librdkafka wants a group.id all the same).
        let probe: BaseConsumer<ConsumerLogs> = self
            .config
            .client
            .client_config()
            .set("group.id", format!("{}.probe", self.config.group_id))
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .create_with_context(ConsumerLogs)
            .map_err(err)?;
        let mut tpl = TopicPartitionList::new();
        for (&p, &n) in offsets {
            tpl.add_partition_offset(topic, p, Offset::Offset(n))
                .map_err(err)?;
        }
        probe.assign(&tpl).map_err(err)?;
        let mut at_end = std::collections::BTreeSet::new();
        let deadline = Instant::now() + PROBE_TIMEOUT;
        while at_end.len() < offsets.len() && Instant::now() < deadline {
            match probe.poll(Duration::from_millis(100)) {
                Some(Ok(_)) => return Ok(false),
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    at_end.insert(p);
                }
                _ => {}
            }
        }
        Ok(at_end.len() == offsets.len())
    }

    /// Commits the offsets lanes recorded since the last commit, for the
    /// partitions this member owns now.
    fn commit_changed(&self, consumer: &BaseConsumer<MemberContext>, mode: CommitMode) {
        let Some(offsets) = self.commits.take_changed() else {
            return;
        };
        let owned: Vec<i32> = consumer
            .assignment()
            .map(|tpl| {
                tpl.elements_for_topic(&self.config.topic)
                    .iter()
                    .map(|e| e.partition())
                    .collect()
            })
            .unwrap_or_default();
        let offsets: BTreeMap<i32, i64> = offsets
            .into_iter()
            .filter(|(p, _)| owned.contains(p))
            .collect();
        commit(consumer, &self.config.topic, &offsets, mode);
    }
}

/// Commits `offsets` of `topic`; a failure is logged (the checkpoints, not
/// the group's offsets, are what lanes restore from).
fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    offsets: &BTreeMap<i32, i64>,
    mode: CommitMode,
) {
    if offsets.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (&p, &next) in offsets {
        if tpl
            .add_partition_offset(topic, p, Offset::Offset(next))
            .is_err()
        {
            return;
        }
    }
    if let Err(e) = consumer.commit(&tpl, mode) {
        tracing::warn!(topic, error = %e, ?offsets, "committing group offsets");
    }
}

/// The member's librdkafka context: rebalances become [`GroupEvent`]s.
struct MemberContext {
    topic: String,
    events: UnboundedSender<GroupEvent>,
    commits: GroupCommits,
}

impl MemberContext {
    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect()
    }
}

impl ClientContext for MemberContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::error!("librdkafka (group member): {error}: {reason}");
    }
}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let partitions = self.partitions(tpl);
                if partitions.is_empty() {
                    return;
                }
                tracing::info!(topic = %self.topic, ?partitions, "partitions revoked: stopping their lanes");
                let (done, stopped) = std::sync::mpsc::channel();
                // Nobody listening means the job has stopped: no lanes left to wait for.
                if self
                    .events
                    .send(GroupEvent::Revoked(partitions.clone(), done))
                    .is_ok()
                {
                    let _ = stopped.recv();
                }
                // Still the owner until this callback returns: commit what the lanes made durable.
                let offsets = self.commits.of(&partitions);
                commit(consumer, &self.topic, &offsets, CommitMode::Sync);
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => {
                tracing::warn!(topic = %self.topic, error = %e, "consumer group rebalance failed (librdkafka retries)")
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let partitions = self.partitions(tpl);
            if partitions.is_empty() {
                return;
            }
            // The lanes read; the member only holds the assignment.
            if let Err(e) = consumer.pause(tpl) {
                tracing::warn!(topic = %self.topic, error = %e, "pausing the group member's partitions");
            }
            tracing::info!(topic = %self.topic, ?partitions, "partitions assigned: starting their lanes");
            let _ = self.events.send(GroupEvent::Assigned(partitions));
        }
    }
}
