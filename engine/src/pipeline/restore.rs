//! The state dir at start: the newest usable checkpoint, or a new
//! generation; refused when starting without one would lose trades.

use std::collections::BTreeMap;

use super::{lanes, CheckpointOptions, Job, Lane};
use crate::checkpoint::{CheckpointStore, Manifest};
use crate::error::{EngineError, Result};
use crate::sink::lake::staging;
use crate::source::kafka::KafkaPositions;

/// What the state dir gave: the checkpoint to continue from, if any.
pub(super) struct StateAtStart {
    /// The state directory.
    pub store: CheckpointStore,
    /// The newest complete checkpoint.
    pub manifest: Option<Manifest>,
    /// The state dir's generation (the checkpoint's, or a new one).
    pub generation: String,
}

impl Job {
    /// Opens the state directory and its newest complete checkpoint; later
    /// (damaged or interrupted) checkpoints are discarded, their epochs are
    /// written again. `reset`: every checkpoint is discarded and a new
    /// generation begins. Without a usable checkpoint, a consumer group that
    /// has committed offsets is an error: starting from them would publish
    /// windows and lake files without the trades read before them.
    pub(super) async fn open_state(
        &self,
        options: &CheckpointOptions,
        reset: bool,
        lane_of: Option<&Lane>,
    ) -> Result<StateAtStart> {
        let store = CheckpointStore::open(&options.state_dir)?;
        let (manifest, damaged) = if reset {
            store.discard_all().await?;
            tracing::warn!(state_dir = %options.state_dir, "--reset: checkpoints discarded; the job starts over");
            (None, Vec::new())
        } else {
            store.newest().await?
        };
        if let Some(m) = &manifest {
            self.check_restorable(&options.state_dir, m)?;
        } else if !reset {
            self.refuse_partial_start(&options.state_dir, &damaged, lane_of)
                .await?;
        } else if lane_of.is_none() {
            // Lanes of an earlier --scale-out run must not restore into the new start.
            for config in self.kafka_sources().values() {
                store.discard_lanes(&config.topic).await?;
            }
        }
        store
            .discard_after(manifest.as_ref().map_or(0, |m| m.epoch))
            .await?;
        let generation = match &manifest {
            Some(m) => {
                tracing::info!(state_dir = %options.state_dir, epoch = m.epoch, generation = %m.generation, "restoring from checkpoint");
                m.generation.clone()
            }
            None => {
                let g = staging::new_generation();
                tracing::info!(state_dir = %options.state_dir, generation = %g, "no checkpoint: starting a new generation");
                g
            }
        };
        Ok(StateAtStart {
            store,
            manifest,
            generation,
        })
    }

    /// Refuses a checkpoint of another job or format.
    fn check_restorable(&self, state_dir: &str, m: &Manifest) -> Result<()> {
        if let Err(why) = m.check_version() {
            return Err(EngineError::Execution(format!(
                "state dir {state_dir}: checkpoint {} cannot be restored: {why}",
                m.epoch
            )));
        }
        if m.job_fingerprint != self.fingerprint() {
            return Err(EngineError::Execution(format!(
                "state dir {state_dir} holds checkpoints of a different job (or an older version of it), \
                 whose windows and open files cannot be restored into this one. Run this job with the \
                 state dir of its own version, or start it over with --reset --start \
                 earliest|latest|group-offsets|<RFC 3339 time> (the lake keeps what was published; \
                 see README, \"Starting over\")"
            )));
        }
        Ok(())
    }

    /// Fails when the job would start without a checkpoint although it has
    /// run before: some checkpoints are damaged, or the consumer group has
    /// committed offsets (a lane: on its partition), which lie past the
    /// trades of the windows and lake files that were open then.
    async fn refuse_partial_start(
        &self,
        state_dir: &str,
        damaged: &[(u64, String)],
        lane: Option<&Lane>,
    ) -> Result<()> {
        let partition = lane.map(|l| l.partition);
        let kafka = self.kafka_sources();
        let mut committed = Vec::new();
        for (table, spec) in &self.sources {
            let offsets = spec.committed(partition).await?;
            // Scale-out hands over between lanes through the group's offsets (Kafka only).
            let topic = kafka.get(table).map(|k| k.topic.as_str());
            if let (true, Some(topic)) = (damaged.is_empty(), topic) {
                if handed_over(state_dir, lane, table, topic, &offsets).await {
                    continue;
                }
            }
            if !offsets.is_empty() {
                committed.push(format!(
                    "source `{table}` ({}) has committed offsets ({})",
                    spec.describe(),
                    offsets
                        .iter()
                        .map(|(p, o)| format!("partition {p} at {o}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        if damaged.is_empty() && committed.is_empty() {
            return Ok(()); // a first run
        }
        let mut why: Vec<String> = damaged
            .iter()
            .map(|(epoch, reason)| format!("checkpoint {epoch} is damaged ({reason})"))
            .collect();
        if damaged.is_empty() {
            why.push("it holds no complete checkpoint".into());
        }
        why.extend(committed);
        Err(EngineError::Execution(format!(
            "state dir {state_dir} has no usable checkpoint of {}, but the job has run before: {}. \
             Starting from the group's offsets would publish candles and lake files without the \
             trades read before them. Either restore: run with --state-dir pointing at the state \
             dir this job ran with (or put its checkpoints back); or start over: --reset --start \
             earliest|latest|group-offsets|<RFC 3339 time> (see README, \"Starting over\")",
            self.name,
            why.join("; ")
        )))
    }
}

/// Whether the group's `committed` offsets on `topic` (read by source
/// `table`) were left by a run
/// that finished its input cleanly in the other mode, so that starting from
/// them loses nothing: for a lane, the job run whole (its newest checkpoint
/// finished at exactly that offset); for the job run whole, every partition's
/// lane. A finished checkpoint has no open window or file.
async fn handed_over(
    state_dir: &str,
    lane: Option<&Lane>,
    table: &str,
    topic: &str,
    committed: &BTreeMap<i32, i64>,
) -> bool {
    if committed.is_empty() {
        return false;
    }
    let finished_at = |dir: String, partition: i32, offset: i64| async move {
        let Ok(store) = CheckpointStore::open(&dir) else {
            return false;
        };
        match store.newest().await {
            Ok((Some(m), _)) => {
                m.finished
                    && KafkaPositions::in_manifest(&m, table)
                        .and_then(|p| p.offsets.get(&partition).copied())
                        == Some(offset)
            }
            _ => false,
        }
    };
    match lane {
        Some(l) => {
            let offset = committed.get(&l.partition).copied().unwrap_or(-1);
            finished_at(l.job_state_dir.clone(), l.partition, offset).await
        }
        None => {
            for (&p, &offset) in committed {
                if !finished_at(lanes::lane_state_dir(state_dir, topic, p), p, offset).await {
                    return false;
                }
            }
            true
        }
    }
}
