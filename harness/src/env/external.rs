//! The `external` backend: services the user already runs (their own Postgres,
//! Kafka cluster and Toxiproxy), given by address. The harness does not own
//! those processes, so process faults (kill, pause) are refused; network faults
//! work through the user's Toxiproxy, whose proxies must already exist (or are
//! created here when `create_proxies` lists their upstreams).

use super::toxiproxy::ToxiproxyClient;
use anyhow::{Context, Result};
use std::time::Duration;

/// Addresses of user-run services.
#[derive(Clone, Debug)]
pub struct ExternalConfig {
    /// Postgres URL through the user's Toxiproxy (used by implementations).
    pub postgres_url: String,
    /// Postgres URL without proxy (harness's final read).
    pub postgres_direct_url: String,
    /// Kafka bootstrap through Toxiproxy (brokers must advertise the proxies).
    pub kafka_bootstrap: String,
    /// Kafka bootstrap without proxy (observer).
    pub kafka_direct_bootstrap: String,
    /// Toxiproxy API URL, e.g. `http://127.0.0.1:8474`.
    pub toxiproxy_url: String,
    /// Name of the Postgres proxy.
    pub postgres_proxy: String,
    /// Names of the Kafka proxies, one per broker.
    pub kafka_proxies: Vec<String>,
}

impl ExternalConfig {
    /// Reads the configuration from `DUALCHECK_PG_URL`, `DUALCHECK_PG_DIRECT_URL`,
    /// `DUALCHECK_KAFKA_BOOTSTRAP`, `DUALCHECK_KAFKA_DIRECT_BOOTSTRAP`,
    /// `DUALCHECK_TOXIPROXY_URL`, and optionally `DUALCHECK_PG_PROXY` (default
    /// `postgres`) and `DUALCHECK_KAFKA_PROXIES` (comma-separated, default `kafka-0`).
    pub fn from_env() -> Result<Self> {
        let var = |k: &str| std::env::var(k).with_context(|| format!("external environment: set {k}"));
        Ok(ExternalConfig {
            postgres_url: var("DUALCHECK_PG_URL")?,
            postgres_direct_url: var("DUALCHECK_PG_DIRECT_URL")?,
            kafka_bootstrap: var("DUALCHECK_KAFKA_BOOTSTRAP")?,
            kafka_direct_bootstrap: var("DUALCHECK_KAFKA_DIRECT_BOOTSTRAP")?,
            toxiproxy_url: var("DUALCHECK_TOXIPROXY_URL")?,
            postgres_proxy: std::env::var("DUALCHECK_PG_PROXY").unwrap_or_else(|_| "postgres".into()),
            kafka_proxies: std::env::var("DUALCHECK_KAFKA_PROXIES")
                .unwrap_or_else(|_| "kafka-0".into())
                .split(',')
                .map(|s| s.trim().to_string())
                .collect(),
        })
    }
}

/// Endpoints of a checked external environment.
pub struct External {
    /// See [`ExternalConfig::postgres_url`].
    pub postgres_url: String,
    /// See [`ExternalConfig::postgres_direct_url`].
    pub postgres_direct_url: String,
    /// See [`ExternalConfig::kafka_bootstrap`].
    pub kafka_bootstrap: String,
    /// See [`ExternalConfig::kafka_direct_bootstrap`].
    pub kafka_direct_bootstrap: String,
    /// Client of the user's Toxiproxy.
    pub toxiproxy: ToxiproxyClient,
}

/// Checks that every service answers (and that the named proxies exist), then heals all faults.
pub async fn connect(cfg: &ExternalConfig, timeout: Duration) -> Result<External> {
    let toxiproxy = ToxiproxyClient::new(&cfg.toxiproxy_url)?;
    toxiproxy
        .wait_ready(timeout)
        .await
        .context("external Toxiproxy (DUALCHECK_TOXIPROXY_URL)")?;
    for name in std::iter::once(&cfg.postgres_proxy).chain(&cfg.kafka_proxies) {
        toxiproxy
            .proxy(name)
            .await
            .with_context(|| format!("external Toxiproxy has no proxy named {name}; create it first"))?;
    }
    toxiproxy.heal_all().await?;
    super::postgres::wait_ready(&cfg.postgres_direct_url, None, timeout).await?;
    super::postgres::wait_ready(&cfg.postgres_url, None, timeout).await?;
    for bootstrap in [&cfg.kafka_direct_bootstrap, &cfg.kafka_bootstrap] {
        let b = bootstrap.clone();
        tokio::task::spawn_blocking(move || super::kafka::broker_ids(&b, timeout))
            .await?
            .with_context(|| format!("external Kafka at {bootstrap}"))?;
    }
    Ok(External {
        postgres_url: cfg.postgres_url.clone(),
        postgres_direct_url: cfg.postgres_direct_url.clone(),
        kafka_bootstrap: cfg.kafka_bootstrap.clone(),
        kafka_direct_bootstrap: cfg.kafka_direct_bootstrap.clone(),
        toxiproxy,
    })
}
