//! `debezium`: the real Debezium Postgres connector with the outbox event
//! router (`io.debezium.transforms.outbox.EventRouter`) in Kafka Connect
//! standalone. The service inserts the order and a Debezium-shaped outbox row
//! (`id`, `aggregatetype` = the topic, `aggregateid` = the key, `type`,
//! `payload` = the event JSON) and deletes the row in the same transaction; the
//! connector reads the insert from the WAL and the router publishes the payload,
//! routed by aggregate type and keyed by aggregate id.
//!
//! The relay process owns Kafka Connect: it starts the JVM as its child,
//! restarts it if it dies and restarts a failed task, and reports the backlog.
//! Killing the relay process (`relay-kill`) kills Connect with it. Connect's
//! links to Postgres and Kafka are the proxied ones the service uses.

use crate::patterns::cdc::Source;
use crate::runtime::business::{text_array, Cell, Statement, Step, TableRows};
use crate::runtime::db::timed;
use crate::runtime::kafka::Envelope;
use crate::{AppContext, Background, Backlog, Op, OpAnswer, Pattern, PatternInfo, RelayKind};
use anyhow::{anyhow, bail, Context, Result};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Registry entry.
pub const INFO: PatternInfo = PatternInfo {
    scaling: crate::Scaling::OneRelay("one connector task reads the replication slot"),
    relay: RelayKind::Process,
    streamed_tables: &["debezium_outbox"],
    outbox_table: Some("debezium_outbox"),
    latency_reference: true,
    // Debezium waits up to poll.interval.ms (500 ms by default) for a batch
    // to fill before handing it to Connect: at a low rate every event waits
    // the whole interval. Tuned: 5 ms polls, smaller batches, no linger.
    tuned: &[
        ("DUALCHECK_DEBEZIUM_POLL_MS", "5"),
        ("DUALCHECK_DEBEZIUM_MAX_BATCH", "512"),
        ("DUALCHECK_DEBEZIUM_MAX_QUEUE", "4096"),
        ("DUALCHECK_DEBEZIUM_LINGER_MS", "0"),
    ],
    ..PatternInfo::new(
        "debezium",
        "real Debezium Postgres connector + outbox event router in Kafka Connect standalone (needs `bash ci/setup`)",
        |ctx| Arc::new(Debezium::new(ctx)),
    )
};

/// The outbox table in the shape the event router expects by default.
pub const DEBEZIUM_OUTBOX_DDL: &str = "CREATE TABLE IF NOT EXISTS debezium_outbox (
    id uuid PRIMARY KEY,
    aggregatetype text NOT NULL,
    aggregateid text NOT NULL,
    type text NOT NULL,
    payload text
)";

/// Slot and publication naming (the connector uses the ones we create).
const SOURCE: Source = Source {
    table: "debezium_outbox",
    name: "debezium",
    to_event: |_| Err(anyhow!("Debezium, not dualcheck's tailer, reads this table")),
};

const CONNECTOR: &str = "dualcheck-debezium";

/// How the relay process sees Connect.
#[derive(Default)]
struct ConnectState {
    /// REST port of the running worker (0: none yet).
    rest_port: AtomicU64,
    /// Connector and task RUNNING at the last look.
    running: AtomicBool,
    /// Highest drain marker seen on the marker topic.
    seen_marker: AtomicU64,
    /// Number of the last drain marker taken (written or being written).
    emitted_marker: AtomicU64,
    /// This process's markers (a killed predecessor's are ignored).
    nonce: u64,
    /// Last problem, for the backlog's error.
    last_error: Mutex<String>,
}

/// The `debezium` pattern.
pub struct Debezium {
    ctx: Arc<AppContext>,
    state: Arc<ConnectState>,
}

impl Debezium {
    fn new(ctx: Arc<AppContext>) -> Debezium {
        let state = ConnectState {
            nonce: fastrand::u64(1..u64::MAX >> 12),
            ..ConnectState::default()
        };
        Debezium {
            ctx,
            state: Arc::new(state),
        }
    }

    fn marker_topic(&self) -> String {
        format!("{}.dualcheck-drain", self.ctx.config.topic)
    }
}

