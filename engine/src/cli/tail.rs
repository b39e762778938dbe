//! `engine tail TOPIC`: subscribe to a derived topic from the terminal.
//!
//! An aligned table on a terminal, JSON lines when piped (or as `--format` says).

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use anyhow::Context;
use clap::{Args, ValueEnum};
use engine::query::escape_control;
use engine::ConsumerLogs;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

/// Arguments of `engine tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// The topic to read (e.g. ohlc_1m).
    pub topic: String,
    /// Start at the beginning of the topic instead of its end.
    #[arg(long)]
    pub from_beginning: bool,
    /// Stop after this many records.
    #[arg(long)]
    pub count: Option<u64>,
    /// Only records with this key (e.g. a symbol).
    #[arg(long)]
    pub key: Option<String>,
    /// Stop once every partition has been read to its end.
    #[arg(long)]
    pub exit_at_end: bool,
    /// Output format: `auto` is a table on a terminal and JSON lines otherwise.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// The cluster, and how to sign in to it.
    #[command(flatten)]
    pub kafka: super::kafka::KafkaArgs,
}

/// How records are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Table on a terminal, JSON lines when piped.
    Auto,
    /// An aligned table, times readable.
    Table,
    /// Each record's value as it is, one per line.
    Json,
}

impl TailArgs {
    /// Reads and prints until --count, --exit-at-end, or Ctrl-C.
    pub async fn run(self) -> anyhow::Result<()> {
        let stop = super::stop_on_ctrl_c();
        tokio::task::spawn_blocking(move || self.read(&stop))
            .await
            .context("tail task")?
    }

    fn read(self, stop: &CancellationToken) -> anyhow::Result<()> {
        let client = self.kafka.client()?;
        let group = format!("engine-tail-{}", std::process::id());
        let eof = if self.exit_at_end { "true" } else { "false" };
        // The group is only a name here (nothing is committed), which a
        // cluster's ACLs may fix: -X group.id can set it. What --exit-at-end
        // relies on cannot be changed.
        let mut config = client.client_config_with(&[("group.id", &group)]);
        config
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", eof);
        let consumer: BaseConsumer<ConsumerLogs> =
            client.consumer(&config, ConsumerLogs::new, || {
                format!("creating a consumer of `{}`", self.topic)
            })?;
        let partitions = engine::unassigned_consumer_partitions_of(
            &consumer,
            &consumer.context().hooks,
            &self.topic,
            &client.bootstrap_servers,
            "topic",
        )?;
        // Assigned, not subscribed: a reader needs no group rebalance and commits nothing.
        let mut assignment = TopicPartitionList::new();
        let start = if self.from_beginning {
            Offset::Beginning
        } else {
            Offset::End
        };
        for &p in &partitions {
            assignment.add_partition_offset(&self.topic, p, start)?;
        }
        consumer.assign(&assignment)?;

        let table = match self.format {
            Format::Table => true,
            Format::Json => false,
            Format::Auto => std::io::stdout().is_terminal(),
        };
        let mut out = std::io::stdout().lock();
        let mut printer = TablePrinter::default();
        let (mut printed, mut at_end) = (0u64, BTreeSet::new());
        while !stop.is_cancelled() && self.count.is_none_or(|c| printed < c) {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    at_end.remove(&m.partition());
                    if self
                        .key
                        .as_deref()
                        .is_some_and(|k| m.key() != Some(k.as_bytes()))
                    {
                        continue;
                    }
                    let payload = m.payload().unwrap_or_default();
                    let written = if table {
                        printer.print(&mut out, payload)
                    } else {
                        out.write_all(payload).and_then(|()| out.write_all(b"\n"))
                    };
                    if written.is_err() {
                        return Ok(()); // the reader went away (e.g. `| head`)
                    }
                    printed += 1;
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    at_end.insert(p);
                    if self.exit_at_end && at_end.len() == partitions.len() {
                        break;
                    }
                }
                Some(Err(e)) => eprintln!("warning: {e}"),
                None => {}
            }
        }
        out.flush().ok();
        Ok(())
    }
}

/// A JSON object's fields in the order they were written (candles read
/// symbol, window, open, high, low, close as the job wrote them).
struct OrderedFields(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for OrderedFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = OrderedFields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedFields, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    fields.push(entry);
                }
                Ok(OrderedFields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// Prints JSON objects as table rows; the header and column widths come
/// from the first record.
#[derive(Default)]
struct TablePrinter {
    /// Name, width, and whether values align right (numbers) or left (text).
    columns: Vec<(String, usize, bool)>,
}

impl TablePrinter {
    fn print(&mut self, out: &mut impl Write, payload: &[u8]) -> std::io::Result<()> {
        let Ok(OrderedFields(fields)) = serde_json::from_slice::<OrderedFields>(payload) else {
            return writeln!(out, "{}", escape_control(&String::from_utf8_lossy(payload)));
        };
        let fields: Vec<(String, serde_json::Value)> = fields
            .into_iter()
            .map(|(k, v)| (escape_control(&k).into_owned(), v))
            .collect();
        let cells: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.clone(), escape_control(&cell(k, v)).into_owned()))
            .collect();
        if self.columns.is_empty() {
            // Room for a few more digits than the first row shows, so later rows stay aligned.
            self.columns = fields
                .iter()
                .zip(&cells)
                .map(|((k, v), (_, text))| (k.clone(), k.len().max(text.len() + 2), v.is_number()))
                .collect();
            let header: Vec<String> = self
                .columns
                .iter()
                .map(|(k, w, right)| align(k, *w, *right))
                .collect();
            writeln!(out, "{}", header.join("  ").trim_end())?;
        }
        let row: Vec<String> = self
            .columns
            .iter()
            .map(|(k, w, right)| {
                let value = cells
                    .iter()
                    .find(|(name, _)| name == k)
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("");
                align(value, *w, *right)
            })
            .collect();
        writeln!(out, "{}", row.join("  ").trim_end())
    }
}

fn align(text: &str, width: usize, right: bool) -> String {
    if right {
        format!("{text:>width$}")
    } else {
        format!("{text:<width$}")
    }
}

/// A value as a person reads it: epoch-millisecond times as UTC date-times.
fn cell(name: &str, value: &serde_json::Value) -> String {
    let looks_like_time = name == "ts"
        || name.ends_with("_start")
        || name.ends_with("_end")
        || name.ends_with("time");
    match value {
        serde_json::Value::Number(n) if looks_like_time => n
            .as_i64()
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
            .unwrap_or_else(|| n.to_string()),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows_escape_control_characters() {
        let mut out = Vec::new();
        let mut printer = TablePrinter::default();
        let evil = br#"{"symbol":"EVIL\u001b[2J\u001b]0;pwned\u0007","close":1.5}"#;
        printer.print(&mut out, evil).unwrap();
        printer.print(&mut out, b"\x1b[31mnot json").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
        assert!(text.contains(r"EVIL\u{1b}[2J\u{1b}]0;pwned\u{7}"), "{text}");
        assert!(text.contains(r"\u{1b}[31mnot json"), "{text}");
    }
}
