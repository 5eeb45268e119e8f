//! Phase 1, start: the run's database and topic on the running services, the
//! `--schema` SQL, the history, the observer, the implementation (and its relay
//! process) and the watch on prepared transactions.

use super::{ResolvedApp, RunConfig};
use crate::app_process::{AppProcess, AppVars, Fleet};
use crate::in_doubt;
use crate::observer::{Observer, ObserverStats};
use crate::recorder::Recorder;
use anyhow::{Context, Result};
use record::run_dir::RunDir;
use services::Environment;
use std::sync::Arc;
use std::time::Duration;

/// The topic every implementation publishes to (`orders_N` for run N of a sweep).
const TOPIC: &str = "orders";

/// The run's database (`dualcheck_N` for run N of a sweep).
const DATABASE: &str = "dualcheck";

/// What the run started and the teardown must stop, filled as each piece
/// starts: a failure halfway leaves the pieces started so far here.
#[derive(Default)]
pub(super) struct Started {
    /// The run's database, unproxied (in-doubt recovery, slot hygiene).
    pub db_direct_url: Option<String>,
    /// The Kafka consumer recording deliveries.
    pub observer: Option<Observer>,
    /// The implementation's instances (their `service` role when the relay runs apart).
    pub services: Vec<Arc<AppProcess>>,
    /// The relay processes, for patterns whose relay is a process of its own.
    pub relays: Vec<Arc<AppProcess>>,
    /// The poller of `pg_prepared_xacts`.
    pub prepared_monitor: Option<in_doubt::Monitor>,
    /// The sampler of the operational series.
    pub ops_sampler: Option<crate::ops_series::Sampler>,
    /// The observer's transit times, taken when it was stopped.
    pub transit: Option<crate::observer::Transit>,
}

/// Handles the phases after the start work with.
pub(super) struct Running {
    /// The run's database, unproxied.
    pub db_direct_url: String,
    /// The run's topic.
    pub topic: String,
    /// The history.
    pub recorder: Arc<Recorder>,
    /// The observer's live counters.
    pub observer_stats: Arc<ObserverStats>,
    /// The implementation's instances and relay processes.
    pub fleet: Arc<Fleet>,
}

/// The run's database and topic: with the environment's run id on services
/// shared with others (the external backend), numbered by the run's instance
/// on an environment shared by a sweep's runs, plain otherwise.
pub(super) fn run_names(run_id: Option<&str>, instance: Option<u32>) -> (String, String) {
    let suffix = match (run_id, instance) {
        (Some(id), Some(n)) => format!("_{id}_{n}"),
        (Some(id), None) => format!("_{id}"),
        (None, Some(n)) => format!("_{n}"),
        (None, None) => String::new(),
    };
    (format!("{DATABASE}{suffix}"), format!("{TOPIC}{suffix}"))
}

/// Starts everything of the run on `services`, recording each piece in `started`.
pub(super) async fn start_processes(
    cfg: &RunConfig,
    app: &ResolvedApp,
    services: &Environment,
    run_dir: &RunDir,
    started: &mut Started,
) -> Result<Running> {
    let (database, topic) = run_names(services.run_id(), cfg.instance);
    // Postgres and Kafka each take a round trip or two: both at once.
    let (db, topic_created) = tokio::join!(
        services.create_database(&database),
        services.create_topic(&topic, cfg.partitions)
    );
    let (db_url, db_direct_url) = db?;
    started.db_direct_url = Some(db_direct_url.clone());
    topic_created?;
    if let Some(schema) = &cfg.schema_sql {
        let c = services::postgres::connect(&db_direct_url).await?;
        c.batch_execute(schema)
            .await
            .context("running the --schema file on the run's database")?;
    }
    let recorder = Arc::new(Recorder::create(&run_dir.history())?);
    let observer = Observer::start(
        &services.kafka_direct_bootstrap,
        &[(topic.clone(), cfg.partitions)],
        recorder.clone(),
        cfg.template.records.clone(),
    )?;
    let observer_stats = observer.stats.clone();
    started.observer = Some(observer);
    let app_vars = AppVars {
        database_url: db_url,
        kafka_bootstrap: services.kafka_bootstrap.clone(),
        topic: topic.clone(),
        extra: cfg.app_vars.clone(),
        instance: 0,
        replicas: cfg.replicas,
    };
    let bin = cfg.dualcheck_bin.as_deref();
    // Patterns whose relay is a process of its own run as two: the service
    // answers requests, the relay publishes.
    let relay_process = app.relay_process();
    let service_role = relay_process.then_some("service");
    for i in 0..cfg.replicas.max(1) {
        let vars = app_vars.for_instance(i);
        let process = AppProcess::start_with_bin(&cfg.app, &vars, run_dir.path(), cfg.start_timeout, service_role, bin)
            .await?
            .with_template(cfg.template.clone())
            .with_database(&db_direct_url);
        started.services.push(Arc::new(process));
    }
    if relay_process {
        // Kafka Connect needs its JVM up before it answers: allow for it.
        let timeout = cfg.start_timeout.max(Duration::from_secs(200));
        let relays = if app.relay_per_instance() {
            cfg.replicas.max(1)
        } else {
            1
        };
        for i in 0..relays {
            let vars = app_vars.for_instance(i);
            let relay =
                AppProcess::start_with_bin(&cfg.app, &vars, run_dir.path(), timeout, Some("relay"), bin).await?;
            started.relays.push(Arc::new(relay));
        }
    }
    let fleet = Arc::new(Fleet::new(started.services.clone(), started.relays.clone()));
    started.prepared_monitor = Some(in_doubt::Monitor::start(&db_direct_url));
    // The publishers (relay processes, where they run apart) know the backlog.
    started.ops_sampler = Some(crate::ops_series::Sampler::start(
        run_dir.ops_series(),
        &db_direct_url,
        fleet.clone(),
        app.outbox_table(),
        recorder.clone(),
    ));
    Ok(Running {
        db_direct_url,
        topic,
        recorder,
        observer_stats,
        fleet,
    })
}
