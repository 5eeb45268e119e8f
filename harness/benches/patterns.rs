//! Criterion benchmarks of the patterns on real services, all on one
//! local environment started once:
//!
//! - `limits/postgres_commit`, `limits/kafka_produce`: the machine's limits, a
//!   single-row commit with an outbox-sized row (16 connections) and an
//!   idempotent acks=all produce of the same bytes, per element;
//! - `latency/NAME`: one op at a time, from its acknowledgment to its event
//!   arriving at a consumer on the direct listener (commit-to-delivery);
//! - `throughput/NAME`: 192 ops submitted by 16 workers, until every event has
//!   arrived (sustained events per second, per element).
//!
//! `cargo bench -p dualcheck --bench patterns`; `DUALCHECK_BENCH_IMPLS=a,b`
//! picks the patterns (default: the valid outbox and CDC patterns). Needs
//! `bash ci/setup`. The checker's own bench is `cargo bench -p
//! dualcheck-checkers --bench checker`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dualcheck::app_process::{AppCommand, AppProcess, AppVars, Reply};
use dualcheck::env::{BackendKind, EnvOptions, Environment};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const PARTITIONS: i32 = 4;
const BATCH: u64 = 192;
const WORKERS: u64 = 16;
const PAYLOAD: usize = 64;

/// Waiters for the first delivery of each op.
type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Instant>>>>;

/// One pattern running on the shared environment.
struct Running {
    app: AppProcess,
    _relay: Option<AppProcess>,
    waiters: Waiters,
    next_op: AtomicU64,
}

impl Running {
    async fn start(env: &Environment, rt_dir: &std::path::Path, name: &str) -> Running {
        let db = format!("bench_{}", name.replace('-', "_"));
        let topic = format!("bench-{name}");
        let (db_url, _) = env.create_database(&db).await.expect("creating the database");
        env.create_topic(&topic, PARTITIONS).await.expect("creating the topic");
        let dir = rt_dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let app_vars = AppVars {
            database_url: db_url,
            kafka_bootstrap: env.kafka_bootstrap.clone(),
            topic: topic.clone(),
            extra: Vec::new(),
            instance: 0,
            replicas: 1,
        };
        let cmd = AppCommand::Builtin(name.to_string());
        let info = implementations::lookup(name).expect("a built-in implementation");
        let t = Duration::from_secs(60);
        let (app, relay) = if info.relay == implementations::RelayKind::Process {
            let app = AppProcess::start_role(&cmd, &app_vars, &dir, t, Some("service")).await;
            let relay = AppProcess::start_role(&cmd, &app_vars, &dir, Duration::from_secs(240), Some("relay")).await;
            (
                app.expect("starting the service"),
                Some(relay.expect("starting the relay")),
            )
        } else {
            (
                AppProcess::start(&cmd, &app_vars, &dir, t)
                    .await
                    .expect("starting the app"),
                None,
            )
        };
        let waiters: Waiters = Arc::default();
        tokio::spawn(consume(env.kafka_direct_bootstrap.clone(), topic, waiters.clone()));
        Running {
            app,
            _relay: relay,
            waiters,
            next_op: AtomicU64::new(1),
        }
    }

    /// Submits one op (retrying a failure) and returns when it was
    /// acknowledged and a receiver of its delivery time.
    async fn submit(&self) -> (Instant, oneshot::Receiver<Instant>) {
        loop {
            let op = self.next_op.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            self.waiters.lock().unwrap().insert(op, tx);
            let o = workloads::Op {
                op,
                key: format!("b{op}"),
                seq: 0,
                payload: "x".repeat(PAYLOAD),
                abort: false,
                hold_ms: 0,
                events: vec![],
                write: Default::default(),
            };
            if self.app.submit(&o, Duration::from_secs(10)).await == Reply::Ok {
                return (Instant::now(), rx);
            }
            self.waiters.lock().unwrap().remove(&op);
        }
    }
}

