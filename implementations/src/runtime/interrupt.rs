//! Waiting for the user to stop a process: Ctrl-C (SIGINT) or SIGTERM, the two
//! ways a terminal or a CI runner asks. The application server shuts down
//! gracefully on it, and the harness kills every service it started.

use tokio::signal::unix::{signal, SignalKind};

/// Resolves when the process receives SIGINT or SIGTERM (must be awaited
/// inside a tokio runtime). Where SIGTERM cannot be listened for, waits for
/// SIGINT alone and says so in the log.
pub async fn interrupted() {
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM ({e}); only Ctrl-C stops this process gracefully");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
