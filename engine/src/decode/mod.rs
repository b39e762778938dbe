//! Turning Kafka record payloads into Arrow batches.
//!
//! - [`json`]: payloads -> one batch per poll, bad records isolated.
//! - [`rules`]: what a decoded row must satisfy (finite, in range, CHECKs).

pub(crate) mod json;
pub(crate) mod rules;

pub use json::{excerpt, BadRecord, JsonDecoder, RawRecord};
pub use rules::RowRules;
