//! The options every source table has: how records are batched and
//! decoded, and the rules each row must keep.

use std::time::Duration;

use engine_sql::{LineError, Options};

/// Default `event_time.max_ahead`: a day covers clock skew and time zones
/// got wrong by a feed, and still stops a record dated next year.
pub const DEFAULT_MAX_AHEAD: Duration = Duration::from_secs(86_400);

/// Where a source starts reading when no checkpoint says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupMode {
    /// The consumer group's committed offsets; where there are none, `auto.offset.reset`.
    GroupOffsets,
    /// The earliest record of every split.
    Earliest,
    /// The end of every split (only new records).
    Latest,
    /// The first record of every split at or after this time (epoch ms,
    /// by record timestamp; `engine run --reset --start <time>`).
    Timestamp(i64),
}

impl StartupMode {
    /// `--start` with `--reset`: `earliest`, `latest`, `group-offsets`, or an
    /// RFC 3339 time (`now` too).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "earliest" | "earliest-offset" => Self::Earliest,
            "latest" | "latest-offset" => Self::Latest,
            "group-offsets" | "group" => Self::GroupOffsets,
            "now" => Self::Timestamp(chrono::Utc::now().timestamp_millis()),
            time => Self::Timestamp(
                chrono::DateTime::parse_from_rfc3339(time)
                    .ok()?
                    .timestamp_millis(),
            ),
        })
    }
}

/// Batching, decoding and row-rule options of a source table.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadOptions {
    /// `max_message_bytes`: larger payloads are bad records (default 1 MiB).
    pub max_message_bytes: usize,
    /// `batch.size`: records decoded together (default 8192).
    pub batch_size: usize,
    /// `batch.linger`: longest wait before a partial batch is decoded
    /// (default 100ms), while more records are coming: a reader that has
    /// caught up with its source has its batch decoded at once.
    pub batch_linger: Duration,
    /// `watermark.idle_timeout`: a split silent this long stops holding the watermark (default 30s).
    pub idle_timeout: Duration,
    /// `watermark.idle_advance`: once every split has been silent this long,
    /// the watermark advances with the wall clock from the last event time
    /// seen, so the last windows close when a market closes (default off).
    pub idle_advance: Option<Duration>,
    /// `event_time.max_ahead`: a record whose event time is further ahead of
    /// the wall clock is a bad record (default 1d; `none`: no bound). One
    /// trade dated next year would otherwise close every open window.
    pub max_ahead: Option<Duration>,
    /// `key_field`: the column the record key equals (records whose key
    /// differs are bad records). It tells `--scale-out` that a `GROUP BY` of
    /// that column sees all of a group's records in one partition.
    pub key_field: Option<String>,
}

impl ReadOptions {
    /// Reads these options (and `format`, which must be `json`) from `o`.
    pub fn from_options(o: &mut Options) -> Result<Self, LineError> {
        o.one_of("format", &["json"])?;
        Ok(Self {
            max_message_bytes: o.bytes("max_message_bytes", 1 << 20)? as usize,
            batch_size: o.count("batch.size", 8192)?,
            batch_linger: o.duration("batch.linger", Duration::from_millis(100))?,
            idle_timeout: o.duration("watermark.idle_timeout", Duration::from_secs(30))?,
            idle_advance: match o.get("watermark.idle_advance") {
                Some(v) if v.eq_ignore_ascii_case("none") || v.eq_ignore_ascii_case("off") => None,
                Some(_) => Some(o.duration("watermark.idle_advance", Duration::ZERO)?)
                    .filter(|d| !d.is_zero()),
                None => None,
            },
            max_ahead: match o.get("event_time.max_ahead") {
                Some(v) if v.eq_ignore_ascii_case("none") => None,
                _ => Some(o.duration("event_time.max_ahead", DEFAULT_MAX_AHEAD)?),
            },
            key_field: o.get("key_field"),
        })
    }
}
