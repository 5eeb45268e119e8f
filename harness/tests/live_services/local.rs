//! Integration tests of the local environment against real PostgreSQL, Kafka
//! (one broker) and Toxiproxy: proxies, toxics, process faults.

use crate::support::services::{produced, query_value, unique, with_env};
use dualcheck::env::kafka::{consume, create_topic, produce_one};
use dualcheck::env::postgres::connect;
use dualcheck::env::toxiproxy::{Stream, Toxic};
use dualcheck::env::{Environment, Service};
use std::time::{Duration, Instant};

/// A new table of one `v int` column filled from `rows` (`VALUES ...` or a
/// `SELECT`), created through the proxy; returns its name and that connection.
async fn new_table(env: &Environment, prefix: &str, rows: &str) -> (String, tokio_postgres::Client) {
    let table = unique(prefix);
    let c = connect(&env.postgres_url).await.unwrap();
    c.batch_execute(&format!("CREATE TABLE {table} (v int); INSERT INTO {table} {rows}"))
        .await
        .unwrap();
    (table, c)
}

/// Postgres answers a query on a new connection to `url`.
async fn assert_answers(url: &str) {
    connect(url).await.unwrap().simple_query("SELECT 1").await.unwrap();
}

#[test]
fn postgres_and_kafka_round_trip_through_proxies() {
    with_env(1, |env| async move {
        let (table, _c) = new_table(env, "rt", "VALUES (42)").await;
        let d = connect(&env.postgres_direct_url).await.unwrap();
        let v: i32 = query_value(&d, &format!("SELECT v FROM {table}")).await;
        assert_eq!(v, 42);

        let topic = unique("rt");
        create_topic(&env.kafka_direct_bootstrap, &topic, 1, 1).await.unwrap();
        produced(&env.kafka_bootstrap, &topic, "k", "v1", Duration::from_secs(15)).await;
        let got = consume(&env.kafka_direct_bootstrap, &topic, 1, Duration::from_secs(15))
            .await
            .unwrap();
        assert_eq!(got, vec![("k".to_string(), "v1".to_string())]);
        let got = consume(&env.kafka_bootstrap, &topic, 1, Duration::from_secs(15))
            .await
            .unwrap();
        assert_eq!(got.len(), 1, "consuming through the proxy");
    });
}

#[test]
fn proxy_down_breaks_and_up_heals() {
    with_env(1, |env| async move {
        env.toxiproxy.down("postgres").await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), connect(&env.postgres_url)).await;
        assert!(!matches!(r, Ok(Ok(_))), "connected through a downed postgres proxy");
        // The direct link is not faulted.
        connect(&env.postgres_direct_url).await.unwrap();
        env.toxiproxy.up("postgres").await.unwrap();
        assert_answers(&env.postgres_url).await;

        let topic = unique("down");
        create_topic(&env.kafka_direct_bootstrap, &topic, 1, 1).await.unwrap();
        env.toxiproxy.down("kafka-0").await.unwrap();
        let r = produce_one(&env.kafka_bootstrap, &topic, "k", "lost", Duration::from_secs(3)).await;
        assert!(r.is_err(), "produced through a downed kafka proxy: {r:?}");
        // The observer's direct listener still works.
        produced(
            &env.kafka_direct_bootstrap,
            &topic,
            "k",
            "direct",
            Duration::from_secs(10),
        )
        .await;
        env.toxiproxy.up("kafka-0").await.unwrap();
        produced(&env.kafka_bootstrap, &topic, "k", "healed", Duration::from_secs(15)).await;
    });
}

#[test]
fn latency_toxic_adds_latency() {
    with_env(1, |env| async move {
        let c = connect(&env.postgres_url).await.unwrap();
        let time_query = || async {
            let t = Instant::now();
            c.simple_query("SELECT 1").await.unwrap();
            t.elapsed()
        };
        let base = time_query().await;
        env.toxiproxy
            .add_toxic(
                "postgres",
                "lat",
                Stream::Downstream,
                &Toxic::Latency {
                    latency_ms: 400,
                    jitter_ms: 0,
                },
            )
            .await
            .unwrap();
        let slow = time_query().await;
        assert!(
            slow >= base + Duration::from_millis(300),
            "latency toxic: base {base:?}, with toxic {slow:?}"
        );
        env.toxiproxy.remove_toxic("postgres", "lat").await.unwrap();
        let after = time_query().await;
        assert!(
            after < Duration::from_millis(300),
            "latency stayed after removing the toxic: {after:?}"
        );
    });
}

