//! The nemesis: every fault DESIGN.md names, each one variant whose start and
//! stop sit side by side in [`Nemesis::apply`]. Starts and stops are recorded
//! as `nemesis` lines; [`Nemesis::heal_all`] undoes whatever is still active.

use crate::app_process::{AppProcess, CrashPoint};
use crate::env::toxiproxy::{Stream, Toxic};
use crate::env::{Environment, Service};
use crate::recorder::Recorder;
use anyhow::{bail, Context, Result};
use checkers::{Event, Phase};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// A fault the nemesis can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Postgres link down (Toxiproxy).
    PgPartition,
    /// Kafka link down, every broker (Toxiproxy).
    KafkaPartition,
    /// Postgres link slow.
    PgLatency,
    /// Kafka link slow.
    KafkaLatency,
    /// Postgres connections reset.
    PgReset,
    /// Kafka connections reset.
    KafkaReset,
    /// Kafka link bandwidth-limited.
    KafkaSlow,
    /// Kafka link silently stops passing data.
    KafkaTimeout,
    /// A column added to the business table while the workload runs.
    SchemaChange,
    /// Rows written to a `noise` table that must never produce events.
    Noise,
    /// Postgres SIGKILLed, restarted at stop.
    PgKill,
    /// Kafka broker 0 SIGKILLed, restarted at stop.
    KafkaKill,
    /// The implementation's process (and its relay) SIGKILLed, restarted at stop.
    RelayKill,
    /// Postgres frozen (SIGSTOP/SIGCONT).
    PgPause,
    /// Kafka broker 0 frozen.
    KafkaPause,
    /// The leader of partition 0 SIGKILLed (3 brokers), restarted at stop.
    KafkaLeader,
    /// The application dies between its commit and its publish, again and again, and is restarted.
    CrashAfterCommit,
}

impl Fault {
    /// Every fault, in `dualcheck list` order.
    pub const ALL: [Fault; 17] = [
        Fault::PgPartition,
        Fault::KafkaPartition,
        Fault::PgLatency,
        Fault::KafkaLatency,
        Fault::PgReset,
        Fault::KafkaReset,
        Fault::KafkaSlow,
        Fault::KafkaTimeout,
        Fault::SchemaChange,
        Fault::Noise,
        Fault::PgKill,
        Fault::KafkaKill,
        Fault::RelayKill,
        Fault::PgPause,
        Fault::KafkaPause,
        Fault::KafkaLeader,
        Fault::CrashAfterCommit,
    ];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Fault::PgPartition => "pg-partition",
            Fault::KafkaPartition => "kafka-partition",
            Fault::PgLatency => "pg-latency",
            Fault::KafkaLatency => "kafka-latency",
            Fault::PgReset => "pg-reset",
            Fault::KafkaReset => "kafka-reset",
            Fault::KafkaSlow => "kafka-slow",
            Fault::KafkaTimeout => "kafka-timeout",
            Fault::SchemaChange => "schema-change",
            Fault::Noise => "noise",
            Fault::PgKill => "pg-kill",
            Fault::KafkaKill => "kafka-kill",
            Fault::RelayKill => "relay-kill",
            Fault::PgPause => "pg-pause",
            Fault::KafkaPause => "kafka-pause",
            Fault::KafkaLeader => "kafka-leader",
            Fault::CrashAfterCommit => "crash-after-commit",
        }
    }

    /// One line of help.
    pub fn help(self) -> &'static str {
        match self {
            Fault::PgPartition => "Postgres link down (Toxiproxy)",
            Fault::KafkaPartition => "Kafka link down, every broker (Toxiproxy)",
            Fault::PgLatency => "300 ms ± 100 ms added on the Postgres link",
            Fault::KafkaLatency => "300 ms ± 100 ms added on the Kafka link",
            Fault::PgReset => "Postgres connections reset (reset_peer)",
            Fault::KafkaReset => "Kafka connections reset (reset_peer)",
            Fault::KafkaSlow => "Kafka link limited to 16 KB/s",
            Fault::KafkaTimeout => "Kafka link stops passing data, connections closed after 2 s",
            Fault::SchemaChange => {
                "ALTER TABLE adds a column to the business table (and to the outbox table a CDC pattern streams) mid-run"
            }
            Fault::Noise => {
                "rows written to a `noise` table (ops never invoked) while active: any event from it is `unexpected`"
            }
            Fault::PgKill => "Postgres SIGKILLed; restarted when the fault stops",
            Fault::KafkaKill => "Kafka broker 0 SIGKILLed; restarted when the fault stops",
            Fault::RelayKill => {
                "the relay SIGKILLed (the CDC tailer or Kafka Connect process; else the implementation process, relay included); restarted when the fault stops"
            }
            Fault::PgPause => "Postgres frozen with SIGSTOP; SIGCONT when the fault stops",
            Fault::KafkaPause => "Kafka broker 0 frozen with SIGSTOP; SIGCONT when the fault stops",
            Fault::KafkaLeader => "leader of partition 0 SIGKILLed (needs --brokers 3; chosen automatically)",
            Fault::CrashAfterCommit => {
                "the application dies after its commit, before its publish (repeatedly; exec programs without POST /crash-after-commit are SIGKILLed right after an acknowledged op)"
            }
        }
    }

    /// Looks a fault up by CLI name.
    pub fn from_name(name: &str) -> Result<Fault> {
        Fault::ALL.iter().copied().find(|f| f.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
            anyhow::anyhow!("unknown fault `{name}`; faults are: {}", names.join(", "))
        })
    }

    /// Parses a comma-separated list (`""` or `none` = no faults).
    pub fn parse_list(list: &str) -> Result<Vec<Fault>> {
        let mut out = BTreeSet::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty() && *s != "none") {
            out.insert(Fault::from_name(name)?);
        }
        Ok(out.into_iter().collect())
    }

    /// Brokers the fault needs.
    pub fn min_brokers(self) -> usize {
        if self == Fault::KafkaLeader {
            3
        } else {
            1
        }
    }
}

