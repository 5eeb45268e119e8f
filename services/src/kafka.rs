//! Local Apache Kafka 4.x in KRaft mode from the jars `ci/setup` collected:
//! one combined broker+controller, or three of them (static controller quorum)
//! for leader-failover faults.
//!
//! Each node has three listeners on 127.0.0.1:
//! - `PROXIED`: the broker binds a private port, but *advertises the Toxiproxy
//!   proxy's port* (`kafka-N`), so every client that bootstraps through the
//!   proxy keeps going through it after the metadata round trip;
//! - `DIRECT`: advertised at its own port, for the observer and replication
//!   between brokers (faults hit clients, not the cluster's internals);
//! - `CONTROLLER`: the KRaft quorum.

use super::process::{run_to_completion, tail, ManagedProcess, ProcessSpec};
use super::ready::{fatal, wait_until_ready};
use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Ports of one Kafka node.
#[derive(Clone, Copy, Debug)]
pub struct NodePorts {
    /// Port the PROXIED listener binds (Toxiproxy's upstream).
    pub proxied_bind: u16,
    /// Toxiproxy's listen port for this node (advertised on PROXIED).
    pub proxy: u16,
    /// DIRECT listener (observer, inter-broker).
    pub direct: u16,
    /// CONTROLLER listener.
    pub controller: u16,
}

/// A Kafka cluster of local processes owned by the harness.
pub struct LocalKafka {
    /// One process per node; index = node id.
    pub nodes: Vec<ManagedProcess>,
    /// Ports per node.
    pub ports: Vec<NodePorts>,
    /// The class-data archive node 0 writes when it exits cleanly, while
    /// none is kept yet ([`class_archive`]).
    archiving: Option<ArchiveInProgress>,
}

/// A class-data archive a node writes at its exit (`-XX:ArchiveClassesAtExit`).
struct ArchiveInProgress {
    /// Where the JVM writes it (this process's own name).
    written: PathBuf,
    /// Where later runs find it.
    kept: PathBuf,
}

/// How long a broker writing the class-data archive may take to stop cleanly
/// (SIGTERM: its controlled shutdown, then the archive) before it is killed.
const ARCHIVE_STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The Java executable: `$JAVA_HOME/bin/java` if set, else `java` on PATH.
pub fn java() -> PathBuf {
    match std::env::var_os("JAVA_HOME") {
        Some(home) => Path::new(&home).join("bin/java"),
        None => PathBuf::from("java"),
    }
}

/// A fresh random KRaft cluster id (16 random bytes, base64url without padding).
pub fn random_cluster_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    Ok(out)
}

/// Node `id`'s `server.properties`. Beside listeners and replication:
/// `log.cleaner.dedupe.buffer.size` 16 MiB instead of 128 — the log cleaner
/// allocates it on the heap as the broker starts, which cost a full
/// collection (~100 ms) on every start; the clusters here compact only
/// small internal topics.
fn server_properties(id: usize, all: &[NodePorts], dir: &Path) -> String {
    let p = all[id];
    let n = all.len();
    let voters: Vec<String> = all
        .iter()
        .enumerate()
        .map(|(i, q)| format!("{i}@127.0.0.1:{}", q.controller))
        .collect();
    let rf = n.min(3);
    let min_isr = if n >= 3 { 2 } else { 1 };
    let mut s = String::new();
    let _ = write!(
        s,
        "process.roles=broker,controller\n\
         node.id={id}\n\
         controller.quorum.voters={voters}\n\
         listeners=PROXIED://127.0.0.1:{pb},DIRECT://127.0.0.1:{d},CONTROLLER://127.0.0.1:{c}\n\
         advertised.listeners=PROXIED://127.0.0.1:{px},DIRECT://127.0.0.1:{d}\n\
         listener.security.protocol.map=PROXIED:PLAINTEXT,DIRECT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
         inter.broker.listener.name=DIRECT\n\
         controller.listener.names=CONTROLLER\n\
         log.dirs={logs}\n\
         num.partitions=1\n\
         default.replication.factor={rf}\n\
         min.insync.replicas={min_isr}\n\
         offsets.topic.replication.factor={rf}\n\
         offsets.topic.num.partitions=10\n\
         transaction.state.log.replication.factor={rf}\n\
         transaction.state.log.min.isr={min_isr}\n\
         transaction.state.log.num.partitions=10\n\
         group.initial.rebalance.delay.ms=0\n\
         log.cleaner.dedupe.buffer.size=16777216\n\
         unclean.leader.election.enable=false\n\
         auto.create.topics.enable=true\n\
         share.coordinator.state.topic.replication.factor={rf}\n\
         share.coordinator.state.topic.min.isr={min_isr}\n",
        voters = voters.join(","),
        pb = p.proxied_bind,
        px = p.proxy,
        d = p.direct,
        c = p.controller,
        logs = dir.join("data").display(),
    );
    if n >= 3 {
        // A cluster fences a dead broker after 3 s, not 9: leadership moves
        // within a fault's window (`kafka-leader`), as in a cluster tuned for
        // fast failover.
        s.push_str("broker.session.timeout.ms=3000\nbroker.heartbeat.interval.ms=500\n");
    }
    s
}

