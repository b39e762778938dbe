//! Reading a Kafka topic: assign its partitions at their start offsets,
//! poll records into the runner's buffer, keep each partition's position.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message as _, Offset, TopicPartitionList};

use super::commit::{KafkaPositions, OffsetCommitter};
use super::config::KafkaSourceConfig;
use crate::error::{EngineError, Result};
use crate::kafka::{partitions_of, ConsumerLogs, METADATA_TIMEOUT};
use crate::source::runner::RecordBuffer;
use crate::source::{SourceReader, StartupMode};

/// Consumer defaults that `properties.*` may override (public for the
/// end-to-end benchmark's bare consumer, which reads with the same).
/// - librdkafka postpones a partition's next fetch by `fetch.queue.backoff.ms`
///   (1 s) whenever its local queue passed a threshold; a consumer that drains
///   the queue as fast as we do then mostly waits: 1M trades took 7.3 s with
///   the default, 1.6 s with 10 ms.
/// - librdkafka's prefetch queue holds each fetched record as a ~250-byte op
///   beside its payload, and by default fills up to 100k records per partition
///   from fetches of up to 50 MB: heaptrack found all 1M trades of a
///   4-partition topic held there at the peak of a `--scale-out` run (one
///   consumer per lane). Smaller fetches and queues keep it to a few MB per
///   partition, no slower (1M trades, `ohlc_1m --bounded --no-checkpoints`:
///   2.2-2.5 s, 211-228 MB peak RSS before; 2.1-2.2 s, 129 MB after; with
///   `--scale-out` 467 -> 258 MB). 10k records per partition saved a few MB
///   more but starved the reader.
/// - A fetch waits at most 10 ms for records (librdkafka: 500 ms). Kafka
///   answers a fetch as soon as it has a byte (`fetch.min.bytes` 1), but
///   Tansu 0.6 holds it for the whole wait, and a trade that closes a window
///   waited with it (candle latency at 100k trades/s, p50: 142-270 ms before,
///   91-217 ms with this and the runner decoding a batch at once when caught
///   up; the fastest candle 98-135 -> 41-51 ms).
///   An idle partition costs 100 small fetches a second.
pub const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("fetch.wait.max.ms", "10"),
    ("fetch.queue.backoff.ms", "10"),
    ("fetch.max.bytes", "1048576"),
    ("queued.min.messages", "30000"),
    ("queued.max.messages.kbytes", "16384"),
];

/// Per-partition reading state.
struct PartitionCursor {
    next: i64,
    /// Bounded mode: the end offset the broker listed at start. The partition
    /// is done at the first end-of-partition event at or past it. The listed
    /// end is only a lower bound: some brokers (Tansu 0.6) list the base offset
    /// of the last batch + 1 rather than the true end, so records past it are
    /// read too, never dropped.
    end: Option<i64>,
    finished: bool,
}

/// A Kafka topic's reader.
pub struct KafkaReader {
    config: KafkaSourceConfig,
    /// Where to start without a checkpoint (the table's option, or `--reset --start`).
    startup: StartupMode,
    bounded: bool,
    /// As a lane (`--scale-out`): the one partition read.
    lane: Option<i32>,
    consumer: Option<BaseConsumer<ConsumerLogs>>,
    cursors: BTreeMap<i32, PartitionCursor>,
    /// Commits positions after a run without checkpoints.
    committer: Arc<OffsetCommitter>,
    /// The topic's name for librdkafka's C calls (none: it holds a NUL).
    topic_name: Option<std::ffi::CString>,
}

impl KafkaReader {
    /// A reader of `config`'s topic (not connected until [`SourceReader::open`]).
    pub fn new(
        config: KafkaSourceConfig,
        startup: StartupMode,
        bounded: bool,
        lane: Option<i32>,
        committer: Arc<OffsetCommitter>,
    ) -> Self {
        Self {
            topic_name: std::ffi::CString::new(config.topic.as_str()).ok(),
            config,
            startup,
            bounded,
            lane,
            consumer: None,
            cursors: BTreeMap::new(),
            committer,
        }
    }

