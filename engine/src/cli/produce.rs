//! `engine produce`: the market simulator, to Kafka or to a JSON-lines file.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use engine::feed::{
    self, FeedConfig, FeedRecord, Mapping, Pacer, RecordKind, ReplayOptions, ReplayOrder,
    Simulator, Speed,
};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::producer::Producer;

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
    /// Event time of the first trade: RFC 3339 (e.g. 2025-11-20T14:30:00Z) or `now`
    /// [default: `now`; with --replay, the recorded times].
    #[arg(long)]
    pub start: Option<String>,
    /// Send each trade up to this many ms after its event time (bounded disorder).
    #[arg(long, default_value_t = 0)]
    pub disorder_ms: u64,
    /// Share of trades sent a minute behind the watermark (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = fraction, allow_negative_numbers = true)]
    pub late_fraction: f64,
    /// Share of malformed records, for the dead-letter path (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = fraction, allow_negative_numbers = true)]
    pub bad_fraction: f64,
    /// Replay a file instead of simulating: CSV (the seed daily bars
    /// `Index,Date,...,Volume,CloseUSD` are recognised) or JSON lines.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["symbols", "rate", "seed", "disorder_ms", "late_fraction", "bad_fraction"])]
    pub replay: Option<PathBuf>,
    /// Which file columns feed the trade contract, e.g. `symbol=Ticker,price=Close,size=Volume,ts=Date`
    /// [default: the daily-bar columns for such a CSV, else `symbol,price,size,ts`].
    #[arg(long, value_name = "FIELD=COLUMN,...", requires = "replay")]
    pub map: Option<String>,
    /// Recorded time runs this many times faster in the replayed feed (86400: a day per second).
    #[arg(long, default_value_t = 1.0, value_parser = positive, allow_negative_numbers = true, requires = "replay")]
    pub time_compression: f64,
    /// Send replayed records by event time, or in file order (a recorded stream, disorder and all).
    #[arg(long, value_enum, default_value_t = Order::Time, requires = "replay")]
    pub order: Order,
    /// Write the records as JSON lines to this file instead of Kafka.
    #[arg(long)]
    pub to_file: Option<PathBuf>,
    /// Where the trades go in Kafka.
    #[command(flatten)]
    pub kafka: TopicArgs,
}

/// The topic a command writes trades to (`engine produce`, `engine ingest`).
#[derive(Debug, Args)]
pub struct TopicArgs {
    /// The cluster, and how to sign in to it.
    #[command(flatten)]
    pub cluster: super::kafka::KafkaArgs,
    /// Topic to write (created with --partitions if missing, with `<topic>.dlq`).
    #[arg(long, default_value = "trades")]
    pub topic: String,
    /// Partitions of a topic this command creates.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,
}

impl TopicArgs {
    /// Creates the topic and its dead-letter topic where missing; the
    /// cluster's client options.
    pub async fn create(&self) -> anyhow::Result<engine::KafkaClientOptions> {
        let client = self.cluster.client()?;
        let dlq = format!("{}.dlq", self.topic);
        engine::feed::create_topics(&client, &[(&self.topic, self.partitions), (&dlq, 1)]).await?;
        Ok(client)
    }
}

/// The order of a replay (`--order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Order {
    /// By event time.
    Time,
    /// As in the file.
    File,
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

/// Records between two updates of the progress bar.
const PROGRESS_STEP: u64 = 1024;

/// Records to send and what is known of them before sending.
struct Feed {
    records: Box<dyn Iterator<Item = FeedRecord> + Send>,
    /// Market time of the first record: the pacer's origin.
    start_ms: i64,
    /// How many records there are, when known.
    len: Option<u64>,
    /// How many symbols they trade.
    symbols: usize,
}

/// `--start`: RFC 3339 or `now`, as epoch ms.
pub(crate) fn parse_start(s: &str) -> anyhow::Result<i64> {
    if s == "now" {
        return Ok(chrono::Utc::now().timestamp_millis());
    }
    Ok(chrono::DateTime::parse_from_rfc3339(s)
        .with_context(|| {
            format!("--start `{s}`: expected RFC 3339 such as 2025-11-20T14:30:00Z, or `now`")
        })?
        .timestamp_millis())
}

/// A bar with rate and ETA on a terminal (a spinner when the length is unknown); hidden otherwise.
fn progress_bar(len: Option<u64>) -> ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    // indicatif's own `{per_sec}` prints four decimals; whole records per second read better.
    let style = |template: &str| {
        ProgressStyle::with_template(template)
            .expect("a valid template")
            .with_key(
                "rate",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0} records/s", state.per_sec());
                },
            )
    };
    match len {
        Some(n) => ProgressBar::new(n).with_style(style(
            "{bar:40} {human_pos}/{human_len} records  {rate}  ETA {eta}",
        )),
        None => ProgressBar::new_spinner()
            .with_style(style("{spinner} {human_pos} records  {rate}  {elapsed}")),
    }
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    engine_sql::options::parse_duration(s)
        .ok_or_else(|| format!("`{s}` is not a duration (e.g. 90s, 10min, 2h)"))
}

