//! Configuration of an implementation process, read from its environment.
//! [`KNOBS`] lists every variable with what applies when it is unset and one
//! line of help (what `dualcheck list` shows).

use anyhow::{bail, Context, Result};
use std::time::Duration;

/// One environment variable an implementation process reads.
#[derive(Clone, Copy, Debug)]
pub struct Knob {
    /// Variable name.
    pub name: &'static str,
    /// What applies when the variable is unset (or empty).
    pub default: KnobDefault,
    /// One line of help.
    pub help: &'static str,
}

/// What a knob is when its variable is unset or empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnobDefault {
    /// Nothing: the process refuses to start (the runner always sets it).
    Required,
    /// No value of ours: the knob is simply off, or the tool it configures
    /// keeps its own default; the knob's help says which.
    Optional,
    /// This value.
    Value(&'static str),
}

/// Every environment variable of `dualcheck app`.
pub const KNOBS: &[Knob] = &[
    Knob {
        name: "DATABASE_URL",
        default: KnobDefault::Required,
        help: "Postgres URL (through the proxy); the run's own database",
    },
    Knob {
        name: "KAFKA_BOOTSTRAP",
        default: KnobDefault::Required,
        help: "Kafka bootstrap servers (through the proxy)",
    },
    Knob {
        name: "TOPIC",
        default: KnobDefault::Required,
        help: "topic to publish to (created by the runner)",
    },
    Knob {
        name: "PORT",
        default: KnobDefault::Required,
        help: "HTTP port on 127.0.0.1",
    },
    Knob {
        name: "DUALCHECK_RELAYS",
        default: KnobDefault::Value("1"),
        help: "relay tasks (outbox-poll, outbox-notify); per-key order holds with any number",
    },
    Knob {
        name: "DUALCHECK_SHARDS",
        default: KnobDefault::Value("16"),
        help: "shard groups the relays divide with advisory locks",
    },
    Knob {
        name: "DUALCHECK_POLL_MS",
        default: KnobDefault::Value("50"),
        help: "relay poll interval when idle",
    },
    Knob {
        name: "DUALCHECK_FALLBACK_POLL_MS",
        default: KnobDefault::Value("1000"),
        help: "outbox-notify: poll interval when no notification arrives",
    },
    Knob {
        name: "DUALCHECK_BATCH",
        default: KnobDefault::Value("1000"),
        help: "events a relay claims per round",
    },
    Knob {
        name: "DUALCHECK_MAX_ATTEMPTS",
        default: KnobDefault::Value("30"),
        help: "publish attempts before an event is parked in outbox_failed (permanent errors park at once)",
    },
    Knob {
        name: "DUALCHECK_BACKOFF_BASE_MS",
        default: KnobDefault::Value("100"),
        help: "retry backoff base (exponential, full jitter)",
    },
    Knob {
        name: "DUALCHECK_BACKOFF_MAX_MS",
        default: KnobDefault::Value("5000"),
        help: "retry backoff cap",
    },
    Knob {
        name: "DUALCHECK_PUBLISH_TIMEOUT_MS",
        default: KnobDefault::Value("5000"),
        help: "how long one publish attempt may take: the producer's message.timeout.ms; the outbox relays' producers never time out (several events of a key in flight) and wait this long for a delivery report before retrying",
    },
    Knob {
        name: "DUALCHECK_LINGER_MS",
        default: KnobDefault::Value("2"),
        help: "the implementations' Kafka producers' linger.ms: how long a record waits for others to share its request (latency against requests per record)",
    },
    Knob {
        name: "DUALCHECK_NAIVE_ATTEMPTS",
        default: KnobDefault::Value("2"),
        help: "naive patterns: publish attempts per op",
    },
    Knob {
        name: "DUALCHECK_NAIVE_PUBLISH_TIMEOUT_MS",
        default: KnobDefault::Value("1000"),
        help: "naive patterns: how long one publish may take (a request handler cannot wait for long)",
    },
    Knob {
        name: "DUALCHECK_CLEANUP",
        default: KnobDefault::Value("delete"),
        help: "published outbox rows: `delete` at once, or `mark` (published_at) and delete in batches",
    },
    Knob {
        name: "DUALCHECK_CLEANUP_INTERVAL_MS",
        default: KnobDefault::Value("1000"),
        help: "cleanup=mark: how often marked rows are deleted",
    },
    Knob {
        name: "DUALCHECK_DB_TIMEOUT_MS",
        default: KnobDefault::Value("10000"),
        help: "timeout of each database statement (client side and statement_timeout)",
    },
    Knob {
        name: "DUALCHECK_POOL_SIZE",
        default: KnobDefault::Value("16"),
        help: "connections of the request pool",
    },
    Knob {
        name: "DUALCHECK_READ_CACHE",
        default: KnobDefault::Value("on"),
        help: "listen-to-yourself, kafka-first: `on` serves GET /ops/{key} from the write-through cache first; `off` reads the orders table only (the negative control: stale reads)",
    },
    Knob {
        name: "DUALCHECK_TXN_TIMEOUT_MS",
        default: KnobDefault::Value("10000"),
        help: "two-phase: Kafka transaction.timeout.ms (how long an open Kafka transaction of a dead coordinator blocks read_committed consumers)",
    },
    Knob {
        name: "DUALCHECK_ROLE",
        default: KnobDefault::Value("all"),
        help: "what this process runs: `all`, `service` (requests only) or `relay` (background only; patterns with a relay process)",
    },
    Knob {
        name: "DUALCHECK_CDC_CONFIRM",
        default: KnobDefault::Value("after-ack"),
        help: "cdc-logical/cdc-outbox: confirm a WAL position `after-ack` (once Kafka acknowledged everything before it) or `early` (on receipt: a deliberate bug, the negative control)",
    },
    Knob {
        name: "DUALCHECK_CLOCK_OFFSET_MS",
        default: KnobDefault::Value("0"),
        help: "how far this process's clock for the times it writes is off, in ms (negative: behind); the `clock-skew` fault sets it on one instance",
    },
    Knob {
        name: "DUALCHECK_BUG",
        default: KnobDefault::Optional,
        help: "a mutant of the bug zoo: a real-world bug switched into the pattern (e.g. `delete-before-ack`); only the mutants a pattern lists are accepted, anything else refuses to start; unset: the correct code",
    },
    Knob {
        name: "DUALCHECK_DEBEZIUM_HEARTBEAT_MS",
        default: KnobDefault::Value("0"),
        help: "debezium: the connector's heartbeat.interval.ms (0: off, Debezium's default); heartbeats let it record its WAL position while its tables are idle",
    },
    Knob {
        name: "DUALCHECK_DEBEZIUM_POLL_MS",
        default: KnobDefault::Optional,
        help: "debezium: the connector's poll.interval.ms, how long it waits for a batch to fill (unset: Debezium's 500; `debezium:tuned` sets 5)",
    },
    Knob {
        name: "DUALCHECK_DEBEZIUM_MAX_BATCH",
        default: KnobDefault::Optional,
        help: "debezium: the connector's max.batch.size (unset: Debezium's 2048)",
    },
    Knob {
        name: "DUALCHECK_DEBEZIUM_MAX_QUEUE",
        default: KnobDefault::Optional,
        help: "debezium: the connector's max.queue.size, larger than max.batch.size (unset: Debezium's 8192)",
    },
    Knob {
        name: "DUALCHECK_DEBEZIUM_LINGER_MS",
        default: KnobDefault::Value("2"),
        help: "debezium: the Connect worker's producer.linger.ms",
    },
    Knob {
        name: "DUALCHECK_CONNECT_LIBS",
        default: KnobDefault::Optional,
        help: "debezium: directory of the Kafka Connect + Debezium jars (default $DUALCHECK_CACHE/connect/libs, else ~/.cache/dualcheck/connect/libs; `bash ci/setup` fills it)",
    },
];

