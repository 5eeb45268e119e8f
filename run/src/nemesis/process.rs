//! The process family: Postgres, Kafka broker 0, the relay and the
//! application killed, frozen or crashed right after their commit, and
//! brought back when the fault stops; the implementation redeployed, or
//! redeployed with its clock skewed. With `--replicas`, a fault aimed at
//! the relay or the application hits one instance, picked by the seed.

use super::{Fault, Target, WhileActive};
use crate::app_process::{AppProcess, CrashPoint, Fleet};
use crate::observer::ObserverStats;
use anyhow::{bail, Result};
use services::{Environment, Service};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use workloads::FaultPhase;

/// How the implementation is redeployed: by a `rolling-restart`, and with
/// its clock skewed by `clock-skew`.
#[derive(Clone, Copy, Debug)]
pub struct Deploys {
    /// SIGTERM to SIGKILL (`--deploy-grace`).
    pub grace: Duration,
    /// How far `clock-skew` shifts an instance's clock (`--clock-offset`;
    /// negative: behind).
    pub clock_offset_ms: i64,
    /// The implementation is a built-in: it takes the offset through its
    /// clock knob, not libfaketime.
    pub builtin: bool,
}

/// Where Debian's libfaketime lives (the `faketime` package; `ci/setup` installs it).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

impl Deploys {
    /// The variables that start a process with its wall clock shifted by
    /// the offset: libfaketime preloaded. Its monotonic clock shifts by the
    /// same constant, which no interval notices; left alone
    /// (`FAKETIME_DONT_FAKE_MONOTONIC`), libfaketime 0.9.10 fails absolute
    /// monotonic sleeps with EINVAL, and a Rust service stopped answering
    /// within seconds. Reaches dynamically linked programs (Rust, Python,
    /// the JVM), not statically linked ones (Go binaries).
    pub fn skewed_clock_env(&self) -> Result<Vec<(String, String)>> {
        if self.builtin {
            // Built-ins write their times from one clock, offset by this
            // knob: under libfaketime, librdkafka's timed waits (C11
            // `cnd_timedwait`, whose deadline comes from the faked clock
            // while the kernel waits on the true one) each ran the offset
            // long, and a graceful shutdown took the whole grace period.
            return Ok(vec![(
                "DUALCHECK_CLOCK_OFFSET_MS".into(),
                self.clock_offset_ms.to_string(),
            )]);
        }
        check_libfaketime()?;
        let preload = match std::env::var("LD_PRELOAD") {
            Ok(p) if !p.is_empty() => format!("{LIBFAKETIME}:{p}"),
            _ => LIBFAKETIME.to_string(),
        };
        Ok(vec![
            ("LD_PRELOAD".into(), preload),
            ("FAKETIME".into(), faketime_offset(self.clock_offset_ms)),
            ("FAKETIME_DONT_RESET".into(), "1".into()),
        ])
    }
}

/// Whether libfaketime is installed, which `clock-skew` needs for a program
/// (`run` asks before anything starts, the fault again when it starts).
pub fn check_libfaketime() -> Result<()> {
    if !Path::new(LIBFAKETIME).exists() {
        bail!(
            "clock-skew on an exec program needs libfaketime ({LIBFAKETIME}): run `bash ci/setup` (Debian: apt-get install faketime), or drop clock-skew"
        );
    }
    Ok(())
}

/// libfaketime's relative offset for `ms` milliseconds (`+2.500`, `-1.000`).
fn faketime_offset(ms: i64) -> String {
    let sign = if ms < 0 { '-' } else { '+' };
    let abs = ms.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}

/// Longest wait of `relay-kill` for a delivery to aim at: longer than a
/// producer takes to reconnect after a Kafka heal (about 1.2 s measured),
/// so a kill starting in the recovery lands on the drain's first batch.
pub const RELAY_KILL_AIM: Duration = Duration::from_secs(2);

