//! `engine run JOB.sql [--bounded]`.
//!
//! With `KAFKA_BROKERS` unset, the job runs on an embedded default: an
//! in-process Kafka-protocol broker (librdkafka's mock cluster) fed by the
//! market simulator, so a first run needs no services at all.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use anyhow::{bail, Context};
use clap::Args;
use engine::feed::{self, FeedConfig, Pacer, Simulator, Speed};
use engine::ingest::{
    IngestConfig, IngestStats, KafkaOutput, LiveFeed, Provider, DEFAULT_MAX_QUEUED,
};
use engine::source::StartupMode;
use engine::web::ui::{self, UiOptions};
use engine::CheckpointOptions;
use engine::{Job, KafkaClientOptions, Metrics, OutputTopic, RunOptions};
use rdkafka::mocking::MockCluster;

use super::produce::{parse_speed, parse_start};

/// Arguments of `engine run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job file (e.g. jobs/ohlc_1m.sql).
    pub job: PathBuf,
    /// Read each source up to the end offsets seen at start, emit all windows, flush, commit and exit.
    #[arg(long)]
    pub bounded: bool,
    /// Embedded default only: market time of the simulated feed runs this many
    /// times faster than wall time (e.g. 30 shows a 1-minute candle every 2 s).
    #[arg(long, default_value = "1", value_parser = parse_speed, allow_negative_numbers = true)]
    pub speed: Speed,
    /// Embedded default only: seed of the simulated feed.
    #[arg(long, default_value_t = feed::DEFAULT_SEED)]
    pub seed: u64,
    /// With --reset: where every source starts: `earliest`, `latest`,
    /// `group-offsets` or an RFC 3339 time (the first record at or after it).
    /// Embedded default: event time of the first simulated trade (RFC 3339,
    /// or `now`, the default).
    #[arg(long)]
    pub start: Option<String>,
    /// Start the job over: discard the state dir's checkpoints and read from
    /// --start instead. The lake keeps what earlier runs published; this run's
    /// files get new names (see README, "Starting over").
    #[arg(long, requires = "start", conflicts_with = "scale_out")]
    pub reset: bool,
    /// Where checkpoints go (s3://..., file://... or a directory)
    /// [default: `_checkpoints/<job>` beside the job's first lake table, else under ./lake].
    #[arg(long, value_name = "URL")]
    pub state_dir: Option<String>,
    /// Time between checkpoints (e.g. 10s, 1min); a final one is taken on a clean stop.
    #[arg(long, default_value = "10s", value_parser = parse_interval)]
    pub checkpoint_interval: Duration,
    /// How long a checkpoint whose state dir or lake fails is retried (with
    /// backoff, each failure logged) before the job stops with the error.
    #[arg(long, default_value = "5min", value_parser = parse_interval)]
    pub checkpoint_retry_for: Duration,
    /// Run without checkpoints (a restart then reads from the group's offsets).
    #[arg(long, conflicts_with_all = ["state_dir"])]
    pub no_checkpoints: bool,
    /// Share the source partitions with every other `engine run --scale-out`
    /// of this job and group (Kafka's group protocol assigns them): each
    /// partition runs as its own lane with its own checkpoints, and moves with
    /// them when a process joins, leaves or dies. With --bounded, every process
    /// exits once the group has read all partitions to their end.
    #[arg(long, conflicts_with = "no_checkpoints")]
    pub scale_out: bool,
    /// Embedded default only: feed the embedded broker from this provider's
    /// live websocket instead of the simulator (coinbase and binance need no
    /// key; see `engine ingest --help` for the others).
    #[arg(long, value_parser = super::ingest::parse_provider, requires = "symbols")]
    pub feed: Option<Provider>,
    /// With --feed: the symbols subscribed to (e.g. BTC-USD,ETH-USD).
    #[arg(long, requires = "feed", value_parser = super::ingest::parse_symbols)]
    pub symbols: Option<super::ingest::Symbols>,
    /// With --feed: the endpoint, if not the provider's own (a proxy, a test server).
    #[arg(long, requires = "feed", value_name = "URL")]
    pub feed_url: Option<String>,
    /// Serve Prometheus metrics (/metrics) and health probes (/healthz,
    /// /readyz) here, e.g. 127.0.0.1:9464 (port 0: any free port). The
    /// embedded default serves them on 127.0.0.1:9464 (or a free port) unless set.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// Serve the live candle page here, e.g. 127.0.0.1:8080: candles of the
    /// derived topic --ui-topic with the job's figures. The embedded default
    /// serves it on 127.0.0.1:8080 (or a free port) unless set.
    #[arg(long, value_name = "HOST:PORT")]
    pub ui: Option<String>,
    /// The derived topic the candle page draws (default: `ohlc_1m` if the
    /// job writes it, else the first of its Kafka outputs whose rows are
    /// candles, else no page).
    #[arg(long, value_name = "TOPIC")]
    pub ui_topic: Option<String>,
}