/// Reads a knob: the variable, else its default value; `None` for an unset
/// knob without one (a required or an optional one).
fn raw(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => KNOBS.iter().find(|k| k.name == name).and_then(|k| match k.default {
            KnobDefault::Value(v) => Some(v.to_string()),
            KnobDefault::Required | KnobDefault::Optional => None,
        }),
    }
}

/// The knobs `dualcheck app` cannot start without, as a message lists them
/// (`A, B, C and D`).
fn required_knobs() -> String {
    let names: Vec<&str> = KNOBS
        .iter()
        .filter(|k| k.default == KnobDefault::Required)
        .map(|k| k.name)
        .collect();
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Reads a knob that has a value whenever the process runs: one the runner
/// sets ([`KnobDefault::Required`]) or one with a default value.
fn required(name: &str) -> Result<String> {
    raw(name).with_context(|| {
        format!(
            "{name} is not set; `dualcheck app` needs {} (the runner sets them)",
            required_knobs()
        )
    })
}

fn number(name: &str) -> Result<u64> {
    let v = required(name)?;
    v.trim()
        .parse()
        .with_context(|| format!("{name}={v:?} is not a non-negative integer"))
}

/// A number knob without a default of ours (`None`: unset, the tool's own default applies).
fn optional(name: &str) -> Result<Option<u64>> {
    match raw(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .with_context(|| format!("{name}={v:?} is not a non-negative integer")),
    }
}

fn ms(name: &str) -> Result<Duration> {
    Ok(Duration::from_millis(number(name)?))
}

/// What to do with published outbox rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cleanup {
    /// Delete in the transaction that records the publish.
    Delete,
    /// Set `published_at`; a cleaner deletes marked rows in batches.
    Mark,
}

