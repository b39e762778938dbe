//! Which window of which group a state row is for, and how many times each
//! such window has been emitted: the `window_revision` of its next row.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, Rows, SortField};

use super::Emission;
use crate::error::{EngineError, Result};
use crate::message::EventTime;

/// A window of one group, as the bytes of its group columns (window bounds
/// included) in Arrow's row format: equal bytes, equal window.
pub(super) type Identity = Box<[u8]>;

/// Computes [`Identity`]s from state rows.
pub(super) struct Identities {
    converter: RowConverter,
    /// The state columns that identify a window: the `GROUP BY`'s, less the
    /// revision pseudo-columns.
    columns: Vec<usize>,
    fields: Vec<Field>,
    /// Index of `window_end` among `columns`.
    end: usize,
}

impl Identities {
    /// Identities over `columns` of state rows of `schema`; `end` is the `window_end` column.
    pub fn new(schema: &SchemaRef, columns: Vec<usize>, end: usize) -> Result<Self> {
        let fields: Vec<Field> = columns.iter().map(|&c| schema.field(c).clone()).collect();
        let converter = RowConverter::new(
            fields
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        let end = columns
            .iter()
            .position(|&c| c == end)
            .ok_or_else(|| EngineError::Internal("window_end is not a group column".into()))?;
        Ok(Self {
            converter,
            columns,
            fields,
            end,
        })
    }

    /// The identity of every row of `states`.
    pub fn of(&self, states: &RecordBatch) -> Result<Rows> {
        let columns: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|&c| Arc::clone(states.column(c)))
            .collect();
        Ok(self.converter.convert_columns(&columns)?)
    }

    /// Identities back as their group columns (for a checkpoint).
    fn to_columns<'a>(&self, ids: impl Iterator<Item = &'a [u8]>) -> Result<Vec<ArrayRef>> {
        let parser = self.converter.parser();
        Ok(self
            .converter
            .convert_rows(ids.map(|id| parser.parse(id)))?)
    }
}

/// How many rows each window (of each group) has emitted, for windows that
/// emit more than once (early rows, corrections). Kept until the window's
/// state is dropped; checkpointed with it.
#[derive(Default)]
pub(super) struct Revisions {
    by_end: BTreeMap<EventTime, HashMap<Identity, i64>>,
}

/// The column of a revisions checkpoint holding the counts.
const EMITTED: &str = "__emitted";

impl Revisions {
    /// The revision of window `id`'s row of `emission`, counted. Windows
    /// emitted only when they close (the common case) are not kept here: no
    /// count means revision 0 at close, and 1 for the first correction of a
    /// group that had a row then.
    pub fn of(&mut self, emission: Emission, end: EventTime, id: &[u8]) -> i64 {
        let known = self.by_end.get(&end).and_then(|m| m.get(id)).copied();
        let n = match (emission, known) {
            (Emission::Last, n) => return n.map_or(0, |n| (n - 1).max(0)),
            (Emission::Close, None) => return 0,
            (_, Some(n)) => n,
            (Emission::Correction { had_final }, None) => i64::from(had_final),
            (Emission::Early, None) => 0,
        };
        self.by_end.entry(end).or_default().insert(id.into(), n + 1);
        n
    }

    /// Whether any window ending at `end` is counted.
    pub fn any_at(&self, end: EventTime) -> bool {
        self.by_end.get(&end).is_some_and(|m| !m.is_empty())
    }

    /// Forgets the windows ending at or before `end` (their state is gone).
    pub fn drop_through(&mut self, end: EventTime) {
        self.by_end = self.by_end.split_off(&end.saturating_add(1));
    }

    /// As one batch: the identity columns and the counts.
    pub fn to_batch(&self, ids: &Identities) -> Result<Option<RecordBatch>> {
        let entries: Vec<(&Identity, i64)> = self
            .by_end
            .values()
            .flat_map(|m| m.iter().map(|(id, n)| (id, *n)))
            .collect();
        if entries.is_empty() {
            return Ok(None);
        }
        let mut columns = ids.to_columns(entries.iter().map(|(id, _)| id.as_ref()))?;
        columns.push(Arc::new(Int64Array::from_iter_values(
            entries.iter().map(|(_, n)| *n),
        )));
        let mut fields = ids.fields.clone();
        fields.push(Field::new(EMITTED, DataType::Int64, false));
        Ok(Some(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?))
    }

    /// Adds the counts of a batch made by [`Revisions::to_batch`].
    pub fn restore(&mut self, ids: &Identities, batch: &RecordBatch) -> Result<()> {
        let bad = || EngineError::Execution("checkpointed window revisions are damaged".into());
        let n = ids.fields.len();
        if batch.num_columns() != n + 1 {
            return Err(bad());
        }
        let rows = ids
            .converter
            .convert_columns(&batch.columns()[..n])
            .map_err(|_| bad())?;
        let ends = batch
            .column(ids.end)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .ok_or_else(bad)?;
        let counts = batch
            .column(n)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(bad)?;
        for i in 0..batch.num_rows() {
            (self.by_end.entry(ends.value(i)).or_default())
                .insert(rows.row(i).as_ref().into(), counts.value(i));
        }
        Ok(())
    }
}
