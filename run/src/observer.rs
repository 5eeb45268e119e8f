//! The observer: a Kafka consumer on the direct (unfaulted) listener, with
//! `read_committed` isolation, reading every topic of the run from the start
//! and recording each record as a `deliver` line.

use crate::recorder::Recorder;
use crate::template::{Mapped, RecordMapping};
use anyhow::{Context, Result};
use checkers::HistoryLine;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the runner needs to know to decide that deliveries have stopped.
#[derive(Default)]
pub struct ObserverStats {
    /// Records read so far.
    pub deliveries: AtomicU64,
    /// History time of the latest record (ns), or 0.
    pub last_delivery: AtomicI64,
    /// Per (topic, partition): the offset after the latest record read, and the
    /// history time the end of the partition was last reached (0: not since
    /// the latest record).
    positions: Mutex<HashMap<(String, i32), (i64, i64)>>,
    /// Ops delivered so far (records naming an op): the drain ends early once
    /// every acknowledged op is among them.
    pub delivered_ops: Mutex<HashSet<u64>>,
    /// Per (topic, partition): the high watermark last read by [`Self::caught_up`]
    /// and the history time it was first read at that value.
    ends_seen: Mutex<HashMap<(String, i32), (i64, i64)>>,
    /// A client of its own asked for the log end offsets: not the observer's
    /// consumer, whose broker connections hold a long-polling fetch that a
    /// broker answers before any later request on the same connection (a
    /// query behind it waited up to `fetch.wait.max.ms`, 500 ms, each: 2 s of
    /// every drain for four partitions).
    consumer: Option<Arc<BaseConsumer>>,
    /// The partitions it reads.
    topics: Vec<(String, i32)>,
    /// History time since which [`Self::caught_up`] has found the observer
    /// behind records the broker holds (0: not behind): with no record read
    /// for [`STALL`] since, the observer's consumer is taken to be stuck and
    /// replaced by a new one at its positions.
    behind_since: AtomicI64,
    /// How many times a stuck consumer was replaced.
    pub reassigned: AtomicU64,
    /// What the record mapping could not read.
    mapping_problems: Mutex<MappingProblems>,
    /// Per record with a producer timestamp (`CreateTime`), ms from it to the
    /// observer reading the record (the first [`TRANSIT_SAMPLES`]).
    transit_ms: Mutex<Vec<f64>>,
}

/// How many records' transit times the observer keeps.
const TRANSIT_SAMPLES: usize = 1_000_000;

pub use record::results::Transit;

/// How long the observer may read nothing while the broker holds records
/// it has not read before its consumer is replaced by a new one. librdkafka's
/// consumer can stay stuck after a leader change (a broker paused past its
/// session timeout is fenced, its partitions leaderless, then led again at a
/// new epoch): measured, it read nothing for the whole 60 s drain after a
/// 12 s `kafka-pause`, while a new client read every record
/// (confluentinc/librdkafka#4492, #2625 describe the same).
pub const STALL: Duration = Duration::from_secs(5);

impl ObserverStats {
    /// The transit times of the records read so far (`None` before any record
    /// with a producer timestamp).
    pub fn transit(&self) -> Option<Transit> {
        let mut v = self.transit_ms.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Some(Transit {
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            records: v.len(),
        })
    }

