//! Window assignment: adds `window_start` / `window_end` to every row, one
//! copy per window the row falls in (one for TUMBLE, size/slide for HOP),
//! and drops the copies whose window has already closed.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, TimestampMillisecondArray, UInt32Array};
use arrow::compute::take;
use arrow::record_batch::RecordBatch;
use engine_sql::{ddl::UTC, with_window_columns, WindowSpec};

use crate::error::{EngineError, Result};
use crate::message::EventTime;

/// Returns `batch` with the window columns, and how many (row, window)
/// copies were dropped because their window ended at or before `closed`.
pub fn assign_windows(
    batch: &RecordBatch,
    time_column: usize,
    spec: WindowSpec,
    closed: Option<EventTime>,
) -> Result<(RecordBatch, u64)> {
    let ts = batch
        .column(time_column)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .ok_or_else(|| EngineError::Internal("window time column is not TIMESTAMP(ms)".into()))?;
    if ts.null_count() > 0 {
        return Err(EngineError::Internal(
            "null event time reached a window (the source must reject it)".into(),
        ));
    }
    let copies = spec.windows_per_record();
    let closed = closed.unwrap_or(EventTime::MIN);
    let mut rows = Vec::with_capacity(ts.len() * copies as usize);
    let mut starts = Vec::with_capacity(ts.len() * copies as usize);
    let mut late = 0u64;
    for (row, &t) in ts.values().iter().enumerate() {
        let first = spec.first_start(t);
        for k in 0..copies {
            let start = first + k * spec.slide_ms;
            if start + spec.size_ms <= closed {
                late += 1;
                continue;
            }
            rows.push(row as u32);
            starts.push(start);
        }
    }
    let mut columns: Vec<ArrayRef> = if rows.len() == batch.num_rows() && copies == 1 {
        batch.columns().to_vec() // the common case: every row kept once, no copy
    } else {
        let indices = UInt32Array::from(rows);
        batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<Result<_, _>>()?
    };
    let ends: Vec<i64> = starts.iter().map(|s| s + spec.size_ms).collect();
    columns.push(Arc::new(
        TimestampMillisecondArray::from(starts).with_timezone(UTC),
    ));
    columns.push(Arc::new(
        TimestampMillisecondArray::from(ends).with_timezone(UTC),
    ));
    let schema = with_window_columns(batch.schema().as_ref());
    Ok((RecordBatch::try_new(Arc::new(schema), columns)?, late))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{Field, Schema};
    use engine_sql::{timestamp_type, WINDOW_END, WINDOW_START};

    fn batch(ts: Vec<i64>) -> RecordBatch {
        let n = ts.len() as i64;
        let schema = Schema::new(vec![
            Field::new("ts", timestamp_type(), false),
            Field::new("n", arrow::datatypes::DataType::Int64, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(TimestampMillisecondArray::from(ts).with_timezone(UTC)),
                Arc::new(Int64Array::from_iter_values(0..n)),
            ],
        )
        .unwrap()
    }

    fn column(b: &RecordBatch, name: &str) -> Vec<i64> {
        let c = b.column_by_name(name).unwrap();
        match c.as_any().downcast_ref::<TimestampMillisecondArray>() {
            Some(a) => a.values().to_vec(),
            None => c
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec(),
        }
    }

    #[test]
    fn tumble_and_late_rows() {
        let spec = WindowSpec {
            size_ms: 60,
            slide_ms: 60,
        };
        let (out, late) = assign_windows(&batch(vec![5, 59, 60, -1]), 0, spec, None).unwrap();
        assert_eq!(late, 0);
        assert_eq!(column(&out, WINDOW_START), vec![0, 0, 60, -60]);
        assert_eq!(column(&out, WINDOW_END), vec![60, 60, 120, 0]);
        let (out, late) = assign_windows(&batch(vec![5, 59, 60]), 0, spec, Some(60)).unwrap();
        assert_eq!(late, 2);
        assert_eq!(column(&out, "n"), vec![2]);
    }

    #[test]
    fn hop_copies_rows_into_each_window() {
        let spec = WindowSpec {
            size_ms: 30,
            slide_ms: 10,
        };
        let (out, late) = assign_windows(&batch(vec![25]), 0, spec, Some(20)).unwrap();
        // Windows containing 25: [0,30) [10,40) [20,50); [0,30) is still open at watermark 20.
        assert_eq!(late, 0);
        assert_eq!(column(&out, WINDOW_START), vec![0, 10, 20]);
        let (out, late) = assign_windows(&batch(vec![25]), 0, spec, Some(40)).unwrap();
        assert_eq!(late, 2);
        assert_eq!(column(&out, WINDOW_START), vec![20]);
    }
}
