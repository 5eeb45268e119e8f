//! The pattern contract: what a pattern implements ([`Pattern`]), what it is
//! given ([`AppContext`]), what it answers ([`OpAnswer`], [`Backlog`]), and
//! the facts the harness reads about it ([`PatternInfo`], [`RelayKind`]). The
//! body of `POST /ops` is [`Op`], the same type the workload generates.

use crate::runtime::business::ORDERS_COMMITTED_SQL;
use crate::runtime::config::AppConfig;
use crate::runtime::crash::CrashPoint;
use crate::runtime::db::Db;
use crate::runtime::kafka::Publisher;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
pub use workloads::Op;

/// What an implementation answers about one op — honestly (the server side of
/// `POST /ops`; the history calls how an op ended its outcome, the database
/// transaction inside has its own end, `runtime::business::TxnEnd`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpAnswer {
    /// The business effect is durable (committed). HTTP 200.
    Ok,
    /// The business effect certainly did not happen. HTTP 409.
    Fail(String),
    /// Cannot know (e.g. an error during COMMIT). HTTP 500.
    Unknown(String),
}

/// Events committed but not yet published, as `GET /backlog` reports them.
/// `backlog` is required (an answer without it is not understood); a field
/// a program leaves out besides reads as 0 (a black box may report only `backlog`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Backlog {
    /// Events waiting to be published (includes those blocked behind a parked event).
    pub backlog: i64,
    /// Age of the oldest waiting event, ms (0 when none).
    #[serde(default)]
    pub oldest_age_ms: i64,
    /// Events parked in the failed-events table after too many attempts.
    #[serde(default)]
    pub parked: i64,
    /// Requests (`POST /ops`) the process is executing right now; built-ins
    /// always report it, a program may leave it out (then the drain cannot
    /// know that no request will still commit or publish, and waits its full
    /// quiet period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<u64>,
}

impl Backlog {
    /// A backlog of `n` events and nothing else known: what a service's own
    /// count (a template's endpoint, or a query on its outbox) says.
    pub fn count(n: i64) -> Backlog {
        Backlog {
            backlog: n,
            ..Backlog::default()
        }
    }
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
    pub db: Arc<Db>,
    /// Idempotent producer to `config.topic` (through the proxy).
    pub publisher: Arc<Publisher>,
    /// The `crash-after-commit` crash point.
    pub crash: CrashPoint,
}

impl AppContext {
    /// Builds the pool and the producer from `config` (connects lazily).
    pub fn new(config: AppConfig) -> Result<Arc<Self>> {
        let db = Db::new(&config)?;
        let publisher = Arc::new(Publisher::with_durability(
            &config.kafka_bootstrap,
            &config.topic,
            config.publish_timeout,
            config.linger,
            // The producer mutants (only patterns declaring them accept them).
            crate::patterns::outbox::producer_durability(&config),
        )?);
        Ok(Arc::new(AppContext {
            config,
            db,
            publisher,
            crash: CrashPoint::default(),
        }))
    }
}

