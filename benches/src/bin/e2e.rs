//! End to end on the real path: one topic of simulated trades on the local
//! broker, read by a bare librdkafka consumer (the broker path's limit on
//! this machine) and by the engine's jobs, side by side in one run, each in
//! a child process of its own so that its CPU time and peak RSS are its own
//! (`wait4`). DuckDB over the same trades as JSON lines, on one thread, is
//! the reference for what a columnar engine's JSON reader does per core.
//!
//! ```text
//! cargo run -p engine-benches --bin e2e -- [TRADES] [SYMBOLS] [PARTITIONS] [RUNS]
//! ```
//! Uses the broker of `scripts/services.sh` (started if `KAFKA_BROKERS` is
//! unset). Rows, each over the same topic: the bare consumer (the engine's
//! consumer settings, touching every payload, decoding nothing);
//! `jobs/ohlc_1m.sql --bounded` without checkpoints (Kafka in, Kafka and
//! Parquet out); `jobs/trades_raw.sql` to a file lake; `jobs/ohlc_1m.sql`
//! with checkpoints every second (a run lasts a few seconds: with 10 s it
//! would take only its final one); DuckDB. Per core = trades / CPU seconds of
//! the process; each row is the median of RUNS runs (default 3), taken in
//! interleaved rounds. Each job's output is checked against DuckDB's
//! candle count.
//!
//! ```text
//! cargo run -p engine-benches --bin e2e -- latency [SECONDS] [RATE] [SYMBOLS]
//! ```
//! Candle latency on a live feed: `jobs/ohlc_1m.sql` running (no
//! checkpoints) while RATE trades/s (default 100,000) arrive for SECONDS
//! (default 180), market time = wall time. A consumer of the candle topic
//! takes each candle's arrival minus the moment the watermark passed its
//! window (window end + the job's 2 s watermark delay): p50, p99 and max,
//! and the job's CPU share.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use engine::feed::{self, FeedConfig, Pacer, Simulator, Speed};
use engine::{CheckpointOptions, Job, KafkaClientOptions, RunOptions};
use engine_benches::repo_root;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// Event time of the first trade (fixed, so that runs compare).
const START_MS: i64 = 1_763_649_000_000;

/// What a child process measured: wall time, CPU seconds (user + system),
/// peak RSS, and what it printed on stdout.
struct Measured {
    wall: Duration,
    cpu: f64,
    peak_rss_mb: f64,
    stdout: String,
}

/// Runs this binary as a child with `args` and `env`; its own figures.
fn measure(args: &[&str], env: &BTreeMap<String, String>) -> Result<Measured> {
    let started = Instant::now();
    let child = Command::new(std::env::current_exe()?)
        .arg("--child")
        .args(args)
        .envs(env)
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.context("child stdout")?;
    // Read before reaping: a full pipe would hold the child.
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).map(|_| text)
    });
    let mut status = 0;
    // SAFETY: `usage` is a valid rusage for wait4 to fill; `pid` is our child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    if reaped != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("`{}` failed (status {status})", args.join(" "));
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let stdout = reader.join().expect("reader thread")?;
    // The child's own high-water mark; a grandchild's (DuckDB's python) is
    // in the printed `child_maxrss_kb`.
    let own = field(&stdout, "vmhwm_kb").unwrap_or(usage.ru_maxrss as u64);
    let grandchild = field(&stdout, "child_maxrss_kb").unwrap_or(0);
    Ok(Measured {
        wall,
        cpu: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        peak_rss_mb: own.max(grandchild) as f64 / 1024.0,
        stdout,
    })
}

/// The simulator's trades the bench loads: the same for the topic and DuckDB's file.
fn trades(count: usize, symbols: usize) -> impl Iterator<Item = feed::FeedRecord> {
    let config = FeedConfig {
        symbols: feed::symbol_names(symbols),
        rate: feed::DEFAULT_RATE,
        seed: 7,
        start_ms: START_MS,
        disorder_ms: 0,
        late_fraction: 0.0,
        bad_fraction: 0.0,
    };
    Simulator::new(config).take(count)
}