/// What one implementation process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Requests and background parts (relays) in one process.
    All,
    /// Requests only; the relay runs in another process.
    Service,
    /// Background parts only (a CDC tailer, Kafka Connect); answers `/health` and `/backlog`.
    Relay,
}

/// When the CDC tailer tells Postgres a WAL position is processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CdcConfirm {
    /// Once Kafka acknowledged every event up to it (correct).
    AfterAck,
    /// As soon as it is received (a deliberate bug: a crash loses what was in flight).
    Early,
}

/// Configuration of one implementation process.
#[derive(Clone, Debug)]
pub struct AppConfig {
    /// Postgres URL.
    pub database_url: String,
    /// Kafka bootstrap.
    pub kafka_bootstrap: String,
    /// Topic.
    pub topic: String,
    /// HTTP port.
    pub port: u16,
    /// Relay tasks.
    pub relays: usize,
    /// Shard groups.
    pub shards: i32,
    /// Idle poll interval.
    pub poll: Duration,
    /// outbox-notify fallback poll.
    pub fallback_poll: Duration,
    /// Events per relay round.
    pub batch: i64,
    /// Attempts before parking.
    pub max_attempts: u32,
    /// Backoff base.
    pub backoff_base: Duration,
    /// Backoff cap.
    pub backoff_max: Duration,
    /// Kafka message.timeout.ms.
    pub publish_timeout: Duration,
    /// The producers' linger.ms.
    pub linger: Duration,
    /// Naive patterns' publish attempts.
    pub naive_attempts: u32,
    /// Kafka message.timeout.ms of the naive patterns' producer.
    pub naive_publish_timeout: Duration,
    /// Clean-up mode.
    pub cleanup: Cleanup,
    /// Clean-up interval (mark mode).
    pub cleanup_interval: Duration,
    /// Per-statement timeout.
    pub db_timeout: Duration,
    /// Pool size.
    pub pool_size: usize,
    /// Serve reads from the write-through cache first (listen-to-yourself, kafka-first).
    pub read_cache: bool,
    /// Kafka transaction.timeout.ms of the two-phase coordinator.
    pub txn_timeout: Duration,
    /// What this process runs.
    pub role: Role,
    /// When the CDC tailer confirms WAL positions.
    pub cdc_confirm: CdcConfirm,
    /// Kafka Connect + Debezium classpath directory (`None`: the default cache).
    pub connect_libs: Option<std::path::PathBuf>,
    /// Debezium's `heartbeat.interval.ms` (`DUALCHECK_DEBEZIUM_HEARTBEAT_MS`; zero: off).
    pub debezium_heartbeat: Duration,
    /// Debezium's `poll.interval.ms` (`DUALCHECK_DEBEZIUM_POLL_MS`; `None`: Debezium's default).
    pub debezium_poll: Option<Duration>,
    /// Debezium's `max.batch.size` (`DUALCHECK_DEBEZIUM_MAX_BATCH`; `None`: Debezium's default).
    pub debezium_max_batch: Option<u64>,
    /// Debezium's `max.queue.size` (`DUALCHECK_DEBEZIUM_MAX_QUEUE`; `None`: Debezium's default).
    pub debezium_max_queue: Option<u64>,
    /// The Connect worker's `producer.linger.ms` (`DUALCHECK_DEBEZIUM_LINGER_MS`).
    pub debezium_linger: Duration,
    /// The mutant switched on (`DUALCHECK_BUG`; `None`: the correct code).
    /// [`crate::serve`] refuses a name the pattern does not declare.
    pub bug: Option<String>,
    /// How far the clock of the times the process writes is off, ms
    /// (`DUALCHECK_CLOCK_OFFSET_MS`; the `clock-skew` fault).
    pub clock_offset_ms: i64,
}

