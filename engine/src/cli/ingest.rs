//! `engine ingest`: a provider's live trades, normalized, to Kafka (or a file).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use engine::ingest::{
    FileOutput, IngestConfig, IngestStats, KafkaOutput, LiveFeed, Provider, TradeOutput,
    DEFAULT_DEDUPE_CAPACITY, DEFAULT_MAX_QUEUED,
};
use tokio_util::sync::CancellationToken;

/// Arguments of `engine ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// The provider: finnhub (FINNHUB_TOKEN), alpaca (APCA_API_KEY_ID, APCA_API_SECRET_KEY),
    /// coinbase, binance, polygon (POLYGON_API_KEY). Keys are read from those variables only.
    #[arg(long, value_parser = parse_provider)]
    pub provider: Provider,
    /// Comma-separated symbols, as the provider names them (AAPL; BTC-USD on Coinbase; BTCUSDT on Binance).
    #[arg(long, required = true, value_parser = parse_symbols)]
    pub symbols: Symbols,
    /// The endpoint, if not the provider's own (a proxy, a test server): ws:// or wss://.
    #[arg(long)]
    pub url: Option<String>,
    /// Where the trades go in Kafka.
    #[command(flatten)]
    pub kafka: super::produce::TopicArgs,
    /// Stop after this many trades.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this long (e.g. 90s, 10min, 2h).
    #[arg(long, value_parser = super::produce::parse_duration)]
    pub duration: Option<Duration>,
    /// Write the normalized trades as JSON lines to this file (`-`: stdout) instead of Kafka.
    #[arg(long)]
    pub to_file: Option<PathBuf>,
    /// A connection without any frame for this long is dead (reconnected).
    #[arg(long, default_value = "30s", value_parser = super::run::parse_interval)]
    pub idle_timeout: Duration,
    /// Trades waiting for Kafka before the socket is no longer read (backpressure).
    #[arg(long, default_value_t = DEFAULT_MAX_QUEUED as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_queued: u64,
    /// Trade ids remembered to drop duplicates after a reconnect.
    #[arg(long, default_value_t = DEFAULT_DEDUPE_CAPACITY)]
    pub dedupe_capacity: usize,
}

/// Comma-separated symbols (`--symbols`).
#[derive(Debug, Clone)]
pub struct Symbols(pub Vec<String>);

/// `AAPL, MSFT` as `["AAPL", "MSFT"]`: at least one, none empty.
pub(crate) fn parse_symbols(s: &str) -> Result<Symbols, String> {
    engine::ingest::symbol_list(s)
        .map(Symbols)
        .map_err(|e| format!("`{s}` {e}"))
}

pub(crate) fn parse_provider(s: &str) -> Result<Provider, String> {
    Provider::parse(s).ok_or_else(|| {
        let known: Vec<&str> = Provider::ALL.iter().map(|p| p.name()).collect();
        format!("`{s}` is not a provider (known: {})", known.join(", "))
    })
}

impl IngestArgs {
    /// Reads the feed until --count, --duration, Ctrl-C or a refusal.
    pub async fn run(self) -> anyhow::Result<()> {
        let stop = super::stop_on_ctrl_c();
        if let Some(d) = self.duration {
            let timer = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                timer.cancel();
            });
        }
        let mut config = IngestConfig::new(self.provider, self.symbols.0.clone());
        config.url = self.url.clone();
        config.idle_timeout = self.idle_timeout;
        config.dedupe_capacity = self.dedupe_capacity;
        let mut feed = LiveFeed::new(config, &|var| std::env::var(var).ok())?;
        let (mut output, target): (Box<dyn TradeOutput>, String) = match &self.to_file {
            Some(path) if path.as_os_str() == "-" => (
                Box::new(FileOutput::new(Box::new(std::io::stdout()))),
                "stdout".into(),
            ),
            Some(path) => {
                let file = std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?;
                (
                    Box::new(FileOutput::new(Box::new(std::io::BufWriter::new(file)))),
                    path.display().to_string(),
                )
            }
            None => {
                let client = self.kafka.create().await?;
                let kafka = KafkaOutput::new(
                    &client,
                    &self.kafka.topic,
                    self.provider.name(),
                    self.max_queued as usize,
                    stop.clone(),
                )?;
                (
                    Box::new(kafka),
                    format!(
                        "topic `{}` on {}",
                        self.kafka.topic, self.kafka.cluster.brokers
                    ),
                )
            }
        };
        eprintln!("{} -> {target}", feed.describe());
        let stats = Arc::new(IngestStats::default());
        let status = tokio::spawn(report_status(Arc::clone(&stats), stop.clone()));
        let started = Instant::now();
        let result = feed.run(output.as_mut(), &stats, &stop, self.count).await;
        stop.cancel();
        let _ = status.await;
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "ingested from {} in {secs:.1} s: {}",
            feed.describe(),
            stats.summary()
        );
        Ok(result?)
    }
}

/// A status line on a terminal, updated every second: nothing when piped.
async fn report_status(stats: Arc<IngestStats>, stop: CancellationToken) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        let trades = IngestStats::get(&stats.trades);
        let prices: Vec<String> = (stats.last_prices().into_iter())
            .take(6)
            .map(|(s, p)| format!("{s} {p}"))
            .collect();
        bar.set_message(format!(
            "{trades} trades ({:.0}/s)  {}  reconnects {}  duplicates {}  gaps {}  dead letters {}",
            trades as f64 / started.elapsed().as_secs_f64().max(1e-3),
            prices.join("  "),
            IngestStats::get(&stats.reconnects),
            IngestStats::get(&stats.duplicates),
            IngestStats::get(&stats.gaps),
            IngestStats::get(&stats.dead_letters),
        ));
        bar.tick();
    }
    bar.finish_and_clear();
}
