//! A statement's tasks: one feeds its operator and passes what it emits on;
//! each of its sinks runs on a task of its own behind a bounded channel, so
//! a slow sink (a whole-file lake upload) does not hold up another (the
//! topic) beyond the channel's room, while backpressure still reaches the
//! source. Each reports its part of a checkpoint at a barrier, and ends
//! with its final state.

use arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;

use super::rejects::Rejects;
use crate::checkpoint::{Participant, Report, Snapshot};
use crate::error::{EngineError, Result};
use crate::message::{EventTime, Message, Signal};
use crate::metrics::{Due, SinkMetrics, StatementMetrics};
use crate::operator::{Collector, Operator, FINAL, LATE, MAIN};
use crate::sink::{SinkWriter, FINAL_BARRIER};

/// Messages queued for one sink: the backpressure bound between a
/// statement and each of its sinks.
pub(super) const SINK_CHANNEL_CAPACITY: usize = 2;

/// Every participant's part of a checkpoint.
pub(super) type Snapshots = Vec<(Participant, Snapshot)>;

/// What a statement hands a sink.
#[derive(Clone)]
enum ToSink {
    /// Rows, and when they became due if a watermark closed their windows.
    Rows(RecordBatch, Option<Due>),
    Watermark(EventTime),
    Barrier(u64),
    EndOfData,
}

/// One statement's operator, and where it reports at barriers.
pub(super) struct StatementTask {
    /// The operator's key in checkpoints.
    pub key: String,
    pub operator: Box<dyn Operator>,
    /// Rows it cannot compute go to the source's dead-letter topic.
    pub rejects: Rejects,
    pub metrics: StatementMetrics,
    /// With checkpoints: the coordinator.
    pub reports: Option<mpsc::UnboundedSender<Report>>,
    /// Its sinks' tasks, each with the operator output it takes rows from.
    sinks: Vec<(&'static str, mpsc::Sender<ToSink>)>,
}

/// One sink of a statement.
pub(super) struct SinkTask {
    /// The sink's key in checkpoints.
    pub key: String,
    pub writer: SinkWriter,
    /// Rows it cannot write go to the source's dead-letter topic.
    pub rejects: Rejects,
    /// With checkpoints: the coordinator.
    pub reports: Option<mpsc::UnboundedSender<Report>>,
    /// Its series (busy, for readiness).
    pub metrics: SinkMetrics,
}

impl StatementTask {
    /// The task of `operator` (key `key` in checkpoints).
    pub fn new(
        key: String,
        operator: Box<dyn Operator>,
        rejects: Rejects,
        metrics: StatementMetrics,
        reports: Option<mpsc::UnboundedSender<Report>>,
    ) -> Self {
        Self {
            key,
            operator,
            rejects,
            metrics,
            reports,
            sinks: Vec::new(),
        }
    }

    /// Connects `sink` to the operator's `output`: returns it with the
    /// channel it reads, for its own task. Every sink gets every signal.
    pub fn attach(&mut self, sink: SinkTask, output: &'static str) -> (SinkTask, SinkInput) {
        let (tx, rx) = mpsc::channel(SINK_CHANNEL_CAPACITY);
        self.sinks.push((output, tx));
        (sink, SinkInput(rx))
    }

    /// Continues the operator from its snapshot.
    pub async fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        if snapshot.is_empty() {
            return Ok(());
        }
        self.operator.restore(snapshot).await
    }

    /// Runs until the input ends (bounded) or its channel closes (stopped);
    /// returns the operator's final state (none without checkpoints).
    pub async fn run(mut self, mut input: mpsc::Receiver<Message>) -> Result<Snapshots> {
        // The operator's processing-time timer (EMIT EVERY), if it has one.
        let mut ticks = self.operator.tick_interval().map(|every| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            let tick = async {
                match ticks.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                message = input.recv() => match message {
                    Some(message) => {
                        if self.handle(message).await? {
                            break;
                        }
                    }
                    None => break,
                },
                _ = tick => {
                    let mut out = Collector::default();
                    self.operator.handle_tick(&mut out).await?;
                    self.forward(out, None).await?;
                    self.forward_pending(None).await?;
                }
            }
        }
        // Closing the sinks' channels ends their tasks, with their final state.
        self.sinks.clear();
        self.rejects.flush().await?;
        if self.reports.is_none() {
            return Ok(Vec::new());
        }
        let operator = self.operator.snapshot()?;
        Ok(vec![(Participant::Operator(self.key), operator)])
    }

