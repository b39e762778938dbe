//! The open sessions of every key: per key and span, disjoint intervals
//! `[start, end)` that do not touch (touching ones are merged), and the
//! same sessions by end, for closing them in order. Keys are interned, so
//! the by-end order compares numbers, not key bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::message::EventTime;

/// A group key in Arrow's row format.
pub(super) type Key = Box<[u8]>;

/// Open sessions.
#[derive(Default)]
pub(super) struct Sessions {
    /// Each key with open sessions, and its slot.
    ids: HashMap<Key, u32>,
    /// Per slot: its key, and its sessions by (span, start), with their ends.
    slots: Vec<Slot>,
    /// Slots free for reuse (their key has no open session).
    free: Vec<u32>,
    /// (end, slot, span, start) of every session.
    by_end: BTreeSet<(EventTime, u32, i64, EventTime)>,
    /// (start, slot, span) of every session.
    by_start: BTreeSet<(EventTime, u32, i64)>,
}

#[derive(Default)]
struct Slot {
    key: Key,
    sessions: BTreeMap<(i64, EventTime), EventTime>,
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

    /// The start of the earliest-starting session.
    pub fn first_start(&self) -> Option<EventTime> {
        self.by_start.first().map(|s| s.0)
    }

    /// Adds `[start, end)` for `key` in `span`, merged with every session
    /// it overlaps or touches (a row bridging two merges them).
    pub fn add(&mut self, key: &[u8], span: i64, start: EventTime, end: EventTime) {
        let id = match self.ids.get(key) {
            Some(&id) => id,
            None => {
                let slot = Slot {
                    key: key.into(),
                    sessions: BTreeMap::new(),
                };
                let id = match self.free.pop() {
                    Some(id) => {
                        self.slots[id as usize] = slot;
                        id
                    }
                    None => {
                        self.slots.push(slot);
                        (self.slots.len() - 1) as u32
                    }
                };
                self.ids.insert(key.into(), id);
                id
            }
        };
        let sessions = &mut self.slots[id as usize].sessions;
        let (mut merged_start, mut merged_end) = (start, end);
        // Sessions are disjoint, so by start descending their ends descend too.
        let touching: Vec<(EventTime, EventTime)> = sessions
            .range((span, EventTime::MIN)..=(span, end))
            .rev()
            .take_while(|(_, &e)| e >= start)
            .map(|(&(_, s), &e)| (s, e))
            .collect();
        if let [(s, e)] = touching[..] {
            if s <= start && end <= e {
                return; // inside a session: nothing changes
            }
        }
        for (s, e) in touching {
            sessions.remove(&(span, s));
            self.by_end.remove(&(e, id, span, s));
            self.by_start.remove(&(s, id, span));
            merged_start = merged_start.min(s);
            merged_end = merged_end.max(e);
        }
        sessions.insert((span, merged_start), merged_end);
        self.by_end.insert((merged_end, id, span, merged_start));
        self.by_start.insert((merged_start, id, span));
    }

    /// For each session ending at or before `watermark` whose key has more
    /// than one such: its rank among its key's, by end (0 first). `None`
    /// when every key has at most one.
    pub fn closing_ranks(&self, watermark: EventTime) -> Option<HashMap<(u32, EventTime), usize>> {
        let mut seen: HashMap<u32, usize> = HashMap::new();
        let mut ranks = HashMap::new();
        let mut repeated = false;
        for &(_, id, _, start) in self.by_end.iter().take_while(|s| s.0 <= watermark) {
            let rank = seen.entry(id).or_default();
            repeated |= *rank > 0;
            ranks.insert((id, start), *rank);
            *rank += 1;
        }
        repeated.then_some(ranks)
    }

    /// The slot of `key`, while it has open sessions.
    pub fn slot_of(&self, key: &[u8]) -> Option<u32> {
        self.ids.get(key).copied()
    }

    /// The session of `key` in `span` whose start is the latest at or before `t`.
    fn at_or_before(&self, key: &[u8], span: i64, t: EventTime) -> Option<(EventTime, EventTime)> {
        let slot = &self.slots[*self.ids.get(key)? as usize];
        let range = (span, EventTime::MIN)..=(span, t);
        let (&(_, s), &e) = slot.sessions.range(range).next_back()?;
        Some((s, e))
    }

    /// Whether `[start, end)` overlaps or touches an open session of `key` in `span`.
    pub fn touches(&self, key: &[u8], span: i64, start: EventTime, end: EventTime) -> bool {
        self.at_or_before(key, span, end)
            .is_some_and(|(_, e)| e >= start)
    }

    /// The bounds of the session of `key` in `span` that holds time `t`.
    pub fn holding(&self, key: &[u8], span: i64, t: EventTime) -> Option<(EventTime, EventTime)> {
        self.at_or_before(key, span, t).filter(|&(_, e)| t < e)
    }

    /// Removes the sessions ending at or before `watermark`; returns how
    /// many, and the latest end among them.
    pub fn close_through(&mut self, watermark: EventTime) -> (usize, Option<EventTime>) {
        let (mut closed, mut last) = (0, None);
        while let Some(&(end, id, span, start)) = self.by_end.first().filter(|s| s.0 <= watermark) {
            self.by_end.remove(&(end, id, span, start));
            self.by_start.remove(&(start, id, span));
            let slot = &mut self.slots[id as usize];
            slot.sessions.remove(&(span, start));
            if slot.sessions.is_empty() {
                let key = std::mem::take(&mut slot.key);
                self.ids.remove(&key);
                self.free.push(id);
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
        s.add(b"A", 0, 3, 13); // inside: nothing changes
        assert_eq!(s.holding(b"A", 0, 3), Some((0, 30)));
        assert_eq!(s.first_end(), Some(15));
        assert_eq!(s.first_start(), Some(0));
        let a = s.slot_of(b"A").unwrap();
        assert_eq!(s.closing_ranks(15), None);
        // A's [10, 20) in span 1 ends first, then its [0, 30) in span 0.
        assert_eq!(s.closing_ranks(30).unwrap()[&(a, 10)], 0);
        assert_eq!(s.closing_ranks(30).unwrap()[&(a, 0)], 1);
        assert_eq!(s.close_through(20), (2, Some(20)));
        assert!(s.ids.get(&b"B"[..]).is_none() && s.free.len() == 1);
        s.add(b"C", 0, 40, 50); // reuses B's slot
        assert_eq!(s.slots.len(), 2);
        assert_eq!(s.close_through(29), (0, None));
        assert_eq!(s.close_through(50), (2, Some(50)));
        assert_eq!(s.len(), 0);
        assert!(s.ids.is_empty());
    }
}
