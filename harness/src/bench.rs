//! `dualcheck bench`'s measurements: end-to-end latency and throughput of each pattern
//! without faults (no criterion statistics: one run each), next to the
//! machine's own limits measured on the same kind of environment: single-row
//! Postgres commits per second with an outbox-sized payload, and the raw
//! rdkafka produce rate (idempotent, `acks=all`) on the direct listener.

use crate::campaign::Campaign;
use crate::env::{EnvOptions, Environment};
use crate::relay_rate::RelayRateRow;
use crate::render::{Column, Table};
use crate::report::series::Series;
use crate::run_options::RunOptions;
use anyhow::{Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The machine's limits.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Limits {
    /// Single-row INSERT commits per second (autocommit, `concurrency` connections).
    pub pg_commits_per_s: f64,
    /// Records per second acknowledged by an idempotent `acks=all` producer.
    pub kafka_produce_per_s: f64,
    /// Bytes of each row / record.
    pub record_bytes: usize,
}

impl Limits {
    /// The lower of the two: no dual write can go faster.
    pub fn min(&self) -> f64 {
        self.pg_commits_per_s.min(self.kafka_produce_per_s)
    }
}

/// The line that states the limits above a table.
impl std::fmt::Display for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "machine limits ({} B records): Postgres single-row commits {:.0}/s, Kafka idempotent acks=all produce {:.0}/s",
            self.record_bytes, self.pg_commits_per_s, self.kafka_produce_per_s
        )
    }
}

/// One implementation's figures.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// Implementation, as written in `--impls` (`NAME`, `NAME:tuned`, `NAME+KEY=VALUE`).
    pub implementation: String,
    /// Commit-to-first-delivery p50 (ms).
    pub p50_ms: Option<f64>,
    /// p99 (ms).
    pub p99_ms: Option<f64>,
    /// Maximum (ms).
    pub max_ms: Option<f64>,
    /// Acknowledged ops per second.
    pub ok_per_s: f64,
    /// Ops delivered per second, from the first invoke to the last first delivery.
    pub delivered_per_s: f64,
    /// `delivered_per_s` over the lower machine limit.
    pub ratio_to_limit: Option<f64>,
    /// p99 over the latency reference's p99 in the same bench (the pattern whose
    /// `PatternInfo::latency_reference` is set, when it is among the impls).
    pub p99_ratio_to_reference: Option<f64>,
    /// p99 over the tuned latency reference's p99 (its `NAME:tuned` row, when
    /// it is among the impls): every pattern against the reference at its best too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ratio_to_tuned_reference: Option<f64>,
    /// Median ms from a record's producer timestamp to the observer reading it
    /// (`transit` in the run's results): the wire's and the observer's share
    /// of `p50_ms`; the rest is the pattern's own (commit to produce).
    pub transit_p50_ms: Option<f64>,
    /// Whether the run was valid (a benchmark of a broken run is worth little).
    pub valid: bool,
    /// The run's report.
    pub report: PathBuf,
}

/// An outbox-sized event: the JSON envelope the implementations publish.
fn envelope(i: u64, payload: usize) -> String {
    format!(
        r#"{{"op":{i},"seq":{},"key":"k{}","event":"{}","payload":"{}"}}"#,
        i / 32,
        i % 32,
        uuid::Uuid::new_v4(),
        "x".repeat(payload)
    )
}