/// Reads the topic (fresh, ours alone) from its beginning on the direct listener; wakes each op's waiter.
async fn consume(bootstrap: String, topic: String, waiters: Waiters) {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", format!("bench-{topic}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "5")
        .set("log_level", "3")
        .create()
        .expect("creating the bench consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(&topic, p, rdkafka::Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    loop {
        let Ok(m) = consumer.recv().await else { continue };
        let at = Instant::now();
        let op = m
            .payload()
            .and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
            .and_then(|v| v["op"].as_u64());
        if let Some(tx) = op.and_then(|op| waiters.lock().unwrap().remove(&op)) {
            let _ = tx.send(at);
        }
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fn patterns(c: &mut Criterion) {
    // The implementations run as `dualcheck app`, not as this bench binary.
    std::env::set_var("DUALCHECK_BIN", env!("CARGO_BIN_EXE_dualcheck"));
    let rt = runtime();
    let dir = std::env::temp_dir().join(format!("dualcheck-bench-{}", std::process::id()));
    let env = rt
        .block_on(Environment::start(EnvOptions {
            backend: BackendKind::Local,
            brokers: 1,
            run_dir: dir.clone(),
            timeout: Duration::from_secs(90),
        }))
        .expect("starting the services (run `bash ci/setup`)");

    // The machine's limits, on the same environment.
    let (_, direct_db) = rt.block_on(env.create_database("bench_limits")).unwrap();
    rt.block_on(env.create_topic("bench-limits", PARTITIONS)).unwrap();
    let mut limits = c.benchmark_group("limits");
    limits.sample_size(10).measurement_time(Duration::from_secs(10));
    limits.throughput(Throughput::Elements(1));
    limits.bench_function("postgres_commit", |b| {
        b.iter_custom(|iters| {
            let d = Duration::from_millis(500);
            let rate = rt
                .block_on(dualcheck::bench::pg_commit_rate(
                    &direct_db,
                    WORKERS as usize,
                    PAYLOAD,
                    d,
                ))
                .unwrap();
            Duration::from_secs_f64(iters as f64 / rate.max(1e-9))
        })
    });
    let bootstrap = env.kafka_direct_bootstrap.clone();
    limits.bench_function("kafka_produce", |b| {
        b.iter_custom(|iters| {
            let d = Duration::from_millis(500);
            let rate = dualcheck::bench::kafka_produce_rate(&bootstrap, "bench-limits", PAYLOAD, d).unwrap();
            Duration::from_secs_f64(iters as f64 / rate.max(1e-9))
        })
    });
    limits.finish();

    let names = std::env::var("DUALCHECK_BENCH_IMPLS")
        .unwrap_or_else(|_| "outbox-poll,outbox-notify,outbox-xid,cdc-logical,cdc-outbox,debezium".into());
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let running = Arc::new(rt.block_on(Running::start(&env, &dir, name)));
        let mut latency = c.benchmark_group("latency");
        latency.sample_size(10).measurement_time(Duration::from_secs(10));
        latency.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let (ok_at, delivered) = running.submit().await;
                        let at = tokio::time::timeout(Duration::from_secs(60), delivered)
                            .await
                            .expect("an acknowledged event arrives within 60 s")
                            .expect("the consumer runs");
                        total += at.saturating_duration_since(ok_at);
                    }
                    total
                })
            })
        });
        latency.finish();

        let mut sustained = c.benchmark_group("throughput");
        sustained.sample_size(10).measurement_time(Duration::from_secs(15));
        sustained.throughput(Throughput::Elements(BATCH));
        sustained.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let mut workers = Vec::new();
                        for _ in 0..WORKERS {
                            let r = running.clone();
                            workers.push(tokio::spawn(async move {
                                let mut pending = Vec::new();
                                for _ in 0..BATCH / WORKERS {
                                    pending.push(r.submit().await.1);
                                }
                                for p in pending {
                                    let _ = tokio::time::timeout(Duration::from_secs(60), p).await;
                                }
                            }));
                        }
                        for w in workers {
                            w.await.unwrap();
                        }
                    }
                    started.elapsed()
                })
            })
        });
        sustained.finish();
    }
    let mut env = env;
    rt.block_on(env.shutdown()).ok();
}

criterion_group!(benches, patterns);
criterion_main!(benches);