const LOG4J2: &str = "status = warn\n\
appender.out.type = Console\n\
appender.out.name = OUT\n\
appender.out.layout.type = PatternLayout\n\
appender.out.layout.pattern = [%d] %p %m (%c)%n\n\
rootLogger.level = INFO\n\
rootLogger.appenderRef.out.ref = OUT\n\
logger.config.name = org.apache.kafka.common.config.AbstractConfig\n\
logger.config.level = WARN\n";

/// Bootstrap list of the DIRECT listeners.
pub fn direct_bootstrap(ports: &[NodePorts]) -> String {
    ports
        .iter()
        .map(|p| format!("127.0.0.1:{}", p.direct))
        .collect::<Vec<_>>()
        .join(",")
}

/// Bootstrap list through the proxies.
pub fn proxied_bootstrap(ports: &[NodePorts]) -> String {
    ports
        .iter()
        .map(|p| format!("127.0.0.1:{}", p.proxy))
        .collect::<Vec<_>>()
        .join(",")
}

impl LocalKafka {
    /// Writes configs under `dir/node-N`, formats storage and starts every node
    /// (the proxies must exist or follow soon; readiness is checked on DIRECT).
    pub async fn start(dir: &Path, libs: &Path, ports: Vec<NodePorts>, timeout: Duration) -> Result<Self> {
        let classpath = format!("{}/*", libs.display());
        for id in 0..ports.len() {
            let node_dir = dir.join(format!("node-{id}"));
            std::fs::create_dir_all(&node_dir).with_context(|| format!("creating {}", node_dir.display()))?;
            std::fs::write(
                node_dir.join("server.properties"),
                server_properties(id, &ports, &node_dir),
            )?;
            std::fs::write(node_dir.join("log4j2.properties"), LOG4J2)?;
        }
        let template = storage_template(libs, ports.len());
        let copied = template
            .as_deref()
            .is_some_and(|t| copy_storage(t, dir, ports.len()).is_ok());
        if !copied {
            // Whatever a failed copy left would make the format refuse the directory.
            for id in 0..ports.len() {
                let _ = std::fs::remove_dir_all(dir.join(format!("node-{id}")).join("data"));
            }
            format_storage(dir, &classpath, ports.len()).await?;
            if let Some(t) = &template {
                // Later runs copy it (a failure only costs them the format).
                if let Err(e) = save_storage(dir, t, ports.len()) {
                    tracing::debug!("keeping the formatted Kafka storage in {}: {e:#}", t.display());
                }
            }
        }
        let archive = class_archive(libs);
        let archiving = archive.as_ref().filter(|a| !a.is_file()).map(|kept| ArchiveInProgress {
            written: kept.with_extension(format!("jsa.{}", std::process::id())),
            kept: kept.clone(),
        });
        if let Some(a) = &archiving {
            if let Some(parent) = a.kept.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
        }
        let mut nodes = Vec::new();
        for id in 0..ports.len() {
            let node_dir = dir.join(format!("node-{id}"));
            let class_data = match (&archive, &archiving) {
                (_, Some(a)) if id == 0 => Some(format!("-XX:ArchiveClassesAtExit={}", a.written.display())),
                (Some(kept), None) => Some(format!("-XX:SharedArchiveFile={}", kept.display())),
                _ => None,
            };
            let spec = ProcessSpec::new(
                &format!("kafka-{id}"),
                java(),
                node_dir.join(record::run_dir::KAFKA_LOG),
            )
            // The start-up is on every run's critical path. A 96 MiB first
            // metaspace threshold spares it the two full collections of the
            // metaspace crossing its default 21 MiB mark (with the smaller
            // dedupe buffer below: 5 young pauses instead of 4 young and 3
            // full, 75-150 ms stopped instead of 220-400, `-Xlog:gc`).
            .args([
                "-Xmx512m",
                "-Xms128m",
                "-XX:MetaspaceSize=96m",
                "-XX:+UseSerialGC",
                "-Djava.awt.headless=true",
            ])
            .args(class_data)
            .args([format!(
                "-Dlog4j2.configurationFile={}",
                node_dir.join("log4j2.properties").display()
            )])
            .args(["-cp", &classpath, "kafka.Kafka"])
            .args([node_dir.join("server.properties")]);
            nodes.push(ManagedProcess::start(spec)?);
        }
        let kafka = LocalKafka {
            nodes,
            ports,
            archiving,
        };
        kafka.wait_ready(timeout).await?;
        Ok(kafka)
    }

