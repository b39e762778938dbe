//! Live market data: provider websocket feeds normalized to the trade
//! contract, for `engine ingest` (to Kafka or a file) and the `websocket`
//! source connector.
//!
//! # Layout
//! - `trade`: the normalized trade, its JSON, and the checks of its fields.
//! - `adapter`: what a provider's protocol is to the client: frames to send
//!   on connect, and the [`Event`]s each received frame holds.
//! - `finnhub`, `alpaca`, `coinbase`, `binance`, `polygon`: one adapter each.
//! - `client`: the one websocket client they share: connect, subscribe, answer
//!   pings, take a silent connection for dead, reconnect with backoff and jitter.
//! - `dedupe`: duplicates across a reconnect (bounded memory) and gaps.
//! - `output`: where trades and dead letters go ([`TradeOutput`]: Kafka, a file).
//! - `stats`: the counters the status line and summary show.

mod adapter;
mod alpaca;
mod binance;
mod client;
mod coinbase;
mod dedupe;
mod finnhub;
mod output;
mod polygon;
mod stats;
mod trade;

use std::time::Duration;

pub use adapter::{Adapter, Event};
pub use client::LiveFeed;
pub use dedupe::DEFAULT_CAPACITY as DEFAULT_DEDUPE_CAPACITY;
pub use output::{FileOutput, KafkaOutput, TradeOutput, DEFAULT_MAX_QUEUED};
pub use stats::IngestStats;
pub use trade::Trade;

use crate::error::{EngineError, Result};

/// A market-data provider with a websocket feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Finnhub (stocks, forex, crypto): `FINNHUB_TOKEN`.
    Finnhub,
    /// Alpaca market data v2 (US stocks): `APCA_API_KEY_ID`, `APCA_API_SECRET_KEY`.
    Alpaca,
    /// Coinbase Exchange (crypto), no key.
    Coinbase,
    /// Binance spot (crypto), no key.
    Binance,
    /// Polygon (US stocks): `POLYGON_API_KEY`.
    Polygon,
}

impl Provider {
    /// Every provider, in the order help texts list them.
    pub const ALL: [Provider; 5] = [
        Provider::Finnhub,
        Provider::Alpaca,
        Provider::Coinbase,
        Provider::Binance,
        Provider::Polygon,
    ];

    /// Its name in commands, options and records.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Finnhub => finnhub::NAME,
            Provider::Alpaca => alpaca::NAME,
            Provider::Coinbase => coinbase::NAME,
            Provider::Binance => binance::NAME,
            Provider::Polygon => polygon::NAME,
        }
    }

    /// The provider named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Its public endpoint.
    pub fn default_url(self) -> &'static str {
        match self {
            Provider::Finnhub => finnhub::URL,
            Provider::Alpaca => alpaca::URL,
            Provider::Coinbase => coinbase::URL,
            Provider::Binance => binance::URL,
            Provider::Polygon => polygon::URL,
        }
    }

    /// The environment variables its keys are read from.
    pub fn key_variables(self) -> &'static [&'static str] {
        match self {
            Provider::Finnhub => &["FINNHUB_TOKEN"],
            Provider::Alpaca => &["APCA_API_KEY_ID", "APCA_API_SECRET_KEY"],
            Provider::Polygon => &["POLYGON_API_KEY"],
            Provider::Coinbase | Provider::Binance => &[],
        }
    }
}

/// The symbols of a comma-separated list (`AAPL, MSFT`), trimmed; else
/// why not (for `--symbols` and the `symbols` option alike).
pub fn symbol_list(text: &str) -> std::result::Result<Vec<String>, String> {
    let symbols: Vec<String> = text.split(',').map(|s| s.trim().to_string()).collect();
    if symbols.iter().all(String::is_empty) {
        return Err("lists no symbol".into());
    }
    if symbols.iter().any(String::is_empty) {
        return Err("has an empty entry (two commas, or one at an end)".into());
    }
    Ok(symbols)
}

