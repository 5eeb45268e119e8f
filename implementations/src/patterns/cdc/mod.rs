//! The change-data-capture tailer of `cdc-logical` and `cdc-outbox`: it reads
//! the WAL through a logical replication slot (`pgoutput`, a publication
//! limited to one table and to inserts), turns each committed insert into an
//! event, publishes it with an idempotent producer in commit order, and tells
//! Postgres a position is processed only once Kafka acknowledged every event up
//! to it. After any crash it resumes from the slot: events after the confirmed
//! position are published again (same event ids: duplicates, never losses), in
//! commit order (per-key order kept).
//!
//! The replication protocol is `pgwire-replication`'s (connection, START_REPLICATION,
//! standby status updates); the `pgoutput` messages inside it are decoded by
//! `pg_walstream`'s parser.
//!
//! Slot and publication are created with the schema (before the service takes
//! its first request, so no committed row predates the slot) and dropped by the
//! runner at teardown.
//!
//! The two patterns on it differ in what the service writes and the tailer
//! streams: [`logical`] (the business rows) and [`outbox`] (outbox rows).

pub mod logical;
pub mod outbox;

use crate::runtime::backoff::sleep_unless_stopped;
use crate::runtime::config::CdcConfirm;
use crate::runtime::db::timed;
use crate::AppContext;
use anyhow::{anyhow, bail, Context, Result};
use pg_walstream::{LogicalReplicationMessage, LogicalReplicationParser, RelationInfo};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent, TlsConfig};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Prefix of the logical messages the backlog check emits into the WAL.
const DRAIN_PREFIX: &str = "dualcheck-drain";

/// One event the tailer publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdcEvent {
    /// Record key.
    pub key: String,
    /// Record value (JSON with at least `op`, `seq`, `event`).
    pub value: String,
    /// Event id (also header `event_id`); the same on every replay.
    pub event_id: String,
}

/// One inserted row as the WAL carries it: column names and text values.
pub struct Row<'a> {
    relation: &'a RelationInfo,
    tuple: &'a pg_walstream::TupleData,
}

impl Row<'_> {
    /// The text of column `name` (`None`: no such column, or NULL).
    pub fn text(&self, name: &str) -> Option<String> {
        let i = self.relation.columns.iter().position(|c| &*c.name == name)?;
        self.tuple.get_column(i)?.as_string()
    }

    /// The text of column `name`, required.
    pub fn required(&self, name: &str) -> Result<String> {
        self.text(name).with_context(|| {
            format!(
                "column `{name}` of {} is missing or NULL in the WAL record",
                self.relation.full_name()
            )
        })
    }
}

/// What a CDC pattern streams: which table, and how a row becomes an event.
#[derive(Clone, Copy)]
pub struct Source {
    /// Table the publication covers (in schema `public`).
    pub table: &'static str,
    /// Short name used in the slot and publication names.
    pub name: &'static str,
    /// Turns one inserted row into its event.
    pub to_event: fn(&Row<'_>) -> Result<CdcEvent>,
}

impl Source {
    /// Slot name for the database of `database_url` (slots are per cluster, so
    /// the database is part of the name; at most 63 characters).
    pub fn slot(&self, database_url: &str) -> Result<String> {
        let cfg: tokio_postgres::Config = database_url.parse().context("DATABASE_URL")?;
        let db = cfg.get_dbname().unwrap_or("postgres");
        let raw = format!("dualcheck_{}_{}", self.name, db);
        let clean: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(63)
            .collect();
        Ok(clean)
    }

    /// Publication name (per database, so one fixed name suffices).
    pub fn publication(&self) -> String {
        format!("dualcheck_{}", self.name)
    }

    /// Creates the publication (inserts of the one table) and the slot if missing.
    pub async fn create_slot(&self, db: &tokio_postgres::Client, database_url: &str) -> Result<()> {
        let publication = self.publication();
        let exists = db
            .query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&publication])
            .await?;
        if exists.is_none() {
            db.batch_execute(&format!(
                "CREATE PUBLICATION {publication} FOR TABLE public.{} WITH (publish = 'insert')",
                self.table
            ))
            .await
            .with_context(|| format!("creating publication {publication}"))?;
        }
        let slot = self.slot(database_url)?;
        let exists = db
            .query_opt("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
            .await?;
        if exists.is_none() {
            db.execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", &[&slot])
                .await
                .with_context(|| {
                    format!("creating replication slot {slot} (the server needs wal_level=logical and a free max_replication_slots)")
                })?;
        }
        Ok(())
    }
}

