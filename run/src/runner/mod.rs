//! One run, Jepsen-style: start the environment and the implementation, run
//! the seeded workload while the nemesis follows its schedule, record
//! everything, heal, drain, read what the database committed, and check.
//!
//! [`run`] goes through its phases in order, one module each:
//!
//! 1. `start`: the services ([`run`] itself), the run's database and topic,
//!    the history, the observer, the implementation (and its relay process);
//! 2. `workload`: the workers submitting the seeded ops (with the progress line);
//! 3. `fault_schedule`: the nemesis following the seeded schedule, side by side;
//! 4. `settle`: heal every fault, then drain until nothing is left to publish;
//! 5. `ground_truth`: read what the database committed, then `trail`: stop
//!    the observer (the history is complete), check the history and gather
//!    each anomaly example's trail, asking the implementation — still
//!    running — for its account of the ops;
//! 6. `teardown`: stop the observer, resolve what is left in doubt, stop the
//!    implementation, drop the run's replication slots — whatever the phases
//!    before returned, so no exit path leaves a process or a slot behind;
//! 7. `judge`: take the check, write `results.json`, `environment.json`
//!    and the report.

mod environment_record;
mod fault_schedule;
mod ground_truth;
pub mod idle;
mod judge;
mod settle;
mod start;
mod teardown;
mod trail;
mod workload;

pub use idle::{IDLE_FAULT, TRAFFIC_TABLE};

pub use environment_record::{kafka_jar_version, probe_versions, toxiproxy_version};
pub use record::results::{IdleWindow, Phases};
pub use record::Versions;
pub use report::outcome::RunOutcome;

use crate::app_process::AppCommand;
use crate::nemesis::{Fault, Nemesis};
use anyhow::{Context, Result};
use implementations::PatternInfo;
use record::run_dir::RunDir;
use services::{BackendKind, EnvOptions, Environment};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use workloads::Workload;

/// Everything one run needs to know.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// What to run.
    pub app: AppCommand,
    /// Query yielding committed op ids (one bigint column); built-ins bring their own.
    pub committed_sql: String,
    /// SQL run on the run's database before the implementation starts (`--schema`).
    pub schema_sql: Option<String>,
    /// Faults the schedule chooses from.
    pub faults: Vec<Fault>,
    /// How long the workload runs.
    pub duration: Duration,
    /// The workload (its seed also seeds the schedule).
    pub workload: Workload,
    /// `--max-retained-wal`: a sample of a slot's retained WAL above this many
    /// bytes is a `wal_retained` violation (`None`: not judged).
    pub max_retained_wal: Option<u64>,
    /// Kafka brokers (1, or 3 for `kafka-leader`).
    pub brokers: usize,
    /// Partitions of the topic.
    pub partitions: i32,
    /// Extra environment of the implementation process (`DUALCHECK_RELAYS`, ...).
    pub app_vars: Vec<(String, String)>,
    /// Where run directories go (default `runs/`).
    pub out_dir: PathBuf,
    /// Timeout of one op; a timeout is recorded as `info`.
    pub op_timeout: Duration,
    /// How long the implementation may take to answer HTTP after it starts.
    pub start_timeout: Duration,
    /// Longest drain after healing.
    pub drain_timeout: Duration,
    /// No new delivery for this long (and no backlog) ends the drain.
    pub quiet: Duration,
    /// Restart the implementation once after the last heal, before the
    /// drain, as an operator's deploy would (`--restart-before-drain`): a
    /// library that retries a failed send only at start-up then delivers
    /// what it held, and the results count those ops.
    pub restart_before_drain: bool,
    /// How long a deploy waits after SIGTERM before SIGKILL: the restart
    /// before the drain, each instance of a `rolling-restart`.
    pub deploy_grace: Duration,
    /// Instances of the implementation (`--replicas`): each with its own
    /// port and, where the pattern lets it, its own relay; the ops spread
    /// over them, reads go to another instance than their write.
    pub replicas: usize,
    /// How far `clock-skew` shifts an instance's wall clock, in ms
    /// (`--clock-offset`; negative: behind).
    pub clock_offset_ms: i64,
    /// Check with `--exactly-once`.
    pub exactly_once: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Which services (local by default).
    pub backend: BackendKind,
    /// The `dualcheck` binary serving a built-in implementation (`None`:
    /// `DUALCHECK_BIN`, else the running executable).
    pub dualcheck_bin: Option<PathBuf>,
    /// Right after each acknowledged write, read its key back (`GET /ops/{key}`)
    /// and record a `read` line (judged as `stale_read`).
    pub reads: bool,
    /// The run's number on a shared environment (a sweep): its database is
    /// `dualcheck_N` and its topic `orders_N` (so its replication slots, named
    /// after the database, are its own too). `None`: `dualcheck` and `orders`.
    pub instance: Option<u32>,
    /// How the harness speaks to an `exec` program and reads its records
    /// (request and read templates, record mapping); the exec contract by default.
    pub template: crate::template::ServiceTemplate,
    /// An explicit fault schedule (`--schedule FILE`, a replay, a shrink's
    /// candidate) followed instead of the one generated from the seed; its
    /// faults should be among [`RunConfig::faults`] (they decide the brokers).
    pub schedule: Option<workloads::Schedule<Fault>>,
}

