//! The crash points: `crash-after-commit`, armed through
//! `POST /crash-after-commit`, kills the whole process (SIGKILL to itself)
//! right after the next op's database commit, before any publish or answer;
//! `crash-after-ack`, armed through `POST /crash-after-ack`, kills it right
//! after Kafka acknowledged what its relay published and before the relay
//! records that (outbox rows marked, cursor saved, WAL position confirmed) —
//! the window where a relay's bookkeeping decides between a duplicate the
//! event id absorbs and one it does not. In-memory state, producer buffers and
//! the relays die with the process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The crash points of one process, shared by the HTTP server and the pattern.
#[derive(Clone, Default)]
pub struct CrashPoint {
    armed: Arc<AtomicBool>,
    armed_after_ack: Arc<AtomicBool>,
}

impl CrashPoint {
    /// Arms the crash point for the next commit.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Arms the crash point for the relay's next acknowledged publish.
    pub fn arm_after_ack(&self) {
        self.armed_after_ack.store(true, Ordering::SeqCst);
    }

    /// Called by patterns right after a successful business commit: dies if armed.
    pub fn after_commit(&self) {
        if self.armed.swap(false, Ordering::SeqCst) {
            die("crash-after-commit: committed, now dying before publish/answer");
        }
    }

    /// Called by relays once Kafka acknowledged events and before they record
    /// that anywhere: dies if armed.
    pub fn after_ack(&self) {
        if self.armed_after_ack.swap(false, Ordering::SeqCst) {
            die("crash-after-ack: Kafka acknowledged, now dying before the relay records it");
        }
    }
}

/// SIGKILL to this process: nothing of it runs after the call.
fn die(why: &str) -> ! {
    tracing::warn!("{why}");
    // SAFETY: plain libc calls; SIGKILL cannot be caught, nothing runs after it.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort();
}
