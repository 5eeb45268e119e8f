//! The transactional outbox family: the event row is inserted into `outbox` in
//! the same transaction as the business row; a relay in the same process
//! publishes it. The four variants differ only in their relay:
//!
//! - [`OutboxRelay::Poll`] / [`OutboxRelay::Notify`]: sharded relays ([`shard_relay`]);
//! - [`OutboxRelay::IdCursor`] / [`OutboxRelay::Xid`]: one cursor relay ([`cursor_relay`]).

pub mod cursor_relay;
pub mod shard_relay;

use crate::expect::{Control, Expect, Expectation, When, BUG_KNOB};
use crate::runtime::backoff::sleep_unless_stopped;
use crate::runtime::business::{self, OutboxRow};
use crate::runtime::config::{AppConfig, Cleanup};
use crate::runtime::db::timed;
use crate::runtime::kafka::{Envelope, Record};
use crate::{AppContext, Background, Backlog, Op, OpAnswer, Pattern, PatternInfo, RelayKind, ORDERS_DDL};
use anyhow::Result;
use checkers::Anomaly;
use std::sync::Arc;

/// Outbox tables (idempotent DDL). `xid` is used by `outbox-xid` only; the
/// failed-events table keeps parked events with their last error.
pub const OUTBOX_DDL: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    id bigserial PRIMARY KEY,
    event_id uuid NOT NULL,
    op bigint NOT NULL,
    key text NOT NULL,
    seq bigint NOT NULL,
    shard int NOT NULL,
    value text NOT NULL,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    created_at timestamptz NOT NULL DEFAULT now(),
    attempts int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT '-infinity',
    last_error text,
    published_at timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (key, id) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_xid ON outbox (xid, id);
CREATE TABLE IF NOT EXISTS outbox_failed (
    id bigint PRIMARY KEY,
    event_id uuid NOT NULL,
    op bigint NOT NULL,
    key text NOT NULL,
    seq bigint NOT NULL,
    value text NOT NULL,
    attempts int NOT NULL,
    last_error text NOT NULL,
    created_at timestamptz NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS outbox_failed_key ON outbox_failed (key);
CREATE TABLE IF NOT EXISTS outbox_cursor (
    relay text PRIMARY KEY,
    last_xid xid8 NOT NULL,
    last_id bigint NOT NULL,
    last_at timestamptz NOT NULL DEFAULT '-infinity'
);";

/// Which relay an outbox pattern runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxRelay {
    /// Sharded relays polling, each key's pending events claimed as a locked prefix.
    Poll,
    /// The same, woken by LISTEN/NOTIFY (fallback poll).
    Notify,
    /// One relay reading `WHERE id > $last ORDER BY id` (the bug).
    IdCursor,
    /// One relay reading below the snapshot's xmin in (xid, id) order (the fix).
    Xid,
}

/// `outbox-poll`: outbox row in the business transaction; relays (DUALCHECK_RELAYS)
/// own shard groups through advisory locks, claim each key's oldest pending
/// events (a locked prefix, several per key in flight), publish them on an
/// idempotent producer whose records never time out, wait for the delivery
/// reports, then delete (or mark) each key's delivered prefix. See [`shard_relay`].
pub const POLL: PatternInfo = PatternInfo {
    controls: SHARD_RELAY_MUTANTS,
    relay: RelayKind::InProcess,
    outbox_table: Some("outbox"),
    // Rows stay until Kafka acknowledged them (shard_relay.rs).
    exact_backlog: true,
    tuned: TUNED_POLLING,
    ..PatternInfo::new(
        "outbox-poll",
        "transactional outbox; polling relays claiming each key's pending events in order, sharded by key (DUALCHECK_RELAYS)",
        |ctx| OutboxPattern::build(OutboxRelay::Poll, ctx),
    )
};

/// The relays tuned for latency (`NAME:tuned`): records go out at once
/// (`linger.ms` 0 instead of 2: at a low rate nothing would share the
/// request, and each record waited the linger; at a high rate the drain
/// throughput measured lower, so it is not the default).
pub const TUNED_PRODUCER: &[(&str, &str)] = &[("DUALCHECK_LINGER_MS", "0")];

/// [`TUNED_PRODUCER`], and polling relays that poll every 10 ms instead of
/// 50 (an event waits half the interval on average; each poll is a query).
pub const TUNED_POLLING: &[(&str, &str)] = &[("DUALCHECK_LINGER_MS", "0"), ("DUALCHECK_POLL_MS", "10")];

