//! Hive partition paths from event time.

use chrono::{DateTime, Utc};

use super::config::PartitionScheme;

pub(super) const MS_PER_HOUR: i64 = 3_600_000;
pub(super) const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// A partition as a number (rows group by it cheaply), then as a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey(i64);

impl PartitionKey {
    /// The partition of event time `ms` under `scheme`.
    pub fn of(scheme: PartitionScheme, ms: i64) -> Self {
        match scheme {
            PartitionScheme::None => Self(0),
            PartitionScheme::Day => Self(ms.div_euclid(MS_PER_DAY) * MS_PER_DAY),
            PartitionScheme::DayHour => Self(ms.div_euclid(MS_PER_HOUR) * MS_PER_HOUR),
        }
    }

    /// The key as a number (its start), for checkpoints.
    pub fn start(self) -> i64 {
        self.0
    }

    /// The key whose start is `ms` (as [`PartitionKey::start`] gave it).
    pub fn from_start(ms: i64) -> Self {
        Self(ms)
    }

    /// The first event time after the partition (`i64::MAX` without partitions).
    pub fn end(self, scheme: PartitionScheme) -> i64 {
        match scheme {
            PartitionScheme::None => i64::MAX,
            PartitionScheme::Day => self.0.saturating_add(MS_PER_DAY),
            PartitionScheme::DayHour => self.0.saturating_add(MS_PER_HOUR),
        }
    }

    /// `dt=YYYY-MM-DD` or `dt=YYYY-MM-DD/hour=HH` (zero-padded strings, as Athena wants), or "".
    pub fn path(self, scheme: PartitionScheme) -> String {
        let t = DateTime::<Utc>::from_timestamp_millis(self.0).unwrap_or_default();
        match scheme {
            PartitionScheme::None => String::new(),
            PartitionScheme::Day => t.format("dt=%Y-%m-%d").to_string(),
            PartitionScheme::DayHour => t.format("dt=%Y-%m-%d/hour=%H").to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let ms = 1_763_649_000_123; // 2025-11-20T14:30:00.123Z
        assert_eq!(
            PartitionKey::of(PartitionScheme::Day, ms).path(PartitionScheme::Day),
            "dt=2025-11-20"
        );
        assert_eq!(
            PartitionKey::of(PartitionScheme::DayHour, ms).path(PartitionScheme::DayHour),
            "dt=2025-11-20/hour=14"
        );
        assert_eq!(
            PartitionKey::of(PartitionScheme::DayHour, 5).path(PartitionScheme::DayHour),
            "dt=1970-01-01/hour=00"
        );
        assert_eq!(
            PartitionKey::of(PartitionScheme::Day, -1).path(PartitionScheme::Day),
            "dt=1969-12-31"
        );
    }
}
