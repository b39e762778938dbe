//! The checkpoint coordinator: asks the sources for barriers, gathers what
//! every source and statement reports at a barrier, writes the checkpoint,
//! and then publishes what it covers: the lake files, and the records of
//! `exactly_once` Kafka sinks in one transaction.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;

use super::manifest::{Manifest, SinkState, StatementState};
use super::store::{CheckpointStore, KEPT};
use super::{batches_to_ipc, SourcePositions};
use crate::error::{EngineError, Result};
use crate::metrics::Metrics;
use crate::sink::kafka::{CheckpointMark, Recovery, Transactions};
use crate::sink::lake::staging;
use crate::sink::lake::store::Location;

/// What one statement contributes to a checkpoint.
#[derive(Debug, Default, Clone)]
pub struct StatementSnapshot {
    /// The statement's index in the job.
    pub statement: usize,
    /// Its operator's watermark and open windows' state rows.
    pub watermark: Option<i64>,
    /// Open windows' accumulator rows.
    pub windows: Vec<RecordBatch>,
    /// Its lake sinks' states, by sink table name.
    pub sinks: BTreeMap<String, SinkState>,
    /// Its `exactly_once` Kafka sinks' rows since the last checkpoint, by sink table name.
    pub records: BTreeMap<String, Vec<RecordBatch>>,
}

/// A report at a barrier.
#[derive(Debug)]
pub enum Report {
    /// A source's position at barrier `epoch`: topic, next offset and
    /// event-time clock per partition.
    Source(u64, String, BTreeMap<i32, i64>, BTreeMap<i32, i64>),
    /// A statement's state at barrier `epoch`.
    Statement(u64, StatementSnapshot),
}

/// Writes checkpoints of one job.
pub struct Coordinator {
    store: CheckpointStore,
    fingerprint: String,
    /// Lake sinks: their table's store, by sink table name.
    lake: BTreeMap<String, Location>,
    /// The newest complete checkpoints, oldest first.
    kept: Vec<Manifest>,
    /// The epoch the next checkpoint gets.
    next_epoch: u64,
    /// Where the newest complete epoch is shown (`last_checkpoint`).
    metrics: Arc<Metrics>,
    /// The state dir's generation, written into every manifest.
    generation: String,
    /// The names this job's lake files carry (lane and generation, see
    /// `staging::scope`): garbage collection touches these only.
    scope: String,
    /// The next checkpoint is taken at the end of a bounded input.
    finished: bool,
    /// With `exactly_once` Kafka sinks: the job's transactional producer.
    transactions: Option<Arc<Transactions>>,
}

impl Coordinator {
    /// A coordinator writing to `store`, continuing after `restored` if any,
    /// for lane `lane` of the job (empty: the whole job) in state-dir
    /// generation `generation`.
    pub fn new(
        store: CheckpointStore,
        fingerprint: String,
        lake: BTreeMap<String, Location>,
        restored: Option<Manifest>,
        metrics: Arc<Metrics>,
        lane: &str,
        generation: &str,
    ) -> Self {
        let next_epoch = restored.as_ref().map_or(1, |m| m.epoch + 1);
        Self {
            store,
            fingerprint,
            lake,
            kept: restored.into_iter().collect(),
            next_epoch,
            metrics,
            generation: generation.to_string(),
            scope: staging::scope(lane, generation),
            finished: false,
            transactions: None,
        }
    }

    /// Sends the records of `exactly_once` Kafka sinks, with the source
    /// offsets, in one transaction per checkpoint through `transactions`.
    pub fn with_transactions(mut self, transactions: Transactions) -> Self {
        self.transactions = Some(Arc::new(transactions));
        self
    }

    /// The state directory.
    pub fn store(&self) -> &CheckpointStore {
        &self.store
    }

    /// Marks the next checkpoint as taken at the end of a bounded input.
    pub fn finish_input(&mut self) {
        self.finished = true;
    }

    /// The epoch the next checkpoint will get.
    pub fn next_epoch(&self) -> u64 {
        self.next_epoch
    }

