//! One statement's task: feed its operator, write what it emits to every
//! sink, snapshot at barriers, and end with its final state.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::rejects::Rejects;
use crate::checkpoint::{batches_from_ipc, batches_to_ipc, Participant, Report, Snapshot};
use crate::error::Result;
use crate::message::{Message, Signal};
use crate::metrics::Metrics;
use crate::operator::Operator;
use crate::sink::SinkWriter;

/// The blob of an operator's snapshot holding its open windows.
const WINDOWS: &str = "windows.arrow";

/// One statement's operator and sinks, and where it reports at barriers.
pub(super) struct StatementTask {
    /// The operator's key in checkpoints.
    pub key: String,
    pub operator: Operator,
    /// Its sinks, each with its key in checkpoints.
    pub sinks: Vec<(String, SinkWriter)>,
    /// Rows it cannot compute or write go to the source's dead-letter topic.
    pub rejects: Rejects,
    pub metrics: Arc<Metrics>,
    /// With checkpoints: the coordinator.
    pub reports: Option<mpsc::UnboundedSender<Report>>,
}

/// Every participant's part of a checkpoint, from one statement.
pub(super) type Snapshots = Vec<(Participant, Snapshot)>;

impl StatementTask {
    /// The statement's state at barrier `epoch` (the rows it rejected before
    /// the barrier are stored first: the checkpoint covers them).
    async fn snapshot(&mut self, epoch: u64) -> Result<Snapshots> {
        self.rejects.flush().await?;
        let mut operator = Snapshot::default();
        if let Some((watermark, windows)) = self.operator.snapshot() {
            operator.meta = serde_json::json!({ "watermark": watermark });
            if let Some(bytes) = batches_to_ipc(&windows)? {
                operator.blobs.insert(WINDOWS.to_string(), bytes.into());
            }
        }
        let mut out = vec![(Participant::Operator(self.key.clone()), operator)];
        for (key, sink) in &mut self.sinks {
            out.push((
                Participant::Sink(key.clone()),
                sink.sink().pre_commit(epoch).await?,
            ));
        }
        Ok(out)
    }

    /// Continues the operator from its snapshot.
    pub async fn restore_operator(&mut self, snapshot: &Snapshot) -> Result<()> {
        if snapshot.is_empty() {
            return Ok(());
        }
        let watermark = snapshot.meta.get("watermark").and_then(|w| w.as_i64());
        let rows = match snapshot.blobs.get(WINDOWS) {
            Some(bytes) => batches_from_ipc(bytes.clone())?,
            None => Vec::new(),
        };
        self.operator.restore(watermark, rows).await
    }

    /// Handles one message; returns whether it ended the input.
    async fn handle(&mut self, message: Message) -> Result<bool> {
        let (rows, watermark) = match message {
            Message::Data(batch) => {
                let processed = self.operator.process_batch(batch).await?;
                for r in &processed.rejected {
                    self.rejects.send(&r.row, &r.error)?;
                }
                (processed.rows, None)
            }
            Message::Signal(Signal::Watermark(w)) => {
                self.metrics.watermark.fetch_max(w, Ordering::Relaxed);
                (self.operator.handle_watermark(w).await?, Some(w))
            }
            Message::Signal(Signal::Barrier(epoch)) => {
                if self.reports.is_some() {
                    let snapshots = self.snapshot(epoch).await?;
                    self.report(epoch, snapshots);
                }
                return Ok(false);
            }
            Message::Signal(Signal::EndOfData) => {
                let rows = self.operator.handle_end_of_data().await?;
                self.write(&rows).await?;
                for (_, sink) in &mut self.sinks {
                    sink.sink().end_of_data().await?;
                }
                return Ok(true);
            }
        };
        self.write(&rows).await?;
        if let Some(w) = watermark {
            for (_, sink) in &mut self.sinks {
                sink.sink().handle_watermark(w).await?;
            }
        }
        Ok(false)
    }

    /// Writes the operator's rows to every sink; rows a sink refuses are dead-lettered.
    async fn write(&mut self, rows: &[arrow::record_batch::RecordBatch]) -> Result<()> {
        Metrics::add(
            &self.metrics.rows_emitted,
            rows.iter().map(|b| b.num_rows() as u64).sum(),
        );
        for batch in rows {
            for (_, sink) in &mut self.sinks {
                for (row, why) in sink.write(batch).await? {
                    self.rejects.send(&batch.slice(row, 1), &why)?;
                }
            }
        }
        Ok(())
    }

    fn report(&self, epoch: u64, snapshots: Snapshots) {
        if let Some(reports) = &self.reports {
            for (from, snapshot) in snapshots {
                // The coordinator gone means the job is stopping; nothing to report to.
                let _ = reports.send(Report {
                    epoch,
                    from,
                    snapshot,
                });
            }
        }
    }

    /// The state for the final checkpoint (empty without checkpoints).
    async fn final_state(mut self) -> Result<Snapshots> {
        self.rejects.flush().await?;
        if self.reports.is_none() {
            return Ok(Vec::new());
        }
        // Epoch 0: the final checkpoint's number is known only once every task has ended.
        self.snapshot(0).await
    }

    /// Runs until the input ends (bounded) or its channel closes (stopped).
    pub async fn run(mut self, mut input: mpsc::Receiver<Message>) -> Result<Snapshots> {
        while let Some(message) = input.recv().await {
            if self.handle(message).await? {
                return self.final_state().await;
            }
        }
        // Stopped. With checkpoints, open files and windows go into the final
        // checkpoint as they are; without, what was written is made durable and
        // partitions stay open unless complete.
        if self.reports.is_none() {
            for (_, sink) in &mut self.sinks {
                sink.sink().flush().await?;
            }
        }
        self.final_state().await
    }

    /// The number of participants it reports at each barrier.
    pub fn participants(&self) -> usize {
        1 + self.sinks.len()
    }
}
