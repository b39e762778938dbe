//! `engine ui --topic ohlc_1m`: the live candle page for a job that runs elsewhere.

use clap::builder::TypedValueParser as _;
use clap::Args;
use engine::web::ui::{self, UiOptions};

/// Arguments of `engine ui`.
#[derive(Debug, Args)]
pub struct UiArgs {
    /// The derived topic to draw.
    #[arg(long, default_value = "ohlc_1m")]
    pub topic: String,
    /// The cluster of the topic, and how to sign in to it.
    #[command(flatten)]
    pub kafka: super::kafka::KafkaArgs,
    /// Where the page is served.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    pub listen: String,
    /// Candles kept per symbol (and read back from each partition at start), at most 10,000.
    #[arg(long, default_value_t = ui::DEFAULT_HISTORY, value_parser = clap::value_parser!(u16).range(1..=10_000).map(usize::from))]
    pub history: usize,
}

impl UiArgs {
    /// Serves the page until Ctrl-C.
    pub async fn run(self) -> anyhow::Result<()> {
        let client = self.kafka.client()?;
        let stop = super::stop_on_ctrl_c();
        let options = UiOptions {
            client,
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
