//! How the dual write is done: the [`Pattern`] interface every implementation
//! follows, the [`REGISTRY`] of built-in implementations (the names the CLI
//! accepts), and the application process that serves one of them over the
//! black-box HTTP contract of DESIGN.md ([`server`]).
//!
//! Each built-in implementation runs as its own OS process
//! (`dualcheck app --impl NAME`): the harness starts, SIGKILLs and restarts it,
//! so relay death and crash-after-commit are real process deaths.
//!
//! Adding a pattern: one module file exporting `pub const INFO: PatternInfo`,
//! plus one line in [`REGISTRY`].

pub mod backoff;
pub mod business;
pub mod cdc;
pub mod cdc_logical;
pub mod cdc_outbox;
pub mod config;
pub mod crash;
pub mod db;
pub mod debezium;
pub mod inbox;
pub mod kafka;
pub mod kafka_first;
pub mod listen_to_yourself;
pub mod naive;
pub mod naive_publish_first;
pub mod outbox;
pub mod outbox_idcursor;
pub mod outbox_notify;
pub mod outbox_poll;
pub mod outbox_xid;
pub mod own_consumer;
pub mod read_cache;
pub mod server;
pub mod two_phase;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub use config::{AppConfig, Knob, Role, KNOBS};

/// SQL every built-in implementation's business table answers: one `op` column
/// (bigint) with every op whose business row exists.
pub const ORDERS_COMMITTED_SQL: &str = "SELECT op FROM orders";

/// The business table every built-in implementation writes (idempotent DDL).
pub const ORDERS_DDL: &str = "CREATE TABLE IF NOT EXISTS orders (
    op bigint PRIMARY KEY,
    key text NOT NULL,
    seq bigint NOT NULL,
    payload text,
    created_at timestamptz DEFAULT now()
)";

/// One business operation as the runner submits it (`POST /ops`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OpRequest {
    /// Op id, unique within the run.
    pub op: i64,
    /// Business key; also the Kafka record key.
    pub key: String,
    /// Position of the op among the ops on its key.
    pub seq: i64,
    /// Business payload (may be long).
    #[serde(default)]
    pub payload: String,
    /// A business transaction that aborts on purpose: writes, then ROLLBACK, answer fail.
    #[serde(default)]
    pub abort: bool,
    /// Milliseconds to hold the open transaction after the inserts, before COMMIT.
    #[serde(default)]
    pub hold_ms: u64,
}

/// What an implementation says about one op — honestly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpOutcome {
    /// The business effect is durable (committed). HTTP 200.
    Ok,
    /// The business effect certainly did not happen. HTTP 409.
    Fail(String),
    /// Cannot know (e.g. an error during COMMIT). HTTP 500.
    Unknown(String),
}

/// Events committed but not yet published, as `GET /backlog` reports them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Backlog {
    /// Events waiting to be published (includes those blocked behind a parked event).
    pub backlog: i64,
    /// Age of the oldest waiting event, ms (0 when none).
    pub oldest_age_ms: i64,
    /// Events parked in the failed-events table after too many attempts.
    pub parked: i64,
}

/// Background parts of a pattern (relays, listeners, cleaners).
pub struct Background {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Background {
    /// No background parts.
    pub fn none() -> Self {
        Self::new().0
    }

    /// An empty set plus the stop signal its tasks should watch.
    pub fn new() -> (Self, tokio::sync::watch::Receiver<bool>) {
        let (stop, rx) = tokio::sync::watch::channel(false);
        (
            Background {
                stop,
                tasks: Vec::new(),
            },
            rx,
        )
    }

    /// Adds a spawned task.
    pub fn push(&mut self, task: tokio::task::JoinHandle<()>) {
        self.tasks.push(task);
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// True when there are no tasks.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Signals every task to stop and waits (at most 5 s each, then aborts it).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for mut t in self.tasks {
            if tokio::time::timeout(std::time::Duration::from_secs(5), &mut t)
                .await
                .is_err()
            {
                t.abort();
            }
        }
    }
}

/// What every pattern shares at run time: configuration, database pool,
/// Kafka producer and the crash point.
pub struct AppContext {
    /// Configuration from the environment.
    pub config: AppConfig,
    /// Reconnecting Postgres pool (through the proxy).
    pub db: Arc<db::Db>,
    /// Idempotent producer to `config.topic` (through the proxy).
    pub publisher: Arc<kafka::Publisher>,
    /// The `crash-after-commit` crash point.
    pub crash: crash::CrashPoint,
}

impl AppContext {
    /// Builds the pool and the producer from `config` (connects lazily).
    pub fn new(config: AppConfig) -> Result<Arc<Self>> {
        let db = db::Db::new(&config)?;
        let publisher = Arc::new(kafka::Publisher::new(
            &config.kafka_bootstrap,
            &config.topic,
            config.publish_timeout,
        )?);
        Ok(Arc::new(AppContext {
            config,
            db,
            publisher,
            crash: crash::CrashPoint::default(),
        }))
    }
}

