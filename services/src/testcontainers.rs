//! The `testcontainers` backend (cargo feature `testcontainers`): the same
//! services as Docker containers on a private network, for users with Docker.
//! CI compiles it but has no Docker engine to run it.
//!
//! Host ports are chosen up front (free loopback ports) and mapped explicitly,
//! because each Kafka broker must advertise its proxy's *host* port before it
//! starts. Toxiproxy reaches the services by container name on the network;
//! brokers replicate over an INTERNAL listener advertised by container name.
//! Kill is `docker stop -t 0` then start (the container's filesystem, hence its
//! data, is kept); pause is `docker pause`.

use super::ports::free_port;
use super::ready::{fatal, wait_until_ready};
use super::toxiproxy::ToxiproxyClient;
use super::{kafka, postgres, EnvOptions, Environment, Service};
use anyhow::{bail, Context, Result};
use std::time::Duration;
use testcontainers_modules::testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, GenericImage, ImageExt};

/// Image tags used.
pub const POSTGRES_IMAGE: (&str, &str) = ("postgres", "16");
/// Apache Kafka image (KRaft).
pub const KAFKA_IMAGE: (&str, &str) = ("apache/kafka", "4.1.0");
/// Toxiproxy image.
pub const TOXIPROXY_IMAGE: (&str, &str) = ("ghcr.io/shopify/toxiproxy", "2.12.0");

/// The running containers (removed when dropped).
pub struct TcServices {
    postgres: ContainerAsync<GenericImage>,
    kafka: Vec<ContainerAsync<GenericImage>>,
    kafka_direct: String,
    postgres_direct: String,
    _toxiproxy: ContainerAsync<GenericImage>,
}

/// The host ports a run's containers are mapped to, all chosen before any
/// container starts: each broker must advertise its proxy's host port.
struct HostPorts {
    /// Toxiproxy's API.
    api: u16,
    /// PostgreSQL, unproxied.
    pg: u16,
    /// Toxiproxy's `postgres` proxy.
    pg_proxy: u16,
    /// Toxiproxy's `kafka-N` proxy of each broker (advertised on PROXIED).
    kafka_proxy: Vec<u16>,
    /// Each broker's DIRECT listener.
    kafka_direct: Vec<u16>,
}

impl HostPorts {
    /// Free loopback ports for `brokers` brokers.
    fn choose(brokers: usize) -> Result<HostPorts> {
        Ok(HostPorts {
            api: free_port()?,
            pg: free_port()?,
            pg_proxy: free_port()?,
            kafka_proxy: (0..brokers).map(|_| free_port()).collect::<Result<_>>()?,
            kafka_direct: (0..brokers).map(|_| free_port()).collect::<Result<_>>()?,
        })
    }
}

/// Starts the containers and returns a ready [`Environment`].
pub async fn start(opts: &EnvOptions) -> Result<Environment> {
    let tag = format!("dualcheck-{}-{}", std::process::id(), free_port()?);
    let n = opts.brokers;
    let ports = HostPorts::choose(n)?;
    let (toxiproxy_c, toxiproxy) = start_toxiproxy(&tag, &ports, opts.timeout).await?;
    let pg = start_postgres(&tag, &ports).await?;
    let mut brokers = Vec::new();
    for i in 0..n {
        brokers.push(start_kafka_broker(&tag, &ports, i, opts.timeout).await?);
    }
    let postgres_direct = postgres::url(ports.pg);
    postgres::wait_ready(&postgres_direct, None, opts.timeout).await?;
    let direct: Vec<String> = ports.kafka_direct.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let proxied: Vec<String> = ports.kafka_proxy.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let services = TcServices {
        postgres: pg,
        kafka: brokers,
        kafka_direct: direct.join(","),
        postgres_direct: postgres_direct.clone(),
        _toxiproxy: toxiproxy_c,
    };
    services.wait_brokers(&(0..n).collect::<Vec<_>>(), opts.timeout).await?;
    Ok(Environment {
        run_dir: opts.run_dir.clone(),
        postgres_url: postgres::url(ports.pg_proxy),
        postgres_direct_url: postgres_direct,
        kafka_bootstrap: proxied.join(","),
        kafka_direct_bootstrap: direct.join(","),
        toxiproxy,
        postgres_proxy: "postgres".into(),
        kafka_proxies: (0..n).map(|i| format!("kafka-{i}")).collect(),
        kafka_nodes: n,
        run_id: None,
        backend: super::Backend::Testcontainers(Box::new(services)),
        shut_down: false,
    })
}

