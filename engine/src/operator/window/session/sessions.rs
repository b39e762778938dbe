//! The open sessions of every key: per key and span, disjoint intervals
//! `[start, end)` that do not touch (touching ones are merged), and the
//! same sessions by end, for closing them in order.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::message::EventTime;

/// A group key in Arrow's row format.
pub(super) type Key = Box<[u8]>;

/// Open sessions.
#[derive(Default)]
pub(super) struct Sessions {
    /// Per (key, span): sessions by start, with their ends.
    by_key: HashMap<(Key, i64), BTreeMap<EventTime, EventTime>>,
    /// (end, key, span, start) of every session.
    by_end: BTreeSet<(EventTime, Key, i64, EventTime)>,
}

impl Sessions {
    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.by_end.len()
    }

    /// The end of the earliest-ending session.
    pub fn first_end(&self) -> Option<EventTime> {
        self.by_end.first().map(|s| s.0)
    }

    /// Adds `[start, end)` for `key` in `span`, merged with every session
    /// it overlaps or touches (a row bridging two merges them).
    pub fn add(&mut self, key: &[u8], span: i64, start: EventTime, end: EventTime) {
        let sessions = self.by_key.entry((key.into(), span)).or_default();
        let (mut merged_start, mut merged_end) = (start, end);
        // Sessions are disjoint, so by start descending their ends descend too.
        let touching: Vec<(EventTime, EventTime)> = sessions
            .range(..=end)
            .rev()
            .take_while(|(_, &e)| e >= start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touching {
            sessions.remove(&s);
            self.by_end.remove(&(e, key.into(), span, s));
            merged_start = merged_start.min(s);
            merged_end = merged_end.max(e);
        }
        sessions.insert(merged_start, merged_end);
        self.by_end
            .insert((merged_end, key.into(), span, merged_start));
    }

    /// Whether `[start, end)` overlaps or touches an open session of `key` in `span`.
    pub fn touches(&self, key: &[u8], span: i64, start: EventTime, end: EventTime) -> bool {
        self.by_key
            .get(&(key.into(), span))
            .and_then(|s| s.range(..=end).next_back())
            .is_some_and(|(_, &e)| e >= start)
    }

    /// The bounds of the session of `key` in `span` that holds time `t`.
    pub fn holding(&self, key: &[u8], span: i64, t: EventTime) -> Option<(EventTime, EventTime)> {
        self.by_key
            .get(&(key.into(), span))
            .and_then(|s| s.range(..=t).next_back())
            .filter(|(_, &e)| t < e)
            .map(|(&s, &e)| (s, e))
    }

    /// Removes the sessions ending at or before `watermark`; returns how
    /// many, and the latest end among them.
    pub fn close_through(&mut self, watermark: EventTime) -> (usize, Option<EventTime>) {
        let (mut closed, mut last) = (0, None);
        while let Some(first) = self.by_end.first().filter(|s| s.0 <= watermark) {
            let (end, key, span, start) = first.clone();
            self.by_end.remove(&(end, key.clone(), span, start));
            let slot = (key, span);
            if let Some(sessions) = self.by_key.get_mut(&slot) {
                sessions.remove(&start);
                if sessions.is_empty() {
                    self.by_key.remove(&slot);
                }
            }
            closed += 1;
            last = Some(end);
        }
        (closed, last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_bridging_sessions_merge_them() {
        let mut s = Sessions::default();
        s.add(b"A", 0, 0, 10);
        s.add(b"A", 0, 20, 30);
        s.add(b"B", 0, 5, 15);
        s.add(b"A", 1, 10, 20); // another span: never merged across it
        assert_eq!(s.len(), 4);
        assert!(s.touches(b"A", 0, 10, 20)); // touches both ends
        assert!(!s.touches(b"A", 0, 11, 19));
        s.add(b"A", 0, 10, 20);
        assert_eq!(s.len(), 3);
        assert_eq!(s.holding(b"A", 0, 25), Some((0, 30)));
        assert_eq!(s.holding(b"A", 0, 30), None);
        assert_eq!(s.first_end(), Some(15));
        assert_eq!(s.close_through(20), (2, Some(20)));
        assert_eq!(s.close_through(29), (0, None));
        assert_eq!(s.close_through(30), (1, Some(30)));
        assert_eq!(s.len(), 0);
        assert!(s.by_key.is_empty());
    }
}