/// The topic the candle page draws unless --ui-topic says, if the job writes it.
const DEFAULT_UI_TOPIC: &str = "ohlc_1m";

/// The columns of a candle row, as the page reads them.
const CANDLE_COLUMNS: &[&str] = &["symbol", "window_start", "open", "high", "low", "close"];

/// The topic a job's candle page draws, and the client options that reach
/// it: `asked`; else [`DEFAULT_UI_TOPIC`] if the job writes it; else the
/// first of the job's Kafka outputs whose rows are candles; else none. The
/// client is the one of the table writing the topic (a page over a secured
/// cluster signs in as the job does), else `fallback`'s (a topic the job
/// does not write is looked for on the job's cluster).
fn ui_topic(
    outputs: &[OutputTopic],
    fallback: Option<KafkaClientOptions>,
    asked: Option<&str>,
) -> anyhow::Result<Option<(String, KafkaClientOptions)>> {
    let is_candles = |o: &&OutputTopic| {
        CANDLE_COLUMNS
            .iter()
            .all(|c| o.columns.iter().any(|n| n == c))
    };
    let topic = match asked {
        Some(topic) => topic.to_string(),
        None => match (outputs.iter().find(|o| o.topic == DEFAULT_UI_TOPIC))
            .or_else(|| outputs.iter().find(is_candles))
        {
            Some(o) => o.topic.clone(),
            None => return Ok(None),
        },
    };
    let client = (outputs.iter().find(|o| o.topic == topic))
        .or(outputs.first())
        .map(|o| o.client.clone())
        .or(fallback);
    let Some(client) = client else {
        bail!("--ui: the job has no Kafka table, so no cluster to read topic `{topic}` from; serve the page with `engine ui --brokers ... --topic {topic}`")
    };
    Ok(Some((topic, client)))
}

/// Where the embedded default serves its candle page unless --ui says.
const EMBEDDED_UI_ADDR: &str = "127.0.0.1:8080";

/// Where the embedded default serves its metrics unless --metrics-addr says.
const EMBEDDED_METRICS_ADDR: &str = "127.0.0.1:9464";

/// A duration longer than 0 (`--checkpoint-interval`, `--idle-timeout`).
pub(crate) fn parse_interval(s: &str) -> Result<Duration, String> {
    engine_sql::options::parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            format!("`{s}` is not a positive duration of at most 365 days (e.g. 10s, 1min)")
        })
}

/// Partitions of the source topics the embedded broker creates.
const EMBEDDED_PARTITIONS: i32 = 4;

/// `${IDLE_ADVANCE}` in the embedded default, unless set: the jobs' sources
/// advance the watermark after 10 s without any trade.
const EMBEDDED_IDLE_ADVANCE: &str = "10s";

