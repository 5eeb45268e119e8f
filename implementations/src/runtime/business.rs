//! The business transaction every built-in implementation runs: insert the
//! order row (plus, for outbox patterns, the outbox row and an optional
//! NOTIFY) in one transaction, hold it open if asked, then COMMIT — or ROLLBACK
//! for an op that aborts on purpose. It reports honestly: any error before
//! COMMIT is sent means the transaction cannot have committed (fail); an
//! error or timeout during COMMIT is unknown.

use crate::runtime::db::timed;
use crate::runtime::kafka::Envelope;
use crate::{AppContext, Op, OpAnswer};

/// SQL every built-in implementation's business table answers: one `op` column
/// (bigint) with every op whose business row exists.
pub const ORDERS_COMMITTED_SQL: &str = "SELECT op FROM orders";

/// The business table every built-in implementation writes (idempotent DDL).
pub const ORDERS_DDL: &str = "CREATE TABLE IF NOT EXISTS orders (
    op bigint PRIMARY KEY,
    key text NOT NULL,
    seq bigint NOT NULL,
    payload text,
    created_at timestamptz DEFAULT now()
)";

/// The newest seq of `key` in the `orders` table (`None`: no row).
pub async fn read_orders(ctx: &AppContext, key: &str) -> anyhow::Result<Option<i64>> {
    newest_seq(
        ctx,
        "reading the newest seq of a key from orders",
        "SELECT max(seq) FROM orders WHERE key = $1",
        key,
    )
    .await
}

/// The newest seq of `key` by `sql` (one row, one nullable bigint, the key as
/// `$1`), on a pooled connection that is dropped when the query fails.
pub async fn newest_seq(ctx: &AppContext, what: &str, sql: &str, key: &str) -> anyhow::Result<Option<i64>> {
    let mut c = ctx.db.get().await?;
    let r = timed(ctx.db.timeout, what, c.query_one(sql, &[&key])).await;
    match r {
        Ok(row) => Ok(row.get(0)),
        Err(e) => {
            c.discard();
            Err(e)
        }
    }
}

/// Op `op`'s row of the `orders` table as JSON (`key`, `seq`, `created_at`),
/// `None` when there is none (the op did not commit, or not yet).
pub async fn orders_row(ctx: &AppContext, op: i64) -> anyhow::Result<Option<serde_json::Value>> {
    let mut c = ctx.db.get().await?;
    let r = timed(
        ctx.db.timeout,
        "reading an order for a trace",
        c.query_opt("SELECT key, seq, created_at::text FROM orders WHERE op = $1", &[&op]),
    )
    .await;
    match r {
        Ok(row) => Ok(row.map(|r| {
            serde_json::json!({"key": r.get::<_, String>(0), "seq": r.get::<_, i64>(1), "created_at": r.get::<_, Option<String>>(2)})
        })),
        Err(e) => {
            c.discard();
            Err(e)
        }
    }
}

/// The account of op `op` of a pattern that publishes from the request
/// itself, with `publisher`: its `orders` row and what this process's
/// publisher remembers of its event (`publish`). `state`: `published`,
/// `publish_failed`, `not_committed` (no row), or `unknown` (a row, but this
/// process has no memory of its event: it was restarted since, or died first).
pub async fn request_trace(
    ctx: &AppContext,
    publisher: &crate::runtime::kafka::Publisher,
    op: i64,
) -> anyhow::Result<serde_json::Value> {
    let order = orders_row(ctx, op).await?;
    let note = publisher.journal.get(op);
    let state = match (&order, &note) {
        (_, Some(n)) if n.published.is_some() => "published",
        (None, _) => "not_committed",
        (Some(_), Some(_)) => "publish_failed",
        (Some(_), None) => "unknown",
    };
    let mut v = serde_json::json!({"op": op, "state": state, "orders": order});
    if let Some(n) = note {
        v["publish"] = serde_json::to_value(&n)?;
        v["attempts"] = n.attempts.into();
        if let Some(e) = n.last_error {
            v["last_error"] = e.into();
        }
    }
    Ok(v)
}

/// Stable shard of a key in `0..1024` (FNV-1a), stored with each outbox row;
/// relays own groups `shard % shards`.
pub fn key_shard(key: &str) -> i32 {
    let mut h: u32 = 0x811c9dc5;
    for b in key.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    (h % 1024) as i32
}

/// How the business transaction ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnEnd {
    /// Committed (the crash point has been passed).
    Committed,
    /// Certainly not committed.
    Failed(String),
    /// COMMIT was sent, its result is unknown.
    Unknown(String),
}

/// The outbox row to insert with the business row.
pub struct OutboxRow<'a> {
    /// The event.
    pub envelope: &'a Envelope,
    /// Also `NOTIFY dualcheck_outbox` in the transaction (outbox-notify).
    pub notify: bool,
    /// `created_at` from the application's clock instead of the database's
    /// (`now()`): the `app-timestamp` mutant orders by it.
    pub created_at: Option<std::time::SystemTime>,
}

