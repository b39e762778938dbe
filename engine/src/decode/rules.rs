//! What a decoded row must satisfy before it enters the stream.
//!
//! JSON that parses can still be unusable: `1e400` and `"NaN"` decode to
//! floats no sum can hold, an epoch of `1e30` to a time no window or
//! partition can name, a trade dated next year would close every window at
//! once. The source checks each decoded row against these rules and turns
//! the rows that break one into bad records with the reason, so the job goes
//! on and nothing is dropped silently:
//! - floating-point columns must be finite;
//! - TIMESTAMP columns (a record's Kafka timestamp too) must lie in
//!   0001-01-01 .. 9999-12-31;
//! - the event-time column may run at most `event_time.max_ahead` ahead of
//!   the wall clock;
//! - every `CHECK (...)` of the table must not be false;
//! - with `key_field`, the record key must equal that column (so the topic's
//!   partitioning by key is a partitioning by that column).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::TimestampMillisecondArray;
use arrow::array::{Array, ArrayRef, BooleanArray, Float32Array, Float64Array, StringArray};
use arrow::compute::{cast, max, min};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use engine_sql::{LineError, TableDef};

use super::json::excerpt;
use super::BadKind;
use crate::error::{EngineError, Result};
use crate::message::{EventTime, MAX_EVENT_TIME, MIN_EVENT_TIME};

/// The rules of one source table, compiled.
#[derive(Debug, Default)]
pub struct RowRules {
    /// Floating-point columns: (index, name).
    finite: Vec<(usize, String)>,
    /// TIMESTAMP columns: (index, name).
    times: Vec<(usize, String)>,
    /// The event-time column and how far ahead of the wall clock it may be.
    ahead: Option<(usize, String, Duration)>,
    /// `CHECK` constraints: label and compiled expression.
    checks: Vec<(String, Arc<dyn PhysicalExpr>)>,
    /// `key_field`: the column the record key must equal.
    key: Option<(usize, String)>,
}

/// Each rejected row's first reason.
#[derive(Default)]
struct Reasons(BTreeMap<usize, (BadKind, String)>);

impl Reasons {
    /// Rejects `row` for `reason`, unless an earlier rule rejected it already.
    fn note(&mut self, row: usize, kind: BadKind, reason: impl FnOnce() -> String) {
        self.0.entry(row).or_insert_with(|| (kind, reason()));
    }
}

/// A row of a decoded batch that broke a rule, and which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Row index in the batch.
    pub row: usize,
    /// The reason, for the dead-letter topic.
    pub reason: String,
    /// Which rule, for the metrics.
    pub kind: BadKind,
}

impl RowRules {
    /// Compiles the rules of source `table` (its batches have `table.schema()`).
    /// `max_ahead` bounds the event-time column (`None`: no bound), and
    /// `key_field` names the column the record key must equal. Errors name
    /// the line at fault.
    pub fn for_table(
        table: &TableDef,
        max_ahead: Option<Duration>,
        key_field: Option<&str>,
    ) -> Result<Self, LineError> {
        let schema = table.schema();
        let mut rules = RowRules::default();
        for (i, c) in table.columns.iter().enumerate() {
            match c.data_type {
                DataType::Float64 | DataType::Float32 => rules.finite.push((i, c.name.clone())),
                // Record timestamps too: a producer may set any CreateTime.
                DataType::Timestamp(..) => rules.times.push((i, c.name.clone())),
                _ => {}
            }
        }
        if let (Some(w), Some(ahead)) = (&table.watermark, max_ahead) {
            let i = schema
                .index_of(&w.column)
                .map_err(|e| (table.line, e.to_string()))?;
            rules.ahead = Some((i, w.column.clone(), ahead));
        }
        if let Some(name) = key_field {
            match table.columns.iter().position(|c| c.name == name) {
                Some(i) if table.columns[i].data_type == DataType::Utf8 => {
                    rules.key = Some((i, name.to_string()))
                }
                Some(_) => {
                    return Err((
                        table.options.line_of("key_field", table.line),
                        format!(
                            "key_field `{name}` must be a TEXT column (the record key is text)"
                        ),
                    ))
                }
                None => {
                    return Err((
                        table.options.line_of("key_field", table.line),
                        format!("key_field `{name}`: no such column"),
                    ))
                }
            }
        }
        let ctx = SessionContext::new();
        let df_schema = DFSchema::try_from(schema.as_ref().clone())
            .map_err(|e| (table.line, e.strip_backtrace().to_string()))?;
        for check in &table.checks {
            let fail = |e: datafusion::error::DataFusionError| {
                (
                    check.line,
                    format!("{}: {}", check.label(), e.strip_backtrace()),
                )
            };
            let expr = ctx.parse_sql_expr(&check.expr, &df_schema).map_err(fail)?;
            let expr = ctx.create_physical_expr(expr, &df_schema).map_err(fail)?;
            match expr.data_type(&schema) {
                Ok(DataType::Boolean) => {}
                Ok(other) => {
                    return Err((
                        check.line,
                        format!(
                            "{} must be a condition (BOOLEAN), not {other}",
                            check.label()
                        ),
                    ))
                }
                Err(e) => return Err(fail(e)),
            }
            rules.checks.push((check.label(), expr));
        }
        Ok(rules)
    }