/// Brings the relay to where its bookkeeping is at stake, then kills it: a
/// relay with a crash point after Kafka's acknowledgment (`POST
/// /crash-after-ack`) is armed and dies there by itself at its next
/// acknowledged publish; one without is aimed at from outside
/// ([`next_delivery`]). A relay just restarted is asked again until it
/// answers. Either waits at most [`RELAY_KILL_AIM`]: inside a Kafka
/// partition nothing is acknowledged, and the SIGKILL that follows lands
/// wherever the relay is, waiting for Kafka.
async fn aim_and_kill(relay: &AppProcess, observed: &ObserverStats) -> Result<()> {
    let deadline = tokio::time::Instant::now() + RELAY_KILL_AIM;
    loop {
        match relay.arm_crash_after_ack().await {
            Ok(CrashPoint::Armed) => {
                while relay.is_alive() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                if !relay.is_alive() {
                    tracing::info!("relay-kill: the relay died at its crash point after Kafka's acknowledgment");
                }
                break;
            }
            Ok(CrashPoint::Unsupported) => {
                next_delivery(observed, deadline).await;
                break;
            }
            // Not answering yet (restarting): asked again while there is time.
            Err(e) if tokio::time::Instant::now() + Duration::from_millis(100) < deadline => {
                tracing::debug!("relay-kill: {e:#}; asking again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                tracing::warn!("relay-kill: {e:#}; killing it now");
                break;
            }
        }
    }
    relay.kill().await
}

/// Waits until the observer sees a new delivery, at most until `deadline`:
/// a relay that just had records delivered is most likely between Kafka's
/// acknowledgment and recording it (waiting for the rest of its batch's
/// reports), where its own bookkeeping is at stake.
async fn next_delivery(observed: &ObserverStats, deadline: tokio::time::Instant) {
    let seen = observed.deliveries.load(Ordering::Relaxed);
    while observed.deliveries.load(Ordering::Relaxed) == seen && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Injects the process faults.
pub(super) struct ProcessFaults {
    env: Arc<Environment>,
    /// The implementation's instances and relay processes.
    fleet: Arc<Fleet>,
    /// The observer's counters: `relay-kill` aims at the next delivery.
    observed: Arc<ObserverStats>,
    restart_timeout: Duration,
    /// The run's seed: which instance a fault hits.
    seed: u64,
    /// Faults aimed at one instance so far (each picks anew, by the seed).
    picks: AtomicU64,
    deploys: Deploys,
    crash_loop: WhileActive,
    /// The instances the current `relay-kill`, `crash-after-commit` and
    /// `clock-skew` hit, to heal the same.
    hit: Mutex<HashMap<Fault, Arc<AppProcess>>>,
    /// The task of the current `relay-kill`, aiming and then killing.
    relay_kill: Mutex<Option<tokio::task::JoinHandle<Result<()>>>>,
}

impl ProcessFaults {
    pub(super) fn new(
        env: Arc<Environment>,
        fleet: Arc<Fleet>,
        observed: Arc<ObserverStats>,
        restart_timeout: Duration,
        seed: u64,
        deploys: Deploys,
    ) -> Self {
        ProcessFaults {
            env,
            fleet,
            observed,
            restart_timeout,
            seed,
            picks: AtomicU64::new(0),
            deploys,
            crash_loop: WhileActive::default(),
            hit: Mutex::new(HashMap::new()),
            relay_kill: Mutex::new(None),
        }
    }

    /// The process a fault holds while in effect.
    pub(super) fn target(&self, fault: Fault) -> Option<Target> {
        use Fault::*;
        match fault {
            PgKill | PgPause => Some(Target::Postgres),
            KafkaKill | KafkaPause => Some(Target::KafkaBroker0),
            RelayKill if !self.fleet.relays().is_empty() => Some(Target::Relay),
            RelayKill | CrashAfterCommit | RollingRestart => Some(Target::Application),
            // The skewed clock stays through restarts: it holds nothing.
            _ => None,
        }
    }

    /// Picks the instance (or relay process) `fault` hits, by the seed, and
    /// remembers it for the fault's stop.
    fn hit(&self, fault: Fault, relay: bool) -> Arc<AppProcess> {
        let nth = self.picks.fetch_add(1, Ordering::Relaxed);
        let p = if relay {
            self.fleet.pick_publisher(self.seed, nth)
        } else {
            self.fleet.pick_service(self.seed, nth)
        }
        .clone();
        self.hit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fault, p.clone());
        p
    }

    /// The instance `fault` hit when it started.
    fn was_hit(&self, fault: Fault) -> Result<Arc<AppProcess>> {
        self.hit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fault)
            .ok_or_else(|| anyhow::anyhow!("{fault} stopped but never started"))
    }

    /// Each process fault's start and stop, side by side.
    pub(super) async fn apply(&self, fault: Fault, phase: FaultPhase) -> Result<()> {
        use Fault::*;
        use FaultPhase::{Start, Stop};
        let t = self.restart_timeout;
        match (fault, phase) {
            (PgKill, Start) => self.env.kill(Service::Postgres).await,
            (PgKill, Stop) => self.env.restart(Service::Postgres, t).await,
            (KafkaKill, Start) => self.env.kill(Service::Kafka(0)).await,
            (KafkaKill, Stop) => self.env.restart(Service::Kafka(0), t).await,
            // Patterns whose relay runs apart lose a relay process alone; the
            // others a whole instance.
            (RelayKill, Start) => {
                let relay = self.hit(fault, true);
                self.start_relay_kill(relay);
                Ok(())
            }
            (RelayKill, Stop) => {
                self.relay_killed().await?;
                self.was_hit(fault)?.restart().await
            }

            (PgPause, Start) => self.env.pause(Service::Postgres).await,
            (PgPause, Stop) => self.env.resume(Service::Postgres).await,
            (KafkaPause, Start) => self.env.pause(Service::Kafka(0)).await,
            (KafkaPause, Stop) => self.env.resume(Service::Kafka(0)).await,

            (CrashAfterCommit, Start) => {
                let app = self.hit(fault, false);
                self.crash_loop.start(|stop| crash_loop(app, stop, t));
                Ok(())
            }
            (CrashAfterCommit, Stop) => {
                self.crash_loop.stop().await;
                // Restarting also disarms a crash point that never fired: after
                // healing, no op may crash the application.
                self.was_hit(fault)?.restart().await
            }

            // The deploy happens at the start; by the stop every instance
            // runs again and there is nothing left to heal.
            (RollingRestart, Start) => self.rolling_restart().await,
            (RollingRestart, Stop) => Ok(()),

            // One instance redeployed with its clock off, then redeployed true.
            (ClockSkew, Start) => {
                let env = self.deploys.skewed_clock_env()?;
                let app = self.hit(fault, false);
                app.redeploy_with_env(self.deploys.grace, env).await?;
                app.wait_ready(t).await
            }
            (ClockSkew, Stop) => {
                let app = self.was_hit(fault)?;
                app.redeploy_with_env(self.deploys.grace, Vec::new()).await?;
                app.wait_ready(t).await
            }

            (other, _) => bail!("{other} is a {} fault, not a process one", other.family()),
        }
    }

    /// Starts `relay-kill` on `relay`: the kill comes from a task of its own
    /// ([`aim_and_kill`]), so that the faults scheduled meanwhile (a Kafka
    /// heal above all, after which the first acknowledgments come) happen on
    /// time while it waits; the fault's stop waits for that task.
    fn start_relay_kill(&self, relay: Arc<AppProcess>) {
        let observed = self.observed.clone();
        let task = tokio::spawn(async move { aim_and_kill(&relay, &observed).await });
        let previous = self.relay_kill.lock().unwrap_or_else(|e| e.into_inner()).replace(task);
        if let Some(previous) = previous {
            previous.abort();
        }
    }

    /// Waits until the kill of the current `relay-kill` happened.
    async fn relay_killed(&self) -> Result<()> {
        let task = self.relay_kill.lock().unwrap_or_else(|e| e.into_inner()).take();
        match task {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }

    /// A deploy: each process of the implementation in turn (the relay
    /// processes first, where they run apart) gets SIGTERM, the grace period to
    /// end by itself, SIGKILL if it did not, and is started again; the next
    /// goes only once it answers. What it exercises is the graceful shutdown:
    /// sends in flight, the producer's flush, outbox rows claimed.
    async fn rolling_restart(&self) -> Result<()> {
        for p in self.fleet.deploy_order() {
            p.redeploy(self.deploys.grace).await?;
            p.wait_ready(self.restart_timeout).await?;
        }
        Ok(())
    }

    /// Makes sure every process of the implementation runs and answers, its
    /// clock true.
    pub(super) async fn heal_all(&self) -> Result<()> {
        // A kill still aiming must not strike after the heal.
        if let Some(task) = self.relay_kill.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
        let skewed = self
            .hit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&Fault::ClockSkew);
        if let Some(app) = skewed {
            app.redeploy_with_env(self.deploys.grace, Vec::new()).await?;
        }
        for p in self.fleet.services().iter().chain(self.fleet.relays()) {
            p.ensure_running().await?;
            p.wait_ready(self.restart_timeout).await?;
        }
        Ok(())
    }
}

/// While the fault is active: arm the crash point, wait for the process to
/// die on its next commit, restart it (as a supervisor would), pause, repeat.
/// A program without `POST /crash-after-commit` is SIGKILLed right after its
/// next acknowledged op instead.
async fn crash_loop(app: Arc<AppProcess>, mut stop: watch::Receiver<bool>, restart_timeout: Duration) {
    loop {
        if *stop.borrow() {
            return;
        }
        match app.arm_crash_after_commit().await {
            Ok(CrashPoint::Armed) => {}
            Ok(CrashPoint::Unsupported) => {
                // A black box without a crash point: SIGKILL it the moment an
                // op is acknowledged, i.e. just after a commit, when its event
                // is most likely not published yet (documented in the README).
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = app.next_ok() => {}
                }
                if let Err(e) = app.kill().await {
                    tracing::warn!("crash-after-commit (SIGKILL fallback): {e:#}");
                }
            }
            Err(e) => tracing::warn!("crash-after-commit: {e:#}"),
        }
        // Wait for the crash (or the stop).
        loop {
            if !app.is_alive() {
                break;
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        if let Err(e) = app.restart().await {
            tracing::warn!("restarting after crash-after-commit: {e:#}");
        }
        // Arm again only once it answers (a dependency may be down meanwhile).
        tokio::select! {
            _ = stop.changed() => return,
            r = app.wait_ready(restart_timeout) => if let Err(e) = r {
                tracing::warn!("crash-after-commit: {e:#}");
            },
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::faketime_offset;

    #[test]
    fn offsets_read_as_libfaketime_expects() {
        assert_eq!(faketime_offset(5000), "+5.000");
        assert_eq!(faketime_offset(-2500), "-2.500");
        assert_eq!(faketime_offset(0), "+0.000");
    }
}
