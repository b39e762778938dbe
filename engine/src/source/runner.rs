//! The loop every source runs in, around its reader.
//!
//! It runs on a blocking thread (readers poll synchronously and decoding is
//! CPU work), buffers records per split, decodes each buffer into one
//! `RecordBatch`, dead-letters the records that do not make a row, tracks
//! each split's event time, puts barriers into the stream when the
//! coordinator asks, and sends everything downstream over bounded channels,
//! so a slow statement slows reading instead of growing memory.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine_sql::TableDef;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{DeadLetterSink, Origin, ReadOptions, SourceReader, SourceState};
use crate::checkpoint::{BarrierRequests, Participant, Report};
use crate::decode::{BadRecord, JsonDecoder, RawRecord, RowRules};
use crate::error::{EngineError, Result};
use crate::message::{Message, Signal};
use crate::metrics::{Metrics, SourceMetrics};
use crate::watermark::{WatermarkExpr, WatermarkTracker};

/// Bad records logged one by one before the log switches to every 1000th.
const BAD_RECORDS_LOGGED: u64 = 20;

/// How long one poll of the reader may wait: the loop looks at barriers and
/// the stop flag at least this often.
const POLL_TIMEOUT: Duration = Duration::from_millis(50);

/// How often the lag and watermark gauges are set.
const GAUGES_EVERY: Duration = Duration::from_millis(500);

/// How the checkpoint coordinator and a source talk: the coordinator raises
/// `requests`; the source puts `Barrier(epoch)` in its stream after the data
/// before it and reports its state there.
#[derive(Debug, Clone)]
pub struct SourceBarriers {
    /// The newest epoch the coordinator asked for.
    pub requests: BarrierRequests,
    /// Where the source reports its state at each barrier.
    pub reports: mpsc::UnboundedSender<Report>,
}

/// Records polled and not yet decoded, each record's bytes copied once into
/// one arena (so the reader can let go of its own buffers at once). One
/// arena for every split, not one each: a reader hands over a split's
/// records in runs of a whole fetch, so per-split arenas would each grow to
/// a fetch's size (heaptrack: 4 MB more at the peak over 4 partitions).
#[derive(Default)]
pub struct RecordBuffer {
    bytes: Vec<u8>,
    records: Vec<Buffered>,
    ended: Vec<i32>,
}

struct Buffered {
    split: i32,
    payload: Option<(usize, usize)>,
    key: Option<(usize, usize)>,
    offset: i64,
    timestamp: Option<i64>,
}

impl RecordBuffer {
    /// Appends one record of `split` at `offset`.
    pub fn push(
        &mut self,
        split: i32,
        offset: i64,
        payload: Option<&[u8]>,
        key: Option<&[u8]>,
        timestamp: Option<i64>,
    ) {
        let arena = &mut self.bytes;
        let mut keep = |bytes: Option<&[u8]>| {
            bytes.map(|b| {
                let start = arena.len();
                arena.extend_from_slice(b);
                (start, b.len())
            })
        };
        let (payload, key) = (keep(payload), keep(key));
        self.records.push(Buffered {
            split,
            payload,
            key,
            offset,
            timestamp,
        });
    }

    /// Marks `split` as read to its end (bounded).
    pub fn end_split(&mut self, split: i32) {
        self.ended.push(split);
    }
}

/// How a source ended.
pub struct SourceEnd {
    /// The reader (to commit positions after a run without checkpoints).
    pub reader: Box<dyn SourceReader>,
    /// Where it stopped.
    pub state: SourceState,
    /// Bounded: every split was read to its end (not stopped before).
    pub reached_end: bool,
}

/// A source table's reader, and everything around it.
pub struct SourceRunner {
    table: String,
    reader: Box<dyn SourceReader>,
    decoder: JsonDecoder,
    watermark: Option<WatermarkExpr>,
    dead_letters: Arc<dyn DeadLetterSink>,
    options: ReadOptions,
    metrics: SourceMetrics,
    /// Bad records of this source so far (the log thins out after the first).
    bad_seen: u64,
    bounded: bool,
    barriers: Option<SourceBarriers>,
    restored: Option<SourceState>,
}

