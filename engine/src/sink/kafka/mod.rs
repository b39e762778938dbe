//! The Kafka sink: one JSON record per row, keyed, timestamped; idempotent,
//! or transactional (`sink.commit_mode = 'exactly_once'`, see
//! [`crate::kafka::transaction`]).

mod config;
mod exactly_once;
mod sink;

use std::any::Any;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use engine_sql::TableDef;
use prometheus::Histogram;

pub use config::{CommitMode, KafkaSinkConfig};
pub use exactly_once::exactly_once_sinks;
pub use sink::{EncodedRows, KafkaSink};

use super::{JobContext, OpenedSink, SinkContext, SinkSpec, Uncommitted};
use crate::checkpoint::{CommitPoint, Committer, Snapshot};
use crate::error::{EngineError, Result};
use crate::kafka::transaction::{Part, SharedTransaction, RESOURCE};
use crate::metrics::StagedLatency;

/// `connector = 'kafka'`: checks a sink table's options.
pub fn spec(file: &str, table: &TableDef) -> Result<Box<dyn SinkSpec>> {
    let at = |e| super::option_error(file, table, e);
    let config = KafkaSinkConfig::from_table(table).map_err(at)?;
    crate::kafka::check_properties(file, table, &config.client)?;
    Ok(Box::new(config))
}

#[async_trait::async_trait]
impl SinkSpec for KafkaSinkConfig {
    fn describe(&self) -> String {
        format!(
            "kafka topic `{}` on {}",
            self.topic, self.client.bootstrap_servers
        )
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn revisions(&self) -> super::Revisions {
        self.revisions
    }

    /// `exactly_once`: checks the job can run it and opens the job's
    /// transaction (once, for every such sink: see [`exactly_once`]).
    async fn prepare(&self, job: &JobContext<'_>) -> Result<()> {
        match self.commit_mode {
            CommitMode::AtLeastOnce => Ok(()),
            CommitMode::ExactlyOnce => exactly_once::open_transaction(job).await,
        }
    }

    async fn open(&self, ctx: SinkContext<'_>) -> Result<OpenedSink> {
        let uncommitted = Uncommitted::default();
        let staged = StagedLatency::default();
        let metrics = ctx.metrics.sink(&ctx.table.name);
        let committer: Option<Arc<dyn Committer>> = match self.commit_mode {
            CommitMode::AtLeastOnce => None,
            CommitMode::ExactlyOnce => {
                let transaction = ctx
                    .resources
                    .get::<SharedTransaction>(RESOURCE)
                    .ok_or_else(|| {
                        EngineError::Internal(format!(
                            "exactly-once sink `{}` opened without the job's transaction",
                            ctx.table.name
                        ))
                    })?;
                Some(Arc::new(TransactionCommitter {
                    sink: ctx.table.name.clone(),
                    transaction,
                    uncommitted: uncommitted.clone(),
                    latency: (staged.clone(), metrics.emit_latency.clone()),
                }))
            }
        };
        let config = self.clone();
        let sink = tokio::task::spawn_blocking(move || {
            KafkaSink::new(config, metrics, uncommitted, staged)
        })
        .await
        .map_err(|e| EngineError::Internal(format!("opening a Kafka sink: {e}")))??;
        Ok(OpenedSink {
            sink: Box::new(sink),
            committer,
        })
    }
}

/// An `exactly_once` sink's commit phase: its rows into the checkpoint's transaction.
struct TransactionCommitter {
    sink: String,
    transaction: Arc<SharedTransaction>,
    uncommitted: Uncommitted<RecordBatch>,
    /// When the rows staged at each barrier became due, and where their latency goes.
    latency: (StagedLatency, Histogram),
}

impl TransactionCommitter {
    /// Hands the rows prepared after barrier `visible` over to the transaction of `point`.
    async fn hand_over(
        &self,
        point: &CommitPoint,
        snapshot: &Snapshot,
        visible: u64,
        recovering: bool,
    ) -> Result<()> {
        // Rows up to `visible` were sent by an earlier checkpoint's transaction.
        let rows = super::rows_after(snapshot, visible, &self.sink, point.epoch)?;
        let part = Part::Records {
            sink: self.sink.clone(),
            rows,
        };
        self.transaction.hand_over(point, part, recovering).await?;
        self.uncommitted.committed(point.epoch);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Committer for TransactionCommitter {
    async fn commit(&self, point: &CommitPoint, snapshot: &Snapshot) -> Result<()> {
        let visible = self.uncommitted.committed_through();
        self.hand_over(point, snapshot, visible, false).await
    }

    /// The transaction went out with the checkpoint's last part.
    fn visible(&self, epoch: u64) {
        self.latency.0.committed(epoch, &self.latency.1);
    }

    /// Rows prepared at or before the checkpoint before the restored one were
    /// sent by that checkpoint's transaction (its manifest is complete, and a
    /// later checkpoint is written only after an earlier one's commit).
    async fn recover(
        &self,
        restored: Option<(&CommitPoint, &Snapshot)>,
        previous: Option<(&CommitPoint, &Snapshot)>,
    ) -> Result<()> {
        match restored {
            Some((point, snapshot)) => {
                let visible = previous.map_or(0, |(p, _)| p.epoch);
                self.hand_over(point, snapshot, visible, true).await
            }
            None => Ok(()),
        }
    }
}

/// The topic a sink spec writes, if it is a Kafka sink.
pub fn topic_of(spec: &dyn SinkSpec) -> Option<&str> {
    spec.as_any()
        .downcast_ref::<KafkaSinkConfig>()
        .map(|c| c.topic.as_str())
}