/// What the tailer reports to the backlog check, shared between tasks.
#[derive(Default)]
pub struct TailerState {
    /// Streaming now (a replication session is open).
    streaming: AtomicBool,
    /// Events handed to the producer and not yet acknowledged.
    in_flight: AtomicI64,
    /// Highest drain marker acknowledged (everything before it is published).
    acked_marker: AtomicU64,
    /// Last drain marker emitted by [`Tailer::backlog`].
    emitted_marker: AtomicU64,
    /// Highest WAL position confirmed to Postgres (the slot may drop what is before it).
    confirmed_lsn: AtomicU64,
    /// What became of each op's event in this process (`GET /trace/{op}`).
    journal: crate::runtime::journal::Journal,
    /// Distinguishes this process's markers from a killed predecessor's.
    nonce: u64,
    last_error: Mutex<String>,
}

/// The tailer of one [`Source`], run in the relay process.
pub struct Tailer {
    source: Source,
    ctx: Arc<AppContext>,
    /// Shared with the backlog check.
    pub state: Arc<TailerState>,
}

/// Work handed from the stream reader to the acknowledger, in WAL order.
struct Pending {
    /// Position processed once every delivery is acknowledged.
    lsn: Lsn,
    /// Each event's op (when its value names one), event id and delivery.
    deliveries: Vec<(Option<i64>, String, DeliveryFuture)>,
    /// A drain marker, acknowledged with the position.
    marker: Option<u64>,
}

impl Tailer {
    /// A tailer for `source` on `ctx`'s database and topic.
    pub fn new(source: Source, ctx: Arc<AppContext>) -> Tailer {
        let state = TailerState {
            nonce: fastrand::u64(1..u64::MAX >> 12),
            ..TailerState::default()
        };
        Tailer {
            source,
            ctx,
            state: Arc::new(state),
        }
    }

