//! Shared helpers of the implementation tests: a real `dualcheck app` process
//! (the harness's [`AppProcess`]) with its own database and topic, and a reader
//! of everything published to the topic (the observer's consumer: direct
//! listener, read_committed).

#![allow(dead_code)]

use dualcheck::app_process::{AppProcess, AppVars, CrashPoint};
use dualcheck::env::Environment;
use implementations::runtime::kafka::Envelope;
use implementations::{Backlog, Op};
use rdkafka::message::Headers;
use rdkafka::Message;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A database and a topic of one test.
pub struct Space {
    /// Database name.
    pub db: String,
    /// Proxied URL (for the app).
    pub url: String,
    /// Direct URL (for assertions).
    pub direct_url: String,
    /// Topic.
    pub topic: String,
    /// Partitions of the topic.
    pub partitions: i32,
}

/// Creates a fresh database and a topic with `partitions` partitions.
pub async fn space(env: &Environment, prefix: &str, partitions: i32) -> Space {
    let name = super::services::unique(prefix).to_lowercase();
    let (url, direct_url) = env.create_database(&name).await.expect("creating the test database");
    env.create_topic(&name, partitions)
        .await
        .expect("creating the test topic");
    Space {
        db: name.clone(),
        url,
        direct_url,
        topic: name,
        partitions,
    }
}

/// A running `dualcheck app --impl NAME` process: the harness's
/// [`AppProcess`], with the answers the tests assert on.
pub struct App {
    process: AppProcess,
    /// Implementation name.
    pub name: String,
    /// HTTP port (the same after a restart).
    pub port: u16,
}

/// How long an app may take to answer `/health` (debezium answers once Kafka
/// Connect runs its connector).
const READY_TIMEOUT: Duration = Duration::from_secs(200);

impl App {
    /// Starts the app on `space` with extra environment variables and waits for `/health`.
    pub async fn start(env: &Environment, name: &str, space: &Space, extra: &[(&str, &str)]) -> App {
        let app_vars = AppVars {
            database_url: space.url.clone(),
            kafka_bootstrap: env.kafka_bootstrap.clone(),
            topic: space.topic.clone(),
            extra: extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            instance: 0,
            replicas: 1,
        };
        // Its log and files (Kafka Connect's, for debezium) go to a directory of its own.
        let dir = env.run_dir.join(super::services::unique(&format!("app-{}", space.db)));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_dualcheck"));
        let process = AppProcess::start_builtin(bin, name, &app_vars, &dir, READY_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("starting {name}: {e:#}"));
        App {
            port: process.port(),
            process,
            name: name.to_string(),
        }
    }

