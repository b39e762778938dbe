//! What the Kafka source and sink share: client settings (with their
//! security), client contexts, metadata look-ups, and the transaction of
//! `exactly_once` output.

pub mod context;
pub mod msk_iam;
pub mod security;
pub mod transaction;

pub use context::{ClientHooks, ConsumerLogs, DeliveryCounter, ProducerLogs};
pub use security::KafkaSecurity;

use std::collections::BTreeMap;
use std::time::Duration;

use engine_sql::{LineError, Options};
use rdkafka::client::Client;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer as _;
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

/// Broker address, security and pass-through librdkafka settings of one
/// Kafka table. Its `Debug` shows property names only: values can be passwords.
#[derive(Clone, PartialEq, Default)]
pub struct KafkaClientOptions {
    /// `bootstrap_servers`: comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// `security.protocol`, `sasl.*`, `ssl.*`, `auth`: how the clients sign in.
    pub security: KafkaSecurity,
    /// `properties.*`: handed to librdkafka as they are (e.g. `properties.client.id`).
    pub properties: BTreeMap<String, String>,
}

impl KafkaClientOptions {
    /// Plain-text clients of `bootstrap_servers` (the command-line tools').
    pub fn plaintext(bootstrap_servers: &str) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.to_string(),
            ..Self::default()
        }
    }

    /// Reads `bootstrap_servers`, the security options and `properties.*` from `options`.
    pub fn from_options(options: &mut Options, table_line: usize) -> Result<Self, LineError> {
        let bootstrap_servers = options.required("bootstrap_servers", table_line)?;
        let properties = options.with_prefix("properties.");
        let security = KafkaSecurity::from_options(options, &properties, table_line)?;
        Ok(Self {
            bootstrap_servers,
            security,
            properties,
        })
    }

    /// Clients of `bootstrap_servers` set up by librdkafka-style settings
    /// (the command-line tools' `-X KEY=VALUE` and `--kafka-config` file):
    /// `(key, value, line)` each, `line` being its line in a settings file
    /// (0 for the command line). The security settings (`security.protocol`,
    /// `sasl.*`, `ssl.*`, `auth`, `aws.region`) are read and checked as a
    /// table's typed options are; every other setting passes through as a
    /// `properties.*` would. librdkafka's alias `sasl.mechanisms` is read as
    /// `sasl.mechanism`.
    pub fn from_settings(
        bootstrap_servers: &str,
        settings: impl IntoIterator<Item = (String, String, usize)>,
    ) -> Result<Self, LineError> {
        let mut entries = vec![(
            "bootstrap_servers".to_string(),
            bootstrap_servers.to_string(),
            0,
        )];
        for (key, value, line) in settings {
            if key == "bootstrap.servers" || key == "metadata.broker.list" {
                return Err((
                    line,
                    format!("setting `{key}`: give the brokers with --brokers (or KAFKA_BROKERS)"),
                ));
            }
            let key = if key == "sasl.mechanisms" {
                "sasl.mechanism".to_string()
            } else if security::is_typed_option(&key) {
                key
            } else {
                format!("properties.{key}")
            };
            entries.push((key, value, line));
        }
        let mut options = Options::from_entries(entries)?;
        Self::from_options(&mut options, 0)
    }

    /// The hooks of a new client of this table; with `auth =
    /// 'aws_msk_iam'`, with its region's token source (which fails without
    /// a region).
    pub fn hooks(&self) -> Result<ClientHooks> {
        let Some(iam) = &self.security.msk_iam else {
            return Ok(ClientHooks::default());
        };
        let tokens =
            msk_iam::MskIamTokens::for_cluster(iam.region.as_deref(), &self.bootstrap_servers)
                .map_err(|e| {
                    EngineError::kafka_msg(format!(
                        "signing in to {}: {}",
                        self.bootstrap_servers,
                        crate::error::Chain(&e)
                    ))
                })?;
        Ok(ClientHooks::signing_with(tokens))
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

    /// A consumer made from `config` (one of [`Self::client_config`]'s),
    /// its context made by `context` over this table's hooks, and signed in
    /// (MSK IAM). Errors name what was being `doing`.
    pub fn consumer<C: rdkafka::consumer::ConsumerContext>(
        &self,
        config: &ClientConfig,
        context: impl FnOnce(ClientHooks) -> C,
        doing: impl Fn() -> String,
    ) -> Result<rdkafka::consumer::BaseConsumer<C>> {
        let hooks = self.hooks()?;
        let consumer: rdkafka::consumer::BaseConsumer<C> = config
            .create_with_context(context(hooks.clone()))
            .map_err(|e| EngineError::kafka(doing(), e))?;
        hooks.sign_in(consumer.client())?;
        Ok(consumer)
    }

    /// A producer polled on its own thread, made from `config` (one of
    /// [`Self::client_config`]'s), its context made by `context` over this
    /// table's hooks, and signed in (MSK IAM). Errors name what was being `doing`.
    pub fn threaded_producer<C: rdkafka::producer::ProducerContext + 'static>(
        &self,
        config: &ClientConfig,
        context: impl FnOnce(ClientHooks) -> C,
        doing: impl Fn() -> String,
    ) -> Result<rdkafka::producer::ThreadedProducer<C>> {
        let hooks = self.hooks()?;
        let producer: rdkafka::producer::ThreadedProducer<C> = config
            .create_with_context(context(hooks.clone()))
            .map_err(|e| EngineError::kafka(doing(), e))?;
        hooks.sign_in(producer.client())?;
        Ok(producer)
    }

    /// An admin client (topic creation), signed in (MSK IAM), with its hooks.
    pub fn admin(&self) -> Result<(rdkafka::admin::AdminClient<ProducerLogs>, ClientHooks)> {
        let hooks = self.hooks()?;
        let admin: rdkafka::admin::AdminClient<ProducerLogs> = self
            .client_config()
            .create_with_context(ProducerLogs::new(hooks.clone()))
            .map_err(|e| {
                let doing = format!("creating an admin client for {}", self.bootstrap_servers);
                EngineError::kafka(doing, e)
            })?;
        hooks.sign_in(admin.inner())?;
        Ok((admin, hooks))
    }

    /// A librdkafka configuration with the broker address, the security and the pass-through settings.
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
        // No `properties.*` names these (that is an error when the job is read).
        for (k, v) in self.security.settings() {
            config.set(k, v);
        }
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
            .field("security", &self.security)
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