impl ProduceArgs {
    /// Runs the simulator until --count or --duration (or forever, to Kafka).
    pub async fn run(self) -> anyhow::Result<()> {
        // The rate reported at the end counts reading a replayed file too.
        let wall_start = Instant::now();
        let stop = super::stop_on_ctrl_c();
        if self.late_fraction + self.bad_fraction > 1.0 {
            bail!("--late-fraction plus --bad-fraction must not exceed 1");
        }
        if self.to_file.is_some()
            && self.replay.is_none()
            && self.count.is_none()
            && self.duration.is_none()
        {
            bail!("--to-file needs --count or --duration, or the file would grow forever");
        }
        let start_ms = self.start.as_deref().map(parse_start).transpose()?;
        let feed = match &self.replay {
            Some(path) => self.replayed(path, start_ms)?,
            None => {
                self.simulated(start_ms.unwrap_or_else(|| chrono::Utc::now().timestamp_millis()))
            }
        };
        let end_ms = self.duration.map(|d| feed.start_ms + d.as_millis() as i64);
        let expected = match (self.count, feed.len) {
            (Some(c), Some(n)) => Some(c.min(n)),
            // A simulated duration gives about rate x duration records.
            (c, n) => c.or(n).or_else(|| {
                self.duration
                    .map(|d| (self.rate * d.as_secs_f64()).ceil() as u64)
            }),
        };
        let progress = progress_bar(expected);
        let mut unshown = 0;
        let records = feed
            .records
            .take(self.count.map_or(usize::MAX, |c| c as usize))
            .take_while(|r| end_ms.is_none_or(|e| r.sent_ms < e))
            // In steps, so a million records a second do not pay for a million bar updates.
            .inspect(|_| {
                unshown += 1;
                if unshown == PROGRESS_STEP {
                    progress.inc(unshown);
                    unshown = 0;
                }
            });
        let pacer = Pacer::new(feed.start_ms, self.speed);
        let counts = match self.to_file.as_ref() {
            Some(path) => {
                let mut file = std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
                );
                let mut counts = [0u64; 3];
                for record in records {
                    if stop.is_cancelled() {
                        break;
                    }
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
                let counts =
                    feed::publish(&producer, &self.kafka.topic, records, &pacer, &stop).await?;
                producer
                    .flush(Duration::from_secs(60))
                    .context("flushing the producer")?;
                // Records librdkafka gave up on are not "produced".
                producer.context().check(&self.kafka.topic)?;
                counts
            }
        };
        progress.finish_and_clear();
        let total: u64 = counts.iter().sum();
        let secs = wall_start.elapsed().as_secs_f64();
        let target = self
            .to_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| {
                format!(
                    "topic `{}` on {}",
                    self.kafka.topic, self.kafka.cluster.brokers
                )
            });
        eprintln!(
            "produced {total} records ({} trades, {} late, {} bad) over {} symbols to {target} in {secs:.1} s ({:.0} records/s)",
            counts[feed::kind_index(RecordKind::Trade)],
            counts[feed::kind_index(RecordKind::Late)],
            counts[feed::kind_index(RecordKind::Bad)],
            feed.symbols,
            total as f64 / secs.max(1e-9)
        );
        Ok(())
    }

    /// The simulator's records from `start_ms`.
    fn simulated(&self, start_ms: i64) -> Feed {
        let n = self.symbols.0.len();
        if self.rate > Simulator::max_rate(n) {
            eprintln!(
                "warning: {n} symbols trade at most {}/s, not --rate {} (event times are whole ms, distinct per symbol): market time runs slower than asked; use more --symbols",
                Simulator::max_rate(n),
                self.rate
            );
        }
        let config = FeedConfig {
            symbols: self.symbols.0.clone(),
            rate: self.rate,
            seed: self.seed,
            start_ms,
            disorder_ms: self.disorder_ms,
            late_fraction: self.late_fraction,
            bad_fraction: self.bad_fraction,
        };
        Feed {
            records: Box::new(Simulator::new(config)),
            start_ms,
            len: None,
            symbols: self.symbols.0.len(),
        }
    }

    /// The records of a replayed file; says how many rows were skipped and why.
    fn replayed(&self, path: &std::path::Path, start_ms: Option<i64>) -> anyhow::Result<Feed> {
        let base = Mapping::detect(path)?;
        let mapping = match &self.map {
            Some(spec) => Mapping::parse(spec, base).map_err(|e| anyhow::anyhow!("--map: {e}"))?,
            None => base,
        };
        let options = ReplayOptions {
            mapping,
            start_ms,
            compression: self.time_compression,
            order: match self.order {
                Order::Time => ReplayOrder::Time,
                Order::File => ReplayOrder::File,
            },
        };
        let replay = feed::replay(path, &options)?;
        if let Some((line, reason)) = &replay.first_skip {
            eprintln!(
                "warning: {}: skipped {} rows that do not map onto the trade contract (first: line {line}: {reason})",
                path.display(),
                replay.skipped
            );
        }
        let symbols: std::collections::HashSet<&str> =
            replay.records.iter().map(|r| r.key.as_str()).collect();
        Ok(Feed {
            start_ms: replay.records.first().map_or(0, |r| r.sent_ms),
            len: Some(replay.records.len() as u64),
            symbols: symbols.len(),
            records: Box::new(replay.records.into_iter()),
        })
    }

    async fn kafka_producer(&self) -> anyhow::Result<feed::FeedProducer> {
        let client = self.kafka.create().await?;
        Ok(feed::feed_producer(&client)?)
    }
}
