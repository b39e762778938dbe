//! `WITH (...)` options of a Kafka source table.

use std::time::Duration;

use engine_sql::{LineError, TableDef};

use crate::kafka::KafkaClientOptions;

/// Where a source starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupMode {
    /// The consumer group's committed offsets; where there are none, `auto.offset.reset`.
    GroupOffsets,
    /// The earliest offset of every partition.
    Earliest,
    /// The end of every partition (only new records).
    Latest,
    /// The first record of every partition at or after this time (epoch ms,
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

/// A Kafka source table's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSourceConfig {
    /// Table name (for logs and the default group id).
    pub table: String,
    /// `topic`: the topic read.
    pub topic: String,
    /// Broker address and pass-through settings.
    pub client: KafkaClientOptions,
    /// `group_id`: the consumer group whose offsets are used and committed.
    pub group_id: String,
    /// `scan.startup.mode`: `group-offsets` (default), `earliest-offset`, `latest-offset`.
    pub startup: StartupMode,
    /// `auto.offset.reset`: where `group-offsets` starts without a committed offset (`earliest` default).
    pub offset_reset_earliest: bool,
    /// `dlq.topic`: where bad records go (default `<topic>.dlq`).
    pub dlq_topic: String,
    /// `max_message_bytes`: larger payloads are bad records (default 1 MiB).
    pub max_message_bytes: usize,
    /// `batch.size`: records decoded together (default 8192).
    pub batch_size: usize,
    /// `batch.linger`: longest wait before a partial batch is decoded (default 100ms).
    pub batch_linger: Duration,
    /// `watermark.idle_timeout`: a partition silent this long stops holding the watermark (default 30s).
    pub idle_timeout: Duration,
    /// `event_time.max_ahead`: a record whose event time is further ahead of
    /// the wall clock is a bad record (default 1d; `none`: no bound). One
    /// trade dated next year would otherwise close every open window.
    pub max_ahead: Option<Duration>,
    /// `key_field`: the column the record key equals (records whose key
    /// differs are bad records). It tells `--scale-out` that a `GROUP BY` of
    /// that column sees all of a group's records in one partition.
    pub key_field: Option<String>,
}

/// Default `event_time.max_ahead`: a day covers clock skew and time zones
/// got wrong by a feed, and still stops a record dated next year.
pub const DEFAULT_MAX_AHEAD: Duration = Duration::from_secs(86_400);

/// Default `max_message_bytes`: librdkafka's own `message.max.bytes` default.
const fn default_max_message_bytes() -> u64 {
    1 << 20
}

impl KafkaSourceConfig {
    /// Reads and checks the options of `table`; unknown options are errors.
    pub fn from_table(table: &TableDef) -> Result<Self, LineError> {
        let mut o = table.options.clone();
        let topic = o.required("topic", table.line)?;
        o.one_of("format", &["json"])?;
        let client = KafkaClientOptions::from_options(&mut o, table.line)?;
        let startup = match o
            .one_of(
                "scan.startup.mode",
                &["group-offsets", "earliest-offset", "latest-offset"],
            )?
            .as_str()
        {
            "earliest-offset" => StartupMode::Earliest,
            "latest-offset" => StartupMode::Latest,
            _ => StartupMode::GroupOffsets,
        };
        let config = Self {
            table: table.name.clone(),
            group_id: o
                .get("group_id")
                .unwrap_or_else(|| format!("engine.{}", table.name)),
            startup,
            offset_reset_earliest: o.one_of("auto.offset.reset", &["earliest", "latest"])?
                == "earliest",
            dlq_topic: o.get("dlq.topic").unwrap_or_else(|| format!("{topic}.dlq")),
            max_message_bytes: o.bytes("max_message_bytes", default_max_message_bytes())? as usize,
            batch_size: o.count("batch.size", 8192)?,
            batch_linger: o.duration("batch.linger", Duration::from_millis(100))?,
            idle_timeout: o.duration("watermark.idle_timeout", Duration::from_secs(30))?,
            max_ahead: match o.get("event_time.max_ahead") {
                Some(v) if v.eq_ignore_ascii_case("none") => None,
                _ => Some(o.duration("event_time.max_ahead", DEFAULT_MAX_AHEAD)?),
            },
            key_field: o.get("key_field"),
            topic,
            client,
        };
        o.reject_unknown("kafka")?;
        Ok(config)
    }
}
