//! The `local` backend: PostgreSQL, Kafka and Toxiproxy as child processes of
//! the harness, from Debian packages and the cache `ci/setup` fills.

use super::kafka::{LocalKafka, NodePorts};
use super::ports::{free_port, free_ports};
use super::postgres::LocalPostgres;
use super::process::{tail, ManagedProcess, ProcessSpec};
use super::toxiproxy::ToxiproxyClient;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the local backend's programs are.
#[derive(Clone, Debug)]
pub struct LocalPaths {
    /// Kafka broker classpath directory (`kafka/libs`).
    pub kafka_libs: PathBuf,
    /// Kafka Connect + Debezium classpath directory (`connect/libs`).
    pub connect_libs: PathBuf,
    /// The Toxiproxy server binary (`toxiproxy/bin/server`).
    pub toxiproxy: PathBuf,
    /// PostgreSQL's `bin` directory.
    pub pg_bin: PathBuf,
}

/// One prerequisite of the local backend and whether it is there.
#[derive(Debug)]
pub struct Prerequisite {
    /// What it is.
    pub name: &'static str,
    /// Where it was found, or what is missing and how to install it.
    pub status: Result<String, String>,
}

/// Checks every prerequisite of the local backend (nothing is started).
pub fn prerequisites(cache: &Path) -> Vec<Prerequisite> {
    let fix = "run `bash ci/setup` (or `dualcheck setup`)";
    let jars = |dir: PathBuf, what: &str| -> Result<String, String> {
        let n = std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "jar"))
                    .count()
            })
            .unwrap_or(0);
        if n > 0 {
            Ok(format!("{n} jars in {}", dir.display()))
        } else {
            Err(format!("{what} jars missing in {}: {fix}", dir.display()))
        }
    };
    let java_ok = std::process::Command::new(super::kafka::java())
        .arg("-version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let tp = cache.join("toxiproxy/bin/server");
    vec![
        Prerequisite {
            name: "postgresql",
            status: super::postgres::bin_dir()
                .map(|b| b.display().to_string())
                .map_err(|e| format!("{e:#}")),
        },
        Prerequisite {
            name: "postgres user",
            status: if super::process::is_root() {
                super::process::lookup_user("postgres")
                    .map(|_| "exists".into())
                    .map_err(|e| format!("{e:#}"))
            } else {
                Ok("not root: servers run as the current user".into())
            },
        },
        Prerequisite {
            name: "java",
            status: if java_ok {
                Ok(super::kafka::java().display().to_string())
            } else {
                Err("`java -version` failed: install Java 17+ (apt-get install openjdk-17-jre-headless) or set JAVA_HOME".into())
            },
        },
        Prerequisite {
            name: "kafka jars",
            status: jars(cache.join("kafka/libs"), "Kafka 4.4.0"),
        },
        Prerequisite {
            name: "connect jars",
            status: jars(cache.join("connect/libs"), "Kafka Connect + Debezium"),
        },
        Prerequisite {
            name: "toxiproxy",
            status: if tp.exists() {
                Ok(tp.display().to_string())
            } else {
                Err(format!("Toxiproxy server missing at {}: {fix}", tp.display()))
            },
        },
    ]
}

impl LocalPaths {
    /// Finds everything in `cache`, or fails listing what is missing and how to install it.
    pub fn discover(cache: &Path) -> Result<Self> {
        let missing: Vec<String> = prerequisites(cache)
            .into_iter()
            .filter(|p| p.name != "connect jars")
            .filter_map(|p| p.status.err().map(|e| format!("  - {}: {e}", p.name)))
            .collect();
        if !missing.is_empty() {
            bail!(
                "the local environment is not set up (cache: {}):\n{}\nrun `bash ci/setup` (set DUALCHECK_CACHE for another cache directory)",
                cache.display(),
                missing.join("\n")
            );
        }
        Ok(LocalPaths {
            kafka_libs: cache.join("kafka/libs"),
            connect_libs: cache.join("connect/libs"),
            toxiproxy: cache.join("toxiproxy/bin/server"),
            pg_bin: super::postgres::bin_dir()?,
        })
    }
}

