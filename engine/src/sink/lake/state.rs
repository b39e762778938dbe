//! What a lake sink keeps in a checkpoint (its entry's JSON).

use serde::{Deserialize, Serialize};

use crate::storage::FileRef;

/// A lake sink's state at a checkpoint, and what its commit publishes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LakeState {
    /// Objects to make visible once this checkpoint is written, in order
    /// (data files before the `_SUCCESS` markers of their partitions): all
    /// those staged since the last committed checkpoint.
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
