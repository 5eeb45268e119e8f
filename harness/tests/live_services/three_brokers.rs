//! Three Kafka brokers (replication 3, min.insync.replicas 2), each behind its
//! own proxy: the cluster comes up, and killing a partition's leader moves
//! leadership while acknowledged records survive.

use crate::support::services::{produced, unique, with_env};
use dualcheck::env::kafka::{consume, create_topic, partition_leaders};
use dualcheck::env::Service;
use std::time::{Duration, Instant};

#[test]
fn three_brokers_each_behind_a_proxy() {
    with_env(3, |env| async move {
        assert_eq!(env.kafka_proxies, ["kafka-0", "kafka-1", "kafka-2"]);
        for p in &env.kafka_proxies {
            env.toxiproxy.proxy(p).await.unwrap();
        }
        let topic = unique("three");
        create_topic(&env.kafka_direct_bootstrap, &topic, 3, 3).await.unwrap();
        produced(&env.kafka_bootstrap, &topic, "k", "v", Duration::from_secs(15)).await;
    });
}

#[test]
fn leader_kill_moves_leadership_and_keeps_records() {
    with_env(3, |env| async move {
        let topic = unique("leader");
        create_topic(&env.kafka_direct_bootstrap, &topic, 1, 3).await.unwrap();
        produced(&env.kafka_bootstrap, &topic, "k", "before", Duration::from_secs(15)).await;
        let (b, t) = (env.kafka_direct_bootstrap.clone(), topic.clone());
        let leader = tokio::task::spawn_blocking(move || partition_leaders(&b, &t))
            .await
            .unwrap()
            .unwrap()[0];
        assert!(leader >= 0);
        env.kill(Service::Kafka(leader as usize)).await.unwrap();
        let t0 = Instant::now();
        // With 2 of 3 replicas left (min.insync.replicas=2) writes go on through the proxies.
        produced(&env.kafka_bootstrap, &topic, "k", "after", Duration::from_secs(60)).await;
        eprintln!("write after leader kill acknowledged in {:?}", t0.elapsed());
        let (b, t) = (env.kafka_direct_bootstrap.clone(), topic.clone());
        let new_leader = tokio::task::spawn_blocking(move || partition_leaders(&b, &t))
            .await
            .unwrap()
            .unwrap()[0];
        assert!(
            new_leader >= 0 && new_leader != leader,
            "leader {leader} -> {new_leader}"
        );
        env.restart(Service::Kafka(leader as usize), Duration::from_secs(90))
            .await
            .unwrap();
        let got = consume(&env.kafka_direct_bootstrap, &topic, 2, Duration::from_secs(30))
            .await
            .unwrap();
        let values: Vec<&str> = got.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, ["before", "after"]);

        // Killed and restarted at once, as a short `kafka-leader` window does:
        // the others still list the dead broker until its session times out,
        // and its new process cannot register before that. The restart is
        // over only when the broker has started, and writes then go on.
        let victim = new_leader as usize;
        let log = env.log_path(Service::Kafka(victim)).unwrap();
        let started_before = started_lines(&log);
        env.kill(Service::Kafka(victim)).await.unwrap();
        let t0 = Instant::now();
        env.restart(Service::Kafka(victim), Duration::from_secs(90))
            .await
            .unwrap();
        eprintln!("broker {victim} killed and restarted in {:?}", t0.elapsed());
        assert!(
            started_lines(&log) > started_before,
            "restart() returned before broker {victim} logged that it started ({})",
            log.display()
        );
        produced(
            &env.kafka_bootstrap,
            &topic,
            "k",
            "after restart",
            Duration::from_secs(60),
        )
        .await;
    });
}

/// How many times the broker logged that it started.
fn started_lines(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("Transition from STARTING to STARTED"))
        .count()
}