    fn consumer(&self) -> Result<BaseConsumer<ConsumerLogs>> {
        let topic = &self.config.topic;
        let config = self
            .config
            .client
            .client_config_with(CONSUMER_DEFAULTS)
            .set("group.id", &self.config.group_id)
            .set("enable.auto.commit", "false")
            // End-of-partition events mark the end of a bounded run; unbounded runs need none.
            .set(
                "enable.partition.eof",
                if self.bounded { "true" } else { "false" },
            )
            .set(
                "auto.offset.reset",
                if self.config.offset_reset_earliest {
                    "earliest"
                } else {
                    "latest"
                },
            )
            .clone();
        (self.config.client).consumer(&config, ConsumerLogs::new, || {
            format!("creating consumer for topic `{topic}`")
        })
    }

    /// Assigns every partition of the topic (a lane: its one partition) at its start offset.
    fn assign(
        &self,
        consumer: &BaseConsumer<ConsumerLogs>,
        restored: Option<&BTreeMap<i32, i64>>,
    ) -> Result<BTreeMap<i32, PartitionCursor>> {
        let topic = &self.config.topic;
        let err = |doing: &str, e: KafkaError| self.error(doing, e);
        let partitions = self.partitions(consumer)?;
        let committed = self.committed_offsets(consumer, &partitions)?;
        let by_time = self.offsets_at_time(consumer, &partitions)?;
        let mut assignment = TopicPartitionList::new();
        let mut cursors = BTreeMap::new();
        for &p in &partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, METADATA_TIMEOUT)
                .map_err(|e| err("reading end offsets", e))?;
            let committed = committed.as_ref().and_then(|c| offset_in(c, topic, p));
            let checkpointed = restored.and_then(|o| o.get(&p).copied());
            if checkpointed.is_some_and(|n| n < low) {
                tracing::error!(
                    topic = %topic, partition = p, checkpoint_offset = checkpointed, earliest = low,
                    "records after the checkpoint were deleted by retention; resuming at the earliest left"
                );
            }
            // No offset: no record at or after that time.
            let at_time = (by_time.as_ref()).map(|t| offset_in(t, topic, p).unwrap_or(high));
            let start = self.start_offset((low, high), checkpointed, committed, at_time);
            assignment
                .add_partition_offset(topic, p, Offset::Offset(start))
                .map_err(|e| err("assigning", e))?;
            cursors.insert(
                p,
                PartitionCursor {
                    next: start,
                    end: self.bounded.then_some(high),
                    finished: false,
                },
            );
        }
        consumer
            .assign(&assignment)
            .map_err(|e| err("assigning partitions", e))?;
        Ok(cursors)
    }

    /// With `StartupMode::GroupOffsets`: the group's committed offsets of `partitions`.
    fn committed_offsets(
        &self,
        consumer: &BaseConsumer<ConsumerLogs>,
        partitions: &[i32],
    ) -> Result<Option<TopicPartitionList>> {
        if self.startup != StartupMode::GroupOffsets {
            return Ok(None);
        }
        let mut all = TopicPartitionList::new();
        for &p in partitions {
            all.add_partition(&self.config.topic, p);
        }
        let committed = consumer.committed_offsets(all, METADATA_TIMEOUT);
        committed
            .map(Some)
            .map_err(|e| self.error("reading committed offsets", e))
    }

    /// With `StartupMode::Timestamp`: each partition's first offset at or after that time.
    fn offsets_at_time(
        &self,
        consumer: &BaseConsumer<ConsumerLogs>,
        partitions: &[i32],
    ) -> Result<Option<TopicPartitionList>> {
        let StartupMode::Timestamp(ms) = self.startup else {
            return Ok(None);
        };
        let doing = "looking up offsets by time";
        let mut at = TopicPartitionList::new();
        for &p in partitions {
            at.add_partition_offset(&self.config.topic, p, Offset::Offset(ms))
                .map_err(|e| self.error(doing, e))?;
        }
        let found = consumer.offsets_for_times(at, METADATA_TIMEOUT);
        found.map(Some).map_err(|e| self.error(doing, e))
    }

    /// An error of `doing` something to the topic.
    fn error(&self, doing: &str, e: KafkaError) -> EngineError {
        let (topic, servers) = (&self.config.topic, &self.config.client.bootstrap_servers);
        EngineError::kafka(format!("{doing} of topic `{topic}` on {servers}"), e)
    }

    /// The partitions read: every one of the topic, or a lane's one.
    fn partitions(&self, consumer: &BaseConsumer<ConsumerLogs>) -> Result<Vec<i32>> {
        let (topic, servers) = (&self.config.topic, &self.config.client.bootstrap_servers);
        let hooks = &consumer.context().hooks;
        let partitions = partitions_of(consumer.client(), hooks, topic, servers, "topic")?;
        match &self.lane {
            None => Ok(partitions),
            Some(lane) if partitions.contains(lane) => Ok(vec![*lane]),
            Some(lane) => Err(EngineError::kafka_msg(format!(
                "topic `{topic}` has no partition {lane} on {servers}"
            ))),
        }
    }

    /// Where a partition whose offsets run `low..high` starts: at its
    /// checkpointed offset, else as the startup mode says (the group's
    /// committed offset, the first record at a time, the end, the start).
    fn start_offset(
        &self,
        (low, high): (i64, i64),
        checkpointed: Option<i64>,
        committed: Option<i64>,
        at_time: Option<i64>,
    ) -> i64 {
        match (self.startup, committed) {
            _ if checkpointed.is_some() => checkpointed.unwrap_or(low).max(low),
            (StartupMode::Timestamp(_), _) => at_time.unwrap_or(high).clamp(low, high),
            (StartupMode::GroupOffsets, Some(n)) => n.max(low),
            (StartupMode::Latest, _) => high,
            (StartupMode::GroupOffsets, None) if !self.config.offset_reset_earliest => high,
            _ => low,
        }
    }

    /// A partition's end-of-partition event: in a bounded run, the
    /// partition is done once its position has reached the end listed at start.
    fn at_end(&mut self, p: i32, out: &mut RecordBuffer) {
        let (Some(consumer), Some(c)) = (self.consumer.as_ref(), self.cursors.get_mut(&p)) else {
            return;
        };
        // Control records (transaction markers) can sit at the end, so the
        // consumer's position, not the last message, says where the end is.
        let position = consumer.position().ok().and_then(|tpl| {
            tpl.find_partition(&self.config.topic, p)
                .map(|e| e.offset())
        });
        if let Some(Offset::Offset(pos)) = position {
            c.next = c.next.max(pos);
        }
        if c.end.is_some_and(|end| c.next >= end) && !c.finished {
            c.finished = true;
            out.end_split(p);
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&self.config.topic, p);
            // Stop fetching: a bounded run reads what was there when it caught up.
            let _ = consumer.pause(&tpl);
        }
    }
}

