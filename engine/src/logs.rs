//! How the engine's processes log: tracing lines on stderr (text or JSON),
//! `RUST_LOG` levels (default `info`), the secrets some dependencies log
//! never shown, and the `log` crate bridged at the enabled level only.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Installs the process's logger: one line per event on stderr, as JSON
/// objects (one per line, for log shippers) if `json`. Call once, first.
pub fn init(json: bool) {
    let levels = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The levels' own most verbose one (the secrets filter gives no hint,
    // so the subscriber as a whole reports every level as enabled).
    let most_verbose = levels.max_level_hint().unwrap_or(LevelFilter::TRACE);
    // sqlparser logs the statements it parses at debug level: a job file's
    // text after `${VAR}` substitution, passwords included; tungstenite logs
    // the URL it connects to and every frame it sends at debug and trace
    // level, a provider's token and keys included. Never shown, at any RUST_LOG.
    let no_secrets = tracing_subscriber::filter::filter_fn(|meta| {
        let target = meta.target();
        !(target.starts_with("sqlparser")
            || ((target.starts_with("tungstenite") || target.starts_with("tokio_tungstenite"))
                && *meta.level() > tracing::Level::INFO))
    });
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match json {
        false => lines.boxed(),
        true => lines.json().flatten_event(true).boxed(),
    };
    tracing_subscriber::registry()
        .with(lines.with_filter(levels).with_filter(no_secrets))
        .init();
    // `init` bridges the `log` crate at every level, so each `log::trace!`
    // of a dependency is built and offered to the filter only to be
    // dropped: rdkafka logs two per message it frees, a fifth of a Kafka
    // source's time (perf). The `log` crate stops them at the call site.
    log::set_max_level(log_level(most_verbose));
}

/// The `log` crate's level for tracing's most verbose enabled one.
fn log_level(level: LevelFilter) -> log::LevelFilter {
    use tracing::Level;
    match level.into_level() {
        None => log::LevelFilter::Off,
        Some(Level::ERROR) => log::LevelFilter::Error,
        Some(Level::WARN) => log::LevelFilter::Warn,
        Some(Level::INFO) => log::LevelFilter::Info,
        Some(Level::DEBUG) => log::LevelFilter::Debug,
        Some(Level::TRACE) => log::LevelFilter::Trace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tracing_level_maps_to_the_same_log_level() {
        let pairs = [
            (LevelFilter::OFF, log::LevelFilter::Off),
            (LevelFilter::ERROR, log::LevelFilter::Error),
            (LevelFilter::WARN, log::LevelFilter::Warn),
            (LevelFilter::INFO, log::LevelFilter::Info),
            (LevelFilter::DEBUG, log::LevelFilter::Debug),
            (LevelFilter::TRACE, log::LevelFilter::Trace),
        ];
        for (tracing, log) in pairs {
            assert_eq!(log_level(tracing), log, "{tracing}");
        }
    }
}