/// What a feed connects to and how it behaves.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Whose protocol.
    pub provider: Provider,
    /// The symbols subscribed to, as the provider names them.
    pub symbols: Vec<String>,
    /// The endpoint, if not the provider's own (a proxy, a test server).
    pub url: Option<String>,
    /// A connection without any frame (nor an answer to our pings) for this long is dead.
    pub idle_timeout: Duration,
    /// The first wait before a reconnect; each failed attempt doubles it.
    pub backoff_initial: Duration,
    /// The longest wait before a reconnect.
    pub backoff_max: Duration,
    /// Trade ids remembered for dropping duplicates.
    pub dedupe_capacity: usize,
    /// Text frames longer than this go to the dead letters unread.
    pub max_frame_bytes: usize,
}

impl IngestConfig {
    /// A feed of `symbols` from `provider` with the defaults.
    pub fn new(provider: Provider, symbols: Vec<String>) -> Self {
        Self {
            provider,
            symbols,
            url: None,
            idle_timeout: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            dedupe_capacity: DEFAULT_DEDUPE_CAPACITY,
            max_frame_bytes: 1 << 20,
        }
    }
}

/// The keys of a feed, as read from the environment: what is stripped from
/// every frame kept and every message shown. Its `Debug` shows none.
#[derive(Clone, Default)]
pub struct Secrets(Vec<String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} kept out of sight)", self.0.len())
    }
}

impl Secrets {
    /// `text` with every key replaced by `***`.
    pub fn strip<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let mut text = std::borrow::Cow::Borrowed(text);
        for secret in self.0.iter().filter(|s| !s.is_empty()) {
            if text.contains(secret.as_str()) {
                text = std::borrow::Cow::Owned(text.replace(secret.as_str(), "***"));
            }
        }
        text
    }
}

/// The adapter of `config.provider` with the keys it needs from `env`, or an
/// error naming the variable that is not set.
pub(crate) fn adapter(
    config: &IngestConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Box<dyn Adapter>, Secrets, String)> {
    let keys: Vec<String> = (config.provider.key_variables().iter())
        .map(|var| match env(var).filter(|v| !v.trim().is_empty()) {
            Some(v) => Ok(v.trim().to_string()),
            None => Err(EngineError::Provider(format!(
                "{} needs its key in the environment variable {var} (read from nowhere else)",
                config.provider.name()
            ))),
        })
        .collect::<Result<_>>()?;
    let symbols = config.symbols.clone();
    let base = config
        .url
        .as_deref()
        .unwrap_or(config.provider.default_url());
    let mut url =
        url::Url::parse(base).map_err(|e| EngineError::Provider(format!("--url `{base}`: {e}")))?;
    if !matches!(url.scheme(), "ws" | "wss") {
        return Err(EngineError::Provider(format!(
            "--url `{base}`: a websocket URL starts with ws:// or wss://"
        )));
    }
    let adapter: Box<dyn Adapter> = match config.provider {
        Provider::Finnhub => {
            url.query_pairs_mut().append_pair("token", &keys[0]);
            Box::new(finnhub::Finnhub::new(symbols))
        }
        Provider::Alpaca => Box::new(alpaca::Alpaca::new(
            symbols,
            keys[0].clone(),
            keys[1].clone(),
        )),
        Provider::Coinbase => Box::new(coinbase::Coinbase::new(symbols)),
        Provider::Binance => Box::new(binance::Binance::new(symbols)),
        Provider::Polygon => Box::new(polygon::Polygon::new(symbols, keys[0].clone())),
    };
    // The URL-encoded form of a key is a secret too (it appears in the URL).
    let mut secrets = keys.clone();
    secrets.extend(
        keys.iter()
            .map(|k| url::form_urlencoded::byte_serialize(k.as_bytes()).collect::<String>()),
    );
    Ok((adapter, Secrets(secrets), url.to_string()))
}