    /// The rows of `batch` that break a rule (each once, with the first rule
    /// it breaks), in row order. `key(row)` gives a row's record key; `now`
    /// is the wall clock (ms).
    pub fn reject<'k>(
        &self,
        batch: &RecordBatch,
        key: impl Fn(usize) -> Option<&'k [u8]>,
        now: EventTime,
    ) -> Result<Vec<Rejected>> {
        // Each rule first checks the whole column at once (the usual batch
        // breaks none) and walks it row by row only when some row breaks it.
        let mut reasons = Reasons::default();
        self.not_finite(batch, &mut reasons);
        self.out_of_range(batch, &mut reasons);
        self.too_far_ahead(batch, now, &mut reasons);
        self.failed_checks(batch, &mut reasons)?;
        self.wrong_key(batch, key, &mut reasons);
        Ok(reasons
            .0
            .into_iter()
            .map(|(row, (kind, reason))| Rejected { row, reason, kind })
            .collect())
    }

    /// Floating-point values that are not finite (`1e400`, `"NaN"`).
    fn not_finite(&self, batch: &RecordBatch, reasons: &mut Reasons) {
        for (i, name) in &self.finite {
            let column = batch.column(*i);
            let values: Vec<Option<f64>> =
                if let Some(a) = column.as_any().downcast_ref::<Float64Array>() {
                    if a.values().iter().all(|v| v.is_finite()) {
                        continue;
                    }
                    a.iter().collect()
                } else if let Some(a) = column.as_any().downcast_ref::<Float32Array>() {
                    if a.values().iter().all(|v| v.is_finite()) {
                        continue;
                    }
                    a.iter().map(|v| v.map(f64::from)).collect()
                } else {
                    continue;
                };
            for (row, v) in values.into_iter().enumerate() {
                if let Some(v) = v.filter(|v| !v.is_finite()) {
                    reasons.note(row, BadKind::NotFinite, || {
                        format!("field `{name}` is not a finite number ({v})")
                    });
                }
            }
        }
    }

    /// Times outside 0001-01-01 .. 9999-12-31.
    fn out_of_range(&self, batch: &RecordBatch, reasons: &mut Reasons) {
        let representable = MIN_EVENT_TIME..=MAX_EVENT_TIME;
        for (i, name) in &self.times {
            let Some(times) = timestamps(batch.column(*i)) else {
                continue;
            };
            let in_range = |t: Option<i64>| t.is_none_or(|t| representable.contains(&t));
            if in_range(min(times)) && in_range(max(times)) {
                continue;
            }
            for (row, t) in times.iter().enumerate() {
                if let Some(t) = t.filter(|t| !representable.contains(t)) {
                    reasons.note(row, BadKind::TimeOutOfRange, || {
                        format!(
                            "field `{name}` = {t} ms is outside the times the engine represents \
                             (0001-01-01 to 9999-12-31 UTC)"
                        )
                    });
                }
            }
        }
    }

    /// Event times further ahead of the wall clock than `event_time.max_ahead`.
    fn too_far_ahead(&self, batch: &RecordBatch, now: EventTime, reasons: &mut Reasons) {
        let Some((i, name, ahead)) = &self.ahead else {
            return;
        };
        let limit = now.saturating_add(ahead.as_millis().min(i64::MAX as u128) as i64);
        let Some(times) =
            timestamps(batch.column(*i)).filter(|t| max(*t).is_some_and(|m| m > limit))
        else {
            return;
        };
        for (row, t) in times.iter().enumerate() {
            // Past the representable range is `out_of_range`'s to say.
            if let Some(t) = t.filter(|t| *t > limit && *t <= MAX_EVENT_TIME) {
                reasons.note(row, BadKind::TooFarAhead, || {
                    let when = chrono::DateTime::from_timestamp_millis(t)
                        .map(|d| d.to_rfc3339())
                        .unwrap_or_else(|| format!("{t} ms"));
                    format!(
                        "event time `{name}` = {when} is {} ahead of the wall clock; \
                         the limit is event_time.max_ahead = {}",
                        human(Duration::from_millis((t - now).max(0) as u64)),
                        human(*ahead)
                    )
                });
            }
        }
    }

    /// Rows for which a `CHECK` is false (or cannot be evaluated).
    fn failed_checks(&self, batch: &RecordBatch, reasons: &mut Reasons) -> Result<()> {
        for (label, expr) in &self.checks {
            for (row, failure) in evaluate_check(expr, batch)? {
                reasons.note(row, BadKind::CheckFailed, || {
                    format!("{label} failed{failure}")
                });
            }
        }
        Ok(())
    }

    /// Rows whose record key is not their `key_field` column.
    fn wrong_key<'k>(
        &self,
        batch: &RecordBatch,
        key: impl Fn(usize) -> Option<&'k [u8]>,
        reasons: &mut Reasons,
    ) {
        let Some((i, name)) = &self.key else {
            return;
        };
        let Some(values) = batch.column(*i).as_any().downcast_ref::<StringArray>() else {
            return;
        };
        for row in 0..batch.num_rows() {
            let value = values.is_valid(row).then(|| values.value(row).as_bytes());
            let k = key(row);
            if value != k {
                reasons.note(row, BadKind::WrongKey, || {
                    let shown = |b: Option<&[u8]>| {
                        b.map(|b| format!("'{}'", excerpt(&String::from_utf8_lossy(b), 64)))
                            .unwrap_or_else(|| "none".into())
                    };
                    format!(
                        "record key {} is not the value of key_field `{name}` ({})",
                        shown(k),
                        shown(value)
                    )
                });
            }
        }
    }

    /// Whether any rule could reject a row (the decoder skips the pass otherwise).
    pub fn is_empty(&self) -> bool {
        self.finite.is_empty()
            && self.times.is_empty()
            && self.ahead.is_none()
            && self.checks.is_empty()
            && self.key.is_none()
    }
}