    /// The app's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.process.log_path()).unwrap_or_default()
    }

    /// URL of a path on the app.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.process.base_url())
    }

    /// The app's account of op `op` (`GET /trace/{op}`; `None`: not served).
    pub async fn trace(&self, op: u64) -> Option<serde_json::Value> {
        self.process
            .trace(op, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("GET /trace/{op}: {e:#}"))
    }

    /// Submits an op; returns the HTTP status (0 when the request failed: connection lost, timeout).
    pub async fn op(&self, op: &Op) -> u16 {
        match self.process.post_op(op, Duration::from_secs(30)).await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// `GET /backlog`.
    pub async fn backlog(&self) -> Backlog {
        self.process
            .backlog_report()
            .await
            .expect("GET /backlog")
            .expect("the app serves GET /backlog")
    }

    /// Waits until the backlog is empty (panics after `timeout`).
    pub async fn wait_drained(&self, timeout: Duration) {
        let start = Instant::now();
        loop {
            if let Ok(Some(b)) = self.process.backlog_report().await {
                if b.backlog == 0 {
                    return;
                }
            }
            assert!(
                start.elapsed() < timeout,
                "{}: backlog not drained after {timeout:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `POST /crash-after-commit`.
    pub async fn arm_crash(&self) {
        let armed = self
            .process
            .arm_crash_after_commit()
            .await
            .expect("POST /crash-after-commit");
        assert_eq!(armed, CrashPoint::Armed);
    }

    /// `POST /crash-after-ack`: armed, or not offered by the implementation.
    pub async fn arm_crash_after_ack(&self) -> CrashPoint {
        self.process.arm_crash_after_ack().await.expect("POST /crash-after-ack")
    }

    /// Waits for the process to end (after a crash point); returns its status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if !self.process.is_alive() {
                return self.process.exit_status().expect("an ended process has an exit status");
            }
            assert!(
                start.elapsed() < timeout,
                "{} still running after {timeout:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILLs the process.
    pub async fn kill(&mut self) {
        self.process.kill().await.expect("killing the app");
    }

    /// Starts the process again (same port and environment) and waits for `/health`.
    pub async fn restart(&mut self) {
        self.process.restart().await.expect("restarting the app");
        self.process
            .wait_ready(READY_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}", self.name));
    }
}

/// One record read from the topic.
#[derive(Clone, Debug)]
pub struct Delivered {
    /// Record key.
    pub key: String,
    /// Decoded value.
    pub value: Envelope,
    /// `event_id` header.
    pub header_event: Option<String>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Reads the topic from the start on the direct listener (with the
/// observer's consumer) until no record has
/// arrived for `quiet` (after at least `want` records, or `timeout`).
pub async fn read_topic(
    env: &Environment,
    space: &Space,
    want: usize,
    quiet: Duration,
    timeout: Duration,
) -> Vec<Delivered> {
    let topic = &space.topic;
    let consumer = dualcheck::observer::consumer(&env.kafka_direct_bootstrap, &[(topic.clone(), space.partitions)])
        .expect("creating the topic reader");
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    loop {
        let wait = if out.len() >= want {
            quiet
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        match tokio::time::timeout(wait.max(Duration::from_millis(1)), consumer.recv()).await {
            Err(_) => {
                if out.len() >= want || Instant::now() >= deadline {
                    break;
                }
            }
            Ok(Err(e)) => panic!("consuming {topic}: {e}"),
            Ok(Ok(m)) => {
                let key = String::from_utf8(m.key().unwrap_or_default().to_vec()).unwrap();
                let value: Envelope = serde_json::from_slice(m.payload().unwrap_or_default())
                    .unwrap_or_else(|e| panic!("record value is not the envelope: {e}"));
                let header_event = m.headers().and_then(|h| {
                    h.iter()
                        .find(|x| x.key == "event_id")
                        .and_then(|x| x.value.map(|v| String::from_utf8_lossy(v).into_owned()))
                });
                out.push(Delivered {
                    key,
                    value,
                    header_event,
                    partition: m.partition(),
                    offset: m.offset(),
                });
            }
        }
    }
    out
}

/// The committed ops per the implementation's committed SQL, on the direct connection.
pub async fn committed(space: &Space, sql: &str) -> std::collections::BTreeSet<i64> {
    let c = dualcheck::env::postgres::connect(&space.direct_url).await.unwrap();
    c.query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect()
}

/// Per key, the seqs of each op's first delivery in log order (partition, offset);
/// also asserts each key uses one partition.
pub fn first_delivery_seqs(records: &[Delivered]) -> BTreeMap<String, Vec<i64>> {
    let mut sorted = records.to_vec();
    sorted.sort_by_key(|d| (d.partition, d.offset));
    let mut part: BTreeMap<String, i32> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for d in sorted {
        let p = *part.entry(d.key.clone()).or_insert(d.partition);
        assert_eq!(p, d.partition, "key {} on two partitions", d.key);
        if seen.insert(d.value.op) {
            out.entry(d.key.clone()).or_default().push(d.value.seq);
        }
    }
    out
}

/// Runs `ops_per_key` sequential ops on each of `keys` keys concurrently (op ids
/// `base + key * 1000 + seq`); returns (op, key, seq, status) of each.
pub async fn drive(app: &App, base: i64, keys: usize, ops_per_key: i64, payload: &str) -> Vec<(i64, String, i64, u16)> {
    drive_at(app.port, base, keys, 0..ops_per_key, payload, Duration::ZERO).await
}

/// [`drive`] against the app on `port` (which may be killed and restarted
/// meanwhile: status 0 = no answer) with the seqs `seqs` on every key, pausing
/// `pace` between ops of a key.
pub async fn drive_at(
    port: u16,
    base: i64,
    keys: usize,
    seqs: std::ops::Range<i64>,
    payload: &str,
    pace: Duration,
) -> Vec<(i64, String, i64, u16)> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let http = &http;
    let futs = (0..keys).map(|k| {
        let seqs = seqs.clone();
        async move {
            let key = format!("k{k}");
            let mut out = Vec::new();
            for seq in seqs {
                let id = base + k as i64 * 1000 + seq;
                let op = Op {
                    op: id as u64,
                    key: key.clone(),
                    seq: seq as u64,
                    payload: payload.to_string(),
                    abort: false,
                    hold_ms: 0,
                    events: vec![],
                    write: Default::default(),
                };
                let status = match http.post(format!("http://127.0.0.1:{port}/ops")).json(&op).send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                };
                out.push((id, key.clone(), seq, status));
                if !pace.is_zero() {
                    tokio::time::sleep(pace).await;
                }
            }
            out
        }
    });
    futures::future::join_all(futs).await.into_iter().flatten().collect()
}