    /// Runs until `stop`: one replication session after another (a dropped
    /// link, Postgres restart or fatal producer error ends a session; the next
    /// resumes from the slot).
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut attempt = 0u32;
        let backoff = crate::runtime::backoff::Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        if self.ctx.config.bug_is(NEW_SLOT_ON_RESTART.name) {
            // The mutant: a fresh slot at every start, "to begin from a clean state".
            while let Err(e) = self.recreate_slot().await {
                tracing::warn!(
                    "cdc tailer ({}): recreating the slot: {e:#} (retrying)",
                    self.source.name
                );
                if !sleep_unless_stopped(backoff.delay(attempt.min(8)), &mut stop).await {
                    return;
                }
                attempt += 1;
            }
            attempt = 0;
        }
        loop {
            let session = self.session(stop.clone());
            let outcome = tokio::select! {
                r = session => r,
                _ = stop.changed() => return,
            };
            self.state.streaming.store(false, Ordering::SeqCst);
            self.state.in_flight.store(0, Ordering::SeqCst);
            match outcome {
                Ok(()) => return,
                Err(e) => {
                    let msg = format!("{e:#}");
                    tracing::warn!("cdc tailer ({}): {msg}; resuming from the slot", self.source.name);
                    *self.state.last_error.lock().unwrap_or_else(|e| e.into_inner()) = msg;
                }
            }
            if !sleep_unless_stopped(backoff.delay(attempt.min(8)), &mut stop).await {
                return;
            }
            attempt += 1;
        }
    }

    /// `new-slot-on-restart`: ends whatever session still holds the slot
    /// (a killed predecessor's), drops the slot and creates it anew at the
    /// current end of the WAL, forgetting what was committed meanwhile.
    async fn recreate_slot(&self) -> Result<()> {
        let url = &self.ctx.config.database_url;
        let slot = self.source.slot(url)?;
        let c = self.ctx.db.connect().await?;
        let t = self.ctx.db.timeout;
        timed(
            t,
            "ending the slot's previous session",
            c.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL",
                &[&slot],
            ),
        )
        .await?;
        // The terminated walsender releases the slot a moment later.
        tokio::time::sleep(Duration::from_millis(200)).await;
        timed(
            t,
            "dropping the replication slot",
            c.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            ),
        )
        .await?;
        timed(
            t,
            "creating the replication slot",
            c.execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", &[&slot]),
        )
        .await?;
        tracing::warn!(
            "cdc tailer ({}): slot {slot} dropped and created anew",
            self.source.name
        );
        Ok(())
    }

    fn producer(&self) -> Result<FutureProducer> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.ctx.config.kafka_bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Never give up on a record: a CDC pipeline waits out an outage
            // (the slot holds the WAL); a record that failed while a later one
            // succeeded would come back out of order on the replay.
            .set("message.timeout.ms", "0")
            .set("linger.ms", self.ctx.config.linger.as_millis().to_string())
            .set("socket.nagle.disable", "true")
            .set("reconnect.backoff.max.ms", "1000")
            .set("log_level", "3")
            .create()
            .context("creating the tailer's Kafka producer (KAFKA_BOOTSTRAP)")
    }

    fn replication_config(&self) -> Result<ReplicationConfig> {
        let url = &self.ctx.config.database_url;
        let cfg: tokio_postgres::Config = url.parse().context("DATABASE_URL is not a Postgres URL")?;
        let host = match cfg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => bail!("DATABASE_URL must name a TCP host for the replication connection"),
        };
        let port = cfg.get_ports().first().copied().unwrap_or(5432);
        let password = cfg
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        Ok(ReplicationConfig::new(
            host,
            cfg.get_user().unwrap_or("postgres"),
            password,
            cfg.get_dbname().unwrap_or("postgres"),
            self.source.slot(url)?,
            self.source.publication(),
        )
        .with_port(port)
        .with_tls(TlsConfig::disabled())
        // Start where the slot's confirmed position is.
        .with_start_lsn(Lsn(0))
        .with_status_interval(Duration::from_millis(100))
        .with_wakeup_interval(Duration::from_secs(1))
        .with_buffer_size(1024)
        .with_application_name("dualcheck-cdc"))
    }

    /// One replication session: read, publish, acknowledge, until an error.
    async fn session(&self, stop: watch::Receiver<bool>) -> Result<()> {
        let producer = self.producer()?;
        let mut repl = tokio::time::timeout(
            Duration::from_secs(10),
            ReplicationClient::connect(self.replication_config()?),
        )
        .await
        .map_err(|_| anyhow!("no replication connection within 10 s"))?
        .context("starting logical replication")?;
        self.state.streaming.store(true, Ordering::SeqCst);
        tracing::info!("cdc tailer ({}): streaming from the slot", self.source.name);

        let (to_acker, from_reader) = mpsc::channel::<Pending>(256);
        let (acked_tx, mut acked_rx) = watch::channel(Lsn(0));
        let acker = tokio::spawn(acknowledge(
            from_reader,
            acked_tx,
            self.state.clone(),
            self.ctx.crash.clone(),
        ));
        let mut reader = Reader {
            tailer: self,
            producer,
            to_acker,
            early: self.ctx.config.cdc_confirm == CdcConfirm::Early,
            parser: LogicalReplicationParser::with_protocol_version(1),
            relations: HashMap::new(),
            txn: Vec::new(),
            per_change: match self.ctx.config.bug_is(CONFIRM_LAST_CHANGE.name) {
                true => Some(self.confirmed_flush().await?),
                false => None,
            },
        };
        let _stop = stop;
        let result = reader.stream(&mut repl, &mut acked_rx).await;
        acker.abort();
        repl.abort();
        result
    }

    /// The slot's confirmed position (`confirm-last-change` resumes after it).
    async fn confirmed_flush(&self) -> Result<Lsn> {
        let slot = self.source.slot(&self.ctx.config.database_url)?;
        let c = self.ctx.db.connect().await?;
        let row = c
            .query_opt(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .context("reading the slot's confirmed position")?;
        let text: Option<String> = row.and_then(|r| r.get(0));
        Ok(Lsn(text.as_deref().and_then(parse_lsn).unwrap_or(0)))
    }

    /// Hands one transaction's events to the producer, in order.
    async fn produce(
        &self,
        producer: &FutureProducer,
        events: Vec<CdcEvent>,
    ) -> Result<Vec<(Option<i64>, String, DeliveryFuture)>> {
        let mut out = Vec::with_capacity(events.len());
        for e in &events {
            let mut record = FutureRecord::to(&self.ctx.config.topic)
                .key(&e.key)
                .payload(&e.value)
                .headers(OwnedHeaders::new().insert(Header {
                    key: "event_id",
                    value: Some(&e.event_id),
                }));
            let delivery = loop {
                match producer.send_result(record) {
                    Ok(f) => break f,
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                        back,
                    )) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => bail!("handing an event to the producer: {e}"),
                }
            };
            self.state.in_flight.fetch_add(1, Ordering::SeqCst);
            out.push((
                crate::runtime::journal::op_of_value(&e.value),
                e.event_id.clone(),
                delivery,
            ));
        }
        Ok(out)
    }

    /// Events not yet known to be published. Emits a drain marker into the
    /// WAL; answers 0 only when the marker emitted by the previous call came
    /// out of the stream with every event before it acknowledged.
    pub async fn backlog(&self) -> Result<crate::Backlog> {
        if !self.state.streaming.load(Ordering::SeqCst) {
            let last = self.state.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
            bail!("the CDC tailer is not streaming (last error: {last})");
        }
        let previous = self.state.emitted_marker.load(Ordering::SeqCst);
        let next = previous + 1;
        let mut c = self.ctx.db.get().await?;
        let content = format!("{}:{next}", self.state.nonce);
        let r = timed(
            self.ctx.db.timeout,
            "emitting a drain marker",
            c.execute(
                "SELECT pg_logical_emit_message(false, $1, $2)",
                &[&DRAIN_PREFIX, &content],
            ),
        )
        .await;
        if let Err(e) = r {
            c.discard();
            return Err(e);
        }
        self.state.emitted_marker.store(next, Ordering::SeqCst);
        let in_flight = self.state.in_flight.load(Ordering::SeqCst).max(0);
        let through = previous > 0 && self.state.acked_marker.load(Ordering::SeqCst) >= previous;
        Ok(crate::Backlog {
            backlog: if through && in_flight == 0 { 0 } else { in_flight.max(1) },
            oldest_age_ms: 0,
            parked: 0,
            in_flight: None,
        })
    }
}

