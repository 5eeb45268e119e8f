//! The `external` backend: services the user already runs (their own Postgres
//! and Kafka, perhaps their own Toxiproxy), given by address (flags,
//! `DUALCHECK_*` variables or `dualcheck.toml`: `env::settings`).
//!
//! - **Postgres**: an admin URL (a role that may create databases and
//!   replication slots). Each run creates its own database,
//!   `dualcheck_<run id>`; its replication slots and publications are named
//!   after that database, so runs against one cluster never collide. All of it
//!   is dropped after the run, also after Ctrl-C.
//! - **Kafka**: a direct bootstrap. Each run creates its own topic,
//!   `orders_<run id>`, and deletes it afterwards.
//! - **Toxiproxy**: with an API URL, the user's Toxiproxy and its proxies
//!   `postgres` and `kafka-N` (as `dualcheck env up` makes them) are used for
//!   network faults. Without one, dualcheck starts a Toxiproxy of its own on
//!   127.0.0.1 with a `postgres` proxy in front of the user's Postgres, so the
//!   Postgres network faults still apply. A Kafka client only bootstraps through
//!   an address and then connects to the addresses the brokers *advertise*, so a
//!   proxy in front of a broker the harness does not configure carries nothing
//!   but the bootstrap: Kafka network faults are available only when the user's
//!   Toxiproxy has `kafka-N` proxies that the brokers advertise (as with
//!   `dualcheck env up`), and refused otherwise, before anything starts.
//!
//! The harness does not own the user's processes: the built-in faults that kill
//! or freeze a service (`pg-kill`, `kafka-pause`, `kafka-leader`, ...) are
//! refused before anything starts; a custom fault command does that job.
//!
//! Credentials never leave the harness: [`redact`] is applied to every URL
//! the harness prints or writes.

use super::process::{ManagedProcess, ProcessSpec};
use super::toxiproxy::ToxiproxyClient;
use anyhow::{bail, Context, Result};
pub use record::redact;
use record::Fault;
use std::path::Path;
use std::time::Duration;

/// Addresses of user-run services.
#[derive(Clone)]
pub struct ExternalConfig {
    /// Admin URL of the user's Postgres, direct (not through a proxy).
    pub postgres_url: String,
    /// The user's Kafka bootstrap, direct.
    pub kafka_bootstrap: String,
    /// Toxiproxy API URL, e.g. `http://127.0.0.1:8474`; `None`: dualcheck
    /// starts a Toxiproxy of its own in front of the user's Postgres.
    pub toxiproxy_url: Option<String>,
}

impl std::fmt::Debug for ExternalConfig {
    /// Redacted: the Postgres URL's password is never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalConfig")
            .field("postgres_url", &redact(&self.postgres_url))
            .field("kafka_bootstrap", &self.kafka_bootstrap)
            .field("toxiproxy_url", &self.toxiproxy_url.as_deref().map(redact))
            .finish()
    }
}

/// Name of the Postgres proxy on the user's Toxiproxy (and on dualcheck's own).
pub const POSTGRES_PROXY: &str = "postgres";

/// Whether `fault` acts on a service process (kill, freeze), which the
/// external backend does not own.
pub fn kills_or_freezes_a_service(fault: Fault) -> bool {
    matches!(
        fault,
        Fault::PgKill | Fault::KafkaKill | Fault::PgPause | Fault::KafkaPause | Fault::KafkaLeader
    )
}

/// Whether `fault` acts on the Kafka link (through the `kafka-N` proxies).
pub fn on_the_kafka_link(fault: Fault) -> bool {
    fault.family() == record::FaultFamily::Network && fault.name().starts_with("kafka-")
}

impl ExternalConfig {
    /// Refuses, before anything starts, the faults this backend cannot inject:
    /// the built-in process faults on the user's services, and Kafka network
    /// faults when no Toxiproxy with Kafka proxies is given.
    pub fn check_faults(&self, faults: &[Fault]) -> Result<()> {
        let process: Vec<&str> = faults
            .iter()
            .copied()
            .filter(|f| kills_or_freezes_a_service(*f))
            .map(Fault::name)
            .collect();
        if !process.is_empty() {
            bail!(
                "the external backend cannot run {}: dualcheck does not own the processes of your services, \
                 so it cannot kill or freeze them itself. Define the fault as a command instead \
                 (`--fault-cmd NAME=START_CMD[,STOP_CMD]`, e.g. `systemctl kill postgresql`), or drop it from --faults",
                process.join(", ")
            );
        }
        let kafka: Vec<&str> = faults
            .iter()
            .copied()
            .filter(|f| on_the_kafka_link(*f))
            .map(Fault::name)
            .collect();
        if !kafka.is_empty() && self.toxiproxy_url.is_none() {
            bail!(
                "the external backend cannot run {} without --toxiproxy-url: a Kafka client reaches the brokers at the \
                 addresses they advertise, so a proxy dualcheck puts in front of your broker would carry only the \
                 bootstrap. Give a Toxiproxy whose proxies `kafka-0`, `kafka-1`, ... your brokers advertise \
                 (as `dualcheck env up` sets them up), or drop these faults",
                kafka.join(", ")
            );
        }
        Ok(())
    }
}

