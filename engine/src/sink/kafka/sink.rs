//! Writes rows as JSON records with an idempotent producer, or (in
//! `exactly_once` mode) keeps them for the checkpoint's transaction.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, ArrayRef, AsArray, StringArray, TimestampMillisecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, TimestampMillisecondType};
use arrow::json::LineDelimitedWriter;
use arrow::record_batch::RecordBatch;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tokio::task::JoinHandle;

use super::config::{CommitMode, KafkaSinkConfig, TimestampFormat};
use crate::checkpoint::Snapshot;
use crate::error::{EngineError, Result};
use crate::kafka::ProducerLogs;
use crate::message::EventTime;
use crate::metrics::{Due, EmitLatency, SinkMetrics, StagedLatency};
use crate::sink::{Sink, Uncommitted};

/// Deliveries awaited at once before new sends wait for old ones, bounding memory.
const MAX_IN_FLIGHT: usize = 100_000;

/// A Kafka sink.
pub struct KafkaSink {
    config: KafkaSinkConfig,
    producer: FutureProducer<ProducerLogs>,
    in_flight: VecDeque<DeliveryFuture>,
    /// The deliveries of due rows (closed windows), each batch's awaited on a
    /// task of its own that then observes their emit latency: a candle's
    /// latency ends at its delivery report, without the sink waiting for it.
    acks: VecDeque<JoinHandle<Result<()>>>,
    metrics: SinkMetrics,
    /// `exactly_once` mode: rows since the last barrier, then (at the
    /// barrier) kept until a checkpoint's transaction sends them.
    pending: Option<Vec<RecordBatch>>,
    uncommitted: Uncommitted<RecordBatch>,
    /// `exactly_once` mode: when the pending rows became due, staged at
    /// each barrier for the commit that sends them.
    held: EmitLatency,
    staged: StagedLatency,
}

impl KafkaSink {
    /// Creates the producer (idempotent, acks from all in-sync replicas) and
    /// checks that the topic exists. Blocks on a metadata look-up.
    pub fn new(
        config: KafkaSinkConfig,
        metrics: SinkMetrics,
        uncommitted: Uncommitted<RecordBatch>,
        staged: StagedLatency,
    ) -> Result<Self> {
        let hooks = config.client.hooks()?;
        let producer: FutureProducer<ProducerLogs> = config
            .client
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .create_with_context(ProducerLogs::new(hooks.clone()))
            .map_err(|e| {
                EngineError::kafka(format!("creating producer for topic `{}`", config.topic), e)
            })?;
        hooks.sign_in(producer.client())?;
        crate::kafka::ensure_topic(
            producer.client(),
            &hooks,
            &config.topic,
            &config.client.bootstrap_servers,
            "output topic",
        )?;
        let pending = (config.commit_mode == CommitMode::ExactlyOnce).then(Vec::new);
        Ok(Self {
            config,
            producer,
            in_flight: VecDeque::new(),
            acks: VecDeque::new(),
            metrics,
            pending,
            uncommitted,
            held: EmitLatency::default(),
            staged,
        })
    }

