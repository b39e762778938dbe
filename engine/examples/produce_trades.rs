//! A stand-in feed until `engine produce` exists: random-walk trades to a topic.
//!
//! ```text
//! cargo run -p engine --example produce_trades -- [COUNT] [SYMBOLS]
//! ```
//! Uses `KAFKA_BROKERS` (default 127.0.0.1:9092) and `TRADES_TOPIC` (default `trades`),
//! creating the topic with 4 partitions if needed. Event times start now and
//! advance 5 ms per trade, so 100,000 trades cover a bit over 8 minutes.

use std::time::Duration;

use rand::{rngs::StdRng, Rng, SeedableRng};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let count = args.next().transpose()?.unwrap_or(100_000);
    let symbols = args.next().transpose()?.unwrap_or(8).max(1);
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let topic = std::env::var("TRADES_TOPIC").unwrap_or_else(|_| "trades".into());

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()?;
    for name in [topic.clone(), format!("{topic}.dlq")] {
        let partitions = if name == topic { 4 } else { 1 };
        // An existing topic is fine: the result is only logged.
        let result = admin
            .create_topics(
                &[NewTopic::new(&name, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await?;
        eprintln!(
            "topic {name}: {:?}",
            result[0]
                .as_ref()
                .map(|_| "created")
                .map_err(|(_, e)| e.to_string())
        );
    }

    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "20")
        .create()?;
    let mut rng = StdRng::seed_from_u64(42);
    let mut prices: Vec<f64> = (0..symbols).map(|i| 100.0 + 10.0 * i as f64).collect();
    let start = chrono::Utc::now().timestamp_millis();
    for i in 0..count {
        let s = rng.random_range(0..symbols);
        prices[s] = ((prices[s] + rng.random_range(-5i64..=5) as f64 / 100.0).max(1.0) * 100.0)
            .round()
            / 100.0;
        let symbol = format!("SYM{s:02}");
        let payload = format!(
            r#"{{"symbol":"{symbol}","price":{},"size":{},"ts":{}}}"#,
            prices[s],
            rng.random_range(1..=500) * 10,
            start + 5 * i as i64
        );
        let mut record = BaseRecord::to(&topic).key(&symbol).payload(&payload);
        while let Err((_, r)) = producer.send(record) {
            record = r; // queue full: let deliveries drain
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    producer.flush(Duration::from_secs(60))?;
    eprintln!("produced {count} trades over {symbols} symbols to `{topic}` on {brokers}");
    Ok(())
}