#[test]
fn reset_peer_toxic_resets_connections() {
    with_env(1, |env| async move {
        env.toxiproxy
            .add_toxic("postgres", "rst", Stream::Upstream, &Toxic::ResetPeer { timeout_ms: 0 })
            .await
            .unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), async {
            let c = connect(&env.postgres_url).await?;
            c.simple_query("SELECT 1").await?;
            anyhow::Ok(())
        })
        .await;
        assert!(!matches!(r, Ok(Ok(()))), "query succeeded through reset_peer");
        let info = env.toxiproxy.proxy("postgres").await.unwrap();
        assert_eq!(info.toxics.len(), 1);
        env.heal_all().await.unwrap();
        assert!(
            env.toxiproxy.proxy("postgres").await.unwrap().toxics.is_empty(),
            "heal_all removes toxics"
        );
        assert_answers(&env.postgres_url).await;
    });
}

#[test]
fn bandwidth_and_timeout_toxics_are_accepted_and_healed() {
    with_env(1, |env| async move {
        let tp = &env.toxiproxy;
        tp.add_toxic("kafka-0", "bw", Stream::Downstream, &Toxic::Bandwidth { rate_kb_s: 10 })
            .await
            .unwrap();
        tp.add_toxic("kafka-0", "to", Stream::Upstream, &Toxic::Timeout { timeout_ms: 1000 })
            .await
            .unwrap();
        tp.down("postgres").await.unwrap();
        let info = tp.proxy("kafka-0").await.unwrap();
        assert_eq!(info.toxics.len(), 2);
        let topic = unique("to");
        create_topic(&env.kafka_direct_bootstrap, &topic, 1, 1).await.unwrap();
        let r = produce_one(&env.kafka_bootstrap, &topic, "k", "v", Duration::from_secs(3)).await;
        assert!(r.is_err(), "produced through a timeout toxic");
        env.heal_all().await.unwrap();
        assert!(tp.proxy("kafka-0").await.unwrap().toxics.is_empty());
        assert!(tp.proxy("postgres").await.unwrap().enabled);
        produced(&env.kafka_bootstrap, &topic, "k", "v", Duration::from_secs(15)).await;
    });
}

/// `pg-ack-loss` and `kafka-ack-loss` drop replies only ([`Toxic::DROP`]
/// downstream): a COMMIT and a produce sent meanwhile take effect while their
/// clients see nothing and time out.
#[test]
fn a_commit_and_a_produce_take_effect_while_their_replies_are_lost() {
    with_env(1, |env| async move {
        let tp = &env.toxiproxy;
        let (table, c) = new_table(env, "ackloss", "VALUES (1)").await;
        c.batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (2)"))
            .await
            .unwrap();
        tp.add_toxic("postgres", "ack", Stream::Downstream, &Toxic::DROP)
            .await
            .unwrap();
        let commit = tokio::time::timeout(Duration::from_secs(2), c.batch_execute("COMMIT")).await;
        assert!(
            commit.is_err(),
            "the COMMIT's reply came through a dropping link: {commit:?}"
        );
        let d = connect(&env.postgres_direct_url).await.unwrap();
        let count = format!("SELECT count(*) FROM {table} WHERE v = 2");
        let committed = async {
            while query_value::<i64>(&d, &count).await == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), committed)
            .await
            .expect("the COMMIT took effect while its reply was lost");
        env.heal_all().await.unwrap();
        assert_answers(&env.postgres_url).await;

        // A producer that knows its broker already (a new one could not
        // even read the metadata through the dropping link).
        use rdkafka::producer::{FutureProducer, FutureRecord};
        let topic = unique("ackloss");
        create_topic(&env.kafka_direct_bootstrap, &topic, 1, 1).await.unwrap();
        let producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &env.kafka_bootstrap)
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "3000")
            .create()
            .unwrap();
        let send = |value: &'static str| {
            producer.send(
                FutureRecord::to(&topic).key("k").payload(value),
                rdkafka::util::Timeout::After(Duration::from_secs(3)),
            )
        };
        send("before").await.expect("produced before the fault");
        tp.add_toxic("kafka-0", "ack", Stream::Downstream, &Toxic::DROP)
            .await
            .unwrap();
        let lost_ack = send("acknowledgement lost").await;
        assert!(lost_ack.is_err(), "the produce's response came through: {lost_ack:?}");
        env.heal_all().await.unwrap();
        let got = consume(&env.kafka_direct_bootstrap, &topic, 2, Duration::from_secs(15))
            .await
            .unwrap();
        assert!(
            got.iter().any(|(_, v)| v == "acknowledgement lost"),
            "the broker appended the record whose response was lost: {got:?}"
        );
    });
}

