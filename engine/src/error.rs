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
    /// Kafka failed (topic, broker and operation are in the message).
    #[error("kafka: {0}")]
    Kafka(String),
    /// The object store failed (the path is in the message): retried where
    /// the operation may be (a checkpoint), else returned.
    #[error("object store: {0}")]
    Store(String),
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
    /// A bug: an invariant did not hold.
    #[error("internal error (please report): {0}")]
    Internal(String),
}

impl From<datafusion::error::DataFusionError> for EngineError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        EngineError::DataFusion(Box::new(e))
    }
}

impl EngineError {
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

/// Result type of the engine library.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