    /// Ends every node (SIGKILL, waiting until gone). A node writing the
    /// class-data archive is first asked to stop (SIGTERM, up to
    /// [`ARCHIVE_STOP_TIMEOUT`]): the JVM writes the archive only at a clean
    /// exit; the archive is kept when it was written.
    pub fn kill_all(&self) -> Result<()> {
        if let (Some(a), Some(node)) = (&self.archiving, self.nodes.first()) {
            if node.terminate(ARCHIVE_STOP_TIMEOUT).unwrap_or(false)
                && std::fs::metadata(&a.written).is_ok_and(|m| m.len() > 0)
            {
                if let Err(e) = std::fs::rename(&a.written, &a.kept) {
                    tracing::debug!("keeping Kafka's class-data archive as {}: {e}", a.kept.display());
                }
            }
            let _ = std::fs::remove_file(&a.written);
        }
        let mut first_err = None;
        for p in &self.nodes {
            if let Err(e) = p.kill() {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
    /// Waits until the cluster's metadata (read on DIRECT) lists every node.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.wait_brokers(&all, timeout).await
    }

    /// Waits until each broker of `ids` answers a metadata request itself,
    /// listing itself (checking each node's process is alive).
    ///
    /// Asked of the broker itself, not of the cluster: after a SIGKILL the
    /// other brokers go on listing the dead broker until its session times
    /// out (`broker.session.timeout.ms`, 9 s), and its new process cannot
    /// register before then; a broker only serves requests once it is
    /// registered and unfenced, and lists itself only then. So a restart is
    /// healed when the broker is back, not when the cluster has not yet
    /// noticed it was gone.
    pub async fn wait_brokers(&self, ids: &[usize], timeout: Duration) -> Result<()> {
        let logs = || {
            let logs: Vec<String> = self.nodes.iter().map(|p| p.log_path().display().to_string()).collect();
            format!("read {}", logs.join(", "))
        };
        // On every run's critical path: ask again soon.
        wait_until_ready("Kafka", timeout, Duration::from_millis(25), logs, || async {
            for p in &self.nodes {
                if p.pid().is_some() {
                    p.check_alive()
                        .with_context(|| format!("last lines:\n{}", tail(p.log_path(), 15)))
                        .map_err(fatal)?;
                }
            }
            for &id in ids {
                let own = self
                    .ports
                    .get(id)
                    .map(|p| direct_bootstrap(std::slice::from_ref(p)))
                    .with_context(|| format!("no Kafka node {id}"))
                    .map_err(fatal)?;
                let seen = tokio::task::spawn_blocking(move || broker_ids(&own, Duration::from_secs(2)))
                    .await
                    .map_err(fatal)??;
                brokers_listed(&[id], &seen).with_context(|| format!("broker {id} about itself"))?;
            }
            Ok(())
        })
        .await
    }

    /// SIGKILLs node `id`, restarts it on the same data and waits until it is back in the metadata.
    pub async fn kill_restart(&self, id: usize, timeout: Duration) -> Result<()> {
        let node = self.nodes.get(id).with_context(|| format!("no Kafka node {id}"))?;
        node.kill()?;
        node.restart()?;
        self.wait_brokers(&[id], timeout).await
    }
}

/// Broker ids in the metadata of the cluster at `bootstrap` (blocking).
pub fn broker_ids(bootstrap: &str, timeout: Duration) -> Result<Vec<i32>> {
    Ok(metadata(bootstrap, timeout)?.brokers().iter().map(|b| b.id()).collect())
}

/// The whole cluster's metadata at `bootstrap`, from a client of its own (blocking).
fn metadata(bootstrap: &str, timeout: Duration) -> Result<rdkafka::metadata::Metadata> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("socket.timeout.ms", "2000")
        .set("log_level", "0")
        .create()
        .context("creating a Kafka metadata client")?;
    consumer
        .fetch_metadata(None, timeout)
        .with_context(|| format!("fetching Kafka metadata from {bootstrap}"))
}

/// Names of the topics of the cluster at `bootstrap` (blocking).
pub fn topic_names(bootstrap: &str, timeout: Duration) -> Result<Vec<String>> {
    Ok(metadata(bootstrap, timeout)?
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .collect())
}

/// Deletes `topic` (a topic that does not exist is fine).
pub async fn delete_topic(bootstrap: &str, topic: &str) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("creating a Kafka admin client")?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let res = admin
        .delete_topics(&[topic], &opts)
        .await
        .with_context(|| format!("deleting topic {topic} at {bootstrap}"))?;
    for r in res {
        if let Err((name, code)) = r {
            if code != rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition {
                bail!("deleting topic {name}: {code}");
            }
        }
    }
    Ok(())
}

