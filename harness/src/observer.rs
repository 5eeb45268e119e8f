//! The observer: a Kafka consumer on the direct (unfaulted) listener, with
//! `read_committed` isolation, reading every topic of the run from the start
//! and recording each record as a `deliver` line.

use crate::recorder::Recorder;
use anyhow::{Context, Result};
use checkers::HistoryLine;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the runner needs to know to decide that deliveries have stopped.
#[derive(Default)]
pub struct ObserverStats {
    /// Records read so far.
    pub deliveries: AtomicU64,
    /// History time of the latest record (ns), or 0.
    pub last_delivery: AtomicI64,
    /// Ops delivered so far (records naming an op).
    pub delivered_ops: Mutex<HashSet<u64>>,
    /// Per (topic, partition), the offset after the latest record read.
    pub next_offsets: Mutex<HashMap<(String, i32), i64>>,
}

/// A running observer; [`Observer::stop`] ends it.
pub struct Observer {
    /// Live counters.
    pub stats: Arc<ObserverStats>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The fields the observer takes from a record's JSON value.
#[derive(serde::Deserialize)]
struct Envelope {
    op: Option<u64>,
    seq: Option<u64>,
    event: Option<String>,
}

impl Observer {
    /// Starts consuming every partition of `topics` (name, partition count) from
    /// the beginning at `bootstrap` (the direct listener).
    pub fn start(bootstrap: &str, topics: &[(String, i32)], recorder: Arc<Recorder>) -> Result<Observer> {
        let consumer = consumer(bootstrap, topics)?;
        let stats = Arc::new(ObserverStats::default());
        let (stop, mut stopped) = watch::channel(false);
        let s = stats.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    msg = consumer.recv() => match msg {
                        Ok(m) => {
                            let event = delivery(&m, recorder.now());
                            recorder.record(&event);
                            if let HistoryLine::Deliver { op: Some(op), .. } = &event {
                                s.delivered_ops.lock().unwrap_or_else(|e| e.into_inner()).insert(*op);
                            }
                            s.next_offsets
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert((m.topic().to_string(), m.partition()), m.offset() + 1);
                            s.deliveries.fetch_add(1, Ordering::Relaxed);
                            s.last_delivery.store(recorder.now(), Ordering::Relaxed);
                        }
                        Err(e) => {
                            tracing::debug!("observer: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    },
                }
            }
        });
        Ok(Observer { stats, stop, task })
    }

    /// Stops consuming and waits for the task to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// A `read_committed` consumer at `bootstrap` assigned every partition of
/// `topics` (name, partition count) from the beginning: what the observer
/// reads with (tests read a topic with it too).
pub fn consumer(bootstrap: &str, topics: &[(String, i32)]) -> Result<StreamConsumer> {
    let group = format!("dualcheck-observer-{}", uuid::Uuid::new_v4());
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("reconnect.backoff.max.ms", "1000")
        .set("log_level", "3")
        .create()
        .with_context(|| format!("creating the observer's Kafka consumer at {bootstrap}"))?;
    // Manual assignment from the beginning of every partition: no consumer
    // group, so no coordinator and no rebalance that a broker kill could
    // disturb (a group consumer stalled after kafka-kill).
    let mut assignment = TopicPartitionList::new();
    for (topic, partitions) in topics {
        for p in 0..*partitions {
            assignment
                .add_partition_offset(topic, p, Offset::Beginning)
                .with_context(|| format!("observer assigning {topic}/{p}"))?;
        }
    }
    consumer
        .assign(&assignment)
        .with_context(|| format!("observer assigning {topics:?}"))?;
    Ok(consumer)
}

/// Turns one Kafka record into a `deliver` event. A record whose value names
/// no op (not JSON, or another producer's) is still recorded, with `op: null`:
/// the checker counts it as unexpected.
fn delivery<M: Message>(m: &M, time: i64) -> HistoryLine {
    let envelope: Option<Envelope> = m.payload().and_then(|p| serde_json::from_slice(p).ok());
    let header_event = m.headers().and_then(|hs| {
        hs.iter()
            .find(|h| h.key == "event_id")
            .and_then(|h| h.value.and_then(|v| std::str::from_utf8(v).ok().map(String::from)))
    });
    let (op, seq, event) = match envelope {
        Some(e) => (e.op, e.seq, e.event),
        None => (None, None, None),
    };
    let event = event
        .or(header_event)
        .unwrap_or_else(|| format!("no-event-id:{}/{}/{}", m.topic(), m.partition(), m.offset()));
    HistoryLine::Deliver {
        op,
        event,
        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        seq,
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        time,
    }
}
