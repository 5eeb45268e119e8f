//! Phase 4, heal and drain: every fault is healed, then the run waits until
//! the implementation has nothing left to publish and deliveries have stopped.
//! (The bench's relay publish rate is [`crate::relay_rate`], another thing.)

use super::start::Running;
use super::workload::Progress;
use super::RunConfig;
use crate::app_process::AppProcess;
use crate::nemesis::Nemesis;
use crate::observer::ObserverStats;
use crate::recorder::Recorder;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How the drain ended.
pub(super) struct Drained {
    /// The drain ended with a backlog of 0, a quiet period and the observer at
    /// the end of every partition.
    pub drained: bool,
    /// Events the implementation parked, from its last backlog answer that
    /// carried a count (`None`: it never said).
    pub parked: Option<u64>,
}

/// Heals every fault (a failure goes to `nemesis_errors`), then drains.
pub(super) async fn heal_and_drain(
    cfg: &RunConfig,
    nemesis: &Nemesis,
    running: &Running,
    progress: &Progress,
    nemesis_errors: &mut Vec<String>,
) -> Drained {
    progress.set_phase("healing");
    if let Err(e) = nemesis.heal_all().await {
        nemesis_errors.push(format!("healing: {e:#}"));
    }
    progress.set_phase("draining");
    wait_until_drained(
        &running.app,
        running.relay.as_deref(),
        &running.observer_stats,
        &running.recorder,
        cfg.drain_timeout,
        cfg.quiet,
    )
    .await
}

/// Waits until the implementation reports no backlog, no delivery has arrived
/// for `quiet`, and the observer has read every partition to its end, at
/// most `timeout`.
async fn wait_until_drained(
    app: &AppProcess,
    relay: Option<&AppProcess>,
    observer: &ObserverStats,
    recorder: &Recorder,
    timeout: Duration,
    quiet: Duration,
) -> Drained {
    let started = Instant::now();
    let quiet_ns = quiet.as_nanos() as i64;
    let drain_start = recorder.now();
    // The relay process, where there is one, knows the backlog.
    let publisher = relay.unwrap_or(app);
    let mut parked = None;
    let mut behind: Option<String> = None;
    loop {
        // A dead or silent application has an unknown backlog: never drained.
        let running = match relay {
            Some(r) => app.ensure_running().await.and(r.ensure_running().await),
            None => app.ensure_running().await,
        };
        let backlog = match running.and(Ok(publisher.backlog_report().await)) {
            Ok(Ok(Some(b))) => {
                // A black box may report `backlog` alone: its `parked` reads as 0.
                parked = Some(u64::try_from(b.parked).unwrap_or(0));
                Some(u64::try_from(b.backlog).unwrap_or(0))
            }
            Ok(Ok(None)) => Some(0),
            _ => None,
        };
        let last = observer.last_delivery.load(Ordering::Relaxed).max(drain_start);
        if backlog == Some(0) && recorder.now() - last >= quiet_ns {
            // Nothing left to publish and nothing new for a while, but the
            // observer may be behind (still reconnecting after a broker kill):
            // events published at the very end would be judged lost.
            match observer.caught_up(recorder.now()).await {
                Ok(()) => return Drained { drained: true, parked },
                Err(why) => {
                    if behind.as_deref() != Some(why.as_str()) {
                        tracing::warn!("drain: backlog 0, but {why}; waiting for it");
                        behind = Some(why);
                    }
                }
            }
        }
        if started.elapsed() > timeout {
            tracing::warn!("drain: gave up after {timeout:?} (backlog {backlog:?})");
            return Drained { drained: false, parked };
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