/// The outbox row of one event (inserted, then deleted: the WAL keeps it).
fn outbox_statements(envelopes: &[Envelope], aggregate_type: &str) -> Vec<Step> {
    use tokio_postgres::types::Type;
    let mut rows = TableRows::new(
        "debezium_outbox",
        "inserting the Debezium outbox rows",
        &[
            ("id", Type::UUID),
            ("aggregatetype", Type::TEXT),
            ("aggregateid", Type::TEXT),
            ("type", Type::TEXT),
            ("payload", Type::TEXT),
        ],
    );
    for envelope in envelopes {
        let row: Vec<Cell> = vec![
            Box::new(envelope.event_uuid()),
            Box::new(aggregate_type.to_string()),
            Box::new(envelope.key.clone()),
            Box::new("OrderCreated".to_string()),
            Box::new(envelope.to_json()),
        ];
        rows.push(row);
    }
    vec![
        Step::Rows(rows),
        Step::Sql(Statement {
            sql: "DELETE FROM debezium_outbox WHERE id = ANY($1::text::uuid[])",
            what: "deleting the Debezium outbox rows (the WAL keeps them)",
            params: vec![text_array(envelopes.iter().map(|e| e.event.as_str()))],
        }),
    ]
}

#[async_trait::async_trait]
impl Pattern for Debezium {
    async fn setup_schema(&self, db: &tokio_postgres::Client) -> Result<()> {
        db.batch_execute(crate::ORDERS_DDL).await?;
        db.batch_execute(DEBEZIUM_OUTBOX_DDL).await?;
        // Before the first request: no committed row may predate the slot.
        SOURCE.create_slot(db, &self.ctx.config.database_url).await
    }
    async fn start_background(&self) -> Result<Background> {
        let (mut bg, stop) = Background::new();
        let libs = connect_libs(&self.ctx.config.connect_libs)?;
        create_marker_topic(&self.ctx.config.kafka_bootstrap, &self.marker_topic()).await?;
        let dir = std::env::current_dir()?.join("connect");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let connector = connector_properties(&self.ctx.config.database_url, &Tuning::of(&self.ctx.config))?;
        std::fs::write(dir.join("connector.properties"), connector)?;
        std::fs::write(dir.join("log4j2.properties"), LOG4J2)?;
        bg.push(tokio::spawn(supervise(
            self.ctx.clone(),
            self.state.clone(),
            libs,
            dir,
            stop.clone(),
        )));
        bg.push(tokio::spawn(watch_markers(
            self.ctx.config.kafka_bootstrap.clone(),
            self.marker_topic(),
            self.state.clone(),
            stop,
        )));
        // Serve /health only once the connector streams (up to 3 minutes: two JVM cores).
        let started = Instant::now();
        while !self.state.running.load(Ordering::SeqCst) {
            if started.elapsed() > Duration::from_secs(180) {
                let last = self.state.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
                bail!("Kafka Connect did not run the Debezium connector within 180 s (last: {last}); see connect/connect.log in the run directory");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(bg)
    }
    async fn execute(&self, op: &Op) -> OpAnswer {
        let statements = outbox_statements(&Envelope::all(op), &self.ctx.config.topic);
        crate::runtime::business::run_with(&self.ctx, op, None, &statements)
            .await
            .into()
    }
    /// Writes a drain marker (an event routed to the marker topic) and waits,
    /// at most [`MARKER_WAIT`], for it to come out of Connect: 0 if it did.
    /// Connect publishes in WAL order, so a 0 means everything committed
    /// before this call began has been handed to Kafka. Waiting here, rather
    /// than answering 0 when the previous call's marker is through: a marker
    /// waits up to Debezium's poll interval (500 ms by default) to come out,
    /// and the drain asks every 50 ms, so the previous call's marker was
    /// almost never through yet (drains of 3 to 57 s for a 5 s run).
    async fn backlog(&self) -> Result<Backlog> {
        if !self.state.running.load(Ordering::SeqCst) {
            let last = self.state.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
            bail!("the Debezium connector is not running ({last})");
        }
        // Numbers from one counter: a marker seen with a higher number was
        // taken, hence committed, after this call began.
        let next = self.state.emitted_marker.fetch_add(1, Ordering::SeqCst) + 1;
        let marker = Envelope {
            op: -1,
            seq: next as i64,
            key: "dualcheck-drain".into(),
            event: uuid::Uuid::new_v4().to_string(),
            payload: format!("{}:{next}", self.state.nonce),
            index: 0,
        };
        let mut c = self.ctx.db.get().await?;
        let t = self.ctx.db.timeout;
        let res = async {
            let tx = timed(t, "BEGIN (drain marker)", c.transaction()).await?;
            for step in outbox_statements(std::slice::from_ref(&marker), &self.marker_topic()) {
                step.execute(t, &tx, workloads::WriteShape::Single).await?;
            }
            timed(t, "COMMIT (drain marker)", tx.commit()).await
        };
        // One bound over the whole marker write, as a single statement had.
        let written = match tokio::time::timeout(t, res).await {
            Ok(r) => r,
            Err(_) => Err(anyhow!("no answer from Postgres within {t:?}")),
        };
        if let Err(e) = written {
            c.discard();
            return Err(e.context("writing a drain marker"));
        }
        drop(c);
        let deadline = tokio::time::Instant::now() + MARKER_WAIT;
        let through = loop {
            if self.state.seen_marker.load(Ordering::SeqCst) >= next {
                break true;
            }
            if tokio::time::Instant::now() >= deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        Ok(Backlog {
            backlog: if through { 0 } else { 1 },
            oldest_age_ms: 0,
            parked: 0,
            in_flight: None,
        })
    }
}

/// How long a backlog call waits for its marker: Debezium's default poll
/// interval and the publish, within the drain's 2 s timeout per call.
const MARKER_WAIT: Duration = Duration::from_millis(1500);

/// Where the Connect + Debezium jars are.
fn connect_libs(configured: &Option<PathBuf>) -> Result<PathBuf> {
    let dir = match configured {
        Some(d) => d.clone(),
        None => {
            let cache = std::env::var_os("DUALCHECK_CACHE")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/dualcheck")))
                .context("neither DUALCHECK_CACHE nor HOME is set")?;
            cache.join("connect/libs")
        }
    };
    let has_debezium = std::fs::read_dir(&dir)
        .map(|entries| {
            entries.flatten().any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("debezium-connector-postgres")
            })
        })
        .unwrap_or(false);
    if !has_debezium {
        bail!(
            "no Debezium jars in {} (DUALCHECK_CONNECT_LIBS); run `bash ci/setup` to collect Kafka Connect and Debezium from Maven Central",
            dir.display()
        );
    }
    Ok(dir)
}

/// The connector's knobs (`DUALCHECK_DEBEZIUM_*`); `None`: Debezium's default.
#[derive(Debug, Clone, Default)]
struct Tuning {
    /// `heartbeat.interval.ms` (zero: off).
    heartbeat: Duration,
    /// `poll.interval.ms`.
    poll: Option<Duration>,
    /// `max.batch.size`.
    max_batch: Option<u64>,
    /// `max.queue.size`.
    max_queue: Option<u64>,
}

impl Tuning {
    fn of(cfg: &crate::runtime::config::AppConfig) -> Tuning {
        Tuning {
            heartbeat: cfg.debezium_heartbeat,
            poll: cfg.debezium_poll,
            max_batch: cfg.debezium_max_batch,
            max_queue: cfg.debezium_max_queue,
        }
    }

