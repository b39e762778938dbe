//! Settings shared by the Kafka source and sink.

use std::collections::BTreeMap;

use engine_sql::{LineError, Options};
use rdkafka::ClientConfig;

/// Broker address and pass-through librdkafka settings of one Kafka table.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaClientOptions {
    /// `bootstrap_servers`: comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// `properties.*`: handed to librdkafka as they are (e.g. `properties.security.protocol`).
    pub properties: BTreeMap<String, String>,
}

impl KafkaClientOptions {
    /// Reads `bootstrap_servers` and `properties.*` from `options`.
    pub fn from_options(options: &mut Options, table_line: usize) -> Result<Self, LineError> {
        Ok(Self {
            bootstrap_servers: options.required("bootstrap_servers", table_line)?,
            properties: options.with_prefix("properties."),
        })
    }

    /// A librdkafka configuration with the broker address and the pass-through settings.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }
}
