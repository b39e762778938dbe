//! `sink.commit_mode = 'exactly_once'`: each checkpoint's records, and the
//! source offsets the checkpoint covers, in one Kafka transaction.
//!
//! ```text
//!  statement --rows--> KafkaSink (kept, not sent) --at a barrier--> checkpoint (Arrow IPC)
//!  manifest written --> commit phase: every exactly-once sink hands its rows, the Kafka
//!     source its offsets, to the job's SharedTransaction; the last one in sends them all
//!     and the group's offsets, marked with the epoch, in one transaction
//! ```
//! The checkpoint is written before the transaction, so a crash in between
//! leaves a checkpoint whose transaction never committed. The group's
//! committed offsets say which one did: each transaction stores its
//! checkpoint's [`CheckpointMark`] in the offsets' metadata, atomically with
//! its records. A restore that finds another mark there sends the
//! checkpoint's records again, from the checkpoint.

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};

use std::sync::{Arc, Mutex};

use crate::checkpoint::CommitPoint;
use crate::error::{Chain, EngineError, Result};
use crate::kafka::{ConsumerLogs, KafkaClientOptions, ProducerLogs, METADATA_TIMEOUT};
use crate::metrics::Metrics;
use crate::sink::kafka::{EncodedRows, KafkaSinkConfig};

/// Next offset to read, per topic and partition.
pub type SourceOffsets = BTreeMap<String, BTreeMap<i32, i64>>;

/// The [`Resources`](crate::resources::Resources) key of a job's [`SharedTransaction`].
pub const RESOURCE: &str = "kafka.transaction";

/// Offset metadata naming the checkpoint whose transaction committed them.
const MARK_PREFIX: &str = "engine.checkpoint=";

/// Which checkpoint's transaction committed the group's offsets: its epoch
/// and creation time (a state dir started afresh counts epochs from 1 again;
/// the time tells its checkpoints from older ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointMark {
    /// The checkpoint's epoch.
    pub epoch: u64,
    /// The manifest's `created_at` (RFC 3339).
    pub created_at: String,
}

impl CheckpointMark {
    fn to_metadata(&self) -> String {
        format!("{MARK_PREFIX}{}@{}", self.epoch, self.created_at)
    }

    fn from_metadata(metadata: &str) -> Option<Self> {
        let (epoch, created_at) = metadata.strip_prefix(MARK_PREFIX)?.split_once('@')?;
        Some(Self {
            epoch: epoch.parse().ok()?,
            created_at: created_at.to_string(),
        })
    }

    /// Whether this mark is of a checkpoint taken after `other` (same state dir, later epoch).
    pub fn is_after(&self, other: &CheckpointMark) -> bool {
        let time = |m: &CheckpointMark| chrono::DateTime::parse_from_rfc3339(&m.created_at).ok();
        self.epoch > other.epoch && time(self) >= time(other)
    }
}

/// How long a transaction may stay open at the broker, and how long its
/// steps may take before the job fails (a restart sends it again).
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The consumer group's committed offsets, as a restore finds them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupCommit {
    /// The mark of the transaction that committed them. `None` if nothing
    /// was committed in a transaction, or the broker keeps no offset
    /// metadata (Tansu 0.6 does not).
    pub mark: Option<CheckpointMark>,
    /// The committed next offsets.
    pub offsets: SourceOffsets,
}

/// What a restore does about the transaction of the checkpoint it restores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// It committed: nothing to do.
    Committed,
    /// It did not commit (or cannot be told apart from one that did not, see
    /// [`Recovery::decide`]): send it again from the checkpoint.
    SendAgain,
    /// A later checkpoint's transaction committed, but that checkpoint is
    /// lost or damaged: its records are out and would be sent twice.
    LaterCommitted(u64),
}

impl Recovery {
    /// Decides for the restored checkpoint (`mark`, its source `offsets`,
    /// whether it has records to send) from the group's commit and the
    /// offsets of the checkpoint before it.
    ///
    /// With marks the answer is exact. Without (the broker drops offset
    /// metadata) the offsets decide: the group's offsets only move in
    /// transactions, so offsets equal to this checkpoint's and unlike the
    /// previous one's mean it committed. When both checkpoints have the same
    /// offsets (rows emitted without new input, e.g. at the end of a bounded
    /// input) it cannot be told; its records are sent again rather than risk
    /// losing them.
    pub fn decide(
        mark: &CheckpointMark,
        offsets: &SourceOffsets,
        has_records: bool,
        previous: Option<&SourceOffsets>,
        group: &GroupCommit,
    ) -> Self {
        match &group.mark {
            Some(m) if m == mark => Recovery::Committed,
            Some(m) if m.is_after(mark) => Recovery::LaterCommitted(m.epoch),
            Some(_) => Recovery::SendAgain,
            None if &group.offsets != offsets => Recovery::SendAgain,
            None if previous != Some(offsets) || !has_records => Recovery::Committed,
            None => Recovery::SendAgain,
        }
    }
}

