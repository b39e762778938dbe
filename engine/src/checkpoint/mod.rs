//! Checkpoints: consistent snapshots of a running job, so a restart resumes
//! where the last one left off and a crash never loses or duplicates output.
//!
//! ```text
//!  coordinator --every interval--> sources: Barrier(epoch) in-band, after the data before it
//!     source: offsets and partition clocks at the barrier ---------\
//!     statement: window state at the barrier (Arrow IPC) ----------+--> chk-<epoch>/_manifest.json
//!     lake sink: files closed since (staged), open files' rows ----/     (written last: the commit point)
//!  then: staged files published under the table, group offsets committed, old checkpoints removed
//! ```
//!
//! A checkpoint is complete only when its manifest exists and every file it
//! names has the recorded size; a partial or corrupt one is skipped and the
//! previous one used.

mod coordinator;
mod ipc;
mod manifest;
mod store;

use std::collections::BTreeMap;

pub use coordinator::{run_periodic, Coordinator, Report, StatementSnapshot};
pub use ipc::{batches_from_ipc, batches_to_ipc};
pub use manifest::{FileRef, Manifest, OpenFileState, Publish, SinkState, StatementState};
pub use store::CheckpointStore;

/// Next offset to read per topic and partition.
pub type SourceOffsets = BTreeMap<String, BTreeMap<i32, i64>>;

/// Where the sources stood at a barrier, by topic and partition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourcePositions {
    /// The next offset to read.
    pub offsets: SourceOffsets,
    /// The partition's event-time clock: its own watermark (ms).
    pub watermarks: SourceOffsets,
}