impl RunConfig {
    /// Defaults for `app` with everything else as `dualcheck run` would have it.
    pub fn new(app: AppCommand, committed_sql: &str) -> RunConfig {
        let reads =
            matches!(&app, AppCommand::Builtin(n) if implementations::lookup(n).is_ok_and(|i| i.reads_by_default));
        RunConfig {
            app,
            committed_sql: committed_sql.to_string(),
            schema_sql: None,
            faults: Vec::new(),
            duration: Duration::from_secs(30),
            workload: Workload::default(),
            max_retained_wal: None,
            brokers: 1,
            partitions: 4,
            app_vars: Vec::new(),
            out_dir: PathBuf::from("runs"),
            op_timeout: Duration::from_secs(5),
            start_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(60),
            quiet: Duration::from_secs(3),
            restart_before_drain: false,
            deploy_grace: Duration::from_secs(10),
            replicas: 1,
            clock_offset_ms: 5000,
            exactly_once: false,
            progress: false,
            backend: BackendKind::Local,
            dualcheck_bin: None,
            reads,
            instance: None,
            template: crate::template::ServiceTemplate::default(),
            schedule: None,
        }
    }
}

/// The implementation of a run, resolved once: the name the run directory
/// and the results carry and, for a built-in, its pattern's facts.
#[derive(Clone)]
struct ResolvedApp {
    name: String,
    pattern: Option<&'static PatternInfo>,
}

impl ResolvedApp {
    fn of(app: &AppCommand) -> ResolvedApp {
        match app {
            // An unknown name has no facts; starting it reports the name.
            AppCommand::Builtin(n) => ResolvedApp {
                name: n.clone(),
                pattern: implementations::lookup(n).ok(),
            },
            AppCommand::Exec(_) => ResolvedApp {
                name: "exec".into(),
                pattern: None,
            },
        }
    }

    /// Whether the relay is a process of its own (`RelayKind::Process`).
    fn relay_process(&self) -> bool {
        self.pattern
            .is_some_and(|p| p.relay == implementations::RelayKind::Process)
    }

    /// Whether each instance runs a relay process of its own (else one serves all).
    fn relay_per_instance(&self) -> bool {
        self.pattern.is_some_and(|p| p.relay_per_instance())
    }

    /// Whether the pattern's backlog is exact with these knob settings
    /// ([`implementations::PatternInfo::exact_backlog`]); never for a program
    /// run through `exec`, whose backlog the harness cannot vouch for.
    fn exact_backlog(&self, app_vars: &[(String, String)]) -> bool {
        self.pattern.is_some_and(|p| p.exact_backlog_with(app_vars))
    }

    /// Whether the pattern prepares transactions (in-doubt recovery always runs).
    fn prepares_transactions(&self) -> bool {
        self.pattern.is_some_and(|p| p.prepares_transactions)
    }

