//! `dualcheck doctor` (is this machine ready, and do the real services behave?)
//! and `dualcheck setup` (runs `ci/setup`).
//!
//! The doctor checks prerequisites, starts the local environment, round-trips a
//! row through the Postgres proxy and a record through the Kafka proxy, shows
//! that `down` on each proxy breaks its link and that healing restores it, kills
//! and restarts Postgres and the broker and finds their data, tears down and
//! checks no process is left. One line per check, with timings; exit 0 when all pass.

use crate::env::{self, kafka, postgres, process, EnvOptions, Environment, Service};
use anyhow::{bail, Context, Result};
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Arguments of `dualcheck doctor`.
#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// Number of Kafka brokers to start (1, or 3 to also check leader failover).
    #[arg(long, default_value_t = 1)]
    pub brokers: usize,
    /// Keep the run directory (logs) after a successful run.
    #[arg(long)]
    pub keep: bool,
}

/// Arguments of `dualcheck setup`.
#[derive(clap::Args, Debug)]
pub struct SetupArgs {}

struct Report {
    failed: usize,
}

impl Report {
    async fn check<T, F: Future<Output = Result<T>>>(&mut self, name: &str, f: F) -> Option<T> {
        let t = Instant::now();
        let r = f.await;
        let ms = t.elapsed().as_millis();
        match r {
            Ok(v) => {
                println!("ok    {name:<48} {ms:>6} ms");
                Some(v)
            }
            Err(e) => {
                self.failed += 1;
                println!(
                    "FAIL  {name:<48} {ms:>6} ms\n      {}",
                    format!("{e:#}").replace('\n', "\n      ")
                );
                None
            }
        }
    }
}

/// Runs the doctor; returns the exit code (0 all passed, 1 a check failed, 2 not set up).
pub fn run(args: DoctorArgs) -> u8 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dualcheck doctor: cannot start the async runtime: {e}");
            return 2;
        }
    };
    rt.block_on(doctor(args))
}

async fn doctor(args: DoctorArgs) -> u8 {
    let cache = env::local::cache_dir();
    println!("dualcheck doctor (cache: {})", cache.display());
    let mut missing = 0;
    for p in env::local::prerequisites(&cache) {
        match p.status {
            Ok(s) => println!("ok    {:<48} {s}", p.name),
            Err(e) => {
                missing += 1;
                println!("MISS  {:<48} {e}", p.name)
            }
        }
    }
    if missing > 0 {
        println!("{missing} prerequisite(s) missing: run `bash ci/setup` (or `dualcheck setup`), then `dualcheck doctor` again");
        return 2;
    }
    let mut rep = Report { failed: 0 };
    let opts = match EnvOptions::local(args.brokers) {
        Ok(o) => o,
        Err(e) => {
            println!("FAIL  creating the run directory: {e:#}");
            return 2;
        }
    };
    let run_dir = opts.run_dir.clone();
    println!("run directory: {}", run_dir.display());
    let label = format!("start local environment ({} broker(s))", args.brokers);
    let Some(mut envt) = rep.check(&label, Environment::start(opts)).await else {
        println!("logs are in {}", run_dir.display());
        return 1;
    };
    let t = &envt;
    rep.check("postgres round trip through proxy", pg_round_trip(t)).await;
    rep.check("kafka round trip through proxy", kafka_round_trip(t, "doctor-1"))
        .await;
    rep.check("postgres proxy down breaks the link", pg_down_breaks(t))
        .await;
    rep.check("postgres proxy healed restores the link", pg_round_trip(t))
        .await;
    rep.check("kafka proxy down breaks the link", kafka_down_breaks(t))
        .await;
    rep.check("kafka proxy healed restores the link", kafka_round_trip(t, "doctor-2"))
        .await;
    rep.check("postgres kill -9 + restart keeps data", pg_kill_restart(t))
        .await;
    rep.check("kafka-0 kill -9 + restart keeps data", kafka_kill_restart(t))
        .await;
    let pids = envt.all_pids();
    rep.check("teardown", envt.shutdown()).await;
    rep.check("no process of the run left", async {
        let left: Vec<String> = pids
            .iter()
            .filter(|(_, p)| process::pid_alive(*p))
            .map(|(name, p)| format!("{name}:{p}"))
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            bail!("still running: {left:?}")
        }
    })
    .await;
    drop(envt);
    if rep.failed == 0 {
        if !args.keep {
            let _ = std::fs::remove_dir_all(&run_dir);
        }
        println!("all checks passed");
        0
    } else {
        println!("{} check(s) failed; logs are in {}", rep.failed, run_dir.display());
        1
    }
}

