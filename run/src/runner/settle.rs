//! Phase 4, heal and drain: every fault is healed, then the run waits until
//! the implementation has nothing left to publish and deliveries have stopped.
//! (The bench's relay publish rate is `dualcheck::relay_rate`, another thing.)
//!
//! The drain ends the first way that holds:
//!
//! - **complete**: the publisher's backlog is exactly 0, the implementation
//!   has no request in flight (`in_flight` of `GET /backlog` is 0: no request
//!   will still commit or publish), every acknowledged op has been delivered,
//!   and the observer has read every partition to its end
//!   ([`ObserverStats::caught_up`]: no record written to Kafka is still
//!   unread) — checked again at least [`FINAL_QUIET`] after it first held, with
//!   no delivery in between: a publish still in flight inside a producer (a
//!   retry after the heal, a duplicate) lands in the topic within it, and the
//!   end-of-log check then sees it unread. A built-in pattern whose backlog is
//!   exact (`PatternInfo::exact_backlog`: nothing is left inside a producer at
//!   backlog 0 with nothing in flight) needs only a second look,
//!   [`EXACT_SECOND_LOOK`] later — for a CDC tailer, the look that finds the
//!   first look's drain marker through;
//! - **quiet**: the backlog is 0, no delivery has arrived for the run's quiet
//!   period (3 s; for programs that do not report `in_flight`, runs with
//!   acknowledged ops never delivered — `lost` — and transactional topics),
//!   and the observer has read every partition to its end: after a long
//!   outage the quiet period has passed before the last events are read, and
//!   events published at the very end would otherwise be judged lost;
//! - **timeout**: neither within `--drain-timeout`: not drained.

use super::start::Running;
use super::workload::Progress;
use super::RunConfig;
use crate::app_process::Fleet;
use crate::nemesis::Nemesis;
use crate::observer::ObserverStats;
use crate::recorder::Recorder;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the complete condition must hold, with no new delivery, before the
/// drain ends on it.
pub const FINAL_QUIET: Duration = Duration::from_millis(500);

/// [`FINAL_QUIET`] for a pattern whose backlog is exact: one more look, not a
/// margin for publishes the harness cannot see (measured on a 10 s
/// outbox-poll run: the drain took 0.62 s with the margin).
pub const EXACT_SECOND_LOOK: Duration = Duration::from_millis(100);

/// How often the drain asks for the backlog and the observer's position.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// How the drain ended.
pub(super) struct Drained {
    /// The drain ended complete or quiet, with the observer at the end of
    /// every partition.
    pub drained: bool,
    /// Events the implementation parked, from its last backlog answer that
    /// carried a count (`None`: it never said).
    pub parked: Option<u64>,
}

/// Heals every fault (a failure goes to `nemesis_errors`), then drains.
pub(super) async fn heal_and_drain(
    cfg: &RunConfig,
    exact_backlog: bool,
    nemesis: &Nemesis,
    running: &Running,
    acked: &Mutex<HashSet<u64>>,
    progress: &Progress,
    nemesis_errors: &mut Vec<String>,
) -> Drained {
    progress.set_phase("healing");
    if let Err(e) = nemesis.heal_all().await {
        nemesis_errors.push(format!("healing: {e:#}"));
    }
    let drain = Drain {
        fleet: &running.fleet,
        observer: &running.observer_stats,
        recorder: &running.recorder,
        acked,
    };
    let final_quiet = if exact_backlog { EXACT_SECOND_LOOK } else { FINAL_QUIET };
    if cfg.restart_before_drain {
        // First what it delivers by itself: the restart comes once it is
        // drained, or has delivered nothing for STUCK_AFTER (it is stuck),
        // so what only the restart delivers was stuck, not merely slow.
        progress.set_phase("draining before the restart");
        drain
            .wait(cfg.drain_timeout, cfg.quiet, final_quiet, Some(STUCK_AFTER))
            .await;
        progress.set_phase("restarting");
        if let Err(e) = restart_before_drain(running, cfg.deploy_grace, cfg.start_timeout).await {
            nemesis_errors.push(format!("restarting before the drain: {e:#}"));
        }
    }
    progress.set_phase("draining");
    drain.wait(cfg.drain_timeout, cfg.quiet, final_quiet, None).await
}

/// With `--restart-before-drain`: no delivery for this long after the heal
/// (and the drain not over) means the implementation is stuck, and the
/// restart comes. Longer than a client's reconnection after a heal takes.
pub const STUCK_AFTER: Duration = Duration::from_secs(10);

