//! Two-phase lake output for checkpoints: files are written to `_staging/`
//! inside the table (hidden from Athena by the leading `_`, and named without
//! `.parquet` so no reader lists them), and become visible under their
//! partition only once the checkpoint that covers them is complete.
//!
//! Final names come from the state dir's generation and the checkpoint epoch
//! that publishes them (`part-g<gen>-e<epoch>-<n>.parquet`,
//! `part-p<N>-g<gen>-e<epoch>-<n>.parquet` for the lane of source partition N
//! under `--scale-out`), so publishing again after a crash rewrites the same
//! objects, falling back to an older checkpoint can remove what newer, lost
//! ones published, and a job started over on a fresh state dir (a new
//! generation, epochs from 1 again) never touches an earlier start's files.
//! The part of a name before `e<epoch>` is the *scope*: lane and generation.

use object_store::path::Path;
use object_store::ObjectStoreExt;

use super::state::{LakeState, Publish};
use crate::storage::Location;

use crate::error::{EngineError, Result};

/// The folder, inside the table, for staged files and open files' segments.
pub const STAGING_DIR: &str = "_staging";

/// A sink's staging area and what waits in it for the next checkpoint.
#[derive(Debug)]
pub struct Staging {
    /// `<table>/_staging`.
    pub prefix: Path,
    /// The checkpoint that will publish files closed now.
    pub epoch: u64,
    /// Objects staged in this epoch, in the order they must appear.
    pub pending: Vec<Publish>,
    /// Files staged in this epoch (numbers their names).
    pub seq: u64,
    /// This process's run: staged names carry it, so two processes on one
    /// table (one a zombie, fenced at its next checkpoint) never overwrite
    /// each other's staged objects.
    pub run_id: String,
    /// The scope's name prefix (`p3-g1a2b3c4d-` for source partition 3
    /// under `--scale-out`, `g1a2b3c4d-` for a job run whole): lanes and
    /// generations share the table, so their names, and what roll-back and
    /// garbage collection touch, must not overlap.
    pub lane: String,
}

/// The scope of a lane's names in generation `generation`: `p3-g1a2b3c4d`,
/// `g1a2b3c4d` without lanes, `p3` or empty for checkpoints older than generations.
pub fn scope(lane: &str, generation: &str) -> String {
    [lane, generation]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("-")
}

/// A new generation: `g` and 8 random hex digits.
pub fn new_generation() -> String {
    use rand::Rng;
    format!("g{:08x}", rand::rng().random::<u32>())
}

impl Staging {
    /// Staging under `location` for files published from checkpoint `epoch`
    /// on, named in `scope` (see [`scope`]).
    pub fn new(location: &Location, epoch: u64, run_id: &str, scope: &str) -> Self {
        Self {
            prefix: location.prefix.clone().join(STAGING_DIR),
            epoch,
            pending: Vec::new(),
            seq: 0,
            run_id: run_id.to_string(),
            lane: lane_prefix(scope),
        }
    }

    /// Where a data file closed now goes: staged name, and final name in the partition folder `dir`.
    pub fn next_file(&mut self, dir: &Path) -> (Path, Path) {
        let name = format!("part-{}e{:010}-{:05}", self.lane, self.epoch, self.seq);
        self.seq += 1;
        (
            self.prefix
                .clone()
                .join(format!("{name}-{}.parquet.staged", self.run_id)),
            dir.clone().join(format!("{name}.parquet")),
        )
    }

    /// Where a marker written now is staged.
    pub fn next_marker(&mut self) -> Path {
        let name = format!(
            "marker-{}e{:010}-{:05}-{}.staged",
            self.lane, self.epoch, self.seq, self.run_id
        );
        self.seq += 1;
        self.prefix.clone().join(name)
    }

    /// Where an open file's rows since the last checkpoint go.
    pub fn segment(&self, file_id: &str) -> Path {
        self.prefix.clone().join(format!(
            "seg-{}e{:010}-{file_id}.arrow",
            self.lane, self.epoch
        ))
    }
}

/// Makes a checkpoint's staged objects visible: copy to the final path, then
/// remove the staged one. Safe to repeat: an object already moved is skipped.
pub async fn publish(location: &Location, table: &str, items: &[Publish]) -> Result<()> {
    let store = &location.store;
    for item in items {
        let (from, to) = (
            Path::from(item.from.path.as_str()),
            Path::from(item.to.as_str()),
        );
        match store.copy(&from, &to).await {
            Ok(()) => {
                if let Some(f) = crate::failpoint::hit("lake::publish") {
                    return Err(crate::failpoint::crashed(f));
                }
                let _ = store.delete(&from).await; // left behind, it is only garbage
            }
            Err(object_store::Error::NotFound { .. }) if store.head(&to).await.is_ok() => {}
            Err(e) => {
                return Err(EngineError::store(
                    format!("lake table `{table}`: publishing `{from}` as `{to}`"),
                    e,
                ))
            }
        }
    }
    Ok(())
}

