//! What the benchmark binaries share: the in-process hot path of
//! `jobs/ohlc_1m.sql` (JSON decode + 1-minute OHLC/VWAP window aggregation,
//! without the broker), measured.

use std::time::Instant;

use anyhow::Result;
use arrow::record_batch::RecordBatch;
use engine::decode::{JsonDecoder, RawRecord};
use engine::operator::{Collector, MAIN};
use engine::source::kafka::KafkaSourceConfig;
use engine::source::row_rules;
use engine::Metrics;
use engine_sql::{plan_job, JobFile};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// The repository root (job files, the services script).
pub fn repo_root() -> std::path::PathBuf {
    // `cargo run` gives the manifest directory at run time; the compiled-in
    // one may be another clone's that shares the target directory.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    );
    manifest.join("..")
}

/// The hot path's figures over `trades` simulated payloads.
#[derive(Debug, Clone, Copy)]
pub struct HotPath {
    /// Trades decoded and aggregated.
    pub trades: usize,
    /// Distinct symbols among them.
    pub symbols: usize,
    /// Records per decoded batch.
    pub batch: usize,
    /// Rounds run; each figure is the best of them.
    pub rounds: usize,
    /// Payload bytes decoded.
    pub bytes: usize,
    /// Candles emitted.
    pub candles: usize,
    /// Decoding alone, without the job's row rules.
    pub decode_plain: std::time::Duration,
    /// Decoding with the job's row rules, by arrow-json alone (no flat decoder).
    pub decode_general: std::time::Duration,
    /// Decoding with the job's row rules, as jobs decode.
    pub decode: std::time::Duration,
    /// The window aggregation alone.
    pub aggregate: std::time::Duration,
}

