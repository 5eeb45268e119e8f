//! `dualcheck env up|down`: the local services in the foreground, for a
//! team's own integration tests and for `--backend external`; and the
//! `--backend` options every command that starts services shares.

use super::Verdict;
use clap::{Args, Subcommand};
use dualcheck::env::settings::{self, BackendSettings};
use dualcheck::env::{BackendKind, EnvOptions, Environment};
use dualcheck::record::redact;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Which services a command uses (`run`, `sweep`, `compare`, `gate`, `shrink`, `zoo`, `bench`).
/// Flags beat `DUALCHECK_*` variables, which beat `dualcheck.toml`.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Services")]
pub struct BackendArgs {
    /// `local` (started here, the default), `external` (yours: --pg-url, --kafka-bootstrap)
    /// or `testcontainers` (Docker, cargo feature `testcontainers`) [env: DUALCHECK_BACKEND].
    #[arg(long, value_name = "KIND", value_parser = ["local", "external", "testcontainers"])]
    pub backend: Option<String>,
    /// External: admin Postgres URL; each run creates and drops its own database [env: DUALCHECK_PG_URL].
    #[arg(long, value_name = "URL")]
    pub pg_url: Option<String>,
    /// External: Kafka bootstrap, direct; each run creates and deletes its own topic
    /// [env: DUALCHECK_KAFKA_BOOTSTRAP].
    #[arg(long, value_name = "HOST:PORT,...")]
    pub kafka_bootstrap: Option<String>,
    /// External: Toxiproxy API with proxies `postgres` (and `kafka-N`, advertised by the
    /// brokers); without it dualcheck starts its own in front of Postgres [env: DUALCHECK_TOXIPROXY_URL].
    #[arg(long, value_name = "URL")]
    pub toxiproxy_url: Option<String>,
    /// Settings file (default: ./dualcheck.toml if present) [env: DUALCHECK_CONFIG].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl BackendArgs {
    /// The backend: these flags over the environment over the file.
    pub fn resolve(&self) -> anyhow::Result<BackendKind> {
        let flags = BackendSettings {
            backend: self.backend.clone(),
            pg_url: self.pg_url.clone(),
            kafka_bootstrap: self.kafka_bootstrap.clone(),
            toxiproxy_url: self.toxiproxy_url.clone(),
        };
        settings::resolve(flags, self.config.as_deref(), |k| std::env::var(k).ok())
    }
}

/// Arguments of `dualcheck env`.
#[derive(Args, Debug)]
pub struct EnvArgs {
    #[command(subcommand)]
    command: EnvCommand,
}

#[derive(Subcommand, Debug)]
enum EnvCommand {
    /// Start Postgres, Kafka and Toxiproxy here and stay in the foreground until
    /// Ctrl-C, SIGTERM or `dualcheck env down`; prints their URLs.
    #[command(after_help = super::exit_codes::help(super::exit_codes::ENV_UP))]
    Up(UpArgs),
    /// Stop the services `dualcheck env up` started (with the same --out).
    #[command(after_help = super::exit_codes::help(super::exit_codes::ENV_DOWN))]
    Down(DownArgs),
}

/// Arguments of `dualcheck env up`.
#[derive(Args, Debug)]
struct UpArgs {
    /// Kafka brokers: 1, or 3.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    brokers: u8,
    /// Print the URLs as one JSON object.
    #[arg(long)]
    json: bool,
    /// Write the variables `--backend external` reads to FILE
    /// (`set -a; . FILE; dualcheck run --backend external ...`).
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    /// Where the services' data and logs go (`DIR/env-*`), and the state file `DIR/env.json`
    /// that `dualcheck env down` reads.
    #[arg(long, default_value = "runs", value_name = "DIR")]
    out: PathBuf,
}

/// Arguments of `dualcheck env down`.
#[derive(Args, Debug)]
struct DownArgs {
    /// The --out of `dualcheck env up`.
    #[arg(long, default_value = "runs", value_name = "DIR")]
    out: PathBuf,
}

/// The state file of a running `dualcheck env up` under `out`.
fn state_file(out: &Path) -> PathBuf {
    out.join("env.json")
}

/// The pid recorded in a state file, if that process still runs dualcheck.
fn live_pid(state: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(state).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let pid = i32::try_from(v.get("pid")?.as_u64()?).ok()?;
    if !dualcheck::env::process::pid_alive(pid) {
        return None;
    }
    match v.get("pid_start_ticks").and_then(|t| t.as_u64()) {
        // The very process that wrote the file, whatever its binary is called
        // (a renamed or linked `dualcheck` is still the environment's owner).
        Some(ticks) => (dualcheck::env::process::start_ticks(pid) == Some(ticks)).then_some(pid),
        // A state file of an older dualcheck: its binary's name.
        None => {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline).contains("dualcheck").then_some(pid)
        }
    }
}

/// Runs `dualcheck env up` or `dualcheck env down`.
pub fn run(args: EnvArgs) -> Verdict {
    match args.command {
        EnvCommand::Up(a) => up(a),
        EnvCommand::Down(a) => down(a),
    }
}