/// `outbox-notify`: as `outbox-poll`, but the business transaction also issues
/// `NOTIFY dualcheck_outbox` and the relays wake on it (one LISTEN connection per
/// process), with a fallback poll (DUALCHECK_FALLBACK_POLL_MS) for notifications
/// missed while the listener was disconnected.
pub const NOTIFY: PatternInfo = PatternInfo {
    controls: SHARD_RELAY_MUTANTS,
    relay: RelayKind::InProcess,
    outbox_table: Some("outbox"),
    // Rows stay until Kafka acknowledged them (shard_relay.rs).
    exact_backlog: true,
    tuned: TUNED_PRODUCER,
    ..PatternInfo::new(
        "outbox-notify",
        "transactional outbox; relays woken by LISTEN/NOTIFY with a fallback poll",
        |ctx| OutboxPattern::build(OutboxRelay::Notify, ctx),
    )
};

/// `outbox-idcursor`: one relay that remembers the highest id it published and
/// reads `WHERE id > $last ORDER BY id` — the common real-world bug: a
/// transaction that took a lower id but commits after a higher one was
/// published is skipped forever. A negative control (long transactions in the
/// workload expose it). See [`cursor_relay`].
pub const ID_CURSOR: PatternInfo = PatternInfo {
    // A negative control: concurrent (long) transactions commit out of id order.
    expect: &[crate::expect::Expectation {
        when: crate::expect::When::Always,
        expect: crate::expect::Expect::Shows(&[checkers::Anomaly::Lost]),
    }],
    relay: RelayKind::InProcess,
    outbox_table: Some("outbox"),
    ..PatternInfo::new(
        "outbox-idcursor",
        "outbox relay reading WHERE id > last_id (a real, common bug)",
        |ctx| OutboxPattern::build(OutboxRelay::IdCursor, ctx),
    )
};

/// `outbox-xid`: the cursor relay made correct (as watermill-sql does): rows are
/// stamped with `pg_current_xact_id()`, the relay reads only rows whose
/// transaction id is below `pg_snapshot_xmin(pg_current_snapshot())` — every
/// such transaction has ended — in (xid, id) order, with a cursor on (xid, id).
pub const XID: PatternInfo = PatternInfo {
    controls: &[NO_XMIN_GUARD, APP_TIMESTAMP, PUBLISH_IN_TRANSACTION, XID_ONLY_CURSOR],
    relay: RelayKind::InProcess,
    outbox_table: Some("outbox"),
    // Rows stay unpublished until Kafka acknowledged them, and the cursor
    // passes only what is published (cursor_relay.rs).
    exact_backlog: true,
    tuned: TUNED_POLLING,
    ..PatternInfo::new(
        "outbox-xid",
        "outbox cursor relay on (xid, id), reading only below the snapshot's xmin",
        |ctx| OutboxPattern::build(OutboxRelay::Xid, ctx),
    )
};

/// A mutant of the bug zoo: `DUALCHECK_BUG=name`, which must show one of
/// `shows` when run under every fault of `faults` (no claim otherwise).
pub(crate) const fn mutant(name: &'static str, faults: &'static str, expect: &'static [Expectation]) -> Control {
    Control {
        name,
        knob: BUG_KNOB,
        value: name,
        faults,
        exactly_once: false,
        workload: None,
        expect,
    }
}

/// `delete-before-ack`: the sharded relay hands its claimed records to the
/// producer, deletes (or marks) their rows and commits at once, and only then
/// collects the delivery reports, logging failures. Whatever the producer
/// still holds when the process dies, or gives up on after its message
/// timeout, is lost: exposed by a kill inside a Kafka partition.
pub const DELETE_BEFORE_ACK: Control = mutant(
    "delete-before-ack",
    "kafka-partition,relay-kill",
    &[
        Expectation {
            when: When::AllFaults(&["kafka-partition", "relay-kill"]),
            expect: Expect::Shows(&[Anomaly::Lost]),
        },
        Expectation {
            when: When::Always,
            expect: Expect::Any,
        },
    ],
);

