//! The checkpoint coordinator: asks the sources for barriers, gathers every
//! participant's snapshot of a barrier, writes the checkpoint, then runs the
//! commit phase of every [`Committer`] and cleans up. It orders the phases
//! and stores opaque state; what a commit does is the participant's business.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::manifest::{Entry, Manifest, MANIFEST_VERSION};
use super::participant::{CommitPoint, Committer, Snapshot};
use super::store::{CheckpointStore, KEPT};
use crate::error::{Chain, EngineError, Result};
use crate::failpoint;
use crate::metrics::CheckpointMetrics;

/// Who a snapshot is from: its kind and its key in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Participant {
    /// A source table, by name.
    Source(String),
    /// A statement's operator, by statement key.
    Operator(String),
    /// A sink, by its key (statement and table).
    Sink(String),
}

impl Participant {
    /// Its entry in `manifest`, if any.
    pub fn entry<'m>(&self, manifest: &'m Manifest) -> Option<&'m Entry> {
        match self {
            Participant::Source(k) => manifest.sources.get(k),
            Participant::Operator(k) => manifest.operators.get(k),
            Participant::Sink(k) => manifest.sinks.get(k),
        }
    }

    fn key(&self) -> &str {
        match self {
            Participant::Source(k) | Participant::Operator(k) | Participant::Sink(k) => k,
        }
    }

    /// The file name prefix of its blobs in a checkpoint folder.
    fn file_prefix(&self) -> String {
        let kind = match self {
            Participant::Source(_) => "source",
            Participant::Operator(_) => "operator",
            Participant::Sink(_) => "sink",
        };
        let key: String = self
            .key()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("{kind}-{key}")
    }
}

/// A participant's snapshot at barrier `epoch`.
#[derive(Debug)]
pub struct Report {
    /// The barrier's epoch.
    pub epoch: u64,
    /// Who.
    pub from: Participant,
    /// What it keeps.
    pub snapshot: Snapshot,
}

/// Writes checkpoints of one job and runs their commit phase.
pub struct Coordinator {
    store: CheckpointStore,
    fingerprint: String,
    /// The newest complete checkpoints, oldest first.
    kept: Vec<Manifest>,
    /// The epoch the next checkpoint gets.
    next_epoch: u64,
    /// Checkpoint durations, sizes, epochs and failures.
    metrics: CheckpointMetrics,
    /// When the barrier of the checkpoint in flight was asked for.
    requested_at: Option<Instant>,
    /// The state dir's generation, written into every manifest.
    generation: String,
    /// The next checkpoint is taken at the end of a bounded input.
    finished: bool,
    /// The participants with a commit phase, in commit order.
    committers: Vec<(Participant, Arc<dyn Committer>)>,
}

impl Coordinator {
    /// A coordinator writing to `store`, continuing after `restored` if any,
    /// in state-dir generation `generation`.
    pub fn new(
        store: CheckpointStore,
        fingerprint: String,
        generation: &str,
        restored: Option<Manifest>,
        metrics: CheckpointMetrics,
    ) -> Self {
        let next_epoch = restored.as_ref().map_or(1, |m| m.epoch + 1);
        Self {
            store,
            fingerprint,
            kept: restored.into_iter().collect(),
            next_epoch,
            metrics,
            requested_at: None,
            generation: generation.to_string(),
            finished: false,
            committers: Vec::new(),
        }
    }

    /// Adds a participant's commit phase. Committers run in the order added.
    pub fn add_committer(&mut self, who: Participant, committer: Arc<dyn Committer>) {
        self.committers.push((who, committer));
    }

    /// Marks the next checkpoint as taken at the end of a bounded input.
    pub fn finish_input(&mut self) {
        self.finished = true;
    }

    /// The epoch the next checkpoint will get.
    pub fn next_epoch(&self) -> u64 {
        self.next_epoch
    }

    /// The barrier of the next checkpoint was asked for now (its duration counts from here).
    pub fn barrier_requested(&mut self) {
        self.requested_at = Some(Instant::now());
    }

    /// Reads `who`'s snapshot back from `manifest` (its blobs from the state dir).
    pub async fn snapshot_of(&self, manifest: &Manifest, who: &Participant) -> Result<Snapshot> {
        let Some(entry) = who.entry(manifest) else {
            return Ok(Snapshot::default());
        };
        let mut blobs = BTreeMap::new();
        for (name, file) in &entry.files {
            blobs.insert(name.clone(), self.store.read(file).await?);
        }
        Ok(Snapshot {
            meta: entry.meta.clone(),
            blobs,
        })
    }