/// The services' environment (`scripts/services.sh env`), starting them if
/// `KAFKA_BROKERS` is not set.
fn services() -> Result<BTreeMap<String, String>> {
    let script = repo_root().join("scripts/services.sh");
    if std::env::var_os("KAFKA_BROKERS").is_none() {
        let status = Command::new(&script).arg("start").status()?;
        if !status.success() {
            bail!("{} start failed", script.display());
        }
    }
    let out = Command::new(&script).arg("env").output()?;
    let mut env = BTreeMap::new();
    for line in String::from_utf8(out.stdout)?.lines() {
        if let Some((k, v)) = line.trim_start_matches("export ").split_once('=') {
            env.insert(k.to_string(), v.to_string());
        }
    }
    // A broker already running elsewhere wins over the script's default port.
    if let Ok(brokers) = std::env::var("KAFKA_BROKERS") {
        env.insert("KAFKA_BROKERS".into(), brokers);
    }
    Ok(env)
}

/// Child: reads `topic` from the beginning with the engine's consumer
/// settings until `count` records came, touching every payload byte.
fn bare_consumer(brokers: &str, topic: &str, count: usize) -> Result<()> {
    let mut config = ClientConfig::new();
    for (k, v) in engine::source::kafka::CONSUMER_DEFAULTS {
        config.set(*k, *v);
    }
    let consumer: BaseConsumer = config
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("e2e-bare-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(30))?;
    let mut assignment = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            assignment.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    consumer.assign(&assignment)?;
    let (mut seen, mut bytes, mut checksum) = (0usize, 0usize, 0u64);
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen < count {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let payload = m.payload().unwrap_or_default();
                bytes += payload.len();
                checksum = payload
                    .iter()
                    .fold(checksum, |c, b| c.rotate_left(5) ^ u64::from(*b));
                seen += 1;
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => bail!("reading {topic}: {e}"),
            None if Instant::now() > deadline => bail!("only {seen} of {count} records came"),
            None => {}
        }
    }
    println!("records={seen} bytes={bytes} checksum={checksum:x}");
    Ok(())
}

