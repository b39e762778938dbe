//! Counters a running job keeps, shared by its tasks and read by the CLI and tests.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Job-wide counters. Everything that is dropped is counted here, never silently lost.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Kafka records read from sources.
    pub records_in: AtomicU64,
    /// Records that failed to decode or lacked a required field (sent to the dead-letter topic).
    pub bad_records: AtomicU64,
    /// Rows that arrived after their window was gone (its end plus the allowed
    /// lateness passed): counted, and sent to the `LATE DATA TO` table if the
    /// statement has one. With HOP a record belongs to several windows; each
    /// one it missed counts once. With CUMULATE a row that missed some of its
    /// windows (its step had closed) counts once, however many it missed.
    pub late_rows: AtomicU64,
    /// Rows statements produced on their main output, early rows and
    /// corrections included (each may go to several sinks).
    pub rows_emitted: AtomicU64,
    /// Rows written to sinks.
    pub rows_out: AtomicU64,
    /// Windows holding state now, over all windowed statements: TUMBLE/HOP
    /// windows, CUMULATE periods, SESSION sessions (one per key).
    pub open_windows: AtomicI64,
    /// Windows emitted, summed over the job's windowed statements: TUMBLE/HOP
    /// window ends, CUMULATE step ends, SESSION sessions (one per key).
    pub windows_emitted: AtomicU64,
    /// Files committed by lake sinks.
    pub files_written: AtomicU64,
    /// Lake partitions marked complete (`_SUCCESS` written, again after late files).
    pub partitions_committed: AtomicU64,
    /// Rows written to a lake partition after it was committed (into a new file in it).
    pub late_lake_rows: AtomicU64,
    /// The combined watermark (event time, ms), or `i64::MIN` before the first.
    pub watermark: AtomicI64,
    /// The newest complete checkpoint's epoch (0: none yet).
    pub last_checkpoint: AtomicU64,
    /// Failed attempts at writing or publishing a checkpoint (each is retried).
    pub checkpoint_failures: AtomicU64,
}

impl Metrics {
    /// A fresh set of counters.
    pub fn new() -> Self {
        Self {
            watermark: AtomicI64::new(i64::MIN),
            ..Default::default()
        }
    }

    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads `counter`.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// A one-line summary for logs.
    pub fn summary(&self) -> String {
        format!(
            "records_in={} bad_records={} late_rows={} windows_emitted={} rows_out={} files_written={} partitions_committed={} late_lake_rows={} last_checkpoint={} checkpoint_failures={}",
            Self::get(&self.records_in),
            Self::get(&self.bad_records),
            Self::get(&self.late_rows),
            Self::get(&self.windows_emitted),
            Self::get(&self.rows_out),
            Self::get(&self.files_written),
            Self::get(&self.partitions_committed),
            Self::get(&self.late_lake_rows),
            Self::get(&self.last_checkpoint),
            Self::get(&self.checkpoint_failures),
        )
    }
}
