//! Sources: where records enter the engine.
//!
//! A source table's `connector` picks its `SourceConnector` from
//! `registry::connectors()`: the connector checks the table's options into a
//! [`SourceSpec`], and the spec opens a [`SourceReader`] for each run. The
//! reader only reads (assign, poll, positions); the `SourceRunner` around
//! it does what every source needs: batching per split, decoding JSON into
//! Arrow, dead-lettering bad records, per-split watermarks, barriers, and
//! the end of a bounded input.
//!
//! Adding a source: a folder here with its config and reader, and one line
//! in `registry.rs`.

pub mod kafka;
pub mod memory;
mod read_options;
pub(crate) mod registry;
mod runner;
pub mod websocket;

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use engine_sql::TableDef;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Committer, Snapshot};
use crate::error::Result;
use crate::metrics::Metrics;
use crate::resources::Resources;

pub use read_options::{ReadOptions, StartupMode, DEFAULT_MAX_AHEAD};
pub use runner::{row_rules, RecordBuffer};
pub(crate) use runner::{SourceBarriers, SourceRunner};

/// A source table's checked options: what `engine check` validates, and
/// what opens the source when the job runs.
#[async_trait::async_trait]
pub trait SourceSpec: Send + Sync + std::fmt::Debug {
    /// What is read, for `engine check` and logs (never a secret).
    fn describe(&self) -> String;

    /// The spec as [`Any`], for code that knows a connector.
    fn as_any(&self) -> &dyn Any;

    /// The options every source has: batching, decoding, row rules.
    fn read_options(&self) -> &ReadOptions;

    /// Positions a consumer group (or the like) has committed for this
    /// source, by split (for `lane`: its split only). A job without a
    /// checkpoint but with committed positions has run before: starting
    /// from them would lose the state of then.
    async fn committed(&self, lane: Option<i32>) -> Result<BTreeMap<i32, i64>> {
        let _ = lane;
        Ok(BTreeMap::new())
    }

    /// Opens the source for one run.
    async fn open(&self, ctx: SourceContext<'_>) -> Result<OpenedSource>;
}

/// What a source is opened with.
pub struct SourceContext<'a> {
    /// The source table.
    pub table: &'a TableDef,
    /// Read to the end positions listed at start, then end.
    pub bounded: bool,
    /// Where to start when no checkpoint says (`--reset --start`).
    pub start: Option<StartupMode>,
    /// As a lane of `--scale-out`: the one split read.
    pub lane: Option<i32>,
    /// The job takes checkpoints.
    pub checkpoints: bool,
    /// The job's counters.
    pub metrics: Arc<Metrics>,
    /// The job's shared resources.
    pub resources: &'a Resources,
}

/// An open source: its reader, where its bad records go, and how its
/// positions are committed once a checkpoint covers them.
pub struct OpenedSource {
    /// Reads records.
    pub reader: Box<dyn SourceReader>,
    /// Where bad records (and rows statements reject) go.
    pub dead_letters: Arc<dyn DeadLetterSink>,
    /// Commits positions covered by a checkpoint.
    pub committer: Arc<dyn Committer>,
}

/// What a source reads: records by split (a Kafka partition), each with a
/// position. Blocking: it runs on the source's own thread.
pub trait SourceReader: Send + Sync {
    /// Connects and assigns its splits, from `restored` positions (a
    /// checkpoint's, as [`SourceReader::positions`] gave them) or where its
    /// options say. Returns each split and whether it is already finished
    /// (a bounded run with nothing to read there).
    fn open(&mut self, restored: Option<&serde_json::Value>) -> Result<Vec<(i32, bool)>>;

    /// Waits up to `timeout` for records and appends at most `max` of them
    /// (at least 1) to `out`, as many as are at hand: the runner's checks
    /// between polls (barriers, stop, linger, watermarks) then cost per
    /// poll, not per record. Splits read to their end (bounded) are marked
    /// there too.
    fn poll(&mut self, timeout: Duration, max: usize, out: &mut RecordBuffer) -> Result<()>;

    /// The positions after every record handed out, for a checkpoint.
    fn positions(&self) -> serde_json::Value;

    /// The name records are read from (a topic), for messages and metadata columns.
    fn name(&self) -> &str;

    /// How many records each split is behind its end, where the reader
    /// knows (`engine_consumer_lag_records`). Called about twice a second;
    /// must not wait on the network.
    fn lag(&self) -> Vec<(i32, i64)> {
        Vec::new()
    }

    /// Asked after a poll that handed over fewer records than it could:
    /// whether every split has been read up to all there is now, as far as
    /// the reader knows without waiting on the network. A partial batch is
    /// then decoded at once rather than after `batch.linger`, since nothing
    /// more is coming to fill it (what keeps candles prompt in a live feed,
    /// while a backlog is still read in full batches). Default: not known.
    fn caught_up(&self) -> bool {
        false
    }

    /// A run without checkpoints ended cleanly: commits `positions` where
    /// the source keeps them (a consumer group). Blocking.
    fn commit(&mut self, positions: &serde_json::Value) -> Result<()> {
        let _ = positions;
        Ok(())
    }
}

/// Where bad records go: the source's dead-letter topic (or the like).
pub trait DeadLetterSink: Send + Sync {
    /// Queues one bad record with its error and origin. Blocks while full.
    fn send(
        &self,
        payload: &[u8],
        key: Option<&[u8]>,
        error: &str,
        origin: Origin<'_>,
    ) -> Result<()>;

    /// Waits until every record sent is stored. Blocking.
    fn flush(&self) -> Result<()>;

    /// Where they go, for logs.
    fn describe(&self) -> String;
}

/// Where a bad record came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// What was read (the source topic).
    pub topic: &'a str,
    /// Split and position (unknown for a row a statement rejected).
    pub position: Option<(i32, i64)>,
    /// The statement that rejected the row (`job.sql:42`), when it was not the source.
    pub statement: Option<&'a str>,
}

/// A source's entry in a checkpoint: its reader's positions and each split's
/// event-time clock (its own watermark, ms), which a restore sets again so
/// rows after the checkpoint are judged late as without a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceState {
    /// The reader's positions ([`SourceReader::positions`]).
    pub positions: serde_json::Value,
    /// Each split's event-time clock.
    #[serde(default)]
    pub clocks: BTreeMap<i32, i64>,
}

impl SourceState {
    /// As a checkpoint snapshot.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::meta(serde_json::to_value(self).expect("source state is plain JSON"))
    }

    /// Read back from a snapshot (`None` if it holds none).
    pub fn from_snapshot(snapshot: &Snapshot) -> Result<Option<Self>> {
        if snapshot.meta.is_null() {
            return Ok(None);
        }
        snapshot.decode("a source").map(Some)
    }

    /// Source table `table`'s state in `manifest`, if it has an entry.
    pub fn in_manifest(manifest: &crate::checkpoint::Manifest, table: &str) -> Option<Self> {
        let entry = manifest.sources.get(table)?;
        serde_json::from_value(entry.meta.clone()).ok()
    }
}