/// A further statement of the business transaction, with text parameters
/// (cast them in the SQL: `$1::uuid`).
pub struct Statement {
    /// The SQL.
    pub sql: &'static str,
    /// What it does, for error messages.
    pub what: &'static str,
    /// Parameters, all text.
    pub params: Vec<String>,
}

impl Statement {
    /// Executes the statement in `tx`.
    pub async fn execute(&self, tx: &tokio_postgres::Transaction<'_>) -> Result<u64, tokio_postgres::Error> {
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = self
            .params
            .iter()
            .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        tx.execute(self.sql, &params).await
    }
}

impl From<TxnEnd> for OpAnswer {
    fn from(end: TxnEnd) -> OpAnswer {
        match end {
            TxnEnd::Committed => OpAnswer::Ok,
            TxnEnd::Failed(e) => OpAnswer::Fail(e),
            TxnEnd::Unknown(e) => OpAnswer::Unknown(e),
        }
    }
}

/// How every business transaction ends once its statements ran: held open
/// `op.hold_ms`, then rolled back for an op that aborts on purpose, else
/// committed (an error during COMMIT leaves the outcome unknown). An error
/// here is before COMMIT was sent: certainly not committed.
pub async fn finish(t: std::time::Duration, tx: tokio_postgres::Transaction<'_>, op: &Op) -> anyhow::Result<TxnEnd> {
    if op.hold_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(op.hold_ms)).await;
    }
    if op.abort {
        let _ = timed(t, "ROLLBACK", tx.rollback()).await;
        return Ok(TxnEnd::Failed("aborted on purpose (abort: true); rolled back".into()));
    }
    Ok(match timed(t, "COMMIT", tx.commit()).await {
        Ok(()) => TxnEnd::Committed,
        Err(e) => TxnEnd::Unknown(format!("{e:#}")),
    })
}

/// Inserts the `orders` row of `op` on `c` (a connection inside a
/// transaction, or the transaction).
pub async fn insert_order(
    t: std::time::Duration,
    c: &impl tokio_postgres::GenericClient,
    op: &Op,
) -> anyhow::Result<()> {
    timed(
        t,
        "inserting the order",
        c.execute(
            "INSERT INTO orders (op, key, seq, payload) VALUES ($1, $2, $3, $4)",
            &[&(op.op as i64), &op.key, &(op.seq as i64), &op.payload],
        ),
    )
    .await?;
    Ok(())
}

/// Runs the business transaction of `op` (see the module doc).
pub async fn run(ctx: &AppContext, op: &Op, outbox: Option<OutboxRow<'_>>) -> TxnEnd {
    run_with(ctx, op, outbox, &[]).await
}

/// [`run`] with further statements after the inserts, in the same transaction
/// (an outbox row of another shape, its deletion, ...).
pub async fn run_with(ctx: &AppContext, op: &Op, outbox: Option<OutboxRow<'_>>, extra: &[Statement]) -> TxnEnd {
    let t = ctx.db.timeout;
    let mut conn = match ctx.db.get().await {
        Ok(c) => c,
        Err(e) => return TxnEnd::Failed(format!("no Postgres connection: {e:#}")),
    };
    let res: anyhow::Result<TxnEnd> = async {
        let tx = timed(t, "BEGIN", conn.transaction()).await?;
        insert_order(t, &tx, op).await?;
        if let Some(o) = &outbox {
            let e = o.envelope;
            let event_id: uuid::Uuid = e.event.parse().expect("envelope ids are UUIDs");
            let (shard, value) = (key_shard(&e.key), e.to_json());
            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                vec![&event_id, &e.op, &e.key, &e.seq, &shard, &value];
            let sql = match &o.created_at {
                None => "INSERT INTO outbox (event_id, op, key, seq, shard, value) VALUES ($1, $2, $3, $4, $5, $6)",
                Some(at) => {
                    params.push(at);
                    "INSERT INTO outbox (event_id, op, key, seq, shard, value, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)"
                }
            };
            let inserted = tx.execute(sql, &params);
            timed(t, "inserting the outbox row", inserted).await?;
            if o.notify {
                timed(t, "NOTIFY", tx.batch_execute("NOTIFY dualcheck_outbox")).await?;
            }
        }
        for st in extra {
            timed(t, st.what, st.execute(&tx)).await?;
        }
        finish(t, tx, op).await
    }
    .await;
    let end = match res {
        Ok(end) => end,
        Err(e) => TxnEnd::Failed(format!("{e:#}")),
    };
    if end != TxnEnd::Committed {
        conn.discard();
    }
    if end == TxnEnd::Committed {
        ctx.crash.after_commit();
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_bounded() {
        assert_eq!(key_shard("k3"), key_shard("k3"));
        for i in 0..1000 {
            let s = key_shard(&format!("k{i}"));
            assert!((0..1024).contains(&s));
        }
    }
}
