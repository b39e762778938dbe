//! The state directory: `chk-<epoch>/` folders of state files, each made
//! complete by its `_manifest.json`, written last.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutPayload};

use super::manifest::{FileRef, Manifest};
use crate::error::{EngineError, Result};
use crate::storage::{self, Location};

/// The manifest's name inside a checkpoint folder.
const MANIFEST: &str = "_manifest.json";

/// Checkpoints kept: the newest, and one to fall back to if the newest is damaged.
pub const KEPT: usize = 2;

/// Where a job's checkpoints live (`file://`, a directory, or `s3://`).
pub struct CheckpointStore {
    url: String,
    location: Location,
}

impl CheckpointStore {
    /// Opens the state directory at `url`.
    pub fn open(url: &str) -> Result<Self> {
        Ok(Self {
            url: url.to_string(),
            location: storage::open(url)?,
        })
    }

    /// The state directory's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn folder(&self, epoch: u64) -> Path {
        self.location
            .prefix
            .clone()
            .join(format!("chk-{epoch:010}"))
    }

    /// Writes one state file of checkpoint `epoch`.
    pub async fn write(&self, epoch: u64, name: &str, bytes: Vec<u8>) -> Result<FileRef> {
        self.location
            .put(&self.folder(epoch).join(name), bytes)
            .await
    }

    /// Reads a state file named by a manifest.
    pub async fn read(&self, file: &FileRef) -> Result<Bytes> {
        let path = Path::from(file.path.as_str());
        let got = self.location.store.get(&path).await;
        got.map_err(|e| self.error("reading", &path, e))?
            .bytes()
            .await
            .map_err(|e| self.error("reading", &path, e))
    }

    /// Completes checkpoint `manifest.epoch` by writing its manifest, with a
    /// conditional put (create, never overwrite): if another process wrote
    /// this epoch first (two runs on one state dir, or a zombie after a
    /// restart), this one fails instead of both publishing.
    pub async fn commit(&self, manifest: &Manifest) -> Result<()> {
        let body = serde_json::to_vec_pretty(manifest)
            .map_err(|e| EngineError::Internal(format!("encoding a manifest: {e}")))?;
        let path = self.folder(manifest.epoch).join(MANIFEST);
        let created = self
            .location
            .store
            .put_opts(
                &path,
                PutPayload::from(Bytes::from(body)),
                PutMode::Create.into(),
            )
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(EngineError::Execution(format!(
                "state dir {}: checkpoint {} was already written by another process; \
                 is a second `engine run` of this job using the same state dir?",
                self.url, manifest.epoch
            ))),
            Err(e) => Err(self.error("writing", &path, e)),
        }
    }

    /// Removes the folders of checkpoints after `epoch`: damaged or
    /// interrupted ones that a restore from `epoch` replaces.
    pub async fn discard_after(&self, epoch: u64) -> Result<()> {
        for newer in self.epochs().await?.into_iter().filter(|&e| e > epoch) {
            self.remove_folder(newer).await?;
        }
        Ok(())
    }

    async fn remove_folder(&self, epoch: u64) -> Result<()> {
        let prefix = self.folder(epoch);
        let objects: Vec<_> = self
            .location
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.error("listing", &prefix, e))?;
        for o in objects {
            // Ignore a concurrent delete: the object is gone either way.
            let _ = self.location.store.delete(&o.location).await;
        }
        Ok(())
    }

    /// The newest complete checkpoint: a manifest that parses and whose state
    /// files all exist with their recorded sizes. Damaged newer ones are
    /// skipped with a warning.
    pub async fn latest(&self) -> Result<Option<Manifest>> {
        self.latest_before(u64::MAX).await
    }

    /// The newest complete checkpoint before epoch `epoch`.
    pub async fn latest_before(&self, epoch: u64) -> Result<Option<Manifest>> {
        Ok(self.newest_before(epoch).await?.0)
    }

    /// The newest complete checkpoint, and the damaged ones newer than it
    /// (epoch and what is wrong). Interrupted checkpoints (no manifest) are
    /// not damaged: a crash before the commit point leaves them.
    pub async fn newest(&self) -> Result<(Option<Manifest>, Vec<(u64, String)>)> {
        self.newest_before(u64::MAX).await
    }

    async fn newest_before(&self, epoch: u64) -> Result<(Option<Manifest>, Vec<(u64, String)>)> {
        let mut epochs = self.epochs().await?;
        epochs.retain(|&e| e < epoch);
        epochs.reverse();
        let mut damaged = Vec::new();
        for epoch in epochs {
            match self.load(epoch).await {
                Ok(Some(m)) => return Ok((Some(m), damaged)),
                Ok(None) => {} // never completed: an interrupted checkpoint
                Err(reason) => {
                    tracing::warn!(
                        state_dir = %self.url, epoch, %reason,
                        "checkpoint is damaged; using the one before it"
                    );
                    damaged.push((epoch, reason));
                }
            }
        }
        Ok((None, damaged))
    }

    /// Checkpoint `epoch`'s manifest if it is complete (`Err`: damaged).
    pub async fn manifest(&self, epoch: u64) -> std::result::Result<Option<Manifest>, String> {
        self.load(epoch).await
    }

    /// Removes every checkpoint of the lanes of `topic` (`<state dir>/<topic>-<N>`),
    /// which a job scaled out keeps inside its state dir.
    pub async fn discard_lanes(&self, topic: &str) -> Result<()> {
        for name in self.folders().await? {
            let lane = name
                .strip_prefix(topic)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|p| p.parse::<i32>().is_ok());
            if lane {
                let url = format!("{}/{name}", self.url.trim_end_matches('/'));
                CheckpointStore::open(&url)?.discard_all().await?;
            }
        }
        Ok(())
    }

    /// Removes every checkpoint: a job started over (`--reset`) must never
    /// fall back to its earlier start's state.
    pub async fn discard_all(&self) -> Result<()> {
        self.discard_after(0).await // epochs count from 1
    }

    /// Removes checkpoint folders older than the newest `KEPT` up to `newest`
    /// (the one just completed and the one before it, to fall back to).
    pub async fn remove_old(&self, newest: u64) -> Result<()> {
        let epochs = self.epochs().await?;
        let keep_from = epochs
            .iter()
            .rev()
            .filter(|&&e| e <= newest)
            .nth(KEPT - 1)
            .copied()
            .unwrap_or(0);
        for epoch in epochs.into_iter().filter(|&e| e < keep_from) {
            self.remove_folder(epoch).await?;
        }
        Ok(())
    }

    /// Names of the folders directly in the state dir.
    async fn folders(&self) -> Result<Vec<String>> {
        let listing = self
            .location
            .store
            .list_with_delimiter(Some(&self.location.prefix))
            .await
            .map_err(|e| self.error("listing", &self.location.prefix, e))?;
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// Epochs with a folder, ascending.
    async fn epochs(&self) -> Result<Vec<u64>> {
        let mut epochs: Vec<u64> = self
            .folders()
            .await?
            .iter()
            .filter_map(|name| name.strip_prefix("chk-")?.parse().ok())
            .collect();
        epochs.sort_unstable();
        Ok(epochs)
    }

    /// Checkpoint `epoch` if complete; `Ok(None)` without a manifest; `Err` if damaged.
    async fn load(&self, epoch: u64) -> std::result::Result<Option<Manifest>, String> {
        let path = self.folder(epoch).join(MANIFEST);
        let bytes = match self.location.store.get(&path).await {
            Ok(got) => got.bytes().await.map_err(|e| e.to_string())?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| format!("manifest does not parse: {e}"))?;
        for file in manifest.state_files() {
            let meta = self
                .location
                .store
                .head(&Path::from(file.path.as_str()))
                .await
                .map_err(|e| format!("{}: {e}", file.path))?;
            if meta.size != file.size {
                return Err(format!(
                    "{} has {} bytes, the manifest says {}",
                    file.path, meta.size, file.size
                ));
            }
        }
        Ok(Some(manifest))
    }

    fn error(&self, what: &str, path: &Path, e: object_store::Error) -> EngineError {
        EngineError::store(format!("{what} `{path}` in state dir {}", self.url), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Entry;

    async fn checkpoint(store: &CheckpointStore, epoch: u64) {
        let state = store
            .write(epoch, "statement-0.arrow", vec![7; 100])
            .await
            .unwrap();
        let mut manifest = Manifest {
            epoch,
            ..Default::default()
        };
        manifest.operators.insert(
            "0".into(),
            Entry {
                meta: serde_json::json!({ "watermark": epoch }),
                files: [("windows".to_string(), state)].into(),
            },
        );
        store.commit(&manifest).await.unwrap();
    }

    #[tokio::test]
    async fn newest_complete_checkpoint_wins_and_damaged_ones_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(&dir.path().display().to_string()).unwrap();
        assert_eq!(store.latest().await.unwrap(), None);
        for epoch in 1..=3 {
            checkpoint(&store, epoch).await;
        }
        // An interrupted checkpoint: state written, no manifest.
        store.write(4, "statement-0.arrow", vec![1]).await.unwrap();
        assert_eq!(store.latest().await.unwrap().unwrap().epoch, 3);

        // A short state file, then a truncated manifest: each falls back one.
        let chk = |e: u64| dir.path().join(format!("chk-{e:010}"));
        std::fs::write(chk(3).join("statement-0.arrow"), [7; 10]).unwrap();
        assert_eq!(store.latest().await.unwrap().unwrap().epoch, 2);
        let manifest = std::fs::read(chk(2).join(MANIFEST)).unwrap();
        std::fs::write(chk(2).join(MANIFEST), &manifest[..manifest.len() / 2]).unwrap();
        let restored = store.latest().await.unwrap().unwrap();
        assert_eq!(
            (
                restored.epoch,
                restored.operators["0"].meta["watermark"].as_u64()
            ),
            (1, Some(1))
        );

        // A second writer of the same epoch loses.
        let again = Manifest {
            epoch: 1,
            ..Default::default()
        };
        let err = store.commit(&again).await.unwrap_err().to_string();
        assert!(
            err.contains("checkpoint 1 was already written by another process"),
            "{err}"
        );

        // Restoring from 1 replaces the damaged 2 and 3 and the interrupted 4.
        store.discard_after(1).await.unwrap();
        checkpoint(&store, 2).await;
        assert_eq!(store.latest().await.unwrap().unwrap().epoch, 2);
        checkpoint(&store, 3).await;
        checkpoint(&store, 4).await;

        // Old folders go; the newest two and anything newer stay.
        checkpoint(&store, 5).await;
        store.remove_old(5).await.unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| {
                std::fs::read_dir(dir.path().join(n))
                    .unwrap()
                    .next()
                    .is_some()
            })
            .collect();
        left.sort();
        assert_eq!(left, ["chk-0000000004", "chk-0000000005"]);
    }
}