    /// Queues one record per row (rows already in the table's schema). In
    /// `exactly_once` mode the rows are kept for the next checkpoint instead.
    /// The deliveries of rows that are `due` go to an acknowledging task.
    async fn send(&mut self, batch: RecordBatch, due: Option<Due>) -> Result<()> {
        if let Some(pending) = &mut self.pending {
            self.held.hold(due, batch.num_rows() as u64);
            pending.push(batch);
            return Ok(());
        }
        let rows = EncodedRows::new(&batch, &self.config)?;
        for row in 0..rows.len() {
            let mut record = rows.record(&self.config.topic, row);
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        self.in_flight.push_back(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        match self.in_flight.pop_front() {
                            Some(d) => self.await_delivery(d).await?,
                            None => tokio::time::sleep(Duration::from_millis(5)).await,
                        }
                    }
                    Err((e, _)) => {
                        return Err(EngineError::kafka(
                            format!("sending to topic `{}`", self.config.topic),
                            e,
                        ))
                    }
                }
            }
            while self.in_flight.len() > MAX_IN_FLIGHT {
                let d = self.in_flight.pop_front().expect("non-empty");
                self.await_delivery(d).await?;
            }
        }
        self.metrics.rows_out.inc_by(batch.num_rows() as u64);
        if due.is_some() {
            self.acknowledge_on_delivery(batch.num_rows(), due).await?;
        }
        Ok(())
    }

    /// Hands the deliveries of the `rows` just sent (those still in flight)
    /// to a task that awaits them and then observes their emit latency.
    /// Finished tasks are collected first, so a failed delivery stops the
    /// sink at its next batch; at most [`MAX_ACK_TASKS`] run at once.
    async fn acknowledge_on_delivery(&mut self, rows: usize, due: Option<Due>) -> Result<()> {
        while self.acks.front().is_some_and(|t| t.is_finished()) || self.acks.len() >= MAX_ACK_TASKS
        {
            let task = self.acks.pop_front().expect("non-empty");
            join_ack(task).await?;
        }
        let mine = self
            .in_flight
            .split_off(self.in_flight.len().saturating_sub(rows));
        let (topic, histogram) = (self.config.topic.clone(), self.metrics.emit_latency.clone());
        self.acks.push_back(tokio::spawn(async move {
            for delivery in mine {
                await_delivery(&topic, delivery).await?;
            }
            let mut delivered = EmitLatency::default();
            delivered.hold(due, rows as u64);
            delivered.acknowledge(&histogram);
            Ok(())
        }));
        Ok(())
    }

    /// Waits for every queued record to be acknowledged.
    async fn flush_deliveries(&mut self) -> Result<()> {
        while let Some(d) = self.in_flight.pop_front() {
            self.await_delivery(d).await?;
        }
        while let Some(task) = self.acks.pop_front() {
            join_ack(task).await?;
        }
        Ok(())
    }

    async fn await_delivery(&self, delivery: DeliveryFuture) -> Result<()> {
        await_delivery(&self.config.topic, delivery).await
    }
}

/// Acknowledging tasks at once, before the sink waits for the oldest.
const MAX_ACK_TASKS: usize = 1024;

/// Waits for one record's delivery report to `topic`.
async fn await_delivery(topic: &str, delivery: DeliveryFuture) -> Result<()> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(EngineError::kafka(
            format!("delivery to topic `{topic}` failed"),
            e,
        )),
        Err(_) => Err(EngineError::kafka_msg(format!(
            "producer for topic `{topic}` shut down before delivery"
        ))),
    }
}

/// The outcome of an acknowledging task.
async fn join_ack(task: JoinHandle<Result<()>>) -> Result<()> {
    task.await
        .map_err(|e| EngineError::Internal(format!("a delivery-acknowledging task failed: {e}")))?
}

#[async_trait::async_trait]
impl Sink for KafkaSink {
    async fn write(
        &mut self,
        batch: RecordBatch,
        due: Option<Due>,
    ) -> Result<Vec<(usize, String)>> {
        self.send(batch, due).await?;
        Ok(Vec::new())
    }

    async fn handle_watermark(&mut self, _watermark: EventTime) -> Result<()> {
        Ok(())
    }

    /// `at_least_once`: every record acknowledged, nothing to keep.
    /// `exactly_once`: the rows not yet sent in a transaction, as Arrow IPC.
    async fn pre_commit(&mut self, epoch: u64) -> Result<Snapshot> {
        let Some(pending) = self.pending.as_mut() else {
            self.flush_deliveries().await?;
            return Ok(Snapshot::default());
        };
        self.staged.stage(epoch, std::mem::take(&mut self.held));
        self.uncommitted
            .snapshot_rows(epoch, std::mem::take(pending))
    }

    async fn flush(&mut self) -> Result<()> {
        self.flush_deliveries().await
    }
}

