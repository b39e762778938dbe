//! The engine's error type, in the manner of DataFusion's: what is the
//! user's to fix (a job file, an option) apart from what the environment did
//! (a broker or store that failed) and from a bug ([`EngineError::Internal`]).
//! Errors of the libraries below keep their source (`#[source]`), so the
//! whole chain reaches the log and `anyhow` at the binary's edge.

use engine_sql::SqlError;

/// An error of the engine library. The binary wraps it in `anyhow`.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The job file or an option is wrong; the message names file and line.
    #[error(transparent)]
    Config(#[from] SqlError),
    /// Kafka failed: `context` says what was being done (topic, broker,
    /// group), `source` is librdkafka's error, if it gave one.
    #[error("kafka: {context}")]
    Kafka {
        /// What was being done, on which topic, broker or group.
        context: String,
        /// librdkafka's error (a configuration error with its value masked).
        #[source]
        source: Option<Cause>,
    },
    /// The object store failed: retried where the operation may be (a
    /// checkpoint), else returned.
    #[error("object store: {context}")]
    Store {
        /// What was being done, on which path.
        context: String,
        /// The store's (or file system's) error, if it gave one.
        #[source]
        source: Option<Cause>,
    },
    /// A lake table cannot be described for the catalog (the table is named).
    #[error("catalog: {0}")]
    Catalog(String),
    /// The job cannot run as asked, or its data cannot be processed (the
    /// message says what and where).
    #[error("execution: {0}")]
    Execution(String),
    /// A query failed in DataFusion.
    #[error("execution: {}", .0.strip_backtrace())]
    DataFusion(#[source] Box<datafusion::error::DataFusionError>),
    /// Arrow failed on a batch (a cast, a schema that does not fit).
    #[error("execution: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Parquet encoding or decoding failed.
    #[error("execution: parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A market-data provider's feed cannot be read as configured (a key
    /// not set, a refused key or subscription); never holds a key.
    #[error("provider: {0}")]
    Provider(String),
    /// A bug: an invariant did not hold.
    #[error("internal error (please report): {0}")]
    Internal(String),
}

impl From<datafusion::error::DataFusionError> for EngineError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        EngineError::DataFusion(Box::new(e))
    }
}

/// The error beneath an [`EngineError`]: a library's own error, kept for its chain.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

impl EngineError {
    /// Kafka failed while doing `context`. A configuration error's value (a
    /// password, say) is masked before it is kept.
    pub(crate) fn kafka(context: impl Into<String>, e: rdkafka::error::KafkaError) -> Self {
        let source: Cause = match e {
            rdkafka::error::KafkaError::ClientConfig(..) => crate::kafka::redacted(&e).into(),
            e => Box::new(e),
        };
        EngineError::Kafka {
            context: context.into(),
            source: Some(source),
        }
    }

    /// Something about Kafka is not as it must be, without a library error beneath.
    pub(crate) fn kafka_msg(context: impl Into<String>) -> Self {
        EngineError::Kafka {
            context: context.into(),
            source: None,
        }
    }

    /// The object store failed while doing `context`.
    pub(crate) fn store(context: impl Into<String>, e: impl Into<Cause>) -> Self {
        EngineError::Store {
            context: context.into(),
            source: Some(e.into()),
        }
    }

    /// A store location is not usable, without a library error beneath.
    pub(crate) fn store_msg(context: impl Into<String>) -> Self {
        EngineError::Store {
            context: context.into(),
            source: None,
        }
    }

    /// Whether the error is a bug rather than the user's or the environment's.
    pub fn is_internal(&self) -> bool {
        match self {
            EngineError::Internal(_) => true,
            EngineError::DataFusion(e) => {
                matches!(
                    e.find_root(),
                    datafusion::error::DataFusionError::Internal(_)
                )
            }
            _ => false,
        }
    }
}

/// An error and every error beneath it on one line, `a: b: c`: how the
/// binary prints errors, and how the library logs them. A cause whose text
/// the error above it already shows is not repeated (librdkafka's errors
/// print their code, then give it again as their source).
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            let text = e.to_string();
            if !shown.contains(&text) {
                write!(f, ": {text}")?;
            }
            shown = text;
            next = e.source();
        }
        Ok(())
    }
}

/// Result type of the engine library.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::types::RDKafkaConfRes;

    use super::*;

    #[test]
    fn a_kafka_error_keeps_librdkafka_s_error_as_its_source() {
        let cause = KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull);
        let e = EngineError::kafka("sending to topic `t`", cause);
        assert_eq!(e.to_string(), "kafka: sending to topic `t`");
        let source = std::error::Error::source(&e).expect("kept");
        assert!(source.to_string().contains("Queue full"), "{source}");
        assert_eq!(
            Chain(&e).to_string(),
            format!("kafka: sending to topic `t`: {source}")
        );
    }

    #[test]
    fn a_configuration_error_s_value_never_reaches_the_chain() {
        let refused = KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value \"hunter2\" for configuration property \"sasl.mechanism\"".into(),
            "sasl.mechanism".into(),
            "hunter2".into(),
        );
        let e = EngineError::kafka("creating consumer for topic `t`", refused);
        let shown = Chain(&e).to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("sasl.mechanism"), "{shown}");
        assert!(format!("{e:?}").find("hunter2").is_none(), "{e:?}");
    }

    #[test]
    fn a_store_error_keeps_its_source() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = EngineError::store("creating directory `d`", io);
        assert!(matches!(e, EngineError::Store { .. }));
        assert_eq!(
            Chain(&e).to_string(),
            "object store: creating directory `d`: denied"
        );
    }
}
