//! The business transaction every built-in implementation runs: insert the
//! order's rows, one per event of the op (plus, for outbox patterns, an
//! outbox row per event and an optional NOTIFY) in one transaction, in the
//! op's write shape (one `INSERT` per row, one multi-row `INSERT`, or `COPY`), hold it open if asked, then COMMIT — or ROLLBACK
//! for an op that aborts on purpose. It reports honestly: any error before
//! COMMIT is sent means the transaction cannot have committed (fail); an
//! error or timeout during COMMIT is unknown.

use crate::runtime::db::timed;
use crate::runtime::kafka::Envelope;
use crate::{AppContext, Op, OpAnswer};
use workloads::WriteShape;

/// SQL every built-in implementation's business table answers: one `op` column
/// (bigint) with every op whose business row exists.
pub const ORDERS_COMMITTED_SQL: &str = "SELECT op FROM orders";

/// The business table every built-in implementation writes (idempotent DDL):
/// one row per event of an op (`idx` its index; an op of one event has one
/// row, `idx` 0), so a change-data-capture tailer streams one change per event.
pub const ORDERS_DDL: &str = "CREATE TABLE IF NOT EXISTS orders (
    op bigint NOT NULL,
    idx int NOT NULL DEFAULT 0,
    PRIMARY KEY (op, idx),
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

