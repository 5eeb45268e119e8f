//! The `crash-after-commit` crash point: armed through `POST /crash-after-commit`,
//! it kills the whole process (SIGKILL to itself) right after the next op's
//! database commit, before any publish or answer. In-memory state, producer
//! buffers and the relays die with it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A crash point shared by the HTTP server and the pattern.
#[derive(Clone, Default)]
pub struct CrashPoint {
    armed: Arc<AtomicBool>,
}

impl CrashPoint {
    /// Arms the crash point for the next commit.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Called by patterns right after a successful business commit: dies if armed.
    pub fn after_commit(&self) {
        if self.armed.swap(false, Ordering::SeqCst) {
            tracing::warn!("crash-after-commit: committed, now dying before publish/answer");
            // SAFETY: plain libc calls; SIGKILL cannot be caught, nothing runs after it.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            std::process::abort();
        }
    }
}