impl AppConfig {
    /// The wall-clock time the process writes: the system's, off by
    /// `DUALCHECK_CLOCK_OFFSET_MS` (a skewed instance). Timeouts and waits
    /// keep the true clock.
    pub fn now(&self) -> std::time::SystemTime {
        let off = Duration::from_millis(self.clock_offset_ms.unsigned_abs());
        let now = std::time::SystemTime::now();
        if self.clock_offset_ms < 0 {
            now - off
        } else {
            now + off
        }
    }

    /// Whether the mutant `name` is switched on (`DUALCHECK_BUG=name`).
    pub fn bug_is(&self, name: &str) -> bool {
        self.bug.as_deref() == Some(name)
    }

    /// Reads every knob from the process environment.
    pub fn from_env() -> Result<Self> {
        let port = number("PORT")?;
        if port == 0 || port > 65535 {
            bail!("PORT={port} is not a usable TCP port");
        }
        let cleanup = match required("DUALCHECK_CLEANUP")?.as_str() {
            "delete" => Cleanup::Delete,
            "mark" => Cleanup::Mark,
            other => bail!("DUALCHECK_CLEANUP={other:?}: use `delete` or `mark`"),
        };
        let read_cache = match required("DUALCHECK_READ_CACHE")?.as_str() {
            "on" => true,
            "off" => false,
            other => bail!("DUALCHECK_READ_CACHE={other:?}: use `on` or `off`"),
        };
        let cfg = AppConfig {
            database_url: required("DATABASE_URL")?,
            kafka_bootstrap: required("KAFKA_BOOTSTRAP")?,
            topic: required("TOPIC")?,
            port: port as u16,
            relays: number("DUALCHECK_RELAYS")?.max(1) as usize,
            shards: number("DUALCHECK_SHARDS")?.clamp(1, 1024) as i32,
            poll: ms("DUALCHECK_POLL_MS")?,
            fallback_poll: ms("DUALCHECK_FALLBACK_POLL_MS")?,
            batch: number("DUALCHECK_BATCH")?.max(1) as i64,
            max_attempts: number("DUALCHECK_MAX_ATTEMPTS")?.max(1) as u32,
            backoff_base: ms("DUALCHECK_BACKOFF_BASE_MS")?,
            backoff_max: ms("DUALCHECK_BACKOFF_MAX_MS")?,
            publish_timeout: ms("DUALCHECK_PUBLISH_TIMEOUT_MS")?.max(Duration::from_millis(100)),
            linger: ms("DUALCHECK_LINGER_MS")?,
            naive_attempts: number("DUALCHECK_NAIVE_ATTEMPTS")?.max(1) as u32,
            naive_publish_timeout: ms("DUALCHECK_NAIVE_PUBLISH_TIMEOUT_MS")?.max(Duration::from_millis(100)),
            cleanup,
            cleanup_interval: ms("DUALCHECK_CLEANUP_INTERVAL_MS")?,
            db_timeout: ms("DUALCHECK_DB_TIMEOUT_MS")?.max(Duration::from_millis(100)),
            pool_size: number("DUALCHECK_POOL_SIZE")?.max(1) as usize,
            read_cache,
            txn_timeout: ms("DUALCHECK_TXN_TIMEOUT_MS")?.max(Duration::from_millis(1000)),
            role: match required("DUALCHECK_ROLE")?.as_str() {
                "all" => Role::All,
                "service" => Role::Service,
                "relay" => Role::Relay,
                other => bail!("DUALCHECK_ROLE={other:?}: use `all`, `service` or `relay`"),
            },
            cdc_confirm: match required("DUALCHECK_CDC_CONFIRM")?.as_str() {
                "after-ack" => CdcConfirm::AfterAck,
                "early" => CdcConfirm::Early,
                other => bail!(
                    "DUALCHECK_CDC_CONFIRM={other:?}: use `after-ack` (correct) or `early` (the negative control)"
                ),
            },
            connect_libs: raw("DUALCHECK_CONNECT_LIBS").map(std::path::PathBuf::from),
            debezium_heartbeat: ms("DUALCHECK_DEBEZIUM_HEARTBEAT_MS")?,
            debezium_poll: optional("DUALCHECK_DEBEZIUM_POLL_MS")?.map(Duration::from_millis),
            debezium_max_batch: optional("DUALCHECK_DEBEZIUM_MAX_BATCH")?,
            debezium_max_queue: optional("DUALCHECK_DEBEZIUM_MAX_QUEUE")?,
            debezium_linger: ms("DUALCHECK_DEBEZIUM_LINGER_MS")?,
            bug: raw(crate::expect::BUG_KNOB),
            clock_offset_ms: {
                let v = required("DUALCHECK_CLOCK_OFFSET_MS")?;
                v.trim()
                    .parse()
                    .with_context(|| format!("DUALCHECK_CLOCK_OFFSET_MS={v:?} is not an integer (ms)"))?
            },
        };
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The knobs without which `dualcheck app` refuses to start are the four
    /// the runner always sets, and the refusal names them; a knob with no
    /// value of ours is optional, never required.
    #[test]
    fn only_what_the_runner_sets_is_required() {
        let required: Vec<&str> = KNOBS
            .iter()
            .filter(|k| k.default == KnobDefault::Required)
            .map(|k| k.name)
            .collect();
        assert_eq!(required, ["DATABASE_URL", "KAFKA_BOOTSTRAP", "TOPIC", "PORT"]);
        assert_eq!(required_knobs(), "DATABASE_URL, KAFKA_BOOTSTRAP, TOPIC and PORT");
        for name in [
            crate::expect::BUG_KNOB,
            "DUALCHECK_DEBEZIUM_POLL_MS",
            "DUALCHECK_DEBEZIUM_MAX_BATCH",
            "DUALCHECK_DEBEZIUM_MAX_QUEUE",
            "DUALCHECK_CONNECT_LIBS",
        ] {
            let knob = KNOBS.iter().find(|k| k.name == name).unwrap();
            assert_eq!(knob.default, KnobDefault::Optional, "{name}");
        }
        for knob in KNOBS {
            if let KnobDefault::Value(v) = knob.default {
                assert!(!v.is_empty(), "{}: an empty default is `Optional`", knob.name);
            }
        }
    }
}