/// `new-id-on-retry`: the event id is minted when the relay publishes (a
/// fresh UUID in the record's value and header) instead of with the row, so
/// every republish of a record Kafka already has carries a new id: after
/// Kafka acknowledged a batch but the relay's transaction recording it failed
/// (Postgres connections reset), or a delivery that timed out although the
/// broker wrote it (answers swallowed longer than the message timeout).
pub const NEW_ID_ON_RETRY: Control = mutant(
    "new-id-on-retry",
    "pg-reset",
    &[
        Expectation {
            when: When::AnyFault(&["pg-reset"]),
            expect: Expect::Shows(&[Anomaly::DuplicateBeyondIdempotency]),
        },
        Expectation {
            when: When::Always,
            expect: Expect::Any,
        },
    ],
);

/// `unordered-relays`: at least four relay instances (each with its own
/// producer), none owning shards; each claims a batch of any pending rows
/// (`ORDER BY id ... FOR UPDATE SKIP LOCKED`, not just the oldest per key) and
/// publishes it on its own, and a failed row backs off alone while its key's
/// later rows go out: reorder when batches of one key race (a backlog after
/// a Kafka partition) or publishes fail.
pub const UNORDERED_RELAYS: Control = mutant(
    "unordered-relays",
    "kafka-partition",
    &[
        Expectation {
            when: When::AllFaults(&["kafka-partition"]),
            expect: Expect::Shows(&[Anomaly::Reorder]),
        },
        Expectation {
            when: When::Always,
            expect: Expect::Any,
        },
    ],
);

/// `drop-on-timeout`: the relay waits at most 1 s for each batch's delivery
/// reports (`send().get(1, SECONDS)`), and a timeout is logged and the row
/// marked done ("it was probably sent"). The producer still holds the record:
/// lost when the process dies at least 1 s into a Kafka partition, or when the
/// partition outlasts the producer's message timeout (5 s) and it gives up.
pub const DROP_ON_TIMEOUT: Control = mutant(
    "drop-on-timeout",
    "kafka-partition,relay-kill",
    &[
        Expectation {
            when: When::AllFaults(&["kafka-partition", "relay-kill"]),
            expect: Expect::Shows(&[Anomaly::Lost]),
        },
        Expectation {
            when: When::Always,
            expect: Expect::Any,
        },
    ],
);

/// `non-idempotent-producer`: the producer runs with `enable.idempotence=false`,
/// unlimited retries and five requests in flight, and the relay sends each
/// key's pending events in one batch, in id order, trusting the producer to
/// keep their order (which an idempotent producer does). A request the broker
/// wrote but whose answer was lost (connections reset, answers swallowed) is
/// sent again and written twice: duplicates with one event id, which only an
/// exactly-once check counts (`exactly_once`); a retried request landing
/// after a later one would show as reorder.
pub const NON_IDEMPOTENT_PRODUCER: Control = Control {
    exactly_once: true,
    ..mutant(
        "non-idempotent-producer",
        "kafka-reset",
        &[
            Expectation {
                when: When::AnyFault(&["kafka-reset", "kafka-timeout"]),
                expect: Expect::Shows(&[Anomaly::Reorder, Anomaly::Duplicate]),
            },
            Expectation {
                when: When::Always,
                expect: Expect::Any,
            },
        ],
    )
};

/// `publish-in-transaction`: the request publishes its event itself, inside
/// the business transaction, and commits after Kafka's ack (no outbox row):
/// a transaction that then rolls back (an op aborted on purpose, a COMMIT
/// that fails) leaves an event for an order that does not exist (phantom).
pub const PUBLISH_IN_TRANSACTION: Control = mutant(
    "publish-in-transaction",
    "pg-partition",
    &[Expectation {
        when: When::Always,
        expect: Expect::Shows(&[Anomaly::Phantom]),
    }],
);

/// `no-xmin-guard` (`outbox-xid`): the cursor relay reads `(xid, id) > cursor`
/// without the bound `xid < pg_snapshot_xmin(pg_current_snapshot())`, so a
/// long transaction with a lower xid that commits after a later one was
/// published lies behind the cursor forever (lost). The workload's long
/// transactions expose it without faults.
pub const NO_XMIN_GUARD: Control = mutant(
    "no-xmin-guard",
    "none",
    &[Expectation {
        when: When::Always,
        expect: Expect::Shows(&[Anomaly::Lost]),
    }],
);

