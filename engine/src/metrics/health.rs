//! What `/readyz` checks: every source has partitions assigned, every
//! checkpoint coordinator completed one within a few intervals, and no
//! sink has been stuck in one write or commit past the stall limit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use prometheus::{IntGauge, IntGaugeVec};

/// A job is unready once its newest checkpoint is this many intervals old
/// (and at least [`CHECKPOINT_SLACK`] older than one interval).
pub const CHECKPOINT_INTERVALS: u32 = 3;

/// With short intervals, one slow write of the state dir is no reason to
/// be unready: a checkpoint may take this long beyond its interval.
pub const CHECKPOINT_SLACK: Duration = Duration::from_secs(30);

/// A sink's write or commit running longer than this has stalled (a store
/// or broker that does not answer; the sink keeps retrying meanwhile).
pub const STALL_LIMIT: Duration = Duration::from_secs(30);

/// Whether the job is ready, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Sources assigned, checkpoints recent, no sink stalled.
    pub ready: bool,
    /// One line per failed check.
    pub reasons: Vec<String>,
}

/// What the checks look at. Sinks and coordinators are held weakly: one
/// that ended (a lane that stopped) drops out.
#[derive(Default)]
pub(super) struct Health {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sources: BTreeMap<String, IntGauge>,
    sinks: Vec<(String, Weak<Busy>)>,
    checkpoints: Vec<Weak<CheckpointClock>>,
}

/// When a sink's current write or commit started (ms after its clock's
/// origin, +1; 0: none running). One per sink instance, so lanes do not clear each other's.
#[derive(Debug, Default)]
pub struct Busy {
    since: AtomicU64,
    origin: OnceInstant,
}

/// The instant a sink's clock counts from (set at its first use).
#[derive(Debug, Default)]
struct OnceInstant(std::sync::OnceLock<Instant>);

impl OnceInstant {
    fn get(&self) -> Instant {
        *self.0.get_or_init(Instant::now)
    }
}

impl Busy {
    /// Starts a busy stretch, ended by dropping the guard.
    pub fn start(self: &Arc<Self>) -> BusyGuard {
        let at = self.origin.get().elapsed().as_millis() as u64 + 1;
        self.since.store(at, Ordering::Relaxed);
        BusyGuard(Arc::clone(self))
    }

    /// How long the current stretch has run, if one is running.
    fn running_for(&self) -> Option<Duration> {
        match self.since.load(Ordering::Relaxed) {
            0 => None,
            at => {
                let now = self.origin.get().elapsed().as_millis() as u64 + 1;
                Some(Duration::from_millis(now.saturating_sub(at)))
            }
        }
    }
}

/// Ends a sink's busy stretch when dropped.
pub struct BusyGuard(Arc<Busy>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.since.store(0, Ordering::Relaxed);
    }
}

/// When a coordinator last completed a checkpoint (its start before the first).
#[derive(Debug)]
pub struct CheckpointClock {
    interval: Duration,
    last: Mutex<Instant>,
}

impl CheckpointClock {
    pub(super) fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(Instant::now()),
        }
    }

    pub(super) fn completed(&self) {
        *self.last.lock().expect("no panics while locked") = Instant::now();
    }
}

impl Health {
    pub(super) fn add_source(&self, topic: &str, partitions: IntGauge) {
        let mut inner = self.inner.lock().expect("no panics while locked");
        inner.sources.entry(topic.to_string()).or_insert(partitions);
    }

    pub(super) fn add_sink(&self, sink: &str, busy: &Arc<Busy>) {
        let mut inner = self.inner.lock().expect("no panics while locked");
        inner.sinks.retain(|(_, b)| b.strong_count() > 0);
        inner.sinks.push((sink.to_string(), Arc::downgrade(busy)));
    }

    pub(super) fn add_checkpoints(&self, clock: &Arc<CheckpointClock>) {
        let mut inner = self.inner.lock().expect("no panics while locked");
        inner.checkpoints.retain(|c| c.strong_count() > 0);
        inner.checkpoints.push(Arc::downgrade(clock));
    }

    /// Sets each sink's `engine_sink_stalled`.
    pub(super) fn refresh_stalls(&self, stalled: &IntGaugeVec) {
        let inner = self.inner.lock().expect("no panics while locked");
        let mut by_sink: BTreeMap<&str, i64> = BTreeMap::new();
        for (name, busy) in &inner.sinks {
            let stuck = busy
                .upgrade()
                .and_then(|b| b.running_for())
                .is_some_and(|d| d > STALL_LIMIT);
            *by_sink.entry(name).or_default() |= stuck as i64;
        }
        for (name, stuck) in by_sink {
            stalled.with_label_values(&[name]).set(stuck);
        }
    }

    pub(super) fn readiness(&self) -> Readiness {
        let inner = self.inner.lock().expect("no panics while locked");
        let mut reasons = Vec::new();
        if inner.sources.is_empty() {
            reasons.push("no source has started yet".to_string());
        }
        for (topic, partitions) in &inner.sources {
            if partitions.get() <= 0 {
                reasons.push(format!("source `{topic}` has no partitions assigned"));
            }
        }
        for clock in inner.checkpoints.iter().filter_map(Weak::upgrade) {
            let age = clock.last.lock().expect("no panics while locked").elapsed();
            let limit =
                (clock.interval * CHECKPOINT_INTERVALS).max(clock.interval + CHECKPOINT_SLACK);
            if age > limit {
                reasons.push(format!(
                    "no checkpoint completed for {:.0} s (interval {:?}; unready after {:?})",
                    age.as_secs_f64(),
                    clock.interval,
                    limit
                ));
            }
        }
        for (name, busy) in &inner.sinks {
            if let Some(d) = busy.upgrade().and_then(|b| b.running_for()) {
                if d > STALL_LIMIT {
                    reasons.push(format!(
                        "sink `{name}` has been in one write or commit for {:.0} s",
                        d.as_secs_f64()
                    ));
                }
            }
        }
        Readiness {
            ready: reasons.is_empty(),
            reasons,
        }
    }
}
