//! `dualcheck-services` (`dualcheck::env`). Environments: the real
//! PostgreSQL, Kafka and Toxiproxy a run talks to, behind one interface,
//! [`Environment`], with three backends:
//!
//! - `local` (default, no Docker): child processes of the harness ([`local`]);
//! - `external`: services the user already runs, given by URL ([`external`]);
//! - `testcontainers` (cargo feature `testcontainers`): containers ([`testcontainers`]).
//!
//! Which one a command uses, and the external services' addresses, come from
//! flags, `DUALCHECK_*` variables and `dualcheck.toml` ([`settings`];
//! docs/backends.md).
//!
//! Every client link goes through a Toxiproxy proxy: `postgres` and, per Kafka
//! node, `kafka-N`. Implementations get the proxied endpoints
//! ([`Environment::postgres_url`], [`Environment::kafka_bootstrap`]); the
//! observer and the harness's final read use the direct ones.
//!
//! Teardown always happens: [`Environment::shutdown`] (async, reports errors),
//! `Drop` (normal exit, error, panic unwinding), the Ctrl-C/SIGTERM handler
//! ([`process::install_signal_handler`]) and, when the harness itself is
//! SIGKILLed, the children's parent-death signal ([`process`]).
//!
//! What this crate may use: of the workspace, `dualcheck-record` only (the
//! run directory's file names, redaction and quoting, the fault catalogue);
//! it knows nothing of runs, implementations, the nemesis or reports, which
//! sit above it and call it.

#![warn(missing_docs)]

pub mod cache;
pub mod external;
pub mod kafka;
pub mod local;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod provision;
pub mod ready;
pub mod settings;
#[cfg(feature = "testcontainers")]
pub mod testcontainers;
pub mod toxiproxy;

use anyhow::{bail, Context, Result};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use toxiproxy::ToxiproxyClient;

/// Which backend provides the services.
#[derive(Clone, Debug)]
pub enum BackendKind {
    /// Child processes of the harness (default).
    Local,
    /// Services the user runs, at the given addresses.
    External(external::ExternalConfig),
    /// Docker containers via testcontainers (cargo feature `testcontainers`).
    Testcontainers,
}

impl BackendKind {
    /// The backend's name (`local`, `external`, `testcontainers`).
    pub fn name(&self) -> &'static str {
        match self {
            BackendKind::Local => "local",
            BackendKind::External(_) => "external",
            BackendKind::Testcontainers => "testcontainers",
        }
    }

    /// Refuses, before anything starts, what this backend cannot do: a
    /// testcontainers backend without the cargo feature or without Docker,
    /// faults the external backend cannot inject.
    pub fn check_usable(&self, faults: &[record::Fault]) -> Result<()> {
        match self {
            BackendKind::Local => Ok(()),
            BackendKind::External(cfg) => cfg.check_faults(faults),
            BackendKind::Testcontainers => {
                if !cfg!(feature = "testcontainers") {
                    bail!(
                        "this dualcheck was built without the `testcontainers` cargo feature; rebuild with \
                         `cargo build --features testcontainers` (and Docker running), or use --backend local or external"
                    );
                }
                let docker_host = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
                if docker_host.is_none() && !std::path::Path::new("/var/run/docker.sock").exists() {
                    bail!(
                        "the testcontainers backend needs Docker: no Docker daemon found (DOCKER_HOST is unset and \
                         /var/run/docker.sock does not exist); start Docker, or use --backend local or external"
                    );
                }
                Ok(())
            }
        }
    }
}

/// How to build an environment.
#[derive(Clone, Debug)]
pub struct EnvOptions {
    /// Backend.
    pub backend: BackendKind,
    /// Number of Kafka nodes: 1, or 3 for leader-failover faults (local and testcontainers).
    pub brokers: usize,
    /// Directory receiving every service's data and log.
    pub run_dir: PathBuf,
    /// How long each service may take to become ready.
    pub timeout: Duration,
}

impl EnvOptions {
    /// Local backend, `brokers` Kafka nodes, a fresh run directory under the temp dir.
    pub fn local(brokers: usize) -> Result<Self> {
        Ok(EnvOptions {
            backend: BackendKind::Local,
            brokers,
            run_dir: record::run_dir::RunDir::create(None)?.into_path(),
            timeout: Duration::from_secs(60),
        })
    }
}

/// A service the harness can fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// The PostgreSQL server.
    Postgres,
    /// Kafka node N (node id = broker id).
    Kafka(usize),
    /// The Toxiproxy server.
    Toxiproxy,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Service::Postgres => write!(f, "postgres"),
            Service::Kafka(i) => write!(f, "kafka-{i}"),
            Service::Toxiproxy => write!(f, "toxiproxy"),
        }
    }
}

