//! Rows a statement cannot compute or write, to its source's dead-letter topic.
//!
//! The source dead-letters records that do not decode or break a rule of
//! their table. A record can still fail later: a size of `1e31` decodes
//! as a DOUBLE and then cannot be cast to the job's `DECIMAL(38, 8)`, or a
//! computed value does not fit its sink column. Such a row is not a reason
//! to stop the job (it would stop again on every restart): it goes to the
//! dead-letter topic as JSON, with the statement and the error in headers,
//! and is counted in `bad_records`.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use prometheus::IntCounter;

use crate::decode::BadKind;
use crate::error::{EngineError, Result};
use crate::metrics::Metrics;
use crate::source::{DeadLetterSink, Origin};

/// Rejected rows logged one by one before the log switches to every 1000th.
const LOGGED: u64 = 20;

/// Where one statement's rejected rows go.
pub struct Rejects {
    dead_letters: Arc<dyn DeadLetterSink>,
    /// The source topic the rows came from.
    topic: String,
    /// `job.sql:42`: the statement, for the `dlq.statement` header and logs.
    statement: String,
    /// `engine_bad_records_total` of the source, with the reason of this kind of reject.
    counted: IntCounter,
    sent: u64,
}

impl Rejects {
    /// Rejected rows of statement `statement` (reading `topic`) to
    /// `dead_letters`, counted as bad records of `kind`.
    pub fn new(
        dead_letters: Arc<dyn DeadLetterSink>,
        topic: &str,
        statement: String,
        (metrics, kind): (&Metrics, BadKind),
    ) -> Self {
        Self {
            dead_letters,
            topic: topic.to_string(),
            statement,
            counted: metrics.bad_records_counter(topic, kind),
            sent: 0,
        }
    }

    /// Dead-letters each row of `rows` (a batch of one or more) with `error`.
    /// The producer blocks while its queue is full: on a multi-threaded
    /// runtime the worker is handed over meanwhile, so other tasks go on.
    pub fn send(&mut self, rows: &RecordBatch, error: &str) -> Result<()> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(RuntimeFlavor::MultiThread) => {
                tokio::task::block_in_place(|| self.send_blocking(rows, error))
            }
            _ => self.send_blocking(rows, error),
        }
    }

    fn send_blocking(&mut self, rows: &RecordBatch, error: &str) -> Result<()> {
        for row in 0..rows.num_rows() {
            let payload = row_json(&rows.slice(row, 1))?;
            let origin = Origin {
                topic: &self.topic,
                position: None,
                statement: Some(&self.statement),
            };
            self.dead_letters.send(&payload, None, error, origin)?;
            self.sent += 1;
            self.counted.inc();
            let n = self.counted.get();
            if self.sent <= LOGGED || self.sent.is_multiple_of(1000) {
                tracing::warn!(
                    statement = %self.statement, error = %crate::decode::excerpt(error, 512), bad_records = n,
                    "row rejected by the statement; sent to the dead-letter topic"
                );
            }
        }
        Ok(())
    }

    /// Waits until every rejected row sent is stored (before a checkpoint
    /// or offset commit covers it).
    pub async fn flush(&self) -> Result<()> {
        let dead_letters = Arc::clone(&self.dead_letters);
        tokio::task::spawn_blocking(move || dead_letters.flush())
            .await
            .map_err(|e| EngineError::Internal(format!("flushing dead letters: {e}")))?
    }
}

/// One row as a JSON object (the payload of its dead letter).
fn row_json(row: &RecordBatch) -> Result<Vec<u8>> {
    let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
    writer.write(row)?;
    writer.finish()?;
    let mut bytes = writer.into_inner();
    while bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    Ok(bytes)
}
