//! `dualcheck doctor`'s self-test: is this machine ready, and do the real
//! services behave?
//!
//! The doctor checks prerequisites, starts the local environment, round-trips a
//! row through the Postgres proxy and a record through the Kafka proxy, shows
//! that `down` on each proxy breaks its link and that healing restores it, kills
//! and restarts Postgres and the broker and finds their data, tears down and
//! checks no process is left. One line per check, with timings.

use crate::env::{self, kafka, postgres, process, EnvOptions, Environment, Service};
use anyhow::{bail, Context, Result};
use std::future::Future;
use std::time::{Duration, Instant};

/// How the self-test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoctorOutcome {
    /// Every check passed.
    AllPassed,
    /// Some check failed (each failure was printed with why).
    ChecksFailed,
    /// Prerequisites are missing or the run directory could not be made: nothing was tested.
    NotSetUp,
}

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

/// Runs the self-test, printing one line per check on stdout: prerequisites,
/// then a local environment with `brokers` Kafka brokers; its run directory
/// (logs) is removed after a successful run unless `keep`.
pub async fn self_test(brokers: usize, keep: bool) -> DoctorOutcome {
    let cache = env::cache::cache_dir();
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
        return DoctorOutcome::NotSetUp;
    }
    let mut rep = Report { failed: 0 };
    let opts = match EnvOptions::local(brokers) {
        Ok(o) => o,
        Err(e) => {
            println!("FAIL  creating the run directory: {e:#}");
            return DoctorOutcome::NotSetUp;
        }
    };
    let run_dir = opts.run_dir.clone();
    println!("run directory: {}", run_dir.display());
    let label = format!("start local environment ({} broker(s))", brokers);
    let Some(mut envt) = rep.check(&label, Environment::start(opts)).await else {
        println!("logs are in {}", run_dir.display());
        return DoctorOutcome::ChecksFailed;
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
        if !keep {
            let _ = std::fs::remove_dir_all(&run_dir);
        }
        println!("all checks passed");
        DoctorOutcome::AllPassed
    } else {
        println!("{} check(s) failed; logs are in {}", rep.failed, run_dir.display());
        DoctorOutcome::ChecksFailed
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
