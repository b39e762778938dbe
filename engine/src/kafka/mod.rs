//! What the Kafka source and sink share: client settings, logs, metadata
//! look-ups, and the transaction of `exactly_once` output.

pub mod transaction;

use std::collections::BTreeMap;
use std::time::Duration;

use engine_sql::{LineError, Options};
use rdkafka::client::Client;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, ClientContext};

use crate::error::{EngineError, Result};

/// librdkafka's verdict on table `table`'s `properties.*` (in job file
/// `file`): an error at the line of the property at fault, without its value.
pub fn check_properties(
    file: &str,
    table: &engine_sql::TableDef,
    client: &KafkaClientOptions,
) -> Result<()> {
    client.validate().map_err(|(key, message)| {
        let line = table
            .options
            .line_of(&format!("properties.{key}"), table.line);
        crate::connector::option_error(file, table, (line, message))
    })
}

/// How long a metadata look-up may take before the engine gives up.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(30);

/// Broker address and pass-through librdkafka settings of one Kafka table.
/// Its `Debug` shows property names only: values can be passwords.
#[derive(Clone, PartialEq)]
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

    /// Checks every `properties.*` name and value with librdkafka, connecting
    /// to nothing. The error names the property (without `properties.`) and
    /// never its value: a mistyped `sasl.pasword` holds a password too.
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        match self.client_config().create_native_config() {
            Ok(_) => Ok(()),
            Err(e) => {
                let key = match &e {
                    KafkaError::ClientConfig(_, _, key, _) => key.clone(),
                    _ => String::new(),
                };
                Err((key, redacted(&e)))
            }
        }
    }

    /// A librdkafka configuration with the broker address and the pass-through settings.
    pub fn client_config(&self) -> ClientConfig {
        self.client_config_with(&[])
    }

    /// [`Self::client_config`] over `defaults`, which `properties.*` can override.
    pub fn client_config_with(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (k, v) in defaults {
            config.set(*k, *v);
        }
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }
}

impl std::fmt::Debug for KafkaClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaClientOptions")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("properties", &self.properties.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A Kafka error as text that never holds a configuration value: rdkafka's
/// own `Display` of a configuration error repeats the value it refused.
pub fn redacted(e: &KafkaError) -> String {
    match e {
        KafkaError::ClientConfig(_, description, key, value) => {
            let description = if value.is_empty() {
                description.clone()
            } else {
                description.replace(value.as_str(), "***")
            };
            format!("invalid Kafka property `{key}`: {description}")
        }
        other => other.to_string(),
    }
}

/// The context of our consumers: librdkafka's errors go to the log as usual,
/// except end-of-partition events. Consumers that ask for them
/// (`enable.partition.eof`) read them from the message stream; once a
/// partition is paused at its end they also arrive as "global errors", which
/// are expected, not failures.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConsumerLogs;

impl ClientContext for ConsumerLogs {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF) {
            tracing::trace!(%reason, "end of partition");
        } else {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for ConsumerLogs {}

/// Fails unless `topic` exists, so a missing output topic stops the job at
/// start rather than at its first record hours later. `role` says what the
/// topic is for (e.g. "dead-letter topic").
pub fn ensure_topic<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    bootstrap_servers: &str,
    role: &str,
) -> Result<()> {
    partitions_of(client, topic, bootstrap_servers, role).map(|_| ())
}

/// The partition ids of `topic`; an error naming the topic, what it is for
/// (`role`, e.g. "topic" or "output topic") and the broker if it does not exist.
pub fn partitions_of<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    bootstrap_servers: &str,
    role: &str,
) -> Result<Vec<i32>> {
    let metadata = client
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|e| {
            EngineError::kafka(
                format!("reading metadata of {role} `{topic}` on {bootstrap_servers}"),
                e,
            )
        })?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(EngineError::kafka_msg(format!("{role} `{topic}` does not exist on {bootstrap_servers}: create it first (or check `topic` and `bootstrap_servers`)")));
    }
    Ok(partitions)
}

/// A producer context that counts (and logs) failed deliveries, so that a
/// caller never reports records as written, or commits past them, when
/// their copy was lost.
pub struct DeliveryCounter {
    failed: std::sync::atomic::AtomicU64,
    /// What the records are, for the log ("dead-letter", "trade").
    what: &'static str,
}

impl DeliveryCounter {
    /// Counts the failed deliveries of `what` records.
    pub fn new(what: &'static str) -> Self {
        Self {
            failed: Default::default(),
            what,
        }
    }

    /// Fails if any record to `topic` was not delivered (the log says why).
    pub fn check(&self, topic: &str) -> Result<()> {
        match self.failed.load(std::sync::atomic::Ordering::Relaxed) {
            0 => Ok(()),
            n => Err(EngineError::kafka_msg(format!(
                "{n} {} records could not be written to topic `{topic}` (the log says why)",
                self.what
            ))),
        }
    }
}

impl ClientContext for DeliveryCounter {}

impl rdkafka::producer::ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = result {
            use rdkafka::Message;
            tracing::error!(topic = m.topic(), error = %e, "{} record not delivered", self.what);
            self.failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}
