//! Emit latency: rows emitted when the watermark passed their windows' ends
//! carry that moment to their sink, which holds it until it acknowledges
//! them: a topic's delivery report, a lake file's upload, or the checkpoint
//! commit that publishes staged output.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus::Histogram;

/// When rows became due: the moment the source's watermark passed the end
/// of their windows (rows of no window, early rows and the rest of a
/// bounded input carry none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due(pub Instant);

/// Rows written and not yet acknowledged, with when they became due.
#[derive(Debug, Default)]
pub struct EmitLatency {
    held: Vec<(Instant, u64)>,
}

impl EmitLatency {
    /// Holds `rows` due at `due` (nothing without a due time).
    pub fn hold(&mut self, due: Option<Due>, rows: u64) {
        let Some(Due(at)) = due else { return };
        match self.held.last_mut() {
            Some((last, n)) if *last == at => *n += rows,
            _ => self.held.push((at, rows)),
        }
    }

    /// Moves everything `other` holds here.
    pub fn absorb(&mut self, other: EmitLatency) {
        for (at, rows) in other.held {
            self.hold(Some(Due(at)), rows);
        }
    }

    /// The rows are acknowledged now: one observation each in `histogram`.
    pub fn acknowledge(&mut self, histogram: &Histogram) {
        for (at, rows) in self.held.drain(..) {
            let seconds = at.elapsed().as_secs_f64();
            for _ in 0..rows {
                histogram.observe(seconds);
            }
        }
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

/// What a sink staged at each barrier, shared with its committer, which
/// acknowledges it once the checkpoint publishing it commits.
#[derive(Debug, Clone, Default)]
pub struct StagedLatency(Arc<Mutex<Vec<(u64, EmitLatency)>>>);

impl StagedLatency {
    /// `held` was staged at barrier `epoch`.
    pub fn stage(&self, epoch: u64, held: EmitLatency) {
        if held.is_empty() {
            return;
        }
        let mut staged = self.0.lock().expect("no panics while locked");
        staged.push((epoch, held));
    }

    /// Checkpoint `epoch` committed: what was staged at it or before (and
    /// in a stopping job's final snapshot) is visible now.
    pub fn committed(&self, epoch: u64, histogram: &Histogram) {
        let mut staged = self.0.lock().expect("no panics while locked");
        for (at, held) in staged.iter_mut() {
            if *at <= epoch || *at == crate::sink::FINAL_BARRIER {
                held.acknowledge(histogram);
            }
        }
        staged.retain(|(_, held)| !held.is_empty());
    }
}
