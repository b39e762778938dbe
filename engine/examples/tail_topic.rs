//! A stand-in for `engine tail`: print every record of a topic as JSON lines.
//!
//! ```text
//! cargo run -p engine --example tail_topic -- ohlc_1m
//! ```
//! Uses `KAFKA_BROKERS` (default 127.0.0.1:9092); reads from the beginning and
//! exits after 5 s without new records.

use std::io::Write;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

fn main() -> anyhow::Result<()> {
    let topic = std::env::args().nth(1).unwrap_or_else(|| "ohlc_1m".into());
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("tail-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    // Assign every partition from the beginning: no group rebalance to wait for.
    let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
    let mut partitions = TopicPartitionList::new();
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        partitions.add_partition_offset(&topic, p.id(), Offset::Beginning)?;
    }
    consumer.assign(&partitions)?;
    let mut out = std::io::stdout().lock();
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(5) {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m?;
            if writeln!(
                out,
                "{}",
                String::from_utf8_lossy(m.payload().unwrap_or_default())
            )
            .is_err()
            {
                break; // the reader went away (e.g. `| head`)
            }
            last = Instant::now();
        }
    }
    Ok(())
}
