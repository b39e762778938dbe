//! The tests that freeze a shared service (SIGSTOP on Tansu or moto) while
//! the engine runs, one at a time (`common::one_outage_at_a_time`). They are
//! a binary of their own because a frozen broker would stall every other
//! test using it: `cargo test` runs test binaries one after another.

#[path = "../common/mod.rs"]
mod common;

/// `engine ingest` against a stalled broker: backpressure, nothing lost.
mod ingest_stall;
/// A job riding out a frozen broker, and a frozen S3 server.
mod outages;
/// A crash while a checkpoint's Kafka transaction is stuck behind a frozen broker.
mod transactions;
