//! The websocket client every adapter shares: connect, send the adapter's
//! frames, answer pings (tungstenite queues the pong as it reads), ping a
//! quiet connection ourselves and take it for dead when nothing at all comes
//! back, and reconnect with exponential backoff and jitter. Trades pass the
//! duplicate and gap checks on their way to the [`TradeOutput`], which may
//! make the client wait: while it waits, the socket is not read.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use rand::Rng;
use tokio_tungstenite::tungstenite::{self, protocol::WebSocketConfig, Message};
use tokio_util::sync::CancellationToken;

use super::adapter::{Adapter, Event};
use super::dedupe::{Dedupe, Gaps};
use super::output::TradeOutput;
use super::stats::IngestStats;
use super::trade::Trade;
use super::{IngestConfig, Secrets};
use crate::error::{EngineError, Result};
use crate::source::kafka::MAX_DEAD_LETTER_PAYLOAD;

/// How long a connection (TCP, TLS and the websocket handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The largest message tungstenite reads; a larger one breaks the
/// connection (a counted dead letter and a reconnect).
const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// A connection to a provider.
type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How a connection ended.
enum SessionEnd {
    /// Stopped (by the caller, or the trade limit was reached).
    Stopped,
    /// Lost: reconnect after the backoff. `delivered`: it gave trades, so the backoff starts over.
    Lost { reason: String, delivered: bool },
}

/// A provider's feed: its adapter, and what it remembers across reconnects.
pub struct LiveFeed {
    config: IngestConfig,
    adapter: Box<dyn Adapter>,
    secrets: Secrets,
    url: String,
    dedupe: Dedupe,
    gaps: Gaps,
    events: Vec<Event>,
}

impl LiveFeed {
    /// The feed `config` asks for, with its keys from `env`; an error names
    /// a key variable that is not set, or a URL that is not a websocket's.
    pub fn new(config: IngestConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let (adapter, secrets, url) = super::adapter(&config, env)?;
        Ok(Self {
            dedupe: Dedupe::new(config.dedupe_capacity),
            config,
            adapter,
            secrets,
            url,
            gaps: Gaps::default(),
            events: Vec::new(),
        })
    }

    /// What it connects to, for messages: the URL without its keys.
    pub fn describe(&self) -> String {
        format!(
            "{} at {}",
            self.config.provider.name(),
            self.secrets.strip(&self.url)
        )
    }

    /// Reads the feed into `output` until `stop` is cancelled, `limit` trades
    /// were delivered, or the provider refuses what retrying cannot mend
    /// (an error). Lost connections are reconnected, forever.
    pub async fn run(
        &mut self,
        output: &mut dyn TradeOutput,
        stats: &IngestStats,
        stop: &CancellationToken,
        limit: Option<u64>,
    ) -> Result<()> {
        let read = self.reconnecting(output, stats, stop, limit).await;
        // What was queued before a refusal is delivered all the same.
        let finished = output.finish().await;
        read.and(finished)
    }

