//! Sending a feed to Kafka at a chosen pace.

use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
use rdkafka::ClientConfig;

use super::market::{FeedRecord, RecordKind};
use crate::error::{EngineError, Result};

/// How fast market time runs against wall time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// Market time runs this many times faster than wall time.
    Times(f64),
    /// As fast as possible.
    Max,
}

/// Waits so that a record sent at market time `t` leaves at wall time
/// `start + (t - start_ms) / speed`.
#[derive(Debug)]
pub struct Pacer {
    start_ms: i64,
    speed: Speed,
    wall_start: Instant,
}

/// Shortest wait worth a sleep: one tick of tokio's timer.
const MIN_SLEEP: Duration = Duration::from_millis(1);

impl Pacer {
    /// A pacer whose market clock starts at `start_ms` now.
    pub fn new(start_ms: i64, speed: Speed) -> Self {
        Self {
            start_ms,
            speed,
            wall_start: Instant::now(),
        }
    }

    /// Sleeps until `record` is due.
    pub async fn wait_for(&self, record: &FeedRecord) {
        if let Speed::Times(k) = self.speed {
            let due = Duration::from_secs_f64(
                (record.sent_ms - self.start_ms).max(0) as f64 / 1000.0 / k,
            );
            // Tokio's timer has millisecond resolution (a shorter sleep lasts until the
            // next tick), so records due within a tick go now; the schedule is absolute,
            // so nothing drifts.
            if let Some(wait) = due.checked_sub(self.wall_start.elapsed()) {
                if wait >= MIN_SLEEP {
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// A producer tuned for a high-rate feed (batching, lz4).
pub fn feed_producer(brokers: &str) -> Result<ThreadedProducer<DefaultProducerContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .map_err(|e| EngineError::kafka(format!("creating the feed producer for {brokers}"), e))
}

/// Queues one record, waiting while the producer queue is full.
pub async fn send(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    record: &FeedRecord,
) -> Result<()> {
    let mut message = BaseRecord::to(topic)
        .key(&record.key)
        .payload(&record.payload);
    loop {
        match producer.send(message) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), m)) => {
                message = m;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err((e, _)) => {
                return Err(EngineError::kafka(format!("sending to topic `{topic}`"), e))
            }
        }
    }
}

/// Sends `records` to `topic` at `speed` until `stop` is cancelled or they end;
/// returns how many of each kind were sent.
pub async fn publish(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    records: impl Iterator<Item = FeedRecord>,
    pacer: &Pacer,
    stop: &CancellationToken,
) -> Result<[u64; 3]> {
    let mut counts = [0u64; 3];
    for record in records {
        if stop.is_cancelled() {
            break;
        }
        pacer.wait_for(&record).await;
        send(producer, topic, &record).await?;
        counts[kind_index(record.kind)] += 1;
    }
    Ok(counts)
}

/// Index of a kind in the counts arrays: trades, late, bad.
pub fn kind_index(kind: RecordKind) -> usize {
    match kind {
        RecordKind::Trade => 0,
        RecordKind::Late => 1,
        RecordKind::Bad => 2,
    }
}