/// Starts Toxiproxy on the network `tag` and creates its proxies (`postgres`,
/// `kafka-N`), which reach the services by container name: they need not run yet.
async fn start_toxiproxy(
    tag: &str,
    ports: &HostPorts,
    timeout: Duration,
) -> Result<(ContainerAsync<GenericImage>, ToxiproxyClient)> {
    let mut tp = GenericImage::new(TOXIPROXY_IMAGE.0, TOXIPROXY_IMAGE.1)
        .with_wait_for(WaitFor::message_on_stdout("API HTTP server starting"))
        .with_network(tag)
        .with_container_name(format!("{tag}-toxiproxy"))
        .with_mapped_port(ports.api, 8474.tcp())
        .with_mapped_port(ports.pg_proxy, 15432.tcp());
    for (i, p) in ports.kafka_proxy.iter().enumerate() {
        tp = tp.with_mapped_port(*p, (19092 + i as u16).tcp());
    }
    let container = tp
        .start()
        .await
        .context("starting the Toxiproxy container (is Docker running?)")?;
    let toxiproxy = ToxiproxyClient::new(&format!("http://127.0.0.1:{}", ports.api))?;
    toxiproxy.wait_ready(timeout).await?;
    toxiproxy
        .create_proxy("postgres", "0.0.0.0:15432", &format!("{tag}-pg:5432"))
        .await?;
    for i in 0..ports.kafka_proxy.len() {
        toxiproxy
            .create_proxy(
                &format!("kafka-{i}"),
                &format!("0.0.0.0:{}", 19092 + i),
                &format!("{tag}-kafka-{i}:9092"),
            )
            .await?;
    }
    Ok((container, toxiproxy))
}

/// Starts PostgreSQL with the settings CDC and two-phase commit need; its
/// readiness is waited for later, while the brokers start.
async fn start_postgres(tag: &str, ports: &HostPorts) -> Result<ContainerAsync<GenericImage>> {
    GenericImage::new(POSTGRES_IMAGE.0, POSTGRES_IMAGE.1)
        .with_wait_for(WaitFor::Nothing)
        .with_network(tag)
        .with_container_name(format!("{tag}-pg"))
        .with_mapped_port(ports.pg, 5432.tcp())
        .with_env_var("POSTGRES_HOST_AUTH_METHOD", "trust")
        .with_cmd([
            "postgres",
            "-c",
            "wal_level=logical",
            "-c",
            "max_prepared_transactions=100",
            "-c",
            "max_replication_slots=20",
            "-c",
            "max_wal_senders=20",
        ])
        .start()
        .await
        .context("starting the PostgreSQL container")
}

