//! Rows that reached no window: counted (`late_rows`), and with
//! `LATE DATA TO` sent to the `LATE` output with why, the watermark they
//! met, and the statement's name; without it, logged (thinned out).

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, TimestampMillisecondArray, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use engine_sql::{clauses::late_row_schema, ddl::UTC, PlannedStatement};

use crate::error::Result;
use crate::message::EventTime;
use crate::metrics::StatementMetrics;
use crate::operator::{Collector, LATE};

/// Where a window operator's late rows go.
pub(super) struct LateOutput {
    /// The late-data table's rows, with `LATE DATA TO`.
    rows: Option<LateRows>,
    time_column: usize,
    metrics: StatementMetrics,
    /// Batches that had late rows, to thin out the warnings.
    batches: u64,
}

/// Why a row of event time `ts` reached no window.
pub(super) type Reason<'a> = &'a dyn Fn(EventTime) -> String;

impl LateOutput {
    /// The late output of `planned`, whose input's first `source_columns`
    /// columns are the source's (the rest are the window columns added).
    pub fn new(
        planned: &PlannedStatement,
        source_columns: usize,
        time_column: usize,
        metrics: StatementMetrics,
    ) -> Result<Self> {
        let input = planned.plan.input_schema();
        let rows = match &planned.insert.clauses.late_data_to {
            Some(_) => {
                let source = Schema::new(input.fields()[..source_columns].to_vec());
                Some(LateRows {
                    schema: Arc::new(late_row_schema(&source)),
                    statement: planned.name().to_string(),
                })
            }
            None => None,
        };
        Ok(Self {
            rows,
            time_column,
            metrics,
            batches: 0,
        })
    }

    /// Counts `missed` rows (or a HOP row's copies) that missed their
    /// window, and sends `rows` of `batch`, which reached none, to the late
    /// output, each with `reason` of its time; `watermark`: what they met.
    pub fn record(
        &mut self,
        batch: &RecordBatch,
        missed: u64,
        rows: &[u32],
        watermark: Option<EventTime>,
        reason: Reason<'_>,
        out: &mut Collector,
    ) -> Result<()> {
        if missed == 0 {
            return Ok(());
        }
        self.metrics.late_rows.inc_by(missed);
        let total = self.metrics.late_rows.get();
        let sent_to = match &self.rows {
            Some(late) if !rows.is_empty() => {
                let at = watermark.unwrap_or(EventTime::MIN);
                let late_rows = late.rows(batch, rows, self.time_column, at, reason)?;
                out.emit_to(LATE, late_rows);
                "sent to the late-data table"
            }
            Some(_) => "counted (each still reached one of its windows)",
            None => "dropped and counted",
        };
        self.batches += 1;
        // Every batch with late rows at first, then every 1000th, so a flood of late
        // data cannot flood the log; the counter has the exact number.
        if self.batches <= 20 || self.batches.is_multiple_of(1000) {
            let example = rows.first().and_then(|&r| {
                let ts = batch.column(self.time_column).as_any();
                let ts = ts.downcast_ref::<TimestampMillisecondArray>()?;
                Some(reason(ts.value(r as usize)))
            });
            tracing::warn!(
                late_rows = missed,
                late_rows_total = total,
                watermark,
                reason = example.unwrap_or_default(),
                "rows arrived after their window closed; {sent_to}"
            );
        }
        Ok(())
    }
}

/// Builds late rows for one statement.
struct LateRows {
    schema: SchemaRef,
    statement: String,
}

impl LateRows {
    /// Rows `rows` of `batch` (the statement's input), which arrived at
    /// `watermark` after every window they belong to was gone.
    fn rows(
        &self,
        batch: &RecordBatch,
        rows: &[u32],
        time_column: usize,
        watermark: EventTime,
        reason: Reason<'_>,
    ) -> Result<RecordBatch> {
        let indices = UInt32Array::from(rows.to_vec());
        let mut columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .take(self.schema.fields().len() - 3)
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<Result<_, _>>()?;
        let ts = columns[time_column]
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .cloned();
        let reasons: StringArray = (0..rows.len())
            .map(|i| {
                Some(
                    ts.as_ref()
                        .map(|ts| reason(ts.value(i)))
                        .unwrap_or_default(),
                )
            })
            .collect();
        columns.push(Arc::new(reasons));
        columns.push(Arc::new(
            TimestampMillisecondArray::from(vec![watermark; rows.len()]).with_timezone(UTC),
        ));
        columns.push(Arc::new(StringArray::from(vec![
            self.statement.as_str();
            rows.len()
        ])));
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

/// An event time as RFC 3339, for messages.
pub(super) fn rfc3339(t: EventTime) -> String {
    chrono::DateTime::from_timestamp_millis(t)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| t.to_string())
}