impl RunArgs {
    /// Runs the job; Ctrl-C stops it cleanly (sinks flushed, files closed).
    pub async fn run(self) -> anyhow::Result<()> {
        let stop = super::stop_on_ctrl_c();
        let metrics = Arc::new(Metrics::new());
        let status = tokio::spawn(report_status(Arc::clone(&metrics), stop.clone()));
        let embedded = std::env::var_os("KAFKA_BROKERS").is_none();
        self.serve_metrics(&metrics, embedded, &stop).await?;

        let result = if !embedded {
            if self.feed.is_some() {
                bail!("--feed feeds the embedded default; with a broker (KAFKA_BROKERS), run `engine ingest` beside the job");
            }
            let job = Job::load(&self.job).await?;
            let reset = match (&self.start, self.reset) {
                (Some(start), true) => Some(StartupMode::parse(start).with_context(|| {
                    format!("--start `{start}`: expected earliest, latest, group-offsets or an RFC 3339 time (e.g. 2025-11-20T14:30:00Z)")
                })?),
                (Some(_), false) => bail!(
                    "--start without --reset: a job resumes from its checkpoint (or its group's offsets); \
                     add --reset to discard its checkpoints and start over from --start"
                ),
                (None, _) => None,
            };
            let checkpoint = (!self.no_checkpoints).then(|| CheckpointOptions {
                state_dir: self
                    .state_dir
                    .clone()
                    .unwrap_or_else(|| self.default_state_dir(&job)),
                interval: self.checkpoint_interval,
                retry_for: self.checkpoint_retry_for,
            });
            if let Some(c) = &checkpoint {
                tracing::info!(state_dir = %c.state_dir, interval = ?c.interval, "checkpoints");
            }
            let options = RunOptions {
                bounded: self.bounded,
                checkpoint,
                lane: None,
                reset,
            };
            self.serve_ui(&job, &metrics, false, &stop).await?;
            if self.scale_out {
                job.run_scaled_out(options, stop.clone(), Arc::clone(&metrics))
                    .await
            } else {
                job.run_with_metrics(options, stop.clone(), Arc::clone(&metrics))
                    .await
            }
        } else {
            self.run_embedded(stop.clone(), Arc::clone(&metrics))
                .await?
        };
        stop.cancel();
        status.await.ok();
        result?;
        eprintln!("{}", metrics.summary());
        Ok(())
    }

    /// Starts the metrics endpoint if asked for (or by default in the
    /// embedded default).
    async fn serve_metrics(
        &self,
        metrics: &Arc<Metrics>,
        embedded: bool,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let default = embedded.then_some(EMBEDDED_METRICS_ADDR);
        let option = "--metrics-addr";
        let Some(listener) = listen(self.metrics_addr.as_deref(), default, option).await? else {
            return Ok(());
        };
        let routes = engine::web::routes(Arc::clone(metrics));
        let endpoint = engine::web::serve_on(listener, routes, option, stop.clone())?;
        eprintln!(
            "metrics on http://{0}/metrics (health: http://{0}/healthz, http://{0}/readyz)",
            endpoint.addr
        );
        Ok(())
    }

    /// Starts the candle page if asked for (or by default in the embedded
    /// default).
    async fn serve_ui(
        &self,
        job: &Job,
        metrics: &Arc<Metrics>,
        embedded: bool,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        if self.ui.is_none() && !embedded {
            return Ok(());
        }
        let fallback = (job.kafka_sources().values().next())
            .map(|s| s.client.clone())
            .or_else(|| {
                let brokers = std::env::var("KAFKA_BROKERS").ok()?;
                Some(KafkaClientOptions::plaintext(&brokers))
            });
        let Some((topic, client)) =
            ui_topic(&job.kafka_outputs(), fallback, self.ui_topic.as_deref())?
        else {
            let why = format!(
                "the job writes no topic of candles (columns {}): name one with --ui-topic",
                CANDLE_COLUMNS.join(", ")
            );
            if self.ui.is_some() {
                bail!("--ui: {why}");
            }
            eprintln!("no candle page: {why}");
            return Ok(());
        };
        let default = embedded.then_some(EMBEDDED_UI_ADDR);
        let Some(listener) = listen(self.ui.as_deref(), default, "--ui").await? else {
            return Ok(());
        };
        let options = UiOptions {
            client,
            topic: topic.clone(),
            history: ui::DEFAULT_HISTORY,
        };
        let routes = ui::routes(options, Some(Arc::clone(metrics)), stop.clone());
        let endpoint = engine::web::serve_on(listener, routes, "--ui", stop.clone())?;
        eprintln!("live candles of `{topic}` on http://{}/", endpoint.addr);
        Ok(())
    }

