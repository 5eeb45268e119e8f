//! Phase 6, teardown: runs whatever the phases before returned, so no exit
//! path leaves the observer, the implementation, a prepared transaction or a
//! replication slot behind. The services themselves end in [`super::run`].

use super::start::Started;
use crate::in_doubt::{self, InDoubt};
use std::path::Path;

/// What the teardown found and did.
pub(super) struct TornDown {
    /// Prepared transactions seen and left in doubt (only when the run saw any,
    /// or the pattern prepares transactions).
    pub in_doubt: Option<InDoubt>,
    /// Replication slots of the run dropped.
    pub slots_dropped: Vec<String>,
    /// Problems met (resolving prepared transactions), for the nemesis errors.
    pub errors: Vec<String>,
    /// Maxima of the operational series.
    pub ops_max: Option<crate::ops_series::OpsMaxima>,
    /// Producer timestamp to observer, over the run's records.
    pub transit: Option<crate::observer::Transit>,
}

/// Stops what `started` holds, in order: the observer (the history is
/// complete), the in-doubt recovery, the implementation, the run's slots.
pub(super) async fn teardown(started: Started, prepares_transactions: bool, history: &Path) -> TornDown {
    let mut errors = Vec::new();
    let ops_max = match started.ops_sampler {
        Some(sampler) => Some(sampler.stop().await).filter(|m| m.samples > 0),
        None => None,
    };
    let mut transit = started.transit;
    if let Some(observer) = started.observer {
        transit = transit.or(observer.stats.transit());
        observer.stop().await;
    }
    // Only after the committed read (see in_doubt's module doc): resolve what
    // the implementation left prepared, so the database ends clean.
    let mut in_doubt = None;
    if let Some(monitor) = started.prepared_monitor {
        let seen = monitor.stop().await;
        let may_be_in_doubt = !seen.is_empty() || prepares_transactions;
        if let (true, Some(url)) = (may_be_in_doubt, &started.db_direct_url) {
            let delivered = in_doubt::delivered_ops(history);
            match in_doubt::recover(url, seen, &delivered).await {
                Ok(d) => in_doubt = Some(d),
                Err(e) => errors.push(format!("resolving prepared transactions: {e:#}")),
            }
        }
    }
    for p in started.services.iter().chain(&started.relays) {
        p.kill().await.ok();
    }
    // Slot hygiene: no slot of this run may go on retaining WAL.
    let slots_dropped = match &started.db_direct_url {
        Some(url) => match services::provision::drop_replication_slots(url).await {
            Ok(dropped) => dropped,
            Err(e) => {
                tracing::warn!("dropping the run's replication slots: {e:#}");
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    TornDown {
        in_doubt,
        slots_dropped,
        errors,
        ops_max,
        transit,
    }
}
