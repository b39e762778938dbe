//! Window assignment: adds `window_start` / `window_end` (and the revision
//! pseudo-columns, when the query selects them) to every row, one copy per
//! window the row falls in (one for TUMBLE, size/slide for HOP), and sorts
//! the copies by where their window is: still open, closed but within the
//! allowed lateness, or gone.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, TimestampMillisecondArray, UInt32Array,
};
use arrow::compute::take;
use arrow::record_batch::RecordBatch;
use engine_sql::{ddl::UTC, with_window_columns, WindowSpec};

use crate::error::{EngineError, Result};
use crate::message::EventTime;

/// Where the windows of a batch's rows are.
pub struct Assigned {
    /// Copies whose window is still open (ends after the watermark).
    pub on_time: RecordBatch,
    /// Copies whose window has closed but keeps its state (allowed lateness), in row order.
    pub allowed: RecordBatch,
    /// Copies whose window was gone (ended at or before `dropped_through`).
    pub dropped: u64,
    /// Rows every window of which was gone, by index in the input batch:
    /// they reached no window at all.
    pub late_rows: Vec<u32>,
}

/// Assigns `batch`'s rows to windows. Windows ending after `watermark` are
/// open; those ending at or before `dropped_through` are gone; those
/// between have closed but still take rows (allowed lateness).
pub fn assign_windows(
    batch: &RecordBatch,
    time_column: usize,
    spec: WindowSpec,
    revision_columns: bool,
    watermark: Option<EventTime>,
    dropped_through: Option<EventTime>,
) -> Result<Assigned> {
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
    let open_after = watermark.unwrap_or(EventTime::MIN);
    let gone_through = dropped_through.unwrap_or(EventTime::MIN);
    let (mut on_time, mut allowed) = (Copies::default(), Copies::default());
    let mut dropped = 0u64;
    let mut late_rows = Vec::new();
    for (row, &t) in ts.values().iter().enumerate() {
        let first = spec.first_start(t);
        let mut kept = false;
        for k in 0..copies {
            let start = first + k * spec.slide_ms;
            let end = start + spec.size_ms;
            if end <= gone_through {
                dropped += 1;
                continue;
            }
            kept = true;
            match end > open_after {
                true => on_time.push(row, start),
                false => allowed.push(row, start),
            }
        }
        if !kept {
            late_rows.push(row as u32);
        }
    }
    let whole = on_time.rows.len() == batch.num_rows() && copies == 1;
    Ok(Assigned {
        on_time: on_time.batch(batch, spec, revision_columns, whole)?,
        allowed: allowed.batch(batch, spec, revision_columns, false)?,
        dropped,
        late_rows,
    })
}

/// Copies of rows, each with its window's start.
#[derive(Default)]
struct Copies {
    rows: Vec<u32>,
    starts: Vec<i64>,
}

impl Copies {
    fn push(&mut self, row: usize, start: i64) {
        self.rows.push(row as u32);
        self.starts.push(start);
    }

    /// The copies as a batch of `batch`'s columns and the window columns;
    /// `whole`: every row once, in order (no copy of the columns needed).
    fn batch(
        self,
        batch: &RecordBatch,
        spec: WindowSpec,
        revision_columns: bool,
        whole: bool,
    ) -> Result<RecordBatch> {
        let n = self.rows.len();
        let mut columns: Vec<ArrayRef> = if whole {
            batch.columns().to_vec()
        } else {
            let indices = UInt32Array::from(self.rows);
            batch
                .columns()
                .iter()
                .map(|c| take(c.as_ref(), &indices, None))
                .collect::<Result<_, _>>()?
        };
        let ends: Vec<i64> = self.starts.iter().map(|s| s + spec.size_ms).collect();
        columns.push(Arc::new(
            TimestampMillisecondArray::from(self.starts).with_timezone(UTC),
        ));
        columns.push(Arc::new(
            TimestampMillisecondArray::from(ends).with_timezone(UTC),
        ));
        if revision_columns {
            // Filled in per window when it is emitted; equal here, so they group as one.
            columns.push(Arc::new(BooleanArray::from(vec![false; n])));
            columns.push(Arc::new(Int64Array::from(vec![0i64; n])));
        }
        let schema = with_window_columns(batch.schema().as_ref(), revision_columns);
        Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
    }
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
        let a = assign_windows(&batch(vec![5, 59, 60, -1]), 0, spec, false, None, None).unwrap();
        assert_eq!((a.dropped, a.allowed.num_rows()), (0, 0));
        assert_eq!(column(&a.on_time, WINDOW_START), vec![0, 0, 60, -60]);
        assert_eq!(column(&a.on_time, WINDOW_END), vec![60, 60, 120, 0]);
        let a =
            assign_windows(&batch(vec![5, 59, 60]), 0, spec, false, Some(60), Some(60)).unwrap();
        assert_eq!((a.dropped, a.late_rows), (2, vec![0, 1]));
        assert_eq!(column(&a.on_time, "n"), vec![2]);
        // With lateness: the window ending at 60 closed (watermark 70) but keeps its state.
        let a = assign_windows(&batch(vec![5, -1, 61]), 0, spec, true, Some(70), Some(0)).unwrap();
        assert_eq!((a.dropped, a.late_rows), (1, vec![1]));
        assert_eq!(column(&a.allowed, "n"), vec![0]);
        assert_eq!(column(&a.on_time, "n"), vec![2]);
        assert_eq!(
            a.on_time.schema().field(5).name(),
            engine_sql::WINDOW_REVISION
        );
    }

    #[test]
    fn hop_copies_rows_into_each_window() {
        let spec = WindowSpec {
            size_ms: 30,
            slide_ms: 10,
        };
        let w = Some(20);
        let a = assign_windows(&batch(vec![25]), 0, spec, false, w, w).unwrap();
        // Windows containing 25: [0,30) [10,40) [20,50); [0,30) is still open at watermark 20.
        assert_eq!(a.dropped, 0);
        assert_eq!(column(&a.on_time, WINDOW_START), vec![0, 10, 20]);
        let w = Some(40);
        let a = assign_windows(&batch(vec![25]), 0, spec, false, w, w).unwrap();
        assert_eq!(
            (a.dropped, a.late_rows.len()),
            (2, 0),
            "one window still takes it"
        );
        assert_eq!(column(&a.on_time, WINDOW_START), vec![20]);
    }
}