    /// `_checkpoints/<job file stem>` beside the job's first lake table (under
    /// the lake, outside every table), or under `./lake` for a job without one.
    fn default_state_dir(&self, job: &Job) -> String {
        let stem = self
            .job
            .file_stem()
            .map_or("job".into(), |s| s.to_string_lossy().into_owned());
        let lake = job
            .lake_tables()
            .first()
            .and_then(|(c, _)| {
                c.path
                    .trim_end_matches('/')
                    .rsplit_once('/')
                    .map(|(root, _)| root.to_string())
            })
            .unwrap_or_else(|| "./lake".to_string());
        format!("{lake}/_checkpoints/{stem}")
    }

    /// Starts the embedded broker and feed, then runs the job against them.
    async fn run_embedded(
        &self,
        stop: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<engine::Result<engine::RunReport>> {
        if self.bounded {
            bail!("--bounded needs a broker with data (set KAFKA_BROKERS): the embedded feed never ends");
        }
        if self.scale_out {
            bail!("--scale-out needs a shared broker (set KAFKA_BROKERS): the embedded one lives in this process");
        }
        if self.reset {
            bail!("--reset needs a broker with a job's data (set KAFKA_BROKERS): the embedded default keeps no checkpoints");
        }
        let cluster = MockCluster::new(1).context("starting the embedded Kafka-protocol broker")?;
        let brokers = cluster.bootstrap_servers();
        let env = |var: &str| match var {
            "KAFKA_BROKERS" => Some(brokers.clone()),
            // The jobs' `watermark.idle_advance`: when the feed goes quiet (a market
            // closes), the last candles still close, 10 s later.
            "IDLE_ADVANCE" => std::env::var(var)
                .ok()
                .or(Some(EMBEDDED_IDLE_ADVANCE.into())),
            _ => std::env::var(var).ok(),
        };
        let job = Job::load_with_env(&self.job, &env).await?;
        let (read, written) = job.kafka_topics();
        // A live feed of a few symbols would leave most of 4 partitions empty, and
        // an empty partition holds the watermark back for `watermark.idle_timeout`
        // (30 s) before the first candle: one partition then.
        let partitions = if self.feed.is_some() {
            1
        } else {
            EMBEDDED_PARTITIONS
        };
        for topic in &read {
            cluster
                .create_topic(topic, partitions, 1)
                .with_context(|| format!("creating topic `{topic}`"))?;
        }
        for topic in &written {
            cluster
                .create_topic(topic, 1, 1)
                .with_context(|| format!("creating topic `{topic}`"))?;
        }
        let Some(trades) = read.first().cloned() else {
            bail!("the job reads no Kafka topic to feed")
        };

        let feed_task = self.start_feed(&brokers, &trades, stop.clone()).await?;
        self.serve_ui(&job, &metrics, true, &stop).await?;
        eprintln!(
            "embedded Kafka-protocol broker on {brokers} (other processes: KAFKA_BROKERS={brokers}); \
             {} -> `{}`; topics written: {}",
            feed_task.0,
            read[0],
            written.join(", "),
        );
        eprintln!(
            "{}",
            job.explain()
                .lines()
                .filter(|l| l.starts_with("sink "))
                .collect::<Vec<_>>()
                .join("\n")
        );

        let report = job
            .run_with_metrics(RunOptions::default(), stop.clone(), metrics)
            .await;
        stop.cancel();
        match feed_task.1.await {
            Ok(Err(e)) if self.feed.is_some() => {
                return Err(anyhow::Error::new(e).context("the live feed ended the job"))
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %engine::Chain(&e), "the feed stopped with an error")
            }
            Err(e) => tracing::warn!(error = %e, "the feed task failed"),
            Ok(Ok(())) => {}
        }
        drop(cluster); // the broker lives until the job and the feed are done with it
        Ok(report)
    }