const TOXIC: &str = "dualcheck-nemesis";

/// Injects and heals faults on one run's environment and implementation.
pub struct Nemesis {
    env: Arc<Environment>,
    app: Arc<AppProcess>,
    /// The relay process of patterns whose relay runs apart (`relay-kill` target).
    relay: Option<Arc<AppProcess>>,
    recorder: Arc<Recorder>,
    topic: String,
    /// Direct URL of the run's database (for schema changes).
    database_direct_url: String,
    /// Tables besides `orders` whose rows the implementation streams (schema-change alters them too).
    streamed_tables: Vec<String>,
    /// Currently active faults.
    active: Mutex<BTreeSet<Fault>>,
    /// Broker killed by `kafka-leader`, to restart.
    killed_leader: Mutex<Option<usize>>,
    schema_changes: AtomicU32,
    crash_loop: Mutex<Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>>,
    noise_writer: Mutex<Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>>,
    restart_timeout: Duration,
}

impl Nemesis {
    /// A nemesis for one run.
    pub fn new(
        env: Arc<Environment>,
        app: Arc<AppProcess>,
        relay: Option<Arc<AppProcess>>,
        recorder: Arc<Recorder>,
        topic: &str,
        database_direct_url: &str,
        streamed_tables: &[&str],
    ) -> Nemesis {
        Nemesis {
            env,
            app,
            relay,
            recorder,
            topic: topic.to_string(),
            database_direct_url: database_direct_url.to_string(),
            streamed_tables: streamed_tables
                .iter()
                .filter(|t| **t != "orders")
                .map(|t| t.to_string())
                .collect(),
            active: Mutex::new(BTreeSet::new()),
            killed_leader: Mutex::new(None),
            schema_changes: AtomicU32::new(0),
            crash_loop: Mutex::new(None),
            noise_writer: Mutex::new(None),
            restart_timeout: Duration::from_secs(90),
        }
    }

    /// Faults active now.
    pub fn active(&self) -> Vec<Fault> {
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }

    /// Starts `fault` and records it.
    pub async fn start(&self, fault: Fault) -> Result<()> {
        self.recorder.record(&Event::Nemesis {
            fault: fault.name().into(),
            phase: Phase::Start,
            time: self.recorder.now(),
        });
        self.active.lock().unwrap_or_else(|e| e.into_inner()).insert(fault);
        self.apply(fault, Phase::Start)
            .await
            .with_context(|| format!("starting fault {}", fault.name()))
    }

    /// Stops `fault` and records it.
    pub async fn stop(&self, fault: Fault) -> Result<()> {
        let r = self
            .apply(fault, Phase::Stop)
            .await
            .with_context(|| format!("healing fault {}", fault.name()));
        self.active.lock().unwrap_or_else(|e| e.into_inner()).remove(&fault);
        self.recorder.record(&Event::Nemesis {
            fault: fault.name().into(),
            phase: Phase::Stop,
            time: self.recorder.now(),
        });
        r
    }

