//! Membership of the source's consumer group, for `engine run --scale-out`.
//!
//! Kafka's group protocol decides which process reads which partitions. The
//! [`GroupMember`] joins the group with `subscribe`, but reads nothing itself:
//! it pauses what it is given and reports assignments and revocations, and the
//! job runs one lane per assigned partition (`pipeline/lanes.rs`). A revocation
//! waits until the lanes of the revoked partitions have stopped and written
//! their final checkpoint, so the next owner starts from exactly there.
//!
//! Only a group member may commit the group's offsets (brokers reject commits
//! from outside while the group has members), so lanes hand their durable
//! offsets to [`GroupCommits`], and the member commits them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::config::KafkaSourceConfig;
use crate::error::{EngineError, Result};
use crate::kafka::{partitions_of, ConsumerLogs, METADATA_TIMEOUT};

/// Member defaults that `properties.*` may override. librdkafka's 45 s session
/// timeout would leave a dead process's partitions unread for that long. The
/// poll interval is the rebalance timeout the member asks for: a member that
/// vanishes in the middle of a rebalance should hold the group up for this
/// long, not librdkafka's 5 minutes. (Tansu 0.6 does not honour it: a member
/// stopped while rejoining held a group for over 5 minutes.) Our member polls
/// every 100 ms; only a revocation, waiting for its lanes' final checkpoints, blocks it.
const MEMBER_DEFAULTS: &[(&str, &str)] = &[
    ("session.timeout.ms", "10000"),
    ("heartbeat.interval.ms", "1000"),
    ("max.poll.interval.ms", "30000"),
];

/// How often the member commits new offsets.
const TICK: Duration = Duration::from_secs(1);

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
}

impl GroupMember {
    /// A member for the source `config`, committing what lanes record in `commits`.
    pub fn new(config: KafkaSourceConfig, commits: GroupCommits) -> Self {
        Self { config, commits }
    }

    /// Stays in the group until `stop` is cancelled, reporting assignments to
    /// `events`. Blocking: run it on its own thread.
    pub fn run(self, events: UnboundedSender<GroupEvent>, stop: CancellationToken) -> Result<()> {
        let topic = self.config.topic.clone();
        let err = |what: &str, e: KafkaError| {
            EngineError::kafka(
                format!("{what} (group `{}`, topic `{topic}`)", self.config.group_id),
                e,
            )
        };
        let context = |hooks| MemberContext {
            topic: topic.clone(),
            events,
            commits: self.commits.clone(),
            hooks,
        };
        let config = (self.config.client.client_config_with(MEMBER_DEFAULTS))
            .set("group.id", &self.config.group_id)
            .set("enable.auto.commit", "false")
            .clone();
        let consumer: BaseConsumer<MemberContext> =
            self.config.client.consumer(&config, context, || {
                format!(
                    "creating the group member (group `{}`, topic `{topic}`)",
                    self.config.group_id
                )
            })?;
        consumer
            .subscribe(&[&topic])
            .map_err(|e| err("joining the consumer group", e))?;
        tracing::info!(group = %self.config.group_id, topic = %topic, "joined the consumer group");
        let mut last_tick = Instant::now();
        while !stop.is_cancelled() {
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
            }
        }
        self.commit_changed(&consumer, CommitMode::Sync);
        // Dropping the consumer leaves the group (the revoke callback runs once more).
        Ok(())
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

/// A client of the source's consumer group that never subscribes: for
/// offset look-ups and commits outside the group's membership.
pub(super) fn group_client(config: &KafkaSourceConfig) -> Result<BaseConsumer<ConsumerLogs>> {
    let settings = (config.client.client_config())
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .clone();
    (config.client).consumer(&settings, ConsumerLogs::new, || {
        format!("creating a client of group `{}`", config.group_id)
    })
}

/// A consumer of the source's group that reads nothing (for offset look-ups),
/// and the partitions of the source's topic.
fn lookup_consumer(config: &KafkaSourceConfig) -> Result<(BaseConsumer<ConsumerLogs>, Vec<i32>)> {
    let consumer = group_client(config)?;
    let partitions = partitions_of(
        consumer.client(),
        &consumer.context().hooks,
        &config.topic,
        &config.client.bootstrap_servers,
        "topic",
    )?;
    Ok((consumer, partitions))
}

fn lookup_error(config: &KafkaSourceConfig, doing: &str, e: KafkaError) -> EngineError {
    EngineError::kafka(
        format!(
            "{doing} of topic `{}` on {}",
            config.topic, config.client.bootstrap_servers
        ),
        e,
    )
}

/// The end offset of every partition of the source's topic now (a lower
/// bound on some brokers: Tansu lists the last batch's base offset + 1).
pub fn end_offsets(config: &KafkaSourceConfig) -> Result<BTreeMap<i32, i64>> {
    let doing = "reading end offsets";
    let (consumer, partitions) = lookup_consumer(config)?;
    partitions
        .into_iter()
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(&config.topic, p, METADATA_TIMEOUT)
                .map_err(|e| lookup_error(config, doing, e))?;
            Ok((p, high))
        })
        .collect()
}

/// The consumer group's committed offsets on the source's topic (next offset
/// per partition; only `partition` for a lane), reading nothing.
pub fn committed_offsets(
    config: &KafkaSourceConfig,
    partition: Option<i32>,
) -> Result<BTreeMap<i32, i64>> {
    let topic = &config.topic;
    let doing = format!(
        "reading the committed offsets of group `{}`",
        config.group_id
    );
    let (consumer, partitions) = lookup_consumer(config)?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions
        .into_iter()
        .filter(|p| partition.is_none_or(|l| l == *p))
    {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, METADATA_TIMEOUT)
        .map_err(|e| lookup_error(config, &doing, e))?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(n) => Some((e.partition(), n)),
            _ => None,
        })
        .collect())
}

/// The member's librdkafka context: rebalances become [`GroupEvent`]s.
struct MemberContext {
    topic: String,
    events: UnboundedSender<GroupEvent>,
    commits: GroupCommits,
    hooks: crate::kafka::ClientHooks,
}

impl MemberContext {
    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect()
    }
}

crate::kafka::context::client_context_with_hooks!(MemberContext, "group member");

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