/// Child: runs job file `job` to the end of `topic` with `vars` for its
/// `${VAR}`s, checkpointing every `checkpoint_secs` (0: none).
async fn job_run(job: &str, checkpoint_secs: u64, vars: &BTreeMap<String, String>) -> Result<()> {
    let env = |var: &str| vars.get(var).cloned().or_else(|| std::env::var(var).ok());
    let job = Job::load_with_env(&repo_root().join(job), &env).await?;
    let checkpoint = (checkpoint_secs > 0).then(|| {
        CheckpointOptions::new(
            vars["STATE_DIR"].clone(),
            Duration::from_secs(checkpoint_secs),
        )
    });
    let options = RunOptions {
        bounded: true,
        checkpoint,
        ..Default::default()
    };
    let report = job.run(options, engine::CancellationToken::new()).await?;
    let checkpoints = (report.metrics.render().lines())
        .find_map(|l| l.strip_prefix("engine_checkpoints_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    println!(
        "records={} rows_out={} checkpoints={checkpoints}",
        report.metrics.records_in(),
        report.metrics.rows_out()
    );
    Ok(())
}

/// DuckDB's 1-minute candles of the trades in `file` on one thread (the
/// services' Python); prints the number of candles.
const DUCKDB_OHLC: &str = r#"
import duckdb, sys
con = duckdb.connect()
con.execute("SET threads = 1")
# Every aggregate reaches the result, so that none is optimized away.
n, check = con.execute("""
    SELECT count(*), sum(o + h + l + c + CAST(v AS DOUBLE) + CAST(pv AS DOUBLE) + n) FROM (
        SELECT symbol, time_bucket(INTERVAL 1 MINUTE, epoch_ms(ts)) AS w,
               arg_min(price, ts) AS o, max(price) AS h, min(price) AS l, arg_max(price, ts) AS c,
               sum(CAST(size AS DECIMAL(38, 8))) AS v, sum(CAST(price * size AS DECIMAL(38, 8))) AS pv,
               count(*) AS n
        FROM read_json(?, format = 'newline_delimited',
                       columns = {symbol: 'VARCHAR', price: 'DOUBLE', size: 'DOUBLE', ts: 'BIGINT'})
        GROUP BY ALL)
""", [sys.argv[1]]).fetchone()
import resource
print(f"candles={n} checksum={check:.0f} child_maxrss_kb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")
"#;

/// `key=value` from a child's output line.
/// A quantile's emit-latency bucket bound in µs as printed (0: none known).
fn bucket_bound(us: u64) -> String {
    match us {
        0 => "past the histogram's last bucket".into(),
        us => format!("<= {} ms", us as f64 / 1000.0),
    }
}

fn field(out: &str, key: &str) -> Result<u64> {
    (out.split_whitespace())
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        .with_context(|| format!("no `{key}` in {out:?}"))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--child") {
        // Jobs log as `engine run` does (at `RUST_LOG`, default here: warn),
        // which costs what it costs there.
        if std::env::var_os("RUST_LOG").is_none() {
            std::env::set_var("RUST_LOG", "warn");
        }
        engine::logs::init(false);
        // The jobs run on the runtime `engine run` gives them (multi-thread,
        // a worker per core); the rest needs no more than one thread.
        let runtime = match args.get(1).map(String::as_str) {
            Some("job" | "live") => tokio::runtime::Builder::new_multi_thread(),
            _ => tokio::runtime::Builder::new_current_thread(),
        }
        .enable_all()
        .build()?;
        let measured = runtime.block_on(child(&args[1..]));
        // The peak RSS of this process's own memory since exec (`wait4`'s
        // figure can carry the parent's, which the child was spawned from).
        println!("vmhwm_kb={}", own_peak_rss_kb());
        return measured;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if args.first().is_some_and(|a| a == "latency") {
        return runtime.block_on(latency(&args[1..]));
    }
    runtime.block_on(compare(&args))
}

/// `VmHWM` of this process, in KiB (0 if unreadable).
fn own_peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    (status.lines())
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The side-by-side comparison (see the module doc).
async fn compare(args: &[String]) -> Result<()> {
    let number = |i: usize, default: usize| -> Result<usize> {
        args.get(i).map_or(Ok(default), |a| {
            a.parse().context("TRADES SYMBOLS PARTITIONS RUNS")
        })
    };
    let (count, symbols, partitions) = (number(0, 2_000_000)?, number(1, 50)?, number(2, 4)?);
    let runs = number(3, 3)?.max(1);
    let env = services()?;
    let brokers = env["KAFKA_BROKERS"].clone();
    let client = KafkaClientOptions::plaintext(&brokers);
    let run = format!("e2e_{}", std::process::id());
    let (topic, ohlc) = (format!("{run}_trades"), format!("{run}_ohlc"));
    let dlq = format!("{topic}.dlq");
    feed::create_topics(
        &client,
        &[(&topic, partitions as i32), (&dlq, 1), (&ohlc, 1)],
    )
    .await?;

    // Load the topic once; DuckDB's copy of the same trades beside it.
    let dir = tempfile::tempdir()?;
    let jsonl = dir.path().join("trades.jsonl");
    let loading = Instant::now();
    let producer = feed::feed_producer(&client)?;
    let pacer = Pacer::new(START_MS, Speed::Max);
    let stop = engine::CancellationToken::new();
    feed::publish(&producer, &topic, trades(count, symbols), &pacer, &stop).await?;
    producer.flush(Duration::from_secs(120))?;
    producer.context().check(&topic)?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(&jsonl)?);
    for t in trades(count, symbols) {
        std::io::Write::write_all(&mut file, &t.payload)?;
        std::io::Write::write_all(&mut file, b"\n")?;
    }
    std::io::Write::flush(&mut file)?;
    drop(file);
    println!(
        "{count} trades of {symbols} symbols in {partitions} partitions of `{topic}` on {brokers}, loaded in {:.1} s; each row a process of its own",
        loading.elapsed().as_secs_f64()
    );

    let mut jobs_env = env.clone();
    jobs_env.insert("TRADES_TOPIC".into(), topic.clone());
    jobs_env.insert("OHLC_TOPIC".into(), ohlc.clone());
    let job_env = |name: &str| {
        let mut vars = jobs_env.clone();
        let at = dir.path().join(name);
        vars.insert("LAKE_URL".into(), at.join("lake").display().to_string());
        vars.insert("STATE_DIR".into(), at.join("state").display().to_string());
        // A group of its own: every run reads the topic from its start.
        vars.insert("OHLC_GROUP".into(), format!("{run}_{name}"));
        vars.insert("RAW_GROUP".into(), format!("{run}_{name}"));
        vars
    };
    let count_arg = count.to_string();
    let jsonl_arg = jsonl.display().to_string();
    // Warm the broker's path once, unmeasured; DuckDB's candles are what the jobs must write.
    measure(&["bare", &brokers, &topic, &count_arg], &env)?;
    let candles = field(&measure(&["duckdb", &jsonl_arg], &env)?.stdout, "candles")?;
    // (what, child arguments, the job's own name for its groups and dirs, rows it must write)
    let rows: [(&str, Vec<&str>, Option<&str>, u64); 5] = [
        (
            "bare librdkafka consumer (engine's settings)",
            vec!["bare", &brokers, &topic, &count_arg],
            None,
            0,
        ),
        (
            "ohlc_1m --bounded, no checkpoints",
            vec!["job", "jobs/ohlc_1m.sql", "0"],
            Some("ohlc"),
            2 * candles,
        ),
        (
            "trades_raw -> file lake, no checkpoints",
            vec!["job", "jobs/trades_raw.sql", "0"],
            Some("raw"),
            count as u64,
        ),
        (
            "ohlc_1m --bounded, checkpoints every 1 s",
            vec!["job", "jobs/ohlc_1m.sql", "1"],
            Some("ohlc_ckpt"),
            2 * candles,
        ),
        (
            "DuckDB read_json + OHLC, 1 thread",
            vec!["duckdb", &jsonl_arg],
            None,
            0,
        ),
    ];
    // Rounds over every row, so that a busy moment of the machine spreads over all.
    let mut measured: Vec<Vec<Measured>> = rows.iter().map(|_| Vec::new()).collect();
    for round in 0..runs {
        for (i, (what, args, job, expected_rows)) in rows.iter().enumerate() {
            let m = match job {
                Some(name) => measure(args, &job_env(&format!("{name}_{round}")))?,
                None => measure(args, &env)?,
            };
            if args.get(2) == Some(&"1") && field(&m.stdout, "checkpoints")? < 2 {
                bail!("{what}: fewer than two checkpoints: {}", m.stdout.trim());
            }
            if *expected_rows > 0 {
                let (records, rows_out) =
                    (field(&m.stdout, "records")?, field(&m.stdout, "rows_out")?);
                if records != count as u64 || rows_out != *expected_rows {
                    bail!("{what}: read {records} of {count} trades, wrote {rows_out} rows, not {expected_rows} (DuckDB: {candles} candles, to each of two sinks)");
                }
            }
            measured[i].push(m);
        }
    }
    // The median run by CPU time, and the range of trades/s per core.
    let per_core = |m: &Measured| count as f64 / m.cpu;
    for runs in &mut measured {
        runs.sort_by(|a, b| a.cpu.total_cmp(&b.cpu));
    }
    let medians: Vec<&Measured> = measured.iter().map(|runs| &runs[runs.len() / 2]).collect();
    let bare_per_core = per_core(medians[0]);
    println!("median of {runs} runs each (by CPU time), rounds interleaved");
    println!(
        "{:<44} {:>7} {:>7} {:>6} {:>11} {:>14} {:>19} {:>8}",
        "what", "wall s", "CPU s", "cores", "peak RSS MB", "trades/s/core", "(range)", "vs bare"
    );
    for (((what, ..), m), runs) in rows.iter().zip(&medians).zip(&measured) {
        let (low, high) = (per_core(&runs[runs.len() - 1]), per_core(&runs[0]));
        println!(
            "{what:<44} {:>7.2} {:>7.2} {:>6.2} {:>11.0} {:>14.0} {:>19} {:>7.2}x",
            m.wall.as_secs_f64(),
            m.cpu,
            m.cpu / m.wall.as_secs_f64(),
            m.peak_rss_mb,
            per_core(m),
            format!("{low:.0}-{high:.0}"),
            per_core(m) / bare_per_core
        );
    }
    println!("{candles} candles (DuckDB), the jobs' rows checked against it");
    let symbols_arg = symbols.to_string();
    let in_process = measure(&["inprocess", &count_arg, &symbols_arg], &env)?;
    let figures: Vec<&str> = (in_process.stdout.lines())
        .filter(|l| !l.starts_with("vmhwm_kb="))
        .collect();
    println!(
        "in-process hot path (engine-benches, no broker; peak RSS {:.0} MB with its input):\n{}",
        in_process.peak_rss_mb,
        figures.join("\n")
    );
    Ok(())
}

