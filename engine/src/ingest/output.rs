//! Where a feed's trades and dead letters go.

use std::io::Write;
use std::time::Duration;

use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use tokio_util::sync::CancellationToken;

use super::trade::Trade;
use crate::error::{EngineError, Result};
use crate::kafka::{DeliveryCounter, KafkaClientOptions};
use crate::source::kafka::DeadLetters;
use crate::source::{DeadLetterSink, Origin};

/// Trades the Kafka producer holds before the feed waits unless told
/// otherwise: the bounded queue between the socket and the broker.
pub const DEFAULT_MAX_QUEUED: usize = 100_000;

/// Where trades go. A call may wait (a full queue): the feed then does not
/// read its socket, which is the backpressure the provider sees.
#[async_trait::async_trait]
pub trait TradeOutput: Send {
    /// One trade, normalized.
    async fn trade(&mut self, trade: &Trade) -> Result<()>;

    /// A frame (or part of one) that is not a trade, keys already stripped, and why.
    async fn dead_letter(&mut self, raw: &[u8], reason: &str) -> Result<()>;

    /// Delivers everything queued; fails if anything was lost.
    async fn finish(&mut self) -> Result<()>;
}

/// Trades to a Kafka topic (key = symbol, record time = trade time) through
/// an idempotent producer; dead letters to `<topic>.dlq`.
pub struct KafkaOutput {
    topic: String,
    producer: ThreadedProducer<DeliveryCounter>,
    dead_letters: DeadLetters,
    /// What dead letters name as their origin (the provider).
    origin: String,
    max_queued: usize,
    stop: CancellationToken,
}

impl KafkaOutput {
    /// A producer to `topic` on `client`'s cluster, dead letters to `<topic>.dlq`
    /// (both must exist: see [`crate::feed::create_topics`]). `origin`: the
    /// provider's name. At most `max_queued` trades wait for the broker;
    /// once `stop` is cancelled, a trade that waits for room in a full queue
    /// is given up (an error saying so).
    pub fn new(
        client: &KafkaClientOptions,
        topic: &str,
        origin: &str,
        max_queued: usize,
        stop: CancellationToken,
    ) -> Result<Self> {
        let dlq = format!("{topic}.dlq");
        let mut config =
            client.client_config_with(&[("linger.ms", "5"), ("compression.type", "lz4")]);
        // What no trade is lost by, whatever the pass-through settings say.
        config
            .set("enable.idempotence", "true")
            .set(
                "queue.buffering.max.messages",
                max_queued.max(1).to_string(),
            )
            // Retried until delivered (librdkafka gives up after 5 min by default):
            // a broker that is down holds the queue full, and the socket waits.
            .set("message.timeout.ms", "0");
        let producer = client.threaded_producer(
            &config,
            |hooks| DeliveryCounter::new("trade", hooks),
            || {
                format!(
                    "creating the trade producer for {}",
                    client.bootstrap_servers
                )
            },
        )?;
        Ok(Self {
            topic: topic.to_string(),
            producer,
            dead_letters: DeadLetters::new(client, &dlq)?,
            origin: origin.to_string(),
            max_queued,
            stop,
        })
    }
}

#[async_trait::async_trait]
impl TradeOutput for KafkaOutput {
    async fn trade(&mut self, trade: &Trade) -> Result<()> {
        // A trade the broker refused for good (not a retriable error) stops the feed:
        // reading on would only lose more.
        self.producer.context().check(&self.topic)?;
        let payload = trade.to_json();
        let record = BaseRecord::to(&self.topic)
            .key(trade.symbol.as_bytes())
            .payload(&payload)
            .timestamp(trade.ts);
        tokio::select! {
            biased;
            sent = crate::feed::send(&self.producer, record) => sent,
            _ = self.stop.cancelled() => Err(EngineError::kafka_msg(format!(
                "stopped while topic `{}` took no more trades (its queue of {} was full): the trade of {} at {} was not sent",
                self.topic, self.max_queued, trade.symbol, trade.ts
            ))),
        }
    }

    async fn dead_letter(&mut self, raw: &[u8], reason: &str) -> Result<()> {
        let origin = Origin {
            topic: &self.origin,
            position: None,
            statement: None,
        };
        self.dead_letters.send(raw, None, reason, origin)
    }

    async fn finish(&mut self) -> Result<()> {
        let topic = &self.topic;
        (self.producer.flush(Duration::from_secs(30)))
            .map_err(|e| EngineError::kafka(format!("flushing trades to topic `{topic}`"), e))?;
        self.dead_letters.flush()?;
        self.producer.context().check(&self.topic)
    }
}

/// Trades as JSON lines to a writer (a file, stdout); dead letters to stderr.
pub struct FileOutput {
    out: Box<dyn Write + Send>,
}

impl FileOutput {
    /// Writes to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self { out }
    }
}

#[async_trait::async_trait]
impl TradeOutput for FileOutput {
    async fn trade(&mut self, trade: &Trade) -> Result<()> {
        let mut line = trade.to_json();
        line.push(b'\n');
        self.out
            .write_all(&line)
            .map_err(|e| EngineError::Execution(format!("writing a trade: {e}")))
    }

    async fn dead_letter(&mut self, raw: &[u8], reason: &str) -> Result<()> {
        let raw = crate::decode::excerpt(&String::from_utf8_lossy(raw), 200);
        eprintln!("dead letter: {reason}: {raw}");
        Ok(())
    }

    async fn finish(&mut self) -> Result<()> {
        self.out
            .flush()
            .map_err(|e| EngineError::Execution(format!("writing trades: {e}")))
    }
}
