//! `connector = 'memory'`: records from a named stream in this process, for
//! tests and for programs that embed the engine. A stream has splits
//! (like partitions); records are appended with [`Stream::append`], and
//! positions a checkpoint covers are committed back to the stream (as a
//! consumer group would keep them). Bad records go to the stream's own
//! dead letters.
//!
//! ```sql
//! CREATE TABLE trades (...) WITH (connector = 'memory', stream = 'trades', format = 'json');
//! ```

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use engine_sql::TableDef;
use serde::{Deserialize, Serialize};

use super::runner::RecordBuffer;
use super::{
    DeadLetterSink, OpenedSource, Origin, ReadOptions, SourceContext, SourceReader, SourceSpec,
    SourceState, StartupMode,
};
use crate::checkpoint::{CommitPoint, Committer, Snapshot};
use crate::error::{EngineError, Result};

/// Records handed to the runner per split and poll: bounds one poll's work.
const PER_POLL: usize = 1024;

static STREAMS: LazyLock<Mutex<BTreeMap<String, Arc<Stream>>>> = LazyLock::new(Default::default);

/// A named stream of records in this process.
#[derive(Debug, Default)]
pub struct Stream {
    state: Mutex<StreamState>,
}

#[derive(Debug, Default)]
struct StreamState {
    splits: Vec<Vec<Record>>,
    committed: BTreeMap<i32, i64>,
    dead_letters: Vec<DeadLetter>,
}

/// One record of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Its value (`None`: a tombstone).
    pub payload: Option<Vec<u8>>,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its timestamp (ms).
    pub timestamp: Option<i64>,
}

/// A bad record, as the stream's dead letters keep it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The record's value.
    pub payload: Vec<u8>,
    /// Why it is bad.
    pub error: String,
    /// Split and position (none for a row a statement rejected).
    pub position: Option<(i32, i64)>,
    /// The statement that rejected it, if not the source.
    pub statement: Option<String>,
}

/// The stream named `name` (created empty, with one split, if new).
pub fn stream(name: &str) -> Arc<Stream> {
    let mut streams = STREAMS.lock().expect("no panics while locked");
    Arc::clone(streams.entry(name.to_string()).or_insert_with(|| {
        Arc::new(Stream {
            state: Mutex::new(StreamState {
                splits: vec![Vec::new()],
                ..Default::default()
            }),
        })
    }))
}

impl Stream {
    fn lock(&self) -> std::sync::MutexGuard<'_, StreamState> {
        self.state.lock().expect("no panics while locked")
    }

    /// Gives the stream `n` splits (at least its current number).
    pub fn set_splits(&self, n: usize) {
        let mut s = self.lock();
        let n = n.max(s.splits.len());
        s.splits.resize_with(n, Vec::new);
    }

    /// Appends a record with `payload` to `split`; returns its position.
    pub fn append(
        &self,
        split: i32,
        payload: &[u8],
        key: Option<&[u8]>,
        timestamp: Option<i64>,
    ) -> i64 {
        let mut s = self.lock();
        let at = usize::try_from(split).expect("splits count from 0");
        if s.splits.len() <= at {
            s.splits.resize_with(at + 1, Vec::new);
        }
        s.splits[at].push(Record {
            payload: Some(payload.to_vec()),
            key: key.map(<[u8]>::to_vec),
            timestamp,
        });
        s.splits[at].len() as i64 - 1
    }

    /// The positions committed so far (next position to read, by split).
    pub fn committed(&self) -> BTreeMap<i32, i64> {
        self.lock().committed.clone()
    }

    /// The bad records sent to this stream's dead letters.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.lock().dead_letters.clone()
    }

    fn lengths(&self) -> Vec<i64> {
        self.lock().splits.iter().map(|s| s.len() as i64).collect()
    }
}

/// A memory source table's options.
#[derive(Debug, Clone, PartialEq)]
pub struct MemorySourceConfig {
    /// `stream`: the stream read (default: the table's name).
    pub stream: String,
    /// `scan.startup.mode`: `group-offsets` (default: committed positions,
    /// else the earliest), `earliest-offset` or `latest-offset`.
    pub startup: StartupMode,
    /// Batching, decoding and row rules.
    pub read: ReadOptions,
}

/// `connector = 'memory'`: checks a source table's options.
pub fn spec(file: &str, table: &TableDef) -> Result<Box<dyn SourceSpec>> {
    let at = |e| crate::connector::option_error(file, table, e);
    let mut o = table.options.clone();
    let read = ReadOptions::from_options(&mut o).map_err(at)?;
    let startup = match o
        .one_of(
            "scan.startup.mode",
            &["group-offsets", "earliest-offset", "latest-offset"],
        )
        .map_err(at)?
        .as_str()
    {
        "earliest-offset" => StartupMode::Earliest,
        "latest-offset" => StartupMode::Latest,
        _ => StartupMode::GroupOffsets,
    };
    let config = MemorySourceConfig {
        stream: o.get("stream").unwrap_or_else(|| table.name.clone()),
        startup,
        read,
    };
    o.reject_unknown("memory").map_err(at)?;
    Ok(Box::new(config))
}

