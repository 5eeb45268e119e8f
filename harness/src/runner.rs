//! One run, Jepsen-style: start the environment and the implementation, run
//! the seeded workload while the nemesis follows its schedule, record
//! everything, heal, drain, read what the database committed, and check.

use crate::app_process::{AppCommand, AppEnv, AppProcess, Completion};
use crate::env::{BackendKind, EnvOptions, Environment};
use crate::nemesis::{Fault, Nemesis};
use crate::observer::Observer;
use crate::recorder::Recorder;
use anyhow::{bail, Context, Result};
use checkers::{CheckOptions, CheckResult, HistoryLine};
use serde::Serialize;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use workloads::{FaultPhase, Schedule, ScheduleConfig, Workload};

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
    /// Kafka brokers (1, or 3 for `kafka-leader`).
    pub brokers: usize,
    /// Partitions of the topic.
    pub partitions: i32,
    /// Extra environment of the implementation process (`DUALCHECK_RELAYS`, ...).
    pub app_env: Vec<(String, String)>,
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
    /// Check with `--exactly-once`.
    pub exactly_once: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Which services (local by default).
    pub backend: BackendKind,
    /// Right after each acknowledged write, read its key back (`GET /ops/{key}`)
    /// and record a `read` line (judged as `stale_read`).
    pub reads: bool,
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
            brokers: 1,
            partitions: 4,
            app_env: Vec::new(),
            out_dir: PathBuf::from("runs"),
            op_timeout: Duration::from_secs(5),
            start_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(60),
            quiet: Duration::from_secs(3),
            exactly_once: false,
            progress: false,
            backend: BackendKind::Local,
            reads,
        }
    }
}

/// What a run produced: the check's verdict plus the run's own figures.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    /// The checker's result (`valid`, `anomalies`, examples, latency, ...).
    #[serde(flatten)]
    pub result: CheckResult,
    /// Acknowledged ops per second of workload.
    pub throughput_ok_per_s: f64,
    /// The run directory (history, results, logs).
    pub run_dir: PathBuf,
    /// Implementation name.
    pub implementation: String,
    /// Seed of workload and schedule.
    pub seed: u64,
    /// Faults chosen from. Serialized as `fault_names`: `faults` is the
    /// check's list of fault windows, as `dualcheck check --json` has it.
    #[serde(rename = "fault_names")]
    pub faults: Vec<String>,
    /// Workload seconds.
    pub duration_s: f64,
    /// Whether the drain ended with nothing left (`false`: timed out with a backlog).
    pub drained: bool,
    /// Problems met while injecting or healing faults (the run went on).
    pub nemesis_errors: Vec<String>,
    /// Replication slots of the run dropped at teardown (CDC patterns), so
    /// none goes on retaining WAL.
    pub slots_dropped: Vec<String>,
    /// Prepared transactions seen and left in doubt (only when the run saw any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_doubt: Option<crate::in_doubt::InDoubt>,
}

/// Live counters for the progress bar.
#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    fail: AtomicU64,
    info: AtomicU64,
}

/// Runs one test; the environment is torn down whatever happens.
pub async fn run(cfg: RunConfig) -> Result<RunOutcome> {
    cfg.workload.validate().map_err(anyhow::Error::msg)?;
    let brokers = cfg
        .faults
        .iter()
        .map(|f| f.min_brokers())
        .max()
        .unwrap_or(1)
        .max(cfg.brokers);
    let name = match &cfg.app {
        AppCommand::Builtin(n) => n.clone(),
        AppCommand::Exec(_) => "exec".into(),
    };
    std::fs::create_dir_all(&cfg.out_dir).with_context(|| format!("creating {}", cfg.out_dir.display()))?;
    let out_dir = cfg.out_dir.canonicalize()?;
    let run_dir = crate::env::new_run_dir(Some(&out_dir))?;
    let run_dir = {
        let named = out_dir.join(format!(
            "{}-{name}-seed{}",
            run_dir.file_name().and_then(|n| n.to_str()).unwrap_or("run"),
            cfg.workload.seed
        ));
        std::fs::rename(&run_dir, &named)?;
        named
    };
    crate::env::process::install_signal_handler();
    let env = Environment::start(EnvOptions {
        backend: cfg.backend.clone(),
        brokers,
        run_dir: run_dir.clone(),
        timeout: Duration::from_secs(90),
    })
    .await
    .context("starting the services (run `dualcheck doctor` to diagnose)")?;
    let env = Arc::new(env);
    let outcome = run_on(&cfg, &name, env.clone(), &run_dir).await;
    // Teardown: every process of the run ends, every toxic is removed.
    match Arc::try_unwrap(env) {
        Ok(mut env) => {
            if let Err(e) = env.shutdown().await {
                tracing::warn!("teardown: {e:#}");
            }
        }
        Err(_) => tracing::warn!("teardown: the environment is still shared; it ends when dropped"),
    }
    outcome
}

