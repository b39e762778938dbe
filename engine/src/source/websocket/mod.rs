//! `connector = 'websocket'`: a provider's live trades read straight into a
//! job, through the same adapters and client as `engine ingest`.
//!
//! ```sql
//! CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL,
//!     ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
//! WITH (connector = 'websocket', provider = 'coinbase', symbols = 'BTC-USD,ETH-USD', format = 'json');
//! ```
//!
//! A websocket cannot be replayed: what the provider sent while the job was
//! down is not read again, and a restore resumes live. Exactly-once starts at
//! Kafka: for a pipeline that restarts without losing trades, ingest with
//! `engine ingest` into a topic and run the job on that. Records get one
//! split (0) and positions counting from 0 at each start. Bad frames go to
//! `dlq.topic` on `bootstrap_servers` when set, else to the log; both count
//! as bad records.

use std::any::Any;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine_sql::TableDef;

use super::{
    DeadLetterSink, OpenedSource, Origin, ReadOptions, RecordBuffer, SourceContext, SourceReader,
    SourceSpec,
};
use crate::checkpoint::{CommitPoint, Committer, Snapshot};
use crate::decode::BadKind;
use crate::error::{EngineError, Result};
use crate::ingest::{IngestConfig, IngestStats, LiveFeed, Provider, Trade, TradeOutput};
use crate::kafka::KafkaClientOptions;
use crate::CancellationToken;

/// Trades queued between the feed's thread and the runner: when full, the
/// feed stops reading its socket.
const QUEUE: usize = 10_000;

/// A websocket source table's options.
#[derive(Debug, Clone)]
pub struct WebsocketSourceConfig {
    /// `provider`, `symbols`, `url`, `idle_timeout`, `dedupe.capacity`.
    pub feed: IngestConfig,
    /// `bootstrap_servers` and `dlq.topic`: where bad frames go, if set.
    pub dead_letters: Option<(KafkaClientOptions, String)>,
    /// Batching, decoding and row rules.
    pub read: ReadOptions,
}

/// `connector = 'websocket'`: checks a source table's options.
pub fn spec(file: &str, table: &TableDef) -> Result<Box<dyn SourceSpec>> {
    let at = |e| crate::connector::option_error(file, table, e);
    let mut o = table.options.clone();
    let read = ReadOptions::from_options(&mut o).map_err(at)?;
    let names: Vec<&str> = Provider::ALL.iter().map(|p| p.name()).collect();
    let provider = o.required("provider", table.line).map_err(at)?;
    o.one_of("provider", &names).map_err(at)?;
    let provider = Provider::parse(&provider).expect("checked by one_of");
    let symbols_line = o.line_of("symbols", table.line);
    let symbols = crate::ingest::symbol_list(&o.required("symbols", table.line).map_err(at)?)
        .map_err(|e| at((symbols_line, format!("option `symbols` {e}"))))?;
    let mut feed = IngestConfig::new(provider, symbols);
    feed.url = o.get("url");
    feed.idle_timeout = o.duration("idle_timeout", feed.idle_timeout).map_err(at)?;
    if feed.idle_timeout.is_zero() {
        let line = o.line_of("idle_timeout", table.line);
        return Err(at((
            line,
            "option `idle_timeout` must be longer than 0".into(),
        )));
    }
    feed.dedupe_capacity = o
        .count("dedupe.capacity", feed.dedupe_capacity)
        .map_err(at)?;
    let dead_letters = match o.get("dlq.topic") {
        Some(topic) => Some((
            KafkaClientOptions::from_options(&mut o, table.line).map_err(at)?,
            topic,
        )),
        None => None,
    };
    o.reject_unknown("websocket").map_err(at)?;
    Ok(Box::new(WebsocketSourceConfig {
        feed,
        dead_letters,
        read,
    }))
}

#[async_trait::async_trait]
impl SourceSpec for WebsocketSourceConfig {
    fn describe(&self) -> String {
        format!(
            "{} websocket feed of {} symbols{}",
            self.feed.provider.name(),
            self.feed.symbols.len(),
            self.feed
                .url
                .as_ref()
                .map_or(String::new(), |_| " at its `url`".into())
        )
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn read_options(&self) -> &ReadOptions {
        &self.read
    }

    async fn open(&self, ctx: SourceContext<'_>) -> Result<OpenedSource> {
        if ctx.bounded {
            return Err(EngineError::Execution(format!(
                "source table `{}` reads a websocket, which never ends: run it without --bounded \
                 (or ingest into Kafka with `engine ingest` and run the job bounded on the topic)",
                ctx.table.name
            )));
        }
        // The keys are checked now, so a missing one stops the job before it starts.
        let feed = LiveFeed::new(self.feed.clone(), &|var| std::env::var(var).ok())?;
        let dead_letters: Arc<dyn DeadLetterSink> = match &self.dead_letters {
            Some((client, topic)) => {
                Arc::new(crate::source::kafka::DeadLetters::new(client, topic)?)
            }
            None => Arc::new(LoggedDeadLetters(feed.describe())),
        };
        let reader = WebsocketReader {
            name: self.feed.provider.name().to_string(),
            feed: Some(feed),
            queue: None,
            stop: CancellationToken::new(),
            dead_letters: Arc::clone(&dead_letters),
            unreadable: (ctx.metrics)
                .bad_records_counter(self.feed.provider.name(), BadKind::Unreadable),
            next: 0,
        };
        Ok(OpenedSource {
            reader: Box::new(reader),
            dead_letters,
            committer: Arc::new(NothingToCommit),
        })
    }
}

/// What the feed's thread hands the reader.
enum Item {
    Trade {
        key: String,
        payload: Vec<u8>,
        ts: i64,
    },
    DeadLetter {
        raw: Vec<u8>,
        reason: String,
    },
    /// The feed ended with this error (a refused key, say).
    Failed(EngineError),
}

/// The feed's output: the bounded queue to the reader.
struct Queue(SyncSender<Item>);

impl Queue {
    fn put(&self, item: Item) -> Result<()> {
        // Blocking is the backpressure: this thread only runs the feed.
        (self.0.send(item))
            .map_err(|_| EngineError::Execution("the websocket source stopped".into()))
    }
}

#[async_trait::async_trait]
impl TradeOutput for Queue {
    async fn trade(&mut self, trade: &Trade) -> Result<()> {
        self.put(Item::Trade {
            key: trade.symbol.clone(),
            payload: trade.to_json(),
            ts: trade.ts,
        })
    }

