//! The dead-letter topic: bad records keep their payload and key, and carry
//! the error and their origin in headers (as Kafka Connect's DLQ does).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};

use crate::error::{EngineError, Result};
use crate::kafka::KafkaClientOptions;

/// Payload bytes a dead letter keeps. Brokers refuse records over their
/// `message.max.bytes` (1 MB by default), so an oversized bad record is kept
/// as a prefix, with its full size in the `dlq.original_bytes` header.
pub const MAX_DEAD_LETTER_PAYLOAD: usize = 512 * 1024;

/// Counts failed deliveries, so that offsets are never committed past a
/// bad record whose dead-letter copy was lost.
#[derive(Default)]
struct DeliveryCounter {
    failed: Arc<AtomicU64>,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = result {
            tracing::error!(topic = m.topic(), error = %e, "dead-letter record not delivered");
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Where a bad record came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
}

/// A producer to one dead-letter topic.
pub struct DeadLetters {
    topic: String,
    producer: ThreadedProducer<DeliveryCounter>,
    failed: Arc<AtomicU64>,
}

impl DeadLetters {
    /// An idempotent producer to `topic`.
    pub fn new(client: &KafkaClientOptions, topic: &str) -> Result<Self> {
        let context = DeliveryCounter::default();
        let failed = Arc::clone(&context.failed);
        let producer: ThreadedProducer<DeliveryCounter> = client
            .client_config()
            .set("enable.idempotence", "true")
            .set("linger.ms", "20")
            .create_with_context(context)
            .map_err(|e| {
                EngineError::Kafka(format!(
                    "creating the dead-letter producer for `{topic}`: {e}"
                ))
            })?;
        crate::kafka::ensure_topic(
            producer.client(),
            topic,
            &client.bootstrap_servers,
            "dead-letter topic (option dlq.topic)",
        )?;
        Ok(Self {
            topic: topic.to_string(),
            producer,
            failed,
        })
    }

    /// Queues one bad record. Blocks while the producer queue is full.
    pub fn send(
        &self,
        payload: &[u8],
        key: Option<&[u8]>,
        error: &str,
        origin: Origin,
    ) -> Result<()> {
        let (partition, offset) = (origin.partition.to_string(), origin.offset.to_string());
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "dlq.error",
                value: Some(error),
            })
            .insert(Header {
                key: "dlq.topic",
                value: Some(origin.topic),
            })
            .insert(Header {
                key: "dlq.partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "dlq.offset",
                value: Some(offset.as_str()),
            });
        if payload.len() > MAX_DEAD_LETTER_PAYLOAD {
            let size = payload.len().to_string();
            headers = headers.insert(Header {
                key: "dlq.original_bytes",
                value: Some(size.as_str()),
            });
        }
        let payload = &payload[..payload.len().min(MAX_DEAD_LETTER_PAYLOAD)];
        let mut record = BaseRecord::to(&self.topic)
            .payload(payload)
            .headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    return Err(EngineError::Kafka(format!(
                        "dead-letter topic `{}`: {e}",
                        self.topic
                    )))
                }
            }
        }
    }

    /// Waits until every queued record is acknowledged; fails if any was lost.
    pub fn flush(&self) -> Result<()> {
        self.producer.flush(Duration::from_secs(60)).map_err(|e| {
            EngineError::Kafka(format!("flushing dead-letter topic `{}`: {e}", self.topic))
        })?;
        match self.failed.load(Ordering::Relaxed) {
            0 => Ok(()),
            n => Err(EngineError::Kafka(format!(
                "{n} records could not be written to dead-letter topic `{}`",
                self.topic
            ))),
        }
    }
}
