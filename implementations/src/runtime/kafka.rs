//! Publishing: the record envelope every implementation uses and an idempotent
//! producer (`enable.idempotence=true`, `acks=all`) that reports each record's
//! delivery. rdkafka reconnects by itself after broker or link failures.

use anyhow::{Context, Result};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

/// The JSON value of every record: at least `op`, `seq`, `key`, `event`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Envelope {
    /// Op id.
    pub op: i64,
    /// Position of the op on its key.
    pub seq: i64,
    /// Business key (also the record key).
    pub key: String,
    /// Event id (UUID v4, fixed when the event is created; redeliveries carry the same).
    pub event: String,
    /// Business payload.
    #[serde(default)]
    pub payload: String,
    /// Which of its op's events this is (0, 1, ...); left out of the value
    /// for 0, so a one-event op's record reads as it always did.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub index: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Envelope {
    /// A new event for an op of one event, with a fresh event id (the first
    /// event of a multi-event op: use [`Envelope::all`] for those).
    pub fn new(op: &crate::Op) -> Self {
        Envelope {
            op: op.op as i64,
            seq: op.seq as i64,
            key: op.key.clone(),
            event: Uuid::new_v4().to_string(),
            payload: op.payload.clone(),
            index: 0,
        }
    }

    /// The op's events, in index order, each on its key at its seq with a
    /// fresh event id.
    pub fn all(op: &crate::Op) -> Vec<Self> {
        op.each_event()
            .into_iter()
            .map(|e| Envelope {
                op: op.op as i64,
                seq: e.seq as i64,
                key: e.key,
                event: Uuid::new_v4().to_string(),
                payload: op.payload.clone(),
                index: e.index,
            })
            .collect()
    }

    /// The event id as the UUID the outbox tables store (the envelopes made
    /// here carry UUIDs; a record read back may not).
    pub fn event_uuid(&self) -> Uuid {
        self.event.parse().expect("envelope ids are UUIDs")
    }

    /// The record value.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("envelope serializes")
    }
}

/// Why a publish failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishError {
    /// What went wrong, from librdkafka.
    pub message: String,
    /// Retrying cannot help (e.g. the record is larger than message.max.bytes).
    pub permanent: bool,
    /// No delivery report in time: the record may still be written (a
    /// message timeout, or the caller's own wait ran out).
    pub timed_out: bool,
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Whether a publish error can never go away by retrying: the record itself
/// is refused (too large, invalid for the broker). Every other error —
/// timeouts, lost connections, a broker restarting, fatal producer states —
/// is transient. `InvalidMessage` (Kafka's `CORRUPT_MESSAGE`, a CRC failure)
/// is transient too: Kafka declares it retriable, and parking on it would
/// turn a corrupted transmission into a lost event.
fn classify(e: &KafkaError) -> PublishError {
    let code = e.rdkafka_error_code();
    let permanent = matches!(
        code,
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::MessageBatchTooLarge
        )
    );
    PublishError {
        message: format!("publish failed: {e}"),
        permanent,
        timed_out: code == Some(RDKafkaErrorCode::MessageTimedOut),
    }
}

/// One record to publish.
#[derive(Clone, Debug)]
pub struct Record<'a> {
    /// Record key (the op's key).
    pub key: &'a str,
    /// Record value (the envelope JSON).
    pub value: &'a str,
    /// Event id, also sent as header `event_id`.
    pub event_id: &'a str,
}

/// Records handed to the producer whose delivery reports are still to come
/// ([`Publisher::hand_over`]; [`Publisher::reports`] awaits them).
pub struct HandedOver {
    producer: FutureProducer,
    /// Per record, in order: its op (when its value names one), event id and delivery.
    pending: Vec<(Option<i64>, String, Result<DeliveryFuture, PublishError>)>,
}

impl HandedOver {
    /// Whether some record could not even be enqueued.
    pub fn refused(&self) -> bool {
        self.pending.iter().any(|(_, _, r)| r.is_err())
    }
}

/// An idempotent producer for one topic. If librdkafka raises a fatal error
/// (an idempotent producer can, e.g. after a sequence desync across broker
/// restarts), the producer is replaced by a new one on the next publish.
pub struct Publisher {
    producer: std::sync::RwLock<FutureProducer>,
    config: ClientConfig,
    /// Topic records go to.
    pub topic: String,
    /// How long a caller waits for delivery reports (and for room in a full queue).
    wait: Duration,
    /// What became of each op's last publishes (for `GET /trace/{op}`); shared
    /// with the [`Publisher::without_message_timeout`] twin.
    pub journal: std::sync::Arc<super::journal::Journal>,
}