/// The processes of a running local environment.
pub struct LocalServices {
    /// PostgreSQL.
    pub postgres: LocalPostgres,
    /// Kafka nodes.
    pub kafka: LocalKafka,
    /// The Toxiproxy server.
    pub toxiproxy: ManagedProcess,
    /// Paths used (e.g. to start Kafka Connect later).
    pub paths: LocalPaths,
}

/// What [`start`] returns: the services and their endpoints.
pub struct Started {
    /// The processes.
    pub services: LocalServices,
    /// Toxiproxy API client.
    pub toxiproxy: ToxiproxyClient,
    /// Postgres proxy listen port.
    pub pg_proxy_port: u16,
}

/// Starts Toxiproxy (and makes its proxies), PostgreSQL and `brokers` Kafka
/// nodes, the three at once: the ports are chosen first, so the brokers can
/// advertise their proxies' ports before the proxies exist (no client uses
/// them before every service is up); logs go under `run_dir`.
pub async fn start(run_dir: &Path, brokers: usize, timeout: Duration) -> Result<Started> {
    let paths = LocalPaths::discover(&super::cache::cache_dir())?;
    let api_port = free_port()?;
    let pg_port = free_port()?;
    let pg_proxy_port = free_port()?;
    let mut node_ports = Vec::new();
    for _ in 0..brokers {
        let p = free_ports(4)?;
        node_ports.push(NodePorts {
            proxied_bind: p[0],
            proxy: p[1],
            direct: p[2],
            controller: p[3],
        });
    }
    let toxiproxy = async {
        let tp_spec = ProcessSpec::new(
            "toxiproxy",
            &paths.toxiproxy,
            run_dir.join(record::run_dir::TOXIPROXY_LOG),
        )
        .args(["-host", "127.0.0.1", "-port", &api_port.to_string()]);
        let tp_process = ManagedProcess::start(tp_spec)?;
        let client = ToxiproxyClient::new(&format!("http://127.0.0.1:{api_port}"))?;
        client.wait_ready(Duration::from_secs(10)).await.with_context(|| {
            format!(
                "Toxiproxy did not come up; read {}:\n{}",
                tp_process.log_path().display(),
                tail(tp_process.log_path(), 10)
            )
        })?;
        client
            .create_proxy(
                "postgres",
                &format!("127.0.0.1:{pg_proxy_port}"),
                &format!("127.0.0.1:{pg_port}"),
            )
            .await?;
        for (i, np) in node_ports.iter().enumerate() {
            client
                .create_proxy(
                    &super::toxiproxy::kafka_proxy_name(i),
                    &format!("127.0.0.1:{}", np.proxy),
                    &format!("127.0.0.1:{}", np.proxied_bind),
                )
                .await?;
        }
        anyhow::Ok((tp_process, client))
    };
    let pg_dir = run_dir.join(record::run_dir::POSTGRES_DIR);
    let kafka_dir = run_dir.join(record::run_dir::KAFKA_DIR);
    let (tp, pg, kafka) = tokio::join!(
        toxiproxy,
        LocalPostgres::start(&pg_dir, pg_port, timeout),
        LocalKafka::start(&kafka_dir, &paths.kafka_libs, node_ports.clone(), timeout)
    );
    // On error the successfully started parts are dropped here, which kills them.
    let (tp_process, client) = tp.context("starting Toxiproxy")?;
    let (postgres, kafka) = (pg.context("starting PostgreSQL")?, kafka.context("starting Kafka")?);
    Ok(Started {
        services: LocalServices {
            postgres,
            kafka,
            toxiproxy: tp_process,
            paths,
        },
        toxiproxy: client,
        pg_proxy_port,
    })
}

impl LocalServices {
    /// Every managed process with its name (for fault injection and leak checks).
    pub fn processes(&self) -> Vec<&ManagedProcess> {
        let mut v = vec![&self.postgres.process];
        v.extend(self.kafka.nodes.iter());
        v.push(&self.toxiproxy);
        v
    }

    /// Kills everything: Kafka, then Postgres, then Toxiproxy (whose toxics die with it).
    pub fn kill_all(&self) -> Result<()> {
        let mut first_err = self.kafka.kill_all().err();
        for p in [&self.postgres.process, &self.toxiproxy] {
            if let Err(e) = p.kill() {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
