//! Provider-feed throughput: a local websocket server sends trades in one
//! provider's frames as fast as the socket takes them; the engine's feed
//! client (the same one `engine ingest` runs) parses, normalizes, checks
//! for duplicates and gaps and serializes each trade to the JSON record
//! Kafka would get (but does not send it).
//!
//! ```text
//! cargo run -p engine-benches --bin ingest -- [TRADES]
//! ```
//! Prints, per provider protocol, trades/s of wall time and per CPU-second
//! of the client's thread (the server runs on a thread of its own).

use std::time::{Duration, Instant};

use anyhow::Result;
use engine::ingest::{IngestConfig, IngestStats, LiveFeed, Provider, Trade, TradeOutput};
use futures::SinkExt;
use tokio_tungstenite::tungstenite::Message;

/// Counts trades and the bytes of their records.
#[derive(Default)]
struct Counting {
    bytes: usize,
}

#[async_trait::async_trait]
impl TradeOutput for Counting {
    async fn trade(&mut self, trade: &Trade) -> engine::Result<()> {
        self.bytes += trade.to_json().len();
        Ok(())
    }
    async fn dead_letter(&mut self, _: &[u8], reason: &str) -> engine::Result<()> {
        panic!("a benchmark frame was dead-lettered: {reason}")
    }
    async fn finish(&mut self) -> engine::Result<()> {
        Ok(())
    }
}

/// The frames of `n` trades over 20 symbols in `provider`'s protocol.
fn frames(provider: Provider, n: usize) -> Vec<String> {
    let symbol = |i: usize| format!("SYM{:02}", i % 20);
    let price = |i: usize| format!("{}.{:02}", 100 + i % 50, i % 100);
    let ms = |i: usize| 1_763_649_000_000 + i as i64;
    match provider {
        // One trade a frame, ids growing by one per symbol, as Binance sends them.
        Provider::Binance => (0..n)
            .map(|i| format!(r#"{{"e":"trade","E":{},"s":"{}","t":{},"p":"{}","q":"0.50000000","T":{},"m":true}}"#, ms(i), symbol(i), i / 20, price(i), ms(i)))
            .collect(),
        // Arrays of up to 10 trades, RFC 3339 times with ns, as Alpaca sends them.
        _ => (0..n)
            .collect::<Vec<_>>()
            .chunks(10)
            .map(|chunk| {
                let items: Vec<String> = chunk
                    .iter()
                    .map(|&i| {
                        let t = chrono::DateTime::from_timestamp_millis(ms(i)).unwrap();
                        format!(r#"{{"T":"t","S":"{}","i":{i},"x":"V","p":{},"s":100,"t":"{}123456Z","c":["@"],"z":"C"}}"#, symbol(i), price(i), t.format("%Y-%m-%dT%H:%M:%S%.3f"))
                    })
                    .collect();
                format!("[{}]", items.join(","))
            })
            .collect(),
    }
}

/// Serves `frames` (after the protocol's greeting) to one connection.
fn serve(provider: Provider, frames: Vec<String>) -> Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("ws://{}", listener.local_addr()?);
    listener.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
            if provider == Provider::Alpaca {
                for greeting in [
                    r#"[{"T":"success","msg":"connected"}]"#,
                    r#"[{"T":"success","msg":"authenticated"}]"#,
                ] {
                    ws.send(Message::text(greeting)).await.unwrap();
                }
            }
            for frame in frames {
                ws.feed(Message::text(frame)).await.unwrap();
            }
            ws.flush().await.unwrap();
            // Until the client has read all and goes.
            use futures::StreamExt;
            while let Some(Ok(_)) = ws.next().await {}
        });
    });
    Ok(url)
}

fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn max_rss_mb() -> f64 {
    // SAFETY: `usage` is a valid rusage for the call to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

fn main() -> Result<()> {
    let trades: usize = std::env::args().nth(1).map_or(Ok(500_000), |a| a.parse())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!("trades={trades} symbols=20 (client: one thread; server: another)");
    for provider in [Provider::Binance, Provider::Alpaca] {
        let url = serve(provider, frames(provider, trades))?;
        let mut config =
            IngestConfig::new(provider, (0..20).map(|i| format!("SYM{i:02}")).collect());
        config.url = Some(url);
        let keys = |var: &str| var.starts_with("APCA").then(|| "bench".to_string());
        let mut feed = LiveFeed::new(config, &keys)?;
        let stats = IngestStats::default();
        let mut out = Counting::default();
        let stop = engine::CancellationToken::new();
        let (wall, cpu) = (Instant::now(), thread_cpu());
        runtime.block_on(feed.run(&mut out, &stats, &stop, Some(trades as u64)))?;
        let (wall, cpu) = (wall.elapsed(), thread_cpu() - cpu);
        assert_eq!(
            IngestStats::get(&stats.trades),
            trades as u64,
            "{}",
            stats.summary()
        );
        println!(
            "{:<8} {:>10.0} trades/s wall, {:>10.0} per CPU-second of the client ({:.2} s, {:.2} CPU-s, {:.0} MB records), peak RSS {:.0} MB (with the server's frames)",
            provider.name(),
            trades as f64 / wall.as_secs_f64(),
            trades as f64 / cpu.as_secs_f64(),
            wall.as_secs_f64(),
            cpu.as_secs_f64(),
            out.bytes as f64 / 1e6,
            max_rss_mb()
        );
    }
    Ok(())
}
