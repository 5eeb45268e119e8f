//! Per-run resources on an environment: a database of its own and a topic,
//! created if missing (what the runner and the implementation tests give each
//! run or test).

use super::Environment;
use anyhow::{bail, Context, Result};

/// `url` with its database replaced by `db` (query parameters kept).
pub fn url_with_database(url: &str, db: &str) -> String {
    let scheme_end = url.find("://").map(|i| i + 3).unwrap_or(0);
    let (head, tail) = url.split_at(scheme_end);
    let (rest, query) = match tail.find('?') {
        Some(q) => (&tail[..q], &tail[q..]),
        None => (tail, ""),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{head}{authority}/{db}{query}")
}

/// Drops every replication slot of the database at `database_url` (its
/// relay must be stopped: an active slot cannot be dropped, so this retries for
/// a few seconds) and its publications. Returns the slots dropped.
pub async fn drop_replication_slots(database_url: &str) -> Result<Vec<String>> {
    let c = super::postgres::connect(database_url).await?;
    let started = std::time::Instant::now();
    let mut dropped = Vec::new();
    loop {
        let rows = c
            .query(
                "SELECT slot_name::text, active FROM pg_replication_slots WHERE database = current_database()",
                &[],
            )
            .await
            .context("listing the run's replication slots")?;
        if rows.is_empty() {
            break;
        }
        let mut busy = Vec::new();
        for row in rows {
            let (slot, active): (String, bool) = (row.get(0), row.get(1));
            match c.execute("SELECT pg_drop_replication_slot($1)", &[&slot]).await {
                Ok(_) => dropped.push(slot),
                Err(e) if active => busy.push(format!("{slot}: {e}")),
                Err(e) => return Err(e).with_context(|| format!("dropping replication slot {slot}")),
            }
        }
        if busy.is_empty() {
            break;
        }
        if started.elapsed() > std::time::Duration::from_secs(10) {
            bail!("replication slots still in use after 10 s: {}", busy.join("; "));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let pubs = c
        .query("SELECT pubname::text FROM pg_publication", &[])
        .await
        .context("listing publications")?;
    for p in pubs {
        let name: String = p.get(0);
        c.batch_execute(&format!("DROP PUBLICATION IF EXISTS \"{name}\""))
            .await
            .with_context(|| format!("dropping publication {name}"))?;
    }
    Ok(dropped)
}

impl Environment {
    /// Creates database `name` if missing (through the direct connection) and
    /// returns its (proxied URL for implementations, direct URL for the harness).
    /// `name` must be lower-case letters, digits and `_`.
    pub async fn create_database(&self, name: &str) -> Result<(String, String)> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            bail!("database name {name:?}: use lower-case letters, digits and `_` only");
        }
        let c = super::postgres::connect(&self.postgres_direct_url).await?;
        let exists = c
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .with_context(|| format!("looking up database {name}"))?
            .is_some();
        if !exists {
            if let Err(e) = c.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await {
                if e.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
                    return Err(e).with_context(|| {
                        format!(
                            "creating database {name} at {}",
                            record::redact(&self.postgres_direct_url)
                        )
                    });
                }
            }
        }
        Ok((
            url_with_database(&self.postgres_url, name),
            url_with_database(&self.postgres_direct_url, name),
        ))
    }

    /// Drops database `name` (its replication slots and publications first)
    /// and deletes `topic`, ending the sessions still connected to the database: what a run on a shared environment leaves
    /// when it is done, so a long sweep does not pile up databases and topics.
    pub async fn drop_run_data(&self, name: &str, topic: &str) -> Result<()> {
        drop_run(&self.postgres_direct_url, &self.kafka_direct_bootstrap, name, topic).await
    }

    /// Creates `topic` with `partitions` partitions if missing (replication factor
    /// = number of brokers, at most 3) and waits until every partition has a leader.
    /// On a cluster of dualcheck's own (brokers 0, 1, 2) every partition has
    /// the replicas in the same order, so one broker leads them all and
    /// leadership moves for all of them together: when `kafka-leader`
    /// freezes the followers, no partition's leader is frozen, and producers
    /// go on writing to the leader alone — what `acks=1` trusts. With
    /// leaders spread over the brokers, a relay's batch waited for the
    /// frozen leaders of its other partitions, and the leader to kill often
    /// took no write in the freeze (leader-acks missed 3 of 20 seeds so).
    pub async fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        let rf = self.brokers().clamp(1, 3) as i32;
        let one_leader = rf > 1 && self.run_id.is_none();
        super::kafka::create_topic_with(&self.kafka_direct_bootstrap, topic, partitions, rf, one_leader).await
    }
}

/// Drops what a run created on the services: its replication slots and
/// publications, its database (ending the sessions still connected) and its
/// topic. Every step is tried; the first error is returned.
pub async fn drop_run(admin_url: &str, kafka_bootstrap: &str, database: &str, topic: &str) -> Result<()> {
    let db_url = url_with_database(admin_url, database);
    let mut first: Option<anyhow::Error> = None;
    let exists = async {
        let c = super::postgres::connect(admin_url).await?;
        let row = c
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
            .await?;
        anyhow::Ok(row.is_some())
    }
    .await
    .unwrap_or(true);
    if exists {
        if let Err(e) = super::provision::drop_replication_slots(&db_url).await {
            first.get_or_insert(e.context(format!("dropping the replication slots of {database}")));
        }
        let dropped = async {
            let c = super::postgres::connect(admin_url).await?;
            c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"))
                .await
                .with_context(|| format!("dropping database {database}"))
        }
        .await;
        if let Err(e) = dropped {
            first.get_or_insert(e);
        }
    }
    if let Err(e) = super::kafka::delete_topic(kafka_bootstrap, topic).await {
        first.get_or_insert(e);
    }
    match first {
        Some(e) => Err(anyhow::anyhow!(record::redact(&format!("{e:#}")))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::url_with_database;

    #[test]
    fn database_is_replaced() {
        assert_eq!(
            url_with_database("postgres://postgres@127.0.0.1:5432/postgres", "run_1"),
            "postgres://postgres@127.0.0.1:5432/run_1"
        );
        assert_eq!(
            url_with_database("postgres://u:p@h:1/db?sslmode=disable", "x"),
            "postgres://u:p@h:1/x?sslmode=disable"
        );
        assert_eq!(url_with_database("postgres://h:1", "x"), "postgres://h:1/x");
    }
}