/// One way of doing the dual write: what the application process does for
/// each endpoint of the HTTP contract. The facts about the pattern (name, help,
/// committed SQL, where its relay runs, ...) are in its [`PatternInfo`].
#[async_trait::async_trait]
pub trait Pattern: Send + Sync {
    /// Creates the schema idempotently (the process is restarted many times).
    async fn setup_schema(&self, db: &tokio_postgres::Client) -> Result<()>;
    /// Starts relays, listeners, cleaners; they resume whatever is pending and
    /// survive every fault (they never exit on errors).
    async fn start_background(&self) -> Result<Background> {
        Ok(Background::none())
    }
    /// Executes one business op and tells honestly what happened.
    async fn execute(&self, op: &Op) -> OpAnswer;
    /// Events committed but not yet published (naive patterns: zero).
    async fn backlog(&self) -> Result<Backlog> {
        Ok(Backlog::default())
    }
    /// The newest seq on `key` as this pattern's read path sees it
    /// (`GET /ops/{key}`; `None`: nothing known). Default: the orders table.
    async fn read(&self, ctx: &AppContext, key: &str) -> Result<Option<i64>> {
        crate::runtime::business::read_orders(ctx, key).await
    }
    /// Whether the process ends gracefully on SIGTERM (answers what it
    /// executes, stops its background parts, then exits); `false`: no
    /// handler, so SIGTERM ends it at once, as it does a program that never
    /// asked for the signal (a mutant's).
    fn graceful_shutdown(&self) -> bool {
        true
    }
    /// Whether the pattern's relay calls [`CrashPoint::after_ack`] between
    /// Kafka's acknowledgment and its own record of it (`POST
    /// /crash-after-ack`, which `relay-kill` uses). Default: no relay with one.
    fn crash_point_after_ack(&self) -> bool {
        false
    }
    /// The pattern's own account of op `op` (`GET /trace/{op}`): a JSON
    /// object with at least `op` and `state` (`pending`, `published`,
    /// `parked`, `not_committed`, `unknown`, or a word of the pattern's own),
    /// and whatever else it knows (attempts, last error, offsets, positions).
    /// `None` (the default): not served, 404.
    async fn trace(&self, op: i64) -> Result<Option<serde_json::Value>> {
        let _ = op;
        Ok(None)
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

/// How a pattern runs as several instances (`--replicas N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scaling {
    /// Every instance runs whole, its relay included (where it has one): the
    /// relays share the work among themselves, as in production (advisory
    /// locks and `SKIP LOCKED`, idempotent writes of consumed events).
    Replicated,
    /// The service scales, the relay process stays one: the reason (one
    /// replication slot has one reader).
    OneRelay(&'static str),
    /// One instance only: the reason.
    Single(&'static str),
}

/// Whether a pattern publishes ops of several events (`--events-per-op`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MultiEvent {
    /// All of an op's events, in every write shape (`--write`).
    Supported,
    /// One event per op only: the reason (a run asking for more is refused
    /// before anything starts).
    Refused(&'static str),
}

/// Everything the harness and the CLI know about a pattern, stated once: the
/// harness reads these facts and never a pattern's name. Fill it with
/// [`PatternInfo::new`] and struct-update syntax, naming only the facts that
/// differ from the defaults.
#[derive(Clone, Copy)]
pub struct PatternInfo {
    /// CLI name.
    pub name: &'static str,
    /// One line of help.
    pub about: &'static str,
    /// Expected verdicts under faults, as data (`dualcheck sweep` judges each
    /// run against them, `dualcheck list` prints them): the first rule that
    /// applies to a run's faults wins; none: valid.
    pub expect: &'static [crate::expect::Expectation],
    /// Knob settings that make this pattern a negative control, each with the
    /// expectations that then replace [`PatternInfo::expect`].
    pub controls: &'static [crate::expect::Control],
    /// Query yielding the committed ops (one bigint column `op`).
    pub committed_sql: &'static str,
    /// Where the relay that publishes committed events runs; the harness
    /// starts, kills and drains relays from this fact alone.
    pub relay: RelayKind,
    /// Runs of this pattern read each key back right after each acknowledged
    /// write unless told otherwise (`dualcheck run --reads` turns reads on for any).
    pub reads_by_default: bool,
    /// The pattern prepares transactions (`PREPARE TRANSACTION`), each named
    /// by [`prepared_gid`]: the harness watches `pg_prepared_xacts` and
    /// resolves what is left in doubt by the op the name carries.
    pub prepares_transactions: bool,
    /// Tables whose rows a WAL tailer streams as events; `schema-change`
    /// alters them along with `orders`.
    pub streamed_tables: &'static [&'static str],
    /// The outbox table of an outbox pattern (in the run's database): the
    /// harness samples its size on disk during a run. `None`: no outbox.
    pub outbox_table: Option<&'static str>,
    /// `dualcheck bench` states every pattern's p99 as a ratio to this one's.
    pub latency_reference: bool,
    /// Its `GET /backlog` is exact: every event counts until Kafka has
    /// acknowledged its publish, and `in_flight` counts every request being
    /// executed — so at backlog 0 and nothing in flight no publish is left
    /// inside a producer, and the drain needs only a short second look
    /// instead of the margin it keeps for programs it knows nothing of. Never set with one of
    /// [`PatternInfo::controls`] set: a mutant may well publish after it says 0.
    pub exact_backlog: bool,
    /// Knob settings that tune the pattern for latency (`NAME:tuned` in
    /// `dualcheck bench`/`sweep` `--impls`: the pattern with these knobs, so
    /// a bench reports it both with its defaults and tuned). Empty: no tuning.
    pub tuned: &'static [(&'static str, &'static str)],
    /// How it runs under `--replicas N` (a pattern that cannot is refused before anything starts).
    pub scaling: Scaling,
    /// Whether it publishes ops of several events (a pattern that cannot is
    /// refused before anything starts).
    pub multi_event: MultiEvent,
    /// Builds the pattern on a context.
    pub build: fn(Arc<AppContext>) -> Arc<dyn Pattern>,
}

impl PatternInfo {
    /// A pattern called `name`, built by `build`, with the defaults for every
    /// other fact: expected verdict `valid`, the committed ops of the `orders`
    /// table ([`ORDERS_COMMITTED_SQL`]), no relay ([`RelayKind::None`]), no
    /// reads by default, no prepared transactions, no streamed tables, no outbox table, not the
    /// latency reference, no exact backlog, no tuned knobs, replicated
    /// whole ([`Scaling::Replicated`]), ops of several events supported
    /// ([`MultiEvent::Supported`]). `const`, so a registry entry is a `const`:
    ///
    /// ```ignore
    /// pub const INFO: PatternInfo = PatternInfo {
    ///     relay: RelayKind::InProcess,
    ///     ..PatternInfo::new("my-outbox", "a team's own outbox", |ctx| Arc::new(MyOutbox { ctx }))
    /// };
    /// ```
    pub const fn new(name: &'static str, about: &'static str, build: fn(Arc<AppContext>) -> Arc<dyn Pattern>) -> Self {
        PatternInfo {
            name,
            about,
            expect: crate::expect::Expectation::VALID,
            controls: &[],
            committed_sql: ORDERS_COMMITTED_SQL,
            relay: RelayKind::None,
            reads_by_default: false,
            prepares_transactions: false,
            streamed_tables: &[],
            outbox_table: None,
            latency_reference: false,
            exact_backlog: false,
            tuned: &[],
            scaling: Scaling::Replicated,
            multi_event: MultiEvent::Supported,
            build,
        }
    }

    /// Whether a run with the knob settings `app_vars` has an exact backlog
    /// ([`PatternInfo::exact_backlog`]): never with one of its controls set.
    pub fn exact_backlog_with(&self, app_vars: &[(String, String)]) -> bool {
        self.exact_backlog && !self.controls.iter().any(|c| c.is_set_in(app_vars))
    }
}

impl PatternInfo {
    /// Whether ops of up to `events` events can run, or why not.
    pub fn check_multi_event(&self, events: u32) -> Result<(), String> {
        match self.multi_event {
            MultiEvent::Refused(why) if events > 1 => Err(format!(
                "{} publishes one event per op ({why}); drop --events-per-op or choose another pattern",
                self.name
            )),
            _ => Ok(()),
        }
    }

    /// Whether `replicas` instances can run, or why not.
    pub fn check_replicas(&self, replicas: usize) -> Result<(), String> {
        match self.scaling {
            Scaling::Single(why) if replicas > 1 => Err(format!(
                "{} runs as one instance only ({why}); drop --replicas or choose another pattern",
                self.name
            )),
            _ => Ok(()),
        }
    }

    /// Whether each instance runs its own relay process (else the relay, if
    /// the pattern has one apart, stays one process).
    pub fn relay_per_instance(&self) -> bool {
        self.relay == RelayKind::Process && self.scaling == Scaling::Replicated
    }
}

/// Global transaction id of op `op`'s prepared transaction (`dc-<op>`), for
/// patterns that prepare transactions: the harness resolves a transaction left
/// in doubt by the op it names.
pub fn prepared_gid(op: i64) -> String {
    format!("dc-{op}")
}

/// The op of a global transaction id made by [`prepared_gid`] (`None`: not one of ours).
pub fn op_of_prepared_gid(gid: &str) -> Option<i64> {
    gid.strip_prefix("dc-")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gids_round_trip() {
        assert_eq!(prepared_gid(17), "dc-17");
        assert_eq!(op_of_prepared_gid(&prepared_gid(17)), Some(17));
        assert_eq!(op_of_prepared_gid("dc-17"), Some(17));
        assert_eq!(op_of_prepared_gid("other-17"), None);
        assert_eq!(op_of_prepared_gid("dc-x"), None);
    }

    #[test]
    fn replicas_are_refused_only_where_the_pattern_says_why() {
        for p in crate::REGISTRY {
            assert!(p.check_replicas(1).is_ok(), "{}", p.name);
            match p.scaling {
                Scaling::Single(why) => {
                    let e = p.check_replicas(2).unwrap_err();
                    assert!(e.contains(why) && e.contains("--replicas"), "{e}");
                }
                Scaling::OneRelay(_) => {
                    assert!(p.check_replicas(3).is_ok());
                    assert!(!p.relay_per_instance(), "{}", p.name);
                }
                Scaling::Replicated => assert!(p.check_replicas(3).is_ok()),
            }
        }
        let single = PatternInfo {
            scaling: Scaling::Single("its state lives in memory"),
            ..PatternInfo::new("solo", "one instance", |_| unreachable!())
        };
        assert!(single
            .check_replicas(2)
            .unwrap_err()
            .contains("its state lives in memory"));
    }

    #[test]
    fn ops_of_several_events_are_refused_only_where_the_pattern_says_why() {
        for p in crate::REGISTRY {
            assert!(
                p.check_multi_event(1).is_ok(),
                "{}: one event per op always runs",
                p.name
            );
            match p.multi_event {
                MultiEvent::Supported => assert!(p.check_multi_event(1000).is_ok()),
                MultiEvent::Refused(why) => {
                    let e = p.check_multi_event(2).unwrap_err();
                    assert!(e.contains(why) && e.contains("--events-per-op"), "{e}");
                }
            }
        }
        let refused: Vec<&str> = crate::REGISTRY
            .iter()
            .filter(|p| matches!(p.multi_event, MultiEvent::Refused(_)))
            .map(|p| p.name)
            .collect();
        assert!(
            refused.is_empty(),
            "every built-in publishes ops of several events: {refused:?}"
        );
        let one_event = PatternInfo {
            multi_event: MultiEvent::Refused("its events table holds one row per op"),
            ..PatternInfo::new("one-event", "one event per op", |_| unreachable!())
        };
        let e = one_event.check_multi_event(3).unwrap_err();
        assert!(
            e.contains("its events table holds one row per op") && e.contains("--events-per-op"),
            "{e}"
        );
    }
}