    /// Handles one message; returns whether it ended the input.
    async fn handle(&mut self, message: Message) -> Result<bool> {
        let mut out = Collector::default();
        let mut after = None;
        let mut due = None;
        match message {
            Message::Data(batch) => self.operator.process_batch(batch, &mut out).await?,
            Message::Signal(Signal::Watermark(w, at)) => {
                self.metrics.watermark(w);
                due = Some(Due(at));
                self.operator.handle_watermark(w, &mut out).await?;
                after = Some(ToSink::Watermark(w));
            }
            Message::Signal(Signal::Barrier(epoch)) => {
                if let Some(reports) = &self.reports {
                    // The rows rejected before the barrier are stored first: it covers them.
                    self.rejects.flush().await?;
                    let snapshot = self.operator.snapshot()?;
                    let from = Participant::Operator(self.key.clone());
                    // The coordinator gone means the job is stopping; nothing to report to.
                    let _ = reports.send(Report {
                        epoch,
                        from,
                        snapshot,
                    });
                }
                after = Some(ToSink::Barrier(epoch));
            }
            Message::Signal(Signal::EndOfData) => {
                self.operator.handle_end_of_data(&mut out).await?;
                after = Some(ToSink::EndOfData);
            }
        }
        self.forward(out, due).await?;
        self.forward_pending(due).await?;
        let ended = matches!(after, Some(ToSink::EndOfData));
        if let Some(signal) = after {
            to_sinks(&self.sinks, None, signal).await?;
        }
        Ok(ended)
    }

    /// Passes on, part by part, what the operator left pending: before
    /// anything else reaches it (a barrier's snapshot must not see it half done).
    async fn forward_pending(&mut self, due: Option<Due>) -> Result<()> {
        while self.operator.has_pending() {
            let mut out = Collector::default();
            self.operator.emit_pending(&mut out).await?;
            self.forward(out, due).await?;
        }
        Ok(())
    }

    /// Passes what the operator emitted on: rejected rows to the dead
    /// letters, each output's rows to the sinks attached to it (those a
    /// watermark closed `due` then; late rows never are).
    async fn forward(&mut self, mut out: Collector, due: Option<Due>) -> Result<()> {
        for r in out.take_rejected() {
            self.rejects.send(&r.row, &r.error)?;
        }
        for output in [MAIN, FINAL, LATE] {
            let rows = out.take(output);
            if output == MAIN {
                let emitted = rows.iter().map(|b| b.num_rows() as u64).sum();
                self.metrics.rows_emitted.inc_by(emitted);
            }
            let due = due.filter(|_| output != LATE);
            for batch in rows {
                to_sinks(&self.sinks, Some(output), ToSink::Rows(batch, due)).await?;
            }
        }
        Ok(())
    }
}

/// Sends `message` to the sinks of `output` (every sink: `None`), waiting
/// while a sink's channel is full. (A batch's columns are shared, not
/// copied, by each sink's clone.)
async fn to_sinks(
    sinks: &[(&'static str, mpsc::Sender<ToSink>)],
    output: Option<&str>,
    message: ToSink,
) -> Result<()> {
    for (_, sink) in sinks.iter().filter(|(o, _)| output.is_none_or(|w| w == *o)) {
        sink.send(message.clone())
            .await
            .map_err(|_| EngineError::Execution("a sink stopped; stopping its statement".into()))?;
    }
    Ok(())
}

/// The channel a sink task reads.
pub(super) struct SinkInput(mpsc::Receiver<ToSink>);

impl SinkTask {
    /// Runs until its statement ends; returns its final state (none
    /// without checkpoints).
    pub async fn run(mut self, SinkInput(mut input): SinkInput) -> Result<Snapshots> {
        let mut ended = false;
        while let Some(message) = input.recv().await {
            let _busy = self.metrics.busy();
            match message {
                ToSink::Rows(batch, due) => {
                    for (row, why) in self.writer.write(&batch, due).await? {
                        self.rejects.send(&batch.slice(row, 1), &why)?;
                    }
                }
                ToSink::Watermark(w) => self.writer.sink().handle_watermark(w).await?,
                ToSink::Barrier(epoch) => {
                    if let Some(reports) = &self.reports {
                        self.rejects.flush().await?;
                        let snapshot = self.writer.sink().pre_commit(epoch).await?;
                        let from = Participant::Sink(self.key.clone());
                        let _ = reports.send(Report {
                            epoch,
                            from,
                            snapshot,
                        });
                    }
                }
                ToSink::EndOfData => {
                    self.writer.sink().end_of_data().await?;
                    ended = true;
                }
            }
        }
        // Stopped. With checkpoints, open files go into the final checkpoint as
        // they are; without, what was written is made durable and partitions
        // stay open unless complete.
        if !ended && self.reports.is_none() {
            self.writer.sink().flush().await?;
        }
        self.rejects.flush().await?;
        if self.reports.is_none() {
            return Ok(Vec::new());
        }
        // The final checkpoint's number is known only once every task has ended.
        let snapshot = self.writer.sink().pre_commit(FINAL_BARRIER).await?;
        Ok(vec![(Participant::Sink(self.key), snapshot)])
    }
}