/// The job's transactional producer and its view of the consumer group.
pub struct Transactions {
    producer: FutureProducer<ProducerLogs>,
    /// Reads the group's committed offsets and gives the group's metadata.
    group: BaseConsumer<ConsumerLogs>,
    group_id: String,
    transactional_id: String,
    /// The `exactly_once` sinks, by table name.
    sinks: BTreeMap<String, KafkaSinkConfig>,
}

impl Transactions {
    /// The transactional id of a job reading with consumer group `group_id`:
    /// the same on every restart, so a new producer fences the old one.
    pub fn transactional_id(group_id: &str) -> String {
        format!("{group_id}.transactions")
    }

    /// Opens the producer (`transactional.id` from [`Self::transactional_id`])
    /// and fences any earlier producer with that id: a zombie of a crashed run
    /// can no longer commit. Blocks on the broker.
    pub fn open(
        source: &KafkaClientOptions,
        group_id: &str,
        sinks: BTreeMap<String, KafkaSinkConfig>,
    ) -> Result<Self> {
        let transactional_id = Self::transactional_id(group_id);
        let Some(client) = sinks.values().next().map(|s| s.client.clone()) else {
            return Err(EngineError::Internal("no exactly-once sink".into()));
        };
        let timeout = TRANSACTION_TIMEOUT.as_millis().to_string();
        let hooks = client.hooks()?;
        let producer: FutureProducer<ProducerLogs> = client
            .client_config_with(&[
                ("linger.ms", "5"),
                ("compression.type", "lz4"),
                ("transaction.timeout.ms", &timeout),
            ])
            .set("transactional.id", &transactional_id)
            .create_with_context(ProducerLogs::new(hooks.clone()))
            .map_err(|e| {
                EngineError::kafka(
                    format!("creating transactional producer `{transactional_id}`"),
                    e,
                )
            })?;
        hooks.sign_in(producer.client())?;
        producer
            .init_transactions(TRANSACTION_TIMEOUT)
            .map_err(|e| {
                EngineError::kafka(
                    format!(
                        "starting transactions as `{transactional_id}` on {} \
                     (sink.commit_mode = 'exactly_once' needs a broker with transactions)",
                        client.bootstrap_servers
                    ),
                    e,
                )
            })?;
        let settings = (source.client_config())
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .clone();
        let group: BaseConsumer<ConsumerLogs> =
            source.consumer(&settings, ConsumerLogs::new, || {
                format!("creating a client of group `{group_id}`")
            })?;
        Ok(Self {
            producer,
            group,
            group_id: group_id.to_string(),
            transactional_id,
            sinks,
        })
    }

    /// What the group's committed offsets on the partitions in `offsets`
    /// say about the last transaction. Blocks.
    pub fn group_commit(&self, offsets: &SourceOffsets) -> Result<GroupCommit> {
        let tpl = self.offset_list(offsets, None)?;
        (self.group.context().hooks).keep_signed_in(self.group.client())?;
        let committed = self
            .group
            .committed_offsets(tpl, METADATA_TIMEOUT)
            .map_err(|e| {
                EngineError::kafka(
                    format!("reading the committed offsets of group `{}`", self.group_id),
                    e,
                )
            })?;
        let mut commit = GroupCommit::default();
        for e in committed.elements() {
            if let Offset::Offset(next) = e.offset() {
                commit
                    .offsets
                    .entry(e.topic().to_string())
                    .or_default()
                    .insert(e.partition(), next);
            }
            // Every transaction commits every partition, so any one carries the newest mark.
            if let Some(mark) = CheckpointMark::from_metadata(e.metadata()) {
                if commit.mark.as_ref().is_none_or(|m| mark.epoch > m.epoch) {
                    commit.mark = Some(mark);
                }
            }
        }
        Ok(commit)
    }

    /// Sends `records` (rows per sink table) and commits `offsets` to the
    /// group, marked with `mark`, in one transaction. Returns the number of
    /// records sent. On failure the transaction is aborted and the error
    /// returned: the job stops, and a restart sends the epoch again. Blocks.
    pub fn publish(
        &self,
        mark: &CheckpointMark,
        records: &BTreeMap<String, Vec<RecordBatch>>,
        offsets: &SourceOffsets,
    ) -> Result<u64> {
        let started = std::time::Instant::now();
        let result = self.try_publish(mark, records, offsets);
        if let Ok(sent) = &result {
            tracing::debug!(
                epoch = mark.epoch,
                records = sent,
                ms = started.elapsed().as_millis() as u64,
                "transaction committed"
            );
        }
        if let Err(e) = &result {
            tracing::warn!(transactional_id = %self.transactional_id, epoch = mark.epoch, error = %Chain(e), "aborting transaction");
            // Best effort: the broker aborts it after the transaction timeout anyway.
            let _ = self.producer.abort_transaction(TRANSACTION_TIMEOUT);
        }
        result
    }