/// The measured work, in this process.
async fn child(args: &[String]) -> Result<()> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["bare", brokers, topic, count] => bare_consumer(brokers, topic, count.parse()?),
        ["job", job, checkpoint_secs] => {
            let vars: BTreeMap<String, String> = std::env::vars().collect();
            job_run(job, checkpoint_secs.parse()?, &vars).await
        }
        ["live", job] => {
            let vars: BTreeMap<String, String> = std::env::vars().collect();
            let env = |var: &str| vars.get(var).cloned();
            let job = Job::load_with_env(&repo_root().join(job), &env).await?;
            let stop = engine::CancellationToken::new();
            tokio::spawn({
                let stop = stop.clone();
                async move {
                    let _ = tokio::signal::ctrl_c().await;
                    stop.cancel();
                }
            });
            let report = job.run(RunOptions::default(), stop).await?;
            // The engine's own share: from the watermark passing a window's end in the
            // source to the candle's delivery report (no broker hop on the way in or out).
            let (rows, seconds) = report.metrics.emit_latency_of("ohlc_1m_topic");
            // Bucket bounds in µs (0: none): the histogram's resolution.
            let bound = |q| {
                let b = report
                    .metrics
                    .emit_latency_quantile_bound("ohlc_1m_topic", q);
                b.map_or(0, |s| (s * 1e6).round() as u64)
            };
            println!(
                "emit_rows={rows} emit_mean_us={} emit_p50_le_us={} emit_p99_le_us={}",
                (seconds * 1e6 / rows.max(1) as f64) as u64,
                bound(0.5),
                bound(0.99),
            );
            Ok(())
        }
        ["duckdb", file] => {
            let python = std::env::var("SERVICES_PYTHON")
                .context("SERVICES_PYTHON (scripts/services.sh env)")?;
            let out = Command::new(python)
                .args(["-c", DUCKDB_OHLC, file])
                .stderr(Stdio::inherit())
                .output()?;
            if !out.status.success() {
                bail!("DuckDB failed");
            }
            print!("{}", String::from_utf8_lossy(&out.stdout));
            Ok(())
        }
        ["inprocess", count, symbols] => {
            engine_benches::hot_path(count.parse()?, symbols.parse()?, 8192, 3)
                .await?
                .print();
            Ok(())
        }
        other => bail!("unknown child {other:?}"),
    }
}