/// Measures single-row Postgres commits per second on `url` with `connections` clients.
pub async fn pg_commit_rate(url: &str, connections: usize, payload: usize, dur: Duration) -> Result<f64> {
    let c = crate::env::postgres::connect(url).await?;
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS bench_outbox (id bigserial PRIMARY KEY, key text NOT NULL, \
         event_id text NOT NULL, payload jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .context("creating the bench_outbox table")?;
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..connections.max(1) {
        let (url, count) = (url.to_string(), count.clone());
        tasks.push(tokio::spawn(async move {
            let c = crate::env::postgres::connect(&url).await?;
            let stmt = c
                .prepare("INSERT INTO bench_outbox (key, event_id, payload) VALUES ($1, $2, $3::text::jsonb)")
                .await?;
            let mut i = w as u64;
            while start.elapsed() < dur {
                let body = envelope(i, payload);
                c.execute(
                    &stmt,
                    &[&format!("k{}", i % 32), &uuid::Uuid::new_v4().to_string(), &body],
                )
                .await?;
                count.fetch_add(1, Ordering::Relaxed);
                i += connections as u64;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await.context("a commit-rate task panicked")??;
    }
    Ok(count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

struct Counting {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Measures records per second acknowledged by an idempotent, `acks=all`
/// producer on `bootstrap`, producing as fast as librdkafka's queue allows.
pub fn kafka_produce_rate(bootstrap: &str, topic: &str, payload: usize, dur: Duration) -> Result<f64> {
    let producer: ThreadedProducer<Counting> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .create_with_context(Counting {
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        })
        .context("creating the benchmark producer")?;
    let start = Instant::now();
    let mut i = 0u64;
    while start.elapsed() < dur {
        let body = envelope(i, payload);
        let key = format!("k{}", i % 32);
        match producer.send(BaseRecord::to(topic).key(&key).payload(&body)) {
            Ok(()) => i += 1,
            Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), _)) => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err((e, _)) => anyhow::bail!("producing to {topic} on {bootstrap}: {e}"),
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .context("flushing the benchmark producer")?;
    let ctx = producer.context();
    let failed = ctx.failed.load(Ordering::Relaxed);
    if failed > 0 {
        anyhow::bail!("{failed} benchmark records were not acknowledged by Kafka on {bootstrap}");
    }
    Ok(ctx.ok.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// Starts a local environment, measures both limits (each for `each`, with
/// `connections` Postgres clients and `payload`-byte records), tears it down.
pub async fn measure_limits(connections: usize, payload: usize, each: Duration) -> Result<Limits> {
    measure_limits_on(&crate::env::BackendKind::Local, connections, payload, each).await
}

/// [`measure_limits`] on the services of `backend` (on the user's own
/// services, in a database and topic of its own, dropped afterwards).
pub async fn measure_limits_on(
    backend: &crate::env::BackendKind,
    connections: usize,
    payload: usize,
    each: Duration,
) -> Result<Limits> {
    let mut opts = EnvOptions::local(1)?;
    opts.backend = backend.clone();
    let mut env = Environment::start(opts)
        .await
        .context("starting the services for the limits (run `dualcheck doctor` to diagnose)")?;
    let result = measure_limits_in(&env, connections, payload, each).await;
    if let Err(e) = env.shutdown().await {
        tracing::warn!("teardown of the limits environment: {e:#}");
    }
    result
}

/// Both limits on services already running, in a database and topic of
/// their own (`bench`, or `bench_<run id>` on the user's services), dropped
/// afterwards.
pub async fn measure_limits_in(
    env: &Environment,
    connections: usize,
    payload: usize,
    each: Duration,
) -> Result<Limits> {
    in_scratch_data(env, "bench", "the limits' database and topic", |name| async move {
        let (_, direct) = env.create_database(&name).await?;
        let pg = pg_commit_rate(&direct, connections, payload, each).await?;
        env.create_topic(&name, 4).await?;
        let bootstrap = env.kafka_direct_bootstrap.clone();
        let topic = name.clone();
        let kafka = tokio::task::spawn_blocking(move || kafka_produce_rate(&bootstrap, &topic, payload, each))
            .await
            .context("the produce-rate task panicked")??;
        anyhow::Ok(Limits {
            pg_commits_per_s: pg,
            kafka_produce_per_s: kafka,
            record_bytes: envelope(0, payload).len(),
        })
    })
    .await
}

/// Runs `work` with the name of a scratch database and topic (`prefix`, or
/// `prefix_<run id>` on the user's services), which are dropped afterwards,
/// and on Ctrl-C meanwhile; `what` names them in a warning when the drop fails.
async fn in_scratch_data<T, F, Fut>(env: &Environment, prefix: &str, what: &str, work: F) -> Result<T>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let name = match env.run_id() {
        Some(id) => format!("{prefix}_{id}"),
        None => prefix.to_string(),
    };
    let cleanup = env.drop_on_interrupt(&name, &name);
    let result = work(name.clone()).await;
    // Local services keep nothing between runs either: the next run's
    // database and topic have names of their own, but the scratch data would
    // still cost the runs that follow its WAL and log segments.
    if let Err(e) = env.drop_run_data(&name, &name).await {
        tracing::warn!("dropping {what} {name}: {e:#}");
    }
    if let Some(key) = cleanup {
        crate::env::process::unregister_interrupt_cleanup(key);
    }
    result
}

/// Commit-to-first-delivery (p50, p99, max) in ms of the acknowledged ops
/// invoked after `warmup`; a delivery before the ack counts 0 (as the checker).
pub fn steady_latency_ms(series: &Series, warmup: Duration) -> Option<(f64, f64, f64)> {
    let first = series.ops.iter().map(|p| p.invoke).min()?;
    let from = first + warmup.as_nanos() as i64;
    let mut lat: Vec<i64> = series
        .ops
        .iter()
        .filter(|p| p.invoke >= from)
        .filter_map(|p| match (p.complete, p.first_delivery) {
            (Some((checkers::Outcome::Ok, ok)), Some(d)) => Some((d - ok).max(0)),
            _ => None,
        })
        .collect();
    let l = checkers::Latency::from_samples(&mut lat)?;
    let ms = |ns: i64| ns as f64 / 1e6;
    Some((ms(l.p50), ms(l.p99), ms(l.max)))
}

/// Ops delivered per second, from the first invoke to the last first delivery.
pub fn delivered_rate(series: &Series) -> f64 {
    let first = series.ops.iter().map(|p| p.invoke).min().unwrap_or(0);
    let (n, last) = series
        .ops
        .iter()
        .filter_map(|p| p.first_delivery)
        .fold((0u64, first), |(n, l), t| (n + 1, l.max(t)));
    let secs = (last - first) as f64 / 1e9;
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// The printed result.
pub fn table(limits: Option<&Limits>, rows: &[BenchRow]) -> String {
    let ms = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
    let mut s = String::new();
    if let Some(l) = limits {
        s.push_str(&format!("{l}\n\n"));
    }
    let tuned = rows.iter().any(|r| r.p99_ratio_to_tuned_reference.is_some());
    let ratio = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
    let mut columns = vec![
        Column::left("implementation").min_width(22),
        Column::right("p50 ms").min_width(8),
        Column::right("p99 ms").min_width(8),
        Column::right("max ms").min_width(8),
        Column::right("wire p50").min_width(9),
        Column::right("ok/s").min_width(9),
        Column::right("delivered/s").min_width(12),
        Column::right("/limit").min_width(9),
        Column::right("p99/ref").min_width(9),
    ];
    if tuned {
        columns.push(Column::right("p99/tuned").min_width(10));
    }
    columns.push(Column::left("valid").space_before(2));
    let mut t = Table::new(columns).gap(1);
    for r in rows {
        let mut cells = vec![
            r.implementation.clone(),
            ms(r.p50_ms),
            ms(r.p99_ms),
            ms(r.max_ms),
            ms(r.transit_p50_ms),
            format!("{:.1}", r.ok_per_s),
            format!("{:.1}", r.delivered_per_s),
            ratio(r.ratio_to_limit),
            ratio(r.p99_ratio_to_reference),
        ];
        if tuned {
            cells.push(ratio(r.p99_ratio_to_tuned_reference));
        }
        cells.push(r.valid.to_string());
        t.push(cells);
    }
    s.push_str(&t.text());
    s.push_str(&format!(
        "\n/limit = delivered/s over min(Postgres commits/s, Kafka produce/s); p99/ref = p99 over {reference}'s p99\n\
             (add `{reference}` to --impls to measure it); latencies leave out the ops of the warm-up.\n\
             wire p50 = median from a record's producer timestamp to the observer reading it (send, broker, fetch: the\n\
             share of p50 that is not the pattern's own; ms resolution, and Kafka Connect may stamp the source's time).\n",
        reference = latency_reference().map(|i| i.name).unwrap_or("the reference pattern")
    ));
    if tuned {
        s.push_str(&format!(
            "p99/tuned = p99 over {}:tuned's p99 (the reference with the knobs its pattern declares as tuned).\n",
            latency_reference().map(|i| i.name).unwrap_or("the reference pattern")
        ));
    }
    if let Some(best) = best_row(rows) {
        s.push_str(&format!(
            "best p99: {} ({} ms): {} of the reference's p99{}\n",
            best.implementation,
            ms(best.p99_ms),
            ratio(best.p99_ratio_to_reference),
            if tuned {
                format!(
                    ", {} of the tuned reference's",
                    ratio(best.p99_ratio_to_tuned_reference)
                )
            } else {
                String::new()
            }
        ));
    }
    s
}

/// The valid row with the lowest p99 other than the reference's own rows
/// (the best pattern, compared with the reference).
pub fn best_row(rows: &[BenchRow]) -> Option<&BenchRow> {
    let reference = latency_reference().map(|i| i.name);
    rows.iter()
        .filter(|r| r.valid && r.p99_ms.is_some())
        .filter(|r| Some(base_name(&r.implementation)) != reference)
        .min_by(|a, b| a.p99_ms.partial_cmp(&b.p99_ms).unwrap_or(std::cmp::Ordering::Equal))
}

/// The implementation of a row's label (`debezium:tuned+K=V` → `debezium`).
fn base_name(label: &str) -> &str {
    label.split(['+', ':']).next().unwrap_or(label)
}

/// The printed result of `--drain`.
pub fn drain_table(limits: Option<&Limits>, rows: &[RelayRateRow]) -> String {
    let mut s = String::new();
    if let Some(l) = limits {
        s.push_str(&format!("{l}\n\n"));
    }
    let mut t = Table::new([
        Column::left("implementation").min_width(22),
        Column::right("events").min_width(8),
        Column::right("seconds").min_width(9),
        Column::right("events/s").min_width(10),
        Column::right("/limit").min_width(9),
    ])
    .gap(1);
    for r in rows {
        let ratio = limits
            .map(|l| format!("{:.3}", r.per_s / l.min()))
            .unwrap_or_else(|| "-".into());
        t.push([
            r.implementation.clone(),
            r.events.to_string(),
            format!("{:.2}", r.seconds),
            format!("{:.1}", r.per_s),
            ratio,
        ]);
    }
    s.push_str(&t.text());
    s
}

/// The built-in pattern every p99 is compared with (`PatternInfo::latency_reference`).
pub fn latency_reference() -> Option<&'static implementations::PatternInfo> {
    implementations::REGISTRY.iter().find(|i| i.latency_reference)
}

/// Fills `p99_ratio_to_reference` when the latency reference's row (its
/// plain name) has a p99, and `p99_ratio_to_tuned_reference` when its
/// `NAME:tuned` row does.
pub fn set_reference_ratios(rows: &mut [BenchRow]) {
    let Some(name) = latency_reference().map(|i| i.name) else {
        return;
    };
    let p99_of = |label: &str| {
        rows.iter()
            .find(|r| r.implementation == label)
            .and_then(|r| r.p99_ms)
            .filter(|p| *p > 0.0)
    };
    let reference = p99_of(name);
    let tuned = p99_of(&format!("{name}:tuned"));
    for r in rows.iter_mut() {
        r.p99_ratio_to_reference = reference.zip(r.p99_ms).map(|(d, p)| p / d);
        r.p99_ratio_to_tuned_reference = tuned.zip(r.p99_ms).map(|(d, p)| p / d);
    }
}

/// The machine's limits, measured for `each` with `run`'s concurrency and
/// payload; `None` without `each` (`--no-limits`).
async fn limits_if(each: Option<Duration>, run: &RunOptions) -> Result<Option<Limits>> {
    match each {
        Some(each) => Ok(Some(
            measure_limits_on(&run.backend, run.workload.concurrency, run.workload.payload_bytes, each).await?,
        )),
        None => Ok(None),
    }
}

/// How long the run that warms each environment up lasts (not reported): a
/// broker's JVM compiles its produce and fetch paths during its first
/// seconds of traffic, and a pattern benchmarked on a cold broker would carry
/// that in its latency. Measured here at 50 ops/s, cdc-logical's wire p50:
/// 10.5 ms on a fresh broker, 7.0 ms on the next run on the same one; after
/// a second each of commits and produce (no fetch), still 11.1 ms, and 6.0 ms
/// for the same configuration two runs later — so the warm-up includes a run,
/// which exercises the pattern's own paths. At full speed it leaves a low
/// rate's broker paths cold, which [`BROKER_WARM_UP`] warms first.
const WARM_UP_RUN: Duration = Duration::from_secs(5);

/// How long the broker is warmed up with single-record round trips before
/// the warm-up run ([`warm_broker_in`]). Measured here (cdc-logical:tuned at
/// 50 ops/s, 20 s runs one after the other on one `env up` environment, each
/// with the 5 s warm-up run): p50 5.3, 3.6, 3.1, 2.8, 2.6, 2.8, 2.4 ms — the
/// broker kept getting faster for two minutes of traffic. After 12 s of
/// single-record round trips on a fresh broker, the first run measured 2.6 ms.
const BROKER_WARM_UP: Duration = Duration::from_secs(10);

/// Producers sending one record at a time during [`warm_broker_in`].
const BROKER_WARM_UP_PRODUCERS: usize = 2;

/// Warms the broker's JIT up on the request shapes of a low-rate run, for
/// `dur`: producers like the implementations' (idempotent, `acks=all`,
/// `linger.ms` 0) each send one record and wait for it, through the proxied
/// listener, while a `read_committed` consumer like the observer reads them
/// on the direct one. The warm-up run alone does not: at full speed the
/// records travel in batches and the consumer is never waiting at the log's
/// end, so the per-request paths of a low-rate run (one record per produce,
/// a fetch parked until the next append) stay cold, and the first patterns
/// of a bench paid for it. In a topic of its own, dropped afterwards.
/// Returns the number of round trips.
pub async fn warm_broker_in(env: &Environment, dur: Duration) -> Result<u64> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    in_scratch_data(env, "bench_warm", "the warm-up topic", |name| async move {
        env.create_topic(&name, 4).await?;
        let consumer = crate::observer::consumer(&env.kafka_direct_bootstrap, &[(name.clone(), 4)])?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let reading = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    // Read and dropped: only the fetch path matters here.
                    _ = consumer.recv() => {}
                }
            }
            consumer
        });
        let trips = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut senders = Vec::new();
        for p in 0..BROKER_WARM_UP_PRODUCERS {
            let producer: FutureProducer = ClientConfig::new()
                .set("bootstrap.servers", &env.kafka_bootstrap)
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("linger.ms", "0")
                .set("socket.nagle.disable", "true")
                .set("message.timeout.ms", "10000")
                .set("log_level", "3")
                .create()
                .context("creating a warm-up producer")?;
            let (topic, trips) = (name.clone(), trips.clone());
            senders.push(tokio::spawn(async move {
                let mut i = p as u64;
                while start.elapsed() < dur {
                    let (key, body) = (format!("k{}", i % 32), envelope(i, 100));
                    producer
                        .send(
                            FutureRecord::to(&topic).key(&key).payload(&body),
                            Duration::from_secs(10),
                        )
                        .await
                        .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))?;
                    trips.fetch_add(1, Ordering::Relaxed);
                    i += BROKER_WARM_UP_PRODUCERS as u64;
                }
                anyhow::Ok(())
            }));
        }
        let mut sent = Ok(());
        for t in senders {
            let r = t.await.context("a warm-up producer panicked").and_then(|r| r);
            if sent.is_ok() {
                sent = r;
            }
        }
        let _ = stop.send(());
        if let Ok(consumer) = reading.await {
            // Closing a consumer takes librdkafka ~200 ms: not on a runtime thread.
            std::thread::spawn(move || drop(consumer));
        }
        sent.map(|()| trips.load(Ordering::Relaxed))
    })
    .await
}

/// Measures the limits (for `limit_duration` each, unless `None`), then runs
/// each implementation with `run`'s options; latencies leave out the ops
/// invoked in the first `warmup`. Every configuration is checked first.
///
/// The runs share one environment (as a sweep's do; another one only where a
/// run needs another number of brokers), each in a database and topic of its
/// own, and the limits are measured on it first: so every pattern meets
/// services already warm, and none pays a broker's start-up in its figures.
pub async fn bench(
    impls: &[String],
    run: &RunOptions,
    limit_duration: Option<Duration>,
    warmup: Duration,
) -> Result<(Option<Limits>, Vec<BenchRow>)> {
    let mut configs = Vec::new();
    for name in impls {
        let subject: crate::sweep::Subject = name.parse().map_err(anyhow::Error::msg)?;
        let mut options = run.clone();
        options.implementation = subject.implementation.clone();
        options.app_vars.extend(subject.app_vars);
        let cfg = options.to_config().with_context(|| format!("--impls {name}"))?;
        cfg.workload.validate().map_err(anyhow::Error::msg)?;
        cfg.backend.check_usable(&cfg.faults)?;
        configs.push((name.clone(), cfg));
    }
    let services_dir = crate::run_dir::create_sweep_dir(&run.out, "bench-services")?;
    let mut campaign = Campaign::new(run.backend.clone(), &services_dir);
    let mut limits = None;
    let mut rows = Vec::new();
    let result = async {
        for (name, cfg) in &configs {
            let env = services_for(
                &mut campaign,
                &services_dir,
                name,
                cfg,
                run,
                limit_duration,
                &mut limits,
            )
            .await?;
            settle(&env).await;
            eprintln!("benchmarking {name} ({:?}) ...", cfg.duration);
            let o = campaign
                .run(cfg)
                .await
                .with_context(|| format!("benchmarking {name}"))?;
            rows.push(row_of(name, &o, limits.as_ref(), warmup)?);
        }
        anyhow::Ok(())
    }
    .await;
    campaign.finish().await;
    result?;
    set_reference_ratios(&mut rows);
    Ok((limits, rows))
}

/// The services for `cfg`'s run from `campaign` (keeping them under
/// `services_dir`): those already running if
/// they have the brokers it needs, or new ones, on which the limits are
/// measured first (unless `limits` holds them already, or `limit_duration`
/// is `None`) and a warm-up run of `name` goes.
async fn services_for(
    campaign: &mut Campaign,
    services_dir: &std::path::Path,
    name: &str,
    cfg: &crate::runner::RunConfig,
    run: &RunOptions,
    limit_duration: Option<Duration>,
    limits: &mut Option<Limits>,
) -> Result<Arc<Environment>> {
    let brokers = crate::runner::brokers_needed(cfg);
    let services = campaign.services(brokers).await?;
    let env = services.env;
    if !services.fresh {
        return Ok(env);
    }
    eprintln!("started the services ({brokers} broker(s))");
    if let (Some(each), None) = (limit_duration, *limits) {
        eprintln!("measuring the machine's limits ({each:?} each) ...");
        let (c, p) = (run.workload.concurrency, run.workload.payload_bytes);
        *limits = Some(measure_limits_in(&env, c, p, each).await?);
    }
    eprintln!("warming the broker up: single-record round trips for {BROKER_WARM_UP:?}, not reported ...");
    let trips = warm_broker_in(&env, BROKER_WARM_UP)
        .await
        .context("warming the broker up")?;
    eprintln!("  {trips} round trips");
    eprintln!("warming the services up: a {WARM_UP_RUN:?} run of {name}, not reported ...");
    let mut warm = cfg.clone();
    warm.duration = WARM_UP_RUN;
    // As fast as the workers go: a JIT compiles a path after thousands
    // of calls, which 50 ops/s would take minutes to make.
    warm.workload.rate = 0.0;
    warm.out_dir = services_dir.join("warm-up");
    campaign
        .run_unnumbered(&warm)
        .await
        .with_context(|| format!("warming the services up with {name}"))?;
    Ok(env)
}

/// The bench row of `name`'s run `o`; latencies leave out the ops invoked in
/// the first `warmup`.
fn row_of(name: &str, o: &crate::runner::RunOutcome, limits: Option<&Limits>, warmup: Duration) -> Result<BenchRow> {
    let series = Series::read(&o.run_dir.join(crate::run_dir::HISTORY)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let delivered = delivered_rate(&series);
    let l = steady_latency_ms(&series, warmup);
    Ok(BenchRow {
        implementation: name.to_string(),
        p50_ms: l.map(|l| l.0),
        p99_ms: l.map(|l| l.1),
        max_ms: l.map(|l| l.2),
        ok_per_s: o.throughput_ok_per_s,
        delivered_per_s: delivered,
        ratio_to_limit: limits.map(|l| delivered / l.min()),
        p99_ratio_to_reference: None,
        p99_ratio_to_tuned_reference: None,
        transit_p50_ms: o.transit.map(|t| t.p50_ms),
        valid: o.result.valid,
        report: o.run_dir.join(crate::run_dir::REPORT_HTML),
    })
}

/// Before each measured run on services of dualcheck's own: Postgres
/// checkpoints and the kernel writes every dirty page out, so no run pays
/// for the writes of the one before it (the first run after a full-speed
/// warm-up measured a p99 of 46.5 ms, the same configuration two runs later
/// 20.3 ms). Not on the user's services, which are not the bench's to flush.
async fn settle(env: &Environment) {
    if env.is_external() {
        return;
    }
    match crate::env::postgres::connect(&env.postgres_direct_url).await {
        Ok(c) => {
            if let Err(e) = c.batch_execute("CHECKPOINT").await {
                tracing::warn!("bench: CHECKPOINT before a run: {e}");
            }
        }
        Err(e) => tracing::warn!("bench: connecting for a CHECKPOINT before a run: {e:#}"),
    }
    // SAFETY: sync(2) takes no arguments and cannot fail.
    let _ = tokio::task::spawn_blocking(|| unsafe { libc::sync() }).await;
}

/// `--drain N`: the limits (unless `limit_duration` is `None`), then each
/// relay's rate of publishing `n` events committed while it was stopped.
pub async fn drain(
    impls: &[String],
    n: u64,
    run: &RunOptions,
    limit_duration: Option<Duration>,
) -> Result<(Option<Limits>, Vec<RelayRateRow>)> {
    if !matches!(run.backend, crate::env::BackendKind::Local) {
        anyhow::bail!("`dualcheck bench --drain` runs on local services only: leave --backend out");
    }
    let limits = limits_if(limit_duration, run).await?;
    let mut rows = Vec::new();
    for name in impls {
        eprintln!("draining {n} events with {name}'s relay ...");
        rows.push(
            crate::relay_rate::relay_publish_rate(name, n, run.workload.concurrency, run.workload.payload_bytes)
                .await?,
        );
    }
    Ok((limits, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, p99: Option<f64>) -> BenchRow {
        BenchRow {
            implementation: name.into(),
            p50_ms: p99.map(|p| p / 2.0),
            p99_ms: p99,
            max_ms: p99,
            ok_per_s: 1.0,
            delivered_per_s: 1.0,
            ratio_to_limit: None,
            p99_ratio_to_reference: None,
            p99_ratio_to_tuned_reference: None,
            transit_p50_ms: None,
            valid: true,
            report: PathBuf::new(),
        }
    }

    #[test]
    fn the_tables_keep_the_layout_docs_performance_shows() {
        let r = BenchRow {
            p50_ms: Some(20.9),
            p99_ms: Some(117.1),
            max_ms: Some(276.6),
            transit_p50_ms: Some(10.1),
            ok_per_s: 1700.4,
            delivered_per_s: 1699.9,
            ratio_to_limit: Some(0.085),
            ..row("outbox-poll", None)
        };
        let t = table(None, &[r]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[..2],
            [
                "implementation           p50 ms   p99 ms   max ms  wire p50      ok/s  delivered/s    /limit   p99/ref  valid",
                "outbox-poll                20.9    117.1    276.6      10.1    1700.4       1699.9     0.085         -  true",
            ]
        );
        let drain = drain_table(
            None,
            &[RelayRateRow {
                implementation: "outbox-poll".into(),
                events: 20000,
                seconds: 0.53,
                per_s: 37879.1,
            }],
        );
        assert_eq!(
            drain,
            "implementation           events   seconds   events/s    /limit\n\
             outbox-poll               20000      0.53    37879.1         -\n"
        );
    }

    #[test]
    fn ratios_to_the_reference_only_when_it_was_measured() {
        let mut rows = vec![row("cdc-logical", Some(50.0)), row("debezium", Some(1000.0))];
        set_reference_ratios(&mut rows);
        assert_eq!(rows[0].p99_ratio_to_reference, Some(0.05));
        assert_eq!(rows[1].p99_ratio_to_reference, Some(1.0));
        let mut rows = vec![row("cdc-logical", Some(50.0))];
        set_reference_ratios(&mut rows);
        assert_eq!(rows[0].p99_ratio_to_reference, None);
        assert!(table(None, &rows).contains("p99/ref"));
        assert!(!table(None, &rows).contains("p99/tuned"));
    }

    #[test]
    fn the_best_pattern_against_the_reference_with_its_defaults_and_tuned() {
        let mut rows = vec![
            row("debezium", Some(800.0)),
            row("debezium:tuned", Some(40.0)),
            row("cdc-logical", Some(20.0)),
            row("outbox-poll", Some(60.0)),
        ];
        set_reference_ratios(&mut rows);
        assert_eq!(rows[2].p99_ratio_to_reference, Some(0.025));
        assert_eq!(rows[2].p99_ratio_to_tuned_reference, Some(0.5));
        assert_eq!(best_row(&rows).unwrap().implementation, "cdc-logical");
        let t = table(None, &rows);
        assert!(
            t.contains("p99/tuned")
                && t.contains(
                    "best p99: cdc-logical (20.0 ms): 0.025 of the reference's p99, 0.500 of the tuned reference's"
                ),
            "{t}"
        );
        rows[1].p99_ms = Some(10.0);
        assert_eq!(
            best_row(&rows).unwrap().implementation,
            "cdc-logical",
            "the reference's rows are not a pattern to compare"
        );
    }

    /// History lines of op `op` on `key`: invoked, ok and delivered (offset
    /// `op`) at these times (ns).
    fn op_lines(op: i64, key: &str, invoke: i64, ok: i64, deliver: i64) -> [String; 3] {
        [
            format!(r#"{{"type":"invoke","op":{op},"process":0,"key":"{key}","seq":0,"time":{invoke}}}"#),
            format!(r#"{{"type":"ok","op":{op},"process":0,"time":{ok}}}"#),
            format!(r#"{{"type":"deliver","op":{op},"event":"e{op}","partition":0,"offset":{op},"time":{deliver}}}"#),
        ]
    }

    #[test]
    fn warm_up_ops_are_left_out_of_the_latency() {
        let dir = std::env::temp_dir().join(format!("dualcheck-bench-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let h = dir.join(crate::run_dir::HISTORY);
        let s = 1_000_000_000i64;
        // Op 0 in the warm-up (latency 900 ms), ops 1..=2 after it (10 ms, 20 ms).
        let lines = [
            op_lines(0, "a", 0, 1, 900_000_001),
            op_lines(1, "b", 3 * s, 3 * s, 3 * s + 10_000_000),
            op_lines(2, "c", 4 * s, 4 * s, 4 * s + 20_000_000),
        ]
        .concat();
        std::fs::write(&h, lines.join("\n") + "\n").unwrap();
        let series = Series::read(&h).unwrap();
        assert_eq!(
            steady_latency_ms(&series, Duration::from_secs(2)),
            Some((10.0, 20.0, 20.0))
        );
        assert_eq!(steady_latency_ms(&series, Duration::ZERO).unwrap().2, 900.0);
        std::fs::remove_dir_all(&dir).ok();
    }
}