/// `leader-acks`: the correct relay, with a producer that trusts the
/// partition leader alone (`acks=1`, so not idempotent either). On the
/// three-broker cluster (replication factor 3) a leader SIGKILLed before its
/// followers copied a record it acknowledged takes the record with it, and
/// the relay, told it was delivered, has already marked its row.
pub const LEADER_ACKS: Control = mutant(
    "leader-acks",
    "kafka-leader",
    &[
        Expectation {
            when: When::AnyFault(&["kafka-leader"]),
            expect: Expect::Shows(&[Anomaly::Lost]),
        },
        Expectation {
            when: When::Always,
            expect: Expect::Any,
        },
    ],
);

/// `app-timestamp` (`outbox-xid`): the service stamps each outbox row with
/// its own clock (`created_at` from the application, as a library's
/// `occurred_at` or publication date is) and the cursor relay keeps its
/// xmin guard but reads and remembers by that stamp — `(created_at, id) >
/// cursor`, as a timestamp-mode JDBC source does — trusting every
/// instance's clock. Once an instance whose clock is ahead had an event
/// published, the cursor stands ahead of everything the others (or the
/// same instance, its clock set back) write until true time catches up:
/// lost.
pub const APP_TIMESTAMP: Control = mutant(
    "app-timestamp",
    "clock-skew",
    &[
        Expectation {
            when: When::AnyFault(&["clock-skew"]),
            expect: Expect::Shows(&[Anomaly::Lost]),
        },
        Expectation {
            when: When::Always,
            expect: Expect::Any,
        },
    ],
);

/// `xid-only-cursor`: the (xid, id) relay keeps its place by the transaction
/// id alone and reads `xid > last_xid` next. Correct while each transaction
/// writes one row; once a transaction's rows outnumber what is left of a
/// batch (`DUALCHECK_BATCH`, 1000 rows: a backlog after a Kafka outage), the
/// batch ends inside it and the next read passes its remaining events —
/// published in part (`partial`). Invisible to ops of one event.
pub const XID_ONLY_CURSOR: Control = Control {
    workload: Some(crate::expect::MutantWorkload {
        events_per_op: "2-8",
        keys_per_op: 1,
        write: workloads::WriteShape::Single,
    }),
    ..mutant(
        "xid-only-cursor",
        "kafka-partition",
        &[
            Expectation {
                when: When::AnyFault(&["kafka-partition"]),
                expect: Expect::Shows(&[Anomaly::Partial]),
            },
            Expectation {
                when: When::Always,
                expect: Expect::Any,
            },
        ],
    )
};

/// The mutants of the sharded relay (`outbox-poll`, `outbox-notify`: the
/// relay code is shared), and the request-side one every outbox pattern shares.
pub const SHARD_RELAY_MUTANTS: &[Control] = &[
    DELETE_BEFORE_ACK,
    NEW_ID_ON_RETRY,
    UNORDERED_RELAYS,
    DROP_ON_TIMEOUT,
    NON_IDEMPOTENT_PRODUCER,
    LEADER_ACKS,
    PUBLISH_IN_TRANSACTION,
];

/// The producer the process's configuration asks for: a producer mutant's,
/// or the correct one.
pub(crate) fn producer_durability(cfg: &AppConfig) -> crate::runtime::kafka::Durability {
    use crate::runtime::kafka::Durability;
    match Bug::of(cfg) {
        Bug::NonIdempotentProducer => Durability::NonIdempotent,
        Bug::LeaderAcks => Durability::LeaderOnly,
        _ => Durability::Idempotent,
    }
}

/// Which outbox mutant, if any, the process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bug {
    /// The correct code.
    None,
    /// [`DELETE_BEFORE_ACK`].
    DeleteBeforeAck,
    /// [`NEW_ID_ON_RETRY`].
    NewIdOnRetry,
    /// [`UNORDERED_RELAYS`].
    UnorderedRelays,
    /// [`DROP_ON_TIMEOUT`].
    DropOnTimeout,
    /// [`NON_IDEMPOTENT_PRODUCER`].
    NonIdempotentProducer,
    /// [`LEADER_ACKS`]: the correct relay on an `acks=1` producer.
    LeaderAcks,
    /// [`PUBLISH_IN_TRANSACTION`].
    PublishInTransaction,
    /// [`NO_XMIN_GUARD`].
    NoXminGuard,
    /// [`APP_TIMESTAMP`].
    AppTimestamp,
    /// [`XID_ONLY_CURSOR`].
    XidOnlyCursor,
}

