//! Failpoints: named places in the commit phase where a test can make the
//! engine fail as if it had crashed there (or as if its store failed), so
//! crash-between-phases cases are deterministic instead of timed. Compiled
//! only with the `failpoints` feature, which test builds turn on; in a
//! normal build [`hit`] is a constant `None` and costs nothing.
//!
//! ```ignore
//! engine::failpoint::set("checkpoint::after_manifest", 1); // fail the next hit
//! ```
//!
//! The places: `checkpoint::write` (state dir writes, a store error: retried),
//! `checkpoint::after_manifest`, `checkpoint::after_commit` (after each
//! participant's commit), `lake::publish` (between a staged file's copy and
//! its delete).

/// Whether failpoint `name` fires now; `Some(name)` if it does (each
/// configured failure fires once).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) -> Option<&str> {
    None
}

#[cfg(feature = "failpoints")]
mod armed {
    use std::collections::BTreeMap;
    use std::sync::{LazyLock, Mutex};

    static ARMED: LazyLock<Mutex<BTreeMap<String, u32>>> = LazyLock::new(Default::default);

    /// Whether failpoint `name` fires now; `Some(name)` if it does.
    pub fn hit(name: &str) -> Option<&str> {
        let mut armed = ARMED.lock().expect("no panics while locked");
        let left = armed.get_mut(name)?;
        *left -= 1;
        if *left == 0 {
            armed.remove(name);
        }
        Some(name)
    }

    /// Makes failpoint `name` fire its next `times` hits.
    pub fn set(name: &str, times: u32) {
        let mut armed = ARMED.lock().expect("no panics while locked");
        match times {
            0 => armed.remove(name),
            n => armed.insert(name.to_string(), n),
        };
    }

    /// Clears every failpoint.
    pub fn clear() {
        ARMED.lock().expect("no panics while locked").clear();
    }
}

#[cfg(feature = "failpoints")]
pub use armed::{clear, hit, set};

/// The error a failpoint injects: a crash at that point, as far as the
/// state dir and the output can tell (the job stops without a final checkpoint).
pub fn crashed(name: &str) -> crate::EngineError {
    crate::EngineError::Internal(format!(
        "failpoint {name}: stopped as if the process had crashed here"
    ))
}