    /// Notes the transit time of a record with producer timestamp `created_ms`.
    fn note_transit(&self, created_ms: i64) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0);
        let mut v = self.transit_ms.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() < TRANSIT_SAMPLES {
            // The timestamp has ms resolution: never below zero.
            v.push((now_ms - created_ms as f64).max(0.0));
        }
    }

    /// One warning per mapped field some record lacked: how many records, and
    /// the first of them (empty under the exec contract's reading).
    pub fn mapping_warnings(&self) -> Vec<String> {
        self.mapping_problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .warnings()
    }

    /// Whether the observer has read every partition to its end as the broker
    /// has it now (`now`: history time). A partition is read to its end when
    /// the observer recorded the record before its high watermark; or when it
    /// reached the end of the partition (after its latest record) at or after
    /// the moment this watermark was first seen here. Otherwise, when it
    /// reached the end only before the watermark moved, what lies between its
    /// latest record and the watermark is read by a probe of its own: markers
    /// of transactions and aborted records only (never to be delivered) mean
    /// the end; a record means the observer is behind. (How long the
    /// watermark stays still says nothing: an observer whose fetches stalled
    /// after a paused broker sat at its old end while the broker held records
    /// it had acknowledged.) `Err` says which partition is behind, or why it
    /// cannot be told.
    pub async fn caught_up(&self, now: i64) -> Result<(), String> {
        let Some(consumer) = self.consumer.clone() else {
            return Ok(());
        };
        let topics = self.topics.clone();
        let reader = consumer.clone();
        let ends = tokio::task::spawn_blocking(move || {
            let mut ends = Vec::new();
            for (topic, partitions) in &topics {
                for p in 0..*partitions {
                    let (_, high) = reader
                        .fetch_watermarks(topic, p, Duration::from_secs(2))
                        .map_err(|e| format!("reading the end of {topic}/{p}: {e}"))?;
                    ends.push(((topic.clone(), p), high));
                }
            }
            Ok::<_, String>(ends)
        })
        .await
        .map_err(|e| format!("reading the log ends: {e}"))??;
        let mut to_probe = Vec::new();
        let mut behind = None;
        {
            let positions = self.positions.lock().unwrap_or_else(|e| e.into_inner());
            let mut seen = self.ends_seen.lock().unwrap_or_else(|e| e.into_inner());
            for (tp, high) in ends {
                let first_seen = match seen.get(&tp) {
                    Some(&(h, t)) if h == high => t,
                    _ => {
                        seen.insert(tp.clone(), (high, now));
                        now
                    }
                };
                let (next, eof_at) = positions.get(&tp).copied().unwrap_or((0, 0));
                match read_to_end(next, eof_at, high, first_seen) {
                    End::Reached => {}
                    End::Unsure => to_probe.push((tp, next, high)),
                    End::Behind => {
                        behind.get_or_insert_with(|| {
                            format!(
                                "the observer has read {}/{} up to offset {next}, the log ends at {high}",
                                tp.0, tp.1
                            )
                        });
                    }
                }
            }
        }
        if let Some(behind) = behind {
            self.note_behind(now, true);
            return Err(behind);
        }
        if to_probe.is_empty() {
            self.note_behind(now, false);
            return Ok(());
        }
        let verdict = tokio::task::spawn_blocking(move || {
            for ((topic, p), next, high) in to_probe {
                if let Some(offset) = record_in_gap(&consumer, &topic, p, next, high)? {
                    return Err(format!(
                        "the observer has read {topic}/{p} up to offset {next}, and the partition holds a record at {offset} (its log ends at {high})"
                    ));
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| format!("reading the log ends: {e}"))?;
        self.note_behind(now, verdict.is_err());
        verdict
    }

    /// Notes whether the observer was found behind at `now` (history time).
    fn note_behind(&self, now: i64, behind: bool) {
        if !behind {
            self.behind_since.store(0, Ordering::Relaxed);
        } else if self.behind_since.load(Ordering::Relaxed) == 0 {
            self.behind_since.store(now, Ordering::Relaxed);
        }
    }

    /// Whether the consumer looks stuck at `now`: behind records the broker
    /// holds, and nothing read, for [`STALL`].
    fn stuck(&self, now: i64) -> bool {
        let stall = STALL.as_nanos() as i64;
        let since = self.behind_since.load(Ordering::Relaxed);
        since > 0 && now - since >= stall && now - self.last_delivery.load(Ordering::Relaxed) >= stall
    }

    /// Where a new consumer starts each partition: after its latest record read,
    /// or from the beginning when none was read (never a record twice, never
    /// one skipped).
    fn resume_points(&self) -> Result<TopicPartitionList> {
        let positions = self.positions.lock().unwrap_or_else(|e| e.into_inner());
        let mut at = TopicPartitionList::new();
        for (topic, partitions) in &self.topics {
            for p in 0..*partitions {
                let offset = match positions.get(&(topic.clone(), p)) {
                    Some(&(next, _)) if next > 0 => Offset::Offset(next),
                    _ => Offset::Beginning,
                };
                at.add_partition_offset(topic, p, offset)?;
            }
        }
        Ok(at)
    }
}

/// What [`read_to_end`] tells of one partition.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Read to its end.
    Reached,
    /// Behind: it has not reached the end since its latest record.
    Behind,
    /// At an end it reached before the watermark last moved: the gap up to
    /// the watermark must be read to tell ([`record_in_gap`]).
    Unsure,
}

/// Where the observer stands in a partition (see [`ObserverStats::caught_up`]):
/// `next` is the offset after the latest record recorded, `eof_at` the time
/// the end was reached after it (0: not since), `high` the high watermark,
/// first read at `first_seen`; times in history ns.
fn read_to_end(next: i64, eof_at: i64, high: i64, first_seen: i64) -> End {
    if next >= high || (eof_at > 0 && eof_at >= first_seen) {
        End::Reached
    } else if eof_at == 0 {
        End::Behind
    } else {
        End::Unsure
    }
}

/// The offset of a record in `[from, to)` of `topic`/`p` as a
/// `read_committed` reader sees it, or `None` when that range holds only
/// transaction markers and aborted records: read by `probe` (its own client,
/// assigned there and unassigned after).
fn record_in_gap(probe: &BaseConsumer, topic: &str, p: i32, from: i64, to: i64) -> Result<Option<i64>, String> {
    let mut at = TopicPartitionList::new();
    at.add_partition_offset(topic, p, Offset::Offset(from))
        .and_then(|_| probe.assign(&at))
        .map_err(|e| format!("reading {topic}/{p} from offset {from}: {e}"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let found = loop {
        match probe.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => break Ok((m.offset() < to).then_some(m.offset())),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break Ok(None),
            Some(Err(e)) if std::time::Instant::now() > deadline => {
                break Err(format!("reading {topic}/{p} from offset {from}: {e}"))
            }
            None if std::time::Instant::now() > deadline => {
                break Err(format!("reading {topic}/{p} from offset {from}: no answer within 2 s"))
            }
            _ => {}
        }
    };
    let _ = probe.unassign();
    found
}

/// A running observer; [`Observer::stop`] ends it.
pub struct Observer {
    /// Live counters.
    pub stats: Arc<ObserverStats>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Observer {
    /// Starts consuming every partition of `topics` (name, partition count) from
    /// the beginning at `bootstrap` (the direct listener), reading each record
    /// with `mapping`.
    pub fn start(
        bootstrap: &str,
        topics: &[(String, i32)],
        recorder: Arc<Recorder>,
        mapping: RecordMapping,
    ) -> Result<Observer> {
        let mut consumer = Arc::new(consumer_with(bootstrap, topics, true)?);
        let bootstrap_owned = bootstrap.to_string();
        let ends: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("dualcheck-observer-ends-{}", uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            // The probe of a gap below the watermark (`record_in_gap`) ends at the partition's end.
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .set("socket.nagle.disable", "true")
            .set("reconnect.backoff.max.ms", "1000")
            .set("log_level", "3")
            .create()
            .with_context(|| format!("creating the observer's log-end client at {bootstrap}"))?;
        let stats = Arc::new(ObserverStats {
            consumer: Some(Arc::new(ends)),
            topics: topics.to_vec(),
            ..ObserverStats::default()
        });
        let (stop, mut stopped) = watch::channel(false);
        let s = stats.clone();
        let task = tokio::spawn(async move {
            let mut check = tokio::time::interval(Duration::from_secs(1));
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut renew = false;
            loop {
                if std::mem::take(&mut renew) {
                    // A new consumer at the old one's positions: assigning the
                    // stuck one's partitions again did not move it (measured).
                    let renewed = s
                        .resume_points()
                        .and_then(|at| consumer_at(&bootstrap_owned, &at, true));
                    match renewed {
                        Ok(fresh) => {
                            let stuck = std::mem::replace(&mut consumer, Arc::new(fresh));
                            std::thread::spawn(move || drop(stuck));
                            tracing::warn!(
                                "observer: nothing read for {}s while the broker holds records not yet read: reading on with a new consumer from its positions",
                                STALL.as_secs()
                            );
                        }
                        Err(e) => tracing::warn!("observer: replacing its stuck consumer: {e:#}"),
                    }
                }
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = check.tick() => {
                        let now = recorder.now();
                        if s.stuck(now) {
                            s.reassigned.fetch_add(1, Ordering::Relaxed);
                            s.behind_since.store(now, Ordering::Relaxed);
                            renew = true;
                        }
                    }
                    msg = consumer.recv() => match msg {
                        Ok(m) => {
                            let (event, mapped) = delivery(&m, recorder.now(), &mapping);
                            recorder.record(&event);
                            if let rdkafka::Timestamp::CreateTime(ms) = m.timestamp() {
                                s.note_transit(ms);
                            }
                            if !mapped.problems.is_empty() {
                                let first = s.mapping_problems.lock().unwrap_or_else(|e| e.into_inner()).note(&m, &mapped);
                                for w in first {
                                    tracing::warn!("observer: {w}");
                                }
                            }
                            if let HistoryLine::Deliver { op: Some(op), .. } = &event {
                                s.delivered_ops.lock().unwrap_or_else(|e| e.into_inner()).insert(*op);
                            }
                            s.positions
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert((m.topic().to_string(), m.partition()), (m.offset() + 1, 0));
                            s.deliveries.fetch_add(1, Ordering::Relaxed);
                            s.last_delivery.store(recorder.now(), Ordering::Relaxed);
                        }
                        Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                            let now = recorder.now();
                            // The error names no topic: only a single topic's end can be told.
                            if let [(topic, _)] = s.topics.as_slice() {
                                let mut positions = s.positions.lock().unwrap_or_else(|e| e.into_inner());
                                positions.entry((topic.clone(), p)).or_insert((0, 0)).1 = now;
                            }
                        }
                        Err(e) => {
                            tracing::debug!("observer: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    },
                }
            }
            // Nothing is recorded any more. Closing the consumer takes
            // librdkafka ~200 ms (measured: the whole of `stop` was 201 ms),
            // which every run's check waited for: it closes on a thread of its own.
            std::thread::spawn(move || drop(consumer));
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
    consumer_with(bootstrap, topics, false)
}

/// [`consumer`], optionally reporting the end of each partition (`PartitionEOF`).
fn consumer_with(bootstrap: &str, topics: &[(String, i32)], eof: bool) -> Result<StreamConsumer> {
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
    consumer_at(bootstrap, &assignment, eof)
}

/// A `read_committed` consumer at `bootstrap` assigned `assignment` (each
/// partition from its offset), optionally reporting partition ends.
fn consumer_at(bootstrap: &str, assignment: &TopicPartitionList, eof: bool) -> Result<StreamConsumer> {
    let group = format!("dualcheck-observer-{}", uuid::Uuid::new_v4());
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        // The observer must add no latency of its own: no Nagle delay on its
        // fetch requests.
        .set("socket.nagle.disable", "true")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("reconnect.backoff.max.ms", "1000")
        .set("log_level", "3")
        .set("enable.partition.eof", if eof { "true" } else { "false" })
        .create()
        .with_context(|| format!("creating the observer's Kafka consumer at {bootstrap}"))?;
    consumer
        .assign(assignment)
        .with_context(|| format!("observer assigning {assignment:?}"))?;
    Ok(consumer)
}

/// Turns one Kafka record into a `deliver` event, reading it with `mapping`
/// (the exec contract's `op`, `seq`, `event` where it maps nothing). A record
/// whose op cannot be read (not JSON, or another producer's) is still
/// recorded, with `op: null`: the checker counts it as unexpected. Also
/// returns what the mapping could not read.
fn delivery<M: Message>(m: &M, time: i64, mapping: &RecordMapping) -> (HistoryLine, Mapped) {
    let headers: Vec<(String, Option<Vec<u8>>)> = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    let mapped = mapping.read(m.payload(), &headers);
    let event = mapped
        .event
        .clone()
        .unwrap_or_else(|| format!("no-event-id:{}/{}/{}", m.topic(), m.partition(), m.offset()));
    let key = if mapping.key_is_business_key {
        m.key().map(|k| String::from_utf8_lossy(k).into_owned())
    } else {
        None
    };
    let line = HistoryLine::Deliver {
        op: mapped.op,
        event,
        key,
        seq: mapped.seq,
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        time,
        index: mapped.index,
    };
    (line, mapped)
}

/// Per mapped field the mapping could not read: how many records, and the first.
#[derive(Default)]
struct MappingProblems {
    by_flag: std::collections::BTreeMap<&'static str, (u64, String)>,
}

impl MappingProblems {
    /// Notes a record's problems; returns the warnings seen for the first time.
    fn note<M: Message>(&mut self, m: &M, mapped: &Mapped) -> Vec<String> {
        let mut first = Vec::new();
        for (flag, loc, why) in &mapped.problems {
            let entry = self.by_flag.entry(flag).or_insert_with(|| {
                let value: String = m
                    .payload()
                    .map(|p| String::from_utf8_lossy(p).chars().take(200).collect())
                    .unwrap_or_else(|| "(no value)".into());
                let consequence = match *flag {
                    "--record-op" => "recorded as deliveries with op null (counted unexpected)",
                    "--record-seq" => "their seq is taken from the op's invoke",
                    "--record-index" => "they are read as index 0, the op's first event",
                    _ => "each got a per-record event id",
                };
                let text = format!(
                    "{flag} {loc}: {why} in record {}/{}@{} (value {value}); {consequence}",
                    m.topic(),
                    m.partition(),
                    m.offset()
                );
                first.push(text.clone());
                (0, text)
            });
            entry.0 += 1;
        }
        first
    }

    fn warnings(&self) -> Vec<String> {
        self.by_flag
            .values()
            .map(|(n, first)| format!("{n} record(s) the mapping could not read; the first: {first}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_read_to_its_end_only_when_nothing_below_its_watermark_can_still_come() {
        let s = 1_000_000_000i64;
        // Recorded the record before the watermark.
        assert_eq!(read_to_end(10, 0, 10, 5 * s), End::Reached);
        assert_eq!(read_to_end(0, 0, 0, 5 * s), End::Reached, "an empty partition");
        // Behind and not at the end (still reconnecting after a broker kill): the drain waits.
        assert_eq!(read_to_end(8, 0, 10, 5 * s), End::Behind);
        // At the end, after this watermark was first seen: the gap is markers.
        assert_eq!(read_to_end(8, 6 * s, 10, 5 * s), End::Reached);
        // At an end reached before the watermark moved, however long ago: the
        // gap must be read (a stalled observer looks just the same).
        assert_eq!(read_to_end(8, 4 * s, 10, 5 * s), End::Unsure);
    }
}