/// Decodes and aggregates `trades` trades of `symbols` symbols in batches of
/// `batch`, timing each stage on this thread: the best of `rounds` rounds.
pub async fn hot_path(
    trades: usize,
    symbols: usize,
    batch: usize,
    rounds: usize,
) -> Result<HotPath> {
    let text = std::fs::read_to_string(repo_root().join("jobs/ohlc_1m.sql"))?;
    let job = JobFile::parse("jobs/ohlc_1m.sql", &text, &|_| None)?;
    let planned = plan_job(&job).await?;
    let source = job
        .table("trades")
        .expect("jobs/ohlc_1m.sql reads `trades`");

    // Payloads as the simulator writes them: ~70 bytes, a trade every 3 ms, keyed by symbol.
    let mut rng = StdRng::seed_from_u64(1);
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..trades)
        .map(|i| {
            let price = 100.0 + rng.random_range(0..10_000) as f64 / 100.0;
            let symbol = format!("S{:03}", rng.random_range(0..symbols));
            let payload = format!(
                r#"{{"symbol":"{symbol}","price":{price},"size":{},"ts":{}}}"#,
                rng.random_range(1..1000),
                1_763_640_000_000i64 + 3 * i as i64
            );
            (symbol.into_bytes(), payload.into_bytes())
        })
        .collect();
    let bytes: usize = records.iter().map(|(_, p)| p.len()).sum();

    // Side by side: the decoder alone (one row per record, nesting bound),
    // and with the job's row rules (finite numbers, time range, event time
    // ahead, CHECK (price > 0), CHECK (size > 0), key_field = symbol).
    let config = KafkaSourceConfig::from_table(source).map_err(|(_, m)| anyhow::anyhow!(m))?;
    let plain = JsonDecoder::new(source, "trades", 1 << 20);
    let rules = || row_rules("jobs/ohlc_1m.sql", source, &config.read);
    let ruled = JsonDecoder::new(source, "trades", 1 << 20).with_rules(rules()?);
    let general = (JsonDecoder::new(source, "trades", 1 << 20).general_only()).with_rules(rules()?);
    let decode_all = |decoder: &JsonDecoder| -> Result<(std::time::Duration, Vec<RecordBatch>)> {
        let started = Instant::now();
        let mut batches = Vec::new();
        for (n, chunk) in records.chunks(batch).enumerate() {
            let raw: Vec<RawRecord> = chunk
                .iter()
                .enumerate()
                .map(|(i, (key, payload))| RawRecord {
                    payload: Some(payload),
                    key: Some(key),
                    partition: 0,
                    offset: (n * batch + i) as i64,
                    timestamp: None,
                })
                .collect();
            let (b, bad) = decoder.decode(&raw)?;
            assert!(bad.is_empty(), "{bad:?}");
            batches.push(b);
        }
        Ok((started.elapsed(), batches))
    };
    // Best of `rounds` interleaved rounds: this machine's other load comes and goes.
    let best = |a: &mut Option<std::time::Duration>, d| {
        *a = Some(a.map_or(d, |a: std::time::Duration| a.min(d)))
    };
    let (mut decode_plain, mut decode_general, mut decode, mut aggregate) =
        (None, None, None, None);
    let mut candles = 0;
    for _ in 0..rounds.max(1) {
        best(&mut decode_plain, decode_all(&plain)?.0);
        let (took, general_batches) = decode_all(&general)?;
        best(&mut decode_general, took);
        let (took, batches) = decode_all(&ruled)?;
        best(&mut decode, took);
        // The two decoders' batches are the same: only their speed differs.
        assert_eq!(general_batches, batches, "the flat decoder read other rows");
        drop(general_batches);

        let mut op =
            engine::operator::for_statement(&planned[0], Metrics::new().statement("bench"))?;
        let started = Instant::now();
        let mut out = Collector::default();
        candles = 0;
        for b in batches {
            let max_ts = arrow::compute::max(
                b.column(3)
                    .as_any()
                    .downcast_ref::<arrow::array::TimestampMillisecondArray>()
                    .expect("ts column"),
            )
            .unwrap_or(i64::MIN);
            op.process_batch(b, &mut out).await?;
            op.handle_watermark(max_ts - 2000, &mut out).await?;
            candles += out.take(MAIN).iter().map(|b| b.num_rows()).sum::<usize>();
        }
        op.handle_end_of_data(&mut out).await?;
        candles += out.take(MAIN).iter().map(|b| b.num_rows()).sum::<usize>();
        best(&mut aggregate, started.elapsed());
    }
    let took = |d: Option<std::time::Duration>| d.expect("at least one round");
    let (decode_plain, decode_general, decode, aggregate) = (
        took(decode_plain),
        took(decode_general),
        took(decode),
        took(aggregate),
    );

    Ok(HotPath {
        trades,
        symbols,
        batch,
        rounds,
        bytes,
        candles,
        decode_plain,
        decode_general,
        decode,
        aggregate,
    })
}

impl HotPath {
    /// Prints events/s per stage.
    pub fn print(&self) {
        let HotPath {
            trades,
            symbols,
            batch,
            rounds,
            bytes,
            candles,
            decode_plain,
            decode_general,
            decode,
            aggregate,
        } = *self;
        let rate = |d: std::time::Duration| trades as f64 / d.as_secs_f64();
        println!(
            "trades={trades} symbols={symbols} batch={batch} payload_bytes={bytes} candles={candles} (best of {rounds} rounds)"
        );
        println!(
            "decode:    {:>12.0} events/s ({:.0} MB/s) without row rules",
            rate(decode_plain),
            bytes as f64 / decode_plain.as_secs_f64() / 1e6
        );
        println!(
            "decode:    {:>12.0} events/s ({:.0} MB/s) with the job's row rules, arrow-json alone",
            rate(decode_general),
            bytes as f64 / decode_general.as_secs_f64() / 1e6
        );
        println!(
            "decode:    {:>12.0} events/s ({:.0} MB/s) with the job's row rules",
            rate(decode),
            bytes as f64 / decode.as_secs_f64() / 1e6
        );
        println!("aggregate: {:>12.0} events/s", rate(aggregate));
        println!(
            "both:      {:>12.0} events/s on one core",
            rate(decode + aggregate)
        );
    }
}
