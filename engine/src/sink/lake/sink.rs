//! Buffers rows into one Parquet file per partition, rolls files by size and
//! by age, and uploads each file whole: an object appears under the table
//! prefix only complete (a single PUT is atomic on S3; the local store
//! writes a temporary file and renames it).
//!
//! Partition commit: once the watermark passes the end of a partition, its
//! files are closed and a `_SUCCESS` marker is written in it (Athena ignores
//! names starting with `_`), so downstream jobs know it is complete. Rows that
//! still arrive for a committed partition go to a new file in it, are counted
//! (`late_lake_rows`), and the marker is written again when that file closes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, TimestampMillisecondArray};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use object_store::path::Path;
use object_store::ObjectStoreExt;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rand::Rng;

use super::config::{Compression, LakeSinkConfig};
use super::partition::PartitionKey;
use super::staging::Staging;
use super::state::{LakeState, OpenFileState, Publish};
use crate::checkpoint::{batches_from_ipc, batches_to_ipc, Snapshot};
use crate::error::{EngineError, Result};
use crate::message::EventTime;
use crate::metrics::{Due, EmitLatency, Metrics, SinkMetrics, StagedLatency};
use crate::sink::{Sink, Uncommitted};
use crate::storage::{self, FileRef, Location};

/// A lake sink table.
pub struct LakeSink {
    config: LakeSinkConfig,
    location: Location,
    schema: SchemaRef,
    properties: WriterProperties,
    open: BTreeMap<PartitionKey, OpenFile>,
    /// Partitions with files written since their last `_SUCCESS` marker.
    uncommitted: BTreeSet<PartitionKey>,
    /// The last watermark seen: partitions ending (plus `commit_lag_ms`) at or before it are complete.
    watermark: Option<EventTime>,
    /// How long after a partition's end its last rows can still arrive on time: a
    /// HOP window starting in the partition closes `size - slide` after its end.
    commit_lag_ms: i64,
    /// Batches that had rows for committed partitions, to thin out the warnings.
    late_batches: u64,
    /// Distinguishes this run's files from earlier runs' (never overwrite them).
    run_id: String,
    next_file: u64,
    metrics: SinkMetrics,
    /// With checkpoints: when the rows of files closed since the last
    /// barrier became due, staged at the barrier for the commit publishing them.
    held: EmitLatency,
    staged_latency: StagedLatency,
    /// With checkpoints: files wait in `_staging/` for the checkpoint that publishes them.
    staging: Option<Staging>,
    /// The partition-commit marker's name: `_SUCCESS`, or `_SUCCESS.p3` for
    /// the lane of source partition 3 (lanes commit a partition each on its own).
    marker: String,
    /// Staged objects of checkpoints not yet committed (shared with the committer).
    uncommitted_publish: Uncommitted<Publish>,
}

struct OpenFile {
    writer: ArrowWriter<Vec<u8>>,
    opened: Instant,
    /// Names its segments.
    id: u64,
    /// With checkpoints: rows since the last checkpoint, and the segments holding the rest.
    unsaved: Vec<RecordBatch>,
    segments: Vec<FileRef>,
    /// Opened for a partition already committed (late rows): it rolls by the
    /// usual rules rather than on the next watermark, so a trickle of late rows
    /// does not become a trickle of tiny files.
    late: bool,
    /// When its rows became due (emit latency ends when it is published).
    latency: EmitLatency,
}

#[async_trait::async_trait]
impl Sink for LakeSink {
    async fn write(
        &mut self,
        batch: RecordBatch,
        due: Option<Due>,
    ) -> Result<Vec<(usize, String)>> {
        let (batch, rejected) = self.reject_unplaceable(batch)?;
        if batch.num_rows() > 0 {
            self.append(batch, due).await?;
        }
        Ok(rejected)
    }

    async fn handle_watermark(&mut self, watermark: EventTime) -> Result<()> {
        self.advance(watermark).await
    }

    async fn pre_commit(&mut self, epoch: u64) -> Result<Snapshot> {
        let state = self.checkpoint(epoch).await?;
        let meta = serde_json::to_value(state)
            .map_err(|e| EngineError::Internal(format!("lake sink state as JSON: {e}")))?;
        Ok(Snapshot::meta(meta))
    }

    async fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        if snapshot.meta.is_null() {
            return Ok(());
        }
        let state: LakeState = snapshot.decode("a lake sink")?;
        self.restore_state(&state).await
    }

    async fn end_of_data(&mut self) -> Result<()> {
        self.complete_all().await
    }

    async fn flush(&mut self) -> Result<()> {
        self.close_all().await
    }
}