    /// Runs every committer's recovery for the restored checkpoint (the
    /// newest kept), before the job starts.
    pub async fn recover(&self) -> Result<()> {
        let restored = self.kept.last();
        let previous = match restored {
            Some(m) => self.store.latest_before(m.epoch).await?,
            None => None,
        };
        for (who, committer) in &self.committers {
            let snapshot = match restored {
                Some(m) => Some((point_of(m), self.snapshot_of(m, who).await?)),
                None => None,
            };
            let before = match &previous {
                Some(p) => Some((point_of(p), self.snapshot_of(p, who).await?)),
                None => None,
            };
            committer
                .recover(
                    snapshot.as_ref().map(|(p, s)| (p, s)),
                    before.as_ref().map(|(p, s)| (p, s)),
                )
                .await?;
        }
        Ok(())
    }

    /// Writes checkpoint `epoch` from every participant's snapshot, then
    /// runs the commit phase and removes what no kept checkpoint needs.
    ///
    /// A store that fails is retried with backoff (each failure logged and
    /// counted in `checkpoint_failures`) for up to `retry_for`; the data flow
    /// goes on meanwhile, and once the store is back the same checkpoint
    /// completes and commits everything prepared since. Past the bound the
    /// error is returned and the job stops. Other errors (a fenced manifest,
    /// a failed transaction) are returned at once.
    pub async fn complete(
        &mut self,
        epoch: u64,
        reports: Vec<(Participant, Snapshot)>,
        retry_for: Duration,
    ) -> Result<()> {
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            epoch,
            job_fingerprint: self.fingerprint.clone(),
            generation: self.generation.clone(),
            created_at: chrono::Utc::now().to_rfc3339(),
            finished: self.finished,
            ..Default::default()
        };
        let completing = Instant::now();
        let mut retry = Retry::new(epoch, retry_for, &self.metrics);
        let (manifest, bytes) = loop {
            match self.write(manifest.clone(), &reports).await {
                Ok(written) => break written,
                Err(e) => retry.after(e, "writing the checkpoint").await?,
            }
        };
        tracing::debug!(state_dir = %self.store.url(), epoch, "checkpoint written");
        if let Some(f) = failpoint::hit("checkpoint::after_manifest") {
            return Err(failpoint::crashed(f));
        }
        let point = point_of(&manifest);
        let empty = Snapshot::default();
        for (who, committer) in &self.committers {
            let snapshot = reports
                .iter()
                .find(|(w, _)| w == who)
                .map_or(&empty, |(_, s)| s);
            while let Err(e) = committer.commit(&point, snapshot).await {
                retry.after(e, &format!("committing {who:?}")).await?;
            }
            if let Some(f) = failpoint::hit("checkpoint::after_commit") {
                return Err(failpoint::crashed(f));
            }
        }
        for (_, committer) in &self.committers {
            committer.visible(epoch);
        }
        let started = self.requested_at.take().unwrap_or(completing);
        self.metrics.completed(epoch, started, bytes);
        self.next_epoch = self.next_epoch.max(epoch + 1);
        self.kept.push(manifest);
        if self.kept.len() > KEPT {
            self.kept.remove(0);
        }
        // Clean-up only: what is left now goes with a later checkpoint's.
        if let Err(e) = self.clean_up(epoch).await {
            tracing::warn!(state_dir = %self.store.url(), epoch, error = %Chain(&e), "removing old checkpoints and staged files; retried after the next checkpoint");
        }
        Ok(())
    }

    /// Writes the checkpoint's state files and then its manifest (the commit
    /// point); returns the manifest written and the bytes of both. Safe to repeat after a failure:
    /// a manifest this coordinator wrote in an attempt whose reply was lost
    /// counts as written.
    async fn write(
        &self,
        mut manifest: Manifest,
        reports: &[(Participant, Snapshot)],
    ) -> Result<(Manifest, u64)> {
        let epoch = manifest.epoch;
        let mut bytes_written = 0;
        if let Some(f) = failpoint::hit("checkpoint::write") {
            return Err(EngineError::store_msg(format!(
                "failpoint {f}: the state dir is unavailable"
            )));
        }
        for (who, snapshot) in reports {
            if snapshot.is_empty() {
                continue;
            }
            let mut entry = Entry {
                meta: snapshot.meta.clone(),
                files: BTreeMap::new(),
            };
            for (name, bytes) in &snapshot.blobs {
                let file = format!("{}-{name}", who.file_prefix());
                bytes_written += bytes.len() as u64;
                let file = self.store.write(epoch, &file, bytes.to_vec()).await?;
                entry.files.insert(name.clone(), file);
            }
            let key = who.key().to_string();
            match who {
                Participant::Source(_) => manifest.sources.insert(key, entry),
                Participant::Operator(_) => manifest.operators.insert(key, entry),
                Participant::Sink(_) => manifest.sinks.insert(key, entry),
            };
        }
        bytes_written += serde_json::to_vec(&manifest).map_or(0, |m| m.len() as u64);
        match self.store.commit(&manifest).await {
            Ok(()) => Ok((manifest, bytes_written)),
            Err(e) => match self.store.manifest(epoch).await {
                // Our own manifest from an attempt whose reply was lost.
                Ok(Some(there)) if there == manifest => Ok((manifest, bytes_written)),
                _ => Err(e),
            },
        }
    }

    /// Removes checkpoints no longer kept, and lets every committer remove
    /// what only they needed.
    async fn clean_up(&self, epoch: u64) -> Result<()> {
        self.store.remove_old(epoch).await?;
        for (who, committer) in &self.committers {
            let kept: Vec<&serde_json::Value> = self
                .kept
                .iter()
                .filter_map(|m| who.entry(m).map(|e| &e.meta))
                .collect();
            committer.clean_up(epoch, &kept).await?;
        }
        Ok(())
    }
}

