//! Toxiproxy: an async client for its HTTP API (proxies, toxics, heal-all).
//!
//! Why not the `toxiproxy_rust` crate: it is old, uses a blocking HTTP client
//! and panics when called from inside a tokio runtime, where all of the harness
//! runs. The API is a handful of JSON endpoints, so we call it with `reqwest`
//! (plain HTTP on loopback; no TLS backend is compiled in).

use super::ready::wait_until_ready;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Duration;

/// Which direction of a proxied connection a toxic acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Server to client.
    Downstream,
    /// Client to server.
    Upstream,
}

/// A toxic to add to a proxy; its Toxiproxy type name is the variant's in snake_case.
#[derive(Clone, Debug, PartialEq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Toxic {
    /// Adds `latency_ms` (± `jitter_ms`) to data going through.
    Latency {
        /// Delay in milliseconds.
        latency_ms: u64,
        /// Random variation in milliseconds.
        jitter_ms: u64,
    },
    /// Limits throughput to `rate_kb_s` KB/s.
    Bandwidth {
        /// Rate in KB/s.
        rate_kb_s: u64,
    },
    /// Stops all data and closes the connection after `timeout_ms` (0 = never closes).
    Timeout {
        /// Milliseconds before the connection is closed (0 = hold forever).
        timeout_ms: u64,
    },
    /// Resets connections (TCP RST) after `timeout_ms`.
    ResetPeer {
        /// Milliseconds before the reset.
        timeout_ms: u64,
    },
}

impl Toxic {
    /// Every byte dropped and the connection left open until the toxic is
    /// removed (Toxiproxy's `timeout` toxic with timeout 0 drops what it
    /// reads). On the downstream stream alone, requests still reach the
    /// server and take effect while their replies are lost: the lost
    /// acknowledgement of a COMMIT or a produce.
    pub const DROP: Toxic = Toxic::Timeout { timeout_ms: 0 };

    /// Toxiproxy's type name.
    pub fn type_name(&self) -> &'static str {
        self.into()
    }

    fn attributes(&self) -> Value {
        match *self {
            Toxic::Latency { latency_ms, jitter_ms } => json!({"latency": latency_ms, "jitter": jitter_ms}),
            Toxic::Bandwidth { rate_kb_s } => json!({"rate": rate_kb_s}),
            Toxic::Timeout { timeout_ms } => json!({"timeout": timeout_ms}),
            Toxic::ResetPeer { timeout_ms } => json!({"timeout": timeout_ms}),
        }
    }
}

/// A proxy as the API reports it.
#[derive(Clone, Debug, Deserialize)]
pub struct ProxyInfo {
    /// Proxy name.
    pub name: String,
    /// `host:port` it listens on.
    pub listen: String,
    /// `host:port` it forwards to.
    pub upstream: String,
    /// False while the proxy is down.
    pub enabled: bool,
    /// Active toxics (raw JSON).
    #[serde(default)]
    pub toxics: Vec<Value>,
}

/// Async client for one Toxiproxy server's HTTP API.
#[derive(Clone, Debug)]
pub struct ToxiproxyClient {
    base: String,
    http: reqwest::Client,
}