/// Removes the files of `scope` (lane and generation) published by
/// checkpoints after `epoch` (lost or damaged ones): their data is written
/// again from `epoch`'s offsets. Other generations' files are never touched.
pub async fn roll_back_after(
    location: &Location,
    table: &str,
    epoch: u64,
    lane: &str,
) -> Result<()> {
    use futures::TryStreamExt;
    let objects: Vec<_> = location
        .store
        .list(Some(&location.prefix))
        .try_collect()
        .await
        .map_err(|e| EngineError::store(format!("lake table `{table}`: listing"), e))?;
    for o in objects {
        let newer = o
            .location
            .filename()
            .filter(|n| in_lane(n, lane))
            .and_then(epoch_in_name)
            .is_some_and(|e| e > epoch);
        let staged = o.location.parts().any(|p| p.as_ref() == STAGING_DIR);
        if newer && !staged {
            tracing::warn!(table, file = %o.location, "removing a file published by a lost checkpoint");
            location.store.delete(&o.location).await.map_err(|e| {
                EngineError::store(format!("lake table `{table}`: removing {}", o.location), e)
            })?;
        }
    }
    Ok(())
}

/// Removes the staged objects of `lane` (a scope) of epochs up to `epoch` that none of `kept` needs.
pub async fn remove_garbage(
    location: &Location,
    kept: &[&LakeState],
    epoch: u64,
    lane: &str,
) -> Result<()> {
    use futures::TryStreamExt;
    let prefix = location.prefix.clone().join(STAGING_DIR);
    let needed: std::collections::BTreeSet<&str> = kept
        .iter()
        .flat_map(|s| {
            let segments = s.open_files.iter().flat_map(|f| f.segments.iter());
            segments
                .chain(s.publish.iter().map(|p| &p.from))
                .map(|f| f.path.as_str())
        })
        .collect();
    let objects: Vec<_> = location
        .store
        .list(Some(&prefix))
        .try_collect()
        .await
        .unwrap_or_default();
    for o in objects {
        let object_epoch = o
            .location
            .filename()
            .filter(|n| in_lane(n, lane))
            .and_then(epoch_in_name);
        if object_epoch.is_some_and(|e| e <= epoch) && !needed.contains(o.location.as_ref()) {
            let _ = location.store.delete(&o.location).await;
        }
    }
    Ok(())
}

/// `p3-` for lane `p3`; empty for a job that runs as one lane.
fn lane_prefix(lane: &str) -> String {
    if lane.is_empty() {
        String::new()
    } else {
        format!("{lane}-")
    }
}

/// Whether `name` is a data file, marker or segment this module made for `lane`.
fn in_lane(name: &str, lane: &str) -> bool {
    let own = format!("{}e", lane_prefix(lane));
    ["part-", "marker-", "seg-"].iter().any(|kind| {
        name.strip_prefix(kind)
            .is_some_and(|rest| rest.starts_with(&own))
    })
}

/// The epoch in a name this module made (`part-e<epoch>-...`, `seg-e<epoch>-...`).
fn epoch_in_name(name: &str) -> Option<u64> {
    let (_, rest) = name.split_once("-e")?;
    rest.get(..10)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_own_disjoint_names() {
        let (a, b) = (scope("", "g0000000a"), scope("", "g0000000b"));
        assert_eq!(a, "g0000000a");
        assert_eq!(scope("p3", "g0000000a"), "p3-g0000000a");
        assert_eq!(scope("p3", ""), "p3");
        let name = "part-g0000000a-e0000000001-00000.parquet";
        assert!(in_lane(name, &a) && !in_lane(name, &b) && !in_lane(name, ""));
        assert!(!in_lane("part-e0000000001-00000.parquet", &a));
        assert!(!in_lane("part-p3-g0000000a-e0000000001-00000.parquet", &a));
        assert!(in_lane(
            "part-p3-g0000000a-e0000000001-00000.parquet",
            "p3-g0000000a"
        ));
        assert_eq!(epoch_in_name(name), Some(1));
        assert_eq!(
            epoch_in_name("part-p3-g0000000a-e0000000012-00000.parquet"),
            Some(12)
        );
        assert!(new_generation().starts_with('g') && new_generation().len() == 9);
    }

    #[test]
    fn lanes_own_disjoint_names() {
        assert!(in_lane("part-e0000000003-00000.parquet", ""));
        assert!(in_lane("seg-e0000000003-run-1.arrow", ""));
        assert!(!in_lane("part-p3-e0000000003-00000.parquet", ""));
        assert!(in_lane("part-p3-e0000000003-00000.parquet", "p3"));
        assert!(in_lane("marker-p3-e0000000003-00001-run.staged", "p3"));
        assert!(!in_lane("part-p31-e0000000003-00000.parquet", "p3"));
        assert!(!in_lane("part-e0000000003-00000.parquet", "p3"));
        assert!(!in_lane("part-20251120T000000-0000abcd-000001.parquet", ""));
        assert_eq!(epoch_in_name("part-p3-e0000000012-00000.parquet"), Some(12));
    }
}