/// The high watermark librdkafka last saw in a fetch response for
/// `partition` of `topic`, if it has seen one: `rd_kafka_get_watermark_offsets`
/// reads librdkafka's own cache (rdkafka wraps only the broker query,
/// `fetch_watermarks`, which waits on the network).
fn cached_high_watermark(
    consumer: &BaseConsumer<ConsumerLogs>,
    topic: &std::ffi::CStr,
    partition: i32,
) -> Option<i64> {
    let (mut low, mut high) = (-1_i64, -1_i64);
    // SAFETY: the client handle is alive while `consumer` is borrowed, `topic`
    // is NUL-terminated, and both out-pointers are valid for the call.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    let ok = err == rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR;
    (ok && high >= 0).then_some(high)
}

/// A partition's offset in a list the broker returned, if it has one.
fn offset_in(list: &TopicPartitionList, topic: &str, partition: i32) -> Option<i64> {
    match list.find_partition(topic, partition).map(|e| e.offset()) {
        Some(Offset::Offset(n)) => Some(n),
        _ => None,
    }
}

impl SourceReader for KafkaReader {
    fn open(&mut self, restored: Option<&serde_json::Value>) -> Result<Vec<(i32, bool)>> {
        let restored: Option<KafkaPositions> = match restored {
            Some(v) => Some(serde_json::from_value(v.clone()).map_err(|e| {
                EngineError::Execution(format!(
                    "checkpointed positions of topic `{}` do not read back: {e}",
                    self.config.topic
                ))
            })?),
            None => None,
        };
        let consumer = self.consumer()?;
        self.cursors = self.assign(&consumer, restored.as_ref().map(|p| &p.offsets))?;
        self.consumer = Some(consumer);
        tracing::info!(table = %self.config.table, topic = %self.config.topic, group = %self.config.group_id, "kafka consumer assigned");
        Ok(self.cursors.iter().map(|(&p, c)| (p, c.finished)).collect())
    }