    async fn reconnecting(
        &mut self,
        output: &mut dyn TradeOutput,
        stats: &IngestStats,
        stop: &CancellationToken,
        limit: Option<u64>,
    ) -> Result<()> {
        let mut backoff = self.config.backoff_initial;
        for attempt in 0u64.. {
            if stop.is_cancelled() || limit.is_some_and(|n| IngestStats::get(&stats.trades) >= n) {
                break;
            }
            if attempt > 0 {
                IngestStats::add(&stats.reconnects, 1);
            }
            match self.session(output, stats, stop, limit).await? {
                SessionEnd::Stopped => break,
                SessionEnd::Lost { reason, delivered } => {
                    if delivered {
                        backoff = self.config.backoff_initial;
                    }
                    // Equal jitter: half the backoff, plus up to as much again at random,
                    // so clients that lost one server do not all come back at once.
                    let wait = backoff / 2 + backoff.mul_f64(rand::rng().random::<f64>() / 2.0);
                    tracing::warn!(
                        feed = %self.describe(),
                        reason = %self.secrets.strip(&reason),
                        retry_in_ms = wait.as_millis() as u64,
                        "connection lost; reconnecting"
                    );
                    backoff = (backoff * 2).min(self.config.backoff_max);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.cancelled() => break,
                    }
                }
            }
        }
        Ok(())
    }

    /// One connection, from connect to its end.
    async fn session(
        &mut self,
        output: &mut dyn TradeOutput,
        stats: &IngestStats,
        stop: &CancellationToken,
        limit: Option<u64>,
    ) -> Result<SessionEnd> {
        let mut ws = match self.connect(stop).await? {
            Ok(ws) => ws,
            Err(end) => return Ok(end),
        };
        let idle = self.config.idle_timeout;
        let mut ping = tokio::time::interval((idle / 3).max(Duration::from_millis(10)));
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_frame = Instant::now();
        let mut delivered = false;
        loop {
            let message = tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    let _ = ws.close(None).await;
                    return Ok(SessionEnd::Stopped);
                }
                _ = ping.tick() => {
                    if last_frame.elapsed() >= idle {
                        return Ok(SessionEnd::Lost { reason: format!("no frame for {idle:?}"), delivered });
                    }
                    if last_frame.elapsed() >= idle / 3 {
                        // Quiet: a ping asks the server to show it is alive (its pong is a frame).
                        if let Err(e) = ws.send(Message::Ping(Default::default())).await {
                            return Ok(SessionEnd::Lost { reason: format!("pinging: {e}"), delivered });
                        }
                    }
                    continue;
                }
                message = ws.next() => message,
            };
            let message = match message {
                None => {
                    return Ok(SessionEnd::Lost {
                        reason: "closed".into(),
                        delivered,
                    })
                }
                Some(Err(tungstenite::Error::Capacity(e))) => {
                    let reason =
                        format!("a frame the client cannot read ({e}); the connection was dropped");
                    self.dead_letter(output, stats, b"", &reason).await?;
                    return Ok(SessionEnd::Lost {
                        reason: e.to_string(),
                        delivered,
                    });
                }
                Some(Err(e)) => {
                    return Ok(SessionEnd::Lost {
                        reason: e.to_string(),
                        delivered,
                    })
                }
                Some(Ok(m)) => m,
            };
            IngestStats::add(&stats.frames, 1);
            let end = self
                .on_message(message, &mut ws, output, stats, limit, &mut delivered)
                .await?;
            // Time spent waiting for the output (a slow Kafka) is not the provider's silence.
            last_frame = Instant::now();
            if let Some(end) = end {
                if matches!(end, SessionEnd::Stopped) {
                    let _ = ws.close(None).await;
                }
                return Ok(end);
            }
        }
    }

    /// Connects and sends the adapter's first frames: the socket, or how the
    /// attempt ended (an error if the provider refused the key).
    async fn connect(
        &mut self,
        stop: &CancellationToken,
    ) -> Result<std::result::Result<Socket, SessionEnd>> {
        let lost = |reason: String| {
            Ok(Err(SessionEnd::Lost {
                reason,
                delivered: false,
            }))
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        let connect =
            tokio_tungstenite::connect_async_with_config(self.url.as_str(), Some(config), true);
        let mut ws = tokio::select! {
            _ = stop.cancelled() => return Ok(Err(SessionEnd::Stopped)),
            connected = tokio::time::timeout(CONNECT_TIMEOUT, connect) => match connected {
                Err(_) => return lost(format!("no connection within {CONNECT_TIMEOUT:?}")),
                Ok(Err(tungstenite::Error::Http(response)))
                    if matches!(response.status().as_u16(), 401 | 403) =>
                {
                    return Err(EngineError::Provider(format!(
                        "{} refused the connection (HTTP {}): check its key",
                        self.describe(),
                        response.status()
                    )))
                }
                Ok(Err(e)) => return lost(format!("connecting: {e}")),
                Ok(Ok((ws, _))) => ws,
            },
        };
        tracing::info!(feed = %self.describe(), symbols = self.config.symbols.len(), "connected");
        for frame in self.adapter.on_connect() {
            if let Err(e) = ws.send(Message::text(frame)).await {
                return lost(format!("subscribing: {e}"));
            }
        }
        Ok(Ok(ws))
    }

    /// One message received; `Some` ends the session.
    async fn on_message(
        &mut self,
        message: Message,
        ws: &mut Socket,
        output: &mut dyn TradeOutput,
        stats: &IngestStats,
        limit: Option<u64>,
        delivered: &mut bool,
    ) -> Result<Option<SessionEnd>> {
        match message {
            Message::Text(text) if text.len() > self.config.max_frame_bytes => {
                let reason = format!(
                    "a frame of {} bytes, more than the {} a frame may have",
                    text.len(),
                    self.config.max_frame_bytes
                );
                self.dead_letter(output, stats, text.as_bytes(), &reason)
                    .await?;
                Ok(None)
            }
            Message::Text(text) => {
                // Keys out first: what a frame quotes (in an error, a dead letter)
                // is cut to a length where a longer key would no longer match.
                let text = self.secrets.strip(text.as_str()).into_owned();
                let mut events = std::mem::take(&mut self.events);
                self.adapter.on_text(&text, &mut events);
                let end = self
                    .handle(&text, &mut events, ws, output, stats, limit, delivered)
                    .await;
                // Drained by `handle`: kept for its capacity.
                self.events = events;
                end
            }
            Message::Binary(bytes) => {
                let reason = "a binary frame (the provider's frames are text)";
                self.dead_letter(output, stats, &bytes, reason).await?;
                Ok(None)
            }
            Message::Close(frame) => {
                let reason = frame.map_or("closed by the provider".to_string(), |f| {
                    format!("closed by the provider: {} {}", f.code, f.reason)
                });
                Ok(Some(SessionEnd::Lost {
                    reason,
                    delivered: *delivered,
                }))
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(None),
        }
    }

    /// Acts on the events of one frame; `Some` ends the session.
    #[allow(clippy::too_many_arguments)]
    async fn handle(
        &mut self,
        frame: &str,
        events: &mut Vec<Event>,
        ws: &mut Socket,
        output: &mut dyn TradeOutput,
        stats: &IngestStats,
        limit: Option<u64>,
        delivered: &mut bool,
    ) -> Result<Option<SessionEnd>> {
        // A session that ends (a retry, a failed send) still delivers the
        // trades the frame holds after the message that ended it.
        let mut end = None;
        for event in events.drain(..) {
            match event {
                Event::Trade(trade) => {
                    if self.deliver(trade, output, stats).await? {
                        *delivered = true;
                        if limit.is_some_and(|n| IngestStats::get(&stats.trades) >= n) {
                            return Ok(Some(SessionEnd::Stopped));
                        }
                    }
                }
                Event::Bad { reason, raw } => {
                    let raw = raw.as_deref().unwrap_or(frame);
                    self.dead_letter(output, stats, raw.as_bytes(), &reason)
                        .await?;
                }
                Event::Fatal(reason) => {
                    return Err(EngineError::Provider(
                        self.secrets.strip(&reason).into_owned(),
                    ))
                }
                _ if end.is_some() => {}
                Event::Send(reply) => {
                    if let Err(e) = ws.send(Message::text(reply)).await {
                        end = Some(format!("sending to the provider: {e}"));
                    }
                }
                Event::Acknowledged(what) => {
                    tracing::info!(feed = %self.describe(), "{}", self.secrets.strip(&what))
                }
                Event::KeepAlive => {}
                Event::LastSequence { symbol, sequence } => {
                    let missed = self.gaps.last_was(&symbol, sequence);
                    self.count_gap(&symbol, sequence, missed, stats);
                }
                Event::Skipped(_) => IngestStats::add(&stats.skipped, 1),
                Event::Retry(reason) => end = Some(reason),
            }
        }
        Ok(end.map(|reason| SessionEnd::Lost {
            reason,
            delivered: *delivered,
        }))
    }

    /// Sends `trade` on unless it is a duplicate; whether it was sent.
    async fn deliver(
        &mut self,
        trade: Trade,
        output: &mut dyn TradeOutput,
        stats: &IngestStats,
    ) -> Result<bool> {
        if let Some(sequence) = trade.sequence {
            let missed = self.gaps.observe(&trade.symbol, sequence);
            self.count_gap(&trade.symbol, sequence, missed, stats);
        }
        if let Some(id) = &trade.id {
            let venue = trade.venue.as_deref().unwrap_or("");
            if !self.dedupe.first_time(&trade.symbol, venue, id) {
                IngestStats::add(&stats.duplicates, 1);
                return Ok(false);
            }
        }
        output.trade(&trade).await?;
        IngestStats::add(&stats.trades, 1);
        stats.set_last_price(&trade.symbol, &trade.price);
        Ok(true)
    }

    fn count_gap(&self, symbol: &str, sequence: i64, missed: u64, stats: &IngestStats) {
        if missed > 0 {
            IngestStats::add(&stats.gaps, 1);
            IngestStats::add(&stats.missed, missed);
            tracing::warn!(feed = %self.describe(), symbol, missed, up_to = sequence, "gap in the provider's trade ids: trades missed");
        }
    }

    /// Sends `raw` (keys stripped) to the dead letters with `reason`, and counts it.
    async fn dead_letter(
        &mut self,
        output: &mut dyn TradeOutput,
        stats: &IngestStats,
        raw: &[u8],
        reason: &str,
    ) -> Result<()> {
        // Keys out of the whole frame first (a cut could split one), then a
        // prefix kept, as the dead-letter topic would: a source's queue of dead
        // letters must not hold 16 MiB frames.
        let text = String::from_utf8_lossy(raw);
        let text = self.secrets.strip(&text);
        let mut kept = text.len().min(MAX_DEAD_LETTER_PAYLOAD);
        while !text.is_char_boundary(kept) {
            kept -= 1;
        }
        let mut reason = self.secrets.strip(reason).into_owned();
        if kept < text.len() {
            reason.push_str(&format!(
                " (the first {kept} of its {} bytes kept)",
                raw.len()
            ));
        }
        IngestStats::add(&stats.dead_letters, 1);
        output.dead_letter(text[..kept].as_bytes(), &reason).await
    }
}