    /// The pattern's outbox table, whose size the harness samples.
    fn outbox_table(&self) -> Option<&'static str> {
        self.pattern.and_then(|p| p.outbox_table)
    }

    /// Tables the pattern streams (the `schema-change` fault alters them).
    fn streamed_tables(&self) -> &'static [&'static str] {
        self.pattern.map(|p| p.streamed_tables).unwrap_or(&[])
    }
}

/// What the phases before the teardown hand to the judge.
struct Exercised {
    /// The run's database, unproxied (the harness's own reads).
    db_direct_url: String,
    /// Ops the workers invoked.
    invoked: HashSet<u64>,
    /// Workload seconds.
    workload_secs: f64,
    /// Whether the drain ended with nothing left.
    drained: bool,
    /// Events the implementation parked, as its last backlog answer said.
    parked: Option<u64>,
    /// Problems met while injecting or healing faults.
    nemesis_errors: Vec<String>,
    /// Where the run's time went so far.
    phases: Phases,
}

/// Runs one test; the environment is torn down whatever happens.
pub async fn run(cfg: RunConfig) -> Result<RunOutcome> {
    check_runnable(&cfg)?;
    cfg.backend.check_usable(&cfg.faults)?;
    let brokers = brokers_needed(&cfg);
    let app = ResolvedApp::of(&cfg.app);
    let run_dir = RunDir::create_for_run(&cfg.out_dir, &app.name, cfg.workload.seed)?;
    let services_started = Instant::now();
    let services = Environment::start(EnvOptions {
        backend: cfg.backend.clone(),
        brokers,
        run_dir: run_dir.path().to_path_buf(),
        timeout: Duration::from_secs(90),
    })
    .await
    .context("starting the services (run `dualcheck doctor` to diagnose)")?;
    let services_s = services_started.elapsed().as_secs_f64();
    let services = Arc::new(services);
    let outcome = run_under_own_names(&cfg, &app, &services, &run_dir, Some(services_s), false).await;
    // Teardown: every process of the run ends, every toxic is removed.
    Environment::shut_down_shared(services).await;
    outcome
}

