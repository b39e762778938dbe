//! How sources, operators and sinks take part in checkpoints without the
//! coordinator knowing what they are.
//!
//! At a barrier each participant hands over a [`Snapshot`]: opaque JSON and
//! byte blobs, stored in the checkpoint as its [`Entry`](super::Entry). A
//! participant whose output must wait for the checkpoint (staged lake files,
//! a Kafka transaction, group offsets) also has a [`Committer`]: once the
//! manifest is written the coordinator calls [`Committer::commit`] with the
//! snapshot of that checkpoint, in the spirit of Arroyo's `TwoPhaseCommitter`
//! and Flink's sink committers.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::error::Result;

/// What a participant keeps of checkpoint `epoch`: JSON of its choosing and
/// larger state as bytes (each blob becomes one file in the checkpoint).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Small state (positions, file lists, watermarks).
    pub meta: serde_json::Value,
    /// Larger state, by a name of the participant's choosing.
    pub blobs: BTreeMap<String, Bytes>,
}

impl Snapshot {
    /// A snapshot of `meta` alone.
    pub fn meta(meta: serde_json::Value) -> Self {
        Self {
            meta,
            blobs: BTreeMap::new(),
        }
    }

    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.meta.is_null() && self.blobs.is_empty()
    }

    /// `meta` read back as `T`: an error names `what` (a bug, or a damaged checkpoint).
    pub fn decode<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T> {
        serde_json::from_value(self.meta.clone()).map_err(|e| {
            crate::error::EngineError::Execution(format!(
                "checkpointed state of {what} does not read back: {e}"
            ))
        })
    }
}

/// Which checkpoint a commit is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPoint {
    /// The checkpoint's epoch.
    pub epoch: u64,
    /// The manifest's `created_at` (RFC 3339): with the epoch, it tells this
    /// checkpoint from another start's of the same number.
    pub created_at: String,
    /// The state dir's generation (a job started over counts epochs from 1 again).
    pub generation: String,
}

/// The second phase of a participant's output, run by the coordinator.
///
/// Every method must be safe to repeat: a crash can come between any two
/// steps, and a restore calls [`Committer::recover`] for the checkpoint it
/// restores whether or not its commit had finished.
#[async_trait::async_trait]
pub trait Committer: Send + Sync {
    /// Checkpoint `point` is written (its manifest exists): make what
    /// `snapshot` prepared visible (publish staged files, commit a
    /// transaction, commit consumer offsets). A store error
    /// ([`EngineError::Store`](crate::EngineError::Store)) is retried by the coordinator.
    async fn commit(&self, point: &CommitPoint, snapshot: &Snapshot) -> Result<()>;

    /// At restore, before anything runs: `restored` is the checkpoint the
    /// job continues from (`None`: it starts without one), `previous` the
    /// complete checkpoint before it (whose commit phase had finished: a
    /// checkpoint is only written after the one before has committed) with
    /// this participant's snapshot there. Undoes what later,
    /// lost checkpoints made visible, and commits `restored` again unless it
    /// is known to have committed.
    async fn recover(
        &self,
        restored: Option<(&CommitPoint, &Snapshot)>,
        previous: Option<(&CommitPoint, &Snapshot)>,
    ) -> Result<()> {
        let _ = previous;
        match restored {
            Some((point, snapshot)) => self.commit(point, snapshot).await,
            None => Ok(()),
        }
    }

    /// After checkpoint `epoch` committed: removes what only older
    /// checkpoints needed. `kept` are this participant's entries in the
    /// checkpoints still kept (newest last). Failures are only logged.
    async fn clean_up(&self, epoch: u64, kept: &[&serde_json::Value]) -> Result<()> {
        let _ = (epoch, kept);
        Ok(())
    }

    /// Every committer of checkpoint `epoch` has run: what they made
    /// visible is visible now (a Kafka transaction is sent by the last
    /// one), so acknowledgements (emit latency) are due here.
    fn visible(&self, epoch: u64) {
        let _ = epoch;
    }
}
