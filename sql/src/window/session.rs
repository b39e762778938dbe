//! `SESSION(ts, gap[, max_length])`: per group key, a session lasts while
//! rows keep coming less than `gap` apart; it ends `gap` after its last row
//! (`window_end`), and two sessions merge when a row bridges them. Sessions
//! are cut at `max_length` boundaries (aligned to the epoch in UTC, so the
//! 1-day default cuts at midnight UTC: a session's rows are on one side),
//! so one never grows forever.

use serde::{Deserialize, Serialize};

use super::Args;

/// The longest a session may grow when the query does not say: one day.
pub const DEFAULT_SESSION_MAX_MS: i64 = 86_400_000;

/// A session window over a source's time column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSpec {
    /// Inactivity that ends a session.
    pub gap_ms: i64,
    /// A session's rows never span a multiple of this (rows on either side
    /// of one are in different sessions; its end, `gap` after its last row,
    /// may be past it).
    pub max_length_ms: i64,
}

impl SessionSpec {
    /// Which `max_length` span `ts` is in: rows of different spans never
    /// share a session.
    pub fn span_of(&self, ts: i64) -> i64 {
        ts.div_euclid(self.max_length_ms)
    }

    /// The end of a proto-session of a row at `ts`.
    pub fn proto_end(&self, ts: i64) -> i64 {
        ts.saturating_add(self.gap_ms)
    }
}

/// `SESSION(ts, gap)` or `SESSION(ts, gap, max_length)`.
pub(super) fn session(args: &Args) -> Result<SessionSpec, String> {
    let usage = "SESSION(ts, INTERVAL '30' SECOND[, INTERVAL '1' DAY])";
    if args.len() == 3 {
        args.expect(3, usage)?;
    } else {
        args.expect(2, usage)?;
    }
    let gap = args.interval(1)?;
    let max_length = match args.len() {
        3 => args.interval(2)?,
        _ => DEFAULT_SESSION_MAX_MS,
    };
    if gap > max_length {
        return Err(format!(
            "SESSION gap ({gap} ms) is longer than its maximum length ({max_length} ms)"
        ));
    }
    Ok(SessionSpec {
        gap_ms: gap,
        max_length_ms: max_length,
    })
}