    fn try_publish(
        &self,
        mark: &CheckpointMark,
        records: &BTreeMap<String, Vec<RecordBatch>>,
        offsets: &SourceOffsets,
    ) -> Result<u64> {
        let epoch = mark.epoch;
        let failed = |step: &str, e: KafkaError| {
            EngineError::kafka(
                format!(
                    "transaction of checkpoint {epoch} (`{}`): {step}",
                    self.transactional_id
                ),
                e,
            )
        };
        self.producer
            .begin_transaction()
            .map_err(|e| failed("begin", e))?;
        let mut sent = 0;
        for (table, batches) in records {
            let config = self.sinks.get(table).ok_or_else(|| {
                EngineError::Internal(format!("records for unknown exactly-once sink `{table}`"))
            })?;
            for batch in batches {
                let rows = EncodedRows::new(batch, config)?;
                for row in 0..rows.len() {
                    let mut record = rows.record(&config.topic, row);
                    // Delivery is checked by the commit, which fails if any record failed.
                    loop {
                        match self.producer.send_result(record) {
                            Ok(_) => break,
                            Err((
                                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                                r,
                            )) => {
                                record = r;
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            Err((e, _)) => {
                                return Err(failed(&format!("sending to `{}`", config.topic), e))
                            }
                        }
                    }
                    sent += 1;
                }
            }
        }
        let group = self.group.group_metadata().ok_or_else(|| {
            EngineError::Internal(format!("no metadata for group `{}`", self.group_id))
        })?;
        let tpl = self.offset_list(offsets, Some(mark))?;
        self.producer
            .send_offsets_to_transaction(&tpl, &group, TRANSACTION_TIMEOUT)
            .map_err(|e| failed("adding the source offsets", e))?;
        self.producer
            .commit_transaction(TRANSACTION_TIMEOUT)
            .map_err(|e| failed("commit", e))?;
        Ok(sent)
    }

    /// `offsets` as a partition list, each marked with `mark` if given.
    fn offset_list(
        &self,
        offsets: &SourceOffsets,
        mark: Option<&CheckpointMark>,
    ) -> Result<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for (topic, partitions) in offsets {
            for (&p, &next) in partitions {
                let mut element = tpl.add_partition(topic, p);
                element
                    .set_offset(Offset::Offset(next))
                    .map_err(|e| EngineError::kafka(format!("offset list of `{topic}`"), e))?;
                if let Some(mark) = mark {
                    element.set_metadata(mark.to_metadata());
                }
            }
        }
        Ok(tpl)
    }
}

/// A participant's part of one checkpoint's transaction.
#[derive(Debug)]
pub enum Part {
    /// A Kafka source's offsets at the barrier, and at the checkpoint before.
    Offsets {
        /// Next offsets per topic and partition.
        offsets: SourceOffsets,
        /// The same in the checkpoint before (for a restore's decision).
        previous: Option<SourceOffsets>,
    },
    /// An `exactly_once` sink's rows not yet committed.
    Records {
        /// The sink table.
        sink: String,
        /// Its rows.
        rows: Vec<RecordBatch>,
    },
}

/// One checkpoint's transaction, shared by the job's Kafka source and its
/// `exactly_once` Kafka sinks: each hands over its part in its commit phase,
/// and the last one in sends everything, so the records and the offsets
/// commit together without the coordinator knowing of Kafka.
pub struct SharedTransaction {
    transactions: Transactions,
    participants: usize,
    gathering: Mutex<Gathering>,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct Gathering {
    epoch: u64,
    parts: Vec<Part>,
}

impl SharedTransaction {
    /// The transaction of `transactions` for `participants` parts a checkpoint.
    pub fn new(transactions: Transactions, participants: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            transactions,
            participants,
            gathering: Mutex::new(Gathering::default()),
            metrics,
        }
    }

    /// Hands over `part` for checkpoint `point`; the last part of a
    /// checkpoint sends the transaction (a restore's: decides first whether
    /// it already committed). Returns once this part is done with.
    pub async fn hand_over(
        self: &Arc<Self>,
        point: &CommitPoint,
        part: Part,
        recovering: bool,
    ) -> Result<()> {
        let parts = {
            let mut g = self.gathering.lock().expect("no panics while locked");
            if g.epoch != point.epoch {
                // A checkpoint whose commit phase did not finish is covered by this one.
                *g = Gathering {
                    epoch: point.epoch,
                    parts: Vec::new(),
                };
            }
            g.parts.push(part);
            if g.parts.len() < self.participants {
                return Ok(());
            }
            std::mem::take(&mut g.parts)
        };
        let this = Arc::clone(self);
        let point = point.clone();
        tokio::task::spawn_blocking(move || this.send(&point, parts, recovering))
            .await
            .map_err(|e| EngineError::Internal(format!("a Kafka transaction step panicked: {e}")))?
    }

