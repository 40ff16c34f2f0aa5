//! Ack ids and the table of emits waiting for their acknowledgement.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

/// The largest id a JavaScript peer reads back exactly (`Number.MAX_SAFE_INTEGER`); ids wrap
/// below it so an ack always names the emit it answers.
pub const MAX_ACK_ID: u64 = (1 << 53) - 1;

/// Pending acknowledgements keyed by ack id, each with an optional deadline.
///
/// Ids come from one counter that lives as long as the table (the client keeps one table
/// across reconnects), skipping ids still pending, so two emits never share an id. This is
/// plain data: the caller passes `now` and decides what an expiry means.
#[derive(Debug)]
pub struct AckTable<T> {
    next_id: u64,
    pending: HashMap<u64, (Option<Instant>, T)>,
    deadlines: BTreeSet<(Instant, u64)>,
}

impl<T> Default for AckTable<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> AckTable<T> {
    /// An empty table whose first id is 0.
    pub fn new() -> Self {
        Self::starting_at(0)
    }

    /// An empty table whose first id is `first` (tests use it to exercise wrapping).
    pub fn starting_at(first: u64) -> Self {
        AckTable {
            next_id: first.min(MAX_ACK_ID),
            pending: HashMap::new(),
            deadlines: BTreeSet::new(),
        }
    }

    /// Stores `value` under a fresh id and returns the id.
    pub fn insert(&mut self, value: T, deadline: Option<Instant>) -> u64 {
        let id = self.allocate();
        if let Some(deadline) = deadline {
            self.deadlines.insert((deadline, id));
        }
        self.pending.insert(id, (deadline, value));
        id
    }

    fn allocate(&mut self) -> u64 {
        // Bounded: at most `pending.len() + 1` steps find a free id.
        loop {
            let id = self.next_id;
            self.next_id = if id >= MAX_ACK_ID { 0 } else { id + 1 };
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    /// Removes and returns the entry for `id` (an ack arrived, or the caller gave up).
    pub fn remove(&mut self, id: u64) -> Option<T> {
        let (deadline, value) = self.pending.remove(&id)?;
        if let Some(deadline) = deadline {
            self.deadlines.remove(&(deadline, id));
        }
        Some(value)
    }

    /// Whether `id` is pending.
    pub fn contains(&self, id: u64) -> bool {
        self.pending.contains_key(&id)
    }

    /// The earliest deadline among pending entries.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// Removes and returns every entry whose deadline is at or before `now`, earliest first.
    pub fn expire(&mut self, now: Instant) -> Vec<(u64, T)> {
        let mut expired = Vec::new();
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some((_, value)) = self.pending.remove(&id) {
                expired.push((id, value));
            }
        }
        expired
    }

    /// Removes and returns every entry, in id order.
    pub fn drain(&mut self) -> Vec<(u64, T)> {
        self.deadlines.clear();
        let mut all: Vec<(u64, T)> = self.pending.drain().map(|(id, (_, v))| (id, v)).collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }

    /// Number of pending entries.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ids_are_sequential_and_never_reused_while_pending() {
        let mut table = AckTable::new();
        let a = table.insert("a", None);
        let b = table.insert("b", None);
        assert_eq!((a, b), (0, 1));
        assert_eq!(table.remove(a), Some("a"));
        assert_eq!(table.remove(a), None);
        assert_eq!(table.insert("c", None), 2);
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn ids_wrap_below_the_javascript_safe_integer_and_skip_pending_ones() {
        let mut table = AckTable::starting_at(MAX_ACK_ID - 1);
        let held = table.insert("held", None);
        assert_eq!(held, MAX_ACK_ID - 1);
        assert_eq!(table.insert("top", None), MAX_ACK_ID);
        assert_eq!(table.insert("wrapped", None), 0);
        // Run the counter all the way round: the held id must be skipped.
        let mut table = AckTable::starting_at(MAX_ACK_ID);
        let first = table.insert(1, None);
        assert_eq!(first, MAX_ACK_ID);
        assert_eq!(table.insert(2, None), 0);
        let mut small = AckTable::starting_at(0);
        small.insert("zero", None);
        small.next_id = 0;
        assert_eq!(small.insert("next", None), 1, "pending id 0 is skipped");
    }

    #[test]
    fn expires_in_deadline_order() {
        let t0 = Instant::now();
        let mut table = AckTable::new();
        let late = table.insert("late", Some(t0 + Duration::from_secs(2)));
        let early = table.insert("early", Some(t0 + Duration::from_secs(1)));
        let never = table.insert("never", None);
        assert_eq!(table.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert!(table.expire(t0).is_empty());
        assert_eq!(
            table.expire(t0 + Duration::from_secs(1)),
            vec![(early, "early")]
        );
        assert_eq!(
            table.expire(t0 + Duration::from_secs(5)),
            vec![(late, "late")]
        );
        assert_eq!(table.next_deadline(), None);
        assert!(table.contains(never));
        assert_eq!(table.drain(), vec![(never, "never")]);
        assert!(table.is_empty());
    }

    #[test]
    fn removing_clears_the_deadline() {
        let t0 = Instant::now();
        let mut table = AckTable::new();
        let id = table.insert((), Some(t0));
        table.remove(id);
        assert_eq!(table.next_deadline(), None);
        assert!(table.expire(t0).is_empty());
    }
}
