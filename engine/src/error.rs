//! The engine's error type: configuration errors (the user's to fix) apart
//! from runtime errors (a service failed) and internal errors (a bug).

use engine_sql::SqlError;

/// An error of the engine library. The binary wraps it in `anyhow`.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The job file or an option is wrong; the message names file and line.
    #[error(transparent)]
    Config(#[from] SqlError),
    /// Kafka failed (topic, broker and operation are in the message).
    #[error("kafka: {0}")]
    Kafka(String),
    /// The object store failed (the path is in the message).
    #[error("object store: {0}")]
    Store(String),
    /// A lake table cannot be described for the catalog (the table is named).
    #[error("catalog: {0}")]
    Catalog(String),
    /// Query execution failed.
    #[error("execution: {0}")]
    Execution(String),
    /// A bug: an invariant did not hold.
    #[error("internal error (please report): {0}")]
    Internal(String),
}

impl From<datafusion::error::DataFusionError> for EngineError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        EngineError::Execution(e.strip_backtrace().to_string())
    }
}

impl From<arrow::error::ArrowError> for EngineError {
    fn from(e: arrow::error::ArrowError) -> Self {
        EngineError::Execution(e.to_string())
    }
}

impl From<parquet::errors::ParquetError> for EngineError {
    fn from(e: parquet::errors::ParquetError) -> Self {
        EngineError::Execution(format!("parquet: {e}"))
    }
}

/// Result type of the engine library.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