/// Fails unless `topic` exists, so a missing output topic stops the job at
/// start rather than at its first record hours later. `role` says what the
/// topic is for (e.g. "dead-letter topic"); `hooks` are the client's.
pub fn ensure_topic<C: ClientContext>(
    client: &Client<C>,
    hooks: &ClientHooks,
    topic: &str,
    bootstrap_servers: &str,
    role: &str,
) -> Result<()> {
    partitions_of(client, hooks, topic, bootstrap_servers, role).map(|_| ())
}

/// How long one metadata request may wait before the client's hooks are
/// asked whether the brokers refused it (a wrong password is final; waiting
/// the whole [`METADATA_TIMEOUT`] for it helps nobody).
const METADATA_ATTEMPT: std::time::Duration = std::time::Duration::from_secs(1);

/// The pause between two metadata requests.
const METADATA_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// The partition ids of `topic`; an error naming the topic, what it is for
/// (`role`, e.g. "topic" or "output topic") and the broker if it does not
/// exist, or why the brokers did not answer (from the client's `hooks`).
pub fn partitions_of<C: ClientContext>(
    client: &Client<C>,
    hooks: &ClientHooks,
    topic: &str,
    bootstrap_servers: &str,
    role: &str,
) -> Result<Vec<i32>> {
    partitions_pumping(client, hooks, topic, bootstrap_servers, role, &|| {})
}

/// [`partitions_of`] for a consumer not yet assigned anything (nothing it
/// polls can be a record): a consumer hears of librdkafka's errors, a
/// refusal among them, only when it is polled, which this does between
/// look-ups. Without that, a refused consumer waits out the whole timeout.
pub fn unassigned_consumer_partitions_of<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    hooks: &ClientHooks,
    topic: &str,
    bootstrap_servers: &str,
    role: &str,
) -> Result<Vec<i32>> {
    let pump = || {
        // One event a poll, log lines among them, and an empty queue looks
        // like a consumed event: poll a fixed number of times (each costs a
        // queue pop). An error event comes back here too; the context has
        // logged and remembered it.
        for _ in 0..1_000 {
            let _ = consumer.poll(Duration::ZERO);
        }
    };
    partitions_pumping(
        consumer.client(),
        hooks,
        topic,
        bootstrap_servers,
        role,
        &pump,
    )
}

/// [`partitions_of`], calling `pump` between look-ups.
fn partitions_pumping<C: ClientContext>(
    client: &Client<C>,
    hooks: &ClientHooks,
    topic: &str,
    bootstrap_servers: &str,
    role: &str,
    pump: &dyn Fn(),
) -> Result<Vec<i32>> {
    let doing = || format!("reading metadata of {role} `{topic}` on {bootstrap_servers}");
    let deadline = std::time::Instant::now() + METADATA_TIMEOUT;
    let metadata = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match client.fetch_metadata(Some(topic), left.min(METADATA_ATTEMPT)) {
            Ok(metadata) => break metadata,
            Err(e) => {
                pump();
                if let Some(refusal) = hooks.refusal() {
                    return Err(EngineError::kafka_msg(format!(
                        "{}: the brokers refused this client: {refusal}",
                        doing()
                    )));
                }
                if std::time::Instant::now() >= deadline {
                    let context = match hooks.last_error() {
                        Some(last) => format!("{} (last broker error: {last})", doing()),
                        None => doing(),
                    };
                    return Err(EngineError::kafka(context, e));
                }
                // An error that came back at once is not asked again at once.
                std::thread::sleep(METADATA_RETRY_PAUSE);
            }
        }
    };
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
