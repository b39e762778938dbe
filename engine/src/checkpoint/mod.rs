//! Checkpoints: consistent snapshots of a running job, so a restart resumes
//! where the last one left off and a crash never loses or duplicates output.
//!
//! ```text
//!  coordinator --every interval--> sources: Barrier(epoch) in-band, after the data before it
//!     source: its positions at the barrier ------------------------\
//!     operator: its state at the barrier (e.g. windows as Arrow IPC) +--> chk-<epoch>/_manifest.json
//!     sink: its state and what it prepared (staged files, rows) ----/     (written last: the commit point)
//!  then: every participant's commit phase (publish, transaction, offsets), old checkpoints removed
//! ```
//!
//! A checkpoint is complete only when its manifest exists and every file it
//! names has the recorded size; a partial or corrupt one is skipped and the
//! previous one used. The coordinator knows participants only through
//! [`Snapshot`] and [`Committer`]: nothing here knows a source or sink kind.

mod coordinator;
mod ipc;
mod manifest;
mod participant;
mod store;

pub(crate) use coordinator::{run_periodic, BarrierRequests, Coordinator, Participant, Report};
pub(crate) use ipc::{batches_from_ipc, batches_to_ipc};
pub use manifest::{Entry, Manifest, MANIFEST_VERSION};
pub use participant::{CommitPoint, Committer, Snapshot};
pub use store::CheckpointStore;
