//! The rows `LATE DATA TO` writes: an input row that reached no window,
//! with why, the watermark it met, and the statement's name.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, TimestampMillisecondArray, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use engine_sql::{clauses::late_row_schema, ddl::UTC, WindowSpec};

use crate::error::Result;
use crate::message::EventTime;

/// Builds late rows for one statement.
pub(super) struct LateRows {
    schema: SchemaRef,
    statement: String,
}

impl LateRows {
    /// Late rows of a statement whose input is the first `source_columns`
    /// columns of `input` (the rest are the window columns it adds).
    pub fn new(input: &SchemaRef, source_columns: usize, statement: &str) -> Result<Self> {
        let source = Schema::new(input.fields()[..source_columns].to_vec());
        Ok(Self {
            schema: Arc::new(late_row_schema(&source)),
            statement: statement.to_string(),
        })
    }

    /// Rows `rows` of `batch` (the statement's input), which arrived at
    /// `watermark` after every window they belong to was gone.
    pub fn rows(
        &self,
        batch: &RecordBatch,
        rows: &[u32],
        time_column: usize,
        spec: WindowSpec,
        lateness_ms: i64,
        watermark: EventTime,
    ) -> Result<RecordBatch> {
        let indices = UInt32Array::from(rows.to_vec());
        let mut columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<Result<_, _>>()?;
        let ts = columns[time_column]
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .cloned();
        let reasons: StringArray = (0..rows.len())
            .map(|i| {
                let last_end = ts.as_ref().map(|ts| {
                    let t = ts.value(i);
                    spec.first_start(t)
                        + (spec.windows_per_record() - 1) * spec.slide_ms
                        + spec.size_ms
                });
                Some(reason(last_end, spec.windows_per_record(), lateness_ms))
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

/// Why a row reached no window: its (last) window's end and the lateness.
fn reason(last_end: Option<EventTime>, windows: i64, lateness_ms: i64) -> String {
    let end = last_end
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    let which = match windows {
        1 => "its window".to_string(),
        n => format!("all {n} of its windows"),
    };
    format!(
        "window closed: {which} (ending by {end}) had passed window_end + lateness ({lateness_ms} ms) before the row arrived"
    )
}