    /// Starts what feeds the embedded broker's `trades` topic: the simulator,
    /// or a provider's live feed (--feed). Returns what it is, and its task.
    async fn start_feed(
        &self,
        brokers: &str,
        trades: &str,
        stop: CancellationToken,
    ) -> anyhow::Result<(String, tokio::task::JoinHandle<engine::Result<()>>)> {
        if let Some(provider) = self.feed {
            let symbols = self.symbols.clone().map(|s| s.0).unwrap_or_default();
            let mut config = IngestConfig::new(provider, symbols.clone());
            config.url = self.feed_url.clone();
            let mut live = LiveFeed::new(config, &|var| std::env::var(var).ok())?;
            // The embedded broker has the job's topics, `<trades>.dlq` among them.
            let mut output = KafkaOutput::new(
                &engine::KafkaClientOptions::plaintext(brokers),
                trades,
                provider.name(),
                DEFAULT_MAX_QUEUED,
                stop.clone(),
            )?;
            let what = format!(
                "live trades of {} from {}",
                symbols.join(","),
                live.describe()
            );
            let task = tokio::spawn(async move {
                let result = live
                    .run(&mut output, &IngestStats::default(), &stop, None)
                    .await;
                if result.is_err() {
                    // A refused feed (keys, symbols) ends the job: it would wait for trades forever.
                    stop.cancel();
                }
                result
            });
            return Ok((what, task));
        }
        let start_ms = parse_start(self.start.as_deref().unwrap_or("now"))?;
        let config = FeedConfig {
            symbols: feed::symbol_names(feed::DEFAULT_SYMBOLS),
            rate: feed::DEFAULT_RATE,
            seed: self.seed,
            start_ms,
            disorder_ms: 0,
            late_fraction: 0.0,
            bad_fraction: 0.0,
        };
        let producer = feed::feed_producer(&engine::KafkaClientOptions::plaintext(brokers))?;
        let (trades, speed) = (trades.to_string(), self.speed);
        let task = tokio::spawn(async move {
            let pacer = Pacer::new(start_ms, speed);
            let records = Simulator::new(config);
            feed::publish(&producer, &trades, records, &pacer, &stop)
                .await
                .map(|_| ())
        });
        let what = format!(
            "simulated trades ({} symbols, {} trades/s of market time, speed {speed})",
            feed::DEFAULT_SYMBOLS,
            feed::DEFAULT_RATE,
        );
        Ok((what, task))
    }
}

/// The listener of an endpoint: at `asked` (option `option`) if given,
/// else at the embedded default's `default` (any free port if that one is
/// taken), else none.
async fn listen(
    asked: Option<&str>,
    default: Option<&str>,
    option: &str,
) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    match (asked, default) {
        (Some(addr), _) => Ok(Some(engine::web::bind(addr, option).await?)),
        (None, Some(addr)) => match engine::web::bind(addr, option).await {
            Ok(listener) => Ok(Some(listener)),
            Err(e) => {
                tracing::info!(error = %e, "the default port of {option} is taken; using another");
                Ok(Some(engine::web::bind("127.0.0.1:0", option).await?))
            }
        },
        (None, None) => Ok(None),
    }
}