enum Backend {
    Local(Box<local::LocalServices>),
    /// The user's services; the Toxiproxy dualcheck started in front of them, if any.
    External(Option<Box<process::ManagedProcess>>),
    #[cfg(feature = "testcontainers")]
    Testcontainers(Box<testcontainers::TcServices>),
}

/// A running set of services with their endpoints, proxies and fault controls.
pub struct Environment {
    /// Run directory (data and logs of local services).
    pub run_dir: PathBuf,
    /// Postgres URL through the `postgres` proxy (for implementations).
    pub postgres_url: String,
    /// Postgres URL without proxy (harness's own final read, set-up).
    pub postgres_direct_url: String,
    /// Kafka bootstrap through the `kafka-N` proxies (for implementations).
    pub kafka_bootstrap: String,
    /// Kafka bootstrap on the unproxied listener (for the observer).
    pub kafka_direct_bootstrap: String,
    /// Toxiproxy API client.
    pub toxiproxy: ToxiproxyClient,
    /// Name of the Postgres proxy (`postgres`).
    pub postgres_proxy: String,
    /// Names of the Kafka proxies (`kafka-0`, ...), one per node.
    pub kafka_proxies: Vec<String>,
    kafka_nodes: usize,
    run_id: Option<String>,
    backend: Backend,
    shut_down: bool,
}

impl Environment {
    /// Starts (or connects to) the services and returns once all are ready and
    /// every proxy is healed. Installs the Ctrl-C handler.
    pub async fn start(opts: EnvOptions) -> Result<Self> {
        process::install_signal_handler();
        std::fs::create_dir_all(&opts.run_dir)
            .with_context(|| format!("creating run directory {}", opts.run_dir.display()))?;
        match &opts.backend {
            BackendKind::Local => {
                let started = local::start(&opts.run_dir, opts.brokers, opts.timeout).await?;
                let s = &started.services;
                Ok(Environment {
                    run_dir: opts.run_dir.clone(),
                    postgres_url: postgres::url(started.pg_proxy_port),
                    postgres_direct_url: postgres::url(s.postgres.port),
                    kafka_bootstrap: kafka::proxied_bootstrap(&s.kafka.ports),
                    kafka_direct_bootstrap: kafka::direct_bootstrap(&s.kafka.ports),
                    toxiproxy: started.toxiproxy,
                    postgres_proxy: "postgres".into(),
                    kafka_proxies: (0..opts.brokers).map(toxiproxy::kafka_proxy_name).collect(),
                    kafka_nodes: opts.brokers,
                    run_id: None,
                    backend: Backend::Local(Box::new(started.services)),
                    shut_down: false,
                })
            }
            BackendKind::External(cfg) => {
                let e = external::connect(cfg, &opts.run_dir, opts.timeout).await?;
                Ok(Environment {
                    run_dir: opts.run_dir.clone(),
                    postgres_url: e.postgres_url,
                    postgres_direct_url: e.postgres_direct_url,
                    kafka_bootstrap: e.kafka_bootstrap,
                    kafka_direct_bootstrap: e.kafka_direct_bootstrap,
                    toxiproxy: e.toxiproxy,
                    postgres_proxy: external::POSTGRES_PROXY.into(),
                    kafka_proxies: e.kafka_proxies,
                    kafka_nodes: e.brokers,
                    run_id: Some(external::new_run_id()),
                    backend: Backend::External(e.own_toxiproxy.map(Box::new)),
                    shut_down: false,
                })
            }
            #[cfg(feature = "testcontainers")]
            BackendKind::Testcontainers => testcontainers::start(&opts).await,
            #[cfg(not(feature = "testcontainers"))]
            BackendKind::Testcontainers => bail!(
                "this dualcheck was built without the `testcontainers` feature; \
                 rebuild with `cargo build --features testcontainers` or use the local backend"
            ),
        }
    }

    /// Number of Kafka nodes.
    pub fn brokers(&self) -> usize {
        self.kafka_nodes
    }

    /// The id the names of what runs create carry, on services shared with
    /// others (the external backend): `dualcheck_<id>`, `orders_<id>`. `None`
    /// on services of dualcheck's own.
    pub fn run_id(&self) -> Option<&str> {
        self.run_id.as_deref()
    }

    /// Whether the services are the user's (the external backend).
    pub fn is_external(&self) -> bool {
        matches!(self.backend, Backend::External(_))
    }

    /// Proxy name of Kafka node `i`.
    pub fn kafka_proxy(&self, i: usize) -> &str {
        &self.kafka_proxies[i]
    }