/// `host:port` of a Postgres URL.
fn postgres_host_port(url: &str) -> Result<(String, u16)> {
    let cfg: tokio_postgres::Config = url
        .parse()
        .with_context(|| format!("the Postgres URL {} is not a Postgres URL", redact(url)))?;
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => bail!("the Postgres URL {} must name a TCP host", redact(url)),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    Ok((host, port))
}

/// `url` with its host and port replaced by `host_port` (user, password, database and parameters kept).
pub fn url_with_host_port(url: &str, host_port: &str) -> String {
    let scheme_end = url.find("://").map(|i| i + 3).unwrap_or(0);
    let (head, tail) = url.split_at(scheme_end);
    let end = tail.find(['/', '?']).unwrap_or(tail.len());
    let authority = &tail[..end];
    let userinfo = authority.rfind('@').map(|at| &authority[..=at]).unwrap_or("");
    format!("{head}{userinfo}{host_port}{}", &tail[end..])
}

/// The address a proxy's `listen` gives clients: a wildcard host means the Toxiproxy's own host.
fn client_address(listen: &str, toxiproxy_url: &str) -> String {
    let (host, port) = listen.rsplit_once(':').unwrap_or((listen, ""));
    if matches!(host, "0.0.0.0" | "[::]" | "::" | "") {
        let api_host = toxiproxy_url
            .split("://")
            .nth(1)
            .unwrap_or(toxiproxy_url)
            .split(['/', ':'])
            .next()
            .unwrap_or("127.0.0.1");
        format!("{api_host}:{port}")
    } else {
        listen.to_string()
    }
}

/// Endpoints of a checked external environment.
pub struct External {
    /// Postgres admin URL through the `postgres` proxy.
    pub postgres_url: String,
    /// Postgres admin URL, direct.
    pub postgres_direct_url: String,
    /// Kafka bootstrap through the `kafka-N` proxies (the direct one when there are none).
    pub kafka_bootstrap: String,
    /// Kafka bootstrap, direct.
    pub kafka_direct_bootstrap: String,
    /// Names of the Kafka proxies (empty: Kafka network faults are not available).
    pub kafka_proxies: Vec<String>,
    /// Number of Kafka brokers.
    pub brokers: usize,
    /// Client of the Toxiproxy in use.
    pub toxiproxy: ToxiproxyClient,
    /// The Toxiproxy dualcheck started (no `--toxiproxy-url`).
    pub own_toxiproxy: Option<ManagedProcess>,
}

