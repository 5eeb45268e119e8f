//! `dualcheck bench --drain N`: each relay's own publish rate (how fast it
//! drains a backlog), apart from the request path. Not the run's drain after
//! healing (`runner::settle`). The service process runs alone (`DUALCHECK_ROLE=service`: no
//! relay) while N ops are committed; then the relay process starts
//! (`DUALCHECK_ROLE=relay`) and the time from its readiness to the Nth
//! distinct event on a consumer gives events per second — what the relay does
//! with a backlog, against the machine's limits.

use crate::app_process::{AppCommand, AppProcess, AppVars, Reply};
use crate::env::{EnvOptions, Environment};
use anyhow::{bail, Context, Result};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use serde::Serialize;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One relay's publish rate (a row of `bench --drain`).
#[derive(Debug, Clone, Serialize)]
pub struct RelayRateRow {
    /// Implementation.
    pub implementation: String,
    /// Events committed before the relay started.
    pub events: u64,
    /// Seconds from the relay answering to the last event arriving.
    pub seconds: f64,
    /// Events per second.
    pub per_s: f64,
}

const PARTITIONS: i32 = 4;

/// How long one op of the backlog may keep failing (the service down or
/// refusing) before the measurement gives up.
const SUBMIT_DEADLINE: Duration = Duration::from_secs(60);

/// Commits `n` ops with the relay stopped, then times the relay publishing them.
pub async fn relay_publish_rate(name: &str, n: u64, workers: usize, payload: usize) -> Result<RelayRateRow> {
    let info = implementations::lookup(name)?;
    if info.relay == implementations::RelayKind::None {
        bail!("{name} has no relay to drain");
    }
    let services = Environment::start(EnvOptions::local(1)?)
        .await
        .context("starting the services (run `dualcheck doctor` to diagnose)")?;
    let result = async {
        let (db_url, _) = services.create_database("drain").await?;
        services.create_topic("drain", PARTITIONS).await?;
        let app_vars = AppVars {
            database_url: db_url,
            kafka_bootstrap: services.kafka_bootstrap.clone(),
            topic: "drain".into(),
            extra: Vec::new(),
            instance: 0,
            replicas: 1,
        };
        let cmd = AppCommand::Builtin(info.name.to_string());
        let dir = services.run_dir.clone();
        let service =
            Arc::new(AppProcess::start_role(&cmd, &app_vars, &dir, Duration::from_secs(60), Some("service")).await?);
        // The backlog: n acknowledged ops, nothing published yet.
        let next = Arc::new(AtomicU64::new(1));
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let (service, next) = (service.clone(), next.clone());
            let body = "x".repeat(payload);
            tasks.push(tokio::spawn(async move {
                loop {
                    let op = next.fetch_add(1, Ordering::Relaxed);
                    if op > n {
                        return Ok::<(), anyhow::Error>(());
                    }
                    let o = workloads::Op {
                        op,
                        key: format!("k{}", op % 32),
                        seq: op / 32,
                        payload: body.clone(),
                        abort: false,
                        hold_ms: 0,
                        events: vec![],
                        write: Default::default(),
                    };
                    submit_until_ok(&service, &o).await?;
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
        let consumer: StreamConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &services.kafka_direct_bootstrap)
            .set("group.id", "dualcheck-drain-bench")
            .set("enable.auto.commit", "false")
            .set("log_level", "3")
            .create()
            .context("creating the drain consumer")?;
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset("drain", p, rdkafka::Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let relay = AppProcess::start_role(&cmd, &app_vars, &dir, Duration::from_secs(240), Some("relay")).await?;
        let started = Instant::now();
        let mut seen = HashSet::new();
        let mut last = started;
        while (seen.len() as u64) < n {
            let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
                .await
                .with_context(|| format!("{name}: no event for 60 s after {} of {n}", seen.len()))??;
            let op = m
                .payload()
                .and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
                .and_then(|v| v["op"].as_u64());
            if let Some(op) = op {
                if seen.insert(op) {
                    last = Instant::now();
                }
            }
        }
        relay.kill().await.ok();
        service.kill().await.ok();
        let seconds = last.duration_since(started).as_secs_f64().max(1e-9);
        Ok(RelayRateRow {
            implementation: name.to_string(),
            events: n,
            seconds,
            per_s: n as f64 / seconds,
        })
    }
    .await;
    let mut services = services;
    services.shutdown().await.ok();
    result
}

/// Submits `op` until the service acknowledges it, pausing between attempts
/// (50 ms doubling to 1 s, so a service that is down costs no CPU); fails
/// after [`SUBMIT_DEADLINE`] with the last answer.
async fn submit_until_ok(service: &AppProcess, op: &workloads::Op) -> Result<()> {
    // Hand-written rather than `backon`: one loop, and the deadline and the
    // last answer in the error read plainly here.
    let deadline = Instant::now() + SUBMIT_DEADLINE;
    let mut pause = Duration::from_millis(50);
    loop {
        let answer = service.submit(op, Duration::from_secs(10)).await;
        if answer == Reply::Ok {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "op {} still not acknowledged after {SUBMIT_DEADLINE:?} (last answer {answer:?}); see {}",
                op.op,
                service.log_path().display()
            );
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}