/// Creates `topic` with `partitions` partitions and replication factor `rf`
/// (an existing topic is fine) and waits until its leaders are known.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32, rf: i32) -> Result<()> {
    create_topic_with(bootstrap, topic, partitions, rf, false).await
}

/// [`create_topic`]; with `one_leader`, every partition's replicas are
/// brokers `0..rf` in that order, so broker 0 leads them all at first and
/// leadership moves for all of them together.
pub async fn create_topic_with(bootstrap: &str, topic: &str, partitions: i32, rf: i32, one_leader: bool) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("creating a Kafka admin client")?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let replicas: Vec<i32> = (0..rf).collect();
    let assignment: Vec<&[i32]> = (0..partitions).map(|_| replicas.as_slice()).collect();
    let new_topic = if one_leader {
        NewTopic::new(topic, partitions, TopicReplication::Variable(&assignment))
    } else {
        NewTopic::new(topic, partitions, TopicReplication::Fixed(rf))
    };
    let res = admin
        .create_topics(&[new_topic], &opts)
        .await
        .with_context(|| format!("creating topic {topic} at {bootstrap}"))?;
    for r in res {
        if let Err((name, code)) = r {
            if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                bail!("creating topic {name}: {code}");
            }
        }
    }
    // A broker may not know the new topic yet (UNKNOWN_TOPIC_OR_PART): ask again.
    let what = format!("topic {topic}: partition leaders");
    wait_until_ready(
        &what,
        Duration::from_secs(20),
        Duration::from_millis(20),
        String::new,
        || async {
            let (b, t) = (bootstrap.to_string(), topic.to_string());
            let leaders = tokio::task::spawn_blocking(move || partition_leaders(&b, &t))
                .await
                .map_err(fatal)??;
            if leaders.iter().all(|l| *l >= 0) {
                Ok(())
            } else {
                bail!("leader of each partition: {leaders:?} (-1: none)")
            }
        },
    )
    .await
}

