//! # engine: the streaming runtime
//!
//! A job file's statements run as sources -> operators -> sinks exchanging
//! Arrow batches and in-band signals (watermarks, barriers, end of data).
//!
//! # Layout (in the order a trade flows)
//! - [`feed`]: the market simulator and replay that feed `trades` (`engine produce`).
//! - [`ingest`]: live provider websocket feeds (Finnhub, Alpaca, Coinbase, Binance,
//!   Polygon) normalized to the trade contract (`engine ingest`, the `websocket` source).
//! - [`source`]: sources behind one trait and a registry (`kafka`, `memory`); the
//!   runner around every reader: batches, dead letters, per-split watermarks, barriers.
//! - `kafka`: what the Kafka source and sink share (client settings and their
//!   security: TLS, SASL, MSK IAM; client contexts; the transaction).
//! - [`decode`]: JSON payloads -> Arrow batches, bad records isolated, row rules.
//! - `watermark`: the `WATERMARK` expression and per-split event time.
//! - `message`: what flows: `Data(RecordBatch)` or a `Signal`.
//! - [`operator`]: the `Operator` trait and its collector; window assignment,
//!   windowed aggregates, stateless statements.
//! - [`sink`]: sinks behind one trait and a registry (`kafka`, `lake`, `memory`),
//!   each with its commit phase.
//! - `connector`: what source and sink registries share (the entry, the lookup, option errors).
//! - [`storage`]: object stores (S3, local) for lake tables and state dirs.
//! - [`checkpoint`]: the coordinator (phases only), the versioned manifest, the state dir.
//! - `pipeline`: a job as a graph, run under a supervisor until done or stopped.
//! - `resources`: what connectors share within one run.
//! - `metrics`: the job's Prometheus registry: what was read, dropped,
//!   emitted and written, lag, latency, checkpoints, readiness.
//! - [`web`]: the HTTP endpoint: `/metrics`, `/healthz`, `/readyz`.
//! - [`catalog`], [`query`]: the lake's tables for Glue/Athena, and local queries over them.
//! - [`failpoint`]: commit-phase crash injection for tests.
//! - [`logs`]: how the engine's processes log (levels, formats, secrets kept out).
//! - `error`: the engine's error type.
#![warn(missing_docs)]

pub mod catalog;
pub mod checkpoint;
pub(crate) mod connector;
pub mod decode;
pub(crate) mod error;
pub mod failpoint;
pub mod feed;
pub mod ingest;
pub(crate) mod kafka;
pub mod logs;
pub(crate) mod message;
pub mod metrics;
pub mod operator;
pub(crate) mod pipeline;
pub mod query;
pub(crate) mod resources;
pub mod sink;
pub mod source;
pub mod storage;
pub(crate) mod watermark;
pub mod web;

pub use error::{Cause, Chain, EngineError, Result};
/// Amazon MSK's IAM sign-in tokens (`auth = 'aws_msk_iam'`).
pub use kafka::msk_iam;
/// How our Kafka consumers log (end-of-partition events are not errors): for tools reading topics.
pub use kafka::ConsumerLogs;
/// A cluster's client settings (brokers, TLS/SASL/MSK IAM, pass-through
/// librdkafka settings), and the partitions of a topic on it: for the tools
/// that read and write topics.
pub use kafka::{partitions_of, unassigned_consumer_partitions_of, KafkaClientOptions};
pub use metrics::Metrics;
pub use pipeline::{CheckpointOptions, Job, OutputTopic, RunOptions, RunReport};
/// How a caller stops a running job cleanly (`Job::run`), and how its tasks learn of it.
pub use tokio_util::sync::CancellationToken;