async fn run_on(cfg: &RunConfig, name: &str, env: Arc<Environment>, run_dir: &std::path::Path) -> Result<RunOutcome> {
    let (db_url, db_direct_url) = env.create_database("dualcheck").await?;
    let topic = "orders".to_string();
    env.create_topic(&topic, cfg.partitions).await?;
    if let Some(schema) = &cfg.schema_sql {
        let c = crate::env::postgres::connect(&db_direct_url).await?;
        c.batch_execute(schema)
            .await
            .context("running the --schema file on the run's database")?;
    }
    let recorder = Arc::new(Recorder::create(&run_dir.join("history.jsonl"))?);
    let observer = Observer::start(
        &env.kafka_direct_bootstrap,
        &[(topic.clone(), cfg.partitions)],
        recorder.clone(),
    )?;
    let app_env = AppEnv {
        database_url: db_url,
        kafka_bootstrap: env.kafka_bootstrap.clone(),
        topic: topic.clone(),
        extra: cfg.app_env.clone(),
    };
    // Patterns whose relay is a process of its own (a CDC tailer, Kafka Connect)
    // run as two: the service answers requests, the relay publishes.
    let relay_process = match &cfg.app {
        AppCommand::Builtin(n) => {
            implementations::lookup(n).is_ok_and(|i| i.relay == implementations::RelayKind::Process)
        }
        AppCommand::Exec(_) => false,
    };
    let app = if relay_process {
        AppProcess::start_role(&cfg.app, &app_env, run_dir, cfg.start_timeout, Some("service")).await?
    } else {
        AppProcess::start(&cfg.app, &app_env, run_dir, cfg.start_timeout).await?
    };
    let app = Arc::new(app);
    let relay = if relay_process {
        // Kafka Connect needs its JVM up before it answers: allow for it.
        let timeout = cfg.start_timeout.max(Duration::from_secs(200));
        Some(Arc::new(
            AppProcess::start_role(&cfg.app, &app_env, run_dir, timeout, Some("relay")).await?,
        ))
    } else {
        None
    };
    let prepared_monitor = crate::in_doubt::Monitor::start(&db_direct_url);
    let nemesis = Arc::new(Nemesis::new(
        env.clone(),
        app.clone(),
        relay.clone(),
        recorder.clone(),
        &topic,
        &db_direct_url,
        match &cfg.app {
            AppCommand::Builtin(n) => implementations::lookup(n).map(|i| i.streamed_tables).unwrap_or(&[]),
            _ => &[],
        },
    ));
    let schedule = Schedule::generate(&ScheduleConfig {
        seed: cfg.workload.seed,
        faults: cfg.faults.clone(),
        duration: cfg.duration,
    });
    std::fs::write(run_dir.join("schedule.json"), serde_json::to_string_pretty(&schedule)?)?;

    // Workload and nemesis, side by side.
    let counters = Arc::new(Counters::default());
    let invoked: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let workload_start = Instant::now();
    let deadline = workload_start + cfg.duration;
    let mut workers = Vec::new();
    for w in 0..cfg.workload.workers() {
        let stream = cfg.workload.worker(w);
        let (app, recorder, counters, invoked) = (app.clone(), recorder.clone(), counters.clone(), invoked.clone());
        let interval = cfg.workload.worker_interval();
        let op_timeout = cfg.op_timeout;
        let reads = cfg.reads;
        workers.push(tokio::spawn(async move {
            let mut next_at = Instant::now();
            for op in stream {
                if Instant::now() >= deadline {
                    break;
                }
                if let Some(iv) = interval {
                    tokio::time::sleep_until(next_at.into()).await;
                    next_at = next_at.max(Instant::now() - iv) + iv;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                invoked.lock().unwrap_or_else(|e| e.into_inner()).insert(op.op);
                let process = w as u64;
                recorder.record(&HistoryLine::Invoke {
                    op: op.op,
                    process,
                    key: op.key.clone(),
                    seq: op.seq,
                    time: recorder.now(),
                });
                let completion = app.submit(&op, op_timeout).await;
                let time = recorder.now();
                let event = match completion {
                    Completion::Ok => {
                        counters.ok.fetch_add(1, Ordering::Relaxed);
                        HistoryLine::Ok {
                            op: op.op,
                            process,
                            time,
                        }
                    }
                    Completion::Fail(error) => {
                        counters.fail.fetch_add(1, Ordering::Relaxed);
                        HistoryLine::Fail {
                            op: op.op,
                            process,
                            time,
                            error,
                        }
                    }
                    Completion::Info(error) => {
                        counters.info.fetch_add(1, Ordering::Relaxed);
                        HistoryLine::Info {
                            op: op.op,
                            process,
                            time,
                            error,
                        }
                    }
                };
                let acked = matches!(event, HistoryLine::Ok { .. });
                recorder.record(&event);
                if acked && reads {
                    // Read your write: a failed or timed-out read is not recorded (nothing was seen).
                    let invoke_time = recorder.now();
                    if let Ok(seq) = app.read(&op.key, op_timeout).await {
                        recorder.record(&HistoryLine::Read {
                            key: op.key.clone(),
                            seq,
                            invoke_time,
                            time: recorder.now(),
                        });
                    }
                }
                if matches!(event, HistoryLine::Fail { .. } | HistoryLine::Info { .. }) && !app.is_alive() {
                    // The application is down (a kill fault): do not spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    let nemesis_errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let nemesis_task = {
        let (nemesis, errors) = (nemesis.clone(), nemesis_errors.clone());
        tokio::spawn(async move {
            for step in schedule.steps {
                tokio::time::sleep_until((workload_start + step.at).into()).await;
                let fault = step.fault;
                // A step delayed past the workload by a slow restart: never start a fault then.
                if step.phase == FaultPhase::Start && Instant::now() >= deadline {
                    continue;
                }
                let r = match step.phase {
                    FaultPhase::Start => nemesis.start(fault).await,
                    FaultPhase::Stop => nemesis.stop(fault).await,
                };
                if let Err(e) = r {
                    tracing::warn!("{e:#}");
                    errors.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{e:#}"));
                }
            }
        })
    };
    let progress = progress_bar(cfg.progress);
    let ticker = {
        let (progress, counters, nemesis, stats) = (
            progress.clone(),
            counters.clone(),
            nemesis.clone(),
            observer.stats.clone(),
        );
        tokio::spawn(async move {
            loop {
                let faults: Vec<&str> = nemesis.active().iter().map(|f| f.name()).collect();
                progress.set_message(format!(
                    "ok {}  fail {}  info {}  delivered {}  faults [{}]",
                    counters.ok.load(Ordering::Relaxed),
                    counters.fail.load(Ordering::Relaxed),
                    counters.info.load(Ordering::Relaxed),
                    stats.deliveries.load(Ordering::Relaxed),
                    faults.join(",")
                ));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    for w in workers {
        let _ = w.await;
    }
    let workload_secs = workload_start.elapsed().as_secs_f64();
    // The schedule ends within the duration; never wait past it for a stuck step.
    // A step delayed by a slow restart must not start a fault after healing began.
    let mut nemesis_task = nemesis_task;
    if tokio::time::timeout(Duration::from_secs(5), &mut nemesis_task)
        .await
        .is_err()
    {
        nemesis_task.abort();
        let _ = nemesis_task.await;
    }

    // Heal everything, then drain.
    progress.set_prefix("healing");
    if let Err(e) = nemesis.heal_all().await {
        nemesis_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("healing: {e:#}"));
    }
    progress.set_prefix("draining");
    let drained = drain(
        &app,
        relay.as_deref(),
        &observer,
        &recorder,
        cfg.drain_timeout,
        cfg.quiet,
    )
    .await;
    ticker.abort();
    progress.finish_and_clear();

    // Ground truth: what the database holds, for the ops this run invoked.
    let committed = read_committed(&db_direct_url, &cfg.committed_sql).await?;
    let invoked = std::mem::take(&mut *invoked.lock().unwrap_or_else(|e| e.into_inner()));
    for op in committed.into_iter().filter(|op| invoked.contains(op)) {
        recorder.record(&HistoryLine::Committed { op });
    }
    observer.stop().await;
    // Only after the committed read (see in_doubt's module doc): resolve what
    // the implementation left prepared, so the database ends clean.
    let seen = prepared_monitor.stop().await;
    let in_doubt = if seen.is_empty()
        && !matches!(&cfg.app, AppCommand::Builtin(n) if implementations::lookup(n).is_ok_and(|i| i.prepares_transactions))
    {
        None
    } else {
        let delivered = crate::in_doubt::delivered_ops(recorder.path());
        match crate::in_doubt::recover(&db_direct_url, seen, &delivered).await {
            Ok(d) => Some(d),
            Err(e) => {
                nemesis_errors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("resolving prepared transactions: {e:#}"));
                None
            }
        }
    };
    app.kill().await.ok();
    if let Some(relay) = &relay {
        relay.kill().await.ok();
    }
    // Slot hygiene: no slot of this run may go on retaining WAL.
    let slots_dropped = match crate::env::provision::drop_replication_slots(&db_direct_url).await {
        Ok(dropped) => dropped,
        Err(e) => {
            tracing::warn!("dropping the run's replication slots: {e:#}");
            Vec::new()
        }
    };

    let result = checkers::check_file(
        recorder.path(),
        CheckOptions {
            exactly_once: cfg.exactly_once,
            max_examples: 5,
        },
    )
    .map_err(|e| anyhow::anyhow!("the recorded history is unusable (a dualcheck bug): {e}"))?;
    let outcome = RunOutcome {
        throughput_ok_per_s: result.ops.ok as f64 / workload_secs.max(1e-9),
        result,
        run_dir: run_dir.to_path_buf(),
        implementation: name.to_string(),
        seed: cfg.workload.seed,
        faults: cfg.faults.iter().map(|f| f.name().to_string()).collect(),
        duration_s: workload_secs,
        drained,
        nemesis_errors: std::mem::take(&mut *nemesis_errors.lock().unwrap_or_else(|e| e.into_inner())),
        slots_dropped,
        in_doubt,
    };
    std::fs::write(run_dir.join("results.json"), serde_json::to_string_pretty(&outcome)?)?;
    crate::report::finish_run(cfg, &env, &db_direct_url, run_dir).await;
    if outcome.result.ops.ok == 0 && !invoked.is_empty() {
        // Nothing acknowledged: no verdict means anything (the program answers
        // outside the contract, or its tables are missing, or it cannot reach
        // the database at all).
        let first = first_error(recorder.path()).unwrap_or_default();
        bail!(
            "the implementation acknowledged none of the {} ops it was sent, so there is nothing to judge; first answer: {first}\n--- last lines of {} ---\n{}",
            invoked.len(),
            app.log_path().display(),
            crate::env::process::tail(app.log_path(), 20)
        );
    }
    Ok(outcome)
}

/// The error of the first `fail` or `info` line of a history, if any.
fn first_error(history: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(history).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| matches!(v.get("type").and_then(|t| t.as_str()), Some("fail" | "info")))
        .find_map(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
}

/// Waits until the implementation reports no backlog and no delivery has
/// arrived for `quiet`, at most `timeout`. Returns whether it got there.
async fn drain(
    app: &AppProcess,
    relay: Option<&AppProcess>,
    observer: &Observer,
    recorder: &Recorder,
    timeout: Duration,
    quiet: Duration,
) -> bool {
    let started = Instant::now();
    let quiet_ns = quiet.as_nanos() as i64;
    let drain_start = recorder.now();
    // The relay process, where there is one, knows the backlog.
    let publisher = relay.unwrap_or(app);
    loop {
        // A dead or silent application has an unknown backlog: never drained.
        let running = match relay {
            Some(r) => app.ensure_running().await.and(r.ensure_running().await),
            None => app.ensure_running().await,
        };
        let backlog = match running.and(Ok(publisher.backlog().await)) {
            Ok(Ok(b)) => Some(b.unwrap_or(0)),
            _ => None,
        };
        let last = observer.stats.last_delivery.load(Ordering::Relaxed).max(drain_start);
        if backlog == Some(0) && recorder.now() - last >= quiet_ns {
            return true;
        }
        if started.elapsed() > timeout {
            tracing::warn!("drain: gave up after {timeout:?} (backlog {backlog:?})");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the committed-ops query; every row's first column is an op id.
async fn read_committed(url: &str, sql: &str) -> Result<Vec<u64>> {
    let c = crate::env::postgres::connect(url).await?;
    let rows = c
        .query(sql, &[])
        .await
        .with_context(|| format!("running the committed-ops query `{sql}`"))?;
    let mut ops = Vec::with_capacity(rows.len());
    for row in rows {
        let op: i64 = match row.try_get::<_, i64>(0) {
            Ok(v) => v,
            Err(_) => match row.try_get::<_, i32>(0) {
                Ok(v) => v as i64,
                Err(e) => {
                    bail!("the committed-ops query `{sql}` must return op ids as integers in its first column: {e}")
                }
            },
        };
        ops.push(op as u64);
    }
    Ok(ops)
}

fn progress_bar(show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {prefix} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    pb.set_prefix("running");
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}
