//! `--idle-window`, the harness's side. For the window
//! ([`workloads::Workload::idle_span`], in the middle of the run) the workers
//! submit no op (`workload`), so the tables a pattern captures see no write,
//! while this task keeps the database busy elsewhere: it writes filler rows to
//! [`TRAFFIC_TABLE`] on the direct connection, a table no pattern captures,
//! generating WAL. A CDC pipeline that only confirms positions when its own
//! tables change holds that WAL in its slot (the retained WAL in `ops.jsonl`
//! grows); one that confirms on the server's keepalives does not.
//!
//! The window is marked in the history with `nemesis` lines of the pseudo-fault
//! [`IDLE_FAULT`] (start and stop), so the report draws it as a band like a
//! fault's (docs/faults.md#idle-window).

use crate::recorder::Recorder;
use checkers::{FaultPhase, HistoryLine};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The name of the idle window in the history's `nemesis` lines.
pub use record::fault::IDLE_FAULT;

/// The uncaptured table the harness writes during the window.
pub const TRAFFIC_TABLE: &str = "dualcheck_idle_traffic";

/// Time between two filler inserts.
const FILLER_EVERY: Duration = Duration::from_millis(100);

/// One filler insert: 200 rows of 1 KiB (about 2 MiB of WAL per second).
const FILLER_SQL: &str = "INSERT INTO dualcheck_idle_traffic (filler)
                          SELECT repeat(md5(random()::text), 32) FROM generate_series(1, 200)";

/// The window's task.
pub(super) struct IdleTask {
    task: JoinHandle<Vec<String>>,
}

/// Starts the task of the window `span` (from `workload_start`): marks its start,
/// writes filler rows until its stop, marks the stop. `None` without a window.
pub(super) fn spawn(
    span: Option<(Duration, Duration)>,
    db_direct_url: &str,
    recorder: Arc<Recorder>,
    workload_start: Instant,
) -> Option<IdleTask> {
    let (from, until) = span?;
    let url = db_direct_url.to_string();
    let task = tokio::spawn(async move {
        let mut errors = Vec::new();
        let client = match services::postgres::connect(&url).await {
            Ok(c) => Some(c),
            Err(e) => {
                errors.push(format!("idle window: connecting for the filler traffic: {e:#}"));
                None
            }
        };
        if let Some(c) = &client {
            let ddl = format!("CREATE TABLE IF NOT EXISTS {TRAFFIC_TABLE} (id bigserial PRIMARY KEY, filler text)");
            if let Err(e) = c.batch_execute(&ddl).await {
                errors.push(format!("idle window: creating {TRAFFIC_TABLE}: {e}"));
            }
        }
        tokio::time::sleep_until((workload_start + from).into()).await;
        let mark = |phase| {
            recorder.record(&HistoryLine::Nemesis {
                fault: IDLE_FAULT.into(),
                phase,
                time: recorder.now(),
                error: None,
            })
        };
        mark(FaultPhase::Start);
        let stop_at = workload_start + until;
        let mut failures = 0u64;
        let mut tick = tokio::time::interval(FILLER_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while Instant::now() < stop_at {
            tokio::select! {
                _ = tick.tick() => {}
                _ = tokio::time::sleep_until(stop_at.into()) => break,
            }
            if let Some(c) = &client {
                // A fault may make the database unreachable: the window goes on.
                match tokio::time::timeout(Duration::from_secs(2), c.batch_execute(FILLER_SQL)).await {
                    Ok(Ok(())) => {}
                    _ => failures += 1,
                }
            }
        }
        mark(FaultPhase::Stop);
        if failures > 0 {
            tracing::info!("idle window: {failures} filler insert(s) failed or timed out");
        }
        errors
    });
    Some(IdleTask { task })
}

impl IdleTask {
    /// Waits for the window to end (it ends before the workload does); returns
    /// the problems met, for the nemesis errors.
    pub async fn finish(self) -> Vec<String> {
        let mut task = self.task;
        match tokio::time::timeout(Duration::from_secs(10), &mut task).await {
            Ok(Ok(errors)) => errors,
            Ok(Err(e)) => vec![format!("idle window: the task ended: {e}")],
            Err(_) => {
                task.abort();
                vec!["idle window: the task did not end within 10 s of the workload".into()]
            }
        }
    }
}
