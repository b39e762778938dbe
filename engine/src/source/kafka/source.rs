//! The Kafka source task.
//!
//! It runs on a blocking thread (librdkafka's poll is synchronous and the
//! decode is CPU work), buffers records per partition, decodes each buffer
//! into one `RecordBatch`, and sends batches and watermarks downstream over a
//! bounded channel, so a slow sink slows consumption instead of growing memory.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use engine_sql::TableDef;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::commit::KafkaPositions;
use super::config::{KafkaSourceConfig, StartupMode};
use super::dlq::{DeadLetters, Origin};
use crate::checkpoint::{BarrierRequests, Participant, Report};
use crate::decode::{JsonDecoder, RawRecord, RowRules};
use crate::error::{EngineError, Result};
use crate::kafka::{partitions_of, ConsumerLogs, METADATA_TIMEOUT};
use crate::message::{Message, Signal};
use crate::metrics::Metrics;
use crate::watermark::{WatermarkExpr, WatermarkTracker};

/// Consumer defaults that `properties.*` may override.
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
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("fetch.queue.backoff.ms", "10"),
    ("fetch.max.bytes", "1048576"),
    ("queued.min.messages", "30000"),
    ("queued.max.messages.kbytes", "16384"),
];

/// Bad records logged one by one before the log switches to every 1000th.
const BAD_RECORDS_LOGGED: u64 = 20;

/// A Kafka source table, ready to run.
pub struct KafkaSource {
    config: KafkaSourceConfig,
    decoder: JsonDecoder,
    watermark: Option<WatermarkExpr>,
    metrics: Arc<Metrics>,
    bounded: bool,
    /// Where to start, per partition (from a checkpoint), instead of the group's offsets.
    start_offsets: Option<BTreeMap<i32, i64>>,
    /// Each partition's event-time clock at that checkpoint.
    start_clocks: BTreeMap<i32, i64>,
    barriers: Option<SourceBarriers>,
    /// As a lane (`--scale-out`): the one partition read.
    lane: Option<i32>,
}

/// How the checkpoint coordinator and a source talk: the coordinator raises
/// `requests`; the source puts `Barrier(epoch)` in its stream after the data
/// before it and reports its positions there.
#[derive(Debug, Clone)]
pub struct SourceBarriers {
    /// The newest epoch the coordinator asked for.
    pub requests: BarrierRequests,
    /// Where the source reports its positions at each barrier.
    pub reports: tokio::sync::mpsc::UnboundedSender<Report>,
}

/// What a source has consumed.
pub struct SourceProgress {
    dead_letters: DeadLetters,
    positions: KafkaPositions,
    /// Bounded: every partition was read to its end (not stopped before).
    reached_end: bool,
}

impl SourceProgress {
    /// Waits until every dead-letter record is stored (before the offsets
    /// past them are committed).
    pub fn flush_dead_letters(&self) -> Result<()> {
        self.dead_letters.flush()
    }

    /// Where the source stopped.
    pub fn positions(&self) -> &KafkaPositions {
        &self.positions
    }

    /// Whether a bounded source read every partition to its end.
    pub fn reached_end(&self) -> bool {
        self.reached_end
    }
}

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

impl KafkaSource {
    /// Builds the source of `table` (declared in job file `file`) with its
    /// decoder, row rules and watermark.
    pub fn new(
        file: &str,
        table: &TableDef,
        config: KafkaSourceConfig,
        metrics: Arc<Metrics>,
        bounded: bool,
    ) -> Result<Self> {
        let rules = row_rules(file, table, &config)?;
        let decoder =
            JsonDecoder::new(table, &config.topic, config.max_message_bytes).with_rules(rules);
        let watermark = WatermarkExpr::for_table(file, table, decoder.schema())?;
        Ok(Self {
            config,
            decoder,
            watermark,
            metrics,
            bounded,
            start_offsets: None,
            start_clocks: BTreeMap::new(),
            barriers: None,
            lane: None,
        })
    }

    /// Reads only `partition`, as one lane of a job scaled out over the consumer group.
    pub fn with_lane(mut self, partition: i32) -> Self {
        self.lane = Some(partition);
        self
    }