    fn send(&self, point: &CommitPoint, parts: Vec<Part>, recovering: bool) -> Result<()> {
        let mark = CheckpointMark {
            epoch: point.epoch,
            created_at: point.created_at.clone(),
        };
        let (mut offsets, mut previous, mut records) =
            (SourceOffsets::new(), None, BTreeMap::new());
        for part in parts {
            match part {
                Part::Offsets {
                    offsets: o,
                    previous: p,
                } => {
                    offsets.extend(o);
                    if let Some(p) = p {
                        previous.get_or_insert_with(SourceOffsets::new).extend(p);
                    }
                }
                Part::Records { sink, rows } => {
                    records.insert(sink, rows);
                }
            }
        }
        if recovering {
            let has_records = records.values().any(|r: &Vec<RecordBatch>| !r.is_empty());
            let group = self.transactions.group_commit(&offsets)?;
            match Recovery::decide(&mark, &offsets, has_records, previous.as_ref(), &group) {
                Recovery::Committed => return Ok(()),
                Recovery::LaterCommitted(epoch) => {
                    return Err(EngineError::Execution(format!(
                        "the consumer group's offsets were committed by the transaction of \
                         checkpoint {epoch}, but the newest intact checkpoint is {}: that transaction's records \
                         are in the topic already and would be sent twice. Exactly-once cannot be kept; \
                         start over with a new state dir and group, or use sink.commit_mode = 'at_least_once'",
                        point.epoch
                    )))
                }
                Recovery::SendAgain => {}
            }
        }
        self.transactions.publish(&mark, &records, &offsets)?;
        for (sink, rows) in &records {
            let sent = rows.iter().map(|b| b.num_rows() as u64).sum();
            self.metrics.sink_rows_out(sink).inc_by(sent);
        }
        if recovering {
            tracing::info!(
                epoch = point.epoch,
                "transaction of the restored checkpoint sent again (a crash cut it short)"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(epoch: u64, at: &str) -> CheckpointMark {
        CheckpointMark {
            epoch,
            created_at: format!("2025-11-20T10:00:{at}Z"),
        }
    }

    fn offsets(next: i64) -> SourceOffsets {
        BTreeMap::from([("trades".to_string(), BTreeMap::from([(0, next)]))])
    }

    #[test]
    fn marks_round_trip_through_offset_metadata() {
        let m = mark(7, "05");
        assert_eq!(CheckpointMark::from_metadata(&m.to_metadata()), Some(m));
        assert_eq!(CheckpointMark::from_metadata(""), None);
        assert_eq!(CheckpointMark::from_metadata("someone else's"), None);
    }

    #[test]
    fn a_mark_decides_exactly() {
        let (restored, at) = (mark(5, "05"), offsets(500));
        let decide = |group: Option<CheckpointMark>| {
            let group = GroupCommit {
                mark: group,
                offsets: offsets(123),
            };
            Recovery::decide(&restored, &at, true, Some(&offsets(400)), &group)
        };
        assert_eq!(decide(Some(mark(5, "05"))), Recovery::Committed);
        assert_eq!(decide(Some(mark(4, "04"))), Recovery::SendAgain);
        assert_eq!(decide(None), Recovery::SendAgain);
        assert_eq!(decide(Some(mark(6, "06"))), Recovery::LaterCommitted(6));
        // A state dir started afresh counts from 1 again: an older run's higher epoch is not later.
        assert_eq!(decide(Some(mark(90, "01"))), Recovery::SendAgain);
    }

    #[test]
    fn without_marks_the_offsets_decide_and_doubt_sends_again() {
        let restored = mark(5, "05");
        let group = |next| GroupCommit {
            mark: None,
            offsets: offsets(next),
        };
        let decide = |has_records, previous: i64, committed: i64| {
            Recovery::decide(
                &restored,
                &offsets(500),
                has_records,
                Some(&offsets(previous)),
                &group(committed),
            )
        };
        assert_eq!(decide(true, 400, 500), Recovery::Committed);
        assert_eq!(decide(true, 400, 400), Recovery::SendAgain);
        // Same offsets as the checkpoint before: cannot tell, so its rows go again.
        assert_eq!(decide(true, 500, 500), Recovery::SendAgain);
        assert_eq!(decide(false, 500, 500), Recovery::Committed);
        let never_committed = GroupCommit::default();
        assert_eq!(
            Recovery::decide(&restored, &offsets(500), true, None, &never_committed),
            Recovery::SendAgain
        );
    }
}