/// Restarts the implementation (its relay process first, where it has one)
/// as a deploy would — SIGTERM, `grace` to end by itself (flush its
/// producer, release what it claimed), then SIGKILL — records the `restart`
/// line once the new processes started, and waits until the implementation
/// answers again.
async fn restart_before_drain(running: &Running, grace: Duration, start_timeout: Duration) -> anyhow::Result<()> {
    for p in running.fleet.deploy_order() {
        p.redeploy(grace).await?;
    }
    running.recorder.record(&checkers::HistoryLine::Restart {
        time: running.recorder.now(),
    });
    for p in running.fleet.services() {
        p.wait_ready(start_timeout).await?;
    }
    Ok(())
}

/// What the drain watches.
struct Drain<'a> {
    fleet: &'a Fleet,
    observer: &'a ObserverStats,
    recorder: &'a Recorder,
    acked: &'a Mutex<HashSet<u64>>,
}

impl Drain<'_> {
    /// Waits until complete (holding again `final_quiet` later) or quiet
    /// (see the module doc), at most `timeout`.
    /// With `stuck_after`, it also ends (not drained) once no delivery has
    /// arrived for that long.
    async fn wait(
        &self,
        timeout: Duration,
        quiet: Duration,
        final_quiet: Duration,
        stuck_after: Option<Duration>,
    ) -> Drained {
        let started = Instant::now();
        let quiet_ns = quiet.as_nanos() as i64;
        let final_quiet_ns = final_quiet.as_nanos() as i64;
        let drain_start = self.recorder.now();
        let mut parked = None;
        let mut complete_since: Option<i64> = None;
        let mut behind: Option<String> = None;
        loop {
            // A dead or silent application has an unknown backlog: never drained.
            let running = self.fleet.ensure_running().await;
            // The publishers (relay processes, where they run apart) know the backlog.
            let report = match running {
                Ok(()) => self.fleet.backlog_report().await.ok(),
                Err(_) => None,
            };
            if let Some(Some(b)) = &report {
                // A black box may report `backlog` alone: its `parked` reads as 0.
                parked = Some(u64::try_from(b.parked).unwrap_or(0));
            }
            let backlog = report
                .as_ref()
                .map(|r| r.as_ref().and_then(|b| u64::try_from(b.backlog).ok()).unwrap_or(0));
            let last = self.observer.last_delivery.load(Ordering::Relaxed).max(drain_start);
            let now = self.recorder.now();
            let quiet_enough = now - last >= quiet_ns;
            // Not reset when a check fails in between: an exact backlog (the CDC
            // tailers' WAL marker) answers 0 only every other call. Whatever
            // happened in between is a delivery (which restarts the wait) or a
            // record not yet read (the end-of-log check fails).
            let complete = backlog == Some(0)
                && !quiet_enough
                && self.nothing_pending(report.flatten().and_then(|b| b.in_flight)).await;
            if complete {
                complete_since.get_or_insert(now);
            }
            let held = complete_since.is_some_and(|since| now - since.max(last) >= final_quiet_ns);
            if backlog == Some(0) && (quiet_enough || (complete && held)) {
                match self.observer.caught_up(now).await {
                    Ok(()) => return Drained { drained: true, parked },
                    Err(why) => {
                        if behind.as_deref() != Some(why.as_str()) {
                            tracing::warn!("drain: backlog 0, but {why}; waiting for it");
                            behind = Some(why);
                        }
                    }
                }
            }
            if stuck_after.is_some_and(|s| now - last >= s.as_nanos() as i64) {
                return Drained { drained: false, parked };
            }
            if started.elapsed() > timeout {
                tracing::warn!("drain: gave up after {timeout:?} (backlog {backlog:?})");
                return Drained { drained: false, parked };
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }

    /// No request in flight and every acknowledged op delivered.
    /// `publisher_in_flight` is the publisher's own count (the service's is
    /// asked when the relay runs apart).
    async fn nothing_pending(&self, publisher_in_flight: Option<u64>) -> bool {
        let in_flight = if self.fleet.relays().is_empty() {
            publisher_in_flight
        } else {
            self.fleet.requests_in_flight().await
        };
        if in_flight != Some(0) {
            return false;
        }
        let acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
        let delivered = self.observer.delivered_ops.lock().unwrap_or_else(|e| e.into_inner());
        acked.iter().all(|op| delivered.contains(op))
    }
}
