//! What a checkpoint records (`chk-<epoch>/_manifest.json`).
//!
//! The coordinator does not know what a source, operator or sink keeps: each
//! entry is that participant's own [`Entry`] (JSON it chose, and state files).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::storage::FileRef;

/// The manifest format this engine writes. Version 1 (before participants
/// kept their own state) had fixed fields for Kafka offsets and lake files;
/// it is refused with a message saying so (see [`Manifest::check_version`]).
pub const MANIFEST_VERSION: u32 = 2;

/// One complete checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The manifest format ([`MANIFEST_VERSION`]); absent in version 1.
    #[serde(default = "version_one")]
    pub version: u32,
    /// Checkpoint number, increasing.
    pub epoch: u64,
    /// Fingerprint of the job's definition: state is only restored into the same job.
    pub job_fingerprint: String,
    /// The state dir's generation (`g` and 8 hex digits), made when a job
    /// starts without a checkpoint and carried by every checkpoint after:
    /// output that names itself by epoch (lake files) carries it too, so a
    /// job started over (epochs from 1 again) never overwrites or rolls back
    /// what an earlier start published.
    #[serde(default)]
    pub generation: String,
    /// When it was taken (RFC 3339), for people reading the state directory.
    pub created_at: String,
    /// Taken at the end of a bounded run's input: every window was emitted
    /// and every sink flushed (scaled-out members read it to know a partition is done).
    #[serde(default)]
    pub finished: bool,
    /// Each source's positions, by source table name.
    #[serde(default)]
    pub sources: BTreeMap<String, Entry>,
    /// Each statement's operator state, by statement (see `JobGraph`).
    #[serde(default)]
    pub operators: BTreeMap<String, Entry>,
    /// Each sink's state and pre-commit data, by sink table name.
    #[serde(default)]
    pub sinks: BTreeMap<String, Entry>,
}

fn version_one() -> u32 {
    1
}

/// A participant's part of a checkpoint: JSON of its own choosing, and the
/// state files it wrote through the coordinator (e.g. Arrow IPC of open
/// windows), by the names it gave them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Small state: positions, watermarks, lists of staged objects.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub meta: serde_json::Value,
    /// State files in the checkpoint's folder.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, FileRef>,
}

impl Manifest {
    /// Every state file the checkpoint needs (a missing or short one makes it damaged).
    pub fn state_files(&self) -> impl Iterator<Item = &FileRef> {
        self.sources
            .values()
            .chain(self.operators.values())
            .chain(self.sinks.values())
            .flat_map(|e| e.files.values())
    }

    /// Refuses a manifest of another format with what to do about it.
    pub fn check_version(&self) -> Result<(), String> {
        match self.version {
            MANIFEST_VERSION => Ok(()),
            v if v < MANIFEST_VERSION => Err(format!(
                "it was written by an older engine (manifest version {v}, this engine reads \
                 version {MANIFEST_VERSION}); finish the job with that engine (e.g. a --bounded run), \
                 or start over with --reset --start group-offsets (see README, \"Starting over\")"
            )),
            v => Err(format!(
                "it was written by a newer engine (manifest version {v}, this engine reads \
                 version {MANIFEST_VERSION}); run the job with that engine"
            )),
        }
    }
}
