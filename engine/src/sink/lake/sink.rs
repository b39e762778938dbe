//! Buffers rows into one Parquet file per partition, rolls files by size and
//! by age, and uploads each file whole: an object appears under the table
//! prefix only complete (a single PUT is atomic on S3; the local store
//! writes a temporary file and renames it).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, TimestampMillisecondArray};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rand::Rng;

use super::config::{Compression, LakeSinkConfig};
use super::partition::PartitionKey;
use super::store::{self, Location};
use crate::error::{EngineError, Result};
use crate::message::EventTime;
use crate::metrics::Metrics;

/// A lake sink table.
pub struct LakeSink {
    config: LakeSinkConfig,
    location: Location,
    schema: SchemaRef,
    properties: WriterProperties,
    open: BTreeMap<PartitionKey, OpenFile>,
    /// Distinguishes this run's files from earlier runs' (never overwrite them).
    run_id: String,
    next_file: u64,
    metrics: Arc<Metrics>,
}

struct OpenFile {
    writer: ArrowWriter<Vec<u8>>,
    opened: Instant,
}

impl LakeSink {
    /// Opens the store behind the table path.
    pub async fn open(
        config: LakeSinkConfig,
        schema: SchemaRef,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let location = store::open(&config.path)?;
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
        Ok(Self {
            config,
            location,
            schema,
            properties,
            open: BTreeMap::new(),
            run_id,
            next_file: 0,
            metrics,
        })
    }

    /// Appends rows (already in the table's schema) to their partitions' open files.
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let rows = batch.num_rows() as u64;
        for (key, part) in self.split_by_partition(batch)? {
            let file = match self.open.get_mut(&key) {
                Some(f) => f,
                None => {
                    let writer = ArrowWriter::try_new(
                        Vec::new(),
                        Arc::clone(&self.schema),
                        Some(self.properties.clone()),
                    )?;
                    self.open.entry(key).or_insert(OpenFile {
                        writer,
                        opened: Instant::now(),
                    })
                }
            };
            file.writer.write(&part)?;
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
        Metrics::add(&self.metrics.rows_out, rows);
        self.close_old_files().await
    }

    /// Rolls files that have been open longer than `rolling.interval`.
    pub async fn handle_watermark(&mut self, _watermark: EventTime) -> Result<()> {
        self.close_old_files().await
    }

    /// Closes and uploads every open file.
    pub async fn flush(&mut self) -> Result<()> {
        let keys: Vec<PartitionKey> = self.open.keys().copied().collect();
        for key in keys {
            self.close(key).await?;
        }
        Ok(())
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
        let Some(file) = self.open.remove(&key) else {
            return Ok(());
        };
        let bytes = file.writer.into_inner()?;
        let partition = key.path(self.config.partitioning);
        let name = format!("part-{}-{:06}.parquet", self.run_id, self.next_file);
        self.next_file += 1;
        let mut path = self.location.prefix.clone();
        for segment in partition.split('/').filter(|s| !s.is_empty()) {
            path = path.join(segment);
        }
        let path: Path = path.join(name.as_str());
        let size = bytes.len();
        self.location
            .store
            .put(&path, PutPayload::from(Bytes::from(bytes)))
            .await
            .map_err(|e| {
                EngineError::Store(format!(
                    "writing `{}` under {}: {e}",
                    path, self.config.path
                ))
            })?;
        Metrics::add(&self.metrics.files_written, 1);
        tracing::info!(table = %self.config.table, file = %path, bytes = size, "lake file written");
        Ok(())
    }
}
