//! Turning Kafka record payloads into Arrow batches.

pub mod json;

pub use json::{BadRecord, JsonDecoder, RawRecord};