    fn local(&self, what: &str) -> Result<&local::LocalServices> {
        match &self.backend {
            Backend::Local(s) => Ok(s),
            Backend::External(_) => {
                bail!("{what}: not possible with the external backend (the harness does not own those processes; use a custom fault command)")
            }
            #[cfg(feature = "testcontainers")]
            Backend::Testcontainers(_) => bail!("{what}: not a local process (testcontainers backend)"),
        }
    }

    fn process(&self, service: Service) -> Result<&process::ManagedProcess> {
        let s = self.local(&format!("controlling {service}"))?;
        Ok(match service {
            Service::Postgres => &s.postgres.process,
            Service::Kafka(i) => s
                .kafka
                .nodes
                .get(i)
                .with_context(|| format!("no Kafka node {i} (brokers: {})", s.kafka.nodes.len()))?,
            Service::Toxiproxy => &s.toxiproxy,
        })
    }

    /// Process id (= group id) of a local service, `None` while killed.
    pub fn pid(&self, service: Service) -> Result<Option<u32>> {
        Ok(self.process(service)?.pid())
    }

    /// Log file of a local service.
    pub fn log_path(&self, service: Service) -> Result<PathBuf> {
        Ok(self.process(service)?.log_path().to_path_buf())
    }

    /// SIGKILLs a service (its whole process group) and leaves it down.
    pub async fn kill(&self, service: Service) -> Result<()> {
        #[cfg(feature = "testcontainers")]
        if let Backend::Testcontainers(tc) = &self.backend {
            return tc.kill(service).await;
        }
        let p = self.process(service)?;
        // Blocks for the few ms SIGKILL takes (block_in_place would panic on a current-thread runtime).
        p.kill()
    }

    /// Starts a killed service again on its data and waits until it is ready.
    pub async fn restart(&self, service: Service, timeout: Duration) -> Result<()> {
        #[cfg(feature = "testcontainers")]
        if let Backend::Testcontainers(tc) = &self.backend {
            return tc.restart(service, timeout).await;
        }
        let s = self.local("restart")?;
        self.process(service)?.restart()?;
        match service {
            Service::Postgres => s.postgres.wait_ready(timeout).await,
            Service::Kafka(i) => s.kafka.wait_brokers(&[i], timeout).await,
            Service::Toxiproxy => {
                bail!("restarting Toxiproxy would lose its proxies; not supported")
            }
        }
    }

    /// SIGKILL then restart, waiting until ready (data intact: nothing is wiped).
    pub async fn kill_restart(&self, service: Service, timeout: Duration) -> Result<()> {
        self.kill(service).await?;
        self.restart(service, timeout).await
    }

    /// Freezes a service (SIGSTOP on its process group, or `docker pause`).
    pub async fn pause(&self, service: Service) -> Result<()> {
        #[cfg(feature = "testcontainers")]
        if let Backend::Testcontainers(tc) = &self.backend {
            return tc.pause(service, true).await;
        }
        self.process(service)?.pause()
    }

    /// Resumes a paused service (SIGCONT).
    pub async fn resume(&self, service: Service) -> Result<()> {
        #[cfg(feature = "testcontainers")]
        if let Backend::Testcontainers(tc) = &self.backend {
            return tc.pause(service, false).await;
        }
        self.process(service)?.resume()
    }

