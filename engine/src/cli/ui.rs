//! `engine ui --topic ohlc_1m`: the live candle page for a job that runs elsewhere.

use anyhow::Context;
use clap::Args;
use engine::web::ui::{self, UiOptions};

/// Arguments of `engine ui`.
#[derive(Debug, Args)]
pub struct UiArgs {
    /// The derived topic to draw (on $KAFKA_BROKERS).
    #[arg(long, default_value = "ohlc_1m")]
    pub topic: String,
    /// Where the page is served.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    pub listen: String,
    /// Candles kept per symbol (and read back from each partition at start).
    #[arg(long, default_value_t = ui::DEFAULT_HISTORY)]
    pub history: usize,
}

impl UiArgs {
    /// Serves the page until Ctrl-C.
    pub async fn run(self) -> anyhow::Result<()> {
        let brokers = std::env::var("KAFKA_BROKERS").context(
            "KAFKA_BROKERS is not set: the page reads the derived topic from that cluster",
        )?;
        let stop = super::stop_on_ctrl_c();
        let options = UiOptions {
            brokers,
            topic: self.topic.clone(),
            history: self.history,
        };
        let listener = engine::web::bind(&self.listen, "--listen").await?;
        let routes = ui::routes(options, None, stop.clone());
        let endpoint = engine::web::serve_on(listener, routes, "--listen", stop.clone())?;
        eprintln!(
            "live candles of `{}` on http://{}/",
            self.topic, endpoint.addr
        );
        stop.cancelled().await;
        Ok(())
    }
}