/// The commit point of `manifest`.
fn point_of(manifest: &Manifest) -> CommitPoint {
    CommitPoint {
        epoch: manifest.epoch,
        created_at: manifest.created_at.clone(),
        generation: manifest.generation.clone(),
    }
}

/// Retrying a checkpoint whose store fails: backoff from 1 s doubling to
/// 30 s, every failure logged, until `retry_for` has passed.
struct Retry<'m> {
    epoch: u64,
    started: tokio::time::Instant,
    retry_for: Duration,
    attempts: u32,
    metrics: &'m CheckpointMetrics,
}

impl<'m> Retry<'m> {
    fn new(epoch: u64, retry_for: Duration, metrics: &'m CheckpointMetrics) -> Self {
        Self {
            epoch,
            started: tokio::time::Instant::now(),
            retry_for,
            attempts: 0,
            metrics,
        }
    }

    /// Waits before the next attempt after `error` in step `what`, or gives
    /// the error back when it is not a store failure or time is up.
    async fn after(&mut self, error: EngineError, what: &str) -> Result<()> {
        self.metrics.failed();
        let retryable = matches!(error, EngineError::Store { .. });
        let elapsed = self.started.elapsed();
        if !retryable || elapsed >= self.retry_for {
            tracing::error!(
                epoch = self.epoch, attempts = self.attempts + 1, error = %Chain(&error),
                "checkpoint failed {what}; stopping the job (retried for {:?}, --checkpoint-retry-for {:?})",
                elapsed, self.retry_for
            );
            return Err(error);
        }
        let backoff =
            Duration::from_secs(1u64 << self.attempts.min(5)).min(Duration::from_secs(30));
        let backoff = backoff
            .min(self.retry_for.saturating_sub(elapsed))
            .max(Duration::from_millis(100));
        self.attempts += 1;
        tracing::warn!(
            epoch = self.epoch, attempt = self.attempts, error = %Chain(&error), retry_in = ?backoff,
            "checkpoint failed {what}; retrying (the job goes on reading; output waits for this checkpoint)"
        );
        tokio::time::sleep(backoff).await;
        Ok(())
    }
}

/// How the periodic checkpoints talk to the sources: the coordinator raises
/// `requested`; each source puts `Barrier(epoch)` in its stream after the
/// data before it, and every participant reports its snapshot there.
#[derive(Debug, Clone, Default)]
pub struct BarrierRequests {
    /// The newest epoch asked for.
    pub requested: Arc<AtomicU64>,
}

/// Runs periodic checkpoints until every reporter is gone: asks for a
/// barrier each `interval` (one checkpoint at a time), and completes a
/// checkpoint once all `participants` reported for it. Returns the
/// coordinator and the epoch of a checkpoint left incomplete (the final
/// checkpoint comes after it; participants keep what they prepared for it
/// until a later commit).
///
/// A checkpoint that still fails after `retry_for` calls `on_fatal` (which
/// stops the job) and returns that error.
pub async fn run_periodic(
    mut coordinator: Coordinator,
    interval: Duration,
    retry_for: Duration,
    barriers: BarrierRequests,
    mut reports: mpsc::UnboundedReceiver<Report>,
    participants: usize,
    on_fatal: impl FnOnce(),
) -> Result<(Coordinator, Option<u64>)> {
    let mut ticker = tokio::time::interval(interval);
    // A checkpoint slower than the interval is followed by one a full interval later, not a burst.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate; the first checkpoint waits an interval
    let mut in_flight: Option<(u64, Vec<(Participant, Snapshot)>)> = None;
    loop {
        tokio::select! {
            _ = ticker.tick(), if in_flight.is_none() => {
                let epoch = coordinator.next_epoch();
                coordinator.barrier_requested();
                barriers.requested.store(epoch, Ordering::Release);
                in_flight = Some((epoch, Vec::new()));
            }
            report = reports.recv() => {
                let Some(report) = report else { break };
                let Some((epoch, gathered)) = in_flight.as_mut() else {
                    continue;
                };
                if report.epoch != *epoch {
                    continue;
                }
                gathered.push((report.from, report.snapshot));
                if gathered.len() == participants {
                    let (epoch, gathered) = in_flight.take().expect("in flight");
                    if let Err(e) = coordinator.complete(epoch, gathered, retry_for).await {
                        on_fatal();
                        return Err(e);
                    }
                }
            }
        }
    }
    Ok((coordinator, in_flight.map(|(epoch, _)| epoch)))
}