/// The `_SUCCESS` marker's name: Athena skips files starting with `_`.
pub const SUCCESS_MARKER: &str = "_SUCCESS";

impl LakeSink {
    /// Opens the store behind the table path.
    pub async fn open(
        config: LakeSinkConfig,
        schema: SchemaRef,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let location = storage::open(&config.path)?;
        let compression = match config.compression {
            Compression::Snappy => ParquetCompression::SNAPPY,
            Compression::Zstd => ParquetCompression::ZSTD(ZstdLevel::default()),
        };
        let properties = WriterProperties::builder()
            .set_compression(compression)
            .build();
        let run_id = format!(
            "{}-{:08x}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S"),
            rand::rng().random::<u32>()
        );
        let metrics = metrics.sink(&config.table);
        Ok(Self {
            config,
            location,
            schema,
            properties,
            open: BTreeMap::new(),
            uncommitted: BTreeSet::new(),
            watermark: None,
            commit_lag_ms: 0,
            late_batches: 0,
            run_id,
            next_file: 0,
            metrics,
            held: EmitLatency::default(),
            staged_latency: StagedLatency::default(),
            staging: None,
            marker: SUCCESS_MARKER.to_string(),
            uncommitted_publish: Uncommitted::default(),
        })
    }

    /// Where the committer acknowledges the rows of the files it publishes.
    pub fn staged_latency(&self) -> (StagedLatency, prometheus::Histogram) {
        (
            self.staged_latency.clone(),
            self.metrics.emit_latency.clone(),
        )
    }

    /// Takes part in checkpoints: from now on files are staged and published
    /// by checkpoint `epoch` or later. `lane` (e.g. `p3`, or empty) names the
    /// share of the source this sink writes, when the job runs as lanes, and
    /// `scope` the lane and generation its file names carry.
    pub fn enable_checkpoints(
        &mut self,
        epoch: u64,
        lane: &str,
        scope: &str,
        uncommitted: Uncommitted<Publish>,
    ) {
        self.uncommitted_publish = uncommitted;
        self.staging = Some(Staging::new(&self.location, epoch, &self.run_id, scope));
        if !lane.is_empty() {
            self.marker = format!("{SUCCESS_MARKER}.{lane}");
        }
    }

    /// The sink's part of checkpoint `epoch`: objects staged and not yet
    /// published (to publish once it is written), and open files, whose rows
    /// since the last checkpoint are saved as a segment now.
    async fn checkpoint(&mut self, epoch: u64) -> Result<LakeState> {
        let Some(staging) = self.staging.as_mut() else {
            return Err(EngineError::Internal(
                "checkpoint of a lake sink without staging".into(),
            ));
        };
        let mut segments = Vec::new();
        for file in self.open.values_mut() {
            if !file.unsaved.is_empty() {
                let path = staging.segment(&format!("{}-{}", staging.run_id, file.id));
                if let Some(bytes) = batches_to_ipc(&std::mem::take(&mut file.unsaved))? {
                    segments.push((file.id, path, bytes));
                }
            }
        }
        for (id, path, bytes) in segments {
            let r = self.location.put(&path, bytes).await?;
            if let Some(f) = self.open.values_mut().find(|f| f.id == id) {
                f.segments.push(r);
            }
        }
        let staging = self.staging.as_mut().expect("checked above");
        let staged = std::mem::take(&mut staging.pending);
        (self.staged_latency).stage(epoch, std::mem::take(&mut self.held));
        let state = LakeState {
            // Publishing is idempotent: everything not known committed goes again.
            publish: self
                .uncommitted_publish
                .prepare(epoch, staged)
                .into_iter()
                .flat_map(|(_, items)| items)
                .collect(),
            open_files: self
                .open
                .iter()
                .map(|(key, f)| OpenFileState {
                    partition: key.path(self.config.partitioning),
                    key: key.start(),
                    late: f.late,
                    segments: f.segments.clone(),
                })
                .collect(),
            uncommitted: self.uncommitted.iter().map(|k| k.start()).collect(),
            watermark: self.watermark,
            next_file: self.next_file,
        };
        staging.epoch = epoch.saturating_add(1);
        staging.seq = 0;
        Ok(state)
    }

    /// Continues from a checkpoint's state: open files refilled from their
    /// segments (their rows are not read again from the source).
    async fn restore_state(&mut self, state: &LakeState) -> Result<()> {
        self.watermark = state.watermark;
        self.next_file = state.next_file;
        self.uncommitted = state
            .uncommitted
            .iter()
            .map(|&k| PartitionKey::from_start(k))
            .collect();
        for f in &state.open_files {
            let mut writer = self.new_writer()?;
            for segment in &f.segments {
                let path = Path::from(segment.path.as_str());
                let bytes = self
                    .location
                    .store
                    .get(&path)
                    .await
                    .map_err(|e| EngineError::store(format!("reading segment `{path}`"), e))?
                    .bytes()
                    .await
                    .map_err(|e| EngineError::store(format!("reading segment `{path}`"), e))?;
                for batch in batches_from_ipc(bytes)? {
                    writer.write(&batch)?;
                }
            }
            let id = self.next_file;
            self.next_file += 1;
            self.open.insert(
                PartitionKey::from_start(f.key),
                OpenFile {
                    writer,
                    opened: Instant::now(),
                    id,
                    unsaved: Vec::new(),
                    segments: f.segments.clone(),
                    late: f.late,
                    // Due times do not outlive the process that saw the watermark.
                    latency: EmitLatency::default(),
                },
            );
        }
        Ok(())
    }

    /// Sets how long after a partition's end its rows can still arrive on time
    /// (the `commit_lag_ms` field); 0 unless the partition time is the start of
    /// a window that can end after its partition (HOP, CUMULATE, SESSION).
    pub fn set_commit_lag(&mut self, lag_ms: i64) {
        self.commit_lag_ms = lag_ms;
    }

    /// The name of the column partitions come from, if partitioned.
    pub fn partition_time_column(&self) -> Option<&str> {
        (self.config.partitioning != super::config::PartitionScheme::None)
            .then_some(())
            .and(self.config.partition_time_field)
            .map(|i| self.schema.field(i).name().as_str())
    }

    /// How long one partition spans, in ms (for a table without partitions, all time).
    pub fn partition_span_ms(&self) -> i64 {
        use super::config::PartitionScheme;
        match self.config.partitioning {
            PartitionScheme::None => i64::MAX,
            PartitionScheme::Day => super::partition::MS_PER_DAY,
            PartitionScheme::DayHour => super::partition::MS_PER_HOUR,
        }
    }

    /// An empty in-memory Parquet file of the table's schema.
    fn new_writer(&self) -> Result<ArrowWriter<Vec<u8>>> {
        Ok(ArrowWriter::try_new(
            Vec::new(),
            Arc::clone(&self.schema),
            Some(self.properties.clone()),
        )?)
    }

    /// Whether the watermark has passed the end of partition `key`.
    fn is_complete(&self, key: PartitionKey) -> bool {
        let end = key
            .end(self.config.partitioning)
            .saturating_add(self.commit_lag_ms);
        self.watermark.is_some_and(|w| end <= w)
    }

    /// Appends rows (already in the table's schema) to their partitions' open files.
    async fn append(&mut self, batch: RecordBatch, due: Option<Due>) -> Result<()> {
        let rows = batch.num_rows() as u64;
        for (key, part) in self.split_by_partition(batch)? {
            let late = self.is_complete(key);
            if late {
                self.count_late(key, part.num_rows() as u64);
            }
            let file = match self.open.get_mut(&key) {
                Some(f) => f,
                None => {
                    let writer = self.new_writer()?;
                    let id = self.next_file;
                    self.next_file += 1;
                    self.open.entry(key).or_insert(OpenFile {
                        writer,
                        opened: Instant::now(),
                        id,
                        unsaved: Vec::new(),
                        segments: Vec::new(),
                        late,
                        latency: EmitLatency::default(),
                    })
                }
            };
            self.uncommitted.insert(key);
            file.latency.hold(due, part.num_rows() as u64);
            file.writer.write(&part)?;
            if self.staging.is_some() {
                file.unsaved.push(part); // cheap: the arrays are shared
            }
            // The in-progress row group's size is an estimate before compression,
            // so it only decides when to encode a row group; the file rolls on the
            // bytes actually written, so files reach the target size compressed.
            if file.writer.in_progress_size() as u64 >= self.config.file_size {
                file.writer.flush()?;
            }
            if file.writer.bytes_written() as u64 >= self.config.file_size {
                self.close(key).await?;
            }
        }
        self.metrics.rows_out.inc_by(rows);
        self.close_old_files().await
    }

    /// Rolls files open longer than `rolling.interval`, and commits every
    /// partition the watermark has passed: its file closed, its marker written.
    async fn advance(&mut self, watermark: EventTime) -> Result<()> {
        self.watermark = Some(self.watermark.map_or(watermark, |w| w.max(watermark)));
        self.close_old_files().await?;
        for key in self.complete_uncommitted() {
            match self.open.get(&key).map(|f| f.late) {
                // A late file waits for its own roll; the partition is committed again then.
                Some(true) => continue,
                Some(false) => self.close(key).await?,
                None => {}
            }
            self.commit(key).await?;
        }
        Ok(())
    }

    /// Closes and uploads every open file, and commits the partitions the
    /// watermark has passed.
    async fn close_all(&mut self) -> Result<()> {
        let keys: Vec<PartitionKey> = self.open.keys().copied().collect();
        for key in keys {
            self.close(key).await?;
        }
        for key in self.complete_uncommitted() {
            self.commit(key).await?;
        }
        Ok(())
    }

    /// Partitions written since their marker that the watermark has passed.
    fn complete_uncommitted(&self) -> Vec<PartitionKey> {
        self.uncommitted
            .iter()
            .copied()
            .filter(|k| self.is_complete(*k))
            .collect()
    }

    /// At the end of a bounded input every partition is complete: closes every
    /// file and commits every partition written.
    async fn complete_all(&mut self) -> Result<()> {
        let keys: Vec<PartitionKey> = self.open.keys().copied().collect();
        for key in keys {
            self.close(key).await?;
        }
        let written: Vec<PartitionKey> =
            std::mem::take(&mut self.uncommitted).into_iter().collect();
        for key in written {
            self.commit(key).await?;
        }
        Ok(())
    }

    /// Writes partition `key`'s `_SUCCESS` marker (its files are all closed).
    async fn commit(&mut self, key: PartitionKey) -> Result<()> {
        self.uncommitted.remove(&key);
        if self.config.partitioning == super::config::PartitionScheme::None {
            return Ok(()); // no partitions: nothing ever completes
        }
        let partition = key.path(self.config.partitioning);
        let path = self.object_path(&partition, &self.marker);
        let body = serde_json::json!({
            "table": self.config.table,
            "partition": partition,
            "watermark": self.watermark.and_then(chrono::DateTime::from_timestamp_millis),
            "committed_at": chrono::Utc::now(),
        });
        let body = body.to_string().into_bytes();
        if let Some(staging) = self.staging.as_mut() {
            // After its partition's files, in the same checkpoint's publish list.
            let staged = staging.next_marker();
            let from = self.location.put(&staged, body).await?;
            let staging = self.staging.as_mut().expect("checked above");
            staging.pending.push(Publish {
                from,
                to: path.to_string(),
            });
        } else {
            self.location.put(&path, body).await?;
        }
        self.metrics.partitions_committed.inc();
        tracing::info!(table = %self.config.table, %partition, "partition committed");
        Ok(())
    }

    /// Counts rows for a partition already committed; warns for the first
    /// batches, then every 1000th, so a flood of late rows does not flood the log.
    fn count_late(&mut self, key: PartitionKey, rows: u64) {
        self.metrics.late_lake_rows.inc_by(rows);
        self.late_batches += 1;
        if self.late_batches <= 20 || self.late_batches.is_multiple_of(1000) {
            tracing::warn!(
                table = %self.config.table,
                partition = %key.path(self.config.partitioning),
                rows,
                late_lake_rows_total = self.metrics.late_lake_rows.get(),
                "rows for a committed partition: written to a new file in it"
            );
        }
    }

    async fn close_old_files(&mut self) -> Result<()> {
        let old: Vec<PartitionKey> = self
            .open
            .iter()
            .filter(|(_, f)| f.opened.elapsed() >= self.config.rollover)
            .map(|(k, _)| *k)
            .collect();
        for key in old {
            self.close(key).await?;
        }
        Ok(())
    }

    /// `batch` less the rows that have no partition: no value in the
    /// partition time column, or one outside the times partitions can name
    /// (years 0001-9999). Those come back as (row, reason).
    fn reject_unplaceable(
        &self,
        batch: RecordBatch,
    ) -> Result<(RecordBatch, Vec<(usize, String)>)> {
        let Some(column) = self.config.partition_time_field else {
            return Ok((batch, Vec::new()));
        };
        if self.config.partitioning == super::config::PartitionScheme::None {
            return Ok((batch, Vec::new()));
        }
        let times = cast(batch.column(column), &engine_sql::timestamp_type())?;
        let times = times
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .ok_or_else(|| EngineError::Internal("partition time is not TIMESTAMP(ms)".into()))?;
        let name = self.schema.field(column).name();
        let range = crate::message::MIN_EVENT_TIME..=crate::message::MAX_EVENT_TIME;
        let mut rejected = Vec::new();
        for (row, t) in times.iter().enumerate() {
            match t {
                None => rejected.push((
                    row,
                    format!("lake table `{}`: no value in partition time column `{name}`", self.config.table),
                )),
                Some(t) if !range.contains(&t) => rejected.push((
                    row,
                    format!(
                        "lake table `{}`: partition time `{name}` = {t} ms is outside 0001-01-01 .. 9999-12-31",
                        self.config.table
                    ),
                )),
                Some(_) => {}
            }
        }
        if rejected.is_empty() {
            return Ok((batch, Vec::new()));
        }
        let keep: arrow::array::BooleanArray = (0..batch.num_rows())
            .map(|r| Some(!rejected.iter().any(|(b, _)| *b == r)))
            .collect();
        Ok((filter_record_batch(&batch, &keep)?, rejected))
    }

    fn split_by_partition(&self, batch: RecordBatch) -> Result<Vec<(PartitionKey, RecordBatch)>> {
        let scheme = self.config.partitioning;
        let Some(column) = self.config.partition_time_field else {
            return Ok(vec![(PartitionKey::of(scheme, 0), batch)]);
        };
        let times = cast(batch.column(column), &engine_sql::timestamp_type())?;
        let times = times
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .ok_or_else(|| EngineError::Internal("partition time is not TIMESTAMP(ms)".into()))?;
        if times.null_count() > 0 {
            return Err(EngineError::Execution(format!(
                "lake table `{}`: a row has no value in its partition time column `{}`",
                self.config.table,
                self.schema.field(column).name()
            )));
        }
        let keys: Vec<PartitionKey> = times
            .values()
            .iter()
            .map(|&t| PartitionKey::of(scheme, t))
            .collect();
        let first = keys[0];
        if keys.iter().all(|k| *k == first) {
            return Ok(vec![(first, batch)]); // the usual case: one partition per batch
        }
        let mut distinct = keys.clone();
        distinct.sort_unstable();
        distinct.dedup();
        distinct
            .into_iter()
            .map(|key| {
                let mask: arrow::array::BooleanArray =
                    keys.iter().map(|k| Some(*k == key)).collect();
                Ok((key, filter_record_batch(&batch, &mask)?))
            })
            .collect()
    }

    async fn close(&mut self, key: PartitionKey) -> Result<()> {
        let Some(mut file) = self.open.remove(&key) else {
            return Ok(());
        };
        let bytes = file.writer.into_inner()?;
        let partition = key.path(self.config.partitioning);
        let size = bytes.len();
        let dir = self.partition_dir(&partition);
        if let Some(staging) = self.staging.as_mut() {
            // Visible only once the checkpoint publishing it is complete.
            let (staged, to) = staging.next_file(&dir);
            let from = self.location.put(&staged, bytes).await?;
            self.count_file(size);
            let staging = self.staging.as_mut().expect("checked above");
            staging.pending.push(Publish {
                from,
                to: to.to_string(),
            });
            self.held.absorb(file.latency);
            tracing::debug!(table = %self.config.table, file = %to, bytes = size, "lake file staged");
            return Ok(());
        }
        let name = format!("part-{}-{:06}.parquet", self.run_id, self.next_file);
        self.next_file += 1;
        let path = self.object_path(&partition, &name);
        self.location.put(&path, bytes).await?;
        self.count_file(size);
        file.latency.acknowledge(&self.metrics.emit_latency);
        tracing::info!(table = %self.config.table, file = %path, bytes = size, "lake file written");
        Ok(())
    }

    /// A file of `size` bytes was uploaded (staged or published).
    fn count_file(&self, size: usize) {
        self.metrics.lake_files.inc();
        self.metrics.lake_bytes.inc_by(size as u64);
    }

    /// `name` inside `partition` (`dt=.../hour=..` or "") under the table prefix.
    fn object_path(&self, partition: &str, name: &str) -> Path {
        self.partition_dir(partition).join(name)
    }

    /// The folder of `partition` under the table prefix.
    fn partition_dir(&self, partition: &str) -> Path {
        let mut path = self.location.prefix.clone();
        for segment in partition.split('/').filter(|s| !s.is_empty()) {
            path = path.join(segment);
        }
        path
    }
}
