//! The engine's integration tests, in one binary: each module is one
//! concern, checked end to end against an independent computation (the
//! folds in `common::oracle`, DuckDB) and, where it needs them, against the
//! real services `scripts/services.sh` starts (Tansu for Kafka, moto for S3
//! and Glue) and a real headless Chromium.
//!
//! One binary links the engine once instead of once per file, which is most
//! of the test command's build after the first `cargo run`. Its tests share
//! a process, so they share nothing else: every test makes its own topics,
//! memory streams, state dirs and ports. Two kinds of test are kept apart,
//! because what they do reaches every test of their process or service:
//! those arming failpoints (process-global by design, `tests/runtime.rs`)
//! and those freezing a shared service (`tests/faults/`).
//!
//! Run one concern with `cargo test -p engine --test integration -- rebalance::`.
//!
//! # Layout
//! - `../common/`: the test support shared by the three test binaries
//!   (oracle folds, broker, processes, lake, browser)
//! - one module per concern, listed below with what it covers

#[path = "../common/mod.rs"]
mod common;

/// The lake for Athena on the real S3 API: partitions, projection, DuckDB reads.
mod athena_lake;
/// `engine catalog`: Athena DDL and Glue tables.
mod catalog;
/// The checkpoint store on the real S3 API.
mod checkpoint_store;
/// The binary stopped with Ctrl-C keeps its promises.
mod cli_stop;
/// Jobs killed with SIGKILL at random, restarted until done: exact output.
mod crash_loop;
/// CUMULATE and SESSION jobs on the real broker.
mod cumulate_session_jobs;
/// The embedded default, with no services.
mod embedded;
/// When windows emit: early rows, corrections, final rows.
mod emit_policies;
/// Each source partition's event-time clock survives a restart.
mod event_time_restore;
/// The recorded fixtures, made again and fed through the jobs.
mod fixtures;
/// Records built to hurt: each one dead-lettered with its reason and counted.
mod hostile_records;
/// `engine ingest` against local servers speaking each provider's protocol.
mod ingest;
/// Every job file in `jobs/` plans; job errors name their file and line.
mod job_files;
/// Kafka TLS, mutual TLS, SASL and MSK IAM.
mod kafka_security;
/// Late data through the real broker: lateness, late output, restarts.
mod late_data;
/// A job that keeps running: metrics, the candle page, live windows.
mod live_run;
/// `jobs/ohlc_1m.sql --bounded` end to end on the real broker.
mod ohlc_job;
/// Partition commit markers in the lake sink.
mod partition_commit;
/// `engine produce`: the simulator.
mod produce;
/// A stateless statement from Kafka to an `s3://` lake.
mod raw_to_s3;
/// `engine run --scale-out` processes sharing a topic through rebalances.
mod rebalance;
/// `engine produce --replay`: recorded prices as trades.
mod replay;
/// Second runs, fresh state dirs, damaged checkpoints.
mod reruns;
/// `engine tail`.
mod tail;
/// Window operators in process: TUMBLE, HOP, CUMULATE, SESSION.
mod windows;
