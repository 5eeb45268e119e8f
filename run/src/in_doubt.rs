//! In-doubt transactions (patterns that prepare transactions): prepared transactions
//! (`PREPARE TRANSACTION`) the implementation left unresolved.
//!
//! - [`Monitor`] polls `pg_prepared_xacts` of the run's database on the direct
//!   (unproxied) URL every 200 ms while the run goes on and remembers, per
//!   global transaction id, the longest time it was seen prepared.
//! - [`recover`] runs after healing, draining **and** the committed read: what
//!   is still prepared then is what the implementation left in doubt. Each
//!   leftover is resolved as an operator would: `COMMIT PREPARED` when the
//!   op's event was delivered (the event is public: make the row match it),
//!   `ROLLBACK PREPARED` otherwise. Reading the committed ops before this
//!   keeps the verdict honest: the events visible for rows that are not show up
//!   as phantoms, instead of being repaired by the harness.

pub use record::in_doubt::InDoubt;

use anyhow::Result;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

const POLL_SQL: &str = "SELECT gid, coalesce((extract(epoch FROM now() - prepared) * 1000)::bigint, 0)
                        FROM pg_prepared_xacts WHERE database = current_database()";

/// Polls `pg_prepared_xacts` until stopped.
pub struct Monitor {
    seen: Arc<Mutex<BTreeMap<String, i64>>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Monitor {
    /// Starts polling the database at `direct_url`.
    pub fn start(direct_url: &str) -> Monitor {
        let seen: Arc<Mutex<BTreeMap<String, i64>>> = Arc::default();
        let (stop, mut rx) = watch::channel(false);
        let url = direct_url.to_string();
        let s = seen.clone();
        let task = tokio::spawn(async move {
            let mut client: Option<tokio_postgres::Client> = None;
            loop {
                if client.as_ref().is_none_or(|c| c.is_closed()) {
                    client = services::postgres::connect(&url).await.ok();
                }
                if let Some(c) = &client {
                    match tokio::time::timeout(Duration::from_secs(2), c.query(POLL_SQL, &[])).await {
                        Ok(Ok(rows)) => {
                            let mut m = s.lock().unwrap_or_else(|e| e.into_inner());
                            for r in rows {
                                let age: i64 = r.get(1);
                                let e = m.entry(r.get(0)).or_insert(0);
                                *e = (*e).max(age);
                            }
                        }
                        _ => client = None, // Postgres down or paused: try again
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = rx.changed() => return,
                }
            }
        });
        Monitor { seen, stop, task }
    }

    /// Stops polling; returns gid → longest age seen (ms).
    pub async fn stop(self) -> BTreeMap<String, i64> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Ops with at least one `deliver` line in the history.
pub fn delivered_ops(history: &std::path::Path) -> HashSet<i64> {
    let text = std::fs::read_to_string(history).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("\"deliver\""))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("type").and_then(|t| t.as_str()) == Some("deliver"))
        .filter_map(|v| v.get("op").and_then(|o| o.as_i64()))
        .collect()
}

/// How to resolve one leftover: commit when its op's event was delivered.
/// A gid not made by `implementations::prepared_gid` (`dc-<op>`) is rolled back.
pub fn decide(gid: &str, delivered: &HashSet<i64>) -> bool {
    implementations::op_of_prepared_gid(gid).is_some_and(|op| delivered.contains(&op))
}

/// Resolves every prepared transaction left in the run's database (see the
/// module doc) and completes `seen` (from [`Monitor::stop`]) into the figures.
pub async fn recover(direct_url: &str, mut seen: BTreeMap<String, i64>, delivered: &HashSet<i64>) -> Result<InDoubt> {
    let c = services::postgres::connect(direct_url).await?;
    let rows = c.query(POLL_SQL, &[]).await?;
    let mut out = InDoubt {
        unresolved: rows.len() as u64,
        ..InDoubt::default()
    };
    for r in rows {
        let gid: String = r.get(0);
        let age: i64 = r.get(1);
        let e = seen.entry(gid.clone()).or_insert(0);
        *e = (*e).max(age);
        let commit = decide(&gid, delivered);
        let verb = if commit { "COMMIT PREPARED" } else { "ROLLBACK PREPARED" };
        let quoted = gid.replace('\'', "''");
        match c.batch_execute(&format!("{verb} '{quoted}'")).await {
            Ok(()) if commit => out.recovered_commit += 1,
            Ok(()) => out.recovered_rollback += 1,
            Err(e) => out.recovery_errors.push(format!("{verb} '{gid}': {e}")),
        }
    }
    out.prepared_seen = seen.len() as u64;
    out.max_unresolved_ms = seen.values().copied().max().unwrap_or(0).max(0) as u64;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_commit_only_when_their_event_was_delivered() {
        let delivered: HashSet<i64> = [17].into_iter().collect();
        assert!(decide("dc-17", &delivered));
        assert!(!decide("dc-18", &delivered));
        assert!(!decide("someone-else", &delivered));
    }

    #[test]
    fn delivered_ops_come_from_deliver_lines() {
        let dir = std::env::temp_dir().join(format!("dualcheck-indoubt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let h = dir.join(record::run_dir::HISTORY);
        std::fs::write(
            &h,
            concat!(
                r#"{"type":"invoke","op":1,"process":0,"key":"k","seq":0,"time":1}"#,
                "\n",
                r#"{"type":"deliver","op":1,"event":"e","key":"k","seq":0,"partition":0,"offset":0,"time":2}"#,
                "\n",
                r#"{"type":"deliver","op":null,"event":"e","partition":0,"offset":1,"time":3}"#,
                "\n"
            ),
        )
        .unwrap();
        assert_eq!(delivered_ops(&h), [1].into_iter().collect());
        let _ = std::fs::remove_dir_all(dir);
    }
}
