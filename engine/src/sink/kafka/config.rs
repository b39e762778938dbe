//! `WITH (...)` options of a Kafka sink table.

use arrow::datatypes::DataType;
use engine_sql::{LineError, TableDef, WINDOW_END};

use crate::kafka::KafkaClientOptions;

/// How timestamps are written in JSON records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampFormat {
    /// Milliseconds since the epoch, as in the trade contract (default).
    EpochMillis,
    /// RFC 3339 text, e.g. `2025-11-20T14:30:00Z`.
    Rfc3339,
}

/// What a Kafka sink promises its readers (`sink.commit_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMode {
    /// Records go out as rows are emitted, from an idempotent producer; a
    /// restart after a crash replays the records since the last checkpoint,
    /// identical, so readers that upsert by key and window see each once (default).
    AtLeastOnce,
    /// Each checkpoint's records go out in one Kafka transaction together with
    /// the source offsets it covers; `read_committed` readers see each record
    /// once. Needs checkpoints; records appear one checkpoint interval later.
    ExactlyOnce,
}

/// A Kafka sink table's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSinkConfig {
    /// `topic`: the topic written.
    pub topic: String,
    /// Broker address and pass-through settings.
    pub client: KafkaClientOptions,
    /// `key_field`: the column whose value is the record key (e.g. `symbol`), so
    /// that consumers get each key's records in order on one partition.
    pub key_field: Option<usize>,
    /// `timestamp_field`: the TIMESTAMP column used as record timestamp
    /// (default `window_end` when the table has it).
    pub timestamp_field: Option<usize>,
    /// `json.timestamp_format`: `epoch_millis` (default) or `rfc3339`.
    pub timestamp_format: TimestampFormat,
    /// `sink.commit_mode`: `at_least_once` (default) or `exactly_once`.
    pub commit_mode: CommitMode,
    /// `sink.revisions`: every revision of a window's row (default), or the final one only.
    pub revisions: crate::sink::Revisions,
}

impl KafkaSinkConfig {
    /// Reads and checks the options of `table`; unknown options are errors.
    pub fn from_table(table: &TableDef) -> Result<Self, LineError> {
        let mut o = table.options.clone();
        let column = |o: &engine_sql::Options, key: &str, name: &str| -> Result<usize, LineError> {
            table
                .columns
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| {
                    (
                        o.line_of(key, table.line),
                        format!("option `{key}` = '{name}': no such column"),
                    )
                })
        };
        let topic = o.required("topic", table.line)?;
        o.one_of("format", &["json"])?;
        let client = KafkaClientOptions::from_options(&mut o, table.line)?;
        let key_field = match o.get("key_field") {
            Some(name) => Some(column(&o, "key_field", &name)?),
            None => None,
        };
        let timestamp_field = match o.get("timestamp_field") {
            Some(name) => Some(column(&o, "timestamp_field", &name)?),
            None => table.columns.iter().position(|c| c.name == WINDOW_END),
        };
        if let Some(i) = timestamp_field {
            if !matches!(table.columns[i].data_type, DataType::Timestamp(..)) {
                return Err((
                    o.line_of("timestamp_field", table.line),
                    format!(
                        "timestamp_field `{}` must be a TIMESTAMP column",
                        table.columns[i].name
                    ),
                ));
            }
        }
        let timestamp_format = match o
            .one_of("json.timestamp_format", &["epoch_millis", "rfc3339"])?
            .as_str()
        {
            "rfc3339" => TimestampFormat::Rfc3339,
            _ => TimestampFormat::EpochMillis,
        };
        let commit_mode = match o
            .one_of("sink.commit_mode", &["at_least_once", "exactly_once"])?
            .as_str()
        {
            "exactly_once" => CommitMode::ExactlyOnce,
            _ => CommitMode::AtLeastOnce,
        };
        let revisions = crate::sink::Revisions::from_options(&mut o, crate::sink::Revisions::All)?;
        o.reject_unknown("kafka")?;
        Ok(Self {
            revisions,
            topic,
            client,
            key_field,
            timestamp_field,
            timestamp_format,
            commit_mode,
        })
    }
}
