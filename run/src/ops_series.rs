//! Operational series of a run, sampled by the harness every 500 ms on the
//! direct (unproxied) connections, not by the implementation: its backlog,
//! oldest pending age and parked events (`GET /backlog`, where served), the
//! WAL each replication slot of the run's database retains
//! (`pg_current_wal_lsn() - restart_lsn`) and the size on disk of the outbox
//! table (`PatternInfo::outbox_table`). One JSON line per sample in
//! [`record::run_dir::OPS_SERIES`]; the maxima go into `results.json`.
//!
//! The samples, their maxima and what is judged from them are the run
//! record's (`dualcheck_record::ops_series`, re-exported here); the
//! [`Sampler`] that takes them is here.

pub use record::ops_series::*;

use crate::app_process::Fleet;
use crate::recorder::Recorder;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Time between two samples (longer while a figure is slow to come).
pub const INTERVAL: Duration = Duration::from_millis(500);

/// Longest wait for the publisher's `GET /backlog`.
pub const BACKLOG_TIMEOUT: Duration = Duration::from_secs(3);

const SLOTS_SQL: &str = "SELECT slot_name::text, coalesce((pg_current_wal_lsn() - restart_lsn)::bigint, 0),
                                coalesce((pg_current_wal_lsn() - confirmed_flush_lsn)::bigint, 0)
                         FROM pg_replication_slots WHERE database = current_database()";
const OUTBOX_SQL: &str = "SELECT pg_total_relation_size(to_regclass($1))::bigint";

/// The sampler, running until [`Sampler::stop`].
pub struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling every [`INTERVAL`], appending each sample to `path`:
    /// the publishers of `fleet` (their backlog: the relay processes where they run apart), the database at `direct_url`
    /// (its slots and `outbox_table`), on the clock of `recorder`.
    pub fn start(
        path: PathBuf,
        direct_url: &str,
        fleet: Arc<Fleet>,
        outbox_table: Option<&'static str>,
        recorder: Arc<Recorder>,
    ) -> Sampler {
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let (stop, mut rx) = watch::channel(false);
        let url = direct_url.to_string();
        let kept = samples.clone();
        let task = tokio::spawn(async move {
            let mut file = std::fs::File::create(&path)
                .map_err(|e| tracing::warn!("ops series: creating {}: {e}", path.display()))
                .ok();
            let mut client: Option<tokio_postgres::Client> = None;
            let mut tick = tokio::time::interval(INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let timeout = Duration::from_secs(1);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = rx.changed() => return,
                }
                let mut s = Sample {
                    time: recorder.now(),
                    ..Sample::default()
                };
                // A publisher may take a while (kafka-first reads its group's
                // offsets and the watermarks, 2 s timeouts each): the next
                // sample waits.
                if let Ok(Ok(Some(b))) = tokio::time::timeout(BACKLOG_TIMEOUT, fleet.backlog_report()).await {
                    s.backlog = Some(b.backlog);
                    s.oldest_age_ms = Some(b.oldest_age_ms);
                    s.parked = Some(b.parked);
                }
                if client.as_ref().is_none_or(|c| c.is_closed()) {
                    client = tokio::time::timeout(timeout, services::postgres::connect(&url))
                        .await
                        .ok()
                        .and_then(|c| c.ok());
                }
                if let Some(c) = &client {
                    match tokio::time::timeout(timeout, c.query(SLOTS_SQL, &[])).await {
                        Ok(Ok(rows)) => {
                            s.slots = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
                            s.unconfirmed = rows.iter().map(|r| (r.get(0), r.get(2))).collect();
                        }
                        _ => client = None, // Postgres down or paused: try again
                    }
                }
                if let (Some(c), Some(table)) = (&client, outbox_table) {
                    if let Ok(Ok(row)) = tokio::time::timeout(timeout, c.query_one(OUTBOX_SQL, &[&table])).await {
                        s.outbox_bytes = row.get(0);
                    }
                }
                if let Some(f) = &mut file {
                    if let Ok(line) = serde_json::to_string(&s) {
                        let _ = writeln!(f, "{line}");
                    }
                }
                kept.lock().unwrap_or_else(|e| e.into_inner()).push(s);
            }
        });
        Sampler { samples, stop, task }
    }

    /// Stops sampling; returns the maxima.
    pub async fn stop(self) -> OpsMaxima {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        maxima(&self.samples.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