    /// The properties' lines of the knobs set.
    fn lines(&self) -> String {
        let mut s = String::new();
        if !self.heartbeat.is_zero() {
            s.push_str(&format!("heartbeat.interval.ms={}\n", self.heartbeat.as_millis()));
        }
        if let Some(p) = self.poll {
            s.push_str(&format!("poll.interval.ms={}\n", p.as_millis()));
        }
        if let Some(b) = self.max_batch {
            s.push_str(&format!("max.batch.size={b}\n"));
        }
        if let Some(q) = self.max_queue {
            s.push_str(&format!("max.queue.size={q}\n"));
        }
        s
    }
}

/// The connector's configuration: our slot and publication, the proxied
/// Postgres link, the outbox event router routing by aggregate type; the
/// knobs set in `tuning` (a non-zero heartbeat: Debezium's
/// `heartbeat.interval.ms`, its heartbeat topic, `__debezium-heartbeat.dualcheck`,
/// created by the broker; the poll interval and batch and queue sizes).
fn connector_properties(database_url: &str, tuning: &Tuning) -> Result<String> {
    let cfg: tokio_postgres::Config = database_url.parse().context("DATABASE_URL is not a Postgres URL")?;
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => bail!("DATABASE_URL must name a TCP host for Debezium"),
    };
    // A password stays out of the file (it sits in the run directory): Kafka
    // Connect reads it from the environment (`start_connect` sets it).
    let password = if password_of(database_url).is_empty() {
        String::new()
    } else {
        format!("${{env:{PASSWORD_VAR}}}")
    };
    let slot = SOURCE.slot(database_url)?;
    if let (Some(b), Some(q)) = (tuning.max_batch, tuning.max_queue) {
        if q <= b {
            bail!("DUALCHECK_DEBEZIUM_MAX_QUEUE={q} must be larger than DUALCHECK_DEBEZIUM_MAX_BATCH={b} (Debezium refuses otherwise)");
        }
    }
    let knobs = tuning.lines();
    Ok(format!(
        "name={CONNECTOR}
connector.class=io.debezium.connector.postgresql.PostgresConnector
tasks.max=1
database.hostname={host}
database.port={port}
database.user={user}
database.password={password}
database.dbname={db}
topic.prefix=dualcheck
plugin.name=pgoutput
slot.name={slot}
publication.name={publication}
publication.autocreate.mode=disabled
snapshot.mode=no_data
table.include.list=public.debezium_outbox
tombstones.on.delete=false
errors.max.retries=-1
transforms=outbox
transforms.outbox.type=io.debezium.transforms.outbox.EventRouter
transforms.outbox.route.by.field=aggregatetype
transforms.outbox.route.topic.replacement=${{routedByValue}}
transforms.outbox.table.field.event.key=aggregateid
transforms.outbox.table.expand.json.payload=false
transforms.outbox.table.fields.additional.placement=id:header:event_id
header.converter=org.apache.kafka.connect.storage.StringConverter
{knobs}",
        port = cfg.get_ports().first().copied().unwrap_or(5432),
        user = cfg.get_user().unwrap_or("postgres"),
        db = cfg.get_dbname().unwrap_or("postgres"),
        publication = SOURCE.publication(),
    ))
}