/// One live status line on a terminal (every second), a log line every 10 s otherwise.
async fn report_status(metrics: Arc<Metrics>, stop: CancellationToken) {
    let terminal = std::io::stderr().is_terminal();
    let every = if terminal {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(10)
    };
    let mut last = metrics.records_in();
    let mut failures_seen = 0;
    let mut printed = tokio::time::Instant::now();
    while !stop.is_cancelled() {
        // Short naps, so a finished job exits at once instead of after the next status line.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if printed.elapsed() < every {
            continue;
        }
        printed = tokio::time::Instant::now();
        let now = metrics.records_in();
        let watermark = match metrics.watermark() {
            None => "-".to_string(),
            Some(w) => chrono::DateTime::from_timestamp_millis(w)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default(),
        };
        let checkpoint = match metrics.last_checkpoint() {
            0 => String::new(),
            n => format!(" | checkpoint {n}"),
        };
        let failures = metrics.checkpoint_failures();
        let checkpoint = if failures > failures_seen {
            failures_seen = failures;
            format!("{checkpoint} | CHECKPOINT FAILING ({failures} failures, retrying)")
        } else {
            checkpoint
        };
        let line = format!(
            "{:.0} events/s | watermark {watermark} | open windows {} | rows emitted {} | bad {} | late {}{checkpoint}",
            (now - last) as f64 / every.as_secs_f64(),
            metrics.open_windows(),
            metrics.rows_emitted(),
            metrics.bad_records(),
            metrics.late_rows(),
        );
        last = now;
        if terminal {
            eprint!("\r{line}\x1b[K");
        } else {
            eprintln!("status: {line}");
        }
    }
    if terminal {
        eprintln!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(topic: &str, brokers: &str, columns: &[&str]) -> OutputTopic {
        OutputTopic {
            topic: topic.into(),
            client: KafkaClientOptions::plaintext(brokers),
            columns: columns.iter().map(|c| c.to_string()).collect(),
        }
    }

    const CANDLE: &[&str] = &[
        "symbol",
        "window_start",
        "window_end",
        "open",
        "high",
        "low",
        "close",
    ];

    #[test]
    fn the_page_draws_the_asked_topic_else_ohlc_1m_else_the_first_of_candles() {
        let late = output(
            "a_late_trades",
            "late:9092",
            &["symbol", "price", "size", "ts"],
        );
        let live = output("ohlc_1m_live", "live:9092", CANDLE);
        let ohlc = output("ohlc_1m", "ohlc:9092", CANDLE);
        let pick = |outputs: &[OutputTopic], asked| {
            let (topic, client) = ui_topic(outputs, None, asked).unwrap().unwrap();
            (topic, client.bootstrap_servers)
        };
        let all = [late.clone(), live.clone(), ohlc.clone()];
        assert_eq!(pick(&all, None), ("ohlc_1m".into(), "ohlc:9092".into()));
        // Rows that are not candles (a late-data table first by name) are passed over.
        let two = [late.clone(), live.clone()];
        assert_eq!(
            pick(&two, None),
            ("ohlc_1m_live".into(), "live:9092".into())
        );
        assert_eq!(
            pick(&two, Some("a_late_trades")),
            ("a_late_trades".into(), "late:9092".into())
        );
        // A topic the job does not write: on the cluster of the job's first output.
        assert_eq!(
            pick(&two, Some("elsewhere")),
            ("elsewhere".into(), "late:9092".into())
        );
        // No candles at all: no page, unless a topic is asked for.
        assert!(ui_topic(&[late], None, None).unwrap().is_none());
        let fallback = Some(KafkaClientOptions::plaintext("source:9092"));
        let (topic, client) = ui_topic(&[], fallback, Some("ohlc_1m")).unwrap().unwrap();
        assert_eq!(
            (topic.as_str(), client.bootstrap_servers.as_str()),
            ("ohlc_1m", "source:9092")
        );
        let err = ui_topic(&[], None, Some("ohlc_1m"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no Kafka table"), "{err}");
    }
}