impl Bug {
    /// Whether the relay runs the correct code (no mutant, or one of the request path).
    pub(crate) fn relay_is_correct(self) -> bool {
        matches!(
            self,
            Bug::None | Bug::PublishInTransaction | Bug::LeaderAcks | Bug::AppTimestamp
        )
    }

    /// The mutant `cfg` switches on (an undeclared one never gets here: `serve` refuses it).
    pub(crate) fn of(cfg: &AppConfig) -> Bug {
        let pairs = [
            (DELETE_BEFORE_ACK.name, Bug::DeleteBeforeAck),
            (NEW_ID_ON_RETRY.name, Bug::NewIdOnRetry),
            (UNORDERED_RELAYS.name, Bug::UnorderedRelays),
            (DROP_ON_TIMEOUT.name, Bug::DropOnTimeout),
            (NON_IDEMPOTENT_PRODUCER.name, Bug::NonIdempotentProducer),
            (LEADER_ACKS.name, Bug::LeaderAcks),
            (APP_TIMESTAMP.name, Bug::AppTimestamp),
            (PUBLISH_IN_TRANSACTION.name, Bug::PublishInTransaction),
            (NO_XMIN_GUARD.name, Bug::NoXminGuard),
            (XID_ONLY_CURSOR.name, Bug::XidOnlyCursor),
        ];
        pairs
            .iter()
            .find(|(n, _)| cfg.bug_is(n))
            .map(|(_, b)| *b)
            .unwrap_or(Bug::None)
    }
}

/// `publish-in-transaction`: BEGIN, the order row, the publish (awaiting
/// Kafka's ack), then COMMIT — or ROLLBACK for an op aborted on purpose.
async fn publish_in_transaction(ctx: &AppContext, op: &Op, envs: &[Envelope]) -> OpAnswer {
    let t = ctx.db.timeout;
    let mut conn = match ctx.db.get().await {
        Ok(c) => c,
        Err(e) => return OpAnswer::Fail(format!("no Postgres connection: {e:#}")),
    };
    let res: Result<business::TxnEnd> = async {
        let tx = timed(t, "BEGIN", conn.transaction()).await?;
        business::insert_order(t, &tx, op).await?;
        for env in envs {
            let value = env.to_json();
            ctx.publisher
                .publish(Record {
                    key: &env.key,
                    value: &value,
                    event_id: &env.event,
                })
                .await
                .map_err(|e| anyhow::anyhow!("publishing inside the transaction: {e}"))?;
        }
        business::finish(t, tx, op).await
    }
    .await;
    let end = res.unwrap_or_else(|e| business::TxnEnd::Failed(format!("{e:#}")));
    if end != business::TxnEnd::Committed {
        conn.discard();
    } else {
        ctx.crash.after_commit();
    }
    end.into()
}

/// An outbox pattern with its relay kind.
pub struct OutboxPattern {
    kind: OutboxRelay,
    ctx: Arc<AppContext>,
}

impl OutboxPattern {
    /// An outbox pattern (used by the registry entries).
    pub fn build(kind: OutboxRelay, ctx: Arc<AppContext>) -> Arc<dyn Pattern> {
        Arc::new(OutboxPattern { kind, ctx })
    }
}

/// Deletes or marks published rows (inside the relay's transaction).
pub(crate) async fn record_published(
    tx: &tokio_postgres::Transaction<'_>,
    cleanup: Cleanup,
    ids: &[i64],
    t: std::time::Duration,
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = match cleanup {
        Cleanup::Delete => "DELETE FROM outbox WHERE id = ANY($1)",
        Cleanup::Mark => "UPDATE outbox SET published_at = clock_timestamp() WHERE id = ANY($1)",
    };
    timed(t, "recording published outbox rows", tx.execute(sql, &[&ids])).await?;
    Ok(())
}

/// Cleaner of `cleanup=mark`: deletes published rows in batches of 1000.
async fn cleaner(ctx: Arc<AppContext>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        if !sleep_unless_stopped(ctx.config.cleanup_interval, &mut stop).await {
            return;
        }
        let res = async {
            let mut c = ctx.db.get().await?;
            let r = timed(
                ctx.db.timeout,
                "deleting published outbox rows",
                c.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE published_at IS NOT NULL LIMIT 1000)",
                    &[],
                ),
            )
            .await;
            if r.is_err() {
                c.discard();
            }
            r
        }
        .await;
        if let Err(e) = res {
            tracing::debug!("outbox cleaner: {e:#}");
        }
    }
}