impl ToxiproxyClient {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:8474`).
    pub fn new(base: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .context("building the HTTP client for Toxiproxy")?;
        Ok(ToxiproxyClient {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// The API's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Result<reqwest::Response> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("Toxiproxy {what}: API at {} unreachable", self.base))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            bail!("Toxiproxy {what}: HTTP {status}: {body}");
        }
        Ok(resp)
    }

    /// The server's version string (also the readiness probe).
    pub async fn version(&self) -> Result<String> {
        let resp = self
            .send(self.http.get(format!("{}/version", self.base)), "version")
            .await?;
        Ok(resp.text().await?.trim().to_string())
    }

    /// Creates (or replaces) proxy `name` listening on `listen` and forwarding to `upstream`.
    pub async fn create_proxy(&self, name: &str, listen: &str, upstream: &str) -> Result<()> {
        let _ = self.http.delete(format!("{}/proxies/{name}", self.base)).send().await;
        let body = json!({"name": name, "listen": listen, "upstream": upstream, "enabled": true});
        self.send(
            self.http.post(format!("{}/proxies", self.base)).json(&body),
            &format!("create proxy {name}"),
        )
        .await?;
        Ok(())
    }

    /// Details of proxy `name`.
    pub async fn proxy(&self, name: &str) -> Result<ProxyInfo> {
        let resp = self
            .send(
                self.http.get(format!("{}/proxies/{name}", self.base)),
                &format!("get proxy {name}"),
            )
            .await?;
        Ok(resp.json().await?)
    }

    async fn set_enabled(&self, name: &str, enabled: bool) -> Result<()> {
        let what = if enabled { "up" } else { "down" };
        self.send(
            self.http
                .post(format!("{}/proxies/{name}", self.base))
                .json(&json!({"enabled": enabled})),
            &format!("{what} proxy {name}"),
        )
        .await?;
        Ok(())
    }

    /// Takes proxy `name` down: closes its connections and refuses new ones.
    pub async fn down(&self, name: &str) -> Result<()> {
        self.set_enabled(name, false).await
    }

    /// Brings proxy `name` back up.
    pub async fn up(&self, name: &str) -> Result<()> {
        self.set_enabled(name, true).await
    }

    /// Adds `toxic` on proxy `proxy` in direction `stream` under the name `toxic_name`.
    pub async fn add_toxic(&self, proxy: &str, toxic_name: &str, stream: Stream, toxic: &Toxic) -> Result<()> {
        let body = json!({
            "name": toxic_name,
            "type": toxic.type_name(),
            "stream": stream,
            "toxicity": 1.0,
            "attributes": toxic.attributes(),
        });
        self.send(
            self.http
                .post(format!("{}/proxies/{proxy}/toxics", self.base))
                .json(&body),
            &format!("add {} toxic {toxic_name} to {proxy}", toxic.type_name()),
        )
        .await?;
        Ok(())
    }

    /// Removes toxic `toxic_name` from proxy `proxy`.
    pub async fn remove_toxic(&self, proxy: &str, toxic_name: &str) -> Result<()> {
        self.send(
            self.http
                .delete(format!("{}/proxies/{proxy}/toxics/{toxic_name}", self.base)),
            &format!("remove toxic {toxic_name} from {proxy}"),
        )
        .await?;
        Ok(())
    }

    /// Heals everything: every proxy enabled, every toxic removed (`POST /reset`).
    pub async fn heal_all(&self) -> Result<()> {
        self.send(self.http.post(format!("{}/reset", self.base)), "reset (heal all)")
            .await?;
        Ok(())
    }

    /// Waits until the API answers, up to `timeout`; returns its version.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<String> {
        let what = format!("the Toxiproxy API at {}", self.base);
        wait_until_ready(&what, timeout, Duration::from_millis(50), String::new, || {
            self.version()
        })
        .await
    }
}

/// Heals all faults synchronously, for `Drop` paths that cannot `.await`: runs
/// the request on a short-lived thread with its own runtime (safe to call from
/// inside a tokio runtime).
pub fn heal_all_blocking(client: &ToxiproxyClient) -> Result<()> {
    let client = client.clone();
    std::thread::spawn(move || -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(client.heal_all())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("heal-all thread panicked"))?
}

/// Proxy name of Kafka node `i`.
pub fn kafka_proxy_name(i: usize) -> String {
    format!("kafka-{i}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toxic_type_names_are_toxiproxys() {
        let names: Vec<&str> = [
            Toxic::Latency {
                latency_ms: 1,
                jitter_ms: 0,
            },
            Toxic::Bandwidth { rate_kb_s: 1 },
            Toxic::Timeout { timeout_ms: 1 },
            Toxic::ResetPeer { timeout_ms: 1 },
        ]
        .iter()
        .map(Toxic::type_name)
        .collect();
        assert_eq!(names, ["latency", "bandwidth", "timeout", "reset_peer"]);
    }
}
