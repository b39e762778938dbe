//! What flows between sources, operators and sinks: data batches and
//! in-band signals, in the spirit of Arroyo's `ArrowMessage`.

use std::time::Instant;

use arrow::record_batch::RecordBatch;

/// Milliseconds since the Unix epoch, UTC: the engine's event-time unit.
pub type EventTime = i64;

/// An item of a stream.
#[derive(Debug, Clone)]
pub enum Message {
    /// A batch of rows.
    Data(RecordBatch),
    /// A control signal, ordered with the data around it.
    Signal(Signal),
}

/// Control signals travel in the data channel so that every operator sees
/// them at the same point of the stream as the rows they describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// No later row will have an event time before this one; the source
    /// found so at the instant given (where emit latency starts).
    Watermark(EventTime, Instant),
    /// Snapshot point for a checkpoint (epoch number).
    Barrier(u64),
    /// The source is exhausted (bounded mode): flush everything.
    EndOfData,
}

/// The earliest event time the engine represents: 0001-01-01T00:00:00Z.
/// Times outside [`MIN_EVENT_TIME`, `MAX_EVENT_TIME`] have no RFC 3339 or
/// Athena form and would overflow window and partition arithmetic, so the
/// source turns them into bad records.
pub const MIN_EVENT_TIME: EventTime = -62_135_596_800_000;

/// The latest event time the engine represents: 9999-12-31T23:59:59.999Z.
pub const MAX_EVENT_TIME: EventTime = 253_402_300_799_999;