#[async_trait::async_trait]
impl Pattern for OutboxPattern {
    async fn setup_schema(&self, db: &tokio_postgres::Client) -> Result<()> {
        db.batch_execute(ORDERS_DDL).await?;
        db.batch_execute(OUTBOX_DDL).await?;
        Ok(())
    }
    async fn start_background(&self) -> Result<Background> {
        let (mut bg, stop) = Background::new();
        match self.kind {
            OutboxRelay::Poll | OutboxRelay::Notify => {
                shard_relay::start(&self.ctx, self.kind == OutboxRelay::Notify, &mut bg, &stop);
            }
            OutboxRelay::IdCursor | OutboxRelay::Xid => {
                let kind = self.kind;
                let ctx = self.ctx.clone();
                let stop = stop.clone();
                bg.push(tokio::spawn(cursor_relay::run(ctx, kind, stop)));
            }
        }
        if self.ctx.config.cleanup == Cleanup::Mark {
            bg.push(tokio::spawn(cleaner(self.ctx.clone(), stop.clone())));
        }
        Ok(bg)
    }
    async fn execute(&self, op: &Op) -> OpAnswer {
        let envs = Envelope::all(op);
        if Bug::of(&self.ctx.config) == Bug::PublishInTransaction {
            return publish_in_transaction(&self.ctx, op, &envs).await;
        }
        let row = OutboxRow {
            envelopes: &envs,
            notify: self.kind == OutboxRelay::Notify,
            created_at: (Bug::of(&self.ctx.config) == Bug::AppTimestamp).then(|| self.ctx.config.now()),
        };
        business::run(&self.ctx, op, Some(row)).await.into()
    }
    async fn backlog(&self) -> Result<Backlog> {
        let mut c = self.ctx.db.get().await?;
        let pending = match self.kind {
            OutboxRelay::Poll | OutboxRelay::Notify => "WHERE published_at IS NULL",
            // What the cursor relay itself still has to read (its own lag metric: it
            // cannot see rows it skipped below its cursor).
            OutboxRelay::IdCursor => {
                "WHERE published_at IS NULL AND id > coalesce((SELECT last_id FROM outbox_cursor WHERE relay = 'main'), 0)"
            }
            OutboxRelay::Xid if Bug::of(&self.ctx.config) == Bug::AppTimestamp => {
                "WHERE published_at IS NULL AND (created_at, id) > coalesce((SELECT (last_at, last_id) FROM outbox_cursor WHERE relay = 'main'), ('-infinity'::timestamptz, 0::bigint))"
            }
            // The mutant's own lag: what its xid-only cursor will still read.
            OutboxRelay::Xid if Bug::of(&self.ctx.config) == Bug::XidOnlyCursor => {
                "WHERE published_at IS NULL AND xid > coalesce((SELECT last_xid FROM outbox_cursor WHERE relay = 'main'), '0'::xid8)"
            }
            OutboxRelay::Xid => {
                "WHERE published_at IS NULL AND (xid, id) > coalesce((SELECT (last_xid, last_id) FROM outbox_cursor WHERE relay = 'main'), ('0'::xid8, 0::bigint))"
            }
        };
        let sql = format!(
            "SELECT count(*), coalesce((extract(epoch FROM clock_timestamp() - min(created_at)) * 1000)::bigint, 0),
                    (SELECT count(*) FROM outbox_failed)
             FROM outbox {pending}"
        );
        let r = timed(
            self.ctx.db.timeout,
            "reading the outbox backlog",
            c.query_one(&sql, &[]),
        )
        .await;
        let row = match r {
            Ok(r) => r,
            Err(e) => {
                c.discard();
                return Err(e);
            }
        };
        Ok(Backlog {
            backlog: row.get(0),
            oldest_age_ms: row.get(1),
            parked: row.get(2),
            in_flight: None,
        })
    }
    fn crash_point_after_ack(&self) -> bool {
        true
    }
    async fn trace(&self, op: i64) -> Result<Option<serde_json::Value>> {
        trace(&self.ctx, self.kind, op).await.map(Some)
    }
}

