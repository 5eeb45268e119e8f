//! The process's own memory of what happened to each op's event, for `GET
//! /trace/{op}`: a bounded map from op to its latest [`Note`] (the oldest ops
//! are forgotten first). It lives in memory, so a restarted process remembers
//! only what it did itself since it started.

use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Ops remembered at most.
pub const CAPACITY: usize = 100_000;

/// What this process knows about one op's event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Note {
    /// The event id last handed to Kafka for the op.
    pub event: String,
    /// Publish attempts this process made.
    pub attempts: u32,
    /// Where Kafka acknowledged it (`partition`, `offset`), when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<Published>,
    /// The last publish error, when the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Anything else the process noted (e.g. the WAL position of the commit).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A record Kafka acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Published {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// The bounded op → [`Note`] map.
#[derive(Default)]
pub struct Journal {
    inner: Mutex<(HashMap<i64, Note>, VecDeque<i64>)>,
}

impl Journal {
    /// Changes op `op`'s note (created empty when new).
    pub fn update(&self, op: i64, f: impl FnOnce(&mut Note)) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order) = &mut *g;
        if !map.contains_key(&op) {
            if order.len() >= CAPACITY {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
            order.push_back(op);
        }
        f(map.entry(op).or_default());
    }

    /// Records the result of one publish attempt of op `op`'s event.
    pub fn attempt(&self, op: i64, event: &str, result: Result<(i32, i64), &str>) {
        self.update(op, |n| {
            n.event = event.to_string();
            n.attempts += 1;
            match result {
                Ok((partition, offset)) => {
                    n.published = Some(Published { partition, offset });
                    n.last_error = None;
                }
                Err(e) => n.last_error = Some(e.to_string()),
            }
        });
    }

    /// Op `op`'s note, if this process has one.
    pub fn get(&self, op: i64) -> Option<Note> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).0.get(&op).cloned()
    }
}

/// The op a record value names (`{"op": N, ...}`), if any.
pub fn op_of_value(value: &str) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct OpOnly {
        op: Option<i64>,
    }
    serde_json::from_str::<OpOnly>(value).ok()?.op
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_keep_the_latest_attempt_and_forget_the_oldest_ops() {
        let j = Journal::default();
        j.attempt(7, "e1", Err("publish failed: timed out"));
        j.attempt(7, "e1", Ok((2, 40)));
        let n = j.get(7).unwrap();
        assert_eq!(
            (n.attempts, n.published, n.last_error),
            (
                2,
                Some(Published {
                    partition: 2,
                    offset: 40
                }),
                None
            )
        );
        for op in 0..CAPACITY as i64 + 10 {
            j.attempt(1000 + op, "e", Err("x"));
        }
        assert!(j.get(7).is_none() && j.get(1000 + CAPACITY as i64 + 9).is_some());
        assert_eq!(op_of_value(r#"{"op":12,"seq":1}"#), Some(12));
        assert_eq!(op_of_value("not json"), None);
    }
}
