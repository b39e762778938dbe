//! Where a Kafka source's positions go: into checkpoints, and to the
//! consumer group once a checkpoint covering them is written. The group's
//! offsets are committed in one of three ways, all here:
//! - directly, by a client of the group (a job run whole);
//! - through the group member (`--scale-out`: only a member may commit);
//! - in the checkpoint's Kafka transaction (`exactly_once` sinks).

use std::collections::BTreeMap;
use std::sync::Arc;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::config::KafkaSourceConfig;
use super::group::GroupCommits;
use crate::checkpoint::{CommitPoint, Committer, Manifest, Snapshot};
use crate::error::{Chain, EngineError, Result};
use crate::kafka::transaction::{Part, SharedTransaction, SourceOffsets};
use crate::kafka::ConsumerLogs;
use crate::source::SourceState;

/// A Kafka reader's positions in a checkpoint (the `positions` of its
/// [`SourceState`]): the next offset to read per partition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KafkaPositions {
    /// The topic read.
    pub topic: String,
    /// The next offset to read, per partition.
    pub offsets: BTreeMap<i32, i64>,
}

impl KafkaPositions {
    /// The positions in a source snapshot (`None` if it holds none).
    pub fn from_snapshot(snapshot: &Snapshot) -> Result<Option<Self>> {
        match SourceState::from_snapshot(snapshot)? {
            Some(state) => Self::from_state(&state).map(Some),
            None => Ok(None),
        }
    }

    fn from_state(state: &SourceState) -> Result<Self> {
        serde_json::from_value(state.positions.clone()).map_err(|e| {
            EngineError::Execution(format!(
                "checkpointed Kafka positions do not read back: {e}"
            ))
        })
    }

    /// Source table `table`'s positions in `manifest`, if it has an entry.
    pub fn in_manifest(manifest: &Manifest, table: &str) -> Option<Self> {
        Self::from_state(&SourceState::in_manifest(manifest, table)?).ok()
    }

    fn as_offsets(&self) -> SourceOffsets {
        BTreeMap::from([(self.topic.clone(), self.offsets.clone())])
    }
}

/// How the group's offsets are committed.
#[derive(Clone)]
pub enum OffsetCommitter {
    /// By a client of the group (not a member: the source assigns partitions itself).
    Direct {
        /// The group's client.
        consumer: Arc<BaseConsumer<ConsumerLogs>>,
        /// Its group id, for messages.
        group: String,
    },
    /// By the group member of `--scale-out`.
    Lane(GroupCommits),
    /// In the checkpoint's transaction, with the `exactly_once` sinks' records.
    InTransaction(Arc<SharedTransaction>),
}

impl OffsetCommitter {
    /// A direct committer for `config`'s group.
    pub fn direct(config: &KafkaSourceConfig) -> Result<Self> {
        let consumer = super::group::group_client(config)?;
        Ok(Self::Direct {
            consumer: Arc::new(consumer),
            group: config.group_id.clone(),
        })
    }

    /// Commits `positions` to the group now (a run without checkpoints, once
    /// every sink fed by the source has flushed). Blocks on the broker.
    pub fn commit_now(&self, positions: &KafkaPositions) -> Result<()> {
        match self {
            Self::Direct { consumer, group } => {
                let mut tpl = TopicPartitionList::new();
                for (&p, &next) in &positions.offsets {
                    tpl.add_partition_offset(&positions.topic, p, Offset::Offset(next))
                        .map_err(|e| {
                            EngineError::kafka(format!("offset list for `{}`", positions.topic), e)
                        })?;
                }
                (consumer.context().hooks).keep_signed_in(consumer.client())?;
                consumer.commit(&tpl, CommitMode::Sync).map_err(|e| {
                    EngineError::kafka(
                        format!(
                            "committing offsets of `{}` for group `{group}`",
                            positions.topic
                        ),
                        e,
                    )
                })
            }
            Self::Lane(commits) => {
                commits.record(&positions.offsets);
                Ok(())
            }
            Self::InTransaction(_) => Err(EngineError::Internal(
                "offsets in a transaction are committed by checkpoints only".into(),
            )),
        }
    }
}

#[async_trait::async_trait]
impl Committer for OffsetCommitter {
    /// The checkpoint is what restores; the group's offsets show progress
    /// (lag) and tell a later start that the job has run. A direct commit
    /// that fails is logged, and the next checkpoint's commits it again.
    async fn commit(&self, point: &CommitPoint, snapshot: &Snapshot) -> Result<()> {
        let Some(positions) = KafkaPositions::from_snapshot(snapshot)? else {
            return Ok(());
        };
        if let Self::InTransaction(transaction) = self {
            let part = Part::Offsets {
                offsets: positions.as_offsets(),
                previous: None,
            };
            return transaction.hand_over(point, part, false).await;
        }
        let this = self.clone();
        let result = tokio::task::spawn_blocking(move || this.commit_now(&positions))
            .await
            .map_err(|e| EngineError::Internal(format!("committing offsets: {e}")))?;
        if let Err(e) = result {
            tracing::warn!(epoch = point.epoch, error = %Chain(&e), "committing group offsets; the next checkpoint commits them again");
        }
        Ok(())
    }

    /// In a transaction, the restored checkpoint's offsets go into the
    /// decision whether its transaction committed; otherwise nothing: the
    /// next checkpoint commits the offsets.
    async fn recover(
        &self,
        restored: Option<(&CommitPoint, &Snapshot)>,
        previous: Option<(&CommitPoint, &Snapshot)>,
    ) -> Result<()> {
        let (Self::InTransaction(transaction), Some((point, snapshot))) = (self, restored) else {
            return Ok(());
        };
        let Some(positions) = KafkaPositions::from_snapshot(snapshot)? else {
            return Ok(());
        };
        let previous = match previous {
            Some((_, p)) => KafkaPositions::from_snapshot(p)?.map(|p| p.as_offsets()),
            None => None,
        };
        let part = Part::Offsets {
            offsets: positions.as_offsets(),
            previous,
        };
        transaction.hand_over(point, part, true).await
    }
}
