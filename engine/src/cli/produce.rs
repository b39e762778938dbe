//! `engine produce`: the market simulator, to Kafka or to a JSON-lines file.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use engine::feed::{self, FeedConfig, Pacer, RecordKind, Simulator, Speed};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

/// Arguments of `engine produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// How many symbols (SYM000, SYM001, ...), or a comma-separated list of tickers.
    #[arg(long, default_value_t = Symbols(feed::symbol_names(feed::DEFAULT_SYMBOLS)), value_parser = parse_symbols, allow_negative_numbers = true)]
    pub symbols: Symbols,
    /// Trades per second of market time, over all symbols.
    #[arg(long, default_value_t = feed::DEFAULT_RATE, value_parser = positive, allow_negative_numbers = true)]
    pub rate: f64,
    /// Stop after this many records.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this much market time (e.g. 90s, 10min, 2h).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Seed: the same seed and settings give the same records, byte for byte.
    #[arg(long, default_value_t = feed::DEFAULT_SEED)]
    pub seed: u64,
    /// Market time runs this many times faster than wall time; `max` sends as fast as possible.
    #[arg(long, default_value = "1", value_parser = parse_speed, allow_negative_numbers = true)]
    pub speed: Speed,
    /// Event time of the first trade: RFC 3339 (e.g. 2025-11-20T14:30:00Z), or `now`.
    #[arg(long, default_value = "now")]
    pub start: String,
    /// Send each trade up to this many ms after its event time (bounded disorder).
    #[arg(long, default_value_t = 0)]
    pub disorder_ms: u64,
    /// Share of trades sent a minute behind the watermark (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = fraction, allow_negative_numbers = true)]
    pub late_fraction: f64,
    /// Share of malformed records, for the dead-letter path (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = fraction, allow_negative_numbers = true)]
    pub bad_fraction: f64,
    /// Write the records as JSON lines to this file instead of Kafka.
    #[arg(long)]
    pub to_file: Option<PathBuf>,
    /// Kafka brokers.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Topic to write (created with --partitions if missing, with `<topic>.dlq`).
    #[arg(long, default_value = "trades")]
    pub topic: String,
    /// Partitions of a topic this command creates.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,
}

/// The symbols to trade.
#[derive(Debug, Clone)]
pub struct Symbols(pub Vec<String>);

impl std::fmt::Display for Symbols {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The default shows as a count, as users write it.
        if self.0 == feed::symbol_names(self.0.len()) {
            write!(f, "{}", self.0.len())
        } else {
            write!(f, "{}", self.0.join(","))
        }
    }
}

fn parse_symbols(s: &str) -> Result<Symbols, String> {
    if let Ok(n) = s.parse::<i64>() {
        if n <= 0 {
            return Err("the number of symbols must be at least 1".into());
        }
        return Ok(Symbols(feed::symbol_names(n as usize)));
    }
    let list: Vec<String> = s
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if list.is_empty()
        || list.iter().any(|t| {
            !t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        })
    {
        return Err(format!(
            "`{s}`: give a count or a comma-separated list of tickers (letters, digits, '.', '-')"
        ));
    }
    Ok(Symbols(list))
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("`{s}` must be a positive number")),
    }
}

fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` must be a fraction between 0 and 1")),
    }
}

pub(crate) fn parse_speed(s: &str) -> Result<Speed, String> {
    if s == "max" {
        return Ok(Speed::Max);
    }
    positive(s)
        .map(Speed::Times)
        .map_err(|_| format!("`{s}` must be a positive factor or `max`"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    engine_sql::options::parse_duration(s)
        .ok_or_else(|| format!("`{s}` is not a duration (e.g. 90s, 10min, 2h)"))
}

impl ProduceArgs {
    /// Runs the simulator until --count or --duration (or forever, to Kafka).
    pub async fn run(self) -> anyhow::Result<()> {
        if self.late_fraction + self.bad_fraction > 1.0 {
            bail!("--late-fraction plus --bad-fraction must not exceed 1");
        }
        if self.to_file.is_some() && self.count.is_none() && self.duration.is_none() {
            bail!("--to-file needs --count or --duration, or the file would grow forever");
        }
        let start_ms = match self.start.as_str() {
            "now" => chrono::Utc::now().timestamp_millis(),
            s => chrono::DateTime::parse_from_rfc3339(s)
                .with_context(|| {
                    format!(
                        "--start `{s}`: expected RFC 3339 such as 2025-11-20T14:30:00Z, or `now`"
                    )
                })?
                .timestamp_millis(),
        };
        let config = FeedConfig {
            symbols: self.symbols.0.clone(),
            rate: self.rate,
            seed: self.seed,
            start_ms,
            disorder_ms: self.disorder_ms,
            late_fraction: self.late_fraction,
            bad_fraction: self.bad_fraction,
        };
        let end_ms = self.duration.map(|d| start_ms + d.as_millis() as i64);
        let records = Simulator::new(config)
            .take(self.count.map_or(usize::MAX, |c| c as usize))
            .take_while(|r| end_ms.is_none_or(|e| r.sent_ms < e));
        let (wall_start, pacer) = (Instant::now(), Pacer::new(start_ms, self.speed));
        let counts = match self.to_file.as_ref() {
            Some(path) => {
                let mut file = std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
                );
                let mut counts = [0u64; 3];
                for record in records {
                    pacer.wait_for(&record).await;
                    file.write_all(&record.payload)?;
                    file.write_all(b"\n")?;
                    counts[feed::kind_index(record.kind)] += 1;
                }
                file.flush()?;
                counts
            }
            None => {
                let producer = self.kafka_producer().await?;
                let counts = feed::publish(
                    &producer,
                    &self.topic,
                    records,
                    &pacer,
                    &AtomicBool::new(false),
                )
                .await?;
                producer
                    .flush(Duration::from_secs(60))
                    .context("flushing the producer")?;
                counts
            }
        };
        let total: u64 = counts.iter().sum();
        let secs = wall_start.elapsed().as_secs_f64();
        let target = self
            .to_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| format!("topic `{}` on {}", self.topic, self.brokers));
        eprintln!(
            "produced {total} records ({} trades, {} late, {} bad) over {} symbols to {target} in {secs:.1} s ({:.0} records/s)",
            counts[feed::kind_index(RecordKind::Trade)],
            counts[feed::kind_index(RecordKind::Late)],
            counts[feed::kind_index(RecordKind::Bad)],
            self.symbols.0.len(),
            total as f64 / secs.max(1e-9)
        );
        Ok(())
    }

    async fn kafka_producer(&self) -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()?;
        let dlq = format!("{}.dlq", self.topic);
        let topics = [
            NewTopic::new(&self.topic, self.partitions, TopicReplication::Fixed(1)),
            NewTopic::new(&dlq, 1, TopicReplication::Fixed(1)),
        ];
        for result in admin
            .create_topics(&topics, &AdminOptions::new())
            .await
            .with_context(|| format!("creating topics on {}", self.brokers))?
        {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, e)) => bail!("creating topic `{topic}` on {}: {e}", self.brokers),
            }
        }
        Ok(feed::feed_producer(&self.brokers)?)
    }
}