fn timestamps(column: &ArrayRef) -> Option<&TimestampMillisecondArray> {
    column.as_any().downcast_ref::<TimestampMillisecondArray>()
}

/// Per row: `None` when the check holds (true or NULL), else `Some("")`, or
/// `Some(": <error>")` when evaluating it on the row failed.
fn evaluate_check(
    expr: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
) -> Result<Vec<(usize, String)>> {
    // The rows where it is false (unknown passes, as in SQL's CHECK).
    let failing = |b: &RecordBatch| -> Result<Vec<usize>> {
        let values = expr.evaluate(b)?.into_array(b.num_rows())?;
        let values = cast(&values, &DataType::Boolean)?;
        let values = values
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| EngineError::Internal("a CHECK did not give booleans".into()))?;
        if values.false_count() == 0 {
            return Ok(Vec::new());
        }
        Ok((values.iter().enumerate())
            .filter_map(|(row, v)| (v == Some(false)).then_some(row))
            .collect())
    };
    match failing(batch) {
        Ok(rows) => Ok(rows.into_iter().map(|row| (row, String::new())).collect()),
        // A row the expression cannot be evaluated on (e.g. an overflow) fails
        // the check on its own: find it row by row, only on this rare path.
        Err(_) => {
            let mut failed = Vec::new();
            for row in 0..batch.num_rows() {
                match failing(&batch.slice(row, 1)) {
                    Ok(rows) if rows.is_empty() => {}
                    Ok(_) => failed.push((row, String::new())),
                    Err(e) => failed.push((row, format!(": {}", excerpt(&e.to_string(), 256)))),
                }
            }
            Ok(failed)
        }
    }
}

/// `1d`, `3h 20min`, `45s`, `120ms`: durations in messages.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    let (days, rest) = (ms / 86_400_000, ms % 86_400_000);
    let (hours, rest) = (rest / 3_600_000, rest % 3_600_000);
    let (mins, rest) = (rest / 60_000, rest % 60_000);
    let (secs, ms) = (rest / 1000, rest % 1000);
    // The two largest units are enough to read: `364d 23h`, `1h 5min`, `2s 500ms`.
    let parts: Vec<String> = [
        (days, "d"),
        (hours, "h"),
        (mins, "min"),
        (secs, "s"),
        (ms, "ms"),
    ]
    .iter()
    .skip_while(|(n, _)| *n == 0)
    .take(2)
    .filter(|(n, _)| *n > 0)
    .map(|(n, unit)| format!("{n}{unit}"))
    .collect();
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}
