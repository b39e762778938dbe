//! `CUMULATE(ts, step, max)` (Flink's semantics): windows that all start
//! at a period's start (periods of `max`, aligned to the epoch in UTC, so a
//! 1-day period starts at midnight UTC) and end every `step`: the running
//! aggregate since the period began, e.g. the intraday high, low and VWAP
//! since midnight, one row per step.

use serde::{Deserialize, Serialize};

use super::Args;

/// The most windows a CUMULATE period may have (max / step): a week of
/// minutes. Each step emits a row per key, and the end of a bounded input
/// emits every step left in the period.
pub const MAX_CUMULATE_STEPS: i64 = 7 * 24 * 60;

/// A cumulating window over a source's time column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CumulateSpec {
    /// Distance between window ends.
    pub step_ms: i64,
    /// Length of a period: its last window's length.
    pub max_ms: i64,
}

impl CumulateSpec {
    /// Start of the period holding `ts`: every window of `ts` starts there.
    pub fn period_start(&self, ts: i64) -> i64 {
        ts.div_euclid(self.max_ms).saturating_mul(self.max_ms)
    }

    /// End of the first (shortest) window holding `ts`: the end of its step.
    pub fn first_end(&self, ts: i64) -> i64 {
        (ts.div_euclid(self.step_ms).saturating_mul(self.step_ms)).saturating_add(self.step_ms)
    }
}

/// `CUMULATE(ts, step, max)`: `max` a multiple of `step`, so that a
/// period's last window ends at the period's end.
pub(super) fn cumulate(args: &Args) -> Result<CumulateSpec, String> {
    args.expect(3, "CUMULATE(ts, INTERVAL '1' MINUTE, INTERVAL '1' DAY)")?;
    let (step, max) = (args.interval(1)?, args.interval(2)?);
    if max % step != 0 {
        return Err(format!(
            "CUMULATE max size ({max} ms) must be a multiple of its step ({step} ms)"
        ));
    }
    if max / step > MAX_CUMULATE_STEPS {
        return Err(format!(
            "CUMULATE max size ({max} ms) over its step ({step} ms) makes {} windows per period; \
             at most {MAX_CUMULATE_STEPS} are allowed (use a longer step)",
            max / step
        ));
    }
    Ok(CumulateSpec {
        step_ms: step,
        max_ms: max,
    })
}