    /// Writes checkpoint `epoch` from the sources' offsets and the statements'
    /// snapshots, then publishes the lake files it covers, commits its
    /// transaction, and removes what no kept checkpoint needs.
    ///
    /// A state dir or lake that fails is retried with backoff (each failure
    /// logged and counted in `checkpoint_failures`) for up to `retry_for`;
    /// the data flow goes on meanwhile, and once the store is back the same
    /// checkpoint completes and publishes everything staged since. Past the
    /// bound the error is returned and the job stops. A fenced manifest
    /// (another writer) or a failed transaction is returned at once.
    pub async fn complete(
        &mut self,
        epoch: u64,
        sources: SourcePositions,
        snapshots: Vec<StatementSnapshot>,
        retry_for: Duration,
    ) -> Result<()> {
        let manifest = Manifest {
            epoch,
            job_fingerprint: self.fingerprint.clone(),
            generation: self.generation.clone(),
            created_at: chrono::Utc::now().to_rfc3339(),
            offsets: sources.offsets,
            watermarks: sources.watermarks,
            finished: self.finished,
            ..Default::default()
        };
        let mut records: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
        for s in &snapshots {
            for (name, rows) in &s.records {
                records
                    .entry(name.clone())
                    .or_default()
                    .extend(rows.iter().cloned());
            }
        }
        let mut retry = Retry::new(epoch, retry_for, &self.metrics);
        let manifest = loop {
            match self.write(manifest.clone(), &snapshots, &records).await {
                Ok(written) => break written,
                Err(e) => retry.after(e, "writing the checkpoint").await?,
            }
        };
        tracing::debug!(state_dir = %self.store.url(), epoch, "checkpoint complete");
        while let Err(e) = self.publish(&manifest).await {
            retry.after(e, "publishing its lake files").await?;
        }
        self.commit_transaction(&manifest, records).await?;
        self.metrics.last_checkpoint.store(epoch, Ordering::Relaxed);
        self.next_epoch = self.next_epoch.max(epoch + 1);
        self.kept.push(manifest);
        if self.kept.len() > KEPT {
            self.kept.remove(0);
        }
        // Clean-up only: what is left now goes with a later checkpoint's.
        if let Err(e) = self.clean_up(epoch).await {
            tracing::warn!(state_dir = %self.store.url(), epoch, error = %e, "removing old checkpoints and staged files; retried after the next checkpoint");
        }
        Ok(())
    }

    /// Writes the checkpoint's state files and then its manifest (the commit
    /// point); returns the manifest written. Safe to repeat after a failure:
    /// a manifest this coordinator wrote in an attempt whose reply was lost
    /// counts as written.
    async fn write(
        &self,
        mut manifest: Manifest,
        snapshots: &[StatementSnapshot],
        records: &BTreeMap<String, Vec<RecordBatch>>,
    ) -> Result<Manifest> {
        let epoch = manifest.epoch;
        for s in snapshots {
            let windows = match batches_to_ipc(&s.windows)? {
                Some(bytes) => Some(
                    self.store
                        .write(epoch, &format!("statement-{}.arrow", s.statement), bytes)
                        .await?,
                ),
                None => None,
            };
            manifest.statements.insert(
                s.statement,
                StatementState {
                    watermark: s.watermark,
                    windows,
                },
            );
            manifest.sinks.extend(s.sinks.clone());
        }
        for (name, rows) in records {
            if let Some(bytes) = batches_to_ipc(rows)? {
                let file = format!("transaction-{name}.arrow");
                let file = self.store.write(epoch, &file, bytes).await?;
                manifest.transaction.insert(name.clone(), file);
            }
        }
        match self.store.commit(&manifest).await {
            Ok(()) => Ok(manifest),
            Err(e) => match self.store.manifest(epoch).await {
                // Our own manifest from an attempt whose reply was lost.
                Ok(Some(there)) if there == manifest => Ok(manifest),
                _ => Err(e),
            },
        }
    }

    /// Removes checkpoints no longer kept and staged objects none needs.
    async fn clean_up(&self, epoch: u64) -> Result<()> {
        self.store.remove_old(epoch).await?;
        for (name, location) in &self.lake {
            let states: Vec<&SinkState> =
                self.kept.iter().filter_map(|m| m.sinks.get(name)).collect();
            staging::remove_garbage(location, &states, epoch, &self.scope).await?;
        }
        Ok(())
    }

    /// Makes the lake files of `manifest` visible (again: it is idempotent).
    pub async fn publish(&self, manifest: &Manifest) -> Result<()> {
        for (name, state) in &manifest.sinks {
            if let Some(location) = self.lake.get(name) {
                staging::publish(location, name, &state.publish).await?;
            }
        }
        Ok(())
    }

    /// Sends `records` and `manifest`'s offsets in the checkpoint's transaction.
    async fn commit_transaction(
        &self,
        manifest: &Manifest,
        records: BTreeMap<String, Vec<RecordBatch>>,
    ) -> Result<()> {
        let Some(transactions) = &self.transactions else {
            return Ok(());
        };
        let transactions = Arc::clone(transactions);
        let mark = mark_of(manifest);
        let offsets = manifest.offsets.clone();
        let sent = blocking(move || transactions.publish(&mark, &records, &offsets)).await?;
        Metrics::add(&self.metrics.rows_out, sent);
        Ok(())
    }

