//! Sending a feed to Kafka at a chosen pace.

use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};

use super::market::{FeedRecord, RecordKind};
use crate::error::{EngineError, Result};
use crate::kafka::{DeliveryCounter, KafkaClientOptions};

/// How fast market time runs against wall time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// Market time runs this many times faster than wall time.
    Times(f64),
    /// As fast as possible.
    Max,
}

impl std::fmt::Display for Speed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Speed::Times(k) => write!(f, "{k}x"),
            Speed::Max => f.write_str("max"),
        }
    }
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

/// The producer of a feed: it counts the records it could not deliver
/// (`producer.context().check(topic)` after a flush).
pub type FeedProducer = ThreadedProducer<DeliveryCounter>;

/// A producer tuned for a high-rate feed (batching, lz4).
pub fn feed_producer(client: &KafkaClientOptions) -> Result<FeedProducer> {
    let config = client.client_config_with(&[
        // A retried send is not a second copy of the trade.
        ("enable.idempotence", "true"),
        ("linger.ms", "20"),
        ("batch.size", "1000000"),
        ("compression.type", "lz4"),
        ("queue.buffering.max.messages", "1000000"),
    ]);
    client.threaded_producer(
        &config,
        |hooks| DeliveryCounter::new("trade", hooks),
        || {
            format!(
                "creating the feed producer for {}",
                client.bootstrap_servers
            )
        },
    )
}

/// Queues `record`, waiting while the producer queue is full (the
/// backpressure a feed sees when Kafka is slower than it).
pub async fn send<C, K, P>(
    producer: &ThreadedProducer<C>,
    record: BaseRecord<'_, K, P>,
) -> Result<()>
where
    C: ProducerContext<DeliveryOpaque = ()> + 'static,
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    let mut record = record;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err((e, r)) => {
                return Err(EngineError::kafka(
                    format!("sending to topic `{}`", r.topic),
                    e,
                ))
            }
        }
    }
}

/// Creates each `(topic, partitions)` on the cluster that does not exist yet.
pub async fn create_topics(client: &KafkaClientOptions, topics: &[(&str, i32)]) -> Result<()> {
    let brokers = &client.bootstrap_servers;
    let (admin, hooks) = client.admin()?;
    let new: Vec<NewTopic<'_>> = (topics.iter())
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let doing = || format!("creating topics on {brokers}");
    // A refusal (a certificate, a login) ends the wait at once.
    let results = tokio::select! {
        created = admin.create_topics(&new, &AdminOptions::new()) => {
            created.map_err(|e| EngineError::kafka(doing(), e))?
        }
        why = hooks.refused() => {
            let why = format!("{}: the brokers refused this client: {why}", doing());
            return Err(EngineError::kafka_msg(why));
        }
    };
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, e)) => {
                return Err(EngineError::kafka_msg(format!(
                    "creating topic `{topic}` on {brokers}: {e}"
                )))
            }
        }
    }
    // A topic just created may not show in metadata (leader not yet
    // available) for a moment: wait, so that a producer checking it does not fail.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for (name, _) in topics {
        loop {
            let known = (admin
                .inner()
                .fetch_metadata(Some(name), Duration::from_secs(5)))
            .is_ok_and(|m| {
                m.topics()
                    .iter()
                    .any(|t| t.name() == *name && t.error().is_none() && !t.partitions().is_empty())
            });
            if known || std::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Sends `records` to `topic` at `speed` until `stop` is cancelled or they end;
/// returns how many of each kind were sent.
pub async fn publish(
    producer: &FeedProducer,
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
        let message = BaseRecord::to(topic)
            .key(&record.key)
            .payload(&record.payload);
        send(producer, message).await?;
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
