//! The write-through read cache of `listen-to-yourself` and `kafka-first`.
//!
//! Both patterns acknowledge an op before its business row exists: the row is
//! written later by the service's own consumer. A read right after the
//! acknowledgment would miss it (a stale read), so each request puts the
//! expected state of its key into this cache the moment it is accepted, and
//! reads are served from here first.
//!
//! State machine of one key's entry (the newest op accepted on the key):
//!
//! ```text
//!   (none) --accept--> Pending --committed--> Committed
//!                         |  \--accept (newer seq)--> Pending (newer op)
//!                         \--abandon (fail/unknown)--> (none)
//! ```
//!
//! - `accept(key, op, seq)`: the request starts; the entry becomes this op,
//!   pending, unless the cache already holds a newer seq for the key.
//! - `abandon(key, op)`: the request certainly failed, or its outcome is
//!   unknown: the entry is dropped if it is still this op's, and reads fall back
//!   to the database (which never shows an op that did not happen).
//! - `committed(key, op, seq)`: the consumer wrote the op's row; the entry
//!   becomes committed if it is this op (or the row is newer than the entry).
//!
//! The cache is in memory: a process restart empties it, and each pattern
//! documents its fallback.

use std::collections::HashMap;
use std::sync::Mutex;

/// Whether the entry's business row exists yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryState {
    /// Accepted; the business row does not exist yet.
    Pending,
    /// The business row exists.
    Committed,
}

/// The newest op the cache knows on one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Op id.
    pub op: i64,
    /// Its seq on the key.
    pub seq: i64,
    /// Pending or committed.
    pub state: EntryState,
}

/// Key → newest accepted op (see the module doc).
#[derive(Default)]
pub struct ReadCache {
    entries: Mutex<HashMap<String, Entry>>,
}

impl ReadCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request for `op` (seq `seq` on `key`) was accepted: pending.
    pub fn accept(&self, key: &str, op: i64, seq: i64) {
        let mut m = self.map();
        match m.get(key) {
            Some(e) if e.seq > seq => {}
            _ => set(&mut m, key, op, seq, EntryState::Pending),
        }
    }

    /// The request for `op` failed or ended unknown: forget it if it is still the entry.
    pub fn abandon(&self, key: &str, op: i64) {
        let mut m = self.map();
        if m.get(key).is_some_and(|e| e.op == op && e.state == EntryState::Pending) {
            m.remove(key);
        }
    }

    /// The business row of `op` now exists.
    pub fn committed(&self, key: &str, op: i64, seq: i64) {
        let mut m = self.map();
        match m.get_mut(key) {
            Some(e) if e.op == op => e.state = EntryState::Committed,
            Some(e) if e.seq >= seq => {}
            _ => set(&mut m, key, op, seq, EntryState::Committed),
        }
    }

    /// The entry of `key`, if any.
    pub fn get(&self, key: &str) -> Option<Entry> {
        self.map().get(key).copied()
    }

    /// Entries still pending (acknowledged or in flight, row not written yet).
    pub fn pending(&self) -> usize {
        self.map().values().filter(|e| e.state == EntryState::Pending).count()
    }
}

/// Makes op `op` (seq `seq`) the entry of `key`, in `state`.
fn set(m: &mut HashMap<String, Entry>, key: &str, op: i64, seq: i64, state: EntryState) {
    m.insert(key.to_string(), Entry { op, seq, state });
}

/// The negative control of the patterns that read through this cache: with
/// `DUALCHECK_READ_CACHE=off` they read the table their own consumer writes
/// late, and must show stale reads.
pub const CACHE_OFF_READS_STALE: crate::expect::Control = crate::expect::Control {
    name: "cache-off",
    knob: "DUALCHECK_READ_CACHE",
    value: "off",
    faults: "none",
    exactly_once: false,
    workload: None,
    expect: &[crate::expect::Expectation {
        when: crate::expect::When::Always,
        expect: crate::expect::Expect::Shows(&[checkers::Anomaly::StaleRead]),
    }],
};

#[cfg(test)]
mod tests {
    use super::*;
    use EntryState::*;

    fn entry(c: &ReadCache, k: &str) -> Option<(i64, i64, EntryState)> {
        c.get(k).map(|e| (e.op, e.seq, e.state))
    }

    /// Key k's entry after `accept` of (op, seq) on it.
    fn after_accept(c: &ReadCache, op: i64, seq: i64) -> Option<(i64, i64, EntryState)> {
        c.accept("k", op, seq);
        entry(c, "k")
    }

    /// Key k's entry after `committed` of (op, seq) on it.
    fn after_committed(c: &ReadCache, op: i64, seq: i64) -> Option<(i64, i64, EntryState)> {
        c.committed("k", op, seq);
        entry(c, "k")
    }

    /// Key k's entry after `abandon` of op on it.
    fn after_abandon(c: &ReadCache, op: i64) -> Option<(i64, i64, EntryState)> {
        c.abandon("k", op);
        entry(c, "k")
    }

    #[test]
    fn accepted_is_pending_until_committed() {
        let c = ReadCache::new();
        assert_eq!(c.get("k"), None);
        assert_eq!(after_accept(&c, 10, 0), Some((10, 0, Pending)));
        assert_eq!(c.pending(), 1);
        assert_eq!(after_committed(&c, 10, 0), Some((10, 0, Committed)));
        assert_eq!(c.pending(), 0);
    }

    #[test]
    fn a_newer_op_replaces_and_an_older_never_does() {
        let c = ReadCache::new();
        c.accept("k", 10, 0);
        assert_eq!(after_accept(&c, 11, 1), Some((11, 1, Pending)));
        // The consumer writes op 10's row late: the entry stays op 11, pending.
        assert_eq!(after_committed(&c, 10, 0), Some((11, 1, Pending)));
        // An older request arriving late does not roll the key back.
        assert_eq!(after_accept(&c, 9, 0), Some((11, 1, Pending)));
        assert_eq!(after_committed(&c, 11, 1), Some((11, 1, Committed)));
    }

    #[test]
    fn abandoned_requests_fall_back_to_the_database() {
        let c = ReadCache::new();
        c.accept("k", 10, 0);
        c.abandon("k", 10);
        assert_eq!(c.get("k"), None);
        assert_eq!(c.pending(), 0);
        // Abandoning another op, or a committed entry, changes nothing.
        c.accept("k", 11, 1);
        assert_eq!(after_abandon(&c, 10), Some((11, 1, Pending)));
        c.committed("k", 11, 1);
        assert_eq!(after_abandon(&c, 11), Some((11, 1, Committed)));
    }

    #[test]
    fn rows_written_after_a_restart_fill_the_cache() {
        // After a restart the cache is empty; the consumer catches up.
        let c = ReadCache::new();
        assert_eq!(after_committed(&c, 10, 0), Some((10, 0, Committed)));
        assert_eq!(after_committed(&c, 12, 2), Some((12, 2, Committed)));
        assert_eq!(after_committed(&c, 11, 1), Some((12, 2, Committed)));
        assert_eq!(c.pending(), 0);
    }
}
