//! What flows between sources, operators and sinks: data batches and
//! in-band signals, in the spirit of Arroyo's `ArrowMessage`.

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
    /// No later row will have an event time before this one.
    Watermark(EventTime),
    /// Snapshot point for a checkpoint (epoch number).
    Barrier(u64),
    /// The source is exhausted (bounded mode): flush everything.
    EndOfData,
}