#[test]
fn postgres_kill_restart_keeps_committed_data() {
    with_env(1, |env| async move {
        let (table, c) = new_table(env, "kill", "SELECT generate_series(1, 100)").await;
        let pid = env.pid(Service::Postgres).unwrap().unwrap();
        env.kill_restart(Service::Postgres, Duration::from_secs(30))
            .await
            .unwrap();
        assert_ne!(env.pid(Service::Postgres).unwrap().unwrap(), pid, "a new postmaster");
        // The old connection died with the server.
        assert!(c.simple_query("SELECT 1").await.is_err());
        let c = connect(&env.postgres_url).await.unwrap();
        let n: i64 = query_value(&c, &format!("SELECT count(*) FROM {table}")).await;
        assert_eq!(n, 100);
    });
}

#[test]
fn broker_kill_restart_keeps_acknowledged_records() {
    with_env(1, |env| async move {
        let topic = unique("bkill");
        create_topic(&env.kafka_direct_bootstrap, &topic, 1, 1).await.unwrap();
        for i in 0..5 {
            produced(
                &env.kafka_bootstrap,
                &topic,
                "k",
                &i.to_string(),
                Duration::from_secs(15),
            )
            .await;
        }
        env.kill(Service::Kafka(0)).await.unwrap();
        assert!(env.pid(Service::Kafka(0)).unwrap().is_none());
        let r = produce_one(&env.kafka_bootstrap, &topic, "k", "x", Duration::from_secs(2)).await;
        assert!(r.is_err(), "produced to a killed broker");
        env.restart(Service::Kafka(0), Duration::from_secs(90)).await.unwrap();
        let got = consume(&env.kafka_direct_bootstrap, &topic, 5, Duration::from_secs(30))
            .await
            .unwrap();
        let values: Vec<&str> = got.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, ["0", "1", "2", "3", "4"]);
        produced(&env.kafka_bootstrap, &topic, "k", "5", Duration::from_secs(30)).await;
    });
}

#[test]
fn pause_resume_freezes_and_thaws() {
    with_env(1, |env| async move {
        let c = connect(&env.postgres_url).await.unwrap();
        env.pause(Service::Postgres).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(2), c.simple_query("SELECT 1")).await;
        env.resume(Service::Postgres).await.unwrap();
        assert!(r.is_err(), "a paused postgres answered");
        c.simple_query("SELECT 1").await.unwrap();

        let topic = unique("pause");
        create_topic(&env.kafka_direct_bootstrap, &topic, 1, 1).await.unwrap();
        env.pause(Service::Kafka(0)).await.unwrap();
        let r = produce_one(&env.kafka_bootstrap, &topic, "k", "v", Duration::from_secs(3)).await;
        env.resume(Service::Kafka(0)).await.unwrap();
        assert!(r.is_err(), "a paused broker acknowledged");
        produced(&env.kafka_bootstrap, &topic, "k", "v", Duration::from_secs(30)).await;
    });
}