    /// Sets each partition's event-time clock (its watermark) as a checkpoint recorded it.
    pub fn with_start_clocks(mut self, clocks: BTreeMap<i32, i64>) -> Self {
        self.start_clocks = clocks;
        self
    }

    /// Starts each partition at these offsets (a checkpoint's) rather than the group's.
    pub fn with_start_offsets(mut self, offsets: BTreeMap<i32, i64>) -> Self {
        self.start_offsets = Some(offsets);
        self
    }

    /// Takes part in checkpoints.
    pub fn with_barriers(mut self, barriers: SourceBarriers) -> Self {
        self.barriers = Some(barriers);
        self
    }

    /// Schema of the batches this source sends.
    pub fn schema(&self) -> &SchemaRef {
        self.decoder.schema()
    }

    /// Reads until the end offsets (bounded) or until `stop` is set, sending
    /// to every output. Bounded runs end with `EndOfData`; a stop just closes
    /// the channels. Blocking: run it on a blocking thread.
    pub fn run(
        self,
        outputs: Vec<mpsc::Sender<Message>>,
        stop: Arc<AtomicBool>,
    ) -> Result<SourceProgress> {
        let topic = self.config.topic.clone();
        let consumer: BaseConsumer<ConsumerLogs> = self
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
            .create_with_context(ConsumerLogs)
            .map_err(|e| {
                EngineError::Kafka(format!(
                    "creating consumer for topic `{topic}`: {}",
                    crate::kafka::redacted(&e)
                ))
            })?;
        let dead_letters = DeadLetters::new(&self.config.client, &self.config.dlq_topic)?;
        let mut cursors = self.assign(&consumer)?;
        let mut tracker = WatermarkTracker::new(self.config.idle_timeout);
        let now = Instant::now();
        for (&p, c) in &cursors {
            tracker.assign(p, now);
            if c.finished {
                tracker.finish(p);
            }
        }
        tracker.restore(&self.start_clocks, now);
        tracing::info!(
            table = %self.config.table, topic = %topic, group = %self.config.group_id, bounded = self.bounded,
            partitions = cursors.len(), "source started"
        );
        let ended = self.poll_loop(
            &consumer,
            &dead_letters,
            &mut cursors,
            &mut tracker,
            &outputs,
            &stop,
        )?;
        if ended {
            send(&outputs, Message::Signal(Signal::EndOfData))?;
        }
        let reached: BTreeMap<i32, (i64, Option<i64>)> =
            cursors.iter().map(|(&p, c)| (p, (c.next, c.end))).collect();
        tracing::info!(table = %self.config.table, topic = %topic, ?reached, "source stopped (partition: next offset, end)");
        Ok(SourceProgress {
            dead_letters,
            positions: KafkaPositions {
                topic,
                offsets: cursors.iter().map(|(&p, c)| (p, c.next)).collect(),
                clocks: tracker.clocks(),
            },
            reached_end: ended,
        })
    }

