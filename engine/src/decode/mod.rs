//! Turning Kafka record payloads into Arrow batches.
//!
//! - [`json`]: payloads -> one batch per poll, bad records isolated.
//! - `flat`: the decoder specialised to a table's flat objects, which
//!   `json` tries first.
//! - [`rules`]: what a decoded row must satisfy (finite, in range, CHECKs).

pub(crate) mod flat;
pub(crate) mod json;
pub(crate) mod rules;

pub use json::{excerpt, BadRecord, JsonDecoder, RawRecord};
pub use rules::RowRules;

/// Why a record or row went to the dead letters: the `reason` label of
/// `engine_bad_records_total` (the dead letter itself carries the full message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BadKind {
    /// No payload.
    Empty,
    /// Larger than `max_message_bytes`.
    TooLarge,
    /// JSON nested past the decoder's limit.
    TooDeep,
    /// Not one JSON object of the table's fields (syntax, types, numbers that overflow).
    Malformed,
    /// A required (`NOT NULL`) field missing or null.
    MissingField,
    /// A floating-point value that is not finite.
    NotFinite,
    /// A time outside 0001-01-01 .. 9999-12-31.
    TimeOutOfRange,
    /// An event time further ahead of the wall clock than `event_time.max_ahead`.
    TooFarAhead,
    /// A `CHECK` false or not evaluable.
    CheckFailed,
    /// The record key is not the row's `key_field`.
    WrongKey,
    /// A statement could not compute the row.
    RejectedByStatement,
    /// A sink could not write the row (a cast, a NOT NULL column).
    RejectedBySink,
    /// A provider message the websocket source could not read as trades.
    Unreadable,
}

impl BadKind {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLarge => "too_large",
            Self::TooDeep => "too_deep",
            Self::Malformed => "malformed",
            Self::MissingField => "missing_field",
            Self::NotFinite => "not_finite",
            Self::TimeOutOfRange => "time_out_of_range",
            Self::TooFarAhead => "too_far_ahead",
            Self::CheckFailed => "check_failed",
            Self::WrongKey => "wrong_key",
            Self::RejectedByStatement => "rejected_by_statement",
            Self::RejectedBySink => "rejected_by_sink",
            Self::Unreadable => "unreadable",
        }
    }
}
