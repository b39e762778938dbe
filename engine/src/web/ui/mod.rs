//! The live candle page (`engine run --ui`, `engine ui`): one page that
//! draws a symbol's candles from a derived topic (volume bars, the VWAP
//! line, a symbol picker, the job's key figures), kept live over
//! Server-Sent Events. Everything it needs is served from here: the page
//! and its script are compiled in, nothing is fetched from the internet.
//!
//! - `candles`: the book of the newest candles per symbol;
//! - this module: the routes, and the consumer that follows the topic
//!   (its recent history first: the newest records of each partition).

mod candles;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use candles::{Candle, CandleBook};

use crate::error::{EngineError, Result};
use crate::kafka::{
    unassigned_consumer_partitions_of, ConsumerLogs, KafkaClientOptions, METADATA_TIMEOUT,
};
use crate::metrics::Metrics;

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("chart.js");

/// Candles kept per symbol, and read back from each partition at start.
pub const DEFAULT_HISTORY: usize = 240;

/// What the page shows.
#[derive(Debug, Clone)]
pub struct UiOptions {
    /// The cluster of the derived topic: brokers and how to sign in.
    pub client: KafkaClientOptions,
    /// The derived topic (e.g. `ohlc_1m`).
    pub topic: String,
    /// Candles kept per symbol (and read back per partition at start).
    pub history: usize,
}

/// What the routes share.
struct UiState {
    topic: String,
    book: Mutex<CandleBook>,
    updates: broadcast::Sender<Candle>,
    /// The job's metrics, when the page runs in its process.
    metrics: Option<Arc<Metrics>>,
}

/// The page's routes over a book fed by following `options.topic`, with
/// the figures of `metrics` if the job runs in this process. The follower
/// stops with `stop`.
pub fn routes(
    options: UiOptions,
    metrics: Option<Arc<Metrics>>,
    stop: CancellationToken,
) -> Router {
    let (updates, _) = broadcast::channel(1024);
    let state = Arc::new(UiState {
        topic: options.topic.clone(),
        book: Mutex::new(CandleBook::new(options.history)),
        updates,
        metrics,
    });
    let follower = Arc::clone(&state);
    // A thread of its own, not the runtime's blocking pool: a runtime that
    // ends (an error before `stop`, a failed test) must not wait for it.
    let spawned = std::thread::Builder::new()
        .name("candle-page".into())
        .spawn(move || {
            if let Err(e) = follow(&options, &follower, &stop) {
                tracing::error!(topic = %options.topic, error = %crate::Chain(&e), "the candle page stopped following its topic");
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "the candle page cannot follow its topic");
    }
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/chart.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    SCRIPT,
                )
            }),
        )
        .route("/api/symbols", get(symbols))
        .route("/api/candles", get(candles))
        .route("/events", get(events))
        .with_state(state)
}

#[derive(Serialize)]
struct Symbols {
    topic: String,
    symbols: Vec<String>,
}

async fn symbols(State(state): State<Arc<UiState>>) -> impl IntoResponse {
    let symbols = state.book.lock().expect("no panics while locked").symbols();
    Json(Symbols {
        topic: state.topic.clone(),
        symbols,
    })
}

