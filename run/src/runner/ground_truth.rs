//! Phase 5, ground truth: what the database holds, for the ops this run
//! invoked, recorded as `committed` lines.

use super::start::Running;
use anyhow::{bail, Context, Result};
use checkers::HistoryLine;
use std::collections::HashSet;

/// Runs the committed-ops query and records each op of `invoked` it returns.
pub(super) async fn record_committed(running: &Running, committed_sql: &str, invoked: &HashSet<u64>) -> Result<()> {
    // Once per op: a query over rows per event (an order's lines) names an op
    // once per row.
    let committed: std::collections::BTreeSet<u64> = read_committed(&running.db_direct_url, committed_sql)
        .await?
        .into_iter()
        .collect();
    for op in committed.into_iter().filter(|op| invoked.contains(op)) {
        running.recorder.record(&HistoryLine::Committed { op });
    }
    Ok(())
}

/// Runs the committed-ops query; every row's first column is an op id.
async fn read_committed(url: &str, sql: &str) -> Result<Vec<u64>> {
    let c = services::postgres::connect(url).await?;
    let rows = c
        .query(sql, &[])
        .await
        .with_context(|| format!("running the committed-ops query `{sql}`"))?;
    let mut ops = Vec::with_capacity(rows.len());
    for row in rows {
        let op: i64 = match row.try_get::<_, i64>(0) {
            Ok(v) => v,
            Err(_) => match row.try_get::<_, i32>(0) {
                Ok(v) => v as i64,
                Err(e) => {
                    bail!("the committed-ops query `{sql}` must return op ids as integers in its first column: {e}")
                }
            },
        };
        ops.push(op as u64);
    }
    Ok(ops)
}
