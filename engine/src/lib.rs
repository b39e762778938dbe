//! # engine: the streaming runtime
//!
//! A job file's statements run as sources -> operators -> sinks exchanging
//! Arrow batches and in-band signals (watermarks, barriers, end of data).
//!
//! # Layout (in the order a trade flows)
//! - [`feed`]: the market simulator that feeds `trades` (`engine produce`).
//! - [`message`]: what flows: `Data(RecordBatch)` or a `Signal`.
//! - [`kafka`]: settings shared by the Kafka source and sink.
//! - [`source`]: the Kafka source: consume, batch per partition, dead-letter bad records.
//! - [`decode`]: JSON payloads -> Arrow batches (vectorized, bad records isolated).
//! - [`watermark`]: the `WATERMARK` expression and per-partition event time.
//! - [`operator`]: window assignment, windowed aggregates, stateless statements.
//! - [`sink`]: the Kafka sink and the Parquet lake sink.
//! - [`pipeline`]: a job wired from its plan, run until done or stopped.
//! - [`metrics`]: counters of what was read, dropped and written.
//! - [`error`]: the engine's error type.
#![warn(missing_docs)]

pub mod catalog;
pub mod checkpoint;
pub mod decode;
pub mod error;
pub mod feed;
pub mod kafka;
pub mod message;
pub mod metrics;
pub mod operator;
pub mod pipeline;
pub mod query;
pub mod resources;
pub mod sink;
pub mod source;
pub mod storage;
pub mod watermark;

pub use error::{EngineError, Result};
pub use metrics::Metrics;
pub use pipeline::{CheckpointOptions, Job, RunOptions, RunReport};