/// What a producer waits for before it reports a record delivered, and
/// whether its retries can write a record twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `enable.idempotence=true`, `acks=all`: the correct producer.
    Idempotent,
    /// The `non-idempotent-producer` mutant: `enable.idempotence=false` with
    /// retries and five requests in flight per connection, the settings that
    /// let a retried batch land after a later one or twice.
    NonIdempotent,
    /// The `leader-acks` mutant: `acks=1`, the partition leader alone
    /// acknowledges; a leader that dies before its followers copied a record
    /// takes the record with it.
    LeaderOnly,
}

impl Publisher {
    /// A producer to `topic` at `bootstrap`; each record may take `timeout`
    /// (`message.timeout.ms`) before it is reported failed; `linger` is
    /// librdkafka's `linger.ms` (how long a record waits for others to share
    /// its request).
    pub fn new(bootstrap: &str, topic: &str, timeout: Duration, linger: Duration) -> Result<Self> {
        Self::with_durability(bootstrap, topic, timeout, linger, Durability::Idempotent)
    }

    /// [`Publisher::new`] with the producer settings of `durability` (a
    /// mutant's, or the correct ones).
    pub fn with_durability(
        bootstrap: &str,
        topic: &str,
        timeout: Duration,
        linger: Duration,
        durability: Durability,
    ) -> Result<Self> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", bootstrap);
        match durability {
            Durability::Idempotent => {
                config.set("enable.idempotence", "true").set("acks", "all");
            }
            Durability::NonIdempotent => {
                config
                    .set("enable.idempotence", "false")
                    .set("retries", "2147483647")
                    .set("max.in.flight.requests.per.connection", "5")
                    .set("retry.backoff.ms", "100")
                    .set("acks", "all");
            }
            // Idempotence needs acks=all: a producer trusting the leader alone has neither.
            Durability::LeaderOnly => {
                config.set("enable.idempotence", "false").set("acks", "1");
            }
        }
        config
            .set("message.timeout.ms", timeout.as_millis().to_string())
            .set("linger.ms", linger.as_millis().to_string())
            // Small requests go out at once (Nagle would hold one back until
            // the previous is acknowledged).
            .set("socket.nagle.disable", "true")
            .set("reconnect.backoff.max.ms", "1000")
            .set("log_level", "3");
        let producer: FutureProducer = config
            .create()
            .with_context(|| format!("creating a Kafka producer for {bootstrap} (KAFKA_BOOTSTRAP)"))?;
        Ok(Publisher {
            producer: std::sync::RwLock::new(producer),
            config,
            topic: topic.to_string(),
            wait: timeout + Duration::from_secs(5),
            journal: Default::default(),
        })
    }

    /// A second producer like this one but whose records never time out
    /// (`message.timeout.ms=0`: librdkafka retries them until delivered or
    /// refused, as Kafka Connect's source producers do with an unbounded
    /// `delivery.timeout.ms`). The relays keep several events of one key in
    /// flight on it: an idempotent producer writes a partition's records in
    /// order and without gaps *unless* queued records time out, after which
    /// it skips them and sends their successors ("Message timeout
    /// considerations" in librdkafka's INTRODUCTION.md) — the successor of an
    /// event that then is retried would land before it. Without timeouts, a
    /// failed record (refused, or a fatal producer error) is never followed
    /// by a delivered successor of its key. Callers still give up *waiting*
    /// after `wait` ([`Publisher::wait`]); the record may then be delivered
    /// later, in order. Shares this publisher's journal.
    pub fn without_message_timeout(&self, wait: Duration) -> Result<Self> {
        let mut config = self.config.clone();
        config.set("message.timeout.ms", "0");
        let producer: FutureProducer = config
            .create()
            .context("creating the relays' Kafka producer (KAFKA_BOOTSTRAP)")?;
        Ok(Publisher {
            producer: std::sync::RwLock::new(producer),
            config,
            topic: self.topic.clone(),
            wait,
            journal: self.journal.clone(),
        })
    }

    /// How long [`Publisher::publish_all`] waits for delivery reports: the
    /// message timeout plus 5 s (or the twin's own, see
    /// [`Publisher::without_message_timeout`]).
    pub fn wait(&self) -> Duration {
        self.wait
    }

    fn current(&self) -> FutureProducer {
        self.producer.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces `used` by a new producer if it hit a fatal error (once, however many callers notice).
    fn renew_if_fatal(&self, used: &FutureProducer) {
        use rdkafka::producer::Producer;
        let Some((code, reason)) = used.client().fatal_error() else {
            return;
        };
        let mut guard = self.producer.write().unwrap_or_else(|e| e.into_inner());
        if guard.client().native_ptr() != used.client().native_ptr() {
            return; // already replaced
        }
        match self.config.create::<FutureProducer>() {
            Ok(p) => {
                tracing::warn!("Kafka producer fatal error ({code:?}: {reason}); replaced by a new producer");
                *guard = p;
            }
            Err(e) => tracing::warn!("Kafka producer fatal error ({code:?}: {reason}); recreating it failed: {e}"),
        }
    }

    /// Enqueues records in order (a full queue is waited out, keeping the order),
    /// then waits for every delivery report. One result per record, same order.
    pub async fn publish_all(&self, records: &[Record<'_>]) -> Vec<Result<(i32, i64), PublishError>> {
        let handed = self.hand_over(records).await;
        self.reports(handed, self.wait()).await
    }

    /// Enqueues records in order (a full queue is waited out, keeping the
    /// order) without waiting for their delivery reports: the producer holds
    /// them until [`Publisher::reports`] collects the reports. A record that
    /// cannot be enqueued stops the later records of its key (they fail
    /// without being sent): a successor never goes without its predecessor.
    pub async fn hand_over(&self, records: &[Record<'_>]) -> HandedOver {
        let producer = self.current();
        let mut pending = Vec::with_capacity(records.len());
        let mut refused_keys: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for r in records {
            if refused_keys.contains(r.key) {
                let e = PublishError {
                    message: format!("not sent: an earlier record of key {} could not be enqueued", r.key),
                    permanent: false,
                    timed_out: false,
                };
                pending.push((super::journal::op_of_value(r.value), r.event_id.to_string(), Err(e)));
                continue;
            }
            let headers = OwnedHeaders::new().insert(Header {
                key: "event_id",
                value: Some(r.event_id),
            });
            let mut rec = FutureRecord::to(&self.topic)
                .key(r.key)
                .payload(r.value)
                .headers(headers);
            let deadline = tokio::time::Instant::now() + self.wait;
            let res = loop {
                match producer.send_result(rec) {
                    Ok(f) => break Ok(f),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if tokio::time::Instant::now() < deadline =>
                    {
                        rec = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => break Err(classify(&e)),
                }
            };
            if res.is_err() {
                refused_keys.insert(r.key);
            }
            pending.push((super::journal::op_of_value(r.value), r.event_id.to_string(), res));
        }
        HandedOver { producer, pending }
    }

    /// Waits for the delivery reports of `handed`, each at most `wait` from
    /// now (a report not in by then is an error with `timed_out`; the
    /// producer may still deliver the record). One result per record, same
    /// order; each is noted in the journal.
    pub async fn reports(&self, handed: HandedOver, wait: Duration) -> Vec<Result<(i32, i64), PublishError>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::with_capacity(handed.pending.len());
        for (op, event_id, p) in handed.pending {
            let res = match p {
                Err(e) => Err(e),
                Ok(f) => match tokio::time::timeout_at(deadline, f).await {
                    Err(_) => Err(PublishError {
                        message: format!("no delivery report within {wait:?}"),
                        permanent: false,
                        timed_out: true,
                    }),
                    Ok(Err(_)) => Err(PublishError {
                        message: "producer dropped the delivery report".into(),
                        permanent: false,
                        timed_out: false,
                    }),
                    Ok(Ok(Err((e, _)))) => Err(classify(&e)),
                    Ok(Ok(Ok(d))) => Ok((d.partition, d.offset)),
                },
            };
            if let Some(op) = op {
                let r = res.as_ref().map(|d| *d).map_err(|e| e.message.as_str());
                self.journal.attempt(op, &event_id, r);
            }
            out.push(res);
        }
        if out.iter().any(|r| r.is_err()) {
            self.renew_if_fatal(&handed.producer);
        }
        out
    }

    /// Publishes one record and waits for its delivery report.
    pub async fn publish(&self, record: Record<'_>) -> Result<(i32, i64), PublishError> {
        self.publish_all(std::slice::from_ref(&record))
            .await
            .pop()
            .expect("one result per record")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refused_records_are_permanent() {
        let e = |code| classify(&KafkaError::MessageProduction(code));
        assert!(e(RDKafkaErrorCode::MessageSizeTooLarge).permanent);
        assert!(e(RDKafkaErrorCode::InvalidRecord).permanent);
        for transient in [
            RDKafkaErrorCode::InvalidMessage,
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::OutOfOrderSequenceNumber,
            RDKafkaErrorCode::Fatal,
            RDKafkaErrorCode::CoordinatorLoadInProgress,
        ] {
            assert!(!e(transient).permanent, "{transient:?}");
        }
    }
}