    /// After a crash between writing checkpoint `manifest` and committing its
    /// transaction: sends the transaction again, from the checkpoint, unless
    /// the consumer group shows it committed.
    pub async fn recover_transaction(&self, manifest: &Manifest) -> Result<()> {
        let Some(transactions) = &self.transactions else {
            return Ok(());
        };
        let mark = mark_of(manifest);
        let group = {
            let (t, offsets) = (Arc::clone(transactions), manifest.offsets.clone());
            blocking(move || t.group_commit(&offsets)).await?
        };
        let previous = self.store.latest_before(manifest.epoch).await?;
        let recovery = Recovery::decide(
            &mark,
            &manifest.offsets,
            !manifest.transaction.is_empty(),
            previous.as_ref().map(|p| &p.offsets),
            &group,
        );
        match recovery {
            Recovery::Committed => return Ok(()),
            Recovery::LaterCommitted(epoch) => {
                return Err(EngineError::Execution(format!(
                    "state dir {}: the consumer group's offsets were committed by the transaction of \
                     checkpoint {epoch}, but the newest intact checkpoint is {}: that transaction's records \
                     are in the topic already and would be sent twice. Exactly-once cannot be kept; \
                     start over with a new state dir and group, or use sink.commit_mode = 'at_least_once'",
                    self.store.url(),
                    manifest.epoch
                )))
            }
            Recovery::SendAgain => {}
        }
        let mut records = BTreeMap::new();
        for (name, file) in &manifest.transaction {
            records.insert(
                name.clone(),
                super::batches_from_ipc(self.store.read(file).await?)?,
            );
        }
        self.commit_transaction(manifest, records).await?;
        tracing::info!(
            epoch = manifest.epoch,
            "transaction of the restored checkpoint sent again (a crash cut it short)"
        );
        Ok(())
    }
}

/// Retrying a checkpoint whose store fails: backoff from 1 s doubling to
/// 30 s, every failure logged, until `retry_for` has passed.
struct Retry<'m> {
    epoch: u64,
    started: tokio::time::Instant,
    retry_for: Duration,
    attempts: u32,
    metrics: &'m Metrics,
}

impl<'m> Retry<'m> {
    fn new(epoch: u64, retry_for: Duration, metrics: &'m Metrics) -> Self {
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
        Metrics::add(&self.metrics.checkpoint_failures, 1);
        let retryable = matches!(error, EngineError::Store(_));
        let elapsed = self.started.elapsed();
        if !retryable || elapsed >= self.retry_for {
            tracing::error!(
                epoch = self.epoch, attempts = self.attempts + 1, error = %error,
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
            epoch = self.epoch, attempt = self.attempts, error = %error, retry_in = ?backoff,
            "checkpoint failed {what}; retrying (the job goes on reading; output waits for this checkpoint)"
        );
        tokio::time::sleep(backoff).await;
        Ok(())
    }
}

/// The mark a checkpoint's transaction leaves in the group's offsets.
fn mark_of(manifest: &Manifest) -> CheckpointMark {
    CheckpointMark {
        epoch: manifest.epoch,
        created_at: manifest.created_at.clone(),
    }
}

/// Runs a blocking Kafka call off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Internal(format!("a Kafka transaction step panicked: {e}")))?
}

/// Runs periodic checkpoints until every reporter is gone: raises
/// `requested` each `interval` (one checkpoint at a time), and completes a
/// checkpoint once all `sources` and `statements` reported for it. Returns
/// the coordinator, and the epoch and snapshots of a checkpoint left
/// incomplete (the final checkpoint must come after it and carry their staged files).
///
/// A checkpoint that still fails after `retry_for` sets `stop`, so the job
/// stops with that error instead of running on without checkpoints.
#[allow(clippy::too_many_arguments)]
pub async fn run_periodic(
    mut coordinator: Coordinator,
    interval: Duration,
    retry_for: Duration,
    requested: Arc<AtomicU64>,
    completed: Arc<AtomicU64>,
    mut reports: mpsc::UnboundedReceiver<Report>,
    sources: usize,
    statements: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<(Coordinator, Option<u64>, Vec<StatementSnapshot>)> {
    let mut ticker = tokio::time::interval(interval);
    // A checkpoint slower than the interval is followed by one a full interval later, not a burst.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate; the first checkpoint waits an interval
    let mut in_flight: Option<(u64, SourcePositions, Vec<StatementSnapshot>, usize)> = None;
    loop {
        tokio::select! {
            _ = ticker.tick(), if in_flight.is_none() => {
                let epoch = coordinator.next_epoch();
                requested.store(epoch, Ordering::Release);
                in_flight = Some((epoch, SourcePositions::default(), Vec::new(), 0));
            }
            report = reports.recv() => {
                let Some(report) = report else { break };
                let Some((epoch, positions, snapshots, sources_in)) = in_flight.as_mut() else {
                    continue;
                };
                match report {
                    Report::Source(e, topic, offsets, clocks) if e == *epoch => {
                        positions.watermarks.insert(topic.clone(), clocks);
                        positions.offsets.insert(topic, offsets);
                        *sources_in += 1;
                    }
                    Report::Statement(e, s) if e == *epoch => snapshots.push(s),
                    _ => continue,
                }
                if *sources_in == sources && snapshots.len() == statements {
                    let (epoch, positions, snapshots, _) = in_flight.take().expect("in flight");
                    if let Err(e) = coordinator.complete(epoch, positions, snapshots, retry_for).await {
                        stop.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                    completed.store(epoch, Ordering::Release);
                }
            }
        }
    }
    // Snapshots of a checkpoint the job ended before completing: their staged
    // files were taken out of the sinks and must go into the final checkpoint.
    match in_flight {
        Some((epoch, _, snapshots, _)) => Ok((coordinator, Some(epoch), snapshots)),
        None => Ok((coordinator, None, Vec::new())),
    }
}
