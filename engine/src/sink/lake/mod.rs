//! The lake sink: Hive-partitioned Parquet (`table/dt=YYYY-MM-DD/part-....parquet`)
//! on any object store, written the way Athena reads it.
//!
//! With checkpoints its files are staged ([`staging`]) and published by its
//! committer once the checkpoint covering them is written; a restore rolls
//! back what lost checkpoints published and publishes its own again.

mod config;
mod partition;
mod sink;
pub(crate) mod staging;
mod state;

use std::any::Any;
use std::sync::Arc;

use engine_sql::TableDef;
use prometheus::Histogram;

pub use config::{Compression, LakeSinkConfig, PartitionScheme};
pub use sink::{LakeSink, SUCCESS_MARKER};
pub(crate) use state::{LakeState, Publish};

use super::{OpenedSink, SinkContext, SinkSpec, Uncommitted};
use crate::checkpoint::{CommitPoint, Committer, Snapshot};
use crate::error::Result;
use crate::metrics::StagedLatency;
use crate::storage::{self, Location};

/// `connector = 'lake'` or `'filesystem'`: checks a sink table's options.
pub fn spec(file: &str, table: &TableDef) -> Result<Box<dyn SinkSpec>> {
    let config =
        LakeSinkConfig::from_table(table).map_err(|e| super::option_error(file, table, e))?;
    Ok(Box::new(config))
}

#[async_trait::async_trait]
impl SinkSpec for LakeSinkConfig {
    fn describe(&self) -> String {
        format!("parquet under {}", self.path)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn revisions(&self) -> super::Revisions {
        self.revisions
    }

    async fn open(&self, ctx: SinkContext<'_>) -> Result<OpenedSink> {
        let mut sink =
            LakeSink::open(self.clone(), ctx.table.schema(), Arc::clone(&ctx.metrics)).await?;
        // A window starting in a partition (a HOP's, a CUMULATE's, a
        // session's) can close after the partition's end, and its last
        // revision comes its allowed lateness after it closes; the partition
        // is complete only then.
        if let Some(w) = &ctx.window {
            let window_lag = match sink.partition_time_column() {
                Some(engine_sql::WINDOW_START) => w.start_lag_ms(sink.partition_span_ms()),
                _ => 0,
            };
            sink.set_commit_lag(window_lag + ctx.lateness_ms);
        }
        let Some(scope) = ctx.checkpoints else {
            return Ok(OpenedSink {
                sink: Box::new(sink),
                committer: None,
            });
        };
        let uncommitted = Uncommitted::default();
        sink.enable_checkpoints(
            scope.first_epoch,
            &scope.lane,
            &scope.scope,
            uncommitted.clone(),
        );
        let committer = LakeCommitter {
            table: self.table.clone(),
            location: storage::open(&self.path)?,
            scope: scope.scope,
            uncommitted,
            latency: sink.staged_latency(),
        };
        Ok(OpenedSink {
            sink: Box::new(sink),
            committer: Some(Arc::new(committer)),
        })
    }
}

/// A lake sink's commit phase: staged objects published under the table.
struct LakeCommitter {
    table: String,
    location: Location,
    /// Lane and generation: roll-back and garbage collection touch these names only.
    scope: String,
    uncommitted: Uncommitted<Publish>,
    /// When the rows staged at each barrier became due, and where their latency goes.
    latency: (StagedLatency, Histogram),
}

impl LakeCommitter {
    fn state(&self, snapshot: &Snapshot) -> Result<LakeState> {
        if snapshot.meta.is_null() {
            return Ok(LakeState::default());
        }
        snapshot.decode(&format!("lake table `{}`", self.table))
    }
}

#[async_trait::async_trait]
impl Committer for LakeCommitter {
    async fn commit(&self, point: &CommitPoint, snapshot: &Snapshot) -> Result<()> {
        let state = self.state(snapshot)?;
        staging::publish(&self.location, &self.table, &state.publish).await?;
        self.uncommitted.committed(point.epoch);
        Ok(())
    }

    fn visible(&self, epoch: u64) {
        self.latency.0.committed(epoch, &self.latency.1);
    }

    /// Files published by later (lost or damaged) checkpoints of this scope
    /// are removed, the restored checkpoint's own published again (in case a
    /// crash cut that short), and staged leftovers deleted.
    async fn recover(
        &self,
        restored: Option<(&CommitPoint, &Snapshot)>,
        _previous: Option<(&CommitPoint, &Snapshot)>,
    ) -> Result<()> {
        let mut kept = Vec::new();
        if let Some((point, snapshot)) = restored {
            let state = self.state(snapshot)?;
            staging::roll_back_after(&self.location, &self.table, point.epoch, &self.scope).await?;
            staging::publish(&self.location, &self.table, &state.publish).await?;
            kept.push(state);
        }
        let kept: Vec<&LakeState> = kept.iter().collect();
        staging::remove_garbage(&self.location, &kept, u64::MAX, &self.scope).await
    }

    async fn clean_up(&self, epoch: u64, kept: &[&serde_json::Value]) -> Result<()> {
        let states = kept
            .iter()
            .map(|v| self.state(&Snapshot::meta((*v).clone())))
            .collect::<Result<Vec<LakeState>>>()?;
        let states: Vec<&LakeState> = states.iter().collect();
        staging::remove_garbage(&self.location, &states, epoch, &self.scope).await
    }
}
