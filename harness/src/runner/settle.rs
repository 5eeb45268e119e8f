//! Phase 4, heal and drain: every fault is healed, then the run waits until
//! the implementation has nothing left to publish and deliveries have stopped.
//! (The bench's relay publish rate is [`crate::relay_rate`], another thing.)
//!
//! The drain ends the first way that holds:
//!
//! - **complete**: the publisher's backlog is exactly 0, the implementation
//!   has no request in flight (`in_flight` of `GET /backlog` is 0: no request
//!   will still commit or publish), every acknowledged op has been delivered,
//!   and the observer has read every partition up to its high watermark (no
//!   record written to Kafka is still unread) — checked again at least
//!   [`FINAL_QUIET`] after it first held, with no delivery in between: a
//!   publish still in flight inside a producer (a retry after the heal, a
//!   duplicate) lands in the topic within it, and the watermark check then
//!   sees it unread;
//! - **quiet**: the backlog is 0 and no delivery has arrived for the run's
//!   quiet period (3 s; as before, for programs that do not report
//!   `in_flight`, runs with acknowledged ops never delivered — `lost` — and
//!   transactional topics, whose commit markers keep the observer's offsets
//!   short of the watermark);
//! - **timeout**: neither within `--drain-timeout`: not drained.

use super::start::Running;
use super::workload::Progress;
use super::RunConfig;
use crate::app_process::AppProcess;
use crate::nemesis::Nemesis;
use crate::observer::ObserverStats;
use crate::recorder::Recorder;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the complete condition must hold, with no new delivery, before the
/// drain ends on it.
pub const FINAL_QUIET: Duration = Duration::from_millis(500);

/// Heals every fault (a failure goes to `nemesis_errors`), then drains.
/// Returns whether the drain ended with nothing left.
pub(super) async fn heal_and_drain(
    cfg: &RunConfig,
    nemesis: &Nemesis,
    running: &Running,
    acked: &Mutex<HashSet<u64>>,
    progress: &Progress,
    nemesis_errors: &mut Vec<String>,
) -> bool {
    progress.set_phase("healing");
    if let Err(e) = nemesis.heal_all().await {
        nemesis_errors.push(format!("healing: {e:#}"));
    }
    progress.set_phase("draining");
    let watermarks = Watermarks::new(&running.kafka_direct_bootstrap, &running.topic, running.partitions);
    Drain {
        app: &running.app,
        relay: running.relay.as_deref(),
        observer: &running.observer_stats,
        recorder: &running.recorder,
        acked,
        watermarks,
    }
    .wait(cfg.drain_timeout, cfg.quiet)
    .await
}

/// What the drain watches.
struct Drain<'a> {
    app: &'a AppProcess,
    relay: Option<&'a AppProcess>,
    observer: &'a ObserverStats,
    recorder: &'a Recorder,
    acked: &'a Mutex<HashSet<u64>>,
    /// `None` when no client could be made: the complete condition never holds.
    watermarks: Option<Watermarks>,
}

impl Drain<'_> {
    /// Waits until complete (see the module doc) or quiet, at most `timeout`.
    /// Returns whether it got there.
    async fn wait(&self, timeout: Duration, quiet: Duration) -> bool {
        let started = Instant::now();
        let quiet_ns = quiet.as_nanos() as i64;
        let final_quiet_ns = FINAL_QUIET.as_nanos() as i64;
        let drain_start = self.recorder.now();
        // The relay process, where there is one, knows the backlog.
        let publisher = self.relay.unwrap_or(self.app);
        let mut complete_since: Option<i64> = None;
        loop {
            // A dead or silent application has an unknown backlog: never drained.
            let running = match self.relay {
                Some(r) => self.app.ensure_running().await.and(r.ensure_running().await),
                None => self.app.ensure_running().await,
            };
            let report = match running {
                Ok(()) => publisher.backlog_report().await.ok(),
                Err(_) => None,
            };
            let backlog = report
                .as_ref()
                .map(|r| r.as_ref().and_then(|b| u64::try_from(b.backlog).ok()).unwrap_or(0));
            let last = self.observer.last_delivery.load(Ordering::Relaxed).max(drain_start);
            let now = self.recorder.now();
            if backlog == Some(0) && now - last >= quiet_ns {
                return true;
            }
            // Not reset when a check fails in between: an exact backlog (the CDC
            // tailers' WAL marker) answers 0 only every other call. Whatever
            // happened in between is a delivery (which restarts the wait) or a
            // record not yet read (the watermark check fails).
            if backlog == Some(0) && self.complete(report.flatten().and_then(|b| b.in_flight)).await {
                let since = *complete_since.get_or_insert(now);
                if now - since.max(last) >= final_quiet_ns {
                    return true;
                }
            }
            if started.elapsed() > timeout {
                tracing::warn!("drain: gave up after {timeout:?} (backlog {backlog:?})");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// No request in flight, every acknowledged op delivered, every record read.
    /// `publisher_in_flight` is the publisher's own count (the service's is asked
    /// when the relay runs apart).
    async fn complete(&self, publisher_in_flight: Option<u64>) -> bool {
        let in_flight = match self.relay {
            Some(_) => match self.app.backlog_report().await {
                Ok(Some(b)) => b.in_flight,
                _ => None,
            },
            None => publisher_in_flight,
        };
        if in_flight != Some(0) {
            return false;
        }
        let all_delivered = {
            let acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
            let delivered = self.observer.delivered_ops.lock().unwrap_or_else(|e| e.into_inner());
            acked.iter().all(|op| delivered.contains(op))
        };
        if !all_delivered {
            return false;
        }
        match &self.watermarks {
            Some(w) => w.read_up_to_the_end(self.observer).await,
            None => false,
        }
    }
}

/// The high watermarks of the run's topic, to tell whether the observer has
/// read everything written to it.
struct Watermarks {
    consumer: Arc<BaseConsumer>,
    topic: String,
    partitions: i32,
}

impl Watermarks {
    fn new(bootstrap: &str, topic: &str, partitions: i32) -> Option<Watermarks> {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("log_level", "3")
            .create()
            .map_err(|e| tracing::warn!("drain: no client for the watermarks: {e}"))
            .ok()?;
        Some(Watermarks {
            consumer: Arc::new(consumer),
            topic: topic.to_string(),
            partitions,
        })
    }

    /// Whether the observer's next offset has reached the high watermark of
    /// every partition (false when a watermark cannot be read).
    async fn read_up_to_the_end(&self, observer: &ObserverStats) -> bool {
        let (consumer, topic, partitions) = (self.consumer.clone(), self.topic.clone(), self.partitions);
        let highs = tokio::task::spawn_blocking(move || {
            (0..partitions)
                .map(|p| {
                    consumer
                        .fetch_watermarks(&topic, p, Duration::from_secs(1))
                        .map(|(_, high)| high)
                })
                .collect::<Result<Vec<i64>, _>>()
        })
        .await;
        let Ok(Ok(highs)) = highs else {
            return false;
        };
        let read = observer.next_offsets.lock().unwrap_or_else(|e| e.into_inner());
        highs.iter().enumerate().all(|(p, &high)| {
            high <= 0
                || read
                    .get(&(self.topic.clone(), p as i32))
                    .is_some_and(|&next| next >= high)
        })
    }
}