async fn candles(
    State(state): State<Arc<UiState>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> impl IntoResponse {
    let symbol = q.get("symbol").map(String::as_str).unwrap_or_default();
    Json(
        state
            .book
            .lock()
            .expect("no panics while locked")
            .candles(symbol),
    )
}

/// The job's key figures, for the page's header.
#[derive(Debug, Default, Serialize)]
struct Figures {
    records_in: u64,
    watermark_ms: Option<i64>,
    lag_records: i64,
    late_rows: u64,
    bad_records: u64,
    last_checkpoint: u64,
}

impl Figures {
    fn of(metrics: &Metrics) -> Self {
        Self {
            records_in: metrics.records_in(),
            watermark_ms: metrics.watermark(),
            lag_records: metrics.consumer_lag(),
            late_rows: metrics.late_rows(),
            bad_records: metrics.bad_records(),
            last_checkpoint: metrics.last_checkpoint(),
        }
    }
}

/// `candle` events as candles change, `figures` once a second (with the job in this process).
async fn events(
    State(state): State<Arc<UiState>>,
) -> Sse<impl Stream<Item = std::result::Result<Event, Infallible>>> {
    let updates = state.updates.subscribe();
    let ticks = tokio::time::interval(Duration::from_secs(1));
    let stream = futures::stream::unfold(
        (updates, ticks, state),
        |(mut updates, mut ticks, state)| async move {
            loop {
                tokio::select! {
                    update = updates.recv() => match update {
                        Ok(candle) => {
                            let event = Event::default().event("candle").json_data(&candle).ok()?;
                            return Some((Ok(event), (updates, ticks, state)));
                        }
                        // A slow page missed some: it reloads the symbol's candles.
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            let event = Event::default().event("reload").data("lagged");
                            return Some((Ok(event), (updates, ticks, state)));
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                    _ = ticks.tick() => {
                        let Some(metrics) = &state.metrics else { continue };
                        let event = Event::default().event("figures").json_data(Figures::of(metrics)).ok()?;
                        return Some((Ok(event), (updates, ticks, state)));
                    }
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Follows the topic until `stop`: each partition from its newest
/// `history` records, every row into the book, each change broadcast.
fn follow(options: &UiOptions, state: &UiState, stop: &CancellationToken) -> Result<()> {
    let topic = &options.topic;
    // The group is only a name (nothing is committed), which a cluster's
    // ACLs may fix; the rest the follower relies on.
    let mut config = options
        .client
        .client_config_with(&[("group.id", "engine.ui")]);
    config
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer<ConsumerLogs> =
        options.client.consumer(&config, ConsumerLogs::new, || {
            format!("creating the page's consumer of topic `{topic}`")
        })?;
    let mut assignment = TopicPartitionList::new();
    // The topic may not exist yet (a job that has not started): wait for it,
    // saying why each time the reason changes (a refused login waits too, but
    // not silently).
    let mut said = String::new();
    let partitions = loop {
        match unassigned_consumer_partitions_of(
            &consumer,
            &consumer.context().hooks,
            topic,
            &options.client.bootstrap_servers,
            "topic",
        ) {
            Ok(p) => break p,
            Err(e) if !stop.is_cancelled() => {
                let why = crate::error::Chain(&e).to_string();
                if why != said {
                    tracing::warn!("the candle page waits for its topic: {why}");
                    said = why;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    };
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, METADATA_TIMEOUT)
            .map_err(|e| {
                EngineError::kafka(format!("reading end offsets of topic `{topic}`"), e)
            })?;
        let start = (high - options.history as i64).max(low);
        assignment
            .add_partition_offset(topic, p, Offset::Offset(start))
            .map_err(|e| EngineError::kafka(format!("assigning topic `{topic}`"), e))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| EngineError::kafka(format!("assigning topic `{topic}`"), e))?;
    let (mut unreadable, mut warned_full) = (0u64, false);
    while !stop.is_cancelled() {
        let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let Ok(m) = polled else { continue };
        match m.payload().map(Candle::from_json) {
            Some(Ok(candle)) => {
                let (changed, refused) = {
                    let mut book = state.book.lock().expect("no panics while locked");
                    (book.upsert(candle.clone()), book.refused())
                };
                if refused > 0 && !warned_full {
                    warned_full = true;
                    tracing::warn!(topic = %topic, "the candle page keeps {} symbols; candles of further symbols are not drawn", candles::MAX_SYMBOLS);
                }
                if changed {
                    let _ = state.updates.send(candle); // no page open: nobody to tell
                }
            }
            Some(Err(why)) => {
                unreadable += 1;
                if unreadable <= 5 {
                    tracing::warn!(topic = %topic, offset = m.offset(), error = %why, "a row the candle page cannot draw");
                }
            }
            None => {}
        }
    }
    Ok(())
}