    fn poll(&mut self, timeout: Duration, max: usize, out: &mut RecordBuffer) -> Result<()> {
        let Some(consumer) = self.consumer.as_ref() else {
            return Err(EngineError::Internal(
                "a Kafka reader polled before open".into(),
            ));
        };
        // Waits for the first record only; the rest are what librdkafka has at hand.
        let mut wait = timeout;
        let mut handed = 0;
        while handed < max {
            let polled = consumer.poll(wait);
            wait = Duration::ZERO;
            match polled {
                None => break,
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    self.at_end(p, out);
                    break;
                }
                Some(Err(e)) => {
                    tracing::warn!(topic = %self.config.topic, error = %e, "consumer error (librdkafka retries)");
                    break;
                }
                Some(Ok(m)) => {
                    let p = m.partition();
                    if let Some(c) = self.cursors.get_mut(&p) {
                        c.next = m.offset() + 1;
                        let timestamp = m.timestamp().to_millis();
                        out.push(p, m.offset(), m.payload(), m.key(), timestamp);
                        handed += 1;
                    }
                }
            }
        }
        Ok(())
    }

    fn positions(&self) -> serde_json::Value {
        let positions = KafkaPositions {
            topic: self.config.topic.clone(),
            offsets: self.cursors.iter().map(|(&p, c)| (p, c.next)).collect(),
        };
        serde_json::to_value(positions).expect("positions are plain JSON")
    }

    fn name(&self) -> &str {
        &self.config.topic
    }

    /// The high watermark librdkafka last saw in a fetch (no broker call)
    /// minus the position, which passes transaction markers at the end.
    fn lag(&self) -> Vec<(i32, i64)> {
        let Some(consumer) = self.consumer.as_ref() else {
            return Vec::new();
        };
        let (topic, Some(name)) = (&self.config.topic, self.topic_name.as_ref()) else {
            return Vec::new();
        };
        let positions = consumer.position().ok();
        (self.cursors.iter())
            .filter_map(|(&p, c)| {
                let high = cached_high_watermark(consumer, name, p)?;
                let position = positions.as_ref().and_then(|t| offset_in(t, topic, p));
                let at = position.map_or(c.next, |pos| pos.max(c.next));
                Some((p, (high - at).max(0)))
            })
            .collect()
    }

    /// Every partition still read is at the high watermark of its last
    /// fetch response (librdkafka's cache; none yet: not caught up). Only
    /// the last record read counts, not the consumer's position, which
    /// would cost a round trip to librdkafka's main thread per poll: after
    /// a transaction's marker a partition looks one short, and its batch
    /// waits for `batch.linger` as before.
    fn caught_up(&self) -> bool {
        let (Some(consumer), Some(name)) = (self.consumer.as_ref(), self.topic_name.as_ref())
        else {
            return false;
        };
        (self.cursors.iter().filter(|(_, c)| !c.finished)).all(|(&p, c)| {
            cached_high_watermark(consumer, name, p).is_some_and(|high| c.next >= high)
        })
    }

    fn commit(&mut self, positions: &serde_json::Value) -> Result<()> {
        let positions: KafkaPositions = serde_json::from_value(positions.clone())
            .map_err(|e| EngineError::Internal(format!("Kafka positions: {e}")))?;
        self.committer.commit_now(&positions)
    }
}