/// The reading side of one replication session: decodes the stream, hands
/// each committed transaction's events to the producer and every position to
/// the acknowledger, and confirms to Postgres what the acknowledger reports.
struct Reader<'a> {
    tailer: &'a Tailer,
    producer: FutureProducer,
    to_acker: mpsc::Sender<Pending>,
    /// `--cdc-confirm early` (the deliberate bug): confirm at commit, before Kafka has anything.
    early: bool,
    parser: LogicalReplicationParser,
    /// The relations the stream described, by id.
    relations: HashMap<u32, RelationInfo>,
    /// Events of the transaction being read, published at its commit.
    txn: Vec<CdcEvent>,
    /// `confirm-last-change`: each change is published as it is decoded,
    /// and those at or below this position (confirmed before the session
    /// began) are skipped as already sent.
    per_change: Option<Lsn>,
}

impl Reader<'_> {
    /// Reads until an error (a session always ends with one).
    async fn stream(&mut self, repl: &mut ReplicationClient, acked_rx: &mut watch::Receiver<Lsn>) -> Result<()> {
        loop {
            let event = tokio::select! {
                ev = repl.recv() => ev.context("replication stream")?,
                changed = acked_rx.changed() => {
                    if changed.is_err() {
                        bail!("the acknowledger stopped: a delivery failed");
                    }
                    if !self.early {
                        self.confirm(repl, *acked_rx.borrow());
                    }
                    continue;
                }
            };
            let Some(event) = event else {
                bail!("the replication stream ended");
            };
            self.handle(repl, event).await?;
        }
    }

    /// Tells Postgres that everything up to `lsn` is processed.
    fn confirm(&self, repl: &ReplicationClient, lsn: Lsn) {
        repl.update_applied_lsn(lsn);
        self.tailer.state.confirmed_lsn.fetch_max(lsn.0, Ordering::SeqCst);
    }

    /// Takes one event of the stream.
    async fn handle(&mut self, repl: &ReplicationClient, event: ReplicationEvent) -> Result<()> {
        match event {
            ReplicationEvent::Begin { .. } => self.txn.clear(),
            ReplicationEvent::XLogData { data, wal_start, .. } => {
                self.decode(&data)?;
                if let Some(resume) = self.per_change {
                    self.send_change(wal_start, resume).await?;
                }
            }
            ReplicationEvent::Commit { end_lsn, .. } => self.commit(repl, end_lsn).await?,
            ReplicationEvent::Message {
                prefix, content, lsn, ..
            } if prefix == DRAIN_PREFIX => {
                let marker = parse_marker(&content, self.tailer.state.nonce);
                self.pass_on(lsn, Vec::new(), marker).await?;
            }
            ReplicationEvent::KeepAlive { wal_end, .. } => {
                // Everything committed before `wal_end` has been received:
                // once the earlier events are acknowledged, it is processed.
                self.pass_on(wal_end, Vec::new(), None).await?;
            }
            ReplicationEvent::Message { .. } => {}
            ReplicationEvent::StoppedAt { .. } => bail!("the replication stream stopped"),
        }
        Ok(())
    }

    /// Decodes one pgoutput message: a relation's description is kept, an
    /// insert into the source's table becomes an event of the transaction.
    fn decode(&mut self, data: &[u8]) -> Result<()> {
        let msg = self
            .parser
            .parse_wal_message(data)
            .map_err(|e| anyhow!("decoding pgoutput: {e}"))?;
        match msg.message {
            LogicalReplicationMessage::Relation {
                relation_id,
                namespace,
                relation_name,
                replica_identity,
                columns,
            } => {
                // Also after an ALTER TABLE: columns are looked up by name.
                self.relations.insert(
                    relation_id,
                    RelationInfo::new(relation_id, namespace, relation_name, replica_identity, columns),
                );
            }
            LogicalReplicationMessage::Insert { relation_id, tuple } => {
                let relation = self
                    .relations
                    .get(&relation_id)
                    .with_context(|| format!("insert into unknown relation {relation_id}"))?;
                let source = &self.tailer.source;
                if &*relation.relation_name == source.table {
                    let row = Row {
                        relation,
                        tuple: &tuple,
                    };
                    self.txn.push((source.to_event)(&row)?);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// At a commit: journals the transaction's events, hands them to the
    /// producer and their position to the acknowledger.
    async fn commit(&mut self, repl: &ReplicationClient, end_lsn: Lsn) -> Result<()> {
        let state = &self.tailer.state;
        if self.early {
            // The deliberate bug: confirmed before Kafka has anything.
            self.confirm(repl, end_lsn);
        }
        for e in &self.txn {
            if let Some(op) = crate::runtime::journal::op_of_value(&e.value) {
                state.journal.update(op, |n| {
                    n.event = e.event_id.clone();
                    n.extra.insert("commit_lsn".into(), lsn_text(end_lsn.0).into());
                });
            }
        }
        let deliveries = self
            .tailer
            .produce(&self.producer, std::mem::take(&mut self.txn))
            .await?;
        self.pass_on(end_lsn, deliveries, None).await
    }

    /// `confirm-last-change`: publishes the change just decoded at once, its
    /// own position to be confirmed once acknowledged — unless that position
    /// was confirmed before this session, when it is taken as sent.
    async fn send_change(&mut self, at: Lsn, resume: Lsn) -> Result<()> {
        let events = std::mem::take(&mut self.txn);
        if events.is_empty() || at.0 <= resume.0 {
            return Ok(());
        }
        let deliveries = self.tailer.produce(&self.producer, events).await?;
        self.pass_on(at, deliveries, None).await
    }

    /// Hands a position (with its deliveries and drain marker) to the acknowledger.
    async fn pass_on(
        &self,
        lsn: Lsn,
        deliveries: Vec<(Option<i64>, String, DeliveryFuture)>,
        marker: Option<u64>,
    ) -> Result<()> {
        let pending = Pending {
            lsn,
            deliveries,
            marker,
        };
        self.to_acker
            .send(pending)
            .await
            .map_err(|_| anyhow!("the acknowledger stopped: a delivery failed"))
    }
}

/// `nonce:n` of this process → `n`; a predecessor's marker → `None`.
fn parse_marker(content: &[u8], nonce: u64) -> Option<u64> {
    let s = std::str::from_utf8(content).ok()?;
    let (n, m) = s.split_once(':')?;
    (n.parse::<u64>().ok()? == nonce).then(|| m.parse().ok())?
}

/// Awaits deliveries in WAL order and publishes the position up to which
/// everything is acknowledged. Ends (dropping `acked`) on the first failure.
/// The `crash-after-ack` point sits between a transaction's acknowledgment
/// and its position reaching the reader that confirms it.
async fn acknowledge(
    mut from_reader: mpsc::Receiver<Pending>,
    acked: watch::Sender<Lsn>,
    state: Arc<TailerState>,
    crash: crate::runtime::crash::CrashPoint,
) {
    while let Some(p) = from_reader.recv().await {
        let published = !p.deliveries.is_empty();
        for (op, event, d) in p.deliveries {
            let result = match d.await {
                Ok(Ok(d)) => Ok((d.partition, d.offset)),
                Ok(Err((e, _))) => Err(format!("publish failed: {e}")),
                Err(_) => Err("producer dropped the delivery report".to_string()),
            };
            state.in_flight.fetch_sub(1, Ordering::SeqCst);
            if let Some(op) = op {
                state
                    .journal
                    .attempt(op, &event, result.as_ref().map(|d| *d).map_err(|e| e.as_str()));
            }
            if let Err(e) = result {
                let op = op.map_or("?".to_string(), |o| o.to_string());
                tracing::warn!(
                    "cdc tailer: the delivery of op {op} (event {event}) failed: {e}; the session restarts from the slot"
                );
                return;
            }
        }
        if published {
            crash.after_ack();
        }
        if let Some(m) = p.marker {
            state.acked_marker.fetch_max(m, Ordering::SeqCst);
        }
        acked.send_if_modified(|lsn| {
            if p.lsn > *lsn {
                *lsn = p.lsn;
                true
            } else {
                false
            }
        });
    }
}

/// A WAL position as Postgres writes it (`16/B374D848`).
fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// A CDC pattern: the service writes its rows (and whatever `statements`
/// add), the [`Tailer`] publishes from the WAL.
pub struct CdcPattern {
    source: Source,
    /// Tables beyond `orders` (idempotent DDL).
    ddl: &'static str,
    /// Statements of the business transaction after the order insert.
    statements: fn(&crate::Op) -> Vec<crate::runtime::business::Step>,
    ctx: Arc<AppContext>,
    tailer: Arc<Tailer>,
}

impl CdcPattern {
    /// Builds a CDC pattern (used by the registry entries).
    pub fn build(
        source: Source,
        ddl: &'static str,
        statements: fn(&crate::Op) -> Vec<crate::runtime::business::Step>,
        ctx: Arc<AppContext>,
    ) -> Arc<dyn crate::Pattern> {
        let tailer = Arc::new(Tailer::new(source, ctx.clone()));
        Arc::new(CdcPattern {
            source,
            ddl,
            statements,
            ctx,
            tailer,
        })
    }
}

#[async_trait::async_trait]
impl crate::Pattern for CdcPattern {
    async fn setup_schema(&self, db: &tokio_postgres::Client) -> Result<()> {
        db.batch_execute(crate::ORDERS_DDL).await?;
        db.batch_execute(self.ddl).await?;
        self.source.create_slot(db, &self.ctx.config.database_url).await
    }
    async fn start_background(&self) -> Result<crate::Background> {
        let (mut bg, stop) = crate::Background::new();
        bg.push(tokio::spawn(self.tailer.clone().run(stop)));
        Ok(bg)
    }
    async fn execute(&self, op: &crate::Op) -> crate::OpAnswer {
        crate::runtime::business::run_with(&self.ctx, op, None, &(self.statements)(op))
            .await
            .into()
    }
    async fn backlog(&self) -> Result<crate::Backlog> {
        self.tailer.backlog().await
    }
    /// The `orders` row, and what this relay process saw of the op's event:
    /// the WAL position of its commit (`commit_lsn`), where Kafka acknowledged
    /// it, and whether that position is confirmed to the slot (`confirmed`:
    /// the slot will not stream it again). `state`: `published`,
    /// `publish_failed`, `pending` (streamed, not acknowledged yet),
    /// `not_committed` (no row), `unknown` (a row this process has not seen
    /// streamed: it started after its commit was confirmed, or has not got there).
    fn crash_point_after_ack(&self) -> bool {
        true
    }
    async fn trace(&self, op: i64) -> Result<Option<serde_json::Value>> {
        let order = crate::runtime::business::orders_row(&self.ctx, op).await?;
        let confirmed = self.tailer.state.confirmed_lsn.load(Ordering::SeqCst);
        let note = self.tailer.state.journal.get(op);
        let state = match (&order, &note) {
            (_, Some(n)) if n.published.is_some() => "published",
            (_, Some(n)) if n.last_error.is_some() => "publish_failed",
            (_, Some(_)) => "pending",
            (None, None) => "not_committed",
            (Some(_), None) => "unknown",
        };
        let mut v = serde_json::json!({
            "op": op,
            "state": state,
            "orders": order,
            "confirmed_lsn": lsn_text(confirmed),
            "confirm": format!("{:?}", self.ctx.config.cdc_confirm),
        });
        if let Some(n) = note {
            if let Some(lsn) = n.extra.get("commit_lsn").and_then(|l| l.as_str()) {
                v["commit_lsn"] = lsn.into();
                v["confirmed"] = lsn_at_or_below(lsn, confirmed).into();
            }
            v["attempts"] = n.attempts.into();
            if let Some(e) = &n.last_error {
                v["last_error"] = e.clone().into();
            }
            v["publish"] = serde_json::to_value(&n)?;
        }
        Ok(Some(v))
    }
}

/// Whether the position written `X/Y` is at or below `confirmed`.
fn lsn_at_or_below(text: &str, confirmed: u64) -> bool {
    parse_lsn(text).is_some_and(|l| l <= confirmed)
}

/// A WAL position written `X/Y` (hex halves).
fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// `confirm-last-change`: the tailer publishes each change as it decodes it
/// and confirms the WAL position of the last change Kafka acknowledged
/// rather than of the last transaction it finished; after a restart it skips
/// the changes at or below the confirmed position, as already sent. Every
/// row of a multi-row `INSERT` or a `COPY` is decoded from one WAL record and
/// carries its position: killed after sending some of them, the restarted
/// tailer skips the rest (`partial`). A transaction that began before an
/// earlier one committed has changes below that commit's position and is
/// skipped in part too.
pub const CONFIRM_LAST_CHANGE: crate::expect::Control = crate::expect::Control {
    workload: Some(crate::expect::MutantWorkload {
        events_per_op: "2-8",
        keys_per_op: 1,
        write: workloads::WriteShape::MultiRow,
    }),
    ..crate::patterns::outbox::mutant(
        "confirm-last-change",
        "relay-kill",
        &[
            crate::expect::Expectation {
                when: crate::expect::When::AnyFault(&["relay-kill"]),
                expect: crate::expect::Expect::Shows(&[checkers::Anomaly::Partial, checkers::Anomaly::Lost]),
            },
            crate::expect::Expectation {
                when: crate::expect::When::Always,
                expect: crate::expect::Expect::Any,
            },
        ],
    )
};

/// The negative control both tailers carry: confirming WAL positions before
/// Kafka acknowledged them loses the events committed while the relay dies.
pub const CONFIRM_EARLY_LOSES: crate::expect::Control = crate::expect::Control {
    name: "confirm-early",
    knob: "DUALCHECK_CDC_CONFIRM",
    value: "early",
    faults: "kafka-partition,relay-kill",
    exactly_once: false,
    workload: None,
    expect: &[crate::expect::Expectation {
        when: crate::expect::When::AnyFault(&["relay-kill"]),
        expect: crate::expect::Expect::Shows(&[checkers::Anomaly::Lost]),
    }],
};

/// `new-slot-on-restart`: the tailer drops its slot and creates a new one
/// each time its process starts, so whatever was committed while it was down
/// (a relay kill) is never streamed (lost).
pub const NEW_SLOT_ON_RESTART: crate::expect::Control = crate::patterns::outbox::mutant(
    "new-slot-on-restart",
    "relay-kill",
    &[
        crate::expect::Expectation {
            when: crate::expect::When::AnyFault(&["relay-kill"]),
            expect: crate::expect::Expect::Shows(&[checkers::Anomaly::Lost]),
        },
        crate::expect::Expectation {
            when: crate::expect::When::Always,
            expect: crate::expect::Expect::Any,
        },
    ],
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_of_other_processes_are_ignored() {
        assert_eq!(parse_marker(b"42:7", 42), Some(7));
        assert_eq!(parse_marker(b"41:7", 42), None);
        assert_eq!(parse_marker(b"junk", 42), None);
    }

    #[test]
    fn slot_names_are_valid_identifiers() {
        let s = Source {
            table: "orders",
            name: "logical",
            to_event: |_| unreachable!(),
        };
        let slot = s.slot("postgres://postgres@127.0.0.1:5/Run-DB_42").unwrap();
        assert_eq!(slot, "dualcheck_logical_run_db_42");
        let long = format!("postgres://postgres@127.0.0.1:5/{}", "x".repeat(100));
        assert_eq!(s.slot(&long).unwrap().len(), 63);
    }
}