/// Whether `replicas` instances of `app` can run (at least one; as many
/// as its pattern allows): the reason why not, before anything starts.
pub fn check_replicas(replicas: usize, app: &AppCommand) -> Result<()> {
    if replicas == 0 {
        anyhow::bail!("--replicas 0: at least one instance must run");
    }
    if let Some(p) = ResolvedApp::of(app).pattern {
        p.check_replicas(replicas).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// Whether `app` can take the workload's ops: a pattern that publishes one
/// event per op refuses `--events-per-op` above 1, before anything starts.
pub fn check_workload_fits(workload: &workloads::Workload, app: &AppCommand) -> Result<()> {
    if let Some(p) = ResolvedApp::of(app).pattern {
        p.check_multi_event(workload.events_per_op.max())
            .map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// Whether `app` can take `faults` here: a program's skewed clock needs
/// libfaketime (a built-in takes the offset through its knob).
pub fn check_faults_fit(faults: &[Fault], app: &AppCommand) -> Result<()> {
    if faults.contains(&Fault::ClockSkew) && matches!(app, AppCommand::Exec(_)) {
        crate::nemesis::check_libfaketime()?;
    }
    Ok(())
}

/// Whether `cfg` can run at all, before anything starts: its workload, its
/// instances and its faults (the services' side is the backend's to say).
pub fn check_runnable(cfg: &RunConfig) -> Result<()> {
    cfg.workload.validate().map_err(anyhow::Error::msg)?;
    check_replicas(cfg.replicas, &cfg.app)?;
    check_workload_fits(&cfg.workload, &cfg.app)?;
    check_faults_fit(&cfg.faults, &cfg.app)
}

/// Kafka brokers a run of `cfg` needs: `--brokers`, or 3 for a cluster fault.
pub fn brokers_needed(cfg: &RunConfig) -> usize {
    cfg.faults
        .iter()
        .map(|f| f.min_brokers())
        .max()
        .unwrap_or(1)
        .max(cfg.brokers)
}

/// One run on services already running (a sweep's shared environment), as
/// [`run`] does it after starting them: the same ops and the same fault
/// schedule for the same seed. The run is number `instance` of the
/// environment: its database, topic and slot names are its own
/// ([`RunConfig::instance`]). Afterwards every service is left as it started
/// ([`Environment::restore`]: paused ones resumed, killed ones restarted, no
/// toxic left), so the next run starts clean, and the run's database and topic
/// are dropped; a failure to restore is an error of this run.
pub async fn run_on(cfg: &RunConfig, services: &Arc<Environment>, instance: u32) -> Result<RunOutcome> {
    check_runnable(cfg)?;
    let needed = brokers_needed(cfg);
    // The user's cluster has the brokers it has: enough is enough.
    let fits = if services.is_external() {
        services.brokers() >= needed
    } else {
        services.brokers() == needed
    };
    if !fits {
        anyhow::bail!(
            "this run needs {needed} Kafka broker(s) and the shared environment has {}",
            services.brokers()
        );
    }
    let mut cfg = cfg.clone();
    cfg.instance = Some(instance);
    let app = ResolvedApp::of(&cfg.app);
    let run_dir = RunDir::create_for_run(&cfg.out_dir, &app.name, cfg.workload.seed)?;
    run_under_own_names(&cfg, &app, services, &run_dir, None, true).await
}

/// The run on `services` under its own database, topic and slot names
/// (from [`RunConfig::instance`]), which are dropped on Ctrl-C and after
/// the run. On `shared` services (a campaign's) every service is then left
/// as it started ([`Environment::restore`]: paused ones resumed, killed ones
/// restarted, no toxic left) and the run's data always dropped, so the next
/// run starts clean — a failure to restore is an error of this run; on
/// services of its own, only the user's cluster needs its data dropped (the
/// local services go with the run).
async fn run_under_own_names(
    cfg: &RunConfig,
    app: &ResolvedApp,
    services: &Arc<Environment>,
    run_dir: &RunDir,
    services_s: Option<f64>,
    shared: bool,
) -> Result<RunOutcome> {
    let (database, topic) = start::run_names(services.run_id(), cfg.instance);
    let cleanup = services.drop_on_interrupt(&database, &topic);
    let outcome = run_with_services(cfg, app, services, run_dir, services_s).await;
    let restored = if shared {
        services.restore(Duration::from_secs(90)).await
    } else {
        Ok(Vec::new())
    };
    if shared || cleanup.is_some() {
        // Everything of the run is in its directory by now; neither the next
        // runs nor the user's cluster need its database (nor the WAL it
        // holds), slots, publications or topic.
        if let Err(e) = services.drop_run_data(&database, &topic).await {
            tracing::warn!(
                "after {}: dropping its database {database} and topic {topic}: {e:#}",
                run_dir.path().display()
            );
        }
    }
    if let Some(key) = cleanup {
        services::process::unregister_interrupt_cleanup(key);
    }
    match (outcome, restored) {
        (Ok(o), Ok(repaired)) => {
            if !repaired.is_empty() {
                tracing::warn!("after {}: {}", run_dir.path().display(), repaired.join(", "));
            }
            Ok(o)
        }
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e.context("restoring the services after the run")),
    }
}

/// The run's phases on running services; the teardown runs whatever the
/// phases before it returned.
async fn run_with_services(
    cfg: &RunConfig,
    app: &ResolvedApp,
    services: &Arc<Environment>,
    run_dir: &RunDir,
    services_s: Option<f64>,
) -> Result<RunOutcome> {
    let mut started = start::Started::default();
    let exercised = exercise(cfg, app, services, run_dir, &mut started).await;
    // While the implementation still runs: the check and the trails of its examples.
    let check_started = Instant::now();
    let checked = match &exercised {
        Ok(_) => Some(trail::check_with_trails(cfg, run_dir, &mut started).await),
        Err(_) => None,
    };
    let check_s = check_started.elapsed().as_secs_f64();
    let teardown_started = Instant::now();
    let torn_down = teardown::teardown(started, app.prepares_transactions(), &run_dir.history()).await;
    let mut exercised = exercised?;
    exercised.phases.services_s = services_s;
    exercised.phases.check_s = check_s;
    exercised.phases.teardown_s = teardown_started.elapsed().as_secs_f64();
    let checked = checked.expect("checked whenever the phases before succeeded")?;
    judge::judge(cfg, app, services, run_dir, exercised, checked, torn_down).await
}

/// Every phase before the teardown: start, workload and nemesis side by side,
/// heal and drain, ground truth. What it starts goes into `started`, so the
/// teardown stops it even when a phase fails.
async fn exercise(
    cfg: &RunConfig,
    app: &ResolvedApp,
    services: &Arc<Environment>,
    run_dir: &RunDir,
    started: &mut start::Started,
) -> Result<Exercised> {
    let processes_started = Instant::now();
    let running = start::start_processes(cfg, app, services, run_dir, started).await?;
    let processes_s = processes_started.elapsed().as_secs_f64();
    let schedule = fault_schedule::plan(cfg, run_dir)?;
    let nemesis = Arc::new(Nemesis::new(
        services.clone(),
        running.fleet.clone(),
        running.observer_stats.clone(),
        running.recorder.clone(),
        &running.topic,
        &running.db_direct_url,
        app.streamed_tables(),
        cfg.workload.seed,
        crate::nemesis::Deploys {
            grace: cfg.deploy_grace,
            clock_offset_ms: cfg.clock_offset_ms,
            builtin: matches!(cfg.app, AppCommand::Builtin(_)),
        },
    ));

    let workload_start = Instant::now();
    let deadline = workload_start + cfg.duration;
    let workers = workload::spawn_workers(cfg, &running, deadline);
    let faults = fault_schedule::spawn(schedule, nemesis.clone(), workload_start, deadline);
    let idle = idle::spawn(
        cfg.workload.idle_span(cfg.duration),
        &running.db_direct_url,
        running.recorder.clone(),
        workload_start,
    );
    let progress = workload::Progress::start(
        cfg.progress,
        workers.counters.clone(),
        nemesis.clone(),
        running.observer_stats.clone(),
    );
    let acked = workers.acked.clone();
    let invoked = workers.join().await;
    let workload_secs = workload_start.elapsed().as_secs_f64();
    let mut nemesis_errors = faults.finish().await;
    if let Some(idle) = idle {
        nemesis_errors.extend(idle.finish().await);
    }

    let drain_started = Instant::now();
    let exact = app.exact_backlog(&cfg.app_vars);
    let drain = settle::heal_and_drain(cfg, exact, &nemesis, &running, &acked, &progress, &mut nemesis_errors).await;
    progress.finish();
    let drain_s = drain_started.elapsed().as_secs_f64();

    let committed_started = Instant::now();
    ground_truth::record_committed(&running, &cfg.committed_sql, &invoked).await?;
    let committed_s = committed_started.elapsed().as_secs_f64();
    // Everything the checker needs is in the history now; without this line it
    // would judge the run `unknown` (interrupted).
    running.recorder.end(drain.drained);
    Ok(Exercised {
        db_direct_url: running.db_direct_url,
        invoked,
        workload_secs,
        drained: drain.drained,
        parked: drain.parked,
        nemesis_errors,
        phases: Phases {
            services_s: None,
            processes_s,
            workload_s: workload_secs,
            drain_s,
            committed_s,
            check_s: 0.0,
            teardown_s: 0.0,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resolved_app_carries_its_patterns_facts() {
        for info in implementations::REGISTRY {
            let app = ResolvedApp::of(&AppCommand::Builtin(info.name.to_string()));
            assert_eq!(app.name, info.name);
            assert_eq!(
                app.relay_process(),
                info.relay == implementations::RelayKind::Process,
                "{}",
                info.name
            );
            assert_eq!(app.prepares_transactions(), info.prepares_transactions);
            assert_eq!(app.streamed_tables(), info.streamed_tables);
        }
        let exec = ResolvedApp::of(&AppCommand::Exec("python3 svc.py".into()));
        assert_eq!(exec.name, "exec");
        assert!(!exec.relay_process() && !exec.prepares_transactions() && exec.streamed_tables().is_empty());
        assert!(ResolvedApp::of(&AppCommand::Builtin("no-such-pattern".into()))
            .pattern
            .is_none());
    }
}