/// The job's watermark delay (`WATERMARK FOR ts AS ts - INTERVAL '2' SECOND`).
const WATERMARK_DELAY_MS: i64 = 2_000;

/// Milliseconds since the epoch, now.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The latency benchmark (see the module doc).
async fn latency(args: &[String]) -> Result<()> {
    let number = |i: usize, default: usize| -> Result<usize> {
        args.get(i).map_or(Ok(default), |a| {
            a.parse().context("latency SECONDS RATE SYMBOLS")
        })
    };
    let (seconds, rate, symbols) = (number(0, 180)?, number(1, 100_000)?, number(2, 200)?);
    if rate as f64 > Simulator::max_rate(symbols) {
        bail!(
            "{symbols} symbols trade at most {}/s: give more symbols",
            Simulator::max_rate(symbols)
        );
    }
    let env = services()?;
    let brokers = env["KAFKA_BROKERS"].clone();
    let client = KafkaClientOptions::plaintext(&brokers);
    let run = format!("latency_{}", std::process::id());
    let (topic, ohlc) = (format!("{run}_trades"), format!("{run}_ohlc"));
    let dlq = format!("{topic}.dlq");
    feed::create_topics(&client, &[(&topic, 4), (&dlq, 1), (&ohlc, 1)]).await?;
    let dir = tempfile::tempdir()?;
    let mut vars = env.clone();
    vars.insert("TRADES_TOPIC".into(), topic.clone());
    vars.insert("OHLC_TOPIC".into(), ohlc.clone());
    vars.insert("OHLC_GROUP".into(), run.clone());
    vars.insert(
        "LAKE_URL".into(),
        dir.path().join("lake").display().to_string(),
    );

    // The candles' reader: each candle's arrival and window end.
    let reading = engine::CancellationToken::new();
    let reader = std::thread::spawn({
        let (brokers, ohlc, reading) = (brokers.clone(), ohlc.clone(), reading.clone());
        move || -> Result<Vec<(i64, i64)>> {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("group.id", format!("{ohlc}_reader"))
                .set("enable.auto.commit", "false")
                // Fetch at once: the reader's own wait is not the engine's latency.
                .set("fetch.wait.max.ms", "5")
                .create()?;
            let mut assignment = TopicPartitionList::new();
            assignment.add_partition_offset(&ohlc, 0, Offset::Beginning)?;
            consumer.assign(&assignment)?;
            let mut seen = Vec::new();
            while !reading.is_cancelled() {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) {
                    let arrived = now_ms();
                    let v: serde_json::Value =
                        serde_json::from_slice(m.payload().unwrap_or_default())?;
                    let end = v["window_end"]
                        .as_i64()
                        .context("a candle without window_end")?;
                    seen.push((arrived, end));
                }
            }
            Ok(seen)
        }
    });

    let started = Instant::now();
    let job = Command::new(std::env::current_exe()?)
        .args(["--child", "live", "jobs/ohlc_1m.sql"])
        .envs(&vars)
        .stdout(std::fs::File::create(dir.path().join("job.out"))?)
        .spawn()?;
    let mut job = LiveChild {
        pid: job.id() as libc::pid_t,
        reaped: false,
    };
    let producer = feed::feed_producer(&client)?;
    let start_ms = now_ms();
    let config = FeedConfig {
        symbols: feed::symbol_names(symbols),
        rate: rate as f64,
        seed: 11,
        start_ms,
        disorder_ms: 0,
        late_fraction: 0.0,
        bad_fraction: 0.0,
    };
    let end_ms = start_ms + 1000 * seconds as i64;
    let records = Simulator::new(config).take_while(|r| r.sent_ms < end_ms);
    let pacer = Pacer::new(start_ms, Speed::Times(1.0));
    let stop = engine::CancellationToken::new();
    let counts = feed::publish(&producer, &topic, records, &pacer, &stop).await?;
    producer.flush(Duration::from_secs(60))?;
    producer.context().check(&topic)?;
    let fed_for = started.elapsed();
    // The last windows the feed closed come out within a moment.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let usage = job.stop()?;
    let job_wall = started.elapsed().as_secs_f64();
    reading.cancel();
    let seen = reader.join().expect("reader thread")?;
    let cpu = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let job_cpu = cpu(usage.ru_utime) + cpu(usage.ru_stime);
    let job_out = std::fs::read_to_string(dir.path().join("job.out"))?;
    let (emitted, emit_mean_us) = (
        field(&job_out, "emit_rows")?,
        field(&job_out, "emit_mean_us")?,
    );
    let (emit_p50, emit_p99) = (
        field(&job_out, "emit_p50_le_us")?,
        field(&job_out, "emit_p99_le_us")?,
    );

    // Each candle's wait after the watermark passed its window's end.
    let mut waits: Vec<i64> = (seen.iter())
        .map(|(arrived, end)| arrived - (end + WATERMARK_DELAY_MS))
        .collect();
    if waits.is_empty() {
        bail!("no candle came out");
    }
    waits.sort_unstable();
    let at = |q: f64| waits[((waits.len() - 1) as f64 * q).round() as usize];
    let windows: std::collections::BTreeSet<i64> = seen.iter().map(|(_, end)| *end).collect();
    // Every minute the feed crossed closed a window (the last one stays open).
    let crossed = (end_ms - WATERMARK_DELAY_MS) / 60_000 - start_ms / 60_000;
    // (A window closing in the feed's last moment may just miss it.)
    if (windows.len() as i64) < crossed - 1 || waits.len() != windows.len() * symbols {
        bail!(
            "{} candles of {} windows, not {symbols} of each of {crossed}",
            waits.len(),
            windows.len()
        );
    }
    let sent: u64 = counts.iter().sum();
    println!(
        "{sent} trades of {symbols} symbols at {:.0}/s for {:.0} s, market time = wall time; `jobs/ohlc_1m.sql` without checkpoints",
        sent as f64 / fed_for.as_secs_f64(),
        fed_for.as_secs_f64()
    );
    println!(
        "{} candles of {} windows; from the watermark passing a window's end to the candle read back from the topic: p50 {} ms, p99 {} ms, max {} ms (min {} ms)",
        waits.len(),
        windows.len(),
        at(0.5),
        at(0.99),
        waits[waits.len() - 1],
        waits[0]
    );
    println!(
        "inside the job, from the watermark passing a window's end to the candle's delivery report: {:.1} ms on average over {emitted} candles, p50 {}, p99 {} (the emit-latency histogram's bucket bounds)",
        emit_mean_us as f64 / 1000.0,
        bucket_bound(emit_p50),
        bucket_bound(emit_p99),
    );
    println!(
        "the job: {job_cpu:.1} CPU s over {job_wall:.0} s ({:.2} cores), peak RSS {:.0} MB",
        job_cpu / job_wall,
        usage.ru_maxrss as f64 / 1024.0
    );
    Ok(())
}

/// The live job's process: stopped cleanly by [`LiveChild::stop`], killed
/// if the bench fails before that (it would run on forever).
struct LiveChild {
    pid: libc::pid_t,
    reaped: bool,
}

impl LiveChild {
    /// SIGINT (a clean stop), then SIGKILL if it has not exited within a
    /// minute; its resource usage, or an error if it did not exit cleanly.
    fn stop(&mut self) -> Result<libc::rusage> {
        // SAFETY: `pid` is our unreaped child, so it cannot have been reused.
        unsafe { libc::kill(self.pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut status = 0;
        // SAFETY: `usage` is a valid rusage for wait4 to fill.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            let reaped = unsafe { libc::wait4(self.pid, &mut status, libc::WNOHANG, &mut usage) };
            if reaped == self.pid {
                break;
            }
            if reaped < 0 || Instant::now() > deadline {
                bail!("the job did not stop within a minute of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.reaped = true;
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            bail!("the job failed (status {status})");
        }
        Ok(usage)
    }
}

impl Drop for LiveChild {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: as in `stop`.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}