    /// Stops every active fault, then heals every proxy and makes sure every
    /// process runs; returns the first error after trying everything.
    pub async fn heal_all(&self) -> Result<()> {
        let mut first_error = None;
        for fault in self.active() {
            if let Err(e) = self.stop(fault).await {
                tracing::warn!("{e:#}");
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = self.env.heal_all().await {
            first_error.get_or_insert(e);
        }
        let app_up = async {
            for p in std::iter::once(&self.app).chain(self.relay.as_ref()) {
                p.ensure_running().await?;
                p.wait_ready(self.restart_timeout).await?;
            }
            Ok::<(), anyhow::Error>(())
        };
        if let Err(e) = app_up.await {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn toxic_on(&self, proxies: &[String], toxic: Toxic) -> Result<()> {
        for p in proxies {
            self.env
                .toxiproxy
                .add_toxic(p, TOXIC, Stream::Downstream, &toxic)
                .await?;
        }
        Ok(())
    }

    async fn toxic_off(&self, proxies: &[String]) -> Result<()> {
        for p in proxies {
            self.env.toxiproxy.remove_toxic(p, TOXIC).await?;
        }
        Ok(())
    }

    /// Each fault's start and stop, side by side.
    async fn apply(&self, fault: Fault, phase: Phase) -> Result<()> {
        use Fault::*;
        use Phase::{Start, Stop};
        let pg = std::slice::from_ref(&self.env.postgres_proxy);
        let kafka = &self.env.kafka_proxies;
        let latency = Toxic::Latency {
            latency_ms: 300,
            jitter_ms: 100,
        };
        let t = self.restart_timeout;
        match (fault, phase) {
            (PgPartition, Start) => self.env.toxiproxy.down(&self.env.postgres_proxy).await,
            (PgPartition, Stop) => self.env.toxiproxy.up(&self.env.postgres_proxy).await,

            (KafkaPartition, Start) => {
                for p in kafka {
                    self.env.toxiproxy.down(p).await?;
                }
                Ok(())
            }
            (KafkaPartition, Stop) => {
                for p in kafka {
                    self.env.toxiproxy.up(p).await?;
                }
                Ok(())
            }

            (PgLatency, Start) => self.toxic_on(pg, latency).await,
            (PgLatency, Stop) => self.toxic_off(pg).await,
            (KafkaLatency, Start) => self.toxic_on(kafka, latency).await,
            (KafkaLatency, Stop) => self.toxic_off(kafka).await,

            (PgReset, Start) => self.toxic_on(pg, Toxic::ResetPeer { timeout_ms: 100 }).await,
            (PgReset, Stop) => self.toxic_off(pg).await,
            (KafkaReset, Start) => self.toxic_on(kafka, Toxic::ResetPeer { timeout_ms: 100 }).await,
            (KafkaReset, Stop) => self.toxic_off(kafka).await,

            (KafkaSlow, Start) => self.toxic_on(kafka, Toxic::Bandwidth { rate_kb_s: 16 }).await,
            (KafkaSlow, Stop) => self.toxic_off(kafka).await,
            (KafkaTimeout, Start) => self.toxic_on(kafka, Toxic::Timeout { timeout_ms: 2000 }).await,
            (KafkaTimeout, Stop) => self.toxic_off(kafka).await,

            (SchemaChange, Start) => {
                let n = self.schema_changes.fetch_add(1, Ordering::Relaxed);
                let c = crate::env::postgres::connect(&self.database_direct_url).await?;
                c.batch_execute(&format!(
                    "SET lock_timeout = '5s'; ALTER TABLE orders ADD COLUMN IF NOT EXISTS nemesis_extra_{n} text DEFAULT 'added mid-run'"
                ))
                .await
                .context("ALTER TABLE orders ADD COLUMN (the business table must be called `orders`)")?;
                // The tables the implementation streams change shape too (those that exist).
                for table in &self.streamed_tables {
                    c.batch_execute(&format!(
                        "DO $$ BEGIN
                           IF to_regclass('public.{table}') IS NOT NULL THEN
                             ALTER TABLE {table} ADD COLUMN IF NOT EXISTS nemesis_extra_{n} text;
                           END IF;
                         END $$"
                    ))
                    .await
                    .with_context(|| format!("ALTER TABLE {table} (a table the implementation streams)"))?;
                }
                Ok(())
            }
            (SchemaChange, Stop) => Ok(()), // the column stays, as in production

            (Noise, Start) => {
                let c = crate::env::postgres::connect(&self.database_direct_url).await?;
                c.batch_execute(NOISE_DDL).await.context("creating the noise table")?;
                let (stop_tx, stop_rx) = watch::channel(false);
                let task = tokio::spawn(write_noise(c, stop_rx));
                *self.noise_writer.lock().unwrap_or_else(|e| e.into_inner()) = Some((stop_tx, task));
                Ok(())
            }
            (Noise, Stop) => {
                let running = self.noise_writer.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some((stop_tx, task)) = running {
                    let _ = stop_tx.send(true);
                    let _ = task.await;
                }
                Ok(())
            }

            (PgKill, Start) => self.env.kill(Service::Postgres).await,
            (PgKill, Stop) => self.env.restart(Service::Postgres, t).await,
            (KafkaKill, Start) => self.env.kill(Service::Kafka(0)).await,
            (KafkaKill, Stop) => self.env.restart(Service::Kafka(0), t).await,
            (RelayKill, Start) => self.relay.as_ref().unwrap_or(&self.app).kill().await,
            (RelayKill, Stop) => self.relay.as_ref().unwrap_or(&self.app).restart().await,

            (PgPause, Start) => self.env.pause(Service::Postgres).await,
            (PgPause, Stop) => self.env.resume(Service::Postgres).await,
            (KafkaPause, Start) => self.env.pause(Service::Kafka(0)).await,
            (KafkaPause, Stop) => self.env.resume(Service::Kafka(0)).await,

            (KafkaLeader, Start) => {
                if self.env.brokers() < 3 {
                    bail!("kafka-leader needs 3 brokers (run with --brokers 3)");
                }
                let (bootstrap, topic) = (self.env.kafka_direct_bootstrap.clone(), self.topic.clone());
                let leaders =
                    tokio::task::spawn_blocking(move || crate::env::kafka::partition_leaders(&bootstrap, &topic))
                        .await??;
                let leader = *leaders.first().context("the topic has no partition")?;
                if leader < 0 {
                    bail!("partition 0 of {} has no leader right now", self.topic);
                }
                *self.killed_leader.lock().unwrap_or_else(|e| e.into_inner()) = Some(leader as usize);
                self.env.kill(Service::Kafka(leader as usize)).await
            }
            (KafkaLeader, Stop) => {
                let killed = self.killed_leader.lock().unwrap_or_else(|e| e.into_inner()).take();
                match killed {
                    Some(b) => self.env.restart(Service::Kafka(b), t).await,
                    None => Ok(()),
                }
            }

            (CrashAfterCommit, Start) => {
                let (stop_tx, stop_rx) = watch::channel(false);
                let task = tokio::spawn(crash_loop(self.app.clone(), stop_rx, t));
                *self.crash_loop.lock().unwrap_or_else(|e| e.into_inner()) = Some((stop_tx, task));
                Ok(())
            }
            (CrashAfterCommit, Stop) => {
                let running = self.crash_loop.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some((stop_tx, task)) = running {
                    let _ = stop_tx.send(true);
                    let _ = task.await;
                }
                // Restarting also disarms a crash point that never fired: after
                // healing, no op may crash the application.
                self.app.restart().await
            }
        }
    }
}

/// The table `noise` writes: shaped like `orders`, so a pipeline that
/// captures every table would publish its rows as events of ops never invoked.
const NOISE_DDL: &str = "CREATE TABLE IF NOT EXISTS noise (
    op bigint NOT NULL,
    key text NOT NULL,
    seq bigint NOT NULL,
    payload text
)";

/// Inserts a noise row every 20 ms (op ids far above any workload's) until stopped.
async fn write_noise(c: tokio_postgres::Client, mut stop: watch::Receiver<bool>) {
    let mut n: i64 = 0;
    loop {
        n += 1;
        let op = (1i64 << 50) + n;
        let r = c
            .execute(
                "INSERT INTO noise (op, key, seq, payload) VALUES ($1, $2, $3, 'noise: never an event')",
                &[&op, &format!("noise{}", n % 16), &n],
            )
            .await;
        if let Err(e) = r {
            tracing::debug!("noise: {e}");
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
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
