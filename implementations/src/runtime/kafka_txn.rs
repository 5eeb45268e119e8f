//! Publishing every event of an op in one Kafka transaction: a transactional
//! producer (`transactional.id` fixed per pattern, topic and instance, so a
//! restarted instance fences its dead predecessor and aborts its open
//! transaction), whose records a `read_committed` consumer sees all or none.
//! One open transaction per producer at a time: [`TxnPublisher::publish_all`]
//! serializes them.

use crate::runtime::config::AppConfig;
use crate::runtime::kafka::Envelope;
use anyhow::{anyhow, Context, Result};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use std::time::Duration;

/// How a Kafka transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Committed: every event is visible.
    Committed,
    /// Aborted: none is.
    Aborted,
}

/// A transactional producer for one topic, created on first use and replaced
/// after a fatal error or a transaction whose outcome is unknown.
pub struct TxnPublisher {
    cfg: AppConfig,
    transactional_id: String,
    /// The producer; its lock also serializes transactions.
    slot: tokio::sync::Mutex<Option<FutureProducer>>,
}

fn kafka_err(what: &str, e: KafkaError) -> anyhow::Error {
    anyhow!("{what}: {e}")
}

/// Whether a Kafka transaction error leaves the producer usable after an abort.
fn requires_abort(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.txn_requires_abort(),
        _ => false,
    }
}

impl TxnPublisher {
    /// A publisher whose `transactional.id` is `dualcheck-{pattern}-{topic}`,
    /// plus the instance (`DUALCHECK_INSTANCE`) when there are several: two
    /// instances sharing one id would fence each other at every transaction.
    pub fn new(cfg: &AppConfig, pattern: &str) -> Self {
        let instance = std::env::var("DUALCHECK_INSTANCE").unwrap_or_default();
        let transactional_id = match instance.as_str() {
            "" | "1" => format!("dualcheck-{pattern}-{}", cfg.topic),
            n => format!("dualcheck-{pattern}-{}-{n}", cfg.topic),
        };
        TxnPublisher {
            cfg: cfg.clone(),
            transactional_id,
            slot: tokio::sync::Mutex::new(None),
        }
    }

    /// Makes sure a producer is ready (created and `init_transactions`ed):
    /// a caller that must not start its own work while Kafka is unreachable
    /// asks first.
    pub async fn ready(&self) -> Result<()> {
        let mut slot = self.slot.lock().await;
        self.ready_producer(&mut slot).await.map(drop)
    }

    async fn ready_producer(&self, slot: &mut Option<FutureProducer>) -> Result<FutureProducer> {
        if let Some(p) = slot.as_ref() {
            if p.client().fatal_error().is_none() {
                return Ok(p.clone());
            }
            *slot = None;
        }
        let cfg = &self.cfg;
        let p: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &cfg.kafka_bootstrap)
            .set("transactional.id", &self.transactional_id)
            .set("transaction.timeout.ms", cfg.txn_timeout.as_millis().to_string())
            .set("message.timeout.ms", cfg.publish_timeout.as_millis().to_string())
            .set("linger.ms", cfg.linger.as_millis().to_string())
            .set("socket.nagle.disable", "true")
            .set("reconnect.backoff.max.ms", "1000")
            .set("log_level", "3")
            .create()
            .with_context(|| format!("creating the transactional producer for {}", cfg.kafka_bootstrap))?;
        let p2 = p.clone();
        // Short enough that an op answers (fail) before the runner's op timeout.
        let t = cfg.publish_timeout.min(Duration::from_secs(3));
        tokio::task::spawn_blocking(move || p2.init_transactions(t))
            .await?
            .map_err(|e| kafka_err("initialising Kafka transactions (is the Kafka link up?)", e))?;
        *slot = Some(p.clone());
        Ok(p)
    }

    /// Publishes `envs` (each with its key and an `event_id` header) in one
    /// transaction: [`TxnOutcome::Committed`] (all visible) or
    /// [`TxnOutcome::Aborted`] (none: also when no producer could be made,
    /// so nothing was sent). An error leaves the outcome unknown; the
    /// producer is replaced, and its successor (same id) fences it.
    pub async fn publish_all(&self, envs: &[Envelope]) -> Result<TxnOutcome> {
        let mut slot = self.slot.lock().await;
        let Ok(producer) = self.ready_producer(&mut slot).await else {
            return Ok(TxnOutcome::Aborted);
        };
        let published = self.transaction(&producer, envs).await;
        if published.is_err() {
            *slot = None;
        }
        published
    }

    async fn transaction(&self, producer: &FutureProducer, envs: &[Envelope]) -> Result<TxnOutcome> {
        let t = self.cfg.publish_timeout;
        let p = producer.clone();
        let begun = tokio::task::spawn_blocking(move || p.begin_transaction()).await?;
        if let Err(e) = begun {
            return Err(kafka_err("beginning the Kafka transaction", e));
        }
        // Every record handed over at once: the commit flushes them, and
        // fails (then aborts) if one of them could not be written. Awaiting
        // each delivery in turn would cost a round trip per event.
        let mut sent = Ok(());
        for env in envs {
            let value = env.to_json();
            let headers = OwnedHeaders::new().insert(Header {
                key: "event_id",
                value: Some(&env.event),
            });
            let mut rec = FutureRecord::to(&self.cfg.topic)
                .key(&env.key)
                .payload(&value)
                .headers(headers);
            let handed = loop {
                match producer.send_result(rec) {
                    Ok(delivery) => break Ok(delivery),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        rec = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => break Err(e),
                }
            };
            if let Err(e) = handed {
                sent = Err(e);
                break;
            }
        }
        let abort =
            |p: FutureProducer| async move { tokio::task::spawn_blocking(move || p.abort_transaction(t)).await.ok() };
        if let Err(e) = sent {
            return match abort(producer.clone()).await {
                Some(Ok(())) => Ok(TxnOutcome::Aborted),
                _ => Err(kafka_err("producing the events (abort failed too)", e)),
            };
        }
        let p = producer.clone();
        let committed = tokio::task::spawn_blocking(move || p.commit_transaction(t)).await?;
        match committed {
            Ok(()) => Ok(TxnOutcome::Committed),
            Err(e) if requires_abort(&e) => match abort(producer.clone()).await {
                Some(Ok(())) => Ok(TxnOutcome::Aborted),
                _ => Err(kafka_err("committing the Kafka transaction (abort failed too)", e)),
            },
            Err(e) => Err(kafka_err("committing the Kafka transaction: outcome unknown", e)),
        }
    }
}
