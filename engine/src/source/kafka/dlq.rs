//! The dead-letter topic: bad records keep their payload and key, and carry
//! the error and their origin in headers (as Kafka Connect's DLQ does).

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use crate::error::{EngineError, Result};
use crate::kafka::{DeliveryCounter, KafkaClientOptions};
use crate::source::{DeadLetterSink, Origin};

/// Payload bytes a dead letter keeps. Brokers refuse records over their
/// `message.max.bytes` (1 MB by default), so an oversized bad record is kept
/// as a prefix, with its full size in the `dlq.original_bytes` header.
pub const MAX_DEAD_LETTER_PAYLOAD: usize = 512 * 1024;

/// Key bytes a dead letter keeps (a longer key is cut, its size in
/// `dlq.original_key_bytes`): keys are symbols, not documents.
pub const MAX_DEAD_LETTER_KEY: usize = 16 * 1024;

/// Characters of the `dlq.error` header: errors quote values, and a value
/// can be most of the record.
pub const MAX_DEAD_LETTER_ERROR: usize = 1024;

/// librdkafka's default `message.max.bytes`, the most a record may take.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// Bytes kept free of a record's limit for its framing (librdkafka counts
/// the record's overhead, and each header's name and length, against it).
const RECORD_OVERHEAD: usize = 4096;

/// A producer to one dead-letter topic.
pub struct DeadLetters {
    topic: String,
    producer: ThreadedProducer<DeliveryCounter>,
    /// The most bytes a record may take (the producer's `message.max.bytes`).
    message_max_bytes: usize,
}

impl DeadLetters {
    /// An idempotent producer to `topic`.
    pub fn new(client: &KafkaClientOptions, topic: &str) -> Result<Self> {
        let hooks = client.hooks()?;
        let context = DeliveryCounter::new("dead-letter", hooks.clone());
        let producer: ThreadedProducer<DeliveryCounter> = client
            .client_config()
            .set("enable.idempotence", "true")
            .set("linger.ms", "20")
            .create_with_context(context)
            .map_err(|e| {
                EngineError::kafka(
                    format!("creating the dead-letter producer for `{topic}`"),
                    e,
                )
            })?;
        hooks.sign_in(producer.client())?;
        crate::kafka::ensure_topic(
            producer.client(),
            &hooks,
            topic,
            &client.bootstrap_servers,
            "dead-letter topic (option dlq.topic)",
        )?;
        let message_max_bytes = client
            .properties
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES);
        Ok(Self {
            topic: topic.to_string(),
            producer,
            message_max_bytes,
        })
    }
}

impl DeadLetterSink for DeadLetters {
    /// Queues one bad record. Blocks while the producer queue is full. The
    /// error, key and payload are cut so that the record always fits the
    /// producer's `message.max.bytes`: a dead letter too large to send would
    /// stop the job on every restart.
    fn send(
        &self,
        payload: &[u8],
        key: Option<&[u8]>,
        error: &str,
        origin: Origin<'_>,
    ) -> Result<()> {
        let error = crate::decode::excerpt(error, MAX_DEAD_LETTER_ERROR);
        let mut headers: Vec<(&str, String)> = vec![
            ("dlq.error", error),
            ("dlq.topic", origin.topic.to_string()),
        ];
        if let Some((partition, offset)) = origin.position {
            headers.push(("dlq.partition", partition.to_string()));
            headers.push(("dlq.offset", offset.to_string()));
        }
        if let Some(statement) = origin.statement {
            headers.push(("dlq.statement", statement.to_string()));
        }
        let key = key.map(|k| {
            if k.len() > MAX_DEAD_LETTER_KEY {
                headers.push(("dlq.original_key_bytes", k.len().to_string()));
            }
            &k[..k.len().min(MAX_DEAD_LETTER_KEY)]
        });
        // Whatever the limit leaves after key and headers, and at most
        // MAX_DEAD_LETTER_PAYLOAD (the `dlq.original_bytes` header is counted too).
        let taken = RECORD_OVERHEAD
            + key.map_or(0, <[u8]>::len)
            + headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 64)
                .sum::<usize>();
        let room = self
            .message_max_bytes
            .saturating_sub(taken)
            .min(MAX_DEAD_LETTER_PAYLOAD);
        if payload.len() > room {
            headers.push(("dlq.original_bytes", payload.len().to_string()));
        }
        let payload = &payload[..payload.len().min(room)];
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in &headers {
            owned = owned.insert(Header {
                key: k,
                value: Some(v.as_str()),
            });
        }
        let mut record = BaseRecord::to(&self.topic).payload(payload).headers(owned);
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
                    return Err(EngineError::kafka(
                        format!("dead-letter topic `{}`", self.topic),
                        e,
                    ))
                }
            }
        }
    }

    /// Waits until every queued record is acknowledged; fails if any was lost.
    fn flush(&self) -> Result<()> {
        self.producer.flush(Duration::from_secs(60)).map_err(|e| {
            EngineError::kafka(format!("flushing dead-letter topic `{}`", self.topic), e)
        })?;
        self.producer.context().check(&self.topic)
    }

    fn describe(&self) -> String {
        format!("dead-letter topic `{}`", self.topic)
    }
}
