//! The Kafka source: a reader of one topic (assign, poll, positions), its
//! dead-letter topic, and where its offsets go once a checkpoint covers
//! them; with `--scale-out`, the partitions shared with other processes
//! through the group.

mod commit;
mod config;
mod dlq;
mod group;
mod reader;

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use engine_sql::TableDef;

pub(crate) use commit::{KafkaPositions, OffsetCommitter};
pub use config::KafkaSourceConfig;
pub(crate) use dlq::{DeadLetters, MAX_DEAD_LETTER_PAYLOAD};
pub(crate) use group::{committed_offsets, end_offsets, GroupCommits, GroupEvent, GroupMember};
pub(crate) use reader::KafkaReader;
pub use reader::CONSUMER_DEFAULTS;

use super::{OpenedSource, ReadOptions, SourceContext, SourceSpec};
use crate::error::{EngineError, Result};
use crate::kafka::transaction::{SharedTransaction, RESOURCE};

/// The [`Resources`](crate::resources::Resources) key of the scale-out
/// group's [`GroupCommits`], through which lanes hand their offsets to the member.
pub const GROUP_COMMITS: &str = "kafka.group_commits";

/// `connector = 'kafka'`: checks a source table's options.
pub fn spec(file: &str, table: &TableDef) -> Result<Box<dyn SourceSpec>> {
    let at = |e| crate::connector::option_error(file, table, e);
    let config = KafkaSourceConfig::from_table(table).map_err(at)?;
    crate::kafka::check_properties(file, table, &config.client)?;
    Ok(Box::new(config))
}

#[async_trait::async_trait]
impl SourceSpec for KafkaSourceConfig {
    fn describe(&self) -> String {
        format!(
            "kafka topic `{}` on {} (group {})",
            self.topic, self.client.bootstrap_servers, self.group_id
        )
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn read_options(&self) -> &ReadOptions {
        &self.read
    }

    async fn committed(&self, lane: Option<i32>) -> Result<BTreeMap<i32, i64>> {
        let config = self.clone();
        tokio::task::spawn_blocking(move || committed_offsets(&config, lane))
            .await
            .map_err(|e| EngineError::Internal(format!("reading committed offsets: {e}")))?
    }

    async fn open(&self, ctx: SourceContext<'_>) -> Result<OpenedSource> {
        let committer = match (
            ctx.resources.get::<SharedTransaction>(RESOURCE),
            ctx.resources.get::<GroupCommits>(GROUP_COMMITS),
        ) {
            (Some(t), _) => OffsetCommitter::InTransaction(t),
            (None, Some(commits)) if ctx.lane.is_some() => {
                OffsetCommitter::Lane((*commits).clone())
            }
            _ => {
                let config = self.clone();
                tokio::task::spawn_blocking(move || OffsetCommitter::direct(&config))
                    .await
                    .map_err(|e| EngineError::Internal(format!("opening a Kafka client: {e}")))??
            }
        };
        let committer = Arc::new(committer);
        let dead_letters = {
            let (client, topic) = (self.client.clone(), self.dlq_topic.clone());
            tokio::task::spawn_blocking(move || DeadLetters::new(&client, &topic))
                .await
                .map_err(|e| {
                    EngineError::Internal(format!("opening a dead-letter producer: {e}"))
                })??
        };
        let reader = KafkaReader::new(
            self.clone(),
            ctx.start.unwrap_or(self.startup),
            ctx.bounded,
            ctx.lane,
            Arc::clone(&committer),
        );
        Ok(OpenedSource {
            reader: Box::new(reader),
            dead_letters: Arc::new(dead_letters),
            committer,
        })
    }
}