/// Whether the metadata's brokers `seen` include every node of `ids`; if not,
/// the error says which brokers it lists (a readiness probe's "not yet").
pub fn brokers_listed(ids: &[usize], seen: &[i32]) -> Result<()> {
    if ids.iter().all(|id| seen.contains(&(*id as i32))) {
        Ok(())
    } else {
        bail!("brokers in metadata: {seen:?}")
    }
}

/// Leader broker id of each partition of `topic` (-1 = none), from metadata (blocking).
pub fn partition_leaders(bootstrap: &str, topic: &str) -> Result<Vec<i32>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "0")
        .create()
        .context("creating a Kafka metadata client")?;
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .with_context(|| format!("fetching metadata of {topic} from {bootstrap}"))?;
    let t = md
        .topics()
        .first()
        .with_context(|| format!("no metadata for {topic}"))?;
    if let Some(e) = t.error() {
        bail!("metadata of {topic}: {:?}", e);
    }
    Ok(t.partitions().iter().map(|p| p.leader()).collect())
}

/// Produces one record (acks=all, idempotent) and waits up to `timeout` for the ack;
/// returns (partition, offset).
pub async fn produce_one(
    bootstrap: &str,
    topic: &str,
    key: &str,
    value: &str,
    timeout: Duration,
) -> Result<(i32, i64)> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", timeout.as_millis().max(1).to_string())
        .set("log_level", "0")
        .create()
        .context("creating a Kafka producer")?;
    let delivery = producer
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            rdkafka::util::Timeout::After(timeout),
        )
        .await
        .map_err(|(e, _)| anyhow::anyhow!("producing to {topic} at {bootstrap}: {e}"))?;
    Ok((delivery.partition, delivery.offset))
}

/// Reads `topic` from the beginning (read_committed) until `want` records were
/// seen or `timeout` passed; returns (key, value) pairs in log order per partition.
pub async fn consume(bootstrap: &str, topic: &str, want: usize, timeout: Duration) -> Result<Vec<(String, String)>> {
    use rdkafka::consumer::StreamConsumer;
    use rdkafka::Message;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("dualcheck-read-{}", random_cluster_id()?))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("log_level", "0")
        .create()
        .context("creating a Kafka consumer")?;
    consumer
        .subscribe(&[topic])
        .with_context(|| format!("subscribing to {topic}"))?;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while out.len() < want {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Err(_) => break,
            Ok(Err(e)) => tracing::debug!("consume {topic}: {e}"),
            Ok(Ok(m)) => {
                let k = m
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default();
                let v = m
                    .payload()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                out.push((k, v));
            }
        }
    }
    Ok(out)
}

/// Formats every node's storage (`kafka.tools.StorageTool format`, a JVM
/// each, side by side) under `dir/node-N/data`, with one new cluster id.
async fn format_storage(dir: &Path, classpath: &str, nodes: usize) -> Result<()> {
    let cluster_id = random_cluster_id()?;
    let mut formats = Vec::new();
    for id in 0..nodes {
        let node_dir = dir.join(format!("node-{id}"));
        let spec = ProcessSpec::new(
            &format!("kafka-{id} storage format"),
            java(),
            node_dir.join(record::run_dir::KAFKA_FORMAT_LOG),
        )
        .args([
            "-Xmx256m",
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            "-cp",
            classpath,
        ])
        .args([
            "kafka.tools.StorageTool".as_ref(),
            "format".as_ref(),
            // `--cluster-id=ID`, not `-t ID`: a base64url id may start with
            // `-`, which argparse would take for an option (a 1-in-64 flake).
            format!("--cluster-id={cluster_id}").as_ref(),
            "-c".as_ref(),
            node_dir.join("server.properties").as_os_str(),
        ]);
        formats.push(tokio::task::spawn_blocking(move || {
            run_to_completion(&spec, Duration::from_secs(60))
        }));
    }
    for f in formats {
        f.await?.context(
            "formatting Kafka storage (kafka.tools.StorageTool); is the classpath complete? run `bash ci/setup`",
        )?;
    }
    Ok(())
}