fn up(args: UpArgs) -> Verdict {
    if args.brokers == 2 {
        eprintln!("dualcheck env up: --brokers 2 is not supported: use 1 or 3");
        return Verdict::Unusable;
    }
    let state = state_file(&args.out);
    if let Some(pid) = live_pid(&state) {
        eprintln!(
            "dualcheck env up: an environment is already up under {} (pid {pid}); stop it with `dualcheck env down --out {}`",
            args.out.display(),
            args.out.display()
        );
        return Verdict::Unusable;
    }
    let dir = match dualcheck::run_dir::create_sweep_dir(&args.out, "env") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("dualcheck env up: {e:#}");
            return Verdict::Unusable;
        }
    };
    let rt = match super::runtime("env up") {
        Ok(rt) => rt,
        Err(v) => return v,
    };
    rt.block_on(async {
        let env = match Environment::start(EnvOptions {
            backend: BackendKind::Local,
            brokers: args.brokers as usize,
            run_dir: dir.clone(),
            timeout: Duration::from_secs(90),
        })
        .await
        {
            Ok(e) => e,
            Err(e) => {
                eprintln!("dualcheck env up: starting the services (run `dualcheck doctor` to diagnose): {e:#}");
                return Verdict::Unusable;
            }
        };
        let toxiproxy = env.toxiproxy.url().to_string();
        let info = serde_json::json!({
            "pid": std::process::id(),
            "pid_start_ticks": dualcheck::env::process::start_ticks(std::process::id() as i32),
            "dir": dir,
            "postgres": {"direct": env.postgres_direct_url, "proxied": env.postgres_url},
            "kafka": {"direct": env.kafka_direct_bootstrap, "proxied": env.kafka_bootstrap},
            "toxiproxy": toxiproxy,
            "proxies": std::iter::once(env.postgres_proxy.clone()).chain(env.kafka_proxies.iter().cloned()).collect::<Vec<_>>(),
            "service_pids": env.all_pids().iter().map(|(_, p)| *p).collect::<Vec<_>>(),
            "env_file": args.env_file,
        });
        if let Some(f) = &args.env_file {
            let text = settings::env_file(&env.postgres_direct_url, &env.kafka_direct_bootstrap, Some(&toxiproxy));
            if let Err(e) = std::fs::write(f, text) {
                eprintln!("dualcheck env up: writing --env-file {}: {e}", f.display());
                return Verdict::Unusable;
            }
        }
        if let Err(e) = std::fs::write(&state, serde_json::to_string_pretty(&info).unwrap_or_default()) {
            eprintln!("dualcheck env up: writing {}: {e}", state.display());
            return Verdict::Unusable;
        }
        let state_for_cleanup = state.clone();
        dualcheck::env::process::register_interrupt_cleanup(move || async move {
            std::fs::remove_file(&state_for_cleanup).ok();
            eprintln!("dualcheck env: services stopped");
        });
        if args.json {
            println!("{}", redact(&info.to_string()));
        } else {
            println!("{}", up_text(&info, &args.out));
        }
        std::io::stdout().flush().ok();
        // In the foreground until Ctrl-C or SIGTERM (`dualcheck env down`): the
        // signal handler kills every service, removes the state file and exits.
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    })
}

/// The text `dualcheck env up` prints.
fn up_text(info: &serde_json::Value, out: &Path) -> String {
    let s = |p: &str| redact(info.pointer(p).and_then(|v| v.as_str()).unwrap_or(""));
    let mut t = format!(
        "dualcheck env: up (pid {}); stop with Ctrl-C or `dualcheck env down --out {}`\n\
         postgres  direct   {}\n          proxied  {}\n\
         kafka     direct   {}\n          proxied  {}\n\
         toxiproxy API      {} (proxies: {})\n",
        info["pid"],
        out.display(),
        s("/postgres/direct"),
        s("/postgres/proxied"),
        s("/kafka/direct"),
        s("/kafka/proxied"),
        s("/toxiproxy"),
        info["proxies"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
    );
    match info["env_file"].as_str() {
        Some(f) => t.push_str(&format!(
            "for --backend external: set -a; . {f}; set +a; dualcheck run --backend external ...\n"
        )),
        None => t.push_str(&format!(
            "for --backend external: --pg-url '{}' --kafka-bootstrap {} --toxiproxy-url {}\n",
            s("/postgres/direct"),
            s("/kafka/direct"),
            s("/toxiproxy")
        )),
    }
    t
}

fn down(args: DownArgs) -> Verdict {
    let state = state_file(&args.out);
    if !state.is_file() {
        eprintln!(
            "dualcheck env down: no environment is up under {} (no {}); give the --out of `dualcheck env up`",
            args.out.display(),
            state.display()
        );
        return Verdict::Unusable;
    }
    let Some(pid) = live_pid(&state) else {
        std::fs::remove_file(&state).ok();
        eprintln!(
            "dualcheck env down: the environment under {} had already ended",
            args.out.display()
        );
        return Verdict::Valid;
    };
    // The services' processes, to wait for too (the up process SIGKILLs them and exits).
    let services: Vec<i32> = std::fs::read_to_string(&state)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| serde_json::from_value(v["service_pids"].clone()).ok())
        .unwrap_or_default();
    // SAFETY: plain syscall on a pid read from our own state file and checked to run dualcheck.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let started = Instant::now();
    while let Some(p) = std::iter::once(pid)
        .chain(services.iter().copied())
        .find(|p| dualcheck::env::process::pid_alive(*p))
    {
        if started.elapsed() > Duration::from_secs(60) {
            eprintln!("dualcheck env down: pid {p} still runs 60 s after SIGTERM to {pid}");
            return Verdict::Unusable;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::remove_file(&state).ok();
    eprintln!("dualcheck env down: stopped (pid {pid})");
    Verdict::Valid
}