    /// Every live process this environment started, as (service, pid), including
    /// children outside the services' process groups; for leak checks.
    pub fn all_pids(&self) -> Vec<(String, i32)> {
        match &self.backend {
            Backend::Local(s) => s
                .processes()
                .iter()
                .flat_map(|p| p.all_pids().into_iter().map(move |pid| (p.name().to_string(), pid)))
                .collect(),
            Backend::External(Some(p)) => p
                .all_pids()
                .into_iter()
                .map(|pid| (p.name().to_string(), pid))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Registers the drop of a run's `database` and `topic` for an interrupt
    /// (Ctrl-C, SIGTERM) on services shared with others (the external
    /// backend); returns the key to unregister once [`Environment::drop_run_data`] ran.
    pub fn drop_on_interrupt(&self, database: &str, topic: &str) -> Option<u64> {
        if !self.is_external() {
            return None;
        }
        let (admin, kafka, database, topic) = (
            self.postgres_direct_url.clone(),
            self.kafka_direct_bootstrap.clone(),
            database.to_string(),
            topic.to_string(),
        );
        Some(process::register_interrupt_cleanup(move || async move {
            match provision::drop_run(&admin, &kafka, &database, &topic).await {
                Ok(()) => eprintln!("dualcheck: dropped database {database} and topic {topic}"),
                Err(e) => eprintln!("dualcheck: dropping database {database} and topic {topic}: {e:#}"),
            }
        }))
    }

    /// Leaves every service as it started, for the next run of a sweep: every
    /// paused service resumed (SIGCONT), every killed or exited one restarted
    /// and ready, every proxy up with no toxic. Returns what it had to repair
    /// (empty: everything was healthy).
    pub async fn restore(&self, timeout: Duration) -> Result<Vec<String>> {
        let mut repaired = Vec::new();
        if let Backend::Local(s) = &self.backend {
            let services = std::iter::once(Service::Postgres).chain((0..s.kafka.nodes.len()).map(Service::Kafka));
            for service in services {
                let p = self.process(service)?;
                if p.pid().is_some() {
                    // SIGCONT is harmless on a running process and ends a pause left behind.
                    let _ = p.resume();
                }
                if p.check_alive().is_err() {
                    self.restart(service, timeout)
                        .await
                        .with_context(|| format!("restoring {service} for the next run"))?;
                    repaired.push(format!("{service} restarted"));
                }
            }
            s.postgres.wait_ready(timeout).await?;
            let all: Vec<usize> = (0..s.kafka.nodes.len()).collect();
            s.kafka.wait_brokers(&all, timeout).await?;
        }
        self.toxiproxy
            .heal_all()
            .await
            .context("healing every proxy for the next run")?;
        Ok(repaired)
    }

    /// Heals every network fault: all proxies up, all toxics removed.
    pub async fn heal_all(&self) -> Result<()> {
        self.toxiproxy.heal_all().await
    }

    /// [`Environment::shutdown`] of services held by several (a run's tasks, a
    /// sweep's runs) once they are done with them; a failure is warned of, not
    /// returned. Still shared: it ends when the last holder drops it.
    pub async fn shut_down_shared(services: std::sync::Arc<Environment>) {
        match std::sync::Arc::try_unwrap(services) {
            Ok(mut services) => {
                if let Err(e) = services.shutdown().await {
                    tracing::warn!("teardown: {e:#}");
                }
            }
            Err(_) => tracing::warn!("teardown: the environment is still shared; it ends when dropped"),
        }
    }

    /// Tears down: heals every fault, then ends every service this environment
    /// started (local: SIGKILL of each process group, waiting until gone;
    /// testcontainers: containers removed; external: only the heal).
    pub async fn shutdown(&mut self) -> Result<()> {
        if self.shut_down {
            return Ok(());
        }
        self.shut_down = true;
        let heal = self.toxiproxy.heal_all().await;
        match std::mem::replace(&mut self.backend, Backend::External(None)) {
            Backend::Local(s) => {
                s.kill_all()?;
                drop(s);
                // Toxiproxy is gone with its toxics; a failed heal does not matter then.
                Ok(())
            }
            Backend::External(own) => match own {
                // dualcheck's own Toxiproxy goes, and its proxies with it.
                Some(p) => p.kill(),
                None => heal.context("healing faults on the external Toxiproxy at teardown"),
            },
            #[cfg(feature = "testcontainers")]
            Backend::Testcontainers(tc) => {
                drop(tc);
                Ok(())
            }
        }
    }
}

impl Drop for Environment {
    fn drop(&mut self) {
        if self.shut_down {
            return;
        }
        self.shut_down = true;
        match &self.backend {
            // Killing the processes (LocalServices' own Drop) also drops every toxic.
            Backend::Local(s) => {
                if let Err(e) = s.kill_all() {
                    eprintln!("dualcheck: teardown: {e:#}");
                }
            }
            Backend::External(Some(p)) => {
                if let Err(e) = p.kill() {
                    eprintln!("dualcheck: teardown: {e:#}");
                }
            }
            Backend::External(None) => {
                if let Err(e) = toxiproxy::heal_all_blocking(&self.toxiproxy) {
                    eprintln!("dualcheck: teardown: healing faults: {e:#}");
                }
            }
            #[cfg(feature = "testcontainers")]
            Backend::Testcontainers(_) => {}
        }
    }
}

#[cfg(all(test, not(feature = "testcontainers")))]
mod tests {
    use super::*;

    #[test]
    fn testcontainers_without_the_feature_is_refused_by_name() {
        let e = BackendKind::Testcontainers.check_usable(&[]).unwrap_err().to_string();
        assert!(
            e.contains("`testcontainers` cargo feature") && e.contains("--features testcontainers"),
            "{e}"
        );
        assert!(BackendKind::Local.check_usable(&[record::Fault::PgKill]).is_ok());
        assert_eq!(BackendKind::Testcontainers.name(), "testcontainers");
    }
}