/// One way of doing the dual write.
#[async_trait::async_trait]
pub trait Pattern: Send + Sync {
    /// CLI name (`outbox-poll`).
    fn name(&self) -> &'static str;
    /// One line of help.
    fn about(&self) -> &'static str;
    /// The query that yields the `op` (bigint) of every op whose business row exists.
    fn committed_sql(&self) -> &'static str {
        ORDERS_COMMITTED_SQL
    }
    /// Creates the schema idempotently (the process is restarted many times).
    async fn setup_schema(&self, db: &tokio_postgres::Client) -> Result<()>;
    /// Starts relays, listeners, cleaners; they resume whatever is pending and
    /// survive every fault (they never exit on errors).
    async fn start_background(&self) -> Result<Background> {
        Ok(Background::none())
    }
    /// Executes one business op and tells honestly what happened.
    async fn execute(&self, op: &OpRequest) -> OpOutcome;
    /// Events committed but not yet published (naive patterns: zero).
    async fn backlog(&self) -> Result<Backlog> {
        Ok(Backlog::default())
    }
    /// The newest seq on `key` as this pattern's read path sees it
    /// (`GET /ops/{key}`; `None`: nothing known). Default: the orders table.
    async fn read(&self, ctx: &AppContext, key: &str) -> Result<Option<i64>> {
        read_orders(ctx, key).await
    }
}

/// The newest seq of `key` in the `orders` table (`None`: no row).
pub async fn read_orders(ctx: &AppContext, key: &str) -> Result<Option<i64>> {
    let mut c = ctx.db.get().await?;
    let r = db::timed(
        ctx.db.timeout,
        "reading the newest seq of a key from orders",
        c.query_one("SELECT max(seq) FROM orders WHERE key = $1", &[&key]),
    )
    .await;
    match r {
        Ok(row) => Ok(row.get(0)),
        Err(e) => {
            c.discard();
            Err(e)
        }
    }
}

/// Where a pattern's relay (what publishes committed events) runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayKind {
    /// Nothing publishes after the request: the request itself publishes
    /// (naive patterns, kafka-first, two-phase). Nothing to drain.
    None,
    /// Background tasks of the service process (outbox relays): killing the
    /// service kills them too.
    InProcess,
    /// A process of its own, `dualcheck app --impl NAME` with
    /// `DUALCHECK_ROLE=relay`, next to the service process (CDC tailer, Kafka
    /// Connect): `relay-kill` kills it alone, `crash-after-commit` the service
    /// alone, and the runner asks it for the backlog.
    Process,
}

/// Registry entry of a built-in implementation.
#[derive(Clone, Copy)]
pub struct PatternInfo {
    /// CLI name.
    pub name: &'static str,
    /// One line of help.
    pub about: &'static str,
    /// Expected verdict under faults (for `dualcheck list`).
    pub expected: &'static str,
    /// Query yielding the committed ops (one bigint column `op`).
    pub committed_sql: &'static str,
    /// Where the relay that publishes committed events runs; the harness
    /// starts, kills and drains relays from this fact alone.
    pub relay: RelayKind,
    /// Runs of this pattern read each key back right after each acknowledged
    /// write unless told otherwise (`dualcheck run --reads` turns reads on for any).
    pub reads_by_default: bool,
    /// The pattern prepares transactions (`PREPARE TRANSACTION`): the harness
    /// watches `pg_prepared_xacts` and resolves what is left in doubt.
    pub prepares_transactions: bool,
    /// Tables whose rows a WAL tailer streams as events; `schema-change`
    /// alters them along with `orders`.
    pub streamed_tables: &'static [&'static str],
    /// `dualcheck bench` states every pattern's p99 as a ratio to this one's.
    pub latency_reference: bool,
    /// Builds the pattern on a context.
    pub build: fn(Arc<AppContext>) -> Arc<dyn Pattern>,
}

/// Every built-in implementation, in the order `dualcheck list` shows them.
pub const REGISTRY: &[PatternInfo] = &[
    naive::INFO,
    naive_publish_first::INFO,
    outbox_poll::INFO,
    outbox_notify::INFO,
    outbox_idcursor::INFO,
    outbox_xid::INFO,
    listen_to_yourself::INFO,
    kafka_first::INFO,
    two_phase::INFO,
    cdc_logical::INFO,
    cdc_outbox::INFO,
    debezium::INFO,
];

/// Looks a built-in implementation up by CLI name.
pub fn lookup(name: &str) -> Result<&'static PatternInfo> {
    REGISTRY.iter().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<_> = REGISTRY.iter().map(|p| p.name).collect();
        anyhow::anyhow!(
            "unknown implementation `{name}`; built-in ones are: {} (or use `--impl exec --cmd ...` for your own)",
            names.join(", ")
        )
    })
}

/// Stable shard of a key in `0..1024` (FNV-1a), stored with each outbox row;
/// relays own groups `shard % shards`.
pub fn key_shard(key: &str) -> i32 {
    let mut h: u32 = 0x811c9dc5;
    for b in key.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    (h % 1024) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_are_unique_and_found() {
        for p in REGISTRY {
            assert_eq!(lookup(p.name).unwrap().name, p.name);
            assert_eq!(REGISTRY.iter().filter(|q| q.name == p.name).count(), 1);
        }
        let e = lookup("nope").err().unwrap().to_string();
        assert!(e.contains("outbox-poll"), "{e}");
    }

    #[test]
    fn op_request_defaults() {
        let op: OpRequest = serde_json::from_str(r#"{"op":17,"key":"k3","seq":5}"#).unwrap();
        assert_eq!(op.payload, "");
        assert!(!op.abort);
        assert_eq!(op.hold_ms, 0);
    }

    #[test]
    fn shards_are_stable_and_bounded() {
        assert_eq!(key_shard("k3"), key_shard("k3"));
        for i in 0..1000 {
            let s = key_shard(&format!("k{i}"));
            assert!((0..1024).contains(&s));
        }
    }
}