async fn pg_round_trip(env: &Environment) -> Result<()> {
    let c = postgres::connect(&env.postgres_url).await?;
    c.batch_execute("CREATE TABLE IF NOT EXISTS doctor (id bigint PRIMARY KEY, v text)")
        .await?;
    let id: i64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as i64;
    c.execute("INSERT INTO doctor VALUES ($1, 'hello')", &[&id]).await?;
    let direct = postgres::connect(&env.postgres_direct_url).await?;
    let row = direct.query_one("SELECT v FROM doctor WHERE id = $1", &[&id]).await?;
    let v: String = row.get(0);
    if v != "hello" {
        bail!("read back {v:?}, wrote \"hello\"");
    }
    Ok(())
}

async fn pg_down_breaks(env: &Environment) -> Result<()> {
    env.toxiproxy.down(&env.postgres_proxy).await?;
    let r = tokio::time::timeout(Duration::from_secs(5), async {
        let c = postgres::connect(&env.postgres_url).await?;
        c.simple_query("SELECT 1").await?;
        anyhow::Ok(())
    })
    .await;
    env.heal_all().await?;
    match r {
        Ok(Ok(())) => bail!("a query through the downed postgres proxy succeeded"),
        _ => Ok(()),
    }
}

async fn kafka_round_trip(env: &Environment, topic: &str) -> Result<()> {
    kafka::create_topic(&env.kafka_direct_bootstrap, topic, 1, env.brokers() as i32).await?;
    kafka::produce_one(&env.kafka_bootstrap, topic, "k", "v", Duration::from_secs(15)).await?;
    let got = kafka::consume(&env.kafka_bootstrap, topic, 1, Duration::from_secs(15)).await?;
    if got.first().map(|(k, v)| (k.as_str(), v.as_str())) != Some(("k", "v")) {
        bail!("consumed {got:?} through the proxy, produced (k, v)");
    }
    Ok(())
}

async fn kafka_down_breaks(env: &Environment) -> Result<()> {
    for p in &env.kafka_proxies {
        env.toxiproxy.down(p).await?;
    }
    let r = kafka::produce_one(&env.kafka_bootstrap, "doctor-1", "k", "down", Duration::from_secs(3)).await;
    env.heal_all().await?;
    match r {
        Ok(_) => bail!("a record was acknowledged through the downed kafka proxy"),
        Err(_) => Ok(()),
    }
}

async fn pg_kill_restart(env: &Environment) -> Result<()> {
    let c = postgres::connect(&env.postgres_direct_url).await?;
    c.batch_execute("CREATE TABLE IF NOT EXISTS doctor_kill (v text); INSERT INTO doctor_kill VALUES ('kept')")
        .await?;
    drop(c);
    env.kill_restart(Service::Postgres, Duration::from_secs(30)).await?;
    let c = postgres::connect(&env.postgres_url).await?;
    let n: i64 = c
        .query_one("SELECT count(*) FROM doctor_kill WHERE v = 'kept'", &[])
        .await?
        .get(0);
    if n != 1 {
        bail!("found {n} rows after restart, wrote 1");
    }
    Ok(())
}

async fn kafka_kill_restart(env: &Environment) -> Result<()> {
    env.kill_restart(Service::Kafka(0), Duration::from_secs(60))
        .await
        .with_context(|| {
            format!(
                "log: {}",
                env.log_path(Service::Kafka(0))
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )
        })?;
    // The record produced before the kill (topic doctor-1) must still be there.
    let got = kafka::consume(&env.kafka_direct_bootstrap, "doctor-1", 1, Duration::from_secs(20)).await?;
    if got.is_empty() {
        bail!("topic doctor-1 is empty after the broker restarted");
    }
    Ok(())
}

/// Runs `ci/setup` from the source tree (found next to the binary's crate or in
/// the current directory); returns its exit code, or 2 when it cannot be found.
pub fn setup(_args: SetupArgs) -> u8 {
    let candidates = [
        PathBuf::from("ci/setup"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ci/setup"),
    ];
    let Some(script) = candidates.iter().find(|p| p.exists()) else {
        eprintln!(
            "dualcheck setup: ci/setup not found (looked in {}); run it from a checkout of dualcheck: `bash ci/setup`",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return 2;
    };
    println!("running bash {}", script.display());
    match std::process::Command::new("bash").arg(script).status() {
        Ok(s) if s.success() => 0,
        Ok(s) => {
            eprintln!("dualcheck setup: {} failed ({s})", script.display());
            1
        }
        Err(e) => {
            eprintln!("dualcheck setup: cannot run bash: {e}");
            2
        }
    }
}