/// The worker's configuration: standalone, offsets in a file (they survive a
/// kill), idempotent acks=all producer through the proxied bootstrap.
fn worker_properties(bootstrap: &str, dir: &Path, rest_port: u16, linger: Duration) -> String {
    format!(
        "bootstrap.servers={bootstrap}
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.storage.StringConverter
offset.storage.file.filename={offsets}
offset.flush.interval.ms=1000
listeners=http://127.0.0.1:{rest_port}
rest.advertised.host.name=127.0.0.1
task.shutdown.graceful.timeout.ms=1000
producer.enable.idempotence=true
producer.acks=all
producer.linger.ms={linger}
producer.reconnect.backoff.max.ms=1000
",
        offsets = dir.join("offsets.dat").display(),
        linger = linger.as_millis(),
    )
}

const LOG4J2: &str = "status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
";

/// Creates the one-partition marker topic (idempotent), retrying until
/// Kafka answers: a relay restarted while Kafka is paused or partitioned
/// waits for it as it waits for Postgres to create the schema, rather than
/// exit (it gave up after 30 s once, and its run, with no relay left, lost
/// every event it had yet to publish). The runner's start timeout bounds it.
async fn create_marker_topic(bootstrap: &str, topic: &str) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3")
        .create()
        .context("creating a Kafka admin client (KAFKA_BOOTSTRAP)")?;
    let mut warned = Instant::now();
    loop {
        let r = admin
            .create_topics(
                &[NewTopic::new(topic, 1, TopicReplication::Fixed(-1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await;
        let error = match r {
            Ok(results) => match results.into_iter().next() {
                Some(Ok(_)) | None => return Ok(()),
                Some(Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists))) => return Ok(()),
                Some(Err((_, code))) => code.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if warned.elapsed() > Duration::from_secs(10) {
            tracing::warn!("debezium: creating the marker topic {topic} failed (retrying): {error}");
            warned = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Keeps Kafka Connect running: starts the JVM, restarts it when it exits,
/// restarts a FAILED task, and records whether connector and task run.
async fn supervise(
    ctx: Arc<AppContext>,
    state: Arc<ConnectState>,
    libs: PathBuf,
    dir: PathBuf,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let http = reqwest::Client::new();
    let mut child: Option<tokio::process::Child> = None;
    loop {
        let alive = match child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(Ok(Some(status))) => {
                note(&state, format!("Kafka Connect exited ({status}); restarting it"));
                false
            }
            _ => false,
        };
        if !alive {
            state.running.store(false, Ordering::SeqCst);
            match start_connect(&ctx, &libs, &dir) {
                Ok((c, port)) => {
                    child = Some(c);
                    state.rest_port.store(port as u64, Ordering::SeqCst);
                }
                Err(e) => note(&state, format!("starting Kafka Connect: {e:#}")),
            }
        } else {
            let port = state.rest_port.load(Ordering::SeqCst);
            match connector_status(&http, port).await {
                Ok((connector, task)) => {
                    let running = connector == "RUNNING" && task == "RUNNING";
                    state.running.store(running, Ordering::SeqCst);
                    if !running {
                        note(&state, format!("connector {connector}, task {task}"));
                    }
                    if task == "FAILED" {
                        let url = format!("http://127.0.0.1:{port}/connectors/{CONNECTOR}/tasks/0/restart");
                        let _ = http.post(url).timeout(Duration::from_secs(5)).send().await;
                    }
                }
                Err(e) => {
                    state.running.store(false, Ordering::SeqCst);
                    note(&state, format!("{e:#}"));
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => {
                if let Some(mut c) = child.take() {
                    let _ = c.start_kill();
                    let _ = c.wait().await;
                }
                return;
            }
        }
    }
}

fn note(state: &ConnectState, msg: String) {
    let mut last = state.last_error.lock().unwrap_or_else(|e| e.into_inner());
    if *last != msg {
        tracing::info!("debezium: {msg}");
        *last = msg;
    }
}

/// The variable carrying the database password to Kafka Connect (never written to a file).
const PASSWORD_VAR: &str = "DUALCHECK_CONNECT_PG_PASSWORD";

/// The password of a Postgres URL (empty when it has none or does not parse).
fn password_of(database_url: &str) -> String {
    database_url
        .parse::<tokio_postgres::Config>()
        .ok()
        .and_then(|c| c.get_password().map(|p| String::from_utf8_lossy(p).into_owned()))
        .unwrap_or_default()
}

/// Starts `ConnectStandalone worker.properties connector.properties`; output
/// goes to `connect.log`. The JVM dies with this process (PR_SET_PDEATHSIG,
/// and the runner kills the whole process tree).
fn start_connect(ctx: &AppContext, libs: &Path, dir: &Path) -> Result<(tokio::process::Child, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let password = password_of(&ctx.config.database_url);
    let mut worker = worker_properties(&ctx.config.kafka_bootstrap, dir, port, ctx.config.debezium_linger);
    if !password.is_empty() {
        worker.push_str(
            "config.providers=env\nconfig.providers.env.class=org.apache.kafka.common.config.provider.EnvVarConfigProvider\n",
        );
    }
    std::fs::write(dir.join("worker.properties"), worker)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("connect.log"))?;
    let java = match std::env::var_os("JAVA_HOME") {
        Some(home) => Path::new(&home).join("bin/java"),
        None => PathBuf::from("java"),
    };
    let mut cmd = tokio::process::Command::new(&java);
    // Connect's start allocates a lot: from a 128 MiB heap it made 56 young
    // and 3 full collections (755-940 ms stopped, `-Xlog:gc`); from 512 MiB
    // with a 96 MiB first metaspace threshold, 16 young (575-765 ms).
    cmd.args([
        "-Xmx512m",
        "-Xms512m",
        "-XX:MetaspaceSize=96m",
        "-XX:+UseSerialGC",
        "-Djava.awt.headless=true",
    ])
    .arg(format!(
        "-Dlog4j2.configurationFile={}",
        dir.join("log4j2.properties").display()
    ))
    .arg("-cp")
    .arg(format!("{}/*", libs.display()))
    .arg("org.apache.kafka.connect.cli.ConnectStandalone")
    .arg(dir.join("worker.properties"))
    .arg(dir.join("connector.properties"))
    .env(PASSWORD_VAR, &password)
    .stdin(std::process::Stdio::null())
    .stdout(log.try_clone()?)
    .stderr(log)
    .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {} (set JAVA_HOME or put java on PATH)", java.display()))?;
    tracing::info!(
        "debezium: Kafka Connect started (pid {:?}, REST port {port})",
        child.id()
    );
    Ok((child, port))
}

/// (connector state, task 0 state) from Connect's REST API.
async fn connector_status(http: &reqwest::Client, port: u64) -> Result<(String, String)> {
    let url = format!("http://127.0.0.1:{port}/connectors/{CONNECTOR}/status");
    let v: serde_json::Value = http
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .context("Kafka Connect's REST API does not answer yet")?
        .json()
        .await
        .context("reading the connector status")?;
    let connector = v["connector"]["state"].as_str().unwrap_or("UNKNOWN").to_string();
    let task = v["tasks"][0]["state"].as_str().unwrap_or("UNASSIGNED").to_string();
    Ok((connector, task))
}

/// Reads the marker topic and records the highest marker of this process.
async fn watch_markers(
    bootstrap: String,
    topic: String,
    state: Arc<ConnectState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let consumer: Result<StreamConsumer> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "dualcheck-debezium-markers")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("log_level", "3")
            .create()
            .context("creating the marker consumer");
        let consumer = match consumer.and_then(|c| {
            let mut tpl = rdkafka::TopicPartitionList::new();
            tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Beginning)?;
            c.assign(&tpl)?;
            Ok(c)
        }) {
            Ok(c) => c,
            Err(e) => {
                note(&state, format!("{e:#}"));
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        loop {
            tokio::select! {
                m = consumer.recv() => {
                    let Ok(m) = m else { continue };
                    let Some(Ok(value)) = m.payload_view::<str>() else { continue };
                    let Ok(env) = serde_json::from_str::<Envelope>(value) else { continue };
                    if let Some((nonce, n)) = env.payload.split_once(':') {
                        if nonce.parse::<u64>().ok() == Some(state.nonce) {
                            if let Ok(n) = n.parse::<u64>() {
                                state.seen_marker.fetch_max(n, Ordering::SeqCst);
                            }
                        }
                    }
                }
                _ = stop.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_uses_the_proxied_link_and_our_slot() {
        let p = connector_properties("postgres://postgres@127.0.0.1:4321/run_7", &Tuning::default()).unwrap();
        assert!(p.contains("database.port=4321"), "{p}");
        assert!(p.contains("database.dbname=run_7"), "{p}");
        assert!(p.contains("slot.name=dualcheck_debezium_run_7"), "{p}");
        assert!(p.contains("publication.name=dualcheck_debezium"), "{p}");
        assert!(
            p.contains("transforms.outbox.route.topic.replacement=${routedByValue}"),
            "{p}"
        );
        assert!(!p.contains("heartbeat"), "off by default: {p}");
        let p = connector_properties(
            "postgres://postgres@127.0.0.1:4321/run_7",
            &Tuning {
                heartbeat: Duration::from_secs(1),
                ..Tuning::default()
            },
        )
        .unwrap();
        assert!(p.contains("\nheartbeat.interval.ms=1000\n"), "{p}");
        assert!(p.contains("\ndatabase.password=\n"), "no password, none set: {p}");
        let p = connector_properties("postgres://u:s3cret@127.0.0.1:4321/run_7", &Tuning::default()).unwrap();
        assert!(!p.contains("s3cret"), "{p}");
        assert!(
            p.contains("database.password=${env:DUALCHECK_CONNECT_PG_PASSWORD}"),
            "{p}"
        );
        assert!(
            !p.contains("poll.interval.ms") && !p.contains("max.batch.size"),
            "Debezium's defaults: {p}"
        );
    }

    #[test]
    fn the_poll_interval_and_batch_knobs_reach_the_connector() {
        let tuned = Tuning {
            poll: Some(Duration::from_millis(5)),
            max_batch: Some(512),
            max_queue: Some(4096),
            ..Tuning::default()
        };
        let p = connector_properties("postgres://postgres@127.0.0.1:4321/run_7", &tuned).unwrap();
        for line in [
            "\npoll.interval.ms=5\n",
            "\nmax.batch.size=512\n",
            "\nmax.queue.size=4096\n",
        ] {
            assert!(p.contains(line), "{line}: {p}");
        }
        let bad = Tuning {
            max_queue: Some(512),
            ..tuned
        };
        let e = connector_properties("postgres://postgres@127.0.0.1:4321/run_7", &bad).unwrap_err();
        assert!(e.to_string().contains("DUALCHECK_DEBEZIUM_MAX_QUEUE"), "{e}");
        let w = worker_properties("127.0.0.1:9092", Path::new("/tmp/x"), 8083, Duration::ZERO);
        assert!(w.contains("\nproducer.linger.ms=0\n"), "{w}");
    }

    #[test]
    fn the_tuned_knobs_are_knobs() {
        for (k, _) in INFO.tuned {
            assert!(crate::runtime::config::KNOBS.iter().any(|n| n.name == *k), "{k}");
        }
    }
}