/// A batch encoded as Kafka records: JSON values, and keys and timestamps
/// from the configured columns.
pub struct EncodedRows {
    values: Vec<Vec<u8>>,
    keys: Option<StringArray>,
    timestamps: Option<TimestampMillisecondArray>,
}

impl EncodedRows {
    /// Encodes `batch` (rows in the sink table's schema) as `config` says.
    pub fn new(batch: &RecordBatch, config: &KafkaSinkConfig) -> Result<Self> {
        Ok(Self {
            values: encode_json(batch, config.timestamp_format)?,
            // Cast and typed once per batch, not per record.
            keys: match config.key_field {
                Some(i) => Some(
                    cast(batch.column(i), &DataType::Utf8)?
                        .as_string::<i32>()
                        .clone(),
                ),
                None => None,
            },
            timestamps: match config.timestamp_field {
                Some(i) => Some(
                    cast(batch.column(i), &engine_sql::timestamp_type())?
                        .as_primitive::<TimestampMillisecondType>()
                        .clone(),
                ),
                None => None,
            },
        })
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Record `row`, to `topic`.
    pub fn record<'a>(&'a self, topic: &'a str, row: usize) -> FutureRecord<'a, str, [u8]> {
        let mut record = FutureRecord::to(topic).payload(self.values[row].as_slice());
        if let Some(k) = self.keys.as_ref().filter(|k| k.is_valid(row)) {
            record = record.key(k.value(row));
        }
        if let Some(t) = self.timestamps.as_ref().filter(|t| t.is_valid(row)) {
            record = record.timestamp(t.value(row));
        }
        record
    }
}

/// One JSON object per row. Timestamps become epoch milliseconds unless RFC 3339 is asked for.
pub fn encode_json(batch: &RecordBatch, format: TimestampFormat) -> Result<Vec<Vec<u8>>> {
    let batch = match format {
        TimestampFormat::Rfc3339 => batch.clone(),
        TimestampFormat::EpochMillis => timestamps_as_millis(batch)?,
    };
    let mut buf = Vec::with_capacity(batch.num_rows() * 128);
    let mut writer = LineDelimitedWriter::new(&mut buf);
    writer.write(&batch)?;
    writer.finish()?;
    drop(writer);
    Ok(buf
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

fn timestamps_as_millis(batch: &RecordBatch) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if matches!(field.data_type(), DataType::Timestamp(..)) {
            let ms = cast(
                &cast(column, &engine_sql::timestamp_type())?,
                &DataType::Int64,
            )?;
            fields.push(Field::new(
                field.name(),
                DataType::Int64,
                field.is_nullable(),
            ));
            columns.push(ms);
        } else {
            fields.push(field.as_ref().clone());
            columns.push(Arc::clone(column));
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Float64Array;

    #[test]
    fn rows_become_json_objects_with_millisecond_times() {
        let schema = Schema::new(vec![
            Field::new("symbol", DataType::Utf8, false),
            Field::new("window_end", engine_sql::timestamp_type(), false),
            Field::new("vwap", DataType::Float64, true),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec!["AAPL", "MSFT"])),
                Arc::new(
                    TimestampMillisecondArray::from(vec![60_000, 120_000]).with_timezone("UTC"),
                ),
                Arc::new(Float64Array::from(vec![Some(1.5), None])),
            ],
        )
        .unwrap();
        let rows = encode_json(&batch, TimestampFormat::EpochMillis).unwrap();
        assert_eq!(
            String::from_utf8(rows[0].clone()).unwrap(),
            r#"{"symbol":"AAPL","window_end":60000,"vwap":1.5}"#
        );
        assert_eq!(
            String::from_utf8(rows[1].clone()).unwrap(),
            r#"{"symbol":"MSFT","window_end":120000}"#
        );
        let rows = encode_json(&batch, TimestampFormat::Rfc3339).unwrap();
        assert!(String::from_utf8(rows[0].clone())
            .unwrap()
            .contains("1970-01-01T00:01:00"));
    }
}
