//! Replaying recorded data as a feed: CSV (including the seed projects'
//! daily bars, `Index,Date,Open,High,Low,Close,Adj Close,Volume,CloseUSD`)
//! and JSON lines, with a column mapping and a time-compression factor.

use std::path::Path;

use super::market::{FeedRecord, RecordKind};
use crate::error::{EngineError, Result};

/// Which source column feeds each field of the trade contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Column holding the symbol.
    pub symbol: String,
    /// Column holding the price.
    pub price: String,
    /// Column holding the size (volume).
    pub size: String,
    /// Column holding the time: epoch ms, RFC 3339, `YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS` (UTC).
    pub ts: String,
}

impl Mapping {
    /// The contract's own names: `symbol`, `price`, `size`, `ts`.
    pub fn identity() -> Self {
        Self {
            symbol: "symbol".into(),
            price: "price".into(),
            size: "size".into(),
            ts: "ts".into(),
        }
    }

    /// The seed projects' daily index bars: `Index`, `CloseUSD`, `Volume`, `Date`.
    pub fn daily_bars() -> Self {
        Self {
            symbol: "Index".into(),
            price: "CloseUSD".into(),
            size: "Volume".into(),
            ts: "Date".into(),
        }
    }

    /// The mapping a file most likely needs: the seed daily bars for a CSV with
    /// their columns, the contract's own names otherwise.
    pub fn detect(path: &Path) -> Result<Self> {
        if !is_csv(path) {
            return Ok(Self::identity());
        }
        let mut reader = csv::Reader::from_path(path).map_err(|e| read_error(path, &e))?;
        let headers = csv_headers(path, &mut reader)?;
        let bars = Self::daily_bars();
        let found = [&bars.symbol, &bars.price, &bars.size, &bars.ts]
            .into_iter()
            .all(|c| headers.contains(c));
        Ok(if found { bars } else { Self::identity() })
    }