/// Where a formatted, never started storage of an `nodes`-node cluster of the
/// Kafka in `libs` is kept, so that a run copies it instead of running the
/// format tool (a JVM start per node, ~2 s): `$DUALCHECK_CACHE/kafka-storage/
/// <hash of the jar names>/<nodes>`. What the format writes (`meta.properties`:
/// cluster id, node id, directory id; the bootstrap metadata checkpoint)
/// depends on neither ports nor paths: the voters are in `server.properties`.
/// `None` when the jars cannot be listed.
fn storage_template(libs: &Path, nodes: usize) -> Option<PathBuf> {
    Some(
        super::cache::cache_dir()
            .join("kafka-storage")
            .join(format!("{:016x}", jars_hash(libs, &mut Default::default())?))
            .join(nodes.to_string()),
    )
}

/// A hash of the names of the jars in `libs` (which Kafka it is), fed into `h`;
/// `None` when they cannot be listed.
fn jars_hash(libs: &Path, h: &mut std::collections::hash_map::DefaultHasher) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut jars: Vec<String> = std::fs::read_dir(libs)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".jar"))
        .collect();
    jars.sort();
    jars.hash(h);
    Some(h.finish())
}

/// Where the class-data archive of the Kafka in `libs` on this JVM is kept:
/// the classes a broker loads, parsed and verified once and mapped into every
/// later broker's JVM (AppCDS), which shortens a broker's start (the
/// figures in docs/performance.md).
/// `$DUALCHECK_CACHE/kafka-cds/<hash of the jar names and the java binary>.jsa`;
/// the first broker started without one writes it at its clean exit. A JVM
/// that cannot use an archive (another build) starts without it. `None` when
/// the jars cannot be listed, or `DUALCHECK_KAFKA_CDS=off`.
fn class_archive(libs: &Path) -> Option<PathBuf> {
    use std::hash::Hash;
    if std::env::var("DUALCHECK_KAFKA_CDS").is_ok_and(|v| v == "off") {
        return None;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    // The JVM too: its binary's path, size and time (an archive is for one build).
    let java = which_java();
    java.hash(&mut h);
    if let Ok(m) = std::fs::metadata(&java) {
        m.len().hash(&mut h);
        m.modified().ok().hash(&mut h);
    }
    let key = jars_hash(libs, &mut h)?;
    Some(
        super::cache::cache_dir()
            .join("kafka-cds")
            .join(format!("{key:016x}.jsa")),
    )
}

/// The java binary [`java`] runs, resolved on PATH and through links.
fn which_java() -> PathBuf {
    let java = java();
    let found = if java.components().count() > 1 {
        Some(java.clone())
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(&java))
                .find(|p| p.is_file())
        })
    };
    found.and_then(|p| p.canonicalize().ok()).unwrap_or(java)
}

/// Copies a kept storage (`template/node-N/data`) into the run's nodes.
fn copy_storage(template: &Path, dir: &Path, nodes: usize) -> Result<()> {
    if !template.join("complete").exists() {
        bail!("no formatted storage kept in {}", template.display());
    }
    for id in 0..nodes {
        let node = format!("node-{id}");
        super::cache::copy_tree(&template.join(&node).join("data"), &dir.join(&node).join("data"), None)?;
    }
    Ok(())
}

/// Keeps the run's freshly formatted storage as the template.
fn save_storage(dir: &Path, template: &Path, nodes: usize) -> Result<()> {
    let parts: Vec<(PathBuf, PathBuf)> = (0..nodes)
        .map(|id| {
            let data = Path::new(&format!("node-{id}")).join("data");
            (dir.join(&data), data)
        })
        .collect();
    super::cache::keep_template(template, &parts)
}