impl SourceRunner {
    /// The runner of source `table` (declared in job file `file`) reading
    /// with `reader`, its row rules and watermark compiled.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        file: &str,
        table: &TableDef,
        reader: Box<dyn SourceReader>,
        dead_letters: Arc<dyn DeadLetterSink>,
        options: ReadOptions,
        metrics: Arc<Metrics>,
        bounded: bool,
    ) -> Result<Self> {
        let rules = row_rules(file, table, &options)?;
        let decoder =
            JsonDecoder::new(table, reader.name(), options.max_message_bytes).with_rules(rules);
        let watermark = WatermarkExpr::for_table(file, table, decoder.schema())?;
        let metrics = metrics.source(reader.name());
        Ok(Self {
            table: table.name.clone(),
            reader,
            decoder,
            watermark,
            dead_letters,
            options,
            metrics,
            bad_seen: 0,
            bounded,
            barriers: None,
            restored: None,
        })
    }

    /// Starts from a checkpoint's state.
    pub fn with_restored(mut self, state: SourceState) -> Self {
        self.restored = Some(state);
        self
    }

    /// Takes part in checkpoints.
    pub fn with_barriers(mut self, barriers: SourceBarriers) -> Self {
        self.barriers = Some(barriers);
        self
    }

    /// Reads until every split's end (bounded) or until `stop` is cancelled,
    /// sending to every output. Bounded runs end with `EndOfData`; a stop
    /// just closes the channels. Blocking: run it on a blocking thread.
    pub fn run(
        mut self,
        outputs: Vec<mpsc::Sender<Message>>,
        stop: CancellationToken,
    ) -> Result<SourceEnd> {
        let splits = self
            .reader
            .open(self.restored.as_ref().map(|s| &s.positions))?;
        self.metrics.assigned(splits.len());
        // A bounded run reads what is there: silence is a slow broker, not a closed market.
        let idle_advance = self.options.idle_advance.filter(|_| !self.bounded);
        let mut tracker =
            WatermarkTracker::new(self.options.idle_timeout).with_idle_advance(idle_advance);
        let now = Instant::now();
        let mut open = BTreeSet::new();
        for &(split, finished) in &splits {
            tracker.assign(split, now);
            match finished {
                true => tracker.finish(split),
                false => {
                    open.insert(split);
                }
            }
        }
        if let Some(s) = &self.restored {
            tracker.restore(&s.clocks, now);
        }
        tracing::info!(
            table = %self.table, topic = %self.reader.name(), bounded = self.bounded,
            partitions = splits.len(), "source started"
        );
        let ended = self.poll_loop(&mut tracker, &mut open, &outputs, &stop)?;
        if ended {
            send(&outputs, Message::Signal(Signal::EndOfData))?;
        }
        let state = SourceState {
            positions: self.reader.positions(),
            clocks: tracker.clocks(),
        };
        tracing::info!(table = %self.table, topic = %self.reader.name(), positions = %state.positions, "source stopped");
        Ok(SourceEnd {
            reader: self.reader,
            state,
            reached_end: ended,
        })
    }

    /// The loop: barriers, polls, batches, watermarks. Returns whether the
    /// input ended (bounded) rather than being stopped.
    fn poll_loop(
        &mut self,
        tracker: &mut WatermarkTracker,
        open: &mut BTreeSet<i32>,
        outputs: &[mpsc::Sender<Message>],
        stop: &CancellationToken,
    ) -> Result<bool> {
        let mut buffer = RecordBuffer::default();
        let mut last_flush = Instant::now();
        let mut last_gauges = Instant::now();
        let mut last_barrier = self
            .barriers
            .as_ref()
            .map_or(0, |b| b.requests.requested.load(Ordering::Acquire));
        loop {
            let wanted = (self.barriers.as_ref())
                .map(|b| b.requests.requested.load(Ordering::Acquire))
                .filter(|&wanted| wanted > last_barrier);
            if let Some(wanted) = wanted {
                self.flush(&mut buffer, tracker, outputs)?;
                last_flush = Instant::now();
                self.barrier(wanted, tracker, outputs)?;
                last_barrier = wanted;
            }
            if self.bounded && open.is_empty() {
                self.flush(&mut buffer, tracker, outputs)?;
                return Ok(true);
            }
            if stop.is_cancelled() {
                self.flush(&mut buffer, tracker, outputs)?;
                return Ok(false);
            }
            let (room, before) = (self.options.batch_size, buffer.records.len());
            let room = room.saturating_sub(before).max(1);
            self.reader.poll(POLL_TIMEOUT, room, &mut buffer)?;
            let drained = buffer.records.len() - before < room;
            if !buffer.ended.is_empty() {
                // A split's last records go out before it is finished: a
                // finished split no longer holds the watermark back, so the
                // next watermark could pass records of it still buffered,
                // and they would reach the windows late and be dropped.
                self.flush(&mut buffer, tracker, outputs)?;
                last_flush = Instant::now();
            }
            for split in std::mem::take(&mut buffer.ended) {
                open.remove(&split);
                tracker.finish(split);
            }
            let buffered = buffer.records.len();
            let due = || {
                last_flush.elapsed() >= self.options.batch_linger
                    || (drained && self.reader.caught_up())
            };
            if buffered >= self.options.batch_size || (buffered > 0 && due()) {
                self.flush(&mut buffer, tracker, outputs)?;
                last_flush = Instant::now();
            }
            let now = Instant::now();
            if let Some(wm) = tracker.advance(now) {
                send(outputs, Message::Signal(Signal::Watermark(wm, now)))?;
            }
            if now.duration_since(last_gauges) >= GAUGES_EVERY {
                self.set_gauges(tracker);
                last_gauges = now;
            }
        }
    }

    /// Sets each split's lag and watermark gauges.
    fn set_gauges(&mut self, tracker: &WatermarkTracker) {
        for (split, lag) in self.reader.lag() {
            self.metrics.lag(split, lag);
        }
        for (split, clock) in tracker.clocks() {
            self.metrics.watermark(split, clock);
        }
    }

    /// Sends barrier `epoch` (the buffers are flushed) and reports the state it covers.
    fn barrier(
        &self,
        epoch: u64,
        tracker: &WatermarkTracker,
        outputs: &[mpsc::Sender<Message>],
    ) -> Result<()> {
        // The dead letters before the barrier are part of what it covers.
        self.dead_letters.flush()?;
        send(outputs, Message::Signal(Signal::Barrier(epoch)))?;
        let state = SourceState {
            positions: self.reader.positions(),
            clocks: tracker.clocks(),
        };
        if let Some(barriers) = &self.barriers {
            // The coordinator gone means the job is stopping; nothing to report to.
            let _ = barriers.reports.send(Report {
                epoch,
                from: Participant::Source(self.table.clone()),
                snapshot: state.snapshot(),
            });
        }
        Ok(())
    }

    /// Decodes each split's buffer into one batch and sends it on.
    fn flush(
        &mut self,
        buffer: &mut RecordBuffer,
        tracker: &mut WatermarkTracker,
        outputs: &[mpsc::Sender<Message>],
    ) -> Result<()> {
        let bytes = &buffer.bytes;
        let slice = |r: Option<(usize, usize)>| r.map(|(at, len)| &bytes[at..at + len]);
        let splits: BTreeSet<i32> = buffer.records.iter().map(|r| r.split).collect();
        for split in splits {
            let raw: Vec<RawRecord> = (buffer.records.iter())
                .filter(|r| r.split == split)
                .map(|r| RawRecord {
                    payload: slice(r.payload),
                    key: slice(r.key),
                    partition: split,
                    offset: r.offset,
                    timestamp: r.timestamp,
                })
                .collect();
            let (batch, bad) = self.decoder.decode(&raw)?;
            (self.metrics.split(split).records_in).inc_by(raw.len() as u64);
            for bad in &bad {
                self.dead_letter(&raw[bad.index], bad)?;
            }
            let wm = match &self.watermark {
                Some(expr) if batch.num_rows() > 0 => expr.max_over(&batch)?,
                _ => None,
            };
            tracker.observe(split, wm, Instant::now());
            if batch.num_rows() > 0 {
                send(outputs, Message::Data(batch))?;
            }
        }
        buffer.records.clear();
        buffer.bytes.clear();
        Ok(())
    }

    fn dead_letter(&mut self, r: &RawRecord, bad: &BadRecord) -> Result<()> {
        let error = bad.error.as_str();
        let origin = Origin {
            topic: self.reader.name(),
            position: Some((r.partition, r.offset)),
            statement: None,
        };
        self.dead_letters
            .send(r.payload.unwrap_or_default(), r.key, error, origin)?;
        self.metrics.bad(bad.kind).inc();
        self.bad_seen += 1;
        let n = self.bad_seen;
        if n <= BAD_RECORDS_LOGGED || n.is_multiple_of(1000) {
            tracing::warn!(
                topic = %self.reader.name(), partition = r.partition, offset = r.offset, error = %error,
                dead_letters = %self.dead_letters.describe(), bad_records = n,
                "bad record sent to the dead-letter topic"
            );
        }
        Ok(())
    }
}