    /// Assigns every partition of the topic (a lane: its one partition) at its start offset.
    fn assign(
        &self,
        consumer: &BaseConsumer<ConsumerLogs>,
    ) -> Result<BTreeMap<i32, PartitionCursor>> {
        let topic = &self.config.topic;
        let err = |what: &str, e: KafkaError| {
            EngineError::Kafka(format!(
                "{what} of topic `{topic}` on {}: {e}",
                self.config.client.bootstrap_servers
            ))
        };
        let mut partitions = partitions_of(
            consumer.client(),
            topic,
            &self.config.client.bootstrap_servers,
            "topic",
        )?;
        if let Some(lane) = &self.lane {
            if !partitions.contains(lane) {
                return Err(EngineError::Kafka(format!(
                    "topic `{topic}` has no partition {lane} on {}",
                    self.config.client.bootstrap_servers
                )));
            }
            partitions = vec![*lane];
        }
        let mut all = TopicPartitionList::new();
        for &p in &partitions {
            all.add_partition(topic, p);
        }
        let committed = match self.config.startup {
            StartupMode::GroupOffsets => Some(
                consumer
                    .committed_offsets(all, METADATA_TIMEOUT)
                    .map_err(|e| err("reading committed offsets", e))?,
            ),
            _ => None,
        };
        let by_time = match self.config.startup {
            StartupMode::Timestamp(ms) => {
                let mut at = TopicPartitionList::new();
                for &p in &partitions {
                    at.add_partition_offset(topic, p, Offset::Offset(ms))
                        .map_err(|e| err("looking up offsets by time", e))?;
                }
                Some(
                    consumer
                        .offsets_for_times(at, METADATA_TIMEOUT)
                        .map_err(|e| err("looking up offsets by time", e))?,
                )
            }
            _ => None,
        };
        let mut assignment = TopicPartitionList::new();
        let mut cursors = BTreeMap::new();
        for &p in &partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, METADATA_TIMEOUT)
                .map_err(|e| err("reading end offsets", e))?;
            let committed = committed.as_ref().and_then(|c| {
                match c.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(n)) => Some(n),
                    _ => None,
                }
            });
            let checkpointed = self.start_offsets.as_ref().and_then(|o| o.get(&p).copied());
            if checkpointed.is_some_and(|n| n < low) {
                tracing::error!(
                    topic = %topic, partition = p, checkpoint_offset = checkpointed, earliest = low,
                    "records after the checkpoint were deleted by retention; resuming at the earliest left"
                );
            }
            let at_time = by_time.as_ref().map(|tpl| {
                match tpl.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(n)) => n,
                    _ => high, // no record at or after that time
                }
            });
            let start = match (self.config.startup, committed) {
                _ if checkpointed.is_some() => checkpointed.unwrap_or(low).max(low),
                (StartupMode::Timestamp(_), _) => at_time.unwrap_or(high).clamp(low, high),
                (StartupMode::GroupOffsets, Some(n)) => n.max(low),
                (StartupMode::Latest, _) => high,
                (StartupMode::GroupOffsets, None) if !self.config.offset_reset_earliest => high,
                _ => low,
            };
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

    fn poll_loop(
        &self,
        consumer: &BaseConsumer<ConsumerLogs>,
        dead_letters: &DeadLetters,
        cursors: &mut BTreeMap<i32, PartitionCursor>,
        tracker: &mut WatermarkTracker,
        outputs: &[mpsc::Sender<Message>],
        stop: &AtomicBool,
    ) -> Result<bool> {
        let mut buffers: BTreeMap<i32, Vec<BorrowedMessage<'_>>> = BTreeMap::new();
        let mut buffered = 0usize;
        let mut last_flush = Instant::now();
        let mut last_barrier = self
            .barriers
            .as_ref()
            .map_or(0, |b| b.requests.requested.load(Ordering::Acquire));
        loop {
            if let Some(barriers) = &self.barriers {
                let wanted = barriers.requests.requested.load(Ordering::Acquire);
                if wanted > last_barrier {
                    self.flush(&mut buffers, dead_letters, tracker, outputs)?;
                    buffered = 0;
                    last_flush = Instant::now();
                    self.barrier(wanted, dead_letters, cursors, tracker, outputs, barriers)?;
                    last_barrier = wanted;
                }
            }
            if self.bounded && cursors.values().all(|c| c.finished) {
                self.flush(&mut buffers, dead_letters, tracker, outputs)?;
                return Ok(true);
            }
            if stop.load(Ordering::Relaxed) {
                self.flush(&mut buffers, dead_letters, tracker, outputs)?;
                return Ok(false);
            }
            match consumer.poll(Duration::from_millis(50)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    if let Some(c) = cursors.get_mut(&p) {
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
                            let mut tpl = TopicPartitionList::new();
                            tpl.add_partition(&self.config.topic, p);
                            // Stop fetching: a bounded run reads what was there when it caught up.
                            let _ = consumer.pause(&tpl);
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(topic = %self.config.topic, error = %e, "consumer error (librdkafka retries)")
                }
                Some(Ok(m)) => {
                    let p = m.partition();
                    let Some(c) = cursors.get_mut(&p) else {
                        continue;
                    };
                    c.next = m.offset() + 1;
                    Metrics::add(&self.metrics.records_in, 1);
                    buffers.entry(p).or_default().push(m);
                    buffered += 1;
                }
            }
            for (&p, c) in cursors.iter() {
                if c.finished {
                    tracker.finish(p);
                }
            }
            if buffered >= self.config.batch_size
                || (buffered > 0 && last_flush.elapsed() >= self.config.batch_linger)
            {
                self.flush(&mut buffers, dead_letters, tracker, outputs)?;
                buffered = 0;
                last_flush = Instant::now();
            }
            if let Some(wm) = tracker.advance(Instant::now()) {
                send(outputs, Message::Signal(Signal::Watermark(wm)))?;
            }
        }
    }

    /// Sends barrier `epoch` (the buffers are flushed) and reports the
    /// positions it covers.
    fn barrier(
        &self,
        epoch: u64,
        dead_letters: &DeadLetters,
        cursors: &BTreeMap<i32, PartitionCursor>,
        tracker: &WatermarkTracker,
        outputs: &[mpsc::Sender<Message>],
        barriers: &SourceBarriers,
    ) -> Result<()> {
        // The dead letters before the barrier are part of what it covers.
        dead_letters.flush()?;
        send(outputs, Message::Signal(Signal::Barrier(epoch)))?;
        let positions = KafkaPositions {
            topic: self.config.topic.clone(),
            offsets: cursors.iter().map(|(&p, c)| (p, c.next)).collect(),
            clocks: tracker.clocks(),
        };
        // The coordinator gone means the job is stopping; nothing to report to.
        let _ = barriers.reports.send(Report {
            epoch,
            from: Participant::Source(self.config.table.clone()),
            snapshot: positions.snapshot(),
        });
        Ok(())
    }

    /// Decodes each partition's buffer into one batch and sends it on.
    fn flush(
        &self,
        buffers: &mut BTreeMap<i32, Vec<BorrowedMessage<'_>>>,
        dead_letters: &DeadLetters,
        tracker: &mut WatermarkTracker,
        outputs: &[mpsc::Sender<Message>],
    ) -> Result<()> {
        for (&p, messages) in buffers.iter_mut() {
            if messages.is_empty() {
                continue;
            }
            let raw: Vec<RawRecord> = messages
                .iter()
                .map(|m| RawRecord {
                    payload: m.payload(),
                    key: m.key(),
                    partition: p,
                    offset: m.offset(),
                    timestamp: m.timestamp().to_millis(),
                })
                .collect();
            let (batch, bad) = self.decoder.decode(&raw)?;
            for b in &bad {
                let r = &raw[b.index];
                let origin = Origin {
                    topic: &self.config.topic,
                    position: Some((p, r.offset)),
                    statement: None,
                };
                dead_letters.send(r.payload.unwrap_or_default(), r.key, &b.error, origin)?;
                let n = self.metrics.bad_records.fetch_add(1, Ordering::Relaxed) + 1;
                if n <= BAD_RECORDS_LOGGED || n.is_multiple_of(1000) {
                    tracing::warn!(
                        topic = %self.config.topic, partition = p, offset = r.offset, error = %b.error,
                        dead_letter_topic = %self.config.dlq_topic, bad_records = n, "bad record sent to the dead-letter topic"
                    );
                }
            }
            let wm = match &self.watermark {
                Some(expr) if batch.num_rows() > 0 => expr.max_over(&batch)?,
                _ => None,
            };
            tracker.observe(p, wm, Instant::now());
            if batch.num_rows() > 0 {
                send(outputs, Message::Data(batch))?;
            }
            messages.clear();
        }
        Ok(())
    }
}

/// The row rules of source `table` (declared in job file `file`): an error names file and line.
pub fn row_rules(file: &str, table: &TableDef, config: &KafkaSourceConfig) -> Result<RowRules> {
    RowRules::for_table(table, config.max_ahead, config.key_field.as_deref()).map_err(
        |(line, message)| {
            EngineError::Config(engine_sql::SqlError {
                file: file.to_string(),
                line,
                message: format!("table `{}`: {message}", table.name),
            })
        },
    )
}

fn send(outputs: &[mpsc::Sender<Message>], message: Message) -> Result<()> {
    for out in outputs {
        out.blocking_send(message.clone()).map_err(|_| {
            EngineError::Execution("a statement stopped; stopping its source".into())
        })?;
    }
    Ok(())
}