/// Op `op`'s (first) row of the `orders` table as JSON (`key`, `seq`,
/// `created_at`), `None` when there is none (the op did not commit, or not yet).
pub async fn orders_row(ctx: &AppContext, op: i64) -> anyhow::Result<Option<serde_json::Value>> {
    let mut c = ctx.db.get().await?;
    let r = timed(
        ctx.db.timeout,
        "reading an order for a trace",
        c.query_opt(
            "SELECT key, seq, created_at::text FROM orders WHERE op = $1 ORDER BY idx LIMIT 1",
            &[&op],
        ),
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

/// The outbox rows to insert with the business rows: one per event.
pub struct OutboxRow<'a> {
    /// The op's events, in index order.
    pub envelopes: &'a [Envelope],
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

/// One step of a business transaction after its `orders` rows: rows of a
/// table (written in the op's write shape) or a statement.
pub enum Step {
    /// Rows of a table, one per event, say.
    Rows(TableRows),
    /// A statement.
    Sql(Statement),
}

impl Step {
    /// Runs the step in `tx`, rows in `shape`.
    pub async fn execute(
        &self,
        t: std::time::Duration,
        tx: &tokio_postgres::Transaction<'_>,
        shape: WriteShape,
    ) -> anyhow::Result<()> {
        match self {
            Step::Rows(rows) => rows.write(t, tx, shape).await,
            Step::Sql(st) => timed(t, st.what, st.execute(tx)).await.map(drop),
        }
    }
}

/// A Postgres array literal of text items (`{"a","b"}`), passed as one text
/// parameter and cast in SQL (`$1::text::uuid[]`): a statement over all of an
/// op's events keeps [`Statement`]'s text parameters.
pub fn text_array<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = items
        .into_iter()
        .map(|i| format!("\"{}\"", i.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
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

/// Inserts the `orders` rows of `op` (one per event) on `c`, a connection
/// inside a transaction or the transaction, in the op's write shape.
pub async fn insert_order(
    t: std::time::Duration,
    c: &impl tokio_postgres::GenericClient,
    op: &Op,
) -> anyhow::Result<()> {
    order_rows(op).write(t, c, op.write).await
}

/// The `orders` rows of `op`: one per event, on the event's key at its seq.
pub fn order_rows(op: &Op) -> TableRows {
    use tokio_postgres::types::Type;
    let mut rows = TableRows::new(
        "orders",
        "inserting the order",
        &[
            ("op", Type::INT8),
            ("idx", Type::INT4),
            ("key", Type::TEXT),
            ("seq", Type::INT8),
            ("payload", Type::TEXT),
        ],
    );
    for e in op.each_event() {
        rows.push(vec![
            Box::new(op.op as i64),
            Box::new(e.index as i32),
            Box::new(e.key),
            Box::new(e.seq as i64),
            Box::new(op.payload.clone()),
        ]);
    }
    rows
}

/// A row's cells as the parameters a statement takes.
fn cells(row: &[Cell]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    row.iter()
        .map(|c| &**c as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

/// One value of a row, as its column's type takes it.
pub type Cell = Box<dyn tokio_postgres::types::ToSql + Sync + Send>;

/// Rows of one table that a business transaction writes, written in an op's
/// [`WriteShape`]: the same rows whether one `INSERT` per row, one multi-row
/// `INSERT`, or one binary `COPY` (whose changes may share one WAL record).
pub struct TableRows {
    table: &'static str,
    what: &'static str,
    columns: Vec<(&'static str, tokio_postgres::types::Type)>,
    rows: Vec<Vec<Cell>>,
}

impl TableRows {
    /// No rows yet of `table` with these columns and their types (binary
    /// `COPY` sends each value in its column's type); `what` names the write in errors.
    pub fn new(
        table: &'static str,
        what: &'static str,
        columns: &[(&'static str, tokio_postgres::types::Type)],
    ) -> Self {
        TableRows {
            table,
            what,
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row: one cell per column, in the columns' order.
    pub fn push(&mut self, row: Vec<Cell>) {
        assert_eq!(
            row.len(),
            self.columns.len(),
            "a row of {} has one cell per column",
            self.table
        );
        self.rows.push(row);
    }

    /// Writes the rows on `c` in `shape`.
    pub async fn write(
        &self,
        t: std::time::Duration,
        c: &impl tokio_postgres::GenericClient,
        shape: WriteShape,
    ) -> anyhow::Result<()> {
        let names: Vec<&str> = self.columns.iter().map(|(n, _)| *n).collect();
        let names = names.join(", ");
        let width = self.columns.len();
        let placeholders = |row: usize| {
            let cells: Vec<String> = (1..=width).map(|c| format!("${}", row * width + c)).collect();
            format!("({})", cells.join(", "))
        };
        match shape {
            WriteShape::Single => {
                let sql = format!("INSERT INTO {} ({names}) VALUES {}", self.table, placeholders(0));
                for row in &self.rows {
                    timed(t, self.what, c.execute(&sql, &cells(row))).await?;
                }
            }
            WriteShape::MultiRow => {
                let values: Vec<String> = (0..self.rows.len()).map(placeholders).collect();
                let sql = format!("INSERT INTO {} ({names}) VALUES {}", self.table, values.join(", "));
                let all: Vec<_> = self.rows.iter().flat_map(|r| cells(r)).collect();
                timed(t, self.what, c.execute(&sql, &all)).await?;
            }
            WriteShape::Copy => {
                let sql = format!("COPY {} ({names}) FROM STDIN (FORMAT binary)", self.table);
                let types: Vec<_> = self.columns.iter().map(|(_, ty)| ty.clone()).collect();
                let copied = async {
                    let sink = c.client().copy_in::<_, bytes::Bytes>(&sql).await?;
                    let writer = tokio_postgres::binary_copy::BinaryCopyInWriter::new(sink, &types);
                    let mut writer = std::pin::pin!(writer);
                    for row in &self.rows {
                        writer.as_mut().write(&cells(row)).await?;
                    }
                    writer.finish().await
                };
                timed(t, self.what, copied).await?;
            }
        }
        Ok(())
    }
}

/// The `outbox` rows of `o`: one per event, its value the envelope.
pub fn outbox_rows(o: &OutboxRow<'_>) -> TableRows {
    use tokio_postgres::types::Type;
    let mut columns = vec![
        ("event_id", Type::UUID),
        ("op", Type::INT8),
        ("key", Type::TEXT),
        ("seq", Type::INT8),
        ("shard", Type::INT4),
        ("value", Type::TEXT),
    ];
    if o.created_at.is_some() {
        columns.push(("created_at", Type::TIMESTAMPTZ));
    }
    let mut rows = TableRows::new("outbox", "inserting the outbox rows", &columns);
    for e in o.envelopes {
        let mut row: Vec<Cell> = vec![
            Box::new(e.event_uuid()),
            Box::new(e.op),
            Box::new(e.key.clone()),
            Box::new(e.seq),
            Box::new(key_shard(&e.key)),
            Box::new(e.to_json()),
        ];
        if let Some(at) = o.created_at {
            row.push(Box::new(at));
        }
        rows.push(row);
    }
    rows
}

/// Runs the business transaction of `op` (see the module doc).
pub async fn run(ctx: &AppContext, op: &Op, outbox: Option<OutboxRow<'_>>) -> TxnEnd {
    run_with(ctx, op, outbox, &[]).await
}

/// [`run`] with further steps after the inserts, in the same transaction
/// (outbox rows of another shape, their deletion, ...).
pub async fn run_with(ctx: &AppContext, op: &Op, outbox: Option<OutboxRow<'_>>, extra: &[Step]) -> TxnEnd {
    let t = ctx.db.timeout;
    let mut conn = match ctx.db.get().await {
        Ok(c) => c,
        Err(e) => return TxnEnd::Failed(format!("no Postgres connection: {e:#}")),
    };
    let res: anyhow::Result<TxnEnd> = async {
        let tx = timed(t, "BEGIN", conn.transaction()).await?;
        insert_order(t, &tx, op).await?;
        if let Some(o) = &outbox {
            outbox_rows(o).write(t, &tx, op.write).await?;
            if o.notify {
                timed(t, "NOTIFY", tx.batch_execute("NOTIFY dualcheck_outbox")).await?;
            }
        }
        for step in extra {
            step.execute(t, &tx, op.write).await?;
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
    fn text_arrays_quote_their_items() {
        assert_eq!(text_array(["a", "b"]), r#"{"a","b"}"#);
        assert_eq!(text_array([r#"x"y\z"#]), r#"{"x\"y\\z"}"#);
        assert_eq!(text_array([]), "{}");
    }

    #[test]
    fn shards_are_stable_and_bounded() {
        assert_eq!(key_shard("k3"), key_shard("k3"));
        for i in 0..1000 {
            let s = key_shard(&format!("k{i}"));
            assert!((0..1024).contains(&s));
        }
    }
}