    async fn dead_letter(&mut self, raw: &[u8], reason: &str) -> Result<()> {
        self.put(Item::DeadLetter {
            raw: raw.to_vec(),
            reason: reason.to_string(),
        })
    }

    async fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

struct WebsocketReader {
    name: String,
    /// Until opened: the feed its thread then runs.
    feed: Option<LiveFeed>,
    /// The queue from the feed's thread (in a mutex only because a reader must be `Sync`).
    queue: Option<Mutex<Receiver<Item>>>,
    stop: CancellationToken,
    dead_letters: Arc<dyn DeadLetterSink>,
    /// Provider messages that held no trade it could read, dead-lettered.
    unreadable: prometheus::IntCounter,
    /// The position of the next record (from 0 at each start).
    next: i64,
}

impl Drop for WebsocketReader {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl WebsocketReader {
    fn take(&mut self, item: Item, out: &mut RecordBuffer) -> Result<()> {
        match item {
            Item::Trade { key, payload, ts } => {
                out.push(0, self.next, Some(&payload), Some(key.as_bytes()), Some(ts));
                self.next += 1;
            }
            Item::DeadLetter { raw, reason } => {
                self.unreadable.inc();
                let origin = Origin {
                    topic: &self.name,
                    position: None,
                    statement: None,
                };
                self.dead_letters.send(&raw, None, &reason, origin)?;
            }
            Item::Failed(e) => return Err(e),
        }
        Ok(())
    }
}

impl SourceReader for WebsocketReader {
    fn open(&mut self, restored: Option<&serde_json::Value>) -> Result<Vec<(i32, bool)>> {
        let Some(mut feed) = self.feed.take() else {
            return Err(EngineError::Internal(
                "a websocket reader opened twice".into(),
            ));
        };
        if restored.is_some() {
            tracing::warn!(feed = %feed.describe(), "restored from a checkpoint: a websocket cannot replay, so reading resumes live (trades sent while the job was down are not read)");
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let stop = self.stop.clone();
        std::thread::Builder::new()
            .name(format!("ws-{}", self.name))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let mut queue = Queue(tx);
                let result = match runtime {
                    Ok(rt) => {
                        rt.block_on(feed.run(&mut queue, &IngestStats::default(), &stop, None))
                    }
                    Err(e) => Err(EngineError::Execution(format!(
                        "starting the feed's runtime: {e}"
                    ))),
                };
                if let Err(e) = result {
                    let _ = queue.put(Item::Failed(e));
                }
            })
            .map_err(|e| EngineError::Execution(format!("starting the websocket feed: {e}")))?;
        self.queue = Some(Mutex::new(rx));
        Ok(vec![(0, false)])
    }

    fn poll(&mut self, timeout: Duration, max: usize, out: &mut RecordBuffer) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for taken in 0..max.max(1) {
            let queue = (self.queue.as_ref()).ok_or_else(|| {
                EngineError::Internal("a websocket reader polled before open".into())
            })?;
            let queue = queue.lock().expect("no panics while locked");
            let item = if taken == 0 {
                match queue.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(item) => item,
                    Err(RecvTimeoutError::Timeout) => return Ok(()),
                    Err(RecvTimeoutError::Disconnected) => return Err(self.ended()),
                }
            } else {
                match queue.try_recv() {
                    Ok(item) => item,
                    Err(TryRecvError::Empty) => return Ok(()),
                    Err(TryRecvError::Disconnected) => return Err(self.ended()),
                }
            };
            drop(queue);
            self.take(item, out)?;
        }
        Ok(())
    }

    fn positions(&self) -> serde_json::Value {
        serde_json::json!({ "received": self.next })
    }

    fn name(&self) -> &str {
        &self.name
    }
}

impl WebsocketReader {
    fn ended(&self) -> EngineError {
        EngineError::Execution(format!("the {} websocket feed ended", self.name))
    }
}

/// A websocket's positions cannot be committed anywhere: nothing replays them.
struct NothingToCommit;

#[async_trait::async_trait]
impl Committer for NothingToCommit {
    async fn commit(&self, _point: &CommitPoint, _snapshot: &Snapshot) -> Result<()> {
        Ok(())
    }
}

/// Bad frames to the log (a websocket table without `dlq.topic`).
struct LoggedDeadLetters(String);

impl DeadLetterSink for LoggedDeadLetters {
    fn send(
        &self,
        payload: &[u8],
        _key: Option<&[u8]>,
        error: &str,
        _origin: Origin<'_>,
    ) -> Result<()> {
        let frame = crate::decode::excerpt(&String::from_utf8_lossy(payload), 200);
        tracing::warn!(feed = %self.0, error, frame, "bad record (set `dlq.topic` to keep it)");
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        format!("the log (no `dlq.topic` for {})", self.0)
    }
}
