//! A stateless statement (filter + projection) from Kafka to an `s3://` lake on
//! the real S3 API (moto), partitioned by `dt` and `hour`, checked by reading
//! the objects back. Files roll by size, so a partition holds several.

use crate::common;

use std::collections::BTreeMap;

use arrow::array::{Array, Float64Array, StringArray};
use bytes::Bytes;
use common::*;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_trades_land_on_s3_partitioned_by_hour() {
    init_logs();
    let lake_url = std::env::var("LAKE_S3_URL")
        .expect("LAKE_S3_URL is not set: run the tests with scripts/test.sh");
    let topic = unique("raw");
    create_topics(&[(&topic, 3), (&format!("{topic}.dlq"), 1)]).await;
    // 2025-11-20T22:40:00Z, 90k trades 100 ms apart: 2.5 hours over three `hour` partitions.
    let trades = generate_trades(3, 90_000, 5, 1_763_678_400_000, 100);
    let records = trade_records(&trades);
    produce(&topic, &records).await;

    let table = unique("trades");
    let job_text = format!(
        "CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
             WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH (connector = 'kafka', bootstrap_servers = '${{KAFKA_BROKERS}}', topic = '{topic}', format = 'json');
         CREATE TABLE big_trades (symbol TEXT, notional DOUBLE, ts TIMESTAMP)
         WITH (connector = 'lake', path = '{lake_url}/{table}', partition_by = 'dt,hour', partition_time_field = 'ts',
               parquet.compression = 'zstd', rolling.file_size = '64KB');
         INSERT INTO big_trades SELECT lower(symbol), price * size, ts FROM trades WHERE size >= 100;"
    );
    let env = |name: &str| (name == "KAFKA_BROKERS").then(brokers);
    let report = run_bounded("raw.sql", &job_text, &env).await;
    let kept: Vec<&Trade> = trades.iter().filter(|t| t.size >= 100.0).collect();
    assert_eq!(report.metrics.rows_out(), kept.len() as u64);

    // Read back with our own S3 client from the same environment.
    let bucket = lake_url.trim_start_matches("s3://");
    let s3 = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()
        .unwrap();
    let objects: Vec<_> = s3
        .list(Some(&table.as_str().into()))
        .try_collect()
        .await
        .unwrap();
    let mut per_partition: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    let mut file_sizes: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
    let mut committed = Vec::new();
    for o in &objects {
        let path = o.location.to_string();
        let partition = path
            .split('/')
            .skip(1)
            .take(2)
            .collect::<Vec<_>>()
            .join("/");
        if path.ends_with("/_SUCCESS") {
            committed.push(partition);
            continue;
        }
        assert!(path.ends_with(".parquet"), "{path}");
        file_sizes
            .entry(partition.clone())
            .or_default()
            .push((path.clone(), o.size));
        let bytes: Bytes = s3.get(&o.location).await.unwrap().bytes().await.unwrap();
        for batch in ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap()
        {
            let b = batch.unwrap();
            let notional = b.column(1).as_any().downcast_ref::<Float64Array>().unwrap();
            let symbols = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            assert!(symbols.iter().all(|s| s.unwrap().starts_with("sym")));
            let e = per_partition.entry(partition.clone()).or_default();
            e.0 += b.num_rows();
            e.1 += notional.iter().map(|v| v.unwrap()).sum::<f64>();
        }
    }
    let mut expected: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    for t in &kept {
        let p = chrono::DateTime::from_timestamp_millis(t.ts)
            .unwrap()
            .format("dt=%Y-%m-%d/hour=%H")
            .to_string();
        let e = expected.entry(p).or_default();
        e.0 += 1;
        e.1 += t.price * t.size;
    }
    assert_eq!(
        per_partition.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        committed.iter().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "every partition written has its _SUCCESS marker"
    );
    // Rolled by size: every file but the last of a partition was closed because it reached 64 KB.
    assert!(
        file_sizes.values().any(|f| f.len() > 2),
        "full hours hold several 64 KB files: {file_sizes:?}"
    );
    for (p, files) in &mut file_sizes {
        files.sort();
        assert!(
            files[..files.len() - 1]
                .iter()
                .all(|(_, size)| *size >= 64 * 1024),
            "{p}: {files:?}"
        );
    }
    for (p, (n, sum)) in &expected {
        let (got_n, got_sum) = per_partition[p];
        assert_eq!(got_n, *n, "{p}: rows");
        assert!(
            close_to(got_sum, *sum, 1e-9),
            "{p}: notional {got_sum} vs {sum}"
        );
    }
}
