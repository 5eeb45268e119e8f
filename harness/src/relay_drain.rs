//! `dualcheck bench --drain N`: each relay's own publish rate, apart from the
//! request path. The service process runs alone (`DUALCHECK_ROLE=service`: no
//! relay) while N ops are committed; then the relay process starts
//! (`DUALCHECK_ROLE=relay`) and the time from its readiness to the Nth
//! distinct event on a consumer gives events per second — what the relay does
//! with a backlog, against the machine's limits.

use crate::app_process::{AppCommand, AppEnv, AppProcess, Completion};
use crate::env::{EnvOptions, Environment};
use anyhow::{bail, Context, Result};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use serde::Serialize;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One relay's drain.
#[derive(Debug, Clone, Serialize)]
pub struct DrainRow {
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

/// Commits `n` ops with the relay stopped, then times the relay's drain.
pub async fn drain_rate(name: &str, n: u64, workers: usize, payload: usize) -> Result<DrainRow> {
    let info = implementations::lookup(name)?;
    if info.relay == implementations::RelayKind::None {
        bail!("{name} has no relay to drain");
    }
    let env = Environment::start(EnvOptions::local(1)?)
        .await
        .context("starting the services (run `dualcheck doctor` to diagnose)")?;
    let result = async {
        let (db_url, _) = env.create_database("drain").await?;
        env.create_topic("drain", PARTITIONS).await?;
        let app_env = AppEnv {
            database_url: db_url,
            kafka_bootstrap: env.kafka_bootstrap.clone(),
            topic: "drain".into(),
            extra: Vec::new(),
        };
        let cmd = AppCommand::Builtin(info.name.to_string());
        let dir = env.run_dir.clone();
        let service =
            Arc::new(AppProcess::start_role(&cmd, &app_env, &dir, Duration::from_secs(60), Some("service")).await?);
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
                        return;
                    }
                    let o = workloads::Op {
                        op,
                        key: format!("k{}", op % 32),
                        seq: op / 32,
                        payload: body.clone(),
                        abort: false,
                        hold_ms: 0,
                    };
                    while service.submit(&o, Duration::from_secs(10)).await != Completion::Ok {}
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        let consumer: StreamConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &env.kafka_direct_bootstrap)
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
        let relay = AppProcess::start_role(&cmd, &app_env, &dir, Duration::from_secs(240), Some("relay")).await?;
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
        Ok(DrainRow {
            implementation: name.to_string(),
            events: n,
            seconds,
            per_s: n as f64 / seconds,
        })
    }
    .await;
    let mut env = env;
    env.shutdown().await.ok();
    result
}