/// Starts Kafka broker `i` of the KRaft cluster (every broker is also a
/// controller voter): PROXIED advertised at its proxy's host port, DIRECT at
/// its own, INTERNAL (replication) by container name.
async fn start_kafka_broker(
    tag: &str,
    ports: &HostPorts,
    i: usize,
    timeout: Duration,
) -> Result<ContainerAsync<GenericImage>> {
    let n = ports.kafka_proxy.len();
    let voters: Vec<String> = (0..n).map(|v| format!("{v}@{tag}-kafka-{v}:9093")).collect();
    let rf = n.min(3).to_string();
    let min_isr = if n >= 3 { "2" } else { "1" };
    GenericImage::new(KAFKA_IMAGE.0, KAFKA_IMAGE.1)
        .with_wait_for(WaitFor::message_on_stdout("Kafka Server started"))
        .with_network(tag)
        .with_container_name(format!("{tag}-kafka-{i}"))
        .with_mapped_port(ports.kafka_direct[i], 9094.tcp())
        .with_env_var("CLUSTER_ID", "ZHVhbGNoZWNrLWNsdXN0ZXI")
        .with_env_var("KAFKA_NODE_ID", i.to_string())
        .with_env_var("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env_var("KAFKA_CONTROLLER_QUORUM_VOTERS", voters.join(","))
        .with_env_var(
            "KAFKA_LISTENERS",
            "PROXIED://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093,DIRECT://0.0.0.0:9094,INTERNAL://0.0.0.0:9095",
        )
        .with_env_var(
            "KAFKA_ADVERTISED_LISTENERS",
            format!(
                "PROXIED://127.0.0.1:{},DIRECT://127.0.0.1:{},INTERNAL://{tag}-kafka-{i}:9095",
                ports.kafka_proxy[i], ports.kafka_direct[i]
            ),
        )
        .with_env_var(
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
            "PROXIED:PLAINTEXT,CONTROLLER:PLAINTEXT,DIRECT:PLAINTEXT,INTERNAL:PLAINTEXT",
        )
        .with_env_var("KAFKA_INTER_BROKER_LISTENER_NAME", "INTERNAL")
        .with_env_var("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env_var("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", rf.clone())
        .with_env_var("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", rf)
        .with_env_var("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", min_isr)
        .with_env_var("KAFKA_MIN_INSYNC_REPLICAS", min_isr)
        .with_env_var("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
        .with_startup_timeout(timeout)
        .start()
        .await
        .with_context(|| format!("starting the Kafka container kafka-{i}"))
}

impl TcServices {
    fn container(&self, service: Service) -> Result<&ContainerAsync<GenericImage>> {
        match service {
            Service::Postgres => Ok(&self.postgres),
            Service::Kafka(i) => self.kafka.get(i).with_context(|| format!("no Kafka node {i}")),
            Service::Toxiproxy => bail!("faults on the Toxiproxy container are not supported"),
        }
    }

    /// Waits until the metadata (read on the DIRECT listeners) lists the brokers `ids`.
    async fn wait_brokers(&self, ids: &[usize], timeout: Duration) -> Result<()> {
        wait_until_ready(
            "Kafka containers",
            timeout,
            Duration::from_millis(200),
            String::new,
            || async {
                let b = self.kafka_direct.clone();
                let seen = tokio::task::spawn_blocking(move || kafka::broker_ids(&b, Duration::from_secs(2)))
                    .await
                    .map_err(fatal)??;
                kafka::brokers_listed(ids, &seen)
            },
        )
        .await
    }

    /// Kills a container (`docker stop -t 0`), keeping its filesystem.
    pub async fn kill(&self, service: Service) -> Result<()> {
        self.container(service)?
            .stop_with_timeout(Some(0))
            .await
            .with_context(|| format!("killing {service}"))
    }

    /// Starts a killed container again and waits until ready.
    pub async fn restart(&self, service: Service, timeout: Duration) -> Result<()> {
        self.container(service)?
            .start()
            .await
            .with_context(|| format!("restarting {service}"))?;
        match service {
            Service::Postgres => postgres::wait_ready(&self.postgres_direct, None, timeout).await,
            Service::Kafka(i) => self.wait_brokers(&[i], timeout).await,
            Service::Toxiproxy => Ok(()),
        }
    }

    /// `docker pause` (`pause = true`) or `docker unpause`.
    pub async fn pause(&self, service: Service, pause: bool) -> Result<()> {
        let c = self.container(service)?;
        if pause {
            c.pause().await?;
        } else {
            c.unpause().await?;
        }
        Ok(())
    }
}
