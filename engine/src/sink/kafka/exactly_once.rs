//! What `sink.commit_mode = 'exactly_once'` needs of the whole job: one
//! Kafka transaction per checkpoint, carrying every such sink's records and
//! the sources' consumer-group offsets, so the job has checkpoints, reads
//! only Kafka with one consumer group, runs in one process, and writes to
//! the cluster it reads from.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{CommitMode, KafkaSinkConfig};
use crate::error::{EngineError, Result};
use crate::kafka::transaction::{SharedTransaction, Transactions, RESOURCE};
use crate::sink::{JobContext, SinkSpec};
use crate::source::kafka::KafkaSourceConfig;

/// The Kafka sinks among `sinks` with `sink.commit_mode = 'exactly_once'`, by table name.
pub fn exactly_once_sinks(
    sinks: &BTreeMap<String, Box<dyn SinkSpec>>,
) -> BTreeMap<String, KafkaSinkConfig> {
    sinks
        .iter()
        .filter_map(|(name, sink)| {
            let k = sink.as_any().downcast_ref::<KafkaSinkConfig>()?;
            (k.commit_mode == CommitMode::ExactlyOnce).then(|| (name.clone(), k.clone()))
        })
        .collect()
}

/// Checks that the job can run its `exactly_once` sinks and opens their
/// transaction into `job.resources`, shared with the sources; the first
/// such sink prepared opens it for all.
pub(super) async fn open_transaction(job: &JobContext<'_>) -> Result<()> {
    let fail = |message: String| {
        Err(EngineError::Execution(format!(
            "{}: sink `{}` has sink.commit_mode = 'exactly_once'; {message}",
            job.job, job.table
        )))
    };
    if !job.checkpoints {
        return fail(
            "it needs checkpoints (its records are sent when a checkpoint completes): \
             remove --no-checkpoints"
                .into(),
        );
    }
    if job.lane {
        return fail(
            "--scale-out cannot run it (its transactions commit every partition at once)".into(),
        );
    }
    if job.resources.get::<SharedTransaction>(RESOURCE).is_some() {
        return Ok(()); // opened by the job's first exactly-once sink
    }
    let sinks = exactly_once_sinks(job.sinks);
    let kafka: Vec<&KafkaSourceConfig> = (job.sources.values())
        .filter_map(|s| s.as_any().downcast_ref())
        .collect();
    if kafka.len() != job.sources.len() {
        return fail("its transactions commit the offsets of a Kafka consumer group: every source must be Kafka".into());
    }
    let groups: BTreeSet<&str> = kafka.iter().map(|s| s.group_id.as_str()).collect();
    let Some(source) = kafka.first().filter(|_| groups.len() == 1) else {
        return fail(format!(
            "its transactions commit the offsets of one consumer group, but the sources use {groups:?}"
        ));
    };
    for (name, sink) in &sinks {
        if sink.client.bootstrap_servers != source.client.bootstrap_servers {
            return fail(format!(
                "sink `{name}` writes to {} but the source reads from {}: a transaction \
                 commits the source offsets on the cluster it writes to, so they must be the same",
                sink.client.bootstrap_servers, source.client.bootstrap_servers
            ));
        }
    }
    let participants = sinks.len() + job.sources.len();
    let (client, group) = (source.client.clone(), source.group_id.clone());
    let transactions =
        tokio::task::spawn_blocking(move || Transactions::open(&client, &group, sinks))
            .await
            .map_err(|e| EngineError::Internal(format!("opening the job's transaction: {e}")))??;
    let shared = SharedTransaction::new(transactions, participants, Arc::clone(job.metrics));
    job.resources.insert(RESOURCE, Arc::new(shared));
    Ok(())
}