    /// Parses `symbol=Index,price=Close,size=Volume,ts=Date`; unnamed fields keep `base`'s columns.
    pub fn parse(spec: &str, base: Mapping) -> std::result::Result<Self, String> {
        let mut m = base;
        for pair in spec.split(',').filter(|p| !p.trim().is_empty()) {
            let (field, column) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}`: expected field=column"))?;
            let slot = match field.trim() {
                "symbol" => &mut m.symbol,
                "price" => &mut m.price,
                "size" => &mut m.size,
                "ts" => &mut m.ts,
                other => {
                    return Err(format!(
                        "unknown field `{other}` (fields: symbol, price, size, ts)"
                    ))
                }
            };
            *slot = column.trim().to_string();
        }
        Ok(m)
    }
}

/// The order in which replayed records are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplayOrder {
    /// By event time (rows with equal times keep file order): a market as it
    /// happened, whatever order the file is in (the seed daily bars are grouped by index).
    #[default]
    Time,
    /// In file order: a recorded stream, disorder and all.
    File,
}

/// How a replay maps, retimes and orders a file.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOptions {
    /// Which columns feed the trade contract.
    pub mapping: Mapping,
    /// Event time of the earliest row; `None` keeps the recorded times (compressed around it).
    pub start_ms: Option<i64>,
    /// Recorded time runs this many times faster in the feed (86400: a day per second).
    pub compression: f64,
    /// The order in which records are sent.
    pub order: ReplayOrder,
}

impl ReplayOptions {
    /// True when records can be sent exactly as recorded: JSON lines already in
    /// the contract, in file order, with their own times. Then malformed lines are
    /// sent too (as bad records, for the dead-letter path) instead of being skipped.
    fn verbatim(&self, csv: bool) -> bool {
        !csv && self.mapping == Mapping::identity()
            && self.start_ms.is_none()
            && self.compression == 1.0
            && self.order == ReplayOrder::File
    }
}

/// What a replay read.
#[derive(Debug)]
pub struct Replay {
    /// The records, in the order to send them.
    pub records: Vec<FeedRecord>,
    /// Rows that could not be mapped (missing or malformed values), skipped.
    pub skipped: u64,
    /// The first skipped row's line and reason.
    pub first_skip: Option<(usize, String)>,
}

/// Reads `path` (`.csv`, or JSON lines otherwise) and maps it onto the trade contract.
///
/// Fails if a mapped CSV column is missing, or if no row at all can be mapped
/// (almost always a wrong mapping); otherwise rows that cannot be mapped are
/// skipped and counted, never silently.
pub fn replay(path: &Path, options: &ReplayOptions) -> Result<Replay> {
    let csv = is_csv(path);
    let verbatim = options.verbatim(csv);
    let rows = if csv {
        read_csv(path, &options.mapping)?
    } else {
        read_json_lines(path, &options.mapping)?
    };
    let mut out = Replay {
        records: Vec::with_capacity(rows.len()),
        skipped: 0,
        first_skip: None,
    };
    // Every mapped row has a time, so the origin is real whenever it is used.
    let origin = rows
        .iter()
        .filter_map(|row| row.mapped.as_ref().ok().map(|t| t.ts))
        .min()
        .unwrap_or(0);
    let start = options.start_ms.unwrap_or(origin);
    for row in rows {
        match row.mapped {
            Ok(t) => {
                let ts = start + ((t.ts - origin) as f64 / options.compression).round() as i64;
                let payload = if verbatim {
                    row.raw
                } else {
                    // The symbol through serde, so a quote or backslash in a file stays valid JSON.
                    format!(
                        r#"{{"symbol":{},"price":{},"size":{},"ts":{ts}}}"#,
                        serde_json::Value::from(t.symbol.as_str()),
                        t.price,
                        t.size
                    )
                    .into_bytes()
                };
                out.records.push(FeedRecord {
                    key: t.symbol,
                    payload,
                    sent_ms: ts,
                    ts,
                    kind: RecordKind::Trade,
                });
            }
            Err(_) if verbatim => {
                // Sent as recorded, timed like the record before it.
                let ts = out.records.last().map_or(origin, |r| r.ts);
                let key = serde_json::from_slice::<serde_json::Value>(&row.raw)
                    .ok()
                    .and_then(|v| v["symbol"].as_str().map(str::to_string))
                    .unwrap_or_default();
                out.records.push(FeedRecord {
                    key,
                    payload: row.raw,
                    sent_ms: ts,
                    ts,
                    kind: RecordKind::Bad,
                });
            }
            Err(reason) => {
                out.skipped += 1;
                out.first_skip.get_or_insert((row.line, reason));
            }
        }
    }
    if out.records.is_empty() && out.skipped > 0 {
        let (line, reason) = out.first_skip.clone().unwrap_or_default();
        return Err(EngineError::Execution(format!(
            "{}: no row maps onto the trade contract (line {line}: {reason}); {MAP_HINT}",
            path.display()
        )));
    }
    match options.order {
        ReplayOrder::Time => out.records.sort_by_key(|r| r.ts),
        // Pacing needs a clock that never goes back: a record leaves no earlier than the one before.
        ReplayOrder::File => {
            let mut clock = i64::MIN;
            for r in &mut out.records {
                clock = clock.max(r.ts);
                r.sent_ms = clock;
            }
        }
    }
    Ok(out)
}

const MAP_HINT: &str = "name the columns with --map symbol=...,price=...,size=...,ts=...";

fn is_csv(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// One trade read from a row.
struct Trade {
    symbol: String,
    price: f64,
    size: f64,
    ts: i64,
}

/// One row of the file: its line, its bytes (JSON lines only), and its trade or why not.
struct Row {
    line: usize,
    raw: Vec<u8>,
    mapped: std::result::Result<Trade, String>,
}

fn read_csv(path: &Path, mapping: &Mapping) -> Result<Vec<Row>> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| read_error(path, &e))?;
    let headers = csv_headers(path, &mut reader)?;
    let index = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            EngineError::Execution(format!(
                "{}: no column `{name}` (columns: {}); {MAP_HINT}",
                path.display(),
                headers.join(", ")
            ))
        })
    };
    let (s, p, v, t) = (
        index(&mapping.symbol)?,
        index(&mapping.price)?,
        index(&mapping.size)?,
        index(&mapping.ts)?,
    );
    let mut rows = Vec::new();
    for record in reader.byte_records() {
        let record = record.map_err(|e| read_error(path, &e))?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let get = |c: usize| {
            std::str::from_utf8(record.get(c).unwrap_or_default())
                .unwrap_or("")
                .trim()
        };
        rows.push(Row {
            line,
            raw: Vec::new(),
            mapped: trade(get(s), get(p), get(v), get(t)),
        });
    }
    Ok(rows)
}

fn read_json_lines(path: &Path, mapping: &Mapping) -> Result<Vec<Row>> {
    let bytes = std::fs::read(path).map_err(|e| read_error(path, &e))?;
    // One record per line: the newline after the last record ends it, it does not start another.
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let rows = body
        .split(|b| *b == b'\n')
        .enumerate()
        .map(|(i, raw)| {
            let mapped = serde_json::from_slice::<serde_json::Value>(raw)
                .map_err(|e| format!("not JSON ({e})"))
                .and_then(|v| {
                    let field = |name: &str| match &v[name] {
                        serde_json::Value::String(s) => Ok(s.clone()),
                        serde_json::Value::Null => Err(format!("no field `{name}`")),
                        other => Ok(other.to_string()),
                    };
                    trade(
                        &field(&mapping.symbol)?,
                        &field(&mapping.price)?,
                        &field(&mapping.size)?,
                        &field(&mapping.ts)?,
                    )
                });
            Row {
                line: i + 1,
                raw: raw.to_vec(),
                mapped,
            }
        })
        .collect();
    Ok(rows)
}

fn csv_headers(path: &Path, reader: &mut csv::Reader<std::fs::File>) -> Result<Vec<String>> {
    Ok(reader
        .headers()
        .map_err(|e| read_error(path, &e))?
        .iter()
        .map(str::to_string)
        .collect())
}

fn read_error(path: &Path, e: &dyn std::fmt::Display) -> EngineError {
    EngineError::Execution(format!("reading {}: {e}", path.display()))
}

fn trade(symbol: &str, price: &str, size: &str, ts: &str) -> std::result::Result<Trade, String> {
    if symbol.is_empty() {
        return Err("empty symbol".into());
    }
    let number = |what: &str, v: &str| {
        v.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(|| format!("{what} `{v}` is not a number"))
    };
    Ok(Trade {
        symbol: symbol.to_string(),
        price: number("price", price)?,
        size: number("size", size)?,
        ts: parse_time(ts).ok_or_else(|| format!("time `{ts}` is not a time"))?,
    })
}

/// Epoch ms, RFC 3339, `YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS`, all UTC.
fn parse_time(s: &str) -> Option<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S") {
        return Some(t.and_utc().timestamp_millis());
    }
    let day = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(mapping: Mapping, start_ms: Option<i64>, compression: f64) -> ReplayOptions {
        ReplayOptions {
            mapping,
            start_ms,
            compression,
            order: ReplayOrder::Time,
        }
    }

    #[test]
    fn seed_daily_bars_become_trades_in_time_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("indexProcessed.csv");
        // Grouped by index, as the seed file is: time goes back between groups.
        std::fs::write(
            &path,
            "Index,Date,Open,High,Low,Close,Adj Close,Volume,CloseUSD\n\
             HSI,1986-12-31,2568.3,2568.3,2568.3,2568.3,2568.3,0.0,333.879\n\
             HSI,1987-01-02,2540.1,2540.1,2540.1,2540.1,2540.1,0.0,330.213\n\
             NYA,1987-01-01,1000.0,1000.0,1000.0,1000.0,1000.0,,1000.0\n\
             NYA,1987-01-01,1001.0,1001.0,1001.0,1001.0,1001.0,5,1001.0\n",
        )
        .unwrap();
        assert_eq!(Mapping::detect(&path).unwrap(), Mapping::daily_bars());
        let start = 1_763_596_800_000; // 2025-11-20T00:00:00Z
        let r = replay(
            &path,
            &options(Mapping::daily_bars(), Some(start), 86_400.0),
        )
        .unwrap();
        assert_eq!((r.records.len(), r.skipped), (3, 1));
        assert_eq!(
            r.first_skip.as_ref().unwrap().0,
            4,
            "line of the empty volume"
        );
        assert!(r.first_skip.as_ref().unwrap().1.contains("size"));
        let times: Vec<(String, i64)> = r.records.iter().map(|r| (r.key.clone(), r.ts)).collect();
        assert_eq!(
            times,
            [
                ("HSI".to_string(), start),
                ("NYA".to_string(), start + 1_000),
                ("HSI".to_string(), start + 2_000)
            ],
            "a day per second, in time order"
        );
        assert_eq!(
            String::from_utf8(r.records[2].payload.clone()).unwrap(),
            format!(
                r#"{{"symbol":"HSI","price":330.213,"size":0,"ts":{}}}"#,
                start + 2_000
            )
        );
        let err = replay(&path, &options(Mapping::identity(), None, 1.0)).unwrap_err();
        assert!(
            err.to_string()
                .contains("no column `symbol` (columns: Index, Date"),
            "{err}"
        );
    }

    #[test]
    fn recorded_json_lines_replay_verbatim_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trades.jsonl");
        let lines: [&[u8]; 5] = [
            br#"{"symbol":"A","price":1.5,"size":100,"ts":2000}"#,
            br#"{"symbol":"B","price":2.5,"size":100,"ts":"1970-01-01T00:00:01.500Z"}"#,
            br#"{"symbol":"A","price":"n/a","size":100,"ts":2100}"#,
            b"",
            b"\x00\xff not json",
        ];
        std::fs::write(&path, [lines.join(&b'\n'), b"\n".to_vec()].concat()).unwrap();
        let mut opts = options(Mapping::identity(), None, 1.0);
        opts.order = ReplayOrder::File;
        let r = replay(&path, &opts).unwrap();
        assert_eq!(r.skipped, 0);
        let got: Vec<(&[u8], RecordKind, i64, i64)> = r
            .records
            .iter()
            .map(|r| (r.payload.as_slice(), r.kind, r.ts, r.sent_ms))
            .collect();
        let (t, b) = (RecordKind::Trade, RecordKind::Bad);
        assert_eq!(
            got,
            [
                (lines[0], t, 2000, 2000),
                (lines[1], t, 1500, 2000),
                (lines[2], b, 1500, 2000),
                (lines[3], b, 1500, 2000),
                (lines[4], b, 1500, 2000),
            ]
        );
        assert_eq!(r.records[2].key, "A");

        // Retimed, the same file is mapped: bad lines are skipped and counted.
        let r = replay(&path, &options(Mapping::identity(), Some(0), 2.0)).unwrap();
        assert_eq!(r.skipped, 3);
        assert_eq!(r.first_skip.as_ref().unwrap().0, 3);
        let got: Vec<i64> = r.records.iter().map(|r| r.ts).collect();
        assert_eq!(got, [0, 250]);

        let err = replay(
            &path,
            &options(
                Mapping::parse("symbol=ticker", Mapping::identity()).unwrap(),
                None,
                1.0,
            ),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("no row maps onto the trade contract (line 1: no field `ticker`)"),
            "{err}"
        );
    }

    #[test]
    fn mappings() {
        let m = Mapping::parse("symbol=Ticker, ts=Time", Mapping::identity()).unwrap();
        assert_eq!(
            (m.symbol.as_str(), m.price.as_str(), m.ts.as_str()),
            ("Ticker", "price", "Time")
        );
        assert!(Mapping::parse("volume=V", Mapping::identity())
            .unwrap_err()
            .contains("unknown field `volume`"));
    }
}