/// The account of op `op` of an outbox pattern: its `orders` row, its outbox
/// row (`attempts`, `last_error`, `next_attempt_at`, `published_at`), its row
/// in `outbox_failed` when parked, the cursor of a cursor relay, and what this
/// process's publisher remembers of it. `state`:
///
/// - `parked`: in `outbox_failed` (the relay gave up on it; `last_error` says why);
/// - `pending`: an outbox row not yet published (for `outbox-idcursor`,
///   `skipped` when the row lies at or below the cursor: it will never be read);
/// - `published`: its row is marked published, or gone while the order exists
///   (rows are deleted once Kafka acknowledged them);
/// - `not_committed`: no order row.
pub(crate) async fn trace(ctx: &AppContext, kind: OutboxRelay, op: i64) -> Result<serde_json::Value> {
    let order = business::orders_row(ctx, op).await?;
    let mut c = ctx.db.get().await?;
    let t = ctx.db.timeout;
    let r = async {
        let outbox = timed(
            t,
            "reading an outbox row for a trace",
            c.query_opt(
                "SELECT id, event_id::text, attempts, last_error, next_attempt_at::text,
                        published_at::text, created_at::text, xid::text
                 FROM outbox WHERE op = $1 ORDER BY id LIMIT 1",
                &[&op],
            ),
        )
        .await?;
        let parked = timed(
            t,
            "reading a parked event for a trace",
            c.query_opt(
                "SELECT id, event_id::text, attempts, last_error, parked_at::text, created_at::text
                 FROM outbox_failed WHERE op = $1 ORDER BY id LIMIT 1",
                &[&op],
            ),
        )
        .await?;
        let cursor = timed(
            t,
            "reading the relay cursor for a trace",
            c.query_opt(
                "SELECT last_xid::text, last_id FROM outbox_cursor WHERE relay = 'main'",
                &[],
            ),
        )
        .await?;
        Ok::<_, anyhow::Error>((outbox, parked, cursor))
    }
    .await;
    let (outbox, parked, cursor) = match r {
        Ok(x) => x,
        Err(e) => {
            c.discard();
            return Err(e);
        }
    };
    let mut v = serde_json::json!({"op": op, "orders": order});
    let state;
    if let Some(p) = &parked {
        state = "parked";
        v["outbox_failed"] = serde_json::json!({
            "id": p.get::<_, i64>(0), "event_id": p.get::<_, String>(1), "attempts": p.get::<_, i32>(2),
            "last_error": p.get::<_, String>(3), "parked_at": p.get::<_, String>(4), "created_at": p.get::<_, String>(5),
        });
        v["attempts"] = p.get::<_, i32>(2).into();
        v["last_error"] = p.get::<_, String>(3).into();
    } else if let Some(o) = &outbox {
        let id: i64 = o.get(0);
        let published_at: Option<String> = o.get(5);
        let below_cursor = kind == OutboxRelay::IdCursor && cursor.as_ref().is_some_and(|c| id <= c.get::<_, i64>(1));
        state = match (&published_at, below_cursor) {
            (Some(_), _) => "published",
            (None, true) => "skipped",
            (None, false) => "pending",
        };
        v["outbox"] = serde_json::json!({
            "id": id, "event_id": o.get::<_, String>(1), "attempts": o.get::<_, i32>(2),
            "last_error": o.get::<_, Option<String>>(3), "next_attempt_at": o.get::<_, String>(4),
            "published_at": published_at, "created_at": o.get::<_, String>(6), "xid": o.get::<_, String>(7),
        });
        v["attempts"] = o.get::<_, i32>(2).into();
        if let Some(e) = o.get::<_, Option<String>>(3) {
            v["last_error"] = e.into();
        }
    } else if order.is_some() {
        state = "published";
        v["outbox"] = serde_json::Value::Null;
        v["note"] = "no outbox row: deleted once Kafka acknowledged it".into();
    } else {
        state = "not_committed";
    }
    v["state"] = state.into();
    if let Some(c) = cursor {
        v["cursor"] = serde_json::json!({"last_xid": c.get::<_, String>(0), "last_id": c.get::<_, i64>(1)});
    }
    if let Some(n) = ctx.publisher.journal.get(op) {
        v["publish"] = serde_json::to_value(&n)?;
    }
    Ok(v)
}