/// Checks that every service answers, sets up (or finds) the proxies, heals
/// every fault; the local Toxiproxy, when one is started, logs under `run_dir`.
pub async fn connect(cfg: &ExternalConfig, run_dir: &Path, timeout: Duration) -> Result<External> {
    let shown = redact(&cfg.postgres_url);
    // Services that are up answer at once: a wrong address should not keep the user waiting.
    let timeout = timeout.min(Duration::from_secs(20));
    super::postgres::wait_ready(&cfg.postgres_url, None, timeout)
        .await
        .map_err(|e| anyhow::anyhow!(redact(&format!("{e:#}"))))
        .with_context(|| format!("the external Postgres at {shown} does not answer"))?;
    let b = cfg.kafka_bootstrap.clone();
    let broker_ids = tokio::task::spawn_blocking(move || super::kafka::broker_ids(&b, timeout))
        .await?
        .with_context(|| format!("the external Kafka at {} does not answer", cfg.kafka_bootstrap))?;
    let brokers = broker_ids.len().max(1);
    let (toxiproxy, own_toxiproxy, postgres_url, kafka_bootstrap, kafka_proxies) = match &cfg.toxiproxy_url {
        Some(api) => {
            let toxiproxy = ToxiproxyClient::new(api)?;
            toxiproxy
                .wait_ready(timeout)
                .await
                .with_context(|| format!("the Toxiproxy at {} does not answer", redact(api)))?;
            let pg = toxiproxy.proxy(POSTGRES_PROXY).await.with_context(|| {
                format!(
                    "the Toxiproxy at {} has no proxy named `{POSTGRES_PROXY}` (create it in front of your Postgres, \
                     or leave --toxiproxy-url out and dualcheck starts a Toxiproxy of its own)",
                    redact(api)
                )
            })?;
            let postgres_url = url_with_host_port(&cfg.postgres_url, &client_address(&pg.listen, api));
            let mut kafka_proxies = Vec::new();
            let mut proxied = Vec::new();
            for i in 0..brokers {
                match toxiproxy.proxy(&super::toxiproxy::kafka_proxy_name(i)).await {
                    Ok(p) => {
                        proxied.push(client_address(&p.listen, api));
                        kafka_proxies.push(p.name);
                    }
                    Err(_) => break,
                }
            }
            let kafka_bootstrap = if kafka_proxies.len() == brokers {
                proxied.join(",")
            } else {
                kafka_proxies.clear();
                cfg.kafka_bootstrap.clone()
            };
            (toxiproxy, None, postgres_url, kafka_bootstrap, kafka_proxies)
        }
        None => {
            let paths = super::local::LocalPaths::discover(&super::cache::cache_dir())
                .context("the external backend without --toxiproxy-url starts a Toxiproxy of its own")?;
            let api_port = super::ports::free_port()?;
            let spec = ProcessSpec::new(
                "toxiproxy",
                &paths.toxiproxy,
                run_dir.join(record::run_dir::TOXIPROXY_LOG),
            )
            .args(["-host", "127.0.0.1", "-port", &api_port.to_string()]);
            let process = ManagedProcess::start(spec)?;
            let toxiproxy = ToxiproxyClient::new(&format!("http://127.0.0.1:{api_port}"))?;
            toxiproxy
                .wait_ready(Duration::from_secs(10))
                .await
                .context("the local Toxiproxy in front of the external services did not come up")?;
            let (host, port) = postgres_host_port(&cfg.postgres_url)?;
            let listen = format!("127.0.0.1:{}", super::ports::free_port()?);
            toxiproxy
                .create_proxy(POSTGRES_PROXY, &listen, &format!("{host}:{port}"))
                .await?;
            let postgres_url = url_with_host_port(&cfg.postgres_url, &listen);
            (
                toxiproxy,
                Some(process),
                postgres_url,
                cfg.kafka_bootstrap.clone(),
                Vec::new(),
            )
        }
    };
    toxiproxy.heal_all().await?;
    super::postgres::wait_ready(&postgres_url, None, timeout)
        .await
        .map_err(|e| anyhow::anyhow!(redact(&format!("{e:#}"))))
        .context("the external Postgres through its Toxiproxy proxy does not answer")?;
    Ok(External {
        postgres_url,
        postgres_direct_url: cfg.postgres_url.clone(),
        kafka_bootstrap,
        kafka_direct_bootstrap: cfg.kafka_bootstrap.clone(),
        kafka_proxies,
        brokers,
        toxiproxy,
        own_toxiproxy,
    })
}

/// A fresh run id: 8 hex digits, the suffix of the names a run creates on an external cluster.
pub fn new_run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://user:s3cret@db.example:5432/app?sslmode=require"),
            "postgres://user:***@db.example:5432/app?sslmode=require"
        );
        assert_eq!(redact("postgres://user@h/db"), "postgres://user@h/db");
        assert_eq!(
            redact("a postgresql://u:p%40ss@h:1/x and http://t:pw@127.0.0.1:8474 end"),
            "a postgresql://u:***@h:1/x and http://t:***@127.0.0.1:8474 end"
        );
        assert_eq!(redact("host=h password=s3cret user=u"), "host=h password=*** user=u");
        assert_eq!(redact("database.password=s3cret\nx=1"), "database.password=***\nx=1");
        assert_eq!(redact(r#"{"password": "s3cret"}"#), r#"{"password": "***"}"#);
        assert_eq!(redact("no password here"), "no password here");
    }

    #[test]
    fn hosts_are_replaced_and_wildcards_resolved() {
        assert_eq!(
            url_with_host_port("postgres://u:p@db:5432/app?x=1", "127.0.0.1:9"),
            "postgres://u:p@127.0.0.1:9/app?x=1"
        );
        assert_eq!(url_with_host_port("postgres://db:5432", "h:1"), "postgres://h:1");
        assert_eq!(
            client_address("0.0.0.0:15432", "http://tp.example:8474"),
            "tp.example:15432"
        );
        assert_eq!(client_address("127.0.0.1:7", "http://tp:8474"), "127.0.0.1:7");
    }

    #[test]
    fn process_faults_and_unproxied_kafka_faults_are_refused() {
        let mut cfg = ExternalConfig {
            postgres_url: "postgres://u:p@h/db".into(),
            kafka_bootstrap: "h:9092".into(),
            toxiproxy_url: None,
        };
        let e = cfg
            .check_faults(&[Fault::PgKill, Fault::PgPartition])
            .unwrap_err()
            .to_string();
        assert!(e.contains("pg-kill") && e.contains("--fault-cmd"), "{e}");
        assert!(cfg.check_faults(&[Fault::PgPartition, Fault::RelayKill]).is_ok());
        let e = cfg.check_faults(&[Fault::KafkaPartition]).unwrap_err().to_string();
        assert!(e.contains("kafka-partition") && e.contains("advertise"), "{e}");
        cfg.toxiproxy_url = Some("http://127.0.0.1:8474".into());
        assert!(cfg.check_faults(&[Fault::KafkaPartition]).is_ok());
        assert!(!format!("{cfg:?}").contains(":p@"));
    }
}