#[async_trait::async_trait]
impl SourceSpec for MemorySourceConfig {
    fn describe(&self) -> String {
        format!("memory stream `{}`", self.stream)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn read_options(&self) -> &ReadOptions {
        &self.read
    }

    async fn committed(&self, lane: Option<i32>) -> Result<BTreeMap<i32, i64>> {
        let mut committed = stream(&self.stream).committed();
        if let Some(split) = lane {
            committed.retain(|&s, _| s == split);
        }
        Ok(committed)
    }

    async fn open(&self, ctx: SourceContext<'_>) -> Result<OpenedSource> {
        let stream = stream(&self.stream);
        let reader = MemoryReader {
            name: self.stream.clone(),
            stream: Arc::clone(&stream),
            startup: ctx.start.unwrap_or(self.startup),
            bounded: ctx.bounded,
            lane: ctx.lane,
            next: BTreeMap::new(),
            end: BTreeMap::new(),
        };
        Ok(OpenedSource {
            reader: Box::new(reader),
            dead_letters: Arc::new(MemoryDeadLetters(Arc::clone(&stream), self.stream.clone())),
            committer: Arc::new(MemoryCommitter(stream)),
        })
    }
}

/// A memory reader's positions: the next position per split.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Positions {
    next: BTreeMap<i32, i64>,
}

struct MemoryReader {
    name: String,
    stream: Arc<Stream>,
    startup: StartupMode,
    bounded: bool,
    lane: Option<i32>,
    next: BTreeMap<i32, i64>,
    /// Bounded: each split's length at start.
    end: BTreeMap<i32, i64>,
}

impl SourceReader for MemoryReader {
    fn open(&mut self, restored: Option<&serde_json::Value>) -> Result<Vec<(i32, bool)>> {
        let restored: Option<Positions> = match restored {
            Some(v) => Some(serde_json::from_value(v.clone()).map_err(|e| {
                EngineError::Execution(format!(
                    "checkpointed positions of memory stream `{}`: {e}",
                    self.name
                ))
            })?),
            None => None,
        };
        let committed = self.stream.committed();
        let mut splits = Vec::new();
        for (split, len) in self.stream.lengths().into_iter().enumerate() {
            let split = split as i32;
            if self.lane.is_some_and(|l| l != split) {
                continue;
            }
            let start = match (&restored, self.startup) {
                (Some(r), _) => r.next.get(&split).copied().unwrap_or(0),
                (None, StartupMode::Latest) => len,
                (None, StartupMode::GroupOffsets) => committed.get(&split).copied().unwrap_or(0),
                (None, StartupMode::Timestamp(ms)) => {
                    let s = self.stream.lock();
                    let records = &s.splits[split as usize];
                    records
                        .iter()
                        .position(|r| r.timestamp.is_some_and(|t| t >= ms))
                        .map_or(len, |p| p as i64)
                }
                (None, StartupMode::Earliest) => 0,
            };
            self.next.insert(split, start.min(len));
            if self.bounded {
                self.end.insert(split, len);
            }
            splits.push((split, self.bounded && start >= len));
        }
        Ok(splits)
    }

    fn poll(&mut self, timeout: Duration, max: usize, out: &mut RecordBuffer) -> Result<()> {
        let mut handed = 0;
        {
            let s = self.stream.lock();
            for (&split, next) in self.next.iter_mut() {
                let records = &s.splits[split as usize];
                let end = self
                    .end
                    .get(&split)
                    .copied()
                    .unwrap_or(records.len() as i64);
                let was = *next;
                while *next < end && (*next - was) < PER_POLL as i64 && handed < max {
                    let r = &records[*next as usize];
                    out.push(
                        split,
                        *next,
                        r.payload.as_deref(),
                        r.key.as_deref(),
                        r.timestamp,
                    );
                    *next += 1;
                    handed += 1;
                }
                if self.bounded && was < end && *next >= end {
                    out.end_split(split);
                }
            }
        }
        if handed == 0 {
            std::thread::sleep(timeout.min(Duration::from_millis(5)));
        }
        Ok(())
    }

    fn caught_up(&self) -> bool {
        let lengths = self.stream.lengths();
        let length = |split: i32| lengths.get(split as usize).copied().unwrap_or(0);
        (self.next.iter()).all(|(&split, &next)| {
            let end = self
                .end
                .get(&split)
                .copied()
                .unwrap_or_else(|| length(split));
            next >= end
        })
    }

    fn positions(&self) -> serde_json::Value {
        serde_json::to_value(Positions {
            next: self.next.clone(),
        })
        .expect("plain JSON")
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn commit(&mut self, positions: &serde_json::Value) -> Result<()> {
        commit(&self.stream, positions)
    }
}

fn commit(stream: &Stream, positions: &serde_json::Value) -> Result<()> {
    let p: Positions = serde_json::from_value(positions.clone())
        .map_err(|e| EngineError::Internal(format!("memory positions: {e}")))?;
    stream.lock().committed.extend(p.next);
    Ok(())
}

/// Commits a checkpoint's positions to the stream.
struct MemoryCommitter(Arc<Stream>);

#[async_trait::async_trait]
impl Committer for MemoryCommitter {
    async fn commit(&self, _point: &CommitPoint, snapshot: &Snapshot) -> Result<()> {
        match SourceState::from_snapshot(snapshot)? {
            Some(state) => commit(&self.0, &state.positions),
            None => Ok(()),
        }
    }
}

/// A stream's dead letters.
struct MemoryDeadLetters(Arc<Stream>, String);

impl DeadLetterSink for MemoryDeadLetters {
    fn send(
        &self,
        payload: &[u8],
        _key: Option<&[u8]>,
        error: &str,
        origin: Origin<'_>,
    ) -> Result<()> {
        self.0.lock().dead_letters.push(DeadLetter {
            payload: payload.to_vec(),
            error: error.to_string(),
            position: origin.position,
            statement: origin.statement.map(str::to_string),
        });
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        format!("dead letters of memory stream `{}`", self.1)
    }
}
