//! What a checkpoint records (`chk-<epoch>/_manifest.json`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One complete checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Checkpoint number, increasing.
    pub epoch: u64,
    /// Fingerprint of the job text: state is only restored into the same job.
    pub job_fingerprint: String,
    /// The state dir's generation (`g` and 8 hex digits), made when a job
    /// starts without a checkpoint and carried by every checkpoint after:
    /// the lake files it publishes carry it in their names, so a job started
    /// over (epochs from 1 again) never overwrites or rolls back the files of
    /// an earlier start. Empty in checkpoints written before generations.
    #[serde(default)]
    pub generation: String,
    /// When it was taken (RFC 3339), for people reading the state directory.
    pub created_at: String,
    /// Next offset to read, per source topic and partition.
    pub offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    /// Per source topic and partition, the event-time clock (the partition's
    /// own watermark, ms) the source had reached: a restore sets it again, so
    /// rows after the checkpoint are judged late as without a restart.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub watermarks: BTreeMap<String, BTreeMap<i32, i64>>,
    /// Each statement's state, by statement index.
    pub statements: BTreeMap<usize, StatementState>,
    /// Each lake sink's state, by sink table name.
    pub sinks: BTreeMap<String, SinkState>,
    /// Taken at the end of a bounded run's input: every window was emitted
    /// and every sink flushed up to `offsets` (scaled-out members read it to
    /// know a partition is done).
    #[serde(default)]
    pub finished: bool,
    /// The rows of each `exactly_once` Kafka sink (Arrow IPC) that this
    /// checkpoint's transaction sends, by sink table name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub transaction: BTreeMap<String, FileRef>,
}

impl Manifest {
    /// The state files the checkpoint needs: open windows and transaction rows.
    pub fn state_files(&self) -> impl Iterator<Item = &FileRef> {
        self.statements
            .values()
            .filter_map(|s| s.windows.as_ref())
            .chain(self.transaction.values())
    }
}

/// A statement's operator state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatementState {
    /// The operator's watermark.
    pub watermark: Option<i64>,
    /// Open windows' accumulator rows (Arrow IPC), if any.
    pub windows: Option<FileRef>,
}

/// A lake sink's state at a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SinkState {
    /// Objects to make visible once this checkpoint is complete, in order
    /// (data files before the `_SUCCESS` markers of their partitions).
    pub publish: Vec<Publish>,
    /// Files still open: their rows so far, to continue them after a restore.
    pub open_files: Vec<OpenFileState>,
    /// Partitions written since their marker, by start (event time, ms).
    pub uncommitted: Vec<i64>,
    /// The sink's last watermark.
    pub watermark: Option<i64>,
    /// Next file number (file names stay unique across restarts).
    pub next_file: u64,
}

/// A staged object and where it becomes visible.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Publish {
    /// The staged object (in the sink's store).
    pub from: FileRef,
    /// Its final path under the table (in the same store).
    pub to: String,
}

/// An open lake file: its partition and the segments (Arrow IPC) holding its rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenFileState {
    /// `dt=.../hour=..` (or empty).
    pub partition: String,
    /// Partition start (event time, ms): the partition's key.
    pub key: i64,
    /// Whether it was opened for a committed partition.
    pub late: bool,
    /// Its rows, oldest first.
    pub segments: Vec<FileRef>,
}

/// An object a checkpoint depends on, with its size (a shorter one is corrupt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Path in its store.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}
