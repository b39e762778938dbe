//! Hot-path throughput: JSON decode + 1-minute OHLC/VWAP window aggregation,
//! the work `jobs/ohlc_1m.sql` does per trade, without the broker.
//!
//! ```text
//! cargo run -p engine-benches -- [TRADES] [SYMBOLS] [BATCH] [ROUNDS]
//! ```
//! Prints events/s for decode alone (without and with the job's row rules),
//! aggregation alone, and both, each the best of ROUNDS (default 5) rounds. `--bin e2e` measures the path through the broker.

use anyhow::Result;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let trades = *args.first().unwrap_or(&2_000_000);
    let symbols = *args.get(1).unwrap_or(&100);
    let batch = *args.get(2).unwrap_or(&8192);
    let rounds = *args.get(3).unwrap_or(&5);
    engine_benches::hot_path(trades, symbols, batch, rounds)
        .await?
        .print();
    Ok(())
}