/// The row rules of source `table` (declared in job file `file`): an error names file and line.
pub fn row_rules(file: &str, table: &TableDef, options: &ReadOptions) -> Result<RowRules> {
    RowRules::for_table(table, options.max_ahead, options.key_field.as_deref()).map_err(
        |(line, message)| {
            EngineError::Config(engine_sql::SqlError {
                file: file.to_string(),
                line,
                message: format!("table `{}`: {message}", table.name),
            })
        },
    )
}

fn send(outputs: &[mpsc::Sender<Message>], message: Message) -> Result<()> {
    for out in outputs {
        out.blocking_send(message.clone()).map_err(|_| {
            EngineError::Execution("a statement stopped; stopping its source".into())
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use arrow::array::{Array, TimestampMillisecondArray};
    use engine_sql::ddl::parse_create_table;

    use super::*;

    /// A reader handing over scripted polls: records (split, event time in
    /// ms), then the splits that ended.
    struct Scripted {
        polls: VecDeque<(Vec<(i32, i64)>, Vec<i32>)>,
        splits: Vec<i32>,
        caught_up: bool,
    }

    impl SourceReader for Scripted {
        fn open(&mut self, _: Option<&serde_json::Value>) -> Result<Vec<(i32, bool)>> {
            Ok(self.splits.iter().map(|&s| (s, false)).collect())
        }

        fn poll(&mut self, _: Duration, _: usize, out: &mut RecordBuffer) -> Result<()> {
            let (records, ended) = self.polls.pop_front().expect("the script ends every split");
            for (offset, (split, ts)) in records.into_iter().enumerate() {
                let payload = format!(r#"{{"ts": {ts}}}"#);
                out.push(split, offset as i64, Some(payload.as_bytes()), None, None);
            }
            ended.into_iter().for_each(|s| out.end_split(s));
            Ok(())
        }

        fn positions(&self) -> serde_json::Value {
            serde_json::Value::Null
        }

        fn name(&self) -> &str {
            "scripted"
        }

        fn caught_up(&self) -> bool {
            self.caught_up
        }
    }

    #[derive(Default)]
    struct Kept(Mutex<Vec<String>>);

    impl DeadLetterSink for Kept {
        fn send(&self, _: &[u8], _: Option<&[u8]>, error: &str, _: Origin<'_>) -> Result<()> {
            self.0.lock().unwrap().push(error.to_string());
            Ok(())
        }
        fn flush(&self) -> Result<()> {
            Ok(())
        }
        fn describe(&self) -> String {
            "kept".into()
        }
    }

    /// Runs `polls` through a bounded runner (batches of `batch_size`, a
    /// linger of an hour, a reader `caught_up` or not); returns, in order, each
    /// record's event time and each watermark (as `Err`).
    fn run(
        polls: Vec<(Vec<(i32, i64)>, Vec<i32>)>,
        batch_size: usize,
        caught_up: bool,
    ) -> Vec<std::result::Result<i64, i64>> {
        let sql = format!(
            "CREATE TABLE t (ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts)
             WITH (connector = 'memory', format = 'json', batch.size = '{batch_size}', batch.linger = '1h')"
        );
        let table = parse_create_table(&sql, 1).unwrap();
        let options = ReadOptions::from_options(&mut table.options.clone()).unwrap();
        let reader = Scripted {
            polls: polls.into(),
            splits: vec![0, 1],
            caught_up,
        };
        let dead_letters = Arc::new(Kept::default());
        let metrics = Arc::new(Metrics::new());
        let runner = SourceRunner::new(
            "t.sql",
            &table,
            Box::new(reader),
            dead_letters.clone(),
            options,
            metrics,
            true,
        )
        .unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        runner.run(vec![tx], CancellationToken::new()).unwrap();
        assert!(dead_letters.0.lock().unwrap().is_empty());
        let mut seen = Vec::new();
        while let Ok(message) = rx.try_recv() {
            match message {
                Message::Data(batch) => {
                    let ts = batch.column(0);
                    let ts = ts.as_any().downcast_ref::<TimestampMillisecondArray>();
                    let ts = ts.expect("ts in ms");
                    seen.extend((0..ts.len()).map(|i| Ok(ts.value(i))));
                }
                Message::Signal(Signal::Watermark(wm, _)) => seen.push(Err(wm)),
                Message::Signal(_) => {}
            }
        }
        seen
    }

    #[test]
    fn a_splits_last_records_go_out_before_the_watermark_it_no_longer_holds() {
        // Split 0 trails split 1. Its last record comes with its end, while
        // the buffer is not full: it must still come before the watermark
        // that its end lets jump to split 1's time.
        let seen = run(
            vec![
                (vec![(0, 1_000), (1, 100_000)], vec![]),
                (vec![(0, 2_000)], vec![0]),
                (vec![(1, 101_000)], vec![1]),
            ],
            2,
            false,
        );
        let mut watermark = i64::MIN;
        for item in &seen {
            match *item {
                Err(wm) => watermark = watermark.max(wm),
                Ok(ts) => assert!(
                    ts >= watermark,
                    "record at {ts} after watermark {watermark}: {seen:?}"
                ),
            }
        }
        let records = seen.iter().filter(|i| i.is_ok()).count();
        assert_eq!(records, 4, "{seen:?}");
    }

    #[test]
    fn a_caught_up_reader_has_its_partial_batch_decoded_at_once() {
        // Half a batch, then the reader has all there is: its records and
        // their watermark go out before the next poll's records, not after
        // the linger (an hour here).
        let polls = || {
            vec![
                (vec![(0, 1_000), (1, 2_000)], vec![]),
                (vec![(0, 3_000), (1, 4_000)], vec![0, 1]),
            ]
        };
        let prompt = run(polls(), 10, true);
        assert_eq!(
            prompt[..3],
            [Ok(1_000), Ok(2_000), Err(1_000)],
            "{prompt:?}"
        );
        let lingering = run(polls(), 10, false);
        let records: Vec<_> = lingering.iter().take_while(|i| i.is_ok()).collect();
        assert_eq!(records.len(), 4, "one batch at the end: {lingering:?}");
    }
}
